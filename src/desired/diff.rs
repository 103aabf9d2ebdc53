//! The change plan that makes the live state what the sheet wants: pure, from the accounts as
//! a snapshot read them and the accounts as the sheet wants them.
//!
//! Rows of one account are written adding first and removing last (roles and scopes added, the
//! flag set, then scopes and roles removed; a scope replaced by another object of the same name
//! is removed just before its successor is added), so that an account never passes through a state
//! with less than both the old and the new access would allow it to keep: no role-less or
//! scope-less moment that EM might refuse.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use crate::plan::{Action, Actions, PlanError, PlanErrors, RoleRef, ScopeRef};
use crate::runner::AccountState;
use crate::runner::state::HeldScope;

use super::{DesiredAccount, DesiredScope};

/// What the plan may do beyond bringing the sheet's accounts into line.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiffOptions {
    /// Delete the accounts on EM that the sheet leaves out.
    pub prune: bool,
}

/// One row of the plan to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedRow {
    /// The account, by name, as reviewers read it.
    pub account: String,
    /// What the row does.
    pub action: Action,
    /// Why the row exists.
    pub comment: String,
}

/// The plan and what it would change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// The rows, account by account.
    pub rows: Vec<PlannedRow>,
    /// Rows by action.
    pub counts: Actions,
    /// Accounts with at least one row.
    pub accounts_changed: u64,
    /// Accounts of the sheet that already are as it wants them.
    pub accounts_unchanged: u64,
    /// Accounts on EM the sheet leaves out, left alone (without `--prune`).
    pub accounts_left_alone: u64,
}

impl Changes {
    fn push(&mut self, account: &str, action: Action, comment: impl Into<String>) {
        self.counts.count(&action);
        self.rows.push(PlannedRow {
            account: account.to_string(),
            action,
            comment: comment.into(),
        });
    }
}

/// Whether the live scope `held` is the scope the sheet names: by object ref where both are
/// known (two objects may share a name), by name otherwise (EM's listing never shows a ref the
/// audit log did not see created). EM matches scope names exactly.
fn same_scope(wanted: &DesiredScope, held: &HeldScope) -> bool {
    match (&wanted.obj_ref, &held.obj_ref) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => wanted.name == held.name,
    }
}

/// The plan that turns `live` into `desired`, or the sheet's problems that prevent one, named
/// by `file` and line.
pub fn diff(
    file: &str,
    desired: &[DesiredAccount],
    live: &[AccountState],
    options: DiffOptions,
) -> Result<Changes, PlanErrors> {
    // EM matches account names case-insensitively.
    let by_name: HashMap<String, &AccountState> =
        live.iter().map(|a| (a.name.to_lowercase(), a)).collect();
    let mut changes = Changes::default();
    let mut problems = Vec::new();
    let mut problem = |line: u64, message: String| {
        problems.push(PlanError {
            file: file.to_string(),
            line,
            message,
        })
    };
    for want in desired {
        let before = changes.rows.len();
        match by_name.get(&want.name.to_lowercase()) {
            Some(held) => existing(want, held, &mut changes, &mut problem),
            None => new_account(want, &mut changes, &mut problem),
        }
        if changes.rows.len() > before {
            changes.accounts_changed += 1;
        } else {
            changes.accounts_unchanged += 1;
        }
    }
    let wanted: HashSet<String> = desired.iter().map(|a| a.name.to_lowercase()).collect();
    for held in live
        .iter()
        .filter(|a| !wanted.contains(&a.name.to_lowercase()))
    {
        if options.prune {
            changes.push(
                &held.name,
                Action::DeleteAccount,
                "desired: account deleted (not in the sheet, --prune)",
            );
            changes.accounts_changed += 1;
        } else {
            changes.accounts_left_alone += 1;
        }
    }
    if problems.is_empty() {
        Ok(changes)
    } else {
        problems.sort_by_key(|p| p.line);
        Err(PlanErrors(problems))
    }
}

/// The rows that bring an account EM has into line with the sheet.
fn existing(
    want: &DesiredAccount,
    held: &AccountState,
    changes: &mut Changes,
    problem: &mut impl FnMut(u64, String),
) {
    if let (Some(wanted), Some(is)) = (want.account_type, held.account_type)
        && wanted != is
    {
        problem(
            want.line,
            format!(
                "type {} differs from EM's {}: an account's type cannot be changed (delete it \
                 and add it again in two plans)",
                wanted.as_str(),
                is.as_str()
            ),
        );
        return;
    }
    if want.roles.is_empty() {
        problem(
            want.line,
            "no roles: an account keeps at least one; to delete it, leave its line out and pass \
             --prune"
                .into(),
        );
        return;
    }
    let name = &held.name;
    for role in &want.roles {
        if !held.roles.iter().any(|r| r.name.eq_ignore_ascii_case(role)) {
            changes.push(
                name,
                Action::AssignRole(RoleRef::Name(role.clone())),
                "desired: role added",
            );
        }
    }
    // Each live scope matches at most one of the sheet's, and the other way round.
    let mut kept = vec![false; held.scopes.len()];
    let mut added: Vec<&DesiredScope> = Vec::new();
    for scope in &want.scopes {
        let found = held
            .scopes
            .iter()
            .enumerate()
            .find(|(i, h)| !kept[*i] && same_scope(scope, h));
        match found {
            Some((i, _)) => kept[i] = true,
            None => added.push(scope),
        }
    }
    let removed: Vec<&HeldScope> = held
        .scopes
        .iter()
        .zip(&kept)
        .filter(|(_, k)| !**k)
        .map(|(s, _)| s)
        .collect();
    // A scope replaced by another object of the same name is removed before the new one is
    // added: apply takes an add-scope as done when the account has a scope of that name on the
    // same platform, type and root, and would then remove the only one.
    let replaced = |s: &HeldScope| added.iter().any(|a| a.name == s.name);
    let remove = |scope: &HeldScope, changes: &mut Changes| {
        // By GUID: two scopes of one account may share a name.
        changes.push(
            name,
            Action::RemoveScope(ScopeRef::Id(scope.id)),
            format!("desired: scope '{}' removed", scope.name),
        );
    };
    for scope in removed.iter().filter(|s| replaced(s)) {
        remove(scope, changes);
    }
    for scope in &added {
        add_scope(want, name, scope, "desired: scope added", changes, problem);
    }
    if want.restore_all_vms != held.allow_restore_all_vms {
        let comment = if want.restore_all_vms {
            "desired: restore-all-vms turned on"
        } else {
            "desired: restore-all-vms turned off"
        };
        changes.push(name, Action::RestoreAllVms(want.restore_all_vms), comment);
    }
    for scope in removed.iter().filter(|s| !replaced(s)) {
        remove(scope, changes);
    }
    for role in &held.roles {
        if !want
            .roles
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&role.name))
        {
            changes.push(
                name,
                Action::RemoveRole(RoleRef::Name(role.name.clone())),
                "desired: role removed",
            );
        }
    }
}

/// An add-scope row, or the problem of a scope the sheet gives no object ref for.
fn add_scope(
    want: &DesiredAccount,
    account: &str,
    scope: &DesiredScope,
    comment: &str,
    changes: &mut Changes,
    problem: &mut impl FnMut(u64, String),
) {
    match &scope.obj_ref {
        Some(obj_ref) => changes.push(
            account,
            Action::AddScope {
                obj_ref: obj_ref.clone(),
                object_name: scope.name.clone(),
            },
            comment,
        ),
        None => problem(
            want.line,
            format!(
                "scope '{}' is not on the account and has no object ref to add it by: write it \
                 as '{} (urn:<Platform>:<Type>:<root>.<ref>)'",
                scope.name, scope.name
            ),
        ),
    }
}

/// The rows that create an account EM does not have, with its roles, flag and scopes.
fn new_account(
    want: &DesiredAccount,
    changes: &mut Changes,
    problem: &mut impl FnMut(u64, String),
) {
    let Some(kind) = want.account_type else {
        problem(
            want.line,
            format!(
                "'{}' is not on EM, and adding it needs its type (User, Group, ExternalUser or \
                 ExternalGroup)",
                want.name
            ),
        );
        return;
    };
    if want.roles.is_empty() {
        problem(
            want.line,
            format!(
                "'{}' is not on EM, and a new account needs a role",
                want.name
            ),
        );
    }
    if !want.restore_all_vms && want.scopes.is_empty() {
        problem(
            want.line,
            format!(
                "'{}' is not on EM, and a new account with restore_all_vms false needs a scope",
                want.name
            ),
        );
    }
    let name = &want.name;
    changes.push(name, Action::AddAccount(kind), "desired: account added");
    for role in &want.roles {
        changes.push(
            name,
            Action::AssignRole(RoleRef::Name(role.clone())),
            "desired: role of the new account",
        );
    }
    changes.push(
        name,
        Action::RestoreAllVms(want.restore_all_vms),
        "desired: restore-all-vms of the new account",
    );
    for scope in &want.scopes {
        add_scope(
            want,
            name,
            scope,
            "desired: scope of the new account",
            changes,
            problem,
        );
    }
}

/// Writes `rows` as plan CSV, each with `ticket`. Cells are written as they are, with no `'`
/// before a leading `=`: the plan is read by embatch, which takes every cell literally, and an
/// account named `=Finance+Ops` must stay that name.
pub fn write_plan<W: Write>(rows: &[PlannedRow], ticket: Option<&str>, out: W) -> io::Result<()> {
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(crate::plan::WRITTEN_COLUMNS)?;
    for row in rows {
        let object_name = match &row.action {
            Action::AddScope { object_name, .. } => object_name.as_str(),
            _ => "",
        };
        let target = row.action.target_text();
        csv.write_record([
            row.account.as_str(),
            row.action.name(),
            target.as_str(),
            object_name,
            ticket.unwrap_or(""),
            row.comment.as_str(),
        ])?;
    }
    csv.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::em::AccountType;
    use crate::runner::state::HeldRole;
    use uuid::Uuid;

    const REF: &str = "urn:VMware:ResourcePool:root1.resgroup-5";

    fn held(
        name: &str,
        roles: &[&str],
        flag: bool,
        scopes: &[(&str, Option<&str>)],
    ) -> AccountState {
        AccountState {
            id: Uuid::new_v4(),
            name: name.into(),
            allow_restore_all_vms: flag,
            roles: roles
                .iter()
                .map(|r| HeldRole {
                    id: Uuid::new_v4(),
                    name: r.to_string(),
                })
                .collect(),
            scopes: scopes
                .iter()
                .enumerate()
                .map(|(i, (n, r))| HeldScope {
                    id: Uuid::from_u128(100 + i as u128),
                    name: n.to_string(),
                    platform: "VMware".into(),
                    object_type: "ResourcePool".into(),
                    root: "root1".into(),
                    obj_ref: r.map(str::to_string),
                })
                .collect(),
            account_type: Some(AccountType::User),
            flr: None,
            sql: None,
        }
    }

    fn want(
        line: u64,
        name: &str,
        roles: &[&str],
        flag: bool,
        scopes: &[(&str, Option<&str>)],
    ) -> DesiredAccount {
        DesiredAccount {
            line,
            name: name.into(),
            account_type: Some(AccountType::User),
            restore_all_vms: flag,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            scopes: scopes
                .iter()
                .map(|(n, r)| DesiredScope {
                    name: n.to_string(),
                    obj_ref: r.map(str::to_string),
                })
                .collect(),
        }
    }

    fn rows(changes: &Changes) -> Vec<String> {
        changes
            .rows
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} # {}",
                    r.account,
                    r.action.name(),
                    r.action.target_text(),
                    r.comment
                )
            })
            .collect()
    }

    #[test]
    fn an_account_as_wanted_gets_no_row() {
        let live = [held(
            "TECH\\a",
            &["Portal User"],
            false,
            &[("Finance", None)],
        )];
        let desired = [want(
            2,
            "tech\\A",
            &["portal user"],
            false,
            &[("Finance", Some(REF))],
        )];
        let changes = diff("d.csv", &desired, &live, DiffOptions::default()).unwrap();
        assert!(changes.rows.is_empty(), "{:?}", rows(&changes));
        assert_eq!(
            (changes.accounts_unchanged, changes.accounts_changed),
            (1, 0)
        );
    }

    #[test]
    fn changes_are_ordered_adding_first_and_say_why() {
        let live = [held(
            "TECH\\a",
            &["Portal User", "VM Restore Operator"],
            true,
            &[
                ("Old", None),
                ("Finance", Some("urn:VMware:ResourcePool:root1.resgroup-9")),
            ],
        )];
        let desired = [want(
            2,
            "TECH\\a",
            &["Portal User", "File Restore Operator"],
            false,
            &[("Finance", Some(REF))],
        )];
        let changes = diff("d.csv", &desired, &live, DiffOptions::default()).unwrap();
        assert_eq!(
            rows(&changes),
            [
                "TECH\\a assign-role File Restore Operator # desired: role added",
                // Another object of the same name: removed before the new one is added.
                "TECH\\a remove-scope 00000000-0000-0000-0000-000000000065 # desired: scope 'Finance' removed",
                format!("TECH\\a add-scope {REF} # desired: scope added").as_str(),
                "TECH\\a restore-all-vms off # desired: restore-all-vms turned off",
                "TECH\\a remove-scope 00000000-0000-0000-0000-000000000064 # desired: scope 'Old' removed",
                "TECH\\a remove-role VM Restore Operator # desired: role removed",
            ]
        );
        assert_eq!(changes.counts.total(), 6);
        assert_eq!(changes.counts.remove_scope, 2);
    }

    #[test]
    fn accounts_left_out_are_kept_unless_pruned() {
        let live = [
            held("TECH\\a", &["Portal User"], true, &[]),
            held("TECH\\gone", &["Portal User"], true, &[]),
        ];
        let desired = [
            want(2, "TECH\\a", &["Portal User"], true, &[]),
            want(
                3,
                "TECH\\new",
                &["Portal User"],
                false,
                &[("Sales", Some(REF))],
            ),
        ];
        let kept = diff("d.csv", &desired, &live, DiffOptions { prune: false }).unwrap();
        assert_eq!(
            rows(&kept),
            [
                "TECH\\new add-account User # desired: account added",
                "TECH\\new assign-role Portal User # desired: role of the new account",
                "TECH\\new restore-all-vms off # desired: restore-all-vms of the new account",
                format!("TECH\\new add-scope {REF} # desired: scope of the new account").as_str(),
            ]
        );
        assert_eq!(kept.accounts_left_alone, 1);
        let pruned = diff("d.csv", &desired, &live, DiffOptions { prune: true }).unwrap();
        assert_eq!(
            rows(&pruned).last().unwrap(),
            "TECH\\gone delete-account confirm # desired: account deleted (not in the sheet, --prune)"
        );
        assert_eq!(
            (pruned.counts.delete_account, pruned.accounts_left_alone),
            (1, 0)
        );
    }

    #[test]
    fn what_no_plan_can_do_is_named_by_line() {
        let mut live = vec![held("TECH\\a", &["Portal User"], true, &[])];
        live[0].account_type = Some(AccountType::Group);
        let mut untyped = want(4, "TECH\\new", &[], false, &[]);
        untyped.account_type = None;
        let desired = [
            want(2, "TECH\\a", &["Portal User"], true, &[]),
            want(3, "TECH\\b", &[], false, &[("NoRef", None)]),
            untyped,
        ];
        live.push(held("TECH\\b", &["Portal User"], true, &[]));
        let got: Vec<String> = diff("d.csv", &desired, &live, DiffOptions::default())
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(
            got[0].starts_with("d.csv:2: type User differs from EM's Group"),
            "{got:?}"
        );
        assert!(got[1].starts_with("d.csv:3: no roles"), "{got:?}");
        assert!(
            got[2].starts_with("d.csv:4: 'TECH\\new' is not on EM, and adding it needs its type")
        );
        let desired = [want(
            5,
            "TECH\\c",
            &["Portal User"],
            true,
            &[("NoRef", None)],
        )];
        let got = diff("d.csv", &desired, &[], DiffOptions::default()).unwrap_err();
        assert!(
            got.0[0]
                .message
                .starts_with("scope 'NoRef' is not on the account and has no object ref")
        );
    }

    #[test]
    fn the_written_plan_is_a_plan_embatch_accepts() {
        let live = [held(
            "=Finance+Ops",
            &["Portal User", "VM Restore Operator"],
            true,
            &[("Old", None)],
        )];
        let desired = [
            want(2, "=Finance+Ops", &["Portal User"], true, &[]),
            want(
                3,
                "TECH\\new",
                &["Portal User"],
                false,
                &[("Sales, Inc", Some(REF))],
            ),
        ];
        let changes = diff("d.csv", &desired, &live, DiffOptions::default()).unwrap();
        let mut out = Vec::new();
        write_plan(&changes.rows, Some("CHG-1"), &mut out).unwrap();
        let plan = crate::plan::parse("changes.csv", &out[..]).unwrap();
        assert_eq!(plan.rows.len(), changes.rows.len());
        assert_eq!(
            plan.rows[0].account,
            crate::plan::AccountRef::Name("=Finance+Ops".into())
        );
        assert_eq!(plan.rows[0].ticket.as_deref(), Some("CHG-1"));
        assert_eq!(
            plan.rows[0].comment.as_deref(),
            Some("desired: scope 'Old' removed")
        );
        assert!(
            matches!(&plan.rows[5].action, Action::AddScope { object_name, .. } if object_name == "Sales, Inc")
        );
    }
}
