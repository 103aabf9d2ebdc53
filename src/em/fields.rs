//! The documents both wire formats carry in the same way, read once for both: a logon session,
//! a reference, a role assignment, a scope and a task, each from its named values and links.
//!
//! Each format says how a value is found in one of its nodes ([`Fields`]: an attribute or a
//! child element in XML, a property in JSON); what must be there, and what may be missing,
//! is decided here, so the two decoders cannot come to disagree about it.

use std::borrow::Cow;

use uuid::Uuid;

use super::codec::{DecodeError, id_from_href};
use super::{AccountRole, EntityRef, LogonSession, Scope, Task};

/// A node of a decoded document, as the readers here see it.
pub(crate) trait Fields {
    /// Refuses a node that cannot hold named values at all (a JSON value that is no object).
    fn entity(&self) -> Result<(), DecodeError>;

    /// The value named `name`, when the node has one.
    fn field(&self, name: &str) -> Option<Cow<'_, str>>;

    /// The `Href` of the node's first link with relation `rel`.
    fn link(&self, rel: &str) -> Option<Cow<'_, str>>;

    /// The value named `name`, or empty text.
    fn or_empty(&self, name: &str) -> String {
        self.field(name).unwrap_or_default().into_owned()
    }
}

/// `LogonSession`.
pub(crate) fn logon_session(node: &impl Fields) -> Result<LogonSession, DecodeError> {
    node.entity()?;
    Ok(LogonSession {
        session_id: required(node, "SessionId", "LogonSession without SessionId")?,
        user_name: node.or_empty("UserName"),
    })
}

/// `EntityRef` or `Ref`, alone or in a list.
pub(crate) fn entity_ref(node: &impl Fields) -> Result<EntityRef, DecodeError> {
    node.entity()?;
    Ok(EntityRef {
        uid: required(node, "UID", "reference without UID")?,
        name: node.or_empty("Name"),
        href: node.or_empty("Href"),
        kind: node.or_empty("Type"),
    })
}

/// `EnterpriseAccountInRole`: the role's id from its `Href` (or, lacking one, its Delete link).
pub(crate) fn account_role(node: &impl Fields) -> Result<AccountRole, DecodeError> {
    node.entity()?;
    Ok(AccountRole {
        role_id: item_id(node, "role assignment")?,
        role_name: node.or_empty("RoleName").trim().to_string(),
    })
}

/// `EnterpriseAccountHierarchyScope`: its id from its `Href` (or, lacking one, its Delete link).
pub(crate) fn scope(node: &impl Fields) -> Result<Scope, DecodeError> {
    node.entity()?;
    Ok(Scope {
        id: item_id(node, "scope")?,
        name: node.or_empty("Name"),
        hierarchy_root_name: node.or_empty("HierarchyRootName"),
        platform: node.or_empty("Platform"),
        object_type: node.or_empty("HierarchyObjectType"),
        state: node.or_empty("State"),
    })
}

/// `Task`.
pub(crate) fn task(node: &impl Fields) -> Result<Task, DecodeError> {
    node.entity()?;
    Ok(Task {
        task_id: required(node, "TaskId", "Task without TaskId")?,
        state: node.or_empty("State"),
        operation: node.or_empty("Operation"),
    })
}

/// The value named `name`, which must be there and not empty; else the error `missing`.
fn required(node: &impl Fields, name: &str, missing: &str) -> Result<String, DecodeError> {
    match node.field(name) {
        Some(value) if !value.is_empty() => Ok(value.into_owned()),
        _ => Err(missing.to_string()),
    }
}

/// The id of an item of an account, a `what`, from the end of its `Href` or, lacking one, of
/// its Delete link, which names the same item.
fn item_id(node: &impl Fields, what: &str) -> Result<Uuid, DecodeError> {
    let href = node
        .field("Href")
        .or_else(|| node.link("Delete"))
        .ok_or_else(|| format!("{what} without Href"))?;
    id_from_href(&href)
}
