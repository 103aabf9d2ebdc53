//! Plan rows rebuilt from the columns the audit log recorded for them, so a run can keep its
//! rows on disk and read each account's rows back only when it works on that account.
//!
//! The recorded columns are the validated row in normalised form (`audit::RowColumns::of` writes
//! them, with the account's text and the annotations' JSON made here), so rebuilding uses the
//! same cell parsers as validation and gives back the row that was recorded. Only the cells are
//! checked again: the checks between rows (duplicates, contradictions) passed when the plan was
//! validated, before the row was recorded.

use super::cells::{self, Kind};
use super::{AccountRef, Action, PlanRow};

/// The recorded columns of one plan row, borrowed from wherever they were read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordedColumns<'a> {
    /// The physical line in the plan.
    pub line: u64,
    /// The account as the plan named it (a GUID in its normal form, or a name).
    pub account: &'a str,
    /// The action's name.
    pub action: &'a str,
    /// The target as text.
    pub target: &'a str,
    /// The scope's display name, for `add-scope`.
    pub object_name: Option<&'a str>,
    /// The ticket.
    pub ticket: Option<&'a str>,
    /// The comment.
    pub comment: Option<&'a str>,
    /// The extra plan columns, as a JSON object of strings.
    pub annotations: Option<&'a str>,
}

/// Rebuilds the plan row recorded as `columns`; `Err` says which column cannot be read back,
/// which only happens when the log was changed by something other than embatch.
///
/// Annotations come back in the order of their names: the log keeps them as a JSON object,
/// which does not keep the plan's column order.
pub fn recorded_row(columns: &RecordedColumns<'_>) -> Result<PlanRow, String> {
    let account = cells::parse_account(columns.account)?;
    let kind = cells::parse_kind(columns.action)?;
    let target = columns.target;
    let action = match kind {
        Kind::AssignRole => Action::AssignRole(cells::parse_role(kind, target)?),
        Kind::RemoveRole => Action::RemoveRole(cells::parse_role(kind, target)?),
        Kind::RemoveScope => Action::RemoveScope(cells::parse_scope(target)?),
        Kind::RestoreAllVms => Action::RestoreAllVms(cells::parse_flag(target)?),
        Kind::AddAccount => Action::AddAccount(cells::parse_account_type(target)?),
        Kind::DeleteAccount => {
            cells::check_delete_target(target)?;
            Action::DeleteAccount
        }
        Kind::AddScope => {
            cells::check_obj_ref(target)?;
            let object_name = match columns.object_name {
                Some(name) if !name.is_empty() => name,
                _ => return Err("add-scope was recorded without an object_name".into()),
            };
            Action::AddScope {
                obj_ref: target.to_string(),
                object_name: object_name.to_string(),
            }
        }
    };
    Ok(PlanRow {
        line: columns.line,
        account,
        action,
        ticket: columns.ticket.map(str::to_string),
        comment: columns.comment.map(str::to_string),
        annotations: annotations(columns.annotations)?,
    })
}

impl AccountRef {
    /// The account as a plan names it and the log records it: a GUID in its normal form, or
    /// the name.
    pub fn text(&self) -> String {
        match self {
            AccountRef::Id(id) => id.to_string(),
            AccountRef::Name(name) => name.clone(),
        }
    }
}

impl PlanRow {
    /// The row's annotations as the log records them: one JSON object of strings, or nothing
    /// when the row has none. [`recorded_row`] reads them back.
    pub fn annotations_json(&self) -> Option<String> {
        if self.annotations.is_empty() {
            return None;
        }
        let map: serde_json::Map<String, serde_json::Value> = self
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        Some(serde_json::Value::Object(map).to_string())
    }
}

/// The annotations of a row from their recorded JSON object.
fn annotations(json: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let Some(json) = json else {
        return Ok(Vec::new());
    };
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("recorded annotations: {e}"))?;
    let serde_json::Value::Object(map) = value else {
        return Err("recorded annotations are not a JSON object".into());
    };
    map.into_iter()
        .map(|(name, value)| match value {
            serde_json::Value::String(text) => Ok((name, text)),
            _ => Err(format!("recorded annotation '{name}' is not a string")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{AccountRef, RoleRef, ScopeRef};

    const G: &str = "0f8e6a57-1c2b-4d3e-9f40-5a6b7c8d9e01";

    fn columns<'a>(account: &'a str, action: &'a str, target: &'a str) -> RecordedColumns<'a> {
        RecordedColumns {
            line: 7,
            account,
            action,
            target,
            ..RecordedColumns::default()
        }
    }

    #[test]
    fn targets_are_parsed_into_their_forms() {
        let row = recorded_row(&columns(G, "remove-scope", G)).unwrap();
        assert_eq!(row.account, AccountRef::Id(G.parse().unwrap()));
        assert_eq!(
            row.action,
            Action::RemoveScope(ScopeRef::Id(G.parse().unwrap()))
        );
        assert_eq!(row.line, 7);
        let row = recorded_row(&columns("TECH\\x", "assign-role", "Portal User")).unwrap();
        assert_eq!(
            row.action,
            Action::AssignRole(RoleRef::Name("Portal User".into()))
        );
        let row = recorded_row(&columns("TECH\\x", "restore-all-vms", "off")).unwrap();
        assert_eq!(row.action, Action::RestoreAllVms(false));
    }

    #[test]
    fn columns_that_cannot_have_been_recorded_are_refused() {
        assert!(recorded_row(&columns("", "assign-role", "Portal User")).is_err());
        assert!(recorded_row(&columns("TECH\\x", "grant", "Portal User")).is_err());
        assert!(recorded_row(&columns("TECH\\x", "restore-all-vms", "maybe")).is_err());
        let scope = columns("TECH\\x", "add-scope", "urn:VMware:ResourcePool:r.p");
        assert!(recorded_row(&scope).is_err(), "no object name");
        let bad_json = RecordedColumns {
            annotations: Some("[1]"),
            ..columns("TECH\\x", "delete-account", "confirm")
        };
        assert!(recorded_row(&bad_json).is_err());
        let not_text = RecordedColumns {
            annotations: Some(r#"{"n":1}"#),
            ..columns("TECH\\x", "delete-account", "confirm")
        };
        assert!(recorded_row(&not_text).is_err());
    }
}
