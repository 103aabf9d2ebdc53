//! The facts each record appends to the chain, run by the writer thread inside a group's
//! transaction; the run lock is checked here too, under the group's write lock. Nothing is ever
//! updated: a row's outcome, a request's result, a run's end are facts of their own.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use super::Record;
use super::states::PriorStates;
use crate::audit::chain::{
    CHECKPOINTS, ChainHead, PLANNED_ROWS, REQUEST_RESULTS, REQUESTS, ROW_ACCOUNTS, ROW_OUTCOMES,
    RUN_ENDS, RUN_RESUMES, RUN_STARTS, checkpoint_message,
};
use crate::audit::db::int;
use crate::audit::lock::{self, LockHolder};
use crate::audit::process::WriterIdentity;
use crate::audit::sign::CheckpointKey;
use crate::audit::{NewRun, RowBatch, RowColumns};

/// Turns a SQLite error into the writer's error text, saying what was being written.
pub(super) fn context(what: &'static str) -> impl Fn(rusqlite::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// What the writer keeps between records: the account ids held until their rows' outcomes, and
/// the prior states stored so far.
#[derive(Default)]
pub(super) struct Held {
    /// The account id of each row told one and not finished yet, by run and row number.
    pub(super) accounts: HashMap<(i64, i64), String>,
    /// The first state of each account seen recently (see `states.rs`).
    pub(super) states: PriorStates,
}

/// Who writes, and with which key: the same for every record of a writer.
pub(super) struct Signer<'a> {
    pub(super) me: &'a WriterIdentity,
    pub(super) key: Option<&'a CheckpointKey>,
}

/// Appends a run's rows, each a fact of its own.
fn insert_rows(
    conn: &Connection,
    chain: &mut ChainHead,
    run_id: i64,
    rows: &[RowColumns],
) -> Result<(), String> {
    let ctx = context("record the plan rows");
    for row in rows {
        let row_no = int(row.row_no).map_err(&ctx)?;
        let line = int(row.line).map_err(&ctx)?;
        chain
            .append(
                conn,
                &PLANNED_ROWS,
                &[
                    &row.account,
                    &row.action,
                    &row.annotations,
                    &row.comment,
                    &line,
                    &row.object_name,
                    &row_no,
                    &run_id,
                    &row.target,
                    &row.ticket,
                ],
            )
            .map_err(&ctx)?;
    }
    Ok(())
}

/// Writes the held account ids of `run_id`'s rows (of every run when `None`) that did not get
/// them with an outcome, each as a fact of its own, in row order.
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
        chain
            .append(conn, &ROW_ACCOUNTS, &[&account_id, &row, &run_id])
            .map_err(&ctx)?;
    }
    Ok(())
}

/// Appends a new run, `running` under this writer; answers its id.
fn insert_run(
    conn: &Connection,
    me: &WriterIdentity,
    chain: &mut ChainHead,
    run: &NewRun,
    at: &str,
) -> Result<i64, String> {
    let ctx = context("record a run");
    let start = me.start.map(int).transpose().map_err(&ctx)?;
    let run_id: i64 = conn
        .prepare_cached("SELECT coalesce(max(id), 0) + 1 FROM run_starts")
        .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)))
        .map_err(&ctx)?;
    chain
        .append(
            conn,
            &RUN_STARTS,
            &[
                &run_id,
                &run.insecure,
                &run.kind,
                &run.operator,
                &run.options,
                &run.parent_run_id,
                &run.plan_file,
                &run.plan_sha256,
                &run.server_url,
                &at,
                &run.tls_verify,
                &run.tool_version,
                &run.wire,
                &me.boot_id,
                &me.pid,
                &start,
            ],
        )
        .map_err(&ctx)?;
    Ok(run_id)
}

/// Records a run and the rows streamed in `batches`, inside the group's transaction; answers
/// the run's id, or 0 when the sender abandoned the stream and nothing of the run was kept.
///
/// The run and its rows go under a savepoint, so an abandoned stream takes back only them and
/// the rest of the group stays. Memory holds one batch, not the whole run.
fn record_streamed_run(
    conn: &Connection,
    me: &WriterIdentity,
    chain: &mut ChainHead,
    run: &NewRun,
    batches: &std::sync::mpsc::Receiver<RowBatch>,
    at: &str,
) -> Result<i64, String> {
    let ctx = context("record a run");
    conn.execute_batch("SAVEPOINT streamed_run").map_err(&ctx)?;
    let run_id = insert_run(conn, me, chain, run, at)?;
    let complete = loop {
        match batches.recv() {
            Ok(RowBatch::Rows(rows)) => insert_rows(conn, chain, run_id, &rows)?,
            Ok(RowBatch::End) => break true,
            Err(std::sync::mpsc::RecvError) => break false,
        }
    };
    if complete {
        conn.execute_batch("RELEASE streamed_run").map_err(&ctx)?;
        return Ok(run_id);
    }
    conn.execute_batch("ROLLBACK TO streamed_run; RELEASE streamed_run")
        .map_err(context("take back an abandoned run"))?;
    *chain = ChainHead::read(conn).map_err(context("read the head of the chain"))?;
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
    signer: &Signer<'_>,
    chain: &mut ChainHead,
    held: &mut Held,
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
    apply(conn, signer, chain, held, record).map(Applied::Id)
}

/// Appends the facts of one record inside the group's transaction; returns the id of a new run
/// or request (0 for other records), to answer with after the commit.
fn apply(
    conn: &Connection,
    signer: &Signer<'_>,
    chain: &mut ChainHead,
    held: &mut Held,
    record: &Record,
) -> Result<i64, String> {
    let me = signer.me;
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
            known_run(conn, *run_id, &ctx)?;
            // The run's rows that never finished keep their account ids.
            write_accounts(conn, chain, &mut held.accounts, Some(*run_id))?;
            chain
                .append(conn, &RUN_ENDS, &[at, run_id, &status.as_str()])
                .map_err(&ctx)?;
            // The checkpoint vouches for the head the end record made.
            let (head, records) = (chain.hash().to_string(), chain.seq());
            let (public_key, signature) = match signer.key {
                Some(key) => (
                    Some(key.public_hex()),
                    Some(key.sign_hex(&checkpoint_message(*run_id, &head, records))),
                ),
                None => (None, None),
            };
            chain
                .append(
                    conn,
                    &CHECKPOINTS,
                    &[&head, &public_key, &records, run_id, &signature],
                )
                .map_err(&ctx)?;
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
            chain
                .append(
                    conn,
                    &RUN_RESUMES,
                    &[&previous, at, run_id, &me.boot_id, &me.pid, &start],
                )
                .map_err(&ctx)?;
            Ok(0)
        }
        Record::RowAccount {
            run_id,
            row_no,
            account_id,
        } => {
            // Held until the row's outcome, which carries it.
            let row = int(*row_no).map_err(context("record a row's account id"))?;
            held.accounts.insert((*run_id, row), account_id.clone());
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
            // A row the run does not have would be an outcome of nothing.
            let known = conn
                .prepare_cached("SELECT 1 FROM planned_rows WHERE run_id = ?1 AND row_no = ?2")
                .and_then(|mut stmt| stmt.exists(params![run_id, row]))
                .map_err(&ctx)?;
            if !known {
                return Err(format!(
                    "record the outcome of row {row_no} of run {run_id}: no such row"
                ));
            }
            let account_id = held.accounts.remove(&(*run_id, row));
            let prior = match &result.prior_state {
                Some(state) => Some(
                    held.states
                        .record(conn, chain, *run_id, state)
                        .map_err(&ctx)?,
                ),
                None => None,
            };
            let (state, patch) = match prior {
                Some(p) => (Some(p.state), p.patch),
                None => (None, None),
            };
            chain
                .append(
                    conn,
                    &ROW_OUTCOMES,
                    &[
                        &account_id,
                        &result.error,
                        at,
                        &result.outcome,
                        &patch,
                        &state,
                        &result.result,
                        &row,
                        run_id,
                    ],
                )
                .map_err(&ctx)?;
            Ok(0)
        }
        Record::AttemptStarted { start, at, .. } => {
            let ctx = context("record a request");
            let row_no = start.row_no.map(int).transpose().map_err(&ctx)?;
            chain
                .append(
                    conn,
                    &REQUESTS,
                    &[
                        &start.attempt,
                        &start.method,
                        &start.path,
                        &row_no,
                        &start.run_id,
                        at,
                    ],
                )
                .map_err(&ctx)
        }
        Record::AttemptFinished {
            run_id,
            id,
            status,
            error,
            elapsed,
        } => {
            let ctx = context("record the end of a request");
            let request = int(*id).map_err(&ctx)?;
            // The result is filed under the run the caller names; matching it here too means a
            // wrong run id finds no request and stops the writer, instead of filing the result
            // under another run than the request's.
            let known = conn
                .prepare_cached("SELECT 1 FROM requests WHERE seq = ?1 AND run_id = ?2")
                .and_then(|mut stmt| stmt.exists(params![request, run_id]))
                .map_err(&ctx)?;
            if !known {
                return Err(format!(
                    "record the end of request {id}: no such request in run {run_id}"
                ));
            }
            let duration_us = i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX);
            chain
                .append(
                    conn,
                    &REQUEST_RESULTS,
                    &[&duration_us, error, &request, run_id, status],
                )
                .map_err(&ctx)?;
            Ok(0)
        }
    }
}

/// Fails unless `run_id` is a run of the log.
fn known_run(
    conn: &Connection,
    run_id: i64,
    ctx: &impl Fn(rusqlite::Error) -> String,
) -> Result<(), String> {
    let known = conn
        .prepare_cached("SELECT 1 FROM run_starts WHERE id = ?1")
        .and_then(|mut stmt| stmt.exists([run_id]))
        .map_err(ctx)?;
    if known {
        Ok(())
    } else {
        Err(format!("record the end of run {run_id}: no such run"))
    }
}
