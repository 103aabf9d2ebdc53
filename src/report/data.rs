//! What a report shows, read from the audit log's stable views: the run from `run_summary`,
//! its rows from `change_log` and its HTTP attempts from `request_log`.
//!
//! Reading goes through [`AuditReader`], so a run left `running` by a process that is gone is
//! reported `crashed` here as it is by `runs` and `show`, and a row reads as `show` reads it.

use super::timeline::Sample;
use crate::audit::{
    AttemptInfo, AuditError, AuditReader, RowFilter, RowInfo, RunInfo, RunOptions, RunSelector,
};

/// The most buckets a report's charts draw: one per second for runs up to ten minutes, wider
/// ones beyond, so a long run still makes a chart of a reasonable size.
pub const MAX_BUCKETS: usize = 600;

/// One run as the report shows it.
#[derive(Clone, Debug)]
pub struct ReportData {
    /// The run, as `show` reads it.
    pub run: RunInfo,
    /// Whether the run was made with `--insecure` (no certificate check).
    pub insecure: bool,
    /// The run's options, as recorded (JSON).
    pub options: String,
    /// The run's rows, in plan order.
    pub rows: Vec<RowInfo>,
    /// The run's HTTP attempts, in the order they were recorded.
    pub attempts: Vec<AttemptInfo>,
}

impl ReportData {
    /// The attempts as timeline samples; an attempt whose start time does not parse is left out
    /// of the charts (it still counts in the run's totals).
    pub fn samples(&self) -> Vec<Sample> {
        self.attempts
            .iter()
            .filter_map(|a| {
                Sample::from_log(&a.started_at, a.duration_ms, a.status, a.error.as_deref())
            })
            .collect()
    }

    /// Attempts that repeated an earlier one (a retry, or a write re-sent after a check).
    pub fn retries(&self) -> u64 {
        self.attempts.iter().filter(|a| a.attempt > 1).count() as u64
    }
}

/// Reads run `which` with its rows and attempts.
pub fn load(reader: &AuditReader, which: RunSelector) -> Result<ReportData, AuditError> {
    let run = reader.run(which)?;
    let RunOptions { insecure, options } = reader.run_options(run.run_id)?;
    let rows = reader.rows(run.run_id, RowFilter::default())?;
    let attempts = reader.attempts(run.run_id)?;
    Ok(ReportData {
        run,
        insecure,
        options,
        rows,
        attempts,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::audit::{AttemptStart, AuditWriter, NewRun, RowColumns, RowResult, RunStatus};
    use crate::report::timeline::Timeline;

    fn new_run() -> NewRun {
        NewRun {
            kind: "apply".into(),
            parent_run_id: None,
            operator: "TECH\\ops".into(),
            server_url: "https://em.example.com:9398/api".into(),
            wire: "xml".into(),
            tls_verify: false,
            insecure: true,
            plan_file: Some("plan.csv".into()),
            plan_sha256: Some("ab".repeat(32)),
            tool_version: "0.1.0".into(),
            options: r#"{"rate":10}"#.into(),
        }
    }

    fn row(row_no: u64) -> RowColumns {
        RowColumns {
            row_no,
            line: row_no + 2,
            account: format!("TECH\\user{row_no}"),
            action: "assign-role".into(),
            target: "Portal User".into(),
            object_name: None,
            ticket: Some("CHG-1".into()),
            comment: Some("<b>bold</b>".into()),
            annotations: None,
        }
    }

    #[tokio::test]
    async fn loads_a_run_with_its_rows_and_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let writer = AuditWriter::spawn(&path).unwrap();
        let audit = writer.handle();
        let run = audit.begin_run(new_run()).await.unwrap();
        audit.add_rows(run, vec![row(0), row(1)]).await.unwrap();
        for (n, status) in [(1, Some(503)), (2, Some(201))] {
            let id = audit
                .attempt_started(AttemptStart {
                    run_id: run,
                    row_no: Some(0),
                    attempt: n,
                    method: "POST".into(),
                    path: "/api/x".into(),
                })
                .await
                .unwrap();
            audit.attempt_finished(run, id, status, None, Duration::from_millis(12));
        }
        audit.row_finished(
            run,
            0,
            RowResult {
                outcome: "applied".into(),
                error: None,
                prior_state: None,
                result: None,
            },
        );
        audit.end_run(run, RunStatus::Completed).await.unwrap();
        writer.close().await.unwrap();

        let reader = AuditReader::open(&path).unwrap();
        let data = load(&reader, RunSelector::Last).unwrap();
        assert_eq!(data.run.run_id, run);
        assert!(data.insecure);
        assert_eq!(data.options, r#"{"rate":10}"#);
        assert_eq!(data.rows.len(), 2);
        assert_eq!(data.rows[0].outcome, "applied");
        assert_eq!(data.rows[1].outcome, "pending");
        assert_eq!(data.rows[1].line, 3);
        assert_eq!(data.rows[0].comment.as_deref(), Some("<b>bold</b>"));
        assert_eq!(data.attempts.len(), 2);
        assert_eq!(data.attempts[0].status, Some(503));
        assert_eq!(data.retries(), 1);
        let timeline = Timeline::build(&data.samples(), MAX_BUCKETS);
        assert_eq!(timeline.requests(), 2);
        assert!(matches!(
            load(&reader, RunSelector::Id(run + 1)),
            Err(AuditError::NoSuchRun(_))
        ));
    }
}
