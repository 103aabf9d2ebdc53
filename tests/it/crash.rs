//! `embatch apply` killed with SIGKILL at random moments and resumed after each: the end state
//! is the plan's, every change was made exactly once, and every request that reached the
//! server is in the audit log.

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
        let mut child = cmd.spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..600))).await;
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
    assert!(
        reconciled > 0,
        "some kills left writes in doubt, settled by reading"
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
