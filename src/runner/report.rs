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

/// The counts of a run, as the summary table and `--output json` show them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Rows in the plan.
    pub rows: u64,
    /// Rows whose change was made.
    pub applied: u64,
    /// Rows already in place.
    pub noop: u64,
    /// Rows that failed.
    pub failed: u64,
    /// Rows not run because the run stopped first.
    pub skipped: u64,
    /// Rows whose outcome could not be learnt (see `resume`).
    pub in_doubt: u64,
    /// Rows `undo` left alone because the account changed since (see `--force`).
    pub conflict: u64,
    /// HTTP requests sent, logons and retries included.
    pub requests: u64,
    /// Answers of 429 or 503 that asked the run to slow down.
    pub throttled: u64,
    /// Wall-clock seconds.
    pub elapsed_secs: f64,
}

impl Summary {
    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Applied => self.applied += 1,
            Outcome::Noop => self.noop += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Skipped | Outcome::Pending => self.skipped += 1,
            Outcome::InDoubt => self.in_doubt += 1,
            Outcome::Conflict => self.conflict += 1,
        }
    }

    /// Rows that did not end applied or in place: failed, in doubt or in conflict.
    pub fn unsuccessful(&self) -> u64 {
        self.failed + self.in_doubt + self.conflict
    }

    fn done(&self) -> u64 {
        self.applied + self.noop + self.failed + self.skipped + self.in_doubt + self.conflict
    }

    /// The summary as a small table, for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for (label, n) in [
            ("applied", self.applied),
            ("no-op", self.noop),
            ("failed", self.failed),
            ("skipped", self.skipped),
            ("in doubt", self.in_doubt),
            ("conflict", self.conflict),
        ] {
            if n > 0 || matches!(label, "applied" | "no-op" | "failed" | "skipped") {
                out.push_str(&format!("  {label:<9} {n:>8}\n"));
            }
        }
        out.push_str(&format!("  {:<9} {:>8}\n", "rows", self.rows));
        out.push_str(&format!(
            "  {} requests in {:.1} s{}\n",
            self.requests,
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
        rows,
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
                        summary.applied, summary.noop, summary.failed
                    ));
                }
            }
            RunEvent::Request { status, .. } => {
                summary.requests += 1;
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
                summary.applied,
                summary.noop,
                summary.failed,
                summary.requests,
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
            (s.applied, s.noop, s.failed, s.requests, s.throttled),
            (1, 1, 1, 1, 1)
        );
    }
}
