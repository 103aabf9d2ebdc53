-- The first schema of the audit log.
--
-- Shipped migrations are never edited: a change to the schema is a new numbered directory.
-- The tables are private to embatch; the views at the end are the stable interface for auditors,
-- and their column names must not change. Timestamps are RFC 3339 UTC with milliseconds
-- (2026-11-23T10:21:03.123Z), so they sort as text. Plain (non-STRICT) tables and views without
-- FILTER clauses keep the file readable by older sqlite3 shells.

-- One row per run of embatch against a server.
CREATE TABLE runs (
    id              INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL,
    parent_run_id   INTEGER REFERENCES runs (id),
    status          TEXT    NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'completed', 'failed', 'interrupted', 'aborted')),
    started_at      TEXT    NOT NULL,
    ended_at        TEXT,
    operator        TEXT    NOT NULL,
    server_url      TEXT    NOT NULL,
    wire            TEXT    NOT NULL,
    tls_verify      INTEGER NOT NULL CHECK (tls_verify IN (0, 1)),
    insecure        INTEGER NOT NULL CHECK (insecure IN (0, 1)),
    plan_file       TEXT,
    plan_sha256     TEXT,
    tool_version    TEXT    NOT NULL,
    options         TEXT    NOT NULL,
    -- The process that wrote the run, so that a run left `running` by a process that is gone can
    -- be told from one still in progress: its pid, its start time in clock ticks after boot
    -- (/proc/<pid>/stat field 22, which tells a reused pid apart) and the boot it ran in
    -- (/proc/sys/kernel/random/boot_id, which tells a pid and start time from an earlier boot
    -- apart). The last two are NULL where the system does not provide them.
    writer_pid      INTEGER NOT NULL,
    writer_start    INTEGER,
    writer_boot_id  TEXT
);

-- One row per plan row of a run, written `pending` before the run starts.
CREATE TABLE plan_rows (
    run_id          INTEGER NOT NULL REFERENCES runs (id),
    row_no          INTEGER NOT NULL,
    line            INTEGER NOT NULL,
    account         TEXT    NOT NULL,
    account_id      TEXT,
    action          TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    object_name     TEXT,
    ticket          TEXT,
    comment         TEXT,
    annotations     TEXT,
    outcome         TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (outcome IN ('pending', 'applied', 'noop', 'failed', 'skipped', 'in_doubt',
                                       'conflict')),
    error           TEXT,
    prior_state     TEXT,
    result          TEXT,
    finished_at     TEXT,
    PRIMARY KEY (run_id, row_no)
) WITHOUT ROWID;

-- One row per HTTP attempt, written and committed before the request is sent. An attempt
-- without status, error and duration was about to be sent, or was in flight, when the writing
-- process stopped.
CREATE TABLE attempts (
    id              INTEGER PRIMARY KEY,
    run_id          INTEGER NOT NULL REFERENCES runs (id),
    row_no          INTEGER,
    attempt         INTEGER NOT NULL,
    method          TEXT    NOT NULL,
    path            TEXT    NOT NULL,
    status          INTEGER,
    error           TEXT,
    started_at      TEXT    NOT NULL,
    duration_ms     REAL,
    FOREIGN KEY (run_id, row_no) REFERENCES plan_rows (run_id, row_no)
);

CREATE INDEX attempts_run_row ON attempts (run_id, row_no);

-- One row each time `resume` took a run over from a process that had stopped: the run keeps its
-- id, and this table keeps the evidence of who continued it, and when.
CREATE TABLE run_resumes (
    id              INTEGER PRIMARY KEY,
    run_id          INTEGER NOT NULL REFERENCES runs (id),
    resumed_at      TEXT    NOT NULL,
    previous_status TEXT    NOT NULL,
    writer_pid      INTEGER NOT NULL,
    writer_start    INTEGER,
    writer_boot_id  TEXT
);

-- The evidence chain (src/audit/chain.rs): append-only, one record each time a row of the tables
-- above is inserted or updated, holding what was written (canonical JSON: the whole row for an
-- insert, the columns set by an update), linked to the record before it by a SHA-256 hash; and
-- one checkpoint record after each run's end. `verify` recomputes the chain and compares the
-- tables above with it.
CREATE TABLE evidence (
    seq             INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL,
    run_id          INTEGER NOT NULL,
    ref             INTEGER,
    content         TEXT    NOT NULL,
    prev_hash       TEXT    NOT NULL,
    hash            TEXT    NOT NULL
);

-- The evidence is never changed or removed by embatch; these refuse it to anyone who tries by
-- mistake. They do not stop a determined editor (who can drop them), which is what `verify` is for.
CREATE TRIGGER evidence_no_update BEFORE UPDATE ON evidence
BEGIN
    SELECT RAISE(ABORT, 'the evidence chain is append-only');
END;

CREATE TRIGGER evidence_no_delete BEFORE DELETE ON evidence
BEGIN
    SELECT RAISE(ABORT, 'the evidence chain is append-only');
END;

-- Stable interface: one row per run, with its rows counted by outcome and its HTTP attempts.
CREATE VIEW run_summary AS
SELECT
    r.id                                                   AS run_id,
    r.kind                                                 AS kind,
    r.parent_run_id                                        AS parent_run_id,
    r.status                                               AS status,
    r.started_at                                           AS started_at,
    r.ended_at                                             AS ended_at,
    r.operator                                             AS operator,
    r.server_url                                           AS server_url,
    r.wire                                                 AS wire,
    r.tls_verify                                           AS tls_verify,
    r.insecure                                             AS insecure,
    r.plan_file                                            AS plan_file,
    r.plan_sha256                                          AS plan_sha256,
    r.tool_version                                         AS tool_version,
    r.options                                              AS options,
    count(p.row_no)                                        AS rows,
    count(CASE WHEN p.outcome = 'applied' THEN 1 END)      AS applied,
    count(CASE WHEN p.outcome = 'noop' THEN 1 END)         AS noop,
    count(CASE WHEN p.outcome = 'failed' THEN 1 END)       AS failed,
    count(CASE WHEN p.outcome = 'skipped' THEN 1 END)      AS skipped,
    count(CASE WHEN p.outcome = 'in_doubt' THEN 1 END)     AS in_doubt,
    count(CASE WHEN p.outcome = 'pending' THEN 1 END)      AS pending,
    count(CASE WHEN p.outcome = 'conflict' THEN 1 END)     AS conflict,
    (SELECT count(*) FROM attempts a WHERE a.run_id = r.id) AS requests
FROM runs r
LEFT JOIN plan_rows p ON p.run_id = r.id
GROUP BY r.id;

-- Stable interface: one row per plan row.
CREATE VIEW change_log AS
SELECT
    run_id, row_no, line, account, account_id, action, target, object_name, outcome, error,
    prior_state, result, ticket, comment, annotations, finished_at
FROM plan_rows;

-- Stable interface: one row per HTTP attempt.
CREATE VIEW request_log AS
SELECT
    id AS attempt_id, run_id, row_no, attempt, method, path, status, error, started_at,
    duration_ms
FROM attempts;

-- Stable interface: the evidence chain, one row per record; `seq` orders them.
CREATE VIEW evidence_log AS
SELECT seq, kind, run_id, ref, content, prev_hash, hash
FROM evidence;
