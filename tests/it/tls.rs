//! The binary over TLS, against the emulator: a certificate it cannot trust is described with
//! how to trust it, a pinned fingerprint trusts it (and is recorded with the run), a wrong pin
//! sends nothing; and plain http to another machine is warned about.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use embatch::emulator::{EmulatorConfig, RunningEmulator};

use crate::support::{self, FAST};

/// The admin's password on these emulators.
const PASSWORD: &str = "tls-Pa55word";

async fn tls_emulator() -> RunningEmulator {
    support::emulator(EmulatorConfig {
        tls: true,
        accounts: 8,
        admin_password: PASSWORD.into(),
        ..EmulatorConfig::default()
    })
    .await
}

/// A plan giving the generated account `TECH\userNNNNN` a role.
fn plan(dir: &Path, account: usize) -> PathBuf {
    let path = dir.join(format!("plan-{account}.csv"));
    std::fs::write(
        &path,
        format!(
            "account,action,target\nTECH\\user{account:05},assign-role,Exchange Restore Operator\n"
        ),
    )
    .unwrap();
    path
}

/// `embatch apply PLAN` against `emu` with `args`, the audit log `db`.
async fn apply(
    emu: &RunningEmulator,
    db: &Path,
    plan: &Path,
    args: &[&str],
) -> std::process::Output {
    let mut cmd = support::cli(emu, db);
    cmd.env("EMBATCH_PASSWORD", PASSWORD)
        .arg("apply")
        .arg(plan)
        .args(FAST)
        .args(args);
    support::output(cmd).await
}

/// The requests of run `run` in `request_log`: method, path, status, error.
fn request_log(db: &Path, run: i64) -> Vec<(String, String, Option<i64>, Option<String>)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT method, path, status, error FROM request_log WHERE run_id = ?1 \
             ORDER BY attempt_id",
        )
        .unwrap();
    stmt.query_map([run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// Asserts that the run's only request, the logon, is recorded as failed without an answer:
/// its intent was kept before the handshake, and the handshake is where it ended.
fn assert_logon_recorded_as_failed(db: &Path, fingerprint: &str) {
    let log = request_log(db, 1);
    assert_eq!(log.len(), 1, "{log:?}");
    let (method, path, status, error) = &log[0];
    assert_eq!((method.as_str(), status), ("POST", &None), "{log:?}");
    assert!(path.contains("/sessionMngr/"), "{path}");
    let error = error.as_deref().expect("the failure is recorded");
    assert!(error.contains(fingerprint), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_certificate_is_described_with_how_to_trust_it() {
    let emu = tls_emulator().await;
    let fingerprint = emu
        .cert_fingerprint()
        .expect("a TLS emulator has a certificate");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let out = apply(&emu, &db, &plan(dir.path(), 1), &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{}", support::text(&out));
    for part in [
        "the server's certificate is self-signed, and not trusted here",
        "subject: CN=embatch local EM",
        "issuer: CN=embatch local EM (self-signed)",
        "issued for: 127.0.0.1, localhost",
        // rcgen's default validity, which the emulator keeps.
        "valid: from 1975-01-01T00:00:00Z to 4096-01-01T00:00:00Z",
        &format!("SHA-256 fingerprint: {fingerprint}"),
        "--ca-cert FILE",
        "--ca-fingerprint SHA256",
        &format!("--ca-fingerprint {fingerprint}"),
    ] {
        assert!(stderr.contains(part), "{part}:\n{stderr}");
    }
    assert!(emu.requests().is_empty(), "nothing reached the server");
    assert_logon_recorded_as_failed(&db, &fingerprint);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_fingerprint_trusts_the_certificate_in_either_wire_and_is_recorded() {
    let emu = tls_emulator().await;
    let fingerprint = emu.cert_fingerprint().unwrap();
    let bare_lowercase = fingerprint.replace(':', "").to_lowercase();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let mut run = 0;
    for wire in ["xml", "json"] {
        for pin in [fingerprint.as_str(), bare_lowercase.as_str()] {
            run += 1;
            let plan = plan(dir.path(), run);
            let out = apply(&emu, &db, &plan, &["--wire", wire, "--ca-fingerprint", pin]).await;
            assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
            let conn = rusqlite::Connection::open(&db).unwrap();
            let (recorded, applied, recorded_wire): (Option<String>, i64, String) = conn
                .query_row(
                    "SELECT json_extract(options, '$.ca_fingerprint'), applied, wire \
                     FROM run_summary WHERE run_id = ?1",
                    [run as i64],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .unwrap();
            // Recorded as openssl prints it, however it was given.
            assert_eq!(recorded.as_deref(), Some(fingerprint.as_str()));
            assert_eq!((applied, recorded_wire.as_str()), (1, wire));
        }
    }
    assert_eq!(emu.journal().len(), 4, "each run assigned its role");

    // A follow-up run takes the flag too; the server comes from the run it replays.
    let mut cmd = support::cli(&emu, &db);
    cmd.env_remove("EMBATCH_URL")
        .env("EMBATCH_PASSWORD", PASSWORD)
        .args(["replay", "1", "--ca-fingerprint", &bare_lowercase])
        .args(FAST);
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (kind, recorded, noop): (String, Option<String>, i64) = conn
        .query_row(
            "SELECT kind, json_extract(options, '$.ca_fingerprint'), noop FROM run_summary \
             WHERE run_id = 5",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (kind.as_str(), recorded.as_deref(), noop),
        ("replay", Some(fingerprint.as_str()), 1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_pin_sends_nothing_and_shows_both_fingerprints() {
    let emu = tls_emulator().await;
    let presented = emu.cert_fingerprint().unwrap();
    let wrong = "AB:".repeat(31) + "AB";
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let out = apply(
        &emu,
        &db,
        &plan(dir.path(), 1),
        &["--ca-fingerprint", &wrong],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{}", support::text(&out));
    assert!(
        stderr.contains(&format!(
            "not the one --ca-fingerprint pins: expected SHA-256 {wrong}, presented {presented}"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("replaced on purpose"), "{stderr}");
    assert!(emu.requests().is_empty(), "nothing reached the server");
    assert_logon_recorded_as_failed(&db, &presented);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let status: String = conn
        .query_row("SELECT status FROM run_summary WHERE run_id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(status, "aborted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pin_that_cannot_hold_is_a_usage_error_and_sends_nothing() {
    let tls = tls_emulator().await;
    let plain = support::emulator(EmulatorConfig {
        accounts: 2,
        admin_password: PASSWORD.into(),
        ..EmulatorConfig::default()
    })
    .await;
    let fingerprint = tls.cert_fingerprint().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let plan = plan(dir.path(), 1);
    let pem = dir.path().join("ca.pem");
    std::fs::write(&pem, tls.cert_pem().unwrap()).unwrap();
    let cases: [(&RunningEmulator, Vec<&str>, &str); 3] = [
        (
            &tls,
            vec!["--insecure"],
            "--ca-fingerprint and --insecure contradict",
        ),
        (
            &tls,
            vec!["--ca-cert", pem.to_str().unwrap()],
            "--ca-fingerprint and --ca-cert contradict",
        ),
        (&plain, vec![], "is plain http, which has none"),
    ];
    for (emu, extra, said) in &cases {
        let mut args = vec!["--ca-fingerprint", fingerprint.as_str()];
        args.extend(extra.iter().copied());
        let out = apply(emu, &db, &plan, &args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{extra:?}: {}",
            support::text(&out)
        );
        assert!(stderr.contains(said), "{extra:?}: {stderr}");
    }
    for (pin, said) in [
        ("AB:CD", "64"),
        (&*"xy".repeat(32), "'x' is not a hex digit"),
    ] {
        let out = apply(&tls, &db, &plan, &["--ca-fingerprint", pin]).await;
        assert_eq!(out.status.code(), Some(2), "{}", support::text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(said),
            "{}",
            support::text(&out)
        );
    }
    assert!(tls.requests().is_empty() && plain.requests().is_empty());
    assert!(!db.exists(), "no run was recorded");
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_on_this_machine_is_not_warned_about() {
    let emu = support::emulator(EmulatorConfig {
        accounts: 4,
        ..EmulatorConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let by_name = emu.base_url().replace("127.0.0.1", "localhost");
    for (i, url) in [emu.base_url(), by_name].into_iter().enumerate() {
        let mut cmd = support::cli(&emu, &db);
        cmd.env("EMBATCH_URL", &url)
            .arg("apply")
            .arg(plan(dir.path(), i + 1))
            .args(FAST);
        let out = support::output(cmd).await;
        assert_eq!(out.status.code(), Some(0), "{url}: {}", support::text(&out));
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("warning"),
            "{url}: {}",
            support::text(&out)
        );
    }
}

/// Kills the child it holds when dropped, so a failed test leaves no emulator running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_emulator_banner_shows_its_fingerprint_and_a_command_that_trusts_it() {
    let child = Command::new(assert_cmd::cargo::cargo_bin("embatch"))
        .args([
            "emulator",
            "--tls",
            "--listen",
            "127.0.0.1:0",
            "--accounts",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    // Read the banner on a thread, so a banner that never comes fails the test instead of
    // hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut banner = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        let done = line.contains("--ca-cert");
        banner.push(line);
        if done {
            break;
        }
    }
    let text = banner.join("\n");
    let command = banner
        .iter()
        .find(|l| l.contains("--ca-fingerprint"))
        .unwrap_or_else(|| panic!("the banner shows a command with --ca-fingerprint:\n{text}"));
    let fingerprint = command.split_whitespace().last().unwrap();
    assert_eq!(fingerprint.len(), 95, "{command}");
    assert!(
        text.contains(&format!("SHA-256 fingerprint is {fingerprint}")),
        "{text}"
    );

    // The command as the banner shows it, run by a shell, with the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let bin = assert_cmd::cargo::cargo_bin("embatch");
    let line = command
        .trim()
        .replacen(" embatch ", &format!(" '{}' ", bin.display()), 1);
    let out = support::output({
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(&line).current_dir(dir.path());
        for var in [
            "EMBATCH_URL",
            "EMBATCH_USER",
            "EMBATCH_PASSWORD",
            "EMBATCH_DB",
        ] {
            sh.env_remove(var);
        }
        sh
    })
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{line}\n{}",
        support::text(&out)
    );
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.contains("TECH\\user00003"), "{csv}");
}
