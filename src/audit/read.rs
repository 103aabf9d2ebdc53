//! Reading the log for `runs` and `show`, through the stable views.

use std::path::Path;

use serde::Serialize;

use super::AuditError;

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
    /// Rows not run yet.
    pub pending: u64,
    /// HTTP attempts.
    pub requests: u64,
}

/// One row of a run, as `show` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct RowInfo {
    /// The row's index in the plan.
    pub row_no: u64,
    /// The physical line in the plan.
    pub line: u64,
    /// The account as the plan names it.
    pub account: String,
    /// The action.
    pub action: String,
    /// The target.
    pub target: String,
    /// The outcome.
    pub outcome: String,
    /// The error or note.
    pub error: Option<String>,
    /// The ticket.
    pub ticket: Option<String>,
    /// When it finished, RFC 3339 UTC.
    pub finished_at: Option<String>,
}

/// A read-only view of the log.
pub struct AuditReader {}

impl AuditReader {
    /// Opens the log read-only (migrating it first if it is older than this tool).
    pub fn open(path: &Path) -> Result<AuditReader, AuditError> {
        let _ = path;
        todo!()
    }
    /// Every run, newest first.
    pub fn runs(&self) -> Result<Vec<RunInfo>, AuditError> {
        todo!()
    }
    /// One run.
    pub fn run(&self, which: RunSelector) -> Result<RunInfo, AuditError> {
        let _ = which;
        todo!()
    }
    /// A run's rows in plan order.
    pub fn rows(&self, run_id: i64, filter: RowFilter) -> Result<Vec<RowInfo>, AuditError> {
        let _ = (run_id, filter);
        todo!()
    }
}
