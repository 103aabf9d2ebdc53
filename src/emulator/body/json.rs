//! JSON request bodies, read with a .NET serializer's tolerance: keys in any case, booleans
//! that may be strings, lists that may come wrapped in an object or as a single object, and
//! unknown keys ignored.

use crate::emulator::wire::ApiError;

/// A property of a JSON object, found case-insensitively as .NET serializers do.
pub(super) fn json_get<'a>(
    value: &'a serde_json::Value,
    key: &str,
) -> Option<&'a serde_json::Value> {
    value
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

pub(super) fn json_object<'a>(
    value: &'a serde_json::Value,
    what: &str,
) -> Result<&'a serde_json::Value, ApiError> {
    if value.is_object() {
        Ok(value)
    } else {
        Err(ApiError::bad_request(format!(
            "{what} must be a JSON object"
        )))
    }
}

pub(super) fn json_str(value: &serde_json::Value, key: &str) -> Result<String, ApiError> {
    match json_get(value, key) {
        Some(serde_json::Value::String(s)) => Ok(s.trim().to_owned()),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
        None => Err(ApiError::bad_request(format!("{key} is required"))),
    }
}

/// A JSON boolean; the strings `"true"`/`"True"`/`"false"` too, since EM's own doc samples
/// send them that way.
pub(super) fn json_bool(value: &serde_json::Value, key: &str) -> Result<Option<bool>, ApiError> {
    match json_get(value, key) {
        None => Ok(None),
        Some(serde_json::Value::Bool(b)) => Ok(Some(*b)),
        Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(ApiError::bad_request(format!(
            "{key} must be true or false"
        ))),
    }
}

/// Items of a JSON list property: an array, an object wrapping one (`{"X":[...]}`), or a
/// single object (one docs fragment shows `HierarchyScopeItem` as an object).
pub(super) fn json_items<'a>(
    value: &'a serde_json::Value,
    inner_keys: &[&str],
) -> Vec<&'a serde_json::Value> {
    match value {
        serde_json::Value::Array(items) => items.iter().collect(),
        serde_json::Value::Object(_) => {
            for key in inner_keys {
                if let Some(inner) = json_get(value, key) {
                    return json_items(inner, &[]);
                }
            }
            if inner_keys.is_empty() {
                vec![value]
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::RebuildMode;
    use super::super::fixtures::{ROLE, json};
    use super::super::spec::{account_spec, rebuild_spec, scope_spec};

    #[test]
    fn json_specs_accept_the_documented_shapes() {
        let items = json(
            r#"{"HierarchyScopeItems":[{"HierarchyObjRef":"urn:VMware:Vm:r.vm-1","ObjectName":"a"}]}"#,
        );
        assert_eq!(scope_spec(&items).unwrap()[0].name, "a");
        let single = json(
            r#"{"HierarchyScopeItem":{"HierarchyObjRef":"urn:VMware:Vm:r.vm-1","ObjectName":"a"}}"#,
        );
        assert_eq!(scope_spec(&single).unwrap().len(), 1);
        let spec = json(&format!(
            r#"{{"AccountType":"User","AccountName":"TECH\\a","Roles":{{"EnterpriseRoles":[{{"EnterpriseRoleUid":"{ROLE}"}}]}},
               "AllowRestoreAllVms":"False","HierarchyScopeObjects":{{"HierarchyScopeItems":[{{"HierarchyObjRef":"urn:VMware:Vm:r.vm-1","ObjectName":"a"}}]}},
               "FlrSettings":{{"FlrInplaceOnly":"True"}},"Extra":1}}"#
        ));
        let spec = account_spec(&spec).unwrap();
        assert!(!spec.allow_restore_all_vms && spec.flr_inplace_only);
        assert_eq!(spec.scopes.len(), 1);
        assert_eq!(
            rebuild_spec(&json(r#"{"RebuildUnprocessed":{}}"#)).unwrap(),
            RebuildMode::Unprocessed
        );
        assert_eq!(rebuild_spec(&json(r#"{}"#)).unwrap_err().status, 400);
    }
}
