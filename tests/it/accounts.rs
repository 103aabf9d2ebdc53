//! Whole accounts: onboarding and offboarding, their undo, and the guards against a bad
//! spreadsheet, through the binary against the in-process emulator, in both wire formats.

use std::path::Path;

use embatch::emulator::{
    Effect, EmulatorConfig, RunningEmulator, Seed, SeedAccount, StateSnapshot,
};

use crate::support::{self, FAST};

const WIRES: [&str; 2] = ["xml", "json"];

async fn embatch(
    emu: &RunningEmulator,
    db: &Path,
    args: &[&str],
    wire: &str,
) -> (Option<i32>, String) {
    let mut cmd = support::cli(emu, db);
    cmd.args(args);
    if matches!(args[0], "apply" | "undo" | "replay" | "resume") {
        cmd.args(FAST).args(["--wire", wire]);
    }
    if args[0] == "apply" {
        cmd.arg("--yes");
    }
    if args[0] == "check" {
        cmd.args(["--wire", wire]);
    }
    let out = support::output(cmd).await;
    (out.status.code(), support::text(&out))
}

fn find<'a>(
    state: &'a StateSnapshot,
    name: &str,
) -> Option<&'a embatch::emulator::AccountSnapshot> {
    state.accounts.iter().find(|a| a.name == name)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

const ONBOARDING: &str = "account,action,target,object_name,ticket\n\
TECH\\new.joiner,add-account,User,,HR-1\n\
TECH\\new.joiner,assign-role,Portal User,,HR-1\n\
TECH\\new.joiner,assign-role,VM Restore Operator,,HR-1\n\
TECH\\new.joiner,add-scope,urn:VMware:ResourcePool:11111111-2222-3333-4444-555555555555.resgroup-5,Joiner-RP,HR-1\n\
TECH\\new.joiner,restore-all-vms,off,,HR-1\n\
TECH\\Restore-Team,add-account,Group,,HR-1\n\
TECH\\Restore-Team,assign-role,File Restore Operator,,HR-1\n\
BUILTIN\\Administrators,add-account,Group,,HR-1\n\
BUILTIN\\Administrators,assign-role,Portal User,,HR-1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_creates_each_account_in_one_request_and_undo_deletes_them() {
    for wire in WIRES {
        let emu = support::emulator(EmulatorConfig::default()).await;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let before = support::accesses(&emu.state());
        let plan = write(dir.path(), "onboarding.csv", ONBOARDING);

        let (code, out) = embatch(&emu, &db, &["check", &plan, "--online"], wire).await;
        assert_eq!(code, Some(0), "{out}");
        assert!(
            out.contains("would create TECH\\new.joiner (User)"),
            "{out}"
        );
        assert!(
            out.contains("BUILTIN\\Administrators exists already"),
            "{out}"
        );

        let (code, out) = embatch(&emu, &db, &["apply", &plan], wire).await;
        assert_eq!(code, Some(0), "{wire}: {out}");
        assert_eq!(
            support::outcomes(&db, 1),
            [
                "applied", "applied", "applied", "applied", "applied", "applied", "applied",
                "noop", "applied"
            ]
        );
        let state = emu.state();
        let joiner = find(&state, "TECH\\new.joiner").expect("created");
        assert_eq!(joiner.account_type, "User");
        assert!(!joiner.allow_restore_all_vms);
        assert_eq!(joiner.roles.len(), 2);
        assert_eq!(joiner.scopes[0].name, "Joiner-RP");
        let team = find(&state, "TECH\\Restore-Team").expect("created");
        assert_eq!(team.account_type, "Group");
        // One create request per new account carries its roles, scopes and flag; the existing
        // account's extra role is an ordinary assignment.
        let journal = emu.journal();
        let created = journal
            .iter()
            .filter(|e| matches!(e.effect, Effect::AccountCreated { .. }))
            .count();
        assert_eq!(created, 2);
        assert_eq!(journal.len(), 3, "{journal:?}");

        let (code, out) = embatch(&emu, &db, &["undo", "1"], wire).await;
        assert_eq!(code, Some(0), "{wire}: {out}");
        assert_eq!(support::accesses(&emu.state()), before, "{wire}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboarding_needs_allow_delete_and_undo_recreates_the_accounts() {
    for wire in WIRES {
        let emu = support::emulator(EmulatorConfig {
            accounts: 30,
            ..EmulatorConfig::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let state = emu.state();
        let leavers: Vec<&embatch::emulator::AccountSnapshot> = state
            .accounts
            .iter()
            .filter(|a| {
                a.name.starts_with("TECH\\user") && a.allow_restore_all_vms && a.scopes.is_empty()
            })
            .take(2)
            .collect();
        assert_eq!(leavers.len(), 2);
        let plan = write(
            dir.path(),
            "offboarding.csv",
            &format!(
                "account,action,target,ticket\n{},delete-account,confirm,HR-2\n{},delete-account,,HR-2\n",
                leavers[0].name, leavers[1].name
            ),
        );
        let (code, out) = embatch(&emu, &db, &["apply", &plan], wire).await;
        assert_eq!(code, Some(2), "{out}");
        assert!(out.contains("--allow-delete"), "{out}");
        assert!(emu.journal().is_empty(), "nothing was sent");

        let (code, out) = embatch(&emu, &db, &["apply", &plan, "--allow-delete"], wire).await;
        assert_eq!(code, Some(0), "{wire}: {out}");
        let after = emu.state();
        assert!(leavers.iter().all(|l| find(&after, &l.name).is_none()));
        // The full state was recorded before each delete.
        let conn = rusqlite::Connection::open(&db).unwrap();
        let prior: String = conn
            .query_row(
                "SELECT prior_state FROM change_log WHERE run_id = 1 AND row_no = 0",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            prior.contains("\"account_type\":\"User\"") && prior.contains("roles"),
            "{prior}"
        );

        if wire == "json" {
            // With `--output json`, stdout is the summary alone; the note goes to stderr.
            let mut cmd = support::cli(&emu, &db);
            cmd.args(["undo", "1", "--output", "json", "--wire", wire])
                .args(FAST);
            let out = support::output(cmd).await;
            assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
            let summary: serde_json::Value =
                serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                    panic!("stdout is one JSON value ({e}): {}", support::text(&out))
                });
            assert_eq!(summary["run_id"], 2, "the undo is run 2: {summary}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("was re-created with a new id"), "{stderr}");
        } else {
            let (code, out) = embatch(&emu, &db, &["undo", "1"], wire).await;
            assert_eq!(code, Some(0), "{wire}: {out}");
            assert!(out.contains("was re-created with a new id"), "{out}");
        }
        let restored = emu.state();
        for l in &leavers {
            let now = find(&restored, &l.name).expect("re-created");
            assert_ne!(now.id, l.id);
            assert_eq!(support::access(now), support::access(l));
        }

        // Replaying the offboarding deletes the re-created accounts again, found by name.
        let (code, out) = embatch(&emu, &db, &["replay", "1"], wire).await;
        assert_eq!(code, Some(0), "{wire}: {out}");
        let gone = emu.state();
        assert!(leavers.iter().all(|l| find(&gone, &l.name).is_none()));
    }
}

/// An emulator whose logon user `admin` has an EM account of its own, `TECH\admin`.
async fn with_own_logon_account(roles: &[&str]) -> RunningEmulator {
    support::emulator(EmulatorConfig {
        accounts: 5,
        seed: Some(Seed {
            users: Vec::new(),
            accounts: vec![SeedAccount {
                id: None,
                name: "TECH\\admin".into(),
                account_type: Some("User".into()),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                allow_restore_all_vms: Some(true),
                scopes: Vec::new(),
            }],
        }),
        ..EmulatorConfig::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_guard_refuses_the_whole_plan_before_its_first_write() {
    for wire in WIRES {
        let dir = tempfile::tempdir().unwrap();

        // The logon user has no account of its own: it holds Portal Administrator through the
        // group, which may then be neither deleted nor stripped of the role.
        let emu = support::emulator(EmulatorConfig::default()).await;
        let db = dir.path().join("a.db");
        let plan = write(
            dir.path(),
            "group.csv",
            "account,action,target\nBUILTIN\\Administrators,delete-account,confirm\n",
        );
        let (code, out) = embatch(&emu, &db, &["check", &plan, "--online"], wire).await;
        assert_eq!(code, Some(2), "{out}");
        assert!(
            out.contains("group.csv:2: FAIL") && out.contains("through this group"),
            "{out}"
        );
        let (code, out) = embatch(&emu, &db, &["apply", &plan, "--allow-delete"], wire).await;
        assert_eq!(code, Some(2), "{out}");
        assert!(
            out.contains("group.csv:2: BUILTIN\\Administrators delete-account")
                && out.contains("nothing was changed"),
            "{out}"
        );
        let (_, show) = embatch(&emu, &db, &["show", "last", "--failed"], wire).await;
        assert!(
            show.contains("     2  failed") && show.contains("through this group"),
            "{show}"
        );
        assert!(emu.journal().is_empty());

        // The account embatch logs on with may not be deleted.
        let emu = with_own_logon_account(&["Portal Administrator"]).await;
        let db = dir.path().join("b.db");
        let plan = write(
            dir.path(),
            "self.csv",
            "account,action,target\nTECH\\admin,delete-account,confirm\n",
        );
        let (code, out) = embatch(&emu, &db, &["apply", &plan, "--allow-delete"], wire).await;
        assert_eq!(code, Some(2), "{out}");
        assert!(
            out.contains("self.csv:2: ") && out.contains("the account embatch logs on with"),
            "{out}"
        );
        assert!(emu.journal().is_empty());

        // The last Portal Administrator keeps the role, and the row before it, on the same
        // account, is not applied either: the plan is refused as a whole.
        let emu = with_own_logon_account(&["Portal User"]).await;
        let db = dir.path().join("c.db");
        let plan = write(
            dir.path(),
            "last.csv",
            "account,action,target\nBUILTIN\\Administrators,assign-role,Portal User\nBUILTIN\\Administrators,remove-role,Portal Administrator\n",
        );
        let (code, out) = embatch(&emu, &db, &["check", &plan, "--online"], wire).await;
        assert_eq!(code, Some(2), "{out}");
        assert!(
            out.contains("last.csv:3: FAIL")
                && out.contains("apply would refuse this plan before its first write")
                && out.contains(
                    "last.csv:3: BUILTIN\\Administrators remove-role Portal Administrator: refused"
                )
                && out.contains("the last account that holds Portal Administrator"),
            "{out}"
        );
        let (code, out) = embatch(&emu, &db, &["apply", &plan], wire).await;
        assert_eq!(code, Some(2), "{out}");
        assert_eq!(support::outcomes(&db, 1), ["skipped", "failed"]);
        assert!(emu.journal().is_empty(), "nothing was written");

        // Rows of other accounts first in the plan are not applied either, and a Portal
        // Administrator that the same plan gives to another account does not count.
        let emu = with_own_logon_account(&["Portal User"]).await;
        let db = dir.path().join("d.db");
        let plan = write(
            dir.path(),
            "handover.csv",
            "account,action,target\nTECH\\admin,assign-role,Portal Administrator\nTECH\\admin,assign-role,VM Restore Operator\nBUILTIN\\Administrators,remove-role,Portal Administrator\n",
        );
        let (code, out) = embatch(&emu, &db, &["apply", &plan], wire).await;
        assert_eq!(code, Some(2), "{out}");
        assert!(
            out.contains("handover.csv:4: ") && out.contains("give it in a run before this one"),
            "{out}"
        );
        assert_eq!(support::outcomes(&db, 1), ["skipped", "skipped", "failed"]);
        assert!(emu.journal().is_empty(), "nothing was written");
        // In two runs, the handover goes through.
        let first = write(
            dir.path(),
            "give.csv",
            "account,action,target\nTECH\\admin,assign-role,Portal Administrator\n",
        );
        let (code, out) = embatch(&emu, &db, &["apply", &first], wire).await;
        assert_eq!(code, Some(0), "{out}");
        let second = write(
            dir.path(),
            "take.csv",
            "account,action,target\nBUILTIN\\Administrators,assign-role,Portal User\nBUILTIN\\Administrators,remove-role,Portal Administrator\n",
        );
        let (code, out) = embatch(&emu, &db, &["apply", &second], wire).await;
        assert_eq!(code, Some(0), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_changes_and_existing_accounts() {
    let emu = support::emulator(EmulatorConfig {
        accounts: 5,
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let plan = write(dir.path(), "big.csv", ONBOARDING);
    let (code, out) = embatch(&emu, &db, &["apply", &plan, "--max-changes", "3"], "xml").await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("more than --max-changes 3"), "{out}");
    assert!(emu.journal().is_empty());

    // An existing account: the same type is a no-op, another type or another case fails.
    let state = emu.state();
    let user = &state
        .accounts
        .iter()
        .find(|a| a.name.starts_with("TECH\\user"))
        .unwrap()
        .name;
    let plan = write(
        dir.path(),
        "existing.csv",
        &format!(
            "account,action,target\n{user},add-account,User\n{user},assign-role,SQL Restore Operator\n\
             BUILTIN\\Administrators,add-account,User\nBUILTIN\\Administrators,assign-role,Portal User\n"
        ),
    );
    let (code, out) = embatch(&emu, &db, &["apply", &plan], "xml").await;
    assert_eq!(code, Some(1), "{out}");
    let got = support::outcomes(&db, 1);
    assert_eq!(got[0], "noop");
    assert!(matches!(got[1].as_str(), "applied" | "noop"));
    assert_eq!(got[2], "failed");
    let (_, show) = embatch(&emu, &db, &["show", "1"], "xml").await;
    assert!(
        show.contains("exists already, as Group, not User"),
        "{show}"
    );

    let plan = write(
        dir.path(),
        "case.csv",
        &format!(
            "account,action,target\n{lower},add-account,User\n{lower},assign-role,Portal User\n",
            lower = user.to_lowercase()
        ),
    );
    let writes = emu.journal().len();
    let (code, out) = embatch(&emu, &db, &["apply", &plan], "xml").await;
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(support::outcomes(&db, 2), ["failed", "failed"]);
    let (_, show) = embatch(&emu, &db, &["show", "2"], "xml").await;
    assert!(show.contains("differs only in case"), "{show}");
    assert_eq!(emu.journal().len(), writes);
}
