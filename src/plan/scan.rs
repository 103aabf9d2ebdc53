//! The one streaming pass over a plan. `Scanner` reads the file record by record and never
//! holds more than one record ([`MAX_RECORD_BYTES`], [`MAX_RECORD_LINES`]); `header` finds the
//! header and reads each record through it into a row, with the checks across rows when they
//! are asked for. Every problem goes to one list, and the reading stops after [`MAX_PROBLEMS`].
//!
//! Around it, the ways in: [`check`] sums a plan up in a [`PlanFile`], [`load`] and [`parse`]
//! keep its rows in a [`Plan`], and [`PlanRows`] reads the rows of a checked plan again.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::checks::Tracker;
use super::error::{PlanError, PlanErrors, Problems};
use super::header::Header;
use super::records::{self, Line, LineReader, QuoteState, RecordInfo, Records};
use super::row::{Action, Actions, PlanRow};
use super::sheet::{self, SheetScanner};

/// The most bytes one record may take in the file: its physical lines, line breaks included.
///
/// A plan row is a few hundred bytes, and a long comment a few KiB, so no honest plan comes
/// near 64 KiB. The record being read is the one thing a streamed reading holds whatever the
/// plan's size, so this bounds it: a file that is not a plan (a binary, `/dev/zero`) or a
/// quote never closed is refused at 64 KiB instead of filling the memory, and nothing after
/// it is read.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// The most physical lines one record may span (line breaks inside quoted cells).
///
/// Excel allows 253 line breaks in one cell, and a plan's comments hold a few; a quote that is
/// never closed swallows every line after it, and is found here at the latest.
pub const MAX_RECORD_LINES: u64 = 1000;

/// The most columns a header may have, counted up to its last named one.
///
/// A plan has six known columns; every other one is an annotation, copied into each row and
/// its record in the audit log, so the width multiplies with the rows. 64 leaves room for any
/// real set of annotations and refuses a file that is not a plan at its first line.
pub const MAX_COLUMNS: usize = 64;

/// The most problems one reading reports; after that it stops reading.
///
/// A file that is not a plan has a problem on nearly every line; past this many, more of them
/// help nobody, and keeping them all would let a large file fill the memory with messages.
pub const MAX_PROBLEMS: usize = 1000;

/// A whole validated plan.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The file name as given (used in messages).
    pub file: String,
    /// The rows, in file order.
    pub rows: Vec<PlanRow>,
    /// The SHA-256 of the file's bytes, lower-case hex.
    pub sha256: String,
}

/// A plan file validated in one streaming pass; holds no rows.
///
/// [`check`] reads the file once, with every check [`load`] makes, and keeps only this
/// summary; [`PlanFile::rows`] reads the rows again when they are needed, one at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanFile {
    /// The file name as given (used in messages).
    pub file: String,
    /// The path the file is read from.
    pub path: PathBuf,
    /// The SHA-256 of the file's bytes, lower-case hex.
    pub sha256: String,
    /// The number of data rows.
    pub rows: u64,
    /// The rows of each action.
    pub actions: Actions,
    /// The lines of the delete-account rows, in file order.
    pub delete_lines: Vec<u64>,
    /// The sheet asked for, when the plan is a spreadsheet read with `--sheet`.
    pub sheet: Option<String>,
    /// The hidden rows of a spreadsheet plan's sheet, read like any other (0 for CSV).
    pub hidden_rows: u64,
}

impl PlanFile {
    /// Reads the rows again, in file order, as validated rows. The file is hashed as it is
    /// read; if it no longer matches `sha256` (changed since `check`), or a row no longer
    /// validates, the iterator yields an `Err` (then ends), so a caller that records rows in
    /// one transaction rolls back and sends nothing.
    ///
    /// Only the checks of single rows are made again: the checks across rows need tables as
    /// large as the plan, and the hash shows that the rows are the ones [`check`] compared.
    pub fn rows(&self) -> Result<PlanRows, PlanErrors> {
        if let Some(format) = sheet::format_of(&self.path) {
            let scanner = SheetScanner::open(
                &self.path,
                &self.file,
                format,
                self.sheet.as_deref(),
                None,
                true,
            )?;
            return Ok(PlanRows {
                source: Source::Sheet(Box::new(scanner)),
                sha256: self.sha256.clone(),
                done: false,
            });
        }
        Ok(self.rows_from(open(&self.path, &self.file)?))
    }

    /// The rows read again from `reader` instead of the file, as [`rows`](Self::rows) reads
    /// them; for the fuzz target, which has bytes and no file.
    pub(crate) fn rows_from<R: BufRead>(&self, reader: R) -> PlanRows<R> {
        PlanRows {
            source: Source::Csv(Box::new(Scanner::new(&self.file, reader, None, true))),
            sha256: self.sha256.clone(),
            done: false,
        }
    }
}

/// The rows of a checked plan, read again from its file; see [`PlanFile::rows`]. Holds a read
/// buffer and the current record, whatever the size of the plan.
pub struct PlanRows<R = BufReader<File>> {
    source: Source<R>,
    /// The hash the file had when it was checked.
    sha256: String,
    done: bool,
}

impl<R: BufRead> Iterator for PlanRows<R> {
    type Item = Result<PlanRow, PlanErrors>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let (row, problems) = match &mut self.source {
            Source::Csv(scanner) => (scanner.next_row(), &mut scanner.problems),
            Source::Sheet(scanner) => (scanner.next_row(), &mut scanner.problems),
        };
        if let Some(row) = row {
            return Some(Ok(row));
        }
        let problems = std::mem::take(problems);
        self.done = true;
        let now = match &self.source {
            Source::Csv(scanner) => scanner.lines.sha256(),
            // The workbook is hashed as it is read, whole, before its rows are.
            Source::Sheet(scanner) => scanner.sha256.clone(),
        };
        let file = problems.file.clone();
        match problems.into_result() {
            Err(e) => Some(Err(e)),
            Ok(()) if now != self.sha256 => Some(Err(PlanErrors(vec![PlanError {
                file,
                line: 0,
                message: format!(
                    "the plan changed since it was checked (its SHA-256 was {}, now {now}); \
                     check it again",
                    self.sha256
                ),
            }]))),
            Ok(()) => None,
        }
    }
}

impl<R: BufRead> std::iter::FusedIterator for PlanRows<R> {}

/// Where a [`PlanRows`] reads from: a CSV file, or a spreadsheet's sheet.
enum Source<R> {
    Csv(Box<Scanner<R>>),
    Sheet(Box<SheetScanner>),
}

/// [`check`] of a plan that may be a spreadsheet: `sheet` names the sheet to read (the first
/// when `None`), and is refused for a CSV plan. The sheet's hidden rows are counted, for
/// `check` to tell.
pub fn check_sheet(path: &Path, sheet: Option<&str>) -> Result<PlanFile, PlanErrors> {
    check_sheet_counting(path, sheet, true)
}

/// [`check_sheet`] for a run, which never shows the count of hidden rows: the sheet's XML is
/// not read a second time to count them (0 is recorded).
pub fn check_sheet_to_run(path: &Path, sheet: Option<&str>) -> Result<PlanFile, PlanErrors> {
    check_sheet_counting(path, sheet, false)
}

fn check_sheet_counting(
    path: &Path,
    sheet: Option<&str>,
    count_hidden: bool,
) -> Result<PlanFile, PlanErrors> {
    let Some(format) = sheet::format_of(path) else {
        no_sheet_in_csv(path, sheet)?;
        return check(path);
    };
    let (file, mut scanner) = checked_sheet(path, format, sheet)?;
    let (rows, actions, delete_lines) = tally(std::iter::from_fn(|| scanner.next_row()));
    std::mem::take(&mut scanner.problems).into_result()?;
    let hidden_rows = if count_hidden {
        scanner.hidden_rows(sheet)?
    } else {
        0
    };
    Ok(PlanFile {
        file,
        path: path.to_path_buf(),
        sha256: scanner.sha256.clone(),
        rows,
        actions,
        delete_lines,
        sheet: sheet.map(str::to_string),
        hidden_rows,
    })
}

/// The sheet of the workbook at `path` read with the checks across rows: its name in messages,
/// and its scanner.
fn checked_sheet(
    path: &Path,
    format: sheet::Format,
    sheet: Option<&str>,
) -> Result<(String, SheetScanner), PlanErrors> {
    let file = sheet::display_name(path, sheet);
    let scanner = SheetScanner::open(path, &file, format, sheet, Some(Tracker::default()), false)?;
    Ok((file, scanner))
}

/// [`load`] of a plan that may be a spreadsheet; see [`check_sheet`].
pub fn load_sheet(path: &Path, sheet: Option<&str>) -> Result<Plan, PlanErrors> {
    let Some(format) = sheet::format_of(path) else {
        no_sheet_in_csv(path, sheet)?;
        return load(path);
    };
    let (file, mut scanner) = checked_sheet(path, format, sheet)?;
    let mut rows = Vec::new();
    while let Some(row) = scanner.next_row() {
        rows.push(row);
    }
    std::mem::take(&mut scanner.problems).into_result()?;
    Ok(Plan {
        file,
        rows,
        sha256: scanner.sha256.clone(),
    })
}

/// Refuses `--sheet` for a plan that is not a spreadsheet, rather than ignoring it.
fn no_sheet_in_csv(path: &Path, sheet: Option<&str>) -> Result<(), PlanErrors> {
    match sheet {
        None => Ok(()),
        Some(_) => Err(PlanErrors(vec![PlanError {
            file: path.display().to_string(),
            line: 0,
            message: "--sheet is for spreadsheets (.xlsx, .xlsm, .ods); this plan is read as CSV"
                .into(),
        }])),
    }
}

/// Validates the plan at `path` in one streaming pass, holding no rows: only the tables of
/// the checks across rows and the problems found. The result says what the plan holds;
/// [`PlanFile::rows`] reads the rows themselves.
pub fn check(path: &Path) -> Result<PlanFile, PlanErrors> {
    let file = path.display().to_string();
    let reader = open(path, &file)?;
    check_reader(file, path, reader)
}

/// What a check keeps of the rows it read: how many, how many of each action, and the lines of
/// the delete-account rows (for the confirmation that names them).
fn tally(rows: impl Iterator<Item = PlanRow>) -> (u64, Actions, Vec<u64>) {
    let mut count = 0;
    let mut actions = Actions::default();
    let mut delete_lines = Vec::new();
    for row in rows {
        count += 1;
        actions.count(&row.action);
        if row.action == Action::DeleteAccount {
            delete_lines.push(row.line);
        }
    }
    (count, actions, delete_lines)
}

/// [`check`] of the plan `reader` reads, naming it `file` and recording `path` as where it
/// is read again from.
pub(crate) fn check_reader<R: BufRead>(
    file: String,
    path: &Path,
    reader: R,
) -> Result<PlanFile, PlanErrors> {
    let mut scanner = Scanner::new(&file, reader, Some(Tracker::default()), false);
    let (rows, actions, delete_lines) = tally(std::iter::from_fn(|| scanner.next_row()));
    let sha256 = scanner.lines.sha256();
    scanner.problems.into_result()?;
    Ok(PlanFile {
        file,
        path: path.to_path_buf(),
        sha256,
        rows,
        actions,
        delete_lines,
        sheet: None,
        hidden_rows: 0,
    })
}

/// Reads and validates the plan at `path`, keeping its rows.
pub fn load(path: &Path) -> Result<Plan, PlanErrors> {
    let file = path.display().to_string();
    let reader = open(path, &file)?;
    read_plan(&file, reader)
}

/// Validates plan `bytes`, naming them `file` in messages.
pub fn parse(file: &str, bytes: &[u8]) -> Result<Plan, PlanErrors> {
    read_plan(file, bytes)
}

/// Reads a whole plan from `reader`, keeping its rows.
fn read_plan<R: BufRead>(file: &str, reader: R) -> Result<Plan, PlanErrors> {
    let mut scanner = Scanner::new(file, reader, Some(Tracker::default()), false);
    let mut rows = Vec::new();
    while let Some(row) = scanner.next_row() {
        rows.push(row);
    }
    let sha256 = scanner.lines.sha256();
    scanner.problems.into_result()?;
    Ok(Plan {
        file: file.to_string(),
        rows,
        sha256,
    })
}

/// The plan file at `path`, buffered for reading line by line.
fn open(path: &Path, file: &str) -> Result<BufReader<File>, PlanErrors> {
    // A larger buffer than the default 8 KiB halves the read calls on a large plan and costs
    // nothing that matters.
    Ok(BufReader::with_capacity(
        64 * 1024,
        open_plan_file(path, file)?,
    ))
}

/// The plan file at `path` (named `file` in messages), opened. Only a regular file is a plan: a
/// plan is read twice (checked, then its rows read again and compared by hash), which a pipe
/// cannot be, and a device such as `/dev/zero` or `/dev/urandom` never ends.
pub(super) fn open_plan_file(path: &Path, file: &str) -> Result<File, PlanErrors> {
    let refuse = |message: String| {
        PlanErrors(vec![PlanError {
            file: file.to_string(),
            line: 0,
            message,
        }])
    };
    let handle = File::open(path).map_err(|e| refuse(format!("cannot read the plan: {e}")))?;
    // The type is asked of the file opened, so that it cannot be swapped in between.
    let meta = handle
        .metadata()
        .map_err(|e| refuse(format!("cannot read the plan: {e}")))?;
    if !meta.is_file() {
        return Err(refuse(
            "not a regular file: a plan is a file that can be read twice, not a device, pipe \
             or directory"
                .into(),
        ));
    }
    Ok(handle)
}

/// How far a [`Scanner`] has read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stage {
    /// Nothing read yet.
    Start,
    /// The header is read; rows follow.
    Rows,
    /// Nothing more to read: the end of the file, or a problem that stops the reading.
    Done,
}

/// Why a [`Scanner`] stopped before the end of the file.
pub(super) enum Halt {
    /// The file could not be read.
    Io(io::Error),
    /// The file passed one of the limits; the problem is already reported.
    Limit,
}

impl From<io::Error> for Halt {
    fn from(e: io::Error) -> Halt {
        Halt::Io(e)
    }
}

/// A physical line read ahead of the record it belongs to (while looking for the delimiter).
pub(super) struct PendingLine {
    pub(super) line: u64,
    /// The line's text, its terminator included.
    pub(super) text: String,
    /// The line's length in the file, in bytes.
    pub(super) raw_len: usize,
    /// Whether the line held bytes that are not UTF-8.
    pub(super) bad: bool,
}

/// The lines of one record, gathered into [`Scanner::record`].
#[derive(Clone, Copy)]
pub(super) struct Gathered {
    /// The record's first physical line.
    pub(super) first: u64,
    /// Whether a line of it was not UTF-8; the record is then not checked, since its text is
    /// not what the user wrote.
    bad: bool,
}

/// Reads a plan one record at a time and validates each row as it comes: the one validation
/// core behind [`check`], [`load`], [`parse`] and [`PlanRows`].
///
/// It holds the header, the current record (at most [`MAX_RECORD_BYTES`] of the file) and,
/// when it makes the checks across rows, their tables; every problem goes to `problems`, up to
/// [`MAX_PROBLEMS`].
pub(super) struct Scanner<R> {
    pub(super) lines: LineReader<R>,
    pub(super) problems: Problems,
    /// The checks across rows; `None` when only single rows are checked.
    tracker: Option<Tracker>,
    /// Whether to stop at the first problem, as a second reading of a checked plan does.
    stop_at_problem: bool,
    pub(super) stage: Stage,
    pub(super) delimiter: u8,
    pub(super) header: Option<Header>,
    /// Lines read while the delimiter was looked for, not yet split into records.
    pub(super) pending: VecDeque<PendingLine>,
    /// The text of the current record.
    pub(super) record: String,
    /// Non-blank records after the header.
    records_seen: u64,
}

impl<R: BufRead> Scanner<R> {
    fn new(file: &str, reader: R, tracker: Option<Tracker>, stop_at_problem: bool) -> Self {
        Scanner {
            lines: LineReader::new(reader),
            problems: Problems {
                file: file.to_string(),
                list: Vec::new(),
            },
            tracker,
            stop_at_problem,
            stage: Stage::Start,
            delimiter: b',',
            header: None,
            pending: VecDeque::new(),
            record: String::new(),
            records_seen: 0,
        }
    }

    /// The next valid row; `None` when the plan is read to its end, or, when stopping at the
    /// first problem, at that problem. What was wrong is in `problems`.
    fn next_row(&mut self) -> Option<PlanRow> {
        loop {
            if self.stop_at_problem && !self.problems.list.is_empty() {
                self.stage = Stage::Done;
            }
            if self.stage != Stage::Done && self.problems.list.len() >= MAX_PROBLEMS {
                // A file that is not a plan at all (a binary, random bytes) has a problem on
                // every line; past this many, more of them help nobody and only take memory.
                let line = self.lines.line();
                self.problems.add(
                    line,
                    format!(
                        "more than {MAX_PROBLEMS} problems: reading stopped here; fix these first"
                    ),
                );
                self.stage = Stage::Done;
            }
            let step = match self.stage {
                Stage::Start => self.read_header().map(|()| None),
                Stage::Rows => self.read_row(),
                Stage::Done => return None,
            };
            match step {
                Ok(None) => {}
                Ok(Some(row)) if self.stop_at_problem && !self.problems.list.is_empty() => {
                    drop(row);
                }
                Ok(Some(row)) => return Some(row),
                Err(Halt::Io(e)) => {
                    self.problems.add(0, format!("cannot read the plan: {e}"));
                    self.stage = Stage::Done;
                }
                Err(Halt::Limit) => self.stage = Stage::Done,
            }
        }
    }

    /// Reads the next record after the header; the row when it is a valid one.
    fn read_row(&mut self) -> Result<Option<PlanRow>, Halt> {
        let Some(gathered) = self.gather()? else {
            if self.records_seen == 0 {
                self.problems.add(0, "the plan has no rows".into());
            }
            let problems = &mut self.problems;
            if let Some(tracker) = &mut self.tracker {
                tracker.finish(&mut |line, m| problems.add(line, m));
            }
            self.stage = Stage::Done;
            return Ok(None);
        };
        let mut fields = Vec::new();
        let Some(info) = first_record(&self.record, self.delimiter, gathered.first, &mut fields)
        else {
            return Ok(None);
        };
        if info.unterminated.is_none() && records::is_blank(&fields) {
            return Ok(None);
        }
        self.records_seen += 1;
        if let Some(at) = info.unterminated {
            self.problems.add(at, UNTERMINATED.into());
            return Ok(None);
        }
        if gathered.bad {
            return Ok(None);
        }
        let header = self
            .header
            .as_ref()
            .expect("rows are read only after the header");
        Ok(header.row(
            info.line,
            &fields,
            self.tracker.as_mut(),
            &mut self.problems,
        ))
    }

    /// Gathers the lines of the next record into `record`: one line, or more while a quoted
    /// field goes on, up to [`MAX_RECORD_BYTES`] and [`MAX_RECORD_LINES`]. `None` at the end of
    /// the file.
    pub(super) fn gather(&mut self) -> Result<Option<Gathered>, Halt> {
        self.record.clear();
        let mut state = QuoteState::FieldStart;
        let mut gathered: Option<Gathered> = None;
        // The record's bytes in the file, which the limit counts (the text may differ: no BOM,
        // bad bytes replaced).
        let mut held = 0;
        loop {
            let start = self.record.len();
            let next = match self.pending.pop_front() {
                Some(p) => {
                    self.record.push_str(&p.text);
                    held += p.raw_len;
                    Some((p.line, p.bad))
                }
                None => match self.next_physical(MAX_RECORD_BYTES - held)? {
                    Some(Line::Whole(line)) => {
                        let mut record = std::mem::take(&mut self.record);
                        let bad = self.decode(line, &mut record);
                        self.record = record;
                        held += self.lines.raw().len();
                        Some((line, bad))
                    }
                    Some(Line::TooLong(line)) => {
                        let first = gathered.map_or(line, |g| g.first);
                        // The start of the line says whether a quote is left open; its bad
                        // bytes, if any, are beside the point now.
                        let cut = String::from_utf8_lossy(self.lines.raw()).into_owned();
                        self.record.push_str(&cut);
                        return Err(self.overlong(first, &bytes_limit()));
                    }
                    None => None,
                },
            };
            let Some((line, bad)) = next else {
                break;
            };
            let g = gathered.get_or_insert(Gathered { first: line, bad });
            g.bad |= bad;
            let first = g.first;
            state = state.feed(&self.record.as_bytes()[start..], self.delimiter);
            if state != QuoteState::Quoted {
                break;
            }
            if line - first + 1 >= MAX_RECORD_LINES {
                return Err(self.overlong(first, &lines_limit()));
            }
        }
        Ok(gathered)
    }

    /// Reports a record (starting on line `first`, its text so far in `record`) that passed
    /// `limit`, at the quote it leaves open if there is one, and stops the reading: where such a
    /// record ends cannot be known without reading on, possibly forever.
    pub(super) fn overlong(&mut self, first: u64, limit: &str) -> Halt {
        // The text is a prefix of the record, cut at the limit: only its first record counts
        // (a line cut short may end anywhere), so it is not held to be one record whole.
        let open = Records::starting_at(&self.record, self.delimiter, first)
            .next_into(&mut Vec::new())
            .and_then(|info| info.unterminated);
        match open {
            Some(at) => self.problems.add(
                at,
                format!(
                    "the quoted field opened on this line is still open after {limit}, more \
                     than any plan row needs: is its closing quote missing? reading stopped here"
                ),
            ),
            None => self.problems.add(
                first,
                format!(
                    "record longer than {limit}, more than any plan row needs: is this a CSV \
                     plan? reading stopped here"
                ),
            ),
        }
        self.record.clear();
        Halt::Limit
    }

    /// Reads the next physical line from the file, keeping at most `max` bytes of it; `None`
    /// at the end.
    pub(super) fn next_physical(&mut self, max: usize) -> Result<Option<Line>, Halt> {
        let line = self.lines.next_line(max)?;
        if let Some(Line::Whole(n) | Line::TooLong(n)) = line
            && n > u64::from(u32::MAX)
        {
            // The tables of the checks across rows store lines in four bytes.
            self.problems.add(
                n,
                format!(
                    "the plan has more than {} lines; reading stopped here",
                    u32::MAX
                ),
            );
            return Err(Halt::Limit);
        }
        Ok(line)
    }

    /// Appends the text of the line just read (`line`) to `into`, without the BOM on the first
    /// line. Bytes that are not UTF-8 are reported and replaced; returns whether there were
    /// any.
    pub(super) fn decode(&mut self, line: u64, into: &mut String) -> bool {
        let mut raw = self.lines.raw();
        if line == 1 {
            raw = raw.strip_prefix(records::BOM).unwrap_or(raw);
        }
        match std::str::from_utf8(raw) {
            Ok(text) => {
                into.push_str(text);
                false
            }
            Err(_) => {
                if let Some(b) = records::bad_utf8(raw, line) {
                    self.problems.add(
                        b.line,
                        format!(
                            "not valid UTF-8 (byte 0x{:02X} at column {}); save the plan as UTF-8 \
                             (\"CSV UTF-8\" in Excel)",
                            b.byte, b.column
                        ),
                    );
                }
                // Invalid bytes never merge with the ASCII around them, so the lossy text
                // keeps every delimiter, quote and line break where it was; the rest of the
                // file can be checked while the lines with bad bytes are left out.
                into.push_str(&String::from_utf8_lossy(raw));
                true
            }
        }
    }
}

/// Splits the gathered text of one record (starting on physical line `line`) into `fields`.
/// `None` when the text is empty, as the first line is when it holds nothing but the BOM:
/// such a line is blank.
pub(super) fn first_record<'t>(
    text: &'t str,
    delimiter: u8,
    line: u64,
    fields: &mut Vec<Cow<'t, str>>,
) -> Option<RecordInfo> {
    let mut records = Records::starting_at(text, delimiter, line);
    let info = records.next_into(fields)?;
    debug_assert!(
        records.next_into(&mut Vec::new()).is_none(),
        "the lines gathered for one record are one record to the tokenizer"
    );
    Some(info)
}

/// [`MAX_RECORD_BYTES`] as messages say it.
pub(super) fn bytes_limit() -> String {
    format!("{} KiB", MAX_RECORD_BYTES / 1024)
}

/// [`MAX_RECORD_LINES`] as messages say it.
pub(super) fn lines_limit() -> String {
    format!("{MAX_RECORD_LINES} lines")
}

pub(super) const UNTERMINATED: &str =
    "unterminated quoted field: the quote opened on this line is never closed";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testing::{G1, G2, REF, ROLE, ok, problems, problems_of};
    use crate::plan::{AccountRef, RoleRef, ScopeRef};
    use sha2::{Digest, Sha256};
    use uuid::Uuid;

    #[test]
    fn account_rows_that_cannot_work_are_refused() {
        assert_eq!(
            problems_of(&format!(
                "account,action,target\n\
                 TECH\\new,add-account,User\n\
                 TECH\\flagged,add-account,Group\n\
                 TECH\\flagged,assign-role,Portal User\n\
                 TECH\\flagged,restore-all-vms,off\n\
                 TECH\\leaver,assign-role,Portal User\n\
                 tech\\LEAVER,delete-account,\n\
                 {G1},add-account,User\n\
                 TECH\\x,add-account,Robot\n\
                 TECH\\y,delete-account,now\n"
            )),
            [
                "2: a new account needs a role: add an assign-role row for it",
                "5: the account added on line 3 gets restore-all-vms off but no scope: add an add-scope row for it",
                "6: the account is deleted on line 7; a deleted account can have no other rows in the plan",
                "8: add-account needs the new account's name (e.g. TECH\\alice), not a GUID",
                "9: unknown account type 'Robot' (expected User, Group, ExternalUser or ExternalGroup)",
                "10: delete-account takes an empty target or 'confirm', not 'now'",
            ]
        );
    }

    #[test]
    fn line_numbers_are_physical_lines() {
        // The bad row is always the file's fifth line, whatever comes before it.
        let bad = "TECH\\x,frobnicate,y";
        for (what, before) in [
            (
                "lf",
                "account,action,target\na,restore-all-vms,on\nb,restore-all-vms,on\nc,restore-all-vms,on\n",
            ),
            (
                "crlf",
                "account,action,target\r\na,restore-all-vms,on\r\nb,restore-all-vms,on\r\nc,restore-all-vms,on\r\n",
            ),
            (
                "bom",
                "\u{feff}account,action,target\na,restore-all-vms,on\nb,restore-all-vms,on\nc,restore-all-vms,on\n",
            ),
            (
                "blank lines",
                "account,action,target\n\na,restore-all-vms,on\n\n",
            ),
            (
                "crlf blank lines",
                "account,action,target\r\n\r\na,restore-all-vms,on\r\n\r\n",
            ),
            (
                "leading blank lines",
                "\n\naccount,action,target\na,restore-all-vms,on\n",
            ),
            (
                "multi-line field",
                "account,action,target,comment\na,restore-all-vms,on,\"one\ntwo\nthree\"\n",
            ),
            (
                "multi-line crlf field",
                "account,action,target,comment\r\na,restore-all-vms,on,\"one\r\ntwo\r\nthree\"\r\n",
            ),
            (
                "lone cr",
                "account,action,target\ra,restore-all-vms,on\rb,restore-all-vms,on\rc,restore-all-vms,on\r",
            ),
            (
                "blank spreadsheet rows",
                "account,action,target\n,,\n , \na,restore-all-vms,on\n",
            ),
        ] {
            let got = problems_of(&format!("{before}{bad}\n"));
            assert_eq!(
                got,
                [
                    "5: unknown action 'frobnicate' (expected one of assign-role, remove-role, add-scope, remove-scope, restore-all-vms, add-account, delete-account)"
                ],
                "{what}"
            );
        }
        // A record that spans lines is named by its first line.
        let got = problems_of("account,action,target,comment\na,restore-all-vms,\"o\nn\",x\n");
        assert_eq!(got, ["2: restore-all-vms takes on or off, not 'o\nn'"]);
        // The header need not be line 1.
        let got = problems_of("\n\naccount,action\na,restore-all-vms\n");
        assert_eq!(got, ["3: missing required column 'target'"]);
    }

    #[test]
    fn rows_keep_their_physical_lines() {
        let plan = ok(
            "\r\naccount,action,target,comment\r\n\r\na,restore-all-vms,on,\"x\r\ny\"\r\nb,restore-all-vms,on,\r\n",
        );
        assert_eq!(plan.rows.iter().map(|r| r.line).collect::<Vec<_>>(), [4, 6]);
    }

    #[test]
    fn non_utf8_bytes_are_refused_per_line_and_the_rest_is_still_checked() {
        let got = problems(b"account,action,target,comment\nTECH\\m\xfcller,assign-role,Portal User,\na,frobnicate,x,\nb,restore-all-vms,on,Gr\xfc\xdfe\n");
        // Columns count characters, as an editor does: line 4's bad byte follows 23 of them.
        assert_eq!(
            got,
            [
                "2: not valid UTF-8 (byte 0xFC at column 7); save the plan as UTF-8 (\"CSV UTF-8\" in Excel)",
                "3: unknown action 'frobnicate' (expected one of assign-role, remove-role, add-scope, remove-scope, restore-all-vms, add-account, delete-account)",
                "4: not valid UTF-8 (byte 0xFC at column 24); save the plan as UTF-8 (\"CSV UTF-8\" in Excel)",
            ]
        );
    }

    #[test]
    fn duplicate_rows_name_the_earlier_line() {
        assert_eq!(
            problems_of(&format!(
                "account,action,target\n\
                 TECH\\alice,assign-role,Portal User\n\
                 tech\\ALICE,assign-role,portal user\n\
                 {G1},remove-role,{ROLE}\n\
                 urn:veeam:EnterpriseAccount:{},remove-role,urn:veeam:EnterpriseRole:{ROLE}\n",
                G1.to_uppercase()
            )),
            ["3: duplicate of line 2", "5: duplicate of line 4"]
        );
    }

    #[test]
    fn contradictory_rows_name_both_lines() {
        assert_eq!(
            problems_of(
                "account,action,target\n\
                 TECH\\alice,assign-role,Portal User\n\
                 TECH\\bob,restore-all-vms,on\n\
                 TECH\\Alice,remove-role,PORTAL USER\n\
                 TECH\\BOB,restore-all-vms,no\n"
            ),
            [
                "4: contradicts line 2: assign-role and remove-role of the same role for one account (lines 2 and 4)",
                "5: contradicts line 3: restore-all-vms on and off for one account (lines 3 and 5)",
            ]
        );
        assert_eq!(
            problems_of(
                "account,action,target,object_name\n\
                 TECH\\alice,add-scope,urn:VMware:Folder:R.group-v1,Finance\n\
                 \n\
                 TECH\\alice,remove-scope,Finance,\n"
            ),
            [
                "4: contradicts line 2: add-scope and remove-scope of the same scope for one account (lines 2 and 4)",
            ]
        );
    }

    #[test]
    fn a_guid_and_a_name_are_not_correlated() {
        ok(&format!(
            "account,action,target\nTECH\\alice,assign-role,Portal User\n{G1},remove-role,Portal User\n"
        ));
        ok(&format!(
            "account,action,target\na,assign-role,Portal User\na,remove-role,{ROLE}\n"
        ));
    }

    #[test]
    fn a_plan_without_rows_is_refused() {
        assert_eq!(
            problems(b""),
            ["0: the plan has no rows: the file is empty"]
        );
        assert_eq!(
            problems(b"\xEF\xBB\xBF\r\n\r\n"),
            ["0: the plan has no rows: the file holds nothing but blank lines"]
        );
        assert_eq!(
            problems_of("account,action,target\n"),
            ["0: the plan has no rows"]
        );
        assert_eq!(
            problems_of("account,action,target\r\n\r\n,,\r\n"),
            ["0: the plan has no rows"]
        );
    }

    #[test]
    fn files_with_next_to_nothing_in_them_are_refused_with_a_clear_problem() {
        let blank = "0: the plan has no rows: the file holds nothing but blank lines";
        let no_rows = "0: the plan has no rows";
        let no_header = "1: missing required columns account, action and target: the first line \
                         must be a header such as account,action,target";
        let cases: [(&[u8], &[&str]); 13] = [
            (b"", &["0: the plan has no rows: the file is empty"]),
            // A BOM and nothing else: its line holds no text at all once the BOM is taken off.
            (b"\xEF\xBB\xBF", &[blank]),
            (b"\xEF\xBB\xBF\n", &[blank]),
            (b"\xEF\xBB\xBF\r", &[blank]),
            (b"\xEF\xBB\xBF\xEF\xBB\xBF", &[no_rows, no_header]),
            (b"\n\n\n", &[blank]),
            (b"\r", &[blank]),
            (b" \t \r\n,,,\n", &[blank]),
            (b"account,action,target", &[no_rows]),
            (b"\xEF\xBB\xBFaccount,action,target\r\n\r\n", &[no_rows]),
            (b"\0\0\0", &[no_rows, no_header]),
            (
                b"\xFF",
                &[
                    no_rows,
                    "1: not valid UTF-8 (byte 0xFF at column 1); save the plan as UTF-8 \
                     (\"CSV UTF-8\" in Excel)",
                    no_header,
                ],
            ),
            (
                b"account,action,target\nTECH\\a\0,restore-all-vms,on\n",
                &["2: account name 'TECH\\\\a\\0' holds a line break or another control character"],
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(problems(bytes), want, "{}", bytes.escape_ascii());
            assert_eq!(parse_chunked(bytes, 1), outcome(parse("plan.csv", bytes)));
            let (_dir, _path, checked) = checked(bytes);
            assert_eq!(checked.unwrap_err().0.len(), want.len());
        }
    }

    /// A reader of `len` bytes of `byte` (endless when `None`) that counts what was read
    /// from it.
    struct Endless {
        byte: u8,
        left: Option<u64>,
        read: std::rc::Rc<std::cell::Cell<u64>>,
    }

    impl io::Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = match self.left {
                Some(left) => buf.len().min(usize::try_from(left).unwrap_or(usize::MAX)),
                None => buf.len(),
            };
            buf[..n].fill(self.byte);
            if let Some(left) = &mut self.left {
                *left -= n as u64;
            }
            self.read.set(self.read.get() + n as u64);
            Ok(n)
        }
    }

    /// The problems of a plan made of `head` and then `byte` repeated (forever when `len` is
    /// `None`), and how many bytes were read to find them.
    fn problems_of_endless(head: &[u8], byte: u8, len: Option<u64>) -> (Vec<String>, u64) {
        let read = std::rc::Rc::new(std::cell::Cell::new(0));
        let tail = Endless {
            byte,
            left: len,
            read: read.clone(),
        };
        let reader = BufReader::with_capacity(8 * 1024, io::Read::chain(head, tail));
        let got = match read_plan("plan.csv", reader) {
            Ok(plan) => panic!("accepted: {:?}", plan.rows),
            Err(e) => {
                e.0.iter()
                    .map(|p| format!("{}: {}", p.line, p.message))
                    .collect()
            }
        };
        (got, read.get())
    }

    /// The most a reading may take beyond the limit of one record: a read buffer or two.
    const SLACK: u64 = 16 * 1024;

    #[test]
    fn a_file_without_line_breaks_is_refused_after_one_record() {
        let too_long = "record longer than 64 KiB, more than any plan row needs: is this a CSV \
                        plan? reading stopped here";
        // 64 MiB of zeros, as `/dev/zero` gives, and an endless run of text: both are refused
        // at the first line once 64 KiB are read, and nothing much after that is read.
        for (byte, len) in [(0u8, Some(64 << 20)), (b'x', None), (0xff, None)] {
            let (got, read) = problems_of_endless(b"", byte, len);
            assert_eq!(got, [format!("1: {too_long}")], "byte {byte}");
            assert!(
                read <= (MAX_RECORD_BYTES as u64) + SLACK,
                "{read} bytes read"
            );
        }
        // A row after the header.
        let (got, read) =
            problems_of_endless(b"account,action,target\na,restore-all-vms,", b'n', None);
        assert_eq!(got, [format!("2: {too_long}")]);
        assert!(
            read <= (MAX_RECORD_BYTES as u64) + SLACK,
            "{read} bytes read"
        );
        // A long row before the limit is read as any other.
        let comment = "c".repeat(MAX_RECORD_BYTES - 100);
        let plan = ok(&format!(
            "account,action,target,comment\na,restore-all-vms,on,{comment}\nb,restore-all-vms,on,\n"
        ));
        assert_eq!(plan.rows[0].comment.as_deref(), Some(comment.as_str()));
        // One byte over is refused, counted in bytes of the file, line break included.
        let row = format!("a,restore-all-vms,on,{comment}");
        let row = format!("{row}{}\r\n", "c".repeat(MAX_RECORD_BYTES - row.len() - 1));
        assert_eq!(
            problems_of(&format!("account,action,target,comment\n{row}")),
            [format!("2: {too_long}")]
        );
        let row = format!("{}\n", row.trim_end());
        assert!(
            parse(
                "p.csv",
                format!("account,action,target,comment\n{row}").as_bytes()
            )
            .is_ok()
        );
    }

    #[test]
    fn a_quote_never_closed_is_refused_at_its_line_after_one_record() {
        let open = |limit: &str| {
            format!(
                "the quoted field opened on this line is still open after {limit}, more than any \
                 plan row needs: is its closing quote missing? reading stopped here"
            )
        };
        let head = b"account,action,target,comment\na,restore-all-vms,on,\n\nb,restore-all-vms,on,\"oops\n";
        // Short lines: the lines run out first.
        let (got, read) = problems_of_endless(head, b'\n', None);
        assert_eq!(got, [format!("4: {}", open("1000 lines"))]);
        assert!(read <= SLACK, "{read} bytes read");
        // Long lines: the bytes run out first.
        let (got, read) = problems_of_endless(head, b'x', None);
        assert_eq!(got, [format!("4: {}", open("64 KiB"))]);
        assert!(
            read <= (MAX_RECORD_BYTES as u64) + SLACK,
            "{read} bytes read"
        );
        // In the header too, where the lines are read ahead to find the delimiter.
        let (got, _) = problems_of_endless(b"\n\naccount,\"action,target\n", b'\n', None);
        assert_eq!(got, [format!("3: {}", open("1000 lines"))]);
        let (got, _) = problems_of_endless(b"\n\naccount,\"action,target\n", b'x', None);
        assert_eq!(got, [format!("3: {}", open("64 KiB"))]);
        // A quoted cell over many lines, as long as the limit allows, is a cell like any other.
        let lines = "x\n".repeat(MAX_RECORD_LINES as usize);
        let plan = ok(&format!(
            "account,action,target,comment\na,restore-all-vms,on,\"{}\"\nb,restore-all-vms,on,\n",
            lines.trim_end()
        ));
        assert_eq!(plan.rows[1].line, MAX_RECORD_LINES + 2);
        assert_eq!(
            problems_of(&format!(
                "account,action,target,comment\na,restore-all-vms,on,\"{lines}\"\n"
            )),
            [format!("2: {}", open("1000 lines"))]
        );
    }

    #[test]
    fn blank_lines_before_the_header_are_bounded_too() {
        let (got, read) = problems_of_endless(b"", b'\n', None);
        assert_eq!(
            got,
            [
                "65537: no header within the first 64 KiB: only blank lines so far; is this a CSV \
              plan? reading stopped here"
            ]
        );
        assert!(
            read <= (MAX_RECORD_BYTES as u64) + SLACK,
            "{read} bytes read"
        );
        // A header after a few blank lines is found where it is.
        let plan = ok("\n\r\n ,,\naccount,action,target\na,restore-all-vms,on\n");
        assert_eq!(plan.rows[0].line, 5);
    }

    #[test]
    fn reading_stops_after_so_many_problems() {
        let mut text = String::from("account,action,target\n");
        for i in 0..3 * MAX_PROBLEMS {
            text.push_str(&format!("TECH\\u{i},frobnicate,x\n"));
        }
        let got = problems_of(&text);
        assert_eq!(got.len(), MAX_PROBLEMS + 1);
        assert_eq!(
            got.last().unwrap(),
            &format!(
                "{}: more than {MAX_PROBLEMS} problems: reading stopped here; fix these first",
                MAX_PROBLEMS + 1
            )
        );
        // Random bytes stop there too, whatever their size.
        let mut noise = Vec::new();
        let mut x: u32 = 2463534242;
        for _ in 0..(4 << 20) {
            // xorshift: noise without a dependency, the same on every run.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            noise.push(x as u8);
        }
        let got = problems(&noise);
        assert!(got.len() <= MAX_PROBLEMS + 8, "{} problems", got.len());
    }

    #[cfg(unix)]
    #[test]
    fn only_a_regular_file_is_a_plan() {
        for device in ["/dev/zero", "/dev/urandom", "/dev/null"] {
            let path = Path::new(device);
            for err in [check(path).unwrap_err(), load(path).unwrap_err()] {
                assert_eq!(
                    err.to_string(),
                    format!(
                        "{device}: not a regular file: a plan is a file that can be read twice, \
                         not a device, pipe or directory"
                    )
                );
            }
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(
            check(dir.path())
                .unwrap_err()
                .to_string()
                .ends_with(": not a regular file: a plan is a file that can be read twice, not a device, pipe or directory")
        );
        // A regular file of zeros is read up to the limit.
        let path = dir.path().join("zeros.csv");
        std::fs::write(&path, vec![0u8; 8 << 20]).unwrap();
        let err = check(&path).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].line, 1);
        assert!(err.0[0].message.starts_with("record longer than 64 KiB"));
    }

    #[test]
    fn an_unclosed_quote_is_refused_at_its_line() {
        assert_eq!(
            problems_of(
                "account,action,target,comment\na,restore-all-vms,on,\nb,restore-all-vms,off,\"oops\nc,restore-all-vms,on,\n"
            ),
            ["3: unterminated quoted field: the quote opened on this line is never closed"]
        );
        assert_eq!(
            problems_of("account,\"action,target\na,b,c\n"),
            ["1: unterminated quoted field: the quote opened on this line is never closed"]
        );
    }

    #[test]
    fn sha256_and_file_name() {
        let bytes = b"account,action,target\na,restore-all-vms,on\n";
        let plan = parse("dir/p.csv", bytes).unwrap();
        assert_eq!(plan.file, "dir/p.csv");
        assert_eq!(plan.sha256, hex::encode(Sha256::digest(bytes)));
        assert_eq!(plan.sha256.len(), 64);
        assert!(
            plan.sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        // The hash covers the raw bytes, BOM included.
        let with_bom = [b"\xEF\xBB\xBF".as_slice(), bytes].concat();
        assert_ne!(parse("p.csv", &with_bom).unwrap().sha256, plan.sha256);
    }

    #[test]
    fn load_reads_the_file_and_names_it_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.csv");
        std::fs::write(&path, "account,action,target\na,restore-all-vms,on\n").unwrap();
        let plan = load(&path).unwrap();
        assert_eq!(plan.file, path.display().to_string());
        assert_eq!(plan.rows.len(), 1);

        let missing = dir.path().join("missing.csv");
        let err = load(&missing).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].line, 0);
        assert!(
            err.0[0].message.starts_with("cannot read the plan: "),
            "{}",
            err.0[0].message
        );
        assert!(
            err.to_string()
                .starts_with(&format!("{}: cannot read", missing.display()))
        );

        std::fs::write(&path, "account,action\na,restore-all-vms\n").unwrap();
        let err = load(&path).unwrap_err();
        assert!(err.to_string().starts_with(&format!(
            "{}:1: missing required column 'target'",
            path.display()
        )));
    }

    #[test]
    fn the_samples_validate_as_documented() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
        for good in ["onboarding.csv", "excel-semicolon.csv"] {
            let plan = load(&root.join(good)).unwrap_or_else(|e| panic!("{e}"));
            assert!(!plan.rows.is_empty());
        }
        let mut bad: Vec<_> = std::fs::read_dir(root.join("bad"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "csv"))
            .collect();
        bad.sort();
        assert!(bad.len() >= 6);
        for path in bad {
            let errors = load(&path).unwrap_err().0;
            let mut lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
            lines.dedup();
            assert!(
                lines.len() >= 2,
                "{}: problems on two lines at least: {errors:?}",
                path.display()
            );
        }
    }

    /// What reading a plan gave, in a form that can be compared.
    type Outcome = Result<(Vec<PlanRow>, String), PlanErrors>;

    fn outcome(result: Result<Plan, PlanErrors>) -> Outcome {
        result.map(|p| (p.rows, p.sha256))
    }

    /// Reads `bytes` through a reader that hands out at most `chunk` bytes at a time.
    fn parse_chunked(bytes: &[u8], chunk: usize) -> Outcome {
        outcome(read_plan(
            "plan.csv",
            BufReader::with_capacity(chunk, bytes),
        ))
    }

    /// Plans that exercise every path of the reader: line endings split across reads, quoted
    /// fields over several lines, BOM, UTF-16, bad bytes, blank lines, unclosed quotes.
    fn tricky_plans() -> Vec<Vec<u8>> {
        let mut plans: Vec<Vec<u8>> = [
            "",
            "\r\n\r\n",
            "account,action,target\n",
            "account,action,target\r\na,restore-all-vms,on\r\nb,restore-all-vms,off\r\n",
            "account,action,target\ra,restore-all-vms,on\rb,restore-all-vms,on\r\r\rc,frob,x\r",
            "\n\n;;;\naccount;action;target;comment\n\na;restore-all-vms;on;\"x\r\ny\"\nb;restore-all-vms;on;\"\"\"q\"\"\"\n",
            "account,action,target,comment\na,restore-all-vms,on,\"oops\nb,restore-all-vms,on,\n",
            "account,\"action,target\na,b,c\n",
            "\"account\nx\",action,target\na,restore-all-vms,on\n",
            "account,action,target,comment\na,restore-all-vms,on, \"x,\ny\"tail\nb,restore-all-vms,o\"n\n",
            "account,action,target\nTECH\\a,add-account,User\nTECH\\a,delete-account,\ntech\\A,add-account,User\n",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        plans.push(b"account,action,target,comment\nTECH\\m\xfcller,assign-role,Portal User,\na,frobnicate,x,\r\nb,restore-all-vms,on,\"Gr\xfc\n\xdfe\"\n".to_vec());
        plans.push(b"\xEF\xBB\xBFaccount;action;target\r\na;restore-all-vms;on\r\n".to_vec());
        plans.push(b"\xFF\xFEa\x00,\x00b\x00\n\x00".to_vec());
        plans.push(b"\xEF\xBB\xBF\xFF\n".to_vec());
        plans.push(b"\xEF\xBB\xBF".to_vec());
        plans.push(b"\r".to_vec());
        // Past the limits: a long line, a quote open over too many lines, in the header too.
        let mut long = b"account,action,target\r\na,restore-all-vms,on\r\n".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_RECORD_BYTES));
        plans.push(long);
        let mut open = b"account,action,target\r\na,\"restore-all-vms\r\n".to_vec();
        open.extend(b"\r\n".repeat(MAX_RECORD_LINES as usize));
        plans.push(open);
        let mut header = b"\r\naccount;action;\"target\r".to_vec();
        header.extend(b"\r\n".repeat(MAX_RECORD_LINES as usize));
        plans.push(header);
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
        for dir in [root.clone(), root.join("bad")] {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "csv") {
                    plans.push(std::fs::read(path).unwrap());
                }
            }
        }
        plans
    }

    #[test]
    fn a_reader_that_hands_out_a_few_bytes_at_a_time_reads_the_same_plan() {
        for bytes in tricky_plans() {
            let whole = outcome(parse("plan.csv", &bytes));
            for chunk in [1, 2, 3, 5, 8] {
                assert_eq!(
                    parse_chunked(&bytes, chunk),
                    whole,
                    "chunk {chunk}: {}",
                    String::from_utf8_lossy(&bytes)
                );
            }
        }
    }

    /// Writes `text` to a temporary file and checks it.
    fn checked(text: &[u8]) -> (tempfile::TempDir, PathBuf, Result<PlanFile, PlanErrors>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.csv");
        std::fs::write(&path, text).unwrap();
        let result = check(&path);
        (dir, path, result)
    }

    #[test]
    fn check_sums_up_the_plan_and_rows_reads_it_again() {
        let text = format!(
            "account,action,target,object_name\n\
             TECH\\new,add-account,user,\n\
             TECH\\new,assign-role,Portal User,\n\
             TECH\\new,add-scope,{REF},Finance-RP\n\
             \n\
             {G1},restore-all-vms,off,\n\
             TECH\\leaver,delete-account,,\n\
             {G2},remove-role,{ROLE},\n\
             TECH\\other,delete-account,Confirm,\n"
        );
        let (_dir, path, result) = checked(text.as_bytes());
        let plan = result.unwrap();
        let parsed = parse(&path.display().to_string(), text.as_bytes()).unwrap();
        assert_eq!(plan.file, path.display().to_string());
        assert_eq!(plan.path, path);
        assert_eq!(plan.sha256, parsed.sha256);
        assert_eq!(plan.rows, 7);
        assert_eq!(
            plan.actions,
            Actions {
                add_account: 1,
                delete_account: 2,
                assign_role: 1,
                remove_role: 1,
                add_scope: 1,
                remove_scope: 0,
                restore_all_vms: 1,
            }
        );
        assert_eq!(plan.actions.total(), plan.rows);
        assert_eq!(plan.delete_lines, [7, 9]);
        let rows: Vec<PlanRow> = plan.rows().unwrap().map(Result::unwrap).collect();
        assert_eq!(rows, parsed.rows);
    }

    #[test]
    fn check_reports_what_load_reports() {
        for bytes in tricky_plans() {
            let (_dir, path, result) = checked(&bytes);
            let loaded = load(&path);
            match (result, loaded) {
                (Ok(plan), Ok(loaded)) => {
                    assert_eq!(plan.rows, loaded.rows.len() as u64);
                    assert_eq!(plan.sha256, loaded.sha256);
                }
                (Err(a), Err(b)) => assert_eq!(a, b),
                (a, b) => panic!("check {a:?} but load {b:?}"),
            }
        }
        let missing = Path::new("/nonexistent/plan.csv");
        assert_eq!(check(missing).unwrap_err(), load(missing).unwrap_err());
    }

    #[test]
    fn rows_refuse_a_plan_changed_since_it_was_checked() {
        let text = "account,action,target,comment\na,restore-all-vms,on,\nb,restore-all-vms,off,\n";
        let (_dir, path, result) = checked(text.as_bytes());
        let plan = result.unwrap();

        // Still valid, but not the plan that was checked: every row comes, then the refusal.
        std::fs::write(&path, text.replace("off,", "off,changed")).unwrap();
        let items: Vec<_> = plan.rows().unwrap().collect();
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok());
        let err = items[2].as_ref().unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].line, 0);
        assert_eq!(err.0[0].file, plan.file);
        assert!(
            err.0[0]
                .message
                .starts_with("the plan changed since it was checked (its SHA-256 was "),
            "{err}"
        );

        // A row that no longer validates stops the rows at once.
        std::fs::write(&path, text.replace("b,restore-all-vms", "b,frobnicate")).unwrap();
        let mut rows = plan.rows().unwrap();
        assert!(rows.next().unwrap().is_ok());
        let err = rows.next().unwrap().unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].line, 3);
        assert!(err.0[0].message.starts_with("unknown action 'frobnicate'"));
        assert!(rows.next().is_none());

        std::fs::remove_file(&path).unwrap();
        let err = plan.rows().err().unwrap();
        assert!(err.0[0].message.starts_with("cannot read the plan: "));

        fn send<T: Send>(_: &T) {}
        std::fs::write(&path, text).unwrap();
        let rows = plan.rows().unwrap();
        send(&rows);
        assert_eq!(rows.filter(Result::is_ok).count(), 2);
    }

    mod streaming {
        use super::*;
        use proptest::prelude::*;

        /// Lines of every kind, valid and not, over few accounts so that duplicates,
        /// contradictions and account checks come up.
        fn line() -> impl Strategy<Value = Vec<u8>> {
            // A few fixed accounts make duplicates and contradictions; many others let
            // plans pass.
            let account = prop_oneof![
                proptest::sample::select(vec!["TECH\\a", "tech\\A", "TECH\\b", G1, "\"TECH\\c\""])
                    .prop_map(String::from),
                (0..200u32).prop_map(|n| format!("TECH\\u{n}")),
            ];
            let action = prop_oneof![
                12 => proptest::sample::select(vec![
                    "assign-role,Portal User,",
                    "remove-role,portal user,",
                    "restore-all-vms,on,",
                    "restore-all-vms,off,",
                    "add-scope,urn:VMware:ResourcePool:r.resgroup-1,\"RP\nEast\"",
                    "remove-scope,Old-RP,",
                ]),
                1 => proptest::sample::select(vec!["add-account,User,", "delete-account,,"]),
            ];
            let comment = prop_oneof![
                12 => proptest::sample::select(vec![
                    "",
                    "c",
                    "\"a,\"\"b\"\"\r\nc\"",
                    " \"x\"y",
                    "M\u{fc}ller",
                ]),
                1 => Just("\"open"),
            ];
            prop_oneof![
                12 => (account, action, comment).prop_map(|(a, x, c)| format!("{a},{x},{c}").into_bytes()),
                1 => Just(Vec::new()),
                1 => Just(b",,,,".to_vec()),
                1 => Just(b"TECH\\e,frobnicate,x,,".to_vec()),
                1 => Just(b"TECH\\d,assign-role,Portal User,,M\xfcller".to_vec()),
            ]
        }

        fn plan() -> impl Strategy<Value = Vec<u8>> {
            let eol = proptest::sample::select(vec!["\n", "\r\n", "\r"]);
            (
                any::<bool>(),
                proptest::collection::vec((line(), eol), 0..12),
                any::<bool>(),
            )
                .prop_map(|(bom, lines, last_eol)| {
                    let mut bytes = Vec::new();
                    if bom {
                        bytes.extend_from_slice(records::BOM);
                    }
                    bytes.extend_from_slice(b"account,action,target,object_name,comment\n");
                    let count = lines.len();
                    for (i, (line, eol)) in lines.into_iter().enumerate() {
                        bytes.extend_from_slice(&line);
                        if i + 1 < count || last_eol {
                            bytes.extend_from_slice(eol.as_bytes());
                        }
                    }
                    bytes
                })
        }

        proptest! {
            #[test]
            fn check_and_rows_agree_with_parse(bytes in plan()) {
                let (_dir, path, checked) = checked(&bytes);
                let name = path.display().to_string();
                let parsed = parse(&name, &bytes);
                prop_assert_eq!(parse_chunked(&bytes, 1), outcome(parse("plan.csv", &bytes)));
                match (checked, parsed) {
                    (Ok(file), Ok(plan)) => {
                        prop_assert_eq!(file.rows, plan.rows.len() as u64);
                        prop_assert_eq!(&file.sha256, &plan.sha256);
                        let mut actions = Actions::default();
                        for row in &plan.rows {
                            actions.count(&row.action);
                        }
                        prop_assert_eq!(file.actions, actions);
                        let rows: Result<Vec<PlanRow>, PlanErrors> = file.rows().unwrap().collect();
                        prop_assert_eq!(rows.unwrap(), plan.rows);
                    }
                    (Err(a), Err(b)) => prop_assert_eq!(a, b),
                    (a, b) => prop_assert!(false, "check {:?} but parse {:?}", a, b),
                }
            }
        }
    }

    mod roundtrip {
        use super::*;
        use proptest::prelude::*;

        /// Free text that exercises quoting: delimiters, quotes and line breaks.
        fn text() -> impl Strategy<Value = String> {
            proptest::string::string_regex("[a-zA-Z0-9 ,;\t\"\r\nÄé-]{0,12}")
                .unwrap()
                .prop_map(|s| s.trim().to_string())
        }

        fn action() -> impl Strategy<Value = Action> {
            let role = prop_oneof![
                any::<u128>().prop_map(|n| RoleRef::Id(Uuid::from_u128(n))),
                proptest::sample::select(vec![
                    "Portal User",
                    "VM Restore Operator",
                    "SQL Restore Operator"
                ])
                .prop_map(|n| RoleRef::Name(n.into())),
            ];
            prop_oneof![
                role.clone().prop_map(Action::AssignRole),
                role.prop_map(Action::RemoveRole),
                ("[a-z]{1,8}", 1u32..1000, "[A-Za-z][A-Za-z0-9 ,-]{0,10}").prop_map(
                    |(root, n, name)| Action::AddScope {
                        obj_ref: format!("urn:VMware:ResourcePool:{root}.resgroup-{n}"),
                        object_name: name.trim().to_string() + "x",
                    }
                ),
                any::<u128>().prop_map(|n| Action::RemoveScope(ScopeRef::Id(Uuid::from_u128(n)))),
                "[A-Z][a-z]{0,8}".prop_map(|n| Action::RemoveScope(ScopeRef::Name(n))),
                any::<bool>().prop_map(Action::RestoreAllVms),
            ]
        }

        fn quote(field: &str, delimiter: char) -> String {
            if field.contains([delimiter, '"', '\r', '\n']) {
                format!("\"{}\"", field.replace('"', "\"\""))
            } else {
                field.to_string()
            }
        }

        proptest! {
            #[test]
            fn any_valid_plan_parses_back_to_its_rows(
                rows in proptest::collection::vec((action(), text(), text(), any::<bool>()), 1..20),
                delimiter in proptest::sample::select(vec![',', ';', '\t']),
                crlf in any::<bool>(),
                bom in any::<bool>(),
                blank_every in 0usize..4,
            ) {
                let eol = if crlf { "\r\n" } else { "\n" };
                let d = delimiter.to_string();
                let mut csv = String::new();
                if bom {
                    csv.push('\u{feff}');
                }
                csv.push_str(&["account", "action", "target", "object_name", "ticket", "comment"].join(&d));
                csv.push_str(eol);
                let mut line = 2u64;
                let mut expected = Vec::new();
                for (i, (action, ticket, comment, by_id)) in rows.iter().enumerate() {
                    if blank_every > 0 && i % blank_every == 0 {
                        csv.push_str(eol);
                        line += 1;
                    }
                    // One account per row keeps the plan free of duplicates and contradictions.
                    let account = if *by_id {
                        AccountRef::Id(Uuid::from_u128(i as u128 + 1))
                    } else {
                        AccountRef::Name(format!("TECH\\user{i}"))
                    };
                    let account_text = match &account {
                        AccountRef::Id(id) => format!("urn:veeam:EnterpriseAccount:{id}"),
                        AccountRef::Name(n) => n.clone(),
                    };
                    let object_name = match action {
                        Action::AddScope { object_name, .. } => object_name.clone(),
                        _ => String::new(),
                    };
                    let fields = [account_text, action.name().to_string(), action.target_text(), object_name, ticket.clone(), comment.clone()];
                    let record: Vec<String> = fields.iter().map(|f| quote(f, delimiter)).collect();
                    let record = record.join(&d);
                    csv.push_str(&record);
                    csv.push_str(eol);
                    expected.push(PlanRow {
                        line,
                        account,
                        action: action.clone(),
                        ticket: Some(ticket.clone()).filter(|t| !t.is_empty()),
                        comment: Some(comment.clone()).filter(|c| !c.is_empty()),
                        annotations: Vec::new(),
                    });
                    line += 1 + record.matches('\n').count() as u64 + record.matches('\r').count() as u64
                        - record.matches("\r\n").count() as u64;
                }
                let plan = parse("p.csv", csv.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{csv}")))?;
                prop_assert_eq!(plan.rows, expected);
            }
        }
    }

    /// Times the check of a generated 1,000,000-row plan. Run with
    /// `cargo test --lib plan::scan::tests::bench -- --ignored --nocapture`.
    #[test]
    #[ignore = "a benchmark; run it explicitly"]
    fn bench_one_million_rows() {
        let mut csv =
            String::from("account,action,target,object_name,ticket,comment,requested_by\n");
        for i in 0..1_000_000u32 {
            match i % 5 {
                0 => csv.push_str(&format!("TECH\\user{i:07},assign-role,Portal User,,CHG-{},onboarding,HR\n", i / 100)),
                1 => csv.push_str(&format!(
                    "urn:veeam:EnterpriseAccount:{},remove-role,urn:veeam:EnterpriseRole:{ROLE},,CHG-{},,\n",
                    Uuid::from_u128(u128::from(i))
                , i / 100)),
                2 => csv.push_str(&format!(
                    "TECH\\user{i:07},add-scope,urn:VMware:ResourcePool:11111111-2222-3333-4444-555555555555.resgroup-{i},\"RP {i}, east\",,,\n"
                )),
                3 => csv.push_str(&format!("TECH\\user{i:07},remove-scope,Old-RP,,,\"left, see \"\"HR\"\"\",\n")),
                _ => csv.push_str(&format!("TECH\\user{i:07},restore-all-vms,off,,,,\n")),
            }
        }
        let started = std::time::Instant::now();
        let plan = parse("big.csv", csv.as_bytes()).unwrap();
        let elapsed = started.elapsed();
        assert_eq!(plan.rows.len(), 1_000_000);
        eprintln!(
            "parsed {} rows ({} MB) in {:.2?} ({} build)",
            plan.rows.len(),
            csv.len() / 1_000_000,
            elapsed,
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
    }
}
