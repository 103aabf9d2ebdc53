//! The emulator's starting data: the built-in `BUILTIN\Administrators` account and logons,
//! accounts and logons from a [`Seed`], and generated accounts `TECH\user00001`...
//!
//! Generated accounts come from a fixed seed, independent of the fault dice, so the same
//! count always gives the same names, ids, roles and scopes. The first few follow fixed
//! profiles, so every kind of account a plan may need exists in any set of at least nine; the
//! rest are drawn with weights that resemble a real estate (mostly self-service users and VM
//! restore operators; few SQL, Exchange or Oracle operators).

use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};
use uuid::Uuid;

use super::state::{
    Account, AccountType, PORTAL_ADMINISTRATOR, Scope, ScopeState, User, role_by_name,
};
use super::{EmulatorConfig, EmulatorError, Seed};

/// The built-in administrators group every EM has.
pub(crate) const BUILTIN_ADMINISTRATORS: &str = "BUILTIN\\Administrators";

/// Its fixed id, so it is the same in every run.
const BUILTIN_ADMINISTRATORS_ID: Uuid = Uuid::from_u128(0x1c9a7d52_3f0e_4b8a_9d61_0e2f4a6b8c01);

/// The built-in logon that may log on but not use `/security`.
pub(crate) const VIEWER: &str = "viewer";

/// The vCenter root the generated scopes live under.
pub(crate) const GENERATED_ROOT: &str = "4c2a0e1f-7d3b-4b6a-9e58-2f1c0d9a7b31";

/// The seed of the generator; changing it changes every generated account.
const GENERATOR_SEED: u64 = 0x0E3A_5EED;

/// Resource pools the generated scopes point at: a name and its `resgroup-<n>` number.
const POOLS: [(&str, u32); 12] = [
    ("Finance-RP", 1001),
    ("HR-RP", 1002),
    ("Sales-RP", 1003),
    ("Engineering-RP", 1004),
    ("Legal-RP", 1005),
    ("Marketing-RP", 1006),
    ("Support-RP", 1007),
    ("Research-RP", 1008),
    ("Operations-RP", 1009),
    ("Facilities-RP", 1010),
    ("Procurement-RP", 1011),
    ("Treasury-RP", 1012),
];

/// How a profile sets "restore all VMs".
#[derive(Clone, Copy)]
enum Restore {
    /// On.
    All,
    /// Off, with one to three scopes.
    Scoped,
    /// Either, at random.
    Either,
}

/// Generated account profiles: roles (in assignment order), restore setting, weight.
const PROFILES: [(&[&str], Restore, u32); 9] = [
    (&["Portal User"], Restore::All, 5),
    (&["Portal User", "File Restore Operator"], Restore::All, 2),
    (&["VM Restore Operator"], Restore::Scoped, 4),
    (
        &["VM Restore Operator", "File Restore Operator"],
        Restore::Scoped,
        3,
    ),
    (&["Portal User", "VM Restore Operator"], Restore::Either, 2),
    (
        &["SQL Restore Operator", "VM Restore Operator"],
        Restore::Scoped,
        1,
    ),
    (
        &["Exchange Restore Operator", "File Restore Operator"],
        Restore::All,
        1,
    ),
    (
        &["Oracle Restore Operator", "SQL Restore Operator"],
        Restore::Either,
        1,
    ),
    (&["Portal Administrator"], Restore::All, 1),
];

fn seed_error(message: impl Into<String>) -> EmulatorError {
    EmulatorError::Seed(message.into())
}

/// The logons: the configured admin, `viewer`, and the seed's users.
pub(crate) fn users(config: &EmulatorConfig) -> Result<Vec<User>, EmulatorError> {
    let mut users = vec![
        User {
            name: config.admin_user.clone(),
            password: config.admin_password.clone(),
            role: Some(PORTAL_ADMINISTRATOR),
        },
        User {
            name: VIEWER.into(),
            password: VIEWER.into(),
            role: role_by_name("Portal User").map(|r| r.id),
        },
    ];
    for u in config.seed.iter().flat_map(|s| &s.users) {
        if u.name.trim().is_empty() {
            return Err(seed_error("a user has an empty name"));
        }
        if users.iter().any(|x| x.name.eq_ignore_ascii_case(&u.name)) {
            return Err(seed_error(format!("user {} is defined twice", u.name)));
        }
        // An empty role is allowed on purpose: such a user exists but may not log on.
        let role = if u.role.trim().is_empty() {
            None
        } else {
            Some(
                role_by_name(&u.role)
                    .ok_or_else(|| {
                        seed_error(format!("user {}: unknown role {:?}", u.name, u.role))
                    })?
                    .id,
            )
        };
        users.push(User {
            name: u.name.clone(),
            password: u.password.clone(),
            role,
        });
    }
    Ok(users)
}

/// Every starting account: `BUILTIN\Administrators`, the seed's accounts, then the generated
/// ones.
pub(crate) fn accounts(config: &EmulatorConfig) -> Result<Vec<Account>, EmulatorError> {
    let mut accounts = vec![Account::new(
        BUILTIN_ADMINISTRATORS_ID,
        BUILTIN_ADMINISTRATORS,
        AccountType::Group,
        vec![PORTAL_ADMINISTRATOR],
        true,
        Vec::new(),
    )];
    if let Some(seed) = &config.seed {
        accounts.extend(seed_accounts(seed)?);
    }
    accounts.extend(generate(config.accounts));
    let mut names = std::collections::HashSet::new();
    let mut ids = std::collections::HashSet::new();
    for a in &accounts {
        if !names.insert(a.name.to_lowercase()) {
            return Err(seed_error(format!("account {} is defined twice", a.name)));
        }
        if !ids.insert(a.id) {
            return Err(seed_error(format!("account id {} is used twice", a.id)));
        }
    }
    Ok(accounts)
}

fn seed_accounts(seed: &Seed) -> Result<Vec<Account>, EmulatorError> {
    let mut out = Vec::new();
    for a in &seed.accounts {
        let account_type = match &a.account_type {
            Some(t) => AccountType::parse(t).ok_or_else(|| {
                seed_error(format!("account {}: unknown account type {t:?}", a.name))
            })?,
            None => AccountType::User,
        };
        if !account_type.accepts_name(&a.name) {
            return Err(seed_error(format!(
                "account {:?}: not a valid name for a {}",
                a.name,
                account_type.as_str()
            )));
        }
        if a.roles.is_empty() {
            return Err(seed_error(format!(
                "account {} has no role; EM accounts hold at least one",
                a.name
            )));
        }
        let mut roles = Vec::new();
        for name in &a.roles {
            let role = role_by_name(name)
                .ok_or_else(|| seed_error(format!("account {}: unknown role {name:?}", a.name)))?;
            if !roles.contains(&role.id) {
                roles.push(role.id);
            }
        }
        let scopes = a
            .scopes
            .iter()
            .map(|s| {
                Scope::new(
                    s.id.unwrap_or_else(Uuid::new_v4),
                    &s.obj_ref,
                    &s.name,
                    ScopeState::Processed,
                )
                .map_err(|e| seed_error(format!("account {}: {e}", a.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Account::new(
            a.id.unwrap_or_else(Uuid::new_v4),
            a.name.trim(),
            account_type,
            roles,
            a.allow_restore_all_vms.unwrap_or(true),
            scopes,
        ));
    }
    Ok(out)
}

/// `n` generated accounts, the same for the same `n`.
pub(crate) fn generate(n: usize) -> Vec<Account> {
    let mut rng = StdRng::seed_from_u64(GENERATOR_SEED);
    let total: u32 = PROFILES.iter().map(|p| p.2).sum();
    (1..=n)
        .map(|i| {
            let id = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
            // The first accounts take each profile once, so each kind exists; then weights.
            let profile = if i <= PROFILES.len() {
                &PROFILES[i - 1]
            } else {
                let mut pick = rng.random_range(0..total);
                PROFILES
                    .iter()
                    .find(|p| {
                        if pick < p.2 {
                            true
                        } else {
                            pick -= p.2;
                            false
                        }
                    })
                    .expect("the pick is below the total weight")
            };
            let roles = profile
                .0
                .iter()
                .map(|name| role_by_name(name).expect("profiles name real roles").id)
                .collect();
            let allow = match profile.1 {
                Restore::All => true,
                Restore::Scoped => false,
                Restore::Either => rng.random_bool(0.5),
            };
            // Scopes: one to three when limited; now and then a leftover one when not, as EM
            // keeps scope records while "all VMs" is on.
            let count = if !allow {
                rng.random_range(1..=3)
            } else if rng.random_bool(0.15) {
                1
            } else {
                0
            };
            let mut pools: Vec<(&str, u32)> = POOLS.to_vec();
            let scopes = (0..count)
                .map(|_| {
                    let (name, n) = pools.remove(rng.random_range(0..pools.len()));
                    let sid = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
                    let obj_ref = format!("urn:VMware:ResourcePool:{GENERATED_ROOT}.resgroup-{n}");
                    Scope::new(sid, &obj_ref, name, ScopeState::Processed)
                        .expect("generated refs are well formed")
                })
                .collect();
            Account::new(
                id,
                &format!("TECH\\user{i:05}"),
                AccountType::User,
                roles,
                allow,
                scopes,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::{SeedAccount, SeedScope, SeedUser};

    fn has(a: &Account, role: &str) -> bool {
        a.roles.contains(&role_by_name(role).unwrap().id)
    }

    #[test]
    fn generation_is_deterministic() {
        assert_eq!(generate(40), generate(40));
        assert_eq!(generate(60)[..40], generate(40)[..]);
        assert_eq!(generate(3)[2].name, "TECH\\user00003");
    }

    #[test]
    fn forty_accounts_hold_every_kind_a_plan_needs() {
        let a = generate(40);
        assert!(
            a.iter()
                .any(|x| has(x, "Portal User") && !has(x, "VM Restore Operator"))
        );
        assert!(a.iter().any(|x| x.roles.len() >= 2));
        assert!(
            a.iter()
                .any(|x| !x.allow_restore_all_vms && !x.scopes.is_empty())
        );
        assert!(a.iter().any(|x| x.allow_restore_all_vms));
        let portal_user = role_by_name("Portal User").unwrap().id;
        assert!(a.iter().any(|x| x.roles == vec![portal_user]));
        assert!(a.iter().filter(|x| !has(x, "SQL Restore Operator")).count() >= 15);
    }

    #[test]
    fn sixty_accounts_leave_room_for_rare_roles() {
        let a = generate(60);
        assert!(
            a.iter()
                .filter(|x| !has(x, "Exchange Restore Operator"))
                .count()
                >= 30
        );
        assert!(
            a.iter()
                .filter(|x| !has(x, "Oracle Restore Operator"))
                .count()
                >= 20
        );
    }

    #[test]
    fn every_generated_account_follows_em_rules() {
        for x in generate(500) {
            assert!(!x.roles.is_empty(), "{}", x.name);
            assert!(
                x.allow_restore_all_vms || !x.scopes.is_empty(),
                "{}",
                x.name
            );
            let mut refs: Vec<&str> = x.scopes.iter().map(|s| s.obj_ref.as_str()).collect();
            refs.dedup();
            assert_eq!(refs.len(), x.scopes.len());
            for s in &x.scopes {
                assert!(s.obj_ref.starts_with("urn:VMware:ResourcePool:"));
                assert!(s.name.ends_with("-RP"));
            }
        }
    }

    #[test]
    fn seeds_are_checked() {
        let account = |roles: Vec<&str>, obj_ref: &str| SeedAccount {
            id: None,
            name: "TECH\\seeded".into(),
            account_type: None,
            roles: roles.into_iter().map(String::from).collect(),
            allow_restore_all_vms: Some(false),
            scopes: vec![SeedScope {
                id: None,
                obj_ref: obj_ref.into(),
                name: "P".into(),
            }],
        };
        let config = |accounts: Vec<SeedAccount>, users: Vec<SeedUser>| EmulatorConfig {
            accounts: 2,
            seed: Some(Seed { users, accounts }),
            ..EmulatorConfig::default()
        };
        let ok = accounts(&config(
            vec![account(vec!["portal user"], "urn:VMware:Vm:r.vm-1")],
            vec![],
        ))
        .unwrap();
        assert_eq!(ok.len(), 4);
        assert_eq!(ok[0].name, BUILTIN_ADMINISTRATORS);
        assert_eq!(ok[1].name, "TECH\\seeded");
        assert!(
            accounts(&config(
                vec![account(vec![], "urn:VMware:Vm:r.vm-1")],
                vec![]
            ))
            .is_err()
        );
        assert!(
            accounts(&config(
                vec![account(vec!["Boss"], "urn:VMware:Vm:r.vm-1")],
                vec![]
            ))
            .is_err()
        );
        assert!(accounts(&config(vec![account(vec!["Portal User"], "bad")], vec![])).is_err());
        let mut dup = account(vec!["Portal User"], "urn:VMware:Vm:r.vm-1");
        dup.name = "tech\\USER00001".into();
        assert!(accounts(&config(vec![dup], vec![])).is_err());

        let user = |role: &str| SeedUser {
            name: "alice".into(),
            password: "pw".into(),
            role: role.into(),
        };
        let u = users(&config(vec![], vec![user("VM Restore Operator")])).unwrap();
        assert_eq!(u.len(), 3);
        assert!(users(&config(vec![], vec![user("Wizard")])).is_err());
        assert!(
            users(&config(vec![], vec![user("")])).unwrap()[2]
                .role
                .is_none()
        );
    }
}
