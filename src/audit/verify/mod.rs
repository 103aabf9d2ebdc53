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
    // A log of schema 01 that was never migrated; any later log is verified as schema 02
    // whatever tables it holds (an `evidence` table there is one the schema check names).
    let legacy = tx.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? == 1;
    let (scope, records, head, head_seq, anchor_at) = if legacy {
        // A log of schema 01, not migrated yet.
        let scope = run
            .map(|which| resolve_run(&tx, which, "evidence"))
            .transpose()?;
        let chain = walk_chain(&tx, "evidence", scope, expect.as_deref(), &mut problems)?;
        for check in [Shape::Run, Shape::Row, Shape::Attempt, Shape::Resume] {
            compare_table(&tx, check, scope, &mut problems)?;
        }
        if public_key.is_some() {
            // Schema 01 had no signed checkpoints: a key expected is a key missing.
            problems.schema(
                "every checkpoint (the log was written by embatch 0.1.0, before signing)".into(),
                Damage::Unsigned,
            );
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
        self.record(format!("{label} #{seq}"), damage, seq);
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
mod tests;
