//! Log output: tracing to stderr, quiet by default, louder with -v, or as `EMBATCH_LOG` says.
//!
//! Nothing secret reaches the logs: the client never logs credentials or session tokens, and
//! its `Debug` output redacts them.

use std::fmt::Write as _;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format;

/// Installs the global subscriber once, at start-up. `verbose` counts `-v` flags.
///
/// Every field of every event, its message included, is written through
/// [`crate::text::printable`]: warnings quote the server (a failed logout's error, a scope that
/// could not be read back), and a server's escape sequences must not reach the terminal. The
/// colours are embatch's own, and only on a terminal.
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
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .fmt_fields(printable_fields())
        .try_init();
}

/// The fields of an event as the default format writes them (the message alone, the others as
/// `name=value`, separated by spaces), with control characters escaped.
fn printable_fields() -> impl for<'w> format::FormatFields<'w> + 'static {
    format::debug_fn(|writer, field, value| {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        let text = crate::text::printable(&text);
        if field.name() == "message" {
            write!(writer, "{text}")
        } else {
            write!(writer, "{field}={text}")
        }
    })
    .delimited(" ")
}
