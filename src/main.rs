//! The `embatch` binary: flags → settings → run → exit status. Everything else is in the library.

use clap::Parser;
use embatch::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    embatch::logging::init(cli.verbose);
    embatch::app::run_blocking(cli.into_command()).into()
}
