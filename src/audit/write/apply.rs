//! The SQL of each record: the insert or update it makes, and the evidence record appended for
//! it in the same transaction. Run by the writer thread inside a group's transaction; the run
//! lock is checked here too, under the group's write lock.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use super::Record;
use crate::audit::chain::{ChainHead, Content, Kind};
use crate::audit::db::int;
use crate::audit::lock::{self, LockHolder};
use crate::audit::process::WriterIdentity;
use crate::audit::{NewRun, RowBatch, RowColumns, RunStatus};

/// Turns a SQLite error into the writer's error text, saying what was being written.
pub(super) fn context(what: &'static str) -> impl Fn(rusqlite::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// Checks that an update found its row: an update that matches nothing would lose its record
/// without a word.
fn found(changed: usize, what: impl FnOnce() -> String) -> Result<(), String> {
    if changed == 1 { Ok(()) } else { Err(what()) }
}

/// Inserts a run's rows, all `pending`, each with its evidence: the complete row.
fn insert_rows(
    conn: &Connection,
    chain: &mut ChainHead,
    run_id: i64,
    rows: &[RowColumns],
) -> Result<(), String> {
    let ctx = context("record the plan rows");
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO plan_rows (run_id, row_no, line, account, action, target,
                 object_name, ticket, comment, annotations)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(&ctx)?;
    let none = None::<String>;
    for row in rows {
        let row_no = int(row.row_no).map_err(&ctx)?;
        let line = int(row.line).map_err(&ctx)?;
        stmt.execute(params![
            run_id,
            row_no,
            line,
            row.account,
            row.action,
            row.target,
            row.object_name,
            row.ticket,
            row.comment,
            row.annotations,
        ])
        .map_err(&ctx)?;
        let content = Content::new()
            .field("account", &row.account)
            .and_then(|c| c.field("account_id", &none))
            .and_then(|c| c.field("action", &row.action))
            .and_then(|c| c.field("annotations", &row.annotations))
            .and_then(|c| c.field("comment", &row.comment))
            .and_then(|c| c.field("error", &none))
            .and_then(|c| c.field("finished_at", &none))
            .and_then(|c| c.field("line", &line))
            .and_then(|c| c.field("object_name", &row.object_name))
            .and_then(|c| c.field("outcome", &"pending"))
            .and_then(|c| c.field("prior_state", &none))
            .and_then(|c| c.field("result", &none))
            .and_then(|c| c.field("row_no", &row_no))
            .and_then(|c| c.field("run_id", &run_id))
            .and_then(|c| c.field("target", &row.target))
            .and_then(|c| c.field("ticket", &row.ticket))
            .map_err(&ctx)?
            .finish();
        chain.append(Kind::Row, run_id, Some(row_no), content);
    }
    Ok(())
}

/// Writes the held account ids of `run_id`'s rows (of every run when `None`) that did not get
/// them with an outcome, each as an update of its own with its evidence, in row order.
pub(super) fn write_accounts(
    conn: &Connection,
    chain: &mut ChainHead,
    accounts: &mut HashMap<(i64, i64), String>,
    run_id: Option<i64>,
) -> Result<(), String> {
    let mut keys: Vec<(i64, i64)> = accounts
        .keys()
        .filter(|(run, _)| run_id.is_none_or(|id| id == *run))
        .copied()
        .collect();
    keys.sort_unstable();
    let ctx = context("record a row's account id");
    for (run_id, row) in keys {
        let account_id = accounts
            .remove(&(run_id, row))
            .expect("the key was just read from the map");
        let changed = conn
            .prepare_cached(
                "UPDATE plan_rows SET account_id = ?3 WHERE run_id = ?1 AND row_no = ?2",
            )
            .and_then(|mut stmt| stmt.execute(params![run_id, row, account_id]))
            .map_err(&ctx)?;
        found(changed, || {
            format!("record the account id of row {row} of run {run_id}: no such row")
        })?;
        let content = Content::new()
            .field("account_id", &account_id)
            .map_err(&ctx)?
            .finish();
        chain.append(Kind::Row, run_id, Some(row), content);
    }
    Ok(())
}

/// Inserts a new run, `running` under this writer, with its evidence; answers its id.
fn insert_run(
    conn: &Connection,
    me: &WriterIdentity,
    chain: &mut ChainHead,
    run: &NewRun,
    at: &str,
) -> Result<i64, String> {
    let none = None::<String>;
    let ctx = context("record a run");
    let start = me.start.map(int).transpose().map_err(&ctx)?;
    conn.prepare_cached(
        "INSERT INTO runs (kind, parent_run_id, status, started_at, operator, server_url,
             wire, tls_verify, insecure, plan_file, plan_sha256, tool_version, options,
             writer_pid, writer_start, writer_boot_id)
         VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            run.kind,
            run.parent_run_id,
            at,
            run.operator,
            run.server_url,
            run.wire,
            run.tls_verify,
            run.insecure,
            run.plan_file,
            run.plan_sha256,
            run.tool_version,
            run.options,
            me.pid,
            start,
            me.boot_id,
        ])
    })
    .map_err(&ctx)?;
    let run_id = conn.last_insert_rowid();
    let content = Content::new()
        .field("ended_at", &none)
        .and_then(|c| c.field("id", &run_id))
        .and_then(|c| c.field("insecure", &run.insecure))
        .and_then(|c| c.field("kind", &run.kind))
        .and_then(|c| c.field("operator", &run.operator))
        .and_then(|c| c.field("options", &run.options))
        .and_then(|c| c.field("parent_run_id", &run.parent_run_id))
        .and_then(|c| c.field("plan_file", &run.plan_file))
        .and_then(|c| c.field("plan_sha256", &run.plan_sha256))
        .and_then(|c| c.field("server_url", &run.server_url))
        .and_then(|c| c.field("started_at", &at))
        .and_then(|c| c.field("status", &RunStatus::Running.as_str()))
        .and_then(|c| c.field("tls_verify", &run.tls_verify))
        .and_then(|c| c.field("tool_version", &run.tool_version))
        .and_then(|c| c.field("wire", &run.wire))
        .and_then(|c| c.field("writer_boot_id", &me.boot_id))
        .and_then(|c| c.field("writer_pid", &me.pid))
        .and_then(|c| c.field("writer_start", &start))
        .map_err(&ctx)?
        .finish();
    chain.append(Kind::Run, run_id, None, content);
    Ok(run_id)
}

/// Records a run and the rows streamed in `batches`, inside the group's transaction; answers
/// the run's id, or 0 when the sender abandoned the stream and nothing of the run was kept.
///
/// The run and its rows go under a savepoint, so an abandoned stream takes back only them and
/// the rest of the group stays. The evidence is inserted after every batch rather than at the
/// commit, so memory holds one batch, not the whole run.
fn record_streamed_run(
    conn: &Connection,
    me: &WriterIdentity,
    chain: &mut ChainHead,
    run: &NewRun,
    batches: &std::sync::mpsc::Receiver<RowBatch>,
    at: &str,
) -> Result<i64, String> {
    let evidence = context("record the evidence");
    let ctx = context("record a run");
    // What the group appended so far goes into the table first: after a rollback to the
    // savepoint, the head of the chain is read back from the table.
    chain.flush(conn).map_err(&evidence)?;
    conn.execute_batch("SAVEPOINT streamed_run").map_err(&ctx)?;
    let run_id = insert_run(conn, me, chain, run, at)?;
    let complete = loop {
        match batches.recv() {
            Ok(RowBatch::Rows(rows)) => {
                insert_rows(conn, chain, run_id, &rows)?;
                chain.flush(conn).map_err(&evidence)?;
            }
            Ok(RowBatch::End) => break true,
            Err(std::sync::mpsc::RecvError) => break false,
        }
    };
    if complete {
        chain.flush(conn).map_err(&evidence)?;
        conn.execute_batch("RELEASE streamed_run").map_err(&ctx)?;
        return Ok(run_id);
    }
    conn.execute_batch("ROLLBACK TO streamed_run; RELEASE streamed_run")
        .map_err(context("take back an abandoned run"))?;
    *chain = ChainHead::read(conn).map_err(context("read the head of the evidence chain"))?;
    Ok(0)
}

/// What applying a record came to.
pub(super) enum Applied {
    /// Written; the rowid to answer with (see [`apply`]).
    Id(i64),
    /// Not written: the run it starts or resumes would change a server whose lock this live
    /// run holds.
    Held(LockHolder),
}

/// Applies one record as [`apply`] does, unless it starts or resumes a run that changes EM while
/// another live run holds the lock of its server (see `lock.rs`). Checked here, under the
/// group's write lock, so that of two runs starting at once in two processes only one starts.
pub(super) fn apply_unless_locked(
    conn: &Connection,
    me: &WriterIdentity,
    chain: &mut ChainHead,
    accounts: &mut HashMap<(i64, i64), String>,
    record: &Record,
) -> Result<Applied, String> {
    let ctx = context("check the run lock");
    let server = match record {
        Record::BeginRun { run, .. } | Record::BeginRunStreamed { run, .. }
            if lock::takes_lock(&run.kind) =>
        {
            Some(run.server_url.clone())
        }
        Record::ResumeRun { run_id, .. } => {
            let (kind, server): (String, String) = conn
                .query_row(
                    "SELECT kind, server_url FROM runs WHERE id = ?1",
                    [run_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(&ctx)?;
            lock::takes_lock(&kind).then_some(server)
        }
        _ => None,
    };
    if let Some(server) = server
        && let Some(holder) = lock::holders(conn, Some(&server))
            .map_err(&ctx)?
            .into_iter()
            .next()
    {
        return Ok(Applied::Held(holder));
    }
    apply(conn, me, chain, accounts, record).map(Applied::Id)
}

/// Writes one record, and appends its evidence, inside the group's transaction; returns the
/// rowid of an inserted run or attempt (0 for other records), to answer with after the commit.
///
/// The evidence of each write is built from the values bound to its statement, column by column
/// in byte order of the names: an insert gives every column of the row (the defaults included),
/// an update the columns it sets.
fn apply(
    conn: &Connection,
    me: &WriterIdentity,
    chain: &mut ChainHead,
    accounts: &mut HashMap<(i64, i64), String>,
    record: &Record,
) -> Result<i64, String> {
    let none = None::<String>;
    match record {
        Record::BeginRun { run, rows, at, .. } => {
            let run_id = insert_run(conn, me, chain, run, at)?;
            insert_rows(conn, chain, run_id, rows)?;
            Ok(run_id)
        }
        Record::BeginRunStreamed {
            run, batches, at, ..
        } => record_streamed_run(conn, me, chain, run, batches, at),
        Record::AddRows { run_id, rows, .. } => {
            insert_rows(conn, chain, *run_id, rows)?;
            Ok(0)
        }
        Record::EndRun {
            run_id, status, at, ..
        } => {
            let ctx = context("record the end of the run");
            // The run's rows that never finished keep their account ids.
            write_accounts(conn, chain, accounts, Some(*run_id))?;
            let changed = conn
                .prepare_cached("UPDATE runs SET status = ?2, ended_at = ?3 WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute(params![run_id, status.as_str(), at]))
                .map_err(&ctx)?;
            found(changed, || {
                format!("record the end of run {run_id}: no such run")
            })?;
            let content = Content::new()
                .field("ended_at", at)
                .and_then(|c| c.field("status", &status.as_str()))
                .map_err(&ctx)?
                .finish();
            chain.append(Kind::End, *run_id, None, content);
            chain.checkpoint(*run_id);
            Ok(0)
        }
        Record::ResumeRun { run_id, at, .. } => {
            let ctx = context("record the resume of a run");
            let start = me.start.map(int).transpose().map_err(&ctx)?;
            let previous: String = conn
                .query_row("SELECT status FROM runs WHERE id = ?1", [run_id], |r| {
                    r.get(0)
                })
                .map_err(&ctx)?;
            conn.prepare_cached(
                "INSERT INTO run_resumes (run_id, resumed_at, previous_status, writer_pid,
                     writer_start, writer_boot_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![run_id, at, previous, me.pid, start, me.boot_id])
            })
            .map_err(&ctx)?;
            let resume_id = conn.last_insert_rowid();
            let resume = Content::new()
                .field("id", &resume_id)
                .and_then(|c| c.field("previous_status", &previous))
                .and_then(|c| c.field("resumed_at", at))
                .and_then(|c| c.field("run_id", run_id))
                .and_then(|c| c.field("writer_boot_id", &me.boot_id))
                .and_then(|c| c.field("writer_pid", &me.pid))
                .and_then(|c| c.field("writer_start", &start))
                .map_err(&ctx)?
                .finish();
            chain.append(Kind::Resume, *run_id, Some(resume_id), resume);
            conn.prepare_cached(
                "UPDATE runs SET status = 'running', ended_at = NULL, writer_pid = ?2,
                     writer_start = ?3, writer_boot_id = ?4
                 WHERE id = ?1",
            )
            .and_then(|mut stmt| stmt.execute(params![run_id, me.pid, start, me.boot_id]))
            .map_err(&ctx)?;
            let content = Content::new()
                .field("ended_at", &none)
                .and_then(|c| c.field("status", &RunStatus::Running.as_str()))
                .and_then(|c| c.field("writer_boot_id", &me.boot_id))
                .and_then(|c| c.field("writer_pid", &me.pid))
                .and_then(|c| c.field("writer_start", &start))
                .map_err(&ctx)?
                .finish();
            chain.append(Kind::Run, *run_id, None, content);
            Ok(0)
        }
        Record::RowAccount {
            run_id,
            row_no,
            account_id,
        } => {
            // Held until the row's outcome (see the module docs).
            let row = int(*row_no).map_err(context("record a row's account id"))?;
            accounts.insert((*run_id, row), account_id.clone());
            Ok(0)
        }
        Record::RowFinished {
            run_id,
            row_no,
            result,
            at,
        } => {
            let ctx = context("record a row's outcome");
            let row = int(*row_no).map_err(&ctx)?;
            let account_id = accounts.remove(&(*run_id, row));
            // Two statements rather than one with a COALESCE: the evidence names exactly the
            // columns the update sets.
            let sql = if account_id.is_some() {
                "UPDATE plan_rows
                 SET outcome = ?3, error = ?4, prior_state = ?5, result = ?6, finished_at = ?7,
                     account_id = ?8
                 WHERE run_id = ?1 AND row_no = ?2"
            } else {
                "UPDATE plan_rows
                 SET outcome = ?3, error = ?4, prior_state = ?5, result = ?6, finished_at = ?7
                 WHERE run_id = ?1 AND row_no = ?2"
            };
            let changed = conn
                .prepare_cached(sql)
                .and_then(|mut stmt| {
                    stmt.raw_bind_parameter(1, run_id)?;
                    stmt.raw_bind_parameter(2, row)?;
                    stmt.raw_bind_parameter(3, &result.outcome)?;
                    stmt.raw_bind_parameter(4, &result.error)?;
                    stmt.raw_bind_parameter(5, &result.prior_state)?;
                    stmt.raw_bind_parameter(6, &result.result)?;
                    stmt.raw_bind_parameter(7, at)?;
                    if let Some(account_id) = &account_id {
                        stmt.raw_bind_parameter(8, account_id)?;
                    }
                    stmt.raw_execute()
                })
                .map_err(&ctx)?;
            found(changed, || {
                format!("record the outcome of row {row_no} of run {run_id}: no such row")
            })?;
            let content = match &account_id {
                Some(account_id) => Content::new().field("account_id", account_id),
                None => Ok(Content::new()),
            }
            .and_then(|c| c.field("error", &result.error))
            .and_then(|c| c.field("finished_at", at))
            .and_then(|c| c.field("outcome", &result.outcome))
            .and_then(|c| c.field("prior_state", &result.prior_state))
            .and_then(|c| c.field("result", &result.result))
            .map_err(&ctx)?
            .finish();
            chain.append(Kind::Row, *run_id, Some(row), content);
            Ok(0)
        }
        Record::AttemptStarted { start, at, .. } => {
            let ctx = context("record a request");
            let row_no = start.row_no.map(int).transpose().map_err(&ctx)?;
            conn.prepare_cached(
                "INSERT INTO attempts (run_id, row_no, attempt, method, path, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    start.run_id,
                    row_no,
                    start.attempt,
                    start.method,
                    start.path,
                    at,
                ])
            })
            .map_err(&ctx)?;
            let id = conn.last_insert_rowid();
            let content = Content::new()
                .field("attempt", &start.attempt)
                .and_then(|c| c.field("duration_ms", &none))
                .and_then(|c| c.field("error", &none))
                .and_then(|c| c.field("id", &id))
                .and_then(|c| c.field("method", &start.method))
                .and_then(|c| c.field("path", &start.path))
                .and_then(|c| c.field("row_no", &row_no))
                .and_then(|c| c.field("run_id", &start.run_id))
                .and_then(|c| c.field("started_at", at))
                .and_then(|c| c.field("status", &none))
                .map_err(&ctx)?
                .finish();
            chain.append(Kind::Attempt, start.run_id, Some(id), content);
            Ok(id)
        }
        Record::AttemptFinished {
            run_id,
            id,
            status,
            error,
            elapsed,
        } => {
            let ctx = context("record the end of a request");
            let attempt_id = int(*id).map_err(&ctx)?;
            let duration_ms = elapsed.as_secs_f64() * 1000.0;
            // The evidence is filed under the run the caller names; matching it here too means
            // a wrong run id finds no request and stops the writer, instead of filing the
            // record under another run than the attempt's.
            let changed = conn
                .prepare_cached(
                    "UPDATE attempts SET status = ?3, error = ?4, duration_ms = ?5
                     WHERE id = ?1 AND run_id = ?2",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![attempt_id, run_id, status, error, duration_ms])
                })
                .map_err(&ctx)?;
            found(changed, || {
                format!("record the end of request {id}: no such request in run {run_id}")
            })?;
            let content = Content::new()
                .field("duration_ms", &duration_ms)
                .and_then(|c| c.field("error", error))
                .and_then(|c| c.field("status", status))
                .map_err(&ctx)?
                .finish();
            chain.append(Kind::Attempt, *run_id, Some(attempt_id), content);
            Ok(0)
        }
    }
}
