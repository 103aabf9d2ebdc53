//! Signed checkpoints as operators use them: `keygen`, `--signing-key` on the commands that
//! record runs, and `verify --public-key`, with the binary against the in-process emulator; and
//! the key files refused before anything is sent.

use std::path::{Path, PathBuf};

use embatch::emulator::{EmulatorConfig, RunningEmulator};

use crate::support::{self, FAST, has};

/// What a command printed and how it ended.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    all: String,
}

async fn ran(cmd: std::process::Command) -> Ran {
    let out = support::output(cmd).await;
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        all: support::text(&out),
    }
}

/// Runs `embatch ARGS` against `emu` with the audit log `db` (fast, for a run).
async fn embatch(emu: &RunningEmulator, db: &Path, args: &[&str]) -> Ran {
    let mut cmd = support::cli(emu, db);
    cmd.args(args);
    if matches!(args[0], "apply" | "replay") {
        cmd.args(FAST);
    }
    ran(cmd).await
}

/// `embatch keygen FILE`.
async fn keygen(file: &Path) -> Ran {
    let mut cmd = support::bin();
    cmd.arg("keygen").arg(file);
    ran(cmd).await
}

async fn emulator() -> RunningEmulator {
    support::emulator(EmulatorConfig {
        accounts: 20,
        ..EmulatorConfig::default()
    })
    .await
}

/// A plan of three rows: a role for each of three generated accounts that lack it.
fn plan(emu: &RunningEmulator, dir: &Path) -> PathBuf {
    let state = emu.state();
    let mut csv = String::from("account,action,target\n");
    for a in state
        .accounts
        .iter()
        .filter(|a| a.name.starts_with("TECH\\user") && !has(a, "VM Restore Operator"))
        .take(3)
    {
        csv.push_str(&format!("{},assign-role,VM Restore Operator\n", a.name));
    }
    let path = dir.join("plan.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The public key and signature of every checkpoint, oldest first.
fn checkpoints(db: &Path) -> Vec<(Option<String>, Option<String>)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT public_key, signature FROM checkpoints ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_runs_verify_with_their_public_key_and_with_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator().await;
    let db = dir.path().join("audit.db");
    let key = dir.path().join("ops.key");
    let public_path = dir.path().join("ops.key.pub");

    let made = keygen(&key).await;
    assert_eq!(made.code, Some(0), "{}", made.all);
    let public = std::fs::read_to_string(&public_path).unwrap();
    let public = public.trim_end();
    assert!(
        made.stdout.contains(&format!("public key: {public}\n")),
        "{}",
        made.all
    );
    assert!(made.stdout.contains("--signing-key"), "{}", made.all);
    assert!(
        made.stdout
            .contains(&format!("verify --public-key {}", public_path.display())),
        "{}",
        made.all
    );
    #[cfg(unix)]
    assert_eq!(mode(&key), 0o600);

    // A signed apply, and a signed snapshot (given the key by the environment).
    let plan = plan(&emu, dir.path());
    let applied = embatch(&emu, &db, &["apply", s(&plan), "--signing-key", s(&key)]).await;
    assert_eq!(applied.code, Some(0), "{}", applied.all);
    let mut snapshot = support::cli(&emu, &db);
    snapshot
        .args(["snapshot", "--all", "--format", "csv", "-o"])
        .arg(dir.path().join("access.csv"))
        .env("EMBATCH_SIGNING_KEY", &key);
    let snapshot = ran(snapshot).await;
    assert_eq!(snapshot.code, Some(0), "{}", snapshot.all);
    let signed = checkpoints(&db);
    assert_eq!(signed.len(), 2);
    for (key, signature) in &signed {
        assert_eq!(key.as_deref(), Some(public));
        assert_eq!(signature.as_ref().map(String::len), Some(128));
    }

    let verified = embatch(&emu, &db, &["verify", "--public-key", s(&public_path)]).await;
    assert_eq!(verified.code, Some(0), "{}", verified.all);
    assert!(
        verified.stdout.ends_with(" records valid\n"),
        "{}",
        verified.all
    );

    // The public key of another pair: every checkpoint is signed, but not by it.
    let other = dir.path().join("other.key");
    assert_eq!(keygen(&other).await.code, Some(0));
    let other_public = dir.path().join("other.key.pub");
    let wrong = embatch(&emu, &db, &["verify", "--public-key", s(&other_public)]).await;
    assert_eq!(wrong.code, Some(5), "{}", wrong.all);
    assert!(
        wrong
            .stdout
            .lines()
            .next()
            .is_some_and(|l| l.ends_with(": signed by another key")),
        "{}",
        wrong.all
    );
    assert_eq!(
        wrong
            .stdout
            .lines()
            .filter(|l| l.ends_with(": signed by another key"))
            .count(),
        2,
        "{}",
        wrong.all
    );

    // A run without the key: its checkpoint is unsigned, which the key's holder is told.
    let unsigned = embatch(&emu, &db, &["apply", s(&plan)]).await;
    assert_eq!(unsigned.code, Some(0), "{}", unsigned.all);
    let ran = embatch(&emu, &db, &["verify", "--public-key", s(&public_path)]).await;
    assert_eq!(ran.code, Some(5), "{}", ran.all);
    let first = ran.stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("run 3 checkpoint") && first.ends_with(": unsigned"),
        "{}",
        ran.all
    );
    assert!(
        ran.stdout.contains("\nunsigned: "),
        "the damage is explained: {}",
        ran.all
    );
    assert!(
        ran.stdout
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("verification failed: 1 problem ")),
        "{}",
        ran.all
    );
    // Without --public-key, the chain holds: only a key tells unsigned from signed.
    let plain = embatch(&emu, &db, &["verify"]).await;
    assert_eq!(plain.code, Some(0), "{}", plain.all);
    let json = embatch(
        &emu,
        &db,
        &[
            "verify",
            "--public-key",
            s(&public_path),
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(json.code, Some(5), "{}", json.all);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["valid"], false);
    assert_eq!(value["problems"][0]["damage"], "unsigned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_never_overwrites_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ops.key");
    assert_eq!(keygen(&key).await.code, Some(0));
    let secret = std::fs::read(&key).unwrap();
    let public = std::fs::read(dir.path().join("ops.key.pub")).unwrap();

    let again = keygen(&key).await;
    assert_eq!(again.code, Some(2), "{}", again.all);
    assert!(
        again.stderr.contains("exists") && again.stderr.contains("nothing was written"),
        "{}",
        again.all
    );
    assert_eq!(std::fs::read(&key).unwrap(), secret);
    assert_eq!(
        std::fs::read(dir.path().join("ops.key.pub")).unwrap(),
        public
    );

    // Only the public key's file in the way: refused too, and no secret is left behind.
    let lone = dir.path().join("lone.key.pub");
    std::fs::write(&lone, "kept\n").unwrap();
    let refused = keygen(&dir.path().join("lone.key")).await;
    assert_eq!(refused.code, Some(2), "{}", refused.all);
    assert!(
        refused.stderr.contains("lone.key.pub exists"),
        "{}",
        refused.all
    );
    assert!(!dir.path().join("lone.key").exists());
    assert_eq!(std::fs::read_to_string(&lone).unwrap(), "kept\n");
}

/// Asserts that `apply` with the signing key `key` is refused with status 2, saying `says`,
/// before anything is sent or recorded, and without quoting the key file.
async fn assert_key_refused(key: &Path, says: &str) {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator().await;
    let db = dir.path().join("audit.db");
    let plan = plan(&emu, dir.path());
    let content = std::fs::read_to_string(key).unwrap_or_default();
    for by_env in [false, true] {
        let mut cmd = support::cli(&emu, &db);
        cmd.args(["apply", s(&plan), "--yes"]).args(FAST);
        if by_env {
            cmd.env("EMBATCH_SIGNING_KEY", key);
        } else {
            cmd.arg("--signing-key").arg(key);
        }
        let refused = ran(cmd).await;
        assert_eq!(refused.code, Some(2), "{}", refused.all);
        assert!(refused.stderr.contains(says), "{}", refused.all);
        let secret = content.trim();
        assert!(
            secret.is_empty() || !refused.all.contains(secret),
            "the key file is never quoted: {}",
            refused.all
        );
    }
    assert!(emu.requests().is_empty(), "no request reached the server");
    assert!(!db.exists(), "no run was recorded");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_key_others_may_read_is_refused_before_anything_is_sent() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ops.key");
    assert_eq!(keygen(&key).await.code, Some(0));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_key_refused(&key, &format!("chmod 600 {}", key.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_holds_no_key_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ops.key");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        use std::io::Write as _;
        options
            .open(&key)
            .unwrap()
            .write_all(b"hunter2-not-a-key\n")
            .unwrap();
    }
    assert_key_refused(&key, "64 hex characters").await;
    assert_key_refused(&dir.path().join("missing.key"), "cannot read signing key").await;

    // A public key file given as the signing key, and a bad public key given to verify.
    assert_eq!(keygen(&dir.path().join("k")).await.code, Some(0));
    assert_key_refused(&dir.path().join("k.pub"), "ends in .pub").await;
    let emu = emulator().await;
    let db = dir.path().join("audit.db");
    std::fs::write(&db, b"").unwrap();
    let refused = embatch(&emu, &db, &["verify", "--public-key", s(&key)]).await;
    assert_eq!(refused.code, Some(2), "{}", refused.all);
    assert!(refused.stderr.contains("public key "), "{}", refused.all);
    assert!(!refused.all.contains("hunter2"), "{}", refused.all);
}
