//! Pacing and observing every request: the shared rate limiter, the pool-wide pause that a
//! `Retry-After` answer imposes, and the durable record of each HTTP attempt.
//!
//! The EM client calls the [`Pacer`] (as its [`RequestObserver`]) around every request it
//! sends, logons and retries included, so no request can bypass the limit or the audit log.
//!
//! The limit is applied twice, with the same quota. Before the attempt is recorded, it paces
//! the intents, so that an intent is written only shortly before its request leaves. After the
//! record is committed, it paces the requests themselves: the audit writer commits in groups,
//! and one commit releases every request waiting on it at the same instant, so a run paced
//! only before the commit sends clumps that a server counting requests in a sliding window
//! sees above the rate (with the audit log on a busy disk, an emulator admitting rate + burst
//! requests per sliding second refused about ten requests of a fifteen-second run at 200/s).
//! The second gate spreads each clump out again; since the requests reach it at the rate
//! already, it delays them by little more than the commit's own jitter.
//!
//! The run's concurrency is the number of requests in flight, as a server (or a load generator
//! such as oha) counts them, not the number of workers. Each request holds a place among them
//! from just after its intent is committed, before the second gate, until its answer; the run
//! has [`WORKERS_PER_REQUEST`] times as many workers, so while some requests wait for their
//! intents' commit, others fill the places on the wire. With one worker per place, every request
//! left its place idle for the length of a commit (a disk flush), and the commit's group held
//! at most as many intents as there were places.
//!
//! Requests wait at each gate in turn, first come first served, and only the first in line
//! sleeps on the limiter's timer. Left to themselves, every waiting worker would sleep until the
//! same next free slot, all would wake for it, one would take it and the rest sleep again: a
//! wake-up of every worker for every request (with 128 workers at 1,000 requests/s, waiting in
//! line cut the run's CPU outside the audit writer by a quarter).

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::audit::{AttemptStart, AuditHandle};
use crate::em::{AttemptOutcome, RequestObserver, RequestTag};

use super::RunEvent;

/// Workers per request in flight: a run with concurrency N works on up to this many times N
/// accounts at once, so that requests waiting for their intents' commit do not leave the places
/// on the wire empty. Each request waits for a commit (a disk flush and the group's inserts)
/// before it leaves, so the workers, not the places, bound a run's pace: with the log on disk at
/// concurrency 32, four workers per place gave a quarter more requests/s than two, and eight a
/// tenth more than four, each with less CPU per request, as commit groups grow
/// (BENCHMARKS.md). The cost is in a crash: more intents may be committed ahead of their
/// requests, and a resume reads each of their accounts before it decides the row again.
pub const WORKERS_PER_REQUEST: usize = 8;

/// How fast and how hard a run may push the server.
#[derive(Clone, Debug)]
pub struct Pace {
    /// Requests in flight at most; a run has [`Pace::workers`] workers to keep them busy.
    pub concurrency: usize,
    /// Requests per second at most, over every request of the run.
    pub rate: f64,
    /// Requests that may go at once above the rate after an idle spell.
    pub burst: NonZeroU32,
    /// Attempts per request before giving up.
    pub max_attempts: u32,
    /// The first retry's backoff; each later one doubles it (with jitter), up to 10 s.
    pub backoff: Duration,
    /// The longest pause a `Retry-After` answer may impose; a request whose answer asks for
    /// more fails at once instead of waiting (`--max-retry-wait`).
    pub max_retry_wait: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            concurrency: 4,
            rate: 10.0,
            burst: NonZeroU32::new(5).expect("5 is not zero"),
            max_attempts: 5,
            backoff: Duration::from_millis(200),
            max_retry_wait: DEFAULT_MAX_RETRY_WAIT,
        }
    }
}

/// The default of [`Pace::max_retry_wait`]: two minutes, longer than the few seconds a server
/// that sheds load asks for, and short enough that a run never looks hung while it waits.
pub const DEFAULT_MAX_RETRY_WAIT: Duration = Duration::from_secs(120);

impl Pace {
    /// The workers a run needs to keep [`Pace::concurrency`] requests in flight: each worker
    /// owns one account at a time, and sends one request at a time.
    pub fn workers(&self) -> usize {
        self.concurrency.max(1) * WORKERS_PER_REQUEST
    }

    fn quota(&self) -> Quota {
        // A fractional rate such as 0.5/s is a period of two seconds per request.
        let period = Duration::from_secs_f64(1.0 / self.rate).max(Duration::from_nanos(1));
        Quota::with_period(period)
            .expect("the period is at least one nanosecond")
            .allow_burst(self.burst)
    }
}

/// Where the attempts of a run are recorded.
pub struct AttemptLog {
    /// The audit writer.
    pub audit: AuditHandle,
    /// The run the attempts belong to.
    pub run_id: i64,
}

/// The shared limiter, pause gate and attempt recorder of one run.
pub struct Pacer {
    /// Paces the intents, before they are recorded.
    limiter: DefaultDirectRateLimiter,
    /// The line for `limiter` (tokio's mutex hands itself on in the order it was asked for).
    limiter_line: tokio::sync::Mutex<()>,
    /// Paces the requests as they leave, after their intents are committed.
    wire: DefaultDirectRateLimiter,
    /// The line for `wire`.
    wire_line: tokio::sync::Mutex<()>,
    /// The places for requests in flight, [`Pace::concurrency`] of them. A request takes one
    /// after its intent is committed and gives it back when it ends ([`RequestObserver::finished`]
    /// or [`RequestObserver::abandoned`]); the permit is forgotten in between, since the client
    /// carries only the attempt's id from one call to the next.
    in_flight: tokio::sync::Semaphore,
    pause_until: Mutex<Option<Instant>>,
    /// The longest pause [`Pacer::pause_for`] imposes, whatever it is asked.
    max_pause: Duration,
    log: Option<AttemptLog>,
    events: Option<mpsc::UnboundedSender<RunEvent>>,
    next_local_id: AtomicU64,
    requests: AtomicU64,
}

impl Pacer {
    /// A pacer for `pace`, recording attempts in `log` when given and reporting requests to
    /// `events` when given.
    pub fn new(
        pace: &Pace,
        log: Option<AttemptLog>,
        events: Option<mpsc::UnboundedSender<RunEvent>>,
    ) -> Pacer {
        Pacer {
            limiter: RateLimiter::direct(pace.quota()),
            limiter_line: tokio::sync::Mutex::new(()),
            wire: RateLimiter::direct(pace.quota()),
            wire_line: tokio::sync::Mutex::new(()),
            in_flight: tokio::sync::Semaphore::new(pace.concurrency.max(1)),
            pause_until: Mutex::new(None),
            max_pause: pace.max_retry_wait,
            log,
            events,
            next_local_id: AtomicU64::new(1),
            requests: AtomicU64::new(0),
        }
    }

    /// Holds every request of the pool back for `delay` (at most [`Pace::max_retry_wait`]), as
    /// a `Retry-After` answer of `status` asks. A later, longer pause extends an earlier one; a
    /// shorter one never shortens it. Answers the pause actually imposed.
    ///
    /// A pause that begins, or that moves the end of one under way by a second or more, is
    /// said once on stderr: the workers that got the same answer together extend it by a few
    /// milliseconds each, and stay silent.
    pub fn pause_for(&self, delay: Duration, status: Option<u16>) -> Duration {
        let delay = delay.min(self.max_pause);
        if delay.is_zero() {
            return delay;
        }
        let now = Instant::now();
        // The delay is the server's: bounded above, and still added without overflow.
        let Some(until) = now.checked_add(delay) else {
            return Duration::ZERO;
        };
        let mut guard = self
            .pause_until
            .lock()
            .expect("pause lock is never poisoned");
        let current = guard.filter(|t| *t > now);
        if current.is_none_or(|t| t < until) {
            *guard = Some(until);
            if current.is_none_or(|t| until.duration_since(t) >= Duration::from_secs(1)) {
                let status = status.map_or(String::new(), |s| format!(" (HTTP {s})"));
                tracing::warn!(
                    "the server asked to wait {:.1} s{status}; pausing all requests",
                    delay.as_secs_f64()
                );
            }
        }
        delay
    }

    /// Requests sent so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    async fn wait_for_pause(&self) {
        loop {
            let until = *self
                .pause_until
                .lock()
                .expect("pause lock is never poisoned");
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => return,
            }
        }
    }
}

/// Waits for a free slot of `limiter`, behind everyone who asked before.
async fn in_line(line: &tokio::sync::Mutex<()>, limiter: &DefaultDirectRateLimiter) {
    // A free slot needs no line: a run without a meaningful limit never queues here.
    if limiter.check().is_ok() {
        return;
    }
    let _turn = line.lock().await;
    limiter.until_ready().await;
}

impl RequestObserver for Pacer {
    fn before_send(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            self.wait_for_pause().await;
            in_line(&self.limiter_line, &self.limiter).await;
            // A pause may have begun while this request waited for the limiter.
            self.wait_for_pause().await;
        })
    }

    fn sending(
        &self,
        tag: RequestTag,
        method: &str,
        path: &str,
    ) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>> {
        let method = method.to_string();
        let path = path.to_string();
        Box::pin(async move {
            let id = match &self.log {
                Some(log) => {
                    let start = AttemptStart {
                        run_id: log.run_id,
                        row_no: tag.row,
                        attempt: tag.attempt,
                        method,
                        path,
                    };
                    // A request whose intent is not committed never leaves: the log must hold
                    // every request the server may have seen.
                    log.audit
                        .attempt_started(start)
                        .await
                        .map_err(|e| format!("the audit log failed: {e}"))?
                }
                None => self.next_local_id.fetch_add(1, Ordering::Relaxed),
            };
            // A place among the requests in flight is taken before the second gate, so that the
            // gate stays the last wait before the request leaves and the rate holds at the wire.
            let place = self
                .in_flight
                .acquire()
                .await
                .expect("the semaphore of requests in flight is never closed");
            // The commit released this request together with the others of its group; the
            // second gate sends them at the rate, and a pause that began meanwhile holds them.
            in_line(&self.wire_line, &self.wire).await;
            self.wait_for_pause().await;
            // The log may have failed while this request waited at the gates (a later group's
            // commit, or the file removed): from the first failure on, nothing leaves. The
            // intent stays without an end, as for a request that may have been sent, so a
            // resume reads the account before deciding the row again.
            if let Some(log) = &self.log
                && let Some(e) = log.audit.failure()
            {
                return Err(format!("the audit log failed: {e}"));
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            // Kept from here until the attempt ends; dropped with this future before then.
            place.forget();
            Ok(id)
        })
    }

    fn finished(&self, id: u64, outcome: &AttemptOutcome, elapsed: Duration) {
        self.in_flight.add_permits(1);
        if let Some(log) = &self.log
            && id != 0
        {
            log.audit.attempt_finished(
                log.run_id,
                id,
                outcome.status,
                outcome.error.clone(),
                elapsed,
            );
        }
        if let Some(events) = &self.events {
            let _ = events.send(RunEvent::Request {
                status: outcome.status,
                elapsed,
            });
        }
    }

    fn abandoned(&self, _id: u64) {
        // The attempt keeps its intent without an end, as one in flight when a process stops.
        self.in_flight.add_permits(1);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn quota_of_fractional_rate() {
        let pace = Pace {
            rate: 0.5,
            ..Pace::default()
        };
        assert_eq!(pace.quota().replenish_interval(), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn pause_only_extends() {
        let pacer = Pacer::new(&Pace::default(), None, None);
        pacer.pause_for(Duration::from_millis(200), None);
        let first = pacer.pause_until.lock().unwrap().unwrap();
        pacer.pause_for(Duration::from_millis(10), None);
        assert_eq!(pacer.pause_until.lock().unwrap().unwrap(), first);
        pacer.pause_for(Duration::from_millis(400), None);
        assert!(pacer.pause_until.lock().unwrap().unwrap() > first);
    }

    #[tokio::test]
    async fn a_pause_is_bounded_whatever_the_server_asks() {
        let pace = Pace {
            max_retry_wait: Duration::from_secs(3),
            ..Pace::default()
        };
        let pacer = Pacer::new(&pace, None, None);
        let before = Instant::now();
        // Neither overflows the clock nor holds the pool longer than the limit.
        for asked in [Duration::MAX, Duration::from_secs(u64::MAX)] {
            assert_eq!(pacer.pause_for(asked, Some(429)), Duration::from_secs(3));
            let until = pacer.pause_until.lock().unwrap().unwrap();
            assert!(until <= Instant::now() + Duration::from_secs(3));
            assert!(until >= before + Duration::from_secs(3));
        }
        assert_eq!(pacer.pause_for(Duration::ZERO, Some(503)), Duration::ZERO);
    }

    #[tokio::test]
    async fn requests_released_together_leave_at_the_rate() {
        let pace = Pace {
            rate: 10.0,
            burst: NonZeroU32::new(1).unwrap(),
            ..Pace::default()
        };
        let pacer = Pacer::new(&pace, None, None);
        // Three intents paced one by one, as the first gate does...
        for _ in 0..3 {
            pacer.before_send().await;
        }
        // ...then released at the same instant, as one group commit does.
        let t0 = std::time::Instant::now();
        let tag = RequestTag::default();
        futures_util::future::join_all((0..3).map(|_| pacer.sending(tag, "GET", "/x"))).await;
        // One leaves at once, the next two a tenth of a second apart.
        assert!(
            t0.elapsed() >= Duration::from_millis(180),
            "{:?}",
            t0.elapsed()
        );
    }

    #[tokio::test]
    async fn waiting_requests_go_in_the_order_they_came() {
        let pace = Pace {
            rate: 20.0,
            burst: NonZeroU32::new(1).unwrap(),
            ..Pace::default()
        };
        let pacer = Arc::new(Pacer::new(&pace, None, None));
        pacer.before_send().await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for n in 0..4 {
            let (pacer, order) = (pacer.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                pacer.before_send().await;
                order.lock().unwrap().push(n);
            }));
            // Each joins the line before the next one arrives.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3]);
    }

    #[test]
    fn each_place_in_flight_has_its_workers() {
        let pace = Pace {
            concurrency: 32,
            ..Pace::default()
        };
        assert_eq!(pace.workers(), 32 * WORKERS_PER_REQUEST);
    }

    /// Whether `future` is still waiting after the runtime has had time to run it.
    async fn still_waiting(future: &mut (impl Future + Unpin)) -> bool {
        tokio::time::timeout(Duration::from_millis(50), future)
            .await
            .is_err()
    }

    #[tokio::test]
    async fn no_more_than_the_concurrency_is_in_flight() {
        let pace = Pace {
            concurrency: 2,
            rate: 1e9,
            ..Pace::default()
        };
        let pacer = Pacer::new(&pace, None, None);
        let tag = RequestTag::default();
        let first = pacer.sending(tag, "GET", "/a").await.unwrap();
        let second = pacer.sending(tag, "GET", "/b").await.unwrap();
        // Both places are taken: a third request waits until one of them ends.
        let mut third = pacer.sending(tag, "GET", "/c");
        assert!(still_waiting(&mut third).await);
        pacer.finished(first, &AttemptOutcome::default(), Duration::ZERO);
        third.await.unwrap();
        // An attempt dropped before its answer gives its place back too.
        let mut fourth = pacer.sending(tag, "GET", "/d");
        assert!(still_waiting(&mut fourth).await);
        pacer.abandoned(second);
        fourth.await.unwrap();
    }

    #[tokio::test]
    async fn a_request_dropped_while_it_waits_keeps_no_place() {
        let pace = Pace {
            concurrency: 1,
            rate: 1e9,
            ..Pace::default()
        };
        let pacer = Pacer::new(&pace, None, None);
        let tag = RequestTag::default();
        // Held up by a pause after taking its place, then dropped: the place comes back.
        pacer.pause_for(Duration::from_millis(300), None);
        let mut held = pacer.sending(tag, "GET", "/a");
        assert!(still_waiting(&mut held).await);
        drop(held);
        *pacer.pause_until.lock().unwrap() = None;
        let id = tokio::time::timeout(Duration::from_secs(1), pacer.sending(tag, "GET", "/b"))
            .await
            .expect("the dropped request gave its place back")
            .unwrap();
        pacer.finished(id, &AttemptOutcome::default(), Duration::ZERO);
    }

    #[tokio::test]
    async fn before_send_waits_out_the_pause() {
        let pace = Pace {
            rate: 1000.0,
            ..Pace::default()
        };
        let pacer = Pacer::new(&pace, None, None);
        pacer.pause_for(Duration::from_millis(150), None);
        let t0 = std::time::Instant::now();
        pacer.before_send().await;
        assert!(t0.elapsed() >= Duration::from_millis(140));
    }
}
