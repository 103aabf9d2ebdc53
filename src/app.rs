//! The commands: each takes its validated settings, does its job and says how the process
//! should exit. All exit-status decisions are made here, in [`run`].

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use url::Url;

use crate::audit::{AuditError, AuditReader, AuditWriter, RowFilter, RunSelector};
use crate::em::{ClientConfig, Secret, TlsOptions, Wire};
use crate::emulator::{self, EmulatorConfig};
use crate::exit::Exit;
use crate::plan::{self, Plan};
use crate::runner::{self, Pace, Reporter, RunError, RunReport, RunSettings};

/// One command with its validated settings.
#[derive(Debug)]
pub enum Command {
    /// `embatch demo`
    Demo(DemoSettings),
    /// `embatch check`
    Check(CheckSettings),
    /// `embatch apply`
    Apply(ApplySettings),
    /// `embatch runs`
    Runs {
        /// The audit log.
        db: PathBuf,
    },
    /// `embatch show`
    Show(ShowSettings),
    /// `embatch emulator`
    Emulator(EmulatorSettings),
}

/// Text for people, or JSON for scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// Human-readable text.
    Text,
    /// JSON on stdout.
    Json,
}

/// Where the password comes from. There is deliberately no way to pass it as a flag: flags
/// end up in shell history and process listings.
#[derive(Clone, Debug)]
pub enum PasswordSource {
    /// The first line of a file.
    File(PathBuf),
    /// `EMBATCH_PASSWORD`, else a prompt when stdin is a terminal.
    EnvOrPrompt,
}

/// How to reach EM.
#[derive(Clone, Debug)]
pub struct ConnectSettings {
    /// The API base URL.
    pub url: Url,
    /// The logon user.
    pub user: String,
    /// Where the password comes from.
    pub password: PasswordSource,
    /// Certificate trust.
    pub tls: TlsOptions,
    /// XML or JSON.
    pub wire: Wire,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// `embatch check`.
#[derive(Debug)]
pub struct CheckSettings {
    /// The plan.
    pub plan: PathBuf,
    /// With `--online`: the server and the pace of the reads.
    pub online: Option<(ConnectSettings, Pace)>,
    /// Output format.
    pub output: OutputFormat,
}

/// `embatch apply`.
#[derive(Debug)]
pub struct ApplySettings {
    /// The plan.
    pub plan: PathBuf,
    /// The server.
    pub connect: ConnectSettings,
    /// Pace and retries.
    pub pace: Pace,
    /// The audit log.
    pub db: PathBuf,
    /// Stop scheduling after this many failed rows.
    pub max_failures: Option<u64>,
    /// Output format of the summary.
    pub output: OutputFormat,
}

/// Which run a command is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunRef {
    /// A run id.
    Id(i64),
    /// The newest run.
    Last,
}

/// `embatch show`.
#[derive(Debug)]
pub struct ShowSettings {
    /// The run.
    pub run: RunRef,
    /// Only failures.
    pub failed_only: bool,
    /// The audit log.
    pub db: PathBuf,
    /// Output format.
    pub output: OutputFormat,
}

/// `embatch demo`.
#[derive(Debug)]
pub struct DemoSettings {
    /// The audit log the demo writes.
    pub db: PathBuf,
    /// Wire format.
    pub wire: Wire,
}

/// `embatch emulator`.
#[derive(Debug)]
pub struct EmulatorSettings {
    /// The emulator's configuration.
    pub config: EmulatorConfig,
    /// Where to write the TLS certificate.
    pub cert_out: Option<PathBuf>,
}

/// Failures that end a command, each mapped to an exit status in [`run`].
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad usage: nothing was sent.
    #[error("{0}")]
    Usage(String),
    /// The plan is invalid: nothing was sent. The report lists every problem.
    #[error("{0}")]
    Plan(#[from] plan::PlanErrors),
    /// The run could not start or keep its record.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The audit log could not be opened or read.
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
    /// The emulator failed.
    #[error("emulator: {0}")]
    Emulator(String),
    /// Writing output failed.
    #[error("write output: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs a command and decides the exit status. Errors are printed here, once.
pub async fn run(command: Command) -> Exit {
    let result = match command {
        Command::Demo(s) => demo(s).await,
        Command::Check(s) => check(s).await,
        Command::Apply(s) => apply(s).await,
        Command::Runs { db } => runs(&db),
        Command::Show(s) => show(s),
        Command::Emulator(s) => run_emulator(s).await,
    };
    match result {
        Ok(exit) => exit,
        Err(e) => {
            eprintln!("embatch: {}", error_text(&e));
            match e {
                AppError::Usage(_) | AppError::Plan(_) => Exit::Usage,
                AppError::Run(RunError::Connect { .. } | RunError::Resolve { .. }) => {
                    Exit::Connection
                }
                AppError::Run(RunError::Audit(_)) | AppError::Audit(_) => Exit::Usage,
                AppError::Emulator(_) | AppError::Io(_) => Exit::RowsFailed,
            }
        }
    }
}

fn error_text(e: &AppError) -> String {
    match e {
        AppError::Plan(errors) => format!(
            "the plan has {} problem{}; nothing was sent:\n{errors}",
            errors.0.len(),
            if errors.0.len() == 1 { "" } else { "s" }
        ),
        other => {
            // Show the whole cause chain on one line: "connect to URL: logon refused: ...".
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                let s_text = s.to_string();
                if !text.contains(&s_text) {
                    text.push_str(": ");
                    text.push_str(&s_text);
                }
                source = s.source();
            }
            text
        }
    }
}

fn load_plan(path: &Path) -> Result<Plan, AppError> {
    Ok(plan::load(path)?)
}

fn read_password(source: &PasswordSource) -> Result<Secret, AppError> {
    match source {
        PasswordSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                AppError::Usage(format!("cannot read password file {}: {e}", path.display()))
            })?;
            let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
            if line.is_empty() {
                return Err(AppError::Usage(format!(
                    "password file {} is empty",
                    path.display()
                )));
            }
            Ok(Secret::new(line.to_string()))
        }
        PasswordSource::EnvOrPrompt => {
            if let Ok(p) = std::env::var("EMBATCH_PASSWORD")
                && !p.is_empty()
            {
                return Ok(Secret::new(p));
            }
            if std::io::stdin().is_terminal() {
                let p = rpassword::prompt_password("EM password: ")
                    .map_err(|e| AppError::Usage(format!("cannot read the password: {e}")))?;
                return Ok(Secret::new(p));
            }
            Err(AppError::Usage(
                "no password: set EMBATCH_PASSWORD or pass --password-file (stdin is not a terminal to prompt on)".into(),
            ))
        }
    }
}

fn client_config(c: &ConnectSettings) -> Result<ClientConfig, AppError> {
    let password = read_password(&c.password)?;
    if c.tls.insecure {
        eprintln!(
            "embatch: warning: --insecure: the server's certificate is not checked; this run is recorded as insecure"
        );
    }
    Ok(ClientConfig {
        timeout: c.timeout,
        ..ClientConfig::new(
            c.url.clone(),
            c.user.clone(),
            password,
            c.wire,
            c.tls.clone(),
        )
    })
}

async fn check(s: CheckSettings) -> Result<Exit, AppError> {
    let plan = load_plan(&s.plan)?;
    let Some((connect, pace)) = s.online else {
        match s.output {
            OutputFormat::Json => println!(
                "{}",
                serde_json::json!({"file": plan.file, "rows": plan.rows.len(), "sha256": plan.sha256, "valid": true})
            ),
            OutputFormat::Text => println!("{}: {} rows, valid", plan.file, plan.rows.len()),
        }
        return Ok(Exit::Success);
    };
    let config = client_config(&connect)?;
    let preview = runner::preview(&plan, config, pace).await?;
    match s.output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&preview).expect("a preview always serializes")
        ),
        OutputFormat::Text => print!("{}", preview.text(&plan.file)),
    }
    Ok(if preview.failures > 0 {
        Exit::RowsFailed
    } else {
        Exit::Success
    })
}

/// A cancellation token that the first Ctrl-C cancels. A second Ctrl-C exits at once: the
/// audit log already holds every request's intent, so `resume` can still reconcile.
fn ctrl_c_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "\nembatch: interrupted: finishing the requests in flight (Ctrl-C again to quit at once)"
            );
            t.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("embatch: quitting now; `embatch resume` can finish the run");
                std::process::exit(Exit::Interrupted.code().into());
            }
        }
    });
    token
}

async fn apply(s: ApplySettings) -> Result<Exit, AppError> {
    let plan = load_plan(&s.plan)?;
    let config = client_config(&s.connect)?;
    let options = serde_json::json!({
        "concurrency": s.pace.concurrency,
        "rate": s.pace.rate,
        "burst": s.pace.burst.get(),
        "max_attempts": s.pace.max_attempts,
        "max_failures": s.max_failures,
        "timeout_secs": s.connect.timeout.as_secs_f64(),
        "wire": s.connect.wire.as_str(),
    });
    let settings = RunSettings {
        client: config,
        pace: s.pace,
        max_failures: s.max_failures,
        options_json: options.to_string(),
    };
    let reporter = if s.output == OutputFormat::Json {
        Reporter::Quiet
    } else {
        Reporter::Stderr
    };
    run_plan(&plan, settings, &s.db, reporter, s.output).await
}

/// Applies a plan with a fresh audit writer and prints the summary.
async fn run_plan(
    plan: &Plan,
    settings: RunSettings,
    db: &Path,
    reporter: Reporter,
    output: OutputFormat,
) -> Result<Exit, AppError> {
    let writer = AuditWriter::spawn(db)?;
    let cancel = ctrl_c_token();
    let result = runner::apply(plan, settings, writer.handle(), cancel, reporter).await;
    writer.close().await?;
    let report = result?;
    print_report(&report, db, output)?;
    Ok(exit_for(&report))
}

fn exit_for(report: &RunReport) -> Exit {
    if report.stopped == Some(runner::StopReason::Interrupted) {
        Exit::Interrupted
    } else if report.summary.failed > 0 || report.summary.in_doubt > 0 {
        Exit::RowsFailed
    } else if report.stopped.is_some() {
        Exit::Interrupted
    } else {
        Exit::Success
    }
}

fn print_report(report: &RunReport, db: &Path, output: OutputFormat) -> Result<(), AppError> {
    let mut out = std::io::stdout().lock();
    match output {
        OutputFormat::Json => {
            let mut value = serde_json::to_value(report).expect("a report always serializes");
            value["db"] = serde_json::Value::String(db.display().to_string());
            writeln!(out, "{value}")?;
        }
        OutputFormat::Text => {
            writeln!(out, "run {}:", report.run_id)?;
            write!(out, "{}", report.summary.table())?;
            match report.stopped {
                Some(runner::StopReason::Interrupted) => writeln!(
                    out,
                    "interrupted: rows not run are marked skipped; finish with `embatch resume {}`",
                    report.run_id
                )?,
                Some(runner::StopReason::MaxFailures) => writeln!(
                    out,
                    "stopped after --max-failures; see `embatch show {} --failed`",
                    report.run_id
                )?,
                None if report.summary.failed > 0 => writeln!(
                    out,
                    "see the failures with `embatch show {} --failed --db {}`",
                    report.run_id,
                    db.display()
                )?,
                None => {}
            }
        }
    }
    Ok(())
}

fn runs(db: &Path) -> Result<Exit, AppError> {
    let reader = open_reader(db)?;
    let runs = reader.runs()?;
    if runs.is_empty() {
        println!("no runs in {}", db.display());
        return Ok(Exit::Success);
    }
    println!(
        "{:>5}  {:<8} {:<12} {:<24} {:>6} {:>7} {:>6} {:>6}  plan",
        "run", "kind", "status", "started (UTC)", "rows", "applied", "no-op", "failed"
    );
    for r in runs {
        println!(
            "{:>5}  {:<8} {:<12} {:<24} {:>6} {:>7} {:>6} {:>6}  {}",
            r.run_id,
            r.kind,
            r.status,
            r.started_at,
            r.rows,
            r.applied,
            r.noop,
            r.failed,
            r.plan_file.as_deref().unwrap_or("-")
        );
    }
    Ok(Exit::Success)
}

fn open_reader(db: &Path) -> Result<AuditReader, AppError> {
    if !db.exists() {
        return Err(AppError::Usage(format!(
            "no audit log at {} (pass --db or set EMBATCH_DB)",
            db.display()
        )));
    }
    Ok(AuditReader::open(db)?)
}

fn show(s: ShowSettings) -> Result<Exit, AppError> {
    let reader = open_reader(&s.db)?;
    let selector = match s.run {
        RunRef::Id(id) => RunSelector::Id(id),
        RunRef::Last => RunSelector::Last,
    };
    let run = reader.run(selector)?;
    let rows = reader.rows(
        run.run_id,
        RowFilter {
            failed_only: s.failed_only,
        },
    )?;
    if s.output == OutputFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"run": run, "rows": rows}))
                .expect("run info always serializes")
        );
        return Ok(Exit::Success);
    }
    println!(
        "run {} ({}, {}) started {} by {} on {}",
        run.run_id, run.kind, run.status, run.started_at, run.operator, run.server_url
    );
    if let Some(file) = &run.plan_file {
        println!(
            "plan {file} sha256 {}",
            run.plan_sha256.as_deref().unwrap_or("-")
        );
    }
    println!(
        "rows {}: applied {}, no-op {}, failed {}, skipped {}, in doubt {}, pending {}; {} requests",
        run.rows,
        run.applied,
        run.noop,
        run.failed,
        run.skipped,
        run.in_doubt,
        run.pending,
        run.requests
    );
    for r in rows {
        println!(
            "{:>6}  {:<9} {} {} {}{}",
            r.line,
            r.outcome,
            r.account,
            r.action,
            r.target,
            r.error.map(|e| format!("  ({e})")).unwrap_or_default()
        );
    }
    Ok(Exit::Success)
}

async fn run_emulator(s: EmulatorSettings) -> Result<Exit, AppError> {
    let listen = s.config.listen.expect("the CLI always sets the address");
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| AppError::Emulator(format!("cannot listen on {listen}: {e}")))?;
    // With port 0 the system picks the port; the banner must show the real one.
    let listen = listener.local_addr()?;
    let mut config = s.config;
    if config.tls {
        let material = emulator::self_signed(&[listen.ip().to_string()])
            .map_err(|e| AppError::Emulator(e.to_string()))?;
        if let Some(path) = &s.cert_out {
            std::fs::write(path, &material.cert_pem)?;
        }
        config.tls_material = Some(material);
    }
    let scheme = if config.tls { "https" } else { "http" };
    let base = format!("{scheme}://{listen}/api");
    println!("{}", emulator::banner(&base, &config));
    if let Some(path) = &s.cert_out {
        println!(
            "certificate written to {} (use --ca-cert {})",
            path.display(),
            path.display()
        );
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    emulator::serve(listener, config, shutdown)
        .await
        .map_err(|e| AppError::Emulator(e.to_string()))?;
    Ok(Exit::Success)
}

/// The demo's plan and the emulator seed it matches, built in so `demo` runs anywhere.
const DEMO_PLAN: &str = include_str!("../samples/onboarding.csv");
const DEMO_SEED: &str = include_str!("../samples/emulator-seed.json");

async fn demo(s: DemoSettings) -> Result<Exit, AppError> {
    let seed =
        emulator::Seed::from_json(DEMO_SEED).map_err(|e| AppError::Emulator(e.to_string()))?;
    let config = EmulatorConfig {
        seed: Some(seed),
        ..EmulatorConfig::default()
    };
    let (user, password) = (config.admin_user.clone(), config.admin_password.clone());
    let emu = emulator::start(config)
        .await
        .map_err(|e| AppError::Emulator(format!("cannot start: {e}")))?;
    let url = Url::parse(&emu.base_url()).expect("the emulator's URL is valid");
    println!("embatch demo: an Enterprise Manager emulator is running at {url}");
    println!("plan: samples/onboarding.csv\n");

    let plan = plan::parse("samples/onboarding.csv", DEMO_PLAN.as_bytes())?;
    println!("== embatch check samples/onboarding.csv --online");
    let config = ClientConfig::new(
        url.clone(),
        user.clone(),
        Secret::new(password),
        s.wire,
        TlsOptions::default(),
    );
    let pace = Pace {
        rate: 50.0,
        concurrency: 4,
        ..Pace::default()
    };
    let preview = runner::preview(&plan, config.clone(), pace.clone()).await?;
    print!("{}", preview.text(&plan.file));

    println!("\n== embatch apply samples/onboarding.csv");
    let settings = RunSettings {
        client: config,
        pace,
        max_failures: None,
        options_json: serde_json::json!({"demo": true}).to_string(),
    };
    let exit = run_plan(&plan, settings, &s.db, Reporter::Stderr, OutputFormat::Text).await?;
    emu.shutdown().await;
    let db = s.db.display();
    println!("\nThe audit log is {db}. Try next:");
    println!("  cargo run --release -- runs --db {db}");
    println!("  cargo run --release -- show last --db {db}");
    println!(
        "  sqlite3 {db} 'select * from change_log'      (views: run_summary, change_log, request_log)"
    );
    println!(
        "  cargo run --release -- emulator --accounts 100   (then apply your own plan against it)"
    );
    // The demo plan deliberately holds a row EM refuses, to show a failure being recorded; the
    // demo itself succeeded if the run went as expected.
    Ok(match exit {
        Exit::RowsFailed | Exit::Success => Exit::Success,
        other => other,
    })
}
