//! Logons and sessions: the users who may log on, the sessions they are given, and the checks
//! every authenticated request passes (the idle timeout and the `expire_after` fault).

use std::time::Instant;

use base64::Engine as _;
use rand::RngExt as _;
use uuid::Uuid;

use super::State;
use super::roles::PORTAL_ADMINISTRATOR;
use crate::emulator::wire::ApiError;

/// A logon the emulator accepts.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct User {
    /// The logon name.
    pub name: String,
    /// The password.
    pub password: String,
    /// The EM role it holds; none means it may not log on.
    pub role: Option<Uuid>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A logon session.
#[derive(Clone)]
pub(crate) struct Session {
    /// `SessionId`, the id in `/logonSessions/{id}`.
    pub id: Uuid,
    /// The opaque `X-RestSvcSessionId` token.
    pub token: String,
    /// The logged-on user's name.
    pub user: String,
    /// Whether the user is a Portal Administrator.
    pub admin: bool,
    /// When the session was last used.
    pub last_used: Instant,
    /// Requests accepted with it.
    pub uses: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a credential; it stays out of Debug output.
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("admin", &self.admin)
            .field("uses", &self.uses)
            .finish_non_exhaustive()
    }
}

/// What a handler needs to know about the caller's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The session's id.
    pub session_id: Uuid,
    /// The user's name.
    pub user: String,
    /// Whether the user is a Portal Administrator.
    pub admin: bool,
}

impl State {
    /// Checks a Basic logon and opens a session. Unknown users, wrong passwords and users
    /// without an EM role all get the same 401, as EM does not say which part was wrong.
    pub(crate) fn logon(
        &mut self,
        user: &str,
        password: &str,
        now: Instant,
    ) -> Result<Session, ApiError> {
        let found = self
            .users
            .iter()
            .find(|u| u.name.eq_ignore_ascii_case(user) && u.password == password)
            .filter(|u| u.role.is_some())
            .cloned()
            .ok_or_else(|| {
                ApiError::unauthorized("Authentication failed: invalid user name or password")
            })?;
        let mut raw = [0u8; 16];
        rand::rng().fill(&mut raw);
        let token = base64::engine::general_purpose::STANDARD.encode(raw);
        let session = Session {
            id: Uuid::new_v4(),
            token: token.clone(),
            user: found.name.clone(),
            admin: found.role == Some(PORTAL_ADMINISTRATOR),
            last_used: now,
            uses: 0,
        };
        self.tokens_issued.push(token);
        self.sessions.push(session.clone());
        Ok(session)
    }

    /// Drops sessions idle for longer than the timeout.
    pub(crate) fn prune_sessions(&mut self, now: Instant) {
        let timeout = self.options.idle_timeout;
        self.sessions
            .retain(|s| now.saturating_duration_since(s.last_used) <= timeout);
    }

    /// Accepts a request made with `token`: the session must exist, not be idle too long, and
    /// not have used up its request allowance (the `expire_after` fault). Each accepted
    /// request resets the idle clock.
    pub(crate) fn authenticate(
        &mut self,
        token: Option<&str>,
        now: Instant,
    ) -> Result<Caller, ApiError> {
        let token = token.ok_or_else(|| {
            ApiError::unauthorized("Authentication required: send the X-RestSvcSessionId header")
        })?;
        self.prune_sessions(now);
        let expire_after = self.faults.faults().expire_after;
        let at = self
            .sessions
            .iter()
            .position(|s| s.token == token)
            .ok_or_else(|| {
                ApiError::unauthorized("The session has expired or does not exist; log on again")
            })?;
        if expire_after.is_some_and(|n| self.sessions[at].uses >= n) {
            self.sessions.remove(at);
            return Err(ApiError::unauthorized(
                "The session has expired; log on again",
            ));
        }
        let session = &mut self.sessions[at];
        session.uses += 1;
        session.last_used = now;
        Ok(Caller {
            session_id: session.id,
            user: session.user.clone(),
            admin: session.admin,
        })
    }

    /// The live session with this id.
    pub(crate) fn session(&self, id: Uuid) -> Result<&Session, ApiError> {
        self.sessions
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| ApiError::not_found(format!("Logon session {id} was not found")))
    }

    /// Ends the session with this id.
    pub(crate) fn logout(&mut self, id: Uuid) -> Result<(), ApiError> {
        let at = self
            .sessions
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(|| ApiError::not_found(format!("Logon session {id} was not found")))?;
        self.sessions.remove(at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::fixtures::state;
    use super::*;
    use crate::emulator::Faults;

    #[test]
    fn tokens_are_opaque_and_sessions_expire_when_idle_or_used_up() {
        let mut st = state(Faults {
            expire_after: Some(2),
            ..Faults::default()
        });
        let t0 = Instant::now();
        assert_eq!(st.logon("admin", "bad", t0).unwrap_err().status, 401);
        let s = st.logon("ADMIN", "pw", t0).unwrap();
        assert_ne!(s.token, s.id.to_string());
        assert_eq!(s.token.len(), 24);
        assert!(st.authenticate(Some(&s.token), t0).unwrap().admin);
        st.authenticate(Some(&s.token), t0).unwrap();
        assert_eq!(st.authenticate(Some(&s.token), t0).unwrap_err().status, 401);
        assert!(st.sessions.is_empty());

        let s = st.logon("admin", "pw", t0).unwrap();
        let late = t0 + Duration::from_secs(61);
        assert_eq!(
            st.authenticate(Some(&s.token), late).unwrap_err().status,
            401
        );
        assert_eq!(st.authenticate(None, late).unwrap_err().status, 401);
    }
}
