//! The CSV layer of a plan: a line reader that hashes what it reads, encoding checks,
//! delimiter detection, and a tokenizer that splits a record's text into fields while counting
//! physical lines.
//!
//! A plan is streamed: [`LineReader`] yields one physical line at a time, [`QuoteState`] says
//! whether a record goes on past a line break (inside a quoted field), and [`Records`] splits
//! the lines of one record into fields. Nothing here holds more than the current record.
//!
//! The `csv` crate is not used here because its record positions do not match what an editor
//! shows: it counts a CRLF file's lines one short and gives a record after blank lines the line
//! of the first blank one. Plan messages must point at the line a user opens, so this module
//! counts line breaks itself (`\n`, `\r\n` and a lone `\r` each end one line, inside quoted
//! fields too).

use std::borrow::Cow;
use std::io::{self, BufRead};

use sha2::{Digest, Sha256};

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

/// The first bad byte of a physical line (`raw`, its terminator included or not) that is not
/// valid UTF-8; `None` when the line is valid.
pub(super) fn bad_utf8(raw: &[u8], line: u64) -> Option<BadLine> {
    let e = std::str::from_utf8(raw).err()?;
    let valid = &raw[..e.valid_up_to()];
    // The prefix is valid by construction, so counting its characters cannot fail.
    let column = std::str::from_utf8(valid).map_or(0, |s| s.chars().count()) + 1;
    Some(BadLine {
        line,
        column,
        byte: raw[e.valid_up_to()],
    })
}

/// Every physical line of `bytes` that is not valid UTF-8, in order.
#[cfg(test)]
pub(super) fn invalid_utf8_lines(bytes: &[u8]) -> Vec<BadLine> {
    let mut lines = LineReader::new(bytes);
    let mut bad = Vec::new();
    while let Some(Line::Whole(line)) = lines
        .next_line(usize::MAX)
        .expect("reading a byte slice cannot fail")
    {
        bad.extend(bad_utf8(lines.raw(), line));
    }
    bad
}

/// What [`LineReader::next_line`] read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Line {
    /// A whole physical line: its number (1-based).
    Whole(u64),
    /// A line longer than the most that was asked for: its number; only its first bytes were
    /// read.
    TooLong(u64),
}

/// Reads a plan's bytes one physical line at a time (`\n`, `\r\n` and a lone `\r` each end a
/// line), hashing every byte it reads, so that one pass over a file gives both its lines and
/// its SHA-256 without holding more than one line.
pub(super) struct LineReader<R> {
    inner: R,
    hasher: Sha256,
    /// The current line's bytes, its terminator included.
    raw: Vec<u8>,
    /// The number of the line read last (0 before the first).
    line: u64,
}

impl<R: BufRead> LineReader<R> {
    /// A line reader over `inner`.
    pub(super) fn new(inner: R) -> Self {
        LineReader {
            inner,
            hasher: Sha256::new(),
            raw: Vec::new(),
            line: 0,
        }
    }

    /// Reads the next physical line into [`raw`](Self::raw), keeping at most `max` bytes of
    /// it; `None` at the end of the input. A final line without a terminator is still a line;
    /// the empty text after a final terminator is not.
    ///
    /// A line longer than `max` bytes (its terminator included) is read no further: it comes
    /// back as [`Line::TooLong`] with its first `max` bytes, so that a file without line
    /// breaks (`/dev/zero`, a binary) never makes the line grow without bound.
    pub(super) fn next_line(&mut self, max: usize) -> io::Result<Option<Line>> {
        self.raw.clear();
        let mut too_long = false;
        loop {
            let buf = match self.inner.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                break;
            }
            // A `\r` that ended the previous buffer is a line break of its own unless a `\n`
            // follows, which then belongs to the same break.
            let (mut take, mut done) = if self.raw.last() == Some(&b'\r') {
                (usize::from(buf[0] == b'\n'), true)
            } else {
                match buf.iter().position(|&b| b == b'\n' || b == b'\r') {
                    Some(i) if buf[i] == b'\n' => (i + 1, true),
                    Some(i) if i + 1 < buf.len() => {
                        (i + 1 + usize::from(buf[i + 1] == b'\n'), true)
                    }
                    // The `\r` is the buffer's last byte: whether it is a `\r\n` shows only
                    // with the next buffer.
                    Some(i) => (i + 1, false),
                    None => (buf.len(), false),
                }
            };
            let room = max.saturating_sub(self.raw.len());
            if take > room {
                take = room;
                too_long = true;
                done = true;
            }
            self.raw.extend_from_slice(&buf[..take]);
            self.hasher.update(&buf[..take]);
            self.inner.consume(take);
            if done {
                break;
            }
        }
        if self.raw.is_empty() && !too_long {
            return Ok(None);
        }
        self.line += 1;
        Ok(Some(if too_long {
            Line::TooLong(self.line)
        } else {
            Line::Whole(self.line)
        }))
    }

    /// The number of the line read last (0 before the first).
    pub(super) fn line(&self) -> u64 {
        self.line
    }

    /// The bytes of the line read last, its terminator included.
    pub(super) fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The SHA-256 of every byte read so far, lower-case hex. Read to the end first to hash the
    /// whole input.
    pub(super) fn sha256(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

/// The delimiters a plan may use, in order of preference when counts tie.
const DELIMITERS: [u8; 3] = [b',', b';', b'\t'];

/// Picks the delimiter from the header line: whichever of `,` `;` and tab occurs most often
/// outside quotes. Leading lines that hold only whitespace and delimiters are skipped, as the
/// tokenizer skips them too. A header without any delimiter (a single column) gives `,`.
///
/// Fed line by line, so that a streamed plan needs to hold only the lines up to its header.
#[derive(Default)]
pub(super) struct DelimiterDetector {
    counts: [usize; 3],
    in_quotes: bool,
    line_has_content: bool,
    done: bool,
}

impl DelimiterDetector {
    /// Reads more text; returns whether the header line has been seen to its end, after which
    /// more text changes nothing.
    pub(super) fn feed(&mut self, text: &[u8]) -> bool {
        for &b in text {
            if self.done {
                break;
            }
            if b == b'"' {
                self.in_quotes = !self.in_quotes;
                self.line_has_content = true;
            } else if !self.in_quotes {
                if let Some(k) = DELIMITERS.iter().position(|&d| d == b) {
                    self.counts[k] += 1;
                } else if b == b'\n' || b == b'\r' {
                    if self.line_has_content {
                        self.done = true;
                    } else {
                        self.counts = [0; 3];
                    }
                } else if !b.is_ascii_whitespace() {
                    self.line_has_content = true;
                }
            }
        }
        self.done
    }

    /// Whether the header has begun: something other than whitespace and delimiters was fed
    /// (a quote included).
    pub(super) fn in_header(&self) -> bool {
        self.line_has_content
    }

    /// The delimiter, from what was fed so far.
    pub(super) fn delimiter(&self) -> u8 {
        let mut best = 0;
        for k in 1..DELIMITERS.len() {
            if self.counts[k] > self.counts[best] {
                best = k;
            }
        }
        DELIMITERS[best]
    }
}

/// Picks the delimiter of a whole text; see [`DelimiterDetector`].
#[cfg(test)]
pub(super) fn detect_delimiter(text: &str) -> u8 {
    let mut detector = DelimiterDetector::default();
    detector.feed(text.as_bytes());
    detector.delimiter()
}

/// Where the tokenizer would be after some bytes of a record, as far as the end of the record
/// depends on it: a line break ends the record unless it falls inside a quoted field.
///
/// It follows the rules of [`Records`] exactly (a field is quoted when its first non-space
/// character is a quote; quotes elsewhere are text), so that the lines gathered for one record
/// are the lines the tokenizer reads as one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum QuoteState {
    /// At the start of a field, or only spaces into it.
    FieldStart,
    /// In a field that is not quoted.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// On a quote inside a quoted field: it closes the field unless another quote follows.
    QuoteSeen,
    /// After the closing quote of a field, in text that is kept as it is.
    Tail,
}

impl QuoteState {
    /// The state after `bytes`, which start on `self`.
    pub(super) fn feed(mut self, bytes: &[u8], delimiter: u8) -> QuoteState {
        // Most lines hold no quote at all and start a record: nothing can open a quoted field.
        if self == QuoteState::FieldStart && !bytes.contains(&b'"') {
            return QuoteState::FieldStart;
        }
        for &b in bytes {
            self = match self {
                QuoteState::Quoted if b == b'"' => QuoteState::QuoteSeen,
                QuoteState::Quoted => QuoteState::Quoted,
                QuoteState::QuoteSeen if b == b'"' => QuoteState::Quoted,
                QuoteState::FieldStart if b == b'"' => QuoteState::Quoted,
                _ if b == delimiter || b == b'\n' || b == b'\r' => QuoteState::FieldStart,
                QuoteState::FieldStart if b == b' ' => QuoteState::FieldStart,
                QuoteState::FieldStart | QuoteState::Unquoted => QuoteState::Unquoted,
                QuoteState::QuoteSeen | QuoteState::Tail => QuoteState::Tail,
            };
        }
        self
    }
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
    #[cfg(test)]
    pub(super) fn new(text: &'a str, delimiter: u8) -> Self {
        Records::starting_at(text, delimiter, 1)
    }

    /// A tokenizer over `text` whose first line is physical line `line` of the file.
    pub(super) fn starting_at(text: &'a str, delimiter: u8, line: u64) -> Self {
        Records {
            text,
            pos: 0,
            line,
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

    /// Splits `text` as a streamed plan is split: physical lines gathered into records while
    /// a quoted field goes on, each record tokenized on its own.
    fn gathered(text: &str, delimiter: u8, chunk: usize) -> Vec<(RecordInfo, Vec<String>)> {
        let mut lines = LineReader::new(io::BufReader::with_capacity(chunk, text.as_bytes()));
        let mut out = Vec::new();
        let mut record = String::new();
        let mut first = 0;
        let mut state = QuoteState::FieldStart;
        let mut flush = |record: &mut String, first: u64| {
            let mut r = Records::starting_at(record, delimiter, first);
            let mut fields = Vec::new();
            let info = r.next_into(&mut fields).unwrap();
            out.push((info, fields.iter().map(|f| f.to_string()).collect()));
            assert!(r.next_into(&mut fields).is_none(), "{record:?}");
            record.clear();
        };
        while let Some(Line::Whole(line)) = lines.next_line(usize::MAX).unwrap() {
            if record.is_empty() {
                first = line;
            }
            let raw = std::str::from_utf8(lines.raw()).unwrap();
            record.push_str(raw);
            state = state.feed(raw.as_bytes(), delimiter);
            if state != QuoteState::Quoted {
                flush(&mut record, first);
            }
        }
        if !record.is_empty() {
            flush(&mut record, first);
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn records_gathered_line_by_line_are_the_records_of_the_whole_text(
            text in "[ab ,;\t\"\r\n]{0,40}",
            chunk in 1usize..6,
        ) {
            let delimiter = detect_delimiter(&text);
            let mut whole = Records::new(&text, delimiter);
            let mut fields = Vec::new();
            let mut expected = Vec::new();
            while let Some(info) = whole.next_into(&mut fields) {
                expected.push((info, fields.iter().map(|f| f.to_string()).collect::<Vec<_>>()));
            }
            proptest::prop_assert_eq!(gathered(&text, delimiter, chunk), expected);
        }
    }

    #[test]
    fn the_line_reader_splits_every_line_ending_across_reads_and_hashes_every_byte() {
        let bytes = b"a\r\nb\rc\n\r\r\n\nd\r";
        for chunk in 1..=bytes.len() {
            let mut lines = LineReader::new(io::BufReader::with_capacity(chunk, &bytes[..]));
            let mut got = Vec::new();
            while let Some(Line::Whole(n)) = lines.next_line(usize::MAX).unwrap() {
                got.push((n, String::from_utf8(lines.raw().to_vec()).unwrap()));
            }
            let want: Vec<(u64, String)> = ["a\r\n", "b\r", "c\n", "\r", "\r\n", "\n", "d\r"]
                .iter()
                .enumerate()
                .map(|(i, l)| (i as u64 + 1, l.to_string()))
                .collect();
            assert_eq!(got, want, "chunk {chunk}");
            assert_eq!(lines.sha256(), hex::encode(Sha256::digest(bytes)));
        }
    }

    #[test]
    fn the_line_reader_reads_no_more_of_a_line_than_it_is_asked_for() {
        let bytes = b"abcd\r\nefg\rhi";
        for chunk in 1..=bytes.len() {
            let read = |max: usize| {
                let mut lines = LineReader::new(io::BufReader::with_capacity(chunk, &bytes[..]));
                let first = lines.next_line(max).unwrap();
                (first, lines.raw().to_vec())
            };
            // The line with its terminator is six bytes: five are not enough.
            assert_eq!(read(6), (Some(Line::Whole(1)), b"abcd\r\n".to_vec()));
            assert_eq!(read(5), (Some(Line::TooLong(1)), b"abcd\r".to_vec()));
            assert_eq!(read(2), (Some(Line::TooLong(1)), b"ab".to_vec()));
            assert_eq!(read(0), (Some(Line::TooLong(1)), Vec::new()));
        }
        let mut lines = LineReader::new(&b"ab\rc"[..]);
        assert_eq!(lines.next_line(3).unwrap(), Some(Line::Whole(1)));
        assert_eq!(lines.next_line(1).unwrap(), Some(Line::Whole(2)));
        assert_eq!(lines.next_line(0).unwrap(), None);
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
