//! The tables compared with the evidence chain: each row of `runs`, `plan_rows`, `attempts`
//! and `run_resumes` against its evidence folded oldest first, in one merge of the two by key,
//! so only the current row of each is held in memory.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use rusqlite::Connection;
use rusqlite::types::ValueRef;

use super::super::{Damage, Problems};
use super::schema::{ATTEMPTS, PLAN_ROWS, RESUMES, RUNS, Table, row_fields};
use crate::audit::AuditError;
use crate::audit::canon::content_fields;

/// The tables compared with the chain, by the shape of their key.
#[derive(Clone, Copy, Debug)]
pub(in crate::audit::verify) enum Shape {
    /// `runs`, by id; its evidence is `run` and `end`.
    Run,
    /// `plan_rows`, by run and row number.
    Row,
    /// `attempts`, by id.
    Attempt,
    /// `run_resumes`, by id.
    Resume,
}

/// A row as columns and the canonical text of their values.
type Fields = BTreeMap<String, String>;

impl Shape {
    fn table(self) -> &'static Table {
        match self {
            Shape::Run => &RUNS,
            Shape::Row => &PLAN_ROWS,
            Shape::Attempt => &ATTEMPTS,
            Shape::Resume => &RESUMES,
        }
    }

    /// The evidence of the table's rows, `(key1, key2, seq, content)` ordered by key and then
    /// by age, with `?1` the run to keep (NULL for all).
    fn evidence_sql(self) -> &'static str {
        match self {
            Shape::Run => {
                "SELECT run_id, 0, seq, content FROM evidence
                 WHERE kind IN ('run', 'end') AND (?1 IS NULL OR run_id = ?1)
                 ORDER BY run_id, seq"
            }
            Shape::Row => {
                "SELECT run_id, ref, seq, content FROM evidence
                 WHERE kind = 'row' AND (?1 IS NULL OR run_id = ?1)
                 ORDER BY run_id, ref, seq"
            }
            Shape::Attempt => {
                "SELECT ref, 0, seq, content FROM evidence
                 WHERE kind = 'attempt' AND (?1 IS NULL OR run_id = ?1)
                 ORDER BY ref, seq"
            }
            Shape::Resume => {
                "SELECT ref, 0, seq, content FROM evidence
                 WHERE kind = 'resume' AND (?1 IS NULL OR run_id = ?1)
                 ORDER BY ref, seq"
            }
        }
    }

    /// The table's rows in the chain's column order, ordered by key, with `?1` the run to keep.
    fn table_sql(self) -> String {
        let table = self.table();
        let (filter, order) = match self {
            Shape::Run => ("id", "id"),
            Shape::Row => ("run_id", "run_id, row_no"),
            Shape::Attempt | Shape::Resume => ("run_id", "id"),
        };
        format!(
            "SELECT {} FROM {} WHERE ?1 IS NULL OR {filter} = ?1 ORDER BY {order}",
            table.list(),
            table.name
        )
    }

    /// The positions of the key's columns among the table's.
    fn key_columns(self) -> (usize, Option<usize>) {
        let table = self.table();
        match self {
            Shape::Row => (
                table.column_index("run_id"),
                Some(table.column_index("row_no")),
            ),
            Shape::Run | Shape::Attempt | Shape::Resume => (table.column_index("id"), None),
        }
    }

    /// The record's name in messages; `fields` (the evidence's, or the row's own) supply the
    /// plan line of a row and the run of a resume.
    fn name(self, key: (&str, &str), fields: &Fields) -> String {
        let field = |name: &str| fields.get(name).and_then(|v| v.parse::<i64>().ok());
        match self {
            Shape::Run => format!("run {}", key.0),
            Shape::Row => match field("line") {
                Some(line) => format!("run {} row {} (plan line {line})", key.0, key.1),
                None => format!("run {} row {}", key.0, key.1),
            },
            Shape::Attempt => format!("attempt {}", key.0),
            Shape::Resume => match field("run_id") {
                Some(run) => format!("run {run} resume {}", key.0),
                None => format!("resume {}", key.0),
            },
        }
    }
}

/// The evidence of one row folded in order: the row as it must be now.
struct Folded {
    key: (i64, i64),
    /// The newest record of the row.
    seq: i64,
    fields: Fields,
    /// Whether every record's content could be read.
    readable: bool,
}

impl Folded {
    fn add(&mut self, seq: i64, content: &str) {
        self.seq = seq;
        match content_fields(content) {
            Some(fields) => {
                for (name, value) in fields {
                    self.fields.insert(name, value.to_string());
                }
            }
            None => self.readable = false,
        }
    }
}

/// One row of a table, in canonical form.
struct Current {
    key: (i64, i64),
    fields: Fields,
}

/// A key value as text, for naming a row whose key is not an integer.
fn value_text(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(r) => r.to_string(),
        ValueRef::Text(t) => format!("'{}'", String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => format!("x'{}'", hex::encode(b)),
    }
}

/// One evidence record of a table row: its key, number and content.
type KeyedRecord = ((i64, i64), i64, String);

/// Reads the next evidence record of a table, `(key, seq, content)`. A record whose key or
/// content is of another type is passed over: the walk of the chain has reported it already.
fn next_record(rows: &mut rusqlite::Rows<'_>) -> rusqlite::Result<Option<KeyedRecord>> {
    while let Some(row) = rows.next()? {
        if let (ValueRef::Integer(a), ValueRef::Integer(b), Ok(content)) =
            (row.get_ref(0)?, row.get_ref(1)?, row.get_ref(3)?.as_str())
        {
            return Ok(Some(((a, b), row.get(2)?, content.to_string())));
        }
    }
    Ok(None)
}

/// Compares one table with its rows as the evidence says they must be: a merge of two lists
/// ordered by key, so only the current row of each is held in memory.
pub(in crate::audit::verify) fn compare_table(
    conn: &Connection,
    shape: Shape,
    scope: Option<i64>,
    problems: &mut Problems,
) -> Result<(), AuditError> {
    let mut evidence_stmt = conn.prepare(shape.evidence_sql())?;
    let mut evidence_rows = evidence_stmt.query([scope])?;
    let mut peeked = None;
    let mut next_folded = || -> rusqlite::Result<Option<Folded>> {
        let mut folded: Option<Folded> = None;
        loop {
            let record = match peeked.take() {
                Some(record) => Some(record),
                None => next_record(&mut evidence_rows)?,
            };
            let Some((key, seq, content)) = record else {
                return Ok(folded);
            };
            match &mut folded {
                Some(f) if f.key != key => {
                    peeked = Some((key, seq, content));
                    return Ok(folded);
                }
                Some(f) => f.add(seq, &content),
                None => {
                    let mut f = Folded {
                        key,
                        seq,
                        fields: Fields::new(),
                        readable: true,
                    };
                    f.add(seq, &content);
                    folded = Some(f);
                }
            }
        }
    };

    let table = shape.table();
    let (first, second) = shape.key_columns();
    let mut table_stmt = conn.prepare(&shape.table_sql())?;
    let mut table_rows = table_stmt.query([scope])?;
    let mut odd_keys = Vec::new();
    let mut next_current = || -> rusqlite::Result<Option<Current>> {
        while let Some(row) = table_rows.next()? {
            let fields: Fields = table
                .columns
                .iter()
                .map(|c| c.to_string())
                .zip(row_fields(table, row)?)
                .collect();
            let a = row.get_ref(first)?;
            let b = match second {
                Some(i) => row.get_ref(i)?,
                None => ValueRef::Integer(0),
            };
            match (a, b) {
                (ValueRef::Integer(a), ValueRef::Integer(b)) => {
                    return Ok(Some(Current {
                        key: (a, b),
                        fields,
                    }));
                }
                // No evidence has such a key: the row was inserted. It is taken out of the
                // merge, whose order is that of integer keys.
                (a, b) => odd_keys.push(shape.name((&value_text(a), &value_text(b)), &fields)),
            }
        }
        Ok(None)
    };

    let name = |key: (i64, i64), fields: &Fields| {
        shape.name((&key.0.to_string(), &key.1.to_string()), fields)
    };
    let mut evidence = next_folded()?;
    let mut current = next_current()?;
    loop {
        let order = match (&evidence, &current) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(e), Some(c)) => e.key.cmp(&c.key),
        };
        match order {
            Ordering::Equal => {
                let (e, c) = (
                    evidence.take().expect("compared, so present"),
                    current.take().expect("compared, so present"),
                );
                if !(e.readable && e.fields == c.fields) {
                    problems.row(name(e.key, &e.fields), Damage::Modified, Some(e.seq));
                }
                evidence = next_folded()?;
                current = next_current()?;
            }
            Ordering::Less => {
                let e = evidence.take().expect("compared, so present");
                problems.row(name(e.key, &e.fields), Damage::Deleted, Some(e.seq));
                evidence = next_folded()?;
            }
            Ordering::Greater => {
                let c = current.take().expect("compared, so present");
                problems.row(name(c.key, &c.fields), Damage::Inserted, None);
                current = next_current()?;
            }
        }
    }
    for record in odd_keys {
        problems.row(record, Damage::Inserted, None);
    }
    Ok(())
}
