//! The audit log: a SQLite file (mode 0600) created and upgraded from the numbered SQL files in
//! `migrations/`, written by one writer thread that owns the connection and commits in groups,
//! read by the queries behind `runs`, `show`, `report` and the failures a run lists after its
//! summary, checked offline by `verify`, and streamed out for auditors by `export`.
//!
//! Only this module speaks SQL: everyone else reads through the typed methods of
//! [`AuditReader`] and [`RunRows`], and writes through an [`AuditHandle`].
//!
//! Every HTTP attempt is recorded as an intent, committed, before the request is sent; so a
//! crash leaves evidence of what may have been sent. No secret is ever written here.
//!
//! The log is append-only: each fact is a row written once into a table of its kind, numbered and
//! hashed into one chain (`chain.rs`). The tables are private; four views are the stable
//! interface for auditors, and their column names do not change
//! (`migrations/02-append-only/up.sql` defines them):
//!
//! - `run_summary`, one row per run: `run_id`, `kind`, `parent_run_id`, `status`, `started_at`,
//!   `ended_at`, `operator`, `server_url`, `wire`, `tls_verify`, `insecure`, `plan_file`,
//!   `plan_sha256`, `tool_version`, `options`, and the counts `rows`, `applied`, `noop`,
//!   `failed`, `skipped`, `in_doubt`, `pending`, `requests`.
//! - `change_log`, one row per plan row: `run_id`, `row_no`, `line`, `account`, `account_id`,
//!   `action`, `target`, `object_name`, `outcome`, `error`, `prior_state`, `result`, `ticket`,
//!   `comment`, `annotations`, `finished_at`.
//! - `request_log`, one row per HTTP attempt: `attempt_id`, `run_id`, `row_no`, `attempt`,
//!   `method`, `path`, `status`, `error`, `started_at`, `duration_ms`. An attempt with neither
//!   status, error nor duration was about to be sent, or in flight, when its process stopped.
//!
//! - `evidence_log`, one row per record of the chain: `seq`, `kind`, `run_id`, `ref`, `content`
//!   (the text its hash covers), `prev_hash`, `hash`; `verify` recomputes the chain from the
//!   tables (`chain.rs` defines the records, `verify/` the checks).
//!
//! Timestamps are RFC 3339 in UTC with milliseconds (`2026-11-23T10:21:03.123Z`). The status
//! stored for a run whose process died is still `running`; [`AuditReader`] reports it as
//! `crashed`.

mod canon;
mod chain;
mod db;
mod export;
mod failures;
#[cfg(test)]
pub(crate) mod fixtures;
mod history;
mod lock;
mod migrate;
mod process;
mod read;
mod recorded;
mod rows;
mod sign;
mod verify;
mod write;

pub use chain::GENESIS;
pub use db::{CarriedOver, Migrated, migrate_log};
pub use export::{
    EXPORT_COLUMNS, ExportError, ExportFilter, ExportFormat, PrivateOutput, TimeWindow,
    WindowError, csv_safe,
};
pub use failures::{FailedRow, Failures, LineSource};
pub use history::Recreated;
pub use lock::LockHolder;
pub use read::{
    AttemptInfo, AuditReader, RowFilter, RowInfo, RunCounts, RunInfo, RunOptions, RunSelector,
};
pub use recorded::{RecordedRow, RowColumns};
pub use rows::{RowBatch, RunRows};
pub use sign::{CheckpointKey, KeyError, KeyFiles, public_key_from_file, write_key_pair};
pub use verify::{Anchor, Damage, MAX_PROBLEMS, Problem, Verification};
pub use write::{AuditHandle, AuditWriter, without_password};

/// A failure of the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The schema could not be created or upgraded.
    #[error("migrate the schema: {0}")]
    Migrate(String),
    /// A command that only reads was given a log of an older schema, which it does not change.
    #[error(
        "{path} was written by an older embatch (schema {version:02}), and a command that only \
         reads never changes it. `embatch verify` checks a log of schema 01 as it is; for the \
         other commands, bring it up to date with `embatch migrate --db {path}`, or, to keep \
         this file as it is (a copy on a read-only share, evidence), migrate a writable copy: \
         `cp {path} COPY && embatch migrate --db COPY`"
    )]
    OlderSchema {
        /// The log.
        path: String,
        /// Its schema version.
        version: i64,
    },
    /// A key of the checkpoints' signatures could not be made or read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The file could not be created or its mode set.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The writer thread is gone (it failed earlier, or was closed).
    #[error("the audit writer stopped: {0}")]
    WriterGone(String),
    /// The run asked for does not exist.
    #[error("no run {0} in the audit log")]
    NoSuchRun(String),
    /// Another live run changes the same server from this log; nothing was recorded.
    #[error(
        "{} is changing {} from this audit log; one run at a time changes a server. Wait for it \
         to end, or pass --wait to wait for it",
        .0,
        .0.server_url
    )]
    Locked(Box<LockHolder>),
}

/// A run to record.
#[derive(Clone, Debug)]
pub struct NewRun {
    /// `apply`, `replay`, `undo`, `resume`, `snapshot`.
    pub kind: String,
    /// The run this one replays, undoes or resumes.
    pub parent_run_id: Option<i64>,
    /// The logon user.
    pub operator: String,
    /// The API base URL.
    pub server_url: String,
    /// `xml` or `json`.
    pub wire: String,
    /// Whether the server's certificate was verified.
    pub tls_verify: bool,
    /// Whether `--insecure` was given.
    pub insecure: bool,
    /// The plan's file name.
    pub plan_file: Option<String>,
    /// The plan's SHA-256.
    pub plan_sha256: Option<String>,
    /// embatch's version.
    pub tool_version: String,
    /// The run's options, as JSON.
    pub options: String,
}

/// How a row ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowResult {
    /// `applied`, `noop`, `failed`, `skipped`, `in_doubt`.
    pub outcome: String,
    /// Why it failed, or a note.
    pub error: Option<String>,
    /// The account's state just before the row, as JSON.
    pub prior_state: Option<String>,
    /// Facts learnt by the row, as JSON (e.g. a created scope's id).
    pub result: Option<String>,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    /// Still running (or crashed while running).
    Running,
    /// Every row applied or no-op.
    Completed,
    /// Finished with failed or in-doubt rows.
    Failed,
    /// Stopped early: Ctrl-C or `--max-failures`.
    Interrupted,
    /// Setup failed (logon, resolve) or the log could not be written.
    Aborted,
}

impl RunStatus {
    /// The audit log's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Aborted => "aborted",
        }
    }
}

/// An HTTP attempt about to be sent.
#[derive(Clone, Debug)]
pub struct AttemptStart {
    /// The run.
    pub run_id: i64,
    /// The plan row it serves, if any.
    pub row_no: Option<u64>,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// The method.
    pub method: String,
    /// The URL path and query (never a header).
    pub path: String,
}
