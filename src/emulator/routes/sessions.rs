//! The endpoints outside `/security`: the entry point, logon and logon sessions, and tasks.

use std::time::Instant;

use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::{Authed, Ctx, SESSION_HEADER, header_value, query_get};
use crate::emulator::repr;
use crate::emulator::wire::{ApiError, Doc};

pub(super) async fn entry_point(ctx: Ctx) -> Response {
    ctx.doc(StatusCode::OK, &repr::entry_point(&ctx.base))
}

/// Reads `Authorization: Basic base64(user:password)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

pub(super) async fn logon(ctx: Ctx, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    if let Some(v) = query_get(&query, "v") {
        let known = v.eq_ignore_ascii_case("latest")
            || repr::VERSIONS.iter().any(|k| k.eq_ignore_ascii_case(&v));
        if !known {
            return ApiError::bad_request(format!(
                "API version {v} is not supported; use latest, v1_5, v1_6 or v1_7"
            ))
            .response(ctx.wire);
        }
    }
    let session = basic_credentials(&headers)
        .ok_or_else(|| ApiError::unauthorized("Authentication failed: send Basic credentials"))
        .and_then(|(user, password)| ctx.shared.lock().logon(&user, &password, Instant::now()));
    match session {
        Ok(s) => {
            let element = repr::logon_session(&ctx.base, &s);
            let mut resp = ctx.doc(StatusCode::CREATED, &Doc::One(element));
            let h = resp.headers_mut();
            h.insert(SESSION_HEADER, header_value(&s.token));
            h.insert(
                header::SET_COOKIE,
                header_value(&format!("{SESSION_HEADER}={}; Path=/api", s.token)),
            );
            h.insert(
                header::LOCATION,
                header_value(&format!("{}/logonSessions/{}", ctx.base, s.id)),
            );
            resp
        }
        Err(e) => {
            let mut resp = e.response(ctx.wire);
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic Realm=RestSvc"),
            );
            resp
        }
    }
}

pub(super) async fn list_sessions(a: Authed) -> Response {
    let doc = repr::logon_sessions(&a.ctx.base, a.ctx.shared.lock().sessions.iter());
    a.ctx.doc(StatusCode::OK, &doc)
}

pub(super) async fn get_session(a: Authed, Path(id): Path<String>) -> Response {
    a.about(&id, "Logon session", |ctx, id| {
        let st = ctx.shared.lock();
        let doc = Doc::One(repr::logon_session(&ctx.base, st.session(id)?));
        Ok(ctx.doc(StatusCode::OK, &doc))
    })
}

pub(super) async fn delete_session(a: Authed, Path(id): Path<String>) -> Response {
    a.about(&id, "Logon session", |ctx, id| {
        ctx.shared.lock().logout(id)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}

/// `GET /tasks/{id}`: task ids (`task-1`, ...) are no GUIDs, so the id is looked up as sent.
pub(super) async fn get_task(a: Authed, Path(id): Path<String>) -> Response {
    let ctx = &a.ctx;
    ctx.finish((|| {
        let st = ctx.shared.lock();
        Ok(ctx.doc(StatusCode::OK, &repr::task(&ctx.base, st.task(&id)?)))
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_decoded() {
        let mut h = HeaderMap::new();
        assert_eq!(basic_credentials(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YWRtaW46ZTptdWxhdG9y"),
        );
        assert_eq!(
            basic_credentials(&h),
            Some(("admin".into(), "e:mulator".into()))
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(basic_credentials(&h), None);
    }
}
