//! The emulator as a user or a raw HTTP client sees it: every fault-injection flag shows its
//! effect, and the `emulator` subcommand starts with a banner whose logon works.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use embatch::emulator::{Effect, EmulatorConfig, Faults, RunningEmulator};

use crate::support;

/// A raw HTTP client, as curl would be: no retries, no re-logon.
fn http() -> reqwest::Client {
    // reqwest is built without a default TLS provider; even a plain-HTTP client needs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Logs on as the admin and returns the session token.
async fn logon(emu: &RunningEmulator) -> String {
    let d = EmulatorConfig::default();
    let res = http()
        .post(format!("{}/sessionMngr/?v=latest", emu.base_url()))
        .basic_auth(&d.admin_user, Some(&d.admin_password))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    res.headers()["x-restsvcsessionid"]
        .to_str()
        .unwrap()
        .to_string()
}

/// The first generated account's id and a role it does not hold.
fn target(emu: &RunningEmulator) -> (uuid::Uuid, uuid::Uuid) {
    let state = emu.state();
    let acc = state
        .accounts
        .iter()
        .find(|a| {
            a.name.starts_with("TECH\\user")
                && !a.roles.iter().any(|r| r.name == "SQL Restore Operator")
        })
        .unwrap();
    (
        acc.id,
        uuid::Uuid::parse_str("f78a92b8-9f06-4f1e-b522-4f0927cabd0f").unwrap(),
    )
}

async fn assign(
    emu: &RunningEmulator,
    token: &str,
    account: uuid::Uuid,
    role: uuid::Uuid,
) -> reqwest::Result<reqwest::Response> {
    http()
        .post(format!(
            "{}/security/accounts/{account}/roles",
            emu.base_url()
        ))
        .header("X-RestSvcSessionId", token)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .body(format!(
            r#"{{"EnterpriseRoleUid":"urn:veeam:EnterpriseRole:{role}"}}"#
        ))
        .send()
        .await
}

async fn get_status(emu: &RunningEmulator, token: &str) -> reqwest::Result<reqwest::Response> {
    http()
        .get(format!("{}/security/roles", emu.base_url()))
        .header("X-RestSvcSessionId", token)
        .send()
        .await
}

async fn with_faults(faults: Faults) -> (RunningEmulator, String) {
    let emu = support::emulator(EmulatorConfig {
        accounts: 5,
        ..EmulatorConfig::default()
    })
    .await;
    let token = logon(&emu).await;
    emu.set_faults(faults);
    (emu, token)
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let (emu, token) = with_faults(Faults {
        latency_ms: 150,
        ..Faults::default()
    })
    .await;
    let t0 = Instant::now();
    get_status(&emu, &token).await.unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn jitter_varies_the_delay() {
    let (emu, token) = with_faults(Faults {
        jitter_ms: 200,
        seed: Some(3),
        ..Faults::default()
    })
    .await;
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let t0 = Instant::now();
        get_status(&emu, &token).await.unwrap();
        slowest = slowest.max(t0.elapsed());
    }
    // Ten draws from [0, 200] ms all under 20 ms would mean the jitter is not applied.
    assert!(slowest >= Duration::from_millis(20), "slowest {slowest:?}");
}

#[tokio::test]
async fn error_500_answers_without_acting() {
    let (emu, token) = with_faults(Faults {
        error_500: 1.0,
        ..Faults::default()
    })
    .await;
    let (account, role) = target(&emu);
    let res = assign(&emu, &token, account, role).await.unwrap();
    assert_eq!(res.status().as_u16(), 500);
    assert!(emu.journal().is_empty());
}

#[tokio::test]
async fn error_503_and_429_carry_retry_after() {
    for (faults, status) in [
        (
            Faults {
                error_503: 1.0,
                retry_after_secs: 3,
                ..Faults::default()
            },
            503,
        ),
        (
            Faults {
                error_429: 1.0,
                retry_after_secs: 3,
                ..Faults::default()
            },
            429,
        ),
    ] {
        let (emu, token) = with_faults(faults).await;
        let (account, role) = target(&emu);
        let res = assign(&emu, &token, account, role).await.unwrap();
        assert_eq!(res.status().as_u16(), status);
        assert_eq!(res.headers()["retry-after"].to_str().unwrap(), "3");
        assert!(emu.journal().is_empty());
    }
}

#[tokio::test]
async fn max_rps_caps_the_answers_per_second() {
    let (emu, token) = with_faults(Faults {
        max_rps: Some(5),
        ..Faults::default()
    })
    .await;
    let mut ok = 0;
    let mut refused = 0;
    let t0 = Instant::now();
    for _ in 0..20 {
        let res = get_status(&emu, &token).await.unwrap();
        match res.status().as_u16() {
            200 => ok += 1,
            503 => {
                assert!(res.headers().contains_key("retry-after"));
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    // Twenty back-to-back requests: only the cap's worth per elapsed second get through.
    let seconds = t0.elapsed().as_secs_f64().ceil().max(1.0) as usize;
    assert!(ok <= 5 * (seconds + 1), "{ok} answered in {seconds} s");
    assert!(refused > 0);
}

#[tokio::test]
async fn drop_before_loses_the_request() {
    let (emu, token) = with_faults(Faults {
        drop_before: 1.0,
        ..Faults::default()
    })
    .await;
    let (account, role) = target(&emu);
    assert!(assign(&emu, &token, account, role).await.is_err());
    assert!(emu.journal().is_empty(), "nothing was applied");
    assert!(
        emu.requests()
            .iter()
            .any(|r| r.dropped && r.status.is_none())
    );
}

#[tokio::test]
async fn drop_after_loses_only_the_answer() {
    let (emu, token) = with_faults(Faults {
        drop_after: 1.0,
        ..Faults::default()
    })
    .await;
    let (account, role) = target(&emu);
    assert!(assign(&emu, &token, account, role).await.is_err());
    let journal = emu.journal();
    assert_eq!(journal.len(), 1, "the change was applied once");
    assert!(matches!(journal[0].effect, Effect::RoleAssigned { role_id } if role_id == role));
}

#[tokio::test]
async fn expire_after_kills_the_session_after_n_requests() {
    let (emu, token) = with_faults(Faults {
        expire_after: Some(3),
        ..Faults::default()
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get_status(&emu, &token).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 401, 401]);
}

#[tokio::test]
async fn a_fault_seed_makes_the_dice_repeatable() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (emu, token) = with_faults(Faults {
            error_500: 0.5,
            seed: Some(42),
            ..Faults::default()
        })
        .await;
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(get_status(&emu, &token).await.unwrap().status().as_u16());
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].contains(&500) && runs[0].contains(&200));
}

/// Kills the child process when the test ends, pass or fail.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_emulator_command_prints_a_logon_that_works() {
    let child = Command::new(assert_cmd::cargo::cargo_bin("embatch"))
        .args(["emulator", "--listen", "127.0.0.1:0", "--accounts", "100"])
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
        let done = line.contains("/security/accounts");
        banner.push(line);
        if done {
            break;
        }
    }
    let text = banner.join("\n");
    let url = text
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:") && w.trim_end_matches('/').ends_with("/api"))
        .unwrap_or_else(|| panic!("the banner names the URL:\n{text}"))
        .trim_end_matches('/')
        .to_string();
    let d = EmulatorConfig::default();
    assert!(
        text.contains(&d.admin_user) && text.contains(&d.admin_password),
        "{text}"
    );

    // The same two steps the README shows with curl.
    let res = http()
        .post(format!("{url}/sessionMngr/?v=latest"))
        .basic_auth(&d.admin_user, Some(&d.admin_password))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let token = res.headers()["x-restsvcsessionid"]
        .to_str()
        .unwrap()
        .to_string();
    let body = http()
        .get(format!("{url}/security/accounts"))
        .header("X-RestSvcSessionId", &token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        body.matches("<Ref ").count(),
        101,
        "100 generated accounts and the admins group"
    );
}
