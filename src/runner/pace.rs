//! Pacing and observing every request: the shared rate limiter, the pool-wide pause that a
//! `Retry-After` answer imposes, and the durable record of each HTTP attempt.
//!
//! The EM client calls the [`Pacer`] (as its [`RequestObserver`]) around every request it
//! sends, logons and retries included, so no request can bypass the limit or the audit log.

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

/// How fast and how hard a run may push the server.
#[derive(Clone, Debug)]
pub struct Pace {
    /// Requests in flight at most (one per worker).
    pub concurrency: usize,
    /// Requests per second at most, over every request of the run.
    pub rate: f64,
    /// Requests that may go at once above the rate after an idle spell.
    pub burst: NonZeroU32,
    /// Attempts per request before giving up.
    pub max_attempts: u32,
    /// The first retry's backoff; each later one doubles it (with jitter), up to 10 s.
    pub backoff: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            concurrency: 4,
            rate: 10.0,
            burst: NonZeroU32::new(5).expect("5 is not zero"),
            max_attempts: 5,
            backoff: Duration::from_millis(200),
        }
    }
}

impl Pace {
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
    limiter: DefaultDirectRateLimiter,
    pause_until: Mutex<Option<Instant>>,
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
            pause_until: Mutex::new(None),
            log,
            events,
            next_local_id: AtomicU64::new(1),
            requests: AtomicU64::new(0),
        }
    }

    /// Holds every request of the pool back for `delay`, as a `Retry-After` answer asks. A
    /// later, longer pause extends an earlier one; a shorter one never shortens it.
    pub fn pause_for(&self, delay: Duration) {
        let until = Instant::now() + delay;
        let mut guard = self
            .pause_until
            .lock()
            .expect("pause lock is never poisoned");
        if guard.is_none_or(|current| current < until) {
            *guard = Some(until);
        }
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

impl RequestObserver for Pacer {
    fn before_send(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            self.wait_for_pause().await;
            self.limiter.until_ready().await;
            // A pause may have begun while this request waited for the limiter.
            self.wait_for_pause().await;
        })
    }

    fn sending(
        &self,
        tag: RequestTag,
        method: &str,
        path: &str,
    ) -> Pin<Box<dyn Future<Output = u64> + Send + '_>> {
        let method = method.to_string();
        let path = path.to_string();
        Box::pin(async move {
            self.requests.fetch_add(1, Ordering::Relaxed);
            match &self.log {
                Some(log) => {
                    let start = AttemptStart {
                        run_id: log.run_id,
                        row_no: tag.row,
                        attempt: tag.attempt,
                        method,
                        path,
                    };
                    match log.audit.attempt_started(start).await {
                        Ok(id) => id,
                        Err(e) => {
                            // The writer reports the same error on the run's next awaited
                            // call, which ends the run; here we only keep the request going.
                            tracing::error!("failed to record a request in the audit log: {e}");
                            0
                        }
                    }
                }
                None => self.next_local_id.fetch_add(1, Ordering::Relaxed),
            }
        })
    }

    fn finished(&self, id: u64, outcome: &AttemptOutcome, elapsed: Duration) {
        if let Some(log) = &self.log
            && id != 0
        {
            log.audit
                .attempt_finished(id, outcome.status, outcome.error.clone(), elapsed);
        }
        if let Some(events) = &self.events {
            let _ = events.send(RunEvent::Request {
                status: outcome.status,
                elapsed,
            });
        }
    }
}

#[cfg(test)]
mod tests {
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
        pacer.pause_for(Duration::from_millis(200));
        let first = pacer.pause_until.lock().unwrap().unwrap();
        pacer.pause_for(Duration::from_millis(10));
        assert_eq!(pacer.pause_until.lock().unwrap().unwrap(), first);
        pacer.pause_for(Duration::from_millis(400));
        assert!(pacer.pause_until.lock().unwrap().unwrap() > first);
    }

    #[tokio::test]
    async fn before_send_waits_out_the_pause() {
        let pace = Pace {
            rate: 1000.0,
            ..Pace::default()
        };
        let pacer = Pacer::new(&pace, None, None);
        pacer.pause_for(Duration::from_millis(150));
        let t0 = std::time::Instant::now();
        pacer.before_send().await;
        assert!(t0.elapsed() >= Duration::from_millis(140));
    }
}
