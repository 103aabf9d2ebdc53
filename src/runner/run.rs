//! A run from its record to its end: the run and its rows recorded (or taken over by resume),
//! the logon and the names resolved, the guards judged before the first write, the workers
//! started over the account queue, and the end recorded with the status the outcome gives.
//! Also the pieces a snapshot run shares: `connect`, and stopping when the log fails.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::audit::{AuditHandle, NewRun, RowResult, RunRows, RunStatus};
use crate::em::{Client, ClientConfig, EntityRef};
use crate::plan::Action;

use super::pool::Pool;
use super::rows::{self, AccountIndex, AccountQueue, JobSource};
use super::worker::Worker;
use super::*;
use crate::exit::Exit;

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
    end_run(&audit, run_id, outcome, Exit::of_run).await
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
    let stop = Arc::new(Mutex::new(None::<StopReason>));
    let worker = Arc::new(Worker {
        executor: executor.clone(),
        force: input.force,
        scopes_added: scopes_added.clone(),
        queue: queue.clone(),
        audit: audit.clone(),
        run_id,
        events: events.clone(),
        cancel: cancel.clone(),
        failures: Arc::new(AtomicU64::new(0)),
        max_failures: settings.max_failures,
        stop: stop.clone(),
    });
    // The run's token is the pool's: a panic stops the run, and the accounts in work put their
    // rows not started back (`Worker::run_account`).
    let pool = Pool {
        limit: settings.pace.workers(),
        cancel: cancel.clone(),
    };
    let ran = pool
        .run(
            || queue.next(),
            move |(group, jobs)| {
                let worker = worker.clone();
                async move { worker.run_account(group, jobs).await }
            },
            |()| {},
        )
        .await;
    // Nothing more can be written: the caller reports the failure, and the rows stay as the
    // log last holds them (pending, or with intents in flight) for `resume`.
    if let Some(source) = audit.failure() {
        return Err(RunError::LogFailed { run_id, source });
    }
    // A panic is a bug, and the state of the account it left is unknown: the run stops rather
    // than ending `completed` with the account's rows never finished.
    if let Err(why) = ran {
        tracing::error!("a worker {why}");
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
    summary.counts.requests = requests;
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
pub(super) struct Reads {
    /// The role table, which deciding a row needs (a snapshot decides nothing, so it spares
    /// the request).
    pub(super) roles: bool,
    /// The account list: some row names its account by name, or a snapshot reads every account.
    pub(super) accounts: bool,
}

/// Builds the client for `config`, logs on, then reads the role table and the account list as
/// `reads` asks, in that order, each retried as `pace` allows. Answers the executor, which
/// holds the client and (when read) the role table, and the account list when it was read.
pub(super) async fn connect(
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
pub(super) fn by_name(accounts: Vec<EntityRef>) -> HashMap<String, Uuid> {
    accounts
        .into_iter()
        .filter_map(|a| a.id().map(|id| (a.name.to_lowercase(), id)))
        .collect()
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

/// Stops the run (cancels `cancel`) at the first failed write to the log, until dropped. The
/// pacer already refuses to send any request from then on; this makes the workers stop taking
/// rows at once, instead of failing each of them for want of a record.
pub(super) fn stop_on_log_failure(audit: &AuditHandle, cancel: &CancellationToken) -> AbortOnDrop {
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
pub(super) fn unless_log_failed<T>(
    audit: &AuditHandle,
    run_id: i64,
    outcome: Result<T, RunError>,
) -> Result<T, RunError> {
    match audit.failure() {
        Some(source) => Err(RunError::LogFailed { run_id, source }),
        None => outcome,
    }
}

/// Records the end of run `run_id`, and answers `outcome`. The status recorded is the one the
/// process exits with, as `exit` judges the report (`exit.rs`), so the log and the exit status
/// never disagree: `aborted` for a run that failed, else `interrupted`, `failed` or
/// `completed`. A run that already failed keeps its own error, which is the cause: when the log
/// failed, ending the run fails too. A log that fails only here fails the run all the same.
pub(super) async fn end_run<T>(
    audit: &AuditHandle,
    run_id: i64,
    outcome: Result<T, RunError>,
    exit: fn(&T) -> Exit,
) -> Result<T, RunError> {
    let status = match outcome.as_ref().map(exit) {
        Err(_) => RunStatus::Aborted,
        Ok(Exit::Interrupted) => RunStatus::Interrupted,
        Ok(Exit::RowsFailed) => RunStatus::Failed,
        Ok(_) => RunStatus::Completed,
    };
    let ended = audit.end_run(run_id, status).await;
    match (outcome, ended) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(source)) => Err(RunError::LogFailed { run_id, source }),
        (Ok(report), Ok(())) => Ok(report),
    }
}

/// Aborts a task when dropped, so a watcher does not outlive the run it watches on any return.
pub(super) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
