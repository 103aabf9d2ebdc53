//! The chain of facts (schema 02) as embatch writes it verifies. The damage done to it is
//! named by `facts.rs`, whose tests show it; a log of schema 01 not migrated yet is verified
//! by `legacy/`, whose tests are in `legacy/tests.rs`.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::audit::canon::GENESIS;
use crate::audit::chain::FACT_TABLES;
use crate::audit::fixtures::{attempt, new_rows, new_run, outcome, schema01_copy};
use crate::audit::{AuditWriter, RowResult, RunStatus};

/// Records in [`sample`]: run 1 has 14, run 2 has 11.
const SAMPLE_RECORDS: u64 = 25;

/// A log with two ended runs: run 1 with three rows, an account id written with its row's
/// outcome, two attempts (one of no row); run 2 with two rows, an account id written on its
/// own (as every account id was before ids were held for the outcome), interrupted, resumed
/// and completed.
async fn sample(path: &Path) {
    let writer = AuditWriter::spawn(path).unwrap();
    let audit = writer.handle();
    let first = audit
        .begin_run_with_rows(new_run(), new_rows(3))
        .await
        .unwrap();
    audit.row_account(first, 0, "11111111-2222-3333-4444-555555555555");
    let a = audit
        .attempt_started(attempt(first, Some(0), 1))
        .await
        .unwrap();
    audit.attempt_finished(first, a, Some(201), None, Duration::from_micros(12_345));
    let b = audit
        .attempt_started(attempt(first, None, 1))
        .await
        .unwrap();
    audit.attempt_finished(
        first,
        b,
        None,
        Some("connection reset".into()),
        Duration::ZERO,
    );
    audit.row_finished(
        first,
        0,
        RowResult {
            prior_state: Some(r#"{"roles":[]}"#.into()),
            result: Some(r#"{"role":"Portal User"}"#.into()),
            ..outcome("applied")
        },
    );
    audit.row_finished(
        first,
        1,
        RowResult {
            error: Some("EM refused: 400 bad scope".into()),
            ..outcome("failed")
        },
    );
    audit.row_finished(first, 2, outcome("noop"));
    audit.end_run(first, RunStatus::Failed).await.unwrap();

    let second = audit.begin_run(new_run()).await.unwrap();
    audit.add_rows(second, new_rows(2)).await.unwrap();
    // A row cut off before its outcome: its account id is written on its own at the end.
    audit.row_account(second, 1, "66666666-7777-8888-9999-000000000000");
    audit.end_run(second, RunStatus::Interrupted).await.unwrap();
    audit.resume_run(second).await.unwrap();
    audit.row_finished(second, 0, outcome("applied"));
    audit.row_finished(second, 1, outcome("noop"));
    audit.end_run(second, RunStatus::Completed).await.unwrap();
    writer.close().await.unwrap();
}

fn verify(path: &Path) -> Verification {
    AuditReader::open(path).unwrap().verify(None, None).unwrap()
}

/// Every row of a query on the log at `path`, each a pair of columns.
fn pairs<A: rusqlite::types::FromSql, B: rusqlite::types::FromSql>(
    path: &Path,
    sql: &str,
) -> Vec<(A, B)> {
    Connection::open(path)
        .unwrap()
        .prepare(sql)
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[tokio::test]
async fn an_intact_log_verifies_in_full_and_run_by_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    sample(&path).await;
    let reader = AuditReader::open(&path).unwrap();
    let all = reader.verify(None, None).unwrap();
    assert!(all.holds(), "{:?}", all.problems);
    assert_eq!(all.records, SAMPLE_RECORDS);
    assert_eq!(all.head_seq, SAMPLE_RECORDS as i64);
    let newest: Vec<(i64, String)> = pairs(
        &path,
        "SELECT seq, hash FROM evidence_log ORDER BY seq DESC LIMIT 1",
    );
    assert_eq!(newest, [(SAMPLE_RECORDS as i64, all.head.clone())]);
    assert_eq!((all.run_id, all.anchor.as_ref()), (None, None));

    let first = reader.verify(Some(RunSelector::Id(1)), None).unwrap();
    let last = reader.verify(Some(RunSelector::Last), None).unwrap();
    assert!(first.holds() && last.holds());
    assert_eq!((first.run_id, last.run_id), (Some(1), Some(2)));
    assert_eq!((first.records, last.records), (14, 11));
    assert_eq!(
        last.head, all.head,
        "the head is the chain's, whatever the run"
    );

    // Each end is followed by its checkpoint, which states the head and the count.
    let checkpoints: Vec<(i64, String)> = pairs(
        &path,
        "SELECT e.seq, c.content FROM evidence_log e JOIN evidence_log c
         ON c.seq = e.seq + 1 WHERE e.kind = 'end' AND c.kind = 'checkpoint'
         AND c.run_id = e.run_id ORDER BY e.seq",
    );
    let ends: Vec<(i64, String)> = pairs(
        &path,
        "SELECT seq, hash FROM evidence_log WHERE kind = 'end' ORDER BY seq",
    );
    assert_eq!(checkpoints.len(), 3);
    assert_eq!(ends.len(), 3);
    let (seq, hash) = &ends[0];
    assert_eq!(
        checkpoints[0],
        (
            *seq,
            format!(
                r#"{{"head":"{hash}","public_key":null,"records":{seq},"run_id":1,"signature":null}}"#
            )
        )
    );
    let kinds: Vec<(i64, String)> = pairs(
        &path,
        "SELECT seq, kind FROM evidence_log WHERE run_id = 2 ORDER BY seq",
    );
    let kinds: Vec<&str> = kinds.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "run",
            "row",
            "row",
            "account",
            "end",
            "checkpoint",
            "resume",
            "outcome",
            "outcome",
            "end",
            "checkpoint"
        ]
    );
}

#[tokio::test]
async fn a_migrated_log_verifies_and_still_finds_the_heads_taken_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = schema01_copy(dir.path(), "audit.db");
    // Migrated by the writer, which then goes on with the chain.
    let writer = AuditWriter::spawn(&path).unwrap();
    let run = writer.handle().begin_run(new_run()).await.unwrap();
    assert_eq!(run, 5);
    writer
        .handle()
        .end_run(run, RunStatus::Completed)
        .await
        .unwrap();
    writer.close().await.unwrap();
    let reader = AuditReader::open(&path).unwrap();
    let all = reader.verify(None, None).unwrap();
    assert!(all.holds(), "{:?}", all.problems);
    let count: i64 = reader
        .connection()
        .query_row("SELECT count(*) FROM evidence_log", [], |r| r.get(0))
        .unwrap();
    assert_eq!((all.records, all.head_seq), (count as u64, count));
    // The heads `verify --anchor` printed before the migration (tests/fixtures/README.md).
    for (head, at) in [
        (
            "e2594a85ee489bc76ad29171d33bd9d054e7b6070762909e26ef1cf8cd51f372",
            529,
        ),
        (
            "d44da2cc4d9dcd97d7a6ddb535a8c36ef2aa75caded1680720678c1d35f1085a",
            714,
        ),
    ] {
        let v = reader.verify(None, Some(head)).unwrap();
        assert!(v.holds(), "{:?}", v.problems);
        let anchor = v.anchor.unwrap();
        assert_eq!((anchor.found_at, anchor.carried_over), (Some(at), true));
    }
    // A head of the new chain is found in it.
    let v = reader.verify(None, Some(&all.head)).unwrap();
    let anchor = v.anchor.unwrap();
    assert_eq!((anchor.found_at, anchor.carried_over), (Some(count), false));
    for run in 1..=5 {
        let v = reader.verify(Some(RunSelector::Id(run)), None).unwrap();
        assert!(v.holds() && v.records > 0, "run {run}: {:?}", v.problems);
    }
}

#[tokio::test]
async fn the_evidence_holds_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let writer = AuditWriter::spawn(&path).unwrap();
    let run = crate::audit::NewRun {
        server_url: "https://svc:s3cret@em.example.com:9398/api".into(),
        ..new_run()
    };
    let id = writer.handle().begin_run(run).await.unwrap();
    writer
        .handle()
        .end_run(id, RunStatus::Completed)
        .await
        .unwrap();
    writer.close().await.unwrap();
    let conn = Connection::open(&path).unwrap();
    let (records, leaks): (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(CASE WHEN instr(content, 's3cret') > 0 THEN 1 END)
             FROM evidence_log",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((records, leaks), (3, 0));
    assert!(verify(&path).holds());
}

#[tokio::test]
async fn an_empty_log_has_no_records_and_the_genesis_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    AuditWriter::spawn(&path).unwrap().close().await.unwrap();
    let reader = AuditReader::open(&path).unwrap();
    let v = reader.verify(None, None).unwrap();
    assert!(v.holds());
    assert_eq!((v.records, v.head_seq, v.head.as_str()), (0, 0, GENESIS));
    let v = reader.verify(None, Some(GENESIS)).unwrap();
    assert_eq!(v.anchor.unwrap().found_at, Some(0));
    let other = "ab".repeat(32);
    let v = reader.verify(None, Some(&other)).unwrap();
    assert!(!v.holds());
    assert_eq!(v.problem_count, 0);
    assert_eq!(v.anchor.unwrap().found_at, None);
    assert!(matches!(
        reader.verify(Some(RunSelector::Last), None),
        Err(AuditError::NoSuchRun(_))
    ));
}

#[tokio::test]
async fn the_evidence_refuses_changes_made_by_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let written = dir.path().join("audit.db");
    sample(&written).await;
    // A migrated log holds the tables the sample leaves empty (`migration`), and the old
    // chain.
    let migrated = schema01_copy(dir.path(), "migrated.db");
    drop(crate::audit::db::open(&migrated, crate::audit::db::Durability::Full).unwrap());
    let mut refused = std::collections::BTreeSet::new();
    for path in [&written, &migrated] {
        let conn = Connection::open(path).unwrap();
        let tables = FACT_TABLES
            .iter()
            .map(|t| t.name)
            .chain(["legacy_evidence"]);
        for table in tables {
            let first: Option<i64> = conn
                .query_row(&format!("SELECT min(seq) FROM {table}"), [], |r| r.get(0))
                .unwrap_or(None);
            let Some(seq) = first else { continue };
            for sql in [
                format!("UPDATE {table} SET hash = hash WHERE seq = {seq}"),
                format!("DELETE FROM {table} WHERE seq = {seq}"),
            ] {
                let err = conn.execute(&sql, []).unwrap_err();
                assert!(err.to_string().contains("append-only"), "{sql}: {err}");
            }
            refused.insert(table);
        }
        assert!(verify(path).holds(), "{}", path.display());
    }
    // Every table of facts was tried, with a record in it.
    assert_eq!(refused.len(), FACT_TABLES.len() + 1, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_of_one_file_extend_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    sample(&path).await;
    // Two writers at once, as two embatch processes on one file: each group reads the head
    // under the write lock, so their records interleave into one chain.
    let writers = [
        AuditWriter::spawn(&path).unwrap(),
        AuditWriter::spawn(&path).unwrap(),
    ];
    let tasks: Vec<_> = writers
        .iter()
        .enumerate()
        .map(|(n, w)| {
            let audit = w.handle();
            // Two servers: runs of one server would wait for each other's lock.
            let run = crate::audit::fixtures::new_run_on(n as u16 + 1);
            tokio::spawn(async move {
                let run = audit.begin_run_with_rows(run, new_rows(20)).await.unwrap();
                for n in 0..50 {
                    let id = audit
                        .attempt_started(attempt(run, Some(n % 20), n as u32 + 1))
                        .await
                        .unwrap();
                    audit.attempt_finished(run, id, Some(200), None, Duration::from_millis(n));
                }
                for row in 0..20 {
                    audit.row_finished(run, row, outcome("applied"));
                }
                audit.end_run(run, RunStatus::Completed).await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for w in writers {
        w.close().await.unwrap();
    }
    let v = verify(&path);
    assert!(v.holds(), "{:?}", v.problems);
    // Each run: run, 20 rows, 50 intents and 50 ends, 20 outcomes, end, checkpoint.
    assert_eq!(v.records, SAMPLE_RECORDS + 2 * 143);
}

#[tokio::test]
async fn a_failed_group_leaves_the_chain_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let writer = AuditWriter::spawn(&path).unwrap();
    let audit = writer.handle();
    let run = audit
        .begin_run_with_rows(new_run(), new_rows(1))
        .await
        .unwrap();
    // The outcome of a row that does not exist fails the group it rides in, attempt and all.
    audit.row_finished(run, 7, outcome("applied"));
    assert!(
        audit
            .attempt_started(attempt(run, Some(0), 1))
            .await
            .is_err()
    );
    assert!(writer.close().await.is_err());
    let v = verify(&path);
    assert!(v.holds(), "{:?}", v.problems);
    assert_eq!(v.records, 2);
}
