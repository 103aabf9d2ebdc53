//! The commands that only read the audit log: `runs`, `show`, `report`, `export`, `verify`.

use std::io::Write as _;
use std::path::Path;

use crate::audit::{ExportFilter, RowFilter, RunSelector};
use crate::console::{self, outln};
use crate::exit::Exit;
use crate::settings::*;
use crate::text;

use super::*;

pub(super) fn runs(db: &Path) -> Result<Exit, AppError> {
    let reader = open_reader(db)?;
    let runs = reader.runs()?;
    if runs.is_empty() {
        outln!("no runs in {}", db.display())?;
        return Ok(Exit::Success);
    }
    outln!(
        "{:>5}  {:<8} {:<12} {:<24} {:>6} {:>7} {:>6} {:>6}  plan",
        "run",
        "kind",
        "status",
        "started (UTC)",
        "rows",
        "applied",
        "no-op",
        "failed"
    )?;
    let mut resumable = Vec::new();
    for r in runs {
        if resume_hint(&r).is_some() {
            resumable.push(r.run_id);
        }
        // What the log holds came from plans, the server and the operator's files: shown,
        // never acted on by the terminal.
        outln!(
            "{:>5}  {:<8} {:<12} {:<24} {:>6} {:>7} {:>6} {:>6}  {}",
            r.run_id,
            text::printable(&r.kind),
            text::printable(&r.status),
            text::printable(&r.started_at),
            r.rows,
            r.applied,
            r.noop,
            r.failed,
            text::printable(r.plan_file.as_deref().unwrap_or("-"))
        )?;
    }
    // The run lock, as Liquibase shows its lock table: who changes which server right now.
    for holder in reader.lock_holders(None)? {
        outln!(
            "\nlock: {} is changing {}; other runs against that server wait for it (--wait) or \
             are refused",
            text::printable(&holder.to_string()),
            text::printable(&holder.server_url)
        )?;
    }
    if let Some(newest) = resumable.first() {
        outln!(
            "\nnot finished: run{} {}; finish with `embatch resume {newest}`",
            if resumable.len() == 1 { "" } else { "s" },
            resumable
                .iter()
                .map(|id| id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    Ok(Exit::Success)
}

pub(super) fn show(s: ShowSettings) -> Result<Exit, AppError> {
    let reader = open_reader(&s.db)?;
    let selector = RunSelector::from(s.run);
    let run = reader.run(selector)?;
    let rows = reader.rows(
        run.run_id,
        RowFilter {
            failed_only: s.failed_only,
        },
    )?;
    if s.output == OutputFormat::Json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"run": run, "rows": rows}))
                .expect("run info always serializes")
        )?;
        return Ok(Exit::Success);
    }
    // What the log holds came from plans, the server and the operator's files: shown, never
    // acted on by the terminal.
    let shown = |t: &str| text::printable(t).into_owned();
    outln!(
        "run {} ({}, {}) started {} by {} on {}",
        run.run_id,
        shown(&run.kind),
        shown(&run.status),
        shown(&run.started_at),
        shown(&run.operator),
        shown(&run.server_url)
    )?;
    if let Some(file) = &run.plan_file {
        outln!(
            "plan {} sha256 {}",
            shown(file),
            shown(run.plan_sha256.as_deref().unwrap_or("-"))
        )?;
    }
    outln!(
        "rows {}: applied {}, no-op {}, failed {}, skipped {}, in doubt {}, pending {}; {} requests",
        run.rows,
        run.applied,
        run.noop,
        run.failed,
        run.skipped,
        run.in_doubt,
        run.pending,
        run.requests
    )?;
    if run.conflict > 0 {
        outln!(
            "{} rows left alone because the account changed since (conflict)",
            run.conflict
        )?;
    }
    if let Some(hint) = resume_hint(&run) {
        outln!("{}", shown(&hint))?;
    }
    for r in rows {
        outln!(
            "{:>6}  {:<9} {} {} {}{}",
            r.line,
            shown(&r.outcome),
            shown(&r.account),
            shown(&r.action),
            shown(&r.target),
            r.error
                .map(|e| format!("  ({})", shown(&e)))
                .unwrap_or_default()
        )?;
    }
    Ok(Exit::Success)
}

/// Writes the HTML report of one run.
pub(super) fn report(s: ReportSettings) -> Result<Exit, AppError> {
    let reader = open_reader(&s.db)?;
    let selector = RunSelector::from(s.run);
    let written =
        crate::report::write_report(&reader, selector, s.out.as_deref()).map_err(|e| match e {
            crate::report::ReportError::Audit(e) => AppError::Audit(e),
            // Like a plan that cannot be emitted: the user named a place that cannot be written.
            other => AppError::Usage(other.to_string()),
        })?;
    outln!(
        "wrote the report of run {} ({} rows, {} requests) to {}",
        written.run_id,
        written.rows,
        written.requests,
        written.path.display()
    )?;
    Ok(Exit::Success)
}

pub(super) fn export(s: ExportSettings) -> Result<Exit, AppError> {
    let reader = open_reader(&s.db)?;
    let run_id = match s.run {
        None => None,
        Some(run) => Some(reader.run(run.into())?.run_id),
    };
    let filter = ExportFilter {
        run_id,
        window: s.window,
    };
    let mut out = private_output(s.out.as_deref())?;
    let result = match &mut out {
        Some(file) => reader.export(&filter, s.format, file.writer()),
        None => reader.export(
            &filter,
            s.format,
            std::io::BufWriter::new(std::io::stdout().lock()),
        ),
    };
    let rows = finish_output(out, result.map_err(AppError::from))?;
    // On stdout the rows themselves are the output; a file gets a line saying where they went.
    if let (Some(rows), Some(path)) = (rows, &s.out) {
        outln!("exported {rows} rows to {}", path.display())?;
    }
    Ok(Exit::Success)
}

pub(super) fn verify(s: VerifySettings) -> Result<Exit, AppError> {
    let reader = open_reader(&s.db)?;
    let run = s.run.map(RunSelector::from);
    let v = reader.verify(run, s.expect.as_deref())?;
    let mut out = console::stdout();
    match s.output {
        OutputFormat::Json => {
            let mut value = serde_json::to_value(&v).expect("a verification always serializes");
            value["valid"] = serde_json::Value::Bool(v.holds());
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&value).expect("a JSON value always serializes")
            )?;
        }
        OutputFormat::Text if v.holds() && s.anchor => writeln!(out, "{}", v.head)?,
        OutputFormat::Text => write!(out, "{}", console::printable_lines(&verification_text(&v)))?,
    }
    Ok(Exit::of_verification(&v))
}
