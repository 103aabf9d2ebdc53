//! Text that came from outside (plan cells, server answers, headers, file names), made safe to
//! print and to store: control characters escaped, and long text cut with its length noted.
//!
//! A terminal acts on escape sequences (ANSI colours, OSC titles and hyperlinks, cursor moves)
//! wherever they come from, so a hostile server's error text or a crafted plan cell could rewrite
//! what the operator sees. Everything printed that did not come from embatch itself goes through
//! [`printable`] first.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The most bytes of outside text kept in one message, printed or stored: enough for any error
/// EM writes, small enough that a hostile answer cannot flood a terminal or grow the log.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Whether `c` must not reach a terminal as it is: the C0 and C1 control characters and DEL
/// (which start escape sequences or move the cursor), and the bidirectional overrides and
/// isolates, which reorder what is shown (the "Trojan Source" trick).
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control character escaped as Rust writes it (`\n`, `\u{1b}`), so that it
/// reads on one line and no escape sequence reaches the terminal. Borrowed when nothing needs
/// escaping, which is the common case.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            // `escape_debug` spells \n, \t, \r and \\ by name and the rest as \u{..}.
            let _ = write!(out, "{}", c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` cut to at most `max` bytes on a character boundary; when cut, a note of how long the
/// whole was follows, so a reader knows something is missing and how much.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… [cut: {} bytes in all]",
        &text[..end],
        text.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(printable("role 'Portal User'"), Cow::Borrowed(_)));
        assert!(matches!(clip("short", 10), Cow::Borrowed(_)));
    }

    #[test]
    fn escapes_and_line_breaks_are_spelled_out() {
        assert_eq!(
            printable("a\u{1b}[31mred\u{1b}]0;title\u{7}\nnext\u{9b}"),
            "a\\u{1b}[31mred\\u{1b}]0;title\\u{7}\\nnext\\u{9b}"
        );
        assert_eq!(printable("abc\u{202E}def"), "abc\\u{202e}def");
        assert_eq!(printable("tab\there"), "tab\\there");
        // Text that is not a control character stays as it is, accents and all.
        assert_eq!(printable("Zoë \\ ok"), "Zoë \\ ok");
    }

    #[test]
    fn clip_cuts_on_a_character_boundary_and_says_so() {
        let text = "é".repeat(10); // 20 bytes
        assert_eq!(clip(&text, 5), "éé… [cut: 20 bytes in all]");
        assert_eq!(clip(&text, 20), text);
    }
}
