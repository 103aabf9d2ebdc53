//! An account's current access as the runner sees it, and the desired-state decision for each
//! plan row: already in place (no-op), a change to send, or a certain failure.
//!
//! Pure logic: `apply` and `check --online` both call [`decide`], so the preview and the run
//! can never disagree about what a row means.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::em::{Account, AccountRole, AccountType, FlrSettings, Scope, ScopeItem, SqlSettings};
use crate::plan::{Action, RoleRef, ScopeRef};

/// A role an account holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRole {
    /// The role's GUID (also the id of the assignment).
    pub id: Uuid,
    /// The role's name.
    pub name: String,
}

/// A restore scope an account has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldScope {
    /// The scope's own GUID.
    pub id: Uuid,
    /// The object's display name.
    pub name: String,
    /// `VMware`, `Hyperv`, `vCloud`, ...
    pub platform: String,
    /// `ResourcePool`, `Folder`, `Vm`, ...
    pub object_type: String,
    /// The hierarchy root (a GUID or a host name).
    pub root: String,
    /// The hierarchy object ref, when known. EM's scope listing does not show it, so it is
    /// only known for scopes this tool created or was told about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obj_ref: Option<String>,
}

/// What the runner knows of one account's access.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    /// The account's GUID.
    pub id: Uuid,
    /// The account's name as EM stores it.
    pub name: String,
    /// "Restore scope: All virtual machines".
    pub allow_restore_all_vms: bool,
    /// The roles it holds.
    pub roles: Vec<HeldRole>,
    /// Its restore scopes.
    pub scopes: Vec<HeldScope>,
    /// User, Group, ... (recorded so a deleted account can be re-created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_type: Option<AccountType>,
    /// File-level restore settings, fixed at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flr: Option<FlrSettings>,
    /// SQL restore settings, fixed at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<SqlSettings>,
}

impl AccountState {
    /// Builds the state from the three reads that describe an account.
    pub fn from_reads(account: &Account, roles: &[AccountRole], scopes: &[Scope]) -> Self {
        AccountState {
            id: account.id,
            name: account.name.clone(),
            allow_restore_all_vms: account.allow_restore_all_vms,
            roles: roles
                .iter()
                .map(|r| HeldRole {
                    id: r.role_id,
                    name: r.role_name.clone(),
                })
                .collect(),
            scopes: scopes.iter().map(HeldScope::from_em).collect(),
            account_type: Some(account.account_type),
            flr: account.flr.clone(),
            sql: account.sql.clone(),
        }
    }

    /// The same state with its scope list replaced by a fresh read.
    pub fn with_scopes(&self, scopes: &[Scope]) -> Self {
        AccountState {
            scopes: scopes.iter().map(HeldScope::from_em).collect(),
            ..self.clone()
        }
    }

    /// The state as compact JSON, for the audit log's prior-state column.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("account state always serializes")
    }

    /// Whether the effect of `change` is visible in this state.
    pub fn shows(&self, change: &Change) -> bool {
        match change {
            Change::AssignRole { role, .. } => self.roles.iter().any(|r| r.id == *role),
            Change::RemoveRole { role, .. } => !self.roles.iter().any(|r| r.id == *role),
            Change::AddScope { item } => self
                .find_scope_by_ref(&item.obj_ref, &item.object_name)
                .is_some(),
            Change::RemoveScope { scope, .. } => !self.scopes.iter().any(|s| s.id == *scope),
            Change::SetRestoreAllVms(value) => self.allow_restore_all_vms == *value,
            // A deleted account cannot be read: its absence is learnt from a 404.
            Change::DeleteAccount => false,
        }
    }

    /// Records `change` as done, after the server confirmed it.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::AssignRole { role, name, .. } => {
                if !self.roles.iter().any(|r| r.id == *role) {
                    self.roles.push(HeldRole {
                        id: *role,
                        name: name.clone(),
                    });
                }
            }
            Change::RemoveRole { role, .. } => self.roles.retain(|r| r.id != *role),
            // The new scope's id is only known from a fresh read; the caller replaces the
            // scope list with that read.
            Change::AddScope { .. } => {}
            Change::RemoveScope { scope, .. } => self.scopes.retain(|s| s.id != *scope),
            Change::SetRestoreAllVms(value) => self.allow_restore_all_vms = *value,
            Change::DeleteAccount => {}
        }
    }

    /// Records `change` as if it had been made, for a preview: unlike [`AccountState::apply`]
    /// it also adds a placeholder for a scope that would be created, so later rows of the
    /// preview see it.
    pub fn simulate(&mut self, change: &Change) {
        if let Change::AddScope { item } = change
            && let Some(parts) = ObjRefParts::parse(&item.obj_ref)
        {
            self.scopes.push(HeldScope {
                id: Uuid::nil(),
                name: item.object_name.clone(),
                platform: parts.platform.to_string(),
                object_type: parts.object_type.to_string(),
                root: parts.root.to_string(),
                obj_ref: Some(item.obj_ref.clone()),
            });
        }
        self.apply(change);
    }

    /// The scope that a given object ref and name would have produced, if present.
    ///
    /// EM's scope listing shows the platform, object type, hierarchy root and the object name,
    /// but not the object ref itself, so a scope counts as present when all four match.
    pub fn find_scope_by_ref(&self, obj_ref: &str, object_name: &str) -> Option<&HeldScope> {
        let parts = ObjRefParts::parse(obj_ref)?;
        self.scopes.iter().find(|s| {
            s.obj_ref.as_deref() == Some(obj_ref)
                || (s.platform.eq_ignore_ascii_case(parts.platform)
                    && s.object_type.eq_ignore_ascii_case(parts.object_type)
                    && s.root.eq_ignore_ascii_case(parts.root)
                    && s.name == object_name)
        })
    }
}

impl HeldScope {
    fn from_em(s: &Scope) -> Self {
        HeldScope {
            id: s.id,
            name: s.name.clone(),
            platform: s.platform.clone(),
            object_type: s.object_type.clone(),
            root: s.hierarchy_root_name.clone(),
            obj_ref: None,
        }
    }
}

/// The parts of a hierarchy object ref `urn:<Platform>:<ObjType>:<root>.<objref>`.
struct ObjRefParts<'a> {
    platform: &'a str,
    object_type: &'a str,
    root: &'a str,
}

impl<'a> ObjRefParts<'a> {
    fn parse(obj_ref: &'a str) -> Option<Self> {
        let mut parts = obj_ref.splitn(4, ':');
        let (urn, platform, object_type, rest) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if !urn.eq_ignore_ascii_case("urn") {
            return None;
        }
        let (root, _object) = rest.split_once('.')?;
        Some(ObjRefParts {
            platform,
            object_type,
            root,
        })
    }
}

/// The roles EM knows, from `GET /security/roles`.
#[derive(Clone, Debug, Default)]
pub struct RoleTable {
    roles: Vec<(Uuid, String)>,
}

impl RoleTable {
    /// A table of (GUID, name) pairs.
    pub fn new(roles: Vec<(Uuid, String)>) -> Self {
        RoleTable { roles }
    }

    /// Resolves a plan's role reference to the role's GUID and name.
    pub fn resolve(&self, role: &RoleRef) -> Option<(Uuid, String)> {
        match role {
            RoleRef::Id(id) => self.roles.iter().find(|(r, _)| r == id).cloned(),
            RoleRef::Name(name) => self
                .roles
                .iter()
                .find(|(_, n)| n.eq_ignore_ascii_case(name))
                .cloned(),
        }
    }
}

/// One write the runner sends for a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// POST /security/accounts/{id}/roles
    AssignRole {
        /// The role's GUID.
        role: Uuid,
        /// The role's name.
        name: String,
    },
    /// DELETE /security/accounts/{id}/roles/{role}
    RemoveRole {
        /// The role's GUID.
        role: Uuid,
        /// The role's name.
        name: String,
    },
    /// POST /security/accounts/{id}/scopes
    AddScope {
        /// The scope to create.
        item: ScopeItem,
    },
    /// DELETE /security/accounts/{id}/scopes/{scope}
    RemoveScope {
        /// The scope's GUID.
        scope: Uuid,
        /// The scope's name, for messages.
        name: String,
    },
    /// POST /security/accounts/{id}: the toggle, sent only when the value differs.
    SetRestoreAllVms(bool),
    /// DELETE /security/accounts/{id}
    DeleteAccount,
}

/// What an account must still show before `undo` changes it back: the effect of the row being
/// undone. If someone changed the account since, undoing blindly could destroy their work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "expect", rename_all = "snake_case")]
pub enum Guard {
    /// The account holds this role.
    Holds {
        /// The role's GUID.
        role: Uuid,
        /// Its name, for messages.
        name: String,
    },
    /// The account does not hold this role.
    Lacks {
        /// The role's GUID.
        role: Uuid,
        /// Its name, for messages.
        name: String,
    },
    /// The account has this scope.
    HasScope {
        /// The scope's GUID.
        scope: Uuid,
        /// Its name, for messages.
        name: String,
    },
    /// The account has no scope for this object.
    LacksScope {
        /// The hierarchy object ref.
        obj_ref: String,
        /// The object's name.
        name: String,
    },
    /// The account holds exactly these roles (undo of add-account: the ones the run gave it).
    RolesAre {
        /// The roles' GUIDs.
        roles: Vec<Uuid>,
    },
    /// No account of this name exists (undo of delete-account: nobody re-created it).
    Absent {
        /// The account's name.
        name: String,
    },
    /// Restore-all-VMs has this value.
    Flag {
        /// The value.
        value: bool,
    },
}

impl Guard {
    /// `Ok` when `state` still shows what the guard expects; else why not.
    pub fn check(&self, state: &AccountState) -> Result<(), String> {
        let holds = |role: &Uuid| state.roles.iter().any(|r| r.id == *role);
        let (ok, why) = match self {
            Guard::Holds { role, name } => (
                holds(role),
                format!("{} no longer holds {name}", state.name),
            ),
            Guard::Lacks { role, name } => {
                (!holds(role), format!("{} holds {name} again", state.name))
            }
            Guard::HasScope { scope, name } => (
                state.scopes.iter().any(|s| s.id == *scope),
                format!("{} no longer has scope {name} ({scope})", state.name),
            ),
            Guard::LacksScope { obj_ref, name } => (
                state.find_scope_by_ref(obj_ref, name).is_none(),
                format!("{} has scope {name} again", state.name),
            ),
            Guard::RolesAre { roles } => {
                let mut want = roles.clone();
                want.sort();
                let mut have: Vec<Uuid> = state.roles.iter().map(|r| r.id).collect();
                have.sort();
                (
                    want == have,
                    format!(
                        "{} holds other roles than the ones it was created with",
                        state.name
                    ),
                )
            }
            Guard::Absent { name } => (false, format!("an account {name} exists again")),
            Guard::Flag { value } => (
                state.allow_restore_all_vms == *value,
                format!(
                    "restore-all-vms of {} is {} again",
                    state.name,
                    if state.allow_restore_all_vms {
                        "on"
                    } else {
                        "off"
                    }
                ),
            ),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("changed since the undone run: {why}"))
        }
    }
}

/// What a row means against an account's current state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Already in place: nothing is sent.
    Noop(String),
    /// A change to send.
    Change(Change),
    /// The row cannot succeed; nothing is sent.
    Fail(String),
}

/// Decides what `action` needs, given the account's current `state`.
pub fn decide(action: &Action, roles: &RoleTable, state: &AccountState) -> Decision {
    match action {
        Action::AssignRole(role) => match roles.resolve(role) {
            None => Decision::Fail(format!("unknown role {}", describe_role(role))),
            Some((id, name)) if state.roles.iter().any(|r| r.id == id) => {
                Decision::Noop(format!("{} already holds {name}", state.name))
            }
            Some((role, name)) => Decision::Change(Change::AssignRole { role, name }),
        },
        Action::RemoveRole(role) => match roles.resolve(role) {
            None => Decision::Fail(format!("unknown role {}", describe_role(role))),
            Some((id, name)) if !state.roles.iter().any(|r| r.id == id) => {
                Decision::Noop(format!("{} does not hold {name}", state.name))
            }
            Some((_, name)) if state.roles.len() == 1 => Decision::Fail(format!(
                "would remove the last role of {} ({name}); EM refuses that",
                state.name
            )),
            Some((role, name)) => Decision::Change(Change::RemoveRole { role, name }),
        },
        Action::AddScope {
            obj_ref,
            object_name,
        } => {
            if ObjRefParts::parse(obj_ref).is_none() {
                return Decision::Fail(format!("malformed hierarchy object ref '{obj_ref}'"));
            }
            if state.find_scope_by_ref(obj_ref, object_name).is_some() {
                Decision::Noop(format!("{} already has scope {object_name}", state.name))
            } else {
                Decision::Change(Change::AddScope {
                    item: ScopeItem {
                        obj_ref: obj_ref.clone(),
                        object_name: object_name.clone(),
                    },
                })
            }
        }
        Action::RemoveScope(scope) => {
            let matches: Vec<&HeldScope> = match scope {
                ScopeRef::Id(id) => state.scopes.iter().filter(|s| s.id == *id).collect(),
                ScopeRef::Name(name) => state.scopes.iter().filter(|s| s.name == *name).collect(),
            };
            match matches.as_slice() {
                [] => Decision::Noop(format!("{} has no such scope", state.name)),
                [one] => Decision::Change(Change::RemoveScope {
                    scope: one.id,
                    name: one.name.clone(),
                }),
                many => Decision::Fail(format!(
                    "scope name is ambiguous: {} scopes of {} are called that; use the scope id",
                    many.len(),
                    state.name
                )),
            }
        }
        Action::RestoreAllVms(value) => {
            if state.allow_restore_all_vms == *value {
                Decision::Noop(format!(
                    "restore-all-vms is already {}",
                    if *value { "on" } else { "off" }
                ))
            } else {
                Decision::Change(Change::SetRestoreAllVms(*value))
            }
        }
        Action::AddAccount(kind) => match state.account_type {
            Some(existing) if existing != *kind => Decision::Fail(format!(
                "{} exists already, as {}, not {}",
                state.name,
                existing.as_str(),
                kind.as_str()
            )),
            _ => Decision::Noop(format!("{} exists already", state.name)),
        },
        Action::DeleteAccount => Decision::Change(Change::DeleteAccount),
    }
}

fn describe_role(role: &RoleRef) -> String {
    match role {
        RoleRef::Id(id) => id.to_string(),
        RoleRef::Name(name) => format!("'{name}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> AccountState {
        AccountState {
            id: Uuid::nil(),
            name: "TECH\\bob".into(),
            allow_restore_all_vms: true,
            roles: vec![HeldRole {
                id: Uuid::from_u128(1),
                name: "Portal User".into(),
            }],
            scopes: vec![HeldScope {
                id: Uuid::from_u128(9),
                name: "Finance".into(),
                platform: "VMware".into(),
                object_type: "ResourcePool".into(),
                root: "root1".into(),
                obj_ref: None,
            }],
            account_type: None,
            flr: None,
            sql: None,
        }
    }

    fn roles() -> RoleTable {
        RoleTable::new(vec![
            (Uuid::from_u128(1), "Portal User".into()),
            (Uuid::from_u128(2), "VM Restore Operator".into()),
        ])
    }

    #[test]
    fn role_rows() {
        let s = state();
        let assign_held = Action::AssignRole(RoleRef::Name("portal user".into()));
        assert!(matches!(
            decide(&assign_held, &roles(), &s),
            Decision::Noop(_)
        ));
        let assign_new = Action::AssignRole(RoleRef::Id(Uuid::from_u128(2)));
        assert_eq!(
            decide(&assign_new, &roles(), &s),
            Decision::Change(Change::AssignRole {
                role: Uuid::from_u128(2),
                name: "VM Restore Operator".into()
            })
        );
        let unknown = Action::AssignRole(RoleRef::Id(Uuid::from_u128(7)));
        assert!(
            matches!(decide(&unknown, &roles(), &s), Decision::Fail(m) if m.contains("unknown role"))
        );
        let remove_last = Action::RemoveRole(RoleRef::Id(Uuid::from_u128(1)));
        assert!(
            matches!(decide(&remove_last, &roles(), &s), Decision::Fail(m) if m.contains("last role of TECH\\bob"))
        );
    }

    #[test]
    fn scope_rows_match_on_visible_parts() {
        let s = state();
        let same = Action::AddScope {
            obj_ref: "urn:VMware:ResourcePool:root1.resgroup-5".into(),
            object_name: "Finance".into(),
        };
        assert!(matches!(decide(&same, &roles(), &s), Decision::Noop(_)));
        let other = Action::AddScope {
            obj_ref: "urn:VMware:ResourcePool:root1.resgroup-6".into(),
            object_name: "Sales".into(),
        };
        assert!(matches!(decide(&other, &roles(), &s), Decision::Change(_)));
        let by_name = Action::RemoveScope(ScopeRef::Name("Finance".into()));
        assert!(matches!(
            decide(&by_name, &roles(), &s),
            Decision::Change(Change::RemoveScope { .. })
        ));
        let missing = Action::RemoveScope(ScopeRef::Name("Nope".into()));
        assert!(matches!(decide(&missing, &roles(), &s), Decision::Noop(_)));
    }

    #[test]
    fn toggle_only_when_different() {
        let s = state();
        assert!(matches!(
            decide(&Action::RestoreAllVms(true), &roles(), &s),
            Decision::Noop(_)
        ));
        assert_eq!(
            decide(&Action::RestoreAllVms(false), &roles(), &s),
            Decision::Change(Change::SetRestoreAllVms(false))
        );
    }

    #[test]
    fn shows_and_apply_agree() {
        let mut s = state();
        let c = Change::AssignRole {
            role: Uuid::from_u128(2),
            name: "VM Restore Operator".into(),
        };
        assert!(!s.shows(&c));
        s.apply(&c);
        assert!(s.shows(&c));
        let t = Change::SetRestoreAllVms(false);
        assert!(!s.shows(&t));
        s.apply(&t);
        assert!(s.shows(&t));
    }
}
