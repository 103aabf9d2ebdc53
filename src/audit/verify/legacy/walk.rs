//! The walk of the evidence chain, oldest record first: each record's number, hash and link
//! checked against the record before, and each run's `end` against its checkpoint (the rules
//! are in the docs of `verify`).

use std::cmp::Ordering;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};

use super::super::{Damage, Problems};
use super::schema::checkpoint_content;
use crate::audit::AuditError;
use crate::audit::canon::{GENESIS, record_hash};

/// An evidence record as stored; a field of an unexpected type is `None` (a record the writer
/// never wrote).
struct Stored {
    seq: i64,
    kind: Option<String>,
    run_id: Option<i64>,
    reference: Option<Option<i64>>,
    content: Option<String>,
    prev_hash: Option<String>,
    hash: Option<String>,
}

impl Stored {
    fn read(row: &Row<'_>) -> rusqlite::Result<Stored> {
        let text = |i| -> rusqlite::Result<Option<String>> {
            Ok(match row.get_ref(i)? {
                ValueRef::Text(t) => std::str::from_utf8(t).ok().map(str::to_string),
                _ => None,
            })
        };
        let integer = |i| -> rusqlite::Result<Option<i64>> {
            Ok(match row.get_ref(i)? {
                ValueRef::Integer(v) => Some(v),
                _ => None,
            })
        };
        Ok(Stored {
            // The rowid alias: always an integer.
            seq: row.get(0)?,
            kind: text(1)?,
            run_id: integer(2)?,
            reference: match row.get_ref(3)? {
                ValueRef::Null => Some(None),
                ValueRef::Integer(v) => Some(Some(v)),
                _ => None,
            },
            content: text(4)?,
            prev_hash: text(5)?,
            hash: text(6)?,
        })
    }

    /// Whether the stored hash is the hash of the stored fields.
    fn hash_holds(&self) -> bool {
        let (Some(kind), Some(run_id), Some(reference), Some(content), Some(prev), Some(hash)) = (
            &self.kind,
            self.run_id,
            self.reference,
            &self.content,
            &self.prev_hash,
            &self.hash,
        ) else {
            return false;
        };
        hex::encode(record_hash(
            prev, self.seq, kind, run_id, reference, content,
        )) == *hash
    }
}

/// What the walk of the chain found besides problems.
pub(in crate::audit::verify) struct ChainSummary {
    /// The records walked that concern the run verified (all, when every run is).
    pub(in crate::audit::verify) records: u64,
    /// The hash of the newest record.
    pub(in crate::audit::verify) head: String,
    /// The number of the newest record.
    pub(in crate::audit::verify) head_seq: i64,
    /// The record whose hash is the one looked for, if any is.
    pub(in crate::audit::verify) anchor_at: Option<i64>,
}

/// Walks the chain oldest first (see the module docs for the rules).
pub(in crate::audit::verify) fn walk_chain(
    conn: &Connection,
    table: &str,
    scope: Option<i64>,
    expect: Option<&str>,
    problems: &mut Problems,
) -> Result<ChainSummary, AuditError> {
    let in_scope = |run: Option<i64>| scope.is_none() || run == scope;
    let mut stmt = conn.prepare(&format!(
        "SELECT seq, kind, run_id, ref, content, prev_hash, hash FROM {table} ORDER BY seq"
    ))?;
    // Carried over into a migrated log, the old chain's records are named as such.
    let label = if table == "evidence" {
        "evidence"
    } else {
        "schema 01 evidence"
    };
    let mut rows = stmt.query([])?;
    let mut expected = 1;
    let mut prev_seq = 0;
    let mut prev_hash = GENESIS.to_string();
    // An `end` record waiting for its checkpoint: its number and run.
    let mut open_end: Option<(i64, i64)> = None;
    let mut records = 0;
    let mut anchor_at = (expect == Some(GENESIS)).then_some(0);
    // A record whose hash was changed is found twice, at itself and at the link of the next.
    let mut last_found = None;
    while let Some(row) = rows.next()? {
        let rec = Stored::read(row)?;
        if in_scope(rec.run_id) {
            records += 1;
        }
        if anchor_at.is_none() && expect.is_some() && rec.hash.as_deref() == expect {
            anchor_at = Some(rec.seq);
        }
        let hash_holds = rec.hash_holds();
        let link_holds = rec.prev_hash.as_deref() == Some(prev_hash.as_str());
        let mut damage = match rec.seq.cmp(&expected) {
            Ordering::Less => Some((rec.seq, Damage::Inserted)),
            Ordering::Equal => match (hash_holds, link_holds) {
                (true, true) => None,
                (false, true) => Some((rec.seq, Damage::Modified)),
                (true, false) if prev_seq > 0 => Some((prev_seq, Damage::Modified)),
                (true, false) => Some((rec.seq, Damage::Modified)),
                (false, false) => Some((rec.seq, Damage::Inserted)),
            },
            Ordering::Greater if hash_holds && !link_holds => Some((expected, Damage::Deleted)),
            Ordering::Greater => Some((rec.seq, Damage::Inserted)),
        };
        let mut found_in = rec.run_id;
        let after_end = open_end.take();
        let is_checkpoint = rec.kind.as_deref() == Some("checkpoint");
        if damage.is_none() {
            match after_end {
                Some((end_seq, end_run)) if !(is_checkpoint && rec.run_id == Some(end_run)) => {
                    damage = Some((end_seq + 1, Damage::Deleted));
                    found_in = Some(end_run);
                }
                None if is_checkpoint => damage = Some((rec.seq, Damage::Inserted)),
                _ => {}
            }
        }
        if damage.is_none()
            && is_checkpoint
            && let Some(run_id) = rec.run_id
            && rec.content.as_deref()
                != Some(checkpoint_content(&prev_hash, rec.seq - 1, run_id).as_str())
        {
            damage = Some((rec.seq, Damage::Modified));
        }
        if let Some((seq, damage)) = damage
            && in_scope(found_in)
            && last_found.replace((seq, damage)) != Some((seq, damage))
        {
            problems.evidence(label, seq, damage);
        }
        if rec.kind.as_deref() == Some("end")
            && let Some(run_id) = rec.run_id
        {
            open_end = Some((rec.seq, run_id));
        }
        // A record numbered before the chain is left out of it; any other becomes the one the
        // next is linked to, so one damaged record makes one problem, not one per record after.
        if rec.seq >= expected {
            expected = rec.seq + 1;
            prev_seq = rec.seq;
            prev_hash = rec.hash.unwrap_or_default();
        }
    }
    if let Some((end_seq, end_run)) = open_end
        && in_scope(Some(end_run))
    {
        problems.evidence(label, end_seq + 1, Damage::Deleted);
    }
    Ok(ChainSummary {
        records,
        head: prev_hash,
        head_seq: prev_seq,
        anchor_at,
    })
}
