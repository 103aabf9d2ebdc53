//! A run's one front door: every command that runs against EM and records a run (apply,
//! replay, undo, resume, rebuild-scopes, snapshot) comes in here, and here alone are built its
//! recorded options, its audit writer, its Ctrl-C token and its wait for the server's lock.
//!
//! The commands say what to run (a [`RunSpec`], or a snapshot's selection) and how (a [`Door`]);
//! the door runs it and answers the report, from which `exit.rs` takes the status.

use std::collections::HashMap;
use std::path::Path;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::audit::{AuditError, AuditReader, AuditWriter, CheckpointKey};
use crate::console::errln;
use crate::em::ClientConfig;
use crate::exit::{self, Exit};

use super::snapshot::{self, Selection, SnapshotReport};
use super::{Pace, Reporter, RunError, RunReport, RunSettings, RunSpec, execute, wait_for_lock};

/// How a run goes: its audit log and the key its checkpoints are signed with, its progress
/// display, and whether it waits for the lock of its server.
#[derive(Clone, Copy, Debug)]
pub struct Door<'a> {
    /// The audit log the run is recorded in.
    pub db: &'a Path,
    /// The key the writer signs each checkpoint with (`--signing-key`), if any.
    pub signing_key: Option<&'a CheckpointKey>,
    /// Where progress goes.
    pub reporter: Reporter,
    /// Wait while another live run changes the server from this log, instead of refusing.
    pub wait: bool,
}

/// The settings of a run against EM, with the options recorded with it: the pace and limits
/// every run has, the pinned certificate when there is one (`--insecure` has columns of its
/// own), and the command's own `extra` keys (an object; anything else adds nothing).
pub fn run_settings(
    client: ClientConfig,
    pace: Pace,
    max_failures: Option<u64>,
    extra: serde_json::Value,
) -> RunSettings {
    let mut options = serde_json::json!({
        "concurrency": pace.concurrency,
        "rate": pace.rate,
        "burst": pace.burst.get(),
        "max_attempts": pace.max_attempts,
        "max_retry_wait_secs": pace.max_retry_wait.as_secs_f64(),
        "max_failures": max_failures,
        "timeout_secs": client.timeout.as_secs_f64(),
        "wire": client.wire.as_str(),
    });
    if let Some(pin) = client.tls.ca_fingerprint {
        options["ca_fingerprint"] = pin.to_string().into();
    }
    if let (Some(options), serde_json::Value::Object(extra)) = (options.as_object_mut(), extra) {
        options.extend(extra);
    }
    RunSettings {
        options_json: options.to_string(),
        client,
        pace,
        max_failures,
    }
}

/// A cancellation token that the first Ctrl-C cancels. A second Ctrl-C exits at once: the
/// audit log already holds every request's intent, so `resume` can still reconcile.
pub fn interrupt_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            errln!(
                "\nembatch: interrupted: finishing the requests in flight (Ctrl-C again to quit at once)"
            );
            t.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                errln!("embatch: quitting now; `embatch resume` can finish the run");
                exit::now(Exit::Interrupted);
            }
        }
    });
    token
}

impl Door<'_> {
    /// A fresh writer of the run's log, signing with the run's key when it has one.
    fn writer(&self) -> Result<AuditWriter, AuditError> {
        match self.signing_key {
            Some(key) => AuditWriter::spawn_signed(self.db, key.clone()),
            None => AuditWriter::spawn(self.db),
        }
    }

    /// Runs the spec `make` builds, with a fresh audit writer, and answers its report; `None`
    /// when Ctrl-C came while the run waited for the lock, before anything was recorded.
    ///
    /// With `wait`, it first waits until no other live run holds the server's lock, and waits
    /// again if another run took the lock first; the spec is built anew for each try, since
    /// what a run derives from the log or the plan may have changed meanwhile.
    pub async fn run<E: From<RunError>>(
        &self,
        make: &mut dyn FnMut() -> Result<RunSpec, E>,
        settings: RunSettings,
    ) -> Result<Option<RunReport>, E> {
        let cancel = interrupt_token();
        loop {
            if self.wait
                && !wait_for_lock(self.db, settings.client.base_url.as_str(), &cancel).await?
            {
                return Ok(None);
            }
            let spec = make()?;
            let writer = self.writer().map_err(RunError::from)?;
            let result = execute(
                spec,
                settings.clone(),
                writer.handle(),
                cancel.clone(),
                self.reporter,
            )
            .await;
            // A run that failed says why first: when the log failed under it, closing fails
            // the same way.
            let closed = writer.close().await;
            let report = match result {
                Err(RunError::Locked(_)) if self.wait => continue,
                other => other?,
            };
            closed.map_err(RunError::from)?;
            return Ok(Some(report));
        }
    }

    /// Takes a snapshot of the accounts `selection` names, recorded as a `snapshot` run; it
    /// only reads, so it neither takes nor waits for the server's lock.
    pub async fn snapshot(
        &self,
        selection: Selection<'_>,
        settings: RunSettings,
    ) -> Result<SnapshotReport, RunError> {
        let writer = self.writer()?;
        let report = async {
            // EM never shows a scope's object ref; the log knows those of the scopes it saw
            // created.
            let known_refs: HashMap<Uuid, String> =
                AuditReader::open(self.db)?.known_scope_refs()?;
            snapshot::snapshot(
                selection,
                settings,
                known_refs,
                writer.handle(),
                interrupt_token(),
            )
            .await
        }
        .await;
        let closed = writer.close().await;
        let report = report?;
        closed?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::em::{Fingerprint, Secret, TlsOptions, Wire};

    fn client() -> ClientConfig {
        ClientConfig::new(
            url::Url::parse("https://em.example.com:9398/api").unwrap(),
            "TECH\\admin".into(),
            Secret::new("s3cret".into()),
            Wire::Json,
            TlsOptions::default(),
        )
    }

    #[test]
    fn a_runs_options_hold_its_pace_its_limits_and_the_commands_own_keys() {
        let settings = run_settings(
            client(),
            Pace::default(),
            Some(3),
            serde_json::json!({"failed_only": true}),
        );
        let options: serde_json::Value = serde_json::from_str(&settings.options_json).unwrap();
        assert_eq!(options["wire"], "json");
        assert_eq!(options["max_failures"], 3);
        assert_eq!(options["failed_only"], true);
        assert_eq!(options["concurrency"], Pace::default().concurrency);
        assert!(options.get("ca_fingerprint").is_none());
        assert!(!settings.options_json.contains("s3cret"), "no secret");
        assert_eq!(settings.max_failures, Some(3));
    }

    #[test]
    fn a_pin_is_recorded_with_the_run_options() {
        let mut pinned = client();
        pinned.tls.ca_fingerprint = Some(Fingerprint::parse(&"0a".repeat(32)).unwrap());
        let settings = run_settings(pinned, Pace::default(), None, serde_json::json!(null));
        let options: serde_json::Value = serde_json::from_str(&settings.options_json).unwrap();
        assert_eq!(options["ca_fingerprint"], "0A:".repeat(31) + "0A");
    }

    #[tokio::test]
    async fn a_spec_that_cannot_be_built_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let door = Door {
            db: &db,
            signing_key: None,
            reporter: Reporter::Quiet,
            wait: true,
        };
        let mut make = || Err::<RunSpec, RunError>(RunError::Internal("no spec".into()));
        let settings = run_settings(client(), Pace::default(), None, serde_json::json!({}));
        let err = door.run(&mut make, settings).await.unwrap_err();
        assert!(matches!(err, RunError::Internal(_)), "{err}");
        assert!(!db.exists(), "no log was made for a run that never started");
    }
}
