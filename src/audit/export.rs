//! Exports for auditors: the change log, one row per plan row with its run's metadata, written
//! as CSV, JSON Lines or a JSON array while the query is read, so memory stays the same for a
//! hundred rows or ten million; the `--since`/`--until` window; CSV cells made safe to open in a
//! spreadsheet; and output files created private (mode 0600), as the audit log itself is.
//!
//! A CSV cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return is prefixed with a
//! single quote (`'`): Excel and LibreOffice would otherwise read it as a formula, and a plan's
//! comment such as `=HYPERLINK(...)` would run when an auditor opens the file. JSON output is
//! not changed, since no spreadsheet evaluates it.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use rusqlite::{Row, ToSql};
use time::format_description::BorrowedFormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Duration, OffsetDateTime, UtcOffset};

use super::db::timestamp;
use super::read::reported_status;
use super::recorded::{OUTCOME_COLUMNS, ROW_COLUMNS, RecordedRow};
use super::{AuditError, AuditReader};

/// The export's columns, in order: the run's metadata, then the change log's.
pub const EXPORT_COLUMNS: [&str; 25] = [
    "run_id",
    "run_kind",
    "run_status",
    "run_started_at",
    "run_ended_at",
    "operator",
    "server_url",
    "plan_file",
    "plan_sha256",
    "tool_version",
    "row_no",
    "line",
    "account",
    "account_id",
    "action",
    "target",
    "object_name",
    "ticket",
    "comment",
    "annotations",
    "outcome",
    "error",
    "prior_state",
    "result",
    "finished_at",
];

/// The characters that make a spreadsheet read a cell as a formula (or, for tab and carriage
/// return, let it smuggle one into the next cell).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A calendar date as `--since`/`--until` accept it.
const DATE: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day]");

/// The output formats of `export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// CSV with a header row; cells neutralised against formula injection.
    Csv,
    /// One JSON object per line.
    Jsonl,
    /// One JSON array of objects.
    Json,
}

/// A failure of an export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The audit log could not be read.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The output could not be written.
    #[error("write the export: {0}")]
    Write(#[from] io::Error),
}

impl From<rusqlite::Error> for ExportError {
    fn from(e: rusqlite::Error) -> Self {
        ExportError::Audit(AuditError::Sqlite(e))
    }
}

impl From<csv::Error> for ExportError {
    fn from(e: csv::Error) -> Self {
        ExportError::Write(e.into())
    }
}

/// A `--since` or `--until` value that is neither a date nor an RFC 3339 timestamp, or a window
/// that holds no time at all.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The value does not parse.
    #[error(
        "{flag} '{text}' is neither a date (2026-11-23) nor an RFC 3339 timestamp (2026-11-23T10:00:00Z)"
    )]
    Invalid {
        /// `--since` or `--until`.
        flag: &'static str,
        /// The value given.
        text: String,
    },
    /// `--since` is not before `--until`.
    #[error("--since {since} is not before --until {until}: no row can match")]
    Empty {
        /// The `--since` value given.
        since: String,
        /// The `--until` value given.
        until: String,
    },
}

/// The time window of an export, on each row's finished time (the run's start for a row that
/// never finished), as a half-open range of audit-log timestamps.
///
/// Both ends are inclusive as the user writes them: `--since 2026-11-23` starts at midnight UTC
/// of that day, `--until 2026-11-23` ends with that whole day, and a timestamp bound includes
/// rows of the same millisecond (the log's precision). A date is a UTC date.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeWindow {
    /// The first timestamp included.
    from: Option<String>,
    /// The first timestamp excluded.
    to: Option<String>,
}

impl TimeWindow {
    /// Parses `--since` and `--until`, each a date (`2026-11-23`) or an RFC 3339 timestamp.
    pub fn parse(since: Option<&str>, until: Option<&str>) -> Result<TimeWindow, WindowError> {
        let from = since
            .map(|text| parse_bound(text, "--since").map(|b| b.first_included))
            .transpose()?;
        let to = until
            .map(|text| parse_bound(text, "--until").map(|b| b.first_excluded))
            .transpose()?;
        // A bound past the end of the calendar leaves that side open. The bounds are written as
        // the log writes its times (fixed width), so they compare with stored times as text.
        let window = TimeWindow {
            from: from.map(timestamp),
            to: to.flatten().map(timestamp),
        };
        if let (Some(from), Some(to), Some(since), Some(until)) =
            (&window.from, &window.to, since, until)
            && from >= to
        {
            return Err(WindowError::Empty {
                since: since.to_string(),
                until: until.to_string(),
            });
        }
        Ok(window)
    }
}

/// What one `--since`/`--until` value means.
struct Bound {
    /// The first instant the value covers.
    first_included: OffsetDateTime,
    /// The first instant after it; `None` past the end of the calendar.
    first_excluded: Option<OffsetDateTime>,
}

fn parse_bound(text: &str, flag: &'static str) -> Result<Bound, WindowError> {
    let invalid = || WindowError::Invalid {
        flag,
        text: text.to_string(),
    };
    let trimmed = text.trim();
    if let Ok(date) = Date::parse(trimmed, DATE) {
        let start = date.midnight().assume_utc();
        return Ok(Bound {
            first_included: start,
            first_excluded: date.next_day().map(|d| d.midnight().assume_utc()),
        });
    }
    let at = OffsetDateTime::parse(trimmed, &Rfc3339).map_err(|_| invalid())?;
    let at = at.to_offset(UtcOffset::UTC);
    // The log keeps milliseconds: a bound covers the whole millisecond it falls in.
    let millis = at
        .replace_nanosecond(at.millisecond() as u32 * 1_000_000)
        .map_err(|_| invalid())?;
    Ok(Bound {
        first_included: millis,
        first_excluded: millis.checked_add(Duration::milliseconds(1)),
    })
}

/// Which rows to export.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportFilter {
    /// Only this run's rows.
    pub run_id: Option<i64>,
    /// Only rows whose time falls in this window.
    pub window: TimeWindow,
}

/// `cell`, made safe to open in a spreadsheet: prefixed with `'` when it begins with a
/// character that would make Excel or LibreOffice read it as a formula.
pub fn csv_safe(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(FORMULA_STARTS) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// The export query. The rows come in key order straight from `plan_rows`' primary key, with
/// no sort in between, so SQLite hands them over one at a time however many there are.
fn export_query(filter: &ExportFilter) -> (String, Vec<&dyn ToSql>) {
    let mut sql = format!(
        // The recorded row's columns are named alone: `runs` has none of their names.
        "SELECT c.run_id, r.kind, r.status, r.started_at, r.ended_at, r.operator, r.server_url,
                r.plan_file, r.plan_sha256, r.tool_version,
                {ROW_COLUMNS}, {OUTCOME_COLUMNS}, c.finished_at,
                r.writer_pid, r.writer_start, r.writer_boot_id
         FROM change_log c JOIN runs r ON r.id = c.run_id
         WHERE 1",
    );
    // Only fixed fragments are added to the text; every value is a parameter.
    let mut params: Vec<&dyn ToSql> = Vec::new();
    if let Some(run_id) = &filter.run_id {
        params.push(run_id);
        sql.push_str(&format!(" AND c.run_id = ?{}", params.len()));
    }
    if let Some(from) = &filter.window.from {
        params.push(from);
        sql.push_str(&format!(
            " AND coalesce(c.finished_at, r.started_at) >= ?{}",
            params.len()
        ));
    }
    if let Some(to) = &filter.window.to {
        params.push(to);
        sql.push_str(&format!(
            " AND coalesce(c.finished_at, r.started_at) < ?{}",
            params.len()
        ));
    }
    sql.push_str(" ORDER BY c.run_id, c.row_no");
    (sql, params)
}

/// One exported row, owned only while it is written: its run's metadata, then the row as
/// recorded.
#[derive(Debug)]
struct ExportRow {
    run_id: i64,
    run_kind: String,
    run_status: String,
    run_started_at: String,
    run_ended_at: Option<String>,
    operator: String,
    server_url: String,
    plan_file: Option<String>,
    plan_sha256: Option<String>,
    tool_version: String,
    row: RecordedRow,
    finished_at: Option<String>,
}

/// One value of an exported row.
#[derive(Clone, Copy, Debug)]
enum Cell<'a> {
    /// A number.
    Int(i64),
    /// Text.
    Text(&'a str),
    /// A column that holds JSON text (prior state, result, annotations).
    Json(&'a str),
    /// No value.
    Null,
}

impl<'a> Cell<'a> {
    fn text(value: &'a Option<String>) -> Cell<'a> {
        value.as_deref().map_or(Cell::Null, Cell::Text)
    }

    fn json(value: &'a Option<String>) -> Cell<'a> {
        value.as_deref().map_or(Cell::Null, Cell::Json)
    }

    /// The cell as CSV text: numbers in decimal, JSON as its text, nothing as an empty cell.
    fn csv(self) -> Cow<'a, str> {
        match self {
            Cell::Int(n) => Cow::Owned(n.to_string()),
            Cell::Text(text) | Cell::Json(text) => csv_safe(text),
            Cell::Null => Cow::Borrowed(""),
        }
    }

    /// Writes the cell as a JSON value. A JSON column is nested as the value it holds, so that
    /// a prior state reads as an object, not a quoted string; text that is not valid JSON
    /// stays a string.
    fn write_json<W: Write>(self, out: &mut W) -> io::Result<()> {
        match self {
            Cell::Int(n) => write!(out, "{n}"),
            Cell::Null => out.write_all(b"null"),
            Cell::Text(text) => serde_json::to_writer(out, text).map_err(io::Error::from),
            // The log holds compact JSON, written by this tool: checked without building it, it
            // is copied as it is. Anything else (a line break would split a JSON Lines record)
            // is rewritten compactly, or quoted when it is not JSON at all.
            Cell::Json(text)
                if !text.contains(['\n', '\r'])
                    && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() =>
            {
                out.write_all(text.as_bytes())
            }
            Cell::Json(text) => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(value) => serde_json::to_writer(out, &value).map_err(io::Error::from),
                Err(_) => serde_json::to_writer(out, text).map_err(io::Error::from),
            },
        }
    }
}

impl ExportRow {
    fn from_row(r: &Row<'_>, run_status: String) -> rusqlite::Result<ExportRow> {
        Ok(ExportRow {
            run_id: r.get(0)?,
            run_kind: r.get(1)?,
            run_status,
            run_started_at: r.get(3)?,
            run_ended_at: r.get(4)?,
            operator: r.get(5)?,
            server_url: r.get(6)?,
            plan_file: r.get(7)?,
            plan_sha256: r.get(8)?,
            tool_version: r.get(9)?,
            row: RecordedRow::read(r, 10)?,
            finished_at: r.get(24)?,
        })
    }

    /// The row's cells, in [`EXPORT_COLUMNS`] order.
    fn cells(&self) -> [Cell<'_>; 25] {
        let (columns, end) = (&self.row.columns, &self.row.end);
        [
            Cell::Int(self.run_id),
            Cell::Text(&self.run_kind),
            Cell::Text(&self.run_status),
            Cell::Text(&self.run_started_at),
            Cell::text(&self.run_ended_at),
            Cell::Text(&self.operator),
            Cell::Text(&self.server_url),
            Cell::text(&self.plan_file),
            Cell::text(&self.plan_sha256),
            Cell::Text(&self.tool_version),
            // Back to the stored value: the row's numbers are read bit for bit.
            Cell::Int(columns.row_no as i64),
            Cell::Int(columns.line as i64),
            Cell::Text(&columns.account),
            Cell::text(&self.row.account_id),
            Cell::Text(&columns.action),
            Cell::Text(&columns.target),
            Cell::text(&columns.object_name),
            Cell::text(&columns.ticket),
            Cell::text(&columns.comment),
            Cell::json(&columns.annotations),
            Cell::Text(&end.outcome),
            Cell::text(&end.error),
            Cell::json(&end.prior_state),
            Cell::json(&end.result),
            Cell::text(&self.finished_at),
        ]
    }

    /// Writes the row as one JSON object, its keys in [`EXPORT_COLUMNS`] order.
    fn write_json<W: Write>(&self, out: &mut W) -> io::Result<()> {
        out.write_all(b"{")?;
        for (i, (name, cell)) in EXPORT_COLUMNS.iter().zip(self.cells()).enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            // The column names are plain ASCII words: nothing in them needs escaping.
            write!(out, "\"{name}\":")?;
            cell.write_json(out)?;
        }
        out.write_all(b"}")
    }
}

/// Writes rows in one format as they come: nothing is kept once a row is written.
enum RowWriter<W: Write> {
    // Boxed: the CSV writer carries its own buffer and state, far larger than the others.
    Csv(Box<csv::Writer<W>>),
    Jsonl(W),
    Json { out: W, rows: u64 },
}

impl<W: Write> RowWriter<W> {
    /// Starts the output: the CSV header, or the JSON array's opening bracket.
    fn start(format: ExportFormat, out: W) -> Result<RowWriter<W>, ExportError> {
        Ok(match format {
            ExportFormat::Csv => {
                let mut csv = csv::Writer::from_writer(out);
                csv.write_record(EXPORT_COLUMNS)?;
                RowWriter::Csv(Box::new(csv))
            }
            ExportFormat::Jsonl => RowWriter::Jsonl(out),
            ExportFormat::Json => {
                let mut out = out;
                out.write_all(b"[")?;
                RowWriter::Json { out, rows: 0 }
            }
        })
    }

    fn write(&mut self, row: &ExportRow) -> Result<(), ExportError> {
        match self {
            RowWriter::Csv(csv) => {
                for cell in row.cells() {
                    csv.write_field(cell.csv().as_bytes())?;
                }
                // An empty record ends the one the fields above began.
                csv.write_record(None::<&[u8]>)?;
            }
            RowWriter::Jsonl(out) => {
                row.write_json(out)?;
                out.write_all(b"\n")?;
            }
            RowWriter::Json { out, rows } => {
                out.write_all(if *rows == 0 { b"\n" } else { b",\n" })?;
                row.write_json(out)?;
                *rows += 1;
            }
        }
        Ok(())
    }

    /// Ends the output (the JSON array's closing bracket) and flushes it.
    fn finish(self) -> Result<W, ExportError> {
        let mut out = match self {
            RowWriter::Csv(csv) => csv.into_inner().map_err(|e| e.into_error())?,
            RowWriter::Jsonl(out) => out,
            RowWriter::Json { mut out, rows } => {
                out.write_all(if rows == 0 { b"]\n" } else { b"\n]\n" })?;
                out
            }
        };
        out.flush()?;
        Ok(out)
    }
}

impl AuditReader {
    /// Writes the change-log rows that `filter` selects to `out` in `format`, in run and row
    /// order, each with its run's metadata; answers how many rows it wrote.
    ///
    /// The query is read one row at a time and each row is written before the next is read, so
    /// memory does not grow with the number of rows. A run left `running` by a process that is
    /// gone is exported as `crashed`, as `runs` and `show` say.
    pub fn export<W: Write>(
        &self,
        filter: &ExportFilter,
        format: ExportFormat,
        out: W,
    ) -> Result<u64, ExportError> {
        let (sql, params) = export_query(filter);
        let mut stmt = self.connection().prepare(&sql)?;
        let mut rows = stmt.query(params.as_slice())?;
        let mut writer = RowWriter::start(format, out)?;
        // Rows come grouped by run, so the status of the run at hand is worked out once.
        let mut current: Option<(i64, String)> = None;
        let mut count = 0u64;
        while let Some(r) = rows.next()? {
            let run_id: i64 = r.get(0)?;
            let status = match &current {
                Some((id, status)) if *id == run_id => status.clone(),
                _ => {
                    // The run's status in column 2, its writer from column 25 on.
                    let status = reported_status(r, 2, 25)?;
                    current = Some((run_id, status.clone()));
                    status
                }
            };
            writer.write(&ExportRow::from_row(r, status)?)?;
            count += 1;
        }
        writer.finish()?;
        Ok(count)
    }
}

/// A file for exported audit data: created with mode 0600 (its content is as sensitive as the
/// log), written through a buffer, and removed again if the export fails, so a half-written
/// file is never mistaken for a complete one.
pub struct PrivateOutput {
    path: PathBuf,
    out: BufWriter<File>,
    regular: bool,
}

impl PrivateOutput {
    /// Creates (or truncates) `path`. A new file gets mode 0600; an existing regular file that
    /// others could read is restricted to its owner. Other kinds of file (`/dev/null`, a pipe)
    /// are used as they are.
    pub fn create(path: &Path) -> io::Result<PrivateOutput> {
        Self::open(path, false)
    }

    /// Creates `path`, which must not exist yet: for output that must never replace a file
    /// silently (`plan -o`).
    pub fn create_new(path: &Path) -> io::Result<PrivateOutput> {
        Self::open(path, true)
    }

    fn open(path: &Path, new: bool) -> io::Result<PrivateOutput> {
        let mut options = std::fs::OpenOptions::new();
        if new {
            options.write(true).create_new(true);
        } else {
            options.write(true).create(true).truncate(true);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path)?;
        let meta = file.metadata()?;
        #[cfg(unix)]
        if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
            }
        }
        Ok(PrivateOutput {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            regular: meta.is_file(),
        })
    }

    /// The writer to export into.
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        &mut self.out
    }

    /// Flushes the file and waits until it is on disk.
    pub fn commit(self) -> io::Result<()> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        if self.regular {
            file.sync_all()?;
        }
        Ok(())
    }

    /// Removes the file after a failed export (a regular file only: a device or a pipe stays).
    pub fn discard(self) {
        let PrivateOutput { path, out, regular } = self;
        // Whatever is still buffered belongs to the failed export: it is dropped with the file.
        let (file, _unwritten) = out.into_parts();
        drop(file);
        if regular && let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(
                "could not remove the incomplete export {}: {e}",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests;
