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
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use rusqlite::Connection;

    use super::*;
    use crate::audit::fixtures::{
        attempt, log_with_run, new_rows, new_run, new_run_on, outcome, writer_gone,
    };

    fn is_timestamp(s: &str) -> bool {
        let b = s.as_bytes();
        s.len() == 24
            && b[4] == b'-'
            && b[10] == b'T'
            && b[19] == b'.'
            && b[23] == b'Z'
            && time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .is_ok()
    }

    #[tokio::test]
    async fn records_show_up_in_the_three_views() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let writer = AuditWriter::spawn(&path).unwrap();
        let audit = writer.handle();

        let run_id = audit.begin_run(new_run()).await.unwrap();
        let mut rows = new_rows(3);
        rows[1].object_name = Some("Finance VMs".into());
        rows[1].annotations = Some(r#"{"team":"ops"}"#.into());
        rows[1].comment = Some("quarterly review".into());
        audit.add_rows(run_id, rows).await.unwrap();

        audit.row_account(run_id, 0, "11111111-2222-3333-4444-555555555555");
        let a1 = audit
            .attempt_started(attempt(run_id, Some(0), 1))
            .await
            .unwrap();
        audit.attempt_finished(run_id, a1, Some(503), None, Duration::from_micros(12_500));
        let a2 = audit
            .attempt_started(attempt(run_id, Some(0), 2))
            .await
            .unwrap();
        audit.attempt_finished(run_id, a2, Some(204), None, Duration::from_millis(3));
        let a3 = audit
            .attempt_started(attempt(run_id, None, 1))
            .await
            .unwrap();
        audit.attempt_finished(
            run_id,
            a3,
            None,
            Some("connection reset".into()),
            Duration::ZERO,
        );
        audit.row_finished(
            run_id,
            0,
            RowResult {
                outcome: "applied".into(),
                error: None,
                prior_state: Some(r#"{"roles":[]}"#.into()),
                result: Some(r#"{"role":"Portal User"}"#.into()),
            },
        );
        audit.row_finished(
            run_id,
            1,
            RowResult {
                error: Some("EM refused: 400 bad scope".into()),
                ..outcome("failed")
            },
        );
        audit.end_run(run_id, RunStatus::Failed).await.unwrap();
        writer.close().await.unwrap();

        let conn = Connection::open(&path).unwrap();
        let summary = conn
            .query_row(
                "SELECT kind, parent_run_id, status, started_at, ended_at, operator, server_url,
                        wire, tls_verify, insecure, plan_file, plan_sha256, tool_version, options,
                        rows, applied, noop, failed, skipped, in_doubt, pending, requests
                 FROM run_summary WHERE run_id = ?1",
                [run_id],
                |r| {
                    Ok((
                        (
                            r.get::<_, String>(0)?,
                            r.get::<_, Option<i64>>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, Option<String>>(4)?,
                            r.get::<_, String>(5)?,
                            r.get::<_, String>(6)?,
                        ),
                        (
                            r.get::<_, String>(7)?,
                            r.get::<_, bool>(8)?,
                            r.get::<_, bool>(9)?,
                            r.get::<_, Option<String>>(10)?,
                            r.get::<_, Option<String>>(11)?,
                            r.get::<_, String>(12)?,
                            r.get::<_, String>(13)?,
                        ),
                        [14, 15, 16, 17, 18, 19, 20, 21].map(|i| r.get::<_, i64>(i).unwrap()),
                    ))
                },
            )
            .unwrap();
        let (head, conn_info, counts) = summary;
        assert_eq!(head.0, "apply");
        assert_eq!(head.1, None);
        assert_eq!(head.2, "failed");
        assert!(is_timestamp(&head.3), "{}", head.3);
        assert!(is_timestamp(head.4.as_deref().unwrap()));
        assert!(head.3 <= *head.4.as_ref().unwrap());
        assert_eq!(head.5, "TECH\\alice");
        assert_eq!(head.6, "https://127.0.0.1:9398/api");
        assert_eq!(conn_info.0, "xml");
        assert!(conn_info.1);
        assert!(!conn_info.2);
        assert_eq!(conn_info.3.as_deref(), Some("plan.csv"));
        assert_eq!(conn_info.4, Some("ab".repeat(32)));
        assert_eq!(conn_info.5, "0.1.0");
        assert_eq!(conn_info.6, r#"{"concurrency":4}"#);
        // rows, applied, noop, failed, skipped, in_doubt, pending, requests
        assert_eq!(counts, [3, 1, 0, 1, 0, 0, 1, 3]);

        let mut stmt = conn
            .prepare(
                "SELECT row_no, line, account, account_id, action, target, object_name, outcome,
                        error, prior_state, result, ticket, comment, annotations, finished_at
                 FROM change_log WHERE run_id = ?1 ORDER BY row_no",
            )
            .unwrap();
        let rows: Vec<Vec<Option<String>>> = stmt
            .query_map([run_id], |r| {
                Ok((0..15)
                    .map(|i| match r.get_ref(i).unwrap() {
                        rusqlite::types::ValueRef::Null => None,
                        rusqlite::types::ValueRef::Integer(v) => Some(v.to_string()),
                        v => Some(v.as_str().unwrap().to_string()),
                    })
                    .collect())
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(rows.len(), 3);
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            rows[0][..14],
            [
                s("0"),
                s("2"),
                s("TECH\\acct0"),
                s("11111111-2222-3333-4444-555555555555"),
                s("assign-role"),
                s("Portal User"),
                None,
                s("applied"),
                None,
                s(r#"{"roles":[]}"#),
                s(r#"{"role":"Portal User"}"#),
                s("CHG-0"),
                None,
                None,
            ]
        );
        assert!(is_timestamp(rows[0][14].as_deref().unwrap()));
        assert_eq!(rows[1][6], s("Finance VMs"));
        assert_eq!(rows[1][7], s("failed"));
        assert_eq!(rows[1][8], s("EM refused: 400 bad scope"));
        assert_eq!(rows[1][12], s("quarterly review"));
        assert_eq!(rows[1][13], s(r#"{"team":"ops"}"#));
        assert_eq!(rows[2][3], None, "no account id yet");
        assert_eq!(rows[2][7], s("pending"));
        assert_eq!(rows[2][14], None, "not finished");

        let mut stmt = conn
            .prepare(
                "SELECT attempt_id, run_id, row_no, attempt, method, path, status, error,
                        started_at, duration_ms
                 FROM request_log ORDER BY attempt_id",
            )
            .unwrap();
        type Req = (
            i64,
            i64,
            Option<i64>,
            u32,
            String,
            String,
            Option<u16>,
            Option<String>,
            String,
            f64,
        );
        let reqs: Vec<Req> = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(reqs.len(), 3);
        assert_eq!(
            (
                reqs[0].0, reqs[0].1, reqs[0].2, reqs[0].3, reqs[0].6, reqs[0].9
            ),
            (a1 as i64, run_id, Some(0), 1, Some(503), 12.5)
        );
        assert_eq!(
            (reqs[0].4.as_str(), reqs[0].5.as_str()),
            ("POST", "/api/security/accounts/1/roles")
        );
        assert!(is_timestamp(&reqs[0].8));
        assert_eq!(
            (reqs[1].0, reqs[1].3, reqs[1].6, reqs[1].9),
            (a2 as i64, 2, Some(204), 3.0)
        );
        assert_eq!((reqs[2].0, reqs[2].2, reqs[2].6), (a3 as i64, None, None));
        assert_eq!(reqs[2].7.as_deref(), Some("connection reset"));
    }

    #[test]
    fn a_password_in_the_server_url_is_not_kept() {
        assert_eq!(
            without_password("https://svc:s3cret@em.example.com:9398/api"),
            "https://svc@em.example.com:9398/api"
        );
        assert_eq!(
            without_password("https://em.example.com:9398/api"),
            "https://em.example.com:9398/api"
        );
        assert_eq!(without_password("not a url"), "not a url");
    }

    #[tokio::test]
    async fn an_attempt_is_committed_when_it_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let writer = AuditWriter::spawn(&path).unwrap();
        let audit = writer.handle();
        let run_id = audit.begin_run(new_run()).await.unwrap();
        audit.add_rows(run_id, new_rows(1)).await.unwrap();
        let reader = Connection::open(&path).unwrap();
        for n in 1..=3 {
            let id = audit
                .attempt_started(attempt(run_id, Some(0), n))
                .await
                .unwrap();
            // Nothing else is sent before this read: the intent must already be durable and
            // visible to another connection, with no end recorded yet.
            let (attempt, duration): (u32, Option<f64>) = reader
                .query_row(
                    "SELECT attempt, duration_ms FROM request_log WHERE attempt_id = ?1",
                    [id as i64],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert_eq!((attempt, duration), (n, None));
            audit.attempt_finished(run_id, id, Some(200), None, Duration::from_millis(1));
        }
        writer.close().await.unwrap();
        let unfinished: i64 = reader
            .query_row(
                "SELECT count(*) FROM request_log WHERE duration_ms IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(unfinished, 0, "close flushes the fire-and-forget ends");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commit_under_many_senders_loses_nothing() {
        const TASKS: u64 = 16;
        const EACH: u64 = 1000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let writer = AuditWriter::spawn(&path).unwrap();
        let audit = writer.handle();
        let run_id = audit.begin_run(new_run()).await.unwrap();
        audit.add_rows(run_id, new_rows(TASKS)).await.unwrap();
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let audit = audit.clone();
                tokio::spawn(async move {
                    let mut ids = Vec::new();
                    for n in 0..EACH {
                        let id = audit
                            .attempt_started(attempt(run_id, Some(t), n as u32 + 1))
                            .await
                            .unwrap();
                        audit.attempt_finished(
                            run_id,
                            id,
                            Some(200),
                            None,
                            Duration::from_millis(n),
                        );
                        ids.push(id);
                    }
                    audit.row_finished(run_id, t, outcome("applied"));
                    ids
                })
            })
            .collect();
        let mut ids = Vec::new();
        for t in tasks {
            ids.extend(t.await.unwrap());
        }
        writer.close().await.unwrap();

        ids.sort_unstable();
        ids.dedup();
        assert_eq!(
            ids.len() as u64,
            TASKS * EACH,
            "every attempt got its own id"
        );
        let conn = Connection::open(&path).unwrap();
        let (requests, applied): (i64, i64) = conn
            .query_row(
                "SELECT requests, applied FROM run_summary WHERE run_id = ?1",
                [run_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((requests as u64, applied as u64), (TASKS * EACH, TASKS));
        let finished: i64 = conn
            .query_row(
                "SELECT count(*) FROM request_log WHERE status = 200 AND duration_ms IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(finished as u64, TASKS * EACH);
        // Per row, the attempt numbers are exactly 1..=EACH: nothing duplicated or missing.
        let per_row: i64 = conn
            .query_row(
                "SELECT count(*) FROM (SELECT row_no FROM request_log GROUP BY row_no
                  HAVING count(DISTINCT attempt) = ?1 AND min(attempt) = 1 AND max(attempt) = ?1)",
                [EACH as i64],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(per_row as u64, TASKS);
    }

    #[tokio::test]
    async fn a_failed_fire_and_forget_write_stops_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let writer = AuditWriter::spawn(&path).unwrap();
        let audit = writer.handle();
        let run_id = audit.begin_run(new_run()).await.unwrap();
        audit.add_rows(run_id, new_rows(1)).await.unwrap();
        // There is no row 7: the outcome would be lost, so the writer stops.
        audit.row_finished(run_id, 7, outcome("applied"));
        let err = audit
            .attempt_started(attempt(run_id, Some(0), 1))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, AuditError::WriterGone(t) if t.contains("row 7") && t.contains("no such row")),
            "{err}"
        );
        // Every later awaited call gets the same error, and so does close.
        let again = audit.end_run(run_id, RunStatus::Aborted).await.unwrap_err();
        assert_eq!(again.to_string(), err.to_string());
        let closed = writer.close().await.unwrap_err();
        assert_eq!(closed.to_string(), err.to_string());
        // Later records are refused, not lost silently.
        let late = audit.begin_run(new_run()).await.unwrap_err();
        assert!(late.to_string().contains("closed"), "{late}");
    }

    #[tokio::test]
    async fn the_end_of_an_attempt_told_under_another_run_stops_the_writer() {
        let (_dir, path, writer, first) = log_with_run(1).await;
        let audit = writer.handle();
        let second = audit.begin_run(new_run_on(1)).await.unwrap();
        let id = audit
            .attempt_started(attempt(first, Some(0), 1))
            .await
            .unwrap();
        // Its evidence would be filed under another run than the attempt's: nothing of it is
        // written, and the run stops.
        audit.attempt_finished(second, id, Some(200), None, Duration::ZERO);
        let err = audit.end_run(first, RunStatus::Aborted).await.unwrap_err();
        assert!(
            matches!(&err, AuditError::WriterGone(t) if t.contains("no such request in run")),
            "{err}"
        );
        assert!(writer.close().await.is_err());
        let conn = Connection::open(&path).unwrap();
        let ended: i64 = conn
            .query_row(
                "SELECT count(*) FROM attempts WHERE duration_ms IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(ended, 0);
    }

    #[tokio::test]
    async fn a_failed_group_is_rolled_back_and_reported_to_its_callers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let writer = AuditWriter::spawn(&path).unwrap();
        let audit = writer.handle();
        let run_id = audit.begin_run(new_run()).await.unwrap();
        // Stands in for a failing disk: every new attempt is refused by SQLite.
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON requests
                 BEGIN SELECT RAISE(ABORT, 'disk refused the write'); END;",
            )
            .unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|n| {
                let audit = audit.clone();
                tokio::spawn(async move { audit.attempt_started(attempt(run_id, None, n)).await })
            })
            .collect();
        for t in tasks {
            let err = t.await.unwrap().unwrap_err();
            assert!(err.to_string().contains("disk refused the write"), "{err}");
        }
        assert!(writer.close().await.is_err());
        let n: i64 = other
            .query_row("SELECT count(*) FROM request_log", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn an_account_id_is_written_with_its_rows_outcome_or_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let writer = AuditWriter::spawn(&path).unwrap();
        let audit = writer.handle();
        let first = audit
            .begin_run_with_rows(new_run(), new_rows(3))
            .await
            .unwrap();
        audit.row_account(first, 0, "a");
        audit.row_finished(first, 0, outcome("applied"));
        // Row 1 never finishes: its id goes in when the run ends.
        audit.row_account(first, 1, "b");
        audit.end_run(first, RunStatus::Aborted).await.unwrap();
        // And this one when the writer closes.
        let second = audit
            .begin_run_with_rows(new_run(), new_rows(1))
            .await
            .unwrap();
        audit.row_account(second, 0, "c");
        writer.close().await.unwrap();

        let conn = Connection::open(&path).unwrap();
        let ids: Vec<(i64, i64, Option<String>, String)> = conn
            .prepare("SELECT run_id, row_no, account_id, outcome FROM change_log ORDER BY 1, 2")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let s = |t: &str| Some(t.to_string());
        assert_eq!(
            ids,
            [
                (first, 0, s("a"), "applied".into()),
                (first, 1, s("b"), "pending".into()),
                (first, 2, None, "pending".into()),
                (second, 0, s("c"), "pending".into()),
            ]
        );
        // Row 0's id and outcome are one record; row 1's id is a record of its own.
        let updates: Vec<(String, i64, String)> = conn
            .prepare(
                "SELECT kind, ref, content FROM evidence_log
                 WHERE kind NOT IN ('row', 'run', 'end', 'checkpoint') AND run_id = ?1
                 ORDER BY seq",
            )
            .unwrap()
            .query_map([first], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(updates.len(), 2, "{updates:?}");
        assert_eq!((updates[0].0.as_str(), updates[0].1), ("outcome", 0));
        assert!(
            updates[0]
                .2
                .starts_with(r#"{"account_id":"a","error":null,"finished_at":"#),
            "{}",
            updates[0].2
        );
        assert_eq!(
            updates[1],
            (
                "account".to_string(),
                1,
                format!(r#"{{"account_id":"b","row_no":1,"run_id":{first}}}"#)
            )
        );
        let verified = crate::audit::AuditReader::open(&path)
            .unwrap()
            .verify(None, None)
            .unwrap();
        assert!(verified.holds(), "{:?}", verified.problems);
    }

    #[tokio::test]
    async fn close_flushes_without_any_awaited_call() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let writer = AuditWriter::spawn(&path).unwrap();
        let audit = writer.handle();
        let run_id = audit.begin_run(new_run()).await.unwrap();
        audit.add_rows(run_id, new_rows(500)).await.unwrap();
        for i in 0..500 {
            audit.row_finished(run_id, i, outcome("noop"));
        }
        writer.close().await.unwrap();
        let conn = Connection::open(&path).unwrap();
        let noop: i64 = conn
            .query_row("SELECT noop FROM run_summary", [], |r| r.get(0))
            .unwrap();
        assert_eq!(noop, 500);
    }

    /// Measures the writer's sustained records per second, with FULL and NORMAL durability, in
    /// two shapes of load: many concurrent awaited intents (each request of a run), and a stream
    /// of fire-and-forget row outcomes; each record carries its evidence in the hash chain. Then
    /// measures `verify` on the last log. Run with
    /// `cargo test --release --lib audit::write::tests::throughput -- --ignored --nocapture`;
    /// `EMBATCH_BENCH_DIR` chooses the file system (default: the system's temporary directory).
    #[ignore = "a measurement, not a check; prints records per second"]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn throughput() {
        let base = std::env::var_os("EMBATCH_BENCH_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        for durability in [Durability::Full, Durability::Normal] {
            for senders in [16u64, 256] {
                let dir = tempfile::tempdir_in(&base).unwrap();
                let writer =
                    AuditWriter::spawn_with(&dir.path().join("a.db"), durability, None).unwrap();
                let audit = writer.handle();
                let run_id = audit.begin_run(new_run()).await.unwrap();
                audit.add_rows(run_id, new_rows(senders)).await.unwrap();
                let each = 40_000 / senders;
                let started = Instant::now();
                let barrier = Arc::new(tokio::sync::Barrier::new(senders as usize));
                let tasks: Vec<_> = (0..senders)
                    .map(|t| {
                        let audit = audit.clone();
                        let barrier = barrier.clone();
                        tokio::spawn(async move {
                            barrier.wait().await;
                            for n in 0..each {
                                let id = audit
                                    .attempt_started(attempt(run_id, Some(t), n as u32 + 1))
                                    .await
                                    .unwrap();
                                audit.attempt_finished(run_id, id, Some(200), None, Duration::ZERO);
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                writer.close().await.unwrap();
                let records = 2 * senders * each;
                let secs = started.elapsed().as_secs_f64();
                println!(
                    "{durability:?}: {senders} senders, awaited intent + end: {records} records in {secs:.2}s = {:.0} records/s",
                    records as f64 / secs
                );
            }

            let dir = tempfile::tempdir_in(&base).unwrap();
            let writer =
                AuditWriter::spawn_with(&dir.path().join("b.db"), durability, None).unwrap();
            let audit = writer.handle();
            let run_id = audit.begin_run(new_run()).await.unwrap();
            let rows = 200_000;
            let started = Instant::now();
            audit.add_rows(run_id, new_rows(rows)).await.unwrap();
            for i in 0..rows {
                audit.row_finished(run_id, i, outcome("applied"));
            }
            writer.close().await.unwrap();
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{durability:?}: add {rows} rows + {rows} fire-and-forget outcomes: {:.0} records/s",
                (2 * rows) as f64 / secs
            );

            let reader = crate::audit::AuditReader::open(&dir.path().join("b.db")).unwrap();
            let started = Instant::now();
            let verified = reader.verify(None, None).unwrap();
            let secs = started.elapsed().as_secs_f64();
            assert!(verified.holds());
            println!(
                "{durability:?}: verify {} evidence records: {:.0} records/s",
                verified.records,
                verified.records as f64 / secs
            );
        }
    }

    fn runs_recorded(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn a_second_run_on_a_server_is_refused_while_the_first_runs() {
        let (_dir, path, writer, first) = log_with_run(1).await;
        let audit = writer.handle();
        // Another writer, as a second process would have: the check is the file's, not the
        // handle's.
        let other = AuditWriter::spawn(&path).unwrap();
        let err = other
            .handle()
            .begin_run_with_rows(new_run(), new_rows(2))
            .await
            .unwrap_err();
        let AuditError::Locked(holder) = &err else {
            panic!("not refused for the lock: {err}");
        };
        assert_eq!(holder.run_id, first);
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.operator, "TECH\\alice");
        assert!(err.to_string().contains("--wait"), "{err}");
        // Nothing of the refused run was kept, and the refusal is no failure of the log.
        assert_eq!(runs_recorded(&path), 1);
        assert!(other.handle().failure().is_none());
        // Another server, and a run that only reads, do not wait for this lock.
        other.handle().begin_run(new_run_on(1)).await.unwrap();
        let snapshot = NewRun {
            kind: "snapshot".into(),
            ..new_run()
        };
        other.handle().begin_run(snapshot).await.unwrap();
        // Once the first run ends, the server is free again.
        audit.end_run(first, RunStatus::Completed).await.unwrap();
        let (rx_tx, rx) = std::sync::mpsc::sync_channel(1);
        rx_tx.send(RowBatch::End).unwrap();
        let third = other
            .handle()
            .begin_run_streamed(new_run(), rx)
            .await
            .unwrap();
        assert!(third.is_some());
        other.close().await.unwrap();
        writer.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_run_left_running_by_a_process_that_is_gone_holds_no_lock() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let (_dir, path, writer, first) = log_with_run(1).await;
        // The run's writer is now a process that does not exist: a crash.
        writer_gone(&path, first);
        let audit = writer.handle();
        let second = audit.begin_run(new_run()).await.unwrap();
        // While the second runs, resuming the crashed first one is refused: the second holds
        // the server.
        let err = audit.resume_run(first).await.unwrap_err();
        assert!(
            matches!(&err, AuditError::Locked(h) if h.run_id == second),
            "{err}"
        );
        audit.end_run(second, RunStatus::Completed).await.unwrap();
        audit.resume_run(first).await.unwrap();
        writer.close().await.unwrap();
    }
}
