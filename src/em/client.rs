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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::time::Instant;

use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER};

use super::codec::{self, Codec, DecodeError};
use super::error::{classify_transport, error_chain, parse_retry_after};
use super::redact::Redactor;
use super::tls;
use super::{AttemptOutcome, ClientConfig, EmError, RequestObserver, RequestTag, Retry};
use crate::text;
use session::{SESSION_HEADER, SessionSlot};

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
    /// The session token.
    Token(&'a str),
}

/// An answer, whatever its status.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
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
    Failed(reqwest::Error),
}

/// An EM client. Cheap to share behind an `Arc`; all callers share one session.
pub struct Client {
    config: ClientConfig,
    observer: Arc<dyn RequestObserver>,
    http: reqwest::Client,
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
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            // EM does not redirect; following one could resend a write somewhere unexpected.
            .redirect(reqwest::redirect::Policy::none())
            .http1_only()
            .build()
            .map_err(|e| EmError::Setup(format!("build the http client: {e}")))?;
        Ok(Client {
            codec: codec::for_wire(config.wire),
            redactor: Redactor::new(&config.user, config.password.expose()),
            config,
            observer,
            http,
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

    /// The URL of `path` (with any query) below the base URL.
    fn url(&self, path: &str) -> url::Url {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let mut url = self.config.base_url.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}{path}"));
        url.set_query(query);
        url.set_fragment(None);
        url
    }

    /// One HTTP attempt, between the observer's calls. Any status is an `Ok` answer here.
    ///
    /// At most `limit` bytes of a success answer are read, and [`MAX_ERROR_BODY_BYTES`] of an
    /// error answer's body; the body must end within the request's timeout like the rest.
    async fn attempt(
        &self,
        tag: RequestTag,
        method: &Method,
        url: &url::Url,
        auth: Auth<'_>,
        body: Option<&str>,
        limit: usize,
    ) -> Result<Answer, EmError> {
        let shown = path_and_query(url);
        self.observer.before_send().await;
        let id = match self.observer.sending(tag, method.as_str(), &shown).await {
            Ok(id) => id,
            Err(message) => {
                return Err(EmError::NotRecorded {
                    method: method.to_string(),
                    path: shown,
                    message,
                });
            }
        };
        let started = Instant::now();
        // Tells the observer of an attempt dropped before it ended, so that what it holds for
        // the attempt (a place among the requests in flight) is not held for ever.
        let in_flight = InFlight {
            observer: &*self.observer,
            id,
            ended: AtomicBool::new(false),
        };

        let mut builder = self
            .http
            .request(method.clone(), url.clone())
            .header(ACCEPT, self.codec.media_type());
        builder = match auth {
            Auth::None => builder,
            Auth::Basic => {
                builder.basic_auth(&self.config.user, Some(self.config.password.expose()))
            }
            Auth::Token(token) => builder.header(SESSION_HEADER, token),
        };
        builder = match body {
            Some(body) => builder
                .header(CONTENT_TYPE, self.codec.media_type())
                .body(body.to_string()),
            // A POST without a body (logon, toggle) still says so with a zero length.
            None if *method == Method::POST => builder.body(Vec::<u8>::new()),
            None => builder,
        };

        // Ends the attempt as a failure: recorded with the observer, then returned.
        let failed = |status: Option<u16>, retry: Retry, message: &str| {
            let message = self.outside(message);
            let outcome = AttemptOutcome {
                status,
                error: Some(message.clone()),
            };
            in_flight.end(&outcome, started.elapsed());
            tracing::debug!(method = %method, path = %shown, "request failed: {message}");
            EmError::Transport {
                method: method.to_string(),
                path: shown.clone(),
                message,
                retry,
            }
        };
        let transport = |error: &reqwest::Error, status: Option<u16>, retry: Option<Retry>| {
            let (classified, message) = classify_transport(error);
            failed(status, retry.unwrap_or(classified), &message)
        };

        let mut response = match builder.send().await {
            Ok(response) => response,
            Err(e) => match tls::refusal_in(&error_chain(&e)) {
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
                    tracing::debug!(method = %method, path = %shown, "request failed: {message}");
                    return Err(EmError::Certificate {
                        method: method.to_string(),
                        path: shown,
                        refusal: Box::new(refusal),
                    });
                }
                None => return Err(transport(&e, None, None)),
            },
        };
        let status = response.status().as_u16();
        // Taken rather than cloned: the body is read next, and nothing else needs them.
        let headers = std::mem::take(response.headers_mut());
        let success = SUCCESS.contains(&status);
        let limit = if success { limit } else { MAX_ERROR_BODY_BYTES };
        let mut bytes = Vec::new();
        // reqwest's timeout covers the body too; this deadline makes sure of it, whatever the
        // server's pace, since nothing here may wait on a server for longer than asked.
        let deadline = started.checked_add(self.config.timeout);
        let end = match deadline {
            // A success answer announced as too long is not read at all.
            _ if success
                && response
                    .content_length()
                    .is_some_and(|length| length > limit as u64) =>
            {
                BodyEnd::TooLarge
            }
            Some(deadline) => {
                tokio::time::timeout_at(deadline, read_body(&mut response, limit, &mut bytes))
                    .await
                    .unwrap_or(BodyEnd::TimedOut)
            }
            None => read_body(&mut response, limit, &mut bytes).await,
        };
        drop(response);
        match end {
            BodyEnd::Whole => {}
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
            BodyEnd::Failed(e) => return Err(transport(&e, Some(status), Some(Retry::CheckFirst))),
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
        tracing::debug!(method = %method, path = %shown, status, elapsed_ms = elapsed.as_millis() as u64, "answer");
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// The answer when its status is a success, else the error it describes.
    fn check(&self, method: &Method, url: &url::Url, answer: Answer) -> Result<Answer, EmError> {
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
            path: path_and_query(url),
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
            path: path_and_query(&self.url(&request.path)),
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

/// The URL's path and query, as the audit log and error messages show it.
fn path_and_query(url: &url::Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    }
}

/// Reads `response`'s body into `body`, `limit` bytes at most: the rest of a longer body is
/// left unread.
async fn read_body(response: &mut reqwest::Response, limit: usize, body: &mut Vec<u8>) -> BodyEnd {
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    return BodyEnd::TooLarge;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return BodyEnd::Whole,
            Err(e) => return BodyEnd::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests;
