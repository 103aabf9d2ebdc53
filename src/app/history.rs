//! `replay`, `undo` and `resume`: runs derived from a run in the audit log.

use std::path::{Path, PathBuf};

use crate::audit::{AuditReader, RunInfo, RunSelector};
use crate::console::{errln, outln};
use crate::exit::Exit;
use crate::runner::history::{self};
use crate::runner::{self, RunSpec};
use crate::settings::{FollowUpSettings, OutputFormat};
use crate::text;

use super::apply::{confirm, jobs_text};
use super::connect::client_config;
use super::{AppError, front_door, open_reader, run_through, signing_key};

/// The recorded run a follow-up command starts from, with a reader of its log.
pub(super) fn recorded_run(s: &FollowUpSettings) -> Result<(AuditReader, RunInfo), AppError> {
    let reader = open_reader(&s.db)?;
    let run = reader.run(RunSelector::from(s.run))?;
    Ok((reader, run))
}

/// How a follow-up command derives its spec from the log again, when it waited for the lock and
/// must start from what the log holds then.
pub(super) type Derive<'a> = &'a dyn Fn(&AuditReader, &RunInfo) -> Result<RunSpec, AppError>;

/// Runs `spec`, derived from `run`, with the follow-up command's settings, once the operator
/// confirmed what it may change (`verb` names the command in the question).
pub(super) async fn run_follow_up(
    s: &FollowUpSettings,
    run: &RunInfo,
    spec: RunSpec,
    verb: &str,
    derive: Derive<'_>,
    extra: serde_json::Value,
) -> Result<Exit, AppError> {
    let key = signing_key(s.signing_key.as_deref())?;
    let config = client_config(&s.connect, Some(run))?;
    confirm(
        &jobs_text(&spec.jobs),
        &format!("{verb} run {} on {}?", run.run_id, config.base_url),
        s.yes,
    )?;
    let mut extra = extra;
    if let Some(extra) = extra.as_object_mut() {
        extra.insert("source_run".into(), run.run_id.into());
    }
    let settings = runner::run_settings(config, s.pace.clone(), s.max_failures, extra);
    let mut first = Some(spec);
    let mut make = || match first.take() {
        Some(spec) => Ok(spec),
        None => derive(&open_reader(&s.db)?, run),
    };
    let door = front_door(&s.db, key.as_ref(), s.output, s.wait);
    run_through(door, &mut make, settings, s.output).await
}

pub(super) async fn replay(s: FollowUpSettings, failed_only: bool) -> Result<Exit, AppError> {
    let (reader, run) = recorded_run(&s)?;
    let derive =
        |reader: &AuditReader, run: &RunInfo| Ok(history::replay(reader, run, failed_only)?);
    let spec = derive(&reader, &run)?;
    drop(reader);
    run_follow_up(
        &s,
        &run,
        spec,
        "Replay",
        &derive,
        serde_json::json!({ "failed_only": failed_only }),
    )
    .await
}

pub(super) async fn resume(s: FollowUpSettings) -> Result<Exit, AppError> {
    let (reader, run) = recorded_run(&s)?;
    // Before the status: a finished snapshot is no more resumable than an interrupted one.
    history::refuse_kind(&run, "resume")?;
    if run.status == "completed" {
        outln!("run {} completed; there is nothing to resume", run.run_id)?;
        return Ok(Exit::Success);
    }
    let spec = history::resume(&reader, &run)?;
    drop(reader);
    let in_doubt = spec.jobs.iter().filter(|j| j.maybe_sent).count();
    if s.output == OutputFormat::Text {
        errln!(
            "embatch: resuming run {} ({}): {} rows to run, {in_doubt} of them checked against the server first",
            run.run_id,
            run.status,
            spec.jobs.len()
        );
    }
    // After a wait, the run is read again: whoever held the lock may have finished it.
    let derive = |reader: &AuditReader, run: &RunInfo| {
        let now = reader.run(RunSelector::Id(run.run_id))?;
        if now.status == "completed" {
            return Err(AppError::History(format!(
                "run {} was completed by another process while this one waited; there is \
                 nothing to resume",
                run.run_id
            )));
        }
        Ok(history::resume(reader, &now)?)
    };
    run_follow_up(
        &s,
        &run,
        spec,
        "Resume",
        &derive,
        serde_json::json!({ "resumed": true }),
    )
    .await
}

pub(super) async fn undo(
    s: FollowUpSettings,
    dry_run: bool,
    emit_plan: Option<PathBuf>,
    force: bool,
    allow_partial: bool,
) -> Result<Exit, AppError> {
    let (reader, run) = recorded_run(&s)?;
    let mut plan = history::undo(&reader, &run)?;
    drop(reader);
    if !plan.irreversible.is_empty() {
        let list: Vec<String> = plan
            .irreversible
            .iter()
            .map(|i| format!("  line {}: {}", i.line, text::printable(&i.reason)))
            .collect();
        if !allow_partial && !dry_run && emit_plan.is_none() {
            return Err(AppError::History(format!(
                "run {} cannot be undone completely; nothing was sent. Rows that cannot be undone:\n{}\n\
                 Pass --allow-partial to undo the rest.",
                run.run_id,
                list.join("\n")
            )));
        }
        errln!(
            "embatch: rows of run {} that cannot be undone:\n{}",
            run.run_id,
            list.join("\n")
        );
    }
    if let Some(path) = &emit_plan {
        std::fs::write(path, &plan.csv)
            .map_err(|e| AppError::Usage(format!("cannot write {}: {e}", path.display())))?;
        outln!(
            "wrote the inverse of run {} ({} rows) to {}; check it with `embatch check {}`",
            run.run_id,
            plan.spec.jobs.len(),
            path.display(),
            path.display()
        )?;
    }
    if dry_run {
        outln!("inverse of run {}, newest change first:", run.run_id)?;
        for (job, guard) in plan.spec.jobs.iter().zip(&plan.guards) {
            outln!(
                "  line {:>5}: {} {} {}  (only if {})",
                job.row.line,
                text::printable(&runner::account_text(&job.row.account)),
                job.row.action.name(),
                text::printable(&job.row.action.target_text()),
                serde_json::to_string(guard).expect("a guard always serializes")
            )?;
        }
        outln!("{} rows; nothing was sent", plan.spec.jobs.len())?;
    }
    if dry_run || emit_plan.is_some() {
        return Ok(Exit::Success);
    }
    if plan.spec.jobs.is_empty() {
        outln!("run {} changed nothing that can be undone", run.run_id)?;
        return Ok(Exit::Success);
    }
    plan.spec.force = force;
    let derive = |reader: &AuditReader, run: &RunInfo| {
        let mut spec = history::undo(reader, run)?.spec;
        spec.force = force;
        Ok(spec)
    };
    let exit = run_follow_up(
        &s,
        &run,
        plan.spec,
        "Undo",
        &derive,
        serde_json::json!({ "force": force, "allow_partial": allow_partial }),
    )
    .await?;
    report_new_ids(&s.db, run.run_id, s.output)?;
    Ok(exit)
}

/// Tells the user which accounts the undo re-created under a new id: EM gives a re-created
/// account a new GUID, so plans and tickets naming the old one no longer match it.
pub(super) fn report_new_ids(db: &Path, undone: i64, output: OutputFormat) -> Result<(), AppError> {
    let reader = open_reader(db)?;
    for again in reader.recreated_accounts(undone)? {
        let note = format!(
            "account {} was re-created with a new id: {} -> {}",
            text::printable(&again.account),
            text::printable(&again.old_id),
            text::printable(&again.new_id)
        );
        // With `--output json` stdout carries the summary alone, so scripts can parse it;
        // the note goes with the other human messages (the ids are in `change_log` too).
        match output {
            OutputFormat::Json => errln!("embatch: {note}"),
            OutputFormat::Text => outln!("{note}")?,
        }
    }
    Ok(())
}
