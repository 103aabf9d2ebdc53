//! The HTTP client: one session shared by all callers, single-flight re-logon on 401, and one
//! typed method per endpoint.
//!
//! Every HTTP attempt, logons included, goes through the observer: `before_send` (rate limit
//! and pauses), `sending` (the durable record), the request, then `finished` (or `abandoned`, when
//! the caller drops the request before its answer). The client never
//! retries on its own except after a 401: EM did not act on a request it refused for want of a
//! session, so logging on again and resending is safe. All other retries belong to the caller,
//! which gets each attempt's error with its retry advice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::time::Instant;

use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, LOCATION, RETRY_AFTER, SET_COOKIE};
use uuid::Uuid;

use super::codec::{self, Codec, DecodeError};
use super::error::{classify_transport, error_chain, parse_retry_after};
use super::redact::Redactor;
use super::tls;
use super::{
    Account, AccountCreateSpec, AccountRole, AttemptOutcome, ClientConfig, EmError, EntityRef,
    EntryPoint, LogonSession, RebuildMode, RequestObserver, RequestTag, Retry, Scope, ScopeItem,
    Task,
};
use crate::text;

/// The session token header, sent on every request but the logon.
const SESSION_HEADER: &str = "X-RestSvcSessionId";

/// Re-logons one call may trigger. More than one is needed when sessions die quickly (a server
/// expiring sessions after a few requests can kill a fresh session before a busy caller's
/// resend), but a server that refuses every fresh session must not be asked forever.
const MAX_RELOGONS: u32 = 3;

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

/// A live session. Its token is a credential and never shows in `Debug` output.
struct Session {
    token: String,
    id: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The current session and a counter of logons, which lets a caller that saw a 401 tell whether
/// someone else has already logged on again since it read the session.
#[derive(Debug, Default)]
struct SessionSlot {
    current: Option<Arc<Session>>,
    generation: u64,
}

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

    /// Logs on (or on again), replacing the session.
    pub async fn logon(&self) -> Result<LogonSession, EmError> {
        let _gate = self.logon_gate.lock().await;
        self.logon_locked(RequestTag::default()).await
    }

    /// Logs out, if logged on.
    pub async fn logout(&self) -> Result<(), EmError> {
        let _gate = self.logon_gate.lock().await;
        let session = {
            let mut slot = self.slot();
            let session = slot.current.take();
            if session.is_some() {
                slot.generation += 1;
            }
            session
        };
        let Some(session) = session else {
            return Ok(());
        };
        let url = self.url(&format!("/logonSessions/{}", session.id));
        let answer = self
            .attempt(
                RequestTag::default(),
                &Method::DELETE,
                &url,
                Auth::Token(&session.token),
                None,
                MAX_ANSWER_BYTES,
            )
            .await?;
        // A session that already expired or vanished is as logged out as it gets.
        if matches!(answer.status, 401 | 404) {
            tracing::debug!("the session had already ended (HTTP {})", answer.status);
            return Ok(());
        }
        self.check(&Method::DELETE, &url, answer).map(|_| ())
    }

    /// The endpoint methods, with `tag` recorded on every attempt they make.
    pub fn call(&self, tag: RequestTag) -> Call<'_> {
        Call { client: self, tag }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, SessionSlot> {
        self.session
            .lock()
            .expect("the session lock is never held across a panic")
    }

    fn current(&self) -> Option<(Arc<Session>, u64)> {
        let slot = self.slot();
        slot.current.clone().map(|s| (s, slot.generation))
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

    /// The session to use, logging on first when there is none. Callers arriving together
    /// share one logon.
    async fn session_for(&self, tag: RequestTag) -> Result<(Arc<Session>, u64), EmError> {
        if let Some(found) = self.current() {
            return Ok(found);
        }
        let _gate = self.logon_gate.lock().await;
        if let Some(found) = self.current() {
            return Ok(found);
        }
        self.logon_locked(tag).await?;
        Ok(self.current().expect("a successful logon leaves a session"))
    }

    /// Logs on again after a 401 on the session of generation `seen`, unless another caller
    /// already has: then the newer session is used as it is.
    async fn relogon(&self, tag: RequestTag, seen: u64) -> Result<(), EmError> {
        let _gate = self.logon_gate.lock().await;
        {
            let slot = self.slot();
            if slot.generation != seen && slot.current.is_some() {
                return Ok(());
            }
        }
        tracing::info!("the EM session has expired; logging on again");
        self.logon_locked(tag).await.map(|_| ())
    }

    /// `POST /sessionMngr/?v=latest`; the caller holds the logon gate.
    async fn logon_locked(&self, tag: RequestTag) -> Result<LogonSession, EmError> {
        let method = Method::POST;
        let url = self.url("/sessionMngr/?v=latest");
        let answer = self
            .attempt(tag, &method, &url, Auth::Basic, None, MAX_ANSWER_BYTES)
            .await?;
        let answer = self.check(&method, &url, answer)?;
        let decode = |message: String| EmError::Decode {
            method: method.to_string(),
            path: path_and_query(&url),
            message: self.outside(&message),
        };
        let token = session_token(&answer.headers)
            .ok_or_else(|| decode(format!("the logon answer has no {SESSION_HEADER} header")))?;
        // From here on, an echo of the token is redacted like one of the password.
        self.redactor.add_token(&token);
        let parsed = if answer.body.trim().is_empty() {
            Err("empty body".to_string())
        } else {
            self.codec.logon_session(&answer.body)
        };
        // The body names the session; the Location header does too, for servers that send
        // no body.
        let from_location = answer
            .headers
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(|l| codec::last_segment(l).to_string())
            .filter(|id| !id.is_empty());
        let session = match (parsed, from_location) {
            (Ok(session), _) => session,
            (Err(_), Some(id)) => LogonSession {
                user_name: self.config.user.clone(),
                session_id: id,
            },
            (Err(e), None) => {
                return Err(decode(format!("no session id in the logon answer: {e}")));
            }
        };
        // The id becomes a path segment of the logout: anything but a plain segment would send
        // that DELETE to some other resource.
        if !is_session_id(&session.session_id) {
            return Err(decode(format!(
                "the logon answer names its session '{}', which is no session id (EM's are \
                 GUIDs); a session that cannot be logged out safely is not used",
                session.session_id
            )));
        }
        let session = LogonSession {
            user_name: if session.user_name.is_empty() {
                self.config.user.clone()
            } else {
                session.user_name
            },
            ..session
        };
        let mut slot = self.slot();
        slot.current = Some(Arc::new(Session {
            token,
            id: session.session_id.clone(),
        }));
        slot.generation += 1;
        tracing::debug!(
            session = %session.session_id,
            "logged on as {}",
            self.redactor.redact(&session.user_name)
        );
        Ok(session)
    }

    /// Sends `request` with the session, logging on first when needed and again after a 401.
    async fn exchange(&self, tag: RequestTag, request: &Request) -> Result<Answer, EmError> {
        let url = self.url(&request.path);
        let mut relogons = 0;
        loop {
            let (session, generation) = self.session_for(tag).await?;
            let answer = self
                .attempt(
                    tag,
                    &request.method,
                    &url,
                    Auth::Token(&session.token),
                    request.body.as_deref(),
                    request.limit,
                )
                .await?;
            if answer.status != 401 || relogons == MAX_RELOGONS {
                return self.check(&request.method, &url, answer);
            }
            relogons += 1;
            self.relogon(tag, generation).await?;
            if !request.resend_after_relogon {
                // The fresh session is ready for the caller's own retry.
                return self.check(&request.method, &url, answer);
            }
        }
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
            .header(ACCEPT, self.codec.accept());
        builder = match auth {
            Auth::None => builder,
            Auth::Basic => {
                builder.basic_auth(&self.config.user, Some(self.config.password.expose()))
            }
            Auth::Token(token) => builder.header(SESSION_HEADER, token),
        };
        builder = match body {
            Some(body) => builder
                .header(CONTENT_TYPE, self.codec.content_type())
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

/// Whether `id` may stand in a URL path as the one segment naming a session. EM's session ids
/// are GUIDs; the check is looser, letters, digits and `-`, `_`, `~` (the unreserved characters
/// but the dot), so that it takes any id a server in EM's place plausibly sends and nothing that
/// leaves the segment: no `/`, no dot segment, no `?`, `#` or `%`, no space or control character.
pub(crate) fn is_session_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~'))
}

/// The session token from a logon answer: the header, or else the cookie EM also sets.
fn session_token(headers: &HeaderMap) -> Option<String> {
    if let Some(token) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
        let token = token.trim();
        if !token.is_empty() {
            return Some(token.to_string());
        }
    }
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|cookie| cookie.split(';').next()?.split_once('='))
        .find(|(name, value)| {
            name.trim().eq_ignore_ascii_case(SESSION_HEADER) && !value.trim().is_empty()
        })
        .map(|(_, value)| value.trim().to_string())
}

/// The endpoint methods of one client, tagged for the audit log.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    client: &'a Client,
    tag: RequestTag,
}

impl Call<'_> {
    /// `GET /api/` (no logon needed).
    pub async fn entry_point(&self) -> Result<EntryPoint, EmError> {
        let client = self.client;
        let method = Method::GET;
        let url = client.url("/");
        let answer = client
            .attempt(self.tag, &method, &url, Auth::None, None, MAX_ANSWER_BYTES)
            .await?;
        let answer = client.check(&method, &url, answer)?;
        let request = Request::new(method, "/".into(), None);
        client.decode(&request, &answer, |c, body| c.entry_point(body))
    }
    /// `GET /logonSessions`.
    pub async fn logon_sessions(&self) -> Result<Vec<LogonSession>, EmError> {
        self.client
            .read(self.tag, "/logonSessions".into(), |c, body| {
                c.logon_sessions(body)
            })
            .await
    }
    /// `GET /security`.
    pub async fn security(&self) -> Result<(), EmError> {
        self.client
            .read(self.tag, "/security".into(), |c, body| c.security(body))
            .await
    }
    /// `GET /security/roles`.
    pub async fn roles(&self) -> Result<Vec<EntityRef>, EmError> {
        self.client
            .read(self.tag, "/security/roles".into(), |c, body| {
                c.entity_refs(body)
            })
            .await
    }
    /// `GET /security/roles/{id}`.
    pub async fn role(&self, id: Uuid) -> Result<EntityRef, EmError> {
        self.client
            .read(self.tag, format!("/security/roles/{id}"), |c, body| {
                c.entity_ref(body)
            })
            .await
    }
    /// `GET /security/accounts`, the one answer allowed [`MAX_LIST_ANSWER_BYTES`].
    pub async fn accounts(&self) -> Result<Vec<EntityRef>, EmError> {
        self.client
            .read_within(
                self.tag,
                "/security/accounts".into(),
                MAX_LIST_ANSWER_BYTES,
                |c, body| c.entity_refs(body),
            )
            .await
    }
    /// `GET /security/accounts/{id}` (the reference form).
    pub async fn account_ref(&self, id: Uuid) -> Result<EntityRef, EmError> {
        self.client
            .read(self.tag, format!("/security/accounts/{id}"), |c, body| {
                c.entity_ref(body)
            })
            .await
    }
    /// `GET /security/accounts/{id}?format=Entity`.
    pub async fn account(&self, id: Uuid) -> Result<Account, EmError> {
        self.client
            .read(
                self.tag,
                format!("/security/accounts/{id}?format=Entity"),
                |c, body| c.account(body),
            )
            .await
    }
    /// `POST /security/accounts`: creates an account; the new id, from `Location`, when given.
    pub async fn create_account(&self, spec: &AccountCreateSpec) -> Result<Option<Uuid>, EmError> {
        let body = self.client.codec.account_create_spec(spec);
        let answer = self
            .client
            .write(
                self.tag,
                Method::POST,
                "/security/accounts".into(),
                Some(body),
            )
            .await?;
        // EM documents no body and no Location for this POST; use the Location when it comes.
        Ok(answer
            .headers
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| Uuid::parse_str(codec::last_segment(l)).ok()))
    }
    /// `DELETE /security/accounts/{id}`.
    pub async fn delete_account(&self, id: Uuid) -> Result<(), EmError> {
        self.client
            .write(
                self.tag,
                Method::DELETE,
                format!("/security/accounts/{id}"),
                None,
            )
            .await
            .map(|_| ())
    }
    /// `POST /security/accounts/{id}`: flips "restore all VMs". Not idempotent.
    ///
    /// Never sent twice by the client: after a 401 it logs on again so that the caller's own
    /// retry finds a fresh session, and returns the 401 (which is safe to retry, since EM did
    /// not act on it).
    pub async fn toggle_restore_all_vms(&self, id: Uuid) -> Result<(), EmError> {
        let request = Request {
            resend_after_relogon: false,
            ..Request::new(Method::POST, format!("/security/accounts/{id}"), None)
        };
        self.client.exchange(self.tag, &request).await.map(|_| ())
    }
    /// `POST /security/accounts?action=rebuildScope`.
    pub async fn rebuild_scopes(&self, mode: RebuildMode) -> Result<Task, EmError> {
        let request = Request::new(
            Method::POST,
            "/security/accounts?action=rebuildScope".into(),
            Some(self.client.codec.rebuild_spec(mode)),
        );
        let answer = self.client.exchange(self.tag, &request).await?;
        self.client
            .decode(&request, &answer, |c, body| c.task(body))
    }
    /// `GET /security/accounts/{id}/roles`.
    pub async fn account_roles(&self, id: Uuid) -> Result<Vec<AccountRole>, EmError> {
        self.client
            .read(
                self.tag,
                format!("/security/accounts/{id}/roles"),
                |c, body| c.account_roles(body),
            )
            .await
    }
    /// `GET /security/accounts/{id}/roles/{role}`.
    pub async fn account_role(&self, id: Uuid, role: Uuid) -> Result<AccountRole, EmError> {
        self.client
            .read(
                self.tag,
                format!("/security/accounts/{id}/roles/{role}"),
                |c, body| c.account_role(body),
            )
            .await
    }
    /// `POST /security/accounts/{id}/roles` with the role's UID.
    pub async fn assign_role(&self, id: Uuid, role_uid: &str) -> Result<(), EmError> {
        let body = self.client.codec.role_assignment_spec(role_uid);
        self.client
            .write(
                self.tag,
                Method::POST,
                format!("/security/accounts/{id}/roles"),
                Some(body),
            )
            .await
            .map(|_| ())
    }
    /// `DELETE /security/accounts/{id}/roles/{role}`.
    pub async fn remove_role(&self, id: Uuid, role: Uuid) -> Result<(), EmError> {
        self.client
            .write(
                self.tag,
                Method::DELETE,
                format!("/security/accounts/{id}/roles/{role}"),
                None,
            )
            .await
            .map(|_| ())
    }
    /// `GET /security/accounts/{id}/scopes`.
    pub async fn account_scopes(&self, id: Uuid) -> Result<Vec<Scope>, EmError> {
        self.client
            .read(
                self.tag,
                format!("/security/accounts/{id}/scopes"),
                |c, body| c.scopes(body),
            )
            .await
    }
    /// `GET /security/accounts/{id}/scopes/{scope}`.
    pub async fn account_scope(&self, id: Uuid, scope: Uuid) -> Result<Scope, EmError> {
        self.client
            .read(
                self.tag,
                format!("/security/accounts/{id}/scopes/{scope}"),
                |c, body| c.scope(body),
            )
            .await
    }
    /// `POST /security/accounts/{id}/scopes` (201 or 202 is success).
    pub async fn add_scopes(&self, id: Uuid, items: &[ScopeItem]) -> Result<(), EmError> {
        let body = self.client.codec.scope_create_spec(items);
        self.client
            .write(
                self.tag,
                Method::POST,
                format!("/security/accounts/{id}/scopes"),
                Some(body),
            )
            .await
            .map(|_| ())
    }
    /// `DELETE /security/accounts/{id}/scopes/{scope}`.
    pub async fn remove_scope(&self, id: Uuid, scope: Uuid) -> Result<(), EmError> {
        self.client
            .write(
                self.tag,
                Method::DELETE,
                format!("/security/accounts/{id}/scopes/{scope}"),
                None,
            )
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
