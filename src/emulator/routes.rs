//! The HTTP surface: the axum router with every `/api` endpoint, the session and role checks
//! in front of them, and the unauthenticated `/_emulator` inspection endpoints. The endpoints
//! themselves are in a file per part of the API: `sessions.rs` (the entry point, logon, logon
//! sessions and tasks) and `security.rs` (accounts, their roles and scopes, and roles).
//!
//! Paths reach the router already lower-cased and without a trailing slash (see
//! `server.rs`), so routes are declared in lower case and match EM's case-insensitive URLs;
//! journal entries and `Href`s use the path as the client sent it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use uuid::Uuid;

use super::body;
use super::state::{self, Caller, Origin, Shared};
use super::wire::{ApiError, Doc, Wire, body_response};

mod security;
mod sessions;

use security::*;
use sessions::*;

/// The session header and cookie name.
pub(crate) const SESSION_HEADER: &str = "X-RestSvcSessionId";

/// The request target (path and query) exactly as the client sent it, kept by the server
/// before it normalises the path for routing.
#[derive(Clone, Debug)]
pub(crate) struct OriginalTarget(pub String);

/// The router over `shared`.
// One route a line, so that the table reads as a map of the API; rustfmt would spread most
// routes over three lines.
#[rustfmt::skip]
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api", get(entry_point))
        .route("/api/sessionmngr", post(logon))
        .route("/api/logonsessions", get(list_sessions))
        .route("/api/logonsessions/{id}", get(get_session).delete(delete_session))
        .route("/api/tasks/{id}", get(get_task))
        .route("/api/security", get(security))
        .route("/api/security/accounts", get(list_accounts).post(post_accounts))
        .route("/api/security/accounts/{id}", get(get_account).post(toggle).delete(delete_account))
        .route("/api/security/accounts/{id}/roles", get(account_roles).post(assign_role))
        .route("/api/security/accounts/{id}/roles/{role}", get(account_role).delete(remove_role))
        .route("/api/security/accounts/{id}/scopes", get(account_scopes).post(add_scopes))
        .route("/api/security/accounts/{id}/scopes/{scope}", get(account_scope).delete(remove_scope))
        .route("/api/security/roles", get(roles))
        .route("/api/security/roles/{id}", get(role))
        .route("/_emulator/state", get(inspect_state))
        .route("/_emulator/journal", get(inspect_journal))
        .route("/_emulator/requests", get(inspect_requests))
        .fallback(fallback)
        .layer(middleware::from_fn(bodiless_errors))
        .with_state(shared)
}

/// What every handler knows about its request.
struct Ctx {
    shared: Arc<Shared>,
    wire: Wire,
    /// The absolute API root, from the listener's scheme and the request's `Host`.
    base: String,
    origin: Origin,
}

impl Ctx {
    fn doc(&self, status: StatusCode, doc: &Doc) -> Response {
        body_response(status, self.wire, doc.render(self.wire))
    }

    fn finish(&self, result: Result<Response, ApiError>) -> Response {
        result.unwrap_or_else(|e| e.response(self.wire))
    }
}

impl FromRequestParts<Arc<Shared>> for Ctx {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Infallible> {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| parts.uri.authority().map(|a| a.as_str().to_owned()))
            .filter(|h| is_host(h))
            .unwrap_or_else(|| shared.local_addr.to_string());
        let path = parts
            .extensions
            .get::<OriginalTarget>()
            .map(|t| t.0.clone())
            .unwrap_or_else(|| parts.uri.to_string());
        Ok(Ctx {
            shared: shared.clone(),
            wire: Wire::negotiate(&parts.headers),
            base: format!("{}://{host}/api", shared.scheme),
            origin: Origin {
                method: parts.method.to_string(),
                path,
            },
        })
    }
}

/// Whether a `Host` value is safe to echo into `Href`s: a name or address and a port.
fn is_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'))
}

/// The session token: the `X-RestSvcSessionId` cookie when present (EM prefers it), else the
/// header of that name.
pub(crate) fn session_token(headers: &HeaderMap) -> Option<String> {
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case(SESSION_HEADER))
        .map(|(_, value)| value.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty());
    cookie.or_else(|| {
        headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    })
}

/// A request made with a valid session.
struct Authed {
    ctx: Ctx,
    caller: Caller,
}

impl FromRequestParts<Arc<Shared>> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, Response> {
        let Ok(ctx) = Ctx::from_request_parts(parts, shared).await;
        let token = session_token(&parts.headers);
        let caller = shared
            .lock()
            .authenticate(token.as_deref(), Instant::now())
            .map_err(|e| e.response(ctx.wire))?;
        Ok(Authed { ctx, caller })
    }
}

impl Authed {
    /// Answers a request about the `what` (`Account`, `Role`, ...) the URL names by `id`: what
    /// `answer` makes of its GUID; a 404 when `id` is none; any error as an `Error` body.
    fn about(
        &self,
        id: &str,
        what: &str,
        answer: impl FnOnce(&Ctx, Uuid) -> Result<Response, ApiError>,
    ) -> Response {
        let ctx = &self.ctx;
        ctx.finish(guid(id, what).and_then(|id| answer(ctx, id)))
    }

    /// Answers a request about one of an account's roles or scopes (`what`: `Role` or `Scope`),
    /// the URL naming both by `ids`: `answer` gets the locked state and both GUIDs. The account
    /// is looked up before the item's id is read, so an unknown account is the 404 whatever
    /// the item, and the lock is held from that look-up to the answer.
    fn about_item(
        &self,
        (id, item): &(String, String),
        what: &str,
        answer: impl FnOnce(&Ctx, &mut state::State, Uuid, Uuid) -> Result<Response, ApiError>,
    ) -> Response {
        self.about(id, "Account", |ctx, id| {
            let mut st = ctx.shared.lock();
            st.account(id)?;
            let item = guid(item, what)?;
            answer(ctx, &mut st, id, item)
        })
    }
}

/// A request made with a Portal Administrator's session: only they may use `/security`.
struct Admin(Authed);

impl FromRequestParts<Arc<Shared>> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, Response> {
        let authed = Authed::from_request_parts(parts, shared).await?;
        if !authed.caller.admin {
            return Err(ApiError::forbidden().response(authed.ctx.wire));
        }
        Ok(Admin(authed))
    }
}

/// A request's body and the headers that say how to read it. It is decoded only when the
/// handler asks, so each handler keeps the order of its checks: an id in the URL that is no
/// GUID is a 404 before the body is read.
struct Posted {
    headers: HeaderMap,
    bytes: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for Posted {
    type Rejection = BytesRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, BytesRejection> {
        let headers = req.headers().clone();
        let bytes = Bytes::from_request(req, state).await?;
        Ok(Posted { headers, bytes })
    }
}

impl Posted {
    fn decode(&self) -> Result<body::Body, ApiError> {
        body::decode(&self.headers, &self.bytes)
    }
}

/// A GUID from the URL; anything else names nothing, so it is a 404.
fn guid(text: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::not_found(format!("{what} {text} was not found")))
}

/// Whether the query holds `key=value`, both compared case-insensitively.
fn query_is(query: &Option<String>, key: &str, value: &str) -> bool {
    query_get(query, key).is_some_and(|v| v.eq_ignore_ascii_case(value))
}

fn query_get(query: &Option<String>, key: &str) -> Option<String> {
    let q = query.as_deref()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.into_owned())
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("values built from URLs and base64 are valid header text")
}

fn created_at(location: String) -> Response {
    let mut resp = StatusCode::CREATED.into_response();
    resp.headers_mut()
        .insert(header::LOCATION, header_value(&location));
    resp
}

// --- inspection --------------------------------------------------------------------------

async fn inspect_state(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.lock().snapshot()).into_response()
}

async fn inspect_journal(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.lock().journal.clone()).into_response()
}

async fn inspect_requests(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.lock().requests.clone()).into_response()
}

// --- everything else ---------------------------------------------------------------------

/// Unknown paths. Under `/api` the session is checked first (and the role under
/// `/security`), so an unknown URL never tells an unauthenticated caller more than a known
/// one would.
async fn fallback(ctx: Ctx, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if path.starts_with("/api/") {
        let token = session_token(&headers);
        let caller = ctx
            .shared
            .lock()
            .authenticate(token.as_deref(), Instant::now());
        match caller {
            Err(e) => return e.response(ctx.wire),
            Ok(c) if path.starts_with("/api/security/") && !c.admin => {
                return ApiError::forbidden().response(ctx.wire);
            }
            Ok(_) => {}
        }
    }
    ApiError::not_found(format!("The resource {} was not found", ctx.origin.path))
        .response(ctx.wire)
}

/// Gives error answers the router made without a body (405 for an unsupported method, for
/// one) an `Error` body in the negotiated format, as EM's status table promises.
async fn bodiless_errors(req: Request, next: Next) -> Response {
    let wire = Wire::negotiate(req.headers());
    let method = req.method().clone();
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error())
        || resp.headers().contains_key(header::CONTENT_TYPE)
    {
        return resp;
    }
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        format!("The method {method} is not supported by this resource")
    } else {
        status.canonical_reason().unwrap_or("Error").to_owned()
    };
    let (mut parts, _) = resp.into_parts();
    let fixed = ApiError::new(status, message).response(wire);
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in fixed.headers() {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, fixed.into_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_wins_over_the_header() {
        let mut h = HeaderMap::new();
        assert_eq!(session_token(&h), None);
        h.insert(
            "x-restsvcsessionid",
            HeaderValue::from_static("from-header"),
        );
        assert_eq!(session_token(&h).as_deref(), Some("from-header"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; X-RestSvcSessionId=from+cookie=="),
        );
        assert_eq!(session_token(&h).as_deref(), Some("from+cookie=="));
    }

    #[test]
    fn hosts_and_queries() {
        assert!(is_host("127.0.0.1:9398") && is_host("[::1]:1") && is_host("em.tech.local"));
        assert!(!is_host("evil\"><x") && !is_host(""));
        let q = Some("v=latest&FORMAT=entity".to_owned());
        assert!(query_is(&q, "format", "Entity"));
        assert!(!query_is(&None, "format", "Entity"));
        assert_eq!(query_get(&q, "V").as_deref(), Some("latest"));
    }
}
