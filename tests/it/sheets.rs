//! Plans read straight from spreadsheets: the sample workbook applied against the emulator,
//! messages named by sheet row, and every refusal of a workbook that cannot be read, with
//! nothing sent.

use std::path::{Path, PathBuf};

use embatch::emulator::{EmulatorConfig, RunningEmulator, Seed};
use rust_xlsxwriter::{ExcelDateTime, Format, Formula, Workbook};
use sha2::{Digest, Sha256};

use crate::support::{self, FAST};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The rows of a CSV file, header included, as cell texts.
fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(path)
        .unwrap();
    reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

/// `samples/onboarding.csv` as a workbook: the same cells on one sheet, row for row, so that
/// a message about row N names the same row in both.
fn onboarding_workbook() -> Vec<u8> {
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("Onboarding").unwrap();
    for (r, row) in csv_rows(&repo().join("samples/onboarding.csv"))
        .iter()
        .enumerate()
    {
        for (c, cell) in row.iter().enumerate() {
            if !cell.is_empty() {
                sheet.write_string(r as u32, c as u16, cell).unwrap();
            }
        }
    }
    book.save_to_buffer().unwrap()
}

/// Writes `samples/onboarding.xlsx` again from `samples/onboarding.csv`:
/// `cargo test --test it sheets::regenerate_the_sample_workbook -- --ignored`.
#[test]
#[ignore = "writes into samples/; run by hand after changing onboarding.csv"]
fn regenerate_the_sample_workbook() {
    std::fs::write(
        repo().join("samples/onboarding.xlsx"),
        onboarding_workbook(),
    )
    .unwrap();
}

#[test]
fn the_sample_workbook_holds_the_rows_of_the_csv_sample() {
    let csv = embatch::plan::load(&repo().join("samples/onboarding.csv")).unwrap();
    let sheet = embatch::plan::load_sheet(&repo().join("samples/onboarding.xlsx"), None).unwrap();
    assert_eq!(sheet.rows.len(), csv.rows.len());
    for (a, b) in sheet.rows.iter().zip(&csv.rows) {
        assert_eq!(a, b, "the workbook is out of date: regenerate it");
    }
}

fn seeded() -> EmulatorConfig {
    let seed = Seed::from_file(&repo().join("samples/emulator-seed.json")).unwrap();
    EmulatorConfig {
        seed: Some(seed),
        ..EmulatorConfig::default()
    }
}

async fn apply(
    emu: &RunningEmulator,
    db: &Path,
    plan: &Path,
    extra: &[&str],
) -> (Option<i32>, String) {
    let mut cmd = support::cli(emu, db);
    cmd.arg("apply")
        .arg(plan)
        .args(extra)
        .args(FAST)
        .arg("--yes");
    let out = support::output(cmd).await;
    (out.status.code(), support::text(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_workbook_applies_as_the_csv_sample_does() {
    let mut outcomes = Vec::new();
    for sample in ["onboarding.csv", "onboarding.xlsx"] {
        let emu = support::emulator(seeded()).await;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let plan = repo().join("samples").join(sample);
        let (code, out) = apply(&emu, &db, &plan, &[]).await;
        // The sample's row 19 is refused by EM (an account's last role), as documented.
        assert_eq!(code, Some(1), "{out}");
        assert!(
            out.contains(&format!("{sample}:19: TECH\\bob.keller")),
            "{out}"
        );
        // The new account's id is the emulator's to choose, so accounts are compared by what
        // they hold.
        let mut accounts: Vec<_> = support::accesses(&emu.state()).into_values().collect();
        accounts.sort();
        outcomes.push((support::outcomes(&db, 1), accounts));
        // plan_sha256 is over the file's bytes.
        let sha = hex::encode(Sha256::digest(std::fs::read(&plan).unwrap()));
        let conn = rusqlite::Connection::open(&db).unwrap();
        let recorded: String = conn
            .query_row(
                "SELECT plan_sha256 FROM run_summary WHERE run_id = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(recorded, sha);
    }
    assert_eq!(outcomes[0], outcomes[1]);
}

/// A workbook of two sheets: the first a valid plan, the second `Review` with its header on
/// row 3 and problems on rows 5 and 6.
fn two_sheets(dir: &Path) -> PathBuf {
    let mut book = Workbook::new();
    let first = book.add_worksheet();
    first.set_name("Plan").unwrap();
    for (c, h) in ["account", "action", "target", "ticket"].iter().enumerate() {
        first.write_string(0, c as u16, *h).unwrap();
    }
    first.write_string(1, 0, "TECH\\alice").unwrap();
    first.write_string(1, 1, "assign-role").unwrap();
    first.write_string(1, 2, "Portal User").unwrap();
    // A ticket typed as a number is read as the sheet shows it: 2041, not 2041.0.
    first.write_number(1, 3, 2041.0).unwrap();
    // A formula is read by its saved value.
    first.write_string(2, 0, "TECH\\bob").unwrap();
    first.write_string(2, 1, "restore-all-vms").unwrap();
    first
        .write_formula(2, 2, Formula::new("=LOWER(\"ON\")").set_result("on"))
        .unwrap();
    // A hidden row is read like any other.
    first.write_string(3, 0, "TECH\\carol").unwrap();
    first.write_string(3, 1, "assign-role").unwrap();
    first.write_string(3, 2, "Portal User").unwrap();
    first.set_row_hidden(3).unwrap();

    let review = book.add_worksheet();
    review.set_name("Review").unwrap();
    for (c, h) in ["account", "action", "target"].iter().enumerate() {
        review.write_string(2, c as u16, *h).unwrap();
    }
    review.write_string(3, 0, "TECH\\alice").unwrap();
    review.write_string(3, 1, "assign-role").unwrap();
    review.write_string(3, 2, "Portal User").unwrap();
    review.write_string(4, 0, "TECH\\bob").unwrap();
    review.write_string(4, 1, "asign-role").unwrap();
    review.write_string(4, 2, "Portal User").unwrap();
    review.write_string(5, 0, "TECH\\carol").unwrap();
    review.write_string(5, 1, "assign-role").unwrap();
    let date = ExcelDateTime::from_ymd(2026, 5, 31).unwrap();
    review
        .write_datetime_with_format(5, 2, &date, &Format::new().set_num_format("yyyy-mm-dd"))
        .unwrap();
    let path = dir.join("plan.xlsx");
    book.save(&path).unwrap();
    path
}

#[test]
fn cells_are_read_as_shown_and_rows_keep_their_sheet_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = two_sheets(dir.path());
    let plan = embatch::plan::load_sheet(&path, None).unwrap();
    assert_eq!(plan.file, path.display().to_string());
    let lines: Vec<u64> = plan.rows.iter().map(|r| r.line).collect();
    assert_eq!(lines, [2, 3, 4]);
    assert_eq!(plan.rows[0].ticket.as_deref(), Some("2041"));
    assert_eq!(
        plan.rows[1].action,
        embatch::plan::Action::RestoreAllVms(true)
    );
    let sha = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
    assert_eq!(plan.sha256, sha);
}

#[test]
fn messages_name_the_sheet_and_the_row_the_spreadsheet_shows() {
    let dir = tempfile::tempdir().unwrap();
    let path = two_sheets(dir.path());
    let out = support::bin()
        .arg("check")
        .arg(&path)
        .args(["--sheet", "Review"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", support::text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let name = format!("{}[Review]", path.display());
    assert!(
        stderr.contains(&format!(
            "{name}:5: unknown action 'asign-role' (did you mean 'assign-role'?)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{name}:6: column C (target): a date or time cell")),
        "{stderr}"
    );
    // The first sheet by default, and it is valid.
    let out = support::bin().arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 rows, valid"));
}

#[test]
fn a_formula_without_a_saved_value_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    for (c, h) in ["account", "action", "target"].iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    sheet.write_string(1, 0, "TECH\\alice").unwrap();
    sheet.write_string(1, 1, "assign-role").unwrap();
    // What LibreOffice is told to recalculate: no saved value.
    sheet.set_formula_result_default("");
    sheet.write_formula(1, 2, "=\"Portal User\"").unwrap();
    let path = dir.path().join("plan.xlsx");
    book.save(&path).unwrap();
    let out = support::bin().arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", support::text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:2: column C (target): the formula",
            path.display()
        )) && stderr.contains("has no saved value"),
        "{stderr}"
    );
}

#[test]
fn a_workbook_changed_since_its_check_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = two_sheets(dir.path());
    let checked = embatch::plan::check_sheet(&path, None).unwrap();
    assert_eq!(checked.rows, 3);
    assert_eq!(checked.rows().unwrap().count(), 3);
    // Saved again with one more row.
    let bytes = std::fs::read(&path).unwrap();
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    for (c, h) in ["account", "action", "target"].iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    sheet.write_string(1, 0, "TECH\\mallory").unwrap();
    sheet.write_string(1, 1, "assign-role").unwrap();
    sheet.write_string(1, 2, "Portal Administrator").unwrap();
    book.save(&path).unwrap();
    assert_ne!(std::fs::read(&path).unwrap(), bytes);
    let last = checked.rows().unwrap().last().unwrap();
    let err = last.unwrap_err().to_string();
    assert!(
        err.contains("the plan changed since it was checked"),
        "{err}"
    );
}

/// Every refusal of a workbook that cannot be read: exit 2, a message naming the file, nothing
/// sent, no run recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_workbooks_are_refused_and_nothing_is_sent() {
    let emu = support::emulator(seeded()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let good = std::fs::read(repo().join("samples/onboarding.xlsx")).unwrap();
    let cases: Vec<(&str, Vec<u8>, Vec<&str>, &str)> = vec![
        (
            "renamed.xlsx",
            std::fs::read(repo().join("samples/onboarding.csv")).unwrap(),
            vec![],
            "its content is not a zip archive",
        ),
        (
            "truncated.xlsx",
            good[..good.len() / 2].to_vec(),
            vec![],
            "corrupt or truncated",
        ),
        (
            "corrupt.xlsx",
            {
                let mut b = good.clone();
                for byte in &mut b[200..400] {
                    *byte ^= 0x5A;
                }
                b
            },
            vec![],
            "corrupt or truncated",
        ),
        (
            "encrypted.xlsx",
            b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1\0\0\0\0".to_vec(),
            vec![],
            "encrypted (password-protected)",
        ),
        (
            "workbook.ods",
            good.clone(),
            vec![],
            "cannot read the spreadsheet as .ods",
        ),
        (
            "sheets.xlsx",
            good.clone(),
            vec!["--sheet", "Nope"],
            "the workbook has no sheet named 'Nope'; its sheets: 'Onboarding'",
        ),
        (
            "plan.csv",
            std::fs::read(repo().join("samples/onboarding.csv")).unwrap(),
            vec!["--sheet", "Onboarding"],
            "--sheet is for spreadsheets",
        ),
    ];
    for (name, bytes, extra, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        for command in ["check", "apply"] {
            let mut cmd = support::cli(&emu, &db);
            cmd.arg(command).arg(&path).args(&extra);
            cmd.arg(if command == "check" {
                "--online"
            } else {
                "--yes"
            });
            let out = support::output(cmd).await;
            assert_eq!(
                out.status.code(),
                Some(2),
                "{name}: {}",
                support::text(&out)
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(&path.display().to_string()),
                "{name}: {stderr}"
            );
            assert!(stderr.contains(expected), "{name}: {stderr}");
        }
    }
    assert!(emu.requests().is_empty(), "nothing was sent");
    assert!(!db.exists(), "nothing was recorded");
}

/// Writes a plan of `EMBATCH_SHEET_ROWS` rows (1,000,000 by default) as an .xlsx to
/// `EMBATCH_SHEET_OUT`, for measuring `embatch check` on it (BENCHMARKS.md):
/// `EMBATCH_SHEET_OUT=/tmp/big.xlsx cargo test --release --test it sheets::write_a_large_sheet -- --ignored`
#[test]
#[ignore = "writes a large workbook for the memory benchmark"]
fn write_a_large_sheet() {
    let out = std::env::var("EMBATCH_SHEET_OUT").unwrap_or_else(|_| "/tmp/embatch-1m.xlsx".into());
    let rows: u32 = std::env::var("EMBATCH_SHEET_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut book = Workbook::new();
    // Shared strings, as Excel saves them, with rows written out as they are done.
    let sheet = book.add_worksheet_with_low_memory().unwrap();
    for (c, h) in ["account", "action", "target", "ticket", "comment"]
        .iter()
        .enumerate()
    {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    for i in 1..=rows {
        sheet
            .write_string(i, 0, format!("TECH\\user{i:07}"))
            .unwrap();
        sheet.write_string(i, 1, "assign-role").unwrap();
        sheet.write_string(i, 2, "Portal User").unwrap();
        sheet.write_number(i, 3, f64::from(2000 + i % 100)).unwrap();
        sheet.write_string(i, 4, "access review Q2").unwrap();
    }
    book.save(&out).unwrap();
}
