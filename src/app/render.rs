//! What the commands print about runs: the summary of a run with its failed rows, the hint
//! to resume, and what `verify` found. Rendered here, in one place, as text or JSON.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use crate::audit::{
    AuditReader, Damage, FailedRow, Failures, LineSource, LockHolder, RowInfo, RunInfo,
    Verification,
};
use crate::console::{self, errln};
use crate::runner::{self, RunReport};
use crate::settings::OutputFormat;
use crate::text;

use super::AppError;

/// How many failed rows a run's summary lists; `embatch show RUN --failed` lists them all.
pub(super) const FAILURES_LISTED: usize = 20;

pub(super) fn print_report(
    report: &RunReport,
    db: &Path,
    output: OutputFormat,
) -> Result<(), AppError> {
    let failures = read_failures(report, db);
    let mut out = console::stdout();
    match output {
        OutputFormat::Json => {
            let mut value = serde_json::to_value(report).expect("a report always serializes");
            value["db"] = serde_json::Value::String(db.display().to_string());
            let (listed, total) = match &failures {
                Some(f) => (
                    f.rows.iter().map(|r| failure_json(&f.source, r)).collect(),
                    f.total,
                ),
                None => (Vec::new(), report.unsuccessful()),
            };
            value["failures"] = serde_json::Value::Array(listed);
            value["failures_total"] = total.into();
            writeln!(out, "{value}")?;
        }
        OutputFormat::Text => {
            writeln!(out, "run {}:", report.run_id)?;
            write!(out, "{}", report.summary.table())?;
            if let Some(rebuild) = &report.scope_rebuild {
                writeln!(out, "scope rebuild: {}", rebuild.detail)?;
            }
            if let Some(f) = &failures {
                for row in &f.rows {
                    writeln!(out, "{}", failure_line(&f.source, row))?;
                }
                let more = f.total.saturating_sub(f.rows.len() as u64);
                if more > 0 {
                    writeln!(
                        out,
                        "and {more} more: `embatch show {} --failed --db {}`",
                        report.run_id,
                        text::printable(&db.display().to_string())
                    )?;
                }
            }
            if report.earlier_failures > 0 {
                writeln!(
                    out,
                    "  ({} rows had failed before the resume; see `embatch show {} --failed`)",
                    report.earlier_failures, report.run_id
                )?;
            }
            match report.stopped {
                Some(runner::StopReason::Interrupted) => writeln!(
                    out,
                    "interrupted: rows not run are marked skipped; finish with `embatch resume {}`",
                    report.run_id
                )?,
                Some(runner::StopReason::MaxFailures) => writeln!(
                    out,
                    "stopped after --max-failures; see `embatch show {} --failed`",
                    report.run_id
                )?,
                // Listed above, unless the log could not be read back.
                None if report.summary.counts.failed > 0 && failures.is_none() => writeln!(
                    out,
                    "see the failures with `embatch show {} --failed --db {}`",
                    report.run_id,
                    db.display()
                )?,
                None => {}
            }
        }
    }
    Ok(())
}

/// The failed, in-doubt and conflict rows of the run just ended, read back from its log; `None`
/// when it has none, or when the log cannot be read now, which changes nothing for the run (the
/// summary then says where to look).
pub(super) fn read_failures(report: &RunReport, db: &Path) -> Option<Failures> {
    if report.unsuccessful() == 0 {
        return None;
    }
    match AuditReader::open(db).and_then(|r| r.failures(report.run_id, FAILURES_LISTED)) {
        Ok(failures) => Some(failures),
        Err(e) => {
            errln!("embatch: cannot read the failed rows back from the audit log: {e}");
            None
        }
    }
}

/// One row that did not end well, as `check` names a plan's problems:
/// `FILE:LINE: account action target: reason`, or `run 7 line 4: ...` for a run made from the
/// log. Everything from the plan, the server and the log is escaped.
pub(super) fn failure_line(source: &LineSource, row: &FailedRow) -> String {
    let place = match source {
        LineSource::File(file) => format!("{}:{}", text::printable(file), row.line),
        LineSource::Run(run) => format!("run {run} line {}", row.line),
    };
    // A cell with a space is quoted, so that where the target ends stays clear.
    let cell = |t: &str| {
        let t = text::printable(t);
        if t.contains([' ', '"']) {
            format!("\"{}\"", t.replace('"', "\\\""))
        } else {
            t.into_owned()
        }
    };
    let mut what = format!("{} {}", cell(&row.account), text::printable(&row.action));
    if !row.target.is_empty() {
        what.push(' ');
        what.push_str(&cell(&row.target));
    }
    let label = match row.outcome.as_str() {
        "failed" => None,
        "in_doubt" => Some("in doubt".into()),
        other => Some(text::printable(other)),
    };
    let why = match (label, row.reason.as_deref()) {
        (Some(label), Some(reason)) => format!("{label}: {}", text::printable(reason)),
        (Some(label), None) => label.into_owned(),
        (None, Some(reason)) => text::printable(reason).into_owned(),
        (None, None) => "failed".into(),
    };
    format!("{place}: {what}: {why}")
}

/// One row that did not end well, for `--output json`: `file` or `run` as in [`failure_line`].
pub(super) fn failure_json(source: &LineSource, row: &FailedRow) -> serde_json::Value {
    let mut value = serde_json::json!({
        "line": row.line,
        "account": row.account,
        "action": row.action,
        "target": row.target,
        "outcome": row.outcome,
        "reason": row.reason,
    });
    match source {
        LineSource::File(file) => value["file"] = file.as_str().into(),
        LineSource::Run(run) => value["run"] = (*run).into(),
    }
    value
}

/// The advice for a run that stopped before its end, if it did.
pub(super) fn resume_hint(run: &RunInfo) -> Option<String> {
    let unfinished = run.counts.pending + run.counts.skipped + run.counts.in_doubt;
    match run.status.as_str() {
        "crashed" => Some(format!(
            "run {} crashed: its process ended without closing it; finish it with `embatch resume {}`",
            run.run_id, run.run_id
        )),
        "interrupted" | "aborted" | "failed" if unfinished > 0 => Some(format!(
            "run {} has {unfinished} rows not run or in doubt; finish them with `embatch resume {}`",
            run.run_id, run.run_id
        )),
        _ => None,
    }
}

/// How many problems `verify` prints as text; JSON lists up to `audit::MAX_PROBLEMS`.
pub(super) const VERIFY_LISTED: usize = 20;

/// The text `verify` prints: `N/N records valid`, or the problems, the first damaged record
/// first, and a closing count.
pub(super) fn verification_text(v: &Verification) -> String {
    let mut text = String::new();
    let scope = v
        .run_id
        .map(|id| format!(" (run {id})"))
        .unwrap_or_default();
    if v.holds() {
        if let Some(anchor) = &v.anchor {
            let at = anchor.found_at.unwrap_or_default();
            if anchor.carried_over {
                text.push_str(&format!(
                    "anchor {}: found at schema 01 evidence #{at} (before the log was migrated)\n",
                    anchor.hash
                ));
            } else {
                text.push_str(&format!("anchor {}: found at record #{at}\n", anchor.hash));
            }
        }
        text.push_str(&format!("{0}/{0} records valid{scope}\n", v.records));
        return text;
    }
    for problem in v.problems.iter().take(VERIFY_LISTED) {
        text.push_str(&format!("{problem}\n"));
    }
    let unlisted = v.problem_count.saturating_sub(VERIFY_LISTED as u64);
    if unlisted > 0 {
        text.push_str(&format!("... and {unlisted} more\n"));
    }
    // What the damages of signatures mean, once each: they are not edits of the chain, and
    // the first has an innocent cause as often as not.
    let damaged = |damage: Damage| v.problems.iter().any(|p| p.damage == damage);
    if damaged(Damage::Unsigned) {
        text.push_str(
            "unsigned: the run that wrote the checkpoint was not given --signing-key, or the \
             signature was removed\n",
        );
    }
    if damaged(Damage::OtherKey) {
        text.push_str(
            "signed by another key: not by the key of --public-key; check that it is the .pub \
             of the key the runs were given\n",
        );
    }
    let mut count = v.problem_count;
    if let Some(anchor) = v.anchor.as_ref().filter(|a| a.found_at.is_none()) {
        text.push_str(&format!("anchor {}: not in the audit log\n", anchor.hash));
        count += 1;
    }
    text.push_str(&format!(
        "verification failed: {count} problem{} in {} records{scope}\n",
        if count == 1 { "" } else { "s" },
        v.records
    ));
    text
}

/// The list `embatch runs` prints: a line per run, newest first, then who holds the lock of a
/// server, and which runs are not finished.
pub(super) fn runs_text(runs: &[RunInfo], holders: &[LockHolder]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>5}  {:<8} {:<12} {:<24} {:>6} {:>7} {:>6} {:>6}  plan",
        "run", "kind", "status", "started (UTC)", "rows", "applied", "no-op", "failed"
    );
    let mut resumable = Vec::new();
    for r in runs {
        if resume_hint(r).is_some() {
            resumable.push(r.run_id);
        }
        let [kind, status, started, plan] = shown([
            &r.kind,
            &r.status,
            &r.started_at,
            r.plan_file.as_deref().unwrap_or("-"),
        ]);
        let c = &r.counts;
        let _ = writeln!(
            out,
            "{:>5}  {kind:<8} {status:<12} {started:<24} {:>6} {:>7} {:>6} {:>6}  {plan}",
            r.run_id, c.rows, c.applied, c.noop, c.failed,
        );
    }
    // The run lock, as Liquibase shows its lock table: who changes which server right now.
    for holder in holders {
        let _ = writeln!(
            out,
            "\nlock: {} is changing {}; other runs against that server wait for it (--wait) or \
             are refused",
            text::printable(&holder.to_string()),
            text::printable(&holder.server_url)
        );
    }
    if let Some(newest) = resumable.first() {
        let _ = writeln!(
            out,
            "\nnot finished: run{} {}; finish with `embatch resume {newest}`",
            if resumable.len() == 1 { "" } else { "s" },
            resumable
                .iter()
                .map(|id| id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out
}

/// What `embatch show` prints as text: the run, its counts, the hint to resume, and its rows.
pub(super) fn show_text(run: &RunInfo, rows: &[RowInfo]) -> String {
    let mut out = String::new();
    let [kind, status, started, operator, server] = shown([
        &run.kind,
        &run.status,
        &run.started_at,
        &run.operator,
        &run.server_url,
    ]);
    let _ = writeln!(
        out,
        "run {} ({kind}, {status}) started {started} by {operator} on {server}",
        run.run_id
    );
    if let Some(file) = &run.plan_file {
        let [file, sha256] = shown([file, run.plan_sha256.as_deref().unwrap_or("-")]);
        let _ = writeln!(out, "plan {file} sha256 {sha256}");
    }
    let c = &run.counts;
    let _ = writeln!(
        out,
        "rows {}: applied {}, no-op {}, failed {}, skipped {}, in doubt {}, pending {}; {} requests",
        c.rows, c.applied, c.noop, c.failed, c.skipped, c.in_doubt, c.pending, c.requests
    );
    if c.conflict > 0 {
        let _ = writeln!(
            out,
            "{} rows left alone because the account changed since (conflict)",
            c.conflict
        );
    }
    if let Some(hint) = resume_hint(run) {
        let [hint] = shown([&hint]);
        let _ = writeln!(out, "{hint}");
    }
    for r in rows {
        let [outcome, account, action, target] =
            shown([&r.outcome, &r.account, &r.action, &r.target]);
        let error = match &r.error {
            Some(e) => format!("  ({})", text::printable(e)),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "{:>6}  {outcome:<9} {account} {action} {target}{error}",
            r.line
        );
    }
    out
}

/// Texts from the log, made safe to show: what the log holds came from plans, the server and
/// the operator's files, to be shown and never acted on by the terminal.
fn shown<const N: usize>(texts: [&str; N]) -> [String; N] {
    texts.map(|t| text::printable(t).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Anchor;

    #[test]
    fn a_failed_row_reads_like_a_plan_problem_with_outside_text_escaped() {
        let row = FailedRow {
            line: 4,
            account: "TECH\\al\u{1b}[2Jice".into(),
            action: "assign-role".into(),
            target: "Restore \"Operator\"".into(),
            outcome: "failed".into(),
            reason: Some("HTTP 403: no\u{202e}".into()),
        };
        assert_eq!(
            failure_line(&LineSource::File("p\u{7}.csv".into()), &row),
            "p\\u{7}.csv:4: TECH\\al\\u{1b}[2Jice assign-role \"Restore \\\"Operator\\\"\": \
             HTTP 403: no\\u{202e}"
        );
        let in_doubt = FailedRow {
            action: "delete-account".into(),
            target: String::new(),
            outcome: "in_doubt".into(),
            reason: None,
            ..row
        };
        assert_eq!(
            failure_line(&LineSource::Run(7), &in_doubt),
            "run 7 line 4: TECH\\al\\u{1b}[2Jice delete-account: in doubt"
        );
        let json = failure_json(&LineSource::Run(7), &in_doubt);
        assert_eq!(
            (&json["run"], &json["reason"]),
            (&7.into(), &serde_json::Value::Null)
        );
        assert!(json.get("file").is_none());
    }

    fn verification(problems: Vec<crate::audit::Problem>, anchor: Option<Anchor>) -> Verification {
        Verification {
            run_id: None,
            records: 714,
            head: "ab".repeat(32),
            head_seq: 714,
            problem_count: problems.len() as u64,
            problems,
            anchor,
        }
    }

    #[test]
    fn an_anchor_in_the_chain_carried_over_is_said_to_be_from_before_the_migration() {
        let anchor = |carried_over| Anchor {
            hash: "e2".repeat(32),
            found_at: Some(529),
            carried_over,
        };
        assert_eq!(
            verification_text(&verification(Vec::new(), Some(anchor(true)))),
            format!(
                "anchor {}: found at schema 01 evidence #529 (before the log was migrated)\n\
                 714/714 records valid\n",
                "e2".repeat(32)
            )
        );
        assert!(
            verification_text(&verification(Vec::new(), Some(anchor(false)))).starts_with(
                &format!("anchor {}: found at record #529\n", "e2".repeat(32))
            )
        );
    }

    #[test]
    fn checkpoints_unsigned_or_signed_by_another_key_are_named_and_explained_once() {
        let problem = |run: i64, damage| crate::audit::Problem {
            record: format!("run {run} checkpoint (record #{})", run * 10),
            damage,
            seq: Some(run * 10),
        };
        let text = verification_text(&verification(
            vec![
                problem(1, Damage::Unsigned),
                problem(2, Damage::OtherKey),
                problem(3, Damage::Unsigned),
            ],
            None,
        ));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..3],
            [
                "run 1 checkpoint (record #10): unsigned",
                "run 2 checkpoint (record #20): signed by another key",
                "run 3 checkpoint (record #30): unsigned",
            ]
        );
        assert!(lines[3].starts_with("unsigned: "), "{text}");
        assert!(lines[4].starts_with("signed by another key: "), "{text}");
        assert_eq!(lines[5], "verification failed: 3 problems in 714 records");
        assert_eq!(lines.len(), 6);
    }
}
