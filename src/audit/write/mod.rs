//! The single writer: one thread owns the SQLite connection; everyone else sends it messages.
//!
//! The thread commits in groups: it blocks for one message, drains whatever else is queued (up
//! to a cap), applies them all in one transaction, commits, and only then answers the
//! callers waiting on them. So an awaited call such as [`AuditHandle::attempt_started`] returns
//! only once its record is durable, while many concurrent callers share one fsync. Fire-and-forget
//! records ride along with the next group, and [`AuditWriter::close`] flushes the rest.
//!
//! A row's account id ([`AuditHandle::row_account`]) is held by the writer and written with the
//! row's outcome, in one update and one evidence record, instead of an update and a record of
//! its own; ids of rows that never finish are written when their run ends, or when the writer
//! closes. Until then, the paths of the row's requests (committed before they are sent) name the
//! account.
//!
//! A failed write is not retried: the writer remembers it, answers every later awaited call with
//! [`AuditError::WriterGone`] and drops later fire-and-forget records, so the run stops instead
//! of making changes that go unrecorded.
//!
//! This file is the senders' side: the handles, and the messages they send. The thread and its
//! group commit are in `thread.rs`, the SQL and evidence of each record in `apply.rs`, and the
//! check that the log's path still names the files being written in `files.rs`.

mod apply;
mod files;
mod states;

pub(super) use states::PriorStates;
mod thread;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::db::{self, Durability};
use super::sign::CheckpointKey;
use super::{AttemptStart, AuditError, NewRun, RowBatch, RowColumns, RowResult, RunStatus};
use thread::Writer;

/// The writer thread. Close it to flush and stop.
pub struct AuditWriter {
    handle: AuditHandle,
    thread: JoinHandle<()>,
}

/// A cheap, cloneable way to send records to the writer.
#[derive(Clone, Debug)]
pub struct AuditHandle {
    tx: mpsc::UnboundedSender<Msg>,
    /// The log's file, for readers that work alongside the writer.
    path: Arc<Path>,
    /// Why the writer stopped writing, once it has: shared, so that a sender learns of the
    /// failure at once, not only on its next awaited call.
    failure: Arc<Failure>,
}

/// The writer's first failure, told to every handle as it happens.
#[derive(Debug, Default)]
struct Failure {
    text: std::sync::OnceLock<String>,
    /// Cancelled when `text` is set, for those who wait for a failure.
    signal: tokio_util::sync::CancellationToken,
}

impl Failure {
    /// Records the first failure; later ones add nothing, since the first one stopped the log.
    fn set(&self, text: &str) {
        let _ = self.text.set(text.to_string());
        self.signal.cancel();
    }
}

/// The answer to an awaited message.
type Reply<T> = oneshot::Sender<Result<T, AuditError>>;

/// A message for the writer thread.
enum Msg {
    /// Something to write.
    Record(Record),
    /// Commit everything before it, stop, and answer with the writer's final state.
    Close { reply: Reply<()> },
}

/// One record for the writer thread, with the caller's reply channel if it waits.
enum Record {
    BeginRun {
        // Boxed: a run is much larger than the other records, which are far more numerous.
        run: Box<NewRun>,
        rows: Vec<RowColumns>,
        at: String,
        reply: Reply<i64>,
    },
    BeginRunStreamed {
        run: Box<NewRun>,
        // Read inside the run's transaction until the sender ends or abandons the stream.
        batches: std::sync::mpsc::Receiver<RowBatch>,
        at: String,
        reply: Reply<Option<i64>>,
    },
    AddRows {
        run_id: i64,
        rows: Vec<RowColumns>,
        reply: Reply<()>,
    },
    EndRun {
        run_id: i64,
        status: RunStatus,
        at: String,
        reply: Reply<()>,
    },
    ResumeRun {
        run_id: i64,
        at: String,
        reply: Reply<()>,
    },
    RowAccount {
        run_id: i64,
        row_no: u64,
        account_id: String,
    },
    RowFinished {
        run_id: i64,
        row_no: u64,
        result: RowResult,
        at: String,
    },
    AttemptStarted {
        start: AttemptStart,
        at: String,
        reply: Reply<u64>,
    },
    AttemptFinished {
        run_id: i64,
        id: u64,
        status: Option<u16>,
        error: Option<String>,
        elapsed: Duration,
    },
}

impl AuditWriter {
    /// Opens (creating with mode 0600, migrating) the log at `path` and starts the writer.
    pub fn spawn(path: &Path) -> Result<AuditWriter, AuditError> {
        AuditWriter::spawn_with(path, Durability::Full, None)
    }

    /// Like [`AuditWriter::spawn`], signing each checkpoint with `key`.
    pub fn spawn_signed(path: &Path, key: CheckpointKey) -> Result<AuditWriter, AuditError> {
        AuditWriter::spawn_with(path, Durability::Full, Some(key))
    }

    /// Like [`AuditWriter::spawn`], with a chosen durability and key.
    pub(crate) fn spawn_with(
        path: &Path,
        durability: Durability,
        key: Option<CheckpointKey>,
    ) -> Result<AuditWriter, AuditError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let failure = Arc::new(Failure::default());
        let writer = Writer::open(path, durability, key, failure.clone())?;
        let thread = std::thread::Builder::new()
            .name("embatch-audit".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| AuditError::Io {
                path: path.display().to_string(),
                source,
            })?;
        Ok(AuditWriter {
            handle: AuditHandle {
                tx,
                path: Arc::from(path),
                failure,
            },
            thread,
        })
    }

    /// A handle for senders.
    pub fn handle(&self) -> AuditHandle {
        self.handle.clone()
    }

    /// Flushes everything sent so far and stops the writer.
    ///
    /// Records sent through other handles after this are refused (awaited calls answer
    /// [`AuditError::WriterGone`]). Reports the error that stopped the writer earlier, if any.
    pub async fn close(self) -> Result<(), AuditError> {
        let (reply, answer) = oneshot::channel();
        let sent = self.handle.tx.send(Msg::Close { reply }).is_ok();
        let result = if sent {
            answer.await.unwrap_or_else(|_| {
                Err(AuditError::WriterGone(
                    "the writer thread ended without answering".into(),
                ))
            })
        } else {
            Err(AuditError::WriterGone("the writer thread is gone".into()))
        };
        // The thread answers as its very last act, so this join does not block for long.
        if self.thread.join().is_err() {
            return Err(AuditError::WriterGone("the writer thread panicked".into()));
        }
        result
    }
}

impl AuditHandle {
    /// Sends an awaited record and waits for the commit that holds it.
    async fn call<T>(&self, record: impl FnOnce(Reply<T>) -> Record) -> Result<T, AuditError> {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Msg::Record(record(reply))).is_err() {
            return Err(AuditError::WriterGone("the audit log is closed".into()));
        }
        answer.await.unwrap_or_else(|_| {
            Err(AuditError::WriterGone(
                "the writer thread ended without answering".into(),
            ))
        })
    }

    /// Sends a fire-and-forget record.
    fn post(&self, record: Record) {
        if self.tx.send(Msg::Record(record)).is_err() {
            // Only after close (or a panic of the writer thread); the run's next awaited call,
            // or close itself, reports it.
            tracing::error!("an audit record was dropped: the audit log is closed");
        }
    }

    /// Why the log stopped taking records, once a write has failed (or the writer is gone).
    /// From then on no request may leave: it could not be recorded.
    pub fn failure(&self) -> Option<AuditError> {
        if let Some(text) = self.failure.text.get() {
            return Some(AuditError::WriterGone(text.clone()));
        }
        // A writer that closed normally has no failure, but takes no records either.
        self.tx
            .is_closed()
            .then(|| AuditError::WriterGone("the audit log is closed".into()))
    }

    /// Waits until a write to the log fails, and answers why: a run waits on this to stop at
    /// the first failure, not at its next awaited record.
    pub async fn failed(&self) -> AuditError {
        self.failure.signal.cancelled().await;
        self.failure()
            .expect("the failure signal is only given once the failure is set")
    }

    /// Records a new run; answers its id once committed.
    pub async fn begin_run(&self, mut run: NewRun) -> Result<i64, AuditError> {
        let at = db::now();
        run.server_url = without_password(&run.server_url);
        let run = Box::new(run);
        self.call(|reply| Record::BeginRun {
            run,
            rows: Vec::new(),
            at,
            reply,
        })
        .await
    }

    /// Records a new run together with its rows (all `pending`), in one transaction, so that
    /// a crash can never leave a run without its rows; answers its id once committed.
    pub async fn begin_run_with_rows(
        &self,
        mut run: NewRun,
        rows: Vec<RowColumns>,
    ) -> Result<i64, AuditError> {
        let at = db::now();
        run.server_url = without_password(&run.server_url);
        let run = Box::new(run);
        self.call(|reply| Record::BeginRun {
            run,
            rows,
            at,
            reply,
        })
        .await
    }

    /// Records a new run together with its rows (all `pending`), which arrive in `batches`
    /// while they are written, all in one transaction; answers the run's id once committed.
    ///
    /// The sender streams [`RowBatch::Rows`] and ends with [`RowBatch::End`]; a bounded channel
    /// keeps only a few batches in memory. A sender that goes away without `End` (the rows
    /// turned out to be wrong) abandons the run: nothing of it is recorded, and the answer is
    /// `None`. The writer records nothing else until the stream ends, so the sender must not
    /// wait on the writer meanwhile.
    pub async fn begin_run_streamed(
        &self,
        mut run: NewRun,
        batches: std::sync::mpsc::Receiver<RowBatch>,
    ) -> Result<Option<i64>, AuditError> {
        let at = db::now();
        run.server_url = without_password(&run.server_url);
        let run = Box::new(run);
        self.call(|reply| Record::BeginRunStreamed {
            run,
            batches,
            at,
            reply,
        })
        .await
    }

    /// The audit log's file, for read-only connections beside the writer's.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records the run's rows (all `pending`), committed before it answers.
    pub async fn add_rows(&self, run_id: i64, rows: Vec<RowColumns>) -> Result<(), AuditError> {
        self.call(|reply| Record::AddRows {
            run_id,
            rows,
            reply,
        })
        .await
    }

    /// Records the run's end, committed before it answers.
    pub async fn end_run(&self, run_id: i64, status: RunStatus) -> Result<(), AuditError> {
        let at = db::now();
        self.call(|reply| Record::EndRun {
            run_id,
            status,
            at,
            reply,
        })
        .await
    }

    /// Takes over `run_id` for a resume: marks it running under this process again and records
    /// the resume, with the status the run had before.
    pub async fn resume_run(&self, run_id: i64) -> Result<(), AuditError> {
        let at = db::now();
        self.call(|reply| Record::ResumeRun { run_id, at, reply })
            .await
    }

    /// Records the account id a row resolved to (fire and forget). It is written with the row's
    /// outcome, or when the run ends or the writer closes if the row never finishes.
    pub fn row_account(&self, run_id: i64, row_no: u64, account_id: &str) {
        self.post(Record::RowAccount {
            run_id,
            row_no,
            account_id: account_id.to_string(),
        });
    }

    /// Records a row's outcome (fire and forget; committed with the next group).
    pub fn row_finished(&self, run_id: i64, row_no: u64, result: RowResult) {
        self.post(Record::RowFinished {
            run_id,
            row_no,
            result,
            at: db::now(),
        });
    }

    /// Records an attempt's intent and answers its id once the intent is committed.
    pub async fn attempt_started(&self, start: AttemptStart) -> Result<u64, AuditError> {
        let at = db::now();
        self.call(|reply| Record::AttemptStarted { start, at, reply })
            .await
    }

    /// Records how attempt `id` of run `run_id` ended (fire and forget). The run is the one its
    /// [`AttemptStart`] named; its evidence record is filed under it.
    pub fn attempt_finished(
        &self,
        run_id: i64,
        id: u64,
        status: Option<u16>,
        error: Option<String>,
        elapsed: Duration,
    ) {
        self.post(Record::AttemptFinished {
            run_id,
            id,
            status,
            error,
            elapsed,
        });
    }
}

/// `url` without a password in its user info: a URL given as `https://user:secret@host/api`
/// must not carry the secret into the log. Runs are recorded, and their server's lock looked
/// up, by this form.
pub fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only URLs that cannot have a password refuse this, and this one has one.
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests;
