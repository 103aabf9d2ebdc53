//! The verification of a log of schema 01 not migrated yet, on copies of the log embatch 0.1.0
//! wrote (`tests/fixtures/schema01.db`, whose README tells its runs and the heads `verify
//! --anchor` printed): run 1 an apply that failed one row (row 17, plan line 19), run 2 an apply
//! killed and resumed once, run 3 a snapshot, run 4 an undo of run 1.
//!
//! Each test edits its copy with plain SQL, as an editor with the sqlite3 shell would, and
//! verifies it on a connection of its own: a reader refuses to open a log of an older schema,
//! and one that writes would migrate it.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use super::schema::checkpoint_content;
use crate::audit::canon::record_hash;
use crate::audit::fixtures::schema01_copy;
use crate::audit::verify::{Damage, MAX_PROBLEMS, Problem, Verification, verify_connection};
use crate::audit::{AuditError, RunSelector};

/// The records of the fixture's chain.
const RECORDS: i64 = 714;

/// The head `verify --anchor` printed at the end: the hash of record [`RECORDS`].
const HEAD: &str = "d44da2cc4d9dcd97d7a6ddb535a8c36ef2aa75caded1680720678c1d35f1085a";

/// The head `verify --anchor` printed after run 3: the hash of record 529.
const HEAD_AFTER_RUN_3: &str = "e2594a85ee489bc76ad29171d33bd9d054e7b6070762909e26ef1cf8cd51f372";

/// The fixture's records of each run, runs 1 to 4.
const RUN_RECORDS: [u64; 4] = [281, 117, 131, 185];

/// A copy of the fixture in `dir`, to damage.
fn copy(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    schema01_copy(dir.path(), name)
}

/// Runs plain SQL on the file, as an editor with the sqlite3 shell would (which does not
/// enforce foreign keys); `unlock` drops the triggers that keep the evidence append-only.
fn edit(path: &Path, unlock: bool, sql: &str) {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
    if unlock {
        conn.execute_batch("DROP TRIGGER evidence_no_update; DROP TRIGGER evidence_no_delete;")
            .unwrap();
    }
    conn.execute_batch(sql).unwrap();
}

/// Verifies the log at `path`, or one run of it, looking for `expect` if given.
fn verify_with(
    path: &Path,
    run: Option<RunSelector>,
    expect: Option<&str>,
) -> Result<Verification, AuditError> {
    let conn = Connection::open(path).unwrap();
    verify_connection(&conn, run, expect, None)
}

fn verify(path: &Path) -> Verification {
    verify_with(path, None, None).unwrap()
}

fn first_problem(path: &Path) -> String {
    let v = verify(path);
    assert!(!v.holds(), "{}", path.display());
    v.problems[0].to_string()
}

fn problems(v: &Verification) -> Vec<String> {
    v.problems.iter().map(|p| p.to_string()).collect()
}

fn hash_of(path: &Path, seq: i64) -> String {
    Connection::open(path)
        .unwrap()
        .query_row("SELECT hash FROM evidence WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })
        .unwrap()
}

/// The number of the newest evidence of row `row_no` of run `run_id`.
fn row_evidence(path: &Path, run_id: i64, row_no: i64) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT max(seq) FROM evidence WHERE kind = 'row' AND run_id = ?1 AND ref = ?2",
            [run_id, row_no],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn an_intact_log_verifies_in_full_and_run_by_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy(&dir, "audit.db");
    let all = verify(&path);
    assert!(all.holds(), "{:?}", all.problems);
    assert_eq!(all.records, RECORDS as u64);
    assert_eq!(all.head_seq, RECORDS);
    assert_eq!(all.head, HEAD);
    assert_eq!(all.head, hash_of(&path, RECORDS));
    assert_eq!((all.run_id, all.anchor.as_ref()), (None, None));

    for (run, records) in (1..).zip(RUN_RECORDS) {
        let one = verify_with(&path, Some(RunSelector::Id(run)), None).unwrap();
        assert!(one.holds(), "run {run}: {:?}", one.problems);
        assert_eq!((one.run_id, one.records), (Some(run), records));
        assert_eq!(
            one.head, all.head,
            "the head is the chain's, whatever the run"
        );
    }
    let last = verify_with(&path, Some(RunSelector::Last), None).unwrap();
    assert!(last.holds());
    assert_eq!((last.run_id, last.records), (Some(4), RUN_RECORDS[3]));

    // The heads printed when the fixture was made are found, in any case.
    let found = verify_with(&path, None, Some(&HEAD_AFTER_RUN_3.to_uppercase())).unwrap();
    assert!(found.holds());
    let anchor = found.anchor.unwrap();
    assert_eq!((anchor.found_at, anchor.carried_over), (Some(529), false));
    let found = verify_with(&path, None, Some(HEAD)).unwrap();
    assert_eq!(found.anchor.unwrap().found_at, Some(RECORDS));

    // Each end is followed by its checkpoint, which states the head and the count.
    let conn = Connection::open(&path).unwrap();
    let checkpoints: Vec<(i64, i64, String, String)> = conn
        .prepare(
            "SELECT e.seq, e.run_id, c.content, e.hash FROM evidence e JOIN evidence c
             ON c.seq = e.seq + 1 WHERE e.kind = 'end' AND c.kind = 'checkpoint'
             AND c.run_id = e.run_id ORDER BY e.seq",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(checkpoints.len(), 4);
    for (seq, run, content, hash) in &checkpoints {
        assert_eq!(*content, checkpoint_content(hash, *seq, *run));
    }
    // Run 2 was killed while running and resumed: its resume, the resume's update of the run,
    // then its end and checkpoint.
    let kinds: Vec<(i64, String)> = conn
        .prepare(
            "SELECT seq, kind FROM evidence WHERE run_id = 2 AND kind NOT IN ('row', 'attempt')
             ORDER BY seq",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let kinds: Vec<(i64, &str)> = kinds.iter().map(|(s, k)| (*s, k.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (282, "run"),
            (313, "resume"),
            (314, "run"),
            (397, "end"),
            (398, "checkpoint")
        ]
    );
}

#[test]
fn every_edit_of_the_tables_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "UPDATE plan_rows SET outcome = 'applied', error = NULL WHERE run_id = 1 AND row_no = 17",
            "run 1 row 17 (plan line 19): modified",
        ),
        (
            "UPDATE plan_rows SET line = 40 WHERE run_id = 1 AND row_no = 17",
            "run 1 row 17 (plan line 19): modified",
        ),
        (
            "DELETE FROM plan_rows WHERE run_id = 1 AND row_no = 35",
            "run 1 row 35 (plan line 37): deleted",
        ),
        (
            "INSERT INTO plan_rows (run_id, row_no, line, account, action, target)
             VALUES (1, 99, 101, 'TECH\\mallory', 'assign-role', 'Portal Administrator')",
            "run 1 row 99 (plan line 101): inserted",
        ),
        (
            "UPDATE plan_rows SET row_no = 'x' WHERE run_id = 2 AND row_no = 1",
            "run 2 row 1 (plan line 3): deleted",
        ),
        (
            "UPDATE attempts SET status = 200 WHERE id = 1",
            "attempt 1: modified",
        ),
        ("DELETE FROM attempts WHERE id = 2", "attempt 2: deleted"),
        (
            "INSERT INTO attempts (run_id, row_no, attempt, method, path, started_at)
             VALUES (1, 0, 2, 'DELETE', '/api/x', '2026-12-03T12:28:13.123Z')",
            "attempt 277: inserted",
        ),
        (
            "UPDATE runs SET operator = 'TECH\\mallory' WHERE id = 2",
            "run 2: modified",
        ),
        // A value of another type that reads back the same in most tools.
        (
            "UPDATE runs SET wire = CAST('xml' AS BLOB) WHERE id = 1",
            "run 1: modified",
        ),
        ("DELETE FROM runs WHERE id = 1", "run 1: deleted"),
        (
            "INSERT INTO runs (id, kind, status, started_at, operator, server_url, wire,
                               tls_verify, insecure, tool_version, options, writer_pid)
             SELECT 5, kind, status, started_at, operator, server_url, wire, tls_verify,
                    insecure, tool_version, options, writer_pid
             FROM runs WHERE id = 4",
            "run 5: inserted",
        ),
        ("DELETE FROM run_resumes", "run 2 resume 1: deleted"),
        (
            "UPDATE run_resumes SET previous_status = 'completed'",
            "run 2 resume 1: modified",
        ),
        (
            "INSERT INTO run_resumes (run_id, resumed_at, previous_status, writer_pid)
             VALUES (2, '2026-12-03T12:28:30.000Z', 'running', 1)",
            "run 2 resume 2: inserted",
        ),
    ];
    for (i, (sql, expected)) in cases.into_iter().enumerate() {
        let path = copy(&dir, &format!("case{i}.db"));
        edit(&path, false, sql);
        assert_eq!(first_problem(&path), expected, "{sql}");
    }
}

#[test]
fn every_damage_to_the_chain_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let outcome_of_row_17 = row_evidence(&copy(&dir, "fixture.db"), 1, 17);
    let last = RECORDS;
    let cases = [
        // The evidence edited to match an edited row: the record no longer has its hash.
        (
            format!(
                "UPDATE plan_rows SET outcome = 'applied' WHERE run_id = 1 AND row_no = 17;
                 UPDATE evidence SET content = replace(content, '\"failed\"', '\"applied\"')
                 WHERE seq = {outcome_of_row_17}"
            ),
            format!("evidence #{outcome_of_row_17}: modified"),
        ),
        (
            "UPDATE evidence SET hash = lower(hex(randomblob(32))) WHERE seq = 3".into(),
            "evidence #3: modified".into(),
        ),
        (
            "DELETE FROM evidence WHERE seq = 5".into(),
            "evidence #5: deleted".into(),
        ),
        (
            "DELETE FROM evidence WHERE seq BETWEEN 5 AND 7".into(),
            "evidence #5: deleted".into(),
        ),
        // The newest checkpoint: the chain still links, but the end has no checkpoint.
        (
            format!("DELETE FROM evidence WHERE seq = {last}"),
            format!("evidence #{last}: deleted"),
        ),
        (
            format!(
                "INSERT INTO evidence (kind, run_id, ref, content, prev_hash, hash)
                 SELECT kind, run_id, ref, content, prev_hash, hash FROM evidence
                 WHERE seq = {last}"
            ),
            format!("evidence #{}: inserted", last + 1),
        ),
        (
            "INSERT INTO evidence (seq, kind, run_id, ref, content, prev_hash, hash)
             SELECT 0, kind, run_id, ref, content, prev_hash, hash FROM evidence WHERE seq = 1"
                .into(),
            "evidence #0: inserted".into(),
        ),
        (
            "INSERT INTO evidence (seq, kind, run_id, ref, content, prev_hash, hash)
             SELECT 1000, kind, run_id, ref, content, prev_hash, hash FROM evidence WHERE seq = 2"
                .into(),
            "evidence #1000: inserted".into(),
        ),
        (
            "UPDATE evidence SET run_id = 'one' WHERE seq = 2".into(),
            "evidence #2: modified".into(),
        ),
    ];
    for (i, (sql, expected)) in cases.into_iter().enumerate() {
        let path = copy(&dir, &format!("case{i}.db"));
        edit(&path, true, &sql);
        assert_eq!(first_problem(&path), expected, "{sql}");
    }
}

#[test]
fn one_damaged_record_makes_one_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy(&dir, "a.db");
    edit(
        &path,
        false,
        "UPDATE plan_rows SET ticket = 'CHG-9' WHERE run_id = 2 AND row_no = 0",
    );
    let v = verify(&path);
    assert_eq!(v.problem_count, 1);
    assert_eq!(
        v.problems,
        [Problem {
            record: "run 2 row 0 (plan line 2)".into(),
            damage: Damage::Modified,
            seq: Some(row_evidence(&path, 2, 0)),
        }]
    );
    // A changed hash is found at its record and at the next one's link: one problem.
    let path = copy(&dir, "c.db");
    edit(
        &path,
        true,
        "UPDATE evidence SET hash = lower(hex(randomblob(32))) WHERE seq = 3",
    );
    let v = verify(&path);
    assert_eq!(v.problem_count, 1, "{:?}", v.problems);
    assert_eq!(v.problems[0].to_string(), "evidence #3: modified");

    // The chain is reported before the rows judged by it.
    let path = copy(&dir, "b.db");
    edit(&path, true, "DELETE FROM evidence WHERE seq = 20");
    let v = verify(&path);
    assert_eq!(v.problems[0].to_string(), "evidence #20: deleted");
    assert!(
        v.problems
            .iter()
            .skip(1)
            .all(|p| p.seq.is_none_or(|s| s != 20))
    );
}

#[test]
fn the_evidence_refuses_changes_made_by_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy(&dir, "audit.db");
    let conn = Connection::open(&path).unwrap();
    for sql in [
        "UPDATE evidence SET content = '{}' WHERE seq = 1",
        "DELETE FROM evidence WHERE seq = 1",
    ] {
        let err = conn.execute(sql, []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    assert!(verify(&path).holds());
}

#[test]
fn a_run_is_verified_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy(&dir, "audit.db");
    edit(
        &path,
        false,
        "UPDATE plan_rows SET outcome = 'applied' WHERE run_id = 1 AND row_no = 17",
    );
    let one = verify_with(&path, Some(RunSelector::Id(1)), None).unwrap();
    assert_eq!(
        one.problems[0].to_string(),
        "run 1 row 17 (plan line 19): modified"
    );
    let two = verify_with(&path, Some(RunSelector::Id(2)), None).unwrap();
    assert!(two.holds(), "{:?}", two.problems);
    assert!(matches!(
        verify_with(&path, Some(RunSelector::Id(9)), None),
        Err(AuditError::NoSuchRun(id)) if id == "9"
    ));
    // A run whose row is gone is still known by its evidence, and reported.
    edit(
        &path,
        false,
        "DELETE FROM plan_rows WHERE run_id = 2; DELETE FROM run_resumes;
         DELETE FROM runs WHERE id = 2",
    );
    let two = verify_with(&path, Some(RunSelector::Id(2)), None).unwrap();
    assert_eq!(two.run_id, Some(2));
    // In the order of their newest evidence: the resume, the rows' outcomes (as they
    // finished), the run's end.
    assert_eq!(
        problems(&two),
        [
            "run 2 resume 1: deleted",
            "run 2 row 2 (plan line 4): deleted",
            "run 2 row 1 (plan line 3): deleted",
            "run 2 row 3 (plan line 5): deleted",
            "run 2 row 0 (plan line 2): deleted",
            "run 2: deleted",
        ]
    );
    // The newest run, named by its evidence alone.
    edit(&path, false, "DELETE FROM runs WHERE id = 4");
    let last = verify_with(&path, Some(RunSelector::Last), None).unwrap();
    assert_eq!(last.run_id, Some(4));
    assert_eq!(problems(&last), ["run 4: deleted"]);
}

/// Rewrites every record from `from` on with hashes that hold, as someone who knows the
/// chain's rules could.
fn rebuild_chain(path: &Path, from: i64) {
    let conn = Connection::open(path).unwrap();
    let mut prev: String = conn
        .query_row(
            "SELECT prev_hash FROM evidence WHERE seq = ?1",
            [from],
            |r| r.get(0),
        )
        .unwrap();
    let records: Vec<(i64, String, i64, Option<i64>, String)> = conn
        .prepare(
            "SELECT seq, kind, run_id, ref, content FROM evidence WHERE seq >= ?1 ORDER BY seq",
        )
        .unwrap()
        .query_map([from], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    for (seq, kind, run_id, reference, mut content) in records {
        if kind == "checkpoint" {
            content = checkpoint_content(&prev, seq - 1, run_id);
        }
        let hash = hex::encode(record_hash(&prev, seq, &kind, run_id, reference, &content));
        conn.execute(
            "UPDATE evidence SET content = ?2, prev_hash = ?3, hash = ?4 WHERE seq = ?1",
            params![seq, content, prev, hash],
        )
        .unwrap();
        prev = hash;
    }
}

#[test]
fn a_rebuilt_chain_holds_but_no_longer_holds_the_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy(&dir, "audit.db");
    let found = verify_with(&path, None, Some(&HEAD.to_uppercase())).unwrap();
    assert!(found.holds());
    assert_eq!(found.anchor.unwrap().found_at, Some(RECORDS));

    let seq = row_evidence(&path, 1, 17);
    edit(
        &path,
        true,
        &format!(
            "UPDATE plan_rows SET outcome = 'applied' WHERE run_id = 1 AND row_no = 17;
             UPDATE evidence SET content = replace(content, '\"failed\"', '\"applied\"')
             WHERE seq = {seq}"
        ),
    );
    rebuild_chain(&path, seq);
    let rebuilt = verify(&path);
    assert!(rebuilt.holds(), "{:?}", rebuilt.problems);
    // Neither head kept from before the rebuilt record is found any more.
    for anchor in [HEAD, HEAD_AFTER_RUN_3] {
        let lost = verify_with(&path, None, Some(anchor)).unwrap();
        assert!(!lost.holds());
        assert_eq!(lost.anchor.unwrap().found_at, None);
    }
}

#[test]
fn a_log_damaged_everywhere_lists_the_first_problems_and_counts_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy(&dir, "audit.db");
    edit(
        &path,
        false,
        "WITH RECURSIVE n(i) AS (SELECT 100 UNION ALL SELECT i + 1 FROM n WHERE i < 2599)
         INSERT INTO plan_rows (run_id, row_no, line, account, action, target)
         SELECT 1, i, i + 2, 'TECH\\x', 'assign-role', 'Portal User' FROM n;
         UPDATE plan_rows SET outcome = 'failed' WHERE run_id = 2 AND row_no = 1",
    );
    let v = verify(&path);
    assert_eq!(v.problem_count, 2501);
    assert_eq!(v.problems.len(), MAX_PROBLEMS);
    // The modified row has evidence, so it comes before the rows that have none.
    assert_eq!(
        v.problems[0].to_string(),
        "run 2 row 1 (plan line 3): modified"
    );
    assert_eq!(
        v.problems[1].to_string(),
        "run 1 row 100 (plan line 102): inserted"
    );
}

#[test]
fn the_evidence_holds_no_secret() {
    // The fixture's runs logged on with the password `emulator`: it is nowhere in the file,
    // not in a table, not in the evidence, not in a page no longer used.
    let dir = tempfile::tempdir().unwrap();
    let path = copy(&dir, "audit.db");
    let bytes = std::fs::read(&path).unwrap().to_ascii_lowercase();
    assert!(!bytes.windows(8).any(|w| w == b"emulator"));
    let conn = Connection::open(&path).unwrap();
    let leaks: i64 = conn
        .query_row(
            "SELECT count(*) FROM evidence WHERE instr(lower(content), 'emulator') > 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(leaks, 0);
    let operators: Vec<String> = conn
        .prepare("SELECT DISTINCT operator FROM runs")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        operators,
        ["admin"],
        "the user is recorded, not the password"
    );
    assert!(verify(&path).holds());
}
