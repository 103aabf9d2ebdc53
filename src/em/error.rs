//! The client's error: what went wrong, with the status when EM answered, and whether a retry
//! is safe.

use std::time::Duration;

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
    /// The request failed below HTTP: connection, timeout, TLS.
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
    /// The client could not be built (bad CA file, ...).
    #[error("client setup: {0}")]
    Setup(String),
}

impl EmError {
    /// The HTTP status, when EM answered.
    pub fn status(&self) -> Option<u16> {
        todo!()
    }

    /// Whether retrying is safe.
    pub fn retry(&self) -> Retry {
        todo!()
    }

    /// The delay the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        todo!()
    }
}
