//! `embatch report` as users run it: the binary reports a run made against the in-process
//! emulator, and headless Chromium renders the page, runs its script and shows exactly the
//! counts the audit log holds, with markup from the plan kept as text.
//!
//! The browser checks need Debian's `chromium`. CI installs it (`.ci/run`), so there a missing
//! browser fails the test; elsewhere the browser checks are skipped with a notice and the
//! checks of the file itself still run.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use embatch::emulator::{EmulatorConfig, Faults};

use crate::support::{self, FAST, pick};

/// A script in a plan cell, as an attacker would write it.
const SCRIPT: &str = "<script>alert(1)</script>";
/// Markup that would mark the page if the browser ever ran it.
const MARKER: &str =
    "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','1')\">";

/// How long one Chromium run may take before the test gives up on it.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(90);

/// The Chromium binary: `chromium` on the PATH, else Debian's `/usr/bin/chromium`.
fn chromium_binary() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("chromium"))
                .find(|p| p.is_file())
        })
        .or_else(|| Some(PathBuf::from("/usr/bin/chromium")).filter(|p| p.is_file()))
}

/// Chromium, or `None` (with a notice) where it is absent and the browser checks may be
/// skipped; in CI, where `.ci/run` installs it, its absence fails the test.
fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(bin) = chromium_binary() {
        return Some(bin);
    }
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!(
            "{test}: chromium is not installed, and CI must run the browser checks (.ci/run installs it)"
        );
    }
    eprintln!(
        "SKIPPED the browser checks of {test}: chromium is not installed \
         (apt-get install -y chromium to run them; CI always does)"
    );
    None
}

/// Runs headless Chromium on `url` with `args` and a fresh profile; returns its stdout.
fn chromium(bin: &Path, url: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile");
    // Files, not pipes: a page's DOM can be larger than a pipe holds while we wait.
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("chromium starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > CHROMIUM_TIMEOUT {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "chromium did not finish in {CHROMIUM_TIMEOUT:?}: {}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "chromium failed ({status}): {}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    std::fs::read_to_string(&out_path).unwrap()
}

/// The DOM of `url` after its scripts ran.
async fn dump_dom(bin: &Path, url: String) -> String {
    let bin = bin.to_path_buf();
    tokio::task::spawn_blocking(move || chromium(&bin, &url, &["--dump-dom"]))
        .await
        .unwrap()
}

/// The number in `data-count` of the card `count-<id>`.
fn card(dom: &str, id: &str) -> i64 {
    let key = format!("id=\"count-{id}\" data-count=\"");
    let start = dom.find(&key).unwrap_or_else(|| panic!("no card {id}")) + key.len();
    dom[start..].split('"').next().unwrap().parse().unwrap()
}

/// The opening tags of the table's rows.
fn row_tags(dom: &str) -> Vec<&str> {
    dom.match_indices("<tr class=\"o-")
        .map(|(i, _)| &dom[i..i + dom[i..].find('>').unwrap()])
        .collect()
}

/// The run's counts as `run_summary` has them.
fn summary(db: &Path, run: i64) -> Vec<(&'static str, i64)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let columns = [
        "rows", "applied", "noop", "failed", "in_doubt", "skipped", "conflict", "pending",
        "requests",
    ];
    conn.query_row(
        &format!(
            "SELECT {} FROM run_summary WHERE run_id = ?1",
            columns.join(", ")
        ),
        [run],
        |r| {
            columns
                .iter()
                .enumerate()
                .map(|(i, c)| Ok((*c, r.get(i)?)))
                .collect()
        },
    )
    .unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_renders_in_chromium_with_the_logs_counts_and_plan_markup_as_text() {
    let emu = support::emulator(EmulatorConfig {
        accounts: 40,
        ..EmulatorConfig::default()
    })
    .await;
    let state = emu.state();
    let mut taken = Vec::new();
    let a = pick(&state, &mut taken, |a| {
        !a.roles.iter().any(|r| r.name == "VM Restore Operator")
    });
    let only = pick(&state, &mut taken, |a| {
        a.roles.len() == 1 && a.roles[0].name == "Portal User"
    });
    let b = pick(&state, &mut taken, |a| !a.roles.is_empty());
    let c = pick(&state, &mut taken, |_| true);
    let d = pick(&state, &mut taken, |_| true);
    let e = pick(&state, &mut taken, |_| true);
    let flip = if e.allow_restore_all_vms { "off" } else { "on" };

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let plan = dir.path().join("plan.csv");
    let mut csv = csv::Writer::from_path(&plan).unwrap();
    csv.write_record([
        "account",
        "action",
        "target",
        "object_name",
        "ticket",
        "comment",
    ])
    .unwrap();
    for record in [
        [
            a.name.as_str(),
            "assign-role",
            "VM Restore Operator",
            "",
            "CHG-9",
            SCRIPT,
        ],
        [
            only.name.as_str(),
            "remove-role",
            "Portal User",
            "",
            "<b>CHG-9</b>",
            "last role",
        ],
        [
            b.name.as_str(),
            "assign-role",
            &b.roles[0].name,
            "",
            "CHG-9",
            MARKER,
        ],
        [c.name.as_str(), "remove-scope", MARKER, "", "CHG-9", ""],
        [
            d.name.as_str(),
            "add-scope",
            "urn:VMware:Folder:11111111-2222-3333-4444-555555555555.group-v9",
            "Finance <Prod> & \"Test\"",
            "CHG-9",
            "quotes ' and \"",
        ],
        [
            e.name.as_str(),
            "restore-all-vms",
            flip,
            "",
            "CHG-9",
            SCRIPT,
        ],
    ] {
        csv.write_record(record).unwrap();
    }
    csv.flush().unwrap();
    // Throttling gives the chart answers of two kinds.
    emu.set_faults(Faults {
        error_429: 0.2,
        retry_after_secs: 0,
        seed: Some(11),
        ..Faults::default()
    });

    let mut cmd = support::cli(&emu, &db);
    cmd.arg("apply").arg(&plan).args(FAST);
    let out = support::output(cmd).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "one row fails: {}",
        support::text(&out)
    );

    let report = dir.path().join("out").join("run.html");
    std::fs::create_dir(report.parent().unwrap()).unwrap();
    let mut cmd = support::cli(&emu, &db);
    cmd.args(["report", "last", "-o"]).arg(&report);
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("wrote the report of run 1 (6 rows"),
        "{}",
        support::text(&out)
    );
    #[cfg(unix)]
    assert_eq!(mode(&report), 0o600);

    // The file itself: self-contained, and every plan cell escaped.
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(!html.contains(SCRIPT) && !html.contains(MARKER));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&lt;b&gt;CHG-9&lt;/b&gt;"));
    assert!(html.contains("Finance &lt;Prod&gt; &amp; &quot;Test&quot;"));
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the page's own script"
    );
    for external in [
        "<link", "<img", "<iframe", " src=\"", "href=\"", "@import", "url(",
    ] {
        assert!(
            !html.contains(external),
            "the page refers to nothing: {external}"
        );
    }

    // Without -o the report is named after the run, in the current directory; an unknown run
    // is a usage error.
    let mut cmd = support::cli(&emu, &db);
    cmd.args(["report", "1"]).current_dir(dir.path());
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
    assert!(dir.path().join("report-1.html").is_file());
    let mut cmd = support::cli(&emu, &db);
    cmd.args(["report", "7", "-o"])
        .arg(dir.path().join("none.html"));
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(2), "{}", support::text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run 7"));
    assert!(!dir.path().join("none.html").exists());

    let Some(bin) = chromium_or_skip("the_report_renders_in_chromium") else {
        return;
    };
    let url = format!("file://{}", report.display());
    let dom = dump_dom(&bin, url.clone()).await;
    let counts = summary(&db, 1);

    // The page rendered and its script ran (it marks the page, and counts the rows shown).
    assert!(dom.contains("<html lang=\"en\" data-ready=\"1\">"), "{dom}");
    assert!(dom.contains("Showing 6 of 6 rows"), "{dom}");
    assert!(
        !dom.contains("data-pwned=\"1\""),
        "no markup from the plan ran"
    );
    assert!(dom.contains("<title>embatch run 1 report</title>"));
    assert_eq!(dom.matches("<script").count(), 1);
    assert_eq!(
        dom.matches("&lt;script&gt;alert(1)&lt;/script&gt;").count(),
        2
    );

    // The counts are the audit log's.
    for (column, n) in &counts {
        assert_eq!(card(&dom, column), *n, "{column}");
    }
    let get = |c: &str| counts.iter().find(|(k, _)| *k == c).unwrap().1;
    assert_eq!((get("applied"), get("noop"), get("failed")), (3, 2, 1));

    // The charts: every request of the log in the requests chart, throttled ones among them.
    assert!(dom.contains("<svg id=\"chart-requests\""));
    assert!(dom.contains(&format!("data-requests=\"{}\"", get("requests"))));
    assert!(dom.contains("class=\"bar-ok\""));
    assert!(
        dom.contains("class=\"bar-throttled\""),
        "20 % were throttled"
    );
    assert!(dom.contains("<svg id=\"chart-latency\""));
    assert!(dom.contains("class=\"line-p50\""));

    // The table: one row per plan row, each with its outcome; the filter is shown.
    let tags = row_tags(&dom);
    assert_eq!(tags.len() as i64, get("rows"));
    assert!(tags.iter().all(|t| !t.contains("hidden")));
    assert!(
        dom.contains("<div class=\"filters\" id=\"filters\">"),
        "shown by the script"
    );

    // A link to the failures opens the page filtered to them.
    let dom = dump_dom(&bin, format!("{url}#outcome=failed")).await;
    let visible: Vec<&str> = row_tags(&dom)
        .into_iter()
        .filter(|t| !t.contains("hidden"))
        .collect();
    assert_eq!(visible.len(), 1, "{visible:?}");
    assert!(visible[0].contains("data-outcome=\"failed\""));
    assert!(dom.contains("Showing 1 of 6 rows"));

    // And it paints: a screenshot of a blank page would be a few kilobytes.
    let shot = dir.path().join("report.png");
    let arg = format!("--screenshot={}", shot.display());
    let bin2 = bin.clone();
    tokio::task::spawn_blocking(move || {
        chromium(&bin2, &url, &[arg.as_str(), "--window-size=1200,1600"])
    })
    .await
    .unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(width, 1200);
    assert!(png.len() > 30_000, "a painted page: {} bytes", png.len());
}
