//! A write that fails stops the writer, and its callers are told so: a fire-and-forget record
//! that cannot be written, the end of an attempt told under another run than its own, and a group
//! SQLite refuses, rolled back and reported to each of its callers.

use rusqlite::Connection;

use super::super::*;
use crate::audit::fixtures::{attempt, log_with_run, new_rows, new_run, new_run_on, outcome};

#[tokio::test]
async fn a_failed_fire_and_forget_write_stops_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let writer = AuditWriter::spawn(&path).unwrap();
    let audit = writer.handle();
    let run_id = audit.begin_run(new_run()).await.unwrap();
    audit.add_rows(run_id, new_rows(1)).await.unwrap();
    // There is no row 7: the outcome would be lost, so the writer stops.
    audit.row_finished(run_id, 7, outcome("applied"));
    let err = audit
        .attempt_started(attempt(run_id, Some(0), 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AuditError::WriterGone(t) if t.contains("row 7") && t.contains("no such row")),
        "{err}"
    );
    // Every later awaited call gets the same error, and so does close.
    let again = audit.end_run(run_id, RunStatus::Aborted).await.unwrap_err();
    assert_eq!(again.to_string(), err.to_string());
    let closed = writer.close().await.unwrap_err();
    assert_eq!(closed.to_string(), err.to_string());
    // Later records are refused, not lost silently.
    let late = audit.begin_run(new_run()).await.unwrap_err();
    assert!(late.to_string().contains("closed"), "{late}");
}

#[tokio::test]
async fn the_end_of_an_attempt_told_under_another_run_stops_the_writer() {
    let (_dir, path, writer, first) = log_with_run(1).await;
    let audit = writer.handle();
    let second = audit.begin_run(new_run_on(1)).await.unwrap();
    let id = audit
        .attempt_started(attempt(first, Some(0), 1))
        .await
        .unwrap();
    // Its evidence would be filed under another run than the attempt's: nothing of it is
    // written, and the run stops.
    audit.attempt_finished(second, id, Some(200), None, Duration::ZERO);
    let err = audit.end_run(first, RunStatus::Aborted).await.unwrap_err();
    assert!(
        matches!(&err, AuditError::WriterGone(t) if t.contains("no such request in run")),
        "{err}"
    );
    assert!(writer.close().await.is_err());
    let conn = Connection::open(&path).unwrap();
    let ended: i64 = conn
        .query_row(
            "SELECT count(*) FROM attempts WHERE duration_ms IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ended, 0);
}

#[tokio::test]
async fn a_failed_group_is_rolled_back_and_reported_to_its_callers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let writer = AuditWriter::spawn(&path).unwrap();
    let audit = writer.handle();
    let run_id = audit.begin_run(new_run()).await.unwrap();
    // Stands in for a failing disk: every new attempt is refused by SQLite.
    let other = Connection::open(&path).unwrap();
    other
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON requests
             BEGIN SELECT RAISE(ABORT, 'disk refused the write'); END;",
        )
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let audit = audit.clone();
            tokio::spawn(async move { audit.attempt_started(attempt(run_id, None, n)).await })
        })
        .collect();
    for t in tasks {
        let err = t.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("disk refused the write"), "{err}");
    }
    assert!(writer.close().await.is_err());
    let n: i64 = other
        .query_row("SELECT count(*) FROM request_log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}
