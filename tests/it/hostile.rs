//! A hostile or broken server: a proxy on 127.0.0.1 before the emulator that forwards every
//! request, and answers those its script picks with something no honest EM sends (a
//! `Retry-After` no one should wait, an answer too large, too deep or never ending, a session id
//! that leaves its path, escape sequences for the terminal). `apply` and `check --online` must
//! neither crash, hang nor flood, and must say what happened.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use embatch::emulator::{EmulatorConfig, RunningEmulator};

use crate::support;

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The method.
    pub method: String,
    /// The path and query.
    pub path: String,
    /// The `Authorization` header, as sent.
    pub authorization: Option<String>,
    /// The `X-RestSvcSessionId` header.
    pub token: Option<String>,
}

impl Seen {
    /// Whether this is `method` on a path ending in `suffix`.
    pub fn is(&self, method: &str, suffix: &str) -> bool {
        self.method == method && self.path.ends_with(suffix)
    }

    /// Whether this is the logon.
    pub fn is_logon(&self) -> bool {
        self.method == "POST" && self.path.to_ascii_lowercase().contains("/sessionmngr")
    }
}

/// What the proxy does with a request.
pub enum Act {
    /// Forward it and pass the answer on.
    Forward,
    /// Answer this instead; the emulator never sees the request.
    Answer(Response),
    /// Forward it and pass the answer on with its body rewritten.
    Edit(Box<dyn FnOnce(String) -> String + Send>),
    /// Answer this once the future is done (requests held to be answered together); the
    /// emulator never sees the request.
    AnswerWhen(
        Response,
        std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ),
    /// Forward it, so the emulator acts on it, then hold its answer until the future is done:
    /// a request the server carried out whose answer is still on its way (a future that never
    /// ends holds it until the client is gone).
    ForwardThenHold(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
}

type Script = dyn Fn(&Seen) -> Act + Send + Sync;

struct Inner {
    script: Box<Script>,
    upstream: String,
    http: reqwest::Client,
    seen: Mutex<Vec<Seen>>,
}

/// A running proxy; it stops with the test's runtime.
pub struct Hostile {
    inner: Arc<Inner>,
    base_url: String,
}

impl Hostile {
    /// Starts a proxy before `emu` that acts on each request as `script` says.
    pub async fn start(
        emu: &RunningEmulator,
        script: impl Fn(&Seen) -> Act + Send + Sync + 'static,
    ) -> Hostile {
        let inner = Arc::new(Inner {
            script: Box::new(script),
            upstream: emu.base_url().trim_end_matches("/api").to_string(),
            http: plain_http(),
            seen: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Hostile {
            inner,
            base_url: format!("http://{addr}/api"),
        }
    }

    /// The API base URL, as `--url` takes it.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().unwrap().clone()
    }
}

/// A client for the emulator over plain HTTP. reqwest is built without a crypto provider, so
/// even a client that never speaks TLS is given a configuration.
fn plain_http() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let seen = Seen {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map_or(String::new(), |p| p.to_string()),
        authorization: header("authorization"),
        token: header("x-restsvcsessionid"),
    };
    inner.seen.lock().unwrap().push(seen.clone());
    let (edit, hold) = match (inner.script)(&seen) {
        Act::Answer(answer) => return answer,
        Act::AnswerWhen(answer, ready) => {
            ready.await;
            return answer;
        }
        Act::Forward => (None, None),
        Act::Edit(edit) => (Some(edit), None),
        Act::ForwardThenHold(hold) => (None, Some(hold)),
    };
    let mut request = inner
        .http
        .request(method, format!("{}{}", inner.upstream, seen.path))
        .body(body);
    for (name, value) in &headers {
        if !matches!(name.as_str(), "host" | "content-length") {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    let Ok(upstream) = request.send().await else {
        return answer(502, &[], "the emulator did not answer");
    };
    let mut out = Response::builder().status(upstream.status().as_u16());
    for (name, value) in upstream.headers() {
        if !matches!(name.as_str(), "content-length" | "transfer-encoding") {
            out = out.header(name.as_str(), value.as_bytes());
        }
    }
    let text = upstream.text().await.unwrap_or_default();
    let text = match edit {
        Some(edit) => edit(text),
        None => text,
    };
    if let Some(hold) = hold {
        hold.await;
    }
    out.body(Body::from(text)).unwrap()
}

/// An answer of `status` with `headers` and `body`.
pub fn answer(status: u16, headers: &[(&str, &str)], body: impl Into<Body>) -> Response {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body.into()).unwrap()
}

/// An XML `Error` answer of `status` saying `message` (escaped for an attribute).
pub fn error(status: u16, headers: &[(&str, &str)], message: &str) -> Response {
    let message = message
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;");
    let body = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><Error xmlns="http://www.veeam.com/ent/v1.0" Message="{message}" StatusCode="{status}"/>"#
    );
    let mut all = vec![("content-type", "application/xml")];
    all.extend_from_slice(headers);
    answer(status, &all, body)
}

/// A JSON `Error` answer of `status` saying `message`: JSON carries any character, control
/// characters included, where XML would normalize or refuse them.
pub fn json_error(status: u16, message: &str) -> Response {
    let body = serde_json::json!({"Message": message, "StatusCode": status});
    answer(
        status,
        &[("content-type", "application/json")],
        body.to_string(),
    )
}

/// An answer of `status` whose body is `len` bytes of `x`, streamed in chunks without a length.
pub fn streamed(status: u16, len: usize) -> Response {
    let chunk = Bytes::from(vec![b'x'; 256 * 1024]);
    let chunks = (0..len.div_ceil(chunk.len())).map(move |i| {
        Ok::<_, std::io::Error>(chunk.slice(..chunk.len().min(len - i * chunk.len())))
    });
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    Response::builder().status(status).body(body).unwrap()
}

/// XML elements nested `levels` deep inside a role list.
pub fn deep_xml(levels: usize) -> String {
    format!(
        r#"<EnterpriseAccountInRoleList xmlns="http://www.veeam.com/ent/v1.0">{}{}</EnterpriseAccountInRoleList>"#,
        "<a>".repeat(levels),
        "</a>".repeat(levels)
    )
}

/// A script answering every request that fits `pick` with `make`, forwarding the rest.
pub fn every(
    pick: impl Fn(&Seen) -> bool + Send + Sync + 'static,
    make: impl Fn() -> Response + Send + Sync + 'static,
) -> impl Fn(&Seen) -> Act + Send + Sync + 'static {
    move |seen| {
        if pick(seen) {
            Act::Answer(make())
        } else {
            Act::Forward
        }
    }
}

/// The binary pointed at `hostile` (before `emu`) and at the audit log `db`, fast.
pub fn cli(
    emu: &RunningEmulator,
    hostile: &Hostile,
    db: &Path,
    args: &[&str],
) -> std::process::Command {
    let mut cmd = support::cli(emu, db);
    cmd.env("EMBATCH_URL", hostile.base_url())
        .args(args)
        .args(support::FAST);
    cmd
}

/// Runs `cmd` to its end, which must come within `limit`: a hang is killed and fails the test.
pub async fn within(limit: Duration, mut cmd: std::process::Command) -> std::process::Output {
    use std::io::Read;
    use std::process::Stdio;
    tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary runs");
        // Drained as they fill, so that a full pipe never passes for a hang.
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let started = Instant::now();
        let mut killed = false;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > limit {
                child.kill().unwrap();
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = std::process::Output {
            status,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        };
        assert!(
            !killed,
            "still running after {limit:?}, killed:\n{}",
            support::text(&out)
        );
        out
    })
    .await
    .unwrap()
}

/// Runs the binary with `args` through `hostile` (before `emu`), which must end within a
/// minute with exit status `status`.
async fn run(
    emu: &RunningEmulator,
    hostile: &Hostile,
    db: &Path,
    args: &[&str],
    status: i32,
) -> std::process::Output {
    let out = within(Duration::from_secs(60), cli(emu, hostile, db, args)).await;
    assert_eq!(
        out.status.code(),
        Some(status),
        "{args:?}: {}",
        support::text(&out)
    );
    out
}

/// An emulator with a few generated accounts.
async fn emulator() -> RunningEmulator {
    support::emulator(EmulatorConfig {
        accounts: 12,
        ..EmulatorConfig::default()
    })
    .await
}

/// The role every plan here assigns.
const ROLE: &str = "Exchange Restore Operator";

/// `n` generated accounts that lack [`ROLE`], so that each row of [`plan`] sends a write:
/// (name, id) pairs.
fn accounts(emu: &RunningEmulator, n: usize) -> Vec<(String, String)> {
    let state = emu.state();
    let mut taken = Vec::new();
    (0..n)
        .map(|_| {
            let a = support::pick(&state, &mut taken, |a| !support::has(a, ROLE));
            (a.name.clone(), a.id.to_string())
        })
        .collect()
}

/// A temporary folder holding a plan that assigns [`ROLE`] to each of `accounts`, in order,
/// and the path of an audit log: the folder (kept alive with the test), the log, the plan.
fn workspace(accounts: &[(String, String)]) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("account,action,target\n");
    for (name, _) in accounts {
        csv.push_str(&format!("{name},assign-role,{ROLE}\n"));
    }
    let plan = dir.path().join("plan.csv");
    std::fs::write(&plan, csv).unwrap();
    let db = dir.path().join("audit.db");
    (dir, db, plan.to_str().unwrap().to_string())
}

/// Each row's (outcome, error) in run 1 of `db`.
fn rows(db: &Path) -> Vec<(String, Option<String>)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT outcome, error FROM change_log WHERE run_id = 1 ORDER BY row_no")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_no_one_should_wait_fails_the_request_at_once() {
    for asked in [
        "18446744073709551615",
        "86400",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ] {
        let emu = emulator().await;
        let accounts = accounts(&emu, 3);
        let target = format!("/security/accounts/{}/roles", accounts[1].1);
        let hostile = Hostile::start(
            &emu,
            every(
                move |s| s.is("GET", &target),
                move || error(429, &[("retry-after", asked)], "slow down"),
            ),
        )
        .await;
        let (_dir, db, plan) = workspace(&accounts);
        let plan = plan.as_str();

        run(&emu, &hostile, &db, &["apply", plan], 1).await;
        let rows = rows(&db);
        let outcomes: Vec<&str> = rows.iter().map(|(o, _)| o.as_str()).collect();
        assert_eq!(
            outcomes,
            ["applied", "failed", "applied"],
            "{asked}: {rows:?}"
        );
        let error = rows[1].1.as_deref().unwrap_or_default();
        assert!(
            error.contains("HTTP 429: slow down; the server asked to wait ")
                && error.ends_with("longer than the 120 s --max-retry-wait allows"),
            "{error}"
        );
        if asked == "86400" {
            assert!(error.contains("asked to wait 86400 s"), "{error}");
        }

        let out = run(&emu, &hostile, &db, &["check", "--online", plan], 1).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("FAIL") && stdout.contains("--max-retry-wait"),
            "{stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_the_server_asks_for_is_waited_out_and_said_once() {
    let emu = emulator().await;
    // The first two reads of an account's roles are refused together, as a busy server answers
    // the workers in flight: each is held until the other has come, then both get a 503 at the
    // same moment. (Held for 10 s at most, which fails the test below.)
    let together = Arc::new(tokio::sync::Barrier::new(2));
    let refused = Arc::new(AtomicU64::new(0));
    let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (count, late) = (refused.clone(), timed_out.clone());
    let hostile = Hostile::start(&emu, move |s| {
        let account_roles = s.method == "GET"
            && s.path.contains("/security/accounts/")
            && s.path.ends_with("/roles");
        if account_roles && count.fetch_add(1, Ordering::SeqCst) < 2 {
            let (together, late) = (together.clone(), late.clone());
            let ready = async move {
                let waited = tokio::time::timeout(Duration::from_secs(10), together.wait()).await;
                if waited.is_err() {
                    late.store(true, Ordering::SeqCst);
                }
            };
            Act::AnswerWhen(error(503, &[("retry-after", "1")], "busy"), Box::pin(ready))
        } else {
            Act::Forward
        }
    })
    .await;
    let (_dir, db, plan) = workspace(&accounts(&emu, 8));
    let started = Instant::now();
    let out = run(&emu, &hostile, &db, &["apply", &plan], 0).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    // Two workers were refused together, and the pause was said once, not by each.
    assert!(refused.load(Ordering::SeqCst) >= 2);
    assert!(
        !timed_out.load(Ordering::SeqCst),
        "no second read came while the first was held"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr
            .matches("the server asked to wait 1.0 s (HTTP 503); pausing all requests")
            .count(),
        1,
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_too_deep_too_large_or_too_long_fail_their_rows_only() {
    let emu = emulator().await;
    let accounts = accounts(&emu, 4);
    let deep = format!("/security/accounts/{}/roles", accounts[0].1);
    let large = format!("/security/accounts/{}?format=Entity", accounts[1].1);
    let long_error = format!("/security/accounts/{}/roles", accounts[2].1);
    let deep_roles = deep.clone();
    let hostile = Hostile::start(&emu, move |s| {
        if s.is("GET", &deep) {
            // 50,000 levels, some 350 KB.
            Act::Answer(answer(200, &[], deep_xml(50_000)))
        } else if s.is("GET", &large) {
            Act::Answer(streamed(200, 40 << 20))
        } else if s.is("POST", &long_error) {
            Act::Answer(streamed(500, 100 << 20))
        } else {
            Act::Forward
        }
    })
    .await;
    let (_dir, db, plan) = workspace(&accounts);
    let plan = plan.as_str();
    let out = run(&emu, &hostile, &db, &["apply", plan, "--timeout", "10"], 1).await;
    assert!(out.stderr.len() < 64 * 1024, "{} bytes", out.stderr.len());
    let rows = rows(&db);
    let outcomes: Vec<&str> = rows.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(
        outcomes,
        ["failed", "failed", "failed", "applied"],
        "{rows:?}"
    );
    let errors: Vec<&str> = rows.iter().filter_map(|(_, e)| e.as_deref()).collect();
    assert!(
        errors[0].contains("xml nested deeper than 64 elements"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains("the answer is larger than 32 MiB"),
        "{}",
        errors[1]
    );
    assert!(errors[2].contains("HTTP 500: xxxx"), "{}", errors[2]);
    for error in &errors {
        assert!(error.len() < 8 * 1024, "{} bytes", error.len());
    }
    let size = std::fs::metadata(&db).unwrap().len();
    assert!(size < 8 << 20, "the audit log holds {size} bytes");

    // The online preview reads the same way, a million levels deep.
    let hostile = Hostile::start(
        &emu,
        every(
            move |s| s.is("GET", &deep_roles),
            || answer(200, &[], deep_xml(1_000_000)),
        ),
    )
    .await;
    let out = run(&emu, &hostile, &db, &["check", "--online", plan], 1).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("xml nested deeper than 64 elements"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_id_that_leaves_its_path_is_never_used() {
    let emu = emulator().await;
    let accounts = accounts(&emu, 2);
    let victim = accounts[0].1.clone();
    let escape = format!("../../security/accounts/{victim}");
    let hostile = Hostile::start(&emu, move |s| {
        if s.is_logon() {
            let escape = escape.clone();
            Act::Edit(Box::new(move |body| {
                let start = body.find("<SessionId>").unwrap() + "<SessionId>".len();
                let end = body.find("</SessionId>").unwrap();
                format!("{}{escape}{}", &body[..start], &body[end..])
            }))
        } else {
            Act::Forward
        }
    })
    .await;
    let (_dir, db, plan) = workspace(&accounts);
    let plan = plan.as_str();
    for args in [vec!["apply", plan], vec!["check", "--online", plan]] {
        let out = run(&emu, &hostile, &db, &args, 3).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("which is no session id"), "{stderr}");
    }
    let deletes: Vec<Seen> = hostile
        .seen()
        .into_iter()
        .filter(|s| s.method == "DELETE")
        .collect();
    assert!(deletes.is_empty(), "{deletes:?}");
    assert!(
        emu.state()
            .accounts
            .iter()
            .any(|a| a.id.to_string() == victim),
        "the account is still there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_sequences_from_the_server_never_reach_the_terminal() {
    const HOSTILE: &str = "\u{1b}]0;owned\u{7}\u{1b}[2J\u{1b}[31mred\u{9b}1m\r\nembatch: all fine";
    let emu = emulator().await;
    let accounts = accounts(&emu, 2);
    let refused = format!("/security/accounts/{}/roles", accounts[0].1);
    let unreadable = format!("/security/accounts/{}?format=Entity", accounts[0].1);
    let hostile = Hostile::start(&emu, move |s| {
        if s.is("POST", &refused) {
            Act::Answer(json_error(400, HOSTILE))
        } else if s.method == "DELETE" {
            // The logout fails, which is warned about through the log output.
            Act::Answer(json_error(500, HOSTILE))
        } else {
            Act::Forward
        }
    })
    .await;
    let (_dir, db, plan) = workspace(&accounts);
    let plan = plan.as_str();
    let applied = run(&emu, &hostile, &db, &["apply", plan], 1).await;
    let stderr = String::from_utf8_lossy(&applied.stderr);
    assert!(stderr.contains("logout failed"), "{stderr}");
    // The audit log keeps the text as the server sent it.
    let error = rows(&db)[0].1.clone().unwrap();
    assert!(error.contains(HOSTILE), "{error:?}");

    // A logon refused with the same text ends the command with its error printed.
    let refuse = Hostile::start(&emu, every(Seen::is_logon, || json_error(403, HOSTILE))).await;
    let refused = run(&emu, &refuse, &db, &["check", "--online", plan], 3).await;
    // The preview quotes a refused read in its row's failure; `show` the stored error.
    let refuse_read = Hostile::start(
        &emu,
        every(
            move |s| s.is("GET", &unreadable),
            || json_error(400, HOSTILE),
        ),
    )
    .await;
    let preview = run(&emu, &refuse_read, &db, &["check", "--online", plan], 1).await;
    let mut show = support::cli(&emu, &db);
    show.args(["show", "1"]);
    let show = support::output(show).await;
    assert_eq!(show.status.code(), Some(0), "{}", support::text(&show));

    let printed = [
        ("apply stderr", &applied.stderr),
        ("check --online stderr", &refused.stderr),
        ("check --online stdout", &preview.stdout),
        ("show stdout", &show.stdout),
    ];
    for (what, bytes) in printed {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            text.contains(
                r"\u{1b}]0;owned\u{7}\u{1b}[2J\u{1b}[31mred\u{9b}1m\r\nembatch: all fine"
            ),
            "{what}: {text}"
        );
        for raw in ['\u{1b}', '\u{7}', '\u{9b}', '\r'] {
            assert!(!text.contains(raw), "{what}: {raw:?} in {text:?}");
        }
    }
}
