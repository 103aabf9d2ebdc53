//! The CSV layer of a plan: encoding checks, delimiter detection and a tokenizer that splits
//! text into records while counting physical lines.
//!
//! The `csv` crate is not used here because its record positions do not match what an editor
//! shows: it counts a CRLF file's lines one short and gives a record after blank lines the line
//! of the first blank one. Plan messages must point at the line a user opens, so this module
//! counts line breaks itself (`\n`, `\r\n` and a lone `\r` each end one line, inside quoted
//! fields too).

use std::borrow::Cow;

/// The UTF-8 byte order mark that spreadsheet programs put at the start of "CSV UTF-8" files.
pub(super) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A physical line holding bytes that are not UTF-8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct BadLine {
    /// The physical line (1-based).
    pub line: u64,
    /// The character column of the first bad byte (1-based).
    pub column: usize,
    /// The first bad byte.
    pub byte: u8,
}

/// Every physical line of `bytes` that is not valid UTF-8, in order.
pub(super) fn invalid_utf8_lines(bytes: &[u8]) -> Vec<BadLine> {
    let mut bad = Vec::new();
    let mut line = 1;
    let mut start = 0;
    let mut i = 0;
    while i <= bytes.len() {
        let end_of_line = match bytes.get(i) {
            None => Some(i + 1),
            Some(b'\n') => Some(i + 1),
            Some(b'\r') if bytes.get(i + 1) == Some(&b'\n') => Some(i + 2),
            Some(b'\r') => Some(i + 1),
            Some(_) => None,
        };
        if let Some(next) = end_of_line {
            let content = &bytes[start..i];
            if let Err(e) = std::str::from_utf8(content) {
                let valid = &content[..e.valid_up_to()];
                // The prefix is valid by construction, so counting its characters cannot fail.
                let column = std::str::from_utf8(valid).map_or(0, |s| s.chars().count()) + 1;
                bad.push(BadLine {
                    line,
                    column,
                    byte: content[e.valid_up_to()],
                });
            }
            line += 1;
            start = next;
            i = next;
        } else {
            i += 1;
        }
    }
    bad
}

/// The delimiters a plan may use, in order of preference when counts tie.
const DELIMITERS: [u8; 3] = [b',', b';', b'\t'];

/// Picks the delimiter from the header line: whichever of `,` `;` and tab occurs most often
/// outside quotes. Leading lines that hold only whitespace and delimiters are skipped, as the
/// tokenizer skips them too. A header without any delimiter (a single column) gives `,`.
pub(super) fn detect_delimiter(text: &str) -> u8 {
    let mut counts = [0usize; 3];
    let mut in_quotes = false;
    let mut line_has_content = false;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' {
            in_quotes = !in_quotes;
            line_has_content = true;
        } else if !in_quotes {
            if let Some(k) = DELIMITERS.iter().position(|&d| d == b) {
                counts[k] += 1;
            } else if b == b'\n' || b == b'\r' {
                if line_has_content {
                    break;
                }
                counts = [0; 3];
            } else if !b.is_ascii_whitespace() {
                line_has_content = true;
            }
        }
        i += 1;
    }
    let mut best = 0;
    for k in 1..DELIMITERS.len() {
        if counts[k] > counts[best] {
            best = k;
        }
    }
    DELIMITERS[best]
}

/// Where a record sits in the file and whether it was cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RecordInfo {
    /// The physical line the record starts on.
    pub line: u64,
    /// The physical line the record ends on (later than `line` when a quoted field spans lines).
    pub last_line: u64,
    /// The line of a quote that is never closed; the record then runs to the end of the file.
    pub unterminated: Option<u64>,
}

/// Splits CSV text into records. Fields borrow from the text unless they hold escaped quotes,
/// so reading a plan allocates almost nothing per record.
pub(super) struct Records<'a> {
    text: &'a str,
    pos: usize,
    line: u64,
    delimiter: u8,
}

impl<'a> Records<'a> {
    /// A tokenizer over `text` (without a BOM) using `delimiter`.
    pub(super) fn new(text: &'a str, delimiter: u8) -> Self {
        Records {
            text,
            pos: 0,
            line: 1,
            delimiter,
        }
    }

    /// Reads the next record's fields into `fields` (cleared first). `None` at the end of the
    /// text. A blank line comes back as a record with one empty field; callers skip it.
    pub(super) fn next_into(&mut self, fields: &mut Vec<Cow<'a, str>>) -> Option<RecordInfo> {
        fields.clear();
        let bytes = self.text.as_bytes();
        if self.pos >= bytes.len() {
            return None;
        }
        let line = self.line;
        let mut unterminated = None;
        let last_line = loop {
            fields.push(self.field(&mut unterminated));
            match bytes.get(self.pos) {
                Some(&b) if b == self.delimiter => self.pos += 1,
                Some(b'\r') => {
                    let last = self.line;
                    self.pos += if bytes.get(self.pos + 1) == Some(&b'\n') {
                        2
                    } else {
                        1
                    };
                    self.line += 1;
                    break last;
                }
                Some(b'\n') => {
                    let last = self.line;
                    self.pos += 1;
                    self.line += 1;
                    break last;
                }
                // A field stops only at the delimiter, a line break or the end of the text.
                _ => break self.line,
            }
        };
        Some(RecordInfo {
            line,
            last_line,
            unterminated,
        })
    }

    /// Reads one field starting at `self.pos` and leaves `self.pos` on what ended it.
    fn field(&mut self, unterminated: &mut Option<u64>) -> Cow<'a, str> {
        let text = self.text;
        let bytes = text.as_bytes();
        let delimiter = self.delimiter;
        let stops = |b: u8| b == delimiter || b == b'\n' || b == b'\r';
        let start = self.pos;
        // Hand-written plans often put a space after the delimiter, before a quoted value;
        // such a field is still read as quoted rather than keeping the quotes as text.
        let mut p = start;
        while p < bytes.len() && bytes[p] == b' ' {
            p += 1;
        }
        if bytes.get(p) != Some(&b'"') {
            let mut p = start;
            while p < bytes.len() && !stops(bytes[p]) {
                p += 1;
            }
            self.pos = p;
            return Cow::Borrowed(&text[start..p]);
        }

        let quote_line = self.line;
        p += 1;
        let mut segment = p;
        let mut owned: Option<String> = None;
        let content_end = loop {
            match bytes.get(p) {
                None => {
                    *unterminated = Some(quote_line);
                    break p;
                }
                Some(b'"') if bytes.get(p + 1) == Some(&b'"') => {
                    // A doubled quote stands for one quote: keep the text up to and including
                    // the first of the pair, then skip the second.
                    owned
                        .get_or_insert_with(String::new)
                        .push_str(&text[segment..=p]);
                    p += 2;
                    segment = p;
                }
                Some(b'"') => {
                    p += 1;
                    break p - 1;
                }
                Some(b'\n') => {
                    self.line += 1;
                    p += 1;
                }
                Some(b'\r') => {
                    // In `\r\n` the line is counted at the `\n`.
                    if bytes.get(p + 1) != Some(&b'\n') {
                        self.line += 1;
                    }
                    p += 1;
                }
                Some(_) => p += 1,
            }
        };
        let content = &text[segment..content_end];
        // Text after the closing quote (`"abc"def`) is kept, as other CSV readers do, rather
        // than dropped silently.
        let tail_start = p;
        while p < bytes.len() && !stops(bytes[p]) {
            p += 1;
        }
        self.pos = p;
        let tail = &text[tail_start..p];
        match owned {
            None if tail.is_empty() => Cow::Borrowed(content),
            owned => {
                let mut s = owned.unwrap_or_default();
                s.push_str(content);
                s.push_str(tail);
                Cow::Owned(s)
            }
        }
    }
}

/// Whether a record holds nothing but whitespace, as blank lines and the all-empty rows that
/// spreadsheets export (`,,,`) do.
pub(super) fn is_blank(fields: &[Cow<'_, str>]) -> bool {
    fields.iter().all(|f| f.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str) -> Vec<(RecordInfo, Vec<String>)> {
        let mut r = Records::new(text, detect_delimiter(text));
        let mut fields = Vec::new();
        let mut out = Vec::new();
        while let Some(info) = r.next_into(&mut fields) {
            out.push((info, fields.iter().map(|f| f.to_string()).collect()));
        }
        out
    }

    fn lines(text: &str) -> Vec<(u64, u64)> {
        records(text)
            .iter()
            .map(|(i, _)| (i.line, i.last_line))
            .collect()
    }

    #[test]
    fn lines_are_physical_lines_for_every_line_ending() {
        assert_eq!(lines("h,h\na,b\nc,d\n"), [(1, 1), (2, 2), (3, 3)]);
        assert_eq!(lines("h,h\r\na,b\r\nc,d\r\n"), [(1, 1), (2, 2), (3, 3)]);
        assert_eq!(lines("h,h\ra,b\rc,d"), [(1, 1), (2, 2), (3, 3)]);
        assert_eq!(lines("h,h\r\na,b\nc,d\r"), [(1, 1), (2, 2), (3, 3)]);
    }

    #[test]
    fn blank_lines_count_and_come_back_as_blank_records() {
        let r = records("h,h\n\n\na,b\r\n\r\nc,d\n");
        let starts: Vec<u64> = r
            .iter()
            .filter(|(_, f)| f.iter().any(|x| !x.is_empty()))
            .map(|(i, _)| i.line)
            .collect();
        assert_eq!(starts, [1, 4, 6]);
    }

    #[test]
    fn a_quoted_field_spanning_lines_starts_its_record_at_its_first_line() {
        let r = records("h,h\n\"a\nx\r\ny\",b\nc,\"d\re\"\nf,g\n");
        assert_eq!(
            r.iter()
                .map(|(i, _)| (i.line, i.last_line))
                .collect::<Vec<_>>(),
            [(1, 1), (2, 4), (5, 6), (7, 7)]
        );
        assert_eq!(r[1].1, ["a\nx\r\ny", "b"]);
        assert_eq!(r[2].1, ["c", "d\re"]);
    }

    #[test]
    fn quoted_fields_hold_delimiters_quotes_and_newlines() {
        let r = records("a,b,c\n\"x,y\",\"say \"\"hi\"\"\",\"\"\n");
        assert_eq!(r[1].1, ["x,y", "say \"hi\"", ""]);
    }

    #[test]
    fn a_space_before_a_quote_still_opens_a_quoted_field() {
        let r = records("a,b\nx, \"Portal, User\"\n");
        assert_eq!(r[1].1, ["x", "Portal, User"]);
    }

    #[test]
    fn text_after_a_closing_quote_is_kept() {
        let r = records("a,b\n\"ab\"cd,\"x\"\"\"y\n");
        assert_eq!(r[1].1, ["abcd", "x\"y"]);
    }

    #[test]
    fn quotes_inside_an_unquoted_field_are_text() {
        let r = records("a,b\nab\"c,d\n");
        assert_eq!(r[1].1, ["ab\"c", "d"]);
    }

    #[test]
    fn an_unclosed_quote_runs_to_the_end_and_names_its_line() {
        let r = records("a,b\nx,y\nx,\"oops\nz,w\n");
        assert_eq!(r.len(), 3);
        assert_eq!(r[2].0.unterminated, Some(3));
        assert_eq!(r[2].1, ["x", "oops\nz,w\n"]);
    }

    #[test]
    fn trailing_and_empty_fields_are_kept() {
        let r = records("a,b,c,,,\nx,,z,,,\n,,\n");
        assert_eq!(r[0].1, ["a", "b", "c", "", "", ""]);
        assert_eq!(r[1].1, ["x", "", "z", "", "", ""]);
        assert!(is_blank(
            &r[2]
                .1
                .iter()
                .map(|s| Cow::Borrowed(s.as_str()))
                .collect::<Vec<_>>()
        ));
    }

    #[test]
    fn no_final_line_break_is_fine() {
        assert_eq!(records("a,b\nx,y")[1].1, ["x", "y"]);
        assert_eq!(records("a,b\nx,").len(), 2);
    }

    #[test]
    fn the_delimiter_is_the_most_frequent_one_outside_quotes_on_the_header_line() {
        assert_eq!(detect_delimiter("account,action,target\n"), b',');
        assert_eq!(detect_delimiter("account;action;target\r\na,b;c,d;e"), b';');
        assert_eq!(detect_delimiter("account\taction\ttarget\n"), b'\t');
        assert_eq!(detect_delimiter("\"a,b,c\";action;target\n"), b';');
        assert_eq!(
            detect_delimiter("\n\n;;;\naccount\taction\ttarget\n"),
            b'\t'
        );
        assert_eq!(detect_delimiter("account\n"), b',');
        assert_eq!(detect_delimiter(""), b',');
        // A tie goes to the comma, the most common delimiter.
        assert_eq!(detect_delimiter("a,b;c\n"), b',');
        // Only the header line counts.
        assert_eq!(detect_delimiter("a;b;c\nx,y,z,w,v\n"), b';');
    }

    #[test]
    fn invalid_utf8_is_found_per_physical_line() {
        let bytes = b"ok\r\nM\xfcller\n\nfine\xe9\xe9\rlast\xff";
        assert_eq!(
            invalid_utf8_lines(bytes),
            [
                BadLine {
                    line: 2,
                    column: 2,
                    byte: 0xfc
                },
                BadLine {
                    line: 4,
                    column: 5,
                    byte: 0xe9
                },
                BadLine {
                    line: 5,
                    column: 5,
                    byte: 0xff
                },
            ]
        );
        assert!(invalid_utf8_lines("Müller\n".as_bytes()).is_empty());
    }
}
