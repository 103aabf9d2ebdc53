//! The rows a plan is made of: how a row names its account, role or scope ([`AccountRef`],
//! [`RoleRef`], [`ScopeRef`]), what it does ([`Action`]), one validated row ([`PlanRow`]), and
//! how many rows of each action a plan holds ([`Actions`]). Plain data: `scan` reads the rows,
//! `header` and `cells` give the cells their meaning.

use uuid::Uuid;

use crate::em::AccountType;

/// How a row names its account.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AccountRef {
    /// A GUID (bare or from `urn:veeam:EnterpriseAccount:<guid>`).
    Id(Uuid),
    /// A name such as `TECH\alice`, resolved through `GET /security/accounts`.
    Name(String),
}

/// How a row names a role.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RoleRef {
    /// A GUID (bare or from `urn:veeam:EnterpriseRole:<guid>`).
    Id(Uuid),
    /// A role name such as `Portal User`, matched case-insensitively.
    Name(String),
}

/// How a row names a scope to remove.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ScopeRef {
    /// The scope's GUID.
    Id(Uuid),
    /// The scope's (object) name.
    Name(String),
}

/// What a row does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `assign-role`
    AssignRole(RoleRef),
    /// `remove-role`
    RemoveRole(RoleRef),
    /// `add-scope`: a hierarchy object ref and its display name.
    AddScope {
        /// `urn:<Platform>:<Type>:<root>.<ref>`
        obj_ref: String,
        /// The object's display name (`object_name` column).
        object_name: String,
    },
    /// `remove-scope`
    RemoveScope(ScopeRef),
    /// `restore-all-vms`: on or off.
    RestoreAllVms(bool),
    /// `add-account`: create the account (named in the account column) with this type. The
    /// same account's assign-role, restore-all-vms and add-scope rows go into its create request.
    AddAccount(AccountType),
    /// `delete-account`: remove the account from EM (its full state is recorded first).
    DeleteAccount,
}

impl Action {
    /// The action's name as plans spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Action::AssignRole(_) => "assign-role",
            Action::RemoveRole(_) => "remove-role",
            Action::AddScope { .. } => "add-scope",
            Action::RemoveScope(_) => "remove-scope",
            Action::RestoreAllVms(_) => "restore-all-vms",
            Action::AddAccount(_) => "add-account",
            Action::DeleteAccount => "delete-account",
        }
    }

    /// The target as text (normalised: GUIDs lower-case, `on`/`off` for the flag).
    pub fn target_text(&self) -> String {
        match self {
            Action::AssignRole(RoleRef::Id(id)) | Action::RemoveRole(RoleRef::Id(id)) => {
                id.to_string()
            }
            Action::AssignRole(RoleRef::Name(name)) | Action::RemoveRole(RoleRef::Name(name)) => {
                name.clone()
            }
            Action::AddScope { obj_ref, .. } => obj_ref.clone(),
            Action::RemoveScope(ScopeRef::Id(id)) => id.to_string(),
            Action::RemoveScope(ScopeRef::Name(name)) => name.clone(),
            Action::RestoreAllVms(true) => "on".into(),
            Action::RestoreAllVms(false) => "off".into(),
            Action::AddAccount(kind) => kind.as_str().into(),
            Action::DeleteAccount => "confirm".into(),
        }
    }
}

/// One validated plan row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanRow {
    /// The physical line in the file (header = 1).
    pub line: u64,
    /// The account.
    pub account: AccountRef,
    /// The action and its target.
    pub action: Action,
    /// The change ticket, if given.
    pub ticket: Option<String>,
    /// A free-text comment, if given.
    pub comment: Option<String>,
    /// Extra columns (header, value), kept in the audit log; empty values left out.
    pub annotations: Vec<(String, String)>,
}

/// How many rows of each action a plan holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Actions {
    /// `add-account` rows.
    pub add_account: u64,
    /// `delete-account` rows.
    pub delete_account: u64,
    /// `assign-role` rows.
    pub assign_role: u64,
    /// `remove-role` rows.
    pub remove_role: u64,
    /// `add-scope` rows.
    pub add_scope: u64,
    /// `remove-scope` rows.
    pub remove_scope: u64,
    /// `restore-all-vms` rows.
    pub restore_all_vms: u64,
}

impl Actions {
    /// Counts one row of `action`.
    pub fn count(&mut self, action: &Action) {
        let n = match action {
            Action::AddAccount(_) => &mut self.add_account,
            Action::DeleteAccount => &mut self.delete_account,
            Action::AssignRole(_) => &mut self.assign_role,
            Action::RemoveRole(_) => &mut self.remove_role,
            Action::AddScope { .. } => &mut self.add_scope,
            Action::RemoveScope(_) => &mut self.remove_scope,
            Action::RestoreAllVms(_) => &mut self.restore_all_vms,
        };
        *n += 1;
    }

    /// Every row counted.
    pub fn total(&self) -> u64 {
        self.add_account
            + self.delete_account
            + self.assign_role
            + self.remove_role
            + self.add_scope
            + self.remove_scope
            + self.restore_all_vms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testing::{G1, REF, ROLE, ok, uuid};

    #[test]
    fn target_text_is_normalised() {
        let t = |a: Action| a.target_text();
        assert_eq!(
            t(Action::AssignRole(RoleRef::Id(uuid(&ROLE.to_uppercase())))),
            ROLE
        );
        assert_eq!(
            t(Action::RemoveRole(RoleRef::Name("Portal User".into()))),
            "Portal User"
        );
        assert_eq!(
            t(Action::AddScope {
                obj_ref: REF.into(),
                object_name: "x".into()
            }),
            REF
        );
        assert_eq!(t(Action::RemoveScope(ScopeRef::Id(uuid(G1)))), G1);
        assert_eq!(
            t(Action::RemoveScope(ScopeRef::Name("Old-RP".into()))),
            "Old-RP"
        );
        assert_eq!(t(Action::RestoreAllVms(true)), "on");
        assert_eq!(t(Action::RestoreAllVms(false)), "off");
        let plan = ok(&format!(
            "account,action,target\na,assign-role,urn:veeam:EnterpriseRole:{}\n",
            ROLE.to_uppercase()
        ));
        assert_eq!(plan.rows[0].action.target_text(), ROLE);
        let plan =
            ok("account,action,target\na,assign-role,  Portal User  \nb,restore-all-vms,YES\n");
        assert_eq!(plan.rows[0].action.target_text(), "Portal User");
        assert_eq!(plan.rows[1].action.target_text(), "on");
    }
}
