//! Reading the log for `runs`, `show` and `report`, through the stable views.
//!
//! The reader has its own connection and never writes a record; it reads the same views
//! auditors query, so what `runs`, `show` and `report` print is what the views say. Only the status of a
//! run left `running` by a process that is gone is computed here (`crashed`), not stored: a later
//! `resume` continues such a run.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::AuditError;
use super::db;
use super::lock::LockHolder;
use super::process::WriterIdentity;

/// Which run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunSelector {
    /// By id.
    Id(i64),
    /// The newest.
    Last,
}

/// Which rows.
#[derive(Clone, Copy, Debug, Default)]
pub struct RowFilter {
    /// Only failed or in-doubt rows.
    pub failed_only: bool,
}

/// One run, as `runs` and `show` print it.
#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    /// The run id.
    pub run_id: i64,
    /// apply, replay, undo, resume, snapshot.
    pub kind: String,
    /// The parent run, if any.
    pub parent_run_id: Option<i64>,
    /// running, completed, failed, interrupted, aborted; `crashed` for a run left `running`
    /// by a process that is gone.
    pub status: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// RFC 3339, UTC.
    pub ended_at: Option<String>,
    /// The logon user.
    pub operator: String,
    /// The server.
    pub server_url: String,
    /// xml or json.
    pub wire: String,
    /// Whether TLS was verified.
    pub tls_verify: bool,
    /// The plan file.
    pub plan_file: Option<String>,
    /// The plan's SHA-256.
    pub plan_sha256: Option<String>,
    /// embatch's version.
    pub tool_version: String,
    /// Its rows by outcome, and its requests.
    #[serde(flatten)]
    pub counts: RunCounts,
}

/// A run's rows by outcome, and its HTTP attempts: the counts of `run_summary`, which `runs`,
/// `show` and `report` show, and which a run counts as it goes for its own summary
/// (`runner::Summary`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunCounts {
    /// Rows in the run.
    pub rows: u64,
    /// Rows applied.
    pub applied: u64,
    /// Rows already in place.
    pub noop: u64,
    /// Rows failed.
    pub failed: u64,
    /// Rows skipped.
    pub skipped: u64,
    /// Rows in doubt.
    pub in_doubt: u64,
    /// Rows `undo` left alone because the account changed since.
    pub conflict: u64,
    /// Rows not run yet.
    pub pending: u64,
    /// HTTP attempts.
    pub requests: u64,
}

impl RunCounts {
    /// Rows that did not end applied or in place: failed, in doubt or in conflict.
    pub fn unsuccessful(&self) -> u64 {
        self.failed + self.in_doubt + self.conflict
    }
}

/// One row of a run, as `show` and `report` show it.
///
/// `show --output json` gives its fields but the account's GUID, the object name and the
/// comment, as it always has: scripts read that list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RowInfo {
    /// The row's index in the plan.
    pub row_no: u64,
    /// The physical line in the plan.
    pub line: u64,
    /// The account as the plan names it.
    pub account: String,
    /// The account's GUID, once resolved.
    #[serde(skip)]
    pub account_id: Option<String>,
    /// The action.
    pub action: String,
    /// The target.
    pub target: String,
    /// The scope's display name, for `add-scope`.
    #[serde(skip)]
    pub object_name: Option<String>,
    /// The outcome: applied, noop, failed, skipped, in_doubt, conflict or pending.
    pub outcome: String,
    /// Why the row failed, or a note.
    pub error: Option<String>,
    /// The change ticket.
    pub ticket: Option<String>,
    /// The plan's comment.
    #[serde(skip)]
    pub comment: Option<String>,
    /// When it finished, RFC 3339 UTC.
    pub finished_at: Option<String>,
}

/// How a run was started beyond what [`RunInfo`] says: `report` shows it, and `resume` reads
/// back whether the run was forced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// Whether `--insecure` was given (no certificate check).
    pub insecure: bool,
    /// The run's options, as recorded (JSON).
    pub options: String,
}

/// One HTTP attempt of a run, as `report` charts it.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptInfo {
    /// The attempt number of its request, from 1.
    pub attempt: u32,
    /// The HTTP status, if an answer came.
    pub status: Option<i64>,
    /// The transport error, if no answer came.
    pub error: Option<String>,
    /// When it started, RFC 3339 UTC.
    pub started_at: String,
    /// How long it took, if it completed.
    pub duration_ms: Option<f64>,
}

/// The outcomes that count as not ending well: what `show --failed` lists, and the failures a
/// run lists after its summary.
pub(super) const UNSUCCESSFUL: &str = "('failed', 'in_doubt', 'conflict')";

/// A read-only view of the log.
pub struct AuditReader {
    conn: Connection,
}

/// The columns of `run_summary` behind [`RunInfo`], and the writer's identity from the table.
const RUN_QUERY: &str = "
    SELECT s.run_id, s.kind, s.parent_run_id, s.status, s.started_at, s.ended_at, s.operator,
           s.server_url, s.wire, s.tls_verify, s.plan_file, s.plan_sha256, s.tool_version,
           s.rows, s.applied, s.noop, s.failed, s.skipped, s.in_doubt, s.pending, s.requests,
           r.writer_pid, r.writer_start, r.writer_boot_id, s.conflict
    FROM run_summary s JOIN runs r ON r.id = s.run_id";

impl AuditReader {
    /// Opens the log read-only: the file must exist, and is neither created, migrated nor
    /// changed, so a copy on a read-only share can be read and verified.
    pub fn open(path: &Path) -> Result<AuditReader, AuditError> {
        let conn = db::open_read_only(path)?;
        Ok(AuditReader { conn })
    }

    /// Opens the log read-only to verify it: like [`AuditReader::open`], but a log of schema 01,
    /// not migrated yet, is taken as it is too, since `verify` checks that schema's chain and
    /// tables. Only [`AuditReader::verify`] and [`AuditReader::schema_version`] read such a log.
    pub fn open_to_verify(path: &Path) -> Result<AuditReader, AuditError> {
        let conn = db::open_read_only_to_verify(path)?;
        Ok(AuditReader { conn })
    }

    /// The log's schema version: 1 for a log of schema 01 (see
    /// [`AuditReader::open_to_verify`]), whose checkpoints were never signed.
    pub fn schema_version(&self) -> Result<i64, AuditError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// Every run, newest first.
    pub fn runs(&self) -> Result<Vec<RunInfo>, AuditError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{RUN_QUERY} ORDER BY s.run_id DESC"))?;
        let runs = stmt
            .query_map([], run_info)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(runs)
    }

    /// One run.
    pub fn run(&self, which: RunSelector) -> Result<RunInfo, AuditError> {
        let id = match which {
            RunSelector::Id(id) => id,
            // Looked up first, so the summary below is computed for one run only.
            RunSelector::Last => self
                .conn
                .query_row("SELECT max(id) FROM runs", [], |r| {
                    r.get::<_, Option<i64>>(0)
                })?
                .ok_or_else(|| AuditError::NoSuchRun("yet".into()))?,
        };
        self.conn
            .prepare_cached(&format!("{RUN_QUERY} WHERE s.run_id = ?1"))?
            .query_row([id], run_info)
            .optional()?
            .ok_or_else(|| AuditError::NoSuchRun(id.to_string()))
    }

    /// A run's rows in plan order.
    pub fn rows(&self, run_id: i64, filter: RowFilter) -> Result<Vec<RowInfo>, AuditError> {
        let exists = self
            .conn
            .query_row("SELECT 1 FROM runs WHERE id = ?1", [run_id], |_| Ok(()))
            .optional()?
            .is_some();
        if !exists {
            return Err(AuditError::NoSuchRun(run_id.to_string()));
        }
        self.change_rows(run_id, filter.failed_only, None)
    }

    /// The rows of run `run_id` in plan order: only those that did not end well when
    /// `unsuccessful_only`, and the first `limit` when given. `show` and the failures a run
    /// lists after its summary read them alike.
    pub(super) fn change_rows(
        &self,
        run_id: i64,
        unsuccessful_only: bool,
        limit: Option<usize>,
    ) -> Result<Vec<RowInfo>, AuditError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT row_no, line, account, account_id, action, target, object_name, outcome,
                    error, ticket, comment, finished_at
             FROM change_log
             WHERE run_id = ?1 AND (NOT ?2 OR outcome IN {UNSUCCESSFUL})
             ORDER BY row_no LIMIT ?3"
        ))?;
        // SQLite reads a negative limit as none.
        let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let rows = stmt
            .query_map(params![run_id, unsuccessful_only, limit], |r| {
                Ok(RowInfo {
                    row_no: unsigned(r, 0)?,
                    line: unsigned(r, 1)?,
                    account: r.get(2)?,
                    account_id: r.get(3)?,
                    action: r.get(4)?,
                    target: r.get(5)?,
                    object_name: r.get(6)?,
                    outcome: r.get(7)?,
                    error: r.get(8)?,
                    ticket: r.get(9)?,
                    comment: r.get(10)?,
                    finished_at: r.get(11)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// How run `run_id` was started, beyond what [`RunInfo`] says.
    pub fn run_options(&self, run_id: i64) -> Result<RunOptions, AuditError> {
        self.conn
            .prepare_cached("SELECT insecure, options FROM run_summary WHERE run_id = ?1")?
            .query_row([run_id], |r| {
                Ok(RunOptions {
                    insecure: r.get(0)?,
                    options: r.get(1)?,
                })
            })
            .optional()?
            .ok_or_else(|| AuditError::NoSuchRun(run_id.to_string()))
    }

    /// The HTTP attempts of run `run_id`, in the order they were recorded.
    pub fn attempts(&self, run_id: i64) -> Result<Vec<AttemptInfo>, AuditError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT attempt, status, error, started_at, duration_ms
             FROM request_log WHERE run_id = ?1 ORDER BY attempt_id",
        )?;
        let attempts = stmt
            .query_map([run_id], |r| {
                Ok(AttemptInfo {
                    attempt: u32::try_from(r.get::<_, i64>(0)?).unwrap_or(u32::MAX),
                    status: r.get(1)?,
                    error: r.get(2)?,
                    started_at: r.get(3)?,
                    duration_ms: r.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(attempts)
    }

    /// The live runs that hold the lock of `server_url` (of every server when `None`): those
    /// `running` under a live process that change EM. See `lock.rs`.
    pub fn lock_holders(&self, server_url: Option<&str>) -> Result<Vec<LockHolder>, AuditError> {
        Ok(super::lock::holders(&self.conn, server_url)?)
    }

    /// SQLite's own check of the file: `ok`, or one problem per line.
    pub fn integrity_check(&self) -> Result<String, AuditError> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let lines = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(lines.join("\n"))
    }

    /// The reader's connection, for the queries of the other modules of the log. Nothing may
    /// write through it: the writer thread is the only writer of records.
    pub(super) fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// Reads a count or index, stored as a signed integer.
fn unsigned(r: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = r.get(idx)?;
    u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v))
}

/// A run's status as `runs`, `show` and `export` report it: the stored one, except `crashed` for
/// a run left `running` by a writer that is gone. `status` is the index of the stored status in
/// `r`, and `writer` that of `writer_pid`, followed by `writer_start` and `writer_boot_id`.
pub(super) fn reported_status(
    r: &Row<'_>,
    status: usize,
    writer: usize,
) -> rusqlite::Result<String> {
    let stored: String = r.get(status)?;
    if stored != "running" {
        return Ok(stored);
    }
    let identity = WriterIdentity {
        pid: r.get(writer)?,
        start: r
            .get::<_, Option<i64>>(writer + 1)?
            .and_then(|v| u64::try_from(v).ok()),
        boot_id: r.get(writer + 2)?,
    };
    Ok(if identity.is_gone() {
        "crashed".into()
    } else {
        stored
    })
}

/// Builds a [`RunInfo`] from a row of [`RUN_QUERY`].
fn run_info(r: &Row<'_>) -> rusqlite::Result<RunInfo> {
    Ok(RunInfo {
        run_id: r.get(0)?,
        kind: r.get(1)?,
        parent_run_id: r.get(2)?,
        status: reported_status(r, 3, 21)?,
        started_at: r.get(4)?,
        ended_at: r.get(5)?,
        operator: r.get(6)?,
        server_url: r.get(7)?,
        wire: r.get(8)?,
        tls_verify: r.get(9)?,
        plan_file: r.get(10)?,
        plan_sha256: r.get(11)?,
        tool_version: r.get(12)?,
        counts: RunCounts {
            rows: unsigned(r, 13)?,
            applied: unsigned(r, 14)?,
            noop: unsigned(r, 15)?,
            failed: unsigned(r, 16)?,
            skipped: unsigned(r, 17)?,
            in_doubt: unsigned(r, 18)?,
            conflict: unsigned(r, 24)?,
            pending: unsigned(r, 19)?,
            requests: unsigned(r, 20)?,
        },
    })
}

#[cfg(test)]
mod tests;
