//! What the emulator shows of itself, through `/_emulator` and [`RunningEmulator`]: snapshots
//! of every account, the journal of applied changes, and the record of received requests.
//!
//! [`RunningEmulator`]: super::RunningEmulator

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A role an account holds, in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSnapshot {
    /// The role's GUID.
    pub id: Uuid,
    /// The role's name.
    pub name: String,
}

/// A scope, in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeSnapshot {
    /// The scope's GUID.
    pub id: Uuid,
    /// The object's name.
    pub name: String,
    /// The hierarchy object ref it was created from.
    pub obj_ref: String,
    /// `Unprocessed` or `Processed`.
    pub state: String,
}

/// One account, in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSnapshot {
    /// The account's GUID.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// User, Group, ...
    pub account_type: String,
    /// "Restore scope: All virtual machines".
    pub allow_restore_all_vms: bool,
    /// Roles, in assignment order.
    pub roles: Vec<RoleSnapshot>,
    /// Scopes, in creation order.
    pub scopes: Vec<ScopeSnapshot>,
}

/// Every account (`GET /_emulator/state`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSnapshot {
    /// Accounts, in creation order.
    pub accounts: Vec<AccountSnapshot>,
}

/// What a mutation did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    /// A role was assigned.
    RoleAssigned {
        /// The role.
        role_id: Uuid,
    },
    /// A role was removed.
    RoleRemoved {
        /// The role.
        role_id: Uuid,
    },
    /// A scope was created.
    ScopeAdded {
        /// The new scope.
        scope_id: Uuid,
        /// Its object ref.
        obj_ref: String,
    },
    /// A scope was removed.
    ScopeRemoved {
        /// The scope.
        scope_id: Uuid,
    },
    /// The restore-all-VMs flag was flipped.
    RestoreAllVmsToggled {
        /// Its new value.
        now: bool,
    },
    /// An account was created.
    AccountCreated {
        /// Its name.
        name: String,
    },
    /// An account was deleted.
    AccountDeleted {
        /// Its name.
        name: String,
    },
    /// A scope rebuild ran.
    ScopesRebuilt {
        /// Scopes moved to `Processed`.
        processed: u64,
    },
}

/// One applied mutation (`GET /_emulator/journal`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Order of application, from 1.
    pub seq: u64,
    /// The request's method.
    pub method: String,
    /// The request's path.
    pub path: String,
    /// The account it touched, if one.
    pub account: Option<Uuid>,
    /// What it did.
    pub effect: Effect,
}

/// One request the emulator received (`GET /_emulator/requests`); `/_emulator` itself is not
/// recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Order of arrival, from 1.
    pub seq: u64,
    /// The method.
    pub method: String,
    /// The path and query.
    pub path: String,
    /// The status answered; none when the connection was dropped.
    pub status: Option<u16>,
    /// Whether the connection was dropped without an answer.
    pub dropped: bool,
}
