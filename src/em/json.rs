//! The JSON wire format (`Accept: application/json`), through serde.
//!
//! EM's JSON is a mechanical mapping of its XML, documented only by samples, so reading is
//! tolerant: property order is free, names are matched exactly first and then ignoring case,
//! `null` stands for an empty list or a missing value, booleans may come as strings, and a list
//! is found under its known plural key or, failing that, as the one array-valued property.
//! Writing uses the property names of the documented request samples.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value};

use super::codec::{self, AccountParts, Codec, DecodeError, ErrorBody};
use super::fields::{self, Fields};
use super::{
    Account, AccountCreateSpec, AccountRole, EntityRef, EntryPoint, FlrSettings, LogonSession,
    RebuildMode, Scope, ScopeItem, SqlSettings, Task,
};

/// The keys a list of references may sit under (`Refs` is what EM sends).
pub(crate) const REF_LIST_KEYS: &[&str] = &["Refs", "Ref", "EntityReferences"];
/// The keys a list of logon sessions may sit under.
pub(crate) const SESSION_LIST_KEYS: &[&str] = &["LogonSessions", "LogonSession"];
/// The keys a list of role assignments may sit under; the real name is undocumented.
pub(crate) const ROLE_LIST_KEYS: &[&str] = &[
    "EnterpriseAccountInRoles",
    "EnterpriseAccountInRoleList",
    "EnterpriseAccountInRole",
];
/// The keys a list of scopes may sit under; the real name is undocumented.
pub(crate) const SCOPE_LIST_KEYS: &[&str] = &[
    "EnterpriseAccountHierarchyScopes",
    "EnterpriseAccountHierarchyScopeList",
    "EnterpriseAccountHierarchyScope",
];

/// Properties a list document may carry beside its items without being mistaken for one.
const LIST_METADATA: &[&str] = &["Links", "Href", "Type", "Name", "UID"];

fn parse(body: &str) -> Result<Value, DecodeError> {
    let body = body.trim_start_matches('\u{feff}');
    within_depth(body)?;
    serde_json::from_str(body).map_err(|e| format!("malformed json: {e}"))
}

/// Refuses a document whose arrays and objects nest deeper than [`codec::MAX_DEPTH`], before
/// it is parsed: serde_json's own limit (128) keeps its parser off the end of the stack, but
/// the tree it builds is walked by recursive code here (`list`, and `Value`'s drop and
/// display), and no EM answer comes near either depth.
fn within_depth(body: &str) -> Result<(), DecodeError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in body.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > codec::MAX_DEPTH {
                    return Err(codec::too_deep("json", "levels"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn object(value: &Value) -> Result<&Map<String, Value>, DecodeError> {
    value
        .as_object()
        .ok_or_else(|| "expected a json object".into())
}

/// The property `key`, matched exactly, else ignoring ASCII case; `null` counts as absent.
fn get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    let map = value.as_object()?;
    map.get(key)
        .or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

/// A text property; numbers are accepted as their text.
fn text(value: &Value, key: &str) -> Option<String> {
    match get(value, key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A boolean property, as a JSON boolean or a string such as `"true"` or `"True"`.
fn boolean(value: &Value, key: &str) -> Result<Option<bool>, DecodeError> {
    match get(value, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => codec::parse_bool(s)
            .map(Some)
            .ok_or_else(|| format!("{key} is not a boolean: '{s}'")),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => Ok(Some(false)),
            Some(1) => Ok(Some(true)),
            _ => Err(format!("{key} is not a boolean: {n}")),
        },
        Some(other) => Err(format!("{key} is not a boolean: {other}")),
    }
}

/// The items of a list document: the array under one of `keys` (`null` for none), or the
/// document itself when it is an array, or else its only array-valued property.
fn list<'a>(value: &'a Value, keys: &[&str]) -> Result<Vec<&'a Value>, DecodeError> {
    let map = match value {
        Value::Array(items) => return Ok(items.iter().collect()),
        Value::Null => return Ok(Vec::new()),
        Value::Object(map) => map,
        other => return Err(format!("expected a json list document, found {other}")),
    };
    for key in keys {
        let found = map.get(*key).or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        });
        match found {
            None => continue,
            Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(items)) => return Ok(items.iter().collect()),
            // A wrapper object, as the create spec nests `Roles: {EnterpriseRoles: [...]}`.
            Some(inner @ Value::Object(_)) => return list(inner, keys),
            Some(other) => return Err(format!("{key} is not a list: {other}")),
        }
    }
    let arrays: Vec<(&String, &Vec<Value>)> = map
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("Links"))
        .filter_map(|(k, v)| v.as_array().map(|a| (k, a)))
        .collect();
    match arrays.as_slice() {
        [(_, items)] => Ok(items.iter().collect()),
        [] => {
            // An empty list may come as `{}` or with its key `null`; anything with content
            // and no list is some other document, and reading it as empty would mislead.
            let content = map.iter().find(|(k, v)| {
                !v.is_null() && !LIST_METADATA.iter().any(|m| k.eq_ignore_ascii_case(m))
            });
            match content {
                None => Ok(Vec::new()),
                Some((k, _)) => Err(format!(
                    "expected a list under {}, found {k}",
                    keys.join(" or ")
                )),
            }
        }
        several => Err(format!(
            "expected one list, found several: {}",
            several
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The `Href` of the first link with relation `rel`.
fn link(value: &Value, rel: &str) -> Option<String> {
    get(value, "Links")?
        .as_array()?
        .iter()
        .find(|l| text(l, "Rel").is_some_and(|r| r.eq_ignore_ascii_case(rel)))
        .and_then(|l| text(l, "Href"))
}

/// A value as the shared readers see it: an object, whose values are its text properties.
impl Fields for Value {
    fn entity(&self) -> Result<(), DecodeError> {
        object(self).map(|_| ())
    }

    fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        text(self, name).map(Cow::Owned)
    }

    fn link(&self, rel: &str) -> Option<Cow<'_, str>> {
        link(self, rel).map(Cow::Owned)
    }
}

/// Reads an `Error` body; `None` when the document is not one.
pub(crate) fn error_body(body: &str) -> Option<ErrorBody> {
    let value = parse(body).ok()?;
    value.as_object()?;
    let message = text(&value, "Message")
        .filter(|m| !m.trim().is_empty())
        .or_else(|| text(&value, "FirstChanceExceptionMessage"))?;
    Some(ErrorBody {
        message,
        status_code: text(&value, "StatusCode").and_then(|s| s.trim().parse().ok()),
    })
}

/// The JSON [`Codec`].
pub(crate) struct JsonCodec;

impl Codec for JsonCodec {
    fn media_type(&self) -> &'static str {
        "application/json"
    }

    fn entry_point(&self, body: &str) -> Result<EntryPoint, DecodeError> {
        let value = parse(body)?;
        object(&value)?;
        // `SupportedVersions` holds the versions either directly as an array or wrapped in an
        // object like the XML's `SupportedVersions/SupportedVersion`.
        let versions = match get(&value, "SupportedVersions") {
            None => Vec::new(),
            Some(v) => list(v, &["SupportedVersions", "SupportedVersion"])?
                .into_iter()
                .filter_map(|item| text(item, "Name"))
                .collect(),
        };
        Ok(EntryPoint { versions })
    }

    fn logon_session(&self, body: &str) -> Result<LogonSession, DecodeError> {
        fields::logon_session(&parse(body)?)
    }

    fn logon_sessions(&self, body: &str) -> Result<Vec<LogonSession>, DecodeError> {
        let value = parse(body)?;
        list(&value, SESSION_LIST_KEYS)?
            .into_iter()
            .map(fields::logon_session)
            .collect()
    }

    fn security(&self, body: &str) -> Result<(), DecodeError> {
        object(&parse(body)?).map(|_| ())
    }

    fn entity_refs(&self, body: &str) -> Result<Vec<EntityRef>, DecodeError> {
        let value = parse(body)?;
        list(&value, REF_LIST_KEYS)?
            .into_iter()
            .map(fields::entity_ref)
            .collect()
    }

    fn entity_ref(&self, body: &str) -> Result<EntityRef, DecodeError> {
        fields::entity_ref(&parse(body)?)
    }

    fn account(&self, body: &str) -> Result<Account, DecodeError> {
        let value = parse(body)?;
        object(&value)?;
        let flr = match get(&value, "FlrSettings") {
            Some(f) => Some(FlrSettings {
                // The old XSD spells the flag FlrInlaceOnly.
                inplace_only: match boolean(f, "FlrInplaceOnly")? {
                    Some(v) => v,
                    None => boolean(f, "FlrInlaceOnly")?.unwrap_or(false),
                },
                extension_restrictions: text(f, "FlrExtentionRestrictions")
                    .filter(|r| !r.trim().is_empty()),
            }),
            None => None,
        };
        let sql = match get(&value, "SqlSettings") {
            Some(s) => Some(SqlSettings {
                deny_in_place_restore: boolean(s, "DenyInPlaceRestore")?.unwrap_or(false),
            }),
            None => None,
        };
        let uid = text(&value, "UID");
        let href = text(&value, "Href");
        let name = text(&value, "Name");
        let account_type = text(&value, "AccountType");
        AccountParts {
            uid: uid.as_deref(),
            href: href.as_deref(),
            name: name.as_deref(),
            account_type: account_type.as_deref(),
            allow_restore_all_vms: boolean(&value, "AllowRestoreAllVms")?,
            flr,
            sql,
        }
        .build()
    }

    fn account_roles(&self, body: &str) -> Result<Vec<AccountRole>, DecodeError> {
        let value = parse(body)?;
        list(&value, ROLE_LIST_KEYS)?
            .into_iter()
            .map(fields::account_role)
            .collect()
    }

    fn account_role(&self, body: &str) -> Result<AccountRole, DecodeError> {
        fields::account_role(&parse(body)?)
    }

    fn scopes(&self, body: &str) -> Result<Vec<Scope>, DecodeError> {
        let value = parse(body)?;
        list(&value, SCOPE_LIST_KEYS)?
            .into_iter()
            .map(fields::scope)
            .collect()
    }

    fn scope(&self, body: &str) -> Result<Scope, DecodeError> {
        fields::scope(&parse(body)?)
    }

    fn task(&self, body: &str) -> Result<Task, DecodeError> {
        fields::task(&parse(body)?)
    }

    fn account_create_spec(&self, spec: &AccountCreateSpec) -> String {
        let body = CreateSpec {
            account_type: spec.account_type.as_str(),
            account_name: &spec.account_name,
            roles: Roles {
                enterprise_roles: spec
                    .role_uids
                    .iter()
                    .map(|uid| RoleUid {
                        enterprise_role_uid: uid,
                    })
                    .collect(),
            },
            allow_restore_all_vms: spec.allow_restore_all_vms,
            hierarchy_scope_objects: (!spec.scopes.is_empty())
                .then(|| ScopeItems::new(&spec.scopes)),
            flr_settings: spec.flr.as_ref().map(|f| Flr {
                flr_inplace_only: f.inplace_only,
                flr_extention_restrictions: f.extension_restrictions.as_deref(),
            }),
            sql_settings: spec.sql.as_ref().map(|s| Sql {
                deny_in_place_restore: s.deny_in_place_restore,
            }),
        };
        to_json(&body)
    }

    fn role_assignment_spec(&self, role_uid: &str) -> String {
        to_json(&RoleUid {
            enterprise_role_uid: role_uid,
        })
    }

    fn scope_create_spec(&self, items: &[ScopeItem]) -> String {
        to_json(&ScopeItems::new(items))
    }

    fn rebuild_spec(&self, mode: RebuildMode) -> String {
        let key = match mode {
            RebuildMode::All => "RebuildAll",
            RebuildMode::Unprocessed => "RebuildUnprocessed",
            RebuildMode::ForCurrentUser => "RebuildForCurrentUser",
        };
        let mut map = Map::new();
        map.insert(key.to_string(), Value::Object(Map::new()));
        Value::Object(map).to_string()
    }
}

fn to_json(body: &impl Serialize) -> String {
    serde_json::to_string(body).expect("request bodies are plain structs of strings and booleans")
}

/// `EnterpriseAccountCreateSpec`, with its properties in the documented order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CreateSpec<'a> {
    account_type: &'a str,
    account_name: &'a str,
    roles: Roles<'a>,
    allow_restore_all_vms: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    hierarchy_scope_objects: Option<ScopeItems<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flr_settings: Option<Flr<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sql_settings: Option<Sql>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Roles<'a> {
    enterprise_roles: Vec<RoleUid<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RoleUid<'a> {
    enterprise_role_uid: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ScopeItems<'a> {
    hierarchy_scope_items: Vec<Item<'a>>,
}

impl<'a> ScopeItems<'a> {
    fn new(items: &'a [ScopeItem]) -> Self {
        ScopeItems {
            hierarchy_scope_items: items
                .iter()
                .map(|i| Item {
                    hierarchy_obj_ref: &i.obj_ref,
                    object_name: &i.object_name,
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Item<'a> {
    hierarchy_obj_ref: &'a str,
    object_name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Flr<'a> {
    flr_inplace_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    flr_extention_restrictions: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Sql {
    deny_in_place_restore: bool,
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::em::AccountType;

    fn guid(s: &str) -> Uuid {
        Uuid::parse_str(s).unwrap()
    }

    #[test]
    fn entry_point_in_either_shape() {
        let wrapped = r#"{"SupportedVersions":{"SupportedVersions":[{"Name":"v1_5","Links":[]},{"Name":"v1_6"},{"Name":"v1_7","Links":null}]},"Links":[{"Rel":"Create","Href":"https://h/api/sessionMngr/?v=latest","Type":"LogonSession"}],"Href":null}"#;
        assert_eq!(
            JsonCodec.entry_point(wrapped).unwrap().versions,
            vec!["v1_5", "v1_6", "v1_7"]
        );
        let flat = r#"{"Links":null,"SupportedVersions":[{"Name":"v1_7"}]}"#;
        assert_eq!(JsonCodec.entry_point(flat).unwrap().versions, vec!["v1_7"]);
        let singular = r#"{"SupportedVersions":{"SupportedVersion":[{"Name":"v1_6"}]}}"#;
        assert_eq!(
            JsonCodec.entry_point(singular).unwrap().versions,
            vec!["v1_6"]
        );
    }

    #[test]
    fn logon_session_and_list() {
        let one = r#"{"UserName":"DOMAIN\\user","SessionId":"s1","Links":[{"Rel":"Delete","Href":"https://h/api/logonSessions/s1"}],"Href":"https://h/api/logonSessions/s1","Type":"LogonSession"}"#;
        let session = JsonCodec.logon_session(one).unwrap();
        assert_eq!(
            (session.user_name.as_str(), session.session_id.as_str()),
            ("DOMAIN\\user", "s1")
        );
        let list = format!(r#"{{"LogonSessions":[{one}]}}"#);
        assert_eq!(JsonCodec.logon_sessions(&list).unwrap(), vec![session]);
        assert!(
            JsonCodec
                .logon_sessions(r#"{"LogonSessions":null}"#)
                .unwrap()
                .is_empty()
        );
        assert!(JsonCodec.logon_session(r#"{"UserName":"u"}"#).is_err());
    }

    #[test]
    fn references_with_free_order_and_null_links() {
        let body = r#"{"Refs":[
            {"Links":[{"Rel":"Alternate","Href":"https://h/api/security/roles/c11c0c38-ba8b-49c7-bf70-fc2058fff1e2?format=Entity","Type":"EnterpriseRole"}],
             "UID":"urn:veeam:EnterpriseRole:c11c0c38-ba8b-49c7-bf70-fc2058fff1e2","Name":"VM Restore Operator",
             "Href":"https://h/api/security/roles/c11c0c38-ba8b-49c7-bf70-fc2058fff1e2","Type":"EnterpriseRoleReference"},
            {"Type":"EnterpriseRoleReference","Name":"Portal User","Links":null,
             "UID":"urn:veeam:EnterpriseRole:d19a3d33-cb77-4ffe-94e6-001432483a4e","Href":"https://h/api/security/roles/d19a3d33-cb77-4ffe-94e6-001432483a4e"}]}"#;
        let refs = JsonCodec.entity_refs(body).unwrap();
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[0].name, "VM Restore Operator");
        assert_eq!(refs[0].kind, "EnterpriseRoleReference");
        assert_eq!(
            refs[1].uid,
            "urn:veeam:EnterpriseRole:d19a3d33-cb77-4ffe-94e6-001432483a4e"
        );
        assert!(
            JsonCodec
                .entity_refs(r#"{"Refs":null}"#)
                .unwrap()
                .is_empty()
        );
        assert!(JsonCodec.entity_refs(r#"{"Refs":[]}"#).unwrap().is_empty());
        let one = r#"{"UID":"urn:veeam:EnterpriseAccount:x","Name":"TECH\\a","Href":"https://h/api/security/accounts/x","Type":"EnterpriseAccountReference","Links":[]}"#;
        assert_eq!(JsonCodec.entity_ref(one).unwrap().name, "TECH\\a");
    }

    #[test]
    fn account_entity_with_string_booleans() {
        let body = r#"{"AccountType":"ExternalUser","AllowRestoreAllVms":"False",
            "FlrSettings":{"FlrInplaceOnly":"True","FlrExtentionRestrictions":"exe"},
            "SqlSettings":null,
            "Name":"someone@example.com","UID":"urn:veeam:EnterpriseAccount:d6701c3d-15f4-421d-b376-c0e2634bc1f4",
            "Links":null,"Href":"https://h/api/security/accounts/d6701c3d-15f4-421d-b376-c0e2634bc1f4?format=Entity","Type":"EnterpriseAccount"}"#;
        let account = JsonCodec.account(body).unwrap();
        assert_eq!(account.id, guid("d6701c3d-15f4-421d-b376-c0e2634bc1f4"));
        assert_eq!(account.account_type, AccountType::ExternalUser);
        assert!(!account.allow_restore_all_vms);
        assert_eq!(
            account.flr,
            Some(FlrSettings {
                inplace_only: true,
                extension_restrictions: Some("exe".into())
            })
        );
        assert_eq!(account.sql, None);
        let real_bool = body.replace(r#""False""#, "true");
        assert!(JsonCodec.account(&real_bool).unwrap().allow_restore_all_vms);
        let missing = body.replace(r#""AllowRestoreAllVms":"False","#, "");
        assert!(JsonCodec.account(&missing).is_err());
        let junk = body.replace(r#""False""#, r#""maybe""#);
        assert!(JsonCodec.account(&junk).is_err());
    }

    #[test]
    fn role_assignments_under_any_single_array() {
        let item = r#"{"RoleName":"File Restore Operator","Links":[{"Rel":"Delete","Href":"https://h/api/security/accounts/a/roles/f84a8b62-49b8-4d0c-b25b-92321b52bab6"}],"Href":"https://h/api/security/accounts/a/roles/f84a8b62-49b8-4d0c-b25b-92321b52bab6"}"#;
        let expected = vec![AccountRole {
            role_id: guid("f84a8b62-49b8-4d0c-b25b-92321b52bab6"),
            role_name: "File Restore Operator".into(),
        }];
        for body in [
            format!(r#"{{"EnterpriseAccountInRoles":[{item}]}}"#),
            format!(r#"{{"EnterpriseAccountInRole":[{item}],"Links":[]}}"#),
            format!(r#"{{"Roles":[{item}]}}"#),
            format!(r#"[{item}]"#),
        ] {
            assert_eq!(JsonCodec.account_roles(&body).unwrap(), expected, "{body}");
        }
        assert_eq!(JsonCodec.account_role(item).unwrap(), expected[0]);
        // The id comes from the Delete link when Href is null.
        let no_href = r#"{"RoleName":"File Restore Operator","Href":null,"Links":[{"Href":"https://h/api/security/accounts/a/roles/f84a8b62-49b8-4d0c-b25b-92321b52bab6","Rel":"Delete"}]}"#;
        assert_eq!(JsonCodec.account_role(no_href).unwrap(), expected[0]);
        for empty in [
            r#"{"EnterpriseAccountInRoles":null}"#,
            "{}",
            r#"{"Whatever":null,"Links":null}"#,
        ] {
            assert!(
                JsonCodec.account_roles(empty).unwrap().is_empty(),
                "{empty}"
            );
        }
        assert!(JsonCodec.account_roles(r#"{"A":[],"B":[]}"#).is_err());
        assert!(JsonCodec.account_roles(r#"{"Message":"no"}"#).is_err());
    }

    #[test]
    fn scopes_and_one_scope() {
        let item = r#"{"Name":"Production","HierarchyRootName":"vcprod.tech.local","Platform":"VMware","HierarchyObjectType":"ResourcePool","State":"Unprocessed","Links":[{"Rel":"Delete","Href":"https://h/api/security/accounts/a/scopes/0f5e4c3b-2a19-4c8d-9e7f-112233445566"}],"Href":"https://h/api/security/accounts/a/scopes/0f5e4c3b-2a19-4c8d-9e7f-112233445566"}"#;
        let expected = Scope {
            id: guid("0f5e4c3b-2a19-4c8d-9e7f-112233445566"),
            name: "Production".into(),
            hierarchy_root_name: "vcprod.tech.local".into(),
            platform: "VMware".into(),
            object_type: "ResourcePool".into(),
            state: "Unprocessed".into(),
        };
        let list = format!(r#"{{"EnterpriseAccountHierarchyScopes":[{item}]}}"#);
        assert_eq!(JsonCodec.scopes(&list).unwrap(), vec![expected.clone()]);
        assert_eq!(JsonCodec.scope(item).unwrap(), expected);
        assert!(
            JsonCodec
                .scopes(r#"{"EnterpriseAccountHierarchyScopes":[]}"#)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn task() {
        let body = r#"{"TaskId":"task-1","State":"Finished","Operation":"StartRebuildScope","Result":{"Success":true,"Message":""},"Links":[],"Href":"https://h/api/tasks/task-1","Type":"Task"}"#;
        let task = JsonCodec.task(body).unwrap();
        assert_eq!(
            (
                task.task_id.as_str(),
                task.state.as_str(),
                task.operation.as_str()
            ),
            ("task-1", "Finished", "StartRebuildScope")
        );
    }

    #[test]
    fn create_spec_in_documented_order() {
        let spec = AccountCreateSpec {
            account_type: AccountType::Group,
            account_name: "TECH\\Ops".into(),
            role_uids: vec!["urn:veeam:EnterpriseRole:d19a3d33-cb77-4ffe-94e6-001432483a4e".into()],
            allow_restore_all_vms: false,
            scopes: vec![ScopeItem {
                obj_ref: "urn:VMware:Vm:r.vm-7870".into(),
                object_name: "vm \"1\"".into(),
            }],
            flr: Some(FlrSettings {
                inplace_only: false,
                extension_restrictions: None,
            }),
            sql: Some(SqlSettings {
                deny_in_place_restore: true,
            }),
        };
        assert_eq!(
            JsonCodec.account_create_spec(&spec),
            concat!(
                r#"{"AccountType":"Group","AccountName":"TECH\\Ops","#,
                r#""Roles":{"EnterpriseRoles":[{"EnterpriseRoleUid":"urn:veeam:EnterpriseRole:d19a3d33-cb77-4ffe-94e6-001432483a4e"}]},"#,
                r#""AllowRestoreAllVms":false,"#,
                r#""HierarchyScopeObjects":{"HierarchyScopeItems":[{"HierarchyObjRef":"urn:VMware:Vm:r.vm-7870","ObjectName":"vm \"1\""}]},"#,
                r#""FlrSettings":{"FlrInplaceOnly":false},"SqlSettings":{"DenyInPlaceRestore":true}}"#
            )
        );
        let minimal = AccountCreateSpec {
            allow_restore_all_vms: true,
            scopes: vec![],
            flr: None,
            sql: None,
            ..spec
        };
        let json: Value = serde_json::from_str(&JsonCodec.account_create_spec(&minimal)).unwrap();
        assert_eq!(json.as_object().unwrap().len(), 4);
        assert_eq!(json["AllowRestoreAllVms"], Value::Bool(true));
    }

    #[test]
    fn small_specs() {
        assert_eq!(
            JsonCodec.role_assignment_spec("urn:veeam:EnterpriseRole:x"),
            r#"{"EnterpriseRoleUid":"urn:veeam:EnterpriseRole:x"}"#
        );
        let items = [ScopeItem {
            obj_ref: "urn:VMware:ResourcePool:r.resgroup-10734".into(),
            object_name: "RP".into(),
        }];
        assert_eq!(
            JsonCodec.scope_create_spec(&items),
            r#"{"HierarchyScopeItems":[{"HierarchyObjRef":"urn:VMware:ResourcePool:r.resgroup-10734","ObjectName":"RP"}]}"#
        );
        assert_eq!(
            JsonCodec.rebuild_spec(RebuildMode::Unprocessed),
            r#"{"RebuildUnprocessed":{}}"#
        );
        assert_eq!(
            JsonCodec.rebuild_spec(RebuildMode::All),
            r#"{"RebuildAll":{}}"#
        );
        assert_eq!(
            JsonCodec.rebuild_spec(RebuildMode::ForCurrentUser),
            r#"{"RebuildForCurrentUser":{}}"#
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        let refused = "json nested deeper than 64 levels, which no EM answer is";
        // Deeper than serde_json's own limit, and between the two limits.
        for levels in [1_000_000, 100] {
            let body = format!(r#"{{"Refs":{}}}"#, nested(levels));
            assert_eq!(JsonCodec.entity_refs(&body).unwrap_err(), refused);
            assert_eq!(
                error_body(&format!(r#"{{"Message":"x","A":{body}}}"#)),
                None
            );
        }
        assert!(parse(&nested(codec::MAX_DEPTH)).is_ok());
        assert!(parse(&nested(codec::MAX_DEPTH + 1)).is_err());
        // Brackets inside strings, escaped quotes included, are text, not nesting.
        let text = format!(r#"{{"Refs":[],"Name":"\"{}"}}"#, "[".repeat(500));
        assert!(JsonCodec.entity_refs(&text).is_ok());
    }

    #[test]
    fn malformed_json_is_an_error() {
        assert!(JsonCodec.account("{").is_err());
        assert!(JsonCodec.account("[]").is_err());
        assert!(JsonCodec.entity_refs("42").is_err());
    }
}
