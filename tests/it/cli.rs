//! The binary as users run it: exit statuses, refusals that send nothing, and the demo.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use embatch::emulator::EmulatorConfig;

use crate::support;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn embatch() -> Command {
    let mut cmd = Command::cargo_bin("embatch").unwrap();
    for var in [
        "EMBATCH_URL",
        "EMBATCH_USER",
        "EMBATCH_PASSWORD",
        "EMBATCH_DB",
        "EMBATCH_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn bad_plans() -> Vec<PathBuf> {
    let mut plans: Vec<PathBuf> = std::fs::read_dir(repo().join("samples/bad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    plans.sort();
    assert!(
        plans.len() >= 5,
        "samples/bad holds the malformed sample plans"
    );
    plans
}

#[tokio::test(flavor = "multi_thread")]
async fn every_malformed_sample_is_refused_with_lines_and_nothing_is_sent() {
    let emu = support::emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    for plan in bad_plans() {
        let out = embatch()
            .arg("apply")
            .arg(&plan)
            .env("EMBATCH_URL", emu.base_url())
            .env("EMBATCH_USER", EmulatorConfig::default().admin_user)
            .env("EMBATCH_PASSWORD", EmulatorConfig::default().admin_password)
            .env("EMBATCH_DB", dir.path().join("audit.db"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", plan.display());
        let name = plan.file_name().unwrap().to_string_lossy().to_string();
        let located = stderr
            .lines()
            .filter(|l| l.contains(&format!("{name}:")))
            .count();
        assert!(
            located >= 2,
            "{}: every problem is named by line:\n{stderr}",
            plan.display()
        );
    }
    assert!(emu.requests().is_empty(), "no request reached the server");
    assert!(
        !dir.path().join("audit.db").exists(),
        "an invalid plan opens no run"
    );
}

#[test]
fn a_spreadsheet_export_with_bom_crlf_and_semicolons_is_accepted() {
    let plan = repo().join("samples/excel-semicolon.csv");
    let bytes = std::fs::read(&plan).unwrap();
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"), "the sample has a BOM");
    assert!(
        bytes.windows(2).any(|w| w == b"\r\n"),
        "the sample has CRLF"
    );
    embatch().arg("check").arg(&plan).assert().success();
}

#[test]
fn usage_errors_exit_2() {
    let out = embatch()
        .args(["apply", "samples/onboarding.csv"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("EMBATCH_URL"));
}

#[test]
fn a_wrong_password_exits_3_before_any_change() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt.block_on(support::emulator(EmulatorConfig::default()));
    let dir = tempfile::tempdir().unwrap();
    let out = embatch()
        .args(["apply", "samples/onboarding.csv"])
        .current_dir(repo())
        .env("EMBATCH_URL", emu.base_url())
        .env("EMBATCH_USER", "admin")
        .env("EMBATCH_PASSWORD", "not-the-password")
        .env("EMBATCH_DB", dir.path().join("audit.db"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(emu.journal().is_empty());
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn demo_runs_end_to_end_in_an_empty_directory() {
    // The demo carries its plan and seed inside the binary, so it works from anywhere, and a
    // second run against the same audit log works too.
    let dir = tempfile::tempdir().unwrap();
    for round in 1..=2 {
        let out = embatch()
            .arg("demo")
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "round {round}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("applied"), "{stdout}");
        assert!(stdout.contains("embatch-demo.db"), "{stdout}");
        // The row EM refuses is shown where it happened, after the summary.
        assert!(
            stdout.contains(
                "samples/onboarding.csv:19: TECH\\bob.keller remove-role \"Portal User\": \
                 would remove the last role of TECH\\bob.keller"
            ),
            "{stdout}"
        );
    }
    let runs = embatch()
        .arg("runs")
        .arg("--db")
        .arg(dir.path().join("embatch-demo.db"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&runs.stdout).lines().count() >= 3);
    // The samples a new user is pointed at validate as they are.
    let samples = dir.path().join("samples");
    copy_tree(&repo().join("samples"), &samples);
    embatch()
        .arg("check")
        .arg(samples.join("onboarding.csv"))
        .assert()
        .success();
}

/// Runs `cmd` with its stdout a pipe whose reader is already gone, as `embatch show | head`
/// leaves it once `head` has had enough; its exit status and what it wrote on stderr.
async fn with_stdout_gone(mut cmd: std::process::Command) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdout(writer);
    let out = support::output(cmd).await;
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A plan that creates an account whose name holds a right-to-left override (which EM
/// allows, and a terminal would obey), in a file whose name holds escape sequences.
fn plan_with_outside_text(dir: &Path) -> PathBuf {
    let path = dir.join("plan\u{1b}[2J\u{1b}]0;pwned\u{7}.csv");
    std::fs::write(
        &path,
        "account,action,target,comment\n\
         TECH\\\u{202E}txt.exe,add-account,User,\"\u{1b}]0;pwned\u{7}\"\n\
         TECH\\\u{202E}txt.exe,assign-role,Portal User,\u{1b}[2J\n",
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_goes_away_ends_every_command_quietly() {
    let emu = support::emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let plan = plan_with_outside_text(dir.path());
    let cli = |args: &[&str]| {
        let mut cmd = support::cli(&emu, &db);
        cmd.args(args);
        cmd
    };

    // A run whose summary cannot be shown still runs, and ends as it would have.
    let mut apply = cli(&["apply"]);
    apply.arg(&plan).args(support::FAST);
    let (status, stderr) = with_stdout_gone(apply).await;
    assert_eq!(status, Some(0), "{stderr}");
    assert_eq!(support::outcomes(&db, 1), ["applied", "applied"]);

    let mut commands: Vec<std::process::Command> = [
        &["runs"][..],
        &["show", "1"],
        &["show", "last", "--output", "json"],
        &["verify"],
        &["export", "--format", "jsonl"],
        &["report", "1", "--out"],
        &["undo", "1", "--dry-run"],
        &["check", "samples/onboarding.csv"],
        &["check", "samples/onboarding.csv", "--output", "json"],
        &["--help"],
    ]
    .iter()
    .map(|args| {
        let mut cmd = cli(args);
        cmd.current_dir(repo());
        if args[0] == "report" {
            cmd.arg(dir.path().join("report.html"));
        }
        cmd
    })
    .collect();
    commands.push({
        let mut check = cli(&["check"]);
        check.arg(&plan);
        check
    });
    for cmd in commands {
        let what = format!("{:?}", cmd.get_args().collect::<Vec<_>>());
        let (status, stderr) = with_stdout_gone(cmd).await;
        assert_eq!(status, Some(0), "{what}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{what}: {stderr}"
        );
    }

    // A gone reader of stderr is no reason to panic either: a refused plan still exits 2.
    let mut check = cli(&["check", "samples/bad/unknown-action.csv"]);
    check.current_dir(repo());
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    check.stderr(writer);
    let out = support::output(check).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn text_from_plans_reaches_the_terminal_escaped() {
    let emu = support::emulator(EmulatorConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let run = |args: &[&str], plan: Option<&Path>| {
        let mut cmd = support::cli(&emu, &db);
        cmd.args(args);
        if let Some(plan) = plan {
            cmd.arg(plan);
        }
        async move {
            let out = support::output(cmd).await;
            let text = support::text(&out);
            // Not one escape or bell reached the terminal, and no right-to-left override.
            assert!(
                !text.contains(['\u{1b}', '\u{7}', '\u{202E}']),
                "raw control characters: {text:?}"
            );
            (out.status.code(), text)
        }
    };

    // Cells in messages: the title escape and the screen clear are spelt out.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "account,action,target\nTECH\\a,\u{1b}]0;pwned\u{7},on\nTECH\\b,restore-all-vms,\u{1b}[2J\n",
    )
    .unwrap();
    let (status, text) = run(&["check"], Some(&bad)).await;
    assert_eq!(status, Some(2), "{text}");
    assert!(
        text.contains(":2: unknown action '\\u{1b}]0;pwned\\u{7}'"),
        "{text}"
    );
    assert!(
        text.contains(":3: ") && text.contains("'\\u{1b}[2J'"),
        "{text}"
    );

    // A file name and an account name, in check, apply, runs and show.
    let plan = plan_with_outside_text(dir.path());
    let shown_file = "plan\\u{1b}[2J\\u{1b}]0;pwned\\u{7}.csv";
    let (status, text) = run(&["check"], Some(&plan)).await;
    assert_eq!(status, Some(0), "{text}");
    assert!(
        text.contains(&format!("{shown_file}: 2 rows, valid")),
        "{text}"
    );
    let mut apply = vec!["apply"];
    apply.extend(support::FAST);
    let (status, text) = run(&apply, Some(&plan)).await;
    assert_eq!(status, Some(0), "{text}");
    let (_, text) = run(&["runs"], None).await;
    assert!(text.contains(shown_file), "{text}");
    let (_, text) = run(&["show", "1"], None).await;
    assert!(text.contains(shown_file), "{text}");
    assert!(
        text.contains("TECH\\\\u{202e}txt.exe add-account"),
        "{text}"
    );

    // The log keeps what the plan said, as it said it.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (file, account): (String, String) = conn
        .query_row(
            "SELECT r.plan_file, c.account FROM runs r JOIN change_log c ON c.run_id = r.id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(file, plan.display().to_string());
    assert_eq!(account, "TECH\\\u{202E}txt.exe");
}

/// `check --online` of the onboarding sample against a port nobody listens on, with the
/// password from `file`: the password is read before the connection fails.
fn check_online_with_password_file(file: &Path) -> std::process::Output {
    embatch()
        .args(["check", "samples/onboarding.csv", "--online"])
        .args(["--url", "http://127.0.0.1:9/api", "--user", "TECH\\admin"])
        .args(["--max-attempts", "1"])
        .arg("--password-file")
        .arg(file)
        .current_dir(repo())
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap()
}

#[cfg(unix)]
#[test]
fn a_password_file_is_read_up_to_4_kib_and_warned_about_when_others_may_read_it() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    let set_mode = |mode: u32| {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();
    let warning = "is open to others";

    // A private file of one line: read, no warning, and the connection is what fails.
    std::fs::write(&file, "secret\n").unwrap();
    set_mode(0o600);
    let out = check_online_with_password_file(&file);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(!stderr(&out).contains(warning), "{}", stderr(&out));

    // Readable by the group or by anyone: warned about, and still used.
    for mode in [0o640, 0o604, 0o620] {
        set_mode(mode);
        let out = check_online_with_password_file(&file);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "embatch: warning: password file {} is open to others (mode {mode:04o}); \
                 restrict it with `chmod 600`",
                file.display()
            )),
            "{}",
            stderr(&out)
        );
    }

    // A password file is a line, not a file of any size: refused past 4 KiB, before anything
    // is sent, and a device that never ends is not read forever.
    set_mode(0o600);
    std::fs::write(&file, format!("secret\n{}", "#".repeat(4096))).unwrap();
    for file in [file.as_path(), Path::new("/dev/zero")] {
        let out = check_online_with_password_file(file);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "embatch: password file {} holds more than 4096 bytes",
                file.display()
            )),
            "{}",
            stderr(&out)
        );
    }
    // 4 KiB exactly is still a password file.
    std::fs::write(&file, format!("secret\n{}", "#".repeat(4089))).unwrap();
    let out = check_online_with_password_file(&file);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

#[cfg(unix)]
#[test]
fn a_device_is_no_plan_and_is_not_read_forever() {
    for device in ["/dev/zero", "/dev/urandom"] {
        let out = embatch()
            .args(["check", device])
            .timeout(std::time::Duration::from_secs(20))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{device}: {stderr}");
        assert!(
            stderr.contains(&format!("{device}: not a regular file")),
            "{device}: {stderr}"
        );
    }
}

#[test]
fn completions_and_the_man_page_are_printed_for_installing() {
    let out = embatch().args(["completions", "bash"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(
        script.contains("_embatch") && script.contains("complete -F _embatch"),
        "{script}"
    );
    assert!(script.contains("--ca-fingerprint"), "every flag is known");
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let out = embatch().args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("embatch"),
            "{shell}"
        );
    }
    let out = embatch().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty());

    let out = embatch().arg("man").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let page = String::from_utf8(out.stdout).unwrap();
    // The header comes first, after the string definitions roff pages open with.
    let header = page
        .lines()
        .find(|l| !l.starts_with(".ie ") && !l.starts_with(".el "))
        .unwrap();
    assert!(header.starts_with(".TH embatch 1"), "{header}");
    assert!(page.contains("completions") && page.contains("Enterprise Manager"));
}
