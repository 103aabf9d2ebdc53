//! One run at a time per server in a log: a second run that would change the same server is
//! refused (exit 2, naming the first) or waits with `--wait`; a run whose process died holds
//! nothing; `runs` shows the holder. And every command that may change EM says what it may
//! change and takes `--yes`.

use std::io::BufRead as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use embatch::emulator::EmulatorConfig;

use crate::hostile::{Act, Hostile, error};
use crate::support::{self, FAST, cli, has, output, output_of, pick, text};

async fn emulator() -> embatch::emulator::RunningEmulator {
    support::emulator(EmulatorConfig {
        accounts: 20,
        ..EmulatorConfig::default()
    })
    .await
}

fn runs_in(db: &std::path::Path) -> Vec<(i64, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, status FROM runs ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Waits until the log holds a `running` run and the proxy has seen its logon.
async fn until_running(db: &std::path::Path, proxy: &Hostile) {
    for _ in 0..2000 {
        let recorded = db.exists()
            && std::panic::catch_unwind(|| runs_in(db))
                .is_ok_and(|runs| runs.iter().any(|(_, s)| s == "running"));
        if recorded && proxy.seen().iter().any(|s| s.is_logon()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the first run never started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_server_is_refused_or_waits_until_the_first_is_gone() {
    let emu = emulator().await;
    // While `hold` is set, every logon is held without an answer: the first run stays live,
    // holding the lock, for as long as the test needs.
    let hold = Arc::new(AtomicBool::new(true));
    let held = hold.clone();
    let proxy = Hostile::start(&emu, move |seen| {
        if held.load(Ordering::SeqCst) && seen.is_logon() {
            Act::AnswerWhen(
                error(503, &[], "held"),
                Box::pin(std::future::pending::<()>()),
            )
        } else {
            Act::Forward
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let state = emu.state();
    let mut taken = Vec::new();
    let a = pick(&state, &mut taken, |a| !has(a, "VM Restore Operator"));
    let b = pick(&state, &mut taken, |a| !has(a, "SQL Restore Operator"));
    let first_plan = dir.path().join("first.csv");
    std::fs::write(
        &first_plan,
        format!(
            "account,action,target\n{},assign-role,VM Restore Operator\n",
            a.name
        ),
    )
    .unwrap();
    let second_plan = dir.path().join("second.csv");
    std::fs::write(
        &second_plan,
        format!(
            "account,action,target\n{},assign-role,SQL Restore Operator\n",
            b.name
        ),
    )
    .unwrap();
    let run = |plan: &std::path::Path, extra: &[&str]| {
        let mut cmd = cli(&emu, &db);
        cmd.env("EMBATCH_URL", proxy.base_url())
            .arg("apply")
            .arg(plan)
            .args(FAST)
            .args(["--timeout", "600"])
            .args(extra);
        cmd
    };

    let mut first = run(&first_plan, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    until_running(&db, &proxy).await;
    let seen = proxy.seen().len();

    // Refused: exit 2, the holder named, nothing recorded and nothing sent.
    let out = output(run(&second_plan, &[])).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let pid = first.id().to_string();
    for part in [
        "run 1 (apply)",
        EmulatorConfig::default().admin_user.as_str(),
        &format!("pid {pid}"),
        "running since",
        "--wait",
    ] {
        assert!(stderr.contains(part), "{part}: {stderr}");
    }
    assert_eq!(runs_in(&db).len(), 1, "the refused run left no record");
    assert_eq!(proxy.seen().len(), seen, "the refused run sent nothing");

    // `runs` shows who holds the lock, and reading never waits for it.
    let out = output({
        let mut cmd = cli(&emu, &db);
        cmd.arg("runs");
        cmd
    })
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("lock: run 1 (apply)") && listing.contains(&pid),
        "{listing}"
    );

    // With --wait, the second run waits; once the first process is gone (killed: its run is
    // crashed, which holds nothing), it goes ahead.
    let mut second = run(&second_plan, &["--wait"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = second.stderr.take().unwrap();
    let (waiting_tx, waiting_rx) = tokio::sync::oneshot::channel();
    let reader = std::thread::spawn(move || {
        let mut waiting_tx = Some(waiting_tx);
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.contains("waiting for run 1")
                && let Some(tx) = waiting_tx.take()
            {
                let _ = tx.send(());
            }
            lines.push(line);
        }
        lines.join("\n")
    });
    waiting_rx.await.expect("the second run says it waits");
    assert_eq!(proxy.seen().len(), seen, "a waiting run sends nothing");
    hold.store(false, Ordering::SeqCst);
    first.kill().unwrap();
    first.wait().unwrap();
    let out = output_of(second).await;
    let stderr = reader.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}\n{stderr}", text(&out));
    assert!(
        support::has(
            emu.state().accounts.iter().find(|x| x.id == b.id).unwrap(),
            "SQL Restore Operator"
        ),
        "the waiting run applied its plan"
    );
    let runs = runs_in(&db);
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[1].1, "completed");
}

/// An emulator and a log in which run 1 assigned one role, for the commands that follow it.
async fn one_run_applied() -> (embatch::emulator::RunningEmulator, tempfile::TempDir) {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let state = emu.state();
    let a = pick(&state, &mut Vec::new(), |a| !has(a, "VM Restore Operator"));
    let plan = dir.path().join("plan.csv");
    std::fs::write(
        &plan,
        format!(
            "account,action,target\n{},assign-role,VM Restore Operator\n",
            a.name
        ),
    )
    .unwrap();
    let mut cmd = cli(&emu, &db);
    cmd.arg("apply").arg(&plan).args(FAST).arg("--yes");
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    (emu, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_that_changes_em_takes_yes_and_says_what_may_change() {
    let (emu, dir) = one_run_applied().await;
    let db = dir.path().join("audit.db");
    for (args, summary) in [
        (vec!["replay", "1", "--yes"], "1 rows may change something"),
        (vec!["undo", "1", "-y"], "1 rows may change something"),
        (vec!["rebuild-scopes", "--yes"], "starts one scope rebuild"),
    ] {
        let mut cmd = cli(&emu, &db);
        cmd.args(&args).args(FAST);
        let out = output(cmd).await;
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{args:?}: {}",
            text(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(summary), "{args:?}: {stderr}");
    }
    let mut cmd = cli(&emu, &db);
    cmd.args(["resume", "1", "--yes"]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// `script` runs a command on a pseudo-terminal, as a person at a terminal would.
fn script() -> Option<std::path::PathBuf> {
    ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_undo_asks_first_and_a_no_sends_nothing() {
    let Some(script) = script() else {
        eprintln!("skipped: no `script` to run the command on a terminal");
        return;
    };
    let (emu, dir) = one_run_applied().await;
    let db = dir.path().join("audit.db");
    let requests = emu.requests().len();

    let bin = assert_cmd::cargo::cargo_bin("embatch");
    for command in ["undo 1", "replay 1", "resume 1", "rebuild-scopes"] {
        // The environment `cli` sets, on `script`, which passes it on to the command.
        let env = cli(&emu, &db);
        let mut real = std::process::Command::new(&script);
        real.args(["-qec", &format!("{} {command}", bin.display()), "/dev/null"]);
        for (k, v) in env.get_envs() {
            match v {
                Some(v) => real.env(k, v),
                None => real.env_remove(k),
            };
        }
        real.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = real.spawn().unwrap();
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(b"n\n").unwrap();
        let out = output_of(child).await;
        let shown = String::from_utf8_lossy(&out.stdout);
        if command == "resume 1" {
            // A completed run has nothing to resume, and so nothing to ask.
            assert!(shown.contains("nothing to resume"), "{command}: {shown}");
            continue;
        }
        assert!(shown.contains("[y/N]"), "{command}: {shown}");
        assert!(
            shown.contains("not confirmed; nothing was sent"),
            "{command}: {shown}"
        );
        assert_eq!(out.status.code(), Some(2), "{command}: {shown}");
    }
    assert_eq!(emu.requests().len(), requests, "a no sends nothing");
}
