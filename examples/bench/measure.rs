//! What the benchmark reads back: the process's memory from `/proc/self/status`, and the
//! figures of a run from its audit log (`request_log` and `change_log`), which is the record
//! an auditor would use too.

use std::path::Path;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A `/proc/self/status` field in kibibytes (`VmHWM`, `VmRSS`), or 0 where there is none.
pub fn status_kib(field: &str) -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Mebibytes, for printing.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The bytes of an SQLite file with its write-ahead log, if one is left.
pub fn db_bytes(path: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    size(path) + size(Path::new(&wal))
}

/// What the audit log says about one run.
#[derive(Debug, Default)]
pub struct RunLog {
    /// HTTP attempts (`request_log` rows).
    pub requests: u64,
    /// Attempts that got an answer with a status below 400.
    pub ok: u64,
    /// Plan rows (`change_log` rows).
    pub rows: u64,
    /// Rows that resolved to an account (each one a `row_account` record).
    pub rows_with_account: u64,
    /// Each attempt's duration in milliseconds, sorted.
    pub durations_ms: Vec<f64>,
    /// Each attempt's start, in milliseconds since the epoch, sorted.
    pub starts_ms: Vec<i64>,
}

impl RunLog {
    /// Reads run `run_id` from the audit log at `db`.
    pub fn read(db: &Path, run_id: i64) -> rusqlite::Result<RunLog> {
        let conn = rusqlite::Connection::open(db)?;
        let mut log = RunLog::default();
        let mut stmt = conn
            .prepare("SELECT started_at, duration_ms, status FROM request_log WHERE run_id = ?1")?;
        let mut rows = stmt.query([run_id])?;
        while let Some(row) = rows.next()? {
            let started: String = row.get(0)?;
            log.requests += 1;
            if let Some(ms) = epoch_ms(&started) {
                log.starts_ms.push(ms);
            }
            if let Some(d) = row.get::<_, Option<f64>>(1)? {
                log.durations_ms.push(d);
            }
            if row.get::<_, Option<i64>>(2)?.is_some_and(|s| s < 400) {
                log.ok += 1;
            }
        }
        log.starts_ms.sort_unstable();
        log.durations_ms.sort_by(f64::total_cmp);
        (log.rows, log.rows_with_account) = conn.query_row(
            "SELECT count(*), count(account_id) FROM change_log WHERE run_id = ?1",
            [run_id],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )?;
        Ok(log)
    }

    /// The records the run sent the audit writer: each row's insert, account and outcome, and
    /// each attempt's intent and completion.
    pub fn audit_records(&self) -> u64 {
        2 * self.rows + self.rows_with_account + 2 * self.requests
    }

    /// The `q`-quantile of the attempts' durations (nearest rank), in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        quantile(&self.durations_ms, q)
    }

    /// Seconds from the first attempt's start to the last one's.
    pub fn span_secs(&self) -> f64 {
        match (self.starts_ms.first(), self.starts_ms.last()) {
            (Some(a), Some(b)) => (b - a) as f64 / 1000.0,
            _ => 0.0,
        }
    }

    /// The most attempts started in any one-second window.
    pub fn max_per_second(&self) -> usize {
        max_in_window(&self.starts_ms, 1000)
    }
}

/// Milliseconds since the epoch of an RFC 3339 timestamp.
fn epoch_ms(text: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The nearest-rank `q`-quantile of sorted `values`; 0 when there are none.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let rank = (q * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// The most of the sorted instants `t` that fall in any window `[x, x + width)`. A window
/// holding the most always starts at one of the instants, so only those are tried.
pub fn max_in_window(t: &[i64], width: i64) -> usize {
    let mut best = 0;
    let mut end = 0;
    for (start, &from) in t.iter().enumerate() {
        while end < t.len() && t[end] < from + width {
            end += 1;
        }
        best = best.max(end - start);
    }
    best
}

/// CPU time (user + system) of a process or thread, from its `stat` file under `/proc`, in
/// seconds; 0 where there is none.
pub fn cpu_secs(stat: &Path) -> f64 {
    let Ok(text) = std::fs::read_to_string(stat) else {
        return 0.0;
    };
    // The command name may hold spaces and parentheses; the fields after its closing
    // parenthesis are plain: utime and stime are the 12th and 13th of them.
    let Some((_, rest)) = text.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Linux reports these in USER_HZ, which is 100 on every architecture it runs on.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// CPU seconds of this process, and of its thread named `name`.
pub fn cpu_of_self(name: &str) -> (f64, f64) {
    let total = cpu_secs(Path::new("/proc/self/stat"));
    let mut thread = 0.0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim() == name {
                thread += cpu_secs(&task.path().join("stat"));
            }
        }
    }
    (total, thread)
}

/// Bytes this process has handed to `write` and its kin so far (`wchar` in `/proc/self/io`):
/// with the emulator elsewhere, nearly all of it is the audit log's (the requests it sends are
/// counted too, but they are small).
pub fn bytes_written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("wchar:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

// Run with `cargo test --example bench`: examples' tests are not part of `cargo test`.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn the_window_is_half_open_and_slides() {
        assert_eq!(max_in_window(&[], 1000), 0);
        assert_eq!(max_in_window(&[0, 999, 1000], 1000), 2);
        assert_eq!(max_in_window(&[0, 10, 1005, 1006, 1007, 1990], 1000), 4);
    }

    #[test]
    fn timestamps_of_the_log_parse() {
        assert_eq!(epoch_ms("1970-01-01T00:00:01.250Z"), Some(1250));
        assert_eq!(epoch_ms("not a time"), None);
    }
}
