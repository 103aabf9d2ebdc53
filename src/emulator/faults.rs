//! Fault injection: the dice that decide, per `/api` request, whether it is delayed, answered
//! with an error without acting, dropped before acting, or dropped after acting, and the
//! sliding one-second window behind `max_rps`.
//!
//! Every request draws the same six numbers in the same order whatever the fault settings
//! are, so with a seed the decisions depend only on the order of arrival.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};

use super::Faults;

/// What the faults decided for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Wait this long before anything else.
    pub delay: Duration,
    /// Answer or drop without acting, instead of handling the request.
    pub early: Option<Early>,
    /// After handling, drop the connection instead of answering (a lost answer).
    pub drop_after: bool,
}

/// A way to end a request without acting on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Early {
    /// Close the connection without an answer.
    Drop,
    /// Answer with this status (500, 503 or 429) and an `Error` body.
    Answer {
        /// The status.
        status: u16,
        /// `Retry-After`, in seconds, for 503 and 429.
        retry_after: Option<u64>,
        /// The `Error` message.
        message: &'static str,
    },
}

/// The faults in force, their dice and the request-rate window.
pub(crate) struct FaultState {
    faults: Faults,
    rng: StdRng,
    window: VecDeque<Instant>,
}

impl FaultState {
    /// Dice for `faults`, seeded from `faults.seed` or, without one, from the OS.
    pub(crate) fn new(faults: Faults) -> FaultState {
        let rng = match faults.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => rand::make_rng(),
        };
        FaultState {
            faults,
            rng,
            window: VecDeque::new(),
        }
    }

    /// The faults in force.
    pub(crate) fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Replaces the faults and restarts the dice, so a seeded run after the change is
    /// reproducible on its own.
    pub(crate) fn replace(&mut self, faults: Faults) {
        *self = FaultState::new(faults);
    }

    /// Rolls the dice for a request arriving at `now`.
    pub(crate) fn plan(&mut self, now: Instant) -> Plan {
        let roll: [f64; 6] = std::array::from_fn(|_| self.rng.random::<f64>());
        let [drop_before, e500, e503, e429, drop_after, jitter] = roll;
        let over_rate = self.over_rate(now);
        let f = &self.faults;
        // The jitter is a fraction of the configured spread, so it is 0..=jitter_ms.
        let extra = ((jitter * (f.jitter_ms as f64 + 1.0)) as u64).min(f.jitter_ms);
        let delay = Duration::from_millis(f.latency_ms.saturating_add(extra));
        let retry_after = Some(f.retry_after_secs);

        let early = if over_rate {
            Some(Early::Answer {
                status: 503,
                retry_after,
                message: "The server is busy: too many requests per second",
            })
        } else if hit(drop_before, f.drop_before) {
            Some(Early::Drop)
        } else if hit(e500, f.error_500) {
            Some(Early::Answer {
                status: 500,
                retry_after: None,
                message: "Internal server error (injected fault)",
            })
        } else if hit(e503, f.error_503) {
            Some(Early::Answer {
                status: 503,
                retry_after,
                message: "The service is unavailable (injected fault)",
            })
        } else if hit(e429, f.error_429) {
            Some(Early::Answer {
                status: 429,
                retry_after,
                message: "Too many requests (injected fault)",
            })
        } else {
            None
        };
        Plan {
            delay,
            drop_after: early.is_none() && hit(drop_after, f.drop_after),
            early,
        }
    }

    /// Whether a request at `now` exceeds `max_rps` in the last second. Only admitted
    /// requests fill the window, so a client that backs off gets through again.
    fn over_rate(&mut self, now: Instant) -> bool {
        let Some(max) = self.faults.max_rps else {
            return false;
        };
        while self
            .window
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(1))
        {
            self.window.pop_front();
        }
        if self.window.len() >= max as usize {
            return true;
        }
        self.window.push_back(now);
        false
    }
}

/// Whether a draw in `[0, 1)` falls under probability `p`; NaN and negatives never hit.
fn hit(draw: f64, p: f64) -> bool {
    p.is_finite() && draw < p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plans(faults: &Faults, n: usize) -> Vec<Plan> {
        let mut st = FaultState::new(faults.clone());
        let now = Instant::now();
        (0..n).map(|_| st.plan(now)).collect()
    }

    fn mixed(seed: Option<u64>) -> Faults {
        Faults {
            latency_ms: 5,
            jitter_ms: 20,
            error_500: 0.1,
            error_503: 0.1,
            error_429: 0.1,
            retry_after_secs: 3,
            drop_before: 0.1,
            drop_after: 0.2,
            seed,
            ..Faults::default()
        }
    }

    #[test]
    fn seeded_dice_repeat_and_differ_by_seed() {
        let a = plans(&mixed(Some(7)), 200);
        assert_eq!(a, plans(&mixed(Some(7)), 200));
        assert_ne!(a, plans(&mixed(Some(8)), 200));
        assert!(a.iter().any(|p| p.early == Some(Early::Drop)));
        assert!(a.iter().any(|p| p.drop_after));
        assert!(a.iter().any(|p| p.early.is_none() && !p.drop_after));
        for status in [500, 503, 429] {
            assert!(
                a.iter().any(
                    |p| matches!(p.early, Some(Early::Answer { status: s, .. }) if s == status)
                )
            );
        }
        assert!(
            a.iter()
                .all(|p| (5..=25).contains(&(p.delay.as_millis() as u64)))
        );
        assert!(a.iter().all(|p| !(p.drop_after && p.early.is_some())));
    }

    #[test]
    fn replacing_restarts_the_dice() {
        let mut st = FaultState::new(mixed(Some(7)));
        let now = Instant::now();
        let first: Vec<Plan> = (0..50).map(|_| st.plan(now)).collect();
        st.replace(mixed(Some(7)));
        let again: Vec<Plan> = (0..50).map(|_| st.plan(now)).collect();
        assert_eq!(first, again);
    }

    #[test]
    fn certain_and_impossible_faults() {
        let none = plans(&Faults::default(), 100);
        assert!(none.iter().all(|p| *p
            == Plan {
                delay: Duration::ZERO,
                early: None,
                drop_after: false
            }));
        let all_429 = plans(
            &Faults {
                error_429: 1.0,
                retry_after_secs: 2,
                ..Faults::default()
            },
            20,
        );
        assert!(all_429.iter().all(|p| p.early
            == Some(Early::Answer {
                status: 429,
                retry_after: Some(2),
                message: "Too many requests (injected fault)"
            })));
        let nan = plans(
            &Faults {
                error_500: f64::NAN,
                ..Faults::default()
            },
            20,
        );
        assert!(nan.iter().all(|p| p.early.is_none()));
    }

    #[test]
    fn the_rate_window_slides() {
        let mut st = FaultState::new(Faults {
            max_rps: Some(2),
            ..Faults::default()
        });
        let t0 = Instant::now();
        assert!(st.plan(t0).early.is_none());
        assert!(st.plan(t0 + Duration::from_millis(100)).early.is_none());
        assert!(matches!(
            st.plan(t0 + Duration::from_millis(200)).early,
            Some(Early::Answer { status: 503, .. })
        ));
        assert!(st.plan(t0 + Duration::from_millis(1000)).early.is_none());
        assert!(matches!(
            st.plan(t0 + Duration::from_millis(1050)).early,
            Some(Early::Answer { status: 503, .. })
        ));
        assert!(st.plan(t0 + Duration::from_millis(1100)).early.is_none());
    }
}
