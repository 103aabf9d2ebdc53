//! `verify`: the evidence chain (see `chain.rs`) recomputed offline, and the tables compared
//! with it, all within one read transaction, so a run writing meanwhile is seen at one instant.
//!
//! The chain is walked oldest record first. A record is sound when its number follows the one
//! before, its hash is the hash of its own fields, and its `prev_hash` is the hash of the record
//! before; an `end` record must be followed by its run's `checkpoint`, whose content must state
//! the head and the count before it. Where that fails, the record is named by its number,
//! `evidence #812`, and the damage is told by these rules:
//!
//! - its hash holds and its number follows, but its link does not: the record before it was
//!   replaced (`modified`);
//! - its hash holds but records are missing before it, and its link does not: the first missing
//!   one was `deleted`;
//! - its link holds but its hash does not: it was `modified`;
//! - otherwise (numbered before the first record, neither hash nor link holding, or a gap in the
//!   numbers that its link skips): it was `inserted`;
//! - an `end` record not followed by its checkpoint: the checkpoint was `deleted`.
//!
//! Then each row of `runs`, `plan_rows`, `attempts` and `run_resumes` must equal what its
//! evidence says, folded oldest first (the insert gives every column, each update the columns
//! it set). Values are compared as their canonical text, so a value stored with another type,
//! or a double changed in its last bit, differs. A row that differs was `modified`, evidence
//! without a row means the row was `deleted`, a row without evidence was `inserted`. These are
//! named after the row: `run 3`, `run 3 row 12 (plan line 14)` (the row number counts from 0,
//! the line is the plan's, as the evidence recorded it), `attempt 5521`, `run 3 resume 2`.
//!
//! Problems are listed in the order of the chain, those found in the chain itself first (the
//! evidence is what the rows are judged by); the first is the first record damaged. Deleting the
//! newest records together with their rows leaves a shorter chain that holds: only a head hash
//! kept elsewhere (`--anchor`, then `--expect`) tells that it is gone.
//!
//! The walk of the chain is in `walk.rs`, the comparison of the tables with it in `tables.rs`.

mod facts;
mod legacy;
mod schema;

use std::fmt;

use rusqlite::Connection;
use serde::Serialize;

use super::{AuditError, AuditReader, RunSelector};
use facts::walk_facts;
use legacy::tables::{Shape, compare_table};
use legacy::walk::walk_chain;

/// The most problems a verification lists (the first ones); the others are only counted.
pub const MAX_PROBLEMS: usize = 1000;

/// What happened to a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Damage {
    /// It is there, but not as it was written.
    Modified,
    /// It was written, and is gone.
    Deleted,
    /// It is there, but was not written by embatch.
    Inserted,
    /// A checkpoint with no signature, where a signing key was expected.
    Unsigned,
    /// A checkpoint signed by another key than the one expected.
    #[serde(rename = "other key")]
    OtherKey,
}

impl Damage {
    /// The word messages use.
    pub fn as_str(self) -> &'static str {
        match self {
            Damage::Modified => "modified",
            Damage::Deleted => "deleted",
            Damage::Inserted => "inserted",
            Damage::Unsigned => "unsigned",
            Damage::OtherKey => "signed by another key",
        }
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record that is not as embatch wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The record, as messages name it: `evidence #812`, `run 3`, `run 3 row 12 (plan line
    /// 14)`, `attempt 5521`, `run 3 resume 2`.
    pub record: String,
    /// What happened to it.
    pub damage: Damage,
    /// The evidence record it concerns: the damaged one, or for a row, its newest evidence
    /// (none for a row that has no evidence).
    pub seq: Option<i64>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.record, self.damage)
    }
}

/// The check of a head hash kept from earlier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Anchor {
    /// The hash looked for (lowercase).
    pub hash: String,
    /// The record whose hash it is (0 for the head of an empty chain); `None` if no record has
    /// it: the records up to it were deleted or rewritten.
    pub found_at: Option<i64>,
    /// Whether that record is one of the chain carried over from schema 01 (a head taken
    /// before the log was migrated).
    pub carried_over: bool,
}

/// The outcome of a verification.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    /// The run verified, if only one was.
    pub run_id: Option<i64>,
    /// The evidence records verified: all, or those of the run.
    pub records: u64,
    /// The hash of the newest record ([`GENESIS`](crate::audit::GENESIS) for an empty chain): the anchor to keep.
    pub head: String,
    /// The number of the newest record (0 for an empty chain).
    pub head_seq: i64,
    /// The first problems, the first damaged record first; at most [`MAX_PROBLEMS`].
    pub problems: Vec<Problem>,
    /// All problems found, listed or not.
    pub problem_count: u64,
    /// The check of `--expect`, if asked for.
    pub anchor: Option<Anchor>,
}

impl Verification {
    /// Whether the log is as embatch wrote it (and still holds the expected head, if given).
    pub fn holds(&self) -> bool {
        self.problem_count == 0 && self.anchor.as_ref().is_none_or(|a| a.found_at.is_some())
    }
}

impl AuditReader {
    /// Verifies the log: the whole chain, and every row against it; with `run`, only the records
    /// and rows of that run are reported on (the chain is still walked from its start, since
    /// each record's link depends on all before it). With `expect`, also looks for a record with
    /// that hash.
    pub fn verify(
        &self,
        run: Option<RunSelector>,
        expect: Option<&str>,
    ) -> Result<Verification, AuditError> {
        verify_connection(self.connection(), run, expect, None)
    }

    /// Like [`AuditReader::verify`], also checking that every checkpoint is signed by the key
    /// whose hex is `public_key` (those carried over from schema 01 excepted).
    pub fn verify_signed(
        &self,
        run: Option<RunSelector>,
        expect: Option<&str>,
        public_key: &str,
    ) -> Result<Verification, AuditError> {
        verify_connection(self.connection(), run, expect, Some(public_key))
    }
}

/// Verifies the log open on `conn` (see [`AuditReader::verify`]).
pub(crate) fn verify_connection(
    conn: &Connection,
    run: Option<RunSelector>,
    expect: Option<&str>,
    public_key: Option<&str>,
) -> Result<Verification, AuditError> {
    // One read transaction: with WAL it sees the file at one instant, however a run writing
    // meanwhile goes on.
    let tx = conn.unchecked_transaction()?;
    let expect = expect.map(str::to_ascii_lowercase);
    let public_key = public_key.map(str::to_ascii_lowercase);
    let mut problems = Problems::default();
    let legacy: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'evidence')",
        [],
        |r| r.get(0),
    )?;
    let (scope, records, head, head_seq, anchor_at) = if legacy {
        // A log of schema 01, not migrated yet.
        let scope = run
            .map(|which| resolve_run(&tx, which, "evidence"))
            .transpose()?;
        let chain = walk_chain(&tx, "evidence", scope, expect.as_deref(), &mut problems)?;
        for check in [Shape::Run, Shape::Row, Shape::Attempt, Shape::Resume] {
            compare_table(&tx, check, scope, &mut problems)?;
        }
        let anchor_at = chain.anchor_at.map(|at| (at, false));
        (scope, chain.records, chain.head, chain.head_seq, anchor_at)
    } else {
        let scope = run
            .map(|which| resolve_run(&tx, which, "run_starts"))
            .transpose()?;
        let walked = walk_facts(
            &tx,
            scope,
            expect.as_deref(),
            public_key.as_deref(),
            &mut problems,
        )?;
        if scope.is_none() {
            schema::compare(&tx, &mut problems)?;
        }
        (
            scope,
            walked.records,
            walked.head,
            walked.head_seq,
            walked.anchor_at,
        )
    };
    drop(tx);
    let problem_count = problems.count;
    Ok(Verification {
        run_id: scope,
        records,
        head,
        head_seq,
        problems: problems.into_first(),
        problem_count,
        anchor: expect.map(|hash| Anchor {
            hash,
            found_at: anchor_at.map(|(at, _)| at),
            carried_over: anchor_at.is_some_and(|(_, legacy)| legacy),
        }),
    })
}

/// The run id `which` names, among the runs of the table and of the evidence (a run whose row
/// was deleted is still verified).
fn resolve_run(conn: &Connection, which: RunSelector, chain: &str) -> Result<i64, AuditError> {
    // The runs of schema 01's evidence, or of the chain of facts (any record's run).
    let evidence = if chain == "evidence" {
        "evidence"
    } else {
        "evidence_log"
    };
    match which {
        RunSelector::Id(id) => {
            let known: bool = conn.query_row(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM runs WHERE id = ?1)
                         OR EXISTS (SELECT 1 FROM {evidence} WHERE run_id = ?1)"
                ),
                [id],
                |r| r.get(0),
            )?;
            if known {
                Ok(id)
            } else {
                Err(AuditError::NoSuchRun(id.to_string()))
            }
        }
        RunSelector::Last => conn
            .query_row(
                &format!(
                    "SELECT max(id) FROM (
                         SELECT max(id) AS id FROM runs
                         UNION ALL
                         SELECT max(run_id) FROM {evidence} WHERE typeof(run_id) = 'integer')"
                ),
                [],
                |r| r.get::<_, Option<i64>>(0),
            )?
            .ok_or_else(|| AuditError::NoSuchRun("yet".into())),
    }
}

/// Where a problem was found: in the chain, or in a table compared with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Chain,
    Table,
}

/// The problems found so far, kept bounded: a log damaged everywhere must not exhaust memory.
#[derive(Default)]
struct Problems {
    /// (phase, evidence number or last, order found) and the problem.
    found: Vec<((Phase, i64, u64), Problem)>,
    count: u64,
}

impl Problems {
    /// A damaged evidence record, named by its number: found in the walk of the chain.
    pub(super) fn evidence(&mut self, label: &str, seq: i64, damage: Damage) {
        let record = format!("{label} #{seq}");
        self.push(
            Phase::Chain,
            Problem {
                record,
                damage,
                seq: Some(seq),
            },
        );
    }

    /// A damaged record of the chain of facts, named `record`, with its number.
    pub(super) fn record(&mut self, record: String, damage: Damage, seq: i64) {
        self.push(
            Phase::Chain,
            Problem {
                record,
                damage,
                seq: Some(seq),
            },
        );
    }

    /// An object of the schema that is not as embatch made it.
    pub(super) fn schema(&mut self, record: String, damage: Damage) {
        self.push(
            Phase::Table,
            Problem {
                record,
                damage,
                seq: None,
            },
        );
    }

    /// A damaged row of a table, named `record`, with its newest evidence record if it has
    /// any: found in the comparison of the tables with the chain.
    pub(super) fn row(&mut self, record: String, damage: Damage, seq: Option<i64>) {
        self.push(
            Phase::Table,
            Problem {
                record,
                damage,
                seq,
            },
        );
    }

    fn push(&mut self, phase: Phase, problem: Problem) {
        // One damage found by two checks (a record's hash, and what it should say) is one.
        if self.found.last().is_some_and(|(_, last)| *last == problem) {
            return;
        }
        let order = (phase, problem.seq.unwrap_or(i64::MAX), self.count);
        self.count += 1;
        self.found.push((order, problem));
        if self.found.len() >= 2 * MAX_PROBLEMS {
            self.keep_first();
        }
    }

    fn keep_first(&mut self) {
        self.found.sort_by_key(|(order, _)| *order);
        self.found.truncate(MAX_PROBLEMS);
    }

    fn into_first(mut self) -> Vec<Problem> {
        self.keep_first();
        self.found.into_iter().map(|(_, p)| p).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use rusqlite::params;

    use super::*;
    use crate::audit::canon::{GENESIS, record_hash};
    use crate::audit::fixtures::{attempt, new_rows, new_run, outcome};
    use crate::audit::{AuditWriter, RowResult, RunStatus};
    use legacy::schema::checkpoint_content;

    /// Evidence records in [`sample`]: run 1 has 13, run 2 has 12.
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

    /// A copy of the sample log, to damage.
    fn copy_of(sample: &Path, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::copy(sample, &path).unwrap();
        path
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

    fn verify(path: &Path) -> Verification {
        AuditReader::open(path).unwrap().verify(None, None).unwrap()
    }

    fn first_problem(path: &Path) -> String {
        let v = verify(path);
        assert!(!v.holds(), "{}", path.display());
        v.problems[0].to_string()
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
        assert_eq!(all.head, hash_of(&path, SAMPLE_RECORDS as i64));
        assert_eq!((all.run_id, all.anchor.as_ref()), (None, None));

        let first = reader.verify(Some(RunSelector::Id(1)), None).unwrap();
        let last = reader.verify(Some(RunSelector::Last), None).unwrap();
        assert!(first.holds() && last.holds());
        assert_eq!((first.run_id, last.run_id), (Some(1), Some(2)));
        assert_eq!((first.records, last.records), (13, 12));
        assert_eq!(
            last.head, all.head,
            "the head is the chain's, whatever the run"
        );

        // Each end is followed by its checkpoint, which states the head and the count.
        let conn = reader.connection();
        let mut stmt = conn
            .prepare(
                "SELECT e.seq, c.content, e.hash FROM evidence e JOIN evidence c
                 ON c.seq = e.seq + 1 WHERE e.kind = 'end' AND c.kind = 'checkpoint'
                 AND c.run_id = e.run_id ORDER BY e.seq",
            )
            .unwrap();
        let checkpoints: Vec<(i64, String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(checkpoints.len(), 3);
        let (seq, content, hash) = &checkpoints[0];
        assert_eq!(
            *content,
            format!(r#"{{"head":"{hash}","records":{seq},"run_id":1}}"#)
        );
        let kinds: Vec<String> = conn
            .prepare("SELECT kind FROM evidence_log WHERE run_id = 2 ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "run",
                "row",
                "row",
                "row",
                "end",
                "checkpoint",
                "resume",
                "run",
                "row",
                "row",
                "end",
                "checkpoint"
            ]
        );
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
        let leaks: i64 = conn
            .query_row(
                "SELECT count(*) FROM evidence WHERE instr(content, 's3cret') > 0",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(leaks, 0);
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
    async fn every_edit_of_the_tables_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let sample_path = dir.path().join("sample.db");
        sample(&sample_path).await;
        let cases = [
            (
                "UPDATE plan_rows SET outcome = 'applied', error = NULL WHERE run_id = 1 AND row_no = 1",
                "run 1 row 1 (plan line 3): modified",
            ),
            (
                "UPDATE plan_rows SET line = 40 WHERE run_id = 1 AND row_no = 1",
                "run 1 row 1 (plan line 3): modified",
            ),
            (
                "DELETE FROM plan_rows WHERE run_id = 1 AND row_no = 2",
                "run 1 row 2 (plan line 4): deleted",
            ),
            (
                "INSERT INTO plan_rows (run_id, row_no, line, account, action, target)
                 VALUES (1, 9, 11, 'TECH\\mallory', 'assign-role', 'Portal Administrator')",
                "run 1 row 9 (plan line 11): inserted",
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
                 VALUES (1, 0, 2, 'DELETE', '/api/x', '2026-11-23T10:21:03.123Z')",
                "attempt 3: inserted",
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
            ("DELETE FROM run_resumes", "run 2 resume 1: deleted"),
            (
                "UPDATE run_resumes SET previous_status = 'completed'",
                "run 2 resume 1: modified",
            ),
        ];
        for (i, (sql, expected)) in cases.into_iter().enumerate() {
            let path = copy_of(&sample_path, dir.path(), &format!("case{i}.db"));
            edit(&path, false, sql);
            assert_eq!(first_problem(&path), expected, "{sql}");
        }
    }

    #[tokio::test]
    async fn every_damage_to_the_chain_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let sample_path = dir.path().join("sample.db");
        sample(&sample_path).await;
        let outcome_of_row_1 = row_evidence(&sample_path, 1, 1);
        let last = SAMPLE_RECORDS as i64;
        let cases = [
            // The evidence edited to match an edited row: the record no longer has its hash.
            (
                format!(
                    "UPDATE plan_rows SET outcome = 'applied' WHERE run_id = 1 AND row_no = 1;
                     UPDATE evidence SET content = replace(content, '\"failed\"', '\"applied\"')
                     WHERE seq = {outcome_of_row_1}"
                ),
                format!("evidence #{outcome_of_row_1}: modified"),
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
            let path = copy_of(&sample_path, dir.path(), &format!("case{i}.db"));
            edit(&path, true, &sql);
            assert_eq!(first_problem(&path), expected, "{sql}");
        }
    }

    #[tokio::test]
    async fn one_damaged_record_makes_one_problem() {
        let dir = tempfile::tempdir().unwrap();
        let sample_path = dir.path().join("sample.db");
        sample(&sample_path).await;
        let path = copy_of(&sample_path, dir.path(), "a.db");
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
                seq: Some(row_evidence(&sample_path, 2, 0)),
            }]
        );
        // A changed hash is found at its record and at the next one's link: one problem.
        let path = copy_of(&sample_path, dir.path(), "c.db");
        edit(
            &path,
            true,
            "UPDATE evidence SET hash = lower(hex(randomblob(32))) WHERE seq = 3",
        );
        let v = verify(&path);
        assert_eq!(v.problem_count, 1, "{:?}", v.problems);
        assert_eq!(v.problems[0].to_string(), "evidence #3: modified");

        // The chain is reported before the rows judged by it.
        let path = copy_of(&sample_path, dir.path(), "b.db");
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

    #[tokio::test]
    async fn the_evidence_refuses_changes_made_by_mistake() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        sample(&path).await;
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

    #[tokio::test]
    async fn a_run_is_verified_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        sample(&path).await;
        edit(
            &path,
            false,
            "UPDATE plan_rows SET outcome = 'applied' WHERE run_id = 1 AND row_no = 1",
        );
        let reader = AuditReader::open(&path).unwrap();
        let one = reader.verify(Some(RunSelector::Id(1)), None).unwrap();
        assert_eq!(
            one.problems[0].to_string(),
            "run 1 row 1 (plan line 3): modified"
        );
        let two = reader.verify(Some(RunSelector::Id(2)), None).unwrap();
        assert!(two.holds(), "{:?}", two.problems);
        assert!(matches!(
            reader.verify(Some(RunSelector::Id(9)), None),
            Err(AuditError::NoSuchRun(id)) if id == "9"
        ));
        // A run whose row is gone is still known by its evidence, and reported.
        edit(
            &path,
            false,
            "DELETE FROM plan_rows WHERE run_id = 2; DELETE FROM run_resumes;
             DELETE FROM runs WHERE id = 2",
        );
        let two = reader.verify(Some(RunSelector::Last), None).unwrap();
        assert_eq!(two.run_id, Some(2));
        let problems: Vec<String> = two.problems.iter().map(|p| p.to_string()).collect();
        // In the order of their newest evidence: the resume, the rows' outcomes, the run's end.
        assert_eq!(
            problems,
            [
                "run 2 resume 1: deleted",
                "run 2 row 0 (plan line 2): deleted",
                "run 2 row 1 (plan line 3): deleted",
                "run 2: deleted",
            ]
        );
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
            let hash = record_hash(&prev, seq, &kind, run_id, reference, &content);
            conn.execute(
                "UPDATE evidence SET content = ?2, prev_hash = ?3, hash = ?4 WHERE seq = ?1",
                params![seq, content, prev, hash],
            )
            .unwrap();
            prev = hash;
        }
    }

    #[tokio::test]
    async fn a_rebuilt_chain_holds_but_no_longer_holds_the_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        sample(&path).await;
        let anchor = verify(&path).head;
        let reader = AuditReader::open(&path).unwrap();
        let found = reader.verify(None, Some(&anchor.to_uppercase())).unwrap();
        assert!(found.holds());
        assert_eq!(found.anchor.unwrap().found_at, Some(SAMPLE_RECORDS as i64));

        let seq = row_evidence(&path, 1, 1);
        edit(
            &path,
            true,
            &format!(
                "UPDATE plan_rows SET outcome = 'applied' WHERE run_id = 1 AND row_no = 1;
                 UPDATE evidence SET content = replace(content, '\"failed\"', '\"applied\"')
                 WHERE seq = {seq}"
            ),
        );
        rebuild_chain(&path, seq);
        let rebuilt = reader.verify(None, None).unwrap();
        assert!(rebuilt.holds(), "{:?}", rebuilt.problems);
        let lost = reader.verify(None, Some(&anchor)).unwrap();
        assert!(!lost.holds());
        assert_eq!(lost.anchor.unwrap().found_at, None);
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

    #[tokio::test]
    async fn a_log_damaged_everywhere_lists_the_first_problems_and_counts_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        sample(&path).await;
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
}
