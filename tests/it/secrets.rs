//! Secrets and permissions: after runs under injected faults (expired sessions and their
//! re-logons, retries, lost answers, a run killed mid-way and resumed) and a run over TLS with
//! `--insecure`, neither the password nor any session token the servers handed out is in
//! anything embatch wrote: the audit log and its WAL, the log output at trace level, or a report.
//! The audit log and the reports are private (mode 0600), and the insecure run says so in
//! `run_summary` and in its report. A server that echoes the credentials and the token it was
//! sent, in every form, gets them redacted from stderr and from every text of the audit log.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use embatch::emulator::{EmulatorConfig, Faults, RunningEmulator};

use crate::hostile::{self, Act, Hostile};
use crate::support::{self, FAST};

/// A password no other text contains, so a hit is a leak and not a coincidence.
const PASSWORD: &str = "Pw-5f1c2a9e-never-write-me";

/// Something embatch wrote, to be searched.
struct Written {
    /// What it is, for the failure message.
    what: String,
    /// Its bytes.
    bytes: Vec<u8>,
}

fn emulator_config(tls: bool, faults: Faults) -> EmulatorConfig {
    EmulatorConfig {
        accounts: 120,
        tls,
        faults,
        admin_password: PASSWORD.into(),
        ..EmulatorConfig::default()
    }
}

/// The binary with the test's password, at the most verbose logging.
fn embatch(emu: &RunningEmulator, db: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = support::cli(emu, db);
    cmd.env("EMBATCH_PASSWORD", PASSWORD)
        .env("EMBATCH_LOG", "trace")
        .arg("-vvv")
        .args(args);
    cmd
}

/// A plan over the generated accounts `from..to`: a role, the flag, a scope of its own.
fn plan(dir: &Path, name: &str, from: usize, to: usize) -> PathBuf {
    let mut csv = String::from("account,action,target,object_name,ticket\n");
    for i in from..to {
        csv.push_str(&format!(
            "TECH\\user{i:05},assign-role,Exchange Restore Operator,,SEC-1\n\
             TECH\\user{i:05},restore-all-vms,{},,SEC-1\n\
             TECH\\user{i:05},add-scope,urn:VMware:Folder:11111111-2222-3333-4444-555555555555.group-v{i},Sec-{i},SEC-1\n",
            if i % 2 == 0 { "on" } else { "off" }
        ));
    }
    let path = dir.join(name);
    std::fs::write(&path, csv).unwrap();
    path
}

/// Both streams of a finished command, as things written.
fn outputs(what: &str, out: &Output) -> Vec<Written> {
    vec![
        Written {
            what: format!("{what} stdout"),
            bytes: out.stdout.clone(),
        },
        Written {
            what: format!("{what} stderr"),
            bytes: out.stderr.clone(),
        },
    ]
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<Written> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(Written {
                what: path.display().to_string(),
                bytes: std::fs::read(&path).unwrap(),
            });
        }
    }
    found
}

/// Every text value in every table of the audit log, read through SQLite: a long value spans
/// pages of the file, where a search of its bytes could miss it.
fn texts_in_db(db: &Path) -> Vec<Written> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let mut found = Vec::new();
    for table in tables {
        let columns: Vec<String> = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        for column in columns {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT \"{column}\" FROM \"{table}\" WHERE typeof(\"{column}\") = 'text'"
                ))
                .unwrap();
            for value in stmt.query_map([], |r| r.get::<_, String>(0)).unwrap() {
                found.push(Written {
                    what: format!("{table}.{column} in the audit log"),
                    bytes: value.unwrap().into_bytes(),
                });
            }
        }
    }
    found
}

/// The secrets to look for, by name: the password, the Basic credentials and the password
/// alone in base64 of either alphabet, padded or not, and each session token (unpadded too, in
/// case something trims it).
fn needles(tokens: &[String]) -> Vec<(String, String)> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let mut needles = vec![("the password".to_string(), PASSWORD.to_string())];
    for (alphabet, engine) in [
        ("standard", STANDARD),
        ("standard unpadded", STANDARD_NO_PAD),
        ("url-safe", URL_SAFE),
        ("url-safe unpadded", URL_SAFE_NO_PAD),
    ] {
        needles.push((
            format!("the Basic credentials ({alphabet})"),
            engine.encode(format!("admin:{PASSWORD}")),
        ));
        needles.push((
            format!("the password in base64 ({alphabet})"),
            engine.encode(PASSWORD),
        ));
    }
    for (i, token) in tokens.iter().enumerate() {
        needles.push((format!("session token {i}"), token.clone()));
        needles.push((
            format!("session token {i} unpadded"),
            token.trim_end_matches('=').to_string(),
        ));
    }
    needles
}

/// Fails the test with every needle found in anything written.
fn assert_no_leak(written: &[Written], needles: &[(String, String)]) {
    let mut leaks = Vec::new();
    for w in written {
        // The needles are ASCII, which a lossy conversion keeps as it is.
        let text = String::from_utf8_lossy(&w.bytes);
        for (name, needle) in needles {
            if text.contains(needle.as_str()) {
                leaks.push(format!("{name} in {}", w.what));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets written down:\n{}",
        leaks.join("\n")
    );
}

fn attempts(db: &Path, run: i64) -> i64 {
    // Read-only, and closed before the writer is killed: this connection must never be the
    // last one on the file, whose closing would fold the WAL into the file and delete it.
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row(
        "SELECT count(*) FROM request_log WHERE run_id = ?1",
        [run],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn ok_or_rows_failed(what: &str, out: &Output) {
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{what}: {}",
        support::text(out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_or_session_token_is_written_anywhere() {
    let faults = Faults {
        error_500: 0.08,
        error_503: 0.05,
        error_429: 0.05,
        retry_after_secs: 0,
        drop_before: 0.02,
        drop_after: 0.02,
        // A session lives for a few requests only: many logons, many tokens.
        expire_after: Some(6),
        seed: Some(1123),
        ..Faults::default()
    };
    let emu = support::emulator(emulator_config(false, faults.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let mut written = Vec::new();

    // Run 1: every fault at once, XML.
    let first = plan(dir.path(), "first.csv", 1, 21);
    let mut cmd = embatch(&emu, &db, &["apply", first.to_str().unwrap()]);
    cmd.args(FAST).args(["--max-attempts", "12"]);
    let out = support::output(cmd).await;
    ok_or_rows_failed("apply", &out);
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        log.contains("TRACE"),
        "the log output is at trace level: {log}"
    );
    written.extend(outputs("apply (run 1)", &out));

    // Run 2: JSON, slowed down and killed mid-way, so its WAL is left as a crash leaves it;
    // then resumed.
    emu.set_faults(Faults {
        latency_ms: 40,
        ..faults.clone()
    });
    let second = plan(dir.path(), "second.csv", 30, 70);
    let stderr_path = dir.path().join("killed.stderr");
    let mut cmd = embatch(
        &emu,
        &db,
        &["apply", second.to_str().unwrap(), "--wire", "json"],
    );
    cmd.args(FAST)
        .args(["--max-attempts", "12"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    while attempts(&db, 2) < 20 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "run 2 ended before it was killed"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "run 2 stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let wal = dir.path().join("audit.db-wal");
    let wal_bytes = std::fs::read(&wal).expect("a killed writer leaves its WAL");
    assert!(!wal_bytes.is_empty());
    #[cfg(unix)]
    assert_eq!(mode(&wal), 0o600, "the WAL is as private as the log");
    written.push(Written {
        what: "the WAL of the killed run".into(),
        bytes: wal_bytes,
    });
    written.push(Written {
        what: "the killed run's stderr".into(),
        bytes: std::fs::read(&stderr_path).unwrap(),
    });
    std::fs::remove_file(&stderr_path).unwrap();

    emu.set_faults(faults.clone());
    let mut cmd = embatch(&emu, &db, &["resume", "2"]);
    cmd.args(FAST).args(["--max-attempts", "12"]);
    let out = support::output(cmd).await;
    ok_or_rows_failed("resume", &out);
    written.extend(outputs("resume (run 2)", &out));

    // Run 3: over TLS without checking the certificate.
    let tls = support::emulator(emulator_config(true, Faults::default())).await;
    let third = plan(dir.path(), "third.csv", 80, 90);
    let mut cmd = embatch(&tls, &db, &["apply", third.to_str().unwrap(), "--insecure"]);
    cmd.args(FAST);
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--insecure"),
        "the user is warned: {}",
        support::text(&out)
    );
    written.extend(outputs("apply --insecure (run 3)", &out));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (insecure, tls_verify, url): (i64, i64, String) = conn
        .query_row(
            "SELECT insecure, tls_verify, server_url FROM run_summary WHERE run_id = 3",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((insecure, tls_verify), (1, 0));
    assert!(url.starts_with("https://"), "{url}");
    let secure: (i64, i64) = conn
        .query_row(
            "SELECT insecure, tls_verify FROM run_summary WHERE run_id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(secure, (0, 1));
    drop(conn);

    // A report of each run.
    let reports = dir.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    for run in ["1", "2", "3"] {
        let file = reports.join(format!("{run}.html"));
        let cmd = embatch(&emu, &db, &["report", run, "-o", file.to_str().unwrap()]);
        let out = support::output(cmd).await;
        assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
        written.extend(outputs(&format!("report {run}"), &out));
        #[cfg(unix)]
        assert_eq!(mode(&file), 0o600, "report {run}");
    }
    let insecure_report = std::fs::read_to_string(reports.join("3.html")).unwrap();
    assert!(insecure_report.contains("id=\"insecure\""));
    assert!(insecure_report.contains("TLS certificate verification was OFF for this run"));
    let secure_report = std::fs::read_to_string(reports.join("1.html")).unwrap();
    assert!(!secure_report.contains("id=\"insecure\""));

    // Every export format of the whole log, and an access snapshot.
    for format in ["csv", "jsonl", "json"] {
        let file = reports.join(format!("export.{format}"));
        let cmd = embatch(
            &emu,
            &db,
            &["export", "--format", format, "-o", file.to_str().unwrap()],
        );
        let out = support::output(cmd).await;
        assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
        written.extend(outputs(&format!("export {format}"), &out));
        #[cfg(unix)]
        assert_eq!(mode(&file), 0o600, "export {format}");
    }
    let file = reports.join("snapshot.csv");
    let cmd = embatch(
        &emu,
        &db,
        &[
            "snapshot",
            "--all",
            "--format",
            "csv",
            "-o",
            file.to_str().unwrap(),
        ],
    );
    let out = support::output(cmd).await;
    // The emulator still injects faults, so a read may fail for good (exit 1); what matters
    // here is what the snapshot wrote, not whether every account was read.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        support::text(&out)
    );
    written.extend(outputs("snapshot", &out));

    #[cfg(unix)]
    assert_eq!(mode(&db), 0o600, "the audit log is private");

    // Everything on disk: the log (and its WAL and shared-memory files, if any are left),
    // the reports, the plans; and every text in the log.
    written.extend(files(dir.path()));
    written.extend(texts_in_db(&db));

    let mut tokens = emu.sessions_tokens();
    tokens.extend(tls.sessions_tokens());
    assert!(
        tokens.len() > 5,
        "expired sessions made re-logons: {} tokens",
        tokens.len()
    );
    assert_no_leak(&written, &needles(&tokens));
    assert!(written.len() >= 15, "searched {} things", written.len());
}

/// What a careless server's 401 says: the headers it was sent, as they came and in other
/// forms a log line or a library might give them.
fn echo(seen: &hostile::Seen) -> String {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let authorization = seen.authorization.clone().unwrap_or_default();
    let decoded = STANDARD
        .decode(authorization.trim_start_matches("Basic "))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    format!(
        "refused: Authorization: {authorization}; as text: {decoded}; url-safe: {}; the \
         password alone: {}; X-RestSvcSessionId: {}",
        URL_SAFE_NO_PAD.encode(&decoded),
        STANDARD.encode(decoded.split_once(':').map_or("", |(_, p)| p)),
        seen.token.clone().unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_a_server_echoes_are_redacted_everywhere() {
    let emu = support::emulator(emulator_config(false, Faults::default())).await;
    // The first logon goes through; then a read is refused as if its session had expired,
    // quoting the token, and every logon after that is refused, quoting the credentials.
    let logons = std::sync::atomic::AtomicU64::new(0);
    let refused_read = std::sync::atomic::AtomicBool::new(false);
    let proxy = Hostile::start(&emu, move |seen| {
        use std::sync::atomic::Ordering::SeqCst;
        if seen.is_logon() {
            if logons.fetch_add(1, SeqCst) == 0 {
                return Act::Forward;
            }
            return Act::Answer(hostile::json_error(401, &echo(seen)));
        }
        if seen.path.contains("/security/accounts/") && !refused_read.swap(true, SeqCst) {
            return Act::Answer(hostile::error(401, &[], &echo(seen)));
        }
        Act::Forward
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let plan = plan(dir.path(), "plan.csv", 1, 4);
    let mut written = Vec::new();

    let mut cmd = embatch(&emu, &db, &["apply", plan.to_str().unwrap()]);
    cmd.env("EMBATCH_URL", proxy.base_url()).args(FAST);
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(1), "{}", support::text(&out));
    written.extend(outputs("apply", &out));
    // The re-logon's refusal is the failed rows' error, redacted.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let error: String = conn
        .query_row(
            "SELECT error FROM change_log WHERE error LIKE '%sessionMngr%' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        error.contains("refused: Authorization: Basic ***; as text: admin:***"),
        "{error}"
    );
    drop(conn);

    // A first logon refused the same way ends `check --online` with its error on stderr.
    let mut cmd = embatch(&emu, &db, &["check", "--online", plan.to_str().unwrap()]);
    cmd.env("EMBATCH_URL", proxy.base_url());
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(3), "{}", support::text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Authorization: Basic ***"),
        "{}",
        support::text(&out)
    );
    written.extend(outputs("check --online", &out));

    written.extend(files(dir.path()));
    written.extend(texts_in_db(&db));
    let tokens = emu.sessions_tokens();
    assert!(!tokens.is_empty());
    assert_no_leak(&written, &needles(&tokens));
}
