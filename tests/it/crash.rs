//! `embatch apply` killed with SIGKILL at random moments and resumed after each: the end state
//! is the plan's, every change was made exactly once, and every request that reached the
//! server is in the audit log. And killed at one chosen moment (a proxy holds the answer of the
//! request of interest, and the test kills the run once the server has carried it out), to
//! check what `resume` records for that request's rows.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use embatch::emulator::{EmulatorConfig, Faults};
use rand::{RngExt, SeedableRng};

use crate::support;
use crate::workload::Workload;

/// Kills before the run is let finish.
const KILLS: usize = 20;

/// Resumes recorded for run 1 (none before the run itself is recorded).
fn resumes_recorded(db: &Path) -> i64 {
    if !run_recorded(db) {
        return 0;
    }
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT count(*) FROM run_resumes WHERE run_id = 1",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

fn run_recorded(db: &Path) -> bool {
    if !db.exists() {
        return false;
    }
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT count(*) FROM runs", [], |r| r.get::<_, i64>(0))
        .unwrap()
        > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_then_resume_applies_each_change_exactly_once() {
    // Latency keeps the run long enough to be killed twenty times on any machine.
    let emu = support::emulator(EmulatorConfig {
        accounts: 520,
        faults: Faults {
            latency_ms: 15,
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    })
    .await;
    let work = Workload::new(emu.state(), 500);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let plan = dir.path().join("plan.csv");
    std::fs::write(&plan, &work.csv).unwrap();
    let pace = ["--rate", "100000", "--burst", "1000", "--concurrency", "16"];

    let mut rng = rand::rngs::StdRng::seed_from_u64(20261123);
    let mut kills = 0;
    let mut saw_crashed = false;
    // Resume processes killed, and those of them killed after recording their resume: one
    // killed while still starting up (a loaded machine) records none, so only some of them do.
    let (mut resume_kills, mut resumes_seen) = (0, 0);
    while kills < KILLS {
        let mut cmd = support::cli(&emu, &db);
        let resuming = run_recorded(&db);
        let resumes_before = resumes_recorded(&db);
        if resuming {
            cmd.args(["resume", "1"]);
        } else {
            cmd.arg("apply").arg(&plan);
        }
        cmd.args(pace).stdout(Stdio::null()).stderr(Stdio::null());
        let writes_before = emu.journal().len();
        let mut child = cmd.spawn().unwrap();
        // A random moment once this process is changing accounts: on a loaded machine, a fixed
        // delay after the start may still fall in its logon or its first reads.
        for _ in 0..3000 {
            if emu.journal().len() > writes_before || child.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..150))).await;
        if child.try_wait().unwrap().is_some() {
            panic!("the run ended before it was killed {KILLS} times ({kills} so far)");
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        if resuming {
            resume_kills += 1;
            let added = resumes_recorded(&db) - resumes_before;
            assert!(added <= 1, "one resume process recorded {added} resumes");
            resumes_seen += added;
        }

        if !saw_crashed && run_recorded(&db) {
            let out = support::output({
                let mut c = support::cli(&emu, &db);
                c.args(["show", "1"]);
                c
            })
            .await;
            let text = support::text(&out);
            assert!(
                text.contains("crashed") && text.contains("embatch resume 1"),
                "{text}"
            );
            saw_crashed = true;
        }
    }

    // Now let it finish.
    let mut finished = None;
    for _ in 0..5 {
        let mut cmd = support::cli(&emu, &db);
        cmd.args(["resume", "1"]).args(pace);
        let out = support::output(cmd).await;
        if out.status.code() == Some(0) {
            finished = Some(out);
            break;
        }
    }
    let out = finished.expect("resume finishes the run");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("run 1"),
        "{}",
        support::text(&out)
    );

    // The state the plan asks for, every change exactly once.
    assert_eq!(support::accesses(&emu.state()), work.desired());
    work.assert_exactly_once(&emu.journal());

    // Every request that reached the server was recorded before it was sent.
    support::assert_every_request_logged(&emu, &db, 1);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let status: String = conn
        .query_row("SELECT status FROM run_summary WHERE run_id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(status, "completed");
    let resumes: i64 = conn
        .query_row(
            "SELECT count(*) FROM run_resumes WHERE run_id = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // Each resume process records itself once, the killed ones included; the finishing
    // resumes add at least one.
    assert!(
        resume_kills > 0 && resumes_seen > 0,
        "{resume_kills} resume processes killed, {resumes_seen} of them recorded"
    );
    assert!(resumes > resumes_seen, "{resumes} resumes recorded in all");
    let reconciled: i64 = conn
        .query_row(
            "SELECT count(*) FROM change_log WHERE run_id = 1 AND error LIKE 'reconciled:%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let intents_unanswered: i64 = conn
        .query_row(
            "SELECT count(*) FROM request_log WHERE run_id = 1 AND status IS NULL AND error IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    eprintln!(
        "{kills} kills, {resumes} resumes, {reconciled} rows reconciled by reading, \
         {intents_unanswered} requests cut off in flight"
    );
    // Every kill came while writes were going out, so some were cut off in flight; whether
    // the server had carried out any of those (then `resume` finds them in place and records
    // them `reconciled`) is down to microseconds, and is checked deterministically below
    // (`rows_folded_into_a_create_request_are_reconciled_with_it_on_resume`).
    assert!(
        intents_unanswered > 0,
        "some kills cut off requests in flight"
    );
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");

    // The evidence chain survived every kill.
    let mut cmd = support::cli(&emu, &db);
    cmd.arg("verify");
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("records valid"));
}

/// A run killed right after an account's create request reached the server, before its answer
/// came back, then resumed: the rows folded into that request are recorded as the request's,
/// `applied` and linked to it with what undo needs, as the run would have recorded them had it
/// not been killed; and nothing is sent twice. In both wire formats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_folded_into_a_create_request_are_reconciled_with_it_on_resume() {
    use crate::hostile::{self, Act, Hostile};
    use embatch::emulator::Effect;

    for wire in ["xml", "json"] {
        let emu = support::emulator(EmulatorConfig {
            accounts: 12,
            ..EmulatorConfig::default()
        })
        .await;
        // The first create request is carried out by the emulator, and its answer held for
        // good; the test hears of it once the account exists.
        let (created, mut heard) = tokio::sync::mpsc::unbounded_channel::<()>();
        let hostile = Hostile::start(&emu, move |seen| {
            if seen.is("POST", "/security/accounts") {
                let created = created.clone();
                Act::ForwardThenHold(Box::pin(async move {
                    let _ = created.send(());
                    std::future::pending::<()>().await
                }))
            } else {
                Act::Forward
            }
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let plan = dir.path().join("plan.csv");
        std::fs::write(
            &plan,
            "account,action,target,object_name\n\
             TECH\\new.hire,add-account,User,\n\
             TECH\\new.hire,assign-role,Portal User,\n\
             \n\
             TECH\\new.hire,assign-role,VM Restore Operator,\n\
             TECH\\new.hire,add-scope,urn:VMware:ResourcePool:11111111-2222-3333-4444-555555555555.resgroup-7,Payroll-RP\n\
             TECH\\new.hire,restore-all-vms,off,\n",
        )
        .unwrap();
        let mut apply = hostile::cli(&emu, &hostile, &db, &["apply", plan.to_str().unwrap()]);
        apply
            .args(["--wire", wire])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = apply.spawn().unwrap();
        // A guard against a hang, not a timing: the request comes as soon as the run logs on.
        let came = tokio::time::timeout(Duration::from_secs(120), heard.recv()).await;
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            matches!(came, Ok(Some(()))),
            "{wire}: no create request came"
        );
        assert_eq!(
            support::outcomes(&db, 1),
            vec!["pending"; 5],
            "{wire}: killed before any row was recorded"
        );

        // Resumed against the emulator itself (the environment's URL), in the run's wire.
        let mut resume = support::cli(&emu, &db);
        resume.args(["resume", "1"]).args(support::FAST);
        let out = support::output(resume).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{wire}: {}",
            support::text(&out)
        );

        let conn = rusqlite::Connection::open(&db).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT outcome, error, result FROM change_log WHERE run_id = 1 ORDER BY row_no",
            )
            .unwrap();
        let rows: Vec<(String, Option<String>, serde_json::Value)> = stmt
            .query_map([], |r| {
                let result: Option<String> = r.get(2)?;
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    serde_json::from_str(result.as_deref().unwrap_or("null")).unwrap(),
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            rows.iter().all(|(outcome, ..)| outcome == "applied"),
            "{wire}: {rows:?}"
        );
        let (_, note, created) = &rows[0];
        assert!(
            note.as_deref().unwrap().starts_with("reconciled:"),
            "{wire}: {rows:?}"
        );
        // What undo needs to delete the account again: the roles it was created with.
        assert_eq!(
            created["roles"].as_array().map(Vec::len),
            Some(2),
            "{wire}: {rows:?}"
        );
        for (_, note, result) in &rows[1..] {
            assert_eq!(result["via_row"], 0, "{wire}: {rows:?}");
            assert!(
                note.as_deref()
                    .unwrap()
                    .starts_with("made by the create request of line 2"),
                "{wire}: {rows:?}"
            );
        }
        assert_eq!(rows[1].2["role_name"], "Portal User", "{wire}: {rows:?}");
        assert!(rows[3].2["scope_id"].is_string(), "{wire}: {rows:?}");
        assert_eq!(rows[4].2["restore_all_vms"], false, "{wire}: {rows:?}");

        // The create request was the only change the server saw.
        let effects: Vec<Effect> = emu.journal().into_iter().map(|e| e.effect).collect();
        assert_eq!(
            effects,
            [Effect::AccountCreated {
                name: "TECH\\new.hire".into()
            }],
            "{wire}"
        );
        let mut undo = support::cli(&emu, &db);
        undo.args(["undo", "1", "--dry-run"]);
        let out = support::output(undo).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{wire}: {}",
            support::text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("delete-account"),
            "{wire}: {}",
            support::text(&out)
        );
    }
}
