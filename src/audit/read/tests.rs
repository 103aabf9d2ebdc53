//! The reader on logs the writer made: runs listed newest first with their counts, one run
//! selected or none, a run's rows in plan order or only its failures, `show --json`'s fields in
//! their order, a run whose writer is gone read as crashed, only an up-to-date file read with
//! its integrity checked, and one run's summary read from that run alone.

use super::*;
use crate::audit::fixtures::{new_rows, new_run, outcome, writer_gone};
use crate::audit::{AttemptStart, AuditWriter, RowResult, RunStatus};

/// A log with two runs: run 1 finished with one row of each outcome, run 2 still running.
async fn two_runs(path: &Path) -> AuditWriter {
    let writer = AuditWriter::spawn(path).unwrap();
    let audit = writer.handle();
    let first = audit.begin_run(new_run()).await.unwrap();
    audit.add_rows(first, new_rows(6)).await.unwrap();
    for (i, o) in ["applied", "noop", "failed", "skipped", "in_doubt"]
        .into_iter()
        .enumerate()
    {
        audit.row_finished(
            first,
            i as u64,
            RowResult {
                error: (o == "failed").then(|| "EM refused".to_string()),
                ..outcome(o)
            },
        );
    }
    for n in 1..=2 {
        let id = audit
            .attempt_started(AttemptStart {
                run_id: first,
                row_no: Some(0),
                attempt: n,
                method: "POST".into(),
                path: "/api/x".into(),
            })
            .await
            .unwrap();
        audit.attempt_finished(first, id, Some(200), None, std::time::Duration::ZERO);
    }
    audit.end_run(first, RunStatus::Failed).await.unwrap();
    let second = audit
        .begin_run(crate::audit::NewRun {
            kind: "resume".into(),
            parent_run_id: Some(first),
            ..new_run()
        })
        .await
        .unwrap();
    audit.add_rows(second, new_rows(2)).await.unwrap();
    writer
}

#[tokio::test]
async fn lists_runs_newest_first_with_their_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let writer = two_runs(&path).await;
    let reader = AuditReader::open(&path).unwrap();
    let runs = reader.runs().unwrap();
    assert_eq!(runs.iter().map(|r| r.run_id).collect::<Vec<_>>(), [2, 1]);

    let first = &runs[1];
    assert_eq!(first.status, "failed");
    assert_eq!(first.kind, "apply");
    assert!(first.ended_at.is_some());
    assert!(first.tls_verify);
    assert_eq!(first.plan_file.as_deref(), Some("plan.csv"));
    assert_eq!(
        [
            first.counts.rows,
            first.counts.applied,
            first.counts.noop,
            first.counts.failed,
            first.counts.skipped,
            first.counts.in_doubt,
            first.counts.pending,
            first.counts.requests
        ],
        [6, 1, 1, 1, 1, 1, 1, 2]
    );

    // The second run's writer is this process, still open: running, not crashed.
    let second = &runs[0];
    assert_eq!(second.status, "running");
    assert_eq!(
        (second.kind.as_str(), second.parent_run_id),
        ("resume", Some(1))
    );
    assert_eq!(
        (
            second.counts.rows,
            second.counts.pending,
            second.counts.requests
        ),
        (2, 2, 0)
    );
    assert_eq!(second.ended_at, None);
    writer.close().await.unwrap();
}

#[tokio::test]
async fn selects_one_run_or_says_there_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    AuditWriter::spawn(&path).unwrap().close().await.unwrap();
    let reader = AuditReader::open(&path).unwrap();
    let err = reader.run(RunSelector::Last).unwrap_err();
    assert_eq!(err.to_string(), "no run yet in the audit log");

    two_runs(&path).await.close().await.unwrap();
    assert_eq!(reader.run(RunSelector::Last).unwrap().run_id, 2);
    assert_eq!(reader.run(RunSelector::Id(1)).unwrap().run_id, 1);
    let err = reader.run(RunSelector::Id(9)).unwrap_err();
    assert!(
        matches!(err, AuditError::NoSuchRun(ref id) if id == "9"),
        "{err}"
    );
    assert!(matches!(
        reader.rows(9, RowFilter::default()),
        Err(AuditError::NoSuchRun(_))
    ));
}

#[tokio::test]
async fn lists_rows_in_plan_order_or_only_failures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    two_runs(&path).await.close().await.unwrap();
    let reader = AuditReader::open(&path).unwrap();
    let rows = reader.rows(1, RowFilter::default()).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.row_no).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
    assert_eq!(rows[2].line, 4);
    assert_eq!(rows[2].account, "TECH\\acct2");
    assert_eq!(rows[2].error.as_deref(), Some("EM refused"));
    assert_eq!(rows[2].ticket.as_deref(), Some("CHG-2"));
    assert!(rows[2].finished_at.is_some());
    assert_eq!(rows[5].outcome, "pending");
    assert_eq!(rows[5].finished_at, None);

    let failed = reader.rows(1, RowFilter { failed_only: true }).unwrap();
    assert_eq!(
        failed
            .iter()
            .map(|r| r.outcome.as_str())
            .collect::<Vec<_>>(),
        ["failed", "in_doubt"]
    );
    assert!(
        reader
            .rows(2, RowFilter { failed_only: true })
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn show_json_keeps_its_fields_in_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    two_runs(&path).await.close().await.unwrap();
    let reader = AuditReader::open(&path).unwrap();
    let keys = |json: String| -> Vec<String> {
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let order = |key: &String| json.find(&format!("\"{key}\":")).unwrap();
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort_by_key(order);
        keys
    };
    let run = serde_json::to_string(&reader.run(RunSelector::Id(1)).unwrap()).unwrap();
    assert_eq!(
        keys(run),
        [
            "run_id",
            "kind",
            "parent_run_id",
            "status",
            "started_at",
            "ended_at",
            "operator",
            "server_url",
            "wire",
            "tls_verify",
            "plan_file",
            "plan_sha256",
            "tool_version",
            "rows",
            "applied",
            "noop",
            "failed",
            "skipped",
            "in_doubt",
            "conflict",
            "pending",
            "requests"
        ]
    );
    let row = &reader.rows(1, RowFilter::default()).unwrap()[0];
    assert_eq!(
        keys(serde_json::to_string(row).unwrap()),
        [
            "row_no",
            "line",
            "account",
            "action",
            "target",
            "outcome",
            "error",
            "ticket",
            "finished_at"
        ]
    );
}

#[tokio::test]
async fn a_running_run_whose_writer_is_gone_is_crashed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    two_runs(&path).await.close().await.unwrap();
    let reader = AuditReader::open(&path).unwrap();
    assert_eq!(reader.run(RunSelector::Id(2)).unwrap().status, "running");

    // Both runs' writer is now a process that does not exist.
    writer_gone(&path, 1);
    writer_gone(&path, 2);
    let other = Connection::open(&path).unwrap();
    let expected = if cfg!(target_os = "linux") {
        "crashed"
    } else {
        "running"
    };
    assert_eq!(reader.run(RunSelector::Id(2)).unwrap().status, expected);
    assert_eq!(reader.runs().unwrap()[0].status, expected);
    // A finished run keeps its status whatever became of its writer.
    assert_eq!(reader.run(RunSelector::Id(1)).unwrap().status, "failed");
    // The stored status is unchanged, so a resume can continue the run.
    let stored: String = other
        .query_row("SELECT status FROM run_summary WHERE run_id = 2", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, "running");
}

#[test]
fn reads_only_an_up_to_date_file_and_checks_integrity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    // An empty file is a database at schema version 0: a reader leaves it so.
    std::fs::write(&path, b"").unwrap();
    let Err(err) = AuditReader::open(&path) else {
        panic!("a reader opened a file at schema version 0")
    };
    assert!(err.to_string().contains("older embatch"), "{err}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    drop(db::open(&path, db::Durability::Full).unwrap());
    let reader = AuditReader::open(&path).unwrap();
    assert!(reader.runs().unwrap().is_empty());
    assert_eq!(reader.integrity_check().unwrap(), "ok");
    let mut views: Vec<String> = reader
        .connection()
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'view'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    views.sort();
    // The four of the stable interface, and the three private ones that derive the current
    // state of runs, rows and attempts from their facts.
    assert_eq!(
        views,
        [
            "attempts",
            "change_log",
            "evidence_log",
            "plan_rows",
            "request_log",
            "run_summary",
            "runs"
        ]
    );
}

#[test]
fn the_summary_of_one_run_reads_only_that_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    drop(db::open(&path, db::Durability::Full).unwrap());
    let reader = AuditReader::open(&path).unwrap();
    let plan: Vec<String> = reader
        .connection()
        .prepare(&format!(
            "EXPLAIN QUERY PLAN {RUN_QUERY} WHERE s.run_id = ?1"
        ))
        .unwrap()
        .query_map([1], |r| r.get::<_, String>(3))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    // Every table is reached through its key, none scanned whole: the WHERE is pushed down
    // into the view's aggregate. The planned rows are searched by run.
    assert!(
        plan.iter()
            .any(|step| step.starts_with("SEARCH p USING ") && step.contains(" (run_id=?)")),
        "{plan:#?}"
    );
    // The run's start is searched by its id twice: in the summary, and in `runs`.
    assert_eq!(
        plan.iter()
            .filter(|step| step
                .starts_with("SEARCH s USING INDEX sqlite_autoindex_run_starts_1 (id=?)"))
            .count(),
        2,
        "{plan:#?}"
    );
    // The one scan is of the summary's one row (`s`, the view computed for that run).
    let scans: Vec<&String> = plan
        .iter()
        .filter(|step| step.starts_with("SCAN "))
        .collect();
    assert_eq!(scans, ["SCAN s"], "{plan:#?}");
}
