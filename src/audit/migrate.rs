//! The move of a schema 01 log to the chain of facts (schema 02), run as the hook of migration
//! 02 inside its transaction, after its SQL has renamed the old tables `legacy_*`.
//!
//! The old log must verify first (`db.rs` refuses to migrate one that does not). Its evidence
//! records are then read in order, and each becomes the fact it records: a run's insert its
//! start, a row's insert the planned row, a row's update its outcome (or its account id), an
//! attempt's insert the request and its update the result, an end the end, a resume the resume,
//! a checkpoint a checkpoint of the new chain. The update a resume made to its run is not a fact
//! of its own: the resume record holds the same writer. A `migration` record then holds the old
//! chain's head and record count, and closes the part carried over; the old evidence stays as it
//! was, in `legacy_evidence`, so a head hash taken from it is still found by `verify --expect`.
//! The old tables, whose content the evidence holds, are dropped.
//!
//! Request ids change: a request's id is now its record's number.

use std::collections::HashMap;

use rusqlite::Transaction;
use rusqlite::types::Value;

use super::canon::content_fields;
use super::chain::{
    CHECKPOINTS, ChainHead, FactTable, MIGRATION, PLANNED_ROWS, REQUEST_RESULTS, REQUESTS,
    ROW_ACCOUNTS, ROW_OUTCOMES, RUN_ENDS, RUN_RESUMES, RUN_STARTS,
};
use super::db;
use super::write::PriorStates;

/// Carries the facts of `legacy_evidence` over into the chain of facts (see the module docs).
pub(super) fn carry_over(tx: &Transaction<'_>) -> Result<(), String> {
    let legacy: Option<(i64, String)> = tx
        .query_row(
            "SELECT count(*), (SELECT hash FROM legacy_evidence ORDER BY seq DESC LIMIT 1)
             FROM legacy_evidence",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?)),
        )
        .map(|(count, head)| head.map(|h| (count, h)))
        .map_err(sql("read the old chain"))?;
    let Some((count, head)) = legacy else {
        // A new log, or one that never held a run: nothing to carry over or to keep.
        tx.execute_batch("DROP TABLE legacy_evidence;")
            .map_err(sql("drop the old chain"))?;
        return drop_old_tables(tx);
    };
    let mut chain = ChainHead::read(tx).map_err(sql("read the head of the chain"))?;
    let mut states = PriorStates::default();
    let mut requests: HashMap<i64, i64> = HashMap::new();
    let mut stmt = tx
        .prepare("SELECT seq, kind, run_id, ref, content FROM legacy_evidence ORDER BY seq")
        .map_err(sql("read the old chain"))?;
    let mut rows = stmt.query([]).map_err(sql("read the old chain"))?;
    while let Some(row) = rows.next().map_err(sql("read the old chain"))? {
        let seq: i64 = row.get(0).map_err(sql("read the old chain"))?;
        let kind: String = row.get(1).map_err(sql("read the old chain"))?;
        let run_id: i64 = row.get(2).map_err(sql("read the old chain"))?;
        let reference: Option<i64> = row.get(3).map_err(sql("read the old chain"))?;
        let content: String = row.get(4).map_err(sql("read the old chain"))?;
        let fields = Fields::parse(&content)
            .ok_or_else(|| format!("old record #{seq}: its content is not a flat JSON object"))?;
        let context = |e: rusqlite::Error| format!("carry over old record #{seq}: {e}");
        let append = |chain: &mut ChainHead, table: &FactTable, values: Vec<Value>| {
            let bound: Vec<&dyn rusqlite::ToSql> =
                values.iter().map(|v| v as &dyn rusqlite::ToSql).collect();
            chain.append(tx, table, &bound).map_err(context)
        };
        let row_no = || reference.map_or(Value::Null, Value::Integer);
        match kind.as_str() {
            "run" if fields.has("id") => {
                append(&mut chain, &RUN_STARTS, fields.columns(&RUN_STARTS))?;
            }
            // A resume's update of its run: the resume record holds the same facts.
            "run" => {}
            "end" => {
                let mut values = fields.columns(&RUN_ENDS);
                values[RUN_ENDS.column_index("run_id")] = Value::Integer(run_id);
                append(&mut chain, &RUN_ENDS, values)?;
            }
            "resume" => {
                append(&mut chain, &RUN_RESUMES, fields.columns(&RUN_RESUMES))?;
            }
            "checkpoint" => {
                let values = vec![
                    Value::Text(chain.hash().to_string()),
                    Value::Null,
                    Value::Integer(chain.seq()),
                    Value::Integer(run_id),
                    Value::Null,
                ];
                append(&mut chain, &CHECKPOINTS, values)?;
            }
            "row" if fields.has("account") => {
                append(&mut chain, &PLANNED_ROWS, fields.columns(&PLANNED_ROWS))?;
            }
            "row" if fields.has("outcome") => {
                let mut values = fields.columns(&ROW_OUTCOMES);
                let (state, patch) = match fields.get("prior_state") {
                    Value::Text(state) => {
                        let prior = states
                            .record(tx, &mut chain, run_id, &state)
                            .map_err(context)?;
                        (
                            Value::Integer(prior.state),
                            prior.patch.map_or(Value::Null, Value::Text),
                        )
                    }
                    _ => (Value::Null, Value::Null),
                };
                values[ROW_OUTCOMES.column_index("prior_state")] = state;
                values[ROW_OUTCOMES.column_index("prior_patch")] = patch;
                values[ROW_OUTCOMES.column_index("run_id")] = Value::Integer(run_id);
                values[ROW_OUTCOMES.column_index("row_no")] = row_no();
                append(&mut chain, &ROW_OUTCOMES, values)?;
            }
            "row" if fields.has("account_id") => {
                let mut values = fields.columns(&ROW_ACCOUNTS);
                values[ROW_ACCOUNTS.column_index("run_id")] = Value::Integer(run_id);
                values[ROW_ACCOUNTS.column_index("row_no")] = row_no();
                append(&mut chain, &ROW_ACCOUNTS, values)?;
            }
            "attempt" if fields.has("method") => {
                let id = append(&mut chain, &REQUESTS, fields.columns(&REQUESTS))?;
                if let Some(old) = reference {
                    requests.insert(old, id);
                }
            }
            "attempt" => {
                let request = reference
                    .and_then(|old| requests.get(&old))
                    .copied()
                    .ok_or_else(|| format!("old record #{seq}: the end of an unknown request"))?;
                let mut values = fields.columns(&REQUEST_RESULTS);
                let duration_us = match fields.get("duration_ms") {
                    Value::Real(ms) => (ms * 1000.0).round() as i64,
                    Value::Integer(ms) => ms.saturating_mul(1000),
                    _ => 0,
                };
                values[REQUEST_RESULTS.column_index("duration_us")] = Value::Integer(duration_us);
                values[REQUEST_RESULTS.column_index("request")] = Value::Integer(request);
                values[REQUEST_RESULTS.column_index("run_id")] = Value::Integer(run_id);
                append(&mut chain, &REQUEST_RESULTS, values)?;
            }
            other => return Err(format!("old record #{seq}: unknown kind {other:?}")),
        }
    }
    drop(rows);
    drop(stmt);
    let values: [&dyn rusqlite::ToSql; 3] = [&head, &count, &db::now()];
    chain
        .append(tx, &MIGRATION, &values)
        .map_err(sql("record the migration"))?;
    drop_old_tables(tx)
}

/// Drops the old tables, whose content the old chain holds.
fn drop_old_tables(tx: &Transaction<'_>) -> Result<(), String> {
    tx.execute_batch(
        "DROP TABLE legacy_attempts;
         DROP TABLE legacy_run_resumes;
         DROP TABLE legacy_plan_rows;
         DROP TABLE legacy_runs;",
    )
    .map_err(sql("drop the old tables"))
}

/// Turns an SQLite error into the migration's error text.
fn sql(what: &'static str) -> impl Fn(rusqlite::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// The columns of an old record's content, as SQLite values.
struct Fields(HashMap<String, Value>);

impl Fields {
    /// The fields of `content`, or `None` when a value is not one embatch writes.
    fn parse(content: &str) -> Option<Fields> {
        let mut fields = HashMap::new();
        for (name, text) in content_fields(content)? {
            let value = match serde_json::from_str::<serde_json::Value>(text).ok()? {
                serde_json::Value::Null => Value::Null,
                serde_json::Value::String(s) => Value::Text(s),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => Value::Integer(i),
                    None => Value::Real(n.as_f64()?),
                },
                serde_json::Value::Bool(b) => Value::Integer(i64::from(b)),
                _ => return None,
            };
            fields.insert(name, value);
        }
        Some(Fields(fields))
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    fn get(&self, name: &str) -> Value {
        self.0.get(name).cloned().unwrap_or(Value::Null)
    }

    /// The values of `table`'s columns, NULL where the record has none.
    fn columns(&self, table: &FactTable) -> Vec<Value> {
        table.columns.iter().map(|c| self.get(c)).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use rusqlite::Connection;

    use crate::audit::db::{Durability, open};

    /// The checked-in log written by embatch 0.1.0 (schema 01), copied to a temporary folder.
    pub(crate) fn old_log() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schema01.db");
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema01.db"),
            &path,
        )
        .unwrap();
        (dir, path)
    }

    /// Every row of a query, each value as text, in order.
    fn rows(conn: &Connection, sql: &str) -> Vec<Vec<String>> {
        let mut stmt = conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => "NULL".to_string(),
                        rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                        rusqlite::types::ValueRef::Real(v) => format!("{v:.3}"),
                        rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into(),
                        rusqlite::types::ValueRef::Blob(b) => hex::encode(b),
                    })
                })
                .collect()
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    #[test]
    fn the_views_show_the_same_after_the_migration() {
        let (_dir, path) = old_log();
        let queries = [
            "SELECT * FROM run_summary ORDER BY run_id",
            "SELECT * FROM change_log ORDER BY run_id, row_no",
            // Request ids are record numbers now: everything else is the same.
            "SELECT run_id, row_no, attempt, method, path, status, error, started_at,
                    duration_ms
             FROM request_log ORDER BY attempt_id",
        ];
        let before: Vec<_> = {
            let conn = Connection::open(&path).unwrap();
            queries.iter().map(|q| rows(&conn, q)).collect()
        };
        assert_eq!((before[0].len(), before[1].len()), (4, 74));
        assert!(before[2].len() > 250);
        let conn = open(&path, Durability::Full).unwrap();
        for (query, before) in queries.iter().zip(before) {
            assert_eq!(rows(&conn, query), before, "{query}");
        }
        // The old chain is kept whole, and the old tables are gone.
        let (legacy, head): (i64, String) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM legacy_evidence), legacy_head FROM migration",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            (legacy, head.as_str()),
            (
                714,
                "d44da2cc4d9dcd97d7a6ddb535a8c36ef2aa75caded1680720678c1d35f1085a"
            )
        );
        let old_tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name IN
                     ('legacy_runs', 'legacy_plan_rows', 'legacy_attempts', 'legacy_run_resumes')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old_tables, 0);
    }
}
