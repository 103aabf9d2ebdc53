//! The rows of a run that did not end well (failed, in doubt, or left alone as a conflict),
//! read back for the list `apply`, `replay`, `undo` and `resume` print after their summary,
//! with what names each row's line: the plan file of an `apply` run, or the run a `replay` or
//! `undo` was made from, whose line numbers its rows keep.

use rusqlite::OptionalExtension;

use super::read::UNSUCCESSFUL;
use super::{AuditError, AuditReader, RowInfo};

/// What a run's line numbers are lines of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineSource {
    /// The plan file of an `apply` run (a resumed one included), as it was given.
    File(String),
    /// A run of the log: the run a `replay` or `undo` was made from, whose rows had these
    /// lines (`embatch show RUN` lists them).
    Run(i64),
}

/// One row that did not end well.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedRow {
    /// Its line (see [`LineSource`]).
    pub line: u64,
    /// The account as the plan named it.
    pub account: String,
    /// The action.
    pub action: String,
    /// The target.
    pub target: String,
    /// `failed`, `in_doubt` or `conflict`.
    pub outcome: String,
    /// Why, as recorded.
    pub reason: Option<String>,
}

impl From<RowInfo> for FailedRow {
    fn from(row: RowInfo) -> FailedRow {
        FailedRow {
            line: row.line,
            account: row.account,
            action: row.action,
            target: row.target,
            outcome: row.outcome,
            reason: row.error,
        }
    }
}

/// The first rows of a run that did not end well, in plan order, and how many there are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failures {
    /// What the rows' lines are lines of.
    pub source: LineSource,
    /// Failed, in-doubt and conflict rows in the whole run.
    pub total: u64,
    /// The first of them, at most as many as asked for.
    pub rows: Vec<FailedRow>,
}

impl AuditReader {
    /// The failed, in-doubt and conflict rows of `run_id`: the first `limit` in plan order, and
    /// their number. For a resumed run these include the rows that failed before the resume.
    pub fn failures(&self, run_id: i64, limit: usize) -> Result<Failures, AuditError> {
        let conn = self.connection();
        let (kind, parent, plan_file): (String, Option<i64>, Option<String>) = conn
            .query_row(
                // The table, not the view: the view would count every row of the run first.
                "SELECT kind, parent_run_id, plan_file FROM runs WHERE id = ?1",
                [run_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?
            .ok_or_else(|| AuditError::NoSuchRun(run_id.to_string()))?;
        // A replay or undo records its parent's plan file, but its rows are not that file's
        // rows (an undo's are inverses), and the file may have changed since: the parent run's
        // record of those lines is what they stand for.
        let source = match (kind.as_str(), plan_file, parent) {
            ("apply", Some(file), _) => LineSource::File(file),
            ("replay" | "undo", _, Some(parent)) => LineSource::Run(parent),
            _ => LineSource::Run(run_id),
        };
        let total: i64 = conn.query_row(
            &format!(
                "SELECT count(*) FROM change_log WHERE run_id = ?1 AND outcome IN {UNSUCCESSFUL}"
            ),
            [run_id],
            |r| r.get(0),
        )?;
        let rows = self
            .change_rows(run_id, true, Some(limit))?
            .into_iter()
            .map(FailedRow::from)
            .collect();
        Ok(Failures {
            source,
            total: u64::try_from(total).unwrap_or_default(),
            rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::fixtures::{new_rows, new_run, outcome};
    use crate::audit::{AuditWriter, NewRun, RowResult, RunStatus};

    #[tokio::test]
    async fn failed_in_doubt_and_conflict_rows_in_plan_order_with_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let writer = AuditWriter::spawn(&path).unwrap();
        let audit = writer.handle();
        let first = audit.begin_run(new_run()).await.unwrap();
        audit.add_rows(first, new_rows(6)).await.unwrap();
        for (i, o) in [
            "failed", "applied", "conflict", "in_doubt", "noop", "failed",
        ]
        .into_iter()
        .enumerate()
        {
            audit.row_finished(
                first,
                i as u64,
                RowResult {
                    error: Some(format!("row {i}")),
                    ..outcome(o)
                },
            );
        }
        audit.end_run(first, RunStatus::Failed).await.unwrap();
        let replay = audit
            .begin_run(NewRun {
                kind: "replay".into(),
                parent_run_id: Some(first),
                ..new_run()
            })
            .await
            .unwrap();
        audit.add_rows(replay, new_rows(1)).await.unwrap();
        audit.end_run(replay, RunStatus::Completed).await.unwrap();
        writer.close().await.unwrap();

        let reader = AuditReader::open(&path).unwrap();
        let f = reader.failures(first, 2).unwrap();
        assert_eq!(f.total, 4);
        let got: Vec<(&str, Option<&str>)> = f
            .rows
            .iter()
            .map(|r| (r.outcome.as_str(), r.reason.as_deref()))
            .collect();
        assert_eq!(
            got,
            [("failed", Some("row 0")), ("conflict", Some("row 2"))]
        );
        assert!(matches!(f.source, LineSource::File(_)), "{:?}", f.source);

        let f = reader.failures(replay, 20).unwrap();
        assert_eq!((f.total, f.rows.len()), (0, 0));
        assert_eq!(f.source, LineSource::Run(first));
        assert!(matches!(
            reader.failures(99, 20),
            Err(AuditError::NoSuchRun(_))
        ));
    }
}
