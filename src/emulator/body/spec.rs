//! The request specs the emulator reads (`EnterpriseAccountInRoleCreateSpec`,
//! `HierarchyScopeCreateSpec`, `RebuildScopeJobSpec`, `EnterpriseAccountCreateSpec`): the
//! content model of each in XML, and its reading into a typed value from either format.

use super::Body;
use super::json::{json_bool, json_get, json_items, json_object, json_str};
use super::xml::{Content, UNBOUNDED, XmlNode, check_root, many, one, optional, xml_bool};
use crate::emulator::wire::ApiError;

/// `EnterpriseAccountInRoleCreateSpec`.
pub(crate) static ROLE_SPEC: Content = Content::Seq(&[one("EnterpriseRoleUid", &Content::Text)]);

static SCOPE_ITEM: Content = Content::Seq(&[
    one("HierarchyObjRef", &Content::Text),
    one("ObjectName", &Content::Text),
]);

/// `HierarchyScopeCreateSpec`.
pub(crate) static SCOPE_SPEC: Content = Content::Choice {
    items: &[many("HierarchyScopeItem", &SCOPE_ITEM)],
    min: 1,
    max: UNBOUNDED,
};

/// `HierarchyScopeObjects` inside an account spec. The XSD wants at least one item, but a
/// widely shared request template sends the element empty when all VMs are allowed; the
/// "false needs a scope" rule is checked on the items instead.
static SCOPE_OBJECTS: Content = Content::Choice {
    items: &[many("HierarchyScopeItem", &SCOPE_ITEM)],
    min: 0,
    max: UNBOUNDED,
};

static ROLE_LIST: Content = Content::Choice {
    items: &[many("EnterpriseRole", &ROLE_SPEC)],
    min: 1,
    max: UNBOUNDED,
};

static FLR_SETTINGS: Content = Content::Seq(&[
    one("FlrInplaceOnly", &Content::Text),
    optional("FlrExtentionRestrictions", &Content::Text),
]);

static SQL_SETTINGS: Content = Content::Seq(&[one("DenyInPlaceRestore", &Content::Text)]);

/// `EnterpriseAccountCreateSpec`, in the order the docs insist on.
pub(crate) static ACCOUNT_SPEC: Content = Content::Seq(&[
    one("AccountType", &Content::Text),
    one("AccountName", &Content::Text),
    one("Roles", &ROLE_LIST),
    one("AllowRestoreAllVms", &Content::Text),
    optional("HierarchyScopeObjects", &SCOPE_OBJECTS),
    optional("FlrSettings", &FLR_SETTINGS),
    optional("SqlSettings", &SQL_SETTINGS),
]);

/// `RebuildScopeJobSpec`: exactly one empty mode element.
pub(crate) static REBUILD_SPEC: Content = Content::Choice {
    items: &[
        optional("RebuildAll", &Content::Empty),
        optional("RebuildUnprocessed", &Content::Empty),
        optional("RebuildForCurrentUser", &Content::Empty),
    ],
    min: 1,
    max: 1,
};

/// `EnterpriseAccountInRoleCreateSpec`: the role UID to assign.
pub(crate) fn role_spec(body: &Body) -> Result<String, ApiError> {
    match body {
        Body::Xml(root) => {
            check_root(root, "EnterpriseAccountInRoleCreateSpec", &ROLE_SPEC)?;
            Ok(root
                .child("EnterpriseRoleUid")
                .map(|n| n.text.clone())
                .unwrap_or_default())
        }
        Body::Json(v) => json_str(json_object(v, "the role spec")?, "EnterpriseRoleUid"),
    }
}

/// One `HierarchyScopeItem`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ScopeItem {
    /// `HierarchyObjRef`.
    pub obj_ref: String,
    /// `ObjectName`.
    pub name: String,
}

fn xml_scope_item(node: &XmlNode) -> ScopeItem {
    let text = |name: &str| node.child(name).map(|n| n.text.clone()).unwrap_or_default();
    ScopeItem {
        obj_ref: text("HierarchyObjRef"),
        name: text("ObjectName"),
    }
}

fn json_scope_item(v: &serde_json::Value) -> Result<ScopeItem, ApiError> {
    let v = json_object(v, "a HierarchyScopeItem")?;
    Ok(ScopeItem {
        obj_ref: json_str(v, "HierarchyObjRef")?,
        name: json_str(v, "ObjectName")?,
    })
}

/// `HierarchyScopeCreateSpec`: the scopes to create.
pub(crate) fn scope_spec(body: &Body) -> Result<Vec<ScopeItem>, ApiError> {
    let items = match body {
        Body::Xml(root) => {
            check_root(root, "HierarchyScopeCreateSpec", &SCOPE_SPEC)?;
            root.children_named("HierarchyScopeItem")
                .map(xml_scope_item)
                .collect()
        }
        // A bare array of items is taken as the list itself.
        Body::Json(v @ serde_json::Value::Array(_)) => json_items(v, &[])
            .into_iter()
            .map(json_scope_item)
            .collect::<Result<Vec<_>, _>>()?,
        Body::Json(v) => {
            let list = json_get(v, "HierarchyScopeItems")
                .or_else(|| json_get(v, "HierarchyScopeItem"))
                .map(|l| json_items(l, &[]))
                .unwrap_or_default();
            list.into_iter()
                .map(json_scope_item)
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    if items.is_empty() {
        return Err(ApiError::bad_request(
            "at least one HierarchyScopeItem is required",
        ));
    }
    Ok(items)
}

/// `RebuildScopeJobSpec` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RebuildMode {
    /// Every scope.
    All,
    /// Scopes not yet processed.
    Unprocessed,
    /// The scopes of the logged-on user's own account.
    ForCurrentUser,
}

/// `RebuildScopeJobSpec`.
pub(crate) fn rebuild_spec(body: &Body) -> Result<RebuildMode, ApiError> {
    let modes = [
        ("RebuildAll", RebuildMode::All),
        ("RebuildUnprocessed", RebuildMode::Unprocessed),
        ("RebuildForCurrentUser", RebuildMode::ForCurrentUser),
    ];
    match body {
        Body::Xml(root) => {
            check_root(root, "RebuildScopeJobSpec", &REBUILD_SPEC)?;
            let name = root
                .children
                .first()
                .map(|c| c.name.as_str())
                .unwrap_or_default();
            modes
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, m)| *m)
                .ok_or_else(|| ApiError::bad_request("a rebuild mode is required"))
        }
        Body::Json(v) => {
            let found: Vec<RebuildMode> = modes
                .iter()
                .filter(|(n, _)| json_get(v, n).is_some())
                .map(|(_, m)| *m)
                .collect();
            match found.as_slice() {
                [one] => Ok(*one),
                [] => Err(ApiError::bad_request(
                    "one of RebuildAll, RebuildUnprocessed or RebuildForCurrentUser is required",
                )),
                _ => Err(ApiError::bad_request("only one rebuild mode may be given")),
            }
        }
    }
}

/// `EnterpriseAccountCreateSpec`, syntactically valid; the account type and role UIDs are
/// still unchecked text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AccountSpec {
    /// `AccountType`.
    pub account_type: String,
    /// `AccountName`.
    pub name: String,
    /// `Roles/EnterpriseRole/EnterpriseRoleUid`.
    pub role_uids: Vec<String>,
    /// `AllowRestoreAllVms`.
    pub allow_restore_all_vms: bool,
    /// `HierarchyScopeObjects/HierarchyScopeItem`.
    pub scopes: Vec<ScopeItem>,
    /// `FlrSettings/FlrInplaceOnly`.
    pub flr_inplace_only: bool,
    /// `FlrSettings/FlrExtentionRestrictions`.
    pub flr_extension_restrictions: Option<String>,
    /// `SqlSettings/DenyInPlaceRestore`.
    pub sql_deny_in_place_restore: bool,
}

/// `EnterpriseAccountCreateSpec`.
pub(crate) fn account_spec(body: &Body) -> Result<AccountSpec, ApiError> {
    match body {
        Body::Xml(root) => {
            check_root(root, "EnterpriseAccountCreateSpec", &ACCOUNT_SPEC)?;
            let text = |name: &str| root.child(name).map(|n| n.text.clone()).unwrap_or_default();
            let roles = root.child("Roles").map(|r| {
                r.children_named("EnterpriseRole")
                    .map(|e| {
                        e.child("EnterpriseRoleUid")
                            .map(|u| u.text.clone())
                            .unwrap_or_default()
                    })
                    .collect()
            });
            let allow = match root.child("AllowRestoreAllVms") {
                Some(n) => xml_bool(n)?,
                None => true,
            };
            let scopes = root
                .child("HierarchyScopeObjects")
                .map(|s| {
                    s.children_named("HierarchyScopeItem")
                        .map(xml_scope_item)
                        .collect()
                })
                .unwrap_or_default();
            let flr = root.child("FlrSettings");
            let flr_inplace_only = match flr.and_then(|f| f.child("FlrInplaceOnly")) {
                Some(n) => xml_bool(n)?,
                None => false,
            };
            let flr_extension_restrictions = flr
                .and_then(|f| f.child("FlrExtentionRestrictions"))
                .map(|n| n.text.clone())
                .filter(|t| !t.is_empty());
            let sql_deny_in_place_restore = match root
                .child("SqlSettings")
                .and_then(|s| s.child("DenyInPlaceRestore"))
            {
                Some(n) => xml_bool(n)?,
                None => false,
            };
            Ok(AccountSpec {
                account_type: text("AccountType"),
                name: text("AccountName"),
                role_uids: roles.unwrap_or_default(),
                allow_restore_all_vms: allow,
                scopes,
                flr_inplace_only,
                flr_extension_restrictions,
                sql_deny_in_place_restore,
            })
        }
        Body::Json(v) => {
            let v = json_object(v, "the account spec")?;
            let role_uids = json_get(v, "Roles")
                .map(|r| json_items(r, &["EnterpriseRoles", "EnterpriseRole"]))
                .unwrap_or_default()
                .into_iter()
                .map(|r| json_str(json_object(r, "a role")?, "EnterpriseRoleUid"))
                .collect::<Result<Vec<_>, _>>()?;
            let scopes = json_get(v, "HierarchyScopeObjects")
                .map(|s| json_items(s, &["HierarchyScopeItems", "HierarchyScopeItem"]))
                .unwrap_or_default()
                .into_iter()
                .map(json_scope_item)
                .collect::<Result<Vec<_>, _>>()?;
            let flr = json_get(v, "FlrSettings");
            let sql = json_get(v, "SqlSettings");
            Ok(AccountSpec {
                account_type: json_str(v, "AccountType")?,
                name: json_str(v, "AccountName")?,
                role_uids,
                allow_restore_all_vms: json_bool(v, "AllowRestoreAllVms")?.unwrap_or(true),
                scopes,
                flr_inplace_only: match flr {
                    Some(f) => json_bool(f, "FlrInplaceOnly")?.unwrap_or(false),
                    None => false,
                },
                flr_extension_restrictions: flr
                    .and_then(|f| json_get(f, "FlrExtentionRestrictions"))
                    .and_then(|s| s.as_str())
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty()),
                sql_deny_in_place_restore: match sql {
                    Some(s) => json_bool(s, "DenyInPlaceRestore")?.unwrap_or(false),
                    None => false,
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{ROLE, account_xml, json, xml};
    use super::*;

    #[test]
    fn role_spec_from_the_docs_sample() {
        let body = xml(&format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
            <EnterpriseAccountInRoleCreateSpec xmlns="http://www.veeam.com/ent/v1.0" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
              <EnterpriseRoleUid>{ROLE}</EnterpriseRoleUid>
            </EnterpriseAccountInRoleCreateSpec>"#
        ));
        assert_eq!(role_spec(&body).unwrap(), ROLE);
        assert_eq!(
            role_spec(&json(&format!(r#"{{"EnterpriseRoleUid":"{ROLE}"}}"#))).unwrap(),
            ROLE
        );
        assert_eq!(
            role_spec(&json(&format!(r#"{{"enterpriseroleuid":"{ROLE}"}}"#))).unwrap(),
            ROLE
        );
    }

    #[test]
    fn account_spec_in_order_is_read() {
        let body = account_xml(&format!(
            "<AccountType>User</AccountType><AccountName>TECH\\a &amp; b</AccountName>\
             <Roles><EnterpriseRole><EnterpriseRoleUid>{ROLE}</EnterpriseRoleUid></EnterpriseRole></Roles>\
             <AllowRestoreAllVms>false</AllowRestoreAllVms>\
             <HierarchyScopeObjects><HierarchyScopeItem><HierarchyObjRef>urn:VMware:Vm:r.vm-1</HierarchyObjRef><ObjectName>vm1</ObjectName></HierarchyScopeItem></HierarchyScopeObjects>\
             <FlrSettings><FlrInplaceOnly>true</FlrInplaceOnly><FlrExtentionRestrictions>exe,dll</FlrExtentionRestrictions></FlrSettings>\
             <SqlSettings><DenyInPlaceRestore>1</DenyInPlaceRestore></SqlSettings>"
        ));
        let spec = account_spec(&body).unwrap();
        assert_eq!(spec.name, "TECH\\a & b");
        assert_eq!(spec.role_uids, vec![ROLE.to_owned()]);
        assert!(!spec.allow_restore_all_vms);
        assert_eq!(spec.scopes[0].obj_ref, "urn:VMware:Vm:r.vm-1");
        assert!(spec.flr_inplace_only && spec.sql_deny_in_place_restore);
        assert_eq!(spec.flr_extension_restrictions.as_deref(), Some("exe,dll"));
    }

    #[test]
    fn scope_item_fields_must_keep_their_order() {
        let good = r#"<HierarchyScopeCreateSpec xmlns="http://www.veeam.com/ent/v1.0"><HierarchyScopeItem><HierarchyObjRef>urn:VMware:Vm:r.vm-1</HierarchyObjRef><ObjectName>a</ObjectName></HierarchyScopeItem><HierarchyScopeItem><HierarchyObjRef>urn:VMware:Vm:r.vm-2</HierarchyObjRef><ObjectName>b</ObjectName></HierarchyScopeItem></HierarchyScopeCreateSpec>"#;
        assert_eq!(scope_spec(&xml(good)).unwrap().len(), 2);
        let swapped = r#"<HierarchyScopeCreateSpec xmlns="http://www.veeam.com/ent/v1.0"><HierarchyScopeItem><ObjectName>a</ObjectName><HierarchyObjRef>urn:VMware:Vm:r.vm-1</HierarchyObjRef></HierarchyScopeItem></HierarchyScopeCreateSpec>"#;
        assert!(
            scope_spec(&xml(swapped))
                .unwrap_err()
                .message
                .contains("out of order")
        );
        let empty = r#"<HierarchyScopeCreateSpec xmlns="http://www.veeam.com/ent/v1.0"/>"#;
        assert_eq!(scope_spec(&xml(empty)).unwrap_err().status, 400);
    }

    #[test]
    fn rebuild_spec_needs_exactly_one_empty_mode() {
        let ok = r#"<RebuildScopeJobSpec xmlns="http://www.veeam.com/ent/v1.0"><RebuildAll/></RebuildScopeJobSpec>"#;
        assert_eq!(rebuild_spec(&xml(ok)).unwrap(), RebuildMode::All);
        let two = r#"<RebuildScopeJobSpec xmlns="http://www.veeam.com/ent/v1.0"><RebuildAll/><RebuildUnprocessed/></RebuildScopeJobSpec>"#;
        assert_eq!(rebuild_spec(&xml(two)).unwrap_err().status, 400);
    }
}
