//! The log's file: created private, its schema migrated, read-only opening.

use super::*;

fn user_version(conn: &Connection) -> i64 {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

#[test]
fn migrates_a_fresh_file_and_reopens_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let conn = open(&path, Durability::Full).unwrap();
    let expected = MIGRATIONS_DIR.dirs().count() as i64;
    assert!(expected >= 1);
    assert_eq!(user_version(&conn), expected);
    for view in ["run_summary", "change_log", "request_log", "evidence_log"] {
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'view' AND name = ?1",
                [view],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "{view}");
    }
    drop(conn);
    let again = open(&path, Durability::Full).unwrap();
    assert_eq!(user_version(&again), expected);
    let mode: String = again
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = again
        .pragma_query_value(None, "foreign_keys", |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
    let sync: i64 = again
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2, "FULL");
}

#[test]
fn concurrent_openers_of_a_new_file_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || open(&path, Durability::Full).map(drop))
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
}

#[test]
fn refuses_a_file_from_a_newer_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let conn = open(&path, Durability::Full).unwrap();
    conn.pragma_update(None, "user_version", 999).unwrap();
    drop(conn);
    let err = open(&path, Durability::Full).unwrap_err();
    assert!(
        matches!(&err, AuditError::Migrate(m) if m.contains("newer embatch")),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn creates_the_file_and_its_companions_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let conn = open(&path, Durability::Full).unwrap();
    conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    for name in ["audit.db", "audit.db-wal", "audit.db-shm"] {
        let mode = fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
}

#[cfg(unix)]
#[test]
fn tightens_an_existing_file_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    fs::write(&path, b"").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    open(&path, Durability::Full).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn refuses_a_directory_and_a_missing_parent() {
    let dir = tempfile::tempdir().unwrap();
    let err = open(dir.path(), Durability::Full).unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");

    let missing = dir.path().join("no-such-dir").join("audit.db");
    let err = open(&missing, Durability::Full).unwrap_err();
    assert!(
        err.to_string().contains("directory does not exist"),
        "{err}"
    );

    let err = open(Path::new(""), Durability::Full).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn a_reader_does_not_create_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let err = open_read_only(&path).unwrap_err();
    assert!(err.to_string().contains("no audit log"), "{err}");
    assert!(!path.exists());
}

#[test]
fn timestamps_are_rfc3339_utc_with_milliseconds() {
    let at = time::macros::datetime!(2026-11-23 11:21:03.123456 +01:00);
    assert_eq!(timestamp(at), "2026-11-23T10:21:03.123Z");
    let now = now();
    assert_eq!(now.len(), "2026-11-23T10:21:03.123Z".len());
    assert!(now.ends_with('Z'));
}
