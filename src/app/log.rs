//! The commands on the audit log itself: those that only read it, `runs`, `show`, `report`,
//! `export` and `verify`, and `migrate`, which brings a log written by an older embatch up to
//! date.

use std::io::Write as _;
use std::path::Path;

use crate::audit::{
    AuditError, AuditReader, ExportFilter, RowFilter, RunSelector, migrate_log,
    public_key_from_file,
};
use crate::console::{self, out, outln};
use crate::exit::Exit;
use crate::settings::{ExportSettings, OutputFormat, ReportSettings, ShowSettings, VerifySettings};
use crate::text;

use super::render::{self, verification_text};
use super::{AppError, existing_log, finish_output, open_reader, private_output};

pub(super) fn runs(db: &Path) -> Result<Exit, AppError> {
    let reader = open_reader(db)?;
    let runs = reader.runs()?;
    if runs.is_empty() {
        outln!("no runs in {}", db.display())?;
        return Ok(Exit::Success);
    }
    let holders = reader.lock_holders(None)?;
    out!("{}", render::runs_text(&runs, &holders))?;
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
    out!("{}", render::show_text(&run, &rows))?;
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
    let public_key = s
        .public_key
        .as_deref()
        .map(public_key_from_file)
        .transpose()
        .map_err(AuditError::from)?;
    existing_log(&s.db)?;
    // A log of schema 01 is verified as it is: an auditor may hold it where it cannot be
    // migrated, and must not have to change evidence to check it.
    let reader = AuditReader::open_to_verify(&s.db)?;
    let run = s.run.map(RunSelector::from);
    let v = match &public_key {
        Some(key) => reader.verify_signed(run, s.expect.as_deref(), key)?,
        None => reader.verify(run, s.expect.as_deref())?,
    };
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

/// Brings the log up to date (`embatch migrate`), and says what that did.
pub(super) fn migrate(db: &Path) -> Result<Exit, AppError> {
    existing_log(db)?;
    let migrated = migrate_log(db)?;
    let shown = text::printable(&db.display().to_string()).into_owned();
    if migrated.from == migrated.to {
        outln!("{shown}: already up to date (schema {})", migrated.to)?;
        return Ok(Exit::Success);
    }
    match &migrated.carried_over {
        None if migrated.from == 0 => outln!(
            "{shown}: was an empty file; now an audit log of schema {} with no runs",
            migrated.to
        )?,
        Some(old) => outln!(
            "{shown}: migrated from schema {} to {}: {} records of the old chain carried over, \
             head {}",
            migrated.from,
            migrated.to,
            old.records,
            old.head
        )?,
        None => outln!(
            "{shown}: migrated from schema {} to {}: the old chain held no records",
            migrated.from,
            migrated.to
        )?,
    }
    // The old heads still verify (`verify --expect`); the chain now goes on from a new one.
    outln!("keep the new head hash with `embatch verify --anchor --db {shown}`")?;
    Ok(Exit::Success)
}
