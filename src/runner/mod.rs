//! The runner: turns a validated plan into requests, concurrently across accounts and in plan
//! order within each account, under one shared rate limit, and reports every row's outcome.
//!
//! Shape of a run (see ARCHITECTURE.md): the run and its rows are recorded first; then one
//! logon; then the roles (and, for rows that name accounts, the account list) are resolved;
//! then the run's pool (`pool`) keeps `8 × concurrency` accounts in work, taking one at a time
//! from a shared queue. A worker reads the account's state before its first row and decides
//! each row against it (`state`), so rows already in place are no-ops and the restore-all-VMs
//! toggle is only sent when needed. The runner emits [`RunEvent`]s for the console reporter
//! and writes outcomes through the audit handle; it shares no other state with either.

mod accounts;
mod door;
mod exec;
mod guard;
pub mod history;
mod lock;
mod pace;
mod pool;
mod preview;
mod report;
mod rows;
mod run;
pub mod snapshot;
pub mod state;
mod worker;

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use crate::audit::{AuditError, LockHolder, RowColumns};
use crate::em::{ClientConfig, EmError, RequestTag};
use crate::plan::{AccountRef, Plan, PlanErrors, PlanRow};

pub use accounts::Refusal;
pub use door::{Door, interrupt_token, run_settings};
pub use exec::{Executor, RowReport};
pub use lock::wait_for_lock;
pub use pace::{AttemptLog, Pace, Pacer};
pub use preview::{Prediction, Preview, PreviewRow, preview};
pub use report::{Reporter, Summary};
pub use rows::{PlanStream, RowStream};
pub use run::execute;
use run::{Reads, by_name, connect, end_run, stop_on_log_failure, unless_log_failed};
pub use state::{AccountState, Guard, RoleTable};

/// A row's outcome, as recorded in the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Not run yet.
    Pending,
    /// The change was made.
    Applied,
    /// Already in place; nothing was sent.
    Noop,
    /// The change could not be made.
    Failed,
    /// Not run because the run stopped first.
    Skipped,
    /// A write was sent, its answer was lost, and the account could not be re-read to learn
    /// whether it took effect. `resume` reconciles it by reading the account.
    InDoubt,
    /// Not run by `undo`: the account no longer shows what the undone run wrote (someone
    /// changed it since), and `--force` was not given.
    Conflict,
}

impl Outcome {
    /// The audit log's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Applied => "applied",
            Outcome::Noop => "noop",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::InDoubt => "in_doubt",
            Outcome::Conflict => "conflict",
        }
    }
}

/// Why a run stopped scheduling rows before the plan was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Ctrl-C.
    Interrupted,
    /// `--max-failures` was reached.
    MaxFailures,
}

/// What the runner tells the console reporter.
#[derive(Clone, Debug)]
pub enum RunEvent {
    /// A row finished.
    RowFinished {
        /// Its outcome.
        outcome: Outcome,
    },
    /// An HTTP attempt ended.
    Request {
        /// Its status, if an answer came.
        status: Option<u16>,
        /// How long it took.
        elapsed: Duration,
    },
}

/// The settings of one apply run.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// How to reach EM.
    pub client: ClientConfig,
    /// Pace and retries.
    pub pace: Pace,
    /// Stop scheduling after this many failed rows.
    pub max_failures: Option<u64>,
    /// The options recorded with the run, as JSON.
    pub options_json: String,
}

/// Setup failures: the run could not start, or its record could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Logon, TLS or connection failure before any change.
    #[error("connect to {url}: {source}")]
    Connect {
        /// The server.
        url: String,
        /// The client error.
        #[source]
        source: EmError,
    },
    /// The roles or accounts could not be read before any change.
    #[error("read {what} from the server: {source}")]
    Resolve {
        /// What was being read.
        what: &'static str,
        /// The client error.
        #[source]
        source: EmError,
    },
    /// The audit log failed; the run stops because changes must not go unrecorded.
    #[error("write the audit log: {0}")]
    Audit(AuditError),
    /// Another live run changes the same server from the same log: nothing was recorded and
    /// nothing was sent.
    #[error("{}", AuditError::Locked(.0.clone()))]
    Locked(Box<LockHolder>),
    /// The streamed plan yielded problems: nothing was recorded and nothing was sent.
    #[error("{0}")]
    Plan(PlanErrors),
    /// The audit log failed while the run was under way. The run stopped at the first failed
    /// write, and no request left after it; `resume` finishes the run once the log can be
    /// written again.
    #[error(
        "run {run_id} stopped: its audit log could not be written, and nothing was sent after \
         that; once the log can be written again, `embatch resume {run_id}` finishes the run: \
         {source}"
    )]
    LogFailed {
        /// The run that stopped.
        run_id: i64,
        /// Why the log could not be written.
        #[source]
        source: AuditError,
    },
    /// Rows of the run would lock everyone out of EM (the last Portal Administrator, or
    /// embatch's own logon): the run was refused before its first write, and its rows were
    /// recorded as not run.
    #[error("{}", refused_text(*.run_id, .plan.as_deref(), .refusals))]
    Refused {
        /// The run.
        run_id: i64,
        /// Its plan file, if it has one.
        plan: Option<String>,
        /// Every row refused, in plan order.
        refusals: Vec<Refusal>,
    },
    /// A worker stopped on a bug (it panicked). The run stops: the rows it held stay pending,
    /// so that `resume` decides them against the server.
    #[error(
        "a worker stopped on an internal error ({0}); the run was stopped, and `embatch resume` \
         finishes the rows left pending"
    )]
    Internal(String),
}

/// The message of [`RunError::Refused`]: one line per refused row, `FILE:LINE:` as plan problems
/// are named (`run N line L:` for a run derived from the log).
fn refused_text(run_id: i64, plan: Option<&str>, refusals: &[Refusal]) -> String {
    let mut text = format!(
        "run {run_id} was refused before its first write, and nothing was changed: {} row{} \
         would lock everyone out of EM",
        refusals.len(),
        if refusals.len() == 1 { "" } else { "s" }
    );
    for r in refusals {
        let place = match plan {
            Some(file) => format!("{file}:{}", r.line),
            None => format!("run {run_id} line {}", r.line),
        };
        text.push_str(&format!(
            "\n{place}: {} {} {}: {}",
            r.account, r.action, r.target, r.reason
        ));
    }
    text
}

impl From<AuditError> for RunError {
    fn from(e: AuditError) -> RunError {
        match e {
            // Refused before anything of the run was written: not a failure of the log.
            AuditError::Locked(holder) => RunError::Locked(holder),
            e => RunError::Audit(e),
        }
    }
}

/// The end of a run, for the summary and the exit status.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// The run's id in the audit log.
    pub run_id: i64,
    /// Counts per outcome, requests and timing.
    #[serde(flatten)]
    pub summary: Summary,
    /// Why the run stopped early, if it did.
    pub stopped: Option<StopReason>,
    /// For a resumed run: rows that had failed before the resume.
    pub earlier_failures: u64,
    /// The scope rebuild started after the rows, if one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_rebuild: Option<RebuildOutcome>,
}

/// How the scope rebuild after a run went.
#[derive(Clone, Debug, Serialize)]
pub struct RebuildOutcome {
    /// Whether EM accepted it.
    pub started: bool,
    /// The task id and state, or why it could not be started.
    pub detail: String,
}

impl RunReport {
    /// Rows of the whole run that did not end applied or in place.
    pub fn unsuccessful(&self) -> u64 {
        self.summary.counts.unsuccessful() + self.earlier_failures
    }
}

/// One row a run executes.
#[derive(Clone, Debug)]
pub struct Job {
    /// The row's key in its run (its index in the run's rows).
    pub row_no: u64,
    /// What to do.
    pub row: PlanRow,
    /// What the account must still show before the row may run (undo's drift check).
    pub guard: Option<Guard>,
    /// A write for this row may have reached the server before the run stopped (resume):
    /// the row is decided against a fresh read, never re-sent blindly.
    pub maybe_sent: bool,
    /// For an add-account row that re-creates a deleted account (undo): the settings EM only
    /// takes at creation.
    pub account_settings: Option<AccountSettings>,
}

/// The settings of an account that EM only takes when the account is created.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AccountSettings {
    /// File-level restore settings.
    pub flr: Option<crate::em::FlrSettings>,
    /// SQL restore settings.
    pub sql: Option<crate::em::SqlSettings>,
}

/// Which run the jobs belong to.
#[derive(Clone, Debug)]
pub enum RunRecord {
    /// A new run, whose rows are recorded before anything is sent.
    New {
        /// apply, replay or undo.
        kind: String,
        /// The run it replays or undoes.
        parent_run_id: Option<i64>,
        /// The plan file, if the rows came from one.
        plan_file: Option<String>,
        /// The plan's SHA-256.
        plan_sha256: Option<String>,
        /// Each job's audit annotations (JSON), by position; empty means none.
        annotations: Vec<Option<String>>,
    },
    /// An existing run taken over by `resume`: its rows are already recorded.
    Resume(i64),
}

/// Everything a run executes.
#[derive(Debug)]
pub struct RunSpec {
    /// The run record.
    pub record: RunRecord,
    /// The jobs, in order; rows of one account run in this order. Empty when `stream` is set.
    pub jobs: Vec<Job>,
    /// For a new run: its rows streamed from the plan instead of `jobs`. They are recorded as
    /// they stream and read back from the audit log one account at a time, so no row is held
    /// in memory. Ignored for a resume, whose rows are recorded already.
    pub stream: Option<PlanStream>,
    /// Run guarded jobs even when the account changed since (`undo --force`).
    pub force: bool,
    /// Object refs of scopes earlier runs created, by scope id.
    pub known_refs: HashMap<Uuid, String>,
    /// Rows of a resumed run that had already failed (or been left in conflict); they keep
    /// the run's status failed.
    pub earlier_failures: u64,
    /// Whether to start one scope rebuild (RebuildUnprocessed) after the rows, so new scopes
    /// take effect without waiting for EM's daily rebuild.
    pub rebuild_scopes: ScopeRebuild,
}

/// When a run starts a scope rebuild after its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeRebuild {
    /// Never.
    Never,
    /// When the run added a scope (`apply --rebuild-scopes`).
    IfScopesAdded,
    /// Always (`embatch rebuild-scopes`).
    Always,
}

impl RunSpec {
    /// A new `apply` run of `plan`, whose rows stream into the audit log as they leave the
    /// plan's memory.
    pub fn apply(plan: Plan) -> RunSpec {
        let count = plan.rows.len() as u64;
        RunSpec::apply_stream(
            plan.file,
            plan.sha256,
            count,
            Box::new(plan.rows.into_iter().map(Ok)),
        )
    }

    /// A new `apply` run of the plan `file` (with its SHA-256) whose `count` validated rows
    /// `rows` yields one at a time; a run whose rows yield a problem, or another number of
    /// rows, is not started.
    pub fn apply_stream(file: String, sha256: String, count: u64, rows: RowStream) -> RunSpec {
        RunSpec {
            record: RunRecord::New {
                kind: "apply".into(),
                parent_run_id: None,
                plan_file: Some(file),
                plan_sha256: Some(sha256),
                annotations: Vec::new(),
            },
            jobs: Vec::new(),
            stream: Some(PlanStream { rows, count }),
            force: false,
            known_refs: HashMap::new(),
            earlier_failures: 0,
            rebuild_scopes: ScopeRebuild::Never,
        }
    }
}

/// The audit record of a plan row before it runs.
pub fn new_row(row_no: u64, row: &PlanRow) -> RowColumns {
    RowColumns::of(row_no, row)
}

/// The account as a plan names it.
pub fn account_text(account: &AccountRef) -> String {
    account.text()
}

/// A tag for requests that belong to no row.
pub fn untagged() -> RequestTag {
    RequestTag::default()
}
