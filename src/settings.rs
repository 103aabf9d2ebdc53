//! The validated settings of every command: what `cli` turns the flags into, once, and what
//! the commands in `app` take. Plain values, with nothing of clap in them.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::audit::{ExportFormat, RunSelector, TimeWindow};
use crate::em::{TlsOptions, Wire};
use crate::emulator::EmulatorConfig;
use crate::runner::Pace;
use crate::runner::snapshot::SnapshotFormat;

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
    /// `embatch plan --desired`
    Plan(PlanSettings),
    /// `embatch verify`
    Verify(VerifySettings),
    /// `embatch migrate`
    Migrate {
        /// The audit log.
        db: PathBuf,
    },
    /// `embatch keygen`
    Keygen {
        /// Where the signing key goes (the public key goes beside it, with `.pub` added).
        file: PathBuf,
    },
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
    /// The public key's file every checkpoint must be signed by.
    pub public_key: Option<PathBuf>,
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
    /// The signing key's file, to sign the run's checkpoint with.
    pub signing_key: Option<PathBuf>,
}

/// `embatch plan --desired`.
#[derive(Debug)]
pub struct PlanSettings {
    /// The desired-access sheet.
    pub desired: PathBuf,
    /// Where the change plan goes (mode 0600).
    pub out: PathBuf,
    /// Replace `out` if it exists.
    pub force: bool,
    /// Delete the accounts on EM the sheet leaves out.
    pub prune: bool,
    /// The ticket every row carries.
    pub ticket: Option<String>,
    /// Output format of the counts.
    pub output: OutputFormat,
    /// The server.
    pub connect: ConnectSettings,
    /// Pace and retries of the reads.
    pub pace: Pace,
    /// The audit log the snapshot run the plan is computed from is recorded in.
    pub db: PathBuf,
    /// The signing key's file, to sign that run's checkpoint with.
    pub signing_key: Option<PathBuf>,
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
    /// The signing key's file, to sign the run's checkpoint with.
    pub signing_key: Option<PathBuf>,
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
    /// The signing key's file, to sign the run's checkpoints with.
    pub signing_key: Option<PathBuf>,
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
    /// The sheet of a spreadsheet plan (the first when `None`).
    pub sheet: Option<String>,
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
    /// The sheet of a spreadsheet plan (the first when `None`).
    pub sheet: Option<String>,
    /// The server.
    pub connect: ConnectSettings,
    /// Pace and retries.
    pub pace: Pace,
    /// The audit log.
    pub db: PathBuf,
    /// The signing key's file, to sign the run's checkpoint with.
    pub signing_key: Option<PathBuf>,
    /// Stop scheduling after this many failed rows.
    pub max_failures: Option<u64>,
    /// Start a scope rebuild after a run that added scopes.
    pub rebuild_scopes: bool,
    /// Allow delete-account rows.
    pub allow_delete: bool,
    /// Refuse plans with more changing rows than this.
    pub max_changes: Option<u64>,
    /// The SHA-256 the plan's bytes must have (lowercase hex): that of the plan approved.
    pub expect_sha256: Option<String>,
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
