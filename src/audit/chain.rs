//! The chain of facts: the log's records are the facts themselves, each written once and never
//! changed, each carrying its place in one chain and a hash that links it to the record before
//! (schema 02, `migrations/02-append-only/up.sql`).
//!
//! Every fact table has `seq INTEGER PRIMARY KEY`, one numbering across all of them (1, 2, 3,
//! ... with no gap), and `hash`, the SHA-256 of the record's canonical text (`canon.rs`):
//! `prev_hash "\n" seq "\n" kind "\n" run_id "\n" ref "\n" content`, where `content` is the
//! record's other columns as canonical JSON. Nothing else is stored for the chain: no copy of the
//! content, no previous hash. `verify` reads every table in `seq` order, merges them and
//! recomputes each hash from the columns as they are.
//!
//! [`FactTable`] says, for each table, its `kind`, where its `run_id` and `ref` come from, and
//! the columns its content holds; the writer inserts through [`ChainHead::append`], `verify`
//! reads through [`FactTable::select`], and the `evidence_log` view builds the same content with
//! `json_object`, so the three cannot drift apart unnoticed (the tests compare them).
//!
//! Each run's `end` record is followed at once by a `checkpoint` holding the head (the end
//! record's hash) and the count of records up to it, signed when the run was given a key
//! ([`checkpoint_message`] is what is signed).
//!
//! Cost per record: one canonical JSON built from the values bound anyway, one SHA-256 of a few
//! hundred bytes, and one insert at the end of one table's b-tree. The head of the chain is read
//! once per group, inside the group's transaction (which holds the write lock, so another
//! process cannot interleave), as the newest `seq` of any table.

use std::sync::OnceLock;

use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension};

pub use super::canon::GENESIS;
use super::canon::{Content, record_hash};

/// Where a record's `ref` comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ref {
    /// No ref (NULL).
    None,
    /// The record's own `seq` (a request's or a resume's id).
    Seq,
    /// A column of the record.
    Column(&'static str),
}

/// A table of facts: how its records are named in the chain, and the columns their content
/// holds.
pub(crate) struct FactTable {
    /// The table's name.
    pub(crate) name: &'static str,
    /// The `kind` of its records in the chain and in `evidence_log`.
    pub(crate) kind: &'static str,
    /// The column holding the run the record belongs to; `None` for records of no run (0).
    pub(crate) run_id: Option<&'static str>,
    /// Where the record's `ref` comes from.
    pub(crate) reference: Ref,
    /// The columns of the content: every column but `seq` and `hash`, in byte order of their
    /// names (the order of the keys in the canonical JSON).
    pub(crate) columns: &'static [&'static str],
    insert: OnceLock<String>,
    select: OnceLock<String>,
}

impl FactTable {
    const fn new(
        name: &'static str,
        kind: &'static str,
        run_id: Option<&'static str>,
        reference: Ref,
        columns: &'static [&'static str],
    ) -> FactTable {
        FactTable {
            name,
            kind,
            run_id,
            reference,
            columns,
            insert: OnceLock::new(),
            select: OnceLock::new(),
        }
    }

    /// The position of column `name` among [`FactTable::columns`].
    pub(crate) fn column_index(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| *c == name)
            .unwrap_or_else(|| panic!("{} has no column {name}", self.name))
    }

    /// `INSERT INTO <table> (seq, hash, <columns>) VALUES (?, ?, ...)`.
    fn insert_sql(&self) -> &str {
        self.insert.get_or_init(|| {
            format!(
                "INSERT INTO {} (seq, hash, {}) VALUES (?{})",
                self.name,
                self.columns.join(", "),
                ", ?".repeat(self.columns.len() + 1)
            )
        })
    }

    /// `SELECT seq, hash, <columns> FROM <table> ORDER BY seq`: the records as `verify` reads
    /// them (by the primary key, so with no sort).
    pub(crate) fn select(&self) -> &str {
        self.select.get_or_init(|| {
            format!(
                "SELECT seq, hash, {} FROM {} ORDER BY seq",
                self.columns.join(", "),
                self.name
            )
        })
    }

    /// The run id and ref of a record of this table with number `seq` whose content columns
    /// hold `value(i)`: integers, or NULL (a record whose run id is not an integer has none,
    /// and is named as run 0).
    pub(crate) fn run_and_ref(
        &self,
        seq: i64,
        value: impl Fn(usize) -> Option<i64>,
    ) -> (i64, Option<i64>) {
        let run_id = self
            .run_id
            .and_then(|c| value(self.column_index(c)))
            .unwrap_or(0);
        let reference = match self.reference {
            Ref::None => None,
            Ref::Seq => Some(seq),
            Ref::Column(c) => value(self.column_index(c)),
        };
        (run_id, reference)
    }
}

/// A run as it started.
pub(crate) static RUN_STARTS: FactTable = FactTable::new(
    "run_starts",
    "run",
    Some("id"),
    Ref::None,
    &[
        "id",
        "insecure",
        "kind",
        "operator",
        "options",
        "parent_run_id",
        "plan_file",
        "plan_sha256",
        "server_url",
        "started_at",
        "tls_verify",
        "tool_version",
        "wire",
        "writer_boot_id",
        "writer_pid",
        "writer_start",
    ],
);

/// A run taken over by `resume`.
pub(crate) static RUN_RESUMES: FactTable = FactTable::new(
    "run_resumes",
    "resume",
    Some("run_id"),
    Ref::Seq,
    &[
        "previous_status",
        "resumed_at",
        "run_id",
        "writer_boot_id",
        "writer_pid",
        "writer_start",
    ],
);

/// A run as it ended.
pub(crate) static RUN_ENDS: FactTable = FactTable::new(
    "run_ends",
    "end",
    Some("run_id"),
    Ref::None,
    &["ended_at", "run_id", "status"],
);

/// A plan row of a run.
pub(crate) static PLANNED_ROWS: FactTable = FactTable::new(
    "planned_rows",
    "row",
    Some("run_id"),
    Ref::Column("row_no"),
    &[
        "account",
        "action",
        "annotations",
        "comment",
        "line",
        "object_name",
        "row_no",
        "run_id",
        "target",
        "ticket",
    ],
);

/// An account's state, stored once per account and run.
pub(crate) static PRIOR_STATES: FactTable = FactTable::new(
    "prior_states",
    "state",
    Some("run_id"),
    Ref::None,
    &["content", "run_id"],
);

/// A row's outcome.
pub(crate) static ROW_OUTCOMES: FactTable = FactTable::new(
    "row_outcomes",
    "outcome",
    Some("run_id"),
    Ref::Column("row_no"),
    &[
        "account_id",
        "error",
        "finished_at",
        "outcome",
        "prior_patch",
        "prior_state",
        "result",
        "row_no",
        "run_id",
    ],
);

/// A row's account id, learnt without an outcome.
pub(crate) static ROW_ACCOUNTS: FactTable = FactTable::new(
    "row_accounts",
    "account",
    Some("run_id"),
    Ref::Column("row_no"),
    &["account_id", "row_no", "run_id"],
);

/// An HTTP attempt, before it is sent.
pub(crate) static REQUESTS: FactTable = FactTable::new(
    "requests",
    "attempt",
    Some("run_id"),
    Ref::Seq,
    &[
        "attempt",
        "method",
        "path",
        "row_no",
        "run_id",
        "started_at",
    ],
);

/// What came of an attempt.
pub(crate) static REQUEST_RESULTS: FactTable = FactTable::new(
    "request_results",
    "result",
    Some("run_id"),
    Ref::Column("request"),
    &["duration_us", "error", "request", "run_id", "status"],
);

/// The head of the chain after a run's end.
pub(crate) static CHECKPOINTS: FactTable = FactTable::new(
    "checkpoints",
    "checkpoint",
    Some("run_id"),
    Ref::None,
    &["head", "public_key", "records", "run_id", "signature"],
);

/// In a log migrated from schema 01, the record that closes the facts carried over.
pub(crate) static MIGRATION: FactTable = FactTable::new(
    "migration",
    "migration",
    None,
    Ref::None,
    &["legacy_head", "legacy_records", "migrated_at"],
);

/// Every table of facts.
pub(crate) static FACT_TABLES: [&FactTable; 11] = [
    &MIGRATION,
    &RUN_STARTS,
    &RUN_RESUMES,
    &RUN_ENDS,
    &PLANNED_ROWS,
    &PRIOR_STATES,
    &ROW_OUTCOMES,
    &ROW_ACCOUNTS,
    &REQUESTS,
    &REQUEST_RESULTS,
    &CHECKPOINTS,
];

/// The message a checkpoint's signature signs: its run, the head it vouches for and the count
/// of records up to it, in a form no other record of the log takes.
pub(crate) fn checkpoint_message(run_id: i64, head: &str, records: i64) -> Vec<u8> {
    format!("embatch checkpoint\nrun {run_id}\nhead {head}\nrecords {records}\n").into_bytes()
}

/// The integer a bound value holds, if it is one.
fn bound_int(value: &dyn ToSql) -> Option<i64> {
    match value.to_sql().ok()? {
        ToSqlOutput::Borrowed(ValueRef::Integer(i)) => Some(i),
        ToSqlOutput::Owned(rusqlite::types::Value::Integer(i)) => Some(i),
        _ => None,
    }
}

/// The writer's end of the chain: the newest record's number and hash.
///
/// It is read at the start of every group's transaction and advanced record by record inside
/// it; it is never carried over from one transaction to the next, so another process appending
/// meanwhile, or a rolled-back group, cannot leave it stale.
#[derive(Debug)]
pub(crate) struct ChainHead {
    seq: i64,
    /// The newest record's hash as lowercase hex, as the next record's hash covers it (kept as
    /// bytes: it is written anew for every record).
    hash: [u8; 64],
    /// The buffer each record's content is written into, kept from one record to the next.
    content: Vec<u8>,
}

impl ChainHead {
    /// The head of the chain in `conn`: its newest record, or [`GENESIS`] for an empty chain.
    pub(crate) fn read(conn: &Connection) -> rusqlite::Result<ChainHead> {
        static SQL: OnceLock<String> = OnceLock::new();
        let sql = SQL.get_or_init(|| {
            let newest: Vec<String> = FACT_TABLES
                .iter()
                .map(|t| {
                    format!(
                        "SELECT * FROM (SELECT seq, hash FROM {} ORDER BY seq DESC LIMIT 1)",
                        t.name
                    )
                })
                .collect();
            format!("{} ORDER BY seq DESC LIMIT 1", newest.join(" UNION ALL "))
        });
        let head = conn
            .prepare_cached(sql)?
            .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .optional()?;
        let mut head_hex = [0u8; 64];
        match head {
            Some((seq, hash)) => {
                // A stored hash that is not 32 bytes links nothing; `verify` names it.
                if hex::encode_to_slice(&hash, &mut head_hex).is_err() {
                    head_hex.copy_from_slice(GENESIS.as_bytes());
                }
                Ok(ChainHead {
                    seq,
                    hash: head_hex,
                    content: Vec::new(),
                })
            }
            None => {
                head_hex.copy_from_slice(GENESIS.as_bytes());
                Ok(ChainHead {
                    seq: 0,
                    hash: head_hex,
                    content: Vec::new(),
                })
            }
        }
    }

    /// The newest record's number (0 for an empty chain).
    pub(crate) fn seq(&self) -> i64 {
        self.seq
    }

    /// The newest record's hash, lowercase hex ([`GENESIS`] for an empty chain).
    pub(crate) fn hash(&self) -> &str {
        std::str::from_utf8(&self.hash).expect("hex is ASCII")
    }

    /// Appends one record to `table` after the head, with `values` for its content columns (in
    /// the order of [`FactTable::columns`]), and makes it the head; answers its `seq`.
    pub(crate) fn append(
        &mut self,
        conn: &Connection,
        table: &FactTable,
        values: &[&dyn ToSql],
    ) -> rusqlite::Result<i64> {
        debug_assert_eq!(values.len(), table.columns.len(), "{}", table.name);
        let seq = self.seq + 1;
        let mut content = Content::in_buffer(std::mem::take(&mut self.content));
        for (name, value) in table.columns.iter().zip(values) {
            content = content.field(name, *value)?;
        }
        let content = content.into_bytes();
        let (run_id, reference) = table.run_and_ref(seq, |i| bound_int(values[i]));
        let hash = record_hash(self.hash(), seq, table.kind, run_id, reference, &content);
        self.content = content;
        let mut stmt = conn.prepare_cached(table.insert_sql())?;
        stmt.raw_bind_parameter(1, seq)?;
        stmt.raw_bind_parameter(2, &hash[..])?;
        for (i, value) in values.iter().enumerate() {
            stmt.raw_bind_parameter(i + 3, *value)?;
        }
        stmt.raw_execute()?;
        self.seq = seq;
        hex::encode_to_slice(hash, &mut self.hash).expect("32 bytes fill 64 hex digits");
        Ok(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::canon::record_hash;
    use crate::audit::db::{Durability, open};

    fn log() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("audit.db"), Durability::Full).unwrap();
        (dir, conn)
    }

    #[test]
    fn every_table_of_the_schema_is_a_fact_table_with_all_its_columns() {
        let (_dir, conn) = log();
        // Every table is chained, each with all of its columns: nothing is left out on purpose,
        // so a table or column a migration adds must be added here before this passes. The one
        // exception is schema 01's chain, kept whole as it was and checked on its own.
        let mut tables: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_schema
                 WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
                   AND name <> 'legacy_evidence'",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut covered: Vec<&str> = FACT_TABLES.iter().map(|t| t.name).collect();
        tables.sort();
        covered.sort();
        assert_eq!(tables, covered);
        for table in FACT_TABLES {
            let mut columns: Vec<String> = conn
                .prepare("SELECT name FROM pragma_table_info(?1)")
                .unwrap()
                .query_map([table.name], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            columns.retain(|c| c != "seq" && c != "hash");
            columns.sort();
            assert_eq!(columns, table.columns, "{}", table.name);
            assert!(
                table.columns.windows(2).all(|w| w[0] < w[1]),
                "{}",
                table.name
            );
        }
    }

    #[test]
    fn appends_link_each_record_to_the_one_before_and_the_view_shows_what_was_hashed() {
        let (_dir, conn) = log();
        let tx = conn.unchecked_transaction().unwrap();
        let mut head = ChainHead::read(&tx).unwrap();
        assert_eq!((head.seq(), head.hash()), (0, GENESIS));
        let none = None::<String>;
        let at = "2026-12-03T10:00:00.000Z";
        let run = head
            .append(
                &tx,
                &RUN_STARTS,
                &[
                    &1i64,
                    &false,
                    &"apply",
                    &"TECH\\ops \"q\"\n\u{1f}é\u{2028}",
                    &"{}",
                    &none,
                    &"plan.csv",
                    &none,
                    &"https://em:9398/api/",
                    &at,
                    &true,
                    &"0.1.0",
                    &"xml",
                    &none,
                    &42i64,
                    &none,
                ],
            )
            .unwrap();
        let request = head
            .append(
                &tx,
                &REQUESTS,
                &[&1i64, &"PUT", &"/api/x?a=1&b=\t", &3i64, &1i64, &at],
            )
            .unwrap();
        head.append(
            &tx,
            &REQUEST_RESULTS,
            &[&1250i64, &none, &request, &1i64, &200i64],
        )
        .unwrap();
        tx.commit().unwrap();
        assert_eq!((run, request), (1, 2));

        let again = ChainHead::read(&conn).unwrap();
        assert_eq!((again.seq(), again.hash()), (3, head.hash()));
        // The view shows each record's content exactly as hashed, and links it to the one
        // before: the chain can be checked from `evidence_log` alone.
        let mut stmt = conn
            .prepare("SELECT seq, kind, run_id, ref, content, prev_hash, hash FROM evidence_log")
            .unwrap();
        type Shown = (i64, String, i64, Option<i64>, String, String, String);
        let records: Vec<Shown> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records.len(), 3);
        let mut prev = GENESIS.to_string();
        for (seq, kind, run_id, reference, content, prev_hash, hash) in records {
            assert_eq!(prev_hash, prev);
            assert_eq!(
                hex::encode(record_hash(&prev, seq, &kind, run_id, reference, &content)),
                hash,
                "{seq} {content}"
            );
            prev = hash;
        }
        assert_eq!(prev, head.hash());
    }

    #[test]
    fn a_new_log_has_small_pages_since_every_commit_writes_its_last_ones() {
        let (_dir, conn) = log();
        let size: i64 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap();
        assert_eq!(size, 2048);
    }

    #[test]
    fn the_signed_message_names_the_run_the_head_and_the_count() {
        assert_eq!(
            checkpoint_message(3, GENESIS, 12),
            format!("embatch checkpoint\nrun 3\nhead {GENESIS}\nrecords 12\n").into_bytes()
        );
    }
}
