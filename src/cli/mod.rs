//! The command line: clap definitions and their conversion into validated settings.
//!
//! Nothing outside this module sees clap. Each subcommand's raw flags become one settings value
//! (`settings::Command`) here, once; the rest of the crate receives plain, checked values.

use std::num::NonZeroU32;
use std::time::Duration;

use clap::{CommandFactory as _, Parser, Subcommand};

use crate::audit::{ExportFormat, TimeWindow};
use crate::em::{Fingerprint, TlsOptions, Wire};
use crate::emulator::{EmulatorConfig, Faults, Seed};
use crate::runner::Pace;
use crate::runner::snapshot::SnapshotFormat;
mod args;

pub use args::*;

use crate::settings::{
    ApplyLike, ApplySettings, CheckSettings, Command, ConnectSettings, DemoSettings,
    EmulatorSettings, ExportSettings, FollowUpSettings, OutputFormat, PasswordSource, PlanSettings,
    ReportSettings, RunRef, ShowSettings, SnapshotAccounts, SnapshotSettings, VerifySettings,
};

/// Applies spreadsheet change plans to Veeam Backup Enterprise Manager, safely and on record.
///
/// A plan is a CSV file with the columns account, action and target (plus the optional
/// object_name, ticket and comment). `check` validates it, `apply` runs it at a pace EM can
/// bear, and every request is kept in a SQLite audit log (`runs`, `show`).
///
/// Exit statuses: 0 all rows applied or already in place; 1 some rows failed; 2 usage or plan
/// error (nothing sent); 3 connection, TLS or logon failure before any change; 4 interrupted;
/// 5 `verify` found the audit log changed.
#[derive(Debug, Parser)]
#[command(name = "embatch", version, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr: -v info, -vv debug, -vvv trace. EMBATCH_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: CliCommand,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Try embatch end to end on a built-in emulator: check, then apply, a sample onboarding plan.
    Demo(DemoArgs),
    /// Validate a plan offline; with --online, preview what apply would do on the server.
    Check(CheckArgs),
    /// Apply a plan: every row once, in plan order per account, under one rate limit.
    Apply(ApplyArgs),
    /// List the runs in the audit log, newest first.
    Runs(DbArgs),
    /// Show one run's rows and their outcomes.
    Show(ShowArgs),
    /// Run a recorded run's rows again as a new run (no CSV needed); rows already in place
    /// become no-ops.
    Replay(ReplayArgs),
    /// Take back a completed run: apply the inverse of every row it changed, newest first,
    /// leaving alone any account changed since.
    Undo(UndoArgs),
    /// Finish a run that was interrupted or crashed, under the same run id. Rows whose write
    /// may have been sent are checked against the server, never re-sent blindly.
    Resume(ResumeArgs),
    /// Start one scope rebuild on EM (RebuildUnprocessed), recorded as a run in the audit log.
    RebuildScopes(RebuildArgs),
    /// Run a local emulator of the Enterprise Manager REST API, for trials and tests.
    Emulator(EmulatorArgs),
    /// Write one run as a self-contained HTML report (mode 0600): its details, outcome counts,
    /// a timeline of requests and latency, and its rows, filterable by outcome.
    Report(ReportArgs),
    /// Export the change log for auditors: every plan row with its run's operator, server,
    /// plan SHA-256 and tool version, as CSV, JSON Lines or a JSON array.
    Export(ExportArgs),
    /// Read the current roles, scopes and restore-all-VMs flag of accounts, for an access
    /// review; read-only, and recorded in the audit log as a `snapshot` run.
    Snapshot(SnapshotArgs),
    /// Compute the change plan that makes EM match a desired-access sheet (an edited
    /// `snapshot --format csv`), against the live state; read-only, the reads recorded as a
    /// `snapshot` run. Check the plan, then apply it.
    Plan(PlanArgs),
    /// Check offline that the audit log is as embatch wrote it: recompute its hash chain and
    /// compare every run, row and request with it. Where it does not hold, name the first record
    /// that was modified, deleted or inserted, and exit with status 5.
    ///
    /// With --public-key, a checkpoint unsigned or signed by another key is named too. A log
    /// written by an older embatch (schema 01) is verified as it is, and not changed.
    Verify(VerifyArgs),
    /// Bring an audit log written by an older embatch up to date, and say what was done.
    ///
    /// A command that writes to a log brings it up to date on its own; those that only read
    /// (runs, show, export, report) refuse an old log, which they never change. A log of schema
    /// 01 is verified first: one that does not verify is refused (exit 2) and left as it was.
    /// Its chain is carried over, so head hashes kept from before (`verify --expect`) still
    /// verify. To keep the old file as it is (evidence, a read-only share), migrate a copy:
    /// `cp LOG COPY && embatch migrate --db COPY`.
    Migrate(DbArgs),
    /// Make an Ed25519 key pair to sign the audit log's checkpoints with.
    ///
    /// Writes the signing key to FILE, created with mode 0600, and the public key to FILE.pub.
    /// Each file is one line: 64 lowercase hex characters (the key's 32 bytes) and a newline.
    /// An existing FILE or FILE.pub is never overwritten: the command refuses (exit 2) and
    /// writes nothing.
    ///
    /// Give the signing key to the commands that record runs (apply, replay, undo, resume,
    /// rebuild-scopes, snapshot) with `--signing-key FILE` or EMBATCH_SIGNING_KEY: each
    /// checkpoint that ends a run is then signed. Keep it readable by you alone, and apart from
    /// the audit log. Give FILE.pub to whoever verifies the log: `embatch verify --public-key
    /// FILE.pub` also checks every checkpoint's signature, which nobody without the signing key
    /// can make again after an edit.
    Keygen(KeygenArgs),
    /// Print the completion script of a shell on stdout, e.g.
    /// `embatch completions bash > ~/.local/share/bash-completion/completions/embatch`.
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout, e.g.
    /// `embatch man > ~/.local/share/man/man1/embatch.1`.
    Man,
}

/// A usage error found while turning flags into settings.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

impl Cli {
    /// Turns the parsed flags into one validated command.
    pub fn into_command(self) -> Result<Command, UsageError> {
        Ok(match self.command {
            CliCommand::Demo(a) => Command::Demo(DemoSettings {
                db: a.db,
                wire: a.wire.into(),
            }),
            CliCommand::Check(a) => Command::Check(CheckSettings {
                plan: a.plan,
                sheet: a.sheet,
                online: if a.online {
                    Some((a.connect.into_settings()?, a.pace.into_pace()?))
                } else {
                    None
                },
                output: a.output.into(),
            }),
            CliCommand::Apply(a) => Command::Apply(ApplySettings {
                plan: a.plan,
                sheet: a.sheet,
                connect: a.rows.server.connect.into_settings()?,
                pace: a.rows.server.pace.into_pace()?,
                db: a.rows.server.db.db,
                signing_key: a.rows.server.signing.signing_key,
                max_failures: a.rows.max_failures,
                rebuild_scopes: a.rebuild_scopes,
                allow_delete: a.allow_delete,
                max_changes: a.max_changes,
                expect_sha256: a
                    .expect_sha256
                    .as_deref()
                    .map(|h| parse_hash("--expect-sha256", PLAN_HASH, h))
                    .transpose()?,
                yes: a.rows.changes.yes,
                wait: a.rows.changes.wait,
                output: a.output.into(),
            }),
            CliCommand::RebuildScopes(a) => Command::RebuildScopes(ApplyLike {
                connect: a.server.connect.into_settings()?,
                pace: a.server.pace.into_pace()?,
                db: a.server.db.db,
                signing_key: a.server.signing.signing_key,
                output: a.output.into(),
                yes: a.changes.yes,
                wait: a.changes.wait,
            }),
            CliCommand::Runs(a) => Command::Runs { db: a.db },
            CliCommand::Show(a) => Command::Show(ShowSettings {
                run: a.run.parse()?,
                failed_only: a.failed,
                db: a.db.db,
                output: a.output.into(),
            }),
            CliCommand::Replay(a) => Command::Replay {
                common: a.common.into_settings()?,
                failed_only: a.failed_only,
            },
            CliCommand::Undo(a) => Command::Undo {
                common: a.common.into_settings()?,
                dry_run: a.dry_run,
                emit_plan: a.emit_plan,
                force: a.force,
                allow_partial: a.allow_partial,
            },
            CliCommand::Resume(a) => Command::Resume(a.common.into_settings()?),
            CliCommand::Emulator(a) => Command::Emulator(a.into_settings()?),
            CliCommand::Verify(a) => Command::Verify(VerifySettings {
                run: a.run.as_deref().map(parse_run_ref).transpose()?,
                anchor: a.anchor,
                expect: a
                    .expect
                    .as_deref()
                    .map(|h| parse_hash("--expect", HEAD_HASH, h))
                    .transpose()?,
                public_key: a.public_key,
                db: a.db.db,
                output: a.output.into(),
            }),
            CliCommand::Migrate(a) => Command::Migrate { db: a.db },
            CliCommand::Keygen(a) => Command::Keygen { file: a.file },
            CliCommand::Export(a) => Command::Export(ExportSettings {
                run: a.run.as_deref().map(parse_run_ref).transpose()?,
                window: TimeWindow::parse(a.since.as_deref(), a.until.as_deref())
                    .map_err(|e| usage(e.to_string()))?,
                format: match a.format {
                    ExportFormatArg::Csv => ExportFormat::Csv,
                    ExportFormatArg::Jsonl => ExportFormat::Jsonl,
                    ExportFormatArg::Json => ExportFormat::Json,
                },
                out: a.out.out,
                db: a.db.db,
            }),
            CliCommand::Snapshot(a) => Command::Snapshot(SnapshotSettings {
                accounts: match a.plan {
                    Some(plan) => SnapshotAccounts::Plan(plan),
                    None => SnapshotAccounts::All,
                },
                format: match a.format {
                    SnapshotFormatArg::Csv => SnapshotFormat::Csv,
                    SnapshotFormatArg::Jsonl => SnapshotFormat::Jsonl,
                },
                out: a.out.out,
                connect: a.server.connect.into_settings()?,
                pace: a.server.pace.into_pace()?,
                db: a.server.db.db,
                signing_key: a.server.signing.signing_key,
            }),
            CliCommand::Plan(a) => Command::Plan(PlanSettings {
                desired: a.desired,
                out: a.out,
                force: a.force,
                prune: a.prune,
                ticket: a.ticket,
                output: a.output.into(),
                connect: a.server.connect.into_settings()?,
                pace: a.server.pace.into_pace()?,
                db: a.server.db.db,
                signing_key: a.server.signing.signing_key,
            }),
            CliCommand::Report(a) => Command::Report(ReportSettings {
                run: a.run.parse()?,
                out: a.out,
                db: a.db.db,
            }),
            CliCommand::Completions(a) => Command::Print(completion_script(a.shell)),
            CliCommand::Man => Command::Print(man_page()),
        })
    }
}

/// The completion script of `shell`, made from these definitions so it always knows every
/// subcommand and flag.
fn completion_script(shell: clap_complete::Shell) -> String {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "embatch", &mut script);
    String::from_utf8(script).expect("clap_complete writes UTF-8 scripts")
}

/// The man page, in roff, made from these definitions and their help texts.
fn man_page() -> String {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .expect("rendering into memory cannot fail");
    String::from_utf8(page).expect("clap_mangen writes UTF-8 roff")
}

fn parse_run_ref(text: &str) -> Result<RunRef, UsageError> {
    if text.eq_ignore_ascii_case("last") {
        return Ok(RunRef::Last);
    }
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .map(RunRef::Id)
        .ok_or_else(|| usage(format!("run must be a run id or `last`, not '{text}'")))
}

impl From<WireArg> for Wire {
    fn from(w: WireArg) -> Self {
        match w {
            WireArg::Xml => Wire::Xml,
            WireArg::Json => Wire::Json,
        }
    }
}

impl From<OutputArg> for OutputFormat {
    fn from(o: OutputArg) -> Self {
        match o {
            OutputArg::Text => OutputFormat::Text,
            OutputArg::Json => OutputFormat::Json,
        }
    }
}

impl RunArg {
    fn parse(&self) -> Result<RunRef, UsageError> {
        parse_run_ref(&self.run)
    }
}

impl FollowUpArgs {
    fn into_settings(self) -> Result<FollowUpSettings, UsageError> {
        Ok(FollowUpSettings {
            run: self.run.parse()?,
            connect: self.rows.server.connect.into_partial()?,
            pace: self.rows.server.pace.into_pace()?,
            db: self.rows.server.db.db,
            signing_key: self.rows.server.signing.signing_key,
            max_failures: self.rows.max_failures,
            output: self.output.into(),
            yes: self.rows.changes.yes,
            wait: self.rows.changes.wait,
        })
    }
}

impl ConnectArgs {
    /// Settings for commands that need a server and a user named on the command line.
    fn into_settings(self) -> Result<ConnectSettings, UsageError> {
        if self.url.is_none() {
            return Err(usage("no server given: pass --url or set EMBATCH_URL"));
        }
        if self.user.as_deref().is_none_or(|u| u.trim().is_empty()) {
            return Err(usage("no user given: pass --user or set EMBATCH_USER"));
        }
        self.into_partial()
    }

    /// Settings whose server and user may come from a recorded run instead.
    fn into_partial(self) -> Result<ConnectSettings, UsageError> {
        let url = match &self.url {
            Some(url) => {
                let parsed = url::Url::parse(url)
                    .map_err(|e| usage(format!("invalid --url '{url}': {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(usage(format!(
                        "--url must be http or https, not '{}'",
                        parsed.scheme()
                    )));
                }
                Some(parsed)
            }
            None => None,
        };
        let user = self.user.clone().filter(|u| !u.trim().is_empty());
        if self.insecure && self.ca_cert.is_some() {
            return Err(usage(
                "--insecure and --ca-cert contradict each other; pick one",
            ));
        }
        let ca_fingerprint = match &self.ca_fingerprint {
            Some(text) => Some(Fingerprint::parse(text).map_err(|e| {
                usage(format!(
                    "--ca-fingerprint '{}' is no SHA-256 fingerprint: {e}",
                    crate::text::printable(text)
                ))
            })?),
            None => None,
        };
        if ca_fingerprint.is_some() {
            // A pin is one exact answer to "which certificate is trusted"; either other flag
            // would give a second, different answer.
            if self.insecure {
                return Err(usage(
                    "--ca-fingerprint and --insecure contradict each other: a pin accepts one \
                     certificate, --insecure any; pick one",
                ));
            }
            if self.ca_cert.is_some() {
                return Err(usage(
                    "--ca-fingerprint and --ca-cert contradict each other: a pin trusts one \
                     certificate whatever its issuer, --ca-cert what these CAs issued; pick one",
                ));
            }
        }
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            return Err(usage("--timeout must be a positive number of seconds"));
        }
        let timeout = seconds("timeout", self.timeout)?;
        let password = match self.password_file {
            Some(path) => PasswordSource::File(path),
            None => PasswordSource::EnvOrPrompt,
        };
        Ok(ConnectSettings {
            url,
            user,
            password,
            tls: TlsOptions {
                ca_cert: self.ca_cert,
                insecure: self.insecure,
                ca_fingerprint,
            },
            wire: self.wire.map(Into::into),
            timeout,
        })
    }
}

impl PaceArgs {
    fn into_pace(self) -> Result<Pace, UsageError> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(usage(
                "--rate must be a positive number of requests per second",
            ));
        }
        // The limiter waits 1/rate seconds between requests, which must be a duration.
        seconds("rate", 1.0 / self.rate)?;
        Ok(Pace {
            concurrency: self.concurrency as usize,
            rate: self.rate,
            burst: NonZeroU32::new(self.burst).expect("clap keeps --burst at 1 or more"),
            max_attempts: self.max_attempts,
            max_retry_wait: Duration::from_secs(self.max_retry_wait),
            ..Pace::default()
        })
    }
}

/// `value` seconds as a duration, or a usage error naming `--name` when no duration is that long
/// (`Duration::from_secs_f64` would panic).
fn seconds(name: &str, value: f64) -> Result<Duration, UsageError> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| usage(format!("--{name} is out of range: {value}")))
}

fn fraction(name: &str, value: f64) -> Result<f64, UsageError> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(usage(format!(
            "--{name} must be a fraction between 0 and 1, not {value}"
        )))
    }
}

impl FaultArgs {
    fn into_faults(self) -> Result<Faults, UsageError> {
        Ok(Faults {
            latency_ms: self.latency_ms,
            jitter_ms: self.jitter_ms,
            error_500: fraction("error-500", self.error_500)?,
            error_503: fraction("error-503", self.error_503)?,
            error_429: fraction("error-429", self.error_429)?,
            retry_after_secs: self.retry_after,
            max_rps: self.max_rps,
            drop_before: fraction("drop-before", self.drop_before)?,
            drop_after: fraction("drop-after", self.drop_after)?,
            expire_after: self.expire_after,
            seed: self.fault_seed,
        })
    }
}

impl EmulatorArgs {
    fn into_settings(self) -> Result<EmulatorSettings, UsageError> {
        let faults = self.faults.into_faults()?;
        if !(self.session_timeout.is_finite() && self.session_timeout > 0.0) {
            return Err(usage(
                "--session-timeout must be a positive number of minutes",
            ));
        }
        let seed = match &self.seed {
            Some(path) => Some(
                Seed::from_file(path)
                    .map_err(|e| usage(format!("cannot load seed {}: {e}", path.display())))?,
            ),
            None => None,
        };
        let session_idle_timeout = seconds("session-timeout", self.session_timeout * 60.0)?;
        let config = EmulatorConfig {
            listen: Some(self.listen),
            accounts: self.accounts,
            seed,
            session_idle_timeout,
            duplicate_role_ok: self.duplicate_role_ok,
            scope_post_status: if self.scope_accepted { 202 } else { 201 },
            tls: self.tls,
            faults,
            ..EmulatorConfig::default()
        };
        Ok(EmulatorSettings {
            config,
            cert_out: self.cert_out,
        })
    }
}

/// What `verify --expect` takes, as its usage error names it.
const HEAD_HASH: &str = "a head hash of 64 hex digits, as `verify --anchor` prints it";

/// What `apply --expect-sha256` takes, as its usage error names it.
const PLAN_HASH: &str = "a plan's SHA-256 of 64 hex digits, as `check` prints it";

/// A SHA-256 in hex as embatch prints them (a head hash, a plan's hash), taken in either case
/// and given back in lowercase, the case they are printed and recorded in; `what` says what
/// `flag` takes when `text` is none.
fn parse_hash(flag: &str, what: &str, text: &str) -> Result<String, UsageError> {
    let hash = text.trim();
    if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hash.to_ascii_lowercase())
    } else {
        Err(usage(format!(
            "{flag} must be {what}, not '{}'",
            crate::text::printable(text)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_refs() {
        assert!(matches!(parse_run_ref("last"), Ok(RunRef::Last)));
        assert!(matches!(parse_run_ref("12"), Ok(RunRef::Id(12))));
        assert!(parse_run_ref("0").is_err());
        assert!(parse_run_ref("x").is_err());
    }

    #[test]
    fn expected_hashes() {
        let parse = |text: &str| parse_hash("--expect", HEAD_HASH, text);
        let upper = "AB".repeat(32);
        assert_eq!(parse(&upper).unwrap(), "ab".repeat(32));
        assert_eq!(parse(&format!(" {upper}\n")).unwrap(), "ab".repeat(32));
        assert!(parse(&"ab".repeat(31)).is_err());
        assert!(parse(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn durations_too_long_for_the_clock_are_usage_errors() {
        let connect = ["--url", "http://h/api", "--user", "u"];
        for (flag, value) in [("--timeout", "1e30"), ("--rate", "1e-30")] {
            let mut args = vec!["embatch", "check", "plan.csv", "--online", flag, value];
            args.extend(connect);
            let cli = Cli::try_parse_from(args).unwrap();
            let e = cli.into_command().unwrap_err();
            assert!(e.0.contains("out of range"), "{flag}: {e}");
        }
        let cli =
            Cli::try_parse_from(["embatch", "emulator", "--session-timeout", "1e30"]).unwrap();
        assert!(cli.into_command().is_err());
        let mut args = vec!["embatch", "apply", "p.csv", "--max-retry-wait", "5"];
        args.extend(connect);
        let cli = Cli::try_parse_from(args).unwrap();
        let Command::Apply(s) = cli
            .into_command()
            .map_err(|e| e.0)
            .unwrap_or_else(|e| panic!("{e}"))
        else {
            panic!("not apply");
        };
        assert_eq!(s.pace.max_retry_wait, Duration::from_secs(5));
    }

    #[test]
    fn a_pin_goes_with_https_alone() {
        let fp = "AB:".repeat(31) + "AB";
        let connect = |extra: &[&str]| {
            let mut args = vec![
                "embatch",
                "rebuild-scopes",
                "--url",
                "https://em.example.com:9398/api",
                "--user",
                "u",
                "--ca-fingerprint",
                &fp,
            ];
            args.extend(extra);
            Cli::try_parse_from(args).unwrap().into_command()
        };
        let Ok(Command::RebuildScopes(s)) = connect(&[]) else {
            panic!("a pin alone is accepted");
        };
        assert_eq!(
            s.connect.tls.ca_fingerprint.map(|p| p.to_string()),
            Some(fp.clone())
        );
        assert!(!s.connect.tls.insecure && s.connect.tls.ca_cert.is_none());
        let e = connect(&["--insecure"]).unwrap_err();
        assert!(e.0.contains("--ca-fingerprint and --insecure"), "{e}");
        let e = connect(&["--ca-cert", "ca.pem"]).unwrap_err();
        assert!(e.0.contains("--ca-fingerprint and --ca-cert"), "{e}");
        let bad = ["embatch", "resume", "1", "--ca-fingerprint", "AB:CD\u{1b}"];
        let e = Cli::try_parse_from(bad)
            .unwrap()
            .into_command()
            .unwrap_err();
        assert!(e.0.contains("no SHA-256 fingerprint"), "{e}");
        assert!(
            e.0.contains("'AB:CD\\u{1b}'"),
            "the text is shown escaped: {e}"
        );
    }

    #[test]
    fn completions_and_the_man_page_are_made_from_the_definitions() {
        let cli = Cli::try_parse_from(["embatch", "completions", "fish"]).unwrap();
        let Ok(Command::Print(script)) = cli.into_command() else {
            panic!("completions print a script");
        };
        for word in [
            "ca-fingerprint",
            "keygen",
            "migrate",
            "signing-key",
            "public-key",
        ] {
            assert!(script.contains(word), "{word}: {script}");
        }
        assert!(Cli::try_parse_from(["embatch", "completions", "tcsh"]).is_err());
        let cli = Cli::try_parse_from(["embatch", "man"]).unwrap();
        let Ok(Command::Print(page)) = cli.into_command() else {
            panic!("man prints a page");
        };
        assert!(page.contains(".TH embatch"), "{page}");
        for command in ["keygen", "migrate"] {
            assert!(
                page.contains(&format!("embatch\\-{command}")),
                "{command}: {page}"
            );
        }
    }

    #[test]
    fn plan_desired_needs_a_sheet_and_an_output_file() {
        let parse = |args: &[&str]| {
            let mut all = vec!["embatch", "plan", "--url", "http://h/api", "--user", "u"];
            all.extend(args);
            Cli::try_parse_from(all).map(|c| c.into_command())
        };
        let Ok(Ok(Command::Plan(s))) = parse(&[
            "--desired",
            "d.csv",
            "-o",
            "c.csv",
            "--prune",
            "--ticket",
            "CHG-1",
            "--output",
            "json",
        ]) else {
            panic!("not plan");
        };
        assert_eq!(s.desired, std::path::PathBuf::from("d.csv"));
        assert_eq!(s.out, std::path::PathBuf::from("c.csv"));
        assert!(s.prune && !s.force);
        assert_eq!(s.ticket.as_deref(), Some("CHG-1"));
        assert_eq!(s.output, OutputFormat::Json);
        let Ok(Ok(Command::Plan(s))) = parse(&["--desired", "d.csv", "-o", "c.csv", "--force"])
        else {
            panic!("not plan");
        };
        assert!(s.force && !s.prune && s.ticket.is_none());
        assert!(parse(&["--desired", "d.csv"]).is_err(), "-o is required");
        assert!(parse(&["-o", "c.csv"]).is_err(), "--desired is required");
    }

    #[test]
    fn every_command_that_records_a_run_takes_a_signing_key() {
        let connect = ["--url", "http://h/api", "--user", "u"];
        let with_key = |args: &[&str]| {
            let mut all = vec!["embatch"];
            all.extend(args);
            all.extend(connect);
            all.extend(["--signing-key", "k"]);
            Cli::try_parse_from(all).unwrap().into_command().unwrap()
        };
        let k = Some(std::path::PathBuf::from("k"));
        let Command::Apply(s) = with_key(&["apply", "p.csv"]) else {
            panic!("not apply");
        };
        assert_eq!(s.signing_key, k);
        let Command::RebuildScopes(s) = with_key(&["rebuild-scopes"]) else {
            panic!("not rebuild-scopes");
        };
        assert_eq!(s.signing_key, k);
        let Command::Snapshot(s) = with_key(&["snapshot", "--all", "--format", "csv"]) else {
            panic!("not snapshot");
        };
        assert_eq!(s.signing_key, k);
        let Command::Plan(s) = with_key(&["plan", "--desired", "d.csv", "-o", "c.csv"]) else {
            panic!("not plan");
        };
        assert_eq!(s.signing_key, k);
        for verb in ["replay", "undo", "resume"] {
            let common = match with_key(&[verb, "3"]) {
                Command::Replay { common, .. } | Command::Undo { common, .. } => common,
                Command::Resume(common) => common,
                other => panic!("{verb}: {other:?}"),
            };
            assert_eq!(common.signing_key, k, "{verb}");
        }
        // Neither the demo nor the commands that only read sign anything.
        for args in [
            vec!["embatch", "demo", "--signing-key", "k"],
            vec!["embatch", "runs", "--signing-key", "k"],
            vec!["embatch", "check", "p.csv", "--signing-key", "k"],
        ] {
            assert!(Cli::try_parse_from(&args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn keygen_migrate_and_verify_with_a_public_key() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).unwrap().into_command().unwrap();
        let Command::Keygen { file } = parse(&["embatch", "keygen", "ops.key"]) else {
            panic!("not keygen");
        };
        assert_eq!(file, std::path::PathBuf::from("ops.key"));
        assert!(
            Cli::try_parse_from(["embatch", "keygen"]).is_err(),
            "FILE is required"
        );
        let Command::Migrate { db } = parse(&["embatch", "migrate", "--db", "old.db"]) else {
            panic!("not migrate");
        };
        assert_eq!(db, std::path::PathBuf::from("old.db"));
        let Command::Verify(s) = parse(&["embatch", "verify", "--public-key", "ops.key.pub"])
        else {
            panic!("not verify");
        };
        assert_eq!(s.public_key, Some(std::path::PathBuf::from("ops.key.pub")));
    }

    #[test]
    fn the_approved_plans_hash_is_taken_in_either_case_and_a_malformed_one_refused() {
        let apply = |hash: &str| {
            Cli::try_parse_from([
                "embatch",
                "apply",
                "p.csv",
                "--url",
                "http://h/api",
                "--user",
                "u",
                "--expect-sha256",
                hash,
            ])
            .unwrap()
            .into_command()
        };
        let Ok(Command::Apply(s)) = apply(&"C0".repeat(32)) else {
            panic!("an upper-case hash is accepted");
        };
        assert_eq!(s.expect_sha256, Some("c0".repeat(32)));
        for bad in [
            "c0".repeat(31),
            "g0".repeat(32),
            "sha256".into(),
            String::new(),
        ] {
            let e = apply(&bad).unwrap_err();
            assert!(e.0.starts_with("--expect-sha256 must be"), "{bad}: {e}");
        }
        let Command::Apply(s) = Cli::try_parse_from([
            "embatch",
            "apply",
            "p.csv",
            "--url",
            "http://h/api",
            "--user",
            "u",
        ])
        .unwrap()
        .into_command()
        .unwrap() else {
            panic!("not apply");
        };
        assert_eq!(s.expect_sha256, None);
    }

    #[test]
    fn verify_flags() {
        let cli = Cli::try_parse_from([
            "embatch",
            "verify",
            "--run",
            "last",
            "--expect",
            &"0f".repeat(32),
            "--db",
            "a.db",
        ])
        .unwrap();
        let Command::Verify(s) = cli.into_command().unwrap() else {
            panic!("not verify");
        };
        assert_eq!(s.run, Some(RunRef::Last));
        assert_eq!(s.expect, Some("0f".repeat(32)));
        assert!(!s.anchor);
        assert_eq!(s.db, std::path::PathBuf::from("a.db"));
        assert_eq!(s.output, OutputFormat::Text);
        let bad = Cli::try_parse_from(["embatch", "verify", "--expect", "abc"]).unwrap();
        assert!(bad.into_command().is_err());
    }
}
