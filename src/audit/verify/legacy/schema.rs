//! The tables of schema 01 and their evidence records, as `verify` reads them in a log not yet
//! migrated (see `migrations/01-initial/up.sql`): each insert or update of `runs`, `plan_rows`,
//! `attempts` and `run_resumes` was appended to `evidence` as a record holding the columns it
//! wrote, in the canonical form of `canon.rs`. A record's `kind` says which row it is about:
//! `run` (a run recorded, or taken over by `resume`), `end`, `resume`, `row`, `attempt`, or
//! `checkpoint`; `ref` is the row's number, the attempt id or the resume id. Each run's `end`
//! record is followed by a `checkpoint` whose content is
//! `{"head":"<the end record's hash>","records":<the end record's seq>,"run_id":<id>}`.

use rusqlite::Row;

use crate::audit::canon;

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
    canon::row_fields(row, 0, table.columns.len())
}

/// The content of the checkpoint that follows a run's `end` record.
pub(crate) fn checkpoint_content(head: &str, records: i64, run_id: i64) -> String {
    format!(r#"{{"head":"{head}","records":{records},"run_id":{run_id}}}"#)
}
