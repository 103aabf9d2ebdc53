//! The binary as users run it: exit statuses, refusals that send nothing, and the demo.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use embatch::emulator::EmulatorConfig;

use crate::support;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn embatch() -> Command {
    let mut cmd = Command::cargo_bin("embatch").unwrap();
    for var in [
        "EMBATCH_URL",
        "EMBATCH_USER",
        "EMBATCH_PASSWORD",
        "EMBATCH_DB",
        "EMBATCH_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn bad_plans() -> Vec<PathBuf> {
    let mut plans: Vec<PathBuf> = std::fs::read_dir(repo().join("samples/bad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    plans.sort();
    assert!(
        plans.len() >= 5,
        "samples/bad holds the malformed sample plans"
    );
    plans
}

#[tokio::test(flavor = "multi_thread")]
async fn every_malformed_sample_is_refused_with_lines_and_nothing_is_sent() {
    let emu = support::emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    for plan in bad_plans() {
        let out = embatch()
            .arg("apply")
            .arg(&plan)
            .env("EMBATCH_URL", emu.base_url())
            .env("EMBATCH_USER", EmulatorConfig::default().admin_user)
            .env("EMBATCH_PASSWORD", EmulatorConfig::default().admin_password)
            .env("EMBATCH_DB", dir.path().join("audit.db"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", plan.display());
        let name = plan.file_name().unwrap().to_string_lossy().to_string();
        let located = stderr
            .lines()
            .filter(|l| l.contains(&format!("{name}:")))
            .count();
        assert!(
            located >= 2,
            "{}: every problem is named by line:\n{stderr}",
            plan.display()
        );
    }
    assert!(emu.requests().is_empty(), "no request reached the server");
    assert!(
        !dir.path().join("audit.db").exists(),
        "an invalid plan opens no run"
    );
}

#[test]
fn a_spreadsheet_export_with_bom_crlf_and_semicolons_is_accepted() {
    let plan = repo().join("samples/excel-semicolon.csv");
    let bytes = std::fs::read(&plan).unwrap();
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"), "the sample has a BOM");
    assert!(
        bytes.windows(2).any(|w| w == b"\r\n"),
        "the sample has CRLF"
    );
    embatch().arg("check").arg(&plan).assert().success();
}

#[test]
fn usage_errors_exit_2() {
    let out = embatch()
        .args(["apply", "samples/onboarding.csv"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("EMBATCH_URL"));
}

#[test]
fn a_wrong_password_exits_3_before_any_change() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt.block_on(support::emulator(EmulatorConfig::default()));
    let dir = tempfile::tempdir().unwrap();
    let out = embatch()
        .args(["apply", "samples/onboarding.csv"])
        .current_dir(repo())
        .env("EMBATCH_URL", emu.base_url())
        .env("EMBATCH_USER", "admin")
        .env("EMBATCH_PASSWORD", "not-the-password")
        .env("EMBATCH_DB", dir.path().join("audit.db"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(emu.journal().is_empty());
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn demo_runs_end_to_end_in_an_empty_directory() {
    // The demo carries its plan and seed inside the binary, so it works from anywhere, and a
    // second run against the same audit log works too.
    let dir = tempfile::tempdir().unwrap();
    for round in 1..=2 {
        let out = embatch()
            .arg("demo")
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "round {round}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("applied"), "{stdout}");
        assert!(stdout.contains("embatch-demo.db"), "{stdout}");
    }
    let runs = embatch()
        .arg("runs")
        .arg("--db")
        .arg(dir.path().join("embatch-demo.db"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&runs.stdout).lines().count() >= 3);
    // The samples a new user is pointed at validate as they are.
    let samples = dir.path().join("samples");
    copy_tree(&repo().join("samples"), &samples);
    embatch()
        .arg("check")
        .arg(samples.join("onboarding.csv"))
        .assert()
        .success();
}
