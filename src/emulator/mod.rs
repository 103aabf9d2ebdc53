//! A local Enterprise Manager (EM) for trials and tests: the security subset of the EM REST API
//! over HTTP or HTTPS, in XML and JSON, with fault injection and inspection endpoints.
//!
//! Written from the API reference and never importing `crate::em`, so a misreading of the API
//! cannot hide in code shared by the client and its test double. Started from an already-bound
//! listener and a shutdown future, the same way by the binary and by tests.
//!
//! # Layout
//!
//! - `server.rs`: the accept loop, TLS, and the front service that records requests and
//!   applies faults around the router.
//! - `routes.rs`: the axum router, session and role checks, handlers, inspection endpoints.
//! - `state.rs`: the data and every rule a change must pass, behind one lock.
//! - `repr.rs` and `wire.rs`: representations and their XML/JSON rendering.
//! - `body.rs`: request bodies (XML order checking, JSON) and UID/ref parsing.
//! - `faults.rs`: the fault dice; `seed.rs`: starting data; `tls.rs`: certificates.
//!
//! # Choices where the API documentation is silent
//!
//! - Assigning a role the account already holds: 400 with an `Error` body saying so; with
//!   [`EmulatorConfig::duplicate_role_ok`], 201 and no change.
//! - Removing an account's last role: 400, message "cannot remove the last role of account
//!   ...". Removing a role the account does not hold: 404.
//! - An unknown account, role, scope, logon session or task id, and a URL id that is not a
//!   GUID: 404, for GET and DELETE alike. An unknown role UID in a body: 400 (the body is
//!   wrong, not the URL).
//! - Creating an account: 201 with an empty body and `Location: {base}/security/accounts/{id}`.
//!   A duplicate name (compared case-insensitively) is a 400. Names must look like
//!   `DOMAIN\name` for User and Group, `user@suffix` for ExternalUser. Assigning a role also
//!   answers with a `Location` (the assignment's URL); scope POSTs do not, as they may create
//!   several scopes.
//! - A scope POST naming an object ref the account already has a scope for: 400, nothing
//!   created; a POST with several items creates all or none. Scope POSTs answer
//!   [`EmulatorConfig::scope_post_status`] (202 when set to 202, otherwise 201).
//! - Deleting an account is allowed for every account, `BUILTIN\Administrators` included.
//! - The toggle only flips the flag; scopes are kept. Removing the last scope of an account
//!   that does not restore all VMs is allowed (EM checks the rule only at creation).
//! - `rebuildScope` runs at once: the `Task` it answers with is already `Finished`, and
//!   `GET /api/tasks/{id}` shows it again.
//! - Logon: `?v=` may be `latest`, `v1_5`, `v1_6`, `v1_7` or absent; anything else is a 400.
//!   A wrong password, an unknown user, and a user without an EM role all get the same 401.
//!   User names match case-insensitively, passwords exactly. The token is 16 random bytes in
//!   base64, unrelated to the `SessionId`.
//! - `GET /logonSessions` lists every live session, of every user.
//! - `?format=Entity` on the account list is ignored (the list is always `EntityReferences`).
//! - JSON of the entry point: `SupportedVersions` maps to `{"SupportedVersions":[...]}`, the
//!   pattern EM uses for `Roles` and `HierarchyScopeObjects`.
//! - Errors the router makes itself (405 for an unsupported method) also carry an `Error`
//!   body; unknown URLs under `/api` check the session first (and the role under
//!   `/security`), then answer 404.
//! - Request bodies: `application/xml`, `text/xml` and `application/json`, any charset
//!   parameter; without a `Content-Type` the first character decides; other types are a 400.
//!   JSON keys match case-insensitively and booleans may be strings, as EM's own samples send
//!   them; unknown JSON keys are ignored, unknown XML elements are not.
//! - Faults apply to `/api` only; answers by fault (500, 503, 429, and `drop_before`) never
//!   act. `max_rps` counts admitted requests in a sliding one-second window. Replacing the
//!   faults restarts their dice.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use std::net::Ipv4Addr;
use std::sync::Arc;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

mod body;
mod faults;
mod repr;
mod routes;
mod seed;
mod server;
mod state;
mod tls;
mod wire;

#[cfg(test)]
mod tests;

use state::{Options, Shared, State};

/// A failure to start or run the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// Binding or serving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The seed file is unreadable or invalid.
    #[error("seed: {0}")]
    Seed(String),
    /// The TLS material could not be made or loaded.
    #[error("tls: {0}")]
    Tls(String),
}

/// Injected faults. Every kind is off by default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    /// Fixed latency added to every answer, in milliseconds.
    pub latency_ms: u64,
    /// Random extra latency up to this many milliseconds.
    pub jitter_ms: u64,
    /// Fraction of `/api` requests answered 500 without acting.
    pub error_500: f64,
    /// Fraction answered 503 with `Retry-After`, without acting.
    pub error_503: f64,
    /// Fraction answered 429 with `Retry-After`, without acting.
    pub error_429: f64,
    /// The `Retry-After` value in seconds.
    pub retry_after_secs: u64,
    /// A cap on requests per second; requests over it get 503 with `Retry-After`.
    pub max_rps: Option<u32>,
    /// Fraction of connections dropped without an answer, before acting.
    pub drop_before: f64,
    /// Fraction of connections dropped without an answer, after acting (a lost answer).
    pub drop_after: f64,
    /// Every session expires after this many requests made with it.
    pub expire_after: Option<u64>,
    /// Seed of the fault dice, for reproducible runs.
    pub seed: Option<u64>,
}

/// A logon the emulator accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedUser {
    /// The logon name.
    pub name: String,
    /// The password.
    pub password: String,
    /// The EM role it holds (`Portal Administrator`, `Portal User`, ...).
    pub role: String,
}

/// A seeded scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedScope {
    /// The scope's id; generated when absent.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// `urn:<Platform>:<Type>:<root>.<ref>`.
    pub obj_ref: String,
    /// The object's name.
    pub name: String,
}

/// A seeded account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedAccount {
    /// The account's id; generated when absent.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// `DOMAIN\name`.
    pub name: String,
    /// `User`, `Group`, `ExternalUser`, `ExternalGroup`; `User` when absent.
    #[serde(default)]
    pub account_type: Option<String>,
    /// Role names.
    pub roles: Vec<String>,
    /// "Restore scope: All virtual machines"; true when absent.
    #[serde(default)]
    pub allow_restore_all_vms: Option<bool>,
    /// Scopes.
    #[serde(default)]
    pub scopes: Vec<SeedScope>,
}

/// Accounts (and optionally logons) to start with, e.g. `samples/emulator-seed.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seed {
    /// Extra logons, beside the built-in admin and viewer.
    #[serde(default)]
    pub users: Vec<SeedUser>,
    /// Accounts, beside `BUILTIN\Administrators`.
    #[serde(default)]
    pub accounts: Vec<SeedAccount>,
}

impl Seed {
    /// Parses a seed from JSON text.
    pub fn from_json(text: &str) -> Result<Seed, EmulatorError> {
        serde_json::from_str(text).map_err(|e| EmulatorError::Seed(e.to_string()))
    }

    /// Reads a seed file.
    pub fn from_file(path: &Path) -> Result<Seed, EmulatorError> {
        let text = std::fs::read_to_string(path)?;
        Seed::from_json(&text)
    }
}

/// A certificate and key for `--tls`.
#[derive(Clone)]
pub struct TlsMaterial {
    /// The certificate, PEM (give it to the client's `--ca-cert`).
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
}

impl TlsMaterial {
    /// The certificate's SHA-256 fingerprint, as `openssl x509 -noout -fingerprint -sha256`
    /// prints it (`AB:CD:...`): what a client pins to trust it.
    pub fn fingerprint(&self) -> Result<String, EmulatorError> {
        tls::fingerprint(&self.cert_pem)
    }
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial").finish_non_exhaustive()
    }
}

/// Everything the emulator can be told at start.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Where the binary listens (tests bind their own listener).
    pub listen: Option<SocketAddr>,
    /// Generated accounts `TECH\user00001`...
    pub accounts: usize,
    /// Accounts and logons from a seed.
    pub seed: Option<Seed>,
    /// Idle time after which a session expires (EM: 15 minutes).
    pub session_idle_timeout: Duration,
    /// Answer 201 instead of 400 when a held role is assigned again.
    pub duplicate_role_ok: bool,
    /// 201 (default) or 202 for scope POSTs.
    pub scope_post_status: u16,
    /// Serve HTTPS.
    pub tls: bool,
    /// The certificate for HTTPS; generated at start when absent.
    pub tls_material: Option<TlsMaterial>,
    /// Injected faults.
    pub faults: Faults,
    /// The built-in Portal Administrator logon.
    pub admin_user: String,
    /// Its password.
    pub admin_password: String,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: None,
            accounts: 0,
            seed: None,
            session_idle_timeout: Duration::from_secs(15 * 60),
            duplicate_role_ok: false,
            scope_post_status: 201,
            tls: false,
            tls_material: None,
            faults: Faults::default(),
            admin_user: "admin".into(),
            admin_password: "emulator".into(),
        }
    }
}

/// A role an account holds, in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSnapshot {
    /// The role's GUID.
    pub id: Uuid,
    /// The role's name.
    pub name: String,
}

/// A scope, in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeSnapshot {
    /// The scope's GUID.
    pub id: Uuid,
    /// The object's name.
    pub name: String,
    /// The hierarchy object ref it was created from.
    pub obj_ref: String,
    /// `Unprocessed` or `Processed`.
    pub state: String,
}

/// One account, in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSnapshot {
    /// The account's GUID.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// User, Group, ...
    pub account_type: String,
    /// "Restore scope: All virtual machines".
    pub allow_restore_all_vms: bool,
    /// Roles, in assignment order.
    pub roles: Vec<RoleSnapshot>,
    /// Scopes, in creation order.
    pub scopes: Vec<ScopeSnapshot>,
}

/// Every account (`GET /_emulator/state`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSnapshot {
    /// Accounts, in creation order.
    pub accounts: Vec<AccountSnapshot>,
}

/// What a mutation did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    /// A role was assigned.
    RoleAssigned {
        /// The role.
        role_id: Uuid,
    },
    /// A role was removed.
    RoleRemoved {
        /// The role.
        role_id: Uuid,
    },
    /// A scope was created.
    ScopeAdded {
        /// The new scope.
        scope_id: Uuid,
        /// Its object ref.
        obj_ref: String,
    },
    /// A scope was removed.
    ScopeRemoved {
        /// The scope.
        scope_id: Uuid,
    },
    /// The restore-all-VMs flag was flipped.
    RestoreAllVmsToggled {
        /// Its new value.
        now: bool,
    },
    /// An account was created.
    AccountCreated {
        /// Its name.
        name: String,
    },
    /// An account was deleted.
    AccountDeleted {
        /// Its name.
        name: String,
    },
    /// A scope rebuild ran.
    ScopesRebuilt {
        /// Scopes moved to `Processed`.
        processed: u64,
    },
}

/// One applied mutation (`GET /_emulator/journal`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Order of application, from 1.
    pub seq: u64,
    /// The request's method.
    pub method: String,
    /// The request's path.
    pub path: String,
    /// The account it touched, if one.
    pub account: Option<Uuid>,
    /// What it did.
    pub effect: Effect,
}

/// One request the emulator received (`GET /_emulator/requests`); `/_emulator` itself is not
/// recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Order of arrival, from 1.
    pub seq: u64,
    /// The method.
    pub method: String,
    /// The path and query.
    pub path: String,
    /// The status answered; none when the connection was dropped.
    pub status: Option<u16>,
    /// Whether the connection was dropped without an answer.
    pub dropped: bool,
}

/// A self-signed certificate for `names` (IP addresses or host names).
pub fn self_signed(names: &[String]) -> Result<TlsMaterial, EmulatorError> {
    tls::self_signed(names)
}

/// Quotes `text` for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The start-up banner: the URL and a logon that works, with curl lines to try.
pub fn banner(base_url: &str, config: &EmulatorConfig) -> String {
    let base = base_url.trim_end_matches('/');
    let root = base.strip_suffix("/api").unwrap_or(base);
    let tls = config.tls || base.starts_with("https:");
    let insecure = if tls { "-k " } else { "" };
    let seeded = config.seed.as_ref().map_or(0, |s| s.accounts.len());
    let mut lines = vec![
        format!("Enterprise Manager emulator listening on {base}/"),
        format!(
            "Log on as {} with password {} (Portal Administrator); {v}/{v} is a Portal User without /security.",
            config.admin_user,
            config.admin_password,
            v = seed::VIEWER
        ),
        format!(
            "Accounts: {} ({} seeded, {} generated, plus {}).",
            1 + seeded + config.accounts,
            seeded,
            config.accounts,
            seed::BUILTIN_ADMINISTRATORS
        ),
        "Try:".to_owned(),
        format!(
            "  curl {insecure}-si -X POST -u {} '{base}/sessionMngr/?v=latest'",
            shell_quote(&format!("{}:{}", config.admin_user, config.admin_password))
        ),
        format!(
            "  curl {insecure}-s -H 'X-RestSvcSessionId: <the X-RestSvcSessionId header from the logon>' '{base}/security/accounts'"
        ),
    ];
    if tls {
        let fingerprint = config
            .tls_material
            .as_ref()
            .and_then(|m| m.fingerprint().ok());
        match fingerprint {
            Some(fp) => {
                lines.push(format!(
                    "TLS (--tls): the certificate is self-signed, hence curl -k; its SHA-256 \
                     fingerprint is {fp}. Trust it by that fingerprint:"
                ));
                lines.push(format!(
                    "  EMBATCH_PASSWORD={} embatch snapshot --all --format csv --url {} --user {} \
                     --ca-fingerprint {fp}",
                    shell_quote(&config.admin_password),
                    shell_quote(base),
                    shell_quote(&config.admin_user)
                ));
                lines.push(
                    "or write it with --cert-out FILE and give FILE to embatch --ca-cert (or curl \
                     --cacert)."
                        .to_owned(),
                );
            }
            None => lines.push(
                "TLS (--tls): the certificate is self-signed, hence curl -k; write it with \
                 --cert-out FILE and give FILE to embatch --ca-cert (or curl --cacert)."
                    .to_owned(),
            ),
        }
    }
    lines.push(format!(
        "Inspect: {root}/_emulator/state, {root}/_emulator/journal, {root}/_emulator/requests"
    ));
    if let Some(faults) = describe_faults(&config.faults) {
        lines.push(format!("Injected faults: {faults}."));
    }
    lines.join("\n")
}

/// The active faults in a few words, or none when no fault is active.
fn describe_faults(f: &Faults) -> Option<String> {
    let pct = |p: f64| format!("{}%", (p * 1000.0).round() / 10.0);
    let mut parts = Vec::new();
    if f.latency_ms > 0 || f.jitter_ms > 0 {
        parts.push(format!(
            "latency {} ms + up to {} ms",
            f.latency_ms, f.jitter_ms
        ));
    }
    for (p, what) in [
        (f.error_500, "500"),
        (f.error_503, "503"),
        (f.error_429, "429"),
        (f.drop_before, "dropped before acting"),
        (f.drop_after, "dropped after acting"),
    ] {
        if p > 0.0 {
            parts.push(format!("{what} on {}", pct(p)));
        }
    }
    if let Some(n) = f.max_rps {
        parts.push(format!("at most {n} requests/s"));
    }
    if let Some(n) = f.expire_after {
        parts.push(format!("sessions expire after {n} requests"));
    }
    if parts.is_empty() {
        return None;
    }
    if f.error_503 > 0.0 || f.error_429 > 0.0 || f.max_rps.is_some() {
        parts.push(format!("Retry-After {} s", f.retry_after_secs));
    }
    parts.push(match f.seed {
        Some(seed) => format!("dice seed {seed}"),
        None => "random dice".to_owned(),
    });
    Some(parts.join(", "))
}

/// Everything a server needs, made from a configuration before it starts.
struct Prepared {
    shared: Arc<Shared>,
    acceptor: Option<TlsAcceptor>,
    cert_pem: Option<String>,
}

/// Builds the starting state and the TLS acceptor for a server on `listener`. Without
/// material, HTTPS gets a certificate made for the listener's address.
fn prepare(listener: &TcpListener, config: &EmulatorConfig) -> Result<Prepared, EmulatorError> {
    let local_addr = listener.local_addr()?;
    if config.admin_user.trim().is_empty() {
        return Err(EmulatorError::Seed("the admin user name is empty".into()));
    }
    let material = match (config.tls, &config.tls_material) {
        (false, _) => None,
        (true, Some(m)) => Some(m.clone()),
        (true, None) => Some(tls::self_signed(&[local_addr.ip().to_string()])?),
    };
    let acceptor = material.as_ref().map(tls::acceptor).transpose()?;
    let options = Options {
        idle_timeout: config.session_idle_timeout,
        duplicate_role_ok: config.duplicate_role_ok,
        scope_post_status: if config.scope_post_status == 202 {
            StatusCode::ACCEPTED
        } else {
            StatusCode::CREATED
        },
    };
    let state = State::new(
        options,
        seed::accounts(config)?,
        seed::users(config)?,
        config.faults.clone(),
    );
    let scheme = if config.tls { "https" } else { "http" };
    Ok(Prepared {
        shared: Arc::new(Shared::new(scheme, local_addr, state)),
        acceptor,
        cert_pem: material.map(|m| m.cert_pem),
    })
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: EmulatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), EmulatorError> {
    let prepared = prepare(&listener, &config)?;
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    let watcher = tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });
    let result = server::run(listener, prepared.shared, prepared.acceptor, stop).await;
    watcher.abort();
    result
}

/// Starts an emulator in-process on 127.0.0.1 and a free port.
pub async fn start(config: EmulatorConfig) -> Result<RunningEmulator, EmulatorError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let prepared = prepare(&listener, &config)?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(server::run(
        listener,
        prepared.shared.clone(),
        prepared.acceptor,
        stop.clone(),
    ));
    Ok(RunningEmulator {
        addr,
        scheme: prepared.shared.scheme,
        cert_pem: prepared.cert_pem,
        shared: prepared.shared,
        stop,
        task: Some(task),
    })
}

/// An emulator running in-process, for tests and `demo`. Inspect it directly; shut it down
/// with [`RunningEmulator::shutdown`]. Dropping it stops the server too.
pub struct RunningEmulator {
    addr: SocketAddr,
    scheme: &'static str,
    cert_pem: Option<String>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Option<JoinHandle<Result<(), EmulatorError>>>,
}

impl std::fmt::Debug for RunningEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningEmulator")
            .field("addr", &self.addr)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl RunningEmulator {
    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// The API base URL, e.g. `http://127.0.0.1:41234/api`.
    pub fn base_url(&self) -> String {
        format!("{}://{}/api", self.scheme, self.addr)
    }
    /// The certificate, when serving HTTPS.
    pub fn cert_pem(&self) -> Option<String> {
        self.cert_pem.clone()
    }
    /// The certificate's SHA-256 fingerprint (`AB:CD:...`), when serving HTTPS.
    pub fn cert_fingerprint(&self) -> Option<String> {
        self.cert_pem
            .as_deref()
            .and_then(|pem| tls::fingerprint(pem).ok())
    }
    /// Every account now.
    pub fn state(&self) -> StateSnapshot {
        self.shared.lock().snapshot()
    }
    /// Every mutation applied so far.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.shared.lock().journal.clone()
    }
    /// Every request received so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }
    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults.replace(faults);
    }
    /// The session tokens handed out so far (to check that none is written down).
    pub fn sessions_tokens(&self) -> Vec<String> {
        self.shared.lock().tokens_issued.clone()
    }
    /// Stops serving and waits for the server to end.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("emulator: {e}"),
                Err(e) => tracing::warn!("emulator: the server task failed: {e}"),
            }
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
