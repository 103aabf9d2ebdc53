//! Applying exactly what was approved: `check` prints the plan's SHA-256 for the change ticket,
//! and `apply --expect-sha256` refuses any other file before anything is sent or recorded.

use embatch::emulator::EmulatorConfig;
use sha2::{Digest as _, Sha256};

use crate::support::{self, has, pick};

/// A one-row plan in a fresh directory, against an account of `emu` that lacks the role; the
/// directory, the audit log's path, the plan's path and the hash of its bytes.
fn plan_for(
    emu: &embatch::emulator::RunningEmulator,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    String,
) {
    let name = pick(&emu.state(), &mut Vec::new(), |a| {
        !has(a, "SQL Restore Operator")
    })
    .name
    .clone();
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.csv");
    let bytes =
        format!("account,action,target,ticket\n{name},assign-role,SQL Restore Operator,CHG-7\n");
    std::fs::write(&plan, &bytes).unwrap();
    let sha256 = hex::encode(Sha256::digest(bytes.as_bytes()));
    let db = dir.path().join("audit.db");
    (dir, db, plan, sha256)
}

async fn emulator() -> embatch::emulator::RunningEmulator {
    support::emulator(EmulatorConfig {
        accounts: 4,
        ..EmulatorConfig::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_the_plans_sha256_on_its_last_line() {
    let emu = emulator().await;
    let (_dir, db, plan, sha256) = plan_for(&emu);

    let mut cmd = support::cli(&emu, &db);
    cmd.arg("check").arg(&plan);
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].ends_with("plan.csv: 1 rows, valid"), "{stdout}");
    assert_eq!(
        lines[1],
        format!("sha256 {sha256}"),
        "the last line: {stdout}"
    );

    let mut cmd = support::cli(&emu, &db);
    cmd.arg("check").arg(&plan).args(["--output", "json"]);
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["plan_sha256"], sha256.as_str());
    assert_eq!(
        json["sha256"],
        sha256.as_str(),
        "the key it always had stays"
    );

    // The online preview ends with the same line, and its JSON holds the same key.
    let mut cmd = support::cli(&emu, &db);
    cmd.arg("check")
        .arg(&plan)
        .arg("--online")
        .args(support::FAST);
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().last(),
        Some(format!("sha256 {sha256}").as_str()),
        "{stdout}"
    );
    let mut cmd = support::cli(&emu, &db);
    cmd.arg("check")
        .arg(&plan)
        .args(["--online", "--output", "json"])
        .args(support::FAST);
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["plan_sha256"], sha256.as_str());
    assert_eq!(json["changes"], 1);

    assert!(emu.journal().is_empty(), "check changed nothing");
    assert!(!db.exists(), "check records nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approved_hash_applies_and_is_recorded_with_the_run() {
    let emu = emulator().await;
    let (_dir, db, plan, sha256) = plan_for(&emu);
    let mut cmd = support::cli(&emu, &db);
    // In upper case, as some tools print it: the hash is the same.
    cmd.arg("apply")
        .arg(&plan)
        .args(["--expect-sha256", &sha256.to_ascii_uppercase()])
        .args(support::FAST);
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
    assert_eq!(support::outcomes(&db, 1), ["applied"]);

    let conn = rusqlite::Connection::open(&db).unwrap();
    let (plan_sha256, options): (String, String) = conn
        .query_row(
            "SELECT plan_sha256, options FROM run_summary WHERE run_id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(plan_sha256, sha256);
    let options: serde_json::Value = serde_json::from_str(&options).unwrap();
    assert_eq!(options["expected_sha256"], sha256.as_str(), "{options}");
    assert!(
        options.get("concurrency").is_some(),
        "the pace is still there: {options}"
    );

    // Without the flag, nothing is recorded under that key.
    let (_dir2, db2, plan2, _) = plan_for(&emu);
    let mut cmd = support::cli(&emu, &db2);
    cmd.arg("apply").arg(&plan2).args(support::FAST);
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
    let conn = rusqlite::Connection::open(&db2).unwrap();
    let options: String = conn
        .query_row(
            "SELECT options FROM run_summary WHERE run_id = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let options: serde_json::Value = serde_json::from_str(&options).unwrap();
    assert!(options.get("expected_sha256").is_none(), "{options}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_hash_or_a_malformed_one_refuses_the_plan_with_nothing_sent_or_recorded() {
    let emu = emulator().await;
    let (_dir, db, plan, sha256) = plan_for(&emu);

    // The approved plan was this one before someone changed a cell.
    let approved = hex::encode(Sha256::digest(b"account,action,target\n"));
    let mut cmd = support::cli(&emu, &db);
    cmd.arg("apply")
        .arg(&plan)
        .args(["--expect-sha256", &approved, "--yes"])
        .args(support::FAST);
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(2), "{}", support::text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "plan.csv: the plan's SHA-256 is {sha256}, not {approved} as --expect-sha256 requires"
        )),
        "both hashes are named: {stderr}"
    );
    assert!(stderr.contains("nothing was sent"), "{stderr}");
    assert!(
        !stderr.contains("rows may change"),
        "refused before the confirmation: {stderr}"
    );

    for malformed in ["abc", &format!("{sha256}0"), &"zz".repeat(32)] {
        let mut cmd = support::cli(&emu, &db);
        cmd.arg("apply")
            .arg(&plan)
            .args(["--expect-sha256", malformed])
            .args(support::FAST);
        let out = support::output(cmd).await;
        assert_eq!(out.status.code(), Some(2), "{}", support::text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--expect-sha256 must be a plan's SHA-256 of 64 hex digits"),
            "{malformed}: {stderr}"
        );
    }

    assert!(emu.requests().is_empty(), "no request reached the server");
    assert!(!db.exists(), "nothing was recorded");
}
