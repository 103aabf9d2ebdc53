//! The schema as embatch made it: every table, index, view and trigger of the log compared with
//! those of a new log migrated in memory, so that a view redefined to show something else, a
//! trigger dropped or a table added is named too. The statistics tables SQLite's `ANALYZE` makes
//! are left out (they change no fact), and so is the detail of the old chain a migrated log keeps
//! (`legacy_evidence` and its triggers), which the walk of that chain checks.

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::{Damage, Problems};
use crate::audit::AuditError;

/// Each object of the schema: (type, name) → its SQL.
fn objects(conn: &Connection) -> rusqlite::Result<BTreeMap<(String, String), Option<String>>> {
    let mut stmt = conn.prepare(
        "SELECT type, name, sql FROM sqlite_schema
         WHERE name NOT LIKE 'sqlite\\_stat%' ESCAPE '\\'",
    )?;
    let rows = stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
    rows.collect()
}

/// Whether `name` belongs to the old chain a migrated log keeps.
fn carried_over(name: &str) -> bool {
    name == "legacy_evidence"
        || name.starts_with("legacy_evidence_")
        || name.starts_with("sqlite_autoindex_legacy_evidence")
}

/// Compares the schema of `conn` with the one embatch makes.
pub(super) fn compare(conn: &Connection, problems: &mut Problems) -> Result<(), AuditError> {
    let mut fresh = Connection::open_in_memory()?;
    crate::audit::db::migrate_new(&mut fresh)?;
    let expected = objects(&fresh)?;
    let found = objects(conn)?;
    for ((kind, name), sql) in &expected {
        match found.get(&(kind.clone(), name.clone())) {
            None => problems.schema(format!("{kind} {name}"), Damage::Deleted),
            Some(stored) if stored != sql => {
                problems.schema(format!("{kind} {name}"), Damage::Modified)
            }
            Some(_) => {}
        }
    }
    for (kind, name) in found.keys() {
        if !expected.contains_key(&(kind.clone(), name.clone())) && !carried_over(name) {
            problems.schema(format!("{kind} {name}"), Damage::Inserted);
        }
    }
    Ok(())
}
