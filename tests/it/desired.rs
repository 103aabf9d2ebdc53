//! `plan --desired`: the access-review loop through the binary against the emulator, in both
//! wire formats: snapshot, edit the sheet, plan, check, apply, snapshot again.

use std::collections::BTreeMap;
use std::path::Path;

use embatch::emulator::{EmulatorConfig, RunningEmulator};

use crate::support::{self, FAST};

const WIRES: [&str; 2] = ["xml", "json"];

/// A resource pool no seeded account has, so adding it is a change.
const NEW_REF: &str = "urn:VMware:ResourcePool:4c2a0e1f-7d3b-4b6a-9e58-2f1c0d9a7b31.resgroup-4242";

async fn emulator() -> RunningEmulator {
    support::emulator(EmulatorConfig {
        accounts: 12,
        ..EmulatorConfig::default()
    })
    .await
}

/// Runs `embatch ARGS` over `wire`; answers the status and both streams.
async fn embatch(
    emu: &RunningEmulator,
    db: &Path,
    args: &[&str],
    wire: &str,
) -> (Option<i32>, String) {
    let mut cmd = support::cli(emu, db);
    cmd.args(args);
    if matches!(args[0], "apply" | "snapshot" | "plan" | "undo") {
        cmd.args(FAST).args(["--wire", wire]);
    }
    if args[0] == "check" && args.contains(&"--online") {
        cmd.args(["--wire", wire]);
    }
    if matches!(args[0], "apply" | "undo") {
        cmd.arg("--yes");
    }
    let out = support::output(cmd).await;
    (out.status.code(), support::text(&out))
}

async fn ok(emu: &RunningEmulator, db: &Path, args: &[&str], wire: &str) -> String {
    let (code, out) = embatch(emu, db, args, wire).await;
    assert_eq!(code, Some(0), "{wire} {args:?}: {out}");
    out
}

/// A sheet's lines by account name: (type, flag, sorted roles, sorted scopes), the cells as
/// written (account_id and read_at left out). EM keeps roles and scopes in its own order.
type Sheet = BTreeMap<String, (String, String, Vec<String>, Vec<String>)>;

fn list(cell: &str) -> Vec<String> {
    let mut items: Vec<String> = cell
        .split(';')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    items.sort();
    items
}

fn read_sheet(path: &Path) -> Sheet {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let at = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (a, t, f, r, s) = (
        at("account"),
        at("type"),
        at("restore_all_vms"),
        at("roles"),
        at("scopes"),
    );
    reader
        .records()
        .map(|rec| {
            let rec = rec.unwrap();
            (
                rec[a].to_string(),
                (
                    rec[t].to_string(),
                    rec[f].to_string(),
                    list(&rec[r]),
                    list(&rec[s]),
                ),
            )
        })
        .collect()
}

/// Writes `sheet` in the snapshot's columns (account_id and read_at left empty).
fn write_sheet(path: &Path, sheet: &Sheet) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record([
        "account_id",
        "account",
        "type",
        "restore_all_vms",
        "roles",
        "scopes",
        "read_at",
    ])
    .unwrap();
    for (name, (t, f, roles, scopes)) in sheet {
        w.write_record([
            "",
            name.as_str(),
            t.as_str(),
            f.as_str(),
            &roles.join("; "),
            &scopes.join("; "),
            "",
        ])
        .unwrap();
    }
    w.flush().unwrap();
}

async fn snapshot(emu: &RunningEmulator, db: &Path, path: &Path, wire: &str) -> Sheet {
    if path.exists() {
        std::fs::remove_file(path).unwrap();
    }
    let file = path.to_str().unwrap();
    ok(
        emu,
        db,
        &["snapshot", "--all", "--format", "csv", "-o", file],
        wire,
    )
    .await;
    read_sheet(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_snapshot_planned_and_applied_is_the_new_snapshot() {
    for wire in WIRES {
        let emu = emulator().await;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let before = snapshot(&emu, &db, &dir.path().join("before.csv"), wire).await;
        let users: Vec<&String> = before
            .keys()
            .filter(|n| n.starts_with("TECH\\user"))
            .collect();
        let mut edited = before.clone();

        // Remove a role from an account with two.
        let two = *users.iter().find(|n| before[**n].2.len() >= 2).unwrap();
        let removed = edited.get_mut(two).unwrap().2.remove(0);
        // Give a role to an account without it.
        let lacking = *users
            .iter()
            .find(|n| *n != &two && !before[**n].2.iter().any(|r| r == "File Restore Operator"))
            .unwrap();
        let roles = &mut edited.get_mut(lacking).unwrap().2;
        roles.push("File Restore Operator".into());
        roles.sort();
        // Flip the flag of an account with scopes (so that off leaves it some), and give it a
        // new scope by its object ref.
        let scoped = *users
            .iter()
            .find(|n| *n != &two && *n != &lacking && !before[**n].3.is_empty())
            .unwrap();
        let flipped = {
            let line = edited.get_mut(scoped).unwrap();
            line.1 = if line.1 == "true" { "false" } else { "true" }.into();
            line.3.push(format!("Desired-RP ({NEW_REF})"));
            line.3.sort();
            line.1.clone()
        };
        // A new account, and an account left out of the sheet.
        edited.insert(
            "TECH\\newcomer".into(),
            (
                "User".into(),
                "false".into(),
                vec!["Portal User".into()],
                vec![format!("Desired-RP ({NEW_REF})")],
            ),
        );
        let dropped = *users
            .iter()
            .find(|n| *n != &two && *n != &lacking && *n != &scoped)
            .unwrap();
        edited.remove(dropped);
        let sheet = dir.path().join("desired.csv");
        write_sheet(&sheet, &edited);

        let changes = dir.path().join("changes.csv");
        let plan_args = [
            "plan",
            "--desired",
            sheet.to_str().unwrap(),
            "-o",
            changes.to_str().unwrap(),
            "--ticket",
            "CHG-18",
            "--output",
            "json",
        ];
        let out = ok(&emu, &db, &plan_args, wire).await;
        let json_start = out.find("{").unwrap();
        let json_end = out.rfind('}').unwrap();
        let counts: serde_json::Value = serde_json::from_str(&out[json_start..=json_end]).unwrap();
        assert_eq!(counts["actions"]["add_account"], 1, "{out}");
        assert_eq!(counts["actions"]["remove_role"], 1, "{out}");
        assert_eq!(counts["actions"]["delete_account"], 0, "{out}");
        assert_eq!(counts["actions"]["add_scope"], 2, "{out}");
        // The account's flag plus the new account's.
        assert_eq!(counts["actions"]["restore_all_vms"], 2, "{out}");
        assert_eq!(counts["accounts_changed"], 4, "{out}");
        assert_eq!(counts["accounts_left_alone"], 1, "{out}");
        assert!(emu.journal().is_empty(), "plan sends nothing but reads");

        // Written privately, and never replaced silently.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&changes).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (code, text) = embatch(&emu, &db, &plan_args, wire).await;
        assert_eq!(code, Some(2), "{text}");
        assert!(text.contains("--force"), "{text}");

        // An ordinary plan: each row says why, with the ticket.
        let plan = std::fs::read_to_string(&changes).unwrap();
        assert!(
            plan.contains(&format!(
                "{two},remove-role,{removed},,CHG-18,desired: role removed"
            )),
            "{plan}"
        );
        assert!(plan.contains("desired: account added"), "{plan}");
        assert!(!plan.contains(dropped.as_str()), "{plan}");
        ok(&emu, &db, &["check", changes.to_str().unwrap()], wire).await;
        ok(
            &emu,
            &db,
            &["check", "--online", changes.to_str().unwrap()],
            wire,
        )
        .await;
        ok(&emu, &db, &["apply", changes.to_str().unwrap()], wire).await;

        let after = snapshot(&emu, &db, &dir.path().join("after.csv"), wire).await;
        let mut expected = edited.clone();
        expected.insert(dropped.clone(), before[dropped].clone());
        assert_eq!(after, expected, "{wire}");
        assert_eq!(after[scoped].1, flipped);

        // Planned again, the sheet asks for nothing more.
        let again = dir.path().join("again.csv");
        let out = ok(
            &emu,
            &db,
            &[
                "plan",
                "--desired",
                sheet.to_str().unwrap(),
                "-o",
                again.to_str().unwrap(),
            ],
            wire,
        )
        .await;
        assert!(out.contains("EM already matches"), "{out}");
        assert!(!again.exists());

        // Its run is undone like any other: runs 1 and 2 are the snapshots before it.
        ok(&emu, &db, &["undo", "3"], wire).await;
        let undone = snapshot(&emu, &db, &dir.path().join("undone.csv"), wire).await;
        assert_eq!(undone, before, "{wire}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_the_accounts_left_out_only_with_allow_delete() {
    for wire in WIRES {
        let emu = emulator().await;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let before = snapshot(&emu, &db, &dir.path().join("before.csv"), wire).await;
        let leaver = before
            .keys()
            .find(|n| n.starts_with("TECH\\user"))
            .unwrap()
            .clone();
        let mut edited = before.clone();
        edited.remove(&leaver);
        let sheet = dir.path().join("desired.csv");
        write_sheet(&sheet, &edited);
        let changes = dir.path().join("changes.csv");
        let out = ok(
            &emu,
            &db,
            &[
                "plan",
                "--desired",
                sheet.to_str().unwrap(),
                "-o",
                changes.to_str().unwrap(),
                "--prune",
            ],
            wire,
        )
        .await;
        assert!(out.contains("1 delete-account"), "{out}");
        let plan = std::fs::read_to_string(&changes).unwrap();
        assert_eq!(plan.lines().count(), 2, "{plan}");
        assert!(
            plan.contains(&format!("{leaver},delete-account,confirm")),
            "{plan}"
        );

        let (code, text) = embatch(&emu, &db, &["apply", changes.to_str().unwrap()], wire).await;
        assert_eq!(code, Some(2), "{text}");
        assert!(text.contains("--allow-delete"), "{text}");
        ok(
            &emu,
            &db,
            &["apply", changes.to_str().unwrap(), "--allow-delete"],
            wire,
        )
        .await;
        let after = snapshot(&emu, &db, &dir.path().join("after.csv"), wire).await;
        assert_eq!(after, edited, "{wire}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_neutralised_name_round_trips_and_no_quoted_account_is_made() {
    for wire in WIRES {
        let emu = emulator().await;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let setup = dir.path().join("setup.csv");
        std::fs::write(
            &setup,
            "account,action,target\n=Finance+Ops,add-account,ExternalGroup\n=Finance+Ops,assign-role,Portal User\n",
        )
        .unwrap();
        ok(&emu, &db, &["apply", setup.to_str().unwrap()], wire).await;
        let snap = dir.path().join("snap.csv");
        ok(
            &emu,
            &db,
            &[
                "snapshot",
                "--all",
                "--format",
                "csv",
                "-o",
                snap.to_str().unwrap(),
            ],
            wire,
        )
        .await;
        let text = std::fs::read_to_string(&snap).unwrap();
        assert!(
            text.contains(",'=Finance+Ops,ExternalGroup,true,Portal User,"),
            "{text}"
        );
        // The reviewer gives it a role, and adds an account whose name the export would quote.
        let edited = text.replace(
            ",'=Finance+Ops,ExternalGroup,true,Portal User,",
            ",'=Finance+Ops,ExternalGroup,true,Portal User; File Restore Operator,",
        ) + ",'@Auditors,ExternalGroup,true,Portal User,,\n";
        let sheet = dir.path().join("desired.csv");
        std::fs::write(&sheet, edited).unwrap();
        let changes = dir.path().join("changes.csv");
        ok(
            &emu,
            &db,
            &[
                "plan",
                "--desired",
                sheet.to_str().unwrap(),
                "-o",
                changes.to_str().unwrap(),
            ],
            wire,
        )
        .await;
        let plan = std::fs::read_to_string(&changes).unwrap();
        assert!(
            plan.contains("=Finance+Ops,assign-role,File Restore Operator"),
            "{plan}"
        );
        assert!(
            plan.contains("@Auditors,add-account,ExternalGroup"),
            "{plan}"
        );
        assert!(!plan.contains('\''), "{plan}");
        ok(&emu, &db, &["apply", changes.to_str().unwrap()], wire).await;
        let state = emu.state();
        assert!(state.accounts.iter().all(|a| !a.name.starts_with('\'')));
        let finance = state
            .accounts
            .iter()
            .find(|a| a.name == "=Finance+Ops")
            .unwrap();
        assert_eq!(finance.roles.len(), 2);
        assert!(state.accounts.iter().any(|a| a.name == "@Auditors"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_sheet_is_refused_by_line_with_nothing_read_or_written() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let sheet = dir.path().join("desired.csv");
    std::fs::write(
        &sheet,
        "account,type,restore_all_vms,roles,scopes\nTECH\\a,User,maybe,Portal User,\n",
    )
    .unwrap();
    let changes = dir.path().join("changes.csv");
    let (code, text) = embatch(
        &emu,
        &db,
        &[
            "plan",
            "--desired",
            sheet.to_str().unwrap(),
            "-o",
            changes.to_str().unwrap(),
        ],
        "json",
    )
    .await;
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(&format!("{}:2: restore_all_vms 'maybe'", sheet.display())),
        "{text}"
    );
    assert!(!changes.exists());
    assert!(!db.exists(), "nothing was read, so no run was recorded");
}
