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
mod pace;
mod preview;
mod report;
pub mod snapshot;
pub mod state;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::audit::{AuditError, AuditHandle, NewRow, NewRun, RowResult, RunStatus};
use crate::em::{Client, ClientConfig, EmError, RequestTag};
use crate::plan::{AccountRef, Action, Plan, PlanRow};

pub use exec::{Executor, RowReport};
pub use pace::{AttemptLog, Pace, Pacer};
pub use preview::{Prediction, Preview, PreviewRow, preview};
pub use report::{Reporter, Summary};
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
    Audit(#[from] AuditError),
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

/// One account's rows, in plan order.
struct AccountGroup {
    id: Option<Uuid>,
    label: String,
    rows: Vec<usize>,
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
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The run record.
    pub record: RunRecord,
    /// The jobs, in order; rows of one account run in this order.
    pub jobs: Vec<Job>,
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
    /// A new `apply` run of `plan`.
    pub fn apply(plan: &Plan) -> RunSpec {
        RunSpec {
            record: RunRecord::New {
                kind: "apply".into(),
                parent_run_id: None,
                plan_file: Some(plan.file.clone()),
                plan_sha256: Some(plan.sha256.clone()),
                annotations: Vec::new(),
            },
            jobs: plan
                .rows
                .iter()
                .enumerate()
                .map(|(i, row)| Job {
                    row_no: i as u64,
                    row: row.clone(),
                    guard: None,
                    maybe_sent: false,
                    account_settings: None,
                })
                .collect(),
            force: false,
            known_refs: HashMap::new(),
            earlier_failures: 0,
            rebuild_scopes: ScopeRebuild::Never,
        }
    }
}

/// Applies `plan`: records the run, logs on, resolves names, runs the rows and records the end.
pub async fn apply(
    plan: &Plan,
    settings: RunSettings,
    audit: AuditHandle,
    cancel: CancellationToken,
    reporter: Reporter,
) -> Result<RunReport, RunError> {
    execute(RunSpec::apply(plan), settings, audit, cancel, reporter).await
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
    let run_id = match &spec.record {
        RunRecord::New {
            kind,
            parent_run_id,
            plan_file,
            plan_sha256,
            annotations,
        } => {
            let rows = spec
                .jobs
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
            audit
                .begin_run_with_rows(
                    NewRun {
                        kind: kind.clone(),
                        parent_run_id: *parent_run_id,
                        operator: settings.client.user.clone(),
                        server_url: settings.client.base_url.to_string(),
                        wire: settings.client.wire.as_str().into(),
                        tls_verify: !settings.client.tls.insecure,
                        insecure: settings.client.tls.insecure,
                        plan_file: plan_file.clone(),
                        plan_sha256: plan_sha256.clone(),
                        tool_version: env!("CARGO_PKG_VERSION").into(),
                        options: settings.options_json.clone(),
                    },
                    rows,
                )
                .await?
        }
        RunRecord::Resume(run_id) => {
            audit.resume_run(*run_id).await?;
            *run_id
        }
    };

    let earlier_failures = spec.earlier_failures;
    let outcome = run_rows(spec, run_id, &settings, &audit, cancel, reporter)
        .await
        .map(|mut report| {
            report.earlier_failures = earlier_failures;
            report
        });
    let status = match &outcome {
        Err(RunError::Audit(_)) | Err(RunError::Connect { .. }) | Err(RunError::Resolve { .. }) => {
            RunStatus::Aborted
        }
        Ok(report) if report.stopped == Some(StopReason::Interrupted) => RunStatus::Interrupted,
        Ok(report) if report.unsuccessful() > 0 => RunStatus::Failed,
        Ok(report) if report.stopped.is_some() => RunStatus::Interrupted,
        Ok(_) => RunStatus::Completed,
    };
    audit.end_run(run_id, status).await?;
    outcome
}

/// The audit record of a plan row before it runs.
pub fn new_row(row_no: u64, row: &PlanRow) -> NewRow {
    let object_name = match &row.action {
        Action::AddScope { object_name, .. } => Some(object_name.clone()),
        _ => None,
    };
    let annotations = if row.annotations.is_empty() {
        None
    } else {
        let map: serde_json::Map<String, serde_json::Value> = row
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        Some(serde_json::Value::Object(map).to_string())
    };
    NewRow {
        row_no,
        line: row.line,
        account: account_text(&row.account),
        action: row.action.name().into(),
        target: row.action.target_text(),
        object_name,
        ticket: row.ticket.clone(),
        comment: row.comment.clone(),
        annotations,
    }
}

/// The account as a plan names it.
pub fn account_text(account: &AccountRef) -> String {
    match account {
        AccountRef::Id(id) => id.to_string(),
        AccountRef::Name(name) => name.clone(),
    }
}

async fn run_rows(
    spec: RunSpec,
    run_id: i64,
    settings: &RunSettings,
    audit: &AuditHandle,
    cancel: CancellationToken,
    reporter: Reporter,
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let (events, reporter_task) = reporter.start(spec.jobs.len() as u64);
    let pacer = Arc::new(Pacer::new(
        &settings.pace,
        Some(AttemptLog {
            audit: audit.clone(),
            run_id,
        }),
        Some(events.clone()),
    ));
    let client = Arc::new(Client::new(settings.client.clone(), pacer.clone()).map_err(
        |source| RunError::Connect {
            url: settings.client.base_url.to_string(),
            source,
        },
    )?);
    let rows: Vec<&PlanRow> = spec.jobs.iter().map(|j| &j.row).collect();
    let (executor, groups) = connect_and_resolve(
        &rows,
        client.clone(),
        pacer.clone(),
        &settings.pace,
        spec.known_refs.clone(),
    )
    .await?;
    let executor = Arc::new(executor);

    let jobs = Arc::new(spec.jobs);
    let scopes_added = Arc::new(AtomicBool::new(false));
    let queue = Arc::new(Mutex::new(VecDeque::from(groups)));
    let failures = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(Mutex::new(None::<StopReason>));
    let tracker = TaskTracker::new();
    for _ in 0..settings.pace.workers() {
        let worker = Worker {
            executor: executor.clone(),
            jobs: jobs.clone(),
            force: spec.force,
            scopes_added: scopes_added.clone(),
            queue: queue.clone(),
            audit: audit.clone(),
            run_id,
            events: events.clone(),
            cancel: cancel.clone(),
            failures: failures.clone(),
            max_failures: settings.max_failures,
            stop: stop.clone(),
        };
        tracker.spawn(worker.run());
    }
    tracker.close();
    tracker.wait().await;

    // Rows never started stay resumable; mark them so the log says why they did not run.
    let mut stopped = *stop.lock().expect("stop lock is never poisoned");
    if cancel.is_cancelled() && stopped.is_none() {
        stopped = Some(StopReason::Interrupted);
    }
    let leftover: Vec<usize> = queue
        .lock()
        .expect("queue lock is never poisoned")
        .drain(..)
        .flat_map(|g| g.rows)
        .collect();
    for index in leftover {
        audit.row_finished(
            run_id,
            jobs[index].row_no,
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

    let rebuild = match spec.rebuild_scopes {
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
    if let Err(e) = client.logout().await {
        tracing::warn!("logout failed: {e}");
    }
    // The reporter ends when every event sender is gone, and the pacer (held by the client
    // and the executor) holds one: drop them all before waiting for the summary.
    let requests = pacer.requests();
    drop(events);
    drop(executor);
    drop(client);
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

/// Logs on, reads the role table and (when rows name accounts) the account list, and groups
/// the plan's rows by account.
async fn connect_and_resolve(
    rows: &[&PlanRow],
    client: Arc<Client>,
    pacer: Arc<Pacer>,
    pace: &Pace,
    known_refs: HashMap<Uuid, String>,
) -> Result<(Executor, Vec<AccountGroup>), RunError> {
    let mut executor = Executor {
        client: client.clone(),
        pacer,
        roles: RoleTable::default(),
        pace: pace.clone(),
        known_refs,
        logon_user: client.user().to_string(),
        admins: tokio::sync::Mutex::new(None),
    };
    let url = client.base_url().to_string();
    executor
        .retry_read(None, |_tag| {
            let client = client.clone();
            async move { client.logon().await }
        })
        .await
        .map_err(|source| RunError::Connect { url, source })?;

    let c = &*client;
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
            .filter_map(|r| uid_guid(&r.uid).map(|id| (id, r.name.clone())))
            .collect(),
    );

    let names_needed = rows
        .iter()
        .any(|r| matches!(r.account, AccountRef::Name(_)));
    let mut by_name: HashMap<String, Uuid> = HashMap::new();
    if names_needed {
        let accounts = executor
            .retry_read(None, |tag| async move { c.call(tag).accounts().await })
            .await
            .map_err(|source| RunError::Resolve {
                what: "the account list",
                source,
            })?;
        for a in accounts {
            if let Some(id) = uid_guid(&a.uid) {
                by_name.insert(a.name.to_lowercase(), id);
            }
        }
    }
    Ok((executor, group_rows(rows, &by_name)))
}

/// The GUID at the end of a UID such as `urn:veeam:EnterpriseRole:<guid>`.
fn uid_guid(uid: &str) -> Option<Uuid> {
    uid.rsplit(':').next().and_then(|g| Uuid::parse_str(g).ok())
}

/// Groups rows by the account they resolve to, keeping plan order within each account and
/// ordering accounts by their first row.
fn group_rows(rows: &[&PlanRow], by_name: &HashMap<String, Uuid>) -> Vec<AccountGroup> {
    let mut groups: Vec<AccountGroup> = Vec::new();
    let mut index: HashMap<(Option<Uuid>, String), usize> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        let (id, label) = match &row.account {
            AccountRef::Id(id) => (Some(*id), id.to_string()),
            AccountRef::Name(name) => (by_name.get(&name.to_lowercase()).copied(), name.clone()),
        };
        // Rows that resolve to the same account share a group whatever form named it; rows
        // naming an unknown account are grouped by that name so they fail together.
        let key = match id {
            Some(id) => (Some(id), String::new()),
            None => (None, label.to_lowercase()),
        };
        let slot = *index.entry(key).or_insert_with(|| {
            groups.push(AccountGroup {
                id,
                label: label.clone(),
                rows: Vec::new(),
            });
            groups.len() - 1
        });
        groups[slot].rows.push(i);
    }
    groups
}

struct Worker {
    executor: Arc<Executor>,
    jobs: Arc<Vec<Job>>,
    force: bool,
    scopes_added: Arc<AtomicBool>,
    queue: Arc<Mutex<VecDeque<AccountGroup>>>,
    audit: AuditHandle,
    run_id: i64,
    events: mpsc::UnboundedSender<RunEvent>,
    cancel: CancellationToken,
    failures: Arc<AtomicU64>,
    max_failures: Option<u64>,
    stop: Arc<Mutex<Option<StopReason>>>,
}

impl Worker {
    async fn run(self) {
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            let group = self
                .queue
                .lock()
                .expect("queue lock is never poisoned")
                .pop_front();
            let Some(group) = group else { return };
            self.run_account(group).await;
        }
    }

    async fn run_account(&self, group: AccountGroup) {
        let first = self.jobs[group.rows[0]].row_no;
        let added = group.rows.iter().find_map(|&i| {
            accounts::added_name(&self.jobs[i]).map(|(kind, name)| (i, kind, name.to_string()))
        });
        let (id, mut state, rows) = match (group.id, added) {
            (None, None) => {
                let why = format!("unknown account '{}'", group.label);
                self.fail_all(&group.rows, &why);
                return;
            }
            (None, Some((add, kind, name))) => {
                match self.create_account(&group.rows, add, kind, &name).await {
                    Some(created) => created,
                    None => return,
                }
            }
            (Some(id), added) => {
                let state = match self.executor.read_state(id, Some(first)).await {
                    Ok(state) => state,
                    Err(e) => {
                        self.fail_all(&group.rows, &format!("read account {}: {e}", group.label));
                        return;
                    }
                };
                if let Some((_, _, name)) = added
                    && state.name != name
                {
                    let why = format!(
                        "'{name}' differs only in case from the existing account '{}'; use its \
                         exact name",
                        state.name
                    );
                    self.fail_all(&group.rows, &why);
                    return;
                }
                (id, state, group.rows.clone())
            }
        };
        for (n, &i) in rows.iter().enumerate() {
            if self.cancel.is_cancelled() {
                // Put the rest back so the run marks them as not run.
                let rest = rows[n..].to_vec();
                self.queue
                    .lock()
                    .expect("queue lock is never poisoned")
                    .push_front(AccountGroup {
                        id: Some(id),
                        label: group.label.clone(),
                        rows: rest,
                    });
                return;
            }
            let job = &self.jobs[i];
            self.audit
                .row_account(self.run_id, job.row_no, &id.to_string());
            let report = self.executor.run_row(&mut state, job, self.force).await;
            self.finish(i, report);
        }
    }

    fn fail_all(&self, rows: &[usize], why: &str) {
        for &i in rows {
            self.finish(i, RowReport::failed(why));
        }
    }

    /// Creates the account of the add-account row `add` with the rows folded into its create
    /// request, records those rows, and answers the new account's id, its state and the rows
    /// still to run; `None` when it could not be created (every row is then recorded).
    async fn create_account(
        &self,
        rows: &[usize],
        add: usize,
        kind: crate::em::AccountType,
        name: &str,
    ) -> Option<(Uuid, AccountState, Vec<usize>)> {
        let add_job = &self.jobs[add];
        let jobs: Vec<&Job> = rows.iter().map(|&i| &self.jobs[i]).collect();
        let fail_rest = |why: &str| {
            for &i in rows {
                let text = if i == add {
                    why.to_string()
                } else {
                    format!("not run: account {name} could not be created: {why}")
                };
                self.finish(i, RowReport::failed(text));
            }
        };
        let mut plan = match accounts::plan_create(&self.executor, kind, name, &jobs) {
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
        for &i in rows {
            self.audit
                .row_account(self.run_id, self.jobs[i].row_no, &id.to_string());
        }
        let mut state = match self.executor.read_state(id, Some(add_job.row_no)).await {
            Ok(state) => state,
            Err(e) => {
                // Created, but not readable now: the folded rows took effect with it.
                for &n in &plan.folded {
                    self.finish(
                        rows[n],
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
                let rest: Vec<usize> = (0..rows.len())
                    .filter(|n| !plan.folded.contains(n))
                    .map(|n| rows[n])
                    .collect();
                self.fail_all(
                    &rest,
                    &format!("read account {name} after creating it: {e}"),
                );
                return None;
            }
        };
        let via = add_job.row_no;
        let line = add_job.row.line;
        for &n in &plan.folded {
            let job = jobs[n];
            let result = match &job.row.action {
                Action::AddAccount(kind) => serde_json::json!({
                    "account_id": id,
                    "account_type": kind,
                    "roles": state.roles.iter().map(|r| r.id).collect::<Vec<_>>(),
                }),
                Action::AssignRole(role) => {
                    let (role_id, role_name) = self
                        .executor
                        .roles
                        .resolve(role)
                        .expect("plan_create resolved every folded role");
                    serde_json::json!({ "role_id": role_id, "role_name": role_name, "via_row": via })
                }
                Action::RestoreAllVms(value) => {
                    serde_json::json!({ "restore_all_vms": value, "via_row": via })
                }
                Action::AddScope {
                    obj_ref,
                    object_name,
                } => {
                    let scope = state
                        .scopes
                        .iter_mut()
                        .find(|s| s.obj_ref.is_none() && s.name == *object_name);
                    let scope_id = scope.map(|s| {
                        s.obj_ref = Some(obj_ref.clone());
                        s.id
                    });
                    serde_json::json!({
                        "scope_id": scope_id,
                        "obj_ref": obj_ref,
                        "object_name": object_name,
                        "via_row": via,
                    })
                }
                _ => unreachable!("plan_create folds only these actions"),
            };
            let message =
                (rows[n] != add).then(|| format!("made by the create request of line {line}"));
            self.finish(
                rows[n],
                RowReport {
                    outcome: Outcome::Applied,
                    message,
                    prior_state: None,
                    result: Some(result.to_string()),
                },
            );
        }
        let rest = (0..rows.len())
            .filter(|n| !plan.folded.contains(n))
            .map(|n| rows[n])
            .collect();
        Some((id, state, rest))
    }

    fn finish(&self, index: usize, report: RowReport) {
        let outcome = report.outcome;
        if outcome == Outcome::Applied
            && matches!(self.jobs[index].row.action, Action::AddScope { .. })
        {
            self.scopes_added.store(true, Ordering::SeqCst);
        }
        self.audit.row_finished(
            self.run_id,
            self.jobs[index].row_no,
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

/// A tag for requests that belong to no row.
pub fn untagged() -> RequestTag {
    RequestTag::default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::RoleRef;

    fn row(line: u64, account: AccountRef) -> PlanRow {
        PlanRow {
            line,
            account,
            action: Action::AssignRole(RoleRef::Name("Portal User".into())),
            ticket: None,
            comment: None,
            annotations: Vec::new(),
        }
    }

    #[test]
    fn rows_group_by_resolved_account_in_plan_order() {
        let alice = Uuid::from_u128(1);
        let by_name = HashMap::from([("tech\\alice".to_string(), alice)]);
        let rows = [
            row(2, AccountRef::Name("TECH\\alice".into())),
            row(3, AccountRef::Name("TECH\\ghost".into())),
            row(4, AccountRef::Id(alice)),
            row(5, AccountRef::Name("tech\\GHOST".into())),
        ];
        let refs: Vec<&PlanRow> = rows.iter().collect();
        let groups = group_rows(&refs, &by_name);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].id, Some(alice));
        assert_eq!(groups[0].rows, vec![0, 2]);
        assert_eq!(groups[1].id, None);
        assert_eq!(groups[1].rows, vec![1, 3]);
    }
}
