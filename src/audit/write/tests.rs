//! The writer: each record seen in the three views, a password kept out of the server's URL,
//! an attempt committed when it answers, group commit under many senders, an account id written
//! with its row's outcome or at the end, close flushing what was told without awaiting, and a
//! measurement of its throughput (ignored). A failed write is in `failures.rs`, the run lock of
//! a server in `lock.rs`.

use std::sync::Arc;
use std::time::Instant;

use rusqlite::Connection;

use super::*;
use crate::audit::fixtures::{attempt, new_rows, new_run, outcome};

mod failures;
mod lock;

fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 24
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[23] == b'Z'
        && time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

#[tokio::test]
async fn records_show_up_in_the_three_views() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let writer = AuditWriter::spawn(&path).unwrap();
    let audit = writer.handle();

    let run_id = audit.begin_run(new_run()).await.unwrap();
    let mut rows = new_rows(3);
    rows[1].object_name = Some("Finance VMs".into());
    rows[1].annotations = Some(r#"{"team":"ops"}"#.into());
    rows[1].comment = Some("quarterly review".into());
    audit.add_rows(run_id, rows).await.unwrap();

    audit.row_account(run_id, 0, "11111111-2222-3333-4444-555555555555");
    let a1 = audit
        .attempt_started(attempt(run_id, Some(0), 1))
        .await
        .unwrap();
    audit.attempt_finished(run_id, a1, Some(503), None, Duration::from_micros(12_500));
    let a2 = audit
        .attempt_started(attempt(run_id, Some(0), 2))
        .await
        .unwrap();
    audit.attempt_finished(run_id, a2, Some(204), None, Duration::from_millis(3));
    let a3 = audit
        .attempt_started(attempt(run_id, None, 1))
        .await
        .unwrap();
    audit.attempt_finished(
        run_id,
        a3,
        None,
        Some("connection reset".into()),
        Duration::ZERO,
    );
    audit.row_finished(
        run_id,
        0,
        RowResult {
            outcome: "applied".into(),
            error: None,
            prior_state: Some(r#"{"roles":[]}"#.into()),
            result: Some(r#"{"role":"Portal User"}"#.into()),
        },
    );
    audit.row_finished(
        run_id,
        1,
        RowResult {
            error: Some("EM refused: 400 bad scope".into()),
            ..outcome("failed")
        },
    );
    audit.end_run(run_id, RunStatus::Failed).await.unwrap();
    writer.close().await.unwrap();

    let conn = Connection::open(&path).unwrap();
    let summary = conn
        .query_row(
            "SELECT kind, parent_run_id, status, started_at, ended_at, operator, server_url,
                    wire, tls_verify, insecure, plan_file, plan_sha256, tool_version, options,
                    rows, applied, noop, failed, skipped, in_doubt, pending, requests
             FROM run_summary WHERE run_id = ?1",
            [run_id],
            |r| {
                Ok((
                    (
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                    ),
                    (
                        r.get::<_, String>(7)?,
                        r.get::<_, bool>(8)?,
                        r.get::<_, bool>(9)?,
                        r.get::<_, Option<String>>(10)?,
                        r.get::<_, Option<String>>(11)?,
                        r.get::<_, String>(12)?,
                        r.get::<_, String>(13)?,
                    ),
                    [14, 15, 16, 17, 18, 19, 20, 21].map(|i| r.get::<_, i64>(i).unwrap()),
                ))
            },
        )
        .unwrap();
    let (head, conn_info, counts) = summary;
    assert_eq!(head.0, "apply");
    assert_eq!(head.1, None);
    assert_eq!(head.2, "failed");
    assert!(is_timestamp(&head.3), "{}", head.3);
    assert!(is_timestamp(head.4.as_deref().unwrap()));
    assert!(head.3 <= *head.4.as_ref().unwrap());
    assert_eq!(head.5, "TECH\\alice");
    assert_eq!(head.6, "https://127.0.0.1:9398/api");
    assert_eq!(conn_info.0, "xml");
    assert!(conn_info.1);
    assert!(!conn_info.2);
    assert_eq!(conn_info.3.as_deref(), Some("plan.csv"));
    assert_eq!(conn_info.4, Some("ab".repeat(32)));
    assert_eq!(conn_info.5, "0.1.0");
    assert_eq!(conn_info.6, r#"{"concurrency":4}"#);
    // rows, applied, noop, failed, skipped, in_doubt, pending, requests
    assert_eq!(counts, [3, 1, 0, 1, 0, 0, 1, 3]);

    let mut stmt = conn
        .prepare(
            "SELECT row_no, line, account, account_id, action, target, object_name, outcome,
                    error, prior_state, result, ticket, comment, annotations, finished_at
             FROM change_log WHERE run_id = ?1 ORDER BY row_no",
        )
        .unwrap();
    let rows: Vec<Vec<Option<String>>> = stmt
        .query_map([run_id], |r| {
            Ok((0..15)
                .map(|i| match r.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Null => None,
                    rusqlite::types::ValueRef::Integer(v) => Some(v.to_string()),
                    v => Some(v.as_str().unwrap().to_string()),
                })
                .collect())
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows[0][..14],
        [
            s("0"),
            s("2"),
            s("TECH\\acct0"),
            s("11111111-2222-3333-4444-555555555555"),
            s("assign-role"),
            s("Portal User"),
            None,
            s("applied"),
            None,
            s(r#"{"roles":[]}"#),
            s(r#"{"role":"Portal User"}"#),
            s("CHG-0"),
            None,
            None,
        ]
    );
    assert!(is_timestamp(rows[0][14].as_deref().unwrap()));
    assert_eq!(rows[1][6], s("Finance VMs"));
    assert_eq!(rows[1][7], s("failed"));
    assert_eq!(rows[1][8], s("EM refused: 400 bad scope"));
    assert_eq!(rows[1][12], s("quarterly review"));
    assert_eq!(rows[1][13], s(r#"{"team":"ops"}"#));
    assert_eq!(rows[2][3], None, "no account id yet");
    assert_eq!(rows[2][7], s("pending"));
    assert_eq!(rows[2][14], None, "not finished");

    let mut stmt = conn
        .prepare(
            "SELECT attempt_id, run_id, row_no, attempt, method, path, status, error,
                    started_at, duration_ms
             FROM request_log ORDER BY attempt_id",
        )
        .unwrap();
    type Req = (
        i64,
        i64,
        Option<i64>,
        u32,
        String,
        String,
        Option<u16>,
        Option<String>,
        String,
        f64,
    );
    let reqs: Vec<Req> = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
            ))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(reqs.len(), 3);
    assert_eq!(
        (
            reqs[0].0, reqs[0].1, reqs[0].2, reqs[0].3, reqs[0].6, reqs[0].9
        ),
        (a1 as i64, run_id, Some(0), 1, Some(503), 12.5)
    );
    assert_eq!(
        (reqs[0].4.as_str(), reqs[0].5.as_str()),
        ("POST", "/api/security/accounts/1/roles")
    );
    assert!(is_timestamp(&reqs[0].8));
    assert_eq!(
        (reqs[1].0, reqs[1].3, reqs[1].6, reqs[1].9),
        (a2 as i64, 2, Some(204), 3.0)
    );
    assert_eq!((reqs[2].0, reqs[2].2, reqs[2].6), (a3 as i64, None, None));
    assert_eq!(reqs[2].7.as_deref(), Some("connection reset"));
}

#[test]
fn a_password_in_the_server_url_is_not_kept() {
    assert_eq!(
        without_password("https://svc:s3cret@em.example.com:9398/api"),
        "https://svc@em.example.com:9398/api"
    );
    assert_eq!(
        without_password("https://em.example.com:9398/api"),
        "https://em.example.com:9398/api"
    );
    assert_eq!(without_password("not a url"), "not a url");
}

#[tokio::test]
async fn an_attempt_is_committed_when_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let writer = AuditWriter::spawn(&path).unwrap();
    let audit = writer.handle();
    let run_id = audit.begin_run(new_run()).await.unwrap();
    audit.add_rows(run_id, new_rows(1)).await.unwrap();
    let reader = Connection::open(&path).unwrap();
    for n in 1..=3 {
        let id = audit
            .attempt_started(attempt(run_id, Some(0), n))
            .await
            .unwrap();
        // Nothing else is sent before this read: the intent must already be durable and
        // visible to another connection, with no end recorded yet.
        let (attempt, duration): (u32, Option<f64>) = reader
            .query_row(
                "SELECT attempt, duration_ms FROM request_log WHERE attempt_id = ?1",
                [id as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((attempt, duration), (n, None));
        audit.attempt_finished(run_id, id, Some(200), None, Duration::from_millis(1));
    }
    writer.close().await.unwrap();
    let unfinished: i64 = reader
        .query_row(
            "SELECT count(*) FROM request_log WHERE duration_ms IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(unfinished, 0, "close flushes the fire-and-forget ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_under_many_senders_loses_nothing() {
    const TASKS: u64 = 16;
    const EACH: u64 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let writer = AuditWriter::spawn(&path).unwrap();
    let audit = writer.handle();
    let run_id = audit.begin_run(new_run()).await.unwrap();
    audit.add_rows(run_id, new_rows(TASKS)).await.unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let audit = audit.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..EACH {
                    let id = audit
                        .attempt_started(attempt(run_id, Some(t), n as u32 + 1))
                        .await
                        .unwrap();
                    audit.attempt_finished(run_id, id, Some(200), None, Duration::from_millis(n));
                    ids.push(id);
                }
                audit.row_finished(run_id, t, outcome("applied"));
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    writer.close().await.unwrap();

    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len() as u64,
        TASKS * EACH,
        "every attempt got its own id"
    );
    let conn = Connection::open(&path).unwrap();
    let (requests, applied): (i64, i64) = conn
        .query_row(
            "SELECT requests, applied FROM run_summary WHERE run_id = ?1",
            [run_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((requests as u64, applied as u64), (TASKS * EACH, TASKS));
    let finished: i64 = conn
        .query_row(
            "SELECT count(*) FROM request_log WHERE status = 200 AND duration_ms IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(finished as u64, TASKS * EACH);
    // Per row, the attempt numbers are exactly 1..=EACH: nothing duplicated or missing.
    let per_row: i64 = conn
        .query_row(
            "SELECT count(*) FROM (SELECT row_no FROM request_log GROUP BY row_no
              HAVING count(DISTINCT attempt) = ?1 AND min(attempt) = 1 AND max(attempt) = ?1)",
            [EACH as i64],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(per_row as u64, TASKS);
}

#[tokio::test]
async fn an_account_id_is_written_with_its_rows_outcome_or_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let writer = AuditWriter::spawn(&path).unwrap();
    let audit = writer.handle();
    let first = audit
        .begin_run_with_rows(new_run(), new_rows(3))
        .await
        .unwrap();
    audit.row_account(first, 0, "a");
    audit.row_finished(first, 0, outcome("applied"));
    // Row 1 never finishes: its id goes in when the run ends.
    audit.row_account(first, 1, "b");
    audit.end_run(first, RunStatus::Aborted).await.unwrap();
    // And this one when the writer closes.
    let second = audit
        .begin_run_with_rows(new_run(), new_rows(1))
        .await
        .unwrap();
    audit.row_account(second, 0, "c");
    writer.close().await.unwrap();

    let conn = Connection::open(&path).unwrap();
    let ids: Vec<(i64, i64, Option<String>, String)> = conn
        .prepare("SELECT run_id, row_no, account_id, outcome FROM change_log ORDER BY 1, 2")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let s = |t: &str| Some(t.to_string());
    assert_eq!(
        ids,
        [
            (first, 0, s("a"), "applied".into()),
            (first, 1, s("b"), "pending".into()),
            (first, 2, None, "pending".into()),
            (second, 0, s("c"), "pending".into()),
        ]
    );
    // Row 0's id and outcome are one record; row 1's id is a record of its own.
    let updates: Vec<(String, i64, String)> = conn
        .prepare(
            "SELECT kind, ref, content FROM evidence_log
             WHERE kind NOT IN ('row', 'run', 'end', 'checkpoint') AND run_id = ?1
             ORDER BY seq",
        )
        .unwrap()
        .query_map([first], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_eq!((updates[0].0.as_str(), updates[0].1), ("outcome", 0));
    assert!(
        updates[0]
            .2
            .starts_with(r#"{"account_id":"a","error":null,"finished_at":"#),
        "{}",
        updates[0].2
    );
    assert_eq!(
        updates[1],
        (
            "account".to_string(),
            1,
            format!(r#"{{"account_id":"b","row_no":1,"run_id":{first}}}"#)
        )
    );
    let verified = crate::audit::AuditReader::open(&path)
        .unwrap()
        .verify(None, None)
        .unwrap();
    assert!(verified.holds(), "{:?}", verified.problems);
}

#[tokio::test]
async fn close_flushes_without_any_awaited_call() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let writer = AuditWriter::spawn(&path).unwrap();
    let audit = writer.handle();
    let run_id = audit.begin_run(new_run()).await.unwrap();
    audit.add_rows(run_id, new_rows(500)).await.unwrap();
    for i in 0..500 {
        audit.row_finished(run_id, i, outcome("noop"));
    }
    writer.close().await.unwrap();
    let conn = Connection::open(&path).unwrap();
    let noop: i64 = conn
        .query_row("SELECT noop FROM run_summary", [], |r| r.get(0))
        .unwrap();
    assert_eq!(noop, 500);
}

/// Measures the writer's sustained records per second, with FULL and NORMAL durability, in
/// two shapes of load: many concurrent awaited intents (each request of a run), and a stream
/// of fire-and-forget row outcomes; each record carries its evidence in the hash chain. Then
/// measures `verify` on the last log. Run with
/// `cargo test --release --lib audit::write::tests::throughput -- --ignored --nocapture`;
/// `EMBATCH_BENCH_DIR` chooses the file system (default: the system's temporary directory).
#[ignore = "a measurement, not a check; prints records per second"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput() {
    let base = std::env::var_os("EMBATCH_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    for durability in [Durability::Full, Durability::Normal] {
        for senders in [16u64, 256] {
            let dir = tempfile::tempdir_in(&base).unwrap();
            let writer =
                AuditWriter::spawn_with(&dir.path().join("a.db"), durability, None).unwrap();
            let audit = writer.handle();
            let run_id = audit.begin_run(new_run()).await.unwrap();
            audit.add_rows(run_id, new_rows(senders)).await.unwrap();
            let each = 40_000 / senders;
            let started = Instant::now();
            let barrier = Arc::new(tokio::sync::Barrier::new(senders as usize));
            let tasks: Vec<_> = (0..senders)
                .map(|t| {
                    let audit = audit.clone();
                    let barrier = barrier.clone();
                    tokio::spawn(async move {
                        barrier.wait().await;
                        for n in 0..each {
                            let id = audit
                                .attempt_started(attempt(run_id, Some(t), n as u32 + 1))
                                .await
                                .unwrap();
                            audit.attempt_finished(run_id, id, Some(200), None, Duration::ZERO);
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            writer.close().await.unwrap();
            let records = 2 * senders * each;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{durability:?}: {senders} senders, awaited intent + end: {records} records in {secs:.2}s = {:.0} records/s",
                records as f64 / secs
            );
        }

        let dir = tempfile::tempdir_in(&base).unwrap();
        let writer = AuditWriter::spawn_with(&dir.path().join("b.db"), durability, None).unwrap();
        let audit = writer.handle();
        let run_id = audit.begin_run(new_run()).await.unwrap();
        let rows = 200_000;
        let started = Instant::now();
        audit.add_rows(run_id, new_rows(rows)).await.unwrap();
        for i in 0..rows {
            audit.row_finished(run_id, i, outcome("applied"));
        }
        writer.close().await.unwrap();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{durability:?}: add {rows} rows + {rows} fire-and-forget outcomes: {:.0} records/s",
            (2 * rows) as f64 / secs
        );

        let reader = crate::audit::AuditReader::open(&dir.path().join("b.db")).unwrap();
        let started = Instant::now();
        let verified = reader.verify(None, None).unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert!(verified.holds());
        println!(
            "{durability:?}: verify {} evidence records: {:.0} records/s",
            verified.records,
            verified.records as f64 / secs
        );
    }
}
