//! Opening the audit log file: checking the path, creating it with mode 0600, setting the
//! connection's pragmas and migrating the schema from the SQL files embedded from `migrations/`.

use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use include_dir::{Dir, include_dir};
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, TransactionBehavior};
use rusqlite_migration::{HookError, MigrationDefinitionError, Migrations, MigrationsBuilder};
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use super::AuditError;

/// The numbered migrations, embedded in the binary (build.rs reruns the build when they change).
static MIGRATIONS_DIR: Dir = include_dir!("$CARGO_MANIFEST_DIR/migrations");

/// How long a connection waits for another one holding the write lock (another embatch run on
/// the same file, or a migration) before giving up; the runner's read-only connections
/// (`rows.rs`) wait on a checkpoint as long.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-23T10:21:03.123Z`; fixed width, so the
/// timestamps sort as text.
const TIMESTAMP: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// The page size of a new log, in bytes (SQLite's default is 4096). Each commit writes every page
/// it touched to the WAL, and a log that only appends touches the last page of each of its tables
/// and indexes in every commit, however few records it holds: halving the page halved the bytes
/// written per request (3,646 against 5,260 at 4096, BENCHMARKS.md) for 6 % more file. A log
/// created with another page size (by an older embatch) keeps it.
const PAGE_SIZE: i64 = 2048;

/// How durable each commit is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// `synchronous=FULL`: a commit survives power loss.
    Full,
    /// `synchronous=NORMAL`: a commit survives a crash of the process but may be lost with
    /// power; only for measuring what FULL costs.
    #[cfg_attr(not(test), allow(dead_code))]
    Normal,
}

/// The current time as the log writes it.
pub(crate) fn now() -> String {
    timestamp(OffsetDateTime::now_utc())
}

/// `at` as the log writes it.
pub(crate) fn timestamp(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(TIMESTAMP)
        .expect("a UTC date-time always formats with a fixed description")
}

/// Converts a count or index for SQLite, which stores signed 64-bit integers.
pub(crate) fn int(v: u64) -> rusqlite::Result<i64> {
    i64::try_from(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Opens the log at `path` (creating it if `create` allows), sets the pragmas and migrates the
/// schema to the newest version.
pub(crate) fn open(path: &Path, durability: Durability) -> Result<Connection, AuditError> {
    open_migrated(path, durability).map(|(conn, _)| conn)
}

/// Like [`open`], also answering the schema version the log had before it was migrated.
fn open_migrated(path: &Path, durability: Durability) -> Result<(Connection, i64), AuditError> {
    prepare_file(path)?;
    // Switching a new file to WAL takes an exclusive lock for which SQLite does not always wait
    // on its busy handler, so processes opening a new log at the same moment can see "database
    // is locked" once; they try again for as long as the busy timeout allows.
    let started = std::time::Instant::now();
    loop {
        match open_once(path, durability) {
            Err(e) if is_locked(&e) && started.elapsed() < BUSY_TIMEOUT => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// What `embatch migrate` did to a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migrated {
    /// The schema version the log had (0 for an empty file).
    pub from: i64,
    /// The schema version it has now.
    pub to: i64,
    /// The chain of schema 01 it carried over, if it held one.
    pub carried_over: Option<CarriedOver>,
}

/// The chain of schema 01 a migration carried over, as its `migration` record holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarriedOver {
    /// Its record count.
    pub records: i64,
    /// Its head hash: the last one `verify --anchor` could print before the migration.
    pub head: String,
}

/// Brings the existing log at `path` to the newest schema, as any command that writes to it
/// would, and tells what that did. A log of schema 01 that does not verify is refused and left
/// as it was.
pub fn migrate_log(path: &Path) -> Result<Migrated, AuditError> {
    // Unlike a run, which makes its log, this works on a log that must be there already.
    if !path.is_file() {
        return Err(AuditError::Io {
            path: path.display().to_string(),
            source: io::Error::new(io::ErrorKind::NotFound, "no audit log here"),
        });
    }
    let (conn, from) = open_migrated(path, Durability::Full)?;
    let to = schema_version(&conn)?;
    let carried_over = if from < to {
        conn.query_row(
            "SELECT legacy_records, legacy_head FROM migration ORDER BY seq DESC LIMIT 1",
            [],
            |r| {
                Ok(CarriedOver {
                    records: r.get(0)?,
                    head: r.get(1)?,
                })
            },
        )
        .optional()?
    } else {
        None
    };
    Ok(Migrated {
        from,
        to,
        carried_over,
    })
}

/// Opens the log at `path` to read it only: the file must exist, and nothing is created,
/// migrated or changed (auditors verify copies on read-only shares, and a check must not alter
/// its evidence).
///
/// A log in WAL mode needs its `-shm` file to be read. Where the file's directory cannot take
/// one (a read-only mount, a share the reader may not write to), the log is read as immutable
/// instead, which is safe only while nobody writes it: so only when no `-wal` file is beside it,
/// that is, when every writer has closed it and its content is all in the main file.
pub(crate) fn open_read_only(path: &Path) -> Result<Connection, AuditError> {
    open_read_only_accepting(path, false)
}

/// Like [`open_read_only`], also taking a log of schema 01 as it is, for `verify`, which knows
/// how to check that schema's chain and tables: so an old log can be verified where it cannot be
/// migrated (on a read-only share, or kept unchanged as evidence).
pub(crate) fn open_read_only_to_verify(path: &Path) -> Result<Connection, AuditError> {
    open_read_only_accepting(path, true)
}

/// Opens the log at `path` read-only (see [`open_read_only`]), at the newest schema, or also at
/// schema 01 when `schema_01` allows.
fn open_read_only_accepting(path: &Path, schema_01: bool) -> Result<Connection, AuditError> {
    let io_error = |source: io::Error| AuditError::Io {
        path: path.display().to_string(),
        source,
    };
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            return Err(io_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "is not a regular file",
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(io_error(io::Error::new(
                io::ErrorKind::NotFound,
                "no audit log here",
            )));
        }
        Err(e) => return Err(io_error(e)),
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match open_probed(path, flags) {
        Ok(conn) => conn,
        Err(e) if cannot_open(&e) && !companion(path, "-wal").exists() => {
            tracing::debug!("{}: read as immutable: {e}", path.display());
            let absolute = std::path::absolute(path).map_err(io_error)?;
            let mut uri = url::Url::from_file_path(&absolute)
                .map_err(|()| io_error(io::Error::other("cannot be named as a file URI")))?;
            uri.set_query(Some("immutable=1"));
            open_probed(Path::new(uri.as_str()), flags | OpenFlags::SQLITE_OPEN_URI)?
        }
        Err(e) => return Err(e.into()),
    };
    match migrations()?.pending_migrations(&conn) {
        Ok(0) => Ok(conn),
        Ok(n) if n < 0 => Err(AuditError::Migrate(
            "the file was written by a newer embatch; use that version to read it".into(),
        )),
        Ok(_) => match schema_version(&conn)? {
            1 if schema_01 => Ok(conn),
            version => Err(AuditError::OlderSchema {
                path: path.display().to_string(),
                version,
            }),
        },
        Err(e) => Err(AuditError::Migrate(e.to_string())),
    }
}

/// Opens `path` with `flags` and reads the schema once, which is when SQLite opens the `-shm`
/// and `-wal` files a WAL-mode log needs (and fails if it cannot).
fn open_probed(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })?;
    Ok(conn)
}

/// Whether SQLite could not open the file or its companions for want of write access.
fn cannot_open(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _) if matches!(
            f.code,
            rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly
        )
    )
}

/// The `-wal` or `-shm` file beside the log at `path`.
pub(crate) fn companion(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    std::path::PathBuf::from(name)
}

/// Whether `e` is SQLite saying another connection holds the lock.
fn is_locked(e: &AuditError) -> bool {
    match e {
        AuditError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => matches!(
            f.code,
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
        ),
        AuditError::Migrate(m) => m.contains("database is locked"),
        _ => false,
    }
}

/// One attempt at opening the prepared file, setting the pragmas and migrating; answers the
/// connection and the schema version the log had before.
fn open_once(path: &Path, durability: Durability) -> Result<(Connection, i64), AuditError> {
    // No SQLITE_OPEN_CREATE: the file exists now with the right mode, and if it vanished in
    // between, SQLite must not recreate it with the default one. No SQLITE_OPEN_URI either, so a
    // file named `file:...` is a file.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let found = schema_version(&conn)?;
    if found == 1 {
        // Before the journal mode is set, which rewrites the file's header: a log refused here
        // is left byte for byte as it was.
        refuse_unverified(&conn, path)?;
    }
    if found == 0 {
        // A new log: see PAGE_SIZE. SQLite takes the page size only before the first table.
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    }
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // WAL is what lets `runs` and `show` read while a run writes; a file system that cannot
        // hold it (some network file systems) still works, just with readers and the writer
        // waiting on each other.
        tracing::warn!(
            "{}: the audit log is in {mode} journal mode, not WAL",
            path.display()
        );
    }
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrate(&mut conn)?;
    Ok((conn, found))
}

/// The embedded migrations.
fn migrations() -> Result<Migrations<'static>, AuditError> {
    let migrations = MigrationsBuilder::from_directory(&MIGRATIONS_DIR)
        .map_err(|e| AuditError::Migrate(e.to_string()))?
        // Schema 02 carries schema 01's facts over into the chain of facts, in the migration's
        // own transaction: all of it, or nothing.
        .edit(2, |m| {
            m.set_up_hook(|tx: &rusqlite::Transaction<'_>| {
                super::migrate::carry_over(tx).map_err(HookError::Hook)
            })
        })
        .finalize();
    Ok(migrations)
}

/// Brings a new, empty database (one in memory, say) to the newest schema: the schema every log
/// is compared with.
pub(crate) fn migrate_new(conn: &mut Connection) -> Result<(), AuditError> {
    migrations()?
        .to_latest(conn)
        .map_err(|e| AuditError::Migrate(e.to_string()))
}

/// The schema version of the open log (0 for a new file).
fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Refuses the log of schema 01 at `path` that does not verify: carried over, its damage would
/// be vouched for by the new chain.
fn refuse_unverified(conn: &Connection, path: &Path) -> Result<(), AuditError> {
    let verification = super::verify::verify_connection(conn, None, None, None)?;
    if verification.holds() {
        return Ok(());
    }
    let count = verification.problem_count;
    let first = verification
        .problems
        .first()
        .map_or_else(String::new, |p| format!("; the first: {p}"));
    Err(AuditError::Migrate(format!(
        "the log was written by an older embatch and fails verification ({count} problem{}\
         {first}); it was not migrated, and is as it was. `embatch verify --db {}` lists every \
         problem",
        if count == 1 { "" } else { "s" },
        path.display()
    )))
}

/// Brings the schema to the newest version (a log of schema 01 has been verified first, by
/// [`open_once`]).
fn migrate(conn: &mut Connection) -> Result<(), AuditError> {
    let migrations = migrations()?;
    // An immediate transaction takes the write lock before the schema version is read again, so
    // two processes opening a new file at once queue up instead of failing on a stale read.
    conn.set_transaction_behavior(TransactionBehavior::Immediate);
    let result = migrations.to_latest(conn);
    conn.set_transaction_behavior(TransactionBehavior::Deferred);
    match result {
        Ok(()) => Ok(()),
        Err(rusqlite_migration::Error::MigrationDefinition(
            MigrationDefinitionError::DatabaseTooFarAhead,
        )) => Err(AuditError::Migrate(
            "the file was written by a newer embatch; use that version to read or write it".into(),
        )),
        // The library reads the schema version before its transaction starts, so a process that
        // lost the race to migrate a new file fails here on tables that now exist; it is fine if
        // the winner left the schema up to date.
        Err(e) => match migrations.pending_migrations(conn) {
            Ok(0) => Ok(()),
            _ => Err(AuditError::Migrate(e.to_string())),
        },
    }
}

/// Checks that `path` names a regular file (creating it with mode 0600 if allowed), and that the
/// file and any `-wal`/`-shm` companions are not readable by others.
fn prepare_file(path: &Path) -> Result<(), AuditError> {
    let io_error = |source: io::Error| AuditError::Io {
        path: path.display().to_string(),
        source,
    };
    if path.as_os_str().is_empty() {
        return Err(io_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the audit log path is empty",
        )));
    }
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(io_error(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory, not an audit log file",
            )));
        }
        Ok(meta) if !meta.is_file() => {
            return Err(io_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "is not a regular file",
            )));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_file(path).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => io_error(io::Error::new(
                    io::ErrorKind::NotFound,
                    "cannot create the audit log: its directory does not exist",
                )),
                _ => io_error(e),
            })?;
        }
        Err(e) => return Err(io_error(e)),
    }
    restrict_mode(path)
}

/// Creates an empty file with mode 0600 (SQLite treats an empty file as a new database). A file
/// created meanwhile by someone else is left alone.
fn create_file(path: &Path) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Takes group and other permissions away from the log and its `-wal`/`-shm` files. SQLite
/// creates the companions with the main file's mode, so a 0600 main file keeps them private; a
/// file made by other means (e.g. the sqlite3 shell under umask 022) is tightened here. A file
/// whose mode cannot be changed (it belongs to someone else) is used as it is, with a warning:
/// its owner chose its mode.
#[cfg(unix)]
fn restrict_mode(path: &Path) -> Result<(), AuditError> {
    use std::os::unix::fs::PermissionsExt;

    let companions = ["-wal", "-shm"].map(|suffix| companion(path, suffix));
    for file in std::iter::once(path).chain(companions.iter().map(|p| p.as_path())) {
        let meta = match fs::metadata(file) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(AuditError::Io {
                    path: file.display().to_string(),
                    source,
                });
            }
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            continue;
        }
        match fs::set_permissions(file, fs::Permissions::from_mode(mode & 0o700)) {
            Ok(()) => tracing::warn!(
                "{}: was readable by others (mode {mode:o}); restricted to its owner",
                file.display()
            ),
            Err(e) => tracing::warn!(
                "{}: is readable by others (mode {mode:o}) and could not be restricted: {e}",
                file.display()
            ),
        }
    }
    Ok(())
}

/// Other systems have no Unix mode to restrict.
#[cfg(not(unix))]
fn restrict_mode(_path: &Path) -> Result<(), AuditError> {
    Ok(())
}

#[cfg(test)]
mod tests;
