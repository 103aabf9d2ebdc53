//! The typed values the client returns and sends, independent of the wire format.

use uuid::Uuid;

/// `GET /api/`: the entry point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryPoint {
    /// Supported API versions, e.g. `v1_7`.
    pub versions: Vec<String>,
}

/// A logon session (`LogonSession`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogonSession {
    /// The logged-on user.
    pub user_name: String,
    /// The session's id (not the token).
    pub session_id: String,
}

/// An `EntityRef` / `Ref`: a reference to an account or a role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityRef {
    /// `urn:veeam:<Type>:<guid>`.
    pub uid: String,
    /// The entity's name.
    pub name: String,
    /// The absolute URL of the entity.
    pub href: String,
    /// The reference type, e.g. `EnterpriseAccountReference`.
    pub kind: String,
}

impl EntityRef {
    /// The GUID at the end of its UID, read as the account decoder reads an account's UID, so
    /// a listed entity and the same entity read alone get one id; `None` if the UID ends in no
    /// GUID.
    pub fn id(&self) -> Option<Uuid> {
        super::uid::id_from_uid(&self.uid)
    }
}

/// EM account types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AccountType {
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
    /// The spelling EM uses.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::User => "User",
            AccountType::Group => "Group",
            AccountType::ExternalUser => "ExternalUser",
            AccountType::ExternalGroup => "ExternalGroup",
        }
    }

    /// Parses EM's spelling, case-insensitively.
    pub fn parse(text: &str) -> Option<Self> {
        [
            AccountType::User,
            AccountType::Group,
            AccountType::ExternalUser,
            AccountType::ExternalGroup,
        ]
        .into_iter()
        .find(|t| t.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

/// File-level restore settings of an account (fixed at creation).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlrSettings {
    /// Only in-place restores.
    pub inplace_only: bool,
    /// Extension restrictions, a comma-separated list, if any.
    pub extension_restrictions: Option<String>,
}

/// SQL restore settings of an account (fixed at creation).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SqlSettings {
    /// Deny in-place restores.
    pub deny_in_place_restore: bool,
}

/// `GET /security/accounts/{id}?format=Entity`: the full account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The account's GUID.
    pub id: Uuid,
    /// Its UID, `urn:veeam:EnterpriseAccount:<guid>`.
    pub uid: String,
    /// Its name as EM stores it.
    pub name: String,
    /// User, Group, ...
    pub account_type: AccountType,
    /// "Restore scope: All virtual machines".
    pub allow_restore_all_vms: bool,
    /// File-level restore settings, when EM shows them.
    pub flr: Option<FlrSettings>,
    /// SQL restore settings, when EM shows them.
    pub sql: Option<SqlSettings>,
}

/// One `EnterpriseAccountInRole`: a role an account holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRole {
    /// The role's GUID (the last segment of the item's Href; also the assignment id).
    pub role_id: Uuid,
    /// The role's name.
    pub role_name: String,
}

/// One `EnterpriseAccountHierarchyScope`: a restore scope of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// The scope's own GUID (the last segment of its Href).
    pub id: Uuid,
    /// The object's name.
    pub name: String,
    /// The hierarchy root (a GUID or host name).
    pub hierarchy_root_name: String,
    /// `VMware`, `Hyperv`, `vCloud`.
    pub platform: String,
    /// `ResourcePool`, `Folder`, `Vm`, ...
    pub object_type: String,
    /// `Unprocessed`, `Processed`, `Removing`.
    pub state: String,
}

/// One `HierarchyScopeItem` to create.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ScopeItem {
    /// The hierarchy object ref, `urn:<Platform>:<Type>:<root>.<ref>`.
    pub obj_ref: String,
    /// The object's display name.
    pub object_name: String,
}

/// `EnterpriseAccountCreateSpec`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountCreateSpec {
    /// The account type.
    pub account_type: AccountType,
    /// `DOMAIN\name`, `user@suffix`, ...
    pub account_name: String,
    /// Role UIDs, `urn:veeam:EnterpriseRole:<guid>` ([`role_uid`](super::role_uid)); at least
    /// one.
    pub role_uids: Vec<String>,
    /// "Restore scope: All virtual machines".
    pub allow_restore_all_vms: bool,
    /// Scope items; required when `allow_restore_all_vms` is false.
    pub scopes: Vec<ScopeItem>,
    /// File-level restore settings.
    pub flr: Option<FlrSettings>,
    /// SQL restore settings.
    pub sql: Option<SqlSettings>,
}

/// `RebuildScopeJobSpec` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebuildMode {
    /// `RebuildAll`
    All,
    /// `RebuildUnprocessed`
    Unprocessed,
    /// `RebuildForCurrentUser`
    ForCurrentUser,
}

/// The `Task` that `rebuildScope` answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// e.g. `task-1`.
    pub task_id: String,
    /// e.g. `Finished`.
    pub state: String,
    /// e.g. `StartRebuildScope`.
    pub operation: String,
}
