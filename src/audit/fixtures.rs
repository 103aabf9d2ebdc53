//! Builders of runs and rows for the audit log's unit tests.

use super::{AttemptStart, NewRun, RowColumns, RowResult};

/// An `apply` run against a local server.
pub(crate) fn new_run() -> NewRun {
    NewRun {
        kind: "apply".into(),
        parent_run_id: None,
        operator: "TECH\\alice".into(),
        server_url: "https://127.0.0.1:9398/api".into(),
        wire: "xml".into(),
        tls_verify: true,
        insecure: false,
        plan_file: Some("plan.csv".into()),
        plan_sha256: Some("ab".repeat(32)),
        tool_version: "0.1.0".into(),
        options: r#"{"concurrency":4}"#.into(),
    }
}

/// A new apply run against another server than [`new_run`]'s: it does not wait for the lock
/// that a run of `new_run` holds.
pub(crate) fn new_run_on(port: u16) -> NewRun {
    NewRun {
        server_url: format!("https://127.0.0.1:{port}/api"),
        ..new_run()
    }
}

/// `n` rows, row `i` on line `i + 2` for account `acct<i>`.
pub(crate) fn new_rows(n: u64) -> Vec<RowColumns> {
    (0..n)
        .map(|i| RowColumns {
            row_no: i,
            line: i + 2,
            account: format!("TECH\\acct{i}"),
            action: "assign-role".into(),
            target: "Portal User".into(),
            object_name: None,
            ticket: Some(format!("CHG-{i}")),
            comment: None,
            annotations: None,
        })
        .collect()
}

/// Attempt `n` of a role assignment for row `row_no` of `run_id` (or of no row).
pub(crate) fn attempt(run_id: i64, row_no: Option<u64>, n: u32) -> AttemptStart {
    AttemptStart {
        run_id,
        row_no,
        attempt: n,
        method: "POST".into(),
        path: "/api/security/accounts/1/roles".into(),
    }
}

/// A row outcome with nothing else to say.
pub(crate) fn outcome(outcome: &str) -> RowResult {
    RowResult {
        outcome: outcome.into(),
        error: None,
        prior_state: None,
        result: None,
    }
}

/// A log in a fresh directory (kept while the first value lives) with one run of `n` rows
/// recorded: the directory, the log's path, its writer and the run's id.
pub(crate) async fn log_with_run(
    n: u64,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    super::AuditWriter,
    i64,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let writer = super::AuditWriter::spawn(&path).unwrap();
    let run_id = writer
        .handle()
        .begin_run_with_rows(new_run(), new_rows(n))
        .await
        .unwrap();
    (dir, path, writer, run_id)
}

/// The SQL of the migration to the chain of facts, which makes the triggers that keep each
/// table of facts append-only.
const APPEND_ONLY_SQL: &str = include_str!("../../migrations/02-append-only/up.sql");

/// The `CREATE TRIGGER` statement of trigger `name`, exactly as the migration has it (without
/// its `;`, as SQLite keeps it in `sqlite_schema`).
fn trigger_sql(name: &str) -> &'static str {
    let start = APPEND_ONLY_SQL
        .find(&format!("CREATE TRIGGER {name} "))
        .unwrap_or_else(|| panic!("the migration makes no trigger {name}"));
    let len = APPEND_ONLY_SQL[start..]
        .find("END;")
        .expect("a trigger's body ends with END;");
    &APPEND_ONLY_SQL[start..start + len + "END".len()]
}

/// Runs `sql` on the log open on `conn` with the append-only triggers of the fact table `table`
/// dropped, as a test crafting data the writer cannot write would; then makes them again exactly
/// as the migration made them, so the schema still holds (the changed records do not).
pub(crate) fn edit_facts(conn: &rusqlite::Connection, table: &str, sql: &str) {
    let triggers = [format!("{table}_no_update"), format!("{table}_no_delete")];
    let tx = conn.unchecked_transaction().unwrap();
    for trigger in &triggers {
        tx.execute_batch(&format!("DROP TRIGGER {trigger}"))
            .unwrap();
    }
    tx.execute_batch(sql).unwrap();
    for trigger in &triggers {
        tx.execute_batch(trigger_sql(trigger)).unwrap();
    }
    tx.commit().unwrap();
}

/// A pid above the largest Linux hands out (4194304): no process has it.
pub(crate) const GONE_PID: i64 = 999_999_999;

/// Makes run `run_id` of the log at `path` look written by a process that is gone, as a crash
/// leaves it: the writer that started it, and the one of its newest resume if it has any,
/// become [`GONE_PID`], started at tick 1.
pub(crate) fn writer_gone(path: &std::path::Path, run_id: i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let changed = |table: &str, column: &str, key: i64| {
        format!(
            "UPDATE {table} SET writer_pid = {GONE_PID}, writer_start = 1 WHERE {column} = {key}"
        )
    };
    edit_facts(&conn, "run_starts", &changed("run_starts", "id", run_id));
    let resumed: Option<i64> = conn
        .query_row(
            "SELECT max(seq) FROM run_resumes WHERE run_id = ?1",
            [run_id],
            |r| r.get(0),
        )
        .unwrap();
    if let Some(seq) = resumed {
        edit_facts(&conn, "run_resumes", &changed("run_resumes", "seq", seq));
    }
}

/// A copy, in `dir`, of the log embatch 0.1.0 wrote (schema 01, `tests/fixtures/schema01.db`;
/// its README tells its runs and the heads `verify --anchor` printed).
pub(crate) fn schema01_copy(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema01.db"),
        &path,
    )
    .unwrap();
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditReader, RunSelector, RunStatus};

    #[tokio::test]
    async fn a_gone_writer_is_written_with_the_triggers_made_again_as_they_were() {
        let (_dir, path, writer, run_id) = log_with_run(1).await;
        let audit = writer.handle();
        audit.end_run(run_id, RunStatus::Interrupted).await.unwrap();
        audit.resume_run(run_id).await.unwrap();
        let other = audit.begin_run(new_run_on(1)).await.unwrap();
        writer.close().await.unwrap();
        let intact = AuditReader::open(&path)
            .unwrap()
            .verify(None, None)
            .unwrap();
        assert!(intact.holds(), "{:?}", intact.problems);

        writer_gone(&path, run_id);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let pids = |sql: &str| -> Vec<i64> {
            conn.prepare(sql)
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        };
        assert_eq!(
            pids("SELECT writer_pid FROM run_starts ORDER BY id"),
            [GONE_PID, i64::from(std::process::id())]
        );
        assert_eq!(pids("SELECT writer_pid FROM run_resumes"), [GONE_PID]);
        assert_eq!(
            pids("SELECT writer_pid FROM runs ORDER BY id"),
            [GONE_PID, i64::from(std::process::id())]
        );
        for sql in [
            "UPDATE run_starts SET writer_pid = 1",
            "DELETE FROM run_resumes",
        ] {
            let err = conn.execute(sql, []).unwrap_err();
            assert!(err.to_string().contains("append-only"), "{err}");
        }
        // Only the records changed are damaged: the schema is as the migration made it.
        let v = AuditReader::open(&path)
            .unwrap()
            .verify(Some(RunSelector::Id(other)), None)
            .unwrap();
        assert!(v.holds(), "{:?}", v.problems);
        let all = AuditReader::open(&path)
            .unwrap()
            .verify(None, None)
            .unwrap();
        let damaged: Vec<String> = all.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(damaged.len(), 2, "{damaged:?}");
        assert!(
            damaged[0].starts_with(&format!("run {run_id} (record #"))
                && damaged[1].starts_with(&format!("run {run_id} resume ")),
            "{damaged:?}"
        );
    }
}
