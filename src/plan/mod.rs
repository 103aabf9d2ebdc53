//! Change plans: CSV bytes → validated change rows, with every problem reported as
//! `FILE:LINE: message`. Pure: no network, no SQLite, no I/O beyond reading the file it is
//! given.
//!
//! Line numbers are the physical lines an editor shows: the header is line 1 and blank lines
//! count.
//!
//! Validation runs in one streaming pass over the file: `records` reads it line by line
//! (hashing every byte) and gathers the lines of each record, the header decides which column
//! is which, `cells` gives each cell its meaning, and `checks` compares each valid row with the
//! rows before it. Every problem is collected; a plan is accepted only when there is none.
//!
//! Two ways in share that pass. [`load`] and [`parse`] keep every row in a [`Plan`]. [`check`]
//! keeps none: it holds only the tables of the checks across rows, returns a [`PlanFile`]
//! summary, and [`PlanFile::rows`] reads the rows again one at a time, refusing a file that
//! changed since it was checked. A plan of a million rows is checked in well under 100 MiB.

mod cells;
mod checks;
mod recorded;
mod records;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::em::AccountType;
use crate::text;

use cells::{Kind, quoted};
use checks::Tracker;
use records::{DelimiterDetector, Line, LineReader, QuoteState, RecordInfo, Records};

pub use recorded::{RecordedColumns, recorded_row};

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

/// How a row names its account.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AccountRef {
    /// A GUID (bare or from `urn:veeam:EnterpriseAccount:<guid>`).
    Id(Uuid),
    /// A name such as `TECH\alice`, resolved through `GET /security/accounts`.
    Name(String),
}

/// How a row names a role.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RoleRef {
    /// A GUID (bare or from `urn:veeam:EnterpriseRole:<guid>`).
    Id(Uuid),
    /// A role name such as `Portal User`, matched case-insensitively.
    Name(String),
}

/// How a row names a scope to remove.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ScopeRef {
    /// The scope's GUID.
    Id(Uuid),
    /// The scope's (object) name.
    Name(String),
}

/// What a row does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `assign-role`
    AssignRole(RoleRef),
    /// `remove-role`
    RemoveRole(RoleRef),
    /// `add-scope`: a hierarchy object ref and its display name.
    AddScope {
        /// `urn:<Platform>:<Type>:<root>.<ref>`
        obj_ref: String,
        /// The object's display name (`object_name` column).
        object_name: String,
    },
    /// `remove-scope`
    RemoveScope(ScopeRef),
    /// `restore-all-vms`: on or off.
    RestoreAllVms(bool),
    /// `add-account`: create the account (named in the account column) with this type. The
    /// same account's assign-role, restore-all-vms and add-scope rows go into its create request.
    AddAccount(AccountType),
    /// `delete-account`: remove the account from EM (its full state is recorded first).
    DeleteAccount,
}

impl Action {
    /// The action's name as plans spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Action::AssignRole(_) => "assign-role",
            Action::RemoveRole(_) => "remove-role",
            Action::AddScope { .. } => "add-scope",
            Action::RemoveScope(_) => "remove-scope",
            Action::RestoreAllVms(_) => "restore-all-vms",
            Action::AddAccount(_) => "add-account",
            Action::DeleteAccount => "delete-account",
        }
    }

    /// The target as text (normalised: GUIDs lower-case, `on`/`off` for the flag).
    pub fn target_text(&self) -> String {
        match self {
            Action::AssignRole(RoleRef::Id(id)) | Action::RemoveRole(RoleRef::Id(id)) => {
                id.to_string()
            }
            Action::AssignRole(RoleRef::Name(name)) | Action::RemoveRole(RoleRef::Name(name)) => {
                name.clone()
            }
            Action::AddScope { obj_ref, .. } => obj_ref.clone(),
            Action::RemoveScope(ScopeRef::Id(id)) => id.to_string(),
            Action::RemoveScope(ScopeRef::Name(name)) => name.clone(),
            Action::RestoreAllVms(true) => "on".into(),
            Action::RestoreAllVms(false) => "off".into(),
            Action::AddAccount(kind) => kind.as_str().into(),
            Action::DeleteAccount => "confirm".into(),
        }
    }
}

/// One validated plan row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanRow {
    /// The physical line in the file (header = 1).
    pub line: u64,
    /// The account.
    pub account: AccountRef,
    /// The action and its target.
    pub action: Action,
    /// The change ticket, if given.
    pub ticket: Option<String>,
    /// A free-text comment, if given.
    pub comment: Option<String>,
    /// Extra columns (header, value), kept in the audit log; empty values left out.
    pub annotations: Vec<(String, String)>,
}

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

/// One problem in a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError {
    /// The file name.
    pub file: String,
    /// The physical line (0 when the problem is the file as a whole, e.g. unreadable).
    pub line: u64,
    /// What is wrong, as a lowercase fragment.
    pub message: String,
}

impl std::fmt::Display for PlanError {
    /// `FILE:LINE: message`, with control characters escaped: messages quote cells, and a
    /// cell (or a file name) may hold a terminal escape sequence.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = text::printable(&self.file);
        let message = text::printable(&self.message);
        if self.line == 0 {
            write!(f, "{file}: {message}")
        } else {
            write!(f, "{file}:{}: {message}", self.line)
        }
    }
}

/// Every problem found in a plan, in line order. Displayed one per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct PlanErrors(pub Vec<PlanError>);

impl std::fmt::Display for PlanErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// How many rows of each action a plan holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Actions {
    /// `add-account` rows.
    pub add_account: u64,
    /// `delete-account` rows.
    pub delete_account: u64,
    /// `assign-role` rows.
    pub assign_role: u64,
    /// `remove-role` rows.
    pub remove_role: u64,
    /// `add-scope` rows.
    pub add_scope: u64,
    /// `remove-scope` rows.
    pub remove_scope: u64,
    /// `restore-all-vms` rows.
    pub restore_all_vms: u64,
}

impl Actions {
    /// Counts one row of `action`.
    pub fn count(&mut self, action: &Action) {
        let n = match action {
            Action::AddAccount(_) => &mut self.add_account,
            Action::DeleteAccount => &mut self.delete_account,
            Action::AssignRole(_) => &mut self.assign_role,
            Action::RemoveRole(_) => &mut self.remove_role,
            Action::AddScope { .. } => &mut self.add_scope,
            Action::RemoveScope(_) => &mut self.remove_scope,
            Action::RestoreAllVms(_) => &mut self.restore_all_vms,
        };
        *n += 1;
    }

    /// Every row counted.
    pub fn total(&self) -> u64 {
        self.add_account
            + self.delete_account
            + self.assign_role
            + self.remove_role
            + self.add_scope
            + self.remove_scope
            + self.restore_all_vms
    }
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
        Ok(self.rows_from(open(&self.path, &self.file)?))
    }

    /// The rows read again from `reader` instead of the file, as [`rows`](Self::rows) reads
    /// them; for the fuzz target, which has bytes and no file.
    pub(crate) fn rows_from<R: BufRead>(&self, reader: R) -> PlanRows<R> {
        PlanRows {
            scanner: Scanner::new(&self.file, reader, None, true),
            sha256: self.sha256.clone(),
            done: false,
        }
    }
}

/// The rows of a checked plan, read again from its file; see [`PlanFile::rows`]. Holds a read
/// buffer and the current record, whatever the size of the plan.
pub struct PlanRows<R = BufReader<File>> {
    scanner: Scanner<R>,
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
        if let Some(row) = self.scanner.next_row() {
            return Some(Ok(row));
        }
        self.done = true;
        let now = self.scanner.lines.sha256();
        let file = self.scanner.problems.file.clone();
        match std::mem::take(&mut self.scanner.problems).into_result() {
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

/// Validates the plan at `path` in one streaming pass, holding no rows: only the tables of
/// the checks across rows and the problems found. The result says what the plan holds;
/// [`PlanFile::rows`] reads the rows themselves.
pub fn check(path: &Path) -> Result<PlanFile, PlanErrors> {
    let file = path.display().to_string();
    let reader = open(path, &file)?;
    check_reader(file, path, reader)
}

/// [`check`] of the plan `reader` reads, naming it `file` and recording `path` as where it
/// is read again from.
pub(crate) fn check_reader<R: BufRead>(
    file: String,
    path: &Path,
    reader: R,
) -> Result<PlanFile, PlanErrors> {
    let mut scanner = Scanner::new(&file, reader, Some(Tracker::default()), false);
    let mut rows = 0;
    let mut actions = Actions::default();
    let mut delete_lines = Vec::new();
    while let Some(row) = scanner.next_row() {
        rows += 1;
        actions.count(&row.action);
        if row.action == Action::DeleteAccount {
            delete_lines.push(row.line);
        }
    }
    let sha256 = scanner.lines.sha256();
    scanner.problems.into_result()?;
    Ok(PlanFile {
        file,
        path: path.to_path_buf(),
        sha256,
        rows,
        actions,
        delete_lines,
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
pub(crate) fn read_plan<R: BufRead>(file: &str, reader: R) -> Result<Plan, PlanErrors> {
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

/// The plan file at `path`, buffered for reading line by line. Only a regular file is a plan:
/// a plan is read twice (checked, then its rows read again and compared by hash), which a pipe
/// cannot be, and a device such as `/dev/zero` or `/dev/urandom` never ends.
fn open(path: &Path, file: &str) -> Result<BufReader<File>, PlanErrors> {
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
    // A larger buffer than the default 8 KiB halves the read calls on a large plan and costs
    // nothing that matters.
    Ok(BufReader::with_capacity(64 * 1024, handle))
}

/// The problems found so far.
#[derive(Default)]
struct Problems {
    file: String,
    list: Vec<PlanError>,
}

impl Problems {
    fn add(&mut self, line: u64, message: String) {
        self.list.push(PlanError {
            file: self.file.clone(),
            line,
            message,
        });
    }

    /// `Ok` when nothing was found; otherwise every problem, in line order.
    fn into_result(mut self) -> Result<(), PlanErrors> {
        if self.list.is_empty() {
            return Ok(());
        }
        // A stable sort keeps the problems of one line in the order they were found.
        self.list.sort_by_key(|p| p.line);
        Err(PlanErrors(self.list))
    }
}

/// How far a [`Scanner`] has read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Nothing read yet.
    Start,
    /// The header is read; rows follow.
    Rows,
    /// Nothing more to read: the end of the file, or a problem that stops the reading.
    Done,
}

/// Why a [`Scanner`] stopped before the end of the file.
enum Halt {
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
struct PendingLine {
    line: u64,
    /// The line's text, its terminator included.
    text: String,
    /// The line's length in the file, in bytes.
    raw_len: usize,
    /// Whether the line held bytes that are not UTF-8.
    bad: bool,
}

/// The lines of one record, gathered into [`Scanner::record`].
#[derive(Clone, Copy)]
struct Gathered {
    /// The record's first physical line.
    first: u64,
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
struct Scanner<R> {
    lines: LineReader<R>,
    problems: Problems,
    /// The checks across rows; `None` when only single rows are checked.
    tracker: Option<Tracker>,
    /// Whether to stop at the first problem, as a second reading of a checked plan does.
    stop_at_problem: bool,
    stage: Stage,
    delimiter: u8,
    header: Option<Header>,
    /// Lines read while the delimiter was looked for, not yet split into records.
    pending: VecDeque<PendingLine>,
    /// The text of the current record.
    record: String,
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

    /// Reads up to the header and the header itself: the encoding, the delimiter, the columns.
    fn read_header(&mut self) -> Result<(), Halt> {
        self.stage = Stage::Done;
        let Some(mut line) = self.next_physical(MAX_RECORD_BYTES)? else {
            self.problems
                .add(0, "the plan has no rows: the file is empty".into());
            return Ok(());
        };
        // Excel's "Unicode Text" export is UTF-16; read as UTF-8 every line of it would be
        // reported, so it gets one message that says what to do instead.
        let raw = self.lines.raw();
        if raw.starts_with(b"\xFF\xFE") || raw.starts_with(b"\xFE\xFF") {
            self.problems.add(
                0,
                "the plan is UTF-16 text; save it as UTF-8 (\"CSV UTF-8\" in Excel)".into(),
            );
            return Ok(());
        }

        // The delimiter decides where records end, so the lines up to the header are read
        // ahead and kept until it is known. They are held in memory, so together they get the
        // budget of one record: blank lines before the header count against it.
        let mut detector = DelimiterDetector::default();
        let mut held = 0;
        let mut header_start = None;
        loop {
            let number = match line {
                Line::Whole(number) => number,
                Line::TooLong(number) => {
                    // The start of the line that went past the limit may start the header,
                    // and with the header's lines before it says whether a quote is open.
                    let mut raw = self.lines.raw();
                    if number == 1 {
                        raw = raw.strip_prefix(records::BOM).unwrap_or(raw);
                    }
                    let cut = String::from_utf8_lossy(raw).into_owned();
                    detector.feed(cut.as_bytes());
                    if detector.in_header() {
                        header_start.get_or_insert(number);
                    }
                    let Some(first) = header_start else {
                        self.problems.add(
                            number,
                            format!(
                                "no header within the first {}: only blank lines so far; is \
                                 this a CSV plan? reading stopped here",
                                bytes_limit()
                            ),
                        );
                        return Err(Halt::Limit);
                    };
                    self.delimiter = detector.delimiter();
                    self.record.clear();
                    for p in self.pending.iter().filter(|p| p.line >= first) {
                        self.record.push_str(&p.text);
                    }
                    self.record.push_str(&cut);
                    return Err(self.overlong(first, &bytes_limit()));
                }
            };
            let mut text = String::new();
            let bad = self.decode(number, &mut text);
            let done = detector.feed(text.as_bytes());
            held += self.lines.raw().len();
            self.pending.push_back(PendingLine {
                line: number,
                text,
                raw_len: self.lines.raw().len(),
                bad,
            });
            if detector.in_header() {
                let first = *header_start.get_or_insert(number);
                if !done && number - first + 1 >= MAX_RECORD_LINES {
                    self.delimiter = detector.delimiter();
                    self.record.clear();
                    for p in self.pending.iter().filter(|p| p.line >= first) {
                        self.record.push_str(&p.text);
                    }
                    return Err(self.overlong(first, &lines_limit()));
                }
            }
            if done {
                break;
            }
            match self.next_physical(MAX_RECORD_BYTES - held)? {
                Some(next) => line = next,
                None => break,
            }
        }
        self.delimiter = detector.delimiter();

        loop {
            let Some(gathered) = self.gather()? else {
                self.problems.add(
                    0,
                    "the plan has no rows: the file holds nothing but blank lines".into(),
                );
                return Ok(());
            };
            let mut fields = Vec::new();
            let Some(info) =
                first_record(&self.record, self.delimiter, gathered.first, &mut fields)
            else {
                continue;
            };
            if info.unterminated.is_none() && records::is_blank(&fields) {
                continue;
            }
            if let Some(at) = info.unterminated {
                // The open quote swallowed the rest of the file, so there is nothing else to
                // read.
                self.problems.add(at, UNTERMINATED.into());
                return Ok(());
            }
            let width = header_width(&fields);
            if width > MAX_COLUMNS {
                // Every annotation column is copied into each row's record, so a header this
                // wide would multiply the work and the log with every row.
                self.problems.add(
                    info.line,
                    format!(
                        "the header has {width} columns, more than the {MAX_COLUMNS} a plan may \
                         have; is this a plan? reading stopped here"
                    ),
                );
                return Err(Halt::Limit);
            }
            self.header = Some(Header::read(
                &fields,
                info.line,
                self.delimiter,
                &mut self.problems,
            ));
            self.stage = Stage::Rows;
            return Ok(());
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
    fn gather(&mut self) -> Result<Option<Gathered>, Halt> {
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
    fn overlong(&mut self, first: u64, limit: &str) -> Halt {
        let mut fields = Vec::new();
        let open = first_record(&self.record, self.delimiter, first, &mut fields)
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
    fn next_physical(&mut self, max: usize) -> Result<Option<Line>, Halt> {
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
    fn decode(&mut self, line: u64, into: &mut String) -> bool {
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
fn first_record<'t>(
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
fn bytes_limit() -> String {
    format!("{} KiB", MAX_RECORD_BYTES / 1024)
}

/// [`MAX_RECORD_LINES`] as messages say it.
fn lines_limit() -> String {
    format!("{MAX_RECORD_LINES} lines")
}

const UNTERMINATED: &str =
    "unterminated quoted field: the quote opened on this line is never closed";

/// The columns a plan knows by name. The discriminants index `Known::ALL` and the header's
/// per-column tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    Account = 0,
    Action = 1,
    Target = 2,
    ObjectName = 3,
    Ticket = 4,
    Comment = 5,
}

impl Known {
    /// Every known column, in discriminant order: its name and whether the plan must have it.
    const ALL: [(Known, &'static str, bool); 6] = [
        (Known::Account, "account", true),
        (Known::Action, "action", true),
        (Known::Target, "target", true),
        (Known::ObjectName, "object_name", false),
        (Known::Ticket, "ticket", false),
        (Known::Comment, "comment", false),
    ];
}

/// What one header cell makes of its column.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Column {
    Known(Known),
    /// Any other name: kept with each row as an annotation.
    Annotation(String),
    /// An empty header cell between named ones.
    Unnamed,
}

/// The number of columns a header's `fields` make: up to the last named one, since
/// spreadsheets export empty cells after it.
fn header_width(fields: &[Cow<'_, str>]) -> usize {
    fields
        .iter()
        .rposition(|f| !f.trim().is_empty())
        .map_or(0, |i| i + 1)
}

/// The header: which column is which.
struct Header {
    /// The columns up to the last named one; empty header cells after it are ignored.
    columns: Vec<Column>,
    /// The column holding each known name, in `Known::ALL` order; `None` when the name is
    /// missing or given twice, so that no row is read from a column that cannot be trusted.
    index: [Option<usize>; 6],
    /// Whether each known name appears at all.
    present: [bool; 6],
    delimiter: u8,
}

/// A header name folded for matching: trimmed, lower-case, with spaces and dashes read as
/// underscores (spreadsheet users write `Object Name` as often as `object_name`).
fn fold_name(name: &str) -> String {
    name.trim()
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == ' ' || c == '-' { '_' } else { c })
        .collect()
}

impl Header {
    /// Reads the header record on `line`, reporting every problem with it.
    fn read(fields: &[Cow<'_, str>], line: u64, delimiter: u8, problems: &mut Problems) -> Header {
        let width = header_width(fields);
        let mut header = Header {
            columns: Vec::with_capacity(width),
            index: [None; 6],
            present: [false; 6],
            delimiter,
        };
        let mut duplicated = [false; 6];
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (i, field) in fields[..width].iter().enumerate() {
            let name = field.trim();
            if name.is_empty() {
                header.columns.push(Column::Unnamed);
                continue;
            }
            let folded = fold_name(name);
            let known = Known::ALL.iter().position(|(_, n, _)| *n == folded);
            if let Some(first) = seen.get(&folded) {
                problems.add(
                    line,
                    format!(
                        "duplicate column {} (columns {} and {})",
                        quoted(name),
                        first + 1,
                        i + 1
                    ),
                );
                if let Some(k) = known {
                    duplicated[k] = true;
                }
            } else {
                seen.insert(folded, i);
                if let Some(k) = known {
                    header.index[k] = Some(i);
                    header.present[k] = true;
                }
            }
            header.columns.push(match known {
                Some(k) => Column::Known(Known::ALL[k].0),
                None => Column::Annotation(name.to_string()),
            });
        }
        for (k, dup) in duplicated.iter().enumerate() {
            if *dup {
                header.index[k] = None;
            }
        }

        let missing: Vec<&str> = Known::ALL
            .iter()
            .enumerate()
            .filter(|(k, (_, _, required))| *required && !header.present[*k])
            .map(|(_, (_, n, _))| *n)
            .collect();
        if missing.len() == 3 {
            problems.add(
                line,
                "missing required columns account, action and target: the first line must be a header \
                 such as account,action,target"
                    .into(),
            );
        } else {
            for name in missing {
                let hint = header
                    .columns
                    .iter()
                    .enumerate()
                    .find_map(|(i, c)| match c {
                        Column::Annotation(h)
                            if cells::distance_within(&fold_name(h), name, 2).is_some() =>
                        {
                            Some(format!(
                                " (column {} is {}; did you mean '{name}'?)",
                                i + 1,
                                quoted(h)
                            ))
                        }
                        _ => None,
                    });
                problems.add(
                    line,
                    format!(
                        "missing required column '{name}'{}",
                        hint.unwrap_or_default()
                    ),
                );
            }
        }
        header
    }

    /// The trimmed cell of known column `which`, or `None` when that column cannot be read.
    fn cell<'f>(&self, fields: &'f [Cow<'_, str>], which: Known) -> Option<&'f str> {
        self.index[which as usize].map(|i| fields.get(i).map_or("", |f| f.trim()))
    }

    /// Checks one data record, reporting each problem; the row when it has none.
    fn row(
        &self,
        line: u64,
        fields: &[Cow<'_, str>],
        tracker: Option<&mut Tracker>,
        problems: &mut Problems,
    ) -> Option<PlanRow> {
        let mut valid = true;
        let mut fail = |problems: &mut Problems, message: String| {
            valid = false;
            problems.add(line, message);
        };

        let width = self.columns.len();
        if let Some(last) = fields.iter().rposition(|f| !f.trim().is_empty())
            && last >= width
        {
            let delimiter = match self.delimiter {
                b'\t' => "a tab".to_string(),
                d => format!("'{}'", char::from(d)),
            };
            fail(
                problems,
                format!(
                    "too many cells: the header has {width} columns but this row has {} (the last is {}); \
                     a value that contains {delimiter} must be quoted",
                    last + 1,
                    quoted(fields[last].trim())
                ),
            );
        }
        for (i, column) in self.columns.iter().enumerate() {
            if *column == Column::Unnamed
                && let Some(value) = fields.get(i).map(|f| f.trim()).filter(|v| !v.is_empty())
            {
                fail(
                    problems,
                    format!(
                        "value {} in column {}, which has no header",
                        quoted(value),
                        i + 1
                    ),
                );
            }
        }

        let account = match self.cell(fields, Known::Account).map(cells::parse_account) {
            Some(Ok(account)) => Some(account),
            Some(Err(message)) => {
                fail(problems, message);
                None
            }
            None => None,
        };
        let kind = match self.cell(fields, Known::Action).map(cells::parse_kind) {
            Some(Ok(kind)) => Some(kind),
            Some(Err(message)) => {
                fail(problems, message);
                None
            }
            None => None,
        };
        let action =
            match kind.map(|kind| self.action(kind, self.cell(fields, Known::Target), fields)) {
                Some(Ok(action)) => action,
                Some(Err(messages)) => {
                    for m in messages {
                        fail(problems, m);
                    }
                    None
                }
                None => None,
            };
        let (Some(account), Some(action), true) = (account, action, valid) else {
            return None;
        };
        if matches!(action, Action::AddAccount(_)) && matches!(account, AccountRef::Id(_)) {
            problems.add(
                line,
                "add-account needs the new account's name (e.g. TECH\\alice), not a GUID".into(),
            );
            return None;
        }

        if let Some(tracker) = tracker {
            tracker.check(line, &account, &action, &mut |m| problems.add(line, m));
        }
        let text = |which| {
            self.cell(fields, which)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let annotations = self
            .columns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c {
                Column::Annotation(h) => fields
                    .get(i)
                    .map(|f| f.trim())
                    .filter(|v| !v.is_empty())
                    .map(|v| (h.clone(), v.to_string())),
                _ => None,
            })
            .collect();
        Some(PlanRow {
            line,
            account,
            action,
            ticket: text(Known::Ticket),
            comment: text(Known::Comment),
            annotations,
        })
    }

    /// The action of a row, from its kind and target (and object name for add-scope).
    /// `Ok(None)` when a column it needs cannot be read, which the header already reported.
    fn action(
        &self,
        kind: Kind,
        target: Option<&str>,
        fields: &[Cow<'_, str>],
    ) -> Result<Option<Action>, Vec<String>> {
        let one = |r: Result<Action, String>| r.map(Some).map_err(|m| vec![m]);
        let Some(target) = target else {
            // Without a target column an add-scope row can still be checked for its object
            // name; every other check needs the target.
            return match kind {
                Kind::AddScope => self.object_name(fields).map(|_| None).map_err(|m| vec![m]),
                _ => Ok(None),
            };
        };
        match kind {
            Kind::AssignRole => one(cells::parse_role(kind, target).map(Action::AssignRole)),
            Kind::RemoveRole => one(cells::parse_role(kind, target).map(Action::RemoveRole)),
            Kind::RemoveScope => one(cells::parse_scope(target).map(Action::RemoveScope)),
            Kind::RestoreAllVms => one(cells::parse_flag(target).map(Action::RestoreAllVms)),
            Kind::AddAccount => one(cells::parse_account_type(target).map(Action::AddAccount)),
            Kind::DeleteAccount => {
                one(cells::check_delete_target(target).map(|()| Action::DeleteAccount))
            }
            Kind::AddScope => {
                let checked_ref = cells::check_obj_ref(target);
                let object_name = self.object_name(fields);
                let messages: Vec<String> = [checked_ref.err(), object_name.clone().err()]
                    .into_iter()
                    .flatten()
                    .collect();
                if !messages.is_empty() {
                    return Err(messages);
                }
                Ok(object_name.ok().flatten().map(|name| Action::AddScope {
                    obj_ref: target.to_string(),
                    object_name: name.to_string(),
                }))
            }
        }
    }

    /// The object name of an add-scope row; `Ok(None)` when the column is given twice, which
    /// the header already reported.
    fn object_name<'f>(&self, fields: &'f [Cow<'_, str>]) -> Result<Option<&'f str>, String> {
        match self.cell(fields, Known::ObjectName) {
            Some("") => Err("add-scope needs an object_name (the scope's display name)".into()),
            Some(name) => cells::plain("object_name", name).map(|()| Some(name)),
            None if !self.present[Known::ObjectName as usize] => Err(
                "add-scope needs an object_name (the scope's display name), but the plan has no \
                 object_name column"
                    .into(),
            ),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    const G1: &str = "0f8e6a57-1c2b-4d3e-9f40-5a6b7c8d9e01";
    const G2: &str = "6c1d0e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f";
    const ROLE: &str = "d19a3d33-cb77-4ffe-94e6-001432483a4e";
    const REF: &str = "urn:VMware:ResourcePool:11111111-2222-3333-4444-555555555555.resgroup-12";

    fn ok(text: &str) -> Plan {
        parse("plan.csv", text.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Each problem as `LINE: message`.
    fn problems(bytes: &[u8]) -> Vec<String> {
        match parse("plan.csv", bytes) {
            Ok(plan) => panic!("accepted: {:?}", plan.rows),
            Err(e) => {
                e.0.iter()
                    .map(|p| format!("{}: {}", p.line, p.message))
                    .collect()
            }
        }
    }

    fn problems_of(text: &str) -> Vec<String> {
        problems(text.as_bytes())
    }

    fn uuid(s: &str) -> Uuid {
        Uuid::parse_str(s).unwrap()
    }

    #[test]
    fn accounts_are_added_and_deleted() {
        let plan = ok(&format!(
            "account,action,target,object_name\n\
             TECH\\new,add-account,user,\n\
             TECH\\new,assign-role,Portal User,\n\
             TECH\\new,add-scope,{REF},Finance-RP\n\
             TECH\\new,restore-all-vms,off,\n\
             TECH\\leaver,delete-account,,\n\
             TECH\\other,delete-account,Confirm,\n"
        ));
        assert_eq!(plan.rows[0].action, Action::AddAccount(AccountType::User));
        assert_eq!(plan.rows[4].action, Action::DeleteAccount);
        assert_eq!(plan.rows[5].action.target_text(), "confirm");
    }

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
    fn known_columns_are_listed_in_discriminant_order() {
        for (i, (k, _, _)) in Known::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
    }

    #[test]
    fn every_action_and_form_is_read() {
        let plan = ok(&format!(
            "account,action,target,object_name,ticket,comment,requested_by\n\
             TECH\\alice,assign-role,Portal User,,CHG-1,new starter,HR\n\
             {G1},remove-role,urn:veeam:EnterpriseRole:{ROLE},,CHG-1,,\n\
             urn:veeam:EnterpriseAccount:{},ASSIGN-ROLE,{},,,,\n\
             TECH\\bob,add-scope,{REF},Finance-RP,,,\n\
             TECH\\bob,remove-scope,Old-RP,,,,\n\
             TECH\\bob,remove-scope,{G1},,,,\n\
             TECH\\carol,restore-all-vms,Off,,,,\n",
            G2.to_uppercase(),
            ROLE.to_uppercase()
        ));
        assert_eq!(plan.file, "plan.csv");
        let got: Vec<(u64, AccountRef, Action)> = plan
            .rows
            .iter()
            .map(|r| (r.line, r.account.clone(), r.action.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    2,
                    AccountRef::Name("TECH\\alice".into()),
                    Action::AssignRole(RoleRef::Name("Portal User".into()))
                ),
                (
                    3,
                    AccountRef::Id(uuid(G1)),
                    Action::RemoveRole(RoleRef::Id(uuid(ROLE)))
                ),
                (
                    4,
                    AccountRef::Id(uuid(G2)),
                    Action::AssignRole(RoleRef::Id(uuid(ROLE)))
                ),
                (
                    5,
                    AccountRef::Name("TECH\\bob".into()),
                    Action::AddScope {
                        obj_ref: REF.into(),
                        object_name: "Finance-RP".into()
                    }
                ),
                (
                    6,
                    AccountRef::Name("TECH\\bob".into()),
                    Action::RemoveScope(ScopeRef::Name("Old-RP".into()))
                ),
                (
                    7,
                    AccountRef::Name("TECH\\bob".into()),
                    Action::RemoveScope(ScopeRef::Id(uuid(G1)))
                ),
                (
                    8,
                    AccountRef::Name("TECH\\carol".into()),
                    Action::RestoreAllVms(false)
                ),
            ]
        );
        let first = &plan.rows[0];
        assert_eq!(first.ticket.as_deref(), Some("CHG-1"));
        assert_eq!(first.comment.as_deref(), Some("new starter"));
        assert_eq!(
            first.annotations,
            vec![("requested_by".to_string(), "HR".to_string())]
        );
        // Empty optional cells are absent, not empty strings.
        assert_eq!(plan.rows[1].comment, None);
        assert_eq!(plan.rows[2].ticket, None);
        assert!(plan.rows[1].annotations.is_empty());
    }

    #[test]
    fn target_text_is_normalised() {
        let t = |a: Action| a.target_text();
        assert_eq!(
            t(Action::AssignRole(RoleRef::Id(uuid(&ROLE.to_uppercase())))),
            ROLE
        );
        assert_eq!(
            t(Action::RemoveRole(RoleRef::Name("Portal User".into()))),
            "Portal User"
        );
        assert_eq!(
            t(Action::AddScope {
                obj_ref: REF.into(),
                object_name: "x".into()
            }),
            REF
        );
        assert_eq!(t(Action::RemoveScope(ScopeRef::Id(uuid(G1)))), G1);
        assert_eq!(
            t(Action::RemoveScope(ScopeRef::Name("Old-RP".into()))),
            "Old-RP"
        );
        assert_eq!(t(Action::RestoreAllVms(true)), "on");
        assert_eq!(t(Action::RestoreAllVms(false)), "off");
        let plan = ok(&format!(
            "account,action,target\na,assign-role,urn:veeam:EnterpriseRole:{}\n",
            ROLE.to_uppercase()
        ));
        assert_eq!(plan.rows[0].action.target_text(), ROLE);
        let plan =
            ok("account,action,target\na,assign-role,  Portal User  \nb,restore-all-vms,YES\n");
        assert_eq!(plan.rows[0].action.target_text(), "Portal User");
        assert_eq!(plan.rows[1].action.target_text(), "on");
    }

    #[test]
    fn columns_match_case_insensitively_in_any_order_after_trimming() {
        let plan = ok(
            " Target ;ACTION; Account ;Object Name;Ticket\nFinance-RP;remove-scope;TECH\\bob;;T-9\n",
        );
        let row = &plan.rows[0];
        assert_eq!(row.account, AccountRef::Name("TECH\\bob".into()));
        assert_eq!(
            row.action,
            Action::RemoveScope(ScopeRef::Name("Finance-RP".into()))
        );
        assert_eq!(row.ticket.as_deref(), Some("T-9"));
        assert!(row.annotations.is_empty());
        let plan = ok(&format!(
            "account,action,target,object-name\na,add-scope,{REF},Finance\n"
        ));
        assert!(
            matches!(&plan.rows[0].action, Action::AddScope { object_name, .. } if object_name == "Finance")
        );
    }

    #[test]
    fn annotations_keep_their_header_as_written_and_skip_empty_values() {
        let plan = ok(
            "account,action,target,Requested By,cost centre\na,restore-all-vms,on,HR,\nb,restore-all-vms,on,,4711\n",
        );
        assert_eq!(
            plan.rows[0].annotations,
            vec![("Requested By".to_string(), "HR".to_string())]
        );
        assert_eq!(
            plan.rows[1].annotations,
            vec![("cost centre".to_string(), "4711".to_string())]
        );
    }

    #[test]
    fn a_spreadsheet_export_is_accepted_as_it_comes() {
        let bytes = b"\xEF\xBB\xBFaccount;action;target;object_name;comment;;\r\n\
                      TECH\\alice;assign-role;\"Portal User\";;\"said \"\"hi\"\"; twice\";;\r\n\
                      \r\n\
                      ;;;;;;\r\n\
                      TECH\\bob;restore-all-vms;off;;\"two\r\nlines\";;\r\n\
                      TECH\\carol;assign-role;VM Restore Operator;;;;\r\n";
        let plan = parse("x.csv", bytes).unwrap();
        assert_eq!(
            plan.rows.iter().map(|r| r.line).collect::<Vec<_>>(),
            [2, 5, 7]
        );
        assert_eq!(plan.rows[0].comment.as_deref(), Some("said \"hi\"; twice"));
        assert_eq!(plan.rows[1].comment.as_deref(), Some("two\r\nlines"));
        assert_eq!(plan.rows[0].account, AccountRef::Name("TECH\\alice".into()));
    }

    #[test]
    fn tab_delimited_plans_are_read() {
        let plan = ok(
            "account\taction\ttarget\tcomment\nTECH\\alice\tassign-role\tPortal User\tcomma, here\n",
        );
        assert_eq!(plan.rows[0].comment.as_deref(), Some("comma, here"));
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
    fn trailing_empty_columns_and_empty_header_cells_are_ignored() {
        let plan = ok(
            "account,action,target,,,\na,restore-all-vms,on,,,\nb,restore-all-vms,on,,,,,,,,\nc,restore-all-vms,on\n",
        );
        assert_eq!(plan.rows.len(), 3);
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
    fn utf16_is_refused_once_for_the_whole_file() {
        let utf16: Vec<u8> = "\u{feff}account\taction\ttarget\r\na\trestore-all-vms\ton\r\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(
            problems(&utf16),
            ["0: the plan is UTF-16 text; save it as UTF-8 (\"CSV UTF-8\" in Excel)"]
        );
    }

    #[test]
    fn missing_required_columns_are_refused_and_the_rest_is_still_checked() {
        assert_eq!(
            problems_of("account,action,ticket\nTECH\\a,asign-role,T1\n"),
            [
                "1: missing required column 'target'",
                "2: unknown action 'asign-role' (did you mean 'assign-role'?)"
            ]
        );
        assert_eq!(
            problems_of("acount,action,tagret\na,restore-all-vms,on\n"),
            [
                "1: missing required column 'account' (column 1 is 'acount'; did you mean 'account'?)",
                "1: missing required column 'target' (column 3 is 'tagret'; did you mean 'target'?)",
            ]
        );
        assert_eq!(
            problems_of("TECH\\alice,assign-role,Portal User\nTECH\\bob,assign-role,Portal User\n"),
            [
                "1: missing required columns account, action and target: the first line must be a header such as account,action,target"
            ]
        );
    }

    #[test]
    fn add_scope_without_an_object_name_column_is_refused_per_row() {
        assert_eq!(
            problems_of(&format!(
                "account,action,target\na,add-scope,{REF}\nb,restore-all-vms,on\n"
            )),
            [
                "2: add-scope needs an object_name (the scope's display name), but the plan has no object_name column"
            ]
        );
    }

    #[test]
    fn duplicate_columns_are_refused() {
        assert_eq!(
            problems_of("account,action,target,Account,note, NOTE \na,restore-all-vms,on,b,x,y\n"),
            [
                "1: duplicate column 'Account' (columns 1 and 4)",
                "1: duplicate column 'NOTE' (columns 5 and 6)"
            ]
        );
    }

    #[test]
    fn values_under_unnamed_columns_are_refused() {
        assert_eq!(
            problems_of(
                "account,,action,target\na,,restore-all-vms,on\nb,oops,restore-all-vms,on\n"
            ),
            ["3: value 'oops' in column 2, which has no header"]
        );
    }

    #[test]
    fn rows_wider_than_the_header_are_refused() {
        assert_eq!(
            problems_of(
                "account,action,target\nTECH\\a,assign-role,Portal User,\nTECH\\b,assign-role,Portal, User\n"
            ),
            [
                "3: too many cells: the header has 3 columns but this row has 4 (the last is 'User'); a value that contains ',' must be quoted"
            ]
        );
        assert_eq!(
            problems_of("account\taction\ttarget\na\trestore-all-vms\ton\tx\n"),
            [
                "2: too many cells: the header has 3 columns but this row has 4 (the last is 'x'); a value that contains a tab must be quoted"
            ]
        );
    }

    #[test]
    fn empty_required_cells_are_refused() {
        assert_eq!(
            problems_of(&format!(
                "account,action,target,object_name\n,assign-role,Portal User,\na,,Portal User,\nb,assign-role, ,\nc,add-scope,{REF},\nd,restore-all-vms\n"
            )),
            [
                "2: empty account",
                "3: empty action",
                "4: empty target: assign-role needs a role name, GUID or urn:veeam:EnterpriseRole:<guid>",
                "5: add-scope needs an object_name (the scope's display name)",
                "6: empty target: restore-all-vms needs on or off",
            ]
        );
    }

    #[test]
    fn malformed_guids_and_urns_are_refused() {
        assert_eq!(
            problems_of(
                "account,action,target,object_name\n\
                 urn:veeam:EnterpriseAccount:123,assign-role,Portal User,\n\
                 0f8e6a57-1c2b-4d3e-9f40,assign-role,urn:veeam:EnterpriseRole:nope,\n\
                 a,add-scope,urn:VMware:ResourcePool:resgroup-1,X\n\
                 b,remove-scope,abc-123,\n"
            ),
            [
                "2: malformed account URN 'urn:veeam:EnterpriseAccount:123' (expected urn:veeam:EnterpriseAccount:<guid>)",
                "3: malformed account GUID '0f8e6a57-1c2b-4d3e-9f40'",
                "3: malformed role URN 'urn:veeam:EnterpriseRole:nope' (expected urn:veeam:EnterpriseRole:<guid>)",
                "4: malformed hierarchy object ref 'urn:VMware:ResourcePool:resgroup-1' (expected urn:<Platform>:<ObjType>:<root>.<objref>, e.g. urn:VMware:ResourcePool:<root>.resgroup-1)",
                "5: malformed scope GUID 'abc-123'",
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
    fn a_header_wider_than_the_limit_is_refused() {
        let header = |columns: usize| {
            let mut names = vec!["account".to_string(), "action".into(), "target".into()];
            names.extend((names.len()..columns).map(|i| format!("note{i}")));
            names.join(",")
        };
        let plan = ok(&format!("{}\na,restore-all-vms,on\n", header(MAX_COLUMNS)));
        assert_eq!(plan.rows.len(), 1);
        // Empty cells after the last name are not columns (spreadsheets export them).
        ok(&format!(
            "{}{}\na,restore-all-vms,on\n",
            header(MAX_COLUMNS),
            ",".repeat(1000)
        ));
        assert_eq!(
            problems_of(&format!(
                "{}\na,restore-all-vms,on\n",
                header(MAX_COLUMNS + 1)
            )),
            [
                "1: the header has 65 columns, more than the 64 a plan may have; is this a plan? \
              reading stopped here"
            ]
        );
        // Refused alone, before its duplicate names are reported one by one.
        assert_eq!(
            problems_of(&"c,".repeat(5000)),
            [
                "1: the header has 5000 columns, more than the 64 a plan may have; is this a plan? \
              reading stopped here"
            ]
        );
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
    fn escape_sequences_in_cells_and_file_names_are_escaped_in_messages() {
        let text = "account,action,target\n\
                    TECH\\a,\x1b]0;pwned\x07,on\n\
                    TECH\\b\x1b[2J,restore-all-vms,maybe\x1b[2J\n";
        let err = parse("plan\x1b[31m.csv", text.as_bytes()).unwrap_err();
        let shown = err.to_string();
        assert!(
            !shown.contains('\x1b') && !shown.contains('\x07'),
            "{shown:?}"
        );
        assert!(
            shown.contains("plan\\u{1b}[31m.csv:2: unknown action '\\u{1b}]0;pwned\\u{7}'"),
            "{shown}"
        );
        assert!(shown.contains("'maybe\\u{1b}[2J'"), "{shown}");
        // What the error holds is what the plan held: escaping is for showing it.
        assert!(err.0.iter().any(|e| e.message.contains("\x1b]0;pwned\x07")));
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
    fn every_problem_is_reported_in_line_order() {
        let got = problems_of(&format!(
            "account,action,target,object_name\n\
             a,asign-role,x,\n\
             ,add-scope,{REF},\n\
             b,restore-all-vms,on\n\
             b,restore-all-vms,on\n"
        ));
        assert_eq!(
            got,
            [
                "2: unknown action 'asign-role' (did you mean 'assign-role'?)",
                "3: empty account",
                "3: add-scope needs an object_name (the scope's display name)",
                "5: duplicate of line 4",
            ]
        );
    }

    #[test]
    fn the_report_reads_file_line_message() {
        let text = format!(
            "Account;Action;Target;Object_Name;Ticket\r\n\
             TECH\\alice;asign-role;Portal User;;CHG-7\r\n\
             urn:veeam:EnterpriseAccount:42;assign-role;Portal User;;CHG-7\r\n\
             \r\n\
             TECH\\bob;add-scope;urn:VMware:ResourcePool:resgroup-9;;CHG-7\r\n\
             TECH\\carol;assign-role;\"SQL Restore\r\nOperator\";;CHG-7\r\n\
             TECH\\carol;restore-all-vms;maybe;;CHG-7\r\n\
             TECH\\dave;assign-role;Portal User;;CHG-7\r\n\
             TECH\\Dave;remove-role;portal user;;CHG-7\r\n\
             TECH\\dave;assign-role;Portal User;;CHG-7\r\n\
             {G1};remove-scope;Finance-RP;;CHG-7;extra\r\n"
        );
        let report = parse("samples/plan.csv", text.as_bytes())
            .unwrap_err()
            .to_string();
        insta::assert_snapshot!(report);
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
    /// `cargo test --lib plan::tests::bench -- --ignored --nocapture`.
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
