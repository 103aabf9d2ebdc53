//! The meaning of single plan cells: accounts, actions, targets and the restore-all-VMs flag,
//! each parsed from trimmed text into the plan's types or into a message saying what is wrong.

use uuid::Uuid;

use super::{AccountRef, RoleRef, ScopeRef};
use crate::em::AccountType;

/// The actions a plan row can name, without their targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    AssignRole,
    RemoveRole,
    AddScope,
    RemoveScope,
    RestoreAllVms,
    AddAccount,
    DeleteAccount,
}

impl Kind {
    /// Every kind with its spelling in plans.
    pub(super) const ALL: [(Kind, &'static str); 7] = [
        (Kind::AssignRole, "assign-role"),
        (Kind::RemoveRole, "remove-role"),
        (Kind::AddScope, "add-scope"),
        (Kind::RemoveScope, "remove-scope"),
        (Kind::RestoreAllVms, "restore-all-vms"),
        (Kind::AddAccount, "add-account"),
        (Kind::DeleteAccount, "delete-account"),
    ];

    /// The spelling in plans.
    pub(super) fn name(self) -> &'static str {
        Kind::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, n)| *n)
            .expect("every kind is listed in Kind::ALL")
    }
}

/// Messages quote cell values; a value longer than this is cut, so that a comment pasted into
/// the wrong column does not flood the report.
const QUOTE_MAX: usize = 100;

/// `value` in single quotes, shortened when long.
pub(super) fn quoted(value: &str) -> String {
    if value.chars().count() <= QUOTE_MAX {
        format!("'{value}'")
    } else {
        let cut: String = value.chars().take(QUOTE_MAX - 3).collect();
        format!("'{cut}...'")
    }
}

/// Parses an action name, case-insensitively.
pub(super) fn parse_kind(cell: &str) -> Result<Kind, String> {
    if cell.is_empty() {
        return Err("empty action".into());
    }
    if let Some((kind, _)) = Kind::ALL.iter().find(|(_, n)| n.eq_ignore_ascii_case(cell)) {
        return Ok(*kind);
    }
    let names = Kind::ALL.map(|(_, n)| n);
    Err(match suggest(cell, &names) {
        Some(near) => format!("unknown action {} (did you mean '{near}'?)", quoted(cell)),
        None => format!(
            "unknown action {} (expected one of {})",
            quoted(cell),
            names.join(", ")
        ),
    })
}

/// Parses an account cell: a GUID, `urn:veeam:EnterpriseAccount:<guid>`, or a name.
pub(super) fn parse_account(cell: &str) -> Result<AccountRef, String> {
    if cell.is_empty() {
        return Err("empty account".into());
    }
    if has_urn_prefix(cell) {
        return urn_guid(cell, "EnterpriseAccount")
            .map(AccountRef::Id)
            .ok_or_else(|| {
                format!(
                    "malformed account URN {} (expected urn:veeam:EnterpriseAccount:<guid>)",
                    quoted(cell)
                )
            });
    }
    if looks_like_guid(cell) {
        return parse_guid(cell)
            .map(AccountRef::Id)
            .ok_or_else(|| format!("malformed account GUID {}", quoted(cell)));
    }
    plain("account name", cell)?;
    Ok(AccountRef::Name(cell.to_string()))
}

/// Parses a role target: a GUID, `urn:veeam:EnterpriseRole:<guid>`, or a role name.
pub(super) fn parse_role(kind: Kind, cell: &str) -> Result<RoleRef, String> {
    if cell.is_empty() {
        return Err(format!(
            "empty target: {} needs a role name, GUID or urn:veeam:EnterpriseRole:<guid>",
            kind.name()
        ));
    }
    if has_urn_prefix(cell) {
        return urn_guid(cell, "EnterpriseRole")
            .map(RoleRef::Id)
            .ok_or_else(|| {
                format!(
                    "malformed role URN {} (expected urn:veeam:EnterpriseRole:<guid>)",
                    quoted(cell)
                )
            });
    }
    if looks_like_guid(cell) {
        return parse_guid(cell)
            .map(RoleRef::Id)
            .ok_or_else(|| format!("malformed role GUID {}", quoted(cell)));
    }
    plain("role name", cell)?;
    Ok(RoleRef::Name(cell.to_string()))
}

/// Checks an add-scope target: `urn:<Platform>:<ObjType>:<root>.<objref>`.
pub(super) fn check_obj_ref(cell: &str) -> Result<(), String> {
    if cell.is_empty() {
        return Err(
            "empty target: add-scope needs a hierarchy object ref such as \
             urn:VMware:ResourcePool:<root>.resgroup-1"
                .into(),
        );
    }
    if is_obj_ref(cell) {
        Ok(())
    } else {
        Err(format!(
            "malformed hierarchy object ref {} (expected urn:<Platform>:<ObjType>:<root>.<objref>, \
             e.g. urn:VMware:ResourcePool:<root>.resgroup-1)",
            quoted(cell)
        ))
    }
}

fn is_obj_ref(cell: &str) -> bool {
    let mut parts = cell.splitn(4, ':');
    let (Some(urn), Some(platform), Some(object_type), Some(rest)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let Some((root, object)) = rest.split_once('.') else {
        return false;
    };
    let token = |s: &str| !s.is_empty() && !s.chars().any(char::is_whitespace);
    urn.eq_ignore_ascii_case("urn")
        && word(platform)
        && word(object_type)
        && token(root)
        && token(object)
        // `urn:veeam:...` names EM's own entities (accounts, roles), never a hierarchy object.
        && !platform.eq_ignore_ascii_case("veeam")
}

/// Parses a remove-scope target: the scope's GUID or its name.
pub(super) fn parse_scope(cell: &str) -> Result<ScopeRef, String> {
    if cell.is_empty() {
        return Err("empty target: remove-scope needs a scope name or GUID".into());
    }
    // EM lists scopes without their object refs, so a ref could never match and the row would
    // silently do nothing; refuse it instead.
    if has_urn_prefix(cell) {
        return Err(format!(
            "remove-scope takes a scope name or GUID, not a URN: {}",
            quoted(cell)
        ));
    }
    if looks_like_guid(cell) {
        return parse_guid(cell)
            .map(ScopeRef::Id)
            .ok_or_else(|| format!("malformed scope GUID {}", quoted(cell)));
    }
    plain("scope name", cell)?;
    Ok(ScopeRef::Name(cell.to_string()))
}

/// Parses an add-account target: the account type.
pub(super) fn parse_account_type(cell: &str) -> Result<AccountType, String> {
    if cell.is_empty() {
        return Err(
            "empty target: add-account needs the account type (User, Group, ExternalUser or \
             ExternalGroup)"
                .into(),
        );
    }
    AccountType::parse(cell).ok_or_else(|| {
        format!(
            "unknown account type {} (expected User, Group, ExternalUser or ExternalGroup)",
            quoted(cell)
        )
    })
}

/// Checks a delete-account target: empty, or `confirm`.
pub(super) fn check_delete_target(cell: &str) -> Result<(), String> {
    if cell.is_empty() || cell.eq_ignore_ascii_case("confirm") {
        Ok(())
    } else {
        Err(format!(
            "delete-account takes an empty target or 'confirm', not {}",
            quoted(cell)
        ))
    }
}

/// Parses the restore-all-VMs flag: on/off, true/false or yes/no, in any case.
pub(super) fn parse_flag(cell: &str) -> Result<bool, String> {
    const ON: [&str; 3] = ["on", "true", "yes"];
    const OFF: [&str; 3] = ["off", "false", "no"];
    if cell.is_empty() {
        return Err("empty target: restore-all-vms needs on or off".into());
    }
    if ON.iter().any(|v| v.eq_ignore_ascii_case(cell)) {
        Ok(true)
    } else if OFF.iter().any(|v| v.eq_ignore_ascii_case(cell)) {
        Ok(false)
    } else {
        Err(format!(
            "restore-all-vms takes on or off, not {}",
            quoted(cell)
        ))
    }
}

/// Refuses a name holding a line break, tab or other control character. No EM name has one;
/// in a plan it is a stray quote or a cell pasted with its line break, and the row could only
/// fail later against the server.
pub(super) fn plain(what: &str, cell: &str) -> Result<(), String> {
    if cell.chars().any(char::is_control) {
        Err(format!(
            "{what} {} holds a line break or another control character",
            quoted(&cell.escape_debug().to_string())
        ))
    } else {
        Ok(())
    }
}

fn has_urn_prefix(cell: &str) -> bool {
    cell.get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
}

/// Whether `cell` is meant as a GUID: only hex digits and dashes with at least one dash, or
/// anything in braces (the form Windows tools print).
fn looks_like_guid(cell: &str) -> bool {
    (cell.contains('-') && cell.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        || (cell.starts_with('{') && cell.ends_with('}'))
}

/// A hyphenated GUID, optionally in braces.
fn parse_guid(text: &str) -> Option<Uuid> {
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text);
    // `Uuid::try_parse` also takes the 32-digit and `urn:uuid:` forms; EM only ever shows the
    // hyphenated one, so anything else is more likely a typo than a GUID.
    if inner.len() != 36 {
        return None;
    }
    Uuid::try_parse(inner).ok()
}

/// The GUID of `urn:veeam:<entity>:<guid>` (prefix and entity compared case-insensitively).
fn urn_guid(cell: &str, entity: &str) -> Option<Uuid> {
    let mut parts = cell.splitn(4, ':');
    let (_urn, veeam, kind, guid) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if !veeam.eq_ignore_ascii_case("veeam") || !kind.eq_ignore_ascii_case(entity) {
        return None;
    }
    parse_guid(guid)
}

/// The candidate `input` most probably meant, if one is close: within a few edits after
/// folding `_` and spaces to `-`, or the only candidate it is a prefix of.
pub(super) fn suggest<'c>(input: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let folded: String = input
        .chars()
        .map(|c| match c {
            '_' | ' ' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    // No candidate is suggested beyond 3 edits, so farther ones need not be measured.
    let mut best: Option<(usize, &'c str)> = None;
    for &c in candidates {
        if let Some(d) = distance_within(&folded, c, 3)
            && best.is_none_or(|(bd, _)| d < bd)
        {
            best = Some((d, c));
        }
    }
    if let Some((d, c)) = best
        && d <= (c.len() / 4).clamp(1, 3)
    {
        return Some(c);
    }
    let mut prefixed = candidates
        .iter()
        .filter(|c| folded.len() >= 3 && c.starts_with(folded.as_str()));
    match (prefixed.next(), prefixed.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// The Levenshtein distance between `a` and `b`, counted in characters.
/// The edit distance between `a` and `b` when it is at most `max`, `None` when it is more.
///
/// A cell may be 64 KiB long and the names it is compared with are short: the difference of
/// their lengths, which no fewer edits can bridge, is looked at first, so that a long cell costs
/// a count of its characters and not a table of them times the name.
pub(super) fn distance_within(a: &str, b: &str, max: usize) -> Option<usize> {
    let (la, lb) = (a.chars().count(), b.chars().count());
    if la.abs_diff(lb) > max {
        return None;
    }
    Some(edit_distance(a, b)).filter(|&d| d <= max)
}

/// The Levenshtein distance between `a` and `b`, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitution.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: &str = "0f8e6a57-1c2b-4d3e-9f40-5a6b7c8d9e01";

    fn g() -> Uuid {
        Uuid::parse_str(G).unwrap()
    }

    #[test]
    fn accounts_in_every_accepted_form() {
        assert_eq!(parse_account(G), Ok(AccountRef::Id(g())));
        assert_eq!(parse_account(&G.to_uppercase()), Ok(AccountRef::Id(g())));
        assert_eq!(parse_account(&format!("{{{G}}}")), Ok(AccountRef::Id(g())));
        assert_eq!(
            parse_account(&format!("urn:veeam:EnterpriseAccount:{G}")),
            Ok(AccountRef::Id(g()))
        );
        assert_eq!(
            parse_account(&format!("URN:Veeam:enterpriseaccount:{G}")),
            Ok(AccountRef::Id(g()))
        );
        assert_eq!(
            parse_account("TECH\\alice"),
            Ok(AccountRef::Name("TECH\\alice".into()))
        );
        assert_eq!(
            parse_account("alice@tech.example"),
            Ok(AccountRef::Name("alice@tech.example".into()))
        );
        // Hex letters without a dash are a name, not a GUID attempt.
        assert_eq!(parse_account("cafe"), Ok(AccountRef::Name("cafe".into())));
    }

    #[test]
    fn malformed_accounts_are_refused() {
        assert_eq!(parse_account(""), Err("empty account".into()));
        assert_eq!(
            parse_account("urn:veeam:EnterpriseRole:0f8e6a57-1c2b-4d3e-9f40-5a6b7c8d9e01"),
            Err("malformed account URN 'urn:veeam:EnterpriseRole:0f8e6a57-1c2b-4d3e-9f40-5a6b7c8d9e01' \
                 (expected urn:veeam:EnterpriseAccount:<guid>)"
                .into())
        );
        assert!(
            parse_account("urn:veeam:EnterpriseAccount:123")
                .unwrap_err()
                .starts_with("malformed account URN")
        );
        assert!(
            parse_account("urn:veeam:EnterpriseAccount")
                .unwrap_err()
                .starts_with("malformed account URN")
        );
        assert_eq!(
            parse_account("0f8e6a57-1c2b-4d3e-9f40-5a6b7c8d9e0"),
            Err("malformed account GUID '0f8e6a57-1c2b-4d3e-9f40-5a6b7c8d9e0'".into())
        );
        assert!(parse_account("0f8e6a571c2b-4d3e-9f40-5a6b7c8d9e01-").is_err());
        assert!(parse_account("{not-a-guid}").is_err());
        assert!(parse_account(&format!("urn:veeam:EnterpriseAccount:urn:uuid:{G}")).is_err());
    }

    #[test]
    fn role_targets_in_every_accepted_form() {
        let k = Kind::AssignRole;
        assert_eq!(parse_role(k, G), Ok(RoleRef::Id(g())));
        assert_eq!(
            parse_role(k, &format!("urn:veeam:EnterpriseRole:{G}")),
            Ok(RoleRef::Id(g()))
        );
        assert_eq!(
            parse_role(k, "Portal User"),
            Ok(RoleRef::Name("Portal User".into()))
        );
    }

    #[test]
    fn malformed_role_targets_are_refused() {
        assert_eq!(
            parse_role(Kind::RemoveRole, ""),
            Err("empty target: remove-role needs a role name, GUID or urn:veeam:EnterpriseRole:<guid>".into())
        );
        assert_eq!(
            parse_role(
                Kind::AssignRole,
                &format!("urn:veeam:EnterpriseAccount:{G}")
            ),
            Err(format!(
                "malformed role URN 'urn:veeam:EnterpriseAccount:{G}' (expected urn:veeam:EnterpriseRole:<guid>)"
            ))
        );
        assert_eq!(
            parse_role(Kind::AssignRole, "d19a3d33-cb77"),
            Err("malformed role GUID 'd19a3d33-cb77'".into())
        );
    }

    #[test]
    fn object_refs() {
        for ok in [
            "urn:VMware:ResourcePool:11111111-2222-3333-4444-555555555555.resgroup-1",
            "urn:VMware:Vm:24a14898-77d0-4a7e-8f3c-0b0f2c4b1d2e.vm-7870",
            "urn:VMware:Vm:vcprod.tech.local.vm-7870",
            "urn:NasBackup:FileServer:1.2",
            "urn:vCloud:VcdSystem:root.obj",
        ] {
            assert_eq!(check_obj_ref(ok), Ok(()), "{ok}");
        }
        for bad in [
            "urn:VMware:ResourcePool:resgroup-1",
            "urn:VMware:ResourcePool:.resgroup-1",
            "urn:VMware:ResourcePool:root.",
            "urn:VMware::root.x",
            "urn:VM ware:Vm:root.x",
            "urn:VMware:Vm:root.vm 1",
            "VMware:ResourcePool:root.resgroup-1",
            "resgroup-1",
            "urn:veeam:EnterpriseAccount:0f8e6a57-1c2b-4d3e-9f40-5a6b7c8d9e01.x",
        ] {
            let err = check_obj_ref(bad).unwrap_err();
            assert!(
                err.starts_with(&format!("malformed hierarchy object ref '{bad}'")),
                "{err}"
            );
        }
        assert!(
            check_obj_ref("")
                .unwrap_err()
                .starts_with("empty target: add-scope")
        );
    }

    #[test]
    fn scope_targets() {
        assert_eq!(parse_scope(G), Ok(ScopeRef::Id(g())));
        assert_eq!(
            parse_scope("Finance-RP"),
            Ok(ScopeRef::Name("Finance-RP".into()))
        );
        assert_eq!(
            parse_scope("Finance-RP"),
            Ok(ScopeRef::Name("Finance-RP".into()))
        );
        assert_eq!(
            parse_scope("dead-beef"),
            Err("malformed scope GUID 'dead-beef'".into())
        );
        assert_eq!(
            parse_scope("urn:VMware:ResourcePool:r.resgroup-1"),
            Err("remove-scope takes a scope name or GUID, not a URN: 'urn:VMware:ResourcePool:r.resgroup-1'".into())
        );
        assert_eq!(
            parse_scope(""),
            Err("empty target: remove-scope needs a scope name or GUID".into())
        );
    }

    #[test]
    fn names_with_control_characters_are_refused() {
        assert_eq!(
            parse_account("TECH\\al\nice"),
            Err(
                "account name 'TECH\\\\al\\nice' holds a line break or another control character"
                    .into()
            )
        );
        assert!(
            parse_role(Kind::AssignRole, "Portal\tUser")
                .unwrap_err()
                .starts_with("role name 'Portal\\tUser' holds")
        );
        assert!(
            parse_scope("Fin\r\nance")
                .unwrap_err()
                .starts_with("scope name 'Fin\\r\\nance' holds")
        );
        assert_eq!(plain("object name", "Finance RP"), Ok(()));
    }

    #[test]
    fn flags() {
        for on in ["on", "ON", "true", "True", "yes", "YES"] {
            assert_eq!(parse_flag(on), Ok(true));
        }
        for off in ["off", "Off", "false", "FALSE", "no", "No"] {
            assert_eq!(parse_flag(off), Ok(false));
        }
        assert_eq!(
            parse_flag("maybe"),
            Err("restore-all-vms takes on or off, not 'maybe'".into())
        );
        assert_eq!(
            parse_flag("1"),
            Err("restore-all-vms takes on or off, not '1'".into())
        );
        assert_eq!(
            parse_flag(""),
            Err("empty target: restore-all-vms needs on or off".into())
        );
    }

    #[test]
    fn actions_and_suggestions() {
        assert_eq!(parse_kind("assign-role"), Ok(Kind::AssignRole));
        assert_eq!(parse_kind("Restore-All-VMs"), Ok(Kind::RestoreAllVms));
        assert_eq!(parse_kind(""), Err("empty action".into()));
        assert_eq!(
            parse_kind("asign-role"),
            Err("unknown action 'asign-role' (did you mean 'assign-role'?)".into())
        );
        assert_eq!(
            parse_kind("restore_all_vms"),
            Err("unknown action 'restore_all_vms' (did you mean 'restore-all-vms'?)".into())
        );
        assert_eq!(
            parse_kind("Remove Scope"),
            Err("unknown action 'Remove Scope' (did you mean 'remove-scope'?)".into())
        );
        assert_eq!(
            parse_kind("remove-roles"),
            Err("unknown action 'remove-roles' (did you mean 'remove-role'?)".into())
        );
        assert_eq!(
            parse_kind("restore"),
            Err("unknown action 'restore' (did you mean 'restore-all-vms'?)".into())
        );
        assert_eq!(
            parse_kind("delete-acount"),
            Err("unknown action 'delete-acount' (did you mean 'delete-account'?)".into())
        );
        // Ambiguous prefixes get the list, not a guess.
        assert!(
            parse_kind("remove")
                .unwrap_err()
                .contains("expected one of")
        );
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        assert_eq!(quoted(&"x".repeat(100)), format!("'{}'", "x".repeat(100)));
        let q = quoted(&"x".repeat(101));
        assert_eq!(q.len(), 100 + 2);
        assert!(q.ends_with("...'"));
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
        assert_eq!(distance_within("kitten", "sitting", 3), Some(3));
        assert_eq!(distance_within("kitten", "sitting", 2), None);
        assert_eq!(distance_within("é", "e", 1), Some(1));
    }

    #[test]
    fn a_long_cell_is_not_measured_against_every_name() {
        // 64 KiB of text against each action name would take a table of a million cells a
        // row; the lengths alone rule it out.
        let long = "assign-role".repeat(6000);
        let started = std::time::Instant::now();
        for _ in 0..100 {
            assert!(parse_kind(&long).is_err());
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(
            parse_kind("asign-role"),
            Err("unknown action 'asign-role' (did you mean 'assign-role'?)".into())
        );
    }
}
