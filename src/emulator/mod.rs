//! A local Enterprise Manager (EM) for trials and tests: the security subset of the EM REST API
//! over HTTP or HTTPS, in XML and JSON, with fault injection and inspection endpoints.
//!
//! Written from the API reference and never importing `crate::em`, so a misreading of the API
//! cannot hide in code shared by the client and its test double. Started from an already-bound
//! listener and a shutdown future, the same way by the binary and by tests.
//!
//! # Layout
//!
//! - `mod.rs`: starting a server ([`serve`], [`start`]) and the handle of one running
//!   in-process ([`RunningEmulator`]).
//! - `config.rs`: what the emulator can be told at start ([`EmulatorConfig`], [`Seed`],
//!   [`Faults`]); `banner.rs`: what it says when it starts.
//! - `server.rs`: the accept loop, TLS, and the front service that records requests and
//!   applies faults around the router.
//! - `routes.rs`: the axum router, session and role checks, inspection endpoints; the handlers
//!   in `routes/`, a file per part of the API (`sessions.rs`: entry point, logon, logon
//!   sessions, tasks; `security.rs`: accounts, their roles and scopes, roles);
//!   `inspect.rs`: what the inspection endpoints show (state snapshots, journal, requests).
//! - `state/`: the data and every rule a change must pass, behind one lock; one file per
//!   resource (roles, accounts, scopes, sessions).
//! - `repr.rs` and `wire.rs`: representations and their XML/JSON rendering.
//! - `body/`: request bodies: decoding (`xml.rs` with XSD order checking, `json.rs`), the specs
//!   read from them (`spec.rs`), and UID/ref parsing (`ids.rs`).
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
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::http::StatusCode;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

mod banner;
mod body;
mod config;
mod faults;
mod inspect;
mod repr;
mod routes;
mod seed;
mod server;
mod state;
mod tls;
mod wire;

#[cfg(test)]
mod tests;

pub use banner::banner;
pub use config::{EmulatorConfig, Faults, Seed, SeedAccount, SeedScope, SeedUser, TlsMaterial};
pub use inspect::{
    AccountSnapshot, Effect, JournalEntry, RequestRecord, RoleSnapshot, ScopeSnapshot,
    StateSnapshot,
};
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

/// A self-signed certificate for `names` (IP addresses or host names).
pub fn self_signed(names: &[String]) -> Result<TlsMaterial, EmulatorError> {
    tls::self_signed(names)
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
