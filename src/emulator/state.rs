//! The emulated EM's data (roles, accounts, scopes, logons, sessions) and every rule a change
//! must pass, plus the journal of applied changes and the record of received requests.
//!
//! Everything lives in one [`State`] behind one lock ([`Shared`]), so a request that touches an
//! account sees and changes it atomically. Methods here are synchronous and never wait; the
//! lock is never held across an `await`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine as _;
use rand::RngExt as _;
use uuid::Uuid;

use super::body::{AccountSpec, ObjRef, RebuildMode, ScopeItem, parse_obj_ref, role_uid};
use super::faults::FaultState;
use super::wire::ApiError;
use super::{
    AccountSnapshot, Effect, Faults, JournalEntry, RequestRecord, RoleSnapshot, ScopeSnapshot,
    StateSnapshot,
};

/// One of EM's seven security roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RoleDef {
    /// The role's GUID, the same on every install the docs show.
    pub id: Uuid,
    /// The role's name.
    pub name: &'static str,
}

/// EM's roles, in the order a v13 server lists them.
pub(crate) const ROLES: [RoleDef; 7] = [
    RoleDef {
        id: Uuid::from_u128(0xd19a3d33_cb77_4ffe_94e6_001432483a4e),
        name: "Portal User",
    },
    RoleDef {
        id: Uuid::from_u128(0xf78a92b8_9f06_4f1e_b522_4f0927cabd0f),
        name: "SQL Restore Operator",
    },
    RoleDef {
        id: Uuid::from_u128(0xe9d90e66_b6d4_49dc_8986_73cf33489623),
        name: "Oracle Restore Operator",
    },
    RoleDef {
        id: Uuid::from_u128(0xf84a8b62_49b8_4d0c_b25b_92321b52bab6),
        name: "File Restore Operator",
    },
    RoleDef {
        id: Uuid::from_u128(0xf83e4c81_0815_452f_9377_9d573dd9d481),
        name: "Exchange Restore Operator",
    },
    RoleDef {
        id: Uuid::from_u128(0x5f37a46b_9ce2_40f4_8a62_b45b079257fc),
        name: "Portal Administrator",
    },
    RoleDef {
        id: Uuid::from_u128(0xc11c0c38_ba8b_49c7_bf70_fc2058fff1e2),
        name: "VM Restore Operator",
    },
];

/// The role that may use `/security`.
pub(crate) const PORTAL_ADMINISTRATOR: Uuid = ROLES[5].id;

/// The role with this GUID.
pub(crate) fn role_by_id(id: Uuid) -> Option<RoleDef> {
    ROLES.iter().copied().find(|r| r.id == id)
}

/// The role with this name, case-insensitively.
pub(crate) fn role_by_name(name: &str) -> Option<RoleDef> {
    ROLES
        .iter()
        .copied()
        .find(|r| r.name.eq_ignore_ascii_case(name.trim()))
}

/// EM's account types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AccountType {
    /// An AD user.
    User,
    /// An AD group.
    Group,
    /// An external user (`user@suffix`).
    ExternalUser,
    /// An external group.
    ExternalGroup,
}

impl AccountType {
    const ALL: [AccountType; 4] = [
        AccountType::User,
        AccountType::Group,
        AccountType::ExternalUser,
        AccountType::ExternalGroup,
    ];

    /// EM's spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AccountType::User => "User",
            AccountType::Group => "Group",
            AccountType::ExternalUser => "ExternalUser",
            AccountType::ExternalGroup => "ExternalGroup",
        }
    }

    /// Parses EM's spelling, case-insensitively.
    pub(crate) fn parse(text: &str) -> Option<AccountType> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(text.trim()))
    }

    /// Whether `name` has the shape EM expects for this type: `DOMAIN\name` for AD
    /// principals, `user@suffix` for external users, any text for external groups.
    pub(crate) fn accepts_name(self, name: &str) -> bool {
        if name.trim().is_empty() || name.chars().any(char::is_control) {
            return false;
        }
        match self {
            AccountType::User | AccountType::Group => name
                .split_once('\\')
                .is_some_and(|(d, n)| !d.trim().is_empty() && !n.trim().is_empty()),
            AccountType::ExternalUser => name
                .split_once('@')
                .is_some_and(|(u, s)| !u.is_empty() && !s.is_empty()),
            AccountType::ExternalGroup => true,
        }
    }
}

/// Whether a scope has been taken into account by a scope rebuild.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScopeState {
    /// Created, not yet rebuilt.
    Unprocessed,
    /// Rebuilt.
    Processed,
}

impl ScopeState {
    /// EM's spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ScopeState::Unprocessed => "Unprocessed",
            ScopeState::Processed => "Processed",
        }
    }
}

/// A restore scope of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scope {
    /// Its own GUID.
    pub id: Uuid,
    /// The object's name (`ObjectName` at creation).
    pub name: String,
    /// The ref it was created from.
    pub obj_ref: String,
    /// The ref's parts.
    pub parsed: ObjRef,
    /// Rebuild state.
    pub state: ScopeState,
}

impl Scope {
    /// A scope for `obj_ref`, which must parse.
    pub(crate) fn new(
        id: Uuid,
        obj_ref: &str,
        name: &str,
        state: ScopeState,
    ) -> Result<Scope, String> {
        Ok(Scope {
            id,
            name: name.trim().to_owned(),
            obj_ref: obj_ref.trim().to_owned(),
            parsed: parse_obj_ref(obj_ref)?,
            state,
        })
    }
}

/// An EM account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Account {
    /// Its GUID.
    pub id: Uuid,
    /// `DOMAIN\name`, as stored.
    pub name: String,
    /// User, Group, ...
    pub account_type: AccountType,
    /// "Restore scope: All virtual machines".
    pub allow_restore_all_vms: bool,
    /// Role GUIDs, in assignment order.
    pub roles: Vec<Uuid>,
    /// Scopes, in creation order.
    pub scopes: Vec<Scope>,
    /// `FlrSettings/FlrInplaceOnly` (fixed at creation).
    pub flr_inplace_only: bool,
    /// `FlrSettings/FlrExtentionRestrictions` (fixed at creation).
    pub flr_extension_restrictions: Option<String>,
    /// `SqlSettings/DenyInPlaceRestore` (fixed at creation).
    pub sql_deny_in_place_restore: bool,
}

impl Account {
    /// An account with default file-level and SQL settings.
    pub(crate) fn new(
        id: Uuid,
        name: &str,
        account_type: AccountType,
        roles: Vec<Uuid>,
        allow_restore_all_vms: bool,
        scopes: Vec<Scope>,
    ) -> Account {
        Account {
            id,
            name: name.to_owned(),
            account_type,
            allow_restore_all_vms,
            roles,
            scopes,
            flr_inplace_only: false,
            flr_extension_restrictions: None,
            sql_deny_in_place_restore: false,
        }
    }

    fn snapshot(&self) -> AccountSnapshot {
        AccountSnapshot {
            id: self.id,
            name: self.name.clone(),
            account_type: self.account_type.as_str().to_owned(),
            allow_restore_all_vms: self.allow_restore_all_vms,
            roles: self
                .roles
                .iter()
                .filter_map(|id| role_by_id(*id))
                .map(|r| RoleSnapshot {
                    id: r.id,
                    name: r.name.to_owned(),
                })
                .collect(),
            scopes: self
                .scopes
                .iter()
                .map(|s| ScopeSnapshot {
                    id: s.id,
                    name: s.name.clone(),
                    obj_ref: s.obj_ref.clone(),
                    state: s.state.as_str().to_owned(),
                })
                .collect(),
        }
    }
}

/// A logon the emulator accepts.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct User {
    /// The logon name.
    pub name: String,
    /// The password.
    pub password: String,
    /// The EM role it holds; none means it may not log on.
    pub role: Option<Uuid>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A logon session.
#[derive(Clone)]
pub(crate) struct Session {
    /// `SessionId`, the id in `/logonSessions/{id}`.
    pub id: Uuid,
    /// The opaque `X-RestSvcSessionId` token.
    pub token: String,
    /// The logged-on user's name.
    pub user: String,
    /// Whether the user is a Portal Administrator.
    pub admin: bool,
    /// When the session was last used.
    pub last_used: Instant,
    /// Requests accepted with it.
    pub uses: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a credential; it stays out of Debug output.
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("admin", &self.admin)
            .field("uses", &self.uses)
            .finish_non_exhaustive()
    }
}

/// What a handler needs to know about the caller's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The session's id.
    pub session_id: Uuid,
    /// The user's name.
    pub user: String,
    /// Whether the user is a Portal Administrator.
    pub admin: bool,
}

/// A finished scope-rebuild task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TaskRecord {
    /// `task-<n>`.
    pub id: String,
}

/// The request a mutation came from, for the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The method.
    pub method: String,
    /// The path and query as received.
    pub path: String,
}

/// Options fixed at start.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// Idle time after which a session expires.
    pub idle_timeout: Duration,
    /// Answer 201 instead of 400 when a held role is assigned again.
    pub duplicate_role_ok: bool,
    /// The status of a successful scope POST: 201, or 202 as one docs page says.
    pub scope_post_status: StatusCode,
}

/// The emulator's whole mutable state.
pub(crate) struct State {
    /// Fixed options.
    pub options: Options,
    /// Accounts, in creation order.
    pub accounts: Vec<Account>,
    /// Each account's position in `accounts`, by id. Every request names its account by id,
    /// and a linear search made the emulator itself the bottleneck of large runs.
    index: HashMap<Uuid, usize>,
    /// Logons.
    pub users: Vec<User>,
    /// Live sessions.
    pub sessions: Vec<Session>,
    /// Every token handed out.
    pub tokens_issued: Vec<String>,
    /// Applied mutations.
    pub journal: Vec<JournalEntry>,
    /// Received `/api` requests.
    pub requests: Vec<RequestRecord>,
    /// Finished rebuild tasks.
    pub tasks: Vec<TaskRecord>,
    /// Injected faults and their dice.
    pub faults: FaultState,
}

impl State {
    /// A state holding `accounts` and `users`.
    pub(crate) fn new(
        options: Options,
        accounts: Vec<Account>,
        users: Vec<User>,
        faults: Faults,
    ) -> State {
        let index = positions(&accounts);
        State {
            options,
            accounts,
            index,
            users,
            sessions: Vec::new(),
            tokens_issued: Vec::new(),
            journal: Vec::new(),
            requests: Vec::new(),
            tasks: Vec::new(),
            faults: FaultState::new(faults),
        }
    }

    /// Every account now.
    pub(crate) fn snapshot(&self) -> StateSnapshot {
        StateSnapshot {
            accounts: self.accounts.iter().map(Account::snapshot).collect(),
        }
    }

    fn journal(&mut self, origin: &Origin, account: Option<Uuid>, effect: Effect) {
        let seq = self.journal.len() as u64 + 1;
        self.journal.push(JournalEntry {
            seq,
            method: origin.method.clone(),
            path: origin.path.clone(),
            account,
            effect,
        });
    }

    // --- sessions ---------------------------------------------------------------------------

    /// Checks a Basic logon and opens a session. Unknown users, wrong passwords and users
    /// without an EM role all get the same 401, as EM does not say which part was wrong.
    pub(crate) fn logon(
        &mut self,
        user: &str,
        password: &str,
        now: Instant,
    ) -> Result<Session, ApiError> {
        let found = self
            .users
            .iter()
            .find(|u| u.name.eq_ignore_ascii_case(user) && u.password == password)
            .filter(|u| u.role.is_some())
            .cloned()
            .ok_or_else(|| {
                ApiError::unauthorized("Authentication failed: invalid user name or password")
            })?;
        let mut raw = [0u8; 16];
        rand::rng().fill(&mut raw);
        let token = base64::engine::general_purpose::STANDARD.encode(raw);
        let session = Session {
            id: Uuid::new_v4(),
            token: token.clone(),
            user: found.name.clone(),
            admin: found.role == Some(PORTAL_ADMINISTRATOR),
            last_used: now,
            uses: 0,
        };
        self.tokens_issued.push(token);
        self.sessions.push(session.clone());
        Ok(session)
    }

    /// Drops sessions idle for longer than the timeout.
    pub(crate) fn prune_sessions(&mut self, now: Instant) {
        let timeout = self.options.idle_timeout;
        self.sessions
            .retain(|s| now.saturating_duration_since(s.last_used) <= timeout);
    }

    /// Accepts a request made with `token`: the session must exist, not be idle too long, and
    /// not have used up its request allowance (the `expire_after` fault). Each accepted
    /// request resets the idle clock.
    pub(crate) fn authenticate(
        &mut self,
        token: Option<&str>,
        now: Instant,
    ) -> Result<Caller, ApiError> {
        let token = token.ok_or_else(|| {
            ApiError::unauthorized("Authentication required: send the X-RestSvcSessionId header")
        })?;
        self.prune_sessions(now);
        let expire_after = self.faults.faults().expire_after;
        let at = self
            .sessions
            .iter()
            .position(|s| s.token == token)
            .ok_or_else(|| {
                ApiError::unauthorized("The session has expired or does not exist; log on again")
            })?;
        if expire_after.is_some_and(|n| self.sessions[at].uses >= n) {
            self.sessions.remove(at);
            return Err(ApiError::unauthorized(
                "The session has expired; log on again",
            ));
        }
        let session = &mut self.sessions[at];
        session.uses += 1;
        session.last_used = now;
        Ok(Caller {
            session_id: session.id,
            user: session.user.clone(),
            admin: session.admin,
        })
    }

    /// The live session with this id.
    pub(crate) fn session(&self, id: Uuid) -> Result<&Session, ApiError> {
        self.sessions
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| ApiError::not_found(format!("Logon session {id} was not found")))
    }

    /// Ends the session with this id.
    pub(crate) fn logout(&mut self, id: Uuid) -> Result<(), ApiError> {
        let at = self
            .sessions
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(|| ApiError::not_found(format!("Logon session {id} was not found")))?;
        self.sessions.remove(at);
        Ok(())
    }

    // --- accounts ---------------------------------------------------------------------------

    /// The account with this id.
    pub(crate) fn account(&self, id: Uuid) -> Result<&Account, ApiError> {
        self.position(id).map(|at| &self.accounts[at])
    }

    fn account_mut(&mut self, id: Uuid) -> Result<&mut Account, ApiError> {
        self.position(id).map(|at| &mut self.accounts[at])
    }

    /// The position of the account with this id in `accounts`.
    fn position(&self, id: Uuid) -> Result<usize, ApiError> {
        self.index
            .get(&id)
            .copied()
            .ok_or_else(|| account_not_found(id))
    }

    /// Creates an account from a spec, after checking every rule; returns its id.
    pub(crate) fn create_account(
        &mut self,
        spec: &AccountSpec,
        origin: &Origin,
    ) -> Result<Uuid, ApiError> {
        let account_type = AccountType::parse(&spec.account_type).ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid AccountType {:?}; expected User, Group, ExternalUser or ExternalGroup",
                spec.account_type
            ))
        })?;
        let name = spec.name.trim();
        if !account_type.accepts_name(name) {
            return Err(ApiError::bad_request(format!(
                "invalid AccountName {name:?} for an account of type {}",
                account_type.as_str()
            )));
        }
        if self
            .accounts
            .iter()
            .any(|a| a.name.eq_ignore_ascii_case(name))
        {
            return Err(ApiError::bad_request(format!(
                "Account {name} already exists"
            )));
        }
        if spec.role_uids.is_empty() {
            return Err(ApiError::bad_request("at least one role is required"));
        }
        let mut roles = Vec::new();
        for uid in &spec.role_uids {
            let role = known_role(uid)?;
            if !roles.contains(&role.id) {
                roles.push(role.id);
            }
        }
        let scopes = new_scopes(&[], &spec.scopes)?;
        if !spec.allow_restore_all_vms && scopes.is_empty() {
            return Err(ApiError::bad_request(
                "AllowRestoreAllVms is false, so at least one HierarchyScopeItem is required",
            ));
        }
        let id = Uuid::new_v4();
        let mut account = Account::new(
            id,
            name,
            account_type,
            roles,
            spec.allow_restore_all_vms,
            scopes,
        );
        account.flr_inplace_only = spec.flr_inplace_only;
        account.flr_extension_restrictions = spec.flr_extension_restrictions.clone();
        account.sql_deny_in_place_restore = spec.sql_deny_in_place_restore;
        self.index.insert(id, self.accounts.len());
        self.accounts.push(account);
        self.journal(
            origin,
            Some(id),
            Effect::AccountCreated {
                name: name.to_owned(),
            },
        );
        Ok(id)
    }

    /// Deletes an account.
    pub(crate) fn delete_account(&mut self, id: Uuid, origin: &Origin) -> Result<(), ApiError> {
        let at = self.position(id)?;
        let account = self.accounts.remove(at);
        // Deletions are rare, so renumbering the accounts after it is cheap enough.
        self.index.remove(&id);
        for (n, a) in self.accounts.iter().enumerate().skip(at) {
            self.index.insert(a.id, n);
        }
        self.journal(
            origin,
            Some(id),
            Effect::AccountDeleted { name: account.name },
        );
        Ok(())
    }

    /// Flips "restore all VMs"; scopes are left alone.
    pub(crate) fn toggle_restore_all_vms(
        &mut self,
        id: Uuid,
        origin: &Origin,
    ) -> Result<bool, ApiError> {
        let account = self.account_mut(id)?;
        account.allow_restore_all_vms = !account.allow_restore_all_vms;
        let now = account.allow_restore_all_vms;
        self.journal(origin, Some(id), Effect::RestoreAllVmsToggled { now });
        Ok(now)
    }

    // --- roles ------------------------------------------------------------------------------

    /// Assigns a role by UID. A role the account already holds is refused with 400 unless
    /// `duplicate_role_ok`, which accepts it without change; `Ok(false)` then.
    pub(crate) fn assign_role(
        &mut self,
        id: Uuid,
        uid: &str,
        origin: &Origin,
    ) -> Result<bool, ApiError> {
        let duplicate_ok = self.options.duplicate_role_ok;
        let account = self.account_mut(id)?;
        let role = known_role(uid)?;
        if account.roles.contains(&role.id) {
            return if duplicate_ok {
                Ok(false)
            } else {
                Err(ApiError::bad_request(format!(
                    "The role {} is already assigned to account {}",
                    role.name, account.name
                )))
            };
        }
        account.roles.push(role.id);
        self.journal(origin, Some(id), Effect::RoleAssigned { role_id: role.id });
        Ok(true)
    }

    /// Removes a role; never the last one.
    pub(crate) fn remove_role(
        &mut self,
        id: Uuid,
        role_id: Uuid,
        origin: &Origin,
    ) -> Result<(), ApiError> {
        let account = self.account_mut(id)?;
        let at = account
            .roles
            .iter()
            .position(|r| *r == role_id)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "Role {role_id} is not assigned to account {}",
                    account.name
                ))
            })?;
        if account.roles.len() == 1 {
            let role = role_by_id(role_id).map_or("?", |r| r.name);
            return Err(ApiError::bad_request(format!(
                "cannot remove the last role of account {} ({role}); an account must hold at least one role",
                account.name
            )));
        }
        account.roles.remove(at);
        self.journal(origin, Some(id), Effect::RoleRemoved { role_id });
        Ok(())
    }

    // --- scopes -----------------------------------------------------------------------------

    /// Creates one scope per item, each with its own GUID, all or none.
    pub(crate) fn add_scopes(
        &mut self,
        id: Uuid,
        items: &[ScopeItem],
        origin: &Origin,
    ) -> Result<Vec<Uuid>, ApiError> {
        let account = self.account_mut(id)?;
        let scopes = new_scopes(&account.scopes, items)?;
        let added: Vec<(Uuid, String)> = scopes.iter().map(|s| (s.id, s.obj_ref.clone())).collect();
        account.scopes.extend(scopes);
        for (scope_id, obj_ref) in &added {
            self.journal(
                origin,
                Some(id),
                Effect::ScopeAdded {
                    scope_id: *scope_id,
                    obj_ref: obj_ref.clone(),
                },
            );
        }
        Ok(added.into_iter().map(|(s, _)| s).collect())
    }

    /// Removes a scope.
    pub(crate) fn remove_scope(
        &mut self,
        id: Uuid,
        scope_id: Uuid,
        origin: &Origin,
    ) -> Result<(), ApiError> {
        let account = self.account_mut(id)?;
        let at = account
            .scopes
            .iter()
            .position(|s| s.id == scope_id)
            .ok_or_else(|| scope_not_found(scope_id))?;
        account.scopes.remove(at);
        self.journal(origin, Some(id), Effect::ScopeRemoved { scope_id });
        Ok(())
    }

    /// Runs a scope rebuild at once and records its task; returns the task.
    pub(crate) fn rebuild(
        &mut self,
        mode: RebuildMode,
        caller: &Caller,
        origin: &Origin,
    ) -> TaskRecord {
        let mut processed = 0u64;
        for account in &mut self.accounts {
            if mode == RebuildMode::ForCurrentUser
                && !account.name.eq_ignore_ascii_case(&caller.user)
            {
                continue;
            }
            for scope in &mut account.scopes {
                if scope.state == ScopeState::Unprocessed {
                    processed += 1;
                }
                scope.state = ScopeState::Processed;
            }
        }
        let task = TaskRecord {
            id: format!("task-{}", self.tasks.len() + 1),
        };
        self.tasks.push(task.clone());
        self.journal(origin, None, Effect::ScopesRebuilt { processed });
        task
    }

    /// A finished task.
    pub(crate) fn task(&self, id: &str) -> Result<&TaskRecord, ApiError> {
        self.tasks
            .iter()
            .find(|t| t.id.eq_ignore_ascii_case(id))
            .ok_or_else(|| ApiError::not_found(format!("Task {id} was not found")))
    }
}

/// Each account's position, by id.
fn positions(accounts: &[Account]) -> HashMap<Uuid, usize> {
    accounts
        .iter()
        .enumerate()
        .map(|(n, a)| (a.id, n))
        .collect()
}

fn account_not_found(id: Uuid) -> ApiError {
    ApiError::not_found(format!("Account {id} was not found"))
}

/// 404 for a scope the account does not have.
pub(crate) fn scope_not_found(id: Uuid) -> ApiError {
    ApiError::not_found(format!("Scope {id} was not found"))
}

/// A role UID naming one of the seven roles; anything else is a 400, since it is the body
/// that is wrong, not the URL.
fn known_role(uid: &str) -> Result<RoleDef, ApiError> {
    let id = role_uid(uid)?;
    role_by_id(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Role {uid} does not exist"),
        )
    })
}

/// New `Unprocessed` scopes for `items`, refusing malformed refs, empty names, and refs the
/// account (or an earlier item) already covers.
fn new_scopes(existing: &[Scope], items: &[ScopeItem]) -> Result<Vec<Scope>, ApiError> {
    let mut out: Vec<Scope> = Vec::new();
    for item in items {
        if item.name.trim().is_empty() {
            return Err(ApiError::bad_request(format!(
                "ObjectName is required for {}",
                item.obj_ref
            )));
        }
        let scope = Scope::new(
            Uuid::new_v4(),
            &item.obj_ref,
            &item.name,
            ScopeState::Unprocessed,
        )
        .map_err(ApiError::bad_request)?;
        if existing
            .iter()
            .chain(out.iter())
            .any(|s| s.obj_ref.eq_ignore_ascii_case(&scope.obj_ref))
        {
            return Err(ApiError::bad_request(format!(
                "The account already has a restore scope for {}",
                scope.obj_ref
            )));
        }
        out.push(scope);
    }
    Ok(out)
}

/// The state shared by every connection: the listener's scheme and address, and the state.
pub(crate) struct Shared {
    /// `http` or `https`, for building `Href`s.
    pub scheme: &'static str,
    /// The listening address, for `Href`s when a request has no `Host`.
    pub local_addr: SocketAddr,
    state: Mutex<State>,
}

impl Shared {
    /// Shares `state`.
    pub(crate) fn new(scheme: &'static str, local_addr: SocketAddr, state: State) -> Shared {
        Shared {
            scheme,
            local_addr,
            state: Mutex::new(state),
        }
    }

    /// Locks the state. A handler that panicked while holding the lock left the data
    /// consistent (every rule is checked before anything changes), so a poisoned lock is
    /// taken over rather than failing every later request.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            method: "POST".into(),
            path: "/api/x".into(),
        }
    }

    fn state(faults: Faults) -> State {
        let account = Account::new(
            Uuid::from_u128(1),
            "TECH\\a",
            AccountType::User,
            vec![ROLES[0].id],
            true,
            Vec::new(),
        );
        let users = vec![User {
            name: "admin".into(),
            password: "pw".into(),
            role: Some(PORTAL_ADMINISTRATOR),
        }];
        State::new(
            Options {
                idle_timeout: Duration::from_secs(60),
                duplicate_role_ok: false,
                scope_post_status: StatusCode::CREATED,
            },
            vec![account],
            users,
            faults,
        )
    }

    #[test]
    fn role_table_is_complete() {
        assert_eq!(role_by_name("vm restore operator").unwrap().id, ROLES[6].id);
        assert_eq!(
            role_by_id(PORTAL_ADMINISTRATOR).unwrap().name,
            "Portal Administrator"
        );
        let mut ids: Vec<Uuid> = ROLES.iter().map(|r| r.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), 7);
    }

    #[test]
    fn tokens_are_opaque_and_sessions_expire_when_idle_or_used_up() {
        let mut st = state(Faults {
            expire_after: Some(2),
            ..Faults::default()
        });
        let t0 = Instant::now();
        assert_eq!(st.logon("admin", "bad", t0).unwrap_err().status, 401);
        let s = st.logon("ADMIN", "pw", t0).unwrap();
        assert_ne!(s.token, s.id.to_string());
        assert_eq!(s.token.len(), 24);
        assert!(st.authenticate(Some(&s.token), t0).unwrap().admin);
        st.authenticate(Some(&s.token), t0).unwrap();
        assert_eq!(st.authenticate(Some(&s.token), t0).unwrap_err().status, 401);
        assert!(st.sessions.is_empty());

        let s = st.logon("admin", "pw", t0).unwrap();
        let late = t0 + Duration::from_secs(61);
        assert_eq!(
            st.authenticate(Some(&s.token), late).unwrap_err().status,
            401
        );
        assert_eq!(st.authenticate(None, late).unwrap_err().status, 401);
    }

    #[test]
    fn accounts_are_found_by_id_after_creations_and_deletions() {
        let mut st = state(Faults::default());
        let spec = |name: &str| AccountSpec {
            account_type: "User".into(),
            name: name.into(),
            role_uids: vec![format!("urn:veeam:EnterpriseRole:{}", ROLES[0].id)],
            allow_restore_all_vms: true,
            scopes: Vec::new(),
            flr_inplace_only: false,
            flr_extension_restrictions: None,
            sql_deny_in_place_restore: false,
        };
        let b = st.create_account(&spec("TECH\\b"), &origin()).unwrap();
        let c = st.create_account(&spec("TECH\\c"), &origin()).unwrap();
        st.delete_account(Uuid::from_u128(1), &origin()).unwrap();
        assert_eq!(st.account(b).unwrap().name, "TECH\\b");
        assert_eq!(st.account(c).unwrap().name, "TECH\\c");
        assert_eq!(
            st.account(Uuid::from_u128(1)).unwrap_err().status,
            StatusCode::NOT_FOUND
        );
        st.delete_account(b, &origin()).unwrap();
        assert_eq!(st.account(c).unwrap().name, "TECH\\c");
        let d = st.create_account(&spec("TECH\\d"), &origin()).unwrap();
        st.toggle_restore_all_vms(d, &origin()).unwrap();
        assert!(!st.account(d).unwrap().allow_restore_all_vms);
        assert!(st.account(c).unwrap().allow_restore_all_vms);
    }

    #[test]
    fn the_last_role_stays_and_duplicates_are_refused() {
        let mut st = state(Faults::default());
        let id = Uuid::from_u128(1);
        let e = st.remove_role(id, ROLES[0].id, &origin()).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("last role"));
        let uid = format!("urn:veeam:EnterpriseRole:{}", ROLES[0].id);
        assert_eq!(st.assign_role(id, &uid, &origin()).unwrap_err().status, 400);
        st.options.duplicate_role_ok = true;
        assert!(!st.assign_role(id, &uid, &origin()).unwrap());
        assert!(st.journal.is_empty());
        let vm = format!("urn:veeam:EnterpriseRole:{}", ROLES[6].id);
        assert!(st.assign_role(id, &vm, &origin()).unwrap());
        st.remove_role(id, ROLES[0].id, &origin()).unwrap();
        assert_eq!(
            st.remove_role(id, ROLES[0].id, &origin())
                .unwrap_err()
                .status,
            404
        );
        assert_eq!(st.journal.len(), 2);
        assert_eq!(st.journal[1].seq, 2);
        let unknown = format!("urn:veeam:EnterpriseRole:{}", Uuid::from_u128(9));
        assert_eq!(
            st.assign_role(id, &unknown, &origin()).unwrap_err().status,
            400
        );
        assert_eq!(
            st.assign_role(Uuid::from_u128(2), &vm, &origin())
                .unwrap_err()
                .status,
            404
        );
    }

    #[test]
    fn scopes_are_added_all_or_none_and_rebuilt() {
        let mut st = state(Faults::default());
        let id = Uuid::from_u128(1);
        let item = |r: &str| ScopeItem {
            obj_ref: r.into(),
            name: "n".into(),
        };
        let bad = st.add_scopes(id, &[item("urn:VMware:Vm:r.vm-1"), item("nope")], &origin());
        assert_eq!(bad.unwrap_err().status, 400);
        assert!(st.accounts[0].scopes.is_empty());
        let added = st
            .add_scopes(
                id,
                &[item("urn:VMware:Vm:r.vm-1"), item("urn:VMware:Vm:r.vm-2")],
                &origin(),
            )
            .unwrap();
        assert_eq!(added.len(), 2);
        assert_ne!(added[0], added[1]);
        assert_eq!(
            st.add_scopes(id, &[item("urn:VMware:Vm:r.vm-1")], &origin())
                .unwrap_err()
                .status,
            400
        );
        let caller = Caller {
            session_id: Uuid::nil(),
            user: "admin".into(),
            admin: true,
        };
        st.rebuild(RebuildMode::ForCurrentUser, &caller, &origin());
        assert_eq!(st.accounts[0].scopes[0].state, ScopeState::Unprocessed);
        let task = st.rebuild(RebuildMode::Unprocessed, &caller, &origin());
        assert_eq!(task.id, "task-2");
        assert!(
            st.accounts[0]
                .scopes
                .iter()
                .all(|s| s.state == ScopeState::Processed)
        );
        assert_eq!(
            st.journal.last().unwrap().effect,
            Effect::ScopesRebuilt { processed: 2 }
        );
        st.remove_scope(id, added[0], &origin()).unwrap();
        assert_eq!(
            st.remove_scope(id, added[0], &origin()).unwrap_err().status,
            404
        );
    }

    #[test]
    fn create_checks_every_rule() {
        let mut st = state(Faults::default());
        let role = format!("urn:veeam:EnterpriseRole:{}", ROLES[0].id);
        let spec = AccountSpec {
            account_type: "User".into(),
            name: "TECH\\new".into(),
            role_uids: vec![role.clone()],
            allow_restore_all_vms: false,
            scopes: Vec::new(),
            flr_inplace_only: false,
            flr_extension_restrictions: None,
            sql_deny_in_place_restore: false,
        };
        assert!(
            st.create_account(&spec, &origin())
                .unwrap_err()
                .message
                .contains("HierarchyScopeItem")
        );
        let bad_type = AccountSpec {
            account_type: "Robot".into(),
            ..spec.clone()
        };
        assert_eq!(
            st.create_account(&bad_type, &origin()).unwrap_err().status,
            400
        );
        let bad_name = AccountSpec {
            name: "nodomain".into(),
            allow_restore_all_vms: true,
            ..spec.clone()
        };
        assert_eq!(
            st.create_account(&bad_name, &origin()).unwrap_err().status,
            400
        );
        let no_roles = AccountSpec {
            role_uids: Vec::new(),
            allow_restore_all_vms: true,
            ..spec.clone()
        };
        assert_eq!(
            st.create_account(&no_roles, &origin()).unwrap_err().status,
            400
        );
        let ok = AccountSpec {
            allow_restore_all_vms: true,
            ..spec.clone()
        };
        let id = st.create_account(&ok, &origin()).unwrap();
        assert_eq!(st.account(id).unwrap().roles, vec![ROLES[0].id]);
        let dup = AccountSpec {
            name: "tech\\NEW".into(),
            ..ok
        };
        assert!(
            st.create_account(&dup, &origin())
                .unwrap_err()
                .message
                .contains("already exists")
        );
        st.delete_account(id, &origin()).unwrap();
        assert_eq!(st.delete_account(id, &origin()).unwrap_err().status, 404);
    }
}
