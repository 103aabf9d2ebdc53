//! The run lock of a server: a second run refused while the first runs (but not on another
//! server, nor a run that only reads), and a run left running by a process that is gone holds
//! no lock.

use rusqlite::Connection;

use super::super::*;
use crate::audit::fixtures::{log_with_run, new_rows, new_run, new_run_on, writer_gone};

fn runs_recorded(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_second_run_on_a_server_is_refused_while_the_first_runs() {
    let (_dir, path, writer, first) = log_with_run(1).await;
    let audit = writer.handle();
    // Another writer, as a second process would have: the check is the file's, not the
    // handle's.
    let other = AuditWriter::spawn(&path).unwrap();
    let err = other
        .handle()
        .begin_run_with_rows(new_run(), new_rows(2))
        .await
        .unwrap_err();
    let AuditError::Locked(holder) = &err else {
        panic!("not refused for the lock: {err}");
    };
    assert_eq!(holder.run_id, first);
    assert_eq!(holder.pid, std::process::id());
    assert_eq!(holder.operator, "TECH\\alice");
    assert!(err.to_string().contains("--wait"), "{err}");
    // Nothing of the refused run was kept, and the refusal is no failure of the log.
    assert_eq!(runs_recorded(&path), 1);
    assert!(other.handle().failure().is_none());
    // Another server, and a run that only reads, do not wait for this lock.
    other.handle().begin_run(new_run_on(1)).await.unwrap();
    let snapshot = NewRun {
        kind: "snapshot".into(),
        ..new_run()
    };
    other.handle().begin_run(snapshot).await.unwrap();
    // Once the first run ends, the server is free again.
    audit.end_run(first, RunStatus::Completed).await.unwrap();
    let (rx_tx, rx) = std::sync::mpsc::sync_channel(1);
    rx_tx.send(RowBatch::End).unwrap();
    let third = other
        .handle()
        .begin_run_streamed(new_run(), rx)
        .await
        .unwrap();
    assert!(third.is_some());
    other.close().await.unwrap();
    writer.close().await.unwrap();
}

#[tokio::test]
async fn a_run_left_running_by_a_process_that_is_gone_holds_no_lock() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let (_dir, path, writer, first) = log_with_run(1).await;
    // The run's writer is now a process that does not exist: a crash.
    writer_gone(&path, first);
    let audit = writer.handle();
    let second = audit.begin_run(new_run()).await.unwrap();
    // While the second runs, resuming the crashed first one is refused: the second holds
    // the server.
    let err = audit.resume_run(first).await.unwrap_err();
    assert!(
        matches!(&err, AuditError::Locked(h) if h.run_id == second),
        "{err}"
    );
    audit.end_run(second, RunStatus::Completed).await.unwrap();
    audit.resume_run(first).await.unwrap();
    writer.close().await.unwrap();
}
