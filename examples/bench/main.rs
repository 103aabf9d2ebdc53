//! The benchmark harness: embatch against its own emulator, with the figures that say whether
//! embatch could ever be what limits a run. Not a test, and not run by CI: run it by hand.
//!
//! ```sh
//! cargo run --release --example bench -- --rows 100000 --concurrency 32   # throughput
//! cargo run --release --example bench -- --rate 200                       # rate accuracy
//! cargo run --release --example bench -- --mode check --rows 1000000      # plan validation
//! cargo run --release --example bench -- --mode memory --rows 1000000     # apply's memory
//! cargo run --release --example bench -- --mode audit                     # the audit writer
//! cargo run --release --example bench -- --mode export --rows 1000000     # export's memory
//! ```
//!
//! Each run starts an emulator with no faults and no latency, seeded with enough accounts,
//! generates a plan for it (four rows per account: two restore roles, a scope, the
//! restore-all-VMs flag), applies it with a fresh audit log on disk, and reads its figures back
//! from that log. BENCHMARKS.md explains the figures and records what they were.

mod alloc;
mod export;
mod measure;
mod workload;

use std::io::{BufRead as _, Read as _, Write as _};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use embatch::app::Layout;
use embatch::audit::{AttemptStart, AuditWriter, NewRun, RowColumns, RowResult};
use embatch::em::{ClientConfig, Secret, TlsOptions, Wire};
use embatch::emulator::{self, EmulatorConfig, Faults, RunningEmulator, StateSnapshot};
use embatch::plan::PlanFile;
use embatch::runner::{self, Pace, Reporter, RunReport, RunSettings, RunSpec};
use tokio_util::sync::CancellationToken;

use measure::{RunLog, mib, status_kib};
use workload::Naming;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

const USAGE: &str = "\
usage: bench [--mode throughput|rate|check|memory|audit|export] [options]

modes:
  throughput  apply a generated plan without a rate limit (the default)
  rate        apply about --requests requests at --rate, and check the pace (implied by --rate)
  check       validate a generated plan offline, as `embatch check` does
  memory      apply a generated plan with the emulator in another process; report peak memory
  audit       the audit writer alone: recording rows, awaited intents, streamed outcomes
  export      export a log of --rows/10 and --rows finished rows in every format; peak memory

options:
  --rows N            plan rows (throughput: 100000; check, memory and export: 1000000)
  --concurrency N     requests in flight (32)
  --rate R            requests per second (throughput: unlimited; rate: 200)
  --burst B           requests allowed at once above the rate (5)
  --requests N        rate mode: requests to send (3000)
  --records N         audit mode: records to write (300000)
  --wire xml|json     the API's wire format (xml)
  --names             name accounts TECH\\userNNNNN in the plan instead of by GUID
  --emulator in-process|child
                      where the emulator runs (memory: child; otherwise in-process)
  --db FILE           keep the audit log here instead of in a temporary directory";

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Throughput,
    Rate,
    Check,
    Memory,
    Audit,
    Export,
    /// Internal: the emulator process of `--emulator child`.
    Serve,
}

/// Where the emulator runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    InProcess,
    Child,
}

/// The command line, parsed.
#[derive(Clone, Debug)]
struct Args {
    mode: Mode,
    rows: Option<usize>,
    concurrency: usize,
    rate: Option<f64>,
    burst: NonZeroU32,
    requests: u64,
    records: u64,
    wire: Wire,
    naming: Naming,
    emulator: Option<Placement>,
    db: Option<PathBuf>,
    /// Internal (`--mode serve`): where to write the plan.
    plan_out: Option<PathBuf>,
}

impl Args {
    fn parse(mut it: impl Iterator<Item = String>) -> Result<Args> {
        let mut mode = None;
        let mut args = Args {
            mode: Mode::Throughput,
            rows: None,
            concurrency: 32,
            rate: None,
            burst: NonZeroU32::new(5).expect("5 is not zero"),
            requests: 3000,
            records: 300_000,
            wire: Wire::Xml,
            naming: Naming::Id,
            emulator: None,
            db: None,
            plan_out: None,
        };
        while let Some(flag) = it.next() {
            let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--mode" => {
                    mode = Some(match value()?.as_str() {
                        "throughput" => Mode::Throughput,
                        "rate" => Mode::Rate,
                        "check" => Mode::Check,
                        "memory" => Mode::Memory,
                        "audit" => Mode::Audit,
                        "export" => Mode::Export,
                        "serve" => Mode::Serve,
                        other => bail!("unknown mode {other:?}\n{USAGE}"),
                    })
                }
                "--rows" => args.rows = Some(number(&flag, &value()?)?),
                "--concurrency" => args.concurrency = number(&flag, &value()?)?,
                "--rate" => args.rate = Some(number(&flag, &value()?)?),
                "--burst" => {
                    args.burst = NonZeroU32::new(number(&flag, &value()?)?)
                        .context("--burst must be at least 1")?
                }
                "--requests" => args.requests = number(&flag, &value()?)?,
                "--records" => args.records = number(&flag, &value()?)?,
                "--wire" => {
                    args.wire = match value()?.as_str() {
                        "xml" => Wire::Xml,
                        "json" => Wire::Json,
                        other => bail!("unknown wire format {other:?}"),
                    }
                }
                "--names" => args.naming = Naming::Name,
                "--emulator" => {
                    args.emulator = Some(match value()?.as_str() {
                        "in-process" => Placement::InProcess,
                        "child" => Placement::Child,
                        other => bail!("unknown emulator placement {other:?}"),
                    })
                }
                "--db" => args.db = Some(PathBuf::from(value()?)),
                "--plan-out" => args.plan_out = Some(PathBuf::from(value()?)),
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?}\n{USAGE}"),
            }
        }
        args.mode = match (mode, args.rate) {
            (Some(m), _) => m,
            (None, Some(_)) => Mode::Rate,
            (None, None) => Mode::Throughput,
        };
        if args.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            bail!("--rate must be a positive number");
        }
        Ok(args)
    }

    /// Plan rows, with the mode's default.
    fn rows(&self) -> usize {
        self.rows.unwrap_or(match self.mode {
            Mode::Check | Mode::Memory | Mode::Export => 1_000_000,
            _ => 100_000,
        })
    }

    /// The pace of a run: a rate so high it never waits, unless one is given.
    fn pace(&self) -> Pace {
        Pace {
            concurrency: self.concurrency,
            rate: self.rate.unwrap_or(match self.mode {
                Mode::Rate => 200.0,
                _ => 1e9,
            }),
            burst: self.burst,
            max_attempts: 5,
            backoff: Duration::from_millis(200),
            ..Pace::default()
        }
    }

    fn placement(&self) -> Placement {
        self.emulator.unwrap_or(match self.mode {
            Mode::Memory => Placement::Child,
            _ => Placement::InProcess,
        })
    }

    /// Emulator accounts enough for the plan, with a few to spare.
    fn accounts(&self) -> usize {
        match self.mode {
            // Every account makes at least five requests.
            Mode::Rate => (self.requests / 5) as usize + 10,
            _ => workload::accounts_for(self.rows()) + 10,
        }
    }

    /// The plan for an emulator in `state`.
    fn plan(&self, state: &StateSnapshot) -> String {
        match self.mode {
            Mode::Rate => {
                let chosen =
                    workload::accounts_for_requests(&state.accounts, self.requests, self.naming);
                let rows = chosen.len() * workload::ROWS_PER_ACCOUNT;
                workload::plan_for(chosen, rows, self.naming)
            }
            _ => workload::plan_for(
                workload::generated(&state.accounts),
                self.rows(),
                self.naming,
            ),
        }
    }
}

fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T> {
    let digits: String = text.chars().filter(|c| *c != '_' && *c != ',').collect();
    digits
        .parse()
        .ok()
        .with_context(|| format!("{flag}: {text:?} is not a number"))
}

fn main() -> Result<()> {
    let args = Args::parse(std::env::args().skip(1))?;
    // The runtime `embatch` itself uses, so that the figures are the binary's; the emulator's
    // process serves as `embatch emulator` does. BENCH_RUNTIME=server runs the client on the
    // server's layout, to compare the two.
    let layout = match (args.mode, std::env::var("BENCH_RUNTIME").as_deref()) {
        (Mode::Serve, _) | (_, Ok("server")) => Layout::Server,
        _ => Layout::Client,
    };
    let runtime = embatch::app::runtime(layout).context("start the async runtime")?;
    if args.mode != Mode::Serve {
        println!("{}", machine());
    }
    runtime.block_on(async {
        match args.mode {
            Mode::Throughput => throughput(&args).await,
            Mode::Rate => rate(&args).await,
            Mode::Check => check(&args),
            Mode::Memory => memory(&args).await,
            Mode::Audit => audit(&args).await,
            Mode::Export => export::run(args.rows()).await,
            Mode::Serve => serve(&args).await,
        }
    })
}

/// One line about the machine: CPUs, model and memory.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown CPU".to_owned(), |(_, m)| m.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "machine: {cpus} CPUs ({model}), {:.1} GiB memory",
        mem_kib as f64 / (1024.0 * 1024.0)
    )
}

/// The emulator a run talks to, and the plan generated for it. Dropping it stops the
/// emulator (a child process sees its stdin close and exits).
struct Target {
    base_url: String,
    /// The emulator's process, when it runs in another one.
    child: Option<u32>,
    plan: PathBuf,
    _emulator: EmulatorHandle,
    _dir: tempfile::TempDir,
}

enum EmulatorHandle {
    /// Served by this process's runtime until dropped.
    InProcess { _emulator: RunningEmulator },
    /// Another process, which stops when its stdin closes.
    Child(Child),
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let EmulatorHandle::Child(child) = self {
            // Closing its stdin is the child's signal to stop; wait so no process outlives us.
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// The emulator for `args`: no faults and no latency, except in rate mode, where it refuses
/// (503) any request that would make more than rate + burst in its sliding one-second window,
/// so the pace is also checked where it matters, at the server.
fn emulator_config(args: &Args) -> EmulatorConfig {
    let mut faults = Faults::default();
    if args.mode == Mode::Rate {
        let pace = args.pace();
        faults.max_rps = Some((pace.rate + f64::from(pace.burst.get())).floor() as u32);
        faults.retry_after_secs = 1;
    }
    EmulatorConfig {
        accounts: args.accounts(),
        faults,
        ..EmulatorConfig::default()
    }
}

impl Target {
    /// CPU seconds the emulator's process has used, when it runs in another one.
    fn emulator_cpu(&self) -> Option<f64> {
        self.child
            .map(|pid| measure::cpu_secs(Path::new(&format!("/proc/{pid}/stat"))))
    }

    async fn start(args: &Args) -> Result<Target> {
        let dir = tempfile::tempdir().context("make a temporary directory")?;
        let plan = dir.path().join("plan.csv");
        let mut child_pid = None;
        let (base_url, emulator) = match args.placement() {
            Placement::InProcess => {
                let emu = emulator::start(emulator_config(args))
                    .await
                    .context("start the emulator")?;
                std::fs::write(&plan, args.plan(&emu.state())).context("write the plan")?;
                (emu.base_url(), EmulatorHandle::InProcess { _emulator: emu })
            }
            Placement::Child => {
                let mut child = Command::new(std::env::current_exe()?);
                child.args(["--mode", "serve"]);
                child.args(["--rows", &args.rows().to_string()]);
                child.args(["--requests", &args.requests.to_string()]);
                if args.naming == Naming::Name {
                    child.arg("--names");
                }
                if args.mode == Mode::Rate {
                    child.args(["--rate", &args.pace().rate.to_string()]);
                    child.args(["--burst", &args.burst.to_string()]);
                }
                child.arg("--plan-out").arg(&plan);
                let mut child = child
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .context("start the emulator process")?;
                child_pid = Some(child.id());
                let stdout = child.stdout.take().expect("stdout is piped");
                let mut line = String::new();
                std::io::BufReader::new(stdout).read_line(&mut line)?;
                let handle = EmulatorHandle::Child(child);
                let url = line.trim().to_owned();
                if !url.starts_with("http") {
                    bail!("the emulator process did not start: {line:?}");
                }
                (url, handle)
            }
        };
        Ok(Target {
            base_url,
            child: child_pid,
            plan,
            _emulator: emulator,
            _dir: dir,
        })
    }
}

/// `--mode serve`: an emulator for a parent bench process. Writes the plan, prints the base
/// URL, and serves until its stdin closes.
async fn serve(args: &Args) -> Result<()> {
    // The parent passes the mode it measures through --rate: with one, the plan is sized by
    // requests, as rate mode sizes it.
    let planned = Args {
        mode: if args.rate.is_some() {
            Mode::Rate
        } else {
            Mode::Memory
        },
        ..args.clone()
    };
    let emu = emulator::start(emulator_config(&planned)).await?;
    let out = args.plan_out.as_ref().context("--plan-out is required")?;
    std::fs::write(out, planned.plan(&emu.state()))?;
    println!("{}", emu.base_url());
    std::io::stdout().flush()?;
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await?;
    emu.shutdown().await;
    Ok(())
}

/// The client settings for the emulator's admin logon.
fn client_config(base_url: &str, wire: Wire) -> Result<ClientConfig> {
    let defaults = EmulatorConfig::default();
    Ok(ClientConfig::new(
        url::Url::parse(base_url)?,
        defaults.admin_user,
        Secret::new(defaults.admin_password),
        wire,
        TlsOptions::default(),
    ))
}

/// A finished run: its report, how long it took, and where its audit log is.
struct Applied {
    report: RunReport,
    elapsed: Duration,
    /// CPU seconds the run took: the whole process, and the audit writer's thread.
    cpu: (f64, f64),
    /// The flush latencies of the audit log's directory just before the run, sorted.
    flush_ms: Vec<f64>,
    /// Bytes the process wrote during the run.
    written: u64,
    db: PathBuf,
    log: RunLog,
    _dir: Option<tempfile::TempDir>,
}

/// Applies the checked `plan` against `base_url` with a fresh audit log, as `embatch apply`
/// does: its rows are read from the file again as the run records them.
async fn apply(plan: PlanFile, base_url: &str, args: &Args) -> Result<Applied> {
    let (db, dir) = match &args.db {
        Some(path) => (path.clone(), None),
        None => {
            let dir = tempfile::tempdir()?;
            (dir.path().join("audit.db"), Some(dir))
        }
    };
    let flush_ms = flush_latency_ms(db.parent().unwrap_or(Path::new(".")))?;
    let writer = AuditWriter::spawn(&db)?;
    let settings = RunSettings {
        client: client_config(base_url, args.wire)?,
        pace: args.pace(),
        max_failures: None,
        options_json: "{}".into(),
    };
    let cpu_before = measure::cpu_of_self("embatch-audit");
    let written_before = measure::bytes_written();
    let started = Instant::now();
    let rows = plan
        .rows()
        .map_err(|e| anyhow::anyhow!("read the plan again:\n{e}"))?;
    let spec = RunSpec::apply_stream(plan.file, plan.sha256, plan.rows, Box::new(rows));
    let result = runner::execute(
        spec,
        settings,
        writer.handle(),
        CancellationToken::new(),
        Reporter::Quiet,
    )
    .await;
    // The writer's thread is gone after close, so its time is read first; only the last
    // group's commit is left for it to do.
    let cpu_after = measure::cpu_of_self("embatch-audit");
    writer.close().await?;
    let elapsed = started.elapsed();
    let written = measure::bytes_written() - written_before;
    let report = result?;
    let cpu = (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1);
    let log = RunLog::read(&db, report.run_id)?;
    Ok(Applied {
        report,
        elapsed,
        cpu,
        flush_ms,
        written,
        db,
        log,
        _dir: dir,
    })
}

/// Validates the generated plan in one streaming pass, as `embatch apply` does first.
fn load(path: &Path) -> Result<PlanFile> {
    embatch::plan::check(path).map_err(|e| anyhow::anyhow!("the generated plan is invalid:\n{e}"))
}

fn rate_text(args: &Args) -> String {
    match args.rate {
        Some(r) => format!("rate {r}/s, burst {}", args.burst),
        None if args.mode == Mode::Rate => format!("rate 200/s, burst {}", args.burst),
        None => "no rate limit".to_owned(),
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}

/// Prints the figures every apply shares; `emulator_cpu` is the CPU seconds of an emulator
/// in another process over the run.
fn print_apply(args: &Args, run: &Applied, emulator_cpu: Option<f64>) {
    let s = &run.report.summary.counts;
    let secs = run.elapsed.as_secs_f64();
    let log = &run.log;
    println!(
        "apply: {} rows, concurrency {} ({} workers), {}, {} wire, audit log {}",
        s.rows,
        args.concurrency,
        args.pace().workers(),
        rate_text(args),
        args.wire.as_str(),
        match &args.db {
            Some(path) => format!("at {}", path.display()),
            None => "in a temporary directory".to_owned(),
        }
    );
    println!(
        "  rows/s            {:>10.0}   ({} rows in {secs:.2} s: {} applied, {} no-op, {} failed)",
        s.rows as f64 / secs,
        s.rows,
        s.applied,
        s.noop,
        s.failed + s.in_doubt + s.skipped
    );
    println!(
        "  requests/s        {:>10.0}   ({} requests, {} below 400; {:.0}/s between first and last)",
        log.requests as f64 / secs,
        log.requests,
        log.ok,
        log.requests as f64 / log.span_secs().max(1e-3)
    );
    println!(
        "  latency p50       {:>10.2}   ms (request_log duration_ms)",
        log.latency_ms(0.50)
    );
    println!("  latency p99       {:>10.2}   ms", log.latency_ms(0.99));
    println!(
        "  audit records/s   {:>10.0}   ({} records: row inserts, account ids, outcomes, intents, completions)",
        log.audit_records() as f64 / secs,
        log.audit_records()
    );
    let per_request = |secs: f64| secs * 1e6 / log.requests.max(1) as f64;
    let (process, writer) = run.cpu;
    let whose = match emulator_cpu {
        Some(_) => "this process",
        None => "this process, emulator included",
    };
    println!(
        "  CPU per request   {:>10.1}   us ({whose}; the audit writer's thread {:.1} us){}",
        per_request(process),
        per_request(writer),
        emulator_cpu.map_or(String::new(), |e| format!(
            "; the emulator {:.1} us",
            per_request(e)
        ))
    );
    println!(
        "  disk flush        {:>10.2}   ms p50, {:.2} ms p99 (4 KiB + fdatasync beside the audit log, before the run)",
        measure::quantile(&run.flush_ms, 0.5),
        measure::quantile(&run.flush_ms, 0.99)
    );
    let db_bytes = measure::db_bytes(&run.db);
    println!(
        "  bytes written     {:>10.0}   per request ({:.0} MiB in all, the audit log's WAL and checkpoints nearly all of it)",
        run.written as f64 / log.requests.max(1) as f64,
        mib(run.written)
    );
    println!(
        "  audit DB          {:>10.0}   bytes/row ({:.1} MiB)",
        db_bytes as f64 / s.rows.max(1) as f64,
        mib(db_bytes)
    );
}

async fn throughput(args: &Args) -> Result<()> {
    let target = Target::start(args).await?;
    let plan = load(&target.plan)?;
    let before = status_kib("VmRSS");
    let emu_before = target.emulator_cpu();
    let run = apply(plan, &target.base_url, args).await?;
    let emu = target.emulator_cpu().zip(emu_before).map(|(a, b)| a - b);
    print_apply(args, &run, emu);
    let where_ = match args.placement() {
        Placement::InProcess => "emulator in this process",
        Placement::Child => "emulator in another process",
    };
    println!(
        "  peak RSS (VmHWM)  {:>10.1}   MiB ({where_}; {:.1} MiB before the run, plan loaded)",
        status_kib("VmHWM") as f64 / 1024.0,
        before as f64 / 1024.0
    );
    Ok(())
}

async fn rate(args: &Args) -> Result<()> {
    let target = Target::start(args).await?;
    let plan = load(&target.plan)?;
    let emu_before = target.emulator_cpu();
    let run = apply(plan, &target.base_url, args).await?;
    let emu = target.emulator_cpu().zip(emu_before).map(|(a, b)| a - b);
    print_apply(args, &run, emu);
    let pace = args.pace();
    let log = &run.log;
    let achieved = (log.requests.saturating_sub(1)) as f64 / log.span_secs().max(1e-3);
    let off = (achieved / pace.rate - 1.0) * 100.0;
    let max = log.max_per_second();
    let limit = pace.rate + f64::from(pace.burst.get());
    println!(
        "  achieved rate     {achieved:>10.1}   /s over {} request starts in {:.2} s ({off:+.2}% of {}; within 2%: {})",
        log.starts_ms.len(),
        log.span_secs(),
        pace.rate,
        verdict(off.abs() <= 2.0)
    );
    println!(
        "  max in any 1 s    {max:>10}   request starts (rate + burst = {limit}: {})",
        verdict(max as f64 <= limit)
    );
    let refused = run.report.summary.throttled;
    println!(
        "  refused by server {refused:>10}   (the emulator's sliding one-second window admits rate + burst: {})",
        verdict(refused == 0)
    );
    Ok(())
}

fn check(args: &Args) -> Result<()> {
    let rows = args.rows();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("plan.csv");
    std::fs::write(&path, workload::synthetic_plan(rows))?;
    let bytes = std::fs::metadata(&path)?.len();
    let before = status_kib("VmHWM");
    let heap_before = alloc::live();
    alloc::take_peak();
    let started = Instant::now();
    let plan = load(&path)?;
    let secs = started.elapsed().as_secs_f64();
    let heap_peak = alloc::take_peak() - heap_before;
    let heap_kept = alloc::live() - heap_before;
    assert_eq!(plan.rows, rows as u64);
    println!(
        "check: {rows} rows ({:.1} MiB) validated in {secs:.2} s ({:.0} rows/s; target < 5 s: {})",
        mib(bytes),
        rows as f64 / secs,
        verdict(secs < 5.0)
    );
    println!(
        "  peak RSS (VmHWM)  {:>10.1}   MiB ({:.1} MiB before, plan text generated)",
        status_kib("VmHWM") as f64 / 1024.0,
        before as f64 / 1024.0
    );
    println!(
        "  heap              {:>10.1}   MiB at the peak of validation, {:.1} MiB kept by the checked plan ({:.0} bytes/row)",
        mib(heap_peak as u64),
        mib(heap_kept as u64),
        heap_kept as f64 / rows as f64
    );
    Ok(())
}

/// Samples the resident set and the live heap while a run goes on, and keeps the peaks.
struct Sampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(f64, u64, usize)>>,
}

impl Sampler {
    fn start() -> Sampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut samples = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                samples.push((
                    t0.elapsed().as_secs_f64(),
                    status_kib("VmRSS"),
                    alloc::live(),
                ));
                std::thread::sleep(Duration::from_millis(250));
            }
            samples
        });
        Sampler { stop, thread }
    }

    fn finish(self) -> Vec<(f64, u64, usize)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("the sampler does not panic")
    }
}

async fn memory(args: &Args) -> Result<()> {
    let target = Target::start(args).await?;
    let base = (status_kib("VmRSS"), alloc::live());
    alloc::take_peak();
    let plan = load(&target.plan)?;
    let loaded = (status_kib("VmRSS"), alloc::live(), alloc::take_peak());
    let loaded_hwm = status_kib("VmHWM");
    // Resets VmHWM to the current resident set (Linux 4.0 and later), so the peak of the apply
    // itself shows apart from that of validating the plan.
    let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let sampler = Sampler::start();
    let emu_before = target.emulator_cpu();
    let run = apply(plan, &target.base_url, args).await?;
    let emu = target.emulator_cpu().zip(emu_before).map(|(a, b)| a - b);
    let samples = sampler.finish();
    let run_peak = alloc::take_peak();
    print_apply(args, &run, emu);
    let hwm = status_kib("VmHWM");
    let where_ = match args.placement() {
        Placement::InProcess => "emulator in this process",
        Placement::Child => "emulator in another process",
    };
    let peak = hwm.max(loaded_hwm);
    println!(
        "  peak RSS (VmHWM)  {:>10.1}   MiB ({where_}; target < 200 MiB: {})",
        peak as f64 / 1024.0,
        verdict(peak < 200 * 1024)
    );
    if hwm_reset {
        println!(
            "  peak RSS by phase: {:.1} MiB up to the plan loaded (validation), {:.1} MiB during apply",
            loaded_hwm as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
    }
    println!(
        "  memory by phase: start RSS {:.1} MiB (heap {:.1}); plan loaded RSS {:.1} MiB (heap {:.1}, peak {:.1})",
        base.0 as f64 / 1024.0,
        mib(base.1 as u64),
        loaded.0 as f64 / 1024.0,
        mib(loaded.1 as u64),
        mib(loaded.2 as u64),
    );
    println!("  heap during apply: peak {:.1} MiB", mib(run_peak as u64));
    // About twenty points of the run, so the shape over time shows without a wall of numbers.
    let step = (samples.len() / 20).max(1);
    let line: Vec<String> = samples
        .iter()
        .step_by(step)
        .map(|(t, rss, heap)| {
            format!(
                "{t:.0}s {:.0}/{:.0}",
                *rss as f64 / 1024.0,
                mib(*heap as u64)
            )
        })
        .collect();
    println!("  RSS/heap MiB over the run: {}", line.join(", "));
    Ok(())
}

async fn audit(args: &Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| dir.path().join("audit.db"));
    // Each row makes six records, as a row of a run does: its account id, two attempts (an
    // awaited intent and a completion each) and its outcome.
    let rows = (args.records / 6).max(1);
    let callers = args.concurrency as u64;
    let new_rows: Vec<RowColumns> = (0..rows)
        .map(|i| RowColumns {
            row_no: i,
            line: i + 2,
            account: format!("TECH\\user{:06}", i / 4 + 1),
            action: "assign-role".into(),
            target: "Exchange Restore Operator".into(),
            object_name: None,
            ticket: Some("BENCH-1".into()),
            comment: None,
            annotations: None,
        })
        .collect();
    let flush = flush_latency_ms(db.parent().unwrap_or(Path::new(".")))?;
    println!(
        "audit writer alone (synchronous=FULL), {}: a 4 KiB write + fdatasync there takes p50 {:.2} ms, p99 {:.2} ms",
        db.display(),
        measure::quantile(&flush, 0.5),
        measure::quantile(&flush, 0.99)
    );
    let writer = AuditWriter::spawn(&db)?;
    let audit = writer.handle();
    let started = Instant::now();
    let run_id = audit
        .begin_run_with_rows(
            NewRun {
                kind: "apply".into(),
                parent_run_id: None,
                operator: "admin".into(),
                server_url: "http://127.0.0.1:9398/api".into(),
                wire: "xml".into(),
                tls_verify: true,
                insecure: false,
                plan_file: Some("plan.csv".into()),
                plan_sha256: Some("00".repeat(32)),
                tool_version: env!("CARGO_PKG_VERSION").into(),
                options: "{}".into(),
            },
            new_rows,
        )
        .await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  rows recorded     {:>10.0}   rows/s ({rows} pending rows in one transaction, {secs:.2} s)",
        rows as f64 / secs
    );

    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..callers {
        let audit = audit.clone();
        tasks.push(tokio::spawn(async move {
            let mut waits = Vec::new();
            let mut row = c;
            while row < rows {
                audit.row_account(run_id, row, "11111111-2222-3333-4444-555555555555");
                for attempt in 1..=2 {
                    let asked = Instant::now();
                    let id = audit
                        .attempt_started(AttemptStart {
                            run_id,
                            row_no: Some(row),
                            attempt,
                            method: "GET".into(),
                            path: format!("/api/security/accounts/{row}/roles"),
                        })
                        .await?;
                    waits.push(asked.elapsed().as_secs_f64() * 1000.0);
                    audit.attempt_finished(run_id, id, Some(200), None, Duration::from_micros(900));
                }
                audit.row_finished(
                    run_id,
                    row,
                    RowResult {
                        outcome: "applied".into(),
                        error: None,
                        prior_state: Some(r#"{"roles":[]}"#.into()),
                        result: None,
                    },
                );
                row += callers;
            }
            anyhow::Ok(waits)
        }));
    }
    let mut waits = Vec::new();
    for t in tasks {
        waits.extend(t.await??);
    }
    writer.close().await?;
    let secs = started.elapsed().as_secs_f64();
    let records = rows * 6;
    waits.sort_by(f64::total_cmp);
    println!(
        "  as a run writes   {:>10.0}   records/s ({records} records from {callers} callers, each awaiting its intents' commit; {secs:.2} s; target >= 50,000: {})",
        records as f64 / secs,
        verdict(records as f64 / secs >= 50_000.0)
    );
    println!(
        "  intent commit     {:>10.2}   ms p50, {:.2} ms p99 (from sending an intent to its commit)",
        measure::quantile(&waits, 0.5),
        measure::quantile(&waits, 0.99)
    );

    // The writer's own capacity: outcomes only, nobody waiting, committed in full groups.
    let writer = AuditWriter::spawn(&db)?;
    let audit = writer.handle();
    let started = Instant::now();
    for row in 0..rows {
        audit.row_finished(
            run_id,
            row,
            RowResult {
                outcome: "noop".into(),
                error: Some("already in place".into()),
                prior_state: None,
                result: None,
            },
        );
    }
    writer.close().await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  streamed          {:>10.0}   records/s ({rows} outcomes sent without waiting; {secs:.2} s)",
        rows as f64 / secs
    );
    println!(
        "  audit DB          {:>10.0}   bytes/row",
        measure::db_bytes(&db) as f64 / rows as f64
    );
    Ok(())
}

/// How long appending 4 KiB to a file in `dir` and flushing it to the device takes, 200 times,
/// in milliseconds, sorted: the floor under every commit of an audit log kept there.
fn flush_latency_ms(dir: &Path) -> Result<Vec<f64>> {
    let path = dir.join(".bench-flush");
    let mut file = std::fs::File::create(&path)?;
    let page = [0u8; 4096];
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        file.write_all(&page)?;
        file.sync_data()?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    times.sort_by(f64::total_cmp);
    Ok(times)
}
