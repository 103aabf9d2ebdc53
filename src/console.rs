//! The console: how commands write to stdout and stderr. A reader that went away is no error,
//! and text from outside is escaped before it is shown.
//!
//! `println!` panics when stdout is a pipe whose reader has gone (`embatch show 1 | head`), and
//! `eprintln!` likewise on stderr. A reader that stopped reading had what it wanted, as for
//! other Unix tools, so commands write through [`outln!`](crate::console::outln) and
//! [`errln!`](crate::console::errln) instead: output to a closed pipe is dropped without a word
//! and the command ends as it would have otherwise, with the same exit status. Other write
//! errors on stdout (a full disk) still fail the command; on stderr there is nowhere left to
//! report them.

use std::borrow::Cow;
use std::io::{self, Write};

use crate::text;

/// Standard output for commands: writing to a pipe whose reader has gone succeeds and writes
/// nothing.
pub struct Stdout(io::StdoutLock<'static>);

/// Standard output, locked for as long as the value lives.
pub fn stdout() -> Stdout {
    Stdout(io::stdout().lock())
}

/// `result`, with a reader that went away turned into success.
fn quiet(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(buf.len()),
            other => other,
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        quiet(self.0.write_all(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        quiet(self.0.flush())
    }
}

/// Writes to stdout like `print!`, as an `io::Result<()>`: a reader that went away is `Ok`.
macro_rules! out {
    ($($arg:tt)*) => {
        ::std::io::Write::write_fmt(&mut $crate::console::stdout(), format_args!($($arg)*))
    };
}

/// Writes a line to stdout like `println!`, as an `io::Result<()>`: a reader that went away is
/// `Ok`.
macro_rules! outln {
    () => {
        $crate::console::out!("\n")
    };
    ($($arg:tt)*) => {
        $crate::console::out!("{}\n", format_args!($($arg)*))
    };
}

/// Writes to stderr like `eprint!`, never failing: when stderr cannot be written, there is
/// nowhere left to say so.
macro_rules! err {
    ($($arg:tt)*) => {{
        let _ = ::std::io::Write::write_fmt(&mut ::std::io::stderr(), format_args!($($arg)*));
    }};
}

/// Writes a line to stderr like `eprintln!`, never failing; see [`err!`].
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::console::err!("{}\n", format_args!($($arg)*))
    };
}

pub(crate) use {err, errln, out, outln};

/// `text` with control characters escaped line by line: the line breaks a message is made of
/// stay, and nothing else can move the cursor or start an escape sequence. For messages that
/// join lines on purpose; a single value goes through [`text::printable`].
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    if text
        .split('\n')
        .all(|line| matches!(text::printable(line), Cow::Borrowed(_)))
    {
        return Cow::Borrowed(text);
    }
    let lines: Vec<Cow<'_, str>> = text.split('\n').map(text::printable).collect();
    Cow::Owned(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_stay_and_escapes_do_not() {
        assert!(matches!(printable_lines("a\nb"), Cow::Borrowed("a\nb")));
        assert_eq!(
            printable_lines("rows:\n  x\u{1b}]0;pwned\u{7}\r\n  y"),
            "rows:\n  x\\u{1b}]0;pwned\\u{7}\\r\n  y"
        );
    }
}
