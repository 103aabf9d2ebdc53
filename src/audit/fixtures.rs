//! Builders of runs and rows for the audit log's unit tests.

use super::{AttemptStart, NewRun, RowColumns, RowResult};

/// An `apply` run against a local server.
pub(crate) fn new_run() -> NewRun {
    NewRun {
        kind: "apply".into(),
        parent_run_id: None,
        operator: "TECH\\alice".into(),
        server_url: "https://127.0.0.1:9398/api".into(),
        wire: "xml".into(),
        tls_verify: true,
        insecure: false,
        plan_file: Some("plan.csv".into()),
        plan_sha256: Some("ab".repeat(32)),
        tool_version: "0.1.0".into(),
        options: r#"{"concurrency":4}"#.into(),
    }
}

/// A new apply run against another server than [`new_run`]'s: it does not wait for the lock
/// that a run of `new_run` holds.
pub(crate) fn new_run_on(port: u16) -> NewRun {
    NewRun {
        server_url: format!("https://127.0.0.1:{port}/api"),
        ..new_run()
    }
}

/// `n` rows, row `i` on line `i + 2` for account `acct<i>`.
pub(crate) fn new_rows(n: u64) -> Vec<RowColumns> {
    (0..n)
        .map(|i| RowColumns {
            row_no: i,
            line: i + 2,
            account: format!("TECH\\acct{i}"),
            action: "assign-role".into(),
            target: "Portal User".into(),
            object_name: None,
            ticket: Some(format!("CHG-{i}")),
            comment: None,
            annotations: None,
        })
        .collect()
}

/// Attempt `n` of a role assignment for row `row_no` of `run_id` (or of no row).
pub(crate) fn attempt(run_id: i64, row_no: Option<u64>, n: u32) -> AttemptStart {
    AttemptStart {
        run_id,
        row_no,
        attempt: n,
        method: "POST".into(),
        path: "/api/security/accounts/1/roles".into(),
    }
}

/// A row outcome with nothing else to say.
pub(crate) fn outcome(outcome: &str) -> RowResult {
    RowResult {
        outcome: outcome.into(),
        error: None,
        prior_state: None,
        result: None,
    }
}

/// A log in a fresh directory (kept while the first value lives) with one run of `n` rows
/// recorded: the directory, the log's path, its writer and the run's id.
pub(crate) async fn log_with_run(
    n: u64,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    super::AuditWriter,
    i64,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let writer = super::AuditWriter::spawn(&path).unwrap();
    let run_id = writer
        .handle()
        .begin_run_with_rows(new_run(), new_rows(n))
        .await
        .unwrap();
    (dir, path, writer, run_id)
}
