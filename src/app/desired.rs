//! `plan --desired`: the change plan that makes EM match a desired-access sheet, computed
//! against the live state and written as an ordinary plan for `check` and `apply`.
//!
//! The live state is read like `snapshot --all` and recorded as a `snapshot` run: the plan's
//! premises are then on record beside the run that applies it, and the reads pass the same
//! limiter and log as every other request.

use std::io::Write as _;

use serde::Serialize;

use crate::console::{errln, outln};
use crate::desired::{self, CsvSheet, DiffOptions};
use crate::exit::Exit;
use crate::plan::{self, Actions};
use crate::runner::snapshot::Selection;
use crate::runner::{self, Door, Reporter};
use crate::settings::{OutputFormat, PlanSettings};
use crate::text;

use super::connect::client_config;
use super::{AppError, signing_key};

/// What `--output json` prints.
#[derive(Serialize)]
struct PlanSummary<'a> {
    /// The plan written, or null when there was nothing to change.
    plan: Option<String>,
    /// The snapshot run the plan was computed from.
    snapshot_run: i64,
    /// Rows written.
    rows: u64,
    /// Rows by action.
    actions: &'a Actions,
    accounts_changed: u64,
    accounts_unchanged: u64,
    /// Accounts on EM the sheet leaves out, kept (no `--prune`).
    accounts_left_alone: u64,
}

pub(super) async fn plan_desired(s: PlanSettings) -> Result<Exit, AppError> {
    let key = signing_key(s.signing_key.as_deref())?;
    let label = s.desired.display().to_string();
    // The sheet is read, and refused, before anything is sent.
    let file = std::fs::File::open(&s.desired)
        .map_err(|e| AppError::Usage(format!("cannot read {label}: {e}")))?;
    let mut sheet =
        CsvSheet::new(file).map_err(|e| AppError::Usage(format!("cannot read {label}: {e}")))?;
    let wanted = desired::read_desired(&label, &mut sheet).map_err(AppError::Desired)?;
    // Told now, not after the reads: a file in the way costs nothing.
    if !s.force && std::fs::symlink_metadata(&s.out).is_ok() {
        return Err(AppError::Usage(format!(
            "{} exists; pass --force to replace it",
            s.out.display()
        )));
    }

    let config = client_config(&s.connect, None)?;
    let settings = runner::run_settings(
        config,
        s.pace,
        None,
        serde_json::json!({ "accounts": "all", "for": "plan --desired", "desired": label }),
    );
    let door = Door {
        db: &s.db,
        signing_key: key.as_ref(),
        reporter: Reporter::Quiet,
        wait: false,
    };
    let report = door.snapshot(Selection::All, settings).await?;
    if !report.failures.is_empty() || report.interrupted {
        // An account not read would look absent, and be planned as new (or deleted).
        for failure in &report.failures {
            errln!("embatch: {}", text::printable(&failure.error));
        }
        errln!(
            "embatch: snapshot run {}: the live state could not be read whole; no plan was written",
            report.run_id
        );
        return Ok(Exit::of_snapshot(&report));
    }
    let live: Vec<runner::AccountState> = report.accounts.into_iter().map(|a| a.state).collect();
    let changes = desired::diff(&label, &wanted, &live, DiffOptions { prune: s.prune })
        .map_err(AppError::Desired)?;

    let written = if changes.rows.is_empty() {
        None
    } else {
        let mut bytes = Vec::new();
        desired::write_plan(&changes.rows, s.ticket.as_deref(), &mut bytes)?;
        // The plan must be one that check and apply accept; a row they would refuse (a ticket
        // or a name with a control character) is reported now, as theirs, and nothing written.
        plan::parse(&s.out.display().to_string(), &bytes[..])?;
        write_private(&s.out, s.force, &bytes)?;
        Some(s.out.display().to_string())
    };

    match s.output {
        OutputFormat::Json => {
            let summary = PlanSummary {
                plan: written.clone(),
                snapshot_run: report.run_id,
                rows: changes.counts.total(),
                actions: &changes.counts,
                accounts_changed: changes.accounts_changed,
                accounts_unchanged: changes.accounts_unchanged,
                accounts_left_alone: changes.accounts_left_alone,
            };
            outln!(
                "{}",
                serde_json::to_string_pretty(&summary).expect("a summary always serializes")
            )?;
        }
        OutputFormat::Text => {
            match &written {
                None => outln!(
                    "EM already matches {} (snapshot run {}); no plan written",
                    text::printable(&label),
                    report.run_id
                )?,
                Some(path) => {
                    outln!(
                        "wrote {} rows for {} accounts to {} (from snapshot run {}): {}",
                        changes.counts.total(),
                        changes.accounts_changed,
                        text::printable(path),
                        report.run_id,
                        counts_text(&changes.counts)
                    )?;
                    outln!("check it with `embatch check {}`", text::printable(path))?;
                }
            }
            if changes.accounts_left_alone > 0 {
                outln!(
                    "{} accounts on EM are not in the sheet and were left alone (--prune deletes them)",
                    changes.accounts_left_alone
                )?;
            }
        }
    }
    Ok(Exit::Success)
}

/// Writes the plan with mode 0600; without `force`, a file that appeared since the check is
/// not replaced either.
fn write_private(path: &std::path::Path, force: bool, bytes: &[u8]) -> Result<(), AppError> {
    let opened = if force {
        crate::audit::PrivateOutput::create(path)
    } else {
        crate::audit::PrivateOutput::create_new(path)
    };
    let mut out =
        opened.map_err(|e| AppError::Usage(format!("cannot write {}: {e}", path.display())))?;
    match out.writer().write_all(bytes) {
        Ok(()) => Ok(out.commit()?),
        Err(e) => {
            out.discard();
            Err(AppError::Io(e))
        }
    }
}

/// `2 add-account, 5 assign-role, ...`, leaving out actions with no row.
fn counts_text(c: &Actions) -> String {
    [
        (c.add_account, "add-account"),
        (c.assign_role, "assign-role"),
        (c.add_scope, "add-scope"),
        (c.restore_all_vms, "restore-all-vms"),
        (c.remove_scope, "remove-scope"),
        (c.remove_role, "remove-role"),
        (c.delete_account, "delete-account"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, name)| format!("{n} {name}"))
    .collect::<Vec<_>>()
    .join(", ")
}
