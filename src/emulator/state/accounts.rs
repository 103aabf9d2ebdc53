//! Accounts: their data, and the rules for creating and deleting them, flipping their
//! restore-all-VMs flag, and assigning and removing their roles.
//!
//! Every request names its account by id, so accounts are found through the state's index,
//! which creating and deleting keep in step with the list.

use uuid::Uuid;

use super::roles::{known_role, role_by_id};
use super::scopes::{Scope, new_scopes};
use super::{Origin, State};
use crate::emulator::body::AccountSpec;
use crate::emulator::wire::ApiError;
use crate::emulator::{AccountSnapshot, Effect, RoleSnapshot, ScopeSnapshot};

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

    pub(super) fn snapshot(&self) -> AccountSnapshot {
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

impl State {
    /// The account with this id.
    pub(crate) fn account(&self, id: Uuid) -> Result<&Account, ApiError> {
        self.position(id).map(|at| &self.accounts[at])
    }

    pub(super) fn account_mut(&mut self, id: Uuid) -> Result<&mut Account, ApiError> {
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

    // --- an account's roles -----------------------------------------------------------------

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
}

fn account_not_found(id: Uuid) -> ApiError {
    ApiError::not_found(format!("Account {id} was not found"))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::super::fixtures::{origin, state};
    use super::super::roles::ROLES;
    use super::*;
    use crate::emulator::Faults;

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
