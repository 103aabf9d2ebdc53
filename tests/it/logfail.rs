//! The audit log failing under a run, and logs that may not be written at all: a full disk,
//! the file deleted while a run writes it, a read-only copy. No request leaves without its
//! committed record, a run stops at the first failed write (exit 2), `resume` finishes it once
//! the log can be written again, and the commands that only read never write.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use embatch::emulator::{EmulatorConfig, RunningEmulator};

use crate::support;
use crate::workload::Workload;

/// `cmd` run through `program` with `args` before it (a wrapper that ends by running it), with
/// `cmd`'s environment.
fn wrapped(program: &str, args: &[&str], cmd: &Command) -> Command {
    let mut wrapped = Command::new(program);
    wrapped
        .args(args)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    wrapped
}

/// `cmd`, run by bash with the files it writes capped at `kib` KiB and SIGXFSZ ignored: a write
/// past the cap then fails (EFBIG) instead of killing the process, as a write to a full disk
/// fails with ENOSPC.
fn capped(cmd: &Command, kib: u64) -> Command {
    let script = r#"trap '' XFSZ; ulimit -f "$0"; exec "$@""#;
    wrapped("bash", &["-c", script, &kib.to_string()], cmd)
}

/// An emulator with `accounts` generated accounts, the workload over the first `planned` of
/// them written as a plan, and a folder for the audit log.
struct Setup {
    emu: RunningEmulator,
    work: Workload,
    dir: tempfile::TempDir,
    db: PathBuf,
    plan: PathBuf,
}

async fn setup(accounts: usize, planned: usize) -> Setup {
    let emu = support::emulator(EmulatorConfig {
        accounts,
        ..EmulatorConfig::default()
    })
    .await;
    let work = Workload::new(emu.state(), planned);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let plan = dir.path().join("plan.csv");
    std::fs::write(&plan, &work.csv).unwrap();
    Setup {
        emu,
        work,
        dir,
        db,
        plan,
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_run_before_any_unrecorded_request_and_resume_finishes_it() {
    // The folder goes with its binding: it is bound for the whole test.
    let Setup {
        emu,
        work,
        dir: _dir,
        db,
        plan,
    } = setup(220, 200).await;

    // The run and its 800 rows fit in 1 MiB, and so do the reads before the first write, which
    // take a few pages per group commit (more on a loaded machine, whose groups are smaller).
    // The requests' records do not fit, by far: every group commit adds pages to the WAL, and
    // nothing checkpoints it below 1,000 pages (2 MiB with the log's 2 KiB pages; a cap of
    // 2 MiB let the whole run through once the log became append-only). One request in flight
    // keeps the workers to eight: every worker reads its account before its first write, so
    // with 32 (concurrency 4) the reads alone could fill the cap before any change was made.
    let mut cmd = support::cli(&emu, &db);
    cmd.arg("apply")
        .arg(&plan)
        .args(["--rate", "300", "--concurrency", "1"]);
    let out = support::output(capped(&cmd, 1024)).await;
    assert_eq!(out.status.code(), Some(2), "{}", support::text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("audit log") && err.contains("embatch resume"),
        "{err}"
    );

    // It stopped part-way, and the server saw nothing the log does not hold.
    let made = emu.journal().len();
    let outcomes = support::outcomes(&db, 1);
    assert!(made > 0, "the log filled before any change: {err}");
    assert!(
        outcomes.iter().any(|o| o == "pending"),
        "the log never filled: {outcomes:?}"
    );
    support::assert_every_request_logged(&emu, &db, 1);

    // With room again, resume finishes the run: every change once, each recorded as made.
    let mut cmd = support::cli(&emu, &db);
    cmd.args(["resume", "1"]).args(support::FAST);
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
    assert_eq!(support::accesses(&emu.state()), work.desired());
    work.assert_exactly_once(&emu.journal());
    support::assert_every_request_logged(&emu, &db, 1);
    let applied = support::outcomes(&db, 1)
        .iter()
        .filter(|o| *o == "applied")
        .count();
    assert_eq!(
        applied,
        emu.journal().len(),
        "each change the server made is an applied row of run 1"
    );
    let mut cmd = support::cli(&emu, &db);
    cmd.arg("verify");
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
}

/// Attempts recorded in the log at `db` so far (none while it does not exist yet).
fn attempts(db: &Path) -> i64 {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let Ok(conn) = rusqlite::Connection::open_with_flags(db, flags) else {
        return 0;
    };
    conn.query_row("SELECT count(*) FROM request_log", [], |r| r.get(0))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_deleted_during_a_run_stops_it() {
    // The folder goes with its binding: it is bound for the whole test.
    let Setup {
        emu,
        work,
        dir: _dir,
        db,
        plan,
    } = setup(120, 100).await;

    // About 500 requests at 50 a second: ten seconds, which the deletion cuts short.
    let mut cmd = support::cli(&emu, &db);
    cmd.arg("apply")
        .arg(&plan)
        .args(["--rate", "50", "--burst", "1", "--concurrency", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let started = Instant::now();
    while attempts(&db) < 20 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run never got going"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
    let out = support::output_of(child).await;
    assert_eq!(out.status.code(), Some(2), "{}", support::text(&out));
    let err = stderr(&out);
    assert!(err.contains("removed or replaced"), "{err}");
    let made = emu.journal().len();
    let wanted = work.desired().len();
    assert!(
        made < wanted,
        "the run went on after its log was deleted: {made} changes"
    );
}

/// Runs `cmd` as a user who cannot write the files a test made: as root (who may write
/// anything) through `setpriv` as nobody, otherwise as it is.
fn as_reader(cmd: Command) -> Command {
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if !root {
        return cmd;
    }
    let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    wrapped("setpriv", &nobody, &cmd)
}

/// The names and contents of the files in `dir`.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_that_read_work_on_a_read_only_copy_and_change_nothing() {
    let Setup {
        emu, dir, db, plan, ..
    } = setup(10, 5).await;
    let mut cmd = support::cli(&emu, &db);
    cmd.arg("apply").arg(&plan).args(support::FAST);
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));

    // The auditor's copy: a file and a folder that the reader may not write.
    let share = dir.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let copy = share.join("audit.db");
    std::fs::copy(&db, &copy).unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&share, std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = snapshot(&share);

    let report = out_dir.join("report.html");
    let commands: [Vec<&str>; 6] = [
        vec!["runs"],
        vec!["show", "1"],
        vec!["verify"],
        vec!["export", "--format", "csv"],
        vec!["export", "--format", "json", "--run", "1"],
        vec!["report", "1", "-o", report.to_str().unwrap()],
    ];
    for args in commands {
        let mut cmd = support::cli(&emu, &copy);
        cmd.args(&args);
        let out = support::output(as_reader(cmd)).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            support::text(&out)
        );
        assert!(!out.stdout.is_empty() || args[0] == "report", "{args:?}");
    }
    assert!(report.exists());
    assert_eq!(
        snapshot(&share),
        before,
        "a reading command changed the copy"
    );

    // The same copy with write access for the group only, in a folder the reader may write:
    // SQLite makes its companion files, and the log itself stays as it was.
    std::fs::set_permissions(&share, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut cmd = support::cli(&emu, &copy);
    cmd.arg("verify");
    let out = support::output(as_reader(cmd)).await;
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
    assert_eq!(std::fs::read(&copy).unwrap(), before[0].1);
}
