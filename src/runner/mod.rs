//! The runner: turns a validated plan into requests, concurrently across accounts and in plan
//! order within each account, under one shared rate limit, and reports every row's outcome.
//!
//! Shape of a run (see ARCHITECTURE.md): the run and its rows are recorded first; then one
//! logon; then the roles (and, for rows that name accounts, the account list) are resolved;
//! then `concurrency` workers take one account at a time from a shared queue. A worker reads
//! the account's state before its first row and decides each row against it (`state`), so rows
//! already in place are no-ops and the restore-all-VMs toggle is only sent when needed. The
//! runner emits [`RunEvent`]s for the console reporter and writes outcomes through the audit
//! handle; it shares no other state with either.

mod accounts;
mod exec;
pub mod history;
mod lock;
mod pace;
mod preview;
mod report;
mod rows;
pub mod snapshot;
pub mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::audit::{
    AuditError, AuditHandle, LockHolder, NewRow, NewRun, RowResult, RunRows, RunStatus,
};
use crate::em::{Client, ClientConfig, EmError, EntityRef, RequestTag};
use crate::plan::{AccountRef, Action, Plan, PlanErrors, PlanRow};

use rows::{AccountGroup, AccountIndex, AccountQueue, JobSource};

pub use accounts::Refusal;
pub use exec::{Executor, RowReport};
pub use lock::wait_for_lock;
pub use pace::{AttemptLog, Pace, Pacer};
pub use preview::{Prediction, Preview, PreviewRow, preview};
pub use report::{Reporter, Summary};
pub use rows::{PlanStream, RowStream};
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
        self.summary.unsuccessful() + self.earlier_failures
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

/// Where a run's rows are once its record exists.
enum Rows {
    /// Jobs in memory, with their index by account.
    Memory(Vec<Job>, AccountIndex),
    /// Rows recorded in the audit log, with their index by account.
    Recorded(AccountIndex),
}

/// Runs `spec`: records the run (or takes it over, for resume), logs on, resolves names, runs
/// the jobs and records the end.
pub async fn execute(
    spec: RunSpec,
    settings: RunSettings,
    audit: AuditHandle,
    cancel: CancellationToken,
    reporter: Reporter,
) -> Result<RunReport, RunError> {
    let RunSpec {
        record,
        jobs,
        stream,
        force,
        known_refs,
        earlier_failures,
        rebuild_scopes,
    } = spec;
    let plan_file_of_run = match &record {
        RunRecord::New { plan_file, .. } => plan_file.clone(),
        RunRecord::Resume(_) => None,
    };
    let (run_id, rows) = match record {
        RunRecord::New {
            kind,
            parent_run_id,
            plan_file,
            plan_sha256,
            annotations,
        } => {
            let run = NewRun {
                kind,
                parent_run_id,
                operator: settings.client.user.clone(),
                server_url: settings.client.base_url.to_string(),
                wire: settings.client.wire.as_str().into(),
                tls_verify: !settings.client.tls.insecure,
                insecure: settings.client.tls.insecure,
                plan_file: plan_file.clone(),
                plan_sha256,
                tool_version: env!("CARGO_PKG_VERSION").into(),
                options: settings.options_json.clone(),
            };
            match stream {
                Some(stream) => {
                    let (run_id, index) =
                        rows::record_streamed(&audit, run, stream, plan_file).await?;
                    (run_id, Rows::Recorded(index))
                }
                None => {
                    let rows = jobs
                        .iter()
                        .enumerate()
                        .map(|(i, job)| {
                            let mut row = new_row(job.row_no, &job.row);
                            if let Some(Some(extra)) = annotations.get(i) {
                                row.annotations = Some(extra.clone());
                            }
                            row
                        })
                        .collect();
                    let run_id = audit.begin_run_with_rows(run, rows).await?;
                    let index = index_jobs(&jobs);
                    (run_id, Rows::Memory(jobs, index))
                }
            }
        }
        RunRecord::Resume(run_id) => {
            audit.resume_run(run_id).await?;
            let index = index_jobs(&jobs);
            (run_id, Rows::Memory(jobs, index))
        }
    };

    let input = RunInput {
        force,
        known_refs,
        rebuild_scopes,
        plan: plan_file_of_run,
    };
    let outcome = async {
        let (source, index) = match rows {
            Rows::Memory(jobs, index) => (JobSource::Memory(jobs), index),
            Rows::Recorded(index) => {
                let recorded = RunRows::open(audit.path(), run_id)?;
                (JobSource::Recorded(Arc::new(recorded)), index)
            }
        };
        run_rows(
            input, source, index, run_id, &settings, &audit, cancel, reporter,
        )
        .await
    }
    .await
    .map(|mut report| {
        report.earlier_failures = earlier_failures;
        report
    });
    let outcome = unless_log_failed(&audit, run_id, outcome);
    let status = match &outcome {
        Err(RunError::Internal(_) | RunError::LogFailed { .. }) => RunStatus::Aborted,
        Err(RunError::Audit(_))
        | Err(RunError::Locked(_))
        | Err(RunError::Refused { .. })
        | Err(RunError::Connect { .. })
        | Err(RunError::Resolve { .. })
        | Err(RunError::Plan(_)) => RunStatus::Aborted,
        Ok(report) if report.stopped == Some(StopReason::Interrupted) => RunStatus::Interrupted,
        Ok(report) if report.unsuccessful() > 0 => RunStatus::Failed,
        Ok(report) if report.stopped.is_some() => RunStatus::Interrupted,
        Ok(_) => RunStatus::Completed,
    };
    end_run(&audit, run_id, status, outcome).await
}

/// The jobs of a run that the guards judge before its first write: those that delete an
/// account or remove a role (which role is only known once the role table is read).
async fn guarded_jobs(source: &JobSource) -> Result<Vec<Job>, RunError> {
    let guarded = |action: &Action| matches!(action, Action::DeleteAccount | Action::RemoveRole(_));
    match source {
        JobSource::Memory(jobs) => Ok(jobs
            .iter()
            .filter(|job| guarded(&job.row.action))
            .cloned()
            .collect()),
        JobSource::Recorded(recorded) => {
            let recorded = recorded.clone();
            let rows = tokio::task::spawn_blocking(move || {
                recorded.with_actions(&["delete-account", "remove-role"])
            })
            .await
            .map_err(|e| RunError::Internal(format!("reading the guarded rows: {e}")))??;
            rows.iter()
                .map(|rec| rows::job_of(rec).map_err(RunError::Internal))
                .collect()
        }
    }
}

/// Records the rows of a run refused before its first write: each refused row failed with its
/// reason, every other row skipped, naming the lines that were refused.
fn record_refusal(audit: &AuditHandle, run_id: i64, queue: &AccountQueue, refusals: &[Refusal]) {
    let lines: Vec<String> = refusals.iter().map(|r| r.line.to_string()).collect();
    let skipped = format!(
        "not run: the run was refused before its first write, since line{} {} would lock \
         everyone out of EM",
        if lines.len() == 1 { "" } else { "s" },
        lines.join(", ")
    );
    let reasons: HashMap<u64, &str> = refusals
        .iter()
        .map(|r| (r.row_no, r.reason.as_str()))
        .collect();
    for row_no in queue.leftover() {
        let (outcome, error) = match reasons.get(&row_no) {
            Some(why) => (Outcome::Failed, why.to_string()),
            None => (Outcome::Skipped, skipped.clone()),
        };
        audit.row_finished(
            run_id,
            row_no,
            RowResult {
                outcome: outcome.as_str().into(),
                error: Some(error),
                prior_state: None,
                result: None,
            },
        );
    }
}

/// The index by account of jobs held in memory: positions are indexes into `jobs`.
fn index_jobs(jobs: &[Job]) -> AccountIndex {
    let mut index = AccountIndex::default();
    for (i, job) in jobs.iter().enumerate() {
        index.push(i as u64, &job.row.account);
    }
    index
}

/// The parts of a [`RunSpec`] the rows run with.
struct RunInput {
    force: bool,
    known_refs: HashMap<Uuid, String>,
    rebuild_scopes: ScopeRebuild,
    /// The plan file, for the lines a refusal names.
    plan: Option<String>,
}

/// The audit record of a plan row before it runs.
pub fn new_row(row_no: u64, row: &PlanRow) -> NewRow {
    NewRow::of(row_no, row)
}

/// The account as a plan names it.
pub fn account_text(account: &AccountRef) -> String {
    account.text()
}

#[allow(clippy::too_many_arguments)] // One call site; a struct for it would only rename them.
async fn run_rows(
    input: RunInput,
    source: JobSource,
    index: AccountIndex,
    run_id: i64,
    settings: &RunSettings,
    audit: &AuditHandle,
    cancel: CancellationToken,
    reporter: Reporter,
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let _watch = stop_on_log_failure(audit, &cancel);
    let (events, reporter_task) = reporter.start(index.rows());
    let pacer = Arc::new(Pacer::new(
        &settings.pace,
        Some(AttemptLog {
            audit: audit.clone(),
            run_id,
        }),
        Some(events.clone()),
    ));
    let reads = Reads {
        roles: true,
        accounts: index.names_needed(),
    };
    let (executor, accounts) = connect(
        &settings.client,
        pacer.clone(),
        &settings.pace,
        input.known_refs,
        reads,
    )
    .await?;
    // The names are only needed to group the rows: the table goes with this statement.
    let groups = index.into_groups(&accounts.map(by_name).unwrap_or_default());
    let executor = Arc::new(executor);

    // The guards against locking everyone out are judged on the whole run before its first
    // write, so that no row is applied from a plan that another row makes unacceptable.
    let guarded = guarded_jobs(&source).await?;
    let refusals = executor.preflight(&guarded).await?;
    drop(guarded);
    let scopes_added = Arc::new(AtomicBool::new(false));
    let queue = Arc::new(AccountQueue::new(source, groups));
    if !refusals.is_empty() {
        record_refusal(audit, run_id, &queue, &refusals);
        if let Err(e) = executor.client.logout().await {
            tracing::warn!("logout failed: {e}");
        }
        return Err(RunError::Refused {
            run_id,
            plan: input.plan,
            refusals,
        });
    }
    let failures = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(Mutex::new(None::<StopReason>));
    let panicked = Arc::new(Mutex::new(None::<String>));
    let tracker = TaskTracker::new();
    for _ in 0..settings.pace.workers() {
        let worker = Worker {
            executor: executor.clone(),
            force: input.force,
            scopes_added: scopes_added.clone(),
            queue: queue.clone(),
            audit: audit.clone(),
            run_id,
            events: events.clone(),
            cancel: cancel.clone(),
            failures: failures.clone(),
            max_failures: settings.max_failures,
            stop: stop.clone(),
            panicked: panicked.clone(),
        };
        tracker.spawn(worker.run());
    }
    tracker.close();
    tracker.wait().await;
    // Nothing more can be written: the caller reports the failure, and the rows stay as the
    // log last holds them (pending, or with intents in flight) for `resume`.
    if let Some(source) = audit.failure() {
        return Err(RunError::LogFailed { run_id, source });
    }
    if let Some(why) = panicked
        .lock()
        .expect("panic slot is never poisoned")
        .take()
    {
        return Err(RunError::Internal(why));
    }

    // Rows never started stay resumable; mark them so the log says why they did not run.
    let mut stopped = *stop.lock().expect("stop lock is never poisoned");
    if cancel.is_cancelled() && stopped.is_none() {
        stopped = Some(StopReason::Interrupted);
    }
    for row_no in queue.leftover() {
        audit.row_finished(
            run_id,
            row_no,
            RowResult {
                outcome: Outcome::Skipped.as_str().into(),
                error: Some("not run: the run stopped before this row".into()),
                prior_state: None,
                result: None,
            },
        );
        let _ = events.send(RunEvent::RowFinished {
            outcome: Outcome::Skipped,
        });
    }

    let rebuild = match input.rebuild_scopes {
        ScopeRebuild::Never => false,
        ScopeRebuild::IfScopesAdded => scopes_added.load(Ordering::SeqCst),
        ScopeRebuild::Always => true,
    };
    let scope_rebuild = if rebuild {
        Some(rebuild_scopes(&executor).await)
    } else {
        None
    };

    // Logging out is a courtesy to the server; a failure here changes nothing for the run.
    if let Err(e) = executor.client.logout().await {
        tracing::warn!("logout failed: {e}");
    }
    // The reporter ends when every event sender is gone, and the pacer (held by the client
    // and the executor) holds one: drop them all before waiting for the summary.
    let requests = pacer.requests();
    drop(events);
    drop(executor);
    drop(pacer);
    let mut summary = reporter_task.await.unwrap_or_default();
    summary.requests = requests;
    summary.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(RunReport {
        run_id,
        summary,
        stopped,
        earlier_failures: 0,
        scope_rebuild,
    })
}

/// What [`connect`] reads after the logon.
#[derive(Clone, Copy, Debug)]
struct Reads {
    /// The role table, which deciding a row needs (a snapshot decides nothing, so it spares
    /// the request).
    roles: bool,
    /// The account list: some row names its account by name, or a snapshot reads every account.
    accounts: bool,
}

/// Builds the client for `config`, logs on, then reads the role table and the account list as
/// `reads` asks, in that order, each retried as `pace` allows. Answers the executor, which
/// holds the client and (when read) the role table, and the account list when it was read.
async fn connect(
    config: &ClientConfig,
    pacer: Arc<Pacer>,
    pace: &Pace,
    known_refs: HashMap<Uuid, String>,
    reads: Reads,
) -> Result<(Executor, Option<Vec<EntityRef>>), RunError> {
    let url = config.base_url.to_string();
    let client =
        Client::new(config.clone(), pacer.clone()).map_err(|source| RunError::Connect {
            url: url.clone(),
            source,
        })?;
    let mut executor = Executor::new(Arc::new(client), pacer, pace.clone(), known_refs);
    let client = executor.client.clone();
    executor
        .retry_read(None, |_tag| {
            let client = client.clone();
            async move { client.logon().await }
        })
        .await
        .map_err(|source| RunError::Connect { url, source })?;

    let c = &*client;
    if reads.roles {
        let roles = executor
            .retry_read(None, |tag| async move { c.call(tag).roles().await })
            .await
            .map_err(|source| RunError::Resolve {
                what: "the role list",
                source,
            })?;
        executor.roles = RoleTable::new(
            roles
                .iter()
                .filter_map(|r| r.id().map(|id| (id, r.name.clone())))
                .collect(),
        );
    }
    let accounts = if reads.accounts {
        let accounts = executor
            .retry_read(None, |tag| async move { c.call(tag).accounts().await })
            .await
            .map_err(|source| RunError::Resolve {
                what: "the account list",
                source,
            })?;
        Some(accounts)
    } else {
        None
    };
    Ok((executor, accounts))
}

/// The GUIDs of `accounts` by lower-cased name: rows name an account in any case, as EM
/// matches names.
fn by_name(accounts: Vec<EntityRef>) -> HashMap<String, Uuid> {
    accounts
        .into_iter()
        .filter_map(|a| a.id().map(|id| (a.name.to_lowercase(), id)))
        .collect()
}

struct Worker {
    executor: Arc<Executor>,
    force: bool,
    scopes_added: Arc<AtomicBool>,
    queue: Arc<AccountQueue>,
    audit: AuditHandle,
    run_id: i64,
    events: mpsc::UnboundedSender<RunEvent>,
    cancel: CancellationToken,
    failures: Arc<AtomicU64>,
    max_failures: Option<u64>,
    stop: Arc<Mutex<Option<StopReason>>>,
    /// What the first worker that panicked said.
    panicked: Arc<Mutex<Option<String>>>,
}

impl Worker {
    async fn run(self) {
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            let Some((group, jobs)) = self.queue.next().await else {
                return;
            };
            // A panic is a bug, and the state of the account it left is unknown: the run stops
            // rather than ending `completed` with the account's rows never finished.
            if let Err(why) = caught(self.run_account(group, jobs)).await {
                tracing::error!("a worker {why}");
                self.panicked
                    .lock()
                    .expect("panic slot is never poisoned")
                    .get_or_insert(why);
                self.cancel.cancel();
                return;
            }
        }
    }

    /// Runs one account's rows: `jobs` are the rows of `group`, read when the account was taken,
    /// so only the accounts being worked on (and a few read ahead) have their rows in memory;
    /// positions in `group` and indexes into `jobs` match.
    async fn run_account(&self, group: AccountGroup, jobs: Result<Vec<Job>, String>) {
        let jobs = match jobs {
            Ok(jobs) => jobs,
            Err(why) => {
                for row_no in self.queue.row_nos(&group) {
                    self.record(row_no, false, RowReport::failed(&why));
                }
                return;
            }
        };
        let first = jobs[0].row_no;
        let added = jobs.iter().enumerate().find_map(|(i, job)| {
            accounts::added_name(job).map(|(kind, name)| (i, kind, name.to_string()))
        });
        let (id, mut state, rows) = match (group.id, added) {
            (None, None) => {
                let why = format!("unknown account '{}'", group.label());
                self.fail_all(jobs.iter(), &why);
                return;
            }
            (None, Some((add, kind, name))) => {
                match self.create_account(&jobs, add, kind, &name).await {
                    Some(created) => created,
                    None => return,
                }
            }
            (Some(id), added) => {
                let mut state = match self.executor.read_state(id, Some(first)).await {
                    Ok(state) => state,
                    Err(e) => {
                        self.fail_all(jobs.iter(), &format!("read account {}: {e}", group.label()));
                        return;
                    }
                };
                if let Some((_, _, name)) = &added
                    && state.name != *name
                {
                    let why = format!(
                        "'{name}' differs only in case from the existing account '{}'; use its \
                         exact name",
                        state.name
                    );
                    self.fail_all(jobs.iter(), &why);
                    return;
                }
                let mut rows: Vec<usize> = (0..jobs.len()).collect();
                if let Some((add, kind, name)) = &added
                    && jobs[*add].maybe_sent
                {
                    // A resumed run whose create request was sent before it stopped: the rows
                    // that request carried are recorded as its, as the run that sent it would
                    // have recorded them, not decided one by one as if already in place.
                    let refs: Vec<&Job> = jobs.iter().collect();
                    let made = accounts::reconcile_create(
                        &self.executor,
                        *kind,
                        name,
                        &refs,
                        *add,
                        &mut state,
                    );
                    for (n, report) in made {
                        self.audit
                            .row_account(self.run_id, jobs[n].row_no, &id.to_string());
                        self.finish(&jobs[n], report);
                        rows.retain(|&i| i != n);
                    }
                }
                (id, state, rows)
            }
        };
        for (n, &i) in rows.iter().enumerate() {
            if self.cancel.is_cancelled() {
                // Put the rest back so the run marks them as not run.
                let rest = rows[n..].iter().map(|&i| group.rows[i]).collect();
                self.queue.put_back(AccountGroup {
                    id: Some(id),
                    name: group.name.clone(),
                    rows: rest,
                });
                return;
            }
            let job = &jobs[i];
            // Every row of an account created above had the new id recorded with the creation.
            if group.id.is_some() {
                self.audit
                    .row_account(self.run_id, job.row_no, &id.to_string());
            }
            let report = self.executor.run_row(&mut state, job, self.force).await;
            self.finish(job, report);
        }
    }

    fn fail_all<'j>(&self, jobs: impl Iterator<Item = &'j Job>, why: &str) {
        for job in jobs {
            self.finish(job, RowReport::failed(why));
        }
    }

    /// Creates the account of the add-account job `jobs[add]` with the jobs folded into its
    /// create request, records those rows, and answers the new account's id, its state and the
    /// indexes of the jobs still to run; `None` when it could not be created (every row is then
    /// recorded).
    async fn create_account(
        &self,
        jobs: &[Job],
        add: usize,
        kind: crate::em::AccountType,
        name: &str,
    ) -> Option<(Uuid, AccountState, Vec<usize>)> {
        let add_job = &jobs[add];
        let refs: Vec<&Job> = jobs.iter().collect();
        let fail_rest = |why: &str| {
            for (i, job) in jobs.iter().enumerate() {
                let text = if i == add {
                    why.to_string()
                } else {
                    format!("not run: account {name} could not be created: {why}")
                };
                self.finish(job, RowReport::failed(text));
            }
        };
        let mut plan = match accounts::plan_create(&self.executor, kind, name, &refs) {
            Ok(plan) => plan,
            Err(why) => {
                fail_rest(&why);
                return None;
            }
        };
        if let Some(settings) = &add_job.account_settings {
            plan.spec.flr = settings.flr.clone();
            plan.spec.sql = settings.sql.clone();
        }
        let id = match self.executor.create(&plan.spec, add_job.row_no).await {
            Ok(id) => id,
            Err(why) => {
                fail_rest(&why);
                return None;
            }
        };
        // Every row, folded or still to run, is the new account's: its id is recorded here
        // once, even for rows that fail below because the account cannot be read back.
        for job in jobs {
            self.audit
                .row_account(self.run_id, job.row_no, &id.to_string());
        }
        let mut state = match self.executor.read_state(id, Some(add_job.row_no)).await {
            Ok(state) => state,
            Err(e) => {
                // Created, but not readable now: the folded rows took effect with it.
                for &n in &plan.folded {
                    self.finish(
                        &jobs[n],
                        RowReport {
                            outcome: Outcome::Applied,
                            message: Some(format!(
                                "created as {id}; the account could not be read back: {e}"
                            )),
                            prior_state: None,
                            result: Some(serde_json::json!({ "account_id": id }).to_string()),
                        },
                    );
                }
                let rest = (0..jobs.len())
                    .filter(|n| !plan.folded.contains(n))
                    .map(|n| &jobs[n]);
                self.fail_all(rest, &format!("read account {name} after creating it: {e}"));
                return None;
            }
        };
        let via = add_job.row_no;
        let line = add_job.row.line;
        for &n in &plan.folded {
            let job = &jobs[n];
            let result = accounts::folded_result(&self.executor, &job.row.action, &mut state, via);
            let message = (n != add).then(|| format!("made by the create request of line {line}"));
            self.finish(
                job,
                RowReport {
                    outcome: Outcome::Applied,
                    message,
                    prior_state: None,
                    result: Some(result.to_string()),
                },
            );
        }
        let rest = (0..jobs.len())
            .filter(|n| !plan.folded.contains(n))
            .collect();
        Some((id, state, rest))
    }

    fn finish(&self, job: &Job, report: RowReport) {
        let scope = matches!(job.row.action, Action::AddScope { .. });
        self.record(job.row_no, scope, report);
    }

    /// Records the outcome of row `row_no` (an add-scope row when `scope`), tells the
    /// reporter, and stops the run at `--max-failures`.
    fn record(&self, row_no: u64, scope: bool, report: RowReport) {
        let outcome = report.outcome;
        if outcome == Outcome::Applied && scope {
            self.scopes_added.store(true, Ordering::SeqCst);
        }
        self.audit.row_finished(
            self.run_id,
            row_no,
            RowResult {
                outcome: outcome.as_str().into(),
                error: report.message,
                prior_state: report.prior_state,
                result: report.result,
            },
        );
        let _ = self.events.send(RunEvent::RowFinished { outcome });
        if matches!(outcome, Outcome::Failed | Outcome::Conflict) {
            let failed = self.failures.fetch_add(1, Ordering::SeqCst) + 1;
            if self.max_failures.is_some_and(|max| failed >= max) {
                let mut stop = self.stop.lock().expect("stop lock is never poisoned");
                stop.get_or_insert(StopReason::MaxFailures);
                self.cancel.cancel();
            }
        }
    }
}

/// Starts one `rebuildScope` (RebuildUnprocessed); its request is recorded like every other.
/// Answers the task id, or why it could not be started: the run's changes stand either way.
/// A rebuild started twice only processes scopes again, so it is retried like a read.
async fn rebuild_scopes(executor: &Executor) -> RebuildOutcome {
    let client = &*executor.client;
    match executor
        .retry_read(None, |tag| async move {
            client
                .call(tag)
                .rebuild_scopes(crate::em::RebuildMode::Unprocessed)
                .await
        })
        .await
    {
        Ok(task) => RebuildOutcome {
            started: true,
            detail: format!("{} ({})", task.task_id, task.state),
        },
        Err(e) => RebuildOutcome {
            started: false,
            detail: format!("not started: {e}"),
        },
    }
}

/// Runs `future`, turning a panic in it into the panic's message. Unwind safety is asserted
/// because after a panic the run decides nothing more from what the future shared: it stops,
/// and the rows stay as the log holds them.
async fn caught<F: std::future::Future>(future: F) -> Result<F::Output, String> {
    use futures_util::FutureExt as _;
    std::panic::AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(|payload| panic_text(payload.as_ref()))
}

/// The message a panic carried, when it was text.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    match payload.downcast_ref::<&str>() {
        Some(text) => format!("panicked: {text}"),
        None => match payload.downcast_ref::<String>() {
            Some(text) => format!("panicked: {text}"),
            None => "panicked".into(),
        },
    }
}

/// Stops the run (cancels `cancel`) at the first failed write to the log, until dropped. The
/// pacer already refuses to send any request from then on; this makes the workers stop taking
/// rows at once, instead of failing each of them for want of a record.
fn stop_on_log_failure(audit: &AuditHandle, cancel: &CancellationToken) -> AbortOnDrop {
    let (audit, cancel) = (audit.clone(), cancel.clone());
    AbortOnDrop(tokio::spawn(async move {
        let e = audit.failed().await;
        tracing::error!("stopping the run: {e}");
        cancel.cancel();
    }))
}

/// `outcome`, unless the log failed during run `run_id`: then that failure. It outranks
/// whatever the run saw next (requests refused for want of a record made rows fail, or the
/// logon look like a connection error), since it is the cause.
fn unless_log_failed<T>(
    audit: &AuditHandle,
    run_id: i64,
    outcome: Result<T, RunError>,
) -> Result<T, RunError> {
    match audit.failure() {
        Some(source) => Err(RunError::LogFailed { run_id, source }),
        None => outcome,
    }
}

/// Records the end of run `run_id` with `status`, and answers `outcome`. A run that already
/// failed keeps its own error, which is the cause: when the log failed, ending the run fails
/// too. A log that fails only here fails the run all the same.
async fn end_run<T>(
    audit: &AuditHandle,
    run_id: i64,
    status: RunStatus,
    outcome: Result<T, RunError>,
) -> Result<T, RunError> {
    let ended = audit.end_run(run_id, status).await;
    match (outcome, ended) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(source)) => Err(RunError::LogFailed { run_id, source }),
        (Ok(report), Ok(())) => Ok(report),
    }
}

/// Aborts a task when dropped, so a watcher does not outlive the run it watches on any return.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A tag for requests that belong to no row.
pub fn untagged() -> RequestTag {
    RequestTag::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_its_message() {
        assert_eq!(caught(async { 7 }).await, Ok(7));
        let text = caught(async { panic!("overflow when adding duration to instant") }).await;
        assert_eq!(
            text,
            Err::<(), _>("panicked: overflow when adding duration to instant".into())
        );
        let formatted = caught(async { panic!("row {}", 3) }).await;
        assert_eq!(formatted, Err::<(), _>("panicked: row 3".into()));
    }
}
