//! A log written by embatch 0.1.0 (schema 01, `tests/fixtures/schema01.db`): verified as it is
//! without being changed, refused by the other commands that only read it with the way to
//! migrate it, and migrated by `embatch migrate`, after which the head hashes kept from before
//! still verify; and an old log that was edited, which `migrate` refuses and leaves as it was.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support;

/// The head `verify --anchor` printed after run 3 (record 529), and at the end (record 714).
const AFTER_RUN_3: &str = "e2594a85ee489bc76ad29171d33bd9d054e7b6070762909e26ef1cf8cd51f372";
const HEAD: &str = "d44da2cc4d9dcd97d7a6ddb535a8c36ef2aa75caded1680720678c1d35f1085a";

/// A copy of the fixture, to work on.
fn old_log(dir: &Path) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema01.db");
    let path = dir.join("old.db");
    std::fs::copy(&fixture, &path).expect("tests/fixtures/schema01.db is there");
    path
}

/// Runs `embatch ARGS --db DB`.
fn embatch(db: &Path, args: &[&str]) -> Output {
    support::bin()
        .args(args)
        .arg("--db")
        .arg(db)
        .output()
        .expect("the binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn user_version(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

#[test]
fn an_old_log_is_verified_as_it_is_and_the_other_readers_say_how_to_migrate_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = old_log(dir.path());
    let before = std::fs::read(&db).unwrap();

    let out = embatch(&db, &["verify", "--expect", AFTER_RUN_3]);
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
    assert_eq!(
        stdout(&out),
        format!("anchor {AFTER_RUN_3}: found at record #529\n714/714 records valid\n")
    );
    let out = embatch(&db, &["verify", "--anchor"]);
    assert_eq!(stdout(&out), format!("{HEAD}\n"), "{}", support::text(&out));

    for args in [
        &["runs"][..],
        &["show", "1"],
        &["export", "--format", "csv"],
        &["report", "1", "-o", "report.html"],
    ] {
        let out = embatch(&db, args);
        let all = support::text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {all}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("written by an older embatch"), "{all}");
        assert!(
            stderr.contains(&format!("embatch migrate --db {}", db.display())),
            "{all}"
        );
        assert!(
            stderr.contains(&format!(
                "cp {} COPY && embatch migrate --db COPY",
                db.display()
            )),
            "{all}"
        );
    }
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "read only: not a byte changed"
    );
    assert_eq!(user_version(&db), 1);
}

#[test]
fn migrate_carries_the_old_chain_over_and_the_old_heads_still_verify() {
    let dir = tempfile::tempdir().unwrap();
    let db = old_log(dir.path());

    let out = embatch(&db, &["migrate"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
    assert!(
        stdout(&out).starts_with(&format!(
            "{}: migrated from schema 1 to 2: 714 records of the old chain carried over, head \
             {HEAD}\n",
            db.display()
        )),
        "{}",
        support::text(&out)
    );
    assert_eq!(user_version(&db), 2);
    let out = embatch(&db, &["migrate"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
    assert_eq!(
        stdout(&out),
        format!("{}: already up to date (schema 2)\n", db.display())
    );

    for (hash, at) in [(AFTER_RUN_3, 529), (HEAD, 714)] {
        let out = embatch(&db, &["verify", "--expect", hash]);
        assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
        assert!(
            stdout(&out).starts_with(&format!(
                "anchor {hash}: found at schema 01 evidence #{at} (before the log was migrated)\n"
            )),
            "{}",
            support::text(&out)
        );
    }
    let out = embatch(&db, &["verify", "--expect", HEAD, "--output", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["anchor"]["carried_over"], true, "{json}");
    assert_eq!(json["anchor"]["found_at"], 714, "{json}");

    // The runs read back as they were recorded.
    let out = embatch(&db, &["runs"]);
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
    let runs: Vec<Vec<String>> = stdout(&out)
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().take(3).map(str::to_string).collect())
        .collect();
    assert_eq!(
        runs,
        [
            ["4", "undo", "failed"],
            ["3", "snapshot", "completed"],
            ["2", "apply", "completed"],
            ["1", "apply", "failed"],
        ],
        "{}",
        support::text(&out)
    );
}

#[test]
fn an_old_log_that_was_edited_is_refused_by_migrate_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let db = old_log(dir.path());
    // Row 7 of run 1 was a no-op (rows 0 to 6 were applied, so setting one of them changes
    // nothing).
    let changed = rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE plan_rows SET outcome = 'applied' WHERE run_id = 1 AND row_no = 7",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let before = std::fs::read(&db).unwrap();

    let out = embatch(&db, &["migrate"]);
    let all = support::text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fails verification (1 problem; "), "{all}");
    assert!(
        stderr.contains("run 1 row 7 (plan line 9): modified"),
        "{all}"
    );
    assert!(stderr.contains("it was not migrated"), "{all}");
    assert!(stdout(&out).is_empty(), "{all}");
    assert_eq!(std::fs::read(&db).unwrap(), before, "not a byte changed");
    assert_eq!(user_version(&db), 1);

    // `verify` names the edit too, on the log as it is.
    let out = embatch(&db, &["verify"]);
    assert_eq!(out.status.code(), Some(5), "{}", support::text(&out));
    assert_eq!(
        stdout(&out).lines().next(),
        Some("run 1 row 7 (plan line 9): modified")
    );
}
