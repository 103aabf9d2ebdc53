//! Runs made from earlier runs, with no CSV: `replay` runs recorded rows again, `resume`
//! finishes a run that stopped, and `undo` runs the inverse of a completed run (`undo.rs`: the
//! inverse of each row and the guard it runs under).
//!
//! The recorded rows are turned back into plan rows by writing them as a CSV plan and
//! validating that plan with `plan::parse`, so a derived run obeys exactly the rules a plan from
//! a user does; and the inverse plan `undo --emit-plan` writes is that same text.

mod undo;

pub use undo::{Irreversible, UndoPlan, undo};

use serde_json::Value;

use crate::audit::{AuditError, AuditReader, RecordedRow, RowColumns, RunInfo};
use crate::plan::{self, PlanRow};

use super::state::Guard;
use super::{Job, RunRecord, RunSpec, ScopeRebuild};

/// Why a run cannot be derived from an earlier one. Nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The audit log could not be read.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The request makes no sense for that run (already undone, still running, ...).
    #[error("{0}")]
    Refused(String),
}

/// Writes `rows` as a CSV plan, header included: the columns a plan gives, not the row's
/// number, line or annotations.
fn to_csv<'a>(rows: impl IntoIterator<Item = &'a RowColumns>) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(crate::plan::WRITTEN_COLUMNS)
        .expect("writing to memory cannot fail");
    for c in rows {
        out.write_record([
            c.account.as_str(),
            c.action.as_str(),
            c.target.as_str(),
            c.object_name.as_deref().unwrap_or(""),
            c.ticket.as_deref().unwrap_or(""),
            c.comment.as_deref().unwrap_or(""),
        ])
        .expect("writing to memory cannot fail");
    }
    let bytes = out.into_inner().expect("writing to memory cannot fail");
    String::from_utf8(bytes).expect("the columns are UTF-8")
}

/// Validates derived rows as a plan named `name`, in order. Each row keeps the line its columns
/// name: that of the row it was derived from, in its own run's plan.
fn to_rows<'a>(
    name: &str,
    rows: impl IntoIterator<Item = &'a RowColumns> + Clone,
) -> Result<Vec<PlanRow>, HistoryError> {
    let parsed = plan::parse(name, to_csv(rows.clone()).as_bytes()).map_err(|e| {
        HistoryError::Refused(format!(
            "the rows recorded in the audit log no longer form a valid plan:\n{e}"
        ))
    })?;
    Ok(parsed
        .rows
        .into_iter()
        .zip(rows)
        .map(|(mut row, columns)| {
            row.line = columns.line;
            row
        })
        .collect())
}

/// Refuses a run whose writer may still be at work.
fn refuse_live(run: &RunInfo, what: &str) -> Result<(), HistoryError> {
    if run.status == "running" {
        return Err(HistoryError::Refused(format!(
            "run {} is still running in another process; {what} it once it has ended",
            run.run_id
        )));
    }
    Ok(())
}

/// Refuses to `command` (replay, undo or resume) a run of a kind that changed no account: a
/// `snapshot` run only read accounts, and a `rebuild-scopes` run only asked EM to process its
/// scopes again. Their rows, if any, are no plan rows, so there is nothing to run again.
pub fn refuse_kind(run: &RunInfo, command: &str) -> Result<(), HistoryError> {
    let why = match run.kind.as_str() {
        "snapshot" => format!(
            "run {} is a snapshot run: it only read accounts, so there is nothing to {command}; \
             take a new snapshot with `embatch snapshot`",
            run.run_id
        ),
        "rebuild-scopes" => format!(
            "run {} is a scope rebuild run: it only asked EM to process its scopes again and \
             changed no account, so there is nothing to {command}; start a new rebuild with \
             `embatch rebuild-scopes`",
            run.run_id
        ),
        _ => return Ok(()),
    };
    Err(HistoryError::Refused(why))
}

/// `replay RUN [--failed-only]`: RUN's rows again, as a new run linked to RUN.
pub fn replay(
    reader: &AuditReader,
    run: &RunInfo,
    failed_only: bool,
) -> Result<RunSpec, HistoryError> {
    refuse_kind(run, "replay")?;
    let recorded: Vec<RecordedRow> = reader
        .recorded_rows(run.run_id)?
        .into_iter()
        .filter(|r| {
            !failed_only
                || matches!(
                    r.end.outcome.as_str(),
                    "failed" | "skipped" | "in_doubt" | "pending"
                )
        })
        .collect();
    if recorded.is_empty() {
        return Err(HistoryError::Refused(format!(
            "run {} has no {}rows to replay",
            run.run_id,
            if failed_only {
                "failed or skipped "
            } else {
                ""
            }
        )));
    }
    let rows = to_rows(
        &format!("run {}", run.run_id),
        recorded.iter().map(|r| &r.columns),
    )?;
    let jobs = rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| Job {
            row_no: i as u64,
            row,
            guard: None,
            maybe_sent: false,
            account_settings: None,
        })
        .collect();
    Ok(RunSpec {
        record: RunRecord::New {
            kind: "replay".into(),
            parent_run_id: Some(run.run_id),
            plan_file: run.plan_file.clone(),
            plan_sha256: run.plan_sha256.clone(),
            annotations: recorded
                .iter()
                .map(|r| r.columns.annotations.clone())
                .collect(),
        },
        jobs,
        stream: None,
        force: false,
        known_refs: reader.known_scope_refs()?,
        earlier_failures: 0,
        rebuild_scopes: ScopeRebuild::Never,
    })
}

/// `resume RUN`: the rows RUN did not finish, under RUN's id. Rows for which a write was
/// recorded are marked `maybe_sent`: they are decided against a fresh read of the account.
pub fn resume(reader: &AuditReader, run: &RunInfo) -> Result<RunSpec, HistoryError> {
    refuse_kind(run, "resume")?;
    refuse_live(run, "resume")?;
    let writes = reader.rows_with_writes(run.run_id)?;
    let open: Vec<RecordedRow> = reader
        .recorded_rows(run.run_id)?
        .into_iter()
        .filter(|r| matches!(r.end.outcome.as_str(), "pending" | "skipped" | "in_doubt"))
        .collect();
    let rows = if open.is_empty() {
        Vec::new()
    } else {
        to_rows(
            &format!("run {}", run.run_id),
            open.iter().map(|r| &r.columns),
        )?
    };
    let jobs = rows
        .into_iter()
        .zip(&open)
        .map(|(row, rec)| Job {
            row_no: rec.columns.row_no,
            row,
            guard: guard_of(rec),
            maybe_sent: writes.contains(&rec.columns.row_no),
            account_settings: annotation(rec, "account_settings"),
        })
        .collect();
    // An undo run keeps its drift checks when resumed: the guard travels in its annotations.
    let force = serde_json::from_str::<Value>(&reader.run_options(run.run_id)?.options)
        .ok()
        .and_then(|o| o.get("force").and_then(Value::as_bool))
        .unwrap_or(false);
    Ok(RunSpec {
        record: RunRecord::Resume(run.run_id),
        jobs,
        stream: None,
        force,
        known_refs: reader.known_scope_refs()?,
        earlier_failures: run.counts.failed + run.counts.conflict,
        rebuild_scopes: ScopeRebuild::Never,
    })
}

fn guard_of(rec: &RecordedRow) -> Option<Guard> {
    annotation(rec, "guard")
}

/// A value undo stored in a row's annotations, for a resumed undo run.
fn annotation<T: serde::de::DeserializeOwned>(rec: &RecordedRow, key: &str) -> Option<T> {
    let annotations: Value = serde_json::from_str(rec.columns.annotations.as_deref()?).ok()?;
    serde_json::from_value(annotations.get(key)?.clone()).ok()
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn the_inverse_plan_is_a_valid_plan() {
        let columns = vec![RowColumns {
            line: 2,
            account: Uuid::from_u128(7).to_string(),
            action: "add-scope".into(),
            target: "urn:VMware:ResourcePool:root.resgroup-1".into(),
            object_name: Some("Finance, \"EU\"".into()),
            ticket: Some("CHG-1".into()),
            comment: Some("undo of run 1 line 2".into()),
            ..RowColumns::default()
        }];
        let rows = to_rows("undo", &columns).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].ticket.as_deref(), Some("CHG-1"));
    }
}
