//! `undo`: the inverse of a completed run. Each row the run applied gets the rows that take it
//! back, newest first, each guarded by what the run left on the account, so that a change
//! someone made since is never overwritten; a deleted account is re-created from the state
//! recorded before it was deleted.

use std::collections::HashMap;

use serde_json::Value;
use uuid::Uuid;

use crate::audit::{AuditReader, RecordedRow, RowColumns, RunInfo};
use crate::runner::state::{AccountState, Guard};
use crate::runner::{AccountSettings, Job, RunRecord, RunSpec, ScopeRebuild};

use super::{HistoryError, refuse_kind, refuse_live, to_csv, to_rows};

/// A row of the undone run that cannot be undone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Irreversible {
    /// Its line in the undone run's plan.
    pub line: u64,
    /// Why.
    pub reason: String,
}

/// The inverse of a run, ready to run or to show.
#[derive(Debug)]
pub struct UndoPlan {
    /// The run to execute.
    pub spec: RunSpec,
    /// The inverse plan as CSV, for `--dry-run` and `--emit-plan`.
    pub csv: String,
    /// What each inverse row expects to find, in job order, for `--dry-run`.
    pub guards: Vec<Guard>,
    /// Rows that cannot be undone.
    pub irreversible: Vec<Irreversible>,
}

/// `undo RUN`: the inverse of every row RUN changed, newest first, each guarded by the effect
/// RUN had; refused when RUN was already undone or has rows whose effect is unknown.
pub fn undo(reader: &AuditReader, run: &RunInfo) -> Result<UndoPlan, HistoryError> {
    refuse_kind(run, "undo")?;
    refuse_live(run, "undo")?;
    if run.status == "crashed" || run.counts.in_doubt > 0 || run.counts.pending > 0 {
        return Err(HistoryError::Refused(format!(
            "run {} did not finish (rows pending or in doubt); finish it with `embatch resume {}` \
             before undoing it",
            run.run_id, run.run_id
        )));
    }
    if let Some(&earlier) = reader.child_runs(run.run_id, "undo")?.iter().find(|&&id| {
        reader
            .run(crate::audit::RunSelector::Id(id))
            .is_ok_and(|r| r.status != "aborted")
    }) {
        return Err(HistoryError::Refused(format!(
            "run {} was already undone by run {earlier}; resume run {earlier} if it did not finish",
            run.run_id
        )));
    }
    let refs = reader.known_scope_refs()?;
    let mut applied: Vec<RecordedRow> = reader
        .recorded_rows(run.run_id)?
        .into_iter()
        .filter(|r| r.end.outcome == "applied")
        .collect();
    // Newest first: within each account, later changes are undone before earlier ones.
    applied.reverse();
    let mut columns = Vec::new();
    let mut guards = Vec::new();
    let mut sources = Vec::new();
    let mut irreversible = Vec::new();
    let mut settings = Vec::new();
    // Accounts the run created are undone by deleting them, which takes every other change the
    // run made to them along; those rows get no inverse of their own.
    let created: std::collections::HashSet<&str> = applied
        .iter()
        .filter(|r| r.columns.action == "add-account")
        .filter_map(|r| r.account_id.as_deref())
        .collect();
    for rec in &applied {
        if rec.columns.action != "add-account"
            && rec
                .account_id
                .as_deref()
                .is_some_and(|id| created.contains(id))
        {
            continue;
        }
        match inverse(rec, &refs) {
            Ok(rows) => {
                for row in rows {
                    columns.push(RowColumns {
                        row_no: columns.len() as u64,
                        line: rec.columns.line,
                        account: row.account,
                        action: row.action.into(),
                        target: row.target,
                        object_name: row.object_name,
                        ticket: rec.columns.ticket.clone(),
                        comment: Some(format!(
                            "undo of run {} line {}",
                            run.run_id, rec.columns.line
                        )),
                        annotations: None,
                    });
                    guards.push(row.guard);
                    settings.push(row.settings);
                    sources.push(rec);
                }
            }
            Err(reason) => irreversible.push(Irreversible {
                line: rec.columns.line,
                reason,
            }),
        }
    }
    irreversible.sort_by_key(|i| i.line);
    let csv = to_csv(&columns);
    let rows = if columns.is_empty() {
        Vec::new()
    } else {
        to_rows(&format!("undo of run {}", run.run_id), &columns)?
    };
    let annotations = sources
        .iter()
        .zip(&guards)
        .zip(&settings)
        .map(|((rec, guard), settings)| {
            Some(
                serde_json::json!({
                    "undo_of_row": rec.columns.row_no,
                    "replaces": rec.account_id,
                    "guard": guard,
                    "account_settings": settings,
                })
                .to_string(),
            )
        })
        .collect();
    let jobs = rows
        .into_iter()
        .zip(guards.iter().zip(&settings))
        .enumerate()
        .map(|(i, (row, (guard, settings)))| Job {
            row_no: i as u64,
            row,
            guard: Some(guard.clone()),
            maybe_sent: false,
            account_settings: settings.clone(),
        })
        .collect();
    Ok(UndoPlan {
        spec: RunSpec {
            record: RunRecord::New {
                kind: "undo".into(),
                parent_run_id: Some(run.run_id),
                plan_file: run.plan_file.clone(),
                plan_sha256: run.plan_sha256.clone(),
                annotations,
            },
            jobs,
            stream: None,
            force: false,
            known_refs: refs,
            earlier_failures: 0,
            rebuild_scopes: ScopeRebuild::Never,
        },
        csv,
        guards,
        irreversible,
    })
}

/// The rows that re-create a deleted account from the state recorded before it was deleted.
fn recreate(rec: &RecordedRow, refs: &HashMap<Uuid, String>) -> Result<Vec<Inverse>, String> {
    let prior: AccountState = rec
        .end
        .prior_state
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok())
        .ok_or_else(|| "the deleted account's state was not recorded".to_string())?;
    let kind = prior
        .account_type
        .ok_or_else(|| "the deleted account's type was not recorded".to_string())?;
    let mut scopes = Vec::new();
    for scope in &prior.scopes {
        let obj_ref = scope
            .obj_ref
            .clone()
            .or_else(|| refs.get(&scope.id).cloned())
            .ok_or_else(|| {
                format!(
                    "irreversible: EM does not show the object ref of scope {} of {}, and no run in \
                     this log recorded it",
                    scope.name, prior.name
                )
            })?;
        scopes.push((obj_ref, scope.name.clone()));
    }
    let name = prior.name.clone();
    let guard = Guard::Absent { name: name.clone() };
    let row = |action, target: String, object_name| Inverse {
        account: name.clone(),
        action,
        target,
        object_name,
        guard: guard.clone(),
        settings: None,
    };
    let mut rows = vec![Inverse {
        settings: Some(AccountSettings {
            flr: prior.flr.clone(),
            sql: prior.sql.clone(),
        }),
        ..row("add-account", kind.as_str().to_string(), None)
    }];
    for role in &prior.roles {
        rows.push(row("assign-role", role.id.to_string(), None));
    }
    for (obj_ref, scope_name) in scopes {
        rows.push(row("add-scope", obj_ref, Some(scope_name)));
    }
    if !prior.allow_restore_all_vms {
        rows.push(row("restore-all-vms", "off".into(), None));
    }
    Ok(rows)
}

/// One inverse row: account, action, target, object name, guard, and for a re-created
/// account the settings EM only takes at creation.
struct Inverse {
    account: String,
    action: &'static str,
    target: String,
    object_name: Option<String>,
    guard: Guard,
    settings: Option<AccountSettings>,
}

fn inv(
    account: String,
    action: &'static str,
    target: String,
    object_name: Option<String>,
    guard: Guard,
) -> Vec<Inverse> {
    vec![Inverse {
        account,
        action,
        target,
        object_name,
        guard,
        settings: None,
    }]
}

/// The inverse of one applied row, and what the account must still show for it to run.
fn inverse(rec: &RecordedRow, refs: &HashMap<Uuid, String>) -> Result<Vec<Inverse>, String> {
    let account = rec
        .account_id
        .clone()
        .ok_or_else(|| "the account's id was not recorded".to_string())?;
    let result: Value = rec
        .end
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or(Value::Null);
    let uuid = |key: &str| {
        result
            .get(key)
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
    };
    let text = |key: &str| result.get(key).and_then(Value::as_str).map(str::to_string);
    let role = || {
        uuid("role_id")
            .map(|id| (id, text("role_name").unwrap_or_else(|| id.to_string())))
            .ok_or_else(|| "the role's id was not recorded".to_string())
    };
    match rec.columns.action.as_str() {
        "assign-role" => {
            let (role, name) = role()?;
            Ok(inv(
                account,
                "remove-role",
                role.to_string(),
                None,
                Guard::Holds { role, name },
            ))
        }
        "remove-role" => {
            let (role, name) = role()?;
            Ok(inv(
                account,
                "assign-role",
                role.to_string(),
                None,
                Guard::Lacks { role, name },
            ))
        }
        "add-scope" => {
            let scope = uuid("scope_id")
                .ok_or_else(|| "the id of the scope it created was not recorded".to_string())?;
            let name = rec.columns.object_name.clone().unwrap_or_default();
            Ok(inv(
                account,
                "remove-scope",
                scope.to_string(),
                None,
                Guard::HasScope { scope, name },
            ))
        }
        "remove-scope" => {
            let scope = uuid("scope_id");
            let prior: Option<AccountState> = rec
                .end
                .prior_state
                .as_deref()
                .and_then(|p| serde_json::from_str(p).ok());
            let held = prior
                .as_ref()
                .and_then(|p| p.scopes.iter().find(|s| Some(s.id) == scope).cloned());
            let name = text("name")
                .or_else(|| held.as_ref().map(|h| h.name.clone()))
                .unwrap_or_else(|| rec.columns.target.clone());
            let obj_ref = text("obj_ref")
                .or_else(|| held.and_then(|h| h.obj_ref))
                .or_else(|| scope.and_then(|s| refs.get(&s).cloned()))
                .ok_or_else(|| {
                    format!(
                        "irreversible: EM does not show the object ref of scope {name}, and no run \
                         in this log recorded it"
                    )
                })?;
            Ok(inv(
                account,
                "add-scope",
                obj_ref.clone(),
                Some(name.clone()),
                Guard::LacksScope { obj_ref, name },
            ))
        }
        "restore-all-vms" => {
            let value = result
                .get("restore_all_vms")
                .and_then(Value::as_bool)
                .ok_or_else(|| "the value it set was not recorded".to_string())?;
            let target = if value { "off" } else { "on" };
            Ok(inv(
                account,
                "restore-all-vms",
                target.into(),
                None,
                Guard::Flag { value },
            ))
        }
        "add-account" => {
            let roles: Vec<Uuid> = result
                .get("roles")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str())
                        .filter_map(|s| Uuid::parse_str(s).ok())
                        .collect()
                })
                .ok_or_else(|| "the roles it was created with were not recorded".to_string())?;
            Ok(inv(
                account,
                "delete-account",
                "confirm".into(),
                None,
                Guard::RolesAre { roles },
            ))
        }
        "delete-account" => recreate(rec, refs),
        other => Err(format!("action {other} cannot be undone")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(action: &str, target: &str, result: Value) -> RecordedRow {
        RecordedRow {
            columns: RowColumns {
                row_no: 3,
                line: 5,
                account: "TECH\\alice".into(),
                action: action.into(),
                target: target.into(),
                object_name: None,
                ticket: Some("CHG-1".into()),
                comment: None,
                annotations: None,
            },
            account_id: Some(Uuid::from_u128(7).to_string()),
            end: crate::audit::RowResult {
                outcome: "applied".into(),
                error: None,
                prior_state: None,
                result: Some(result.to_string()),
            },
        }
    }

    #[test]
    fn inverses_and_their_guards() {
        let role = Uuid::from_u128(1);
        let r = rec(
            "assign-role",
            "Portal User",
            serde_json::json!({"role_id": role, "role_name": "Portal User"}),
        );
        let inv = &inverse(&r, &HashMap::new()).unwrap()[0];
        assert_eq!(
            (inv.action, inv.target.as_str()),
            ("remove-role", role.to_string().as_str())
        );
        assert!(matches!(inv.guard, Guard::Holds { .. }));

        let r = rec(
            "restore-all-vms",
            "on",
            serde_json::json!({"restore_all_vms": true}),
        );
        let inv = &inverse(&r, &HashMap::new()).unwrap()[0];
        assert_eq!(
            (inv.action, inv.target.as_str()),
            ("restore-all-vms", "off")
        );
        assert_eq!(inv.guard, Guard::Flag { value: true });
    }

    #[test]
    fn a_removed_scope_without_a_known_ref_is_irreversible() {
        let scope = Uuid::from_u128(9);
        let r = rec(
            "remove-scope",
            "Finance",
            serde_json::json!({"scope_id": scope, "name": "Finance", "obj_ref": null}),
        );
        let err = inverse(&r, &HashMap::new()).err().unwrap();
        assert!(err.contains("irreversible"), "{err}");
        let refs = HashMap::from([(scope, "urn:VMware:ResourcePool:root.resgroup-1".to_string())]);
        let inv = &inverse(&r, &refs).unwrap()[0];
        assert_eq!(
            (inv.action, inv.target.as_str(), inv.object_name.as_deref()),
            (
                "add-scope",
                "urn:VMware:ResourcePool:root.resgroup-1",
                Some("Finance")
            )
        );
    }
}
