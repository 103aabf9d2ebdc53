//! `embatch verify` as auditors run it: the binary, after real runs against the in-process
//! emulator, on logs left whole and on logs edited afterwards with plain SQL.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use embatch::emulator::{AccountSnapshot, EmulatorConfig, Faults, RunningEmulator};

use crate::support::{self, FAST, has};
use crate::workload::Workload;

/// What a command printed and how it ended.
struct Ran {
    code: Option<i32>,
    stdout: String,
    all: String,
}

/// Runs `embatch ARGS` against `emu` with the audit log `db`.
async fn embatch(emu: &RunningEmulator, db: &Path, args: &[&str]) -> Ran {
    let mut cmd = support::cli(emu, db);
    cmd.args(args);
    if matches!(args[0], "apply" | "resume") {
        cmd.args(FAST);
    }
    let out = support::output(cmd).await;
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        all: support::text(&out),
    }
}

/// A plan of eight rows over generated accounts, lines 2 to 9: a role for each of four
/// accounts, and the restore-all-VMs flag flipped for four others.
fn plan(emu: &RunningEmulator, dir: &Path, name: &str) -> PathBuf {
    let state = emu.state();
    let users: Vec<&AccountSnapshot> = state
        .accounts
        .iter()
        .filter(|a| a.name.starts_with("TECH\\user"))
        .collect();
    let mut csv = String::from("account,action,target,ticket\n");
    for a in users
        .iter()
        .filter(|a| !has(a, "VM Restore Operator"))
        .take(4)
    {
        csv.push_str(&format!(
            "{},assign-role,VM Restore Operator,CHG-1\n",
            a.name
        ));
    }
    for a in users.iter().rev().take(4) {
        let flip = if a.allow_restore_all_vms { "off" } else { "on" };
        csv.push_str(&format!("{},restore-all-vms,{flip},CHG-1\n", a.name));
    }
    let path = dir.join(name);
    std::fs::write(&path, csv).unwrap();
    path
}

async fn emulator(accounts: usize) -> RunningEmulator {
    support::emulator(EmulatorConfig {
        accounts,
        ..EmulatorConfig::default()
    })
    .await
}

/// An emulator and a log holding one applied run of [`plan`].
async fn applied(dir: &Path) -> (RunningEmulator, PathBuf) {
    let emu = emulator(40).await;
    let db = dir.join("audit.db");
    let plan = plan(&emu, dir, "plan.csv");
    let ran = embatch(&emu, &db, &["apply", plan.to_str().unwrap()]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.all);
    (emu, db)
}

fn count(db: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

/// Runs plain SQL on the file, as someone with the sqlite3 shell would (which does not enforce
/// foreign keys).
fn edit(db: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
    conn.execute_batch(sql).unwrap();
}

/// Checks that `verify` fails with status 5 and names `record` first.
async fn assert_tampered(emu: &RunningEmulator, db: &Path, first: &str) {
    let ran = embatch(emu, db, &["verify"]).await;
    assert_eq!(ran.code, Some(5), "{}", ran.all);
    assert_eq!(ran.stdout.lines().next(), Some(first), "{}", ran.all);
    assert!(
        ran.stdout
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("verification failed: ")),
        "{}",
        ran.all
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_log_verifies_and_its_anchor_is_checked_later() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, db) = applied(dir.path()).await;
    let records = count(&db, "SELECT count(*) FROM evidence_log");
    // The run, eight rows (each recorded, then finished with the account it resolved to), its
    // requests (each intent and end), its end and its checkpoint.
    let requests = count(&db, "SELECT count(*) FROM request_log");
    assert_eq!(records, 1 + 8 * 2 + 2 * requests + 2);

    let ran = embatch(&emu, &db, &["verify"]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.all);
    assert_eq!(ran.stdout, format!("{records}/{records} records valid\n"));

    let ran = embatch(&emu, &db, &["verify", "--anchor"]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.all);
    let anchor = ran.stdout.trim().to_string();
    assert_eq!(ran.stdout, format!("{anchor}\n"), "the hash alone");
    let head: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT hash FROM evidence_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(anchor, head);

    // A second run extends the chain; the anchor is still in it.
    let second = plan(&emu, dir.path(), "second.csv");
    let ran = embatch(&emu, &db, &["apply", second.to_str().unwrap()]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.all);
    let all = count(&db, "SELECT count(*) FROM evidence_log");
    let ran = embatch(&emu, &db, &["verify", "--expect", &anchor.to_uppercase()]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.all);
    assert_eq!(
        ran.stdout,
        format!("anchor {anchor}: found at evidence #{records}\n{all}/{all} records valid\n")
    );

    let ran = embatch(&emu, &db, &["verify", "--run", "1"]).await;
    assert_eq!(
        ran.stdout,
        format!("{records}/{records} records valid (run 1)\n")
    );
    let ran = embatch(&emu, &db, &["verify", "--run", "last"]).await;
    let second_records = all - records;
    assert_eq!(
        ran.stdout,
        format!("{second_records}/{second_records} records valid (run 2)\n")
    );
    let ran = embatch(&emu, &db, &["verify", "--run", "7"]).await;
    assert_eq!(ran.code, Some(2), "{}", ran.all);
    assert!(ran.all.contains("no run 7 in the audit log"), "{}", ran.all);

    let ran = embatch(&emu, &db, &["verify", "--output", "json"]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.all);
    let json: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["records"], all);
    assert_eq!(json["problem_count"], 0);
    assert_eq!(json["head_seq"], all);
    assert!(json["head"].as_str().is_some_and(|h| h.len() == 64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_edited_with_plain_sql_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, db) = applied(dir.path()).await;
    // Row 2 is on plan line 4; say it was never sent.
    edit(
        &db,
        "UPDATE plan_rows SET outcome = 'skipped' WHERE run_id = 1 AND row_no = 2",
    );
    assert_tampered(&emu, &db, "run 1 row 2 (plan line 4): modified").await;

    let ran = embatch(&emu, &db, &["verify", "--output", "json"]).await;
    assert_eq!(ran.code, Some(5), "{}", ran.all);
    let json: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["problem_count"], 1);
    assert_eq!(json["problems"][0]["record"], "run 1 row 2 (plan line 4)");
    assert_eq!(json["problems"][0]["damage"], "modified");

    // An attempt's answer changed, on a fresh log.
    let dir = tempfile::tempdir().unwrap();
    let (emu, db) = applied(dir.path()).await;
    let id = count(&db, "SELECT max(attempt_id) FROM request_log");
    edit(
        &db,
        &format!("UPDATE attempts SET status = 403 WHERE id = {id}"),
    );
    assert_tampered(&emu, &db, &format!("attempt {id}: modified")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_deleted_with_plain_sql_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, db) = applied(dir.path()).await;
    let id = count(
        &db,
        "SELECT min(attempt_id) FROM request_log WHERE method = 'POST' AND row_no IS NOT NULL",
    );
    edit(&db, &format!("DELETE FROM attempts WHERE id = {id}"));
    assert_tampered(&emu, &db, &format!("attempt {id}: deleted")).await;

    let dir = tempfile::tempdir().unwrap();
    let (emu, db) = applied(dir.path()).await;
    edit(&db, "DELETE FROM plan_rows WHERE run_id = 1 AND row_no = 5");
    assert_tampered(&emu, &db, "run 1 row 5 (plan line 7): deleted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_inserted_with_plain_sql_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, db) = applied(dir.path()).await;
    let next = count(&db, "SELECT max(attempt_id) + 1 FROM request_log");
    edit(
        &db,
        "INSERT INTO attempts (run_id, row_no, attempt, method, path, status, started_at,
             duration_ms)
         VALUES (1, 0, 1, 'GET', '/api/security/accounts', 200, '2026-11-23T10:21:03.123Z', 4.0)",
    );
    assert_tampered(&emu, &db, &format!("attempt {next}: inserted")).await;

    let dir = tempfile::tempdir().unwrap();
    let (emu, db) = applied(dir.path()).await;
    edit(
        &db,
        "INSERT INTO plan_rows (run_id, row_no, line, account, action, target, outcome)
         VALUES (1, 8, 10, 'TECH\\mallory', 'assign-role', 'Portal Administrator', 'applied')",
    );
    assert_tampered(&emu, &db, "run 1 row 8 (plan line 10): inserted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_to_the_evidence_itself_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, db) = applied(dir.path()).await;
    let unlock = "DROP TRIGGER evidence_no_update; DROP TRIGGER evidence_no_delete;";
    let conn = rusqlite::Connection::open(&db).unwrap();
    let refused = conn.execute("DELETE FROM evidence WHERE seq = 5", []);
    assert!(refused.is_err(), "the evidence refuses a plain delete");
    drop(conn);

    let copy = |name: &str| {
        let path = dir.path().join(name);
        std::fs::copy(&db, &path).unwrap();
        path
    };
    let deleted = copy("deleted.db");
    edit(
        &deleted,
        &format!("{unlock} DELETE FROM evidence WHERE seq = 5"),
    );
    assert_tampered(&emu, &deleted, "evidence #5: deleted").await;

    let last = count(&db, "SELECT max(seq) FROM evidence_log");
    let inserted = copy("inserted.db");
    edit(
        &inserted,
        "INSERT INTO evidence (kind, run_id, ref, content, prev_hash, hash)
         SELECT kind, run_id, ref, content, prev_hash, hash FROM evidence WHERE seq = 3",
    );
    assert_tampered(
        &emu,
        &inserted,
        &format!("evidence #{}: inserted", last + 1),
    )
    .await;

    // The row and its evidence edited alike: the record no longer has its hash.
    let seq = count(
        &db,
        "SELECT max(seq) FROM evidence_log WHERE kind = 'row' AND run_id = 1 AND ref = 3",
    );
    let modified = copy("modified.db");
    edit(
        &modified,
        &format!(
            "{unlock}
             UPDATE plan_rows SET ticket = 'CHG-2' WHERE run_id = 1 AND row_no = 3;
             UPDATE evidence SET content = replace(content, '\"CHG-1\"', '\"CHG-2\"')
             WHERE kind = 'row' AND run_id = 1 AND ref = 3"
        ),
    );
    let first_row_record = count(
        &db,
        "SELECT min(seq) FROM evidence_log WHERE kind = 'row' AND run_id = 1 AND ref = 3",
    );
    assert!(first_row_record < seq);
    assert_tampered(
        &emu,
        &modified,
        &format!("evidence #{first_row_record}: modified"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_newest_run_is_caught_by_the_anchor_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, db) = applied(dir.path()).await;
    let second = plan(&emu, dir.path(), "second.csv");
    let ran = embatch(&emu, &db, &["apply", second.to_str().unwrap()]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.all);
    let anchor = embatch(&emu, &db, &["verify", "--anchor"])
        .await
        .stdout
        .trim()
        .to_string();

    // The whole of run 2 removed, evidence included: what is left is a shorter chain that holds.
    edit(
        &db,
        "DROP TRIGGER evidence_no_delete;
         DELETE FROM attempts WHERE run_id = 2; DELETE FROM plan_rows WHERE run_id = 2;
         DELETE FROM runs WHERE id = 2; DELETE FROM evidence WHERE run_id = 2;",
    );
    let ran = embatch(&emu, &db, &["verify"]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.all);
    let ran = embatch(&emu, &db, &["verify", "--expect", &anchor]).await;
    assert_eq!(ran.code, Some(5), "{}", ran.all);
    assert_eq!(
        ran.stdout,
        format!(
            "anchor {anchor}: not in the audit log\nverification failed: 1 problem in {} records\n",
            count(&db, "SELECT count(*) FROM evidence_log")
        )
    );
    // With --anchor, a log that fails prints no anchor.
    edit(&db, "UPDATE runs SET operator = 'TECH\\mallory'");
    let ran = embatch(&emu, &db, &["verify", "--anchor"]).await;
    assert_eq!(ran.code, Some(5), "{}", ran.all);
    assert_eq!(ran.stdout.lines().next(), Some("run 1: modified"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_log_has_zero_records_and_a_missing_one_is_a_usage_error() {
    let emu = emulator(0).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let ran = embatch(&emu, &db, &["verify"]).await;
    assert_eq!(ran.code, Some(2), "{}", ran.all);
    assert!(ran.all.contains("no audit log"), "{}", ran.all);

    embatch::audit::AuditWriter::spawn(&db)
        .unwrap()
        .close()
        .await
        .unwrap();
    let ran = embatch(&emu, &db, &["verify"]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.all);
    assert_eq!(ran.stdout, "0/0 records valid\n");
    let ran = embatch(&emu, &db, &["verify", "--anchor"]).await;
    assert_eq!(ran.stdout.trim(), embatch::audit::GENESIS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_and_resumed_keeps_a_whole_chain() {
    let emu = support::emulator(EmulatorConfig {
        accounts: 130,
        faults: Faults {
            latency_ms: 10,
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    })
    .await;
    let work = Workload::new(emu.state(), 120);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let plan = dir.path().join("plan.csv");
    std::fs::write(&plan, &work.csv).unwrap();

    let mut cmd = support::cli(&emu, &db);
    cmd.arg("apply")
        .arg(&plan)
        .args(["--rate", "100000", "--burst", "1000", "--concurrency", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    // Killed once some requests are on record, in the middle of its stream of records.
    for _ in 0..200 {
        let started = db.exists()
            && count(
                &db,
                "SELECT count(*) FROM sqlite_schema WHERE name = 'request_log'",
            ) == 1
            && count(&db, "SELECT count(*) FROM request_log") > 40;
        if started || child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before it was killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    let ran = embatch(&emu, &db, &["verify"]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.all);
    assert_eq!(
        count(&db, "SELECT count(*) FROM evidence_log WHERE kind = 'end'"),
        0
    );

    let ran = embatch(&emu, &db, &["resume", "1"]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.all);
    let ran = embatch(&emu, &db, &["verify"]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.all);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM evidence_log WHERE kind = 'resume'"
        ),
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM evidence_log WHERE kind = 'checkpoint'"
        ),
        1
    );
}
