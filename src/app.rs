//! The commands: each takes its validated settings, does its job and says how the process
//! should exit. All exit-status decisions are made here, in [`run`].

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use url::Url;

use crate::audit::{
    AuditError, AuditReader, AuditWriter, ExportError, ExportFilter, ExportFormat, FailedRow,
    Failures, LineSource, PrivateOutput, RowFilter, RunInfo, RunSelector, TimeWindow, Verification,
};
use crate::console::{self, err, errln, out, outln};
use crate::em::{ClientConfig, EmError, Secret, TlsOptions, Wire};
use crate::emulator::{self, EmulatorConfig};
use crate::exit::Exit;
use crate::plan::{self, Plan, PlanFile};
use crate::runner::history::{self, HistoryError};
use crate::runner::snapshot::{self, Selection, SnapshotFormat, SnapshotReport};
use crate::runner::{
    self, Pace, Reporter, RunError, RunRecord, RunReport, RunSettings, RunSpec, ScopeRebuild,
};
use crate::text;

/// One command with its validated settings.
#[derive(Debug)]
pub enum Command {
    /// `embatch demo`
    Demo(DemoSettings),
    /// `embatch check`
    Check(CheckSettings),
    /// `embatch apply`
    Apply(ApplySettings),
    /// `embatch runs`
    Runs {
        /// The audit log.
        db: PathBuf,
    },
    /// `embatch show`
    Show(ShowSettings),
    /// `embatch replay`
    Replay {
        /// The run and how to run.
        common: FollowUpSettings,
        /// Only failed, skipped or in-doubt rows.
        failed_only: bool,
    },
    /// `embatch undo`
    Undo {
        /// The run and how to run.
        common: FollowUpSettings,
        /// Print the inverse plan; send nothing.
        dry_run: bool,
        /// Write the inverse plan here; send nothing.
        emit_plan: Option<PathBuf>,
        /// Undo rows whose account changed since.
        force: bool,
        /// Undo what can be undone when some rows cannot.
        allow_partial: bool,
    },
    /// `embatch resume`
    Resume(FollowUpSettings),
    /// `embatch rebuild-scopes`
    RebuildScopes(ApplyLike),
    /// `embatch emulator`
    Emulator(EmulatorSettings),
    /// `embatch report`
    Report(ReportSettings),
    /// `embatch export`
    Export(ExportSettings),
    /// `embatch snapshot`
    Snapshot(SnapshotSettings),
    /// `embatch verify`
    Verify(VerifySettings),
    /// `embatch completions` and `embatch man`: a text made from the command-line definitions
    /// (a completion script, the man page), printed on stdout as it is.
    Print(String),
}

/// `embatch verify`.
#[derive(Debug)]
pub struct VerifySettings {
    /// Only this run's records.
    pub run: Option<RunRef>,
    /// Print the head hash once the log verifies.
    pub anchor: bool,
    /// A head hash the log must still hold (lowercase hex).
    pub expect: Option<String>,
    /// The audit log.
    pub db: PathBuf,
    /// Output format.
    pub output: OutputFormat,
}

/// `embatch export`.
#[derive(Debug)]
pub struct ExportSettings {
    /// Only this run's rows.
    pub run: Option<RunRef>,
    /// Only rows whose time falls in this window.
    pub window: TimeWindow,
    /// Output format.
    pub format: ExportFormat,
    /// Write here (mode 0600) instead of stdout.
    pub out: Option<PathBuf>,
    /// The audit log.
    pub db: PathBuf,
}

/// Which accounts `embatch snapshot` reads.
#[derive(Debug)]
pub enum SnapshotAccounts {
    /// Those a plan names.
    Plan(PathBuf),
    /// Every account EM lists.
    All,
}

/// `embatch snapshot`.
#[derive(Debug)]
pub struct SnapshotSettings {
    /// Which accounts.
    pub accounts: SnapshotAccounts,
    /// Output format.
    pub format: SnapshotFormat,
    /// Write here (mode 0600) instead of stdout.
    pub out: Option<PathBuf>,
    /// The server.
    pub connect: ConnectSettings,
    /// Pace and retries of the reads.
    pub pace: Pace,
    /// The audit log the snapshot run is recorded in.
    pub db: PathBuf,
}

/// `embatch report`.
#[derive(Debug)]
pub struct ReportSettings {
    /// The run.
    pub run: RunRef,
    /// The HTML file; `report-<run>.html` when absent.
    pub out: Option<PathBuf>,
    /// The audit log.
    pub db: PathBuf,
}

/// A command that talks to EM and records a run, without a plan.
#[derive(Debug)]
pub struct ApplyLike {
    /// The server.
    pub connect: ConnectSettings,
    /// Pace and retries.
    pub pace: Pace,
    /// The audit log.
    pub db: PathBuf,
    /// Output format of the summary.
    pub output: OutputFormat,
    /// Do not ask for confirmation.
    pub yes: bool,
    /// Wait for another run on the server to end instead of refusing to start.
    pub wait: bool,
}

/// What `replay`, `undo` and `resume` share.
#[derive(Debug)]
pub struct FollowUpSettings {
    /// The recorded run they start from.
    pub run: RunRef,
    /// The server; URL, user and wire default to the run's.
    pub connect: ConnectSettings,
    /// Pace and retries.
    pub pace: Pace,
    /// The audit log.
    pub db: PathBuf,
    /// Stop scheduling after this many failed rows.
    pub max_failures: Option<u64>,
    /// Output format of the summary.
    pub output: OutputFormat,
    /// Do not ask for confirmation.
    pub yes: bool,
    /// Wait for another run on the server to end instead of refusing to start.
    pub wait: bool,
}

/// Text for people, or JSON for scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// Human-readable text.
    Text,
    /// JSON on stdout.
    Json,
}

/// Where the password comes from. There is deliberately no way to pass it as a flag: flags
/// end up in shell history and process listings.
#[derive(Clone, Debug)]
pub enum PasswordSource {
    /// The first line of a file.
    File(PathBuf),
    /// `EMBATCH_PASSWORD`, else a prompt when stdin is a terminal.
    EnvOrPrompt,
}

/// How to reach EM.
#[derive(Clone, Debug)]
pub struct ConnectSettings {
    /// The API base URL (for replay, undo and resume: the run's when absent).
    pub url: Option<Url>,
    /// The logon user (for replay, undo and resume: the run's operator when absent).
    pub user: Option<String>,
    /// Where the password comes from.
    pub password: PasswordSource,
    /// Certificate trust.
    pub tls: TlsOptions,
    /// XML or JSON (XML, or the run's, when absent).
    pub wire: Option<Wire>,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// `embatch check`.
#[derive(Debug)]
pub struct CheckSettings {
    /// The plan.
    pub plan: PathBuf,
    /// With `--online`: the server and the pace of the reads.
    pub online: Option<(ConnectSettings, Pace)>,
    /// Output format.
    pub output: OutputFormat,
}

/// `embatch apply`.
#[derive(Debug)]
pub struct ApplySettings {
    /// The plan.
    pub plan: PathBuf,
    /// The server.
    pub connect: ConnectSettings,
    /// Pace and retries.
    pub pace: Pace,
    /// The audit log.
    pub db: PathBuf,
    /// Stop scheduling after this many failed rows.
    pub max_failures: Option<u64>,
    /// Start a scope rebuild after a run that added scopes.
    pub rebuild_scopes: bool,
    /// Allow delete-account rows.
    pub allow_delete: bool,
    /// Refuse plans with more changing rows than this.
    pub max_changes: Option<u64>,
    /// Do not ask for confirmation.
    pub yes: bool,
    /// Wait for another run on the server to end instead of refusing to start.
    pub wait: bool,
    /// Output format of the summary.
    pub output: OutputFormat,
}

/// Which run a command is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunRef {
    /// A run id.
    Id(i64),
    /// The newest run.
    Last,
}

impl From<RunRef> for RunSelector {
    fn from(run: RunRef) -> RunSelector {
        match run {
            RunRef::Id(id) => RunSelector::Id(id),
            RunRef::Last => RunSelector::Last,
        }
    }
}

/// `embatch show`.
#[derive(Debug)]
pub struct ShowSettings {
    /// The run.
    pub run: RunRef,
    /// Only failures.
    pub failed_only: bool,
    /// The audit log.
    pub db: PathBuf,
    /// Output format.
    pub output: OutputFormat,
}

/// `embatch demo`.
#[derive(Debug)]
pub struct DemoSettings {
    /// The audit log the demo writes.
    pub db: PathBuf,
    /// Wire format.
    pub wire: Wire,
}

/// `embatch emulator`.
#[derive(Debug)]
pub struct EmulatorSettings {
    /// The emulator's configuration.
    pub config: EmulatorConfig,
    /// Where to write the TLS certificate.
    pub cert_out: Option<PathBuf>,
}

/// Failures that end a command, each mapped to an exit status in [`run`].
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad usage: nothing was sent.
    #[error("{0}")]
    Usage(String),
    /// The plan is invalid: nothing was sent. The report lists every problem.
    #[error("{0}")]
    Plan(#[from] plan::PlanErrors),
    /// The run could not start or keep its record (a plan refused while the run read it is
    /// [`AppError::Plan`], see the `From` below).
    #[error(transparent)]
    Run(RunError),
    /// The audit log could not be opened or read.
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
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

impl From<RunError> for AppError {
    fn from(e: RunError) -> AppError {
        match e {
            // Problems found while a streamed plan is read are the plan's, reported as such.
            RunError::Plan(errors) => AppError::Plan(errors),
            e => AppError::Run(e),
        }
    }
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
        Command::Export(s) => export(s),
        Command::Snapshot(s) => snapshot_accounts(s).await,
        Command::Report(s) => report(s),
        Command::Print(text) => out!("{text}").map(|()| Exit::Success).map_err(AppError::Io),
    };
    match result {
        Ok(exit) => exit,
        Err(e) => {
            errln!("embatch: {}", console::printable_lines(&error_text(&e)));
            match e {
                // `From<RunError>` makes a plan problem `AppError::Plan`; the second pattern
                // only keeps the match whole.
                AppError::Usage(_)
                | AppError::Plan(_)
                | AppError::History(_)
                | AppError::Run(RunError::Plan(_)) => Exit::Usage,
                AppError::Run(RunError::Connect { .. } | RunError::Resolve { .. }) => {
                    Exit::Connection
                }
                AppError::Run(
                    RunError::Audit(_)
                    | RunError::LogFailed { .. }
                    | RunError::Locked(_)
                    | RunError::Refused { .. },
                )
                | AppError::Audit(_) => Exit::Usage,
                AppError::Emulator(_) | AppError::Io(_) | AppError::Run(RunError::Internal(_)) => {
                    Exit::RowsFailed
                }
            }
        }
    }
}

fn error_text(e: &AppError) -> String {
    match e {
        AppError::Plan(errors) => format!(
            "the plan has {} problem{}; nothing was sent:\n{errors}",
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
fn advice(e: &AppError) -> Vec<String> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(em) = s.downcast_ref::<EmError>() {
            return em.advice();
        }
        source = s.source();
    }
    Vec::new()
}

fn load_plan(path: &Path) -> Result<Plan, AppError> {
    Ok(plan::load(path)?)
}

fn read_password(source: &PasswordSource) -> Result<Secret, AppError> {
    match source {
        PasswordSource::File(path) => read_password_file(path),
        PasswordSource::EnvOrPrompt => {
            if let Ok(p) = std::env::var("EMBATCH_PASSWORD")
                && !p.is_empty()
            {
                return Ok(Secret::new(p));
            }
            if std::io::stdin().is_terminal() {
                let p = rpassword::prompt_password("EM password: ")
                    .map_err(|e| AppError::Usage(format!("cannot read the password: {e}")))?;
                return Ok(Secret::new(p));
            }
            Err(AppError::Usage(
                "no password: set EMBATCH_PASSWORD or pass --password-file (stdin is not a terminal to prompt on)".into(),
            ))
        }
    }
}

/// The most bytes a password file may hold. A password is one line; a file larger than this is
/// not a password file, and one that never ends (`/dev/zero`) must not be read forever.
pub const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

/// The password on the first line of the file at `path`. The file may be a pipe
/// (`--password-file <(pass show em)`); a regular file that others may read or write gets a
/// warning, as ssh gives for a private key, since the password is then not only the
/// operator's.
fn read_password_file(path: &Path) -> Result<Secret, AppError> {
    use std::io::Read as _;
    let shown = || text::printable(&path.display().to_string()).into_owned();
    let cannot =
        |e: std::io::Error| AppError::Usage(format!("cannot read password file {}: {e}", shown()));
    let file = std::fs::File::open(path).map_err(cannot)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        // Asked of the file opened, so that what is warned about is what is read.
        let meta = file.metadata().map_err(cannot)?;
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_file() && mode & 0o077 != 0 {
            errln!(
                "embatch: warning: password file {} is open to others (mode {mode:04o}); \
                 restrict it with `chmod 600`",
                shown()
            );
        }
    }
    let mut bytes = Vec::new();
    file.take(MAX_PASSWORD_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_PASSWORD_FILE_BYTES {
        return Err(AppError::Usage(format!(
            "password file {} holds more than {MAX_PASSWORD_FILE_BYTES} bytes; it must hold the \
             password on its first line and little else",
            shown()
        )));
    }
    let content = String::from_utf8(bytes)
        .map_err(|_| AppError::Usage(format!("password file {} is not UTF-8 text", shown())))?;
    let line = content.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(AppError::Usage(format!(
            "password file {} is empty",
            shown()
        )));
    }
    Ok(Secret::new(line.to_string()))
}

/// The client configuration; the server, user and wire format come from `run` when the
/// command line leaves them out.
fn client_config(c: &ConnectSettings, run: Option<&RunInfo>) -> Result<ClientConfig, AppError> {
    let url = match (&c.url, run) {
        (Some(url), _) => url.clone(),
        (None, Some(run)) => Url::parse(&run.server_url).map_err(|e| {
            AppError::Usage(format!(
                "run {} recorded the server '{}', which is not a URL ({e}); pass --url",
                run.run_id, run.server_url
            ))
        })?,
        (None, None) => {
            return Err(AppError::Usage(
                "no server given: pass --url or set EMBATCH_URL".into(),
            ));
        }
    };
    if c.tls.ca_fingerprint.is_some() && url.scheme() != "https" {
        return Err(AppError::Usage(format!(
            "--ca-fingerprint pins the server's TLS certificate, but {} is plain http, which has \
             none; use the https:// URL",
            text::printable(url.as_str())
        )));
    }
    let user = match (&c.user, run) {
        (Some(user), _) => user.clone(),
        (None, Some(run)) => run.operator.clone(),
        (None, None) => {
            return Err(AppError::Usage(
                "no user given: pass --user or set EMBATCH_USER".into(),
            ));
        }
    };
    let wire = c.wire.unwrap_or_else(|| {
        if run.is_some_and(|r| r.wire == "json") {
            Wire::Json
        } else {
            Wire::Xml
        }
    });
    let password = read_password(&c.password)?;
    if credentials_in_clear(&url) {
        errln!(
            "embatch: warning: {} is plain http to {}, which is not this machine: the password \
             crosses the network in Basic credentials that anyone on the way can read; use https",
            text::printable(url.as_str()),
            text::printable(url.host_str().unwrap_or("?"))
        );
    }
    if c.tls.insecure {
        errln!(
            "embatch: warning: --insecure: the server's certificate is not checked; this run is recorded as insecure"
        );
    }
    Ok(ClientConfig {
        timeout: c.timeout,
        ..ClientConfig::new(url, user, password, wire, c.tls.clone())
    })
}

/// Whether logging on to `url` sends the password where others may read it: over plain http to
/// a host that is not this machine. Loopback is 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z) and
/// the name `localhost`; any other name may resolve anywhere.
fn credentials_in_clear(url: &Url) -> bool {
    if url.scheme() != "http" {
        return false;
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) => !ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => {
            !(ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
        }
        Some(url::Host::Domain(name)) => {
            let name = name.strip_suffix('.').unwrap_or(name);
            !name.eq_ignore_ascii_case("localhost")
        }
        None => true,
    }
}

async fn check(s: CheckSettings) -> Result<Exit, AppError> {
    let Some((connect, pace)) = s.online else {
        // The offline check needs only the summary, so the plan is streamed, not held.
        let plan = plan::check(&s.plan)?;
        match s.output {
            OutputFormat::Json => outln!(
                "{}",
                serde_json::json!({"file": plan.file, "rows": plan.rows, "sha256": plan.sha256, "valid": true})
            )?,
            OutputFormat::Text => {
                outln!("{}: {} rows, valid", text::printable(&plan.file), plan.rows)?
            }
        }
        return Ok(Exit::Success);
    };
    let plan = load_plan(&s.plan)?;
    let config = client_config(&connect, None)?;
    let preview = runner::preview(&plan, config, pace).await?;
    match s.output {
        OutputFormat::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&preview).expect("a preview always serializes")
        )?,
        OutputFormat::Text => out!("{}", preview.text(&plan.file))?,
    }
    // Apply would refuse such a plan as a whole, and send nothing: as a plan error does.
    Ok(if !preview.refused.is_empty() {
        Exit::Usage
    } else if preview.failures > 0 {
        Exit::RowsFailed
    } else {
        Exit::Success
    })
}

/// A cancellation token that the first Ctrl-C cancels. A second Ctrl-C exits at once: the
/// audit log already holds every request's intent, so `resume` can still reconcile.
fn ctrl_c_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            errln!(
                "\nembatch: interrupted: finishing the requests in flight (Ctrl-C again to quit at once)"
            );
            t.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                errln!("embatch: quitting now; `embatch resume` can finish the run");
                std::process::exit(Exit::Interrupted.code().into());
            }
        }
    });
    token
}

/// What a plan may change, counted by action, for the confirmation before apply.
fn blast_text(a: &plan::Actions) -> String {
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
fn guard_blast_radius(plan: &PlanFile, s: &ApplySettings) -> Result<(), AppError> {
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
fn confirm(summary: &str, question: &str, yes: bool) -> Result<(), AppError> {
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
fn jobs_text(jobs: &[runner::Job]) -> String {
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

/// The run's settings as recorded in `runs.options`: the pace and limits every run that talks
/// to EM has, the pinned certificate fingerprint when there is one (`--insecure` has columns
/// of its own), plus the command's own `extra` keys.
fn run_options(
    pace: &Pace,
    connect: &ConnectSettings,
    wire: Wire,
    max_failures: Option<u64>,
    extra: serde_json::Value,
) -> String {
    let mut options = serde_json::json!({
        "concurrency": pace.concurrency,
        "rate": pace.rate,
        "burst": pace.burst.get(),
        "max_attempts": pace.max_attempts,
        "max_retry_wait_secs": pace.max_retry_wait.as_secs_f64(),
        "max_failures": max_failures,
        "timeout_secs": connect.timeout.as_secs_f64(),
        "wire": wire.as_str(),
    });
    if let Some(pin) = connect.tls.ca_fingerprint {
        options["ca_fingerprint"] = pin.to_string().into();
    }
    if let (Some(options), serde_json::Value::Object(extra)) = (options.as_object_mut(), extra) {
        options.extend(extra);
    }
    options.to_string()
}

async fn apply(s: ApplySettings) -> Result<Exit, AppError> {
    // The plan is validated in one pass that keeps no rows, then read again row by row as the
    // run records it; a file changed in between is refused before anything is sent.
    let plan = plan::check(&s.plan)?;
    guard_blast_radius(&plan, &s)?;
    let config = client_config(&s.connect, None)?;
    let settings = RunSettings {
        options_json: run_options(
            &s.pace,
            &s.connect,
            config.wire,
            s.max_failures,
            serde_json::json!({}),
        ),
        client: config,
        pace: s.pace,
        max_failures: s.max_failures,
    };
    let reporter = if s.output == OutputFormat::Json {
        Reporter::Quiet
    } else {
        Reporter::Stderr
    };
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
    let how = RunHow {
        db: &s.db,
        reporter,
        output: s.output,
        wait: s.wait,
    };
    run_spec(&mut make, settings, how).await
}

/// Where and how a run goes: its log, its progress display and summary, and whether it waits
/// for the lock of its server.
struct RunHow<'a> {
    db: &'a Path,
    reporter: Reporter,
    output: OutputFormat,
    wait: bool,
}

/// Runs the spec `make` builds with a fresh audit writer and prints the summary. With `wait`, it
/// first waits until no other live run holds the lock of the server, and waits again if another
/// run took the lock first; the spec is built anew for each try, since what the run derives
/// from the log or the plan may have changed meanwhile.
async fn run_spec(
    make: &mut dyn FnMut() -> Result<RunSpec, AppError>,
    settings: RunSettings,
    how: RunHow<'_>,
) -> Result<Exit, AppError> {
    let cancel = ctrl_c_token();
    loop {
        if how.wait
            && !runner::wait_for_lock(how.db, settings.client.base_url.as_str(), &cancel).await?
        {
            errln!("embatch: interrupted while waiting; nothing was sent");
            return Ok(Exit::Interrupted);
        }
        let spec = make()?;
        let writer = AuditWriter::spawn(how.db)?;
        let result = runner::execute(
            spec,
            settings.clone(),
            writer.handle(),
            cancel.clone(),
            how.reporter,
        )
        .await;
        // A run that failed says why first: when the log failed under it, closing fails the
        // same way.
        let closed = writer.close().await;
        let report = match result {
            Err(RunError::Locked(_)) if how.wait => continue,
            other => other?,
        };
        closed?;
        print_report(&report, how.db, how.output)?;
        return Ok(exit_for(&report));
    }
}

fn exit_for(report: &RunReport) -> Exit {
    if report.stopped == Some(runner::StopReason::Interrupted) {
        Exit::Interrupted
    } else if report.unsuccessful() > 0 || report.scope_rebuild.as_ref().is_some_and(|r| !r.started)
    {
        Exit::RowsFailed
    } else if report.stopped.is_some() {
        Exit::Interrupted
    } else {
        Exit::Success
    }
}

/// How many failed rows a run's summary lists; `embatch show RUN --failed` lists them all.
const FAILURES_LISTED: usize = 20;

fn print_report(report: &RunReport, db: &Path, output: OutputFormat) -> Result<(), AppError> {
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
                None if report.summary.failed > 0 && failures.is_none() => writeln!(
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
fn read_failures(report: &RunReport, db: &Path) -> Option<Failures> {
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
fn failure_line(source: &LineSource, row: &FailedRow) -> String {
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
fn failure_json(source: &LineSource, row: &FailedRow) -> serde_json::Value {
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

fn runs(db: &Path) -> Result<Exit, AppError> {
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

/// The advice for a run that stopped before its end, if it did.
fn resume_hint(run: &RunInfo) -> Option<String> {
    let unfinished = run.pending + run.skipped + run.in_doubt;
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

fn open_reader(db: &Path) -> Result<AuditReader, AppError> {
    if !db.exists() {
        return Err(AppError::Usage(format!(
            "no audit log at {} (pass --db or set EMBATCH_DB)",
            db.display()
        )));
    }
    Ok(AuditReader::open(db)?)
}

fn show(s: ShowSettings) -> Result<Exit, AppError> {
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

async fn run_emulator(s: EmulatorSettings) -> Result<Exit, AppError> {
    let listen = s.config.listen.expect("the CLI always sets the address");
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| AppError::Emulator(format!("cannot listen on {listen}: {e}")))?;
    // With port 0 the system picks the port; the banner must show the real one.
    let listen = listener.local_addr()?;
    let mut config = s.config;
    if config.tls {
        let material = emulator::self_signed(&[listen.ip().to_string()])
            .map_err(|e| AppError::Emulator(e.to_string()))?;
        if let Some(path) = &s.cert_out {
            std::fs::write(path, &material.cert_pem)?;
        }
        config.tls_material = Some(material);
    }
    let scheme = if config.tls { "https" } else { "http" };
    let base = format!("{scheme}://{listen}/api");
    outln!("{}", emulator::banner(&base, &config))?;
    if let Some(path) = &s.cert_out {
        outln!(
            "certificate written to {} (use --ca-cert {})",
            path.display(),
            path.display()
        )?;
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    emulator::serve(listener, config, shutdown)
        .await
        .map_err(|e| AppError::Emulator(e.to_string()))?;
    Ok(Exit::Success)
}

/// The demo's plan and the emulator seed it matches, built in so `demo` runs anywhere.
const DEMO_PLAN: &str = include_str!("../samples/onboarding.csv");
const DEMO_SEED: &str = include_str!("../samples/emulator-seed.json");

async fn demo(s: DemoSettings) -> Result<Exit, AppError> {
    let seed =
        emulator::Seed::from_json(DEMO_SEED).map_err(|e| AppError::Emulator(e.to_string()))?;
    let config = EmulatorConfig {
        seed: Some(seed),
        ..EmulatorConfig::default()
    };
    let (user, password) = (config.admin_user.clone(), config.admin_password.clone());
    let emu = emulator::start(config)
        .await
        .map_err(|e| AppError::Emulator(format!("cannot start: {e}")))?;
    let url = Url::parse(&emu.base_url()).expect("the emulator's URL is valid");
    outln!("embatch demo: an Enterprise Manager emulator is running at {url}")?;
    outln!("plan: samples/onboarding.csv\n")?;

    let plan = plan::parse("samples/onboarding.csv", DEMO_PLAN.as_bytes())?;
    outln!("== embatch check samples/onboarding.csv --online")?;
    let config = ClientConfig::new(
        url.clone(),
        user.clone(),
        Secret::new(password),
        s.wire,
        TlsOptions::default(),
    );
    let pace = Pace {
        rate: 50.0,
        concurrency: 4,
        ..Pace::default()
    };
    let preview = runner::preview(&plan, config.clone(), pace.clone()).await?;
    out!("{}", preview.text(&plan.file))?;

    outln!("\n== embatch apply samples/onboarding.csv")?;
    let settings = RunSettings {
        client: config,
        pace,
        max_failures: None,
        options_json: serde_json::json!({"demo": true}).to_string(),
    };
    let mut spec = Some(RunSpec::apply(plan));
    // The demo's log and emulator are its own: it never waits for a lock, so builds once.
    let mut make = || {
        spec.take()
            .ok_or_else(|| AppError::Usage("the demo's run can start only once".into()))
    };
    let how = RunHow {
        db: &s.db,
        reporter: Reporter::Stderr,
        output: OutputFormat::Text,
        wait: false,
    };
    let exit = run_spec(&mut make, settings, how).await?;
    emu.shutdown().await;
    let db = s.db.display();
    outln!("\nThe audit log is {db}. Try next:")?;
    outln!("  cargo run --release -- runs --db {db}")?;
    outln!("  cargo run --release -- show last --db {db}")?;
    outln!(
        "  sqlite3 {db} 'select * from change_log'      (views: run_summary, change_log, request_log)"
    )?;
    outln!(
        "  cargo run --release -- emulator --accounts 100   (then apply your own plan against it)"
    )?;
    // The demo plan deliberately holds a row EM refuses, to show a failure being recorded; the
    // demo itself succeeded if the run went as expected.
    Ok(match exit {
        Exit::RowsFailed | Exit::Success => Exit::Success,
        other => other,
    })
}

impl From<HistoryError> for AppError {
    fn from(e: HistoryError) -> Self {
        match e {
            HistoryError::Audit(e) => AppError::Audit(e),
            HistoryError::Refused(text) => AppError::History(text),
        }
    }
}

/// The recorded run a follow-up command starts from, with a reader of its log.
fn recorded_run(s: &FollowUpSettings) -> Result<(AuditReader, RunInfo), AppError> {
    let reader = open_reader(&s.db)?;
    let run = reader.run(RunSelector::from(s.run))?;
    Ok((reader, run))
}

/// How a follow-up command derives its spec from the log again, when it waited for the lock and
/// must start from what the log holds then.
type Derive<'a> = &'a dyn Fn(&AuditReader, &RunInfo) -> Result<RunSpec, AppError>;

/// Runs `spec`, derived from `run`, with the follow-up command's settings, once the operator
/// confirmed what it may change (`verb` names the command in the question).
async fn run_follow_up(
    s: &FollowUpSettings,
    run: &RunInfo,
    spec: RunSpec,
    verb: &str,
    derive: Derive<'_>,
    extra: serde_json::Value,
) -> Result<Exit, AppError> {
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
    let settings = RunSettings {
        options_json: run_options(&s.pace, &s.connect, config.wire, s.max_failures, extra),
        client: config,
        pace: s.pace.clone(),
        max_failures: s.max_failures,
    };
    let reporter = if s.output == OutputFormat::Json {
        Reporter::Quiet
    } else {
        Reporter::Stderr
    };
    let mut first = Some(spec);
    let mut make = || match first.take() {
        Some(spec) => Ok(spec),
        None => derive(&open_reader(&s.db)?, run),
    };
    let how = RunHow {
        db: &s.db,
        reporter,
        output: s.output,
        wait: s.wait,
    };
    run_spec(&mut make, settings, how).await
}

async fn replay(s: FollowUpSettings, failed_only: bool) -> Result<Exit, AppError> {
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

async fn resume(s: FollowUpSettings) -> Result<Exit, AppError> {
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

async fn undo(
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
fn report_new_ids(db: &Path, undone: i64, output: OutputFormat) -> Result<(), AppError> {
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

async fn rebuild_scopes(s: ApplyLike) -> Result<Exit, AppError> {
    let config = client_config(&s.connect, None)?;
    confirm(
        &format!(
            "starts one scope rebuild (RebuildUnprocessed) on {}",
            config.base_url
        ),
        &format!("Start a scope rebuild on {}?", config.base_url),
        s.yes,
    )?;
    let mut make = || {
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
    let settings = RunSettings {
        // The same settings as any run's, so the log shows the pace this one ran at too.
        options_json: run_options(
            &s.pace,
            &s.connect,
            config.wire,
            None,
            serde_json::json!({}),
        ),
        client: config,
        pace: s.pace,
        max_failures: None,
    };
    let how = RunHow {
        db: &s.db,
        reporter: Reporter::Quiet,
        output: s.output,
        wait: s.wait,
    };
    run_spec(&mut make, settings, how).await
}

/// Writes the HTML report of one run.
fn report(s: ReportSettings) -> Result<Exit, AppError> {
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
fn private_output(path: Option<&Path>) -> Result<Option<PrivateOutput>, AppError> {
    path.map(|path| {
        PrivateOutput::create(path)
            .map_err(|e| AppError::Usage(format!("cannot write {}: {e}", path.display())))
    })
    .transpose()
}

/// Ends the output of `export` or `snapshot`: `-o FILE` is committed when `result` is good and
/// removed when it is not. On stdout, a reader that went away (`export ... | head`) had what it
/// wanted, so that is no failure: `Ok(None)`.
fn finish_output<T>(
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

fn export(s: ExportSettings) -> Result<Exit, AppError> {
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

async fn snapshot_accounts(s: SnapshotSettings) -> Result<Exit, AppError> {
    let plan = match &s.accounts {
        SnapshotAccounts::Plan(path) => Some(load_plan(path)?),
        SnapshotAccounts::All => None,
    };
    let config = client_config(&s.connect, None)?;
    let mut out = private_output(s.out.as_deref())?;
    let settings = RunSettings {
        options_json: run_options(
            &s.pace,
            &s.connect,
            config.wire,
            None,
            serde_json::json!({ "accounts": if plan.is_some() { "plan" } else { "all" } }),
        ),
        client: config,
        pace: s.pace,
        max_failures: None,
    };
    let selection = match &plan {
        Some(plan) => Selection::Plan(plan),
        None => Selection::All,
    };
    let result = async {
        let writer = AuditWriter::spawn(&s.db)?;
        // EM never shows a scope's object ref; the log knows those of the scopes it saw created.
        let known_refs = AuditReader::open(&s.db)?.known_scope_refs()?;
        let report = snapshot::snapshot(
            selection,
            settings,
            known_refs,
            writer.handle(),
            ctrl_c_token(),
        )
        .await;
        let closed = writer.close().await;
        let report = report?;
        closed?;
        Ok::<SnapshotReport, AppError>(report)
    }
    .await;
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
    Ok(if report.interrupted {
        Exit::Interrupted
    } else if !report.failures.is_empty() {
        Exit::RowsFailed
    } else {
        Exit::Success
    })
}

/// How many problems `verify` prints as text; JSON lists up to `audit::MAX_PROBLEMS`.
const VERIFY_LISTED: usize = 20;

fn verify(s: VerifySettings) -> Result<Exit, AppError> {
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
    Ok(if v.holds() {
        Exit::Success
    } else {
        Exit::Tampered
    })
}

/// The text `verify` prints: `N/N records valid`, or the problems, the first damaged record
/// first, and a closing count.
fn verification_text(v: &Verification) -> String {
    let mut text = String::new();
    let scope = v
        .run_id
        .map(|id| format!(" (run {id})"))
        .unwrap_or_default();
    if v.holds() {
        if let Some(anchor) = &v.anchor {
            let at = anchor.found_at.unwrap_or_default();
            text.push_str(&format!(
                "anchor {}: found at evidence #{at}\n",
                anchor.hash
            ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_off_this_machine_sends_credentials_in_clear() {
        let in_clear = |url: &str| credentials_in_clear(&Url::parse(url).unwrap());
        for url in [
            "http://127.0.0.1:9398/api",
            "http://127.8.9.10/api",
            "http://localhost:9398/api",
            "http://LOCALHOST/api",
            "http://localhost./api",
            "http://[::1]:9398/api",
            "http://[::ffff:127.0.0.1]/api",
            "https://em.example.com:9398/api",
            "https://10.0.0.5/api",
        ] {
            assert!(!in_clear(url), "{url}");
        }
        for url in [
            "http://em.example.com:9398/api",
            "http://10.0.0.5:9398/api",
            "http://128.0.0.1/api",
            "http://[fe80::1]/api",
            "http://localhost.example.com/api",
            "http://0.0.0.0/api",
        ] {
            assert!(in_clear(url), "{url}");
        }
    }

    #[test]
    fn a_pin_is_recorded_with_the_run_options() {
        let connect = ConnectSettings {
            url: None,
            user: None,
            password: PasswordSource::EnvOrPrompt,
            tls: TlsOptions::default(),
            wire: None,
            timeout: Duration::from_secs(30),
        };
        let options = |c: &ConnectSettings| -> serde_json::Value {
            serde_json::from_str(&run_options(
                &Pace::default(),
                c,
                Wire::Xml,
                None,
                serde_json::json!({"extra": 1}),
            ))
            .unwrap()
        };
        assert!(options(&connect).get("ca_fingerprint").is_none());
        let pin = crate::em::Fingerprint::parse(&"0a".repeat(32)).unwrap();
        let pinned = ConnectSettings {
            tls: TlsOptions {
                ca_fingerprint: Some(pin),
                ..TlsOptions::default()
            },
            ..connect
        };
        let value = options(&pinned);
        assert_eq!(value["ca_fingerprint"], "0A:".repeat(31) + "0A");
        assert_eq!(value["extra"], 1);
    }

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
}
