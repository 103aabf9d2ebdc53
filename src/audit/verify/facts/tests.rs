//! The damage to the chain of facts, named on copies of a sample log: an edit, a deletion and an
//! insertion in every table, each kind of damage to the chain as one problem, a change to the
//! schema, a rebuilt chain that holds but fails the anchor and the signatures, unsigned
//! checkpoints where a key is expected, and a migrated log with its old anchors and new signed
//! runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use super::super::{Damage, Verification, verify_connection};
use crate::audit::canon::record_hash;
use crate::audit::chain::{FACT_TABLES, checkpoint_message};
use crate::audit::fixtures::{attempt, new_rows, new_run, outcome};
use crate::audit::sign::CheckpointKey;
use crate::audit::{AuditWriter, RowResult, RunStatus};

fn key() -> CheckpointKey {
    CheckpointKey::from_secret(&[42; 32])
}

fn mallory() -> CheckpointKey {
    CheckpointKey::from_secret(&[66; 32])
}

/// A log with every kind of fact: run 1 with three rows of one account (prior states stored
/// once, then patched), an account id given with an outcome, two requests and their results,
/// ended; run 2 with two rows, an account id left without an outcome, interrupted, resumed
/// and completed. Signed with `key` when given.
async fn sample(path: &Path, key: Option<CheckpointKey>) {
    let writer = match key {
        Some(key) => AuditWriter::spawn_signed(path, key).unwrap(),
        None => AuditWriter::spawn(path).unwrap(),
    };
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
    let state = |roles: &str| {
        format!(
            r#"{{"id":"a1","name":"TECH\\acct","allow_restore_all_vms":false,"roles":[{roles}],"scopes":[]}}"#
        )
    };
    audit.row_finished(
        first,
        0,
        RowResult {
            prior_state: Some(state("")),
            result: Some(r#"{"role":"Portal User"}"#.into()),
            ..outcome("applied")
        },
    );
    audit.row_finished(
        first,
        1,
        RowResult {
            error: Some("EM refused: 400 bad scope".into()),
            prior_state: Some(state(r#""Portal User""#)),
            ..outcome("failed")
        },
    );
    audit.row_finished(first, 2, outcome("noop"));
    audit.end_run(first, RunStatus::Failed).await.unwrap();

    let second = audit.begin_run(new_run()).await.unwrap();
    audit.add_rows(second, new_rows(2)).await.unwrap();
    audit.row_account(second, 1, "66666666-7777-8888-9999-000000000000");
    audit.end_run(second, RunStatus::Interrupted).await.unwrap();
    audit.resume_run(second).await.unwrap();
    audit.row_finished(second, 0, outcome("applied"));
    audit.row_finished(second, 1, outcome("noop"));
    audit.end_run(second, RunStatus::Completed).await.unwrap();
    writer.close().await.unwrap();
}

async fn sample_in(dir: &Path, key: Option<CheckpointKey>) -> PathBuf {
    let path = dir.join("sample.db");
    sample(&path, key).await;
    path
}

fn copy_of(sample: &Path, name: &str) -> PathBuf {
    let path = sample.with_file_name(name);
    std::fs::copy(sample, &path).unwrap();
    path
}

fn verify(path: &Path, expect: Option<&str>, public_key: Option<&str>) -> Verification {
    let conn = Connection::open(path).unwrap();
    verify_connection(&conn, None, expect, public_key).unwrap()
}

fn found(v: &Verification) -> Vec<String> {
    v.problems.iter().map(|p| p.to_string()).collect()
}

/// Runs `sql` on the file as an editor with sqlite3 would, the append-only triggers dropped
/// first and put back after, so that only the edit itself is there to be found.
fn tamper(path: &Path, sql: &str) {
    let conn = Connection::open(path).unwrap();
    let triggers: Vec<(String, String)> = conn
        .prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'trigger'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (name, _) in &triggers {
        conn.execute_batch(&format!("DROP TRIGGER {name}")).unwrap();
    }
    conn.execute_batch(sql).unwrap();
    for (_, sql) in &triggers {
        // Unless the edit dropped the trigger's table.
        if let Err(e) = conn.execute_batch(sql) {
            assert!(e.to_string().contains("no such table"), "{e}");
        }
    }
}

/// The number of the first record of `table`.
fn first_seq(path: &Path, table: &str) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row(&format!("SELECT min(seq) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// What a rebuild does with the checkpoints' signatures.
#[derive(Clone, Copy, PartialEq)]
enum Resign<'a> {
    /// Leaves them as they were.
    Keep,
    /// Removes them.
    Strip,
    /// Signs again with this key.
    With(&'a CheckpointKey),
}

impl PartialEq for CheckpointKey {
    fn eq(&self, other: &Self) -> bool {
        self.public_hex() == other.public_hex()
    }
}

/// Recomputes every hash from record `from` on, as someone who knows how they are made
/// would after an edit, the checkpoints' heads and counts made to agree; with `signer`, the
/// checkpoints signed again with that key.
fn rebuild(path: &Path, from: i64, signer: Resign<'_>) {
    let conn = Connection::open(path).unwrap();
    let triggers: Vec<(String, String)> = conn
        .prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'trigger'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (name, _) in &triggers {
        conn.execute_batch(&format!("DROP TRIGGER {name}")).unwrap();
    }
    let last: i64 = conn
        .query_row("SELECT max(seq) FROM evidence_log", [], |r| r.get(0))
        .unwrap();
    let mut prev: String = conn
        .query_row(
            "SELECT prev_hash FROM evidence_log WHERE seq = ?1",
            [from],
            |r| r.get(0),
        )
        .unwrap();
    for seq in from..=last {
        let kind: String = conn
            .query_row("SELECT kind FROM evidence_log WHERE seq = ?1", [seq], |r| {
                r.get(0)
            })
            .unwrap();
        if kind == "checkpoint" {
            let run: i64 = conn
                .query_row(
                    "SELECT run_id FROM checkpoints WHERE seq = ?1",
                    [seq],
                    |r| r.get(0),
                )
                .unwrap();
            let (public_key, signature) = match signer {
                Resign::With(k) => (
                    Some(k.public_hex()),
                    Some(k.sign_hex(&checkpoint_message(run, &prev, seq - 1))),
                ),
                Resign::Keep | Resign::Strip => (None, None),
            };
            let keep_signature = signer == Resign::Keep;
            conn.execute(
                "UPDATE checkpoints SET head = ?2, records = ?3,
                     public_key = CASE WHEN ?6 THEN public_key ELSE ?4 END,
                     signature = CASE WHEN ?6 THEN signature ELSE ?5 END
                 WHERE seq = ?1",
                rusqlite::params![seq, prev, seq - 1, public_key, signature, keep_signature],
            )
            .unwrap();
        }
        let (run_id, reference, content): (i64, Option<i64>, String) = conn
            .query_row(
                "SELECT run_id, ref, content FROM evidence_log WHERE seq = ?1",
                [seq],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        let hash = hex::encode(record_hash(&prev, seq, &kind, run_id, reference, &content));
        let table = FACT_TABLES.iter().find(|t| t.kind == kind).unwrap().name;
        conn.execute(
            &format!("UPDATE {table} SET hash = ?2 WHERE seq = ?1"),
            rusqlite::params![seq, hex::decode(&hash).unwrap()],
        )
        .unwrap();
        prev = hash;
    }
    for (_, sql) in &triggers {
        conn.execute_batch(sql).unwrap();
    }
}

#[tokio::test]
async fn an_intact_log_verifies_and_every_table_is_in_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample_in(dir.path(), None).await;
    let v = verify(&path, None, None);
    assert!(v.holds(), "{:?}", v.problems);
    let conn = Connection::open(&path).unwrap();
    for table in FACT_TABLES.iter().filter(|t| t.name != "migration") {
        let n: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {}", table.name), [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(n > 0, "{} is empty", table.name);
    }
    assert_eq!(v.records, v.head_seq as u64);
}

#[tokio::test]
async fn an_edit_a_deletion_and_an_insertion_in_every_table_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let sample = sample_in(dir.path(), None).await;
    // One edit of a content column for each table.
    let edits = [
        ("run_starts", "operator = 'TECH\\mallory'"),
        ("run_resumes", "previous_status = 'completed'"),
        ("run_ends", "status = 'completed'"),
        ("planned_rows", "target = 'Portal Administrator'"),
        (
            "prior_states",
            "content = replace(content, 'false', 'true')",
        ),
        ("row_outcomes", "outcome = 'skipped'"),
        (
            "row_accounts",
            "account_id = '00000000-0000-0000-0000-000000000000'",
        ),
        ("requests", "path = '/api/elsewhere'"),
        ("request_results", "status = 200"),
        ("checkpoints", "records = records + 1"),
    ];
    for (table, set) in edits {
        let path = copy_of(&sample, &format!("edit-{table}.db"));
        let seq = first_seq(&path, table);
        tamper(
            &path,
            &format!("UPDATE {table} SET {set} WHERE seq = {seq}"),
        );
        let v = verify(&path, None, None);
        let problems = found(&v);
        assert_eq!(problems.len(), 1, "{table}: {problems:?}");
        assert!(
            problems[0].ends_with(&format!("(record #{seq}): modified")),
            "{table}: {problems:?}"
        );
        assert_eq!(v.problems[0].seq, Some(seq));

        let path = copy_of(&sample, &format!("delete-{table}.db"));
        tamper(&path, &format!("DELETE FROM {table} WHERE seq = {seq}"));
        let v = verify(&path, None, None);
        assert_eq!(found(&v), [format!("record #{seq}: deleted")], "{table}");

        // A copy of a record under a number another table holds.
        let path = copy_of(&sample, &format!("insert-{table}.db"));
        let taken = if seq == 1 { 2 } else { 1 };
        let columns = FACT_TABLES
            .iter()
            .find(|t| t.name == table)
            .unwrap()
            .columns;
        // Columns the schema keeps unique get values of their own.
        let values: Vec<String> = columns
            .iter()
            .map(|c| match (table, *c) {
                ("run_starts", "id") => "id + 100".into(),
                ("planned_rows", "row_no") => "row_no + 100".into(),
                ("prior_states", "sha256") => "randomblob(32)".into(),
                ("request_results", "request") => "request + 1000".into(),
                _ => c.to_string(),
            })
            .collect();
        tamper(
            &path,
            &format!(
                "INSERT INTO {table} (seq, hash, {})
                 SELECT {taken}, hash, {} FROM {table} WHERE seq = {seq}",
                columns.join(", "),
                values.join(", ")
            ),
        );
        let v = verify(&path, None, None);
        let problems = found(&v);
        assert_eq!(problems.len(), 1, "{table}: {problems:?}");
        assert!(
            problems[0].ends_with(&format!("(record #{taken}): inserted")),
            "{table}: {problems:?}"
        );
    }
}

#[tokio::test]
async fn each_kind_of_damage_to_the_chain_makes_one_problem() {
    let dir = tempfile::tempdir().unwrap();
    let sample = sample_in(dir.path(), None).await;
    let last = verify(&sample, None, None).head_seq;
    let cases: Vec<(String, Vec<String>)> = vec![
        // A hash changed: that record, not every one after it.
        (
            "UPDATE planned_rows SET hash = randomblob(32) WHERE seq = 3".into(),
            vec!["run 1 row 1 (plan line 3) (record #3): modified".into()],
        ),
        // A hash of the wrong type.
        (
            "UPDATE planned_rows SET hash = 'x' WHERE seq = 3".into(),
            vec!["run 1 row 1 (plan line 3) (record #3): modified".into()],
        ),
        // Several records deleted together.
        (
            "DELETE FROM planned_rows WHERE seq IN (2, 3, 4)".into(),
            vec!["records #2 to #4: deleted".into()],
        ),
        // A record appended with a made-up hash.
        (
            format!(
                "INSERT INTO run_ends (seq, hash, run_id, status, ended_at)
                 VALUES ({}, randomblob(32), 2, 'failed', '2026-12-03T00:00:00.000Z')",
                last + 1
            ),
            vec![
                format!("run 2 end (record #{}): modified", last + 1),
                format!("run 2 checkpoint (record #{}): deleted", last + 2),
            ],
        ),
        // A value stored with another type than embatch wrote (the same bytes).
        (
            "UPDATE planned_rows SET target = CAST(target AS BLOB) WHERE seq = 3".into(),
            vec!["run 1 row 1 (plan line 3) (record #3): modified".into()],
        ),
    ];
    for (n, (sql, expected)) in cases.into_iter().enumerate() {
        let path = copy_of(&sample, &format!("case-{n}.db"));
        tamper(&path, &sql);
        let v = verify(&path, None, None);
        assert_eq!(found(&v), expected, "{sql}");
        assert!(!v.holds());
    }
}

#[tokio::test]
async fn a_change_to_the_schema_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let sample = sample_in(dir.path(), None).await;
    let cases = [
        (
            "DROP VIEW change_log; CREATE VIEW change_log AS SELECT * FROM plan_rows
             WHERE outcome <> 'failed'",
            "view change_log: modified",
        ),
        ("CREATE TABLE notes (x)", "table notes: inserted"),
        ("DROP INDEX requests_run", "index requests_run: deleted"),
    ];
    for (n, (sql, expected)) in cases.into_iter().enumerate() {
        let path = copy_of(&sample, &format!("schema-{n}.db"));
        Connection::open(&path).unwrap().execute_batch(sql).unwrap();
        assert_eq!(found(&verify(&path, None, None)), [expected], "{sql}");
    }
    // A dropped trigger, which lets edits through by mistake.
    let path = copy_of(&sample, "trigger.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("DROP TRIGGER row_outcomes_no_update")
        .unwrap();
    assert_eq!(
        found(&verify(&path, None, None)),
        ["trigger row_outcomes_no_update: deleted"]
    );
    // Statistics made by ANALYZE change no fact.
    let path = copy_of(&sample, "analyze.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("ANALYZE")
        .unwrap();
    assert!(verify(&path, None, None).holds());
}

#[tokio::test]
async fn a_rebuilt_chain_holds_but_not_the_anchor_nor_the_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let sample = sample_in(dir.path(), Some(key())).await;
    let public = key().public_hex();
    let intact = verify(&sample, None, Some(&public));
    assert!(intact.holds(), "{:?}", intact.problems);
    let anchor = intact.head.clone();

    // An outcome changed, and the chain rebuilt after it, checkpoints included.
    let seq = first_seq(&sample, "row_outcomes");
    let edit = format!("UPDATE row_outcomes SET outcome = 'noop' WHERE seq = {seq}");
    // The old signatures kept: they no longer hold, with or without the key.
    let path = copy_of(&sample, "rebuilt.db");
    tamper(&path, &edit);
    rebuild(&path, seq, Resign::Keep);
    let after: i64 = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM checkpoints WHERE seq > ?1",
            [seq],
            |r| r.get(0),
        )
        .unwrap();
    let after = after as u64;
    assert!(after >= 2);
    for public_key in [None, Some(public.as_str())] {
        let v = verify(&path, None, public_key);
        assert_eq!(v.problem_count, after, "{:?}", v.problems);
        assert!(
            v.problems
                .iter()
                .all(|p| p.damage == Damage::Modified && p.record.contains("checkpoint")),
            "{:?}",
            v.problems
        );
    }
    // The signatures removed: only the anchor, or the key, tells.
    let path = copy_of(&sample, "stripped.db");
    tamper(&path, &edit);
    rebuild(&path, seq, Resign::Strip);
    assert!(verify(&path, None, None).holds());
    let v = verify(&path, Some(&anchor), None);
    assert_eq!(v.anchor.as_ref().unwrap().found_at, None);
    assert!(!v.holds());
    let v = verify(&path, None, Some(&public));
    assert_eq!(v.problem_count, after, "{:?}", v.problems);
    assert!(v.problems.iter().all(|p| p.damage == Damage::Unsigned));

    // Re-signed with another key: each checkpoint is signed by someone else.
    let path = copy_of(&sample, "resigned.db");
    tamper(&path, &edit);
    rebuild(&path, seq, Resign::With(&mallory()));
    assert!(verify(&path, None, None).holds());
    let v = verify(&path, None, Some(&public));
    assert!(
        !v.problems.is_empty() && v.problems.iter().all(|p| p.damage == Damage::OtherKey),
        "{:?}",
        v.problems
    );
    assert_eq!(
        found(&v)[0],
        format!(
            "run 1 checkpoint (record #{}): signed by another key",
            seq + 4
        )
    );
}

#[tokio::test]
async fn unsigned_checkpoints_fail_only_where_a_key_is_expected() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample_in(dir.path(), None).await;
    assert!(verify(&path, None, None).holds());
    let v = verify(&path, None, Some(&key().public_hex()));
    assert_eq!(v.problem_count, 3, "{:?}", v.problems);
    assert!(v.problems.iter().all(|p| p.damage == Damage::Unsigned));
}

#[tokio::test]
async fn a_migrated_log_verifies_with_its_old_anchors_and_new_signed_runs() {
    let (_dir, path) = crate::audit::migrate::tests::old_log();
    // A run written after the migration, signed.
    {
        let writer = AuditWriter::spawn_signed(&path, key()).unwrap();
        let audit = writer.handle();
        let run = audit
            .begin_run_with_rows(new_run(), new_rows(1))
            .await
            .unwrap();
        audit.row_finished(run, 0, outcome("noop"));
        audit.end_run(run, RunStatus::Completed).await.unwrap();
        writer.close().await.unwrap();
    }
    let public = key().public_hex();
    for old in [
        "e2594a85ee489bc76ad29171d33bd9d054e7b6070762909e26ef1cf8cd51f372",
        "d44da2cc4d9dcd97d7a6ddb535a8c36ef2aa75caded1680720678c1d35f1085a",
    ] {
        let v = verify(&path, Some(old), Some(&public));
        // The checkpoints carried over were never signed, and are not asked to be.
        assert!(v.holds(), "{:?}", v.problems);
        let anchor = v.anchor.unwrap();
        assert!(anchor.carried_over && anchor.found_at.is_some());
    }
    // The new head is an anchor of the new chain.
    let head = verify(&path, None, None).head;
    let anchor = verify(&path, Some(&head), None).anchor.unwrap();
    assert!(!anchor.carried_over && anchor.found_at.is_some());

    // The old chain cut short, or edited, is named.
    let cut = copy_of(&path, "cut.db");
    tamper(
        &cut,
        "DELETE FROM legacy_evidence WHERE seq = (SELECT max(seq) FROM legacy_evidence)",
    );
    assert_eq!(
        found(&verify(&cut, None, None)),
        ["schema 01 evidence #714: deleted"]
    );
    let edited = copy_of(&path, "edited.db");
    tamper(
        &edited,
        "UPDATE legacy_evidence SET content = replace(content, 'TECH', 'ACME') WHERE seq = 20",
    );
    assert_eq!(
        found(&verify(&edited, None, None)),
        ["schema 01 evidence #20: modified"]
    );
    // So is the migration record.
    let forged = copy_of(&path, "forged.db");
    tamper(&forged, "UPDATE migration SET legacy_records = 700");
    let v = verify(&forged, None, None);
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    assert!(found(&v)[0].starts_with("migration (record #"));
    let migration = first_seq(&path, "migration");
    let gone = copy_of(&path, "gone.db");
    tamper(&gone, "DELETE FROM migration");
    assert_eq!(
        found(&verify(&gone, None, None)),
        [format!("record #{migration}: deleted")]
    );
    let twice = copy_of(&path, "twice.db");
    tamper(
        &twice,
        "INSERT INTO migration SELECT 1, hash, legacy_head, legacy_records, migrated_at
         FROM migration",
    );
    assert_eq!(
        found(&verify(&twice, None, None)),
        ["migration (record #1): inserted"]
    );
    let dropped = copy_of(&path, "dropped.db");
    tamper(&dropped, "DROP TABLE legacy_evidence");
    assert_eq!(
        found(&verify(&dropped, None, None)),
        ["schema 01 evidence (the whole table): deleted"]
    );
}
