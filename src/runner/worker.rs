//! The work of a run on one account: reads the account's state and runs its rows in plan order,
//! recording each outcome. The run's pool (`pool.rs`) takes the accounts from the run's queue
//! and keeps `8N` of them in work at once; it catches a panic per account, which stops the run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::audit::{AuditHandle, RowResult};
use crate::plan::Action;

use super::rows::{AccountGroup, AccountQueue};
use super::*;

/// What every account of a run is run with, shared by the accounts in work.
pub(super) struct Worker {
    pub(super) executor: Arc<Executor>,
    pub(super) force: bool,
    pub(super) scopes_added: Arc<AtomicBool>,
    pub(super) queue: Arc<AccountQueue>,
    pub(super) audit: AuditHandle,
    pub(super) run_id: i64,
    pub(super) events: mpsc::UnboundedSender<RunEvent>,
    pub(super) cancel: CancellationToken,
    pub(super) failures: Arc<AtomicU64>,
    pub(super) max_failures: Option<u64>,
    pub(super) stop: Arc<Mutex<Option<StopReason>>>,
}

impl Worker {
    /// Runs one account's rows: `jobs` are the rows of `group`, read when the account was taken,
    /// so only the accounts being worked on (and a few read ahead) have their rows in memory;
    /// positions in `group` and indexes into `jobs` match.
    pub(super) async fn run_account(&self, group: AccountGroup, jobs: Result<Vec<Job>, String>) {
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
