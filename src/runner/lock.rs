//! Waiting for a server's run lock (`--wait`): one run at a time changes a server from a log,
//! and a run asked to wait polls the log until the live run that holds the lock has ended.
//!
//! The wait is only a courtesy before trying: the lock itself is taken by the audit writer, in
//! the transaction that records the run, so a run that loses a race after its wait is refused
//! there, and waits again.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::audit::{AuditReader, LockHolder, without_password};
use crate::console::errln;
use crate::text;

use super::RunError;

/// How often the log is asked whether the lock is free. A run ends in at most this much longer
/// than it took; the reads are a few pages of a local file.
const POLL: Duration = Duration::from_millis(500);

/// Waits until no live run holds the lock of `server_url` in the log at `db`, saying on stderr
/// whom it waits for (once per holder). Answers `false` if `cancel` fired first.
pub async fn wait_for_lock(
    db: &Path,
    server_url: &str,
    cancel: &CancellationToken,
) -> Result<bool, RunError> {
    let server = without_password(server_url);
    let mut told: Option<i64> = None;
    loop {
        let Some(holder) = holder(db, &server)? else {
            if told.is_some() {
                errln!("embatch: the lock of {} is free", text::printable(&server));
            }
            return Ok(true);
        };
        if told != Some(holder.run_id) {
            errln!(
                "embatch: waiting for {} to end: it is changing {} from this audit log",
                text::printable(&holder.to_string()),
                text::printable(&server)
            );
            told = Some(holder.run_id);
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(false),
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// The live run holding the lock of `server`, if any; a log not made yet holds none.
fn holder(db: &Path, server: &str) -> Result<Option<LockHolder>, RunError> {
    if !db.exists() {
        return Ok(None);
    }
    let reader = AuditReader::open(db).map_err(RunError::Audit)?;
    Ok(reader
        .lock_holders(Some(server))
        .map_err(RunError::Audit)?
        .into_iter()
        .next())
}
