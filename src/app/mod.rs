//! The commands: each takes its validated settings (`crate::settings`), does its job and answers
//! how it ended; [`run`] prints any error, once, and `exit.rs` turns the outcome into the
//! process's status. One file per family of commands; what they print about runs is rendered
//! in `render.rs`.

mod apply;
mod connect;
mod desired;
mod emulator;
mod history;
mod keys;
mod log;
mod render;
mod snapshot;

use self::apply::{apply, check, rebuild_scopes};
use self::desired::plan_desired;
use self::emulator::{demo, run_emulator};
use self::history::{replay, resume, undo};
use self::keys::keygen;
use self::log::{export, migrate, report, runs, show, verify};
use self::snapshot::snapshot_accounts;

use std::path::Path;

use crate::audit::{AuditError, AuditReader, CheckpointKey, ExportError, PrivateOutput};
use crate::console::{self, errln, out};
use crate::em::EmError;
use crate::exit::Exit;
use crate::plan::{self, Plan};
use crate::runner::history::HistoryError;
use crate::runner::{self, Door, Reporter, RunError, RunReport, RunSpec};
use crate::settings::*;
use crate::text;

/// Failures that end a command, each mapped to an exit status by `Exit::of_error`.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad usage: nothing was sent.
    #[error("{0}")]
    Usage(String),
    /// The plan is invalid: nothing was sent. The report lists every problem.
    #[error("{0}")]
    Plan(#[from] plan::PlanErrors),
    /// The desired-access sheet is invalid, or asks what no plan can do: nothing was written.
    #[error("{0}")]
    Desired(plan::PlanErrors),
    /// The run could not start or keep its record (a plan refused while the run read it is
    /// [`AppError::Plan`], see the `From` below).
    #[error(transparent)]
    Run(RunError),
    /// The audit log could not be opened or read, or a key of its signatures made or read.
    #[error("{}", audit_text(.0))]
    Audit(#[from] AuditError),
    /// The plan is not the one approved: its SHA-256 is not the one `--expect-sha256` names.
    /// Found before anything is sent or recorded.
    #[error(
        "{file}: the plan's SHA-256 is {actual}, not {expected} as --expect-sha256 requires: \
         this file is not the plan that was approved; nothing was sent"
    )]
    Unapproved {
        /// The plan's file name.
        file: String,
        /// The hash `--expect-sha256` names (lowercase hex).
        expected: String,
        /// The hash of the file's bytes (lowercase hex).
        actual: String,
    },
    /// The run cannot be replayed, undone or resumed: nothing was sent.
    #[error("{0}")]
    History(String),
    /// The emulator failed.
    #[error("emulator: {0}")]
    Emulator(String),
    /// Writing output failed.
    #[error("write output: {0}")]
    Io(#[from] std::io::Error),
}

/// What an [`AppError::Audit`] says: about the log, or about a key file, which names itself.
fn audit_text(e: &AuditError) -> String {
    match e {
        AuditError::Key(e) => e.to_string(),
        e => format!("audit log: {e}"),
    }
}

impl From<RunError> for AppError {
    fn from(e: RunError) -> AppError {
        match e {
            // Problems found while a streamed plan is read are the plan's, reported as such.
            RunError::Plan(errors) => AppError::Plan(errors),
            e => AppError::Run(e),
        }
    }
}

/// Runs the command that `command` turned into, on an async runtime of its own, and answers how
/// the process ends: the binary's whole job after parsing the flags. A command line that could
/// not be turned into a command is reported here, once.
pub fn run_blocking(command: Result<Command, crate::cli::UsageError>) -> Exit {
    let command = match command {
        Ok(command) => command,
        Err(e) => {
            errln!("embatch: {}", text::printable(&e.to_string()));
            return Exit::of_setup();
        }
    };
    let layout = match command {
        Command::Emulator(_) => Layout::Server,
        _ => Layout::Client,
    };
    match runtime(layout) {
        Ok(runtime) => runtime.block_on(run(command)),
        Err(e) => {
            errln!("embatch: cannot start the async runtime: {e}");
            Exit::of_setup()
        }
    }
}

/// What a runtime is for: the two need different layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The commands that talk to EM (and those that only read files): one thread runs every
    /// task, and the audit log's writer has a thread of its own. A request's work (its intent
    /// awaited, sent, its answer read and decided) then stays on one thread instead of being
    /// stolen and woken across two, which cost a tenth more CPU per request
    /// (BENCHMARKS.md); EM, not embatch, sets a real run's pace, and one thread keeps up with
    /// many times that.
    Client,
    /// The emulator, a server answering many clients at once: a thread per core.
    Server,
}

/// The async runtime of `layout`.
pub fn runtime(layout: Layout) -> std::io::Result<tokio::runtime::Runtime> {
    match layout {
        Layout::Client => tokio::runtime::Builder::new_current_thread(),
        Layout::Server => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()
}

/// Runs a command and decides the exit status. Errors are printed here, once.
pub async fn run(command: Command) -> Exit {
    let result = match command {
        Command::Demo(s) => demo(s).await,
        Command::Check(s) => check(s).await,
        Command::Apply(s) => apply(s).await,
        Command::Runs { db } => runs(&db),
        Command::Show(s) => show(s),
        Command::Replay {
            common,
            failed_only,
        } => replay(common, failed_only).await,
        Command::Undo {
            common,
            dry_run,
            emit_plan,
            force,
            allow_partial,
        } => undo(common, dry_run, emit_plan, force, allow_partial).await,
        Command::Resume(s) => resume(s).await,
        Command::RebuildScopes(s) => rebuild_scopes(s).await,
        Command::Emulator(s) => run_emulator(s).await,
        Command::Verify(s) => verify(s),
        Command::Migrate { db } => migrate(&db),
        Command::Keygen { file } => keygen(&file),
        Command::Export(s) => export(s),
        Command::Snapshot(s) => snapshot_accounts(s).await,
        Command::Plan(s) => plan_desired(s).await,
        Command::Report(s) => report(s),
        Command::Print(text) => out!("{text}").map(|()| Exit::Success).map_err(AppError::Io),
    };
    match result {
        Ok(exit) => exit,
        Err(e) => {
            errln!("embatch: {}", console::printable_lines(&error_text(&e)));
            Exit::of_error(&e)
        }
    }
}

pub(super) fn error_text(e: &AppError) -> String {
    match e {
        AppError::Plan(errors) => format!(
            "the plan has {} problem{}; nothing was sent:\n{errors}",
            errors.0.len(),
            if errors.0.len() == 1 { "" } else { "s" }
        ),
        AppError::Desired(errors) => format!(
            "the desired sheet has {} problem{}; no plan was written:\n{errors}",
            errors.0.len(),
            if errors.0.len() == 1 { "" } else { "s" }
        ),
        // Several lines by design (the rows a run cannot undo, a recorded plan's problems, the
        // rows refused before a run's first write): each is escaped on its own, so that the
        // list keeps its shape.
        AppError::Run(refused @ RunError::Refused { .. }) => refused
            .to_string()
            .lines()
            .map(|line| text::printable(line).into_owned())
            .collect::<Vec<_>>()
            .join("\n"),
        AppError::History(text) => text
            .lines()
            .map(|line| text::printable(line).into_owned())
            .collect::<Vec<_>>()
            .join("\n"),
        other => {
            // Show the whole cause chain on one line: "connect to URL: logon refused: ...".
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                let s_text = s.to_string();
                if !text.contains(&s_text) {
                    text.push_str(": ");
                    text.push_str(&s_text);
                }
                source = s.source();
            }
            // The chain may quote the server (an EM error's message), whose escape sequences
            // and line breaks must not reach the terminal as they are.
            let mut text = text::printable(&text).into_owned();
            // What to do about it, a line each (a refused certificate: what it is and how to
            // trust it), escaped line by line since parts came from the server.
            for line in advice(other) {
                text.push_str("\n  ");
                text.push_str(&text::printable(&line));
            }
            text
        }
    }
}

/// The advice of the client error behind `e`, if one is.
pub(super) fn advice(e: &AppError) -> Vec<String> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(em) = s.downcast_ref::<EmError>() {
            return em.advice();
        }
        source = s.source();
    }
    Vec::new()
}

pub(super) fn load_plan(path: &Path) -> Result<Plan, AppError> {
    Ok(plan::load_sheet(path, None)?)
}

pub(super) fn open_reader(db: &Path) -> Result<AuditReader, AppError> {
    existing_log(db)?;
    Ok(AuditReader::open(db)?)
}

/// Refuses, as a usage error, a log that is not there: a command that does not write must not
/// make one, and the usual cause is a `--db` or `EMBATCH_DB` left out.
pub(super) fn existing_log(db: &Path) -> Result<(), AppError> {
    if db.exists() {
        return Ok(());
    }
    Err(AppError::Usage(format!(
        "no audit log at {} (pass --db or set EMBATCH_DB)",
        db.display()
    )))
}

/// The signing key `--signing-key` names, read before anything is sent: a key that cannot be
/// used refuses the command, rather than leaving a run unsigned.
pub(super) fn signing_key(path: Option<&Path>) -> Result<Option<CheckpointKey>, AppError> {
    Ok(path
        .map(CheckpointKey::load)
        .transpose()
        .map_err(AuditError::from)?)
}

impl From<HistoryError> for AppError {
    fn from(e: HistoryError) -> Self {
        match e {
            HistoryError::Audit(e) => AppError::Audit(e),
            HistoryError::Refused(text) => AppError::History(text),
        }
    }
}

impl From<ExportError> for AppError {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::Audit(e) => AppError::Audit(e),
            ExportError::Write(e) => AppError::Io(e),
        }
    }
}

/// Opens `-o FILE` before anything else is done, so a path that cannot be written is a usage
/// error that costs nothing.
pub(super) fn private_output(path: Option<&Path>) -> Result<Option<PrivateOutput>, AppError> {
    path.map(|path| {
        PrivateOutput::create(path)
            .map_err(|e| AppError::Usage(format!("cannot write {}: {e}", path.display())))
    })
    .transpose()
}

/// Ends the output of `export` or `snapshot`: `-o FILE` is committed when `result` is good and
/// removed when it is not. On stdout, a reader that went away (`export ... | head`) had what it
/// wanted, so that is no failure: `Ok(None)`.
pub(super) fn finish_output<T>(
    out: Option<PrivateOutput>,
    result: Result<T, AppError>,
) -> Result<Option<T>, AppError> {
    match (result, out) {
        (Ok(value), Some(file)) => {
            file.commit()?;
            Ok(Some(value))
        }
        (Ok(value), None) => Ok(Some(value)),
        (Err(AppError::Io(e)), None) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(None),
        (Err(e), out) => {
            if let Some(file) = out {
                file.discard();
            }
            Err(e)
        }
    }
}

/// The progress display of a run whose summary goes out as `output`: a JSON summary on stdout
/// is meant for scripts, so the display stays off.
pub(super) fn reporter_for(output: OutputFormat) -> Reporter {
    match output {
        OutputFormat::Json => Reporter::Quiet,
        OutputFormat::Text => Reporter::Stderr,
    }
}

/// The front door of a run recorded in `db`, its checkpoints signed with `key` when given, its
/// progress shown as `output` asks, waiting for the server's lock with `wait`.
pub(super) fn front_door<'a>(
    db: &'a Path,
    key: Option<&'a crate::audit::CheckpointKey>,
    output: OutputFormat,
    wait: bool,
) -> Door<'a> {
    Door {
        db,
        signing_key: key,
        reporter: reporter_for(output),
        wait,
    }
}

/// Runs the spec `make` builds through the runner's front door, then prints how it ended and
/// answers its status.
pub(super) async fn run_through(
    door: Door<'_>,
    make: &mut dyn FnMut() -> Result<RunSpec, AppError>,
    settings: runner::RunSettings,
    output: OutputFormat,
) -> Result<Exit, AppError> {
    let report = door.run(make, settings).await?;
    ended(report, door.db, output)
}

/// Prints how a run that went through its front door ended, and answers its status; `None` is
/// a run interrupted while it waited for the lock of its server.
pub(super) fn ended(
    report: Option<RunReport>,
    db: &Path,
    output: OutputFormat,
) -> Result<Exit, AppError> {
    let Some(report) = report else {
        errln!("embatch: interrupted while waiting; nothing was sent");
        return Ok(Exit::Interrupted);
    };
    render::print_report(&report, db, output)?;
    Ok(Exit::of_run(&report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_summary_keeps_the_progress_display_off() {
        assert_eq!(reporter_for(OutputFormat::Json), Reporter::Quiet);
        assert_eq!(reporter_for(OutputFormat::Text), Reporter::Stderr);
    }

    #[test]
    fn a_run_interrupted_while_it_waited_exits_as_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let exit = ended(None, &dir.path().join("audit.db"), OutputFormat::Text).unwrap();
        assert_eq!(exit, Exit::Interrupted);
    }

    #[test]
    fn a_command_line_that_is_no_command_exits_2_without_a_runtime() {
        let refused = Err(crate::cli::UsageError("no server given".into()));
        assert_eq!(run_blocking(refused), Exit::Usage);
    }

    #[test]
    fn a_list_in_an_error_keeps_its_lines_and_each_is_escaped() {
        let e = AppError::History("run 3 cannot be undone:\n  line 2: \u{1b}[2Jx".into());
        assert_eq!(
            error_text(&e),
            "run 3 cannot be undone:\n  line 2: \\u{1b}[2Jx"
        );
        // Anything else is one line: a line break from the server cannot start a new one.
        let e = AppError::Usage("bad\nthing".into());
        assert!(!error_text(&e).contains('\n'), "{}", error_text(&e));
    }

    #[tokio::test]
    async fn a_read_only_command_on_a_log_that_does_not_exist_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let exit = run(Command::Runs {
            db: dir.path().join("missing.db"),
        })
        .await;
        assert_eq!(exit, Exit::Usage);
        assert!(
            !dir.path().join("missing.db").exists(),
            "nothing was created"
        );
    }
}
