//! The `embatch` binary: flags → settings → run → exit status. Everything else is in the library.

use clap::Parser;
use embatch::cli::Cli;

// A request allocates and frees some hundred small blocks across the runtime's thread and the
// audit writer's; mimalloc's thread-local free lists take a tenth off the CPU per request that
// glibc's malloc costs (BENCHMARKS.md, where the memory figures are measured with it too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    embatch::logging::init(cli.verbose);
    embatch::app::run_blocking(cli.into_command()).into()
}
