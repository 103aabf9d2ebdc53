//! The Enterprise Manager (EM) REST API client: logon and sessions, every security endpoint the
//! tool uses, in XML (quick-xml) or JSON (serde), over rustls. It knows nothing of CSV, SQLite
//! or the runner: callers see typed values and a typed error with retry advice.
//!
//! Every request passes through a [`RequestObserver`] (the runner's pacer), logons and re-logons
//! included, so nothing can bypass the shared rate limit or the audit log.

mod certificate;
mod client;
mod codec;
mod error;
mod fields;
mod json;
mod model;
mod redact;
mod tls;
mod uid;
mod xml;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

pub use certificate::{
    CertificateProblem, CertificateRefusal, Fingerprint, FingerprintError, PresentedCertificate,
};
pub use client::{Call, Client, MAX_ANSWER_BYTES, MAX_ERROR_BODY_BYTES, MAX_LIST_ANSWER_BYTES};
pub use error::{EmError, Retry};
pub use model::*;
pub use uid::role_uid;

/// Runs `body` through every decoder of `wire`'s codec (each document the client reads, the
/// `Error` body and the message quoted from it), through the check of a session id, and
/// through the redaction and clipping every server text gets, discarding what they answer.
/// The fuzz targets' way in (`crate::fuzzing`): the codecs themselves stay private.
pub(crate) fn decode_everything(wire: Wire, body: &str) {
    let codec = codec::for_wire(wire);
    let _ = codec.entry_point(body);
    if let Ok(session) = codec.logon_session(body) {
        let _ = client::is_session_id(&session.session_id);
    }
    let _ = codec.logon_sessions(body);
    let _ = codec.security(body);
    let _ = codec.entity_refs(body);
    let _ = codec.entity_ref(body);
    let _ = codec.account(body);
    let _ = codec.account_roles(body);
    let _ = codec.account_role(body);
    let _ = codec.scopes(body);
    let _ = codec.scope(body);
    let _ = codec.task(body);
    let _ = match wire {
        Wire::Xml => xml::error_body(body),
        Wire::Json => json::error_body(body),
    };
    let message = codec::error_message(500, body);
    let redacted = redact::Redactor::new("admin", "emulator").redact(&message);
    let _ = crate::text::printable(&crate::text::clip(
        &redacted,
        crate::text::MAX_MESSAGE_BYTES,
    ));
}

/// The API's wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Wire {
    /// `application/xml`, EM's default.
    Xml,
    /// `application/json`.
    Json,
}

impl Wire {
    /// `xml` or `json`, as flags and the audit log spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Wire::Xml => "xml",
            Wire::Json => "json",
        }
    }
}

/// Certificate trust for HTTPS.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// Trust exactly the CA certificates in this PEM file, instead of the system roots.
    pub ca_cert: Option<PathBuf>,
    /// Accept any certificate. Recorded with the run and warned about.
    pub insecure: bool,
    /// Accept exactly the certificate with this SHA-256 fingerprint, whatever its issuer,
    /// names and dates (and no other). Excludes `ca_cert` and `insecure`.
    pub ca_fingerprint: Option<Fingerprint>,
}

/// A password (or any secret) that never shows in `Debug` or `Display` output.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How to reach and log on to EM.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The API base URL, e.g. `https://em.example.com:9398/api`.
    pub base_url: url::Url,
    /// The logon user.
    pub user: String,
    /// The logon password.
    pub password: Secret,
    /// XML or JSON.
    pub wire: Wire,
    /// Certificate trust.
    pub tls: TlsOptions,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl ClientConfig {
    /// A configuration with the default timeout (30 s).
    pub fn new(
        base_url: url::Url,
        user: String,
        password: Secret,
        wire: Wire,
        tls: TlsOptions,
    ) -> Self {
        ClientConfig {
            base_url,
            user,
            password,
            wire,
            tls,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Which row and which attempt a request belongs to, for the audit log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestTag {
    /// The plan row (0-based index), if the request serves one.
    pub row: Option<u64>,
    /// The attempt number, from 1.
    pub attempt: u32,
}

/// How one HTTP attempt ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// The status code, if an answer came.
    pub status: Option<u16>,
    /// The transport error, if none came (never contains a secret).
    pub error: Option<String>,
}

/// Called around every HTTP attempt the client makes.
pub trait RequestObserver: Send + Sync {
    /// Waits until the request may be sent (rate limit, pauses).
    fn before_send(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// Records that the request is about to leave; returns an id for [`RequestObserver::finished`].
    /// The path is the URL path and query, never a header.
    ///
    /// An `Err` says why the request must not leave (its record could not be kept): the client
    /// does not send it, and fails the call with [`EmError::NotRecorded`].
    fn sending(
        &self,
        tag: RequestTag,
        method: &str,
        path: &str,
    ) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>>;
    /// Records how the attempt ended.
    fn finished(&self, id: u64, outcome: &AttemptOutcome, elapsed: Duration);
    /// Says that the attempt `id` ended without an outcome: the caller dropped the request
    /// between [`RequestObserver::sending`] and its answer (a cancelled run). Nothing is known
    /// of what the server did, so nothing is recorded by default; an observer that holds
    /// something for each attempt in flight releases it here.
    fn abandoned(&self, _id: u64) {}
}

/// An observer that neither waits nor records.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopObserver;

impl RequestObserver for NoopObserver {
    fn before_send(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
    fn sending(
        &self,
        _tag: RequestTag,
        _method: &str,
        _path: &str,
    ) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>> {
        Box::pin(async { Ok(0) })
    }
    fn finished(&self, _id: u64, _outcome: &AttemptOutcome, _elapsed: Duration) {}
}
