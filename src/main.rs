//! The `embatch` binary: flags → settings → run → exit status. Everything else is in the library.

use std::io::Write as _;

use clap::Parser;
use embatch::cli::Cli;
use embatch::exit::Exit;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    embatch::logging::init(cli.verbose);
    let command = match cli.into_command() {
        Ok(command) => command,
        Err(e) => {
            // A closed stderr leaves nowhere to say anything, and is no reason to panic.
            let _ = writeln!(std::io::stderr(), "embatch: {e}");
            return Exit::Usage.into();
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "embatch: cannot start the async runtime: {e}"
            );
            return Exit::Usage.into();
        }
    };
    runtime.block_on(embatch::app::run(command)).into()
}
