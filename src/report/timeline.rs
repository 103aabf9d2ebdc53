//! The run's HTTP attempts in time: bucketed per second (or per a few seconds, for long runs),
//! with each bucket's request count by kind of answer and its latency percentiles.
//!
//! Pure: it receives the attempts as plain values and knows nothing of SQLite or HTML, so the
//! arithmetic behind the report's charts is tested on synthetic data.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The bucket widths a timeline may use, in seconds: one second while the run is short enough,
/// then the next round width that keeps the number of buckets under the caller's limit.
const WIDTHS: [u64; 16] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400,
];

/// How an attempt ended, as the requests chart colours it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptClass {
    /// An answer below 400: the server acted, or answered a read.
    Ok,
    /// 429 or 503: the server asked the run to slow down.
    Throttled,
    /// Any other answer of 400 or above, a transport error, or no answer at all (the attempt
    /// was in flight when its process stopped).
    Error,
}

impl AttemptClass {
    /// Classifies an attempt by its recorded status and transport error.
    pub fn of(status: Option<i64>, error: Option<&str>) -> AttemptClass {
        match (status, error) {
            (Some(429 | 503), _) => AttemptClass::Throttled,
            (Some(s), _) if s < 400 => AttemptClass::Ok,
            _ => AttemptClass::Error,
        }
    }
}

/// One HTTP attempt, as the timeline needs it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// When it started, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// How long it took; `None` for an attempt that never completed.
    pub duration_ms: Option<f64>,
    /// How it ended.
    pub class: AttemptClass,
}

impl Sample {
    /// A sample from the columns of `request_log`; `None` when `started_at` is not RFC 3339.
    pub fn from_log(
        started_at: &str,
        duration_ms: Option<f64>,
        status: Option<i64>,
        error: Option<&str>,
    ) -> Option<Sample> {
        Some(Sample {
            at_ms: parse_ms(started_at)?,
            duration_ms,
            class: AttemptClass::of(status, error),
        })
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 timestamp.
pub fn parse_ms(text: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The attempts that started within one bucket.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bucket {
    /// Attempts answered below 400.
    pub ok: u64,
    /// Attempts answered 429 or 503.
    pub throttled: u64,
    /// Attempts that failed otherwise or never completed.
    pub error: u64,
    /// The median duration of the completed attempts, in milliseconds.
    pub p50_ms: Option<f64>,
    /// The 99th percentile duration of the completed attempts, in milliseconds.
    pub p99_ms: Option<f64>,
}

impl Bucket {
    /// Every attempt in the bucket.
    pub fn requests(&self) -> u64 {
        self.ok + self.throttled + self.error
    }
}

/// The attempts of a run in contiguous buckets of equal width; empty buckets included, so the
/// n-th bucket always starts `n * width_s` seconds after the origin.
#[derive(Clone, Debug, PartialEq)]
pub struct Timeline {
    /// The start of the first bucket: the first attempt's second, in milliseconds since the
    /// Unix epoch.
    pub origin_ms: i64,
    /// The width of a bucket, in seconds.
    pub width_s: u64,
    /// The buckets, from the origin to the bucket of the last attempt.
    pub buckets: Vec<Bucket>,
}

impl Timeline {
    /// Buckets `samples` (in any order) per second, or per the smallest round width that keeps
    /// the buckets at `max_buckets` or fewer. An empty timeline has no buckets.
    pub fn build(samples: &[Sample], max_buckets: usize) -> Timeline {
        let (Some(first), Some(last)) = (
            samples.iter().map(|s| s.at_ms).min(),
            samples.iter().map(|s| s.at_ms).max(),
        ) else {
            return Timeline {
                origin_ms: 0,
                width_s: 1,
                buckets: Vec::new(),
            };
        };
        // Buckets start on whole seconds, so one-second buckets are the wall clock's seconds.
        let origin_ms = first.div_euclid(1000) * 1000;
        let span_s = u64::try_from((last - origin_ms) / 1000).unwrap_or(0) + 1;
        let limit = max_buckets.max(1) as u64;
        let width_s = WIDTHS
            .iter()
            .copied()
            .find(|w| span_s.div_ceil(*w) <= limit)
            .unwrap_or_else(|| span_s.div_ceil(limit));
        let count = span_s.div_ceil(width_s) as usize;

        let mut buckets = vec![Bucket::default(); count];
        let mut durations: Vec<Vec<f64>> = vec![Vec::new(); count];
        let width_ms = width_s as i64 * 1000;
        for s in samples {
            let index = ((s.at_ms - origin_ms) / width_ms) as usize;
            let bucket = &mut buckets[index];
            match s.class {
                AttemptClass::Ok => bucket.ok += 1,
                AttemptClass::Throttled => bucket.throttled += 1,
                AttemptClass::Error => bucket.error += 1,
            }
            if let Some(d) = s.duration_ms.filter(|d| d.is_finite()) {
                durations[index].push(d);
            }
        }
        for (bucket, mut d) in buckets.iter_mut().zip(durations) {
            d.sort_by(f64::total_cmp);
            bucket.p50_ms = percentile(&d, 50.0);
            bucket.p99_ms = percentile(&d, 99.0);
        }
        Timeline {
            origin_ms,
            width_s,
            buckets,
        }
    }

    /// Every attempt on the timeline.
    pub fn requests(&self) -> u64 {
        self.buckets.iter().map(Bucket::requests).sum()
    }

    /// The seconds the buckets cover.
    pub fn span_s(&self) -> u64 {
        self.buckets.len() as u64 * self.width_s
    }

    /// The highest request rate of any bucket, in requests per second.
    pub fn peak_rate(&self) -> f64 {
        self.buckets
            .iter()
            .map(|b| b.requests() as f64 / self.width_s as f64)
            .fold(0.0, f64::max)
    }
}

/// The `p`-th percentile of `sorted` (ascending) by the nearest-rank method: the smallest value
/// with at least `p` percent of the values at or below it. `None` for no values.
///
/// Nearest rank always answers a value that was measured, which is what an auditor expects of
/// "the slowest 1 %" in a bucket of a handful of requests.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_000_000_000;

    fn ok(at_ms: i64, duration_ms: f64) -> Sample {
        Sample {
            at_ms,
            duration_ms: Some(duration_ms),
            class: AttemptClass::Ok,
        }
    }

    #[test]
    fn classifies_answers_throttling_and_failures() {
        assert_eq!(AttemptClass::of(Some(200), None), AttemptClass::Ok);
        assert_eq!(AttemptClass::of(Some(204), None), AttemptClass::Ok);
        assert_eq!(AttemptClass::of(Some(429), None), AttemptClass::Throttled);
        assert_eq!(AttemptClass::of(Some(503), None), AttemptClass::Throttled);
        assert_eq!(AttemptClass::of(Some(400), None), AttemptClass::Error);
        assert_eq!(AttemptClass::of(Some(500), None), AttemptClass::Error);
        assert_eq!(AttemptClass::of(None, Some("timeout")), AttemptClass::Error);
        // In flight when the process stopped: neither status nor error.
        assert_eq!(AttemptClass::of(None, None), AttemptClass::Error);
    }

    #[test]
    fn parses_the_logs_timestamps() {
        assert_eq!(
            parse_ms("2026-11-23T10:21:03.123Z"),
            Some(1_795_429_263_123)
        );
        assert_eq!(parse_ms("yesterday"), None);
        let s = Sample::from_log("2026-11-23T10:21:03.123Z", None, Some(429), None).unwrap();
        assert_eq!(s.class, AttemptClass::Throttled);
    }

    #[test]
    fn buckets_per_wall_clock_second_with_empty_seconds_kept() {
        let samples = [
            ok(T0 + 250, 10.0),
            ok(T0 + 999, 30.0),
            ok(T0 + 1000, 5.0),
            Sample {
                at_ms: T0 + 3500,
                duration_ms: Some(7.0),
                class: AttemptClass::Throttled,
            },
            Sample {
                at_ms: T0 + 3600,
                duration_ms: None,
                class: AttemptClass::Error,
            },
        ];
        let t = Timeline::build(&samples, 600);
        assert_eq!(t.origin_ms, T0);
        assert_eq!(t.width_s, 1);
        assert_eq!(t.buckets.len(), 4);
        let counts: Vec<_> = t
            .buckets
            .iter()
            .map(|b| (b.ok, b.throttled, b.error))
            .collect();
        assert_eq!(counts, [(2, 0, 0), (1, 0, 0), (0, 0, 0), (0, 1, 1)]);
        assert_eq!(t.buckets[0].p50_ms, Some(10.0));
        assert_eq!(t.buckets[0].p99_ms, Some(30.0));
        assert_eq!(t.buckets[2].p50_ms, None, "an empty second has no latency");
        // The attempt that never completed counts as a request but has no duration.
        assert_eq!(t.buckets[3].p50_ms, Some(7.0));
        assert_eq!(t.requests(), 5);
        assert_eq!(t.span_s(), 4);
        assert_eq!(t.peak_rate(), 2.0);
    }

    #[test]
    fn the_origin_is_the_first_attempts_whole_second_in_any_order() {
        let t = Timeline::build(&[ok(T0 + 2100, 1.0), ok(T0 + 400, 1.0)], 600);
        assert_eq!(t.origin_ms, T0);
        assert_eq!(
            t.buckets.iter().map(Bucket::requests).collect::<Vec<_>>(),
            [1, 0, 1]
        );
    }

    #[test]
    fn long_runs_get_wider_buckets_and_rates_per_second() {
        // An hour and a bit at one request per second.
        let samples: Vec<Sample> = (0..3700).map(|i| ok(T0 + i * 1000, 1.0)).collect();
        let t = Timeline::build(&samples, 600);
        assert_eq!(t.width_s, 10);
        assert_eq!(t.buckets.len(), 370);
        assert!(t.buckets.iter().all(|b| b.requests() == 10));
        assert_eq!(t.peak_rate(), 1.0);
        assert_eq!(t.requests(), 3700);

        // Beyond the widest round width, the width is whatever fits.
        let far = [ok(T0, 1.0), ok(T0 + 10 * 86_400_000, 1.0)];
        let t = Timeline::build(&far, 5);
        assert!(t.buckets.len() <= 5, "{}", t.buckets.len());
        assert_eq!(t.requests(), 2);
    }

    #[test]
    fn an_empty_log_is_an_empty_timeline() {
        let t = Timeline::build(&[], 600);
        assert!(t.buckets.is_empty());
        assert_eq!((t.requests(), t.span_s(), t.peak_rate()), (0, 0, 0.0));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        assert_eq!(percentile(&[4.0], 50.0), Some(4.0));
        assert_eq!(percentile(&[1.0, 9.0], 50.0), Some(1.0));
        assert_eq!(percentile(&[1.0, 9.0], 99.0), Some(9.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
