//! The canonical form of the log's records, shared by the chain of schema 02 (`chain.rs`) and
//! the evidence of schema 01 that `verify` still reads (`verify/legacy/`): a record's columns as
//! canonical JSON, and the hash that links it to the record before.
//!
//! - `content` is canonical JSON: one object whose keys are column names in byte order, no
//!   white space; integers in decimal, reals as the shortest text that reads back as the same
//!   double (`12.5`, `3.0`), text as a JSON string (`"`, `\` and control characters escaped,
//!   as SQLite's `json_quote` escapes them, so that the `evidence_log` view shows the very text
//!   hashed), NULL as `null`. Values embatch never stores are still told apart: an infinite real
//!   is `1e999` or `-1e999`, a blob `{"blob_hex":".."}`, text that is not UTF-8
//!   `{"text_hex":".."}`.
//! - `hash` is the SHA-256 of the UTF-8 text
//!   `prev_hash "\n" seq "\n" kind "\n" run_id "\n" ref "\n" content`, with `ref` empty when
//!   NULL; `prev_hash` is the lowercase hex hash of the record before, or 64 zeros ([`GENESIS`])
//!   for the first.

use rusqlite::Row;
use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record: the head of an empty chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The canonical JSON of `count` columns of a row, from column `first` on.
pub(crate) fn row_fields(
    row: &Row<'_>,
    first: usize,
    count: usize,
) -> rusqlite::Result<Vec<String>> {
    (first..first + count)
        .map(|i| {
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
    #[cfg(test)]
    pub(crate) fn new() -> Content {
        Content::in_buffer(Vec::with_capacity(384))
    }

    /// An empty object written into `buffer`, emptied first: the writer hands one buffer from
    /// record to record rather than allocate one for each.
    pub(crate) fn in_buffer(mut buffer: Vec<u8>) -> Content {
        buffer.clear();
        buffer.push(b'{');
        Content {
            out: buffer,
            last: "",
        }
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
    #[cfg(test)]
    pub(crate) fn finish(self) -> String {
        String::from_utf8(self.into_bytes()).expect("JSON built from UTF-8 text and ASCII is UTF-8")
    }

    /// The JSON text's bytes (UTF-8, as for [`Content::finish`], but not checked again: only
    /// hashed).
    pub(crate) fn into_bytes(mut self) -> Vec<u8> {
        self.out.push(b'}');
        self.out
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
        ValueRef::Integer(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
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

/// The hash of one record (see the module docs for the exact text hashed); lowercase hex is
/// how the chain shows it.
pub(crate) fn record_hash(
    prev_hash: &str,
    seq: i64,
    kind: &str,
    run_id: i64,
    reference: Option<i64>,
    content: impl AsRef<[u8]>,
) -> [u8; 32] {
    // Fed piece by piece: the hasher buffers its blocks itself, so the text is never built.
    let mut number = itoa::Buffer::new();
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(number.format(seq).as_bytes());
    hasher.update(b"\n");
    hasher.update(kind.as_bytes());
    hasher.update(b"\n");
    hasher.update(number.format(run_id).as_bytes());
    hasher.update(b"\n");
    if let Some(r) = reference {
        hasher.update(number.format(r).as_bytes());
    }
    hasher.update(b"\n");
    hasher.update(content.as_ref());
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    fn memory() -> Connection {
        Connection::open_in_memory().unwrap()
    }

    /// The canonical text of each value of a SELECT's row.
    fn encode(conn: &Connection, sql: &str) -> Vec<String> {
        conn.query_row(sql, [], |r| row_fields(r, 0, 5)).unwrap()
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
        let base = hex::encode(record_hash(GENESIS, 1, "row", 2, Some(3), "{}"));
        assert_eq!(base.len(), 64);
        assert!(
            base.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        for other in [
            hex::encode(record_hash(&"1".repeat(64), 1, "row", 2, Some(3), "{}")),
            hex::encode(record_hash(GENESIS, 2, "row", 2, Some(3), "{}")),
            hex::encode(record_hash(GENESIS, 1, "end", 2, Some(3), "{}")),
            hex::encode(record_hash(GENESIS, 1, "row", 3, Some(3), "{}")),
            hex::encode(record_hash(GENESIS, 1, "row", 2, None, "{}")),
            hex::encode(record_hash(GENESIS, 1, "row", 2, Some(3), "{ }")),
        ] {
            assert_ne!(base, other);
        }
        // The exact text hashed, as an auditor would recompute it.
        let text = format!("{GENESIS}\n1\nrow\n2\n3\n{{}}");
        assert_eq!(base, hex::encode(Sha256::digest(text.as_bytes())));
        assert_eq!(
            hex::encode(record_hash(GENESIS, 1, "run", 2, None, "{}")),
            hex::encode(Sha256::digest(
                format!("{GENESIS}\n1\nrun\n2\n\n{{}}").as_bytes()
            ))
        );
    }

    #[test]
    fn text_is_escaped_as_sqlite_json_quote_escapes_it() {
        // `evidence_log` builds each record's content with json_object; it must be the very
        // text the writer hashed.
        let conn = memory();
        let mut samples: Vec<String> = (0u32..0x80)
            .map(|c| char::from_u32(c).unwrap().to_string())
            .collect();
        samples.extend(
            [
                "é",
                "\u{2028}\u{2029}",
                "\u{feff}",
                "😀",
                "TECH\\a \"b\"/c",
                "",
            ]
            .map(String::from),
        );
        for s in samples {
            let ours = Content::new().field("a", &s).unwrap().finish();
            let sqlite: String = conn
                .query_row("SELECT json_object('a', ?1)", [&s], |r| r.get(0))
                .unwrap();
            assert_eq!(ours, sqlite, "{s:?}");
        }
    }
}
