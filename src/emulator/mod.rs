//! A local Enterprise Manager (EM) for trials and tests: the security subset of the EM REST API
//! over HTTP or HTTPS, in XML and JSON, with fault injection and inspection endpoints.
//!
//! Written from the API reference and never importing `crate::em`, so a misreading of the API
//! cannot hide in code shared by the client and its test double. Started from an already-bound
//! listener and a shutdown future, the same way by the binary and by tests.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
    let _ = names;
    todo!()
}

/// The start-up banner: the URL and a logon that works, with curl lines to try.
pub fn banner(base_url: &str, config: &EmulatorConfig) -> String {
    let _ = (base_url, config);
    todo!()
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: EmulatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), EmulatorError> {
    let _ = (listener, config, shutdown);
    todo!()
}

/// Starts an emulator in-process on 127.0.0.1 and a free port.
pub async fn start(config: EmulatorConfig) -> Result<RunningEmulator, EmulatorError> {
    let _ = config;
    todo!()
}

/// An emulator running in-process, for tests and `demo`. Inspect it directly; shut it down
/// with [`RunningEmulator::shutdown`].
pub struct RunningEmulator {
    addr: SocketAddr,
}

impl RunningEmulator {
    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// The API base URL, e.g. `http://127.0.0.1:41234/api`.
    pub fn base_url(&self) -> String {
        todo!()
    }
    /// The certificate, when serving HTTPS.
    pub fn cert_pem(&self) -> Option<String> {
        todo!()
    }
    /// Every account now.
    pub fn state(&self) -> StateSnapshot {
        todo!()
    }
    /// Every mutation applied so far.
    pub fn journal(&self) -> Vec<JournalEntry> {
        todo!()
    }
    /// Every request received so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        todo!()
    }
    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        let _ = faults;
        todo!()
    }
    /// The session tokens handed out so far (to check that none is written down).
    pub fn sessions_tokens(&self) -> Vec<String> {
        todo!()
    }
    /// Stops serving and waits for the server to end.
    pub async fn shutdown(self) {
        todo!()
    }
}
