//! `check` and `apply`, what every command that may change EM asks before it does, and
//! `rebuild-scopes`.

use std::io::IsTerminal;

use url::Url;

use crate::console::{err, errln, out, outln};
use crate::exit::Exit;
use crate::plan::{self, PlanFile};
use crate::runner::{self, Door, Reporter, RunRecord, RunSpec, ScopeRebuild};
use crate::settings::{ApplyLike, ApplySettings, CheckSettings, OutputFormat};
use crate::text;

use super::connect::client_config;
use super::{AppError, front_door, run_through, signing_key};

pub(super) async fn check(s: CheckSettings) -> Result<Exit, AppError> {
    let Some((connect, pace)) = s.online else {
        // The offline check needs only the summary, so the plan is streamed, not held.
        let plan = plan::check_sheet(&s.plan, s.sheet.as_deref())?;
        match s.output {
            // `sha256` is the key this output always had; `plan_sha256` is the name the audit
            // log and `apply --expect-sha256` know it by.
            OutputFormat::Json => outln!(
                "{}",
                serde_json::json!({"file": plan.file, "rows": plan.rows, "sha256": plan.sha256, "plan_sha256": plan.sha256, "hidden_rows": plan.hidden_rows, "valid": true})
            )?,
            OutputFormat::Text => {
                outln!("{}: {} rows, valid", text::printable(&plan.file), plan.rows)?;
                if plan.hidden_rows > 0 {
                    outln!("{}", hidden_line(plan.hidden_rows))?;
                }
                outln!("{}", hash_line(&plan.sha256))?;
            }
        }
        return Ok(Exit::Success);
    };
    let plan = plan::load_sheet(&s.plan, s.sheet.as_deref())?;
    let config = client_config(&connect, None)?;
    let preview = runner::preview(&plan, config, pace).await?;
    match s.output {
        OutputFormat::Json => {
            let mut value = serde_json::to_value(&preview).expect("a preview always serializes");
            value["plan_sha256"] = plan.sha256.clone().into();
            outln!(
                "{}",
                serde_json::to_string_pretty(&value).expect("a JSON value always serializes")
            )?
        }
        OutputFormat::Text => {
            out!("{}", preview.text(&plan.file))?;
            outln!("{}", hash_line(&plan.sha256))?;
        }
    }
    Ok(Exit::of_preview(&preview))
}

/// The last line of `check`'s text: the plan's SHA-256, on a line of its own so that it can be
/// pasted into the change ticket, and from there into `apply --expect-sha256` once approved.
fn hash_line(sha256: &str) -> String {
    format!("sha256 {sha256}")
}

/// The line that tells a reviewer of a spreadsheet plan that it has rows the spreadsheet does
/// not show, which were read (and will be applied) all the same.
fn hidden_line(hidden_rows: u64) -> String {
    match hidden_rows {
        1 => "1 hidden row was read like any other".to_string(),
        n => format!("{n} hidden rows were read like any other"),
    }
}

/// Refuses a plan whose bytes are not those approved (`--expect-sha256`), before anything is
/// sent or recorded. The hash compared is the one the run records and its rows are read back
/// against, so a file changed after this check is refused there as any changed plan is.
fn approved(plan: &PlanFile, expected: Option<&str>) -> Result<(), AppError> {
    match expected {
        Some(expected) if expected != plan.sha256 => Err(AppError::Unapproved {
            file: plan.file.clone(),
            expected: expected.to_owned(),
            actual: plan.sha256.clone(),
        }),
        _ => Ok(()),
    }
}

/// What a plan may change, counted by action, for the confirmation before apply.
pub(super) fn blast_text(a: &plan::Actions) -> String {
    format!(
        "accounts: {} added, {} deleted; roles: {} assigned, {} removed; scopes: {} added, {} removed; restore-all-vms: {} set",
        a.add_account,
        a.delete_account,
        a.assign_role,
        a.remove_role,
        a.add_scope,
        a.remove_scope,
        a.restore_all_vms
    )
}

/// The guards against a bad spreadsheet, before anything is sent: deletes need
/// `--allow-delete`, `--max-changes` caps the rows, and a person at a terminal confirms.
pub(super) fn guard_blast_radius(plan: &PlanFile, s: &ApplySettings) -> Result<(), AppError> {
    let blast = &plan.actions;
    if blast.delete_account > 0 && !s.allow_delete {
        let lines: Vec<String> = plan.delete_lines.iter().map(u64::to_string).collect();
        return Err(AppError::Usage(format!(
            "{}: the plan deletes {} account(s) (line {}); pass --allow-delete to allow it; nothing was sent",
            plan.file,
            blast.delete_account,
            lines.join(", ")
        )));
    }
    if let Some(max) = s.max_changes
        && blast.total() > max
    {
        return Err(AppError::Usage(format!(
            "{}: the plan has {} rows that may change something, more than --max-changes {max}; nothing was sent",
            plan.file,
            blast.total()
        )));
    }
    confirm(
        &format!(
            "{} rows may change something: {}",
            blast.total(),
            blast_text(blast)
        ),
        &format!(
            "Apply {} to {}?",
            text::printable(&plan.file),
            s.connect.url.as_ref().map(Url::as_str).unwrap_or("?")
        ),
        s.yes,
    )
}

/// Says on stderr what a command may change (`summary`), and on a terminal, unless `yes`, asks
/// `question` and refuses anything but a yes. Every command that may change EM comes here
/// before its first request.
pub(super) fn confirm(summary: &str, question: &str, yes: bool) -> Result<(), AppError> {
    errln!("embatch: {summary}");
    if !yes && std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        err!("{question} [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            return Err(AppError::Usage("not confirmed; nothing was sent".into()));
        }
    }
    Ok(())
}

/// What the jobs of a run derived from the log may change, counted by action.
pub(super) fn jobs_text(jobs: &[runner::Job]) -> String {
    let mut actions = plan::Actions::default();
    for job in jobs {
        actions.count(&job.row.action);
    }
    format!(
        "{} rows may change something: {}",
        actions.total(),
        blast_text(&actions)
    )
}

pub(super) async fn apply(s: ApplySettings) -> Result<Exit, AppError> {
    let key = signing_key(s.signing_key.as_deref())?;
    // The plan is validated in one pass that keeps no rows, then read again row by row as the
    // run records it; a file changed in between is refused before anything is sent.
    let plan = plan::check_sheet_to_run(&s.plan, s.sheet.as_deref())?;
    // Before the guards and their question: a plan that was not approved is not offered.
    approved(&plan, s.expect_sha256.as_deref())?;
    guard_blast_radius(&plan, &s)?;
    let config = client_config(&s.connect, None)?;
    // The hash approved is kept with the run, beside the plan's own (`plan_sha256`), as the
    // record that this run applied what the change board saw.
    let extra = match &s.expect_sha256 {
        Some(hash) => serde_json::json!({ "expected_sha256": hash }),
        None => serde_json::json!({}),
    };
    let settings = runner::run_settings(config, s.pace, s.max_failures, extra);
    // Read again for each try: a run that waited for the lock reads the plan when it starts.
    let mut make = || -> Result<RunSpec, AppError> {
        let rows = plan.rows()?;
        let mut spec = RunSpec::apply_stream(
            plan.file.clone(),
            plan.sha256.clone(),
            plan.rows,
            Box::new(rows),
        );
        if s.rebuild_scopes {
            spec.rebuild_scopes = ScopeRebuild::IfScopesAdded;
        }
        Ok(spec)
    };
    let door = front_door(&s.db, key.as_ref(), s.output, s.wait);
    run_through(door, &mut make, settings, s.output).await
}

pub(super) async fn rebuild_scopes(s: ApplyLike) -> Result<Exit, AppError> {
    let key = signing_key(s.signing_key.as_deref())?;
    let config = client_config(&s.connect, None)?;
    confirm(
        &format!(
            "starts one scope rebuild (RebuildUnprocessed) on {}",
            config.base_url
        ),
        &format!("Start a scope rebuild on {}?", config.base_url),
        s.yes,
    )?;
    let mut make = || -> Result<RunSpec, AppError> {
        Ok(RunSpec {
            record: RunRecord::New {
                kind: "rebuild-scopes".into(),
                parent_run_id: None,
                plan_file: None,
                plan_sha256: None,
                annotations: Vec::new(),
            },
            jobs: Vec::new(),
            stream: None,
            force: false,
            known_refs: Default::default(),
            earlier_failures: 0,
            rebuild_scopes: ScopeRebuild::Always,
        })
    };
    // The same settings as any run's, so the log shows the pace this one ran at too.
    let settings = runner::run_settings(config, s.pace, None, serde_json::json!({}));
    let door = Door {
        db: &s.db,
        signing_key: key.as_ref(),
        reporter: Reporter::Quiet,
        wait: s.wait,
    };
    run_through(door, &mut make, settings, s.output).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_approved_plan_passes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.csv");
        std::fs::write(&path, "account,action,target\nTECH\\a,restore-all-vms,on\n").unwrap();
        let plan = plan::check(&path).unwrap();
        assert!(approved(&plan, None).is_ok());
        assert!(approved(&plan, Some(&plan.sha256)).is_ok());
        let other = "0".repeat(64);
        let Err(e) = approved(&plan, Some(&other)) else {
            panic!("another hash is refused");
        };
        let text = e.to_string();
        assert!(
            text.contains(&other) && text.contains(&plan.sha256),
            "{text}"
        );
        assert_eq!(hash_line(&plan.sha256), format!("sha256 {}", plan.sha256));
    }

    #[test]
    fn hidden_rows_are_told_in_a_sentence() {
        assert_eq!(hidden_line(1), "1 hidden row was read like any other");
        assert_eq!(hidden_line(3), "3 hidden rows were read like any other");
    }
}
