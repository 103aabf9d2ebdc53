//! One run at a time per server in a log: the run lock.
//!
//! Two runs that change the same EM from the same log would interleave their rows on the same
//! accounts, each deciding against a state the other is changing. So a run that changes EM
//! (every kind but `snapshot`, which only reads) holds the lock of its server while it is
//! `running` under a live process. The lock is no separate record: it is the `running` run
//! itself, and a run left `running` by a process that is gone (a crash, told apart as `runs`
//! tells it) holds nothing. The writer checks for a holder inside the transaction that starts
//! or resumes a run, so of two runs starting at once, exactly one gets through.

use rusqlite::{Connection, params};

use super::process::WriterIdentity;

/// The kinds of run that only read EM, and so neither hold nor wait for the lock.
const READ_ONLY_KINDS: &[&str] = &["snapshot"];

/// Whether a run of `kind` changes EM, and so takes its server's lock.
pub(crate) fn takes_lock(kind: &str) -> bool {
    !READ_ONLY_KINDS.contains(&kind)
}

/// The live run that holds a server's lock.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LockHolder {
    /// The run.
    pub run_id: i64,
    /// Its kind.
    pub kind: String,
    /// Who runs it.
    pub operator: String,
    /// The process that runs it.
    pub pid: u32,
    /// When it started, or when it was last resumed.
    pub since: String,
    /// The server it changes.
    pub server_url: String,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names and the URL came from the operator's input: the caller escapes the whole line.
        write!(
            f,
            "run {} ({}) by {}, pid {}, running since {}",
            self.run_id, self.kind, self.operator, self.pid, self.since
        )
    }
}

/// The live runs holding a lock: of `server_url` when given, else of every server.
pub(crate) fn holders(
    conn: &Connection,
    server_url: Option<&str>,
) -> rusqlite::Result<Vec<LockHolder>> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.id, r.kind, r.operator, r.writer_pid, r.writer_start, r.writer_boot_id,
                coalesce((SELECT max(resumed_at) FROM run_resumes WHERE run_id = r.id),
                         r.started_at),
                r.server_url
         FROM runs r
         WHERE r.status = 'running' AND (?1 IS NULL OR r.server_url = ?1)
         ORDER BY r.id",
    )?;
    let rows = stmt.query_map(params![server_url], |r| {
        let identity = WriterIdentity {
            pid: r.get(3)?,
            start: r
                .get::<_, Option<i64>>(4)?
                .and_then(|v| u64::try_from(v).ok()),
            boot_id: r.get(5)?,
        };
        let holder = LockHolder {
            run_id: r.get(0)?,
            kind: r.get(1)?,
            operator: r.get(2)?,
            pid: identity.pid,
            since: r.get(6)?,
            server_url: r.get(7)?,
        };
        Ok((holder, identity))
    })?;
    let mut live = Vec::new();
    for row in rows {
        let (holder, identity) = row?;
        if takes_lock(&holder.kind) && !identity.is_gone() {
            live.push(holder);
        }
    }
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_runs_that_change_em_take_the_lock() {
        for kind in ["apply", "replay", "undo", "rebuild-scopes"] {
            assert!(takes_lock(kind), "{kind}");
        }
        assert!(!takes_lock("snapshot"));
    }
}
