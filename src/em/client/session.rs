//! The client's session, one shared by all callers: logged on when a request first needs it,
//! logged on again after a 401 (once, for every caller that saw the same session expire), and
//! logged out. The id a logon answer names is checked before a URL is built with it, and its
//! token is redacted from everything the server sends after. A request carries the session that
//! is current when it leaves, after its record is committed and its place taken, not the one of
//! when it began to wait: a run's request may wait for many others' time.

use std::sync::Arc;

use http::Method;
use http::header::{HeaderMap, HeaderValue, LOCATION, SET_COOKIE};

use super::{Answer, Auth, Client, MAX_ANSWER_BYTES, Request};
use crate::em::codec;
use crate::em::{EmError, LogonSession, RequestTag};

/// The session token header, sent on every request but the logon.
pub(super) const SESSION_HEADER: &str = "X-RestSvcSessionId";

/// Re-logons one call may trigger. More than one is needed when sessions die quickly (a server
/// expiring sessions after a few requests can kill a fresh session before a busy caller's
/// resend), but a server that refuses every fresh session must not be asked forever.
const MAX_RELOGONS: u32 = 3;

/// A live session. Its token is a credential and never shows in `Debug` output.
pub(super) struct Session {
    /// The token as the header every request carries, built once; marked sensitive.
    pub(super) token: HeaderValue,
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
pub(super) struct SessionSlot {
    current: Option<Arc<Session>>,
    generation: u64,
}

impl Client {
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
        let target = self.target(&format!("/logonSessions/{}", session.id));
        let answer = self
            .attempt(
                RequestTag::default(),
                &Method::DELETE,
                &target,
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
        self.check(&Method::DELETE, &target, answer).map(|_| ())
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, SessionSlot> {
        self.session
            .lock()
            .expect("the session lock is never held across a panic")
    }

    pub(super) fn current(&self) -> Option<(Arc<Session>, u64)> {
        let slot = self.slot();
        slot.current.clone().map(|s| (s, slot.generation))
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
        let target = self.target("/sessionMngr/?v=latest");
        let answer = self
            .attempt(tag, &method, &target, Auth::Basic, None, MAX_ANSWER_BYTES)
            .await?;
        let answer = self.check(&method, &target, answer)?;
        let decode = |message: String| EmError::Decode {
            method: method.to_string(),
            path: target.clone(),
            message: self.outside(&message),
        };
        let token = session_token(&answer.headers)
            .ok_or_else(|| decode(format!("the logon answer has no {SESSION_HEADER} header")))?;
        // From here on, an echo of the token is redacted like one of the password.
        self.redactor.add_token(&token);
        // Taken from a header's visible text, so it makes a header again; sensitive, so that
        // hyper keeps it out of its own debug output.
        let mut token = HeaderValue::try_from(token)
            .map_err(|_| decode("the logon answer's session token is not header text".into()))?;
        token.set_sensitive(true);
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
    pub(super) async fn exchange(
        &self,
        tag: RequestTag,
        request: &Request,
    ) -> Result<Answer, EmError> {
        let target = self.target(&request.path);
        let mut relogons = 0;
        loop {
            let (session, generation) = self.session_for(tag).await?;
            let answer = self
                .attempt(
                    tag,
                    &request.method,
                    &target,
                    Auth::Current(&session, generation),
                    request.body.as_deref(),
                    request.limit,
                )
                .await?;
            if answer.status != 401 || relogons == MAX_RELOGONS {
                return self.check(&request.method, &target, answer);
            }
            relogons += 1;
            // The session the request carried, which may be newer than the one it began with.
            self.relogon(tag, answer.session.unwrap_or(generation))
                .await?;
            if !request.resend_after_relogon {
                // The fresh session is ready for the caller's own retry.
                return self.check(&request.method, &target, answer);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_tokens_come_from_the_header_or_the_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "set-cookie",
            "X-RestSvcSessionId=abc==; Path=/api;".parse().unwrap(),
        );
        assert_eq!(session_token(&headers).as_deref(), Some("abc=="));
        headers.insert("x-restsvcsessionid", "hdr".parse().unwrap());
        assert_eq!(session_token(&headers).as_deref(), Some("hdr"));
        assert_eq!(session_token(&HeaderMap::new()), None);
    }
}
