//! The executor: one account at a time per worker, rows in plan order, each write sent only
//! when the account's state says it is needed, and retried only when that is safe.
//!
//! The retry rule that keeps changes exactly-once: a write whose outcome is unknown (timeout,
//! dropped connection, 500/502/504) is never re-sent before the account has been re-read; if
//! the re-read shows the change, the row is `applied` and nothing more is sent.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use uuid::Uuid;

use crate::em::{Client, EmError, RequestTag, Retry};

use super::pace::{Pace, Pacer};
use super::state::{AccountState, Change, Decision, RoleTable, decide};
use super::{Job, Outcome};

/// What happened to one row.
#[derive(Clone, Debug)]
pub struct RowReport {
    /// The row's outcome.
    pub outcome: Outcome,
    /// Why it failed, or a note on how it ended (no-op reason, confirmation by re-read).
    pub message: Option<String>,
    /// The account's state just before the row, as JSON.
    pub prior_state: Option<String>,
    /// Facts learnt by applying the row, as JSON (e.g. the id of a created scope).
    pub result: Option<String>,
}

impl RowReport {
    pub(crate) fn failed(message: impl Into<String>) -> Self {
        RowReport {
            outcome: Outcome::Failed,
            message: Some(message.into()),
            prior_state: None,
            result: None,
        }
    }
}

/// Everything a worker needs, shared by all workers of a run.
pub struct Executor {
    /// The EM client (one session shared by all workers).
    pub client: Arc<Client>,
    /// The shared limiter and pause gate.
    pub pacer: Arc<Pacer>,
    /// The roles EM knows.
    pub roles: RoleTable,
    /// Attempts and backoff.
    pub pace: Pace,
    /// Hierarchy object refs of scopes earlier runs created, by scope id: EM's listing never
    /// shows them, and undo needs them to re-create a removed scope.
    pub known_refs: HashMap<Uuid, String>,
    /// The user embatch logs on as, which no row may lock out.
    pub logon_user: String,
    /// Who holds Portal Administrator, read the first time a row could change that.
    pub admins: tokio::sync::Mutex<Option<super::guard::Admins>>,
}

impl Executor {
    /// An executor for `client`, logging on as its user, with no role table yet (the run reads
    /// it after the logon) and nothing known of Portal Administrator.
    pub fn new(
        client: Arc<Client>,
        pacer: Arc<Pacer>,
        pace: Pace,
        known_refs: HashMap<Uuid, String>,
    ) -> Executor {
        Executor {
            logon_user: client.user().to_string(),
            client,
            pacer,
            roles: RoleTable::default(),
            pace,
            known_refs,
            admins: tokio::sync::Mutex::new(None),
        }
    }

    /// Reads an account's roles, scopes and flag, retrying reads as often as the pace allows.
    pub async fn read_state(&self, id: Uuid, row: Option<u64>) -> Result<AccountState, EmError> {
        let client = &*self.client;
        let account = self
            .retry_read(row, |tag| async move { client.call(tag).account(id).await })
            .await?;
        let roles = self
            .retry_read(row, |tag| async move {
                client.call(tag).account_roles(id).await
            })
            .await?;
        let scopes = self
            .retry_read(row, |tag| async move {
                client.call(tag).account_scopes(id).await
            })
            .await?;
        let mut state = AccountState::from_reads(&account, &roles, &scopes);
        for scope in &mut state.scopes {
            scope.obj_ref = self.known_refs.get(&scope.id).cloned();
        }
        Ok(state)
    }

    /// Runs an idempotent read, retrying every error that a retry can cure.
    pub async fn retry_read<T, F, Fut>(&self, row: Option<u64>, mut read: F) -> Result<T, EmError>
    where
        F: FnMut(RequestTag) -> Fut,
        Fut: Future<Output = Result<T, EmError>>,
    {
        let mut attempt = 1;
        loop {
            let e = match read(RequestTag { row, attempt }).await {
                Ok(value) => return Ok(value),
                Err(e) => self.within_wait(e),
            };
            if e.retry() == Retry::Never || attempt >= self.pace.max_attempts {
                return Err(e);
            }
            self.wait_before_retry(attempt, &e).await;
            attempt += 1;
        }
    }

    /// `error`, made final ([`Retry::Never`]) when it asks for a longer pause than
    /// [`Pace::max_retry_wait`]: such a request fails at once instead of waiting. Every retry
    /// loop passes its errors through here before deciding to retry.
    pub fn within_wait(&self, error: EmError) -> EmError {
        error.limit_wait(self.pace.max_retry_wait)
    }

    /// Waits before attempt `attempt + 1`: the server's `Retry-After` (which pauses the whole
    /// pool, never longer than [`Pace::max_retry_wait`]), or exponential backoff with jitter.
    pub async fn wait_before_retry(&self, attempt: u32, error: &EmError) {
        if let Some(asked) = error.retry_after() {
            let delay = self.pacer.pause_for(asked, error.status());
            tokio::time::sleep(delay).await;
            return;
        }
        let exp = self
            .pace
            .backoff
            .saturating_mul(1 << attempt.saturating_sub(1).min(6))
            .min(Duration::from_secs(10));
        // Full jitter in [exp/2, exp] keeps workers that failed together from retrying together.
        let nanos = exp.as_nanos() as u64;
        let wait = Duration::from_nanos(rand::rng().random_range(nanos / 2..=nanos.max(1)));
        tokio::time::sleep(wait).await;
    }

    /// Runs one job against the account's current state, updating that state.
    ///
    /// A job whose write may already have reached the server (`maybe_sent`, after a crash) is
    /// decided against the state just read: if its change is in place, it is recorded as
    /// applied and nothing is sent. A job with a guard (undo) is not run when the account no
    /// longer shows what the guard expects, unless `force`.
    pub async fn run_row(&self, state: &mut AccountState, job: &Job, force: bool) -> RowReport {
        let prior = Some(state.to_json());
        if let Some(why) = self.refusal(&job.row.action, state, true).await {
            return RowReport {
                prior_state: prior,
                ..RowReport::failed(why)
            };
        }
        let decision = decide(&job.row.action, &self.roles, state);
        if job.maybe_sent && matches!(decision, Decision::Noop(_)) {
            return RowReport {
                outcome: Outcome::Applied,
                message: Some(
                    "reconciled: a write for this row was sent before the run stopped, and the \
                     account shows the change in place"
                        .into(),
                ),
                prior_state: prior,
                result: self.in_place_result(&job.row.action, state),
            };
        }
        if let Some(guard) = &job.guard
            && let Err(why) = guard.check(state)
        {
            if !force {
                return RowReport {
                    outcome: Outcome::Conflict,
                    message: Some(format!("{why}; left alone (--force overrides)")),
                    prior_state: prior,
                    result: None,
                };
            }
            tracing::warn!("--force: {why}");
        }
        let change = match decision {
            Decision::Noop(reason) => {
                return RowReport {
                    outcome: Outcome::Noop,
                    message: Some(reason),
                    prior_state: prior,
                    result: None,
                };
            }
            Decision::Fail(reason) => {
                return RowReport {
                    prior_state: prior,
                    ..RowReport::failed(reason)
                };
            }
            Decision::Change(change) => change,
        };
        let mut report = self.send_change(state, job.row_no, &change).await;
        report.prior_state = prior;
        report
    }

    /// The result a row would have recorded, for a change found already in place.
    fn in_place_result(
        &self,
        action: &crate::plan::Action,
        state: &AccountState,
    ) -> Option<String> {
        use crate::plan::Action;
        let value = match action {
            Action::AssignRole(role) | Action::RemoveRole(role) => {
                let (id, name) = self.roles.resolve(role)?;
                serde_json::json!({ "role_id": id, "role_name": name })
            }
            Action::AddScope {
                obj_ref,
                object_name,
            } => {
                let scope = state.find_scope_by_ref(obj_ref, object_name)?;
                serde_json::json!({ "scope_id": scope.id, "obj_ref": obj_ref, "object_name": object_name })
            }
            Action::RestoreAllVms(value) => serde_json::json!({ "restore_all_vms": value }),
            Action::AddAccount(_) => serde_json::json!({ "account_id": state.id, "existed": true }),
            Action::RemoveScope(_) | Action::DeleteAccount => return None,
        };
        Some(value.to_string())
    }

    async fn send_change(
        &self,
        state: &mut AccountState,
        row_no: u64,
        change: &Change,
    ) -> RowReport {
        let mut attempt = 1;
        loop {
            let tag = RequestTag {
                row: Some(row_no),
                attempt,
            };
            let error = match self.write(state.id, change, tag).await {
                Ok(()) => return self.after_success(state, row_no, change, None).await,
                Err(e) => self.within_wait(e),
            };
            let retry = error.retry();
            if retry == Retry::Never {
                return RowReport::failed(error.to_string());
            }
            let last = attempt >= self.pace.max_attempts;
            if !last {
                self.wait_before_retry(attempt, &error).await;
                attempt += 1;
            }
            if retry == Retry::CheckFirst {
                // The write may have taken effect: look before sending it again.
                match self.read_state(state.id, Some(row_no)).await {
                    Ok(fresh) => {
                        merge_known_refs(state, fresh);
                        if state.shows(change) {
                            let note =
                                format!("confirmed by re-reading the account after: {error}");
                            return self.after_success(state, row_no, change, Some(note)).await;
                        }
                    }
                    // The account is gone: the delete whose answer was lost took effect.
                    Err(read_error)
                        if *change == Change::DeleteAccount && read_error.status() == Some(404) =>
                    {
                        let note = format!("confirmed by re-reading after: {error}");
                        return self.after_success(state, row_no, change, Some(note)).await;
                    }
                    Err(read_error) => {
                        return RowReport {
                            outcome: Outcome::InDoubt,
                            message: Some(format!(
                                "{error}; the account could not be re-read to learn whether the change took effect: {read_error}"
                            )),
                            prior_state: None,
                            result: None,
                        };
                    }
                }
            }
            if last {
                return RowReport::failed(format!("gave up after {attempt} attempts: {error}"));
            }
        }
    }

    async fn write(&self, id: Uuid, change: &Change, tag: RequestTag) -> Result<(), EmError> {
        let call = self.client.call(tag);
        match change {
            Change::AssignRole { role, .. } => {
                call.assign_role(id, &crate::em::role_uid(*role)).await
            }
            Change::RemoveRole { role, .. } => call.remove_role(id, *role).await,
            Change::AddScope { item } => call.add_scopes(id, std::slice::from_ref(item)).await,
            Change::RemoveScope { scope, .. } => call.remove_scope(id, *scope).await,
            Change::SetRestoreAllVms(_) => call.toggle_restore_all_vms(id).await,
            Change::DeleteAccount => call.delete_account(id).await,
        }
    }

    async fn after_success(
        &self,
        state: &mut AccountState,
        row_no: u64,
        change: &Change,
        note: Option<String>,
    ) -> RowReport {
        // What undo needs to know about the change, taken before the state forgets it.
        let mut result = match change {
            Change::AssignRole { role, name } | Change::RemoveRole { role, name } => {
                Some(serde_json::json!({ "role_id": role, "role_name": name }).to_string())
            }
            Change::RemoveScope { scope, name } => {
                let obj_ref = state
                    .scopes
                    .iter()
                    .find(|s| s.id == *scope)
                    .and_then(|s| s.obj_ref.clone());
                Some(
                    serde_json::json!({ "scope_id": scope, "name": name, "obj_ref": obj_ref })
                        .to_string(),
                )
            }
            Change::SetRestoreAllVms(value) => {
                Some(serde_json::json!({ "restore_all_vms": value }).to_string())
            }
            Change::AddScope { .. } => None,
            // The prior state holds everything needed to re-create the account.
            Change::DeleteAccount => Some(serde_json::json!({ "deleted": state.id }).to_string()),
        };
        state.apply(change);
        if let Change::AddScope { item } = change {
            // EM does not answer with the new scope's id, so read it back: undo needs it. A
            // change confirmed by re-reading the account is already in the state.
            let mut created = state
                .find_scope_by_ref(&item.obj_ref, &item.object_name)
                .map(|s| s.id);
            if created.is_none() {
                let client = &*self.client;
                let id = state.id;
                match self
                    .retry_read(Some(row_no), |tag| async move {
                        client.call(tag).account_scopes(id).await
                    })
                    .await
                {
                    Ok(scopes) => {
                        let fresh = state.with_scopes(&scopes);
                        merge_known_refs(state, fresh);
                        created = state
                            .find_scope_by_ref(&item.obj_ref, &item.object_name)
                            .map(|s| s.id);
                    }
                    Err(e) => tracing::warn!("could not read back the scope just created: {e}"),
                }
            }
            if let Some(scope_id) = created {
                if let Some(scope) = state.scopes.iter_mut().find(|s| s.id == scope_id) {
                    scope.obj_ref = Some(item.obj_ref.clone());
                }
                result = Some(
                    serde_json::json!({
                        "scope_id": scope_id,
                        "obj_ref": item.obj_ref,
                        "object_name": item.object_name,
                    })
                    .to_string(),
                );
            }
        }
        RowReport {
            outcome: Outcome::Applied,
            message: note,
            prior_state: None,
            result,
        }
    }
}

/// Replaces `state` with a fresh read, keeping the object refs this run already knows: EM's
/// listing never shows them.
fn merge_known_refs(state: &mut AccountState, mut fresh: AccountState) {
    for scope in &mut fresh.scopes {
        if let Some(known) = state.scopes.iter().find(|s| s.id == scope.id) {
            scope.obj_ref = known.obj_ref.clone();
        }
    }
    *state = fresh;
}
