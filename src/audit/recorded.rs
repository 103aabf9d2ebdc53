//! A plan row as the log records it: its columns ([`RowColumns`]), written before the row runs,
//! and the row read back with what became of it ([`RecordedRow`]), for replay, undo and resume,
//! the runner's reads of a streamed run, and the export.
//!
//! The columns hold the validated row in normal form, so that reading them back with the plan's
//! own cell parsers (`plan::recorded_row`) gives the row that was recorded: [`RowColumns::of`]
//! and [`RowColumns::plan_row`] are the two directions, and nothing else converts between them.

use rusqlite::Row;

use super::RowResult;
use crate::plan::{Action, PlanRow, RecordedColumns, recorded_row};

/// One plan row as the log records it: the columns of `plan_rows` that the plan gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowColumns {
    /// The row's index in its run (0-based); with the run id, its key.
    pub row_no: u64,
    /// The physical line in the plan.
    pub line: u64,
    /// The account as the plan names it (a GUID in its normal form, or a name).
    pub account: String,
    /// The action's name.
    pub action: String,
    /// The target as text.
    pub target: String,
    /// The scope's display name, for `add-scope`.
    pub object_name: Option<String>,
    /// The change ticket.
    pub ticket: Option<String>,
    /// The comment.
    pub comment: Option<String>,
    /// Extra plan columns, as a JSON object of strings.
    pub annotations: Option<String>,
}

/// The columns [`RowColumns::read`] reads, in its order. The table `plan_rows` and the view
/// `change_log` name them alike, so both are read with this one list.
pub(super) const ROW_COLUMNS: &str =
    "row_no, line, account, action, target, object_name, ticket, comment, annotations";

/// The columns [`RecordedRow::read`] reads after [`ROW_COLUMNS`], in its order.
pub(super) const OUTCOME_COLUMNS: &str = "account_id, outcome, error, prior_state, result";

impl RowColumns {
    /// The columns of plan row `row`, the `row_no`th of its run.
    pub fn of(row_no: u64, row: &PlanRow) -> RowColumns {
        let object_name = match &row.action {
            Action::AddScope { object_name, .. } => Some(object_name.clone()),
            _ => None,
        };
        RowColumns {
            row_no,
            line: row.line,
            account: row.account.text(),
            action: row.action.name().into(),
            target: row.action.target_text(),
            object_name,
            ticket: row.ticket.clone(),
            comment: row.comment.clone(),
            annotations: row.annotations_json(),
        }
    }

    /// The plan row these columns record; `Err` says which column cannot be read back, which
    /// only happens when the log was changed by something other than embatch. Annotations come
    /// back in the order of their names.
    pub fn plan_row(&self) -> Result<PlanRow, String> {
        recorded_row(&self.view())
    }

    /// The columns borrowed, as the plan reads them back.
    pub fn view(&self) -> RecordedColumns<'_> {
        RecordedColumns {
            line: self.line,
            account: &self.account,
            action: &self.action,
            target: &self.target,
            object_name: self.object_name.as_deref(),
            ticket: self.ticket.as_deref(),
            comment: self.comment.as_deref(),
            annotations: self.annotations.as_deref(),
        }
    }

    /// The columns read by a query that selects [`ROW_COLUMNS`] from position `at` on.
    ///
    /// The numbers are stored signed; they are taken back bit for bit, so a value that no
    /// embatch wrote still reaches the export as it is stored.
    pub(super) fn read(r: &Row<'_>, at: usize) -> rusqlite::Result<RowColumns> {
        Ok(RowColumns {
            row_no: r.get::<_, i64>(at)? as u64,
            line: r.get::<_, i64>(at + 1)? as u64,
            account: r.get(at + 2)?,
            action: r.get(at + 3)?,
            target: r.get(at + 4)?,
            object_name: r.get(at + 5)?,
            ticket: r.get(at + 6)?,
            comment: r.get(at + 7)?,
            annotations: r.get(at + 8)?,
        })
    }
}

/// One row of an earlier run, as the audit log holds it: its columns and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRow {
    /// What the plan said.
    pub columns: RowColumns,
    /// The GUID the account resolved to, once it did.
    pub account_id: Option<String>,
    /// How the row ended: its outcome (`pending` until it ends), error or note, the account's
    /// state before it and what it learnt, as recorded.
    pub end: RowResult,
}

impl RecordedRow {
    /// The row read by a query that selects [`ROW_COLUMNS`] and then [`OUTCOME_COLUMNS`], from
    /// position `at` on.
    pub(super) fn read(r: &Row<'_>, at: usize) -> rusqlite::Result<RecordedRow> {
        let at_outcome = at + 9;
        Ok(RecordedRow {
            columns: RowColumns::read(r, at)?,
            account_id: r.get(at_outcome)?,
            end: RowResult {
                outcome: r.get(at_outcome + 1)?,
                error: r.get(at_outcome + 2)?,
                prior_state: r.get(at_outcome + 3)?,
                result: r.get(at_outcome + 4)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_comes_back_as_validated() {
        let g = "0f8e6a57-1c2b-4d3e-9f40-5a6b7c8d9e01";
        let plan = crate::plan::parse(
            "p.csv",
            format!(
                "account,action,target,object_name,ticket,comment,team,site\n\
                 TECH\\alice,assign-role,Portal User,,CHG-1,first,ops,\n\
                 {g},remove-role,urn:veeam:EnterpriseRole:{g},,,,,b\n\
                 TECH\\bob,add-scope,urn:VMware:ResourcePool:root.resgroup-1,Pool 1,,,,\n\
                 TECH\\carol,remove-scope,Pool 2,,,,,\n\
                 TECH\\dave,restore-all-vms,yes,,,,,\n\
                 TECH\\erin,add-account,User,,,,,\n\
                 TECH\\erin,assign-role,Portal User,,,,,\n\
                 TECH\\frank,delete-account,confirm,,,,,\n"
            )
            .as_bytes(),
        )
        .unwrap();
        for (i, row) in plan.rows.iter().enumerate() {
            let columns = RowColumns::of(i as u64, row);
            assert_eq!((columns.row_no, columns.line), (i as u64, row.line));
            let mut expected = row.clone();
            expected.annotations.sort();
            assert_eq!(columns.plan_row().unwrap(), expected);
        }
    }
}
