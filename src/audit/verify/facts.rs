//! The verification of the chain of facts (schema 02): every table read in `seq` order and
//! merged, each record's hash recomputed from its columns as they are (`chain.rs`), each run's
//! end followed by its checkpoint, each checkpoint vouching for the head before it (and signed
//! by the expected key, when one is given), the part carried over from schema 01 closed by the
//! head of the old chain, and the schema itself as embatch made it.
//!
//! A record is sound when its number follows the one before and its hash is the hash of its own
//! columns linked to the hash before. Where that fails, it is named after what it records (`run 3
//! row 12 (plan line 14)`, `attempt 5521 result`, `run 3 checkpoint`) with its number, and the
//! damage is told by these rules:
//!
//! - its number follows, but its hash does not hold: it was `modified`;
//! - numbers are missing before it: the first missing record was `deleted` (what it was is gone
//!   with it, so it is named by its number only);
//! - its number was seen already (two tables holding one number), or is not positive: it was
//!   `inserted`;
//! - an `end` not followed by its run's checkpoint: the checkpoint was `deleted`; a checkpoint
//!   after anything else was `inserted`; a checkpoint stating another head or count, or whose
//!   signature does not hold, was `modified`; with `--public-key`, one with no signature is
//!   `unsigned`, and one signed by another key is `other key` (the checkpoints carried over from
//!   schema 01, written before checkpoints were signed, are exempt).
//!
//! After a damaged record the walk goes on from the hash stored in it, so one edit makes one
//! problem, not one per record after it.

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Rows, Statement};

use super::legacy::walk::walk_chain;
use super::{Damage, Problems};
use crate::audit::AuditError;
use crate::audit::canon::{GENESIS, record_hash, row_fields};
use crate::audit::chain::{FACT_TABLES, FactTable, MIGRATION, checkpoint_message};
use crate::audit::sign::signature_holds;

/// What the walk found besides problems.
pub(super) struct Walked {
    /// The records walked that concern the run verified (all, when every run is).
    pub(super) records: u64,
    /// The hash of the newest record.
    pub(super) head: String,
    /// The number of the newest record.
    pub(super) head_seq: i64,
    /// Where the hash looked for was found: the record's number, and whether it is a record of
    /// the chain carried over from schema 01.
    pub(super) anchor_at: Option<(i64, bool)>,
}

/// A record as stored.
struct Record {
    table: &'static FactTable,
    seq: i64,
    /// The stored hash, as hex; `None` if it is not 32 bytes.
    hash: Option<String>,
    /// Each content column's canonical JSON.
    fields: Vec<String>,
    /// Each content column's value, when it is an integer.
    ints: Vec<Option<i64>>,
}

impl Record {
    fn read(table: &'static FactTable, row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
        let n = table.columns.len();
        let hash = match row.get_ref(1)? {
            ValueRef::Blob(b) if b.len() == 32 => Some(hex::encode(b)),
            _ => None,
        };
        let ints = (0..n)
            .map(|i| {
                Ok(match row.get_ref(i + 2)? {
                    ValueRef::Integer(v) => Some(v),
                    _ => None,
                })
            })
            .collect::<rusqlite::Result<_>>()?;
        Ok(Record {
            table,
            seq: row.get(0)?,
            hash,
            fields: row_fields(row, 2, n)?,
            ints,
        })
    }

    fn content(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push('{');
        for (i, (name, value)) in self.table.columns.iter().zip(&self.fields).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(name);
            out.push_str("\":");
            out.push_str(value);
        }
        out.push('}');
        out
    }

    fn int(&self, column: &str) -> Option<i64> {
        self.ints[self.table.column_index(column)]
    }

    fn text(&self, column: &str) -> Option<String> {
        serde_json::from_str(&self.fields[self.table.column_index(column)]).ok()
    }

    fn run_and_ref(&self) -> (i64, Option<i64>) {
        self.table.run_and_ref(self.seq, |i| self.ints[i])
    }

    fn computed_hash(&self, prev_hash: &str) -> String {
        let (run_id, reference) = self.run_and_ref();
        hex::encode(record_hash(
            prev_hash,
            self.seq,
            self.table.kind,
            run_id,
            reference,
            self.content(),
        ))
    }

    fn hash_holds(&self, prev_hash: &str) -> bool {
        self.hash.as_deref() == Some(self.computed_hash(prev_hash).as_str())
    }

    /// The record as messages name it.
    fn name(&self) -> String {
        let (run, reference) = self.run_and_ref();
        let row = reference.unwrap_or(0);
        let what = match self.table.kind {
            "run" => format!("run {run}"),
            "resume" => format!("run {run} resume {}", self.seq),
            "end" => format!("run {run} end"),
            "row" => match self.int("line") {
                Some(line) => format!("run {run} row {row} (plan line {line})"),
                None => format!("run {run} row {row}"),
            },
            "state" => "prior state".to_string(),
            "outcome" => format!("run {run} row {row} outcome"),
            "account" => format!("run {run} row {row} account id"),
            "attempt" => format!("attempt {}", self.seq),
            "result" => format!("attempt {row} result"),
            "checkpoint" => format!("run {run} checkpoint"),
            _ => "migration".to_string(),
        };
        format!("{what} (record #{})", self.seq)
    }
}

/// Walks the chain of facts (see the module docs), and the chain carried over from schema 01
/// when there is one.
pub(super) fn walk_facts(
    conn: &Connection,
    scope: Option<i64>,
    expect: Option<&str>,
    public_key: Option<&str>,
    problems: &mut Problems,
) -> Result<Walked, AuditError> {
    let in_scope = |run: i64| scope.is_none_or(|s| s == run);
    let mut statements: Vec<Statement<'_>> = FACT_TABLES
        .iter()
        .map(|t| conn.prepare(t.select()))
        .collect::<rusqlite::Result<_>>()?;
    let mut cursors: Vec<Rows<'_>> = statements
        .iter_mut()
        .map(|s| s.query([]))
        .collect::<rusqlite::Result<_>>()?;
    let mut next: Vec<Option<Record>> = Vec::with_capacity(cursors.len());
    for (table, cursor) in FACT_TABLES.iter().zip(&mut cursors) {
        next.push(cursor.next()?.map(|r| Record::read(table, r)).transpose()?);
    }
    let migration_seq: Option<i64> =
        conn.query_row("SELECT max(seq) FROM migration", [], |r| r.get(0))?;

    let mut expected = 1;
    let mut prev_seq = 0;
    let mut prev_hash = GENESIS.to_string();
    // After a record whose hash did not hold, the hash its columns give: if the stored hash was
    // what changed, the next record links to this one.
    let mut computed: Option<String> = None;
    // An `end` record waiting for its checkpoint: its number and run.
    let mut open_end: Option<(i64, i64)> = None;
    let mut records = 0;
    let mut anchor_at = (expect == Some(GENESIS)).then_some((0, false));
    while let Some(seq) = next.iter().flatten().map(|r| r.seq).min() {
        // Every record with that number; more than one means the others were inserted.
        let mut same: Vec<Record> = Vec::new();
        for (i, slot) in next.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|r| r.seq == seq) {
                same.push(slot.take().expect("checked just above"));
                *slot = cursors[i]
                    .next()?
                    .map(|r| Record::read(FACT_TABLES[i], r))
                    .transpose()?;
            }
        }
        // The one that links to the chain is the one embatch wrote.
        let genuine = same
            .iter()
            .position(|r| {
                r.hash_holds(&prev_hash) || computed.as_deref().is_some_and(|c| r.hash_holds(c))
            })
            .unwrap_or(0);
        let rec = same.swap_remove(genuine);
        for other in same {
            let (run, _) = other.run_and_ref();
            if in_scope(run) {
                problems.record(other.name(), Damage::Inserted, other.seq);
            }
        }
        let (run, _) = rec.run_and_ref();
        if in_scope(run) {
            records += 1;
        }
        if anchor_at.is_none() && expect.is_some() && rec.hash.as_deref() == expect {
            anchor_at = Some((rec.seq, false));
        }
        let mut damage: Option<(String, Damage)> = None;
        let is_checkpoint = rec.table.kind == "checkpoint";
        // The tables are merged in order, so a number two tables hold comes twice in a row.
        if rec.seq < expected {
            damage = Some((rec.name(), Damage::Inserted));
        } else if rec.seq > expected {
            let missing = if rec.seq == expected + 1 {
                format!("record #{expected}")
            } else {
                format!("records #{expected} to #{}", rec.seq - 1)
            };
            damage = Some((missing, Damage::Deleted));
        } else if let Some(alternative) = computed.take().filter(|_| !rec.hash_holds(&prev_hash)) {
            // The record before was named already; this one is sound if it links to either.
            if rec.hash_holds(&alternative) {
                prev_hash = alternative;
            } else {
                damage = Some((rec.name(), Damage::Modified));
            }
        } else if !rec.hash_holds(&prev_hash) {
            damage = Some((rec.name(), Damage::Modified));
            computed = Some(rec.computed_hash(&prev_hash));
        }
        let after_end = open_end.take();
        let mut found_in = run;
        if damage.is_none() {
            match after_end {
                Some((end_seq, end_run)) if !(is_checkpoint && run == end_run) => {
                    damage = Some((
                        format!("run {end_run} checkpoint (record #{})", end_seq + 1),
                        Damage::Deleted,
                    ));
                    found_in = end_run;
                }
                None if is_checkpoint => damage = Some((rec.name(), Damage::Inserted)),
                _ => {}
            }
        }
        if damage.is_none() && is_checkpoint {
            damage = checkpoint_damage(&rec, &prev_hash, public_key, migration_seq)
                .map(|d| (rec.name(), d));
        }
        if let Some((name, damage)) = damage
            && in_scope(found_in)
        {
            problems.record(name, damage, rec.seq);
        }
        if rec.table.kind == "end" {
            open_end = Some((rec.seq, run));
        }
        if rec.seq >= expected {
            expected = rec.seq + 1;
            prev_seq = rec.seq;
            prev_hash = rec.hash.unwrap_or_default();
        }
    }
    if let Some((end_seq, end_run)) = open_end
        && in_scope(end_run)
    {
        problems.record(
            format!("run {end_run} checkpoint (record #{})", end_seq + 1),
            Damage::Deleted,
            end_seq + 1,
        );
    }
    drop(cursors);
    if let Some(seq) = migration_seq {
        let legacy = walk_legacy(conn, seq, expect, problems)?;
        anchor_at = anchor_at.or(legacy.map(|at| (at, true)));
    }
    Ok(Walked {
        records,
        head: prev_hash,
        head_seq: prev_seq,
        anchor_at,
    })
}

/// What is wrong with a checkpoint that follows its run's end, if anything.
fn checkpoint_damage(
    rec: &Record,
    prev_hash: &str,
    public_key: Option<&str>,
    migration_seq: Option<i64>,
) -> Option<Damage> {
    let (run, _) = rec.run_and_ref();
    let head = rec.text("head");
    if head.as_deref() != Some(prev_hash) || rec.int("records") != Some(rec.seq - 1) {
        return Some(Damage::Modified);
    }
    let key = rec.text("public_key");
    let signature = rec.text("signature");
    if let (Some(key), Some(signature)) = (&key, &signature)
        && !signature_holds(
            key,
            signature,
            &checkpoint_message(run, prev_hash, rec.seq - 1),
        )
    {
        return Some(Damage::Modified);
    }
    let carried_over = migration_seq.is_some_and(|m| rec.seq < m);
    match public_key {
        Some(_) if carried_over => None,
        Some(_) if key.is_none() || signature.is_none() => Some(Damage::Unsigned),
        Some(expected) if key.as_deref() != Some(expected) => Some(Damage::OtherKey),
        _ => None,
    }
}

/// Walks the chain carried over from schema 01 and checks that the `migration` record (number
/// `seq`) holds its head and count; answers where the hash looked for is in it, if it is.
fn walk_legacy(
    conn: &Connection,
    seq: i64,
    expect: Option<&str>,
    problems: &mut Problems,
) -> Result<Option<i64>, AuditError> {
    let (head, count): (Option<String>, Option<i64>) = conn.query_row(
        &format!(
            "SELECT legacy_head, legacy_records FROM {} WHERE seq = ?1",
            MIGRATION.name
        ),
        [seq],
        |r| Ok((r.get(0).ok(), r.get(1).ok())),
    )?;
    let kept: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'legacy_evidence')",
        [],
        |r| r.get(0),
    )?;
    if !kept {
        problems.record(
            "schema 01 evidence (the whole table)".into(),
            Damage::Deleted,
            seq,
        );
        return Ok(None);
    }
    let before = problems.count;
    let walked = walk_chain(conn, "legacy_evidence", None, expect, problems)?;
    let name = format!("migration (record #{seq})");
    let stored: i64 = conn.query_row("SELECT count(*) FROM legacy_evidence", [], |r| r.get(0))?;
    if problems.count > before {
        // The old chain's damage is named already.
    } else if count.is_some_and(|c| stored < c) {
        problems.record(
            format!("schema 01 evidence #{}", walked.head_seq + 1),
            Damage::Deleted,
            seq,
        );
    } else if head.as_deref() != Some(walked.head.as_str()) || count != Some(stored) {
        problems.record(name, Damage::Modified, seq);
    }
    Ok(walked.anchor_at)
}

#[cfg(test)]
mod tests;
