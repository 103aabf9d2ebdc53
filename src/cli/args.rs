//! The flags of each subcommand, as clap defines them, and the groups of flags that several
//! share (the run named by id, the output file, the connection, the pace, the audit log, the
//! confirmation and the lock wait). A flag that means the same in several subcommands is
//! defined once, in a group they flatten, so its name, help and default cannot drift apart.
//! `mod.rs` turns them into settings.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

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

    /// Also check that every checkpoint is signed by the key in this public key file (FILE.pub,
    /// from `embatch keygen`): a checkpoint unsigned, or signed by another key, is a problem
    /// (exit 5). Those carried over from a log of schema 01, older than signing, are exempt.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,

    #[command(flatten)]
    pub db: DbArgs,

    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputArg::Text)]
    pub output: OutputArg,
}

/// `embatch keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the signing key (mode 0600); the public key goes to FILE.pub.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
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

    #[command(flatten)]
    pub out: OutFileArgs,

    #[command(flatten)]
    pub db: DbArgs,
}

/// Where `export` and `snapshot` write.
#[derive(Debug, Args)]
pub struct OutFileArgs {
    /// Write to this file (created with mode 0600) instead of stdout.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
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
    /// Read the accounts this change plan names (CSV, or the first sheet of an .xlsx, .xlsm or
    /// .ods).
    #[arg(long, value_name = "PLAN")]
    pub plan: Option<PathBuf>,

    /// Read every account EM lists.
    #[arg(long)]
    pub all: bool,

    /// Output format: one line per account.
    #[arg(long, value_enum)]
    pub format: SnapshotFormatArg,

    #[command(flatten)]
    pub out: OutFileArgs,

    #[command(flatten)]
    pub server: ServerArgs,
}

/// The formats of `snapshot`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SnapshotFormatArg {
    /// CSV with a header row
    Csv,
    /// one JSON object per line
    Jsonl,
}

/// `embatch plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The desired-access sheet: CSV in the columns of `snapshot --format csv` (account, type,
    /// restore_all_vms, roles, scopes; account_id and read_at are ignored).
    #[arg(long, value_name = "FILE")]
    pub desired: PathBuf,

    /// Write the change plan to this file (created with mode 0600). An existing file is
    /// refused unless --force.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: PathBuf,

    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,

    /// Delete the accounts on EM that the sheet leaves out (delete-account rows, which apply
    /// runs only with --allow-delete). Without it they are left alone.
    #[arg(long)]
    pub prune: bool,

    /// The change ticket every row of the plan carries.
    #[arg(long, value_name = "TICKET")]
    pub ticket: Option<String>,

    /// Print the counts of what the plan would change as JSON on stdout.
    #[arg(long, value_enum, default_value_t = OutputArg::Text)]
    pub output: OutputArg,

    #[command(flatten)]
    pub server: ServerArgs,
}

/// `embatch report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub run: RunArg,

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
    pub server: ServerArgs,

    #[command(flatten)]
    pub changes: ChangeArgs,

    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t = OutputArg::Text)]
    pub output: OutputArg,
}

/// What `replay`, `undo` and `resume` share: the run they start from, and how to run.
#[derive(Debug, Args)]
pub struct FollowUpArgs {
    #[command(flatten)]
    pub run: RunArg,

    #[command(flatten)]
    pub rows: RowRunArgs,

    /// Output format of the final summary.
    #[arg(long, value_enum, default_value_t = OutputArg::Text)]
    pub output: OutputArg,
}

/// What every run of plan rows takes: `apply`'s, and those `replay`, `undo` and `resume` derive
/// from the log.
#[derive(Debug, Args)]
pub struct RowRunArgs {
    #[command(flatten)]
    pub server: ServerArgs,

    #[command(flatten)]
    pub changes: ChangeArgs,

    /// Stop scheduling new rows after this many rows have failed.
    #[arg(long, value_name = "N")]
    pub max_failures: Option<u64>,
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

/// The run a command reads or starts from, named on the command line.
#[derive(Debug, Args)]
pub struct RunArg {
    /// A run id, or `last`.
    pub run: String,
}

/// What every run against EM takes: how to reach the server, how hard to push it, and the
/// audit log the run is recorded in, with the key its checkpoints are signed with.
#[derive(Debug, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,

    #[command(flatten)]
    pub pace: PaceArgs,

    #[command(flatten)]
    pub db: DbArgs,

    #[command(flatten)]
    pub signing: SigningArgs,
}

/// The key a run signs its checkpoints with.
#[derive(Debug, Args)]
pub struct SigningArgs {
    /// Sign the checkpoint that ends each run with the Ed25519 signing key in this file, made by
    /// `embatch keygen FILE`; `embatch verify --public-key FILE.pub` then tells a chain rebuilt
    /// after an edit by anyone without the key. The file must be readable by its owner alone
    /// (mode 0600); a key that cannot be used refuses the command (exit 2) before anything is
    /// sent.
    #[arg(long, env = "EMBATCH_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
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
    /// eight times as many accounts at a time, so that while some requests wait for their record
    /// in the audit log to be committed, others keep these places busy.
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
    /// The change plan: CSV, or a spreadsheet (.xlsx, .xlsm, .ods).
    pub plan: PathBuf,

    /// The sheet of a spreadsheet plan to read; the first one when not given.
    #[arg(long, value_name = "NAME")]
    pub sheet: Option<String>,

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
    /// The change plan: CSV, or a spreadsheet (.xlsx, .xlsm, .ods).
    pub plan: PathBuf,

    /// The sheet of a spreadsheet plan to read; the first one when not given.
    #[arg(long, value_name = "NAME")]
    pub sheet: Option<String>,

    #[command(flatten)]
    pub rows: RowRunArgs,

    /// Allow the plan's delete-account rows; without it a plan that deletes accounts is refused.
    #[arg(long)]
    pub allow_delete: bool,

    /// Refuse a plan with more than N rows that change something.
    #[arg(long, value_name = "N")]
    pub max_changes: Option<u64>,

    /// Apply the plan only if its SHA-256 is this one: the hash of the plan that was approved,
    /// as `check` prints it on its last line (64 hex digits, either case). Any other file is
    /// refused (exit 2) before anything is sent or recorded. Recorded with the run.
    #[arg(long, value_name = "HASH")]
    pub expect_sha256: Option<String>,

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
    #[command(flatten)]
    pub run: RunArg,

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

    #[command(flatten)]
    pub faults: FaultArgs,
}

/// The faults `emulator` injects, listed under their own heading in its help.
#[derive(Debug, Args)]
#[command(next_help_heading = "Faults")]
pub struct FaultArgs {
    /// Fault: fixed latency added to every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,

    /// Fault: random extra latency up to this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,

    /// Fault: fraction of requests answered 500 (nothing applied).
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    pub error_500: f64,

    /// Fault: fraction of requests answered 503 with Retry-After.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    pub error_503: f64,

    /// Fault: fraction of requests answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    pub error_429: f64,

    /// Fault: the Retry-After value, in seconds, for 429 and 503 answers.
    #[arg(long, default_value_t = 1, value_name = "SECONDS")]
    pub retry_after: u64,

    /// Fault: a server-side cap on requests per second; requests over it get 503 + Retry-After.
    #[arg(long, value_name = "RPS")]
    pub max_rps: Option<u32>,

    /// Fault: fraction of connections dropped without an answer, before the change is applied.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    pub drop_before: f64,

    /// Fault: fraction of connections dropped without an answer, after the change is applied
    /// (a lost answer).
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    pub drop_after: f64,

    /// Fault: every session expires after this many requests.
    #[arg(long, value_name = "N")]
    pub expire_after: Option<u64>,

    /// Fault: seed of the fault dice, for reproducible runs.
    #[arg(long, value_name = "N")]
    pub fault_seed: Option<u64>,
}
