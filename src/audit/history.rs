//! What earlier runs recorded, read back for `replay`, `undo` and `resume`: every row with its
//! outcome, prior state and result, which rows sent a write, and which runs descend from which.

use std::collections::{HashMap, HashSet};

use rusqlite::params;
use uuid::Uuid;

use super::recorded::{OUTCOME_COLUMNS, ROW_COLUMNS, RecordedRow};
use super::{AuditError, AuditReader};

impl AuditReader {
    /// Every row of `run_id`, in row order.
    pub fn recorded_rows(&self, run_id: i64) -> Result<Vec<RecordedRow>, AuditError> {
        let mut stmt = self.connection().prepare_cached(&format!(
            "SELECT {ROW_COLUMNS}, {OUTCOME_COLUMNS} FROM change_log
             WHERE run_id = ?1 ORDER BY row_no"
        ))?;
        let rows = stmt
            .query_map([run_id], |r| RecordedRow::read(r, 0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The rows of `run_id` for which a write (POST or DELETE) was recorded as about to be sent:
    /// their effect on the server may exist whatever outcome the log shows.
    pub fn rows_with_writes(&self, run_id: i64) -> Result<HashSet<u64>, AuditError> {
        let mut stmt = self.connection().prepare_cached(
            "SELECT DISTINCT row_no FROM request_log
             WHERE run_id = ?1 AND row_no IS NOT NULL AND method IN ('POST', 'DELETE')",
        )?;
        let rows = stmt
            .query_map([run_id], |r| r.get::<_, i64>(0).map(|v| v as u64))?
            .collect::<Result<HashSet<_>, _>>()?;
        Ok(rows)
    }

    /// The ids of the runs of `kind` whose parent is `run_id`, oldest first.
    pub fn child_runs(&self, run_id: i64, kind: &str) -> Result<Vec<i64>, AuditError> {
        let mut stmt = self.connection().prepare_cached(
            "SELECT id FROM runs WHERE parent_run_id = ?1 AND kind = ?2 ORDER BY id",
        )?;
        let ids = stmt
            .query_map(params![run_id, kind], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    /// The hierarchy object refs of every scope a run of this log created, by scope id. EM's
    /// scope listing never shows the ref, so this is the only place it is known. A recorded id
    /// that is not a GUID is left out: no scope EM lists could match it.
    pub fn known_scope_refs(&self) -> Result<HashMap<Uuid, String>, AuditError> {
        let mut stmt = self.connection().prepare_cached(
            "SELECT json_extract(result, '$.scope_id'), json_extract(result, '$.obj_ref')
             FROM change_log
             WHERE result IS NOT NULL AND json_valid(result)
               AND json_extract(result, '$.scope_id') IS NOT NULL
               AND json_extract(result, '$.obj_ref') IS NOT NULL",
        )?;
        let mut refs = HashMap::new();
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (id, obj_ref) = row?;
            if let Ok(id) = Uuid::parse_str(&id) {
                refs.insert(id, obj_ref);
            }
        }
        Ok(refs)
    }
}

/// An account that an undo re-created: EM gave it a new id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recreated {
    /// The account's name.
    pub account: String,
    /// The id it had when the undone run deleted it.
    pub old_id: String,
    /// The id EM gave it when the undo created it again.
    pub new_id: String,
}

impl AuditReader {
    /// The accounts that the newest undo of run `undone` re-created, each with its old and new
    /// id, in plan order: plans and tickets naming the old id no longer match them.
    pub fn recreated_accounts(&self, undone: i64) -> Result<Vec<Recreated>, AuditError> {
        let mut stmt = self.connection().prepare(
            "SELECT account, json_extract(annotations, '$.replaces'),
                    json_extract(result, '$.account_id')
             FROM change_log
             WHERE run_id = (SELECT max(id) FROM runs WHERE kind = 'undo' AND parent_run_id = ?1)
               AND action = 'add-account' AND outcome = 'applied'
             ORDER BY row_no",
        )?;
        let rows = stmt.query_map([undone], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        let mut recreated = Vec::new();
        for row in rows {
            if let (account, Some(old_id), Some(new_id)) = row? {
                recreated.push(Recreated {
                    account,
                    old_id,
                    new_id,
                });
            }
        }
        Ok(recreated)
    }
}
