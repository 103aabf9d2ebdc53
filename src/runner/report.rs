//! The console reporter: consumes run events, shows progress on stderr (a bar on a terminal,
//! plain periodic lines otherwise) and adds up the summary.
//!
//! It shares nothing with the runner but the event channel, so a slow terminal can never slow
//! a run down.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Outcome, RunEvent};
use crate::audit::RunCounts;

/// A run's summary, as the summary table and `--output json` show it: its rows by outcome and
/// its requests, counted as they happen (the counts `runs` and `show` read back from the log
/// later), with what only the run itself sees.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Rows by outcome, and HTTP requests sent, logons and retries included. A row still
    /// pending when the run ends was skipped: `pending` stays 0.
    pub counts: RunCounts,
    /// Answers of 429 or 503 that asked the run to slow down.
    pub throttled: u64,
    /// Wall-clock seconds.
    pub elapsed_secs: f64,
}

/// The keys of `--output json` are an interface scripts read: the counts but `pending` (always
/// 0 here, and never shown by a run's summary), then the figures of the run itself.
impl Serialize for Summary {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let c = &self.counts;
        let mut s = serializer.serialize_struct("Summary", 10)?;
        for (key, n) in [
            ("rows", c.rows),
            ("applied", c.applied),
            ("noop", c.noop),
            ("failed", c.failed),
            ("skipped", c.skipped),
            ("in_doubt", c.in_doubt),
            ("conflict", c.conflict),
            ("requests", c.requests),
            ("throttled", self.throttled),
        ] {
            s.serialize_field(key, &n)?;
        }
        s.serialize_field("elapsed_secs", &self.elapsed_secs)?;
        s.end()
    }
}

impl Summary {
    fn count(&mut self, outcome: Outcome) {
        let c = &mut self.counts;
        match outcome {
            Outcome::Applied => c.applied += 1,
            Outcome::Noop => c.noop += 1,
            Outcome::Failed => c.failed += 1,
            Outcome::Skipped | Outcome::Pending => c.skipped += 1,
            Outcome::InDoubt => c.in_doubt += 1,
            Outcome::Conflict => c.conflict += 1,
        }
    }

    fn done(&self) -> u64 {
        let c = &self.counts;
        c.applied + c.noop + c.failed + c.skipped + c.in_doubt + c.conflict
    }

    /// The summary as a small table, for people.
    pub fn table(&self) -> String {
        let c = &self.counts;
        let mut out = String::new();
        for (label, n) in [
            ("applied", c.applied),
            ("no-op", c.noop),
            ("failed", c.failed),
            ("skipped", c.skipped),
            ("in doubt", c.in_doubt),
            ("conflict", c.conflict),
        ] {
            if n > 0 || matches!(label, "applied" | "no-op" | "failed" | "skipped") {
                out.push_str(&format!("  {label:<9} {n:>8}\n"));
            }
        }
        out.push_str(&format!("  {:<9} {:>8}\n", "rows", c.rows));
        out.push_str(&format!(
            "  {} requests in {:.1} s{}\n",
            c.requests,
            self.elapsed_secs,
            if self.throttled > 0 {
                format!(" ({} throttled by the server)", self.throttled)
            } else {
                String::new()
            }
        ));
        out
    }
}

/// Where progress goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reporter {
    /// A progress bar when stderr is a terminal, periodic lines otherwise.
    Stderr,
    /// No progress output (tests, JSON-only callers).
    Quiet,
}

impl Reporter {
    /// Starts consuming events; the task ends, returning the summary, when every sender is gone.
    pub fn start(self, rows: u64) -> (mpsc::UnboundedSender<RunEvent>, JoinHandle<Summary>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(consume(self, rows, rx));
        (tx, task)
    }
}

async fn consume(
    reporter: Reporter,
    rows: u64,
    mut rx: mpsc::UnboundedReceiver<RunEvent>,
) -> Summary {
    let mut summary = Summary {
        counts: RunCounts {
            rows,
            ..RunCounts::default()
        },
        ..Summary::default()
    };
    let terminal = reporter == Reporter::Stderr && std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let bar = ProgressBar::with_draw_target(Some(rows), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} rows  {per_sec}  eta {eta}  {msg}")
                .expect("the progress template is valid"),
        );
        bar
    });
    let started = Instant::now();
    let mut last_line = Instant::now();
    while let Some(event) = rx.recv().await {
        match event {
            RunEvent::RowFinished { outcome } => {
                summary.count(outcome);
                if let Some(bar) = &bar {
                    bar.set_position(summary.done());
                    bar.set_message(format!(
                        "applied {}  no-op {}  failed {}",
                        summary.counts.applied, summary.counts.noop, summary.counts.failed
                    ));
                }
            }
            RunEvent::Request { status, .. } => {
                summary.counts.requests += 1;
                if matches!(status, Some(429 | 503)) {
                    summary.throttled += 1;
                }
            }
        }
        if reporter == Reporter::Stderr
            && !terminal
            && last_line.elapsed() >= Duration::from_secs(5)
        {
            last_line = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            crate::console::errln!(
                "progress: {}/{} rows (applied {}, no-op {}, failed {}), {} requests, {:.1} rows/s",
                summary.done(),
                rows,
                summary.counts.applied,
                summary.counts.noop,
                summary.counts.failed,
                summary.counts.requests,
                summary.done() as f64 / secs.max(0.001)
            );
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_events() {
        let (tx, task) = Reporter::Quiet.start(3);
        for outcome in [Outcome::Applied, Outcome::Noop, Outcome::Failed] {
            tx.send(RunEvent::RowFinished { outcome }).unwrap();
        }
        tx.send(RunEvent::Request {
            status: Some(429),
            elapsed: Duration::ZERO,
        })
        .unwrap();
        drop(tx);
        let s = task.await.unwrap();
        assert_eq!(
            (
                s.counts.applied,
                s.counts.noop,
                s.counts.failed,
                s.counts.requests,
                s.throttled
            ),
            (1, 1, 1, 1, 1)
        );
    }

    #[test]
    fn the_json_summary_keeps_its_keys() {
        let summary = Summary {
            counts: RunCounts {
                rows: 9,
                applied: 1,
                noop: 2,
                failed: 3,
                skipped: 1,
                in_doubt: 1,
                conflict: 1,
                pending: 0,
                requests: 7,
            },
            throttled: 4,
            elapsed_secs: 1.5,
        };
        assert_eq!(
            serde_json::to_string(&summary).unwrap(),
            "{\"rows\":9,\"applied\":1,\"noop\":2,\"failed\":3,\"skipped\":1,\"in_doubt\":1,\
             \"conflict\":1,\"requests\":7,\"throttled\":4,\"elapsed_secs\":1.5}"
        );
    }
}
