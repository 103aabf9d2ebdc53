//! The process exit statuses: one enum, and every decision of which one a command ends with,
//! made here from typed errors and the reports of runs. Documented in the README.
//!
//! Scripts depend on these numbers, so they only change on purpose.

use crate::app::AppError;
use crate::audit::Verification;
use crate::runner::snapshot::SnapshotReport;
use crate::runner::{Preview, RunError, RunReport, StopReason};

/// How an embatch command ended, as the number the process exits with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Every row was applied or already in place; or a read-only command succeeded.
    Success,
    /// The run finished, but some rows failed (or `check --online` predicts failures).
    RowsFailed,
    /// Usage error or invalid plan: nothing was sent to the server.
    Usage,
    /// Connection, TLS or logon failure before any change was made.
    Connection,
    /// Interrupted (Ctrl-C): rows not started are marked skipped and `resume` can finish them.
    Interrupted,
    /// The audit log failed verification: a record was modified, deleted or inserted.
    Tampered,
}

impl Exit {
    /// The numeric status the process exits with.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::RowsFailed => 1,
            Exit::Usage => 2,
            Exit::Connection => 3,
            Exit::Interrupted => 4,
            Exit::Tampered => 5,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

impl Exit {
    /// How a run ended: interrupted (Ctrl-C) above all, then any row not applied or in place
    /// (or a scope rebuild EM did not start), then a stop by `--max-failures`.
    pub fn of_run(report: &RunReport) -> Exit {
        if report.stopped == Some(StopReason::Interrupted) {
            Exit::Interrupted
        } else if report.unsuccessful() > 0
            || report.scope_rebuild.as_ref().is_some_and(|r| !r.started)
        {
            Exit::RowsFailed
        } else if report.stopped.is_some() {
            Exit::Interrupted
        } else {
            Exit::Success
        }
    }

    /// How `check --online` ended: a plan that apply would refuse as a whole is refused as a
    /// plan error is; rows that would fail are failures.
    pub fn of_preview(preview: &Preview) -> Exit {
        if !preview.refused.is_empty() {
            Exit::Usage
        } else if preview.failures > 0 {
            Exit::RowsFailed
        } else {
            Exit::Success
        }
    }

    /// How a snapshot ended.
    pub fn of_snapshot(report: &SnapshotReport) -> Exit {
        if report.interrupted {
            Exit::Interrupted
        } else if !report.failures.is_empty() {
            Exit::RowsFailed
        } else {
            Exit::Success
        }
    }

    /// How `verify` ended.
    pub fn of_verification(verification: &Verification) -> Exit {
        if verification.holds() {
            Exit::Success
        } else {
            Exit::Tampered
        }
    }

    /// How the demo ended, from its run's status: its plan holds a row EM refuses on purpose,
    /// to show a failure being recorded, so a run that went as planned is a success.
    pub fn of_demo(run: Exit) -> Exit {
        match run {
            Exit::RowsFailed | Exit::Success => Exit::Success,
            other => other,
        }
    }

    /// How a command that failed ends.
    pub fn of_error(e: &AppError) -> Exit {
        match e {
            AppError::Usage(_)
            | AppError::Plan(_)
            | AppError::Desired(_)
            | AppError::History(_)
            | AppError::Unapproved { .. }
            | AppError::Audit(_)
            // A plan problem comes as `AppError::Plan`; this pattern only keeps the match whole.
            | AppError::Run(RunError::Plan(_)) => Exit::Usage,
            AppError::Run(RunError::Connect { .. } | RunError::Resolve { .. }) => {
                Exit::Connection
            }
            // Nothing was sent (the log could not record it, another run holds the server, a
            // row would lock everyone out), or nothing more after the log failed.
            AppError::Run(
                RunError::Audit(_)
                | RunError::LogFailed { .. }
                | RunError::Locked(_)
                | RunError::Refused { .. },
            ) => Exit::Usage,
            AppError::Emulator(_) | AppError::Io(_) | AppError::Run(RunError::Internal(_)) => {
                Exit::RowsFailed
            }
        }
    }

    /// How a command line that cannot be turned into a command ends, and a process whose
    /// async runtime cannot start: nothing was sent.
    pub fn of_setup() -> Exit {
        Exit::Usage
    }
}

/// Ends the process at once with `exit`: only for a second Ctrl-C, when waiting for the
/// requests in flight is what the operator refused. Every request already has its committed
/// intent in the audit log, so `resume` can still reconcile.
pub fn now(exit: Exit) -> ! {
    std::process::exit(exit.code().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::RunCounts;
    use crate::runner::{RebuildOutcome, Summary};

    fn report(failed: u64, stopped: Option<StopReason>) -> RunReport {
        RunReport {
            run_id: 1,
            summary: Summary {
                counts: RunCounts {
                    failed,
                    ..RunCounts::default()
                },
                ..Summary::default()
            },
            stopped,
            earlier_failures: 0,
            scope_rebuild: None,
        }
    }

    #[test]
    fn the_numbers_scripts_depend_on() {
        let all = [
            Exit::Success,
            Exit::RowsFailed,
            Exit::Usage,
            Exit::Connection,
            Exit::Interrupted,
            Exit::Tampered,
        ];
        assert_eq!(all.map(Exit::code), [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_runs_status_comes_from_its_report() {
        assert_eq!(Exit::of_run(&report(0, None)), Exit::Success);
        assert_eq!(Exit::of_run(&report(2, None)), Exit::RowsFailed);
        // Ctrl-C outranks failures; a stop by --max-failures does not.
        assert_eq!(
            Exit::of_run(&report(2, Some(StopReason::Interrupted))),
            Exit::Interrupted
        );
        assert_eq!(
            Exit::of_run(&report(2, Some(StopReason::MaxFailures))),
            Exit::RowsFailed
        );
        let mut rebuild = report(0, None);
        rebuild.scope_rebuild = Some(RebuildOutcome {
            started: false,
            detail: "refused".into(),
        });
        assert_eq!(Exit::of_run(&rebuild), Exit::RowsFailed);
        let mut resumed = report(0, None);
        resumed.earlier_failures = 1;
        assert_eq!(Exit::of_run(&resumed), Exit::RowsFailed);
    }

    #[test]
    fn errors_map_to_their_statuses() {
        assert_eq!(Exit::of_error(&AppError::Usage("x".into())), Exit::Usage);
        assert_eq!(
            Exit::of_error(&AppError::Run(RunError::Internal("bug".into()))),
            Exit::RowsFailed
        );
        assert_eq!(
            Exit::of_error(&AppError::Run(RunError::Refused {
                run_id: 1,
                plan: None,
                refusals: Vec::new(),
            })),
            Exit::Usage
        );
        let unapproved = AppError::Unapproved {
            file: "plan.csv".into(),
            expected: "0".repeat(64),
            actual: "1".repeat(64),
        };
        assert_eq!(Exit::of_error(&unapproved), Exit::Usage);
        assert_eq!(Exit::of_demo(Exit::RowsFailed), Exit::Success);
        assert_eq!(Exit::of_demo(Exit::Connection), Exit::Connection);
    }
}
