//! `apply` end to end against the emulator: actions, no-ops, ordering, retries, faults, pace.

use std::time::{Duration, Instant};

use embatch::em::Wire;
use embatch::emulator::{EmulatorConfig, Faults, StateSnapshot};
use embatch::runner::Outcome;

use crate::support::{self, WIRES, has, pick};

#[tokio::test]
async fn every_action_applied_then_all_noop_on_rerun() {
    for wire in WIRES {
        let emu = support::emulator(EmulatorConfig {
            accounts: 40,
            ..EmulatorConfig::default()
        })
        .await;
        let state = emu.state();
        let mut taken = Vec::new();
        let a = pick(&state, &mut taken, |a| {
            has(a, "Portal User") && !has(a, "VM Restore Operator")
        });
        let b = pick(&state, &mut taken, |a| a.roles.len() >= 2);
        let c = pick(&state, &mut taken, |a| {
            !a.allow_restore_all_vms && !a.scopes.is_empty()
        });
        let d = pick(&state, &mut taken, |a| a.allow_restore_all_vms);
        let b_role = &b.roles[0].name;
        let c_scope = &c.scopes[0].name;
        let plan = format!(
            "account,action,target,object_name,ticket\n\
             {a},assign-role,VM Restore Operator,,CHG-1\n\
             {b},remove-role,{b_role},,CHG-1\n\
             {c},remove-scope,{c_scope},,CHG-1\n\
             {c},restore-all-vms,on,,CHG-1\n\
             {d},add-scope,urn:VMware:ResourcePool:11111111-2222-3333-4444-555555555555.resgroup-77,Payroll-RP,CHG-1\n\
             {d},restore-all-vms,off,,CHG-1\n",
            a = a.name,
            b = b.name,
            c = c.name,
            d = d.name,
        );
        let run = support::apply(&emu, &plan, wire, support::fast_pace()).await;
        assert_eq!(
            run.outcomes(),
            vec![Outcome::Applied; 6],
            "{wire:?}: {:?}",
            run.errors()
        );
        let after = emu.state();
        let get = |n: &str| after.accounts.iter().find(|x| x.name == n).unwrap();
        assert!(has(get(&a.name), "VM Restore Operator"));
        assert!(!has(get(&b.name), b_role));
        assert!(get(&c.name).allow_restore_all_vms);
        assert!(!get(&c.name).scopes.iter().any(|s| &s.name == c_scope));
        assert!(!get(&d.name).allow_restore_all_vms);
        assert!(get(&d.name).scopes.iter().any(|s| s.name == "Payroll-RP"));
        // The created scope's id is recorded for undo.
        assert!(
            run.results()
                .iter()
                .any(|r| r.as_deref().is_some_and(|r| r.contains("scope_id")))
        );

        // Running the same plan again changes nothing and sends no write.
        let writes_before = emu.journal().len();
        let again = support::apply(&emu, &plan, wire, support::fast_pace()).await;
        assert_eq!(again.outcomes(), vec![Outcome::Noop; 6], "{wire:?}");
        assert_eq!(emu.journal().len(), writes_before);
    }
}

#[tokio::test]
async fn rows_of_one_account_run_in_plan_order() {
    for wire in WIRES {
        let emu = support::emulator(EmulatorConfig {
            accounts: 40,
            ..EmulatorConfig::default()
        })
        .await;
        let state = emu.state();
        let only = pick(&state, &mut Vec::new(), |a| {
            a.roles.len() == 1 && a.roles[0].name == "Portal User"
        });
        // Removing the only role would be refused, but not after the assign that precedes it.
        let plan = format!(
            "account,action,target\n{n},assign-role,File Restore Operator\n{n},remove-role,Portal User\n",
            n = only.name
        );
        let run = support::apply(&emu, &plan, wire, support::fast_pace()).await;
        assert_eq!(
            run.outcomes(),
            vec![Outcome::Applied, Outcome::Applied],
            "{:?}",
            run.errors()
        );
        let after = emu.state();
        let acc = after.accounts.iter().find(|x| x.name == only.name).unwrap();
        assert_eq!(
            acc.roles
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            ["File Restore Operator"]
        );
    }
}

#[tokio::test]
async fn last_role_refusal_fails_that_row_only() {
    let emu = support::emulator(EmulatorConfig {
        accounts: 40,
        ..EmulatorConfig::default()
    })
    .await;
    let state = emu.state();
    let mut taken = Vec::new();
    let only = pick(&state, &mut taken, |a| a.roles.len() == 1);
    let other = pick(&state, &mut taken, |a| !has(a, "SQL Restore Operator"));
    let plan = format!(
        "account,action,target\n{n},remove-role,{r}\n{o},assign-role,SQL Restore Operator\n",
        n = only.name,
        r = only.roles[0].name,
        o = other.name
    );
    let run = support::apply(&emu, &plan, Wire::Xml, support::fast_pace()).await;
    assert_eq!(run.outcomes(), vec![Outcome::Failed, Outcome::Applied]);
    assert!(
        run.errors()[0].as_deref().unwrap().contains("last role"),
        "{:?}",
        run.errors()
    );
    assert_eq!(run.report.summary.counts.failed, 1);
}

/// A plan of `n` role assignments over distinct generated accounts that lack the role.
fn assign_plan(state: &StateSnapshot, n: usize, role: &str) -> String {
    let mut plan = String::from("account,action,target\n");
    let mut count = 0;
    for a in state
        .accounts
        .iter()
        .filter(|a| a.name.starts_with("TECH\\user"))
    {
        if !has(a, role) && count < n {
            plan.push_str(&format!("{},assign-role,{role}\n", a.name));
            count += 1;
        }
    }
    assert_eq!(count, n, "enough accounts lack {role}");
    plan
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_to_success_and_all_recorded() {
    for wire in WIRES {
        let emu = support::emulator(EmulatorConfig {
            accounts: 60,
            ..EmulatorConfig::default()
        })
        .await;
        let plan = assign_plan(&emu.state(), 30, "Exchange Restore Operator");
        emu.set_faults(Faults {
            error_500: 0.1,
            error_503: 0.05,
            error_429: 0.05,
            retry_after_secs: 1,
            seed: Some(7),
            ..Faults::default()
        });
        let mut pace = support::fast_pace();
        pace.max_attempts = 8;
        let run = support::apply(&emu, &plan, wire, pace).await;
        assert_eq!(
            run.outcomes(),
            vec![Outcome::Applied; 30],
            "{:?}",
            run.errors()
        );
        let received = emu.requests();
        assert!(
            received.iter().any(|r| r.status == Some(500)),
            "some 500s were injected"
        );
        assert!(received.iter().any(|r| matches!(r.status, Some(429 | 503))));
        // Every request the emulator saw is in request_log, and with the same status.
        assert_eq!(run.request_log_len(), received.len());
        // No assignment was made twice.
        let assigned = emu
            .journal()
            .iter()
            .filter(|e| matches!(e.effect, embatch::emulator::Effect::RoleAssigned { .. }))
            .count();
        assert_eq!(assigned, 30);
    }
}

#[tokio::test]
async fn a_lost_answer_is_checked_not_resent() {
    for wire in WIRES {
        let emu = support::emulator(EmulatorConfig {
            accounts: 60,
            ..EmulatorConfig::default()
        })
        .await;
        let state = emu.state();
        let mut plan = assign_plan(&state, 20, "Oracle Restore Operator");
        // Toggles are the dangerous case: a blind resend would flip the flag back.
        for a in state
            .accounts
            .iter()
            .filter(|a| a.name.starts_with("TECH\\user"))
            .take(20)
        {
            let want = if a.allow_restore_all_vms { "off" } else { "on" };
            if a.allow_restore_all_vms || !a.scopes.is_empty() {
                plan.push_str(&format!("{},restore-all-vms,{want}\n", a.name));
            }
        }
        emu.set_faults(Faults {
            drop_after: 0.3,
            seed: Some(11),
            ..Faults::default()
        });
        let mut pace = support::fast_pace();
        pace.max_attempts = 10;
        let run = support::apply(&emu, &plan, wire, pace).await;
        assert!(
            run.outcomes().iter().all(|o| *o == Outcome::Applied),
            "{:?}",
            run.errors()
        );
        assert!(
            emu.requests().iter().any(|r| r.dropped),
            "some answers were lost"
        );
        // Exactly one effect per row: nothing applied twice.
        assert_eq!(emu.journal().len(), run.outcomes().len());
        let after = emu.state();
        for a in state
            .accounts
            .iter()
            .filter(|a| a.name.starts_with("TECH\\user"))
            .take(20)
        {
            if a.allow_restore_all_vms || !a.scopes.is_empty() {
                let now = after.accounts.iter().find(|x| x.id == a.id).unwrap();
                assert_eq!(
                    now.allow_restore_all_vms, !a.allow_restore_all_vms,
                    "{}",
                    a.name
                );
            }
        }
    }
}

#[tokio::test]
async fn a_session_expiring_mid_run_is_renewed() {
    for wire in WIRES {
        let emu = support::emulator(EmulatorConfig {
            accounts: 40,
            faults: Faults {
                expire_after: Some(7),
                ..Faults::default()
            },
            ..EmulatorConfig::default()
        })
        .await;
        let plan = assign_plan(&emu.state(), 15, "SQL Restore Operator");
        let run = support::apply(&emu, &plan, wire, support::fast_pace()).await;
        assert_eq!(
            run.outcomes(),
            vec![Outcome::Applied; 15],
            "{:?}",
            run.errors()
        );
        let logons = emu
            .requests()
            .iter()
            .filter(|r| r.path.to_lowercase().contains("sessionmngr"))
            .count();
        assert!(logons > 1, "the session was renewed ({logons} logons)");
    }
}

#[tokio::test]
async fn the_rate_limit_is_never_exceeded() {
    let emu = support::emulator(EmulatorConfig {
        accounts: 40,
        ..EmulatorConfig::default()
    })
    .await;
    let plan = assign_plan(&emu.state(), 10, "File Restore Operator");
    let mut pace = support::fast_pace();
    pace.rate = 20.0;
    pace.burst = std::num::NonZeroU32::new(1).unwrap();
    pace.concurrency = 8;
    let started = Instant::now();
    let run = support::apply(&emu, &plan, Wire::Json, pace).await;
    let elapsed = started.elapsed();
    let requests = emu.requests().len() as f64;
    // With a burst of one, n requests at 20/s take at least (n - 1) / 20 seconds.
    let floor = Duration::from_secs_f64((requests - 1.0) / 20.0);
    assert!(
        elapsed >= floor,
        "{requests} requests in {elapsed:?}, floor {floor:?}"
    );
    assert_eq!(run.report.summary.counts.applied, 10);
}

/// The preview and the summary are text people read: their wording is pinned by snapshots.
#[tokio::test]
async fn the_demo_preview_and_summary_read_well() {
    let seed = embatch::emulator::Seed::from_file(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/samples/emulator-seed.json"
    )))
    .unwrap();
    let emu = support::emulator(EmulatorConfig {
        seed: Some(seed),
        ..EmulatorConfig::default()
    })
    .await;
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/samples/onboarding.csv"
    ))
    .unwrap();
    let plan = embatch::plan::parse("samples/onboarding.csv", &bytes).unwrap();
    let preview = embatch::runner::preview(
        &plan,
        support::client_config(&emu, Wire::Xml),
        support::fast_pace(),
    )
    .await
    .unwrap();
    insta::assert_snapshot!("demo_preview", preview.text(&plan.file));

    let csv = String::from_utf8(bytes).unwrap();
    let run = support::apply(&emu, &csv, Wire::Xml, support::fast_pace()).await;
    let mut summary = run.report.summary.clone();
    // Timing and request counts vary from run to run; the counts of rows do not.
    summary.elapsed_secs = 1.5;
    summary.counts.requests = 71;
    insta::assert_snapshot!("demo_summary", summary.table());
}

/// An add-scope and a remove-scope of one scope for one account, in either order, are refused
/// before anything is sent: a run stopped between them would be resumed against a state the
/// second row already changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_added_and_removed_in_one_plan_is_refused_naming_both_lines() {
    let emu = support::emulator(EmulatorConfig {
        accounts: 12,
        ..EmulatorConfig::default()
    })
    .await;
    let name = pick(&emu.state(), &mut Vec::new(), |_| true).name.clone();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let add = format!(
        "{name},add-scope,urn:VMware:ResourcePool:11111111-2222-3333-4444-555555555555.resgroup-5,Payroll-RP"
    );
    let remove = format!("{name},remove-scope,Payroll-RP,");
    for (first, second) in [(&add, &remove), (&remove, &add)] {
        let plan = dir.path().join("plan.csv");
        // A blank line between them: lines are the file's physical lines.
        std::fs::write(
            &plan,
            format!("account,action,target,object_name\n{first}\n\n{second}\n"),
        )
        .unwrap();
        let expected = format!(
            "{}:4: contradicts line 2: add-scope and remove-scope of the same scope for one \
             account (lines 2 and 4)",
            plan.display()
        );
        for command in ["check", "apply"] {
            let mut cmd = support::cli(&emu, &db);
            cmd.arg(command).arg(&plan).args(support::FAST);
            let out = support::output(cmd).await;
            assert_eq!(out.status.code(), Some(2), "{}", support::text(&out));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains(&expected), "{}", support::text(&out));
        }
    }
    assert!(emu.requests().is_empty(), "nothing was sent");
    assert!(!db.exists(), "nothing was recorded");
}

/// After its summary, a run lists the rows that failed as `check` names a plan's problems
/// (`FILE:LINE`, the file's physical lines), the first 20 of them in plan order, then how many
/// more and where to see them all; `--output json` carries the same list and the total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_rows_are_listed_after_the_summary_by_file_and_line() {
    let emu = support::emulator(EmulatorConfig {
        accounts: 12,
        ..EmulatorConfig::default()
    })
    .await;
    let state = emu.state();
    let mut taken = Vec::new();
    let only = pick(&state, &mut taken, |a| {
        a.roles.len() == 1 && a.roles[0].name == "Portal User"
    })
    .name
    .clone();
    let ok = pick(&state, &mut taken, |a| !has(a, "SQL Restore Operator"))
        .name
        .clone();
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.csv");
    // Line 2 fails on the server's rules, lines 5 to 26 name accounts EM does not have.
    let mut text = format!(
        "account,action,target\n{only},remove-role,Portal User\n\n{ok},assign-role,SQL Restore Operator\n"
    );
    for i in 0..22 {
        text.push_str(&format!("TECH\\nobody{i:02},assign-role,Portal User\n"));
    }
    std::fs::write(&plan, text).unwrap();
    let file = plan.display().to_string();

    let db = dir.path().join("audit.db");
    let mut cmd = support::cli(&emu, &db);
    cmd.arg("apply").arg(&plan).args(support::FAST);
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(1), "{}", support::text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let listed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with(&format!("{file}:")))
        .collect();
    assert_eq!(listed.len(), 20, "{stdout}");
    assert!(
        listed[0].starts_with(&format!(
            "{file}:2: {only} remove-role \"Portal User\": would remove the last role of {only}"
        )),
        "{stdout}"
    );
    assert_eq!(
        listed[1],
        format!(
            "{file}:5: TECH\\nobody00 assign-role \"Portal User\": unknown account 'TECH\\nobody00'"
        ),
        "{stdout}"
    );
    assert!(listed[19].starts_with(&format!("{file}:23: ")), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "and 3 more: `embatch show 1 --failed --db {}`",
            db.display()
        )),
        "{stdout}"
    );

    let db = dir.path().join("json.db");
    let mut cmd = support::cli(&emu, &db);
    cmd.arg("apply")
        .arg(&plan)
        .args(support::FAST)
        .args(["--output", "json"]);
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(1), "{}", support::text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("one JSON value ({e}): {}", support::text(&out)));
    // The keys the summary always had are still there.
    assert_eq!(
        (&summary["run_id"], &summary["failed"], &summary["noop"]),
        (&1.into(), &23.into(), &1.into()),
        "{summary}"
    );
    assert_eq!(summary["db"], db.display().to_string());
    assert_eq!(summary["failures_total"], 23, "{summary}");
    let failures = summary["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 20, "{summary}");
    let first = &failures[0];
    assert_eq!(
        (
            &first["file"],
            &first["line"],
            &first["account"],
            &first["action"],
            &first["target"],
            &first["outcome"],
        ),
        (
            &file.as_str().into(),
            &2.into(),
            &only.as_str().into(),
            &"remove-role".into(),
            &"Portal User".into(),
            &"failed".into(),
        ),
        "{summary}"
    );
    assert!(
        first["reason"].as_str().unwrap().contains("last role"),
        "{summary}"
    );
    assert_eq!(failures[19]["line"], 23, "{summary}");
    assert!(failures.iter().all(|f| f.get("run").is_none()), "{summary}");
}
