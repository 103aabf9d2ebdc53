//! What earlier runs recorded, read back for `replay`, `undo` and `resume`: every row with its
//! outcome, prior state and result, which rows sent a write, and which runs descend from which.

use std::collections::{HashMap, HashSet};

use rusqlite::{Row, params};
use uuid::Uuid;

use super::{AuditError, AuditReader};

/// One row of an earlier run, as the audit log holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRow {
    /// The row's index in its run.
    pub row_no: u64,
    /// The physical line in the run's plan.
    pub line: u64,
    /// The account as the plan named it.
    pub account: String,
    /// The GUID the account resolved to, once it did.
    pub account_id: Option<String>,
    /// The action.
    pub action: String,
    /// The target.
    pub target: String,
    /// The scope's display name, for `add-scope`.
    pub object_name: Option<String>,
    /// The ticket.
    pub ticket: Option<String>,
    /// The comment.
    pub comment: Option<String>,
    /// Extra plan columns, as a JSON object.
    pub annotations: Option<String>,
    /// The outcome.
    pub outcome: String,
    /// The error or note.
    pub error: Option<String>,
    /// The account's state before the row, as JSON.
    pub prior_state: Option<String>,
    /// What the row learnt, as JSON.
    pub result: Option<String>,
}

/// The columns [`RecordedRow::from_row`] reads, in its order. The table `plan_rows` and the
/// view `change_log` name them alike, so both are read with this one list.
pub(super) const RECORDED_COLUMNS: &str = "row_no, line, account, account_id, action, target, \
     object_name, ticket, comment, annotations, outcome, error, prior_state, result";

impl RecordedRow {
    /// The row read by a query that selects [`RECORDED_COLUMNS`], in that order.
    pub(super) fn from_row(r: &Row<'_>) -> rusqlite::Result<RecordedRow> {
        Ok(RecordedRow {
            row_no: r.get::<_, i64>(0)? as u64,
            line: r.get::<_, i64>(1)? as u64,
            account: r.get(2)?,
            account_id: r.get(3)?,
            action: r.get(4)?,
            target: r.get(5)?,
            object_name: r.get(6)?,
            ticket: r.get(7)?,
            comment: r.get(8)?,
            annotations: r.get(9)?,
            outcome: r.get(10)?,
            error: r.get(11)?,
            prior_state: r.get(12)?,
            result: r.get(13)?,
        })
    }
}

impl AuditReader {
    /// Every row of `run_id`, in row order.
    pub fn recorded_rows(&self, run_id: i64) -> Result<Vec<RecordedRow>, AuditError> {
        let mut stmt = self.connection().prepare_cached(&format!(
            "SELECT {RECORDED_COLUMNS} FROM change_log WHERE run_id = ?1 ORDER BY row_no"
        ))?;
        let rows = stmt
            .query_map([run_id], RecordedRow::from_row)?
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
