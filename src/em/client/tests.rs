//! Session handling, request shape and error mapping of the client, against a small in-test
//! server on 127.0.0.1 that plays EM's part as far as each test needs.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use base64::Engine;
use uuid::Uuid;

use super::super::{
    AttemptOutcome, CertificateProblem, Client, ClientConfig, EmError, Fingerprint, NoopObserver,
    RequestObserver, RequestTag, Retry, Secret, TlsOptions, Wire,
};

const PASSWORD: &str = "s3cret-Pa55word";

/// One request as the fake server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    basic_auth: bool,
    token: Option<String>,
    accept: Option<String>,
    content_type: Option<String>,
    body: String,
}

/// The fake EM's state and switches.
#[derive(Default)]
struct Fake {
    logons: AtomicU64,
    valid: Mutex<HashSet<String>>,
    seen: Mutex<Vec<Seen>>,
    /// Refuse every logon (bad credentials).
    refuse_logons: AtomicBool,
    /// Answer 401 to every non-logon request.
    always_401: AtomicBool,
    /// The status `GET /security/accounts` answers with.
    accounts_status: AtomicU64,
    /// Refused logons quote the `Authorization` header as it came, not decoded.
    echo_authorization: AtomicBool,
    /// The `SessionId` logon answers give, instead of `sid-N`.
    session_id: Mutex<Option<String>>,
}

impl Fake {
    fn expire_all(&self) {
        self.valid.lock().unwrap().clear();
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, method: &str, path_part: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.path.contains(path_part))
            .count()
    }
}

fn reply(status: u16, headers: &[(&str, String)], body: String) -> Response {
    let mut builder = Response::builder().status(status);
    for (k, v) in headers {
        builder = builder.header(*k, v.as_str());
    }
    builder.body(Body::from(body)).unwrap()
}

fn error_reply(status: u16, message: &str, json: bool) -> Response {
    if json {
        let body = serde_json::json!({"FirstChanceExceptionMessage": null, "Message": message, "StackTrace": null, "Status": null, "StatusCode": status});
        reply(
            status,
            &[("content-type", "application/json".into())],
            body.to_string(),
        )
    } else {
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><Error xmlns="http://www.veeam.com/ent/v1.0" Message="{message}" StatusCode="{status}"/>"#
        );
        reply(status, &[("content-type", "application/xml".into())], body)
    }
}

async fn handle(
    State(fake): State<Arc<Fake>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let authorization = header("authorization");
    let token = header("x-restsvcsessionid");
    let json = header("accept").is_some_and(|a| a.contains("json"));
    fake.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: path.clone(),
        basic_auth: authorization.is_some(),
        token: token.clone(),
        accept: header("accept"),
        content_type: header("content-type"),
        body,
    });
    let lower = uri.path().to_ascii_lowercase();

    if method == Method::GET && lower == "/api/" {
        let body = r#"<EnterpriseManager xmlns="http://www.veeam.com/ent/v1.0"><SupportedVersions><SupportedVersion Name="v1_7"/></SupportedVersions></EnterpriseManager>"#;
        return reply(200, &[], body.into());
    }
    if method == Method::POST && lower == "/api/sessionmngr/" {
        // A little latency widens the window in which concurrent callers see the same 401.
        tokio::time::sleep(Duration::from_millis(20)).await;
        if fake.refuse_logons.load(Ordering::SeqCst) {
            // A careless server echoing the credentials it refused.
            let sent = authorization.unwrap_or_default();
            if fake.echo_authorization.load(Ordering::SeqCst) {
                return error_reply(401, &format!("no logon with Authorization: {sent}"), json);
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(sent.trim_start_matches("Basic "))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            return error_reply(401, &format!("logon refused for {decoded}"), json);
        }
        let n = fake.logons.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!("token-{n}-{}", Uuid::new_v4());
        fake.valid.lock().unwrap().insert(token.clone());
        let sid = fake
            .session_id
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| format!("sid-{n}"));
        let body = if json {
            format!(r#"{{"UserName":"TECH\\admin","SessionId":"{sid}","Links":null}}"#)
        } else {
            format!(
                r#"<LogonSession xmlns="http://www.veeam.com/ent/v1.0"><UserName>TECH\admin</UserName><SessionId>{sid}</SessionId></LogonSession>"#
            )
        };
        return reply(
            201,
            &[
                ("X-RestSvcSessionId", token),
                ("Location", format!("http://h/api/logonSessions/{sid}")),
            ],
            body,
        );
    }
    let valid = token.is_some_and(|t| fake.valid.lock().unwrap().contains(&t));
    if !valid || fake.always_401.load(Ordering::SeqCst) {
        return error_reply(401, "session expired", json);
    }
    if method == Method::DELETE && lower.starts_with("/api/logonsessions/") {
        fake.expire_all();
        return reply(204, &[], String::new());
    }
    if method == Method::GET && lower == "/api/security/roles" {
        let body = if json {
            r#"{"Refs":[{"UID":"urn:veeam:EnterpriseRole:d19a3d33-cb77-4ffe-94e6-001432483a4e","Name":"Portal User","Href":"http://h/api/security/roles/d19a3d33-cb77-4ffe-94e6-001432483a4e","Type":"EnterpriseRoleReference","Links":null}]}"#.to_string()
        } else {
            r#"<EntityReferences xmlns="http://www.veeam.com/ent/v1.0"><Ref UID="urn:veeam:EnterpriseRole:d19a3d33-cb77-4ffe-94e6-001432483a4e" Name="Portal User" Href="http://h/api/security/roles/d19a3d33-cb77-4ffe-94e6-001432483a4e" Type="EnterpriseRoleReference"/></EntityReferences>"#.to_string()
        };
        return reply(200, &[], body);
    }
    if method == Method::GET && lower == "/api/security/accounts" {
        return match fake.accounts_status.load(Ordering::SeqCst) {
            503 => {
                let mut r = error_reply(503, "busy", json);
                r.headers_mut().insert("retry-after", "3".parse().unwrap());
                r
            }
            0 | 200 => reply(200, &[], r#"{"Refs":null}"#.into()),
            status => reply(status as u16, &[], format!("plain text failure {status}")),
        };
    }
    if method == Method::POST && lower == "/api/security/accounts" {
        let id = Uuid::new_v4();
        return reply(
            201,
            &[("Location", format!("http://h/api/security/accounts/{id}"))],
            String::new(),
        );
    }
    if method == Method::POST
        && lower.starts_with("/api/security/accounts/")
        && lower.ends_with("/roles")
    {
        return reply(201, &[], String::new());
    }
    if method == Method::POST && lower.starts_with("/api/security/accounts/") {
        return reply(204, &[], String::new());
    }
    if let Some(answer) = oversized(&method, &lower) {
        return answer;
    }
    if method == Method::GET && lower == "/api/slow" {
        tokio::time::sleep(Duration::from_secs(5)).await;
        return reply(200, &[], String::new());
    }
    error_reply(404, "not found", json)
}

/// The answers of `/api/big/N` (N bytes, streamed without a length), `/api/declared/N` (the
/// same with its length announced), `/api/bigerror/N` (a 500 with an N-byte body) and
/// `/api/trickle` (a success whose body never ends, one byte every 50 ms); `None` for other paths.
fn oversized(method: &Method, path: &str) -> Option<Response> {
    use futures_util::StreamExt;
    let (kind, n) = path
        .strip_prefix("/api/")?
        .split_once('/')
        .unwrap_or((path, "0"));
    let n: usize = n.parse().unwrap_or(0);
    let chunks = |n: usize| {
        let chunk = axum::body::Bytes::from(vec![b'x'; 64 * 1024]);
        futures_util::stream::iter((0..n.div_ceil(chunk.len())).map(move |i| {
            let len = chunk.len().min(n - i * chunk.len());
            Ok::<_, std::io::Error>(chunk.slice(..len))
        }))
    };
    let status = if *method == Method::GET { 200 } else { 201 };
    let response = match kind {
        "big" => Response::builder()
            .status(status)
            .body(Body::from_stream(chunks(n))),
        "declared" => Response::builder()
            .status(status)
            .header("content-length", n)
            .body(Body::from_stream(chunks(n))),
        "bigerror" => Response::builder()
            .status(500)
            .body(Body::from_stream(chunks(n))),
        "/api/trickle" => Response::builder().status(200).body(Body::from_stream(
            futures_util::stream::repeat(()).then(|()| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"x"))
            }),
        )),
        _ => return None,
    };
    Some(response.unwrap())
}

fn router(fake: Arc<Fake>) -> Router {
    Router::new().fallback(handle).with_state(fake)
}

/// Serves the fake over plain HTTP; the task ends with the test's runtime.
async fn serve() -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, format!("http://{addr}/api"))
}

fn config(base: &str, wire: Wire) -> ClientConfig {
    ClientConfig::new(
        url::Url::parse(base).unwrap(),
        "TECH\\admin".into(),
        Secret::new(PASSWORD.into()),
        wire,
        TlsOptions::default(),
    )
}

/// An observer that records every call made to it.
#[derive(Default)]
struct Recorder {
    /// Refuse to record every attempt after this many, as a failing audit log does.
    refuse_after: Option<u64>,
    before: AtomicU64,
    sent: Mutex<Vec<(RequestTag, String, String)>>,
    finished: Mutex<Vec<(u64, AttemptOutcome)>>,
}

impl RequestObserver for Recorder {
    fn before_send(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.before.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {})
    }
    fn sending(
        &self,
        tag: RequestTag,
        method: &str,
        path: &str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>> {
        let mut sent = self.sent.lock().unwrap();
        if self.refuse_after.is_some_and(|n| sent.len() as u64 >= n) {
            return Box::pin(async { Err("disk full".to_string()) });
        }
        sent.push((tag, method.to_string(), path.to_string()));
        let id = sent.len() as u64;
        Box::pin(async move { Ok(id) })
    }
    fn finished(&self, id: u64, outcome: &AttemptOutcome, _elapsed: Duration) {
        self.finished.lock().unwrap().push((id, outcome.clone()));
    }
}

fn client(base: &str, wire: Wire) -> Client {
    Client::new(config(base, wire), Arc::new(NoopObserver)).unwrap()
}

#[tokio::test]
async fn a_request_whose_record_is_refused_is_not_sent() {
    let (fake, base) = serve().await;
    // The logon is recorded; the read after it is not, so it must not leave.
    let recorder = Arc::new(Recorder {
        refuse_after: Some(1),
        ..Recorder::default()
    });
    let client = Client::new(config(&base, Wire::Xml), recorder.clone()).unwrap();
    let err = client
        .call(RequestTag::default())
        .roles()
        .await
        .unwrap_err();
    assert!(matches!(err, EmError::NotRecorded { .. }), "{err:?}");
    assert_eq!(err.retry(), Retry::Never);
    assert_eq!(
        err.to_string(),
        "GET /api/security/roles: not sent: disk full"
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "POST");
    // Only the logon was sent, so only its attempt has an end.
    assert_eq!(recorder.finished.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_first_call_logs_on_lazily_and_every_attempt_is_observed() {
    let (fake, base) = serve().await;
    let recorder = Arc::new(Recorder::default());
    let client = Client::new(config(&base, Wire::Xml), recorder.clone()).unwrap();
    let tag = RequestTag {
        row: Some(7),
        attempt: 2,
    };
    let roles = client.call(tag).roles().await.unwrap();
    assert_eq!(roles[0].name, "Portal User");

    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/api/sessionMngr/?v=latest")
    );
    assert!(seen[0].basic_auth && seen[0].token.is_none());
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("GET", "/api/security/roles")
    );
    assert!(!seen[1].basic_auth);
    assert!(
        seen[1]
            .token
            .as_deref()
            .is_some_and(|t| t.starts_with("token-1-"))
    );
    assert!(
        seen.iter()
            .all(|s| s.accept.as_deref() == Some("application/xml"))
    );

    // The logon the call triggered carries the call's tag.
    let sent = recorder.sent.lock().unwrap().clone();
    assert_eq!(
        sent,
        vec![
            (
                tag,
                "POST".to_string(),
                "/api/sessionMngr/?v=latest".to_string()
            ),
            (tag, "GET".to_string(), "/api/security/roles".to_string()),
        ]
    );
    assert_eq!(recorder.before.load(Ordering::SeqCst), 2);
    let finished = recorder.finished.lock().unwrap().clone();
    let statuses: Vec<(u64, Option<u16>)> =
        finished.iter().map(|(id, o)| (*id, o.status)).collect();
    assert_eq!(statuses, vec![(1, Some(201)), (2, Some(200))]);

    // Later calls reuse the session.
    client.call(tag).roles().await.unwrap();
    assert_eq!(fake.logons.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn concurrent_callers_that_see_401_share_one_relogon() {
    for wire in [Wire::Xml, Wire::Json] {
        let (fake, base) = serve().await;
        let client = Arc::new(client(&base, wire));
        client.logon().await.unwrap();
        fake.expire_all();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let c = client.clone();
            tasks.spawn(async move { c.call(RequestTag::default()).roles().await });
        }
        while let Some(result) = tasks.join_next().await {
            assert_eq!(result.unwrap().unwrap().len(), 1);
        }
        assert_eq!(fake.logons.load(Ordering::SeqCst), 2, "{wire:?}");
        assert_eq!(fake.count("POST", "sessionMngr"), 2);
    }
}

#[tokio::test]
async fn relogons_per_call_are_limited_and_the_last_401_is_safe_to_retry() {
    let (fake, base) = serve().await;
    fake.always_401.store(true, Ordering::SeqCst);
    let client = client(&base, Wire::Json);
    let e = client
        .call(RequestTag::default())
        .roles()
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.retry()), (Some(401), Retry::Safe), "{e}");
    assert!(e.to_string().contains("session expired"), "{e}");
    // One lazy logon, then three re-logons, each followed by a resend.
    assert_eq!(fake.logons.load(Ordering::SeqCst), 4);
    assert_eq!(fake.count("GET", "/security/roles"), 4);
}

#[tokio::test]
async fn refused_credentials_are_never_retried_and_never_shown() {
    for wire in [Wire::Xml, Wire::Json] {
        let (fake, base) = serve().await;
        fake.refuse_logons.store(true, Ordering::SeqCst);
        let client = client(&base, wire);
        let e = client.logon().await.unwrap_err();
        assert_eq!((e.status(), e.retry()), (Some(401), Retry::Never), "{e}");
        let e = client
            .call(RequestTag::default())
            .roles()
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.retry()), (Some(401), Retry::Never), "{e}");
        let text = format!("{e} {e:?}");
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(text.contains("logon refused for TECH\\admin:***"), "{text}");
        assert_eq!(fake.count("POST", "sessionMngr"), 2);
        assert_eq!(fake.count("GET", "/security/roles"), 0);
    }
}

#[tokio::test]
async fn the_toggle_is_not_resent_after_a_401() {
    let (fake, base) = serve().await;
    let client = client(&base, Wire::Xml);
    let id = Uuid::new_v4();
    client.logon().await.unwrap();
    fake.expire_all();
    let e = client
        .call(RequestTag::default())
        .toggle_restore_all_vms(id)
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.retry()), (Some(401), Retry::Safe), "{e}");
    // The session was renewed for the caller's retry, but the toggle went out only once.
    assert_eq!(fake.logons.load(Ordering::SeqCst), 2);
    assert_eq!(fake.count("POST", &format!("/security/accounts/{id}")), 1);
    client
        .call(RequestTag::default())
        .toggle_restore_all_vms(id)
        .await
        .unwrap();
    assert_eq!(fake.count("POST", &format!("/security/accounts/{id}")), 2);
    assert_eq!(fake.logons.load(Ordering::SeqCst), 2);
    let toggles: Vec<Seen> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with(&id.to_string()))
        .collect();
    assert!(
        toggles
            .iter()
            .all(|s| s.body.is_empty() && s.content_type.is_none())
    );
}

#[tokio::test]
async fn writes_are_resent_after_a_relogon() {
    let (fake, base) = serve().await;
    let client = client(&base, Wire::Json);
    client.logon().await.unwrap();
    fake.expire_all();
    let id = Uuid::new_v4();
    client
        .call(RequestTag::default())
        .assign_role(
            id,
            "urn:veeam:EnterpriseRole:d19a3d33-cb77-4ffe-94e6-001432483a4e",
        )
        .await
        .unwrap();
    let posts: Vec<Seen> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/roles"))
        .collect();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[1].content_type.as_deref(), Some("application/json"));
    assert_eq!(posts[1].accept.as_deref(), Some("application/json"));
    assert_eq!(
        posts[1].body,
        r#"{"EnterpriseRoleUid":"urn:veeam:EnterpriseRole:d19a3d33-cb77-4ffe-94e6-001432483a4e"}"#
    );
}

#[tokio::test]
async fn logout_deletes_the_session_by_its_id_and_forgets_it() {
    let (fake, base) = serve().await;
    let client = client(&base, Wire::Xml);
    client.logout().await.unwrap();
    assert!(fake.seen().is_empty(), "nothing to log out of");
    let session = client.logon().await.unwrap();
    assert_eq!(
        (session.session_id.as_str(), session.user_name.as_str()),
        ("sid-1", "TECH\\admin")
    );
    client.logout().await.unwrap();
    let last = fake.seen().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("DELETE", "/api/logonSessions/sid-1")
    );
    client.call(RequestTag::default()).roles().await.unwrap();
    assert_eq!(fake.logons.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_entry_point_needs_no_session() {
    let (fake, base) = serve().await;
    let client = client(&format!("{base}/"), Wire::Xml);
    let entry = client
        .call(RequestTag::default())
        .entry_point()
        .await
        .unwrap();
    assert_eq!(entry.versions, vec!["v1_7"]);
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/api/");
    assert!(seen[0].token.is_none() && !seen[0].basic_auth);
}

#[tokio::test]
async fn create_account_reads_the_new_id_from_location() {
    let (fake, base) = serve().await;
    let client = client(&base, Wire::Xml);
    let spec = crate::em::AccountCreateSpec {
        account_type: crate::em::AccountType::User,
        account_name: "TECH\\new".into(),
        role_uids: vec!["urn:veeam:EnterpriseRole:d19a3d33-cb77-4ffe-94e6-001432483a4e".into()],
        allow_restore_all_vms: true,
        scopes: vec![],
        flr: None,
        sql: None,
    };
    let id = client
        .call(RequestTag::default())
        .create_account(&spec)
        .await
        .unwrap();
    assert!(id.is_some());
    let post = fake.seen().pop().unwrap();
    assert_eq!(post.content_type.as_deref(), Some("application/xml"));
    assert!(
        post.body
            .starts_with(r#"<?xml version="1.0" encoding="utf-8"?><EnterpriseAccountCreateSpec"#)
    );
}

#[tokio::test]
async fn error_answers_carry_status_message_and_retry_advice() {
    let (fake, base) = serve().await;
    let client = client(&base, Wire::Xml);
    let call = client.call(RequestTag::default());

    fake.accounts_status.store(503, Ordering::SeqCst);
    let e = call.accounts().await.unwrap_err();
    assert_eq!(
        (e.status(), e.retry(), e.retry_after()),
        (Some(503), Retry::Safe, Some(Duration::from_secs(3)))
    );
    assert_eq!(e.to_string(), "GET /api/security/accounts: HTTP 503: busy");

    fake.accounts_status.store(502, Ordering::SeqCst);
    let e = call.accounts().await.unwrap_err();
    assert_eq!((e.status(), e.retry()), (Some(502), Retry::CheckFirst));
    assert!(e.to_string().ends_with("plain text failure 502"), "{e}");

    fake.accounts_status.store(409, Ordering::SeqCst);
    assert_eq!(call.accounts().await.unwrap_err().retry(), Retry::Never);

    let e = call.account(Uuid::new_v4()).await.unwrap_err();
    assert_eq!((e.status(), e.retry()), (Some(404), Retry::Never));
    assert!(
        matches!(e, EmError::Api { ref path, .. } if path.ends_with("?format=Entity")),
        "{e}"
    );

    // Text that is not the expected document is a decode error.
    fake.accounts_status.store(200, Ordering::SeqCst);
    let e = call.accounts().await.unwrap_err();
    assert!(matches!(e, EmError::Decode { .. }), "{e}");
}

#[tokio::test]
async fn a_refused_connection_is_safe_to_retry() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = client(&format!("http://{addr}/api"), Wire::Xml);
    let e = client.logon().await.unwrap_err();
    assert!(matches!(e, EmError::Transport { .. }), "{e}");
    assert_eq!((e.status(), e.retry()), (None, Retry::Safe), "{e}");
}

#[tokio::test]
async fn a_timeout_after_sending_needs_a_check() {
    let (_fake, base) = serve().await;
    let mut config = config(&base, Wire::Xml);
    config.timeout = Duration::from_millis(300);
    let recorder = Arc::new(Recorder::default());
    let client = Client::new(config, recorder.clone()).unwrap();
    client.logon().await.unwrap();
    let e = client
        .read(RequestTag::default(), "/slow".into(), |_, _| Ok(()))
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.retry()), (None, Retry::CheckFirst), "{e}");
    let finished = recorder.finished.lock().unwrap().clone();
    let last = &finished.last().unwrap().1;
    assert_eq!(last.status, None);
    assert!(last.error.is_some());
}

#[tokio::test]
async fn a_connection_dropped_after_the_request_needs_a_check() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            drop(stream);
        }
    });
    let client = client(&format!("http://{addr}/api"), Wire::Xml);
    let e = client
        .call(RequestTag::default())
        .entry_point()
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.retry()), (None, Retry::CheckFirst), "{e}");
}

#[tokio::test]
async fn debug_output_hides_the_password_and_the_token() {
    let (fake, base) = serve().await;
    let config = config(&base, Wire::Xml);
    assert!(!format!("{config:?}").contains(PASSWORD));
    let client = Client::new(config, Arc::new(NoopObserver)).unwrap();
    client.logon().await.unwrap();
    let debug = format!("{client:?}");
    assert!(!debug.contains(PASSWORD), "{debug}");
    for token in fake.valid.lock().unwrap().iter() {
        assert!(!debug.contains(token.as_str()), "{debug}");
    }
}

#[tokio::test]
async fn bad_setups_are_refused() {
    let mut bad_ca = config("https://127.0.0.1:1/api", Wire::Xml);
    bad_ca.tls.ca_cert = Some(std::path::PathBuf::from("/nonexistent/ca.pem"));
    assert!(matches!(
        Client::new(bad_ca, Arc::new(NoopObserver)),
        Err(EmError::Setup(_))
    ));

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate").unwrap();
    let mut no_cert = config("https://127.0.0.1:1/api", Wire::Xml);
    no_cert.tls.ca_cert = Some(empty);
    assert!(matches!(
        Client::new(no_cert, Arc::new(NoopObserver)),
        Err(EmError::Setup(_))
    ));

    let ftp = config("ftp://127.0.0.1/api", Wire::Xml);
    assert!(matches!(
        Client::new(ftp, Arc::new(NoopObserver)),
        Err(EmError::Setup(_))
    ));
}

/// Serves the fake over TLS with a fresh self-signed certificate; returns the base URL and the
/// certificate's PEM.
async fn serve_tls() -> (Arc<Fake>, String, String) {
    let key =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert_pem = key.cert.pem();
    let (fake, base) = serve_tls_with(key.cert.der().clone(), key.signing_key).await;
    (fake, base, cert_pem)
}

/// Serves the fake over TLS with `cert` and its `key`; returns the base URL.
async fn serve_tls_with(
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rcgen::KeyPair,
) -> (Arc<Fake>, String) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;

    let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert],
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let fake = Arc::new(Fake::default());
    let app = router(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                // A client that rejects the certificate ends the handshake; nothing to serve.
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    (fake, format!("https://127.0.0.1:{}/api", addr.port()))
}

#[tokio::test]
async fn tls_trust_follows_the_options() {
    let (_fake, base, pem) = serve_tls().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pem).unwrap();

    let mut trusted = config(&base, Wire::Xml);
    trusted.tls.ca_cert = Some(ca);
    let client = Client::new(trusted, Arc::new(NoopObserver)).unwrap();
    client.call(RequestTag::default()).roles().await.unwrap();

    // Without the CA the certificate is unknown: no retry can fix that.
    let untrusted = Client::new(config(&base, Wire::Xml), Arc::new(NoopObserver)).unwrap();
    let e = untrusted.logon().await.unwrap_err();
    assert_eq!((e.status(), e.retry()), (None, Retry::Never), "{e}");

    // A CA file holding some other certificate is no better.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let other_ca = dir.path().join("other.pem");
    std::fs::write(&other_ca, other.cert.pem()).unwrap();
    let mut wrong = config(&base, Wire::Xml);
    wrong.tls.ca_cert = Some(other_ca);
    let e = Client::new(wrong, Arc::new(NoopObserver))
        .unwrap()
        .logon()
        .await
        .unwrap_err();
    assert_eq!(e.retry(), Retry::Never, "{e}");

    let mut insecure = config(&base, Wire::Json);
    insecure.tls.insecure = true;
    let client = Client::new(insecure, Arc::new(NoopObserver)).unwrap();
    client.call(RequestTag::default()).roles().await.unwrap();
}

#[tokio::test]
async fn certificate_errors_are_found_in_the_source_chain() {
    let (_fake, base, _pem) = serve_tls().await;
    // Trust an unrelated certificate only, so the handshake fails on the server's.
    let dir = tempfile::tempdir().unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let ca = dir.path().join("other.pem");
    std::fs::write(&ca, other.cert.pem()).unwrap();
    let tls = crate::em::tls::client_config(&TlsOptions {
        ca_cert: Some(ca),
        ..TlsOptions::default()
    })
    .unwrap();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap();
    let error = http.get(format!("{base}/")).send().await.unwrap_err();
    let chain = crate::em::error::error_chain(&error);
    assert!(
        chain
            .iter()
            .any(|e| e.downcast_ref::<rustls::Error>().is_some()),
        "{chain:?}"
    );
    // So is the description of the certificate refused.
    let refusal = crate::em::tls::refusal_in(&chain).expect("the refusal is in the chain");
    assert_eq!(refusal.problem, CertificateProblem::Untrusted);
}

#[tokio::test]
async fn a_refused_certificate_is_recorded_as_failed_and_never_reaches_the_server() {
    let (fake, base, pem) = serve_tls().await;
    let der = rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let presented = Fingerprint::of(der.as_ref());
    let recorder = Arc::new(Recorder::default());
    let client = Client::new(config(&base, Wire::Xml), recorder.clone()).unwrap();
    let e = client.logon().await.unwrap_err();
    let EmError::Certificate { refusal, .. } = &e else {
        panic!("{e}");
    };
    assert_eq!(refusal.problem, CertificateProblem::Untrusted);
    assert_eq!(refusal.presented.fingerprint, presented);
    assert_eq!((e.status(), e.retry()), (None, Retry::Never));
    assert!(
        e.to_string()
            .starts_with("POST /api/sessionMngr/?v=latest: "),
        "{e}"
    );
    let advice = e.advice().join("\n");
    assert!(
        advice.contains(&format!("--ca-fingerprint {presented}")),
        "{advice}"
    );
    // The intent was recorded, and its end says it failed without an answer.
    assert_eq!(recorder.sent.lock().unwrap().len(), 1);
    let finished = recorder.finished.lock().unwrap().clone();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].1.status, None);
    let error = finished[0].1.error.as_deref().unwrap();
    assert!(error.contains(&presented.to_string()), "{error}");
    assert!(
        fake.seen.lock().unwrap().is_empty(),
        "nothing reached the server"
    );
}

#[tokio::test]
async fn a_pinned_fingerprint_is_the_whole_trust() {
    let (fake, base, pem) = serve_tls().await;
    let der = rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let right = Fingerprint::of(der.as_ref());
    let mut pinned = config(&base, Wire::Json);
    pinned.tls.ca_fingerprint = Some(right);
    let client = Client::new(pinned.clone(), Arc::new(NoopObserver)).unwrap();
    client.call(RequestTag::default()).roles().await.unwrap();

    let seen = fake.seen.lock().unwrap().len();
    let wrong = Fingerprint::parse(&"00".repeat(32)).unwrap();
    let mut mismatched = pinned.clone();
    mismatched.tls.ca_fingerprint = Some(wrong);
    let e = Client::new(mismatched, Arc::new(NoopObserver))
        .unwrap()
        .logon()
        .await
        .unwrap_err();
    let EmError::Certificate { refusal, .. } = &e else {
        panic!("{e}");
    };
    assert_eq!(
        refusal.problem,
        CertificateProblem::PinMismatch { expected: wrong }
    );
    assert!(
        e.to_string()
            .contains(&format!("expected SHA-256 {wrong}, presented {right}")),
        "{e}"
    );
    assert_eq!(
        fake.seen.lock().unwrap().len(),
        seen,
        "nothing reached the server"
    );

    // Over plain http a pin would be ignored, so it is refused.
    let mut plain = config("http://127.0.0.1:1/api", Wire::Xml);
    plain.tls.ca_fingerprint = Some(right);
    assert!(matches!(
        Client::new(plain, Arc::new(NoopObserver)),
        Err(EmError::Setup(_))
    ));
    let mut both = pinned;
    both.tls.insecure = true;
    assert!(matches!(
        Client::new(both, Arc::new(NoopObserver)),
        Err(EmError::Setup(_))
    ));
}

#[tokio::test]
async fn certificate_text_is_redacted_and_clipped() {
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let long = "x".repeat(2000);
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("evil {PASSWORD} \u{1b}[31m {long}"),
    );
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (_fake, base) = serve_tls_with(cert.der().clone(), key).await;
    let e = client(&base, Wire::Xml).logon().await.unwrap_err();
    let EmError::Certificate { refusal, .. } = &e else {
        panic!("{e}");
    };
    let subject = &refusal.presented.subject;
    assert!(
        !subject.contains(PASSWORD) && subject.contains("evil ***"),
        "{subject}"
    );
    assert!(
        subject.len() < 700 && subject.contains("[cut: "),
        "{subject}"
    );
    assert!(!e.to_string().contains(PASSWORD));
}

#[tokio::test]
async fn a_success_answer_past_its_limit_is_not_read() {
    use super::{MAX_ANSWER_BYTES, Method as HttpMethod};
    let (_fake, base) = serve().await;
    let recorder = Arc::new(Recorder::default());
    let client = Client::new(config(&base, Wire::Xml), recorder.clone()).unwrap();
    client.logon().await.unwrap();
    let tag = RequestTag::default();
    // Just at the limit, the answer is read; one byte more, announced or not, it is not.
    let size = client
        .read(tag, format!("/big/{MAX_ANSWER_BYTES}"), |_, body| {
            Ok(body.len())
        })
        .await
        .unwrap();
    assert_eq!(size, MAX_ANSWER_BYTES);
    for kind in ["big", "declared"] {
        let e = client
            .read(tag, format!("/{kind}/{}", MAX_ANSWER_BYTES + 1), |_, _| {
                Ok(())
            })
            .await
            .unwrap_err();
        // A read answers the same again: no retry.
        assert_eq!((e.status(), e.retry()), (None, Retry::Never), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "GET /api/{kind}/{}: HTTP 200: the answer is larger than 32 MiB, more than EM \
                 sends; the rest was not read",
                MAX_ANSWER_BYTES + 1
            )
        );
    }
    // A write answered 2xx was acted on: a re-read tells whether the change is in place.
    let Err(e) = client
        .write(
            tag,
            HttpMethod::POST,
            format!("/big/{}", MAX_ANSWER_BYTES + 1),
            None,
        )
        .await
    else {
        panic!("an answer too large was read");
    };
    assert_eq!(e.retry(), Retry::CheckFirst, "{e}");
    // The attempt is recorded with its status and why it failed.
    let finished = recorder.finished.lock().unwrap().clone();
    let last = &finished.last().unwrap().1;
    assert_eq!(last.status, Some(201));
    assert!(
        last.error
            .as_deref()
            .unwrap()
            .contains("larger than 32 MiB")
    );
}

#[tokio::test]
async fn a_long_error_body_is_read_in_part_and_its_message_clipped() {
    let (_fake, base) = serve().await;
    let client = client(&base, Wire::Xml);
    let e = failed_read(&client, "/bigerror/300000000", Duration::from_secs(10)).await;
    assert_eq!((e.status(), e.retry()), (Some(500), Retry::CheckFirst));
    let text = e.to_string();
    assert!(text.len() < 1024, "{} bytes", text.len());
    assert!(text.ends_with("… [cut: 65536 bytes in all]"), "{text}");
}

#[tokio::test]
async fn an_answer_that_never_ends_is_bounded_by_the_timeout() {
    let (_fake, base) = serve().await;
    let mut config = config(&base, Wire::Xml);
    config.timeout = Duration::from_millis(500);
    let client = Client::new(config, Arc::new(NoopObserver)).unwrap();
    let e = failed_read(&client, "/trickle", Duration::from_secs(3)).await;
    assert_eq!(e.retry(), Retry::CheckFirst, "{e}");
}

/// The error of a read of `path` (after a logon), which must fail within `limit`.
async fn failed_read(client: &Client, path: &str, limit: Duration) -> EmError {
    client.logon().await.unwrap();
    let started = std::time::Instant::now();
    let e = client
        .read(RequestTag::default(), path.into(), |_, _| Ok(()))
        .await
        .unwrap_err();
    assert!(started.elapsed() < limit, "{:?}", started.elapsed());
    e
}

#[tokio::test]
async fn an_echoed_authorization_header_is_redacted() {
    for wire in [Wire::Xml, Wire::Json] {
        let (fake, base) = serve().await;
        fake.refuse_logons.store(true, Ordering::SeqCst);
        fake.echo_authorization.store(true, Ordering::SeqCst);
        let e = client(&base, wire).logon().await.unwrap_err();
        let text = format!("{e} {e:?}");
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("TECH\\admin:{PASSWORD}"));
        assert!(!text.contains(&basic), "{text}");
        assert!(!text.contains(&basic[..16]), "{text}");
        assert!(
            text.contains("no logon with Authorization: Basic ***"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_session_id_that_is_no_path_segment_is_refused() {
    for bad in [
        "../../security/accounts/d6701c3d-15f4-421d-b376-c0e2634bc1f4",
        "a/b",
        "..",
        "x?y",
        "x#y",
        "%2e%2e",
        "a b",
    ] {
        let (fake, base) = serve().await;
        *fake.session_id.lock().unwrap() = Some(bad.to_string());
        let client = client(&base, Wire::Json);
        let e = client.logon().await.unwrap_err();
        assert!(matches!(e, EmError::Decode { .. }), "{bad}: {e}");
        assert!(e.to_string().contains("no session id"), "{e}");
        // Nothing is logged out, so no DELETE goes anywhere.
        client.logout().await.unwrap();
        assert_eq!(fake.count("DELETE", "/"), 0, "{bad}");
    }
    for bad in ["", "a\u{1b}b", "a\tb", "\u{202e}", ".", "a.b"] {
        assert!(!super::is_session_id(bad), "{bad:?}");
    }
    assert!(super::is_session_id("sid-1"));
    // A GUID, as EM sends, is used as it is.
    let (fake, base) = serve().await;
    let id = Uuid::new_v4().to_string();
    *fake.session_id.lock().unwrap() = Some(id.clone());
    let client = client(&base, Wire::Xml);
    client.logon().await.unwrap();
    client.logout().await.unwrap();
    let last = fake.seen().pop().unwrap();
    assert_eq!(last.path, format!("/api/logonSessions/{id}"));
}

/// Holds the first GET in `sending` (where a run's request waits for its record's commit and
/// its place on the wire) until released.
struct Gate {
    held: tokio::sync::Notify,
    release: tokio::sync::Notify,
    holding: AtomicBool,
}

impl RequestObserver for Gate {
    fn before_send(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
    fn sending(
        &self,
        _tag: RequestTag,
        method: &str,
        _path: &str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>> {
        let hold = method == "GET" && !self.holding.swap(true, Ordering::SeqCst);
        Box::pin(async move {
            if hold {
                let released = self.release.notified();
                self.held.notify_one();
                released.await;
            }
            Ok(1)
        })
    }
    fn finished(&self, _id: u64, _outcome: &AttemptOutcome, _elapsed: Duration) {}
}

#[tokio::test]
async fn a_request_carries_the_session_current_when_it_leaves() {
    let (fake, base) = serve().await;
    let gate = Arc::new(Gate {
        held: tokio::sync::Notify::new(),
        release: tokio::sync::Notify::new(),
        holding: AtomicBool::new(false),
    });
    let client = Arc::new(Client::new(config(&base, Wire::Xml), gate.clone()).unwrap());
    client.logon().await.unwrap();
    let read = tokio::spawn({
        let client = client.clone();
        async move { client.call(RequestTag::default()).roles().await }
    });
    // While the read waits for its record, its session expires and another is logged on.
    gate.held.notified().await;
    fake.expire_all();
    client.logon().await.unwrap();
    gate.release.notify_one();
    assert_eq!(read.await.unwrap().unwrap().len(), 1);
    // It went once, with the new session: no 401, no resend.
    assert_eq!(fake.count("GET", "/security/roles"), 1);
    let valid = fake.valid.lock().unwrap().clone();
    let roles = fake
        .seen()
        .into_iter()
        .find(|s| s.path.contains("/security/roles"))
        .unwrap();
    assert!(valid.contains(roles.token.as_deref().unwrap()), "{roles:?}");
}
