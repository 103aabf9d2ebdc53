//! `embatch verify` as auditors run it: the binary, after real runs against the in-process
//! emulator, on logs left whole and on logs edited afterwards with plain SQL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use embatch::emulator::{AccountSnapshot, EmulatorConfig, Faults, RunningEmulator};
use sha2::{Digest, Sha256};

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

/// Checks that plain SQL, as someone with the sqlite3 shell would run it, is refused: the log
/// is append-only.
fn assert_refused(db: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let err = conn.execute_batch(sql).unwrap_err();
    assert!(err.to_string().contains("append-only"), "{sql}: {err}");
}

/// A copy of the log `db`, named `name` beside it.
fn copy(db: &Path, name: &str) -> PathBuf {
    let path = db.with_file_name(name);
    std::fs::copy(db, &path).unwrap();
    path
}

/// Checks that `verify` fails with status 5 and names `record` first; answers what it printed.
async fn assert_tampered(emu: &RunningEmulator, db: &Path, first: &str) -> Ran {
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
    ran
}

/// The problems `verify` printed, without its closing line.
fn problems(ran: &Ran) -> Vec<&str> {
    let mut lines: Vec<&str> = ran.stdout.lines().collect();
    lines.pop();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_log_verifies_and_its_anchor_is_checked_later() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, db) = applied(dir.path()).await;
    let records = count(&db, "SELECT count(*) FROM evidence_log");
    // The facts of the run (src/audit/write/apply.rs): its start; its eight plan rows; each
    // request before it is sent, and its result; each account's state before its rows, stored
    // once per account (eight: one account per row); each row's outcome, which carries the
    // account id the row resolved to (so no account id is a record of its own); its end and its
    // checkpoint.
    let requests = count(&db, "SELECT count(*) FROM request_log");
    let accounts = count(
        &db,
        "SELECT count(DISTINCT account_id) FROM change_log WHERE run_id = 1",
    );
    assert_eq!(accounts, 8);
    let results = count(
        &db,
        "SELECT count(*) FROM request_log WHERE status IS NOT NULL OR error IS NOT NULL",
    );
    assert_eq!(results, requests, "every request has its result");
    assert_eq!(records, 1 + 8 + 2 * requests + accounts + 8 + 2);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let kinds: BTreeMap<String, i64> = conn
        .prepare("SELECT kind, count(*) FROM evidence_log GROUP BY kind")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    drop(conn);
    let expected: BTreeMap<String, i64> = [
        ("run", 1),
        ("row", 8),
        ("attempt", requests),
        ("result", requests),
        ("state", accounts),
        ("outcome", 8),
        ("end", 1),
        ("checkpoint", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(kinds, expected);

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
        format!("anchor {anchor}: found at record #{records}\n{all}/{all} records valid\n")
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
    let intact = copy(&db, "intact.db");
    // Row 2 is on plan line 4; say it was never sent. The log refuses the edit as it is...
    let skipped = "UPDATE row_outcomes SET outcome = 'skipped' WHERE run_id = 1 AND row_no = 2";
    assert_refused(&db, skipped);
    // ... so it is made with the triggers dropped, and they are made again after it.
    let seq = count(
        &db,
        "SELECT seq FROM row_outcomes WHERE run_id = 1 AND row_no = 2",
    );
    support::edit_facts(&db, skipped);
    assert_eq!(support::outcomes(&db, 1)[2], "skipped");
    let ran = assert_tampered(
        &emu,
        &db,
        &format!("run 1 row 2 outcome (record #{seq}): modified"),
    )
    .await;
    assert_eq!(problems(&ran).len(), 1, "{}", ran.all);

    let ran = embatch(&emu, &db, &["verify", "--output", "json"]).await;
    assert_eq!(ran.code, Some(5), "{}", ran.all);
    let json: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["problem_count"], 1);
    assert_eq!(
        json["problems"][0]["record"],
        format!("run 1 row 2 outcome (record #{seq})")
    );
    assert_eq!(json["problems"][0]["damage"], "modified");
    assert_eq!(json["problems"][0]["seq"], seq);

    // The plan row itself changed.
    let planned = copy(&intact, "planned.db");
    let seq = count(
        &planned,
        "SELECT seq FROM planned_rows WHERE run_id = 1 AND row_no = 2",
    );
    support::edit_facts(
        &planned,
        "UPDATE planned_rows SET target = 'Portal Administrator' WHERE run_id = 1 AND row_no = 2",
    );
    let ran = assert_tampered(
        &emu,
        &planned,
        &format!("run 1 row 2 (plan line 4) (record #{seq}): modified"),
    )
    .await;
    assert_eq!(problems(&ran).len(), 1, "{}", ran.all);

    // An attempt's answer changed.
    let answered = copy(&intact, "answered.db");
    let id = count(&answered, "SELECT max(attempt_id) FROM request_log");
    let seq = count(
        &answered,
        &format!("SELECT seq FROM request_results WHERE request = {id}"),
    );
    support::edit_facts(
        &answered,
        &format!("UPDATE request_results SET status = 403 WHERE request = {id}"),
    );
    assert_eq!(
        count(
            &answered,
            &format!("SELECT status FROM request_log WHERE attempt_id = {id}")
        ),
        403
    );
    let ran = assert_tampered(
        &emu,
        &answered,
        &format!("attempt {id} result (record #{seq}): modified"),
    )
    .await;
    assert_eq!(problems(&ran).len(), 1, "{}", ran.all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_deleted_with_plain_sql_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, db) = applied(dir.path()).await;
    let intact = copy(&db, "intact.db");
    // An attempt of a row, with its result: gone from request_log.
    let id = count(
        &db,
        "SELECT min(attempt_id) FROM request_log WHERE method = 'POST' AND row_no IS NOT NULL",
    );
    let result = count(
        &db,
        &format!("SELECT seq FROM request_results WHERE request = {id}"),
    );
    let delete = format!(
        "DELETE FROM requests WHERE seq = {id}; DELETE FROM request_results WHERE request = {id};"
    );
    assert_refused(&db, &delete);
    support::edit_facts(&db, &delete);
    assert_eq!(
        count(
            &db,
            &format!("SELECT count(*) FROM request_log WHERE attempt_id = {id}")
        ),
        0
    );
    // What a deleted record held is gone with it: it is named by its number.
    let expected = if result == id + 1 {
        vec![format!("records #{id} to #{result}: deleted")]
    } else {
        vec![
            format!("record #{id}: deleted"),
            format!("record #{result}: deleted"),
        ]
    };
    let ran = assert_tampered(&emu, &db, &expected[0]).await;
    assert_eq!(problems(&ran), expected, "{}", ran.all);

    // A plan row, with its outcome: gone from change_log.
    let db = copy(&intact, "row.db");
    let row = count(
        &db,
        "SELECT seq FROM planned_rows WHERE run_id = 1 AND row_no = 5",
    );
    let outcome = count(
        &db,
        "SELECT seq FROM row_outcomes WHERE run_id = 1 AND row_no = 5",
    );
    support::edit_facts(
        &db,
        "DELETE FROM planned_rows WHERE run_id = 1 AND row_no = 5;
         DELETE FROM row_outcomes WHERE run_id = 1 AND row_no = 5;",
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM change_log WHERE row_no = 5"),
        0
    );
    let ran = assert_tampered(&emu, &db, &format!("record #{row}: deleted")).await;
    assert_eq!(
        problems(&ran),
        [
            format!("record #{row}: deleted"),
            format!("record #{outcome}: deleted")
        ],
        "{}",
        ran.all
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_inserted_with_plain_sql_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, db) = applied(dir.path()).await;
    let intact = copy(&db, "intact.db");
    // An attempt that was never made, with its answer. The next number of its table is the
    // number of a record of another table.
    let next = count(&db, "SELECT max(attempt_id) + 1 FROM request_log");
    let insert = "INSERT INTO requests (hash, run_id, row_no, attempt, method, path, started_at)
         VALUES (randomblob(32), 1, 0, 1, 'GET', '/api/security/accounts',
             '2026-11-23T10:21:03.123Z');
         INSERT INTO request_results (hash, run_id, request, status, duration_us)
         VALUES (randomblob(32), 1, last_insert_rowid(), 200, 4000);";
    support::edit_facts(&db, insert);
    assert_eq!(
        count(
            &db,
            &format!("SELECT status FROM request_log WHERE attempt_id = {next}")
        ),
        200
    );
    let result = count(
        &db,
        &format!("SELECT seq FROM request_results WHERE request = {next}"),
    );
    let ran = assert_tampered(
        &emu,
        &db,
        &format!("attempt {next} (record #{next}): inserted"),
    )
    .await;
    assert_eq!(
        problems(&ran),
        [
            format!("attempt {next} (record #{next}): inserted"),
            format!("attempt {next} result (record #{result}): inserted"),
        ],
        "{}",
        ran.all
    );

    // A plan row that was never in the plan, applied.
    let db = copy(&intact, "row.db");
    support::edit_facts(
        &db,
        "INSERT INTO planned_rows (hash, run_id, row_no, line, account, action, target)
         VALUES (randomblob(32), 1, 8, 10, 'TECH\\mallory', 'assign-role',
             'Portal Administrator');
         INSERT INTO row_outcomes (hash, run_id, row_no, outcome, finished_at)
         VALUES (randomblob(32), 1, 8, 'applied', '2026-11-23T10:21:03.123Z');",
    );
    assert_eq!(support::outcomes(&db, 1).len(), 9);
    assert_eq!(support::outcomes(&db, 1)[8], "applied");
    let row = count(
        &db,
        "SELECT seq FROM planned_rows WHERE run_id = 1 AND row_no = 8",
    );
    let outcome = count(
        &db,
        "SELECT seq FROM row_outcomes WHERE run_id = 1 AND row_no = 8",
    );
    let ran = assert_tampered(
        &emu,
        &db,
        &format!("run 1 row 8 (plan line 10) (record #{row}): inserted"),
    )
    .await;
    assert_eq!(
        problems(&ran),
        [
            format!("run 1 row 8 (plan line 10) (record #{row}): inserted"),
            format!("run 1 row 8 outcome (record #{outcome}): inserted"),
        ],
        "{}",
        ran.all
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_to_the_evidence_itself_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, db) = applied(dir.path()).await;
    let records = count(&db, "SELECT count(*) FROM evidence_log");
    // Row 3 (plan line 5) and the record after it.
    let seq = count(
        &db,
        "SELECT seq FROM planned_rows WHERE run_id = 1 AND row_no = 3",
    );
    assert_eq!(
        count(
            &db,
            "SELECT seq FROM planned_rows WHERE run_id = 1 AND row_no = 4"
        ),
        seq + 1
    );
    let row_3 = format!("run 1 row 3 (plan line 5) (record #{seq})");
    // The chain's own columns refuse plain edits like the rest.
    assert_refused(
        &db,
        &format!("UPDATE planned_rows SET hash = randomblob(32) WHERE seq = {seq}"),
    );
    assert_refused(&db, &format!("DELETE FROM planned_rows WHERE seq = {seq}"));
    let only =
        |problem: &str| format!("{problem}\nverification failed: 1 problem in {records} records\n");

    // A hash replaced, or cut short: that record is named, not every one after it.
    for (name, set) in [
        ("replaced.db", "randomblob(32)"),
        ("short.db", "substr(hash, 1, 31)"),
    ] {
        let path = copy(&db, name);
        support::edit_facts(
            &path,
            &format!("UPDATE planned_rows SET hash = {set} WHERE seq = {seq}"),
        );
        let ran = assert_tampered(&emu, &path, &format!("{row_3}: modified")).await;
        assert_eq!(ran.stdout, only(&format!("{row_3}: modified")), "{set}");
    }

    // A copy of the record, with its hash, under the number of a record of another table.
    let taken = count(&db, "SELECT min(seq) FROM requests");
    let columns =
        "run_id, line, account, action, target, object_name, ticket, comment, annotations";
    let path = copy(&db, "copied.db");
    support::edit_facts(
        &path,
        &format!(
            "INSERT INTO planned_rows (seq, hash, row_no, {columns})
             SELECT {taken}, hash, row_no + 100, {columns} FROM planned_rows WHERE seq = {seq}"
        ),
    );
    let ran = assert_tampered(
        &emu,
        &path,
        &format!("run 1 row 103 (plan line 5) (record #{taken}): inserted"),
    )
    .await;
    assert_eq!(problems(&ran).len(), 1, "{}", ran.all);

    // The record moved to that number: gone from its place, and there twice.
    let path = copy(&db, "moved.db");
    support::edit_facts(
        &path,
        &format!("UPDATE planned_rows SET seq = {taken} WHERE seq = {seq}"),
    );
    let ran = assert_tampered(&emu, &path, &format!("record #{seq}: deleted")).await;
    assert_eq!(
        problems(&ran),
        [
            format!("record #{seq}: deleted"),
            format!("run 1 row 3 (plan line 5) (record #{taken}): inserted"),
        ],
        "{}",
        ran.all
    );

    // The row edited and its hash made again, as someone who knows how hashes are made: the
    // record holds, and the next one no longer links to it.
    let path = copy(&db, "rehashed.db");
    support::edit_facts(
        &path,
        &format!("UPDATE planned_rows SET ticket = 'CHG-2' WHERE seq = {seq}"),
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let text: String = conn
        .query_row(
            "SELECT prev_hash || char(10) || seq || char(10) || kind || char(10) || run_id
                 || char(10) || coalesce(ref, '') || char(10) || content
             FROM evidence_log WHERE seq = ?1",
            [seq],
            |r| r.get(0),
        )
        .unwrap();
    drop(conn);
    assert!(text.contains(r#""ticket":"CHG-2""#), "{text}");
    let hash = hex::encode(Sha256::digest(text.as_bytes()));
    support::edit_facts(
        &path,
        &format!("UPDATE planned_rows SET hash = X'{hash}' WHERE seq = {seq}"),
    );
    let ran = assert_tampered(
        &emu,
        &path,
        &format!("run 1 row 4 (plan line 6) (record #{}): modified", seq + 1),
    )
    .await;
    assert_eq!(problems(&ran).len(), 1, "{}", ran.all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_newest_run_is_caught_by_the_anchor_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (emu, db) = applied(dir.path()).await;
    let first = count(&db, "SELECT count(*) FROM evidence_log");
    let second = plan(&emu, dir.path(), "second.csv");
    let ran = embatch(&emu, &db, &["apply", second.to_str().unwrap()]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.all);
    let anchor = embatch(&emu, &db, &["verify", "--anchor"])
        .await
        .stdout
        .trim()
        .to_string();
    assert!(count(&db, "SELECT count(*) FROM evidence_log WHERE run_id = 2") > 0);

    // The whole of run 2 removed, every record of it in every table of facts: what is left is a
    // shorter chain that holds.
    support::edit_facts(
        &db,
        "DELETE FROM run_starts WHERE id = 2;
         DELETE FROM run_resumes WHERE run_id = 2;
         DELETE FROM run_ends WHERE run_id = 2;
         DELETE FROM planned_rows WHERE run_id = 2;
         DELETE FROM prior_states WHERE run_id = 2;
         DELETE FROM row_outcomes WHERE run_id = 2;
         DELETE FROM row_accounts WHERE run_id = 2;
         DELETE FROM requests WHERE run_id = 2;
         DELETE FROM request_results WHERE run_id = 2;
         DELETE FROM checkpoints WHERE run_id = 2;",
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM evidence_log WHERE run_id = 2"),
        0
    );
    assert_eq!(count(&db, "SELECT count(*) FROM evidence_log"), first);
    let ran = embatch(&emu, &db, &["verify"]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.all);
    assert_eq!(ran.stdout, format!("{first}/{first} records valid\n"));
    let ran = embatch(&emu, &db, &["verify", "--expect", &anchor]).await;
    assert_eq!(ran.code, Some(5), "{}", ran.all);
    assert_eq!(
        ran.stdout,
        format!(
            "anchor {anchor}: not in the audit log\nverification failed: 1 problem in {first} records\n"
        )
    );
    // With --anchor, a log that fails prints no anchor.
    support::edit_facts(&db, "UPDATE run_starts SET operator = 'TECH\\mallory'");
    let ran = embatch(&emu, &db, &["verify", "--anchor"]).await;
    assert_eq!(ran.code, Some(5), "{}", ran.all);
    assert_eq!(
        ran.stdout.lines().next(),
        Some("run 1 (record #1): modified")
    );
    assert!(!ran.stdout.lines().any(|l| l.len() == 64), "{}", ran.all);
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
