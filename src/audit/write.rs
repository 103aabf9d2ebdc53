//! The single writer: one thread owns the SQLite connection; everyone else sends it messages.

use std::path::Path;
use std::time::Duration;

use super::{AttemptStart, AuditError, NewRow, NewRun, RowResult, RunStatus};

/// The writer thread. Close it to flush and stop.
pub struct AuditWriter {
    handle: AuditHandle,
}

/// A cheap, cloneable way to send records to the writer.
#[derive(Clone, Debug)]
pub struct AuditHandle {}

impl AuditWriter {
    /// Opens (creating with mode 0600, migrating) the log at `path` and starts the writer.
    pub fn spawn(path: &Path) -> Result<AuditWriter, AuditError> {
        let _ = path;
        todo!()
    }

    /// A handle for senders.
    pub fn handle(&self) -> AuditHandle {
        self.handle.clone()
    }

    /// Flushes everything sent so far and stops the writer.
    pub async fn close(self) -> Result<(), AuditError> {
        todo!()
    }
}

impl AuditHandle {
    /// Records a new run; answers its id once committed.
    pub async fn begin_run(&self, run: NewRun) -> Result<i64, AuditError> {
        let _ = run;
        todo!()
    }
    /// Records the run's rows (all `pending`), committed before it answers.
    pub async fn add_rows(&self, run_id: i64, rows: Vec<NewRow>) -> Result<(), AuditError> {
        let _ = (run_id, rows);
        todo!()
    }
    /// Records the run's end, committed before it answers.
    pub async fn end_run(&self, run_id: i64, status: RunStatus) -> Result<(), AuditError> {
        let _ = (run_id, status);
        todo!()
    }
    /// Records the account id a row resolved to (fire and forget).
    pub fn row_account(&self, run_id: i64, row_no: u64, account_id: &str) {
        let _ = (run_id, row_no, account_id);
        todo!()
    }
    /// Records a row's outcome (fire and forget; committed with the next group).
    pub fn row_finished(&self, run_id: i64, row_no: u64, result: RowResult) {
        let _ = (run_id, row_no, result);
        todo!()
    }
    /// Records an attempt's intent and answers its id once the intent is committed.
    pub async fn attempt_started(&self, start: AttemptStart) -> Result<u64, AuditError> {
        let _ = start;
        todo!()
    }
    /// Records how an attempt ended (fire and forget).
    pub fn attempt_finished(&self, id: u64, status: Option<u16>, error: Option<String>, elapsed: Duration) {
        let _ = (id, status, error, elapsed);
        todo!()
    }
}
