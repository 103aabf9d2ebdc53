//! A large plan of four rows per account, and the checks that it was applied completely and
//! each change exactly once: shared by the crash test and the fault soak.

use std::collections::{BTreeMap, HashMap};

use embatch::emulator::{Effect, JournalEntry, StateSnapshot};
use uuid::Uuid;

use crate::support::{self, Access};

const EXCHANGE: &str = "f83e4c81-0815-452f-9377-9d573dd9d481";
const ORACLE: &str = "e9d90e66-b6d4-49dc-8986-73cf33489623";
const ROOT: &str = "7a1c2e3d-4b5f-4a60-8c71-92d3e4f5a6b7";

/// The plan: for each of `accounts` generated accounts, assign two restore roles, add a scope
/// of its own, and flip restore-all-VMs. Rows already in place (a role held) are part of it.
pub struct Workload {
    /// The plan, as CSV text.
    pub csv: String,
    /// The accounts the plan touches.
    pub accounts: Vec<Uuid>,
    /// The state before.
    pub before: StateSnapshot,
}

impl Workload {
    /// A plan over the first `accounts` generated accounts of `state`.
    pub fn new(state: StateSnapshot, accounts: usize) -> Workload {
        let mut csv = String::from("account,action,target,object_name,ticket\n");
        let mut ids = Vec::new();
        for (i, a) in state
            .accounts
            .iter()
            .filter(|a| a.name.starts_with("TECH\\user"))
            .take(accounts)
            .enumerate()
        {
            let flip = if a.allow_restore_all_vms { "off" } else { "on" };
            csv.push_str(&format!(
                "{n},assign-role,Exchange Restore Operator,,LOAD-1\n\
                 {n},assign-role,urn:veeam:EnterpriseRole:{ORACLE},,LOAD-1\n\
                 {n},add-scope,urn:VMware:ResourcePool:{ROOT}.load-{i},Load-{i},LOAD-1\n\
                 {n},restore-all-vms,{flip},,LOAD-1\n",
                n = a.name
            ));
            ids.push(a.id);
        }
        assert_eq!(
            ids.len(),
            accounts,
            "the emulator has enough generated accounts"
        );
        Workload {
            csv,
            accounts: ids,
            before: state,
        }
    }

    /// Every account's access as the plan wants it.
    pub fn desired(&self) -> BTreeMap<Uuid, Access> {
        let mut want = support::accesses(&self.before);
        let roles = [
            Uuid::parse_str(EXCHANGE).unwrap(),
            Uuid::parse_str(ORACLE).unwrap(),
        ];
        for (i, id) in self.accounts.iter().enumerate() {
            let (_, flag, held, scopes) = want.get_mut(id).expect("a known account");
            *flag = !*flag;
            for r in roles {
                if !held.contains(&r) {
                    held.push(r);
                }
            }
            held.sort();
            scopes.push((
                format!("Load-{i}"),
                format!("urn:VMware:ResourcePool:{ROOT}.load-{i}"),
            ));
            scopes.sort();
        }
        want
    }

    /// Asserts that the journal holds each change the plan needed exactly once, and nothing
    /// else.
    pub fn assert_exactly_once(&self, journal: &[JournalEntry]) {
        let mut seen: HashMap<(Uuid, String), usize> = HashMap::new();
        for e in journal {
            let account = e.account.expect("every change names its account");
            let what = match &e.effect {
                Effect::RoleAssigned { role_id } => format!("assign {role_id}"),
                Effect::ScopeAdded { obj_ref, .. } => format!("scope {obj_ref}"),
                Effect::RestoreAllVmsToggled { .. } => "toggle".to_string(),
                other => panic!("the plan makes no {other:?}"),
            };
            *seen.entry((account, what)).or_default() += 1;
        }
        let mut expected = 0;
        for (i, id) in self.accounts.iter().enumerate() {
            let before = self.before.accounts.iter().find(|a| a.id == *id).unwrap();
            let mut wanted = vec![
                "toggle".to_string(),
                format!("scope urn:VMware:ResourcePool:{ROOT}.load-{i}"),
            ];
            for role in [EXCHANGE, ORACLE] {
                if !before.roles.iter().any(|r| r.id.to_string() == role) {
                    wanted.push(format!("assign {role}"));
                }
            }
            for w in wanted {
                expected += 1;
                assert_eq!(seen.get(&(*id, w.clone())), Some(&1), "{} {w}", before.name);
            }
        }
        assert_eq!(journal.len(), expected, "no change beyond the plan's");
    }
}
