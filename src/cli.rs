//! The command line: clap definitions and their conversion into validated settings.
//!
//! Nothing outside this module sees clap. Each subcommand's raw flags become one settings value
//! (`settings::Command`) here, once; the rest of the crate receives plain, checked values.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory as _, Parser, Subcommand, ValueEnum};

use crate::audit::{ExportFormat, TimeWindow};
use crate::em::{Fingerprint, TlsOptions, Wire};
use crate::emulator::{EmulatorConfig, Faults, Seed};
use crate::runner::Pace;
use crate::runner::snapshot::SnapshotFormat;
use crate::settings::{
    ApplyLike, ApplySettings, CheckSettings, Command, ConnectSettings, DemoSettings,
    EmulatorSettings, ExportSettings, FollowUpSettings, OutputFormat, PasswordSource,
    ReportSettings, RunRef, ShowSettings, SnapshotAccounts, SnapshotSettings, VerifySettings,
};

/// Applies spreadsheet change plans to Veeam Backup Enterprise Manager, safely and on record.
///
/// A plan is a CSV file with the columns account, action and target (plus the optional
/// object_name, ticket and comment). `check` validates it, `apply` runs it at a pace EM can
/// bear, and every request is kept in a SQLite audit log (`runs`, `show`).
///
/// Exit statuses: 0 all rows applied or already in place; 1 some rows failed; 2 usage or plan
/// error (nothing sent); 3 connection, TLS or logon failure before any change; 4 interrupted;
/// 5 `verify` found the audit log changed.
#[derive(Debug, Parser)]
#[command(name = "embatch", version, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr: -v info, -vv debug, -vvv trace. EMBATCH_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: CliCommand,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Try embatch end to end on a built-in emulator: check, then apply, a sample onboarding plan.
    Demo(DemoArgs),
    /// Validate a plan offline; with --online, preview what apply would do on the server.
    Check(CheckArgs),
    /// Apply a plan: every row once, in plan order per account, under one rate limit.
    Apply(ApplyArgs),
    /// List the runs in the audit log, newest first.
    Runs(DbArgs),
    /// Show one run's rows and their outcomes.
    Show(ShowArgs),
    /// Run a recorded run's rows again as a new run (no CSV needed); rows already in place
    /// become no-ops.
    Replay(ReplayArgs),
    /// Take back a completed run: apply the inverse of every row it changed, newest first,
    /// leaving alone any account changed since.
    Undo(UndoArgs),
    /// Finish a run that was interrupted or crashed, under the same run id. Rows whose write
    /// may have been sent are checked against the server, never re-sent blindly.
    Resume(ResumeArgs),
    /// Start one scope rebuild on EM (RebuildUnprocessed), recorded as a run in the audit log.
    RebuildScopes(RebuildArgs),
    /// Run a local emulator of the Enterprise Manager REST API, for trials and tests.
    Emulator(EmulatorArgs),
    /// Write one run as a self-contained HTML report (mode 0600): its details, outcome counts,
    /// a timeline of requests and latency, and its rows, filterable by outcome.
    Report(ReportArgs),
    /// Export the change log for auditors: every plan row with its run's operator, server,
    /// plan SHA-256 and tool version, as CSV, JSON Lines or a JSON array.
    Export(ExportArgs),
    /// Read the current roles, scopes and restore-all-VMs flag of accounts, for an access
    /// review; read-only, and recorded in the audit log as a `snapshot` run.
    Snapshot(SnapshotArgs),
    /// Check offline that the audit log is as embatch wrote it: recompute its hash chain and
    /// compare every run, row and request with it. Where it does not hold, name the first record
    /// that was modified, deleted or inserted, and exit with status 5.
    Verify(VerifyArgs),
    /// Print the completion script of a shell on stdout, e.g.
    /// `embatch completions bash > ~/.local/share/bash-completion/completions/embatch`.
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout, e.g.
    /// `embatch man > ~/.local/share/man/man1/embatch.1`.
    Man,
}

/// `embatch completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell the script is for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `embatch verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Verify only the records of this run (a run id, or `last`); the chain is still checked
    /// through them.
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,

    /// Print the head hash of the chain (after verifying it), to keep outside the log, e.g. in
    /// the change ticket; `--expect` checks it later.
    #[arg(long)]
    pub anchor: bool,

    /// Also check that the log still holds this head hash, printed earlier by `--anchor`.
    #[arg(long, value_name = "HASH")]
    pub expect: Option<String>,

    #[command(flatten)]
    pub db: DbArgs,

    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputArg::Text)]
    pub output: OutputArg,
}

/// `embatch export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Only this run: a run id, or `last`.
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,

    /// Only rows finished at or after this UTC date (2026-11-23) or RFC 3339 timestamp; a row
    /// that never finished counts at its run's start.
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,

    /// Only rows finished at or before this UTC date (the whole day) or RFC 3339 timestamp.
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,

    /// Output format. CSV cells that begin with = + - @, a tab or a CR get a leading ' so that
    /// spreadsheets do not run them as formulas.
    #[arg(long, value_enum)]
    pub format: ExportFormatArg,

    /// Write to this file (created with mode 0600) instead of stdout.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub db: DbArgs,
}

/// The formats of `export`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ExportFormatArg {
    /// CSV with a header row
    Csv,
    /// one JSON object per line
    Jsonl,
    /// one JSON array
    Json,
}

/// `embatch snapshot`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("accounts").required(true).args(["plan", "all"])))]
pub struct SnapshotArgs {
    /// Read the accounts this CSV change plan names.
    #[arg(long, value_name = "PLAN")]
    pub plan: Option<PathBuf>,

    /// Read every account EM lists.
    #[arg(long)]
    pub all: bool,

    /// Output format: one line per account.
    #[arg(long, value_enum)]
    pub format: SnapshotFormatArg,

    /// Write to this file (created with mode 0600) instead of stdout.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub connect: ConnectArgs,

    #[command(flatten)]
    pub pace: PaceArgs,

    #[command(flatten)]
    pub db: DbArgs,
}

/// The formats of `snapshot`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SnapshotFormatArg {
    /// CSV with a header row
    Csv,
    /// one JSON object per line
    Jsonl,
}

/// `embatch report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A run id, or `last`.
    pub run: String,

    /// The HTML file to write [default: report-<run>.html]. Replaced if it exists.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub db: DbArgs,
}

/// `embatch rebuild-scopes`.
#[derive(Debug, Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,

    #[command(flatten)]
    pub pace: PaceArgs,

    #[command(flatten)]
    pub db: DbArgs,

    #[command(flatten)]
    pub changes: ChangeArgs,

    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t = OutputArg::Text)]
    pub output: OutputArg,
}

/// What `replay`, `undo` and `resume` share: the run they start from, and how to run.
#[derive(Debug, Args)]
pub struct FollowUpArgs {
    /// A run id, or `last`.
    pub run: String,

    #[command(flatten)]
    pub connect: ConnectArgs,

    #[command(flatten)]
    pub pace: PaceArgs,

    #[command(flatten)]
    pub db: DbArgs,

    #[command(flatten)]
    pub changes: ChangeArgs,

    /// Stop scheduling new rows after this many rows have failed.
    #[arg(long, value_name = "N")]
    pub max_failures: Option<u64>,

    /// Output format of the final summary.
    #[arg(long, value_enum, default_value_t = OutputArg::Text)]
    pub output: OutputArg,
}

/// What every command that may change EM takes: the confirmation, and the wait for the lock.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// Do not ask for confirmation on a terminal before changing anything. Without a terminal
    /// nothing is asked; what may change is printed on stderr either way.
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// If another live run is changing the same server from the same audit log, wait for it to
    /// end instead of refusing to start (exit 2). One run at a time changes a server.
    #[arg(long)]
    pub wait: bool,
}

/// `embatch replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Only the rows that failed, were skipped or are in doubt.
    #[arg(long)]
    pub failed_only: bool,

    #[command(flatten)]
    pub common: FollowUpArgs,
}

/// `embatch undo`.
#[derive(Debug, Args)]
pub struct UndoArgs {
    /// Print the inverse plan and what each row expects to find; send nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Write the inverse plan as a CSV plan that `apply` accepts, and send nothing.
    #[arg(long, value_name = "FILE")]
    pub emit_plan: Option<PathBuf>,

    /// Undo rows even where the account changed since the run (otherwise: `conflict`).
    #[arg(long)]
    pub force: bool,

    /// Undo what can be undone when some rows cannot (a removed scope whose object ref is
    /// unknown); without it such a run is not undone at all.
    #[arg(long)]
    pub allow_partial: bool,

    #[command(flatten)]
    pub common: FollowUpArgs,
}

/// `embatch resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub common: FollowUpArgs,
}

/// Where the audit log lives.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// The SQLite audit log. Commands that write create it (mode 0600) if missing; those that
    /// only read never create or change it.
    #[arg(long, env = "EMBATCH_DB", default_value = "embatch.db")]
    pub db: PathBuf,
}

/// How to reach and log on to Enterprise Manager.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Base URL of the EM REST API, e.g. https://em.example.com:9398/api
    #[arg(long, env = "EMBATCH_URL")]
    pub url: Option<String>,

    /// Logon user, e.g. TECH\admin. The password comes from EMBATCH_PASSWORD,
    /// --password-file, or a prompt on a terminal; there is deliberately no password flag.
    #[arg(long, env = "EMBATCH_USER")]
    pub user: Option<String>,

    /// Read the password from the first line of this file.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// Trust exactly the CA certificates in this PEM file instead of the system roots.
    #[arg(long, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,

    /// Accept any server certificate. Dangerous: recorded in the audit log and warned about.
    #[arg(long)]
    pub insecure: bool,

    /// Trust exactly the server certificate with this SHA-256 fingerprint: how to trust EM's
    /// self-signed certificate without --insecure.
    ///
    /// The fingerprint is of the certificate's DER form, as `openssl x509 -noout -fingerprint
    /// -sha256` prints it: 64 hex digits, with or without colons, in either case, with or
    /// without the `sha256 Fingerprint=` label. The certificate the server presents must be
    /// that one; it need not chain to a trusted CA, and neither its host names nor its dates are
    /// checked. Compare the fingerprint with the certificate on the server itself before you
    /// pin it. Recorded with the run. Not with --insecure, --ca-cert or an http:// URL.
    #[arg(long, value_name = "SHA256")]
    pub ca_fingerprint: Option<String>,

    /// Wire format of the REST API [default: xml; for replay, undo and resume: the run's].
    #[arg(long, value_enum)]
    pub wire: Option<WireArg>,

    /// Per-request timeout, in seconds.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub timeout: f64,
}

/// The wire formats EM speaks.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum WireArg {
    /// application/xml (EM's default)
    Xml,
    /// application/json
    Json,
}

/// How fast and how hard to push the server.
#[derive(Debug, Args)]
pub struct PaceArgs {
    /// Requests in flight at most: the server never sees more at once. The run works on up to
    /// twice as many accounts at a time, so that while some requests wait for their record in
    /// the audit log to be committed, others keep these places busy.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,

    /// Requests per second at most, for every request the run sends: reads, writes, retries
    /// and logons, all through one shared limiter.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,

    /// Requests that may be sent at once above the rate after an idle spell.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub burst: u32,

    /// Attempts per request before its row fails (connection errors, timeouts, 429, 5xx).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,

    /// The longest pause a server's Retry-After (on 429 or 503) may impose, in seconds; all
    /// requests wait it out together. A request whose answer asks for more fails at once.
    #[arg(long, default_value_t = 120, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub max_retry_wait: u64,
}

/// `embatch check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The CSV change plan.
    pub plan: PathBuf,

    /// Also log on, read the current state of every account in the plan, and print row by row
    /// what apply would do. Changes nothing on the server.
    #[arg(long)]
    pub online: bool,

    #[command(flatten)]
    pub connect: ConnectArgs,

    #[command(flatten)]
    pub pace: PaceArgs,

    /// Print the result as JSON on stdout.
    #[arg(long, value_enum, default_value_t = OutputArg::Text)]
    pub output: OutputArg,
}

/// `embatch apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The CSV change plan.
    pub plan: PathBuf,

    #[command(flatten)]
    pub connect: ConnectArgs,

    #[command(flatten)]
    pub pace: PaceArgs,

    #[command(flatten)]
    pub db: DbArgs,

    #[command(flatten)]
    pub changes: ChangeArgs,

    /// Stop scheduling new rows after this many rows have failed.
    #[arg(long, value_name = "N")]
    pub max_failures: Option<u64>,

    /// Allow the plan's delete-account rows; without it a plan that deletes accounts is refused.
    #[arg(long)]
    pub allow_delete: bool,

    /// Refuse a plan with more than N rows that change something.
    #[arg(long, value_name = "N")]
    pub max_changes: Option<u64>,

    /// After the rows, start one scope rebuild (RebuildUnprocessed) if the run added scopes,
    /// so they take effect now rather than at EM's daily rebuild.
    #[arg(long)]
    pub rebuild_scopes: bool,

    /// Output format of the final summary (the progress display always goes to stderr).
    #[arg(long, value_enum, default_value_t = OutputArg::Text)]
    pub output: OutputArg,
}

/// Output formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OutputArg {
    /// Human-readable text.
    Text,
    /// JSON on stdout, for scripts.
    Json,
}

/// `embatch show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A run id, or `last`.
    pub run: String,

    /// Only the rows that failed (or are in doubt).
    #[arg(long)]
    pub failed: bool,

    #[command(flatten)]
    pub db: DbArgs,

    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputArg::Text)]
    pub output: OutputArg,
}

/// `embatch demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The audit log the demo writes to.
    #[arg(long, env = "EMBATCH_DB", default_value = "embatch-demo.db")]
    pub db: PathBuf,

    /// Wire format the demo uses.
    #[arg(long, value_enum, default_value_t = WireArg::Xml)]
    pub wire: WireArg,
}

/// `embatch emulator`.
#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9398")]
    pub listen: SocketAddr,

    /// Generate this many accounts (TECH\user00001, ...) with a realistic mix of roles,
    /// scopes and the restore-all-VMs flag.
    #[arg(long, default_value_t = 0)]
    pub accounts: usize,

    /// Load users and accounts from a seed file (see samples/emulator-seed.json).
    #[arg(long, value_name = "FILE")]
    pub seed: Option<PathBuf>,

    /// Serve HTTPS with a self-signed certificate generated at start.
    #[arg(long)]
    pub tls: bool,

    /// With --tls, write the certificate (PEM) here, for the client's --ca-cert.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub cert_out: Option<PathBuf>,

    /// Idle minutes after which a session expires.
    #[arg(long, default_value_t = 15.0, value_name = "MINUTES")]
    pub session_timeout: f64,

    /// Answer 201 (no change) instead of 400 when a role the account holds is assigned again.
    #[arg(long)]
    pub duplicate_role_ok: bool,

    /// Answer scope POSTs with 202 Accepted instead of 201 Created.
    #[arg(long)]
    pub scope_accepted: bool,

    /// Fault: fixed latency added to every answer, in milliseconds.
    #[arg(long, default_value_t = 0, help_heading = "Faults")]
    pub latency_ms: u64,

    /// Fault: random extra latency up to this many milliseconds.
    #[arg(long, default_value_t = 0, help_heading = "Faults")]
    pub jitter_ms: u64,

    /// Fault: fraction of requests answered 500 (nothing applied).
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "FRACTION",
        help_heading = "Faults"
    )]
    pub error_500: f64,

    /// Fault: fraction of requests answered 503 with Retry-After.
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "FRACTION",
        help_heading = "Faults"
    )]
    pub error_503: f64,

    /// Fault: fraction of requests answered 429 with Retry-After.
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "FRACTION",
        help_heading = "Faults"
    )]
    pub error_429: f64,

    /// Fault: the Retry-After value, in seconds, for 429 and 503 answers.
    #[arg(
        long,
        default_value_t = 1,
        value_name = "SECONDS",
        help_heading = "Faults"
    )]
    pub retry_after: u64,

    /// Fault: a server-side cap on requests per second; requests over it get 503 + Retry-After.
    #[arg(long, value_name = "RPS", help_heading = "Faults")]
    pub max_rps: Option<u32>,

    /// Fault: fraction of connections dropped without an answer, before the change is applied.
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "FRACTION",
        help_heading = "Faults"
    )]
    pub drop_before: f64,

    /// Fault: fraction of connections dropped without an answer, after the change is applied
    /// (a lost answer).
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "FRACTION",
        help_heading = "Faults"
    )]
    pub drop_after: f64,

    /// Fault: every session expires after this many requests.
    #[arg(long, value_name = "N", help_heading = "Faults")]
    pub expire_after: Option<u64>,

    /// Fault: seed of the fault dice, for reproducible runs.
    #[arg(long, value_name = "N", help_heading = "Faults")]
    pub fault_seed: Option<u64>,
}

/// A usage error found while turning flags into settings.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

impl Cli {
    /// Turns the parsed flags into one validated command.
    pub fn into_command(self) -> Result<Command, UsageError> {
        Ok(match self.command {
            CliCommand::Demo(a) => Command::Demo(DemoSettings {
                db: a.db,
                wire: a.wire.into(),
            }),
            CliCommand::Check(a) => Command::Check(CheckSettings {
                plan: a.plan,
                online: if a.online {
                    Some((a.connect.into_settings()?, a.pace.into_pace()?))
                } else {
                    None
                },
                output: a.output.into(),
            }),
            CliCommand::Apply(a) => Command::Apply(ApplySettings {
                plan: a.plan,
                connect: a.connect.into_settings()?,
                pace: a.pace.into_pace()?,
                db: a.db.db,
                max_failures: a.max_failures,
                rebuild_scopes: a.rebuild_scopes,
                allow_delete: a.allow_delete,
                max_changes: a.max_changes,
                yes: a.changes.yes,
                wait: a.changes.wait,
                output: a.output.into(),
            }),
            CliCommand::RebuildScopes(a) => Command::RebuildScopes(ApplyLike {
                connect: a.connect.into_settings()?,
                pace: a.pace.into_pace()?,
                db: a.db.db,
                output: a.output.into(),
                yes: a.changes.yes,
                wait: a.changes.wait,
            }),
            CliCommand::Runs(a) => Command::Runs { db: a.db },
            CliCommand::Show(a) => Command::Show(ShowSettings {
                run: parse_run_ref(&a.run)?,
                failed_only: a.failed,
                db: a.db.db,
                output: a.output.into(),
            }),
            CliCommand::Replay(a) => Command::Replay {
                common: a.common.into_settings()?,
                failed_only: a.failed_only,
            },
            CliCommand::Undo(a) => Command::Undo {
                common: a.common.into_settings()?,
                dry_run: a.dry_run,
                emit_plan: a.emit_plan,
                force: a.force,
                allow_partial: a.allow_partial,
            },
            CliCommand::Resume(a) => Command::Resume(a.common.into_settings()?),
            CliCommand::Emulator(a) => Command::Emulator(a.into_settings()?),
            CliCommand::Verify(a) => Command::Verify(VerifySettings {
                run: a.run.as_deref().map(parse_run_ref).transpose()?,
                anchor: a.anchor,
                expect: a.expect.as_deref().map(parse_hash).transpose()?,
                db: a.db.db,
                output: a.output.into(),
            }),
            CliCommand::Export(a) => Command::Export(ExportSettings {
                run: a.run.as_deref().map(parse_run_ref).transpose()?,
                window: TimeWindow::parse(a.since.as_deref(), a.until.as_deref())
                    .map_err(|e| usage(e.to_string()))?,
                format: match a.format {
                    ExportFormatArg::Csv => ExportFormat::Csv,
                    ExportFormatArg::Jsonl => ExportFormat::Jsonl,
                    ExportFormatArg::Json => ExportFormat::Json,
                },
                out: a.out,
                db: a.db.db,
            }),
            CliCommand::Snapshot(a) => Command::Snapshot(SnapshotSettings {
                accounts: match a.plan {
                    Some(plan) => SnapshotAccounts::Plan(plan),
                    None => SnapshotAccounts::All,
                },
                format: match a.format {
                    SnapshotFormatArg::Csv => SnapshotFormat::Csv,
                    SnapshotFormatArg::Jsonl => SnapshotFormat::Jsonl,
                },
                out: a.out,
                connect: a.connect.into_settings()?,
                pace: a.pace.into_pace()?,
                db: a.db.db,
            }),
            CliCommand::Report(a) => Command::Report(ReportSettings {
                run: parse_run_ref(&a.run)?,
                out: a.out,
                db: a.db.db,
            }),
            CliCommand::Completions(a) => Command::Print(completion_script(a.shell)),
            CliCommand::Man => Command::Print(man_page()),
        })
    }
}

/// The completion script of `shell`, made from these definitions so it always knows every
/// subcommand and flag.
fn completion_script(shell: clap_complete::Shell) -> String {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "embatch", &mut script);
    String::from_utf8(script).expect("clap_complete writes UTF-8 scripts")
}

/// The man page, in roff, made from these definitions and their help texts.
fn man_page() -> String {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .expect("rendering into memory cannot fail");
    String::from_utf8(page).expect("clap_mangen writes UTF-8 roff")
}

fn parse_run_ref(text: &str) -> Result<RunRef, UsageError> {
    if text.eq_ignore_ascii_case("last") {
        return Ok(RunRef::Last);
    }
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .map(RunRef::Id)
        .ok_or_else(|| usage(format!("run must be a run id or `last`, not '{text}'")))
}

impl From<WireArg> for Wire {
    fn from(w: WireArg) -> Self {
        match w {
            WireArg::Xml => Wire::Xml,
            WireArg::Json => Wire::Json,
        }
    }
}

impl From<OutputArg> for OutputFormat {
    fn from(o: OutputArg) -> Self {
        match o {
            OutputArg::Text => OutputFormat::Text,
            OutputArg::Json => OutputFormat::Json,
        }
    }
}

impl FollowUpArgs {
    fn into_settings(self) -> Result<FollowUpSettings, UsageError> {
        Ok(FollowUpSettings {
            run: parse_run_ref(&self.run)?,
            connect: self.connect.into_partial()?,
            pace: self.pace.into_pace()?,
            db: self.db.db,
            max_failures: self.max_failures,
            output: self.output.into(),
            yes: self.changes.yes,
            wait: self.changes.wait,
        })
    }
}

impl ConnectArgs {
    /// Settings for commands that need a server and a user named on the command line.
    fn into_settings(self) -> Result<ConnectSettings, UsageError> {
        if self.url.is_none() {
            return Err(usage("no server given: pass --url or set EMBATCH_URL"));
        }
        if self.user.as_deref().is_none_or(|u| u.trim().is_empty()) {
            return Err(usage("no user given: pass --user or set EMBATCH_USER"));
        }
        self.into_partial()
    }

    /// Settings whose server and user may come from a recorded run instead.
    fn into_partial(self) -> Result<ConnectSettings, UsageError> {
        let url = match &self.url {
            Some(url) => {
                let parsed = url::Url::parse(url)
                    .map_err(|e| usage(format!("invalid --url '{url}': {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(usage(format!(
                        "--url must be http or https, not '{}'",
                        parsed.scheme()
                    )));
                }
                Some(parsed)
            }
            None => None,
        };
        let user = self.user.clone().filter(|u| !u.trim().is_empty());
        if self.insecure && self.ca_cert.is_some() {
            return Err(usage(
                "--insecure and --ca-cert contradict each other; pick one",
            ));
        }
        let ca_fingerprint = match &self.ca_fingerprint {
            Some(text) => Some(Fingerprint::parse(text).map_err(|e| {
                usage(format!(
                    "--ca-fingerprint '{}' is no SHA-256 fingerprint: {e}",
                    crate::text::printable(text)
                ))
            })?),
            None => None,
        };
        if ca_fingerprint.is_some() {
            // A pin is one exact answer to "which certificate is trusted"; either other flag
            // would give a second, different answer.
            if self.insecure {
                return Err(usage(
                    "--ca-fingerprint and --insecure contradict each other: a pin accepts one \
                     certificate, --insecure any; pick one",
                ));
            }
            if self.ca_cert.is_some() {
                return Err(usage(
                    "--ca-fingerprint and --ca-cert contradict each other: a pin trusts one \
                     certificate whatever its issuer, --ca-cert what these CAs issued; pick one",
                ));
            }
        }
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            return Err(usage("--timeout must be a positive number of seconds"));
        }
        let timeout = seconds("timeout", self.timeout)?;
        let password = match self.password_file {
            Some(path) => PasswordSource::File(path),
            None => PasswordSource::EnvOrPrompt,
        };
        Ok(ConnectSettings {
            url,
            user,
            password,
            tls: TlsOptions {
                ca_cert: self.ca_cert,
                insecure: self.insecure,
                ca_fingerprint,
            },
            wire: self.wire.map(Into::into),
            timeout,
        })
    }
}

impl PaceArgs {
    fn into_pace(self) -> Result<Pace, UsageError> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(usage(
                "--rate must be a positive number of requests per second",
            ));
        }
        // The limiter waits 1/rate seconds between requests, which must be a duration.
        seconds("rate", 1.0 / self.rate)?;
        Ok(Pace {
            concurrency: self.concurrency as usize,
            rate: self.rate,
            burst: NonZeroU32::new(self.burst).expect("clap keeps --burst at 1 or more"),
            max_attempts: self.max_attempts,
            max_retry_wait: Duration::from_secs(self.max_retry_wait),
            ..Pace::default()
        })
    }
}

/// `value` seconds as a duration, or a usage error naming `--name` when no duration is that long
/// (`Duration::from_secs_f64` would panic).
fn seconds(name: &str, value: f64) -> Result<Duration, UsageError> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| usage(format!("--{name} is out of range: {value}")))
}

fn fraction(name: &str, value: f64) -> Result<f64, UsageError> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(usage(format!(
            "--{name} must be a fraction between 0 and 1, not {value}"
        )))
    }
}

impl EmulatorArgs {
    fn into_settings(self) -> Result<EmulatorSettings, UsageError> {
        let faults = Faults {
            latency_ms: self.latency_ms,
            jitter_ms: self.jitter_ms,
            error_500: fraction("error-500", self.error_500)?,
            error_503: fraction("error-503", self.error_503)?,
            error_429: fraction("error-429", self.error_429)?,
            retry_after_secs: self.retry_after,
            max_rps: self.max_rps,
            drop_before: fraction("drop-before", self.drop_before)?,
            drop_after: fraction("drop-after", self.drop_after)?,
            expire_after: self.expire_after,
            seed: self.fault_seed,
        };
        if !(self.session_timeout.is_finite() && self.session_timeout > 0.0) {
            return Err(usage(
                "--session-timeout must be a positive number of minutes",
            ));
        }
        let seed = match &self.seed {
            Some(path) => Some(
                Seed::from_file(path)
                    .map_err(|e| usage(format!("cannot load seed {}: {e}", path.display())))?,
            ),
            None => None,
        };
        let session_idle_timeout = seconds("session-timeout", self.session_timeout * 60.0)?;
        let config = EmulatorConfig {
            listen: Some(self.listen),
            accounts: self.accounts,
            seed,
            session_idle_timeout,
            duplicate_role_ok: self.duplicate_role_ok,
            scope_post_status: if self.scope_accepted { 202 } else { 201 },
            tls: self.tls,
            faults,
            ..EmulatorConfig::default()
        };
        Ok(EmulatorSettings {
            config,
            cert_out: self.cert_out,
        })
    }
}

/// A head hash as `verify --anchor` prints it: 64 hex digits, taken in either case.
fn parse_hash(text: &str) -> Result<String, UsageError> {
    let hash = text.trim();
    if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hash.to_ascii_lowercase())
    } else {
        Err(usage(format!(
            "--expect must be a head hash of 64 hex digits, as `verify --anchor` prints it, not '{text}'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_refs() {
        assert!(matches!(parse_run_ref("last"), Ok(RunRef::Last)));
        assert!(matches!(parse_run_ref("12"), Ok(RunRef::Id(12))));
        assert!(parse_run_ref("0").is_err());
        assert!(parse_run_ref("x").is_err());
    }

    #[test]
    fn expected_hashes() {
        let upper = "AB".repeat(32);
        assert_eq!(parse_hash(&upper).unwrap(), "ab".repeat(32));
        assert_eq!(parse_hash(&format!(" {upper}\n")).unwrap(), "ab".repeat(32));
        assert!(parse_hash(&"ab".repeat(31)).is_err());
        assert!(parse_hash(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn durations_too_long_for_the_clock_are_usage_errors() {
        let connect = ["--url", "http://h/api", "--user", "u"];
        for (flag, value) in [("--timeout", "1e30"), ("--rate", "1e-30")] {
            let mut args = vec!["embatch", "check", "plan.csv", "--online", flag, value];
            args.extend(connect);
            let cli = Cli::try_parse_from(args).unwrap();
            let e = cli.into_command().unwrap_err();
            assert!(e.0.contains("out of range"), "{flag}: {e}");
        }
        let cli =
            Cli::try_parse_from(["embatch", "emulator", "--session-timeout", "1e30"]).unwrap();
        assert!(cli.into_command().is_err());
        let mut args = vec!["embatch", "apply", "p.csv", "--max-retry-wait", "5"];
        args.extend(connect);
        let cli = Cli::try_parse_from(args).unwrap();
        let Command::Apply(s) = cli
            .into_command()
            .map_err(|e| e.0)
            .unwrap_or_else(|e| panic!("{e}"))
        else {
            panic!("not apply");
        };
        assert_eq!(s.pace.max_retry_wait, Duration::from_secs(5));
    }

    #[test]
    fn a_pin_goes_with_https_alone() {
        let fp = "AB:".repeat(31) + "AB";
        let connect = |extra: &[&str]| {
            let mut args = vec![
                "embatch",
                "rebuild-scopes",
                "--url",
                "https://em.example.com:9398/api",
                "--user",
                "u",
                "--ca-fingerprint",
                &fp,
            ];
            args.extend(extra);
            Cli::try_parse_from(args).unwrap().into_command()
        };
        let Ok(Command::RebuildScopes(s)) = connect(&[]) else {
            panic!("a pin alone is accepted");
        };
        assert_eq!(
            s.connect.tls.ca_fingerprint.map(|p| p.to_string()),
            Some(fp.clone())
        );
        assert!(!s.connect.tls.insecure && s.connect.tls.ca_cert.is_none());
        let e = connect(&["--insecure"]).unwrap_err();
        assert!(e.0.contains("--ca-fingerprint and --insecure"), "{e}");
        let e = connect(&["--ca-cert", "ca.pem"]).unwrap_err();
        assert!(e.0.contains("--ca-fingerprint and --ca-cert"), "{e}");
        let bad = ["embatch", "resume", "1", "--ca-fingerprint", "AB:CD\u{1b}"];
        let e = Cli::try_parse_from(bad)
            .unwrap()
            .into_command()
            .unwrap_err();
        assert!(e.0.contains("no SHA-256 fingerprint"), "{e}");
        assert!(
            e.0.contains("'AB:CD\\u{1b}'"),
            "the text is shown escaped: {e}"
        );
    }

    #[test]
    fn completions_and_the_man_page_are_made_from_the_definitions() {
        let cli = Cli::try_parse_from(["embatch", "completions", "fish"]).unwrap();
        let Ok(Command::Print(script)) = cli.into_command() else {
            panic!("completions print a script");
        };
        assert!(script.contains("ca-fingerprint"), "{script}");
        assert!(Cli::try_parse_from(["embatch", "completions", "tcsh"]).is_err());
        let cli = Cli::try_parse_from(["embatch", "man"]).unwrap();
        let Ok(Command::Print(page)) = cli.into_command() else {
            panic!("man prints a page");
        };
        assert!(page.contains(".TH embatch"), "{page}");
    }

    #[test]
    fn verify_flags() {
        let cli = Cli::try_parse_from([
            "embatch",
            "verify",
            "--run",
            "last",
            "--expect",
            &"0f".repeat(32),
            "--db",
            "a.db",
        ])
        .unwrap();
        let Command::Verify(s) = cli.into_command().unwrap() else {
            panic!("not verify");
        };
        assert_eq!(s.run, Some(RunRef::Last));
        assert_eq!(s.expect, Some("0f".repeat(32)));
        assert!(!s.anchor);
        assert_eq!(s.db, PathBuf::from("a.db"));
        assert_eq!(s.output, OutputFormat::Text);
        let bad = Cli::try_parse_from(["embatch", "verify", "--expect", "abc"]).unwrap();
        assert!(bad.into_command().is_err());
    }
}
