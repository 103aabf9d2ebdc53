//! The HTTP surface: the axum router with every `/api` endpoint, the session and role checks
//! in front of them, and the unauthenticated `/_emulator` inspection endpoints.
//!
//! Paths reach the router already lower-cased and without a trailing slash (see
//! `server.rs`), so routes are declared in lower case and match EM's case-insensitive URLs;
//! journal entries and `Href`s use the path as the client sent it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use uuid::Uuid;

use super::body;
use super::repr;
use super::state::{Caller, Origin, ROLES, Shared, role_by_id, scope_not_found};
use super::wire::{ApiError, Doc, Wire, body_response};

/// The session header and cookie name.
pub(crate) const SESSION_HEADER: &str = "X-RestSvcSessionId";

/// The request target (path and query) exactly as the client sent it, kept by the server
/// before it normalises the path for routing.
#[derive(Clone, Debug)]
pub(crate) struct OriginalTarget(pub String);

/// The router over `shared`.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api", get(entry_point))
        .route("/api/sessionmngr", axum::routing::post(logon))
        .route("/api/logonsessions", get(list_sessions))
        .route(
            "/api/logonsessions/{id}",
            get(get_session).delete(delete_session),
        )
        .route("/api/tasks/{id}", get(get_task))
        .route("/api/security", get(security))
        .route(
            "/api/security/accounts",
            get(list_accounts).post(post_accounts),
        )
        .route(
            "/api/security/accounts/{id}",
            get(get_account).post(toggle).delete(delete_account),
        )
        .route(
            "/api/security/accounts/{id}/roles",
            get(account_roles).post(assign_role),
        )
        .route(
            "/api/security/accounts/{id}/roles/{role}",
            get(account_role).delete(remove_role),
        )
        .route(
            "/api/security/accounts/{id}/scopes",
            get(account_scopes).post(add_scopes),
        )
        .route(
            "/api/security/accounts/{id}/scopes/{scope}",
            get(account_scope).delete(remove_scope),
        )
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

// --- entry point and sessions ------------------------------------------------------------

async fn entry_point(ctx: Ctx) -> Response {
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

async fn logon(ctx: Ctx, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
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

async fn list_sessions(a: Authed) -> Response {
    let doc = repr::logon_sessions(&a.ctx.base, a.ctx.shared.lock().sessions.iter());
    a.ctx.doc(StatusCode::OK, &doc)
}

async fn get_session(a: Authed, Path(id): Path<String>) -> Response {
    let ctx = &a.ctx;
    ctx.finish((|| {
        let id = guid(&id, "Logon session")?;
        let st = ctx.shared.lock();
        let doc = Doc::One(repr::logon_session(&ctx.base, st.session(id)?));
        Ok(ctx.doc(StatusCode::OK, &doc))
    })())
}

async fn delete_session(a: Authed, Path(id): Path<String>) -> Response {
    let ctx = &a.ctx;
    ctx.finish((|| {
        let id = guid(&id, "Logon session")?;
        ctx.shared.lock().logout(id)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })())
}

async fn get_task(a: Authed, Path(id): Path<String>) -> Response {
    let ctx = &a.ctx;
    ctx.finish((|| {
        let st = ctx.shared.lock();
        Ok(ctx.doc(StatusCode::OK, &repr::task(&ctx.base, st.task(&id)?)))
    })())
}

// --- security and accounts ---------------------------------------------------------------

async fn security(Admin(a): Admin) -> Response {
    a.ctx.doc(StatusCode::OK, &repr::security(&a.ctx.base))
}

async fn list_accounts(Admin(a): Admin) -> Response {
    let doc = repr::account_refs(&a.ctx.base, a.ctx.shared.lock().accounts.iter());
    a.ctx.doc(StatusCode::OK, &doc)
}

/// `POST /security/accounts`: creates an account, or with `?action=rebuildScope` starts a
/// scope rebuild.
async fn post_accounts(
    Admin(a): Admin,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let ctx = &a.ctx;
    ctx.finish((|| match query_get(&query, "action") {
        Some(action) if action.eq_ignore_ascii_case("rebuildScope") => {
            let mode = body::rebuild_spec(&body::decode(&headers, &bytes)?)?;
            let task = ctx.shared.lock().rebuild(mode, &a.caller, &ctx.origin);
            Ok(ctx.doc(StatusCode::CREATED, &repr::task(&ctx.base, &task)))
        }
        Some(action) => Err(ApiError::bad_request(format!("unknown action {action}"))),
        None => {
            let spec = body::account_spec(&body::decode(&headers, &bytes)?)?;
            let id = ctx.shared.lock().create_account(&spec, &ctx.origin)?;
            Ok(created_at(format!("{}/security/accounts/{id}", ctx.base)))
        }
    })())
}

async fn get_account(
    Admin(a): Admin,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let ctx = &a.ctx;
    ctx.finish((|| {
        let id = guid(&id, "Account")?;
        let st = ctx.shared.lock();
        let account = st.account(id)?;
        let doc = if query_is(&query, "format", "Entity") {
            repr::account_entity(&ctx.base, account)
        } else {
            Doc::One(repr::account_ref(&ctx.base, account, "EntityRef"))
        };
        Ok(ctx.doc(StatusCode::OK, &doc))
    })())
}

/// `POST /security/accounts/{id}`: flips "restore all VMs"; any body is ignored.
async fn toggle(Admin(a): Admin, Path(id): Path<String>) -> Response {
    let ctx = &a.ctx;
    ctx.finish((|| {
        let id = guid(&id, "Account")?;
        ctx.shared.lock().toggle_restore_all_vms(id, &ctx.origin)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })())
}

async fn delete_account(Admin(a): Admin, Path(id): Path<String>) -> Response {
    let ctx = &a.ctx;
    ctx.finish((|| {
        let id = guid(&id, "Account")?;
        ctx.shared.lock().delete_account(id, &ctx.origin)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })())
}

// --- account roles -----------------------------------------------------------------------

async fn account_roles(Admin(a): Admin, Path(id): Path<String>) -> Response {
    let ctx = &a.ctx;
    ctx.finish((|| {
        let id = guid(&id, "Account")?;
        let st = ctx.shared.lock();
        let account = st.account(id)?;
        let held: Vec<_> = account
            .roles
            .iter()
            .filter_map(|r| role_by_id(*r))
            .collect();
        Ok(ctx.doc(
            StatusCode::OK,
            &repr::account_roles(&ctx.base, id, held.iter()),
        ))
    })())
}

async fn assign_role(
    Admin(a): Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let ctx = &a.ctx;
    ctx.finish((|| {
        let id = guid(&id, "Account")?;
        let uid = body::role_spec(&body::decode(&headers, &bytes)?)?;
        ctx.shared.lock().assign_role(id, &uid, &ctx.origin)?;
        let role = body::role_uid(&uid)?;
        Ok(created_at(format!(
            "{}/security/accounts/{id}/roles/{role}",
            ctx.base
        )))
    })())
}

async fn account_role(Admin(a): Admin, Path((id, role)): Path<(String, String)>) -> Response {
    let ctx = &a.ctx;
    ctx.finish((|| {
        let id = guid(&id, "Account")?;
        let st = ctx.shared.lock();
        let account = st.account(id)?;
        let role_id = guid(&role, "Role")?;
        let role = role_by_id(role_id)
            .filter(|r| account.roles.contains(&r.id))
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "Role {role_id} is not assigned to account {}",
                    account.name
                ))
            })?;
        Ok(ctx.doc(
            StatusCode::OK,
            &Doc::One(repr::account_role(&ctx.base, id, &role, true)),
        ))
    })())
}

async fn remove_role(Admin(a): Admin, Path((id, role)): Path<(String, String)>) -> Response {
    let ctx = &a.ctx;
    ctx.finish((|| {
        let id = guid(&id, "Account")?;
        let mut st = ctx.shared.lock();
        st.account(id)?;
        let role = guid(&role, "Role")?;
        st.remove_role(id, role, &ctx.origin)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })())
}

// --- account scopes ----------------------------------------------------------------------

async fn account_scopes(Admin(a): Admin, Path(id): Path<String>) -> Response {
    let ctx = &a.ctx;
    ctx.finish((|| {
        let id = guid(&id, "Account")?;
        let st = ctx.shared.lock();
        let account = st.account(id)?;
        Ok(ctx.doc(
            StatusCode::OK,
            &repr::scopes(&ctx.base, id, account.scopes.iter()),
        ))
    })())
}

async fn add_scopes(
    Admin(a): Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let ctx = &a.ctx;
    ctx.finish((|| {
        let id = guid(&id, "Account")?;
        let items = body::scope_spec(&body::decode(&headers, &bytes)?)?;
        let mut st = ctx.shared.lock();
        st.add_scopes(id, &items, &ctx.origin)?;
        Ok(st.options.scope_post_status.into_response())
    })())
}

async fn account_scope(Admin(a): Admin, Path((id, scope)): Path<(String, String)>) -> Response {
    let ctx = &a.ctx;
    ctx.finish((|| {
        let id = guid(&id, "Account")?;
        let st = ctx.shared.lock();
        let account = st.account(id)?;
        let scope_id = guid(&scope, "Scope")?;
        let scope = account
            .scopes
            .iter()
            .find(|s| s.id == scope_id)
            .ok_or_else(|| scope_not_found(scope_id))?;
        Ok(ctx.doc(StatusCode::OK, &Doc::One(repr::scope(&ctx.base, id, scope))))
    })())
}

async fn remove_scope(Admin(a): Admin, Path((id, scope)): Path<(String, String)>) -> Response {
    let ctx = &a.ctx;
    ctx.finish((|| {
        let id = guid(&id, "Account")?;
        let mut st = ctx.shared.lock();
        st.account(id)?;
        let scope = guid(&scope, "Scope")?;
        st.remove_scope(id, scope, &ctx.origin)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })())
}

// --- roles -------------------------------------------------------------------------------

async fn roles(Admin(a): Admin) -> Response {
    a.ctx
        .doc(StatusCode::OK, &repr::role_refs(&a.ctx.base, ROLES.iter()))
}

async fn role(Admin(a): Admin, Path(id): Path<String>, RawQuery(query): RawQuery) -> Response {
    let ctx = &a.ctx;
    ctx.finish((|| {
        let role = role_by_id(guid(&id, "Role")?)
            .ok_or_else(|| ApiError::not_found(format!("Role {id} was not found")))?;
        let doc = if query_is(&query, "format", "Entity") {
            repr::role_entity(&ctx.base, &role)
        } else {
            Doc::One(repr::role_ref(&ctx.base, &role, "EntityRef"))
        };
        Ok(ctx.doc(StatusCode::OK, &doc))
    })())
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
