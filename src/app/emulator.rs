//! `emulator` and `demo`: the built-in EM emulator on its own, and the tour that runs a sample
//! plan against it.

use url::Url;

use crate::console::{out, outln};
use crate::em::{ClientConfig, Secret, TlsOptions};
use crate::emulator::{self, EmulatorConfig};
use crate::exit::Exit;
use crate::plan::{self};
use crate::runner::{self, Door, Pace, Reporter, RunSpec};
use crate::settings::{DemoSettings, EmulatorSettings, OutputFormat};

use super::{AppError, run_through};

pub(super) async fn run_emulator(s: EmulatorSettings) -> Result<Exit, AppError> {
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
    outln!("{}", emulator::banner(&base, &config))?;
    if let Some(path) = &s.cert_out {
        outln!(
            "certificate written to {} (use --ca-cert {})",
            path.display(),
            path.display()
        )?;
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
pub(super) const DEMO_PLAN: &str = include_str!("../../samples/onboarding.csv");

pub(super) const DEMO_SEED: &str = include_str!("../../samples/emulator-seed.json");

pub(super) async fn demo(s: DemoSettings) -> Result<Exit, AppError> {
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
    outln!("embatch demo: an Enterprise Manager emulator is running at {url}")?;
    outln!("plan: samples/onboarding.csv\n")?;

    let plan = plan::parse("samples/onboarding.csv", DEMO_PLAN.as_bytes())?;
    outln!("== embatch check samples/onboarding.csv --online")?;
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
    out!("{}", preview.text(&plan.file))?;

    outln!("\n== embatch apply samples/onboarding.csv")?;
    let settings = runner::run_settings(config, pace, None, serde_json::json!({"demo": true}));
    let mut spec = Some(RunSpec::apply(plan));
    // The demo's log and emulator are its own: it never waits for a lock, so builds once.
    let mut make = || {
        spec.take()
            .ok_or_else(|| AppError::Usage("the demo's run can start only once".into()))
    };
    // The demo's runs are not signed: its log is a trial's, and it makes no key.
    let door = Door {
        db: &s.db,
        signing_key: None,
        reporter: Reporter::Stderr,
        wait: false,
    };
    let exit = run_through(door, &mut make, settings, OutputFormat::Text).await?;
    emu.shutdown().await;
    let db = s.db.display();
    outln!("\nThe audit log is {db}. Try next:")?;
    outln!("  cargo run --release -- runs --db {db}")?;
    outln!("  cargo run --release -- show last --db {db}")?;
    outln!(
        "  sqlite3 {db} 'select * from change_log'      (views: run_summary, change_log, request_log)"
    )?;
    outln!(
        "  cargo run --release -- emulator --accounts 100   (then apply your own plan against it)"
    )?;
    Ok(Exit::of_demo(exit))
}
