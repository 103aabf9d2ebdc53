//! A run's rows kept in the log instead of in memory: the batches in which a run's rows are
//! streamed to the writer while it records them ([`RowBatch`]), and the read-only access through
//! which the runner fetches one account's rows back when it works on that account
//! ([`RunRows`]).
//!
//! The reads use connections of their own, opened read-only on the log's file: the writer keeps
//! the only write connection, and WAL mode lets these read what it has committed while it goes
//! on writing.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags};

use super::AuditError;
use super::db::BUSY_TIMEOUT;
use super::recorded::{OUTCOME_COLUMNS, ROW_COLUMNS, RecordedRow, RowColumns};

/// The page cache of each read connection, in KiB as SQLite's negative `cache_size` counts.
const READ_CACHE_KIB: i64 = -128;

/// The most row numbers asked for in one query, so one very large account does not build one
/// huge parameter.
const CHUNK: usize = 8192;

/// One message of a run's rows streamed to the writer (see
/// [`AuditHandle::begin_run_streamed`](super::AuditHandle::begin_run_streamed)).
#[derive(Debug)]
pub enum RowBatch {
    /// The next rows, in row order.
    Rows(Vec<RowColumns>),
    /// Every row was sent: the run and its rows may be committed. A sender that goes away
    /// without sending this abandons the run, and nothing of it is recorded.
    End,
}

/// Read-only access to the recorded rows of one run, shared by the workers of that run.
///
/// Connections are opened as they are needed and kept for the next fetch, so there are never
/// more than the fetches running at the same time. Every call blocks on SQLite: call it from a
/// blocking thread.
#[derive(Debug)]
pub struct RunRows {
    path: PathBuf,
    run_id: i64,
    idle: Mutex<Vec<Connection>>,
}

impl RunRows {
    /// Opens the rows of `run_id` in the log at `path`, which must exist.
    pub fn open(path: &Path, run_id: i64) -> Result<RunRows, AuditError> {
        let rows = RunRows {
            path: path.to_path_buf(),
            run_id,
            idle: Mutex::new(Vec::new()),
        };
        // One connection now, so a log that cannot be read fails the run before it starts.
        let conn = rows.connect()?;
        rows.give_back(conn);
        Ok(rows)
    }

    /// The rows numbered `row_nos` (ascending), in that order; an error if any of them is not
    /// recorded.
    pub fn fetch(&self, row_nos: &[u64]) -> Result<Vec<RecordedRow>, AuditError> {
        let conn = match self
            .idle
            .lock()
            .expect("the idle list is never poisoned")
            .pop()
        {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let result = self.fetch_with(&conn, row_nos);
        self.give_back(conn);
        result
    }

    /// The rows whose action is one of `actions`, in row order: the few rows a check before
    /// the run's first write needs, without reading the others.
    pub fn with_actions(&self, actions: &[&str]) -> Result<Vec<RecordedRow>, AuditError> {
        let conn = self.connect()?;
        let list = serde_json::to_string(actions).expect("a list of names always serializes");
        let mut stmt = conn.prepare(&format!(
            "SELECT {ROW_COLUMNS}, {OUTCOME_COLUMNS} FROM plan_rows
             WHERE run_id = ?1 AND action IN (SELECT value FROM json_each(?2))
             ORDER BY row_no"
        ))?;
        let rows = stmt
            .query_map(rusqlite::params![self.run_id, list], |r| {
                RecordedRow::read(r, 0)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn fetch_with(
        &self,
        conn: &Connection,
        row_nos: &[u64],
    ) -> Result<Vec<RecordedRow>, AuditError> {
        // The numbers go in as one JSON array, so any count shares one prepared statement.
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ROW_COLUMNS}, {OUTCOME_COLUMNS} FROM plan_rows
             WHERE run_id = ?1 AND row_no IN (SELECT value FROM json_each(?2))
             ORDER BY row_no"
        ))?;
        let mut rows = Vec::with_capacity(row_nos.len());
        for chunk in row_nos.chunks(CHUNK) {
            let list = serde_json::to_string(chunk).expect("a list of integers always serializes");
            let found = stmt.query_map(rusqlite::params![self.run_id, list], |r| {
                RecordedRow::read(r, 0)
            })?;
            for row in found {
                rows.push(row?);
            }
        }
        // Asked for in ascending order and answered in ascending order: any gap shows here.
        if rows.len() != row_nos.len()
            || rows
                .iter()
                .zip(row_nos)
                .any(|(r, n)| r.columns.row_no != *n)
        {
            return Err(AuditError::Sqlite(rusqlite::Error::QueryReturnedNoRows));
        }
        Ok(rows)
    }

    /// A new read-only connection to the log.
    fn connect(&self) -> Result<Connection, AuditError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        // A reader waits only on a checkpoint, and gives up after as long as the writer would.
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Each row is read once, so a page cache only costs memory: there is one per
        // connection, and a run may hold as many connections as it has workers.
        conn.pragma_update(None, "cache_size", READ_CACHE_KIB)?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        self.idle
            .lock()
            .expect("the idle list is never poisoned")
            .push(conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditWriter;
    use crate::audit::fixtures;

    #[tokio::test]
    async fn an_accounts_rows_come_back_in_order_and_gaps_are_errors() {
        let (_dir, path, writer, run_id) = fixtures::log_with_run(5).await;
        let reader = RunRows::open(&path, run_id).unwrap();
        let got = reader.fetch(&[1, 3, 4]).unwrap();
        assert_eq!(
            got.iter().map(|r| r.columns.row_no).collect::<Vec<_>>(),
            vec![1, 3, 4]
        );
        assert_eq!(got[0].end.outcome, "pending");
        assert!(reader.fetch(&[2, 9]).is_err(), "row 9 is not recorded");
        assert!(reader.fetch(&[]).unwrap().is_empty());
        writer.close().await.unwrap();
    }

    /// Streams `rows` in batches of `size`, ending the stream only when `end`.
    fn stream(
        rows: Vec<RowColumns>,
        size: usize,
        end: bool,
    ) -> (
        std::sync::mpsc::Receiver<RowBatch>,
        std::thread::JoinHandle<()>,
    ) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let sender = std::thread::spawn(move || {
            for chunk in rows.chunks(size) {
                tx.send(RowBatch::Rows(chunk.to_vec())).unwrap();
            }
            if end {
                tx.send(RowBatch::End).unwrap();
            }
        });
        (rx, sender)
    }

    #[tokio::test]
    async fn a_streamed_run_is_recorded_whole_with_its_evidence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let writer = AuditWriter::spawn(&path).unwrap();
        let handle = writer.handle();
        assert_eq!(handle.path(), path.as_path());
        let (rx, sender) = stream(fixtures::new_rows(10), 3, true);
        let run_id = handle
            .begin_run_streamed(fixtures::new_run(), rx)
            .await
            .unwrap()
            .expect("the stream ended");
        sender.join().unwrap();
        handle
            .end_run(run_id, crate::audit::RunStatus::Completed)
            .await
            .unwrap();
        writer.close().await.unwrap();
        let reader = crate::audit::AuditReader::open(&path).unwrap();
        assert_eq!(reader.recorded_rows(run_id).unwrap().len(), 10);
        let verification = reader.verify(None, None).unwrap();
        assert!(verification.holds(), "{:?}", verification.problems);
    }

    #[tokio::test]
    async fn an_abandoned_stream_records_nothing_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let writer = AuditWriter::spawn(&path).unwrap();
        let handle = writer.handle();
        let kept = handle.begin_run(fixtures::new_run()).await.unwrap();
        let (rx, sender) = stream(fixtures::new_rows(10), 4, false);
        let answer = handle
            .begin_run_streamed(fixtures::new_run_on(1), rx)
            .await
            .unwrap();
        sender.join().unwrap();
        assert_eq!(answer, None);
        // The writer still works, and the chain goes on from the record before the stream.
        handle.add_rows(kept, fixtures::new_rows(2)).await.unwrap();
        handle
            .end_run(kept, crate::audit::RunStatus::Completed)
            .await
            .unwrap();
        writer.close().await.unwrap();
        let reader = crate::audit::AuditReader::open(&path).unwrap();
        assert_eq!(reader.runs().unwrap().len(), 1);
        assert_eq!(reader.recorded_rows(kept).unwrap().len(), 2);
        let verification = reader.verify(None, None).unwrap();
        assert!(verification.holds(), "{:?}", verification.problems);
    }
}
