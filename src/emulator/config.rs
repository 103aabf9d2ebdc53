//! Everything the emulator can be told at start ([`EmulatorConfig`]): the listener, the
//! starting accounts and logons (generated, or from a [`Seed`]), the HTTPS certificate, how it
//! answers where EM's documentation is silent, and the injected [`Faults`].

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{EmulatorError, tls};

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
