//! Test fixtures: an in-process emulator, clients and runs against it, and temporary audit logs.

use std::sync::Arc;

use embatch::em::{Client, ClientConfig, NoopObserver, Secret, TlsOptions, Wire};
use embatch::emulator::{self, AccountSnapshot, EmulatorConfig, RunningEmulator, StateSnapshot};

/// Both wire formats, for tests that must hold in each.
pub const WIRES: [Wire; 2] = [Wire::Xml, Wire::Json];

/// Starts an emulator with `config` on 127.0.0.1 and a free port.
pub async fn emulator(config: EmulatorConfig) -> RunningEmulator {
    emulator::start(config).await.expect("the emulator starts")
}

/// A client configuration for the emulator's admin logon.
pub fn client_config(emu: &RunningEmulator, wire: Wire) -> ClientConfig {
    let defaults = EmulatorConfig::default();
    let mut tls = TlsOptions::default();
    if let Some(pem) = emu.cert_pem() {
        let path = std::env::temp_dir().join(format!("embatch-test-ca-{}.pem", emu.addr().port()));
        std::fs::write(&path, pem).expect("write the test CA");
        tls.ca_cert = Some(path);
    }
    ClientConfig::new(
        url::Url::parse(&emu.base_url()).expect("the emulator URL parses"),
        defaults.admin_user.clone(),
        Secret::new(defaults.admin_password.clone()),
        wire,
        tls,
    )
}

/// A client for the emulator's admin, not yet logged on.
pub fn client(emu: &RunningEmulator, wire: Wire) -> Client {
    Client::new(client_config(emu, wire), Arc::new(NoopObserver)).expect("the client builds")
}

/// A pace for tests: fast enough to be quick, still through the limiter.
pub fn fast_pace() -> embatch::runner::Pace {
    embatch::runner::Pace {
        concurrency: 8,
        rate: 2000.0,
        burst: std::num::NonZeroU32::new(50).unwrap(),
        max_attempts: 5,
        backoff: std::time::Duration::from_millis(10),
        ..embatch::runner::Pace::default()
    }
}

/// A finished run and the audit log it wrote.
pub struct Run {
    /// What the runner reported.
    pub report: embatch::runner::RunReport,
    /// The audit log (kept alive with the run).
    pub dir: tempfile::TempDir,
}

impl Run {
    /// The audit log's path.
    pub fn db(&self) -> std::path::PathBuf {
        self.dir.path().join("audit.db")
    }

    fn column(&self, column: &str) -> Vec<Option<String>> {
        let conn = rusqlite::Connection::open(self.db()).unwrap();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {column} FROM change_log WHERE run_id = ?1 ORDER BY row_no"
            ))
            .unwrap();
        stmt.query_map([self.report.run_id], |r| r.get::<_, Option<String>>(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    /// Each row's outcome, in plan order, read back from the `change_log` view.
    pub fn outcomes(&self) -> Vec<embatch::runner::Outcome> {
        use embatch::runner::Outcome::*;
        self.column("outcome")
            .into_iter()
            .map(|o| match o.as_deref() {
                Some("applied") => Applied,
                Some("noop") => Noop,
                Some("failed") => Failed,
                Some("skipped") => Skipped,
                Some("in_doubt") => InDoubt,
                _ => Pending,
            })
            .collect()
    }

    /// Each row's error text, in plan order.
    pub fn errors(&self) -> Vec<Option<String>> {
        self.column("error")
    }

    /// Each row's result JSON, in plan order.
    pub fn results(&self) -> Vec<Option<String>> {
        self.column("result")
    }

    /// The number of HTTP attempts in `request_log` for this run.
    pub fn request_log_len(&self) -> usize {
        let conn = rusqlite::Connection::open(self.db()).unwrap();
        conn.query_row(
            "SELECT count(*) FROM request_log WHERE run_id = ?1",
            [self.report.run_id],
            |r| r.get::<_, i64>(0),
        )
        .unwrap() as usize
    }
}

/// Applies `plan` (CSV text) against the emulator, with a fresh audit log.
pub async fn apply(
    emu: &RunningEmulator,
    plan: &str,
    wire: Wire,
    pace: embatch::runner::Pace,
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let plan = embatch::plan::parse("plan.csv", plan.as_bytes()).expect("the test plan is valid");
    let writer = embatch::audit::AuditWriter::spawn(&dir.path().join("audit.db")).unwrap();
    let settings = embatch::runner::RunSettings {
        client: client_config(emu, wire),
        pace,
        max_failures: None,
        options_json: "{}".into(),
    };
    let report = embatch::runner::execute(
        embatch::runner::RunSpec::apply(plan),
        settings,
        writer.handle(),
        tokio_util::sync::CancellationToken::new(),
        embatch::runner::Reporter::Quiet,
    )
    .await
    .expect("the run starts");
    writer.close().await.unwrap();
    Run { report, dir }
}

/// The binary, with the environment cleared of embatch settings.
pub fn bin() -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("embatch"));
    for var in [
        "EMBATCH_URL",
        "EMBATCH_USER",
        "EMBATCH_PASSWORD",
        "EMBATCH_DB",
        "EMBATCH_LOG",
        "EMBATCH_SIGNING_KEY",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// The binary, with the environment cleared of embatch settings, pointed at `emu` (as the
/// admin) and at the audit log `db`, fast enough for tests.
pub fn cli(emu: &RunningEmulator, db: &std::path::Path) -> std::process::Command {
    let defaults = EmulatorConfig::default();
    let mut cmd = bin();
    cmd.env("EMBATCH_URL", emu.base_url())
        .env("EMBATCH_USER", &defaults.admin_user)
        .env("EMBATCH_PASSWORD", &defaults.admin_password)
        .env("EMBATCH_DB", db);
    cmd
}

/// The flags that make a run fast on the emulator.
pub const FAST: [&str; 6] = ["--rate", "5000", "--burst", "500", "--concurrency", "8"];

/// Runs a command to its end off the async threads (the emulator serves on them meanwhile).
pub async fn output(mut cmd: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs"))
        .await
        .expect("the blocking task ends")
}

/// Waits for a spawned command off the async threads, with what it wrote to piped streams.
pub async fn output_of(child: std::process::Child) -> std::process::Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().expect("the binary runs"))
        .await
        .expect("the blocking task ends")
}

/// Both streams of `out`, for assertion messages.
pub fn text(out: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An account's name, flag, role ids and (scope name, object ref) pairs.
pub type Access = (String, bool, Vec<uuid::Uuid>, Vec<(String, String)>);

/// An account's access, comparable across runs: scopes by name and ref (a re-created scope
/// gets a new id), roles by id, both sorted.
pub fn access(a: &embatch::emulator::AccountSnapshot) -> Access {
    let mut roles: Vec<uuid::Uuid> = a.roles.iter().map(|r| r.id).collect();
    roles.sort();
    let mut scopes: Vec<(String, String)> = a
        .scopes
        .iter()
        .map(|s| (s.name.clone(), s.obj_ref.clone()))
        .collect();
    scopes.sort();
    (a.name.clone(), a.allow_restore_all_vms, roles, scopes)
}

/// Every account's access, by account id.
pub fn accesses(
    state: &embatch::emulator::StateSnapshot,
) -> std::collections::BTreeMap<uuid::Uuid, Access> {
    state.accounts.iter().map(|a| (a.id, access(a))).collect()
}

/// Each row's outcome in run `run` of the audit log `db`, in row order.
pub fn outcomes(db: &std::path::Path, run: i64) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT outcome FROM change_log WHERE run_id = ?1 ORDER BY row_no")
        .unwrap();
    stmt.query_map([run], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// The first generated account (`TECH\\user…`) not in `taken` that fits `pred`; it is added to
/// `taken`, so the next pick is another account.
pub fn pick<'a>(
    state: &'a StateSnapshot,
    taken: &mut Vec<String>,
    pred: impl Fn(&AccountSnapshot) -> bool,
) -> &'a AccountSnapshot {
    let a = state
        .accounts
        .iter()
        .filter(|a| a.name.starts_with("TECH\\user") && !taken.contains(&a.name))
        .find(|a| pred(a))
        .expect("the generated accounts include one that fits");
    taken.push(a.name.clone());
    a
}

/// Whether `a` holds the role named `role`.
pub fn has(a: &AccountSnapshot, role: &str) -> bool {
    a.roles.iter().any(|r| r.name == role)
}

/// Asserts that every request the emulator received is in `request_log` under run `run`, as
/// often as it was received: no request left without its record.
pub fn assert_every_request_logged(emu: &RunningEmulator, db: &std::path::Path, run: i64) {
    use std::collections::HashMap;
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut logged: HashMap<(String, String), i64> = HashMap::new();
    let mut stmt = conn
        .prepare("SELECT method, path, count(*) FROM request_log WHERE run_id = ?1 GROUP BY 1, 2")
        .unwrap();
    for row in stmt
        .query_map([run], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
        .unwrap()
    {
        let (key, n) = row.unwrap();
        logged.insert(key, n);
    }
    let mut received: HashMap<(String, String), i64> = HashMap::new();
    for r in emu.requests() {
        *received
            .entry((r.method.clone(), r.path.clone()))
            .or_default() += 1;
    }
    for (key, n) in &received {
        let have = logged.get(key).copied().unwrap_or(0);
        assert!(have >= *n, "{key:?}: {n} received, {have} in request_log");
    }
}

/// Runs `sql` on the audit log `db` as someone with the sqlite3 shell would who knows the log
/// is append-only: the triggers that refuse edits of the fact tables (`<table>_no_update`,
/// `<table>_no_delete`) are dropped first and made again after, from their own SQL, all in one
/// transaction, so that the schema is exactly as embatch made it and only the edit itself is
/// there to be found.
pub fn edit_facts(db: &std::path::Path, sql: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    let triggers: Vec<(String, String)> = tx
        .prepare(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'trigger'
             AND (name LIKE '%\\_no\\_update' ESCAPE '\\' OR name LIKE '%\\_no\\_delete' ESCAPE '\\')",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!triggers.is_empty(), "the log has its append-only triggers");
    for (name, _) in &triggers {
        tx.execute_batch(&format!("DROP TRIGGER {name}")).unwrap();
    }
    tx.execute_batch(sql).unwrap();
    for (_, sql) in &triggers {
        tx.execute_batch(sql).unwrap();
    }
    tx.commit().unwrap();
}
