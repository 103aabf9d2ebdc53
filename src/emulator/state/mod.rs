//! The emulated EM's data (roles, accounts, scopes, logons, sessions) and every rule a change
//! must pass, plus the journal of applied changes and the record of received requests.
//!
//! Everything lives in one [`State`] behind one lock ([`Shared`]), so a request that touches an
//! account sees and changes it atomically. Methods here are synchronous and never wait; the
//! lock is never held across an `await`.
//!
//! This file holds the state as a whole, its journal and its lock. Each resource has a file of
//! its own, with its data and the `impl State` block of its rules: `roles.rs` (the seven fixed
//! roles), `accounts.rs` (accounts and the roles they hold), `scopes.rs` (restore scopes and
//! rebuild tasks), `sessions.rs` (logons and sessions).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use uuid::Uuid;

use super::faults::FaultState;
use super::{Effect, Faults, JournalEntry, RequestRecord, StateSnapshot};

mod accounts;
mod roles;
mod scopes;
mod sessions;

pub(crate) use accounts::{Account, AccountType};
pub(crate) use roles::{PORTAL_ADMINISTRATOR, ROLES, RoleDef, role_by_id, role_by_name};
pub(crate) use scopes::{Scope, ScopeState, TaskRecord, scope_not_found};
pub(crate) use sessions::{Caller, Session, User};

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

    /// Records an applied mutation; each resource's rules call it once a change is made.
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
}

/// Each account's position, by id.
fn positions(accounts: &[Account]) -> HashMap<Uuid, usize> {
    accounts
        .iter()
        .enumerate()
        .map(|(n, a)| (a.id, n))
        .collect()
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

/// What the unit tests of every resource start from: one account, `TECH\a` (Portal User,
/// all VMs), and the Portal Administrator logon `admin` with password `pw`.
#[cfg(test)]
mod fixtures {
    use super::*;

    pub(super) fn origin() -> Origin {
        Origin {
            method: "POST".into(),
            path: "/api/x".into(),
        }
    }

    pub(super) fn state(faults: Faults) -> State {
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
}
