//! Whole accounts: creating one from an add-account row and the rows folded into its create
//! request (and, for `resume`, recording those rows as that request's when it was sent before
//! the run stopped), and the guards that keep a bad spreadsheet from locking everyone out of EM
//! (the last Portal Administrator, and the account embatch itself logs on with).

use std::collections::HashMap;

use uuid::Uuid;

use crate::em::{AccountCreateSpec, AccountType, EmError, RequestTag, Retry, ScopeItem};
use crate::plan::{AccountRef, Action, RoleRef};

use super::exec::{Executor, RowReport};
use super::guard::Admins;
use super::state::{AccountState, Decision, decide};
use super::{Job, Outcome};

/// EM's administrator role, by name (its GUID comes from the server's role list).
pub const PORTAL_ADMINISTRATOR: &str = "Portal Administrator";

/// What one add-account row's create request carries, and which rows it folds in.
#[derive(Debug)]
pub struct CreatePlan {
    /// The request body.
    pub spec: AccountCreateSpec,
    /// Positions (in the account's rows) of the rows folded into the request.
    pub folded: Vec<usize>,
}

/// Builds the create request of `name` from its add-account row and the same account's
/// assign-role, restore-all-vms and add-scope rows; `Err` says why no request can be made.
pub fn plan_create(
    executor: &Executor,
    kind: AccountType,
    name: &str,
    jobs: &[&Job],
) -> Result<CreatePlan, String> {
    let mut spec = AccountCreateSpec {
        account_type: kind,
        account_name: name.to_string(),
        role_uids: Vec::new(),
        allow_restore_all_vms: true,
        scopes: Vec::new(),
        flr: None,
        sql: None,
    };
    let mut folded = Vec::new();
    for (n, job) in jobs.iter().enumerate() {
        match &job.row.action {
            Action::AddAccount(_) => folded.push(n),
            Action::AssignRole(role) => {
                let (id, _) = executor.roles.resolve(role).ok_or_else(|| {
                    format!(
                        "unknown role {} (line {}): the account cannot be created with it",
                        describe(role),
                        job.row.line
                    )
                })?;
                spec.role_uids.push(crate::em::role_uid(id));
                folded.push(n);
            }
            Action::RestoreAllVms(value) => {
                spec.allow_restore_all_vms = *value;
                folded.push(n);
            }
            Action::AddScope {
                obj_ref,
                object_name,
            } => {
                spec.scopes.push(ScopeItem {
                    obj_ref: obj_ref.clone(),
                    object_name: object_name.clone(),
                });
                folded.push(n);
            }
            _ => {}
        }
    }
    if spec.role_uids.is_empty() {
        return Err("a new account needs a role".into());
    }
    if !spec.allow_restore_all_vms && spec.scopes.is_empty() {
        return Err("a new account with restore-all-vms off needs a scope".into());
    }
    Ok(CreatePlan { spec, folded })
}

/// What a row folded into the create request of row `via` (the add-account row) records once
/// the account exists, `state` being the account as read after its creation: what undo needs
/// (the roles the account was created with, a scope's id and ref), and for the other rows the
/// request that made them. An add-scope row's scope gets its object ref in `state`, since EM's
/// scope listing never shows it.
pub fn folded_result(
    executor: &Executor,
    action: &Action,
    state: &mut AccountState,
    via: u64,
) -> serde_json::Value {
    match action {
        Action::AddAccount(kind) => serde_json::json!({
            "account_id": state.id,
            "account_type": kind,
            "roles": state.roles.iter().map(|r| r.id).collect::<Vec<_>>(),
        }),
        Action::AssignRole(role) => {
            let (role_id, role_name) = executor
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
    }
}

/// For `resume`: the rows of the account `name` whose create request, made from the add-account
/// row `jobs[add]`, was sent before the run stopped, the account now existing as `state`.
///
/// The rows that request carried are its rows, and are recorded as the run that sent it would
/// have recorded them: the add-account row and each folded row whose change the account shows
/// are `applied`, linked to the request, with the results undo needs. Answers those reports,
/// by position in `jobs`. A folded row whose change is not there (someone changed the account
/// since), and every other row, is left to run as usual. Nothing is answered when the account
/// is not what the request asked for (another type), or when the rows make no request.
pub fn reconcile_create(
    executor: &Executor,
    kind: AccountType,
    name: &str,
    jobs: &[&Job],
    add: usize,
    state: &mut AccountState,
) -> Vec<(usize, RowReport)> {
    if state.account_type.is_some_and(|t| t != kind) {
        return Vec::new();
    }
    let Ok(plan) = plan_create(executor, kind, name, jobs) else {
        return Vec::new();
    };
    let via = jobs[add].row_no;
    let line = jobs[add].row.line;
    let mut reports = Vec::new();
    for &n in &plan.folded {
        let action = &jobs[n].row.action;
        if n != add && !matches!(decide(action, &executor.roles, state), Decision::Noop(_)) {
            continue;
        }
        let message = if n == add {
            "reconciled: the create request was sent before the run stopped, and the account \
             exists"
                .to_string()
        } else {
            format!(
                "made by the create request of line {line} (reconciled: sent before the run \
                 stopped, and the account shows it)"
            )
        };
        reports.push((
            n,
            RowReport {
                outcome: Outcome::Applied,
                message: Some(message),
                prior_state: None,
                result: Some(folded_result(executor, action, state, via).to_string()),
            },
        ));
    }
    reports
}

fn describe(role: &RoleRef) -> String {
    match role {
        RoleRef::Id(id) => id.to_string(),
        RoleRef::Name(name) => format!("'{name}'"),
    }
}

/// The name an add-account row gives, if the job is one.
pub fn added_name(job: &Job) -> Option<(AccountType, &str)> {
    match (&job.row.action, &job.row.account) {
        (Action::AddAccount(kind), AccountRef::Name(name)) => Some((*kind, name.as_str())),
        _ => None,
    }
}

impl Executor {
    /// Sends a create request, retrying only where that is safe: after an answer that was lost,
    /// the account list is read first, and the account found there is the one created.
    pub async fn create(&self, spec: &AccountCreateSpec, row_no: u64) -> Result<Uuid, String> {
        let mut attempt = 1;
        loop {
            let tag = RequestTag {
                row: Some(row_no),
                attempt,
            };
            let error = match self.client.call(tag).create_account(spec).await {
                Ok(Some(id)) => return Ok(id),
                Ok(None) => {
                    return self
                        .find_account(&spec.account_name, row_no)
                        .await
                        .map_err(|e| format!("created, but its id could not be read: {e}"))?
                        .ok_or_else(|| "EM said created, but the account is not listed".into());
                }
                Err(e) => self.within_wait(e),
            };
            let retry = error.retry();
            if retry == Retry::Never {
                return Err(error.to_string());
            }
            if attempt >= self.pace.max_attempts {
                return Err(format!("gave up after {attempt} attempts: {error}"));
            }
            self.wait_before_retry(attempt, &error).await;
            attempt += 1;
            if retry == Retry::CheckFirst {
                match self.find_account(&spec.account_name, row_no).await {
                    Ok(Some(id)) => return Ok(id),
                    Ok(None) => {}
                    Err(read) => {
                        return Err(format!(
                            "{error}; the account list could not be read to learn whether it was \
                             created: {read}"
                        ));
                    }
                }
            }
        }
    }

    /// The id of the account named exactly `name`, from the account list.
    async fn find_account(&self, name: &str, row_no: u64) -> Result<Option<Uuid>, EmError> {
        let client = &*self.client;
        let accounts = self
            .retry_read(Some(row_no), |tag| async move {
                client.call(tag).accounts().await
            })
            .await?;
        Ok(accounts
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.id()))
    }

    /// Loads, once, who holds Portal Administrator and which account is embatch's own logon.
    async fn admins(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Admins>>, EmError> {
        let mut guard = self.admins.lock().await;
        if guard.is_none() {
            let Some((admin_role, _)) = self
                .roles
                .resolve(&RoleRef::Name(PORTAL_ADMINISTRATOR.into()))
            else {
                *guard = Some(Admins::default());
                return Ok(guard);
            };
            let client = &*self.client;
            let accounts = self
                .retry_read(None, |tag| async move { client.call(tag).accounts().await })
                .await?;
            let mut admins = Admins::default();
            for a in &accounts {
                let Some(id) = a.id() else {
                    continue;
                };
                admins.by_name.insert(a.name.to_lowercase(), id);
                if logon_matches(&self.logon_user, &a.name) {
                    admins.logon_account = Some(id);
                }
                let roles = self
                    .retry_read(None, |tag| async move {
                        client.call(tag).account_roles(id).await
                    })
                    .await?;
                if roles.iter().any(|r| r.role_id == admin_role) {
                    admins.holders.insert(id);
                }
            }
            *guard = Some(admins);
        }
        Ok(guard)
    }

    /// Why `action` must not run on the account in `state`, judged on the live state: it would
    /// leave EM without a Portal Administrator, or lock embatch's own logon out. `None` when
    /// it may run. When `commit`, the refusal-free change is counted as made, so later rows
    /// of the run see it (the caller holds no lock across the write: rows of one account run in
    /// order, and the count only ever shrinks towards a refusal).
    pub async fn refusal(
        &self,
        action: &Action,
        state: &AccountState,
        commit: bool,
    ) -> Option<String> {
        let taking = self.takes_admin(action);
        let assigning_admin = match action {
            Action::AssignRole(role) => self
                .roles
                .resolve(role)
                .is_some_and(|(_, name)| name.eq_ignore_ascii_case(PORTAL_ADMINISTRATOR)),
            _ => false,
        };
        if taking.is_none() && !assigning_admin {
            return None;
        }
        let mut guard = match self.admins().await {
            Ok(guard) => guard,
            Err(e) => {
                return Some(format!(
                    "could not read who holds Portal Administrator, so this row is not run: {e}"
                ));
            }
        };
        let admins = guard.as_mut().expect("admins() loads the view");
        if assigning_admin {
            if commit {
                admins.holders.insert(state.id);
            }
            return None;
        }
        let verb = taking.expect("a row that does not assign the role takes it");
        if let Some(why) = admins.judge(
            &self.logon_user,
            state.id,
            &state.name,
            state.account_type,
            verb,
        ) {
            return Some(why);
        }
        if commit {
            admins.holders.remove(&state.id);
        }
        None
    }

    /// What a row does to Portal Administrator: `Some(verb)` when it deletes its account or
    /// removes that role from it, the rows the guards judge.
    fn takes_admin(&self, action: &Action) -> Option<&'static str> {
        match action {
            Action::DeleteAccount => Some("delete"),
            Action::RemoveRole(role)
                if self
                    .roles
                    .resolve(role)
                    .is_some_and(|(_, name)| name.eq_ignore_ascii_case(PORTAL_ADMINISTRATOR)) =>
            {
                Some("remove Portal Administrator from")
            }
            _ => None,
        }
    }

    /// Judges, before the run's first write, every row that deletes an account or removes
    /// Portal Administrator, in plan order, against the holders read from EM and the accounts
    /// those rows name; answers the rows that would lock everyone out of EM.
    ///
    /// The judgement is stricter than the one of each row during the run: a Portal
    /// Administrator that the same plan gives to another account does not count, since rows of
    /// different accounts run in no set order, and the removal might come first. Rows of other
    /// actions, and rows whose account does not exist, are left to the run.
    pub async fn preflight(&self, jobs: &[Job]) -> Result<Vec<Refusal>, super::RunError> {
        self.judge_lockouts(jobs)
            .await
            .map_err(|source| super::RunError::Resolve {
                what: "who holds Portal Administrator",
                source,
            })
    }

    async fn judge_lockouts(&self, jobs: &[Job]) -> Result<Vec<Refusal>, EmError> {
        let guarded: Vec<(&Job, &str)> = jobs
            .iter()
            .filter_map(|job| self.takes_admin(&job.row.action).map(|verb| (job, verb)))
            .collect();
        if guarded.is_empty() {
            return Ok(Vec::new());
        }
        let guard = self.admins().await?;
        let admins = guard.as_ref().expect("admins() loads the view");
        // What is left of the holders as the plan's removals go through, in plan order.
        let mut left = Admins {
            holders: admins.holders.clone(),
            logon_account: admins.logon_account,
            by_name: HashMap::new(),
        };
        let mut states: HashMap<Uuid, AccountState> = HashMap::new();
        let mut refusals = Vec::new();
        for (job, verb) in guarded {
            let id = match &job.row.account {
                AccountRef::Id(id) => Some(*id),
                AccountRef::Name(name) => admins.by_name.get(&name.to_lowercase()).copied(),
            };
            let Some(id) = id else { continue };
            // Only an account that holds the role, or is embatch's own, can trip a guard;
            // only those are read.
            if !left.holders.contains(&id) && left.logon_account != Some(id) {
                continue;
            }
            let state = match states.entry(id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    match self.read_state(id, Some(job.row_no)).await {
                        Ok(state) => e.insert(state),
                        // Gone since the list was read: nothing of it to lock out.
                        Err(err) if err.status() == Some(404) => continue,
                        Err(err) => return Err(err),
                    }
                }
            };
            match left.judge(&self.logon_user, id, &state.name, state.account_type, verb) {
                Some(why) => {
                    let why = if why.contains("the last account") {
                        format!(
                            "{why} (a Portal Administrator given by this same plan does not \
                             count: rows of different accounts run in no set order; give it in \
                             a run before this one)"
                        )
                    } else {
                        why
                    };
                    refusals.push(Refusal {
                        row_no: job.row_no,
                        line: job.row.line,
                        account: super::account_text(&job.row.account),
                        action: job.row.action.name().into(),
                        target: job.row.action.target_text(),
                        reason: why,
                    });
                }
                None => {
                    left.holders.remove(&id);
                }
            }
        }
        Ok(refusals)
    }
}

/// A row refused before the run's first write, because it would lock everyone out of EM.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    /// The row's key in its run.
    pub row_no: u64,
    /// Its line in the plan.
    pub line: u64,
    /// The account as the plan names it.
    pub account: String,
    /// The action.
    pub action: String,
    /// The target.
    pub target: String,
    /// Why.
    pub reason: String,
}

/// Whether EM account `name` is the logon user `user`: the same name, or the same user with or
/// without its domain (`TECH\admin` for `admin`).
fn logon_matches(user: &str, name: &str) -> bool {
    if name.eq_ignore_ascii_case(user) {
        return true;
    }
    // A user given without a domain matches the account of that name in any domain.
    !user.contains('\\')
        && !user.contains('@')
        && name
            .rsplit('\\')
            .next()
            .is_some_and(|n| n.eq_ignore_ascii_case(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logon_user_is_found_with_or_without_its_domain() {
        assert!(logon_matches("TECH\\admin", "tech\\ADMIN"));
        assert!(logon_matches("admin", "TECH\\admin"));
        assert!(!logon_matches("admin", "TECH\\administrator"));
        assert!(!logon_matches("TECH\\admin", "OTHER\\admin"));
        assert!(logon_matches("admin@tech.local", "admin@TECH.local"));
    }
}
