//! `snapshot`: the access of accounts, read from EM and written as CSV or JSON Lines.

use crate::console::errln;
use crate::exit::Exit;
use crate::runner::snapshot::{self, Selection};
use crate::runner::{self, Door, Reporter};
use crate::settings::{SnapshotAccounts, SnapshotSettings};
use crate::text;

use super::connect::client_config;
use super::{AppError, finish_output, load_plan, private_output, signing_key};

pub(super) async fn snapshot_accounts(s: SnapshotSettings) -> Result<Exit, AppError> {
    let key = signing_key(s.signing_key.as_deref())?;
    let plan = match &s.accounts {
        SnapshotAccounts::Plan(path) => Some(load_plan(path)?),
        SnapshotAccounts::All => None,
    };
    let config = client_config(&s.connect, None)?;
    let mut out = private_output(s.out.as_deref())?;
    let settings = runner::run_settings(
        config,
        s.pace,
        None,
        serde_json::json!({ "accounts": if plan.is_some() { "plan" } else { "all" } }),
    );
    let selection = match &plan {
        Some(plan) => Selection::Plan(plan),
        None => Selection::All,
    };
    let door = Door {
        db: &s.db,
        signing_key: key.as_ref(),
        reporter: Reporter::Quiet,
        wait: false,
    };
    let result = door
        .snapshot(selection, settings)
        .await
        .map_err(AppError::from);
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            // A snapshot that could not be taken leaves no file either.
            if let Some(file) = out {
                file.discard();
            }
            return Err(e);
        }
    };
    let written = match &mut out {
        Some(file) => snapshot::write_snapshot(&report.accounts, s.format, file.writer()),
        None => snapshot::write_snapshot(&report.accounts, s.format, std::io::stdout().lock()),
    };
    // The run's account below is told even when the reader of stdout went away.
    finish_output(out, written.map_err(AppError::from))?;
    // Stdout may carry the snapshot itself, so the account of the run goes to stderr.
    for failure in &report.failures {
        errln!("embatch: {}", text::printable(&failure.error));
    }
    errln!(
        "embatch: snapshot run {}: {} accounts read, {} could not be read; {} requests",
        report.run_id,
        report.accounts.len(),
        report.failures.len(),
        report.requests
    );
    if report.interrupted {
        errln!("embatch: interrupted: accounts not read are marked skipped");
    }
    Ok(Exit::of_snapshot(&report))
}
