//! EM's representations of each resource, with the link sets, `Rel`/`Type` values and
//! element order of the API reference, built as [`Element`] trees for either wire format.
//!
//! `base` is always the absolute API root of the request (`https://host:port/api`).

use uuid::Uuid;

use super::state::{Account, RoleDef, Scope, Session, TaskRecord};
use super::wire::{Doc, Element, Link};

/// The API versions this emulator answers to.
pub(crate) const VERSIONS: [&str; 3] = ["v1_5", "v1_6", "v1_7"];

fn account_href(base: &str, id: Uuid) -> String {
    format!("{base}/security/accounts/{id}")
}

/// `GET /api/`: the entry point. Like the v13 sample, the root carries no `Href`.
pub(crate) fn entry_point(base: &str) -> Doc {
    let versions = VERSIONS
        .iter()
        .map(|v| {
            Element::new("SupportedVersion")
                .attr("Name", *v)
                .links(vec![Link::typed(
                    "Create",
                    "LogonSession",
                    format!("{base}/sessionMngr/?v={v}"),
                )])
        })
        .collect();
    Doc::One(
        Element::new("EnterpriseManager")
            .links(vec![
                Link::typed("Down", "LogonSessionList", format!("{base}/logonSessions")),
                Link::typed(
                    "Create",
                    "LogonSession",
                    format!("{base}/sessionMngr/?v=latest"),
                ),
            ])
            .list("SupportedVersions", "SupportedVersions", versions),
    )
}

/// A `LogonSession`.
pub(crate) fn logon_session(base: &str, s: &Session) -> Element {
    let href = format!("{base}/logonSessions/{}", s.id);
    Element::new("LogonSession")
        .attr("Type", "LogonSession")
        .attr("Href", href.as_str())
        .links(vec![
            Link::typed("Up", "EnterpriseManager", format!("{base}/")),
            Link::typed(
                "Down",
                "EnterpriseSecuritySettings",
                format!("{base}/security"),
            ),
            Link::typed("Down", "LogonSessionList", format!("{base}/logonSessions")),
            Link::bare("Delete", href.clone()),
        ])
        .text("UserName", s.user.as_str())
        .text("SessionId", s.id.to_string())
}

/// `LogonSessions`.
pub(crate) fn logon_sessions<'a>(base: &str, sessions: impl Iterator<Item = &'a Session>) -> Doc {
    Doc::List {
        root: "LogonSessions",
        json_key: "LogonSessions",
        items: sessions.map(|s| logon_session(base, s)).collect(),
    }
}

/// `EnterpriseSecuritySettings`.
pub(crate) fn security(base: &str) -> Doc {
    Doc::One(
        Element::new("EnterpriseSecuritySettings")
            .attr("Href", format!("{base}/security"))
            .links(vec![
                Link::typed(
                    "Down",
                    "EnterpriseAccountReferenceList",
                    format!("{base}/security/accounts"),
                ),
                Link::typed(
                    "Down",
                    "EnterpriseRoleReferenceList",
                    format!("{base}/security/roles"),
                ),
                Link::bare("Create", format!("{base}/security/accounts")),
                Link::bare(
                    "Start",
                    format!("{base}/security/accounts?action=rebuildScope"),
                ),
            ]),
    )
}

/// An account's reference, as a list item (`Ref`) or a root (`EntityRef`).
pub(crate) fn account_ref(base: &str, a: &Account, element: &'static str) -> Element {
    let href = account_href(base, a.id);
    Element::new(element)
        .attr("Type", "EnterpriseAccountReference")
        .attr("Href", href.as_str())
        .attr("Name", a.name.as_str())
        .attr("UID", format!("urn:veeam:EnterpriseAccount:{}", a.id))
        .links(vec![Link::typed(
            "Alternate",
            "EnterpriseAccount",
            format!("{href}?format=Entity"),
        )])
}

/// `EntityReferences` of accounts.
pub(crate) fn account_refs<'a>(base: &str, accounts: impl Iterator<Item = &'a Account>) -> Doc {
    Doc::List {
        root: "EntityReferences",
        json_key: "Refs",
        items: accounts.map(|a| account_ref(base, a, "Ref")).collect(),
    }
}

/// `EnterpriseAccount`, the entity form.
pub(crate) fn account_entity(base: &str, a: &Account) -> Doc {
    let href = account_href(base, a.id);
    Doc::One(
        Element::new("EnterpriseAccount")
            .attr("Type", "EnterpriseAccount")
            .attr("Href", format!("{href}?format=Entity"))
            .attr("Name", a.name.as_str())
            .attr("UID", format!("urn:veeam:EnterpriseAccount:{}", a.id))
            .links(vec![
                Link::typed("Alternate", "EnterpriseAccountReference", href.clone()),
                Link::typed(
                    "Down",
                    "EnterpriseAccountInRoleList",
                    format!("{href}/roles"),
                ),
                Link::typed("Create", "EnterpriseAccountInRole", format!("{href}/roles")),
                Link::typed(
                    "Down",
                    "EnterpriseAccountHierarchyScopeList",
                    format!("{href}/scopes"),
                ),
                Link::typed(
                    "Create",
                    "EnterpriseAccountHierarchyScope",
                    format!("{href}/scopes"),
                ),
                Link::bare("Delete", href.clone()),
                Link::bare("ToggleRestoreScopesEnabled", href.clone()),
            ])
            .text("AccountType", a.account_type.as_str())
            .text("AllowRestoreAllVms", a.allow_restore_all_vms)
            .child(
                "FlrSettings",
                Element::new("FlrSettings")
                    .text("FlrInplaceOnly", a.flr_inplace_only)
                    .text(
                        "FlrExtentionRestrictions",
                        a.flr_extension_restrictions.clone(),
                    ),
            )
            .child(
                "SqlSettings",
                Element::new("SqlSettings").text("DenyInPlaceRestore", a.sql_deny_in_place_restore),
            ),
    )
}

/// A role's reference, as a list item (`Ref`) or a root (`EntityRef`).
pub(crate) fn role_ref(base: &str, r: &RoleDef, element: &'static str) -> Element {
    let href = format!("{base}/security/roles/{}", r.id);
    Element::new(element)
        .attr("Type", "EnterpriseRoleReference")
        .attr("Href", href.as_str())
        .attr("Name", r.name)
        .attr("UID", format!("urn:veeam:EnterpriseRole:{}", r.id))
        .links(vec![Link::typed(
            "Alternate",
            "EnterpriseRole",
            format!("{href}?format=Entity"),
        )])
}

/// `EntityReferences` of roles.
pub(crate) fn role_refs<'a>(base: &str, roles: impl Iterator<Item = &'a RoleDef>) -> Doc {
    Doc::List {
        root: "EntityReferences",
        json_key: "Refs",
        items: roles.map(|r| role_ref(base, r, "Ref")).collect(),
    }
}

/// `EnterpriseRole`, the entity form: nothing but the link back to its reference.
pub(crate) fn role_entity(base: &str, r: &RoleDef) -> Doc {
    let href = format!("{base}/security/roles/{}", r.id);
    Doc::One(
        Element::new("EnterpriseRole")
            .attr("Type", "EnterpriseRole")
            .attr("Href", format!("{href}?format=Entity"))
            .attr("Name", r.name)
            .attr("UID", format!("urn:veeam:EnterpriseRole:{}", r.id))
            .links(vec![Link::typed(
                "Alternate",
                "EnterpriseRoleReference",
                href,
            )]),
    )
}

/// `EnterpriseAccountInRole`: a role the account holds, identified by the role's GUID. In
/// lists the `Delete` link has no `Type`; the single-item page shows one.
pub(crate) fn account_role(base: &str, account: Uuid, r: &RoleDef, typed_delete: bool) -> Element {
    let href = format!("{}/roles/{}", account_href(base, account), r.id);
    let delete = if typed_delete {
        Link::typed("Delete", "EnterpriseAccountInRole", href.clone())
    } else {
        Link::bare("Delete", href.clone())
    };
    Element::new("EnterpriseAccountInRole")
        .attr("Href", href)
        .links(vec![delete])
        .text("RoleName", r.name)
}

/// `EnterpriseAccountInRoleList`.
pub(crate) fn account_roles<'a>(
    base: &str,
    account: Uuid,
    roles: impl Iterator<Item = &'a RoleDef>,
) -> Doc {
    Doc::List {
        root: "EnterpriseAccountInRoleList",
        json_key: "EnterpriseAccountInRoles",
        items: roles
            .map(|r| account_role(base, account, r, false))
            .collect(),
    }
}

/// `EnterpriseAccountHierarchyScope`, fields in XSD order.
pub(crate) fn scope(base: &str, account: Uuid, s: &Scope) -> Element {
    let href = format!("{}/scopes/{}", account_href(base, account), s.id);
    Element::new("EnterpriseAccountHierarchyScope")
        .attr("Href", href.as_str())
        .links(vec![Link::bare("Delete", href.clone())])
        .text("Name", s.name.as_str())
        .text("HierarchyRootName", s.parsed.root.as_str())
        .text("Platform", s.parsed.platform.as_str())
        .text("HierarchyObjectType", s.parsed.object_type.as_str())
        .text("State", s.state.as_str())
}

/// `EnterpriseAccountHierarchyScopes`.
pub(crate) fn scopes<'a>(
    base: &str,
    account: Uuid,
    scopes: impl Iterator<Item = &'a Scope>,
) -> Doc {
    Doc::List {
        root: "EnterpriseAccountHierarchyScopes",
        json_key: "EnterpriseAccountHierarchyScopes",
        items: scopes.map(|s| scope(base, account, s)).collect(),
    }
}

/// The `Task` of a scope rebuild; the emulator rebuilds at once, so it is always finished.
pub(crate) fn task(base: &str, t: &TaskRecord) -> Doc {
    Doc::One(
        Element::new("Task")
            .attr("Type", "Task")
            .attr("Href", format!("{base}/tasks/{}", t.id))
            .links(vec![Link::typed(
                "Up",
                "EnterpriseManager",
                format!("{base}/"),
            )])
            .text("TaskId", t.id.as_str())
            .text("State", "Finished")
            .text("Operation", "StartRebuildScope")
            .child("Result", Element::new("Result").attr("Success", true)),
    )
}

#[cfg(test)]
mod tests {
    use super::super::state::{AccountType, ROLES, ScopeState};
    use super::super::wire::Wire;
    use super::*;

    const BASE: &str = "https://enterprise04.tech.local:9398/api";

    #[test]
    fn account_roles_match_the_documented_sample() {
        let acc = Uuid::parse_str("d6701c3d-15f4-421d-b376-c0e2634bc1f4").unwrap();
        let file = ROLES
            .iter()
            .find(|r| r.name == "File Restore Operator")
            .unwrap();
        let xml = account_roles(BASE, acc, [file].into_iter()).render(Wire::Xml);
        let href = "https://enterprise04.tech.local:9398/api/security/accounts/d6701c3d-15f4-421d-b376-c0e2634bc1f4/roles/f84a8b62-49b8-4d0c-b25b-92321b52bab6";
        assert!(
            xml.contains(&format!("<EnterpriseAccountInRole Href=\"{href}\">")),
            "{xml}"
        );
        assert!(
            xml.contains(&format!("<Link Rel=\"Delete\" Href=\"{href}\" />")),
            "{xml}"
        );
        assert!(
            xml.contains("<RoleName>File Restore Operator</RoleName>"),
            "{xml}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&account_roles(BASE, acc, [file].into_iter()).render(Wire::Json))
                .unwrap();
        assert_eq!(json["EnterpriseAccountInRoles"][0]["Href"], href);
        assert_eq!(
            json["EnterpriseAccountInRoles"][0]["RoleName"],
            "File Restore Operator"
        );
    }

    #[test]
    fn account_entity_and_scope_shapes() {
        let a = Account::new(
            Uuid::from_u128(5),
            "TECH\\w",
            AccountType::User,
            vec![ROLES[0].id],
            false,
            Vec::new(),
        );
        let json: serde_json::Value =
            serde_json::from_str(&account_entity(BASE, &a).render(Wire::Json)).unwrap();
        assert_eq!(json["AllowRestoreAllVms"], false);
        assert_eq!(json["AccountType"], "User");
        assert_eq!(json["FlrSettings"]["FlrInplaceOnly"], false);
        assert_eq!(json["SqlSettings"]["DenyInPlaceRestore"], false);
        assert!(
            json["Links"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["Rel"] == "ToggleRestoreScopesEnabled" && l.get("Type").is_none())
        );
        let s = Scope::new(
            Uuid::from_u128(6),
            "urn:VMware:ResourcePool:r.resgroup-1",
            "Prod",
            ScopeState::Unprocessed,
        )
        .unwrap();
        let xml = scopes(BASE, a.id, [&s].into_iter()).render(Wire::Xml);
        let order = [
            "<Name>Prod",
            "<HierarchyRootName>r<",
            "<Platform>VMware",
            "<HierarchyObjectType>ResourcePool",
            "<State>Unprocessed",
        ];
        let at: Vec<usize> = order.iter().map(|o| xml.find(o).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{xml}");
    }

    #[test]
    fn entry_point_lists_versions_in_both_formats() {
        let xml = entry_point(BASE).render(Wire::Xml);
        assert!(xml.contains("<SupportedVersion Name=\"v1_7\">"));
        let json: serde_json::Value =
            serde_json::from_str(&entry_point(BASE).render(Wire::Json)).unwrap();
        assert_eq!(
            json["SupportedVersions"]["SupportedVersions"][2]["Name"],
            "v1_7"
        );
    }
}
