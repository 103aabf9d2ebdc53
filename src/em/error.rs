//! The client's error: what went wrong, with the status when EM answered, and whether a retry
//! is safe.

use std::time::{Duration, SystemTime};

use super::certificate::CertificateRefusal;

/// Whether a failed request may be sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// No: the same request would fail the same way (400, 403, 404, bad credentials, TLS).
    Never,
    /// Yes: the server did not act (connection refused, 429, 503, 401 before re-logon).
    Safe,
    /// Only after checking: the server may have acted (timeout, dropped connection, 500/502/504).
    CheckFirst,
}

/// A failed EM request. Messages never contain a password, an Authorization header or a token.
#[derive(Debug, thiserror::Error)]
pub enum EmError {
    /// EM answered with an error status.
    #[error("{method} {path}: HTTP {status}: {message}")]
    Api {
        /// The method.
        method: String,
        /// The URL path.
        path: String,
        /// The status code.
        status: u16,
        /// The `Error` body's message, or the raw body.
        message: String,
        /// The `Retry-After` delay, for 429 and 503.
        retry_after: Option<Duration>,
    },
    /// The request failed below HTTP (connection, timeout, TLS), or its answer could not be
    /// taken whole (a body lost, too slow, or past the size an answer may have).
    #[error("{method} {path}: {message}")]
    Transport {
        /// The method.
        method: String,
        /// The URL path.
        path: String,
        /// What failed.
        message: String,
        /// Whether the request may have reached the server.
        retry: Retry,
    },
    /// EM answered 2xx with a body the client could not read.
    #[error("{method} {path}: unreadable answer: {message}")]
    Decode {
        /// The method.
        method: String,
        /// The URL path.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// The request was not sent, because its record could not be kept first (the audit log
    /// failed). Nothing reached the server.
    #[error("{method} {path}: not sent: {message}")]
    NotRecorded {
        /// The method.
        method: String,
        /// The URL path.
        path: String,
        /// Why the record could not be kept.
        message: String,
    },
    /// EM asked for a longer pause before a retry (`Retry-After`) than the caller waits: the
    /// request is not sent again.
    #[error(
        "{error}; the server asked to wait {} before a retry, longer than the {} --max-retry-wait allows",
        seconds(*asked),
        seconds(*max)
    )]
    WaitTooLong {
        /// The answer that asked for the pause.
        error: Box<EmError>,
        /// The pause asked for.
        asked: Duration,
        /// The longest pause the caller waits.
        max: Duration,
    },
    /// The server's certificate was refused during the TLS handshake: nothing was sent over
    /// the connection.
    #[error("{method} {path}: {refusal}")]
    Certificate {
        /// The method.
        method: String,
        /// The URL path.
        path: String,
        /// What was wrong with the certificate, and what it was.
        refusal: Box<CertificateRefusal>,
    },
    /// The client could not be built (bad CA file, ...).
    #[error("client setup: {0}")]
    Setup(String),
}

impl EmError {
    /// The HTTP status, when EM answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            EmError::Api { status, .. } => Some(*status),
            EmError::WaitTooLong { error, .. } => error.status(),
            _ => None,
        }
    }

    /// Whether retrying is safe.
    pub fn retry(&self) -> Retry {
        match self {
            EmError::Api { status, path, .. } => retry_for_status(*status, path),
            EmError::Transport { retry, .. } => *retry,
            // A 2xx answer the client cannot read reads the same way next time; for a write,
            // EM has already acted.
            EmError::Decode { .. } => Retry::Never,
            // Sending it again would go unrecorded again: the caller must stop.
            EmError::NotRecorded { .. } | EmError::Setup(_) => Retry::Never,
            // The same certificate is refused the same way until trust is configured otherwise.
            EmError::Certificate { .. } => Retry::Never,
            // Retrying sooner than asked would be refused again; waiting is what the caller
            // declined.
            EmError::WaitTooLong { .. } => Retry::Never,
        }
    }

    /// Lines to print after the error that say what to do about it (for a refused certificate:
    /// what it is and how to trust it); none for most errors. Their texts are raw: the printer
    /// escapes them.
    pub fn advice(&self) -> Vec<String> {
        match self {
            EmError::Certificate { refusal, .. } => refusal.advice(),
            EmError::WaitTooLong { error, .. } => error.advice(),
            _ => Vec::new(),
        }
    }

    /// The delay the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            EmError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The error itself, or, when it asks for a pause longer than `max` before a retry,
    /// [`EmError::WaitTooLong`], which is never retried: a server-given delay is bounded
    /// before anything waits on it.
    pub fn limit_wait(self, max: Duration) -> EmError {
        match self.retry_after() {
            Some(asked) if asked > max => EmError::WaitTooLong {
                error: Box::new(self),
                asked,
                max,
            },
            _ => self,
        }
    }
}

/// A delay in seconds, as messages give it: whole seconds as they are, anything else to the
/// tenth.
fn seconds(delay: Duration) -> String {
    if delay.subsec_nanos() == 0 {
        format!("{} s", delay.as_secs())
    } else {
        format!("{:.1} s", delay.as_secs_f64())
    }
}

/// Whether the logon resource is the one `path` names: a 401 there means the credentials were
/// refused, not that a session expired.
pub(crate) fn is_logon_path(path: &str) -> bool {
    path.to_ascii_lowercase().contains("/sessionmngr")
}

/// The retry advice for an error status.
pub(crate) fn retry_for_status(status: u16, path: &str) -> Retry {
    match status {
        // Bad credentials stay bad. Elsewhere a 401 means the session died and EM did not act;
        // the client has already logged on again, and the call may simply be sent again.
        401 if is_logon_path(path) => Retry::Never,
        401 => Retry::Safe,
        // The server did not act: throttled, overloaded or in maintenance, or it gave up
        // waiting for the request itself.
        408 | 429 | 503 => Retry::Safe,
        // 500, 502, 504 and the rest: EM (or whatever stands before it) may have acted.
        500..=599 => Retry::CheckFirst,
        _ => Retry::Never,
    }
}

/// Parses a `Retry-After` value: delay seconds, or an HTTP date (a date in the past means no
/// wait). The delay is the server's, unbounded: a number of seconds too large for a `u64` is
/// [`Duration::MAX`], and the caller caps what it waits ([`EmError::limit_wait`]).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(
            value
                .parse::<u64>()
                .map_or(Duration::MAX, Duration::from_secs),
        );
    }
    let date = time::PrimitiveDateTime::parse(value, HTTP_DATE)
        .ok()?
        .assume_utc();
    let now = time::OffsetDateTime::from(now);
    let wait = date - now;
    Some(if wait.is_negative() {
        Duration::ZERO
    } else {
        wait.unsigned_abs()
    })
}

/// The IMF-fixdate form of an HTTP date, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
const HTTP_DATE: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// Describes a failure below HTTP (without the URL, which the error's method and path already
/// give) and gives its retry advice: `retry`, what the connection knew of whether the request
/// left, unless TLS failed, which repeats until trust is configured differently.
pub(crate) fn classify_transport(
    error: &(dyn std::error::Error + 'static),
    retry: Retry,
) -> (Retry, String) {
    let chain = error_chain(error);
    let mut parts: Vec<String> = Vec::new();
    for e in &chain {
        let text = e.to_string();
        // io::Error and some wrappers repeat their inner error's text.
        if parts.last().is_none_or(|last| *last != text) && !text.is_empty() {
            parts.push(text);
        }
    }
    let message = parts.join(": ");
    let tls = chain
        .iter()
        .any(|e| e.downcast_ref::<rustls::Error>().is_some())
        || parts
            .iter()
            .any(|p| p.to_ascii_lowercase().contains("certificate"));
    let retry = if tls { Retry::Never } else { retry };
    (retry, message)
}

/// `error` and its sources. `std::io::Error::source` skips the error an `io::Error` wraps
/// (where rustls puts its certificate errors), so the walk steps into it with `get_ref`.
pub(crate) fn error_chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut chain = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        chain.push(e);
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
        if chain.len() > 32 {
            break;
        }
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, path: &str) -> EmError {
        EmError::Api {
            method: "GET".into(),
            path: path.into(),
            status,
            message: "m".into(),
            retry_after: None,
        }
    }

    #[test]
    fn status_classification() {
        let cases = [
            (400, Retry::Never),
            (403, Retry::Never),
            (404, Retry::Never),
            (405, Retry::Never),
            (409, Retry::Never),
            (401, Retry::Safe),
            (408, Retry::Safe),
            (429, Retry::Safe),
            (503, Retry::Safe),
            (500, Retry::CheckFirst),
            (501, Retry::CheckFirst),
            (502, Retry::CheckFirst),
            (504, Retry::CheckFirst),
        ];
        for (status, retry) in cases {
            let e = api(status, "/api/security/roles");
            assert_eq!((e.status(), e.retry()), (Some(status), retry), "{status}");
        }
        assert_eq!(api(401, "/api/sessionMngr/?v=latest").retry(), Retry::Never);
        assert_eq!(api(401, "/api/SESSIONMNGR/").retry(), Retry::Never);
    }

    #[test]
    fn other_variants() {
        let t = EmError::Transport {
            method: "GET".into(),
            path: "/api/".into(),
            message: "connection refused".into(),
            retry: Retry::Safe,
        };
        assert_eq!(
            (t.status(), t.retry(), t.retry_after()),
            (None, Retry::Safe, None)
        );
        let d = EmError::Decode {
            method: "GET".into(),
            path: "/api/".into(),
            message: "x".into(),
        };
        assert_eq!((d.status(), d.retry()), (None, Retry::Never));
        assert_eq!(EmError::Setup("x".into()).retry(), Retry::Never);
        let throttled = EmError::Api {
            method: "GET".into(),
            path: "/api/security".into(),
            status: 429,
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(
            throttled.to_string(),
            "GET /api/security: HTTP 429: slow down"
        );
    }

    #[test]
    fn retry_after_values() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("+5", now), None);
        assert_eq!(parse_retry_after("", now), None);
        // Delays no client should wait are still read as what they are.
        assert_eq!(
            parse_retry_after("18446744073709551615", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::MAX)
        );
        let far = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).unwrap();
        assert!(far > Duration::from_secs(250_000_000_000), "{far:?}");
    }

    #[test]
    fn a_wait_beyond_the_limit_is_never_retried() {
        let throttled = |secs: u64| EmError::Api {
            method: "GET".into(),
            path: "/api/security/roles".into(),
            status: 429,
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(secs)),
        };
        let max = Duration::from_secs(120);
        let kept = throttled(120).limit_wait(max);
        assert_eq!((kept.retry(), kept.retry_after()), (Retry::Safe, Some(max)));
        let refused = throttled(u64::MAX).limit_wait(max);
        assert_eq!(
            (refused.status(), refused.retry(), refused.retry_after()),
            (Some(429), Retry::Never, None)
        );
        assert_eq!(
            refused.to_string(),
            "GET /api/security/roles: HTTP 429: slow down; the server asked to wait \
             18446744073709551615 s before a retry, longer than the 120 s --max-retry-wait allows"
        );
        let other = api(500, "/x").limit_wait(Duration::ZERO);
        assert!(matches!(other, EmError::Api { .. }));
    }
}
