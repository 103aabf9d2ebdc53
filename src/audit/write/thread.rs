//! The writer thread: it owns the write connection, takes the messages of every handle in
//! groups, applies each group in one transaction (`apply.rs`), commits, and only then answers the
//! callers waiting on the group's records. The first failed commit stops it for good: it is told
//! to every handle at once, and every later record is refused.

use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::mpsc;

use super::apply::{Applied, Held, Signer, apply_unless_locked, context, write_accounts};
use super::files::LogFiles;
use super::{Failure, Msg, Record, Reply};
use crate::audit::AuditError;
use crate::audit::chain::ChainHead;
use crate::audit::db::{self, Durability};
use crate::audit::process::WriterIdentity;
use crate::audit::sign::CheckpointKey;

/// The most messages applied in one transaction, so one commit (and the wait of its callers)
/// stays short even when senders outpace the disk.
const GROUP_CAP: usize = 4096;

/// Statements the writer keeps prepared: one insert per table of facts, and its checks.
const STATEMENT_CACHE: usize = 32;

/// The writer's page cache, in KiB (SQLite's default is 2 MiB).
const PAGE_CACHE_KIB: i64 = 16 * 1024;

/// Marks the writer failed if its thread unwinds, so that senders stop at once instead of
/// learning it from a closed channel on their next awaited call.
struct PanicGuard(Arc<Failure>);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.set("the audit writer thread panicked");
        }
    }
}

/// The writer thread's state.
pub(super) struct Writer {
    conn: Connection,
    identity: WriterIdentity,
    /// The key checkpoints are signed with, if any.
    key: Option<CheckpointKey>,
    /// What the writer keeps between records.
    held: Held,
    /// Why the writer stopped writing, once it has.
    failed: Arc<Failure>,
    /// The files the writer writes.
    files: LogFiles,
}

impl Writer {
    /// Opens (creating with mode 0600, migrating) the log at `path` for the writer thread, which
    /// tells its failures through `failed`.
    pub(super) fn open(
        path: &Path,
        durability: Durability,
        key: Option<CheckpointKey>,
        failed: Arc<Failure>,
    ) -> Result<Writer, AuditError> {
        let conn = db::open(path, durability)?;
        // Every statement the writer runs stays prepared.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // The pages a group touches again and again (the ends of the tables and their indexes)
        // stay in memory instead of being read back from the WAL.
        conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
        let files = LogFiles::of(path).map_err(|source| AuditError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Writer {
            conn,
            identity: WriterIdentity::current(),
            key,
            held: Held::default(),
            failed,
            files,
        })
    }

    /// The thread's loop: one group per turn until closed or every handle is gone.
    pub(super) fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let _guard = PanicGuard(self.failed.clone());
        let mut close_replies = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut group = vec![first];
            while group.len() < GROUP_CAP {
                match rx.try_recv() {
                    Ok(msg) => group.push(msg),
                    Err(_) => break,
                }
            }
            close_replies.extend(self.apply_group(group, false));
            if !close_replies.is_empty() {
                break;
            }
        }
        // Every handle is gone without a close: the held account ids still go in.
        if close_replies.is_empty() && !self.held.accounts.is_empty() {
            self.apply_group(Vec::new(), true);
        }
        // Refuse whatever raced with close; the senders learn that the log is closed.
        rx.close();
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Record(record) => refuse(record, "the audit log is closed"),
                Msg::Close { reply } => close_replies.push(reply),
            }
        }
        let mut result = match self.failed.text.get() {
            Some(text) => Err(text.clone()),
            None => Ok(()),
        };
        // Closing the last connection checkpoints the WAL into the main file.
        if let Err((_, e)) = self.conn.close()
            && result.is_ok()
        {
            result = Err(format!("close the audit log: {e}"));
        }
        for reply in close_replies {
            let _ = reply.send(result.clone().map_err(AuditError::WriterGone));
        }
    }

    /// Applies one group in one transaction and answers its callers; returns the replies of any
    /// close requests in it, which are answered when the thread ends. The held account ids are
    /// written too when the group closes the writer, or when `last` says no group follows.
    fn apply_group(&mut self, group: Vec<Msg>, last: bool) -> Vec<Reply<()>> {
        let mut closes = Vec::new();
        let mut records = Vec::with_capacity(group.len());
        for msg in group {
            match msg {
                Msg::Record(record) => records.push(record),
                Msg::Close { reply } => closes.push(reply),
            }
        }
        if let Some(text) = self.failed.text.get() {
            records.into_iter().for_each(|r| refuse(r, text));
            return closes;
        }
        // The answers are held back until the commit: a caller learns of its record only once
        // the record is durable.
        let mut ids = Vec::with_capacity(records.len());
        let last = last || !closes.is_empty();
        let result = (|| -> Result<(), String> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(context("begin a transaction"))?;
            // Read once per group, under the group's write lock: see `ChainHead`.
            let mut chain = ChainHead::read(&tx).map_err(context("read the head of the chain"))?;
            let signer = Signer {
                me: &self.identity,
                key: self.key.as_ref(),
            };
            for record in &records {
                ids.push(apply_unless_locked(
                    &tx,
                    &signer,
                    &mut chain,
                    &mut self.held,
                    record,
                )?);
            }
            if last {
                write_accounts(&tx, &mut chain, &mut self.held.accounts, None)?;
            }
            // A commit into a file nobody can open any more is no record: check, under the
            // group's write lock, that the path still names the files this writer writes.
            self.files.check()?;
            tx.commit().map_err(context("commit"))
        })();
        match result {
            Ok(()) => {
                for (record, id) in records.into_iter().zip(ids) {
                    succeed(record, id);
                }
            }
            Err(text) => {
                // The transaction rolled back as it dropped: nothing of this group is in the
                // file, and every caller of it is told so.
                tracing::error!("the audit log could not be written: {text}");
                // The states this group stored are gone with it.
                self.held.states.forget();
                records.into_iter().for_each(|r| refuse(r, &text));
                self.failed.set(&text);
            }
        }
        closes
    }
}

/// The reply channel of a caller waiting for its record's commit.
enum Waiter {
    RunId(Reply<i64>),
    StreamedRunId(Reply<Option<i64>>),
    Done(Reply<()>),
    AttemptId(Reply<u64>),
}

impl Record {
    /// The caller's reply channel, if it waits.
    fn into_waiter(self) -> Option<Waiter> {
        match self {
            Record::BeginRun { reply, .. } => Some(Waiter::RunId(reply)),
            Record::BeginRunStreamed { reply, .. } => Some(Waiter::StreamedRunId(reply)),
            Record::AddRows { reply, .. }
            | Record::EndRun { reply, .. }
            | Record::ResumeRun { reply, .. } => Some(Waiter::Done(reply)),
            Record::AttemptStarted { reply, .. } => Some(Waiter::AttemptId(reply)),
            Record::RowAccount { .. }
            | Record::RowFinished { .. }
            | Record::AttemptFinished { .. } => None,
        }
    }
}

// A caller that stopped waiting (its task was dropped) needs no answer, hence the ignored send
// results below.

/// Answers a committed record's caller, if it waits; `id` is the rowid the record got, or the
/// run that holds the lock the record was refused for.
fn succeed(record: Record, id: Applied) {
    let id = match id {
        Applied::Id(id) => id,
        Applied::Held(holder) => {
            let locked = || AuditError::Locked(Box::new(holder.clone()));
            match record.into_waiter() {
                Some(Waiter::RunId(reply)) => drop(reply.send(Err(locked()))),
                Some(Waiter::StreamedRunId(reply)) => drop(reply.send(Err(locked()))),
                Some(Waiter::Done(reply)) => drop(reply.send(Err(locked()))),
                Some(Waiter::AttemptId(reply)) => drop(reply.send(Err(locked()))),
                None => {}
            }
            return;
        }
    };
    match record.into_waiter() {
        Some(Waiter::RunId(reply)) => drop(reply.send(Ok(id))),
        // A streamed run that was abandoned was rolled back and answers with no rowid.
        Some(Waiter::StreamedRunId(reply)) => drop(reply.send(Ok((id != 0).then_some(id)))),
        Some(Waiter::Done(reply)) => drop(reply.send(Ok(()))),
        Some(Waiter::AttemptId(reply)) => {
            let id = u64::try_from(id)
                .expect("SQLite hands out positive rowids to a table that never sets them");
            drop(reply.send(Ok(id)))
        }
        None => {}
    }
}

/// Answers the caller of a record that will not be written, if it waits.
pub(super) fn refuse(record: Record, text: &str) {
    let gone = || AuditError::WriterGone(text.to_string());
    match record.into_waiter() {
        Some(Waiter::RunId(reply)) => drop(reply.send(Err(gone()))),
        Some(Waiter::StreamedRunId(reply)) => drop(reply.send(Err(gone()))),
        Some(Waiter::Done(reply)) => drop(reply.send(Err(gone()))),
        Some(Waiter::AttemptId(reply)) => drop(reply.send(Err(gone()))),
        None => {}
    }
}
