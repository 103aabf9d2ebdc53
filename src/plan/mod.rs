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

use cells::{Kind, quoted};
use checks::Tracker;
use records::{DelimiterDetector, LineReader, QuoteState, RecordInfo, Records};

pub use recorded::{RecordedColumns, recorded_row};

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
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
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
        let reader = open(&self.path, &self.file)?;
        Ok(PlanRows {
            scanner: Scanner::new(&self.file, reader, None, true),
            sha256: self.sha256.clone(),
            done: false,
        })
    }
}

/// The rows of a checked plan, read again from its file; see [`PlanFile::rows`]. Holds a read
/// buffer and the current record, whatever the size of the plan.
pub struct PlanRows {
    scanner: Scanner<BufReader<File>>,
    /// The hash the file had when it was checked.
    sha256: String,
    done: bool,
}

impl Iterator for PlanRows {
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

impl std::iter::FusedIterator for PlanRows {}

/// Validates the plan at `path` in one streaming pass, holding no rows: only the tables of
/// the checks across rows and the problems found. The result says what the plan holds;
/// [`PlanFile::rows`] reads the rows themselves.
pub fn check(path: &Path) -> Result<PlanFile, PlanErrors> {
    let file = path.display().to_string();
    let reader = open(path, &file)?;
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
    File::open(path)
        .map(|f| BufReader::with_capacity(64 * 1024, f))
        .map_err(|e| {
            PlanErrors(vec![PlanError {
                file: file.to_string(),
                line: 0,
                message: format!("cannot read the plan: {e}"),
            }])
        })
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

/// A physical line read ahead of the record it belongs to (while looking for the delimiter).
struct PendingLine {
    line: u64,
    /// The line's text, its terminator included.
    text: String,
    /// Whether the line held bytes that are not UTF-8.
    bad: bool,
}

/// The lines of one record, gathered into [`Scanner::record`].
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
/// It holds the header, the current record and, when it makes the checks across rows, their
/// tables; every problem goes to `problems`.
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
                Err(e) => {
                    self.problems.add(0, format!("cannot read the plan: {e}"));
                    self.stage = Stage::Done;
                }
            }
        }
    }

    /// Reads up to the header and the header itself: the encoding, the delimiter, the columns.
    fn read_header(&mut self) -> io::Result<()> {
        self.stage = Stage::Done;
        let Some(mut line) = self.next_physical()? else {
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
        // ahead and kept until it is known.
        let mut detector = DelimiterDetector::default();
        loop {
            let mut text = String::new();
            let bad = self.decode(line, &mut text);
            let done = detector.feed(text.as_bytes());
            self.pending.push_back(PendingLine { line, text, bad });
            if done {
                break;
            }
            match self.next_physical()? {
                Some(next) => line = next,
                None => break,
            }
        }
        self.delimiter = detector.delimiter();

        loop {
            let Some(gathered) = self.gather()? else {
                self.problems
                    .add(0, "the plan has no rows: the file is empty".into());
                return Ok(());
            };
            let mut fields = Vec::new();
            let info = first_record(&self.record, self.delimiter, gathered.first, &mut fields);
            if info.unterminated.is_none() && records::is_blank(&fields) {
                continue;
            }
            if let Some(at) = info.unterminated {
                // The open quote swallowed the rest of the file, so there is nothing else to
                // read.
                self.problems.add(at, UNTERMINATED.into());
                return Ok(());
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
    fn read_row(&mut self) -> io::Result<Option<PlanRow>> {
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
        let info = first_record(&self.record, self.delimiter, gathered.first, &mut fields);
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
    /// field goes on. `None` at the end of the file.
    fn gather(&mut self) -> io::Result<Option<Gathered>> {
        self.record.clear();
        let mut state = QuoteState::FieldStart;
        let mut gathered: Option<Gathered> = None;
        loop {
            let start = self.record.len();
            let next = match self.pending.pop_front() {
                Some(p) => {
                    self.record.push_str(&p.text);
                    Some((p.line, p.bad))
                }
                None => match self.next_physical()? {
                    Some(line) => {
                        let mut record = std::mem::take(&mut self.record);
                        let bad = self.decode(line, &mut record);
                        self.record = record;
                        Some((line, bad))
                    }
                    None => None,
                },
            };
            let Some((line, bad)) = next else {
                break;
            };
            let g = gathered.get_or_insert(Gathered { first: line, bad });
            g.bad |= bad;
            state = state.feed(&self.record.as_bytes()[start..], self.delimiter);
            if state != QuoteState::Quoted {
                break;
            }
        }
        Ok(gathered)
    }

    /// Reads the next physical line from the file; its number, or `None` at the end.
    fn next_physical(&mut self) -> io::Result<Option<u64>> {
        let line = self.lines.next_line()?;
        if line.is_some_and(|l| l > u64::from(u32::MAX)) {
            // The tables of the checks across rows store lines in four bytes.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the plan has more than {} lines", u32::MAX),
            ));
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
fn first_record<'t>(
    text: &'t str,
    delimiter: u8,
    line: u64,
    fields: &mut Vec<Cow<'t, str>>,
) -> RecordInfo {
    let mut records = Records::starting_at(text, delimiter, line);
    let info = records
        .next_into(fields)
        .expect("a gathered record holds at least one line");
    debug_assert!(
        records.next_into(&mut Vec::new()).is_none(),
        "the lines gathered for one record are one record to the tokenizer"
    );
    info
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
        let width = fields
            .iter()
            .rposition(|f| !f.trim().is_empty())
            .map_or(0, |i| i + 1);
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
                        Column::Annotation(h) if cells::edit_distance(&fold_name(h), name) <= 2 => {
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
            ["0: the plan has no rows: the file is empty"]
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
