//! The evidence chain: an append-only, hash-linked account of every write the writer makes,
//! so that an edit made to the log afterwards can be found offline, from the SQLite file alone.
//!
//! The tables `runs`, `plan_rows`, `attempts` and `run_resumes` change as a run goes on (a row
//! goes from `pending` to its outcome, an attempt gets its status, a run its end). So the chain
//! does not hash those rows in place: each time the writer inserts or updates one, it also
//! appends, in the same transaction, one record to the table `evidence` holding the facts it
//! wrote: the complete row for an insert, the columns it set (and their new values) for an
//! update. Folding a row's records in order gives the row as it must be now.
//!
//! A record is `(seq, kind, run_id, ref, content, prev_hash, hash)`:
//!
//! - `seq` numbers the records 1, 2, 3, ... with no gap.
//! - `kind` says which row the record is about: `run` (a run recorded, or taken over by
//!   `resume`), `end` (a run ended), `resume` (a row of `run_resumes`), `row` (a plan row),
//!   `attempt` (an HTTP attempt), or `checkpoint` (below).
//! - `ref` is the row's number in its run (`row`), the attempt id (`attempt`), the resume id
//!   (`resume`), and NULL for the others.
//! - `content` is canonical JSON: one object whose keys are column names in byte order, no
//!   white space; integers in decimal, reals as the shortest text that reads back as the same
//!   double (`12.5`, `3.0`), text as a JSON string (only `"`, `\` and control characters
//!   escaped), NULL as `null`. Values embatch never stores are still told apart: an infinite real
//!   is `1e999` or `-1e999`, a blob `{"blob_hex":".."}`, text that is not UTF-8
//!   `{"text_hex":".."}`.
//! - `hash` is the lowercase hex SHA-256 of the UTF-8 text
//!   `prev_hash "\n" seq "\n" kind "\n" run_id "\n" ref "\n" content`, with `ref` empty when
//!   NULL; `prev_hash` is the `hash` of the record before, or 64 zeros ([`GENESIS`]) for the
//!   first.
//!
//! Each run's `end` record is followed at once by a `checkpoint` record of the same run whose
//! content is `{"head":"<the end record's hash>","records":<the end record's seq>,"run_id":<id>}`:
//! the head of the chain and the number of records when the run ended.
//!
//! Cost: the content is built from the values the writer binds to its statement anyway (a
//! `RETURNING` clause would make SQLite build a temporary table per statement, which measured
//! slower than the whole of the rest); one SHA-256 of a few hundred bytes per record on the
//! writer thread; and the records of a group are inserted together, in multi-row statements,
//! just before its commit. The head of the chain is read once per group (one indexed query),
//! inside the group's transaction: the transaction holds the write lock, so another process
//! writing the same file cannot interleave, and a rolled-back group leaves no trace.
//!
//! A SHA-256 chain has no secret: whoever can write the file and knows this page can rebuild
//! the chain after an edit. What it guarantees is that an edit made with plain SQL, without
//! rebuilding the chain, is always found; and that any change to the records up to a head hash
//! written down elsewhere (`verify --anchor`) is found (`verify --expect`).

use std::io::Write as _;

use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record: the head of an empty chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an evidence record records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A run as recorded, or as taken over by `resume`.
    Run,
    /// A run as it ended.
    End,
    /// A row of `run_resumes`.
    Resume,
    /// A plan row.
    Row,
    /// An HTTP attempt.
    Attempt,
    /// The head and the record count at the end of a run.
    Checkpoint,
}

impl Kind {
    /// The spelling in the `kind` column.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Run => "run",
            Kind::End => "end",
            Kind::Resume => "resume",
            Kind::Row => "row",
            Kind::Attempt => "attempt",
            Kind::Checkpoint => "checkpoint",
        }
    }
}

/// A table whose rows the chain records, with the columns its evidence holds.
pub(crate) struct Table {
    /// The table's name.
    pub(crate) name: &'static str,
    /// The columns the chain records, in byte order of their names (the order of the keys in
    /// the canonical JSON); the writer's evidence of an insert names each of them. A column
    /// added to the table later is covered only once it is added here and there.
    pub(crate) columns: &'static [&'static str],
}

impl Table {
    /// The position of `name` in [`Table::columns`].
    pub(crate) fn column_index(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| *c == name)
            .expect("a table's key columns are among its recorded columns")
    }

    /// The columns as an SQL list, in the order of [`Table::columns`].
    pub(crate) fn list(&self) -> String {
        self.columns.join(", ")
    }
}

/// `runs`.
pub(crate) const RUNS: Table = Table {
    name: "runs",
    columns: &[
        "ended_at",
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
        "status",
        "tls_verify",
        "tool_version",
        "wire",
        "writer_boot_id",
        "writer_pid",
        "writer_start",
    ],
};

/// `plan_rows`.
pub(crate) const PLAN_ROWS: Table = Table {
    name: "plan_rows",
    columns: &[
        "account",
        "account_id",
        "action",
        "annotations",
        "comment",
        "error",
        "finished_at",
        "line",
        "object_name",
        "outcome",
        "prior_state",
        "result",
        "row_no",
        "run_id",
        "target",
        "ticket",
    ],
};

/// `attempts`.
pub(crate) const ATTEMPTS: Table = Table {
    name: "attempts",
    columns: &[
        "attempt",
        "duration_ms",
        "error",
        "id",
        "method",
        "path",
        "row_no",
        "run_id",
        "started_at",
        "status",
    ],
};

/// `run_resumes`.
pub(crate) const RESUMES: Table = Table {
    name: "run_resumes",
    columns: &[
        "id",
        "previous_status",
        "resumed_at",
        "run_id",
        "writer_boot_id",
        "writer_pid",
        "writer_start",
    ],
};

/// The canonical JSON of each column of a row whose columns are `table`'s, in its order.
pub(crate) fn row_fields(table: &Table, row: &Row<'_>) -> rusqlite::Result<Vec<String>> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let mut out = Vec::with_capacity(32);
            json_value(&mut out, row.get_ref(i)?);
            Ok(String::from_utf8(out).expect("JSON built from UTF-8 text and ASCII is UTF-8"))
        })
        .collect()
}

/// A record's content being built, one column at a time, in byte order of the names.
pub(crate) struct Content {
    out: Vec<u8>,
    /// The last name written, to keep the order canonical.
    last: &'static str,
}

impl Content {
    /// An empty object.
    pub(crate) fn new() -> Content {
        let mut out = Vec::with_capacity(384);
        out.push(b'{');
        Content { out, last: "" }
    }

    /// Adds a column with the value bound to the statement that writes it (so, since every
    /// value is bound with the type of its column, the value SQLite stores).
    pub(crate) fn field(mut self, name: &'static str, value: &dyn ToSql) -> rusqlite::Result<Self> {
        debug_assert!(self.last < name, "{name} after {}", self.last);
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        json_str(&mut self.out, name);
        self.out.push(b':');
        match value.to_sql()? {
            ToSqlOutput::Borrowed(v) => json_value(&mut self.out, v),
            ToSqlOutput::Owned(v) => json_value(&mut self.out, ValueRef::from(&v)),
            // The writer binds plain values only.
            other => unreachable!("an unexpected bound value: {other:?}"),
        }
        self.last = name;
        Ok(self)
    }

    /// The JSON text.
    pub(crate) fn finish(mut self) -> String {
        self.out.push(b'}');
        String::from_utf8(self.out).expect("JSON built from UTF-8 text and ASCII is UTF-8")
    }
}

/// The columns of a flat JSON object as [`Content`] writes it: each name, decoded, with the text
/// of its value exactly as written; `None` if the text is not such an object. Values are
/// compared as text, never parsed, so a double is compared to the bit.
pub(crate) fn content_fields(content: &str) -> Option<Vec<(String, &str)>> {
    let b = content.as_bytes();
    let mut fields = Vec::new();
    if b.first() != Some(&b'{') {
        return None;
    }
    let mut i = 1;
    if b.get(i) == Some(&b'}') {
        return (i + 1 == b.len()).then_some(fields);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let end = end_of_string(b, i)?;
        let name: String = serde_json::from_str(&content[i..end]).ok()?;
        if b.get(end) != Some(&b':') {
            return None;
        }
        let start = end + 1;
        i = end_of_value(b, start)?;
        if i == start {
            return None;
        }
        fields.push((name, &content[start..i]));
        match b[i] {
            b',' => i += 1,
            _ => return (i + 1 == b.len()).then_some(fields),
        }
    }
}

/// The position after the JSON string that starts at `i`.
fn end_of_string(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// The position of the `,` or `}` that ends the value starting at `i`.
fn end_of_value(b: &[u8], i: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut j = i;
    while j < b.len() {
        match b[j] {
            b'"' => j = end_of_string(b, j)?,
            b'{' | b'[' => {
                depth += 1;
                j += 1;
            }
            b',' | b'}' if depth == 0 => return Some(j),
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                j += 1;
            }
            _ => j += 1,
        }
    }
    None
}

/// Appends `s` as a JSON string.
fn json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// Appends one SQLite value in its canonical JSON form.
fn json_value(out: &mut Vec<u8>, value: ValueRef<'_>) {
    match value {
        ValueRef::Null => out.extend_from_slice(b"null"),
        ValueRef::Integer(i) => write!(out, "{i}").expect("writing to a Vec cannot fail"),
        // serde_json writes a finite double as the shortest text that reads back as the same
        // double, but an infinite one as `null`, which would be mistaken for NULL.
        ValueRef::Real(r) if r.is_finite() => {
            serde_json::to_writer(&mut *out, &r).expect("writing to a Vec cannot fail")
        }
        ValueRef::Real(r) if r > 0.0 => out.extend_from_slice(b"1e999"),
        ValueRef::Real(_) => out.extend_from_slice(b"-1e999"),
        ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
            Ok(s) => json_str(out, s),
            Err(_) => tagged_hex(out, "text_hex", bytes),
        },
        ValueRef::Blob(bytes) => tagged_hex(out, "blob_hex", bytes),
    }
}

/// Appends `{"<tag>":"<hex of bytes>"}`: a value that no text or number encodes to.
fn tagged_hex(out: &mut Vec<u8>, tag: &str, bytes: &[u8]) {
    out.push(b'{');
    json_str(out, tag);
    out.push(b':');
    json_str(out, &hex::encode(bytes));
    out.push(b'}');
}

/// The hash of one record (see the module docs for the exact text hashed).
pub(crate) fn record_hash(
    prev_hash: &str,
    seq: i64,
    kind: &str,
    run_id: i64,
    reference: Option<i64>,
    content: &str,
) -> String {
    let mut head = Vec::with_capacity(128);
    match reference {
        Some(r) => write!(head, "{prev_hash}\n{seq}\n{kind}\n{run_id}\n{r}\n"),
        None => write!(head, "{prev_hash}\n{seq}\n{kind}\n{run_id}\n\n"),
    }
    .expect("writing to a Vec cannot fail");
    let mut hasher = Sha256::new();
    hasher.update(&head);
    hasher.update(content.as_bytes());
    hex::encode(hasher.finalize())
}

/// The content of the checkpoint that follows a run's `end` record.
pub(crate) fn checkpoint_content(head: &str, records: i64, run_id: i64) -> String {
    format!(r#"{{"head":"{head}","records":{records},"run_id":{run_id}}}"#)
}

/// The sizes of the multi-row statements that insert the records, largest first; a group's
/// records go in as few statements as these sizes allow (a group of 23: 16, 4, 1, 1, 1).
const BATCHES: [usize; 3] = [64, 16, 4];

/// The writer's end of the chain: the newest record's number and hash, appending after it, and
/// the records appended but not yet inserted.
///
/// It is read at the start of every group's transaction and advanced record by record inside
/// it; it is never carried over from one transaction to the next, so another process appending
/// meanwhile, or a rolled-back group, cannot leave it stale. [`ChainHead::flush`] must be called
/// before the commit.
#[derive(Debug)]
pub(crate) struct ChainHead {
    seq: i64,
    hash: String,
    pending: Vec<Pending>,
}

/// A record appended but not yet inserted.
#[derive(Debug)]
struct Pending {
    seq: i64,
    kind: Kind,
    run_id: i64,
    reference: Option<i64>,
    content: String,
    prev_hash: String,
    hash: String,
}

impl ChainHead {
    /// The head of the chain in `conn`: its newest record, or [`GENESIS`] for an empty chain.
    pub(crate) fn read(conn: &Connection) -> rusqlite::Result<ChainHead> {
        let head = conn
            .prepare_cached("SELECT seq, hash FROM evidence ORDER BY seq DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let (seq, hash) = head.unwrap_or_else(|| (0, GENESIS.to_string()));
        Ok(ChainHead {
            seq,
            hash,
            pending: Vec::new(),
        })
    }

    /// Appends one record after the head and makes it the head.
    pub(crate) fn append(
        &mut self,
        kind: Kind,
        run_id: i64,
        reference: Option<i64>,
        content: String,
    ) {
        let seq = self.seq + 1;
        let hash = record_hash(&self.hash, seq, kind.as_str(), run_id, reference, &content);
        let prev_hash = std::mem::replace(&mut self.hash, hash.clone());
        self.seq = seq;
        self.pending.push(Pending {
            seq,
            kind,
            run_id,
            reference,
            content,
            prev_hash,
            hash,
        });
    }

    /// Appends the checkpoint of `run_id`, which has just ended: the head and the count of the
    /// records before it.
    pub(crate) fn checkpoint(&mut self, run_id: i64) {
        let content = checkpoint_content(&self.hash, self.seq, run_id);
        self.append(Kind::Checkpoint, run_id, None, content);
    }

    /// Inserts the records appended since the last flush.
    pub(crate) fn flush(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let mut rest = &pending[..];
        while !rest.is_empty() {
            let rows = BATCHES.into_iter().find(|&n| n <= rest.len()).unwrap_or(1);
            let (part, after) = rest.split_at(rows);
            let mut stmt = conn.prepare_cached(insert_sql(rows))?;
            for (n, p) in part.iter().enumerate() {
                let at = n * 7;
                stmt.raw_bind_parameter(at + 1, p.seq)?;
                stmt.raw_bind_parameter(at + 2, p.kind.as_str())?;
                stmt.raw_bind_parameter(at + 3, p.run_id)?;
                stmt.raw_bind_parameter(at + 4, p.reference)?;
                stmt.raw_bind_parameter(at + 5, &p.content)?;
                stmt.raw_bind_parameter(at + 6, &p.prev_hash)?;
                stmt.raw_bind_parameter(at + 7, &p.hash)?;
            }
            stmt.raw_execute()?;
            rest = after;
        }
        Ok(())
    }
}

/// The statement inserting `rows` records, built once per size.
fn insert_sql(rows: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        std::iter::once(1)
            .chain(BATCHES)
            .map(|n| {
                format!(
                    "INSERT INTO evidence (seq, kind, run_id, ref, content, prev_hash, hash) VALUES {}",
                    vec!["(?, ?, ?, ?, ?, ?, ?)"; n].join(", ")
                )
            })
            .collect()
    });
    let index = std::iter::once(1)
        .chain(BATCHES)
        .position(|n| n == rows)
        .expect("records are inserted in the batch sizes only");
    &all[index]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE evidence (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL,
                 run_id INTEGER NOT NULL, ref INTEGER, content TEXT NOT NULL,
                 prev_hash TEXT NOT NULL, hash TEXT NOT NULL);",
        )
        .unwrap();
        conn
    }

    const T: Table = Table {
        name: "t",
        columns: &["a", "b", "c", "d", "e"],
    };

    /// The canonical text of each value of a SELECT's row.
    fn encode(conn: &Connection, sql: &str) -> Vec<String> {
        conn.query_row(sql, [], |r| row_fields(&T, r)).unwrap()
    }

    #[test]
    fn the_columns_are_listed_in_byte_order_without_repeats() {
        for table in [&RUNS, &PLAN_ROWS, &ATTEMPTS, &RESUMES] {
            assert!(
                table.columns.windows(2).all(|w| w[0] < w[1]),
                "{}",
                table.name
            );
        }
    }

    #[test]
    fn the_chain_records_every_column_of_every_table_of_the_schema() {
        use crate::audit::db::{Durability, open};

        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("audit.db"), Durability::Full).unwrap();
        // Every table but the chain's own is recorded, each with all of its columns: nothing is
        // left out on purpose, so a table or column the migrations add must be added here (and
        // to the writer's evidence) before this passes.
        let mut tables: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_schema
                 WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
                   AND name <> 'evidence'",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut covered: Vec<&str> = [&RUNS, &PLAN_ROWS, &ATTEMPTS, &RESUMES]
            .iter()
            .map(|t| t.name)
            .collect();
        tables.sort();
        covered.sort();
        assert_eq!(tables, covered);
        for table in [&RUNS, &PLAN_ROWS, &ATTEMPTS, &RESUMES] {
            let mut columns: Vec<String> = conn
                .prepare("SELECT name FROM pragma_table_info(?1)")
                .unwrap()
                .query_map([table.name], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            // The chain lists them in byte order, as the canonical JSON orders its keys.
            columns.sort();
            assert_eq!(columns, table.columns, "{}", table.name);
        }
    }

    #[test]
    fn canonical_json_tells_every_type_apart() {
        let conn = memory();
        assert_eq!(
            encode(&conn, "SELECT 7, 12.5, 'x\"y\\z\né', NULL, 3.0"),
            ["7", "12.5", r#""x\"y\\z\né""#, "null", "3.0"]
        );
        // Text that looks like a number, a blob, infinities and bytes that are not UTF-8.
        assert_eq!(
            encode(
                &conn,
                "SELECT '7', x'00ff', 9e999, -9e999, CAST(x'ff' AS TEXT)"
            ),
            [
                r#""7""#,
                r#"{"blob_hex":"00ff"}"#,
                "1e999",
                "-1e999",
                r#"{"text_hex":"ff"}"#
            ]
        );
        // A double is written so that it reads back to the bit.
        assert_eq!(
            encode(&conn, "SELECT 0.1 + 0.2, 1e-7, 12345678.901, NULL, NULL")[..3],
            ["0.30000000000000004", "1e-7", "12345678.901"]
        );
    }

    #[test]
    fn content_is_written_as_sqlite_stores_the_bound_values() {
        let content = Content::new()
            .field("a", &7i64)
            .unwrap()
            .field("b", &12.345f64)
            .unwrap()
            .field("c", &"TECH\\alice")
            .unwrap()
            .field("d", &None::<String>)
            .unwrap()
            .field("e", &true)
            .unwrap()
            .finish();
        assert_eq!(
            content,
            r#"{"a":7,"b":12.345,"c":"TECH\\alice","d":null,"e":1}"#
        );
        let conn = memory();
        conn.execute_batch("CREATE TABLE t (a INTEGER, b REAL, c TEXT, d TEXT, e INTEGER)")
            .unwrap();
        conn.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![7i64, 12.345f64, "TECH\\alice", None::<String>, true],
        )
        .unwrap();
        let stored = encode(&conn, "SELECT a, b, c, d, e FROM t");
        let written: Vec<&str> = content_fields(&content)
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(written, stored);
        assert_eq!(Content::new().finish(), "{}");
    }

    #[test]
    fn content_fields_reads_back_names_and_value_texts() {
        let fields =
            content_fields(r#"{"a":1,"b\"c":"x,}{\"y","d":{"blob_hex":"00"},"e":null,"f":-1e999}"#)
                .unwrap();
        assert_eq!(
            fields,
            [
                ("a".to_string(), "1"),
                ("b\"c".to_string(), r#""x,}{\"y""#),
                ("d".to_string(), r#"{"blob_hex":"00"}"#),
                ("e".to_string(), "null"),
                ("f".to_string(), "-1e999"),
            ]
        );
        assert_eq!(content_fields("{}"), Some(vec![]));
        for bad in [
            "",
            "{",
            "[]",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":1"#,
            r#"{"a":1}x"#,
            r#"{a:1}"#,
        ] {
            assert_eq!(content_fields(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_hash_covers_every_field_and_the_link() {
        let base = record_hash(GENESIS, 1, "row", 2, Some(3), "{}");
        assert_eq!(base.len(), 64);
        assert!(
            base.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        for other in [
            record_hash(&"1".repeat(64), 1, "row", 2, Some(3), "{}"),
            record_hash(GENESIS, 2, "row", 2, Some(3), "{}"),
            record_hash(GENESIS, 1, "end", 2, Some(3), "{}"),
            record_hash(GENESIS, 1, "row", 3, Some(3), "{}"),
            record_hash(GENESIS, 1, "row", 2, None, "{}"),
            record_hash(GENESIS, 1, "row", 2, Some(3), "{ }"),
        ] {
            assert_ne!(base, other);
        }
        // The exact text hashed, as an auditor would recompute it.
        let text = format!("{GENESIS}\n1\nrow\n2\n3\n{{}}");
        assert_eq!(base, hex::encode(Sha256::digest(text.as_bytes())));
        assert_eq!(
            record_hash(GENESIS, 1, "run", 2, None, "{}"),
            hex::encode(Sha256::digest(
                format!("{GENESIS}\n1\nrun\n2\n\n{{}}").as_bytes()
            ))
        );
    }

    #[test]
    fn every_group_size_is_inserted_whole_and_in_order() {
        let conn = memory();
        let mut total = 0;
        for n in [0, 1, 3, 4, 5, 16, 23, 63, 64, 85, 150] {
            let mut head = ChainHead::read(&conn).unwrap();
            for row in 0..n {
                head.append(Kind::Row, 1, Some(row), "{}".into());
            }
            head.flush(&conn).unwrap();
            total += n;
            let (count, max, last): (i64, Option<i64>, Option<String>) = conn
                .query_row(
                    "SELECT count(*), max(seq), (SELECT hash FROM evidence ORDER BY seq DESC LIMIT 1)
                     FROM evidence",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .unwrap();
            assert_eq!((count, max.unwrap_or(0)), (total, total), "a group of {n}");
            assert_eq!(
                last.as_deref().unwrap_or(GENESIS),
                head.hash,
                "a group of {n}"
            );
        }
    }

    #[test]
    fn appends_link_each_record_to_the_one_before() {
        let conn = memory();
        let mut head = ChainHead::read(&conn).unwrap();
        assert_eq!((head.seq, head.hash.as_str()), (0, GENESIS));
        head.append(Kind::Run, 1, None, "{\"id\":1}".into());
        // More than one batch, and a remainder.
        for row in 0..(BATCHES[0] as i64 + 3) {
            head.append(Kind::Row, 1, Some(row), format!("{{\"row_no\":{row}}}"));
        }
        head.append(Kind::End, 1, None, "{\"status\":\"completed\"}".into());
        head.checkpoint(1);
        head.flush(&conn).unwrap();
        let total = BATCHES[0] as i64 + 6;

        // A head read again continues where the last one stopped.
        let again = ChainHead::read(&conn).unwrap();
        assert_eq!((again.seq, &again.hash), (total, &head.hash));

        let mut stmt = conn
            .prepare(
                "SELECT seq, kind, run_id, ref, content, prev_hash, hash FROM evidence
                 ORDER BY seq",
            )
            .unwrap();
        type Rec = (i64, String, i64, Option<i64>, String, String, String);
        let records: Vec<Rec> = stmt
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
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(records.len() as i64, total);
        let mut prev = GENESIS.to_string();
        for (i, (seq, kind, run_id, reference, content, prev_hash, hash)) in
            records.iter().enumerate()
        {
            assert_eq!(*seq, i as i64 + 1);
            assert_eq!(*prev_hash, prev);
            assert_eq!(
                *hash,
                record_hash(prev_hash, *seq, kind, *run_id, *reference, content)
            );
            prev = hash.clone();
        }
        assert_eq!(records[5].3, Some(4));
        let (end, checkpoint) = (&records[records.len() - 2], &records[records.len() - 1]);
        assert_eq!(checkpoint.1, "checkpoint");
        assert_eq!(
            checkpoint.4,
            format!(
                r#"{{"head":"{}","records":{},"run_id":1}}"#,
                end.6,
                total - 1
            )
        );
    }
}
