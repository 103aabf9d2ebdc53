//! The HTTP client: its configuration and the path every request takes. One attempt goes
//! between the observer's calls, its answer is read within the limits below and the request's
//! timeout, and a status that is no success becomes a typed error. The session the requests
//! carry (logon, the single-flight re-logon on 401, logout) is in `session`; the one typed
//! method per endpoint in `endpoints`.
//!
//! Every HTTP attempt, logons included, goes through the observer: `before_send` (rate limit
//! and pauses), `sending` (the durable record), the request, then `finished` (or `abandoned`, when
//! the caller drops the request before its answer). The client never
//! retries on its own except after a 401: EM did not act on a request it refused for want of a
//! session, so logging on again and resending is safe. All other retries belong to the caller,
//! which gets each attempt's error with its retry advice.

mod endpoints;
mod session;
mod transport;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine as _;
use http::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderMap, HeaderValue, RETRY_AFTER,
};
use http::{Method, Request as HttpRequest};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body as _, Bytes, Incoming};
use tokio::time::Instant;

use super::codec::{self, Codec, DecodeError};
use super::error::{classify_transport, error_chain, parse_retry_after};
use super::redact::Redactor;
use super::tls;
use super::{AttemptOutcome, ClientConfig, EmError, RequestObserver, RequestTag, Retry};
use crate::text;
use session::{SESSION_HEADER, SessionSlot};
use transport::{Origin, Transport, TransportError};

pub use endpoints::Call;
pub(crate) use session::is_session_id;

/// The statuses EM answers success with.
const SUCCESS: [u16; 4] = [200, 201, 202, 204];

/// The most bytes read of the answer that lists every account (`GET /security/accounts`), the
/// largest answer EM gives. An account takes about 500 bytes there (its reference and one link,
/// the server's host name in three URLs), so 256 MiB holds some 500,000 accounts: twice the
/// largest installation embatch is measured with (BENCHMARKS.md), far more than an EM
/// installation grants access to, and still a bound on what a hostile server can make the
/// client hold.
pub const MAX_LIST_ANSWER_BYTES: usize = 256 << 20;

/// The most bytes read of any other success answer: one account, role or scope, the roles of
/// an account (seven at most), its scopes (at some 600 bytes each, 32 MiB holds 50,000 of them),
/// or the logon sessions.
pub const MAX_ANSWER_BYTES: usize = 32 << 20;

/// The most bytes read of the body of an error answer: an `Error` document, stack trace
/// included, is a few KiB, and only its message is kept, clipped to
/// [`text::MAX_MESSAGE_BYTES`].
pub const MAX_ERROR_BODY_BYTES: usize = 64 << 10;

/// A deadline far enough away to stand for none, for a timeout too large to add to a time.
const FOREVER: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);

/// The most bytes kept of each text a refused certificate shows (its subject, its issuer): a
/// name is a few dozen bytes, and the message holds several of them.
const MAX_CERTIFICATE_TEXT_BYTES: usize = 512;

/// How a request authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    /// Nothing (the entry point).
    None,
    /// Basic credentials (the logon, and only the logon).
    Basic,
    /// The session token, as its header's value.
    Token(&'a HeaderValue),
    /// The session current when the request leaves, or this one (of this generation) if there
    /// is none then (a logout in between). Chosen after the request's record is committed and
    /// its place on the wire taken, which can take many other requests' time: a session that
    /// expired and was replaced meanwhile would only earn a 401 and a resend.
    Current(&'a session::Session, u64),
}

/// An answer, whatever its status.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
    /// The generation of the session the request carried, for [`Auth::Current`].
    session: Option<u64>,
}

/// A request made with the session.
struct Request {
    method: Method,
    /// The path below the base URL, with any query, e.g. `/security/accounts?action=rebuildScope`.
    path: String,
    body: Option<String>,
    /// Whether to send the request again after a 401 and a fresh logon; false only for the
    /// toggle, which is never sent twice by the client.
    resend_after_relogon: bool,
    /// The most bytes of a success answer read ([`MAX_ANSWER_BYTES`] but for the account list).
    limit: usize,
}

impl Request {
    /// A request of `method` to `path`, answered by an ordinary (not a list of every account)
    /// answer, sent again after a re-logon.
    fn new(method: Method, path: String, body: Option<String>) -> Request {
        Request {
            method,
            path,
            body,
            resend_after_relogon: true,
            limit: MAX_ANSWER_BYTES,
        }
    }
}

/// How reading an answer's body ended.
enum BodyEnd {
    /// All of it was read.
    Whole,
    /// It is longer than the limit; the rest was left unread.
    TooLarge,
    /// The request's time ran out first.
    TimedOut,
    /// The connection failed.
    Failed(hyper::Error),
}

/// An EM client. Cheap to share behind an `Arc`; all callers share one session.
pub struct Client {
    config: ClientConfig,
    observer: Arc<dyn RequestObserver>,
    transport: Transport,
    /// The `Authorization` header of the logon, built once; marked sensitive, so that hyper
    /// keeps it out of its own debug output.
    basic: HeaderValue,
    /// The `Accept` (and a body's `Content-Type`) header of the wire format.
    media_type: HeaderValue,
    codec: &'static dyn Codec,
    /// Takes the password and the session tokens out of whatever the server sends back.
    redactor: Redactor,
    session: Mutex<SessionSlot>,
    /// Held while logging on or out, so concurrent callers that need a session share one logon.
    logon_gate: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.config.base_url.as_str())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds the client (TLS trust, timeouts). Does not connect.
    pub fn new(
        config: ClientConfig,
        observer: Arc<dyn RequestObserver>,
    ) -> Result<Client, EmError> {
        if !matches!(config.base_url.scheme(), "http" | "https") {
            return Err(EmError::Setup(format!(
                "the server URL must start with https:// (or http://), not {}://",
                config.base_url.scheme()
            )));
        }
        if config.base_url.password().is_some() || !config.base_url.username().is_empty() {
            return Err(EmError::Setup(
                "the server URL must not carry credentials".into(),
            ));
        }
        // Over plain http there is no certificate to compare: a pin would be silently ignored.
        if config.tls.ca_fingerprint.is_some() && config.base_url.scheme() != "https" {
            return Err(EmError::Setup(
                "a certificate fingerprint is pinned, but the server URL is not https://".into(),
            ));
        }
        let tls = super::tls::client_config(&config.tls)?;
        // Redirects are never followed (there is no code to): EM does not redirect, and
        // following one could resend a write somewhere unexpected.
        let transport = Transport::new(Origin::new(&config.base_url)?, tls);
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            config.user,
            config.password.expose()
        ));
        let mut basic = HeaderValue::try_from(format!("Basic {credentials}")).map_err(|_| {
            EmError::Setup("the user name or password cannot be sent in a header".into())
        })?;
        basic.set_sensitive(true);
        let codec = codec::for_wire(config.wire);
        Ok(Client {
            codec,
            media_type: HeaderValue::from_static(codec.media_type()),
            basic,
            redactor: Redactor::new(&config.user, config.password.expose()),
            config,
            observer,
            transport,
            session: Mutex::new(SessionSlot::default()),
            logon_gate: tokio::sync::Mutex::new(()),
        })
    }

    /// The logon user.
    pub fn user(&self) -> &str {
        &self.config.user
    }

    /// The API base URL.
    pub fn base_url(&self) -> &url::Url {
        &self.config.base_url
    }

    /// The path and query of `path` (with any query) below the base URL, as the request line
    /// and the audit log name it.
    fn target(&self, path: &str) -> String {
        self.transport.origin().target(path)
    }

    /// One HTTP attempt, between the observer's calls. Any status is an `Ok` answer here.
    ///
    /// At most `limit` bytes of a success answer are read, and [`MAX_ERROR_BODY_BYTES`] of an
    /// error answer's body; the body must end within the request's timeout like the rest.
    async fn attempt(
        &self,
        tag: RequestTag,
        method: &Method,
        target: &str,
        auth: Auth<'_>,
        body: Option<&str>,
        limit: usize,
    ) -> Result<Answer, EmError> {
        self.observer.before_send().await;
        let id = match self.observer.sending(tag, method.as_str(), target).await {
            Ok(id) => id,
            Err(message) => {
                return Err(EmError::NotRecorded {
                    method: method.to_string(),
                    path: target.to_string(),
                    message,
                });
            }
        };
        let chosen;
        let (auth, session) = match auth {
            Auth::Current(fallback, generation) => {
                chosen = self.current();
                match &chosen {
                    Some((current, generation)) => (Auth::Token(&current.token), Some(*generation)),
                    None => (Auth::Token(&fallback.token), Some(generation)),
                }
            }
            other => (other, None),
        };
        let started = Instant::now();
        // Tells the observer of an attempt dropped before it ended, so that what it holds for
        // the attempt (a place among the requests in flight) is not held for ever.
        let in_flight = InFlight {
            observer: &*self.observer,
            id,
            ended: AtomicBool::new(false),
        };

        let mut builder = HttpRequest::builder()
            .method(method.clone())
            .uri(target)
            .header(HOST, self.transport.origin().authority())
            .header(ACCEPT, &self.media_type);
        builder = match auth {
            Auth::None => builder,
            Auth::Basic => builder.header(AUTHORIZATION, &self.basic),
            Auth::Token(token) => builder.header(SESSION_HEADER, token),
            Auth::Current(..) => unreachable!("the current session was chosen above"),
        };
        let payload = match body {
            Some(body) => {
                builder = builder.header(CONTENT_TYPE, &self.media_type);
                Bytes::copy_from_slice(body.as_bytes())
            }
            None => {
                // A POST without a body (logon, toggle) still says so with a zero length.
                if *method == Method::POST {
                    builder = builder.header(CONTENT_LENGTH, HeaderValue::from_static("0"));
                }
                Bytes::new()
            }
        };

        // Ends the attempt as a failure: recorded with the observer, then returned.
        let failed = |status: Option<u16>, retry: Retry, message: &str| {
            let message = self.outside(message);
            let outcome = AttemptOutcome {
                status,
                error: Some(message.clone()),
            };
            in_flight.end(&outcome, started.elapsed());
            tracing::debug!(method = %method, path = %target, "request failed: {message}");
            EmError::Transport {
                method: method.to_string(),
                path: target.to_string(),
                message,
                retry,
            }
        };
        let transport = |error: &(dyn std::error::Error + 'static), retry: Retry| {
            let (classified, message) = classify_transport(error, retry);
            failed(None, classified, &message)
        };

        let request = match builder.body(Full::new(payload)) {
            Ok(request) => request,
            // The path is built from fixed text and checked ids, so this is a bug, not EM.
            Err(e) => {
                return Err(failed(
                    None,
                    Retry::Never,
                    &format!("build the request: {e}"),
                ));
            }
        };
        // Nothing here may wait on a server for longer than asked: the connection, the answer's
        // head and its body all end by this deadline.
        let deadline = started
            .checked_add(self.config.timeout)
            .unwrap_or_else(|| started + FOREVER);
        let sent = tokio::time::timeout_at(deadline, self.transport.send(request, deadline)).await;
        let (response, connection) = match sent {
            Ok(Ok(sent)) => sent,
            Err(_elapsed) => {
                let message = format!(
                    "no answer within the {:.1} s timeout",
                    self.config.timeout.as_secs_f64()
                );
                return Err(failed(None, Retry::CheckFirst, &message));
            }
            Ok(Err(e)) => {
                let retry = match e {
                    TransportError::Connect(_) | TransportError::NotSent(_) => Retry::Safe,
                    TransportError::Exchange(_) => Retry::CheckFirst,
                };
                return match tls::refusal_in(&error_chain(&e)) {
                    // The handshake failed on the certificate: the request never left, and the
                    // error says what the server presented, so the user can decide to trust it.
                    Some(refusal) => {
                        let refusal = refusal.map_outside(|t| {
                            text::clip(&self.redactor.redact(t), MAX_CERTIFICATE_TEXT_BYTES)
                                .into_owned()
                        });
                        let message = self.outside(&refusal.to_string());
                        in_flight.end(
                            &AttemptOutcome {
                                status: None,
                                error: Some(message.clone()),
                            },
                            started.elapsed(),
                        );
                        tracing::debug!(method = %method, path = %target, "request failed: {message}");
                        Err(EmError::Certificate {
                            method: method.to_string(),
                            path: target.to_string(),
                            refusal: Box::new(refusal),
                        })
                    }
                    None => Err(transport(&e, retry)),
                };
            }
        };
        let (head, mut incoming) = response.into_parts();
        let status = head.status.as_u16();
        let headers = head.headers;
        let success = SUCCESS.contains(&status);
        let limit = if success { limit } else { MAX_ERROR_BODY_BYTES };
        let mut bytes = Vec::new();
        let end = if success
            && incoming
                .size_hint()
                .exact()
                .is_some_and(|length| length > limit as u64)
        {
            // A success answer announced as too long is not read at all.
            BodyEnd::TooLarge
        } else {
            tokio::time::timeout_at(deadline, read_body(&mut incoming, limit, &mut bytes))
                .await
                .unwrap_or(BodyEnd::TimedOut)
        };
        match end {
            // Read whole, the connection is ready for the next request; otherwise it is dropped
            // (closed) with the rest of the answer unread.
            BodyEnd::Whole => connection.give_back(),
            // An error status is answer enough without the rest of its body.
            _ if !success => tracing::debug!("the body of an HTTP {status} answer was cut short"),
            // EM answered success, so it acted; a GET read again answers the same.
            BodyEnd::TooLarge => {
                let retry = if *method == Method::GET {
                    Retry::Never
                } else {
                    Retry::CheckFirst
                };
                let message = format!(
                    "HTTP {status}: the answer is larger than {} MiB, more than EM sends; the \
                     rest was not read",
                    limit >> 20
                );
                return Err(failed(Some(status), retry, &message));
            }
            BodyEnd::TimedOut => {
                let message = format!(
                    "HTTP {status}: the answer did not end within the {:.1} s timeout",
                    self.config.timeout.as_secs_f64()
                );
                return Err(failed(Some(status), Retry::CheckFirst, &message));
            }
            // EM answered success, so it acted; only the body went missing.
            BodyEnd::Failed(e) => {
                let (_, message) = classify_transport(&e, Retry::CheckFirst);
                return Err(failed(Some(status), Retry::CheckFirst, &message));
            }
        }
        // Valid UTF-8 (every answer EM sends) is taken as it is; only other bytes pay for the
        // lossy conversion.
        let body = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        let elapsed = started.elapsed();
        in_flight.end(
            &AttemptOutcome {
                status: Some(status),
                error: None,
            },
            elapsed,
        );
        tracing::debug!(method = %method, path = %target, status, elapsed_ms = elapsed.as_millis() as u64, "answer");
        Ok(Answer {
            status,
            headers,
            body,
            session,
        })
    }

    /// The answer when its status is a success, else the error it describes.
    fn check(&self, method: &Method, target: &str, answer: Answer) -> Result<Answer, EmError> {
        if SUCCESS.contains(&answer.status) {
            return Ok(answer);
        }
        let retry_after = match answer.status {
            429 | 503 => answer
                .headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now())),
            _ => None,
        };
        Err(EmError::Api {
            method: method.to_string(),
            path: target.to_string(),
            status: answer.status,
            message: self.outside(&codec::error_message(answer.status, &answer.body)),
            retry_after,
        })
    }

    /// Text that came from the server (an error body, a transport error quoting a header, a
    /// decode error quoting the answer), made fit to print and to store: without the password
    /// or any session token, in case the server or a library echoes them, and clipped to
    /// [`text::MAX_MESSAGE_BYTES`]. Redacted before it is clipped, so that no cut can leave
    /// half a secret behind.
    fn outside(&self, text: &str) -> String {
        text::clip(&self.redactor.redact(text), text::MAX_MESSAGE_BYTES).into_owned()
    }

    /// `GET`s `path` with the session and reads the answer with `parse`.
    async fn read<T>(
        &self,
        tag: RequestTag,
        path: String,
        parse: impl FnOnce(&dyn Codec, &str) -> Result<T, DecodeError>,
    ) -> Result<T, EmError> {
        self.read_within(tag, path, MAX_ANSWER_BYTES, parse).await
    }

    /// `GET`s `path` with the session, reading at most `limit` bytes of the answer, and reads
    /// the answer with `parse`.
    async fn read_within<T>(
        &self,
        tag: RequestTag,
        path: String,
        limit: usize,
        parse: impl FnOnce(&dyn Codec, &str) -> Result<T, DecodeError>,
    ) -> Result<T, EmError> {
        let request = Request {
            limit,
            ..Request::new(Method::GET, path, None)
        };
        let answer = self.exchange(tag, &request).await?;
        self.decode(&request, &answer, parse)
    }

    /// Sends a write with the session.
    async fn write(
        &self,
        tag: RequestTag,
        method: Method,
        path: String,
        body: Option<String>,
    ) -> Result<Answer, EmError> {
        self.exchange(tag, &Request::new(method, path, body)).await
    }

    fn decode<T>(
        &self,
        request: &Request,
        answer: &Answer,
        parse: impl FnOnce(&dyn Codec, &str) -> Result<T, DecodeError>,
    ) -> Result<T, EmError> {
        parse(self.codec, &answer.body).map_err(|message| EmError::Decode {
            method: request.method.to_string(),
            path: self.target(&request.path),
            message: self.outside(&message),
        })
    }
}

/// One attempt between [`RequestObserver::sending`] and its end: ends it exactly once, with
/// [`RequestObserver::finished`] when it has an outcome, or with [`RequestObserver::abandoned`]
/// when it is dropped without one.
struct InFlight<'a> {
    observer: &'a dyn RequestObserver,
    id: u64,
    /// Settable through a shared reference, so the closure that ends failed attempts can end
    /// it too; atomic only because the future holding it moves between threads.
    ended: AtomicBool,
}

impl InFlight<'_> {
    /// Reports the attempt's outcome.
    fn end(&self, outcome: &AttemptOutcome, elapsed: std::time::Duration) {
        self.ended.store(true, Ordering::Relaxed);
        self.observer.finished(self.id, outcome, elapsed);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.ended.load(Ordering::Relaxed) {
            self.observer.abandoned(self.id);
        }
    }
}

/// Reads `response`'s body into `body`, `limit` bytes at most: the rest of a longer body is
/// left unread.
async fn read_body(response: &mut Incoming, limit: usize, body: &mut Vec<u8>) -> BodyEnd {
    loop {
        match response.frame().await {
            // Trailers carry nothing EM sends.
            Some(Ok(frame)) => {
                let Ok(chunk) = frame.into_data() else {
                    continue;
                };
                let room = limit - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    return BodyEnd::TooLarge;
                }
                body.extend_from_slice(&chunk);
            }
            None => return BodyEnd::Whole,
            Some(Err(e)) => return BodyEnd::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests;
