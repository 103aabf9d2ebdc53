//! Log output: tracing to stderr, quiet by default, louder with -v, or as `EMBATCH_LOG` says.
//!
//! Nothing secret reaches the logs: the client never logs credentials or session tokens, and
//! its `Debug` output redacts them.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once, at start-up. `verbose` counts `-v` flags.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "embatch=info",
        2 => "embatch=debug",
        _ => "embatch=trace",
    };
    let filter = EnvFilter::try_from_env("EMBATCH_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
