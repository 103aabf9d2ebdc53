//! The entry points of the fuzz targets under `fuzz/`: each takes arbitrary bytes and must
//! neither panic nor overflow its stack, whatever they hold. `cargo fuzz` drives them on nightly;
//! `cargo test` replays the checked-in corpora through these same functions on stable
//! (`tests/it/fuzz_corpus.rs`), so a crash once found and fixed stays fixed.

use std::io::BufReader;
use std::path::Path;

use crate::em::{Wire, decode_everything};
use crate::plan::{self, Actions, MAX_COLUMNS, MAX_PROBLEMS, PlanErrors};

/// The XML wire format: `data`, read as the client reads an answer's bytes (UTF-8, lossily),
/// through every XML decoder and the error-body path.
pub fn xml(data: &[u8]) {
    decode_everything(Wire::Xml, &String::from_utf8_lossy(data));
}

/// The JSON wire format: `data`, read as the client reads an answer's bytes (UTF-8, lossily),
/// through every JSON decoder and the error-body path.
pub fn json(data: &[u8]) {
    decode_everything(Wire::Json, &String::from_utf8_lossy(data));
}

/// The plan reader on `data`, through each of its ways in, asserting that they agree.
///
/// - [`plan::parse`] reads the plan whole and keeps its rows.
/// - The streaming check ([`plan::check`]'s pass, which keeps no rows) accepts exactly what
///   `parse` accepts, with the same summary, or reports the same problems. It reads through a
///   buffer of three bytes, so that line breaks, the BOM and UTF-8 sequences fall across reads.
/// - The rows of an accepted plan, read again as `apply` reads them (through a buffer of five
///   bytes), are `parse`'s rows, and end without a problem.
/// - Problems come in line order, name no line the data does not have, stop near
///   [`MAX_PROBLEMS`], and show no control character: cells are escaped when displayed.
pub fn plan(data: &[u8]) {
    const FILE: &str = "fuzz.csv";
    let parsed = plan::parse(FILE, data);
    let chunked = |size| BufReader::with_capacity(size, data);
    let checked = plan::check_reader(FILE.to_string(), Path::new(FILE), chunked(3));
    match (&parsed, checked) {
        (Ok(plan), Ok(file)) => {
            assert_eq!(file.rows, plan.rows.len() as u64);
            assert_eq!(file.sha256, plan.sha256);
            let mut actions = Actions::default();
            for row in &plan.rows {
                actions.count(&row.action);
            }
            assert_eq!(file.actions, actions);
            let again: Result<Vec<_>, PlanErrors> = file.rows_from(chunked(5)).collect();
            assert_eq!(again.as_ref(), Ok(&plan.rows), "rows read again differ");
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, &b, "check and parse report differently");
            check_problems(data, a);
        }
        (a, b) => panic!("parse {a:?} but check {b:?}"),
    }
}

/// The invariants of the problems a plan reading reports.
fn check_problems(data: &[u8], errors: &PlanErrors) {
    assert!(!errors.0.is_empty(), "refused without a problem");
    // The row that passes the count can add a problem per column, and a few more.
    let most = MAX_PROBLEMS + MAX_COLUMNS + 8;
    assert!(errors.0.len() <= most, "{} problems", errors.0.len());
    let lines = physical_lines(data);
    let mut previous = 0;
    for e in &errors.0 {
        assert!(e.line >= previous, "problems out of line order: {errors:?}");
        previous = e.line;
        assert!(e.line <= lines, "line {} of {lines}: {e:?}", e.line);
        let shown = e.to_string();
        assert!(
            !shown.chars().any(|c| c.is_control()
                || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')),
            "a control character is shown: {shown:?}"
        );
    }
}

/// The number of physical lines in `data` as the plan reader counts them: `\n`, `\r\n` and a
/// lone `\r` each end one, and text after the last one is a line too.
fn physical_lines(data: &[u8]) -> u64 {
    let mut lines = 0;
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' if data.get(i + 1) == Some(&b'\n') => {
                lines += 1;
                i += 1;
            }
            b'\n' | b'\r' => lines += 1,
            _ => {}
        }
        i += 1;
    }
    if data.last().is_some_and(|&b| b != b'\n' && b != b'\r') {
        lines += 1;
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physical_lines_are_counted_as_the_plan_reader_counts_them() {
        assert_eq!(physical_lines(b""), 0);
        assert_eq!(physical_lines(b"a"), 1);
        assert_eq!(physical_lines(b"a\r\nb\rc\n\n"), 4);
        assert_eq!(physical_lines(b"\r\r\n"), 2);
    }

    #[test]
    fn the_samples_hold_every_invariant() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
        for dir in [root.clone(), root.join("bad")] {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "csv") {
                    plan(&std::fs::read(&path).unwrap());
                }
            }
        }
    }
}
