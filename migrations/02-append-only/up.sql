-- The audit log as one append-only, hash-chained record of facts.
--
-- Schema 01 kept tables updated in place (a row went from `pending` to its outcome, an attempt
-- got its status, a run its end) and chained a JSON copy of every write in `evidence`. Here every
-- fact is a row written once and never changed: a run's start, its plan rows, each request
-- before it is sent and its result, each row's outcome, each resume, a run's end and its
-- checkpoint. The current state of a row or a run is derived, by the views below.
--
-- The chain runs over these rows themselves (src/audit/chain.rs). Every fact table has
-- `seq INTEGER PRIMARY KEY`, one number for all tables, 1, 2, 3, ... with no gap, and `hash`, the
-- SHA-256 (32 bytes) of the text
--     prev_hash "\n" seq "\n" kind "\n" run_id "\n" ref "\n" content
-- where prev_hash is the lowercase hex hash of record seq - 1 (64 zeros for the first) and
-- content is the record's columns, other than seq and hash, as canonical JSON (keys in byte
-- order, no white space). `evidence_log` shows every record with that content, so the chain can
-- be checked from the view alone.
--
-- Schema 01's data is carried over by the migration's hook (src/audit/migrate.rs): its evidence
-- chain, verified before the migration starts, is kept as it was in `legacy_evidence`; each of
-- its records becomes the fact it records, in order; and one record (`migration`) closes the part
-- carried over, holding the old chain's head and record count.

DROP VIEW run_summary;
DROP VIEW change_log;
DROP VIEW request_log;
DROP VIEW evidence_log;
DROP TRIGGER evidence_no_update;
DROP TRIGGER evidence_no_delete;
ALTER TABLE evidence RENAME TO legacy_evidence;
ALTER TABLE runs RENAME TO legacy_runs;
ALTER TABLE plan_rows RENAME TO legacy_plan_rows;
ALTER TABLE attempts RENAME TO legacy_attempts;
ALTER TABLE run_resumes RENAME TO legacy_run_resumes;

-- A run as it started. `id` is the run's number, the one users name.
CREATE TABLE run_starts (
    seq             INTEGER PRIMARY KEY,
    hash            BLOB    NOT NULL,
    id              INTEGER NOT NULL UNIQUE,
    kind            TEXT    NOT NULL,
    parent_run_id   INTEGER,
    started_at      TEXT    NOT NULL,
    operator        TEXT    NOT NULL,
    server_url      TEXT    NOT NULL,
    wire            TEXT    NOT NULL,
    tls_verify      INTEGER NOT NULL,
    insecure        INTEGER NOT NULL,
    plan_file       TEXT,
    plan_sha256     TEXT,
    tool_version    TEXT    NOT NULL,
    options         TEXT    NOT NULL,
    -- The process that wrote the run (see schema 01): its pid, its start in clock ticks after
    -- boot, and the boot it ran in.
    writer_pid      INTEGER NOT NULL,
    writer_start    INTEGER,
    writer_boot_id  TEXT
);

-- A run taken over by `resume` from a process that had stopped: from then on it is `running`
-- again, under this writer. `seq` is the resume's id.
CREATE TABLE run_resumes (
    seq             INTEGER PRIMARY KEY,
    hash            BLOB    NOT NULL,
    run_id          INTEGER NOT NULL,
    resumed_at      TEXT    NOT NULL,
    previous_status TEXT    NOT NULL,
    writer_pid      INTEGER NOT NULL,
    writer_start    INTEGER,
    writer_boot_id  TEXT
);
CREATE INDEX run_resumes_run ON run_resumes (run_id);

-- A run as it ended. A resumed run can end more than once: the newest fact counts.
CREATE TABLE run_ends (
    seq             INTEGER PRIMARY KEY,
    hash            BLOB    NOT NULL,
    run_id          INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    ended_at        TEXT    NOT NULL
);
CREATE INDEX run_ends_run ON run_ends (run_id);

-- A plan row of a run, written before the run sends anything.
CREATE TABLE planned_rows (
    seq             INTEGER PRIMARY KEY,
    hash            BLOB    NOT NULL,
    run_id          INTEGER NOT NULL,
    row_no          INTEGER NOT NULL,
    line            INTEGER NOT NULL,
    account         TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    object_name     TEXT,
    ticket          TEXT,
    comment         TEXT,
    annotations     TEXT,
    UNIQUE (run_id, row_no)
);

-- An account's state as read from EM, before the first of its rows in a run: stored once per
-- account and run, however many rows it is the prior state of (see `row_outcomes`). `run_id` is
-- the run that stored it.
CREATE TABLE prior_states (
    seq             INTEGER PRIMARY KEY,
    hash            BLOB    NOT NULL,
    run_id          INTEGER NOT NULL,
    content         TEXT    NOT NULL
);

-- A row's outcome. A row can have more than one (an in-doubt row reconciled by `resume`): the
-- newest counts. Its prior state is the state `prior_state` names, with `prior_patch` applied
-- as a JSON merge patch when it is not NULL: the rows of one account store the state read before
-- the first of them once, and each only what had changed since.
CREATE TABLE row_outcomes (
    seq             INTEGER PRIMARY KEY,
    hash            BLOB    NOT NULL,
    run_id          INTEGER NOT NULL,
    row_no          INTEGER NOT NULL,
    outcome         TEXT    NOT NULL,
    error           TEXT,
    prior_state     INTEGER,
    prior_patch     TEXT,
    result          TEXT,
    finished_at     TEXT    NOT NULL,
    account_id      TEXT
);
CREATE INDEX row_outcomes_row ON row_outcomes (run_id, row_no);

-- The account id a row resolved to, when the row ended without an outcome that carries it.
CREATE TABLE row_accounts (
    seq             INTEGER PRIMARY KEY,
    hash            BLOB    NOT NULL,
    run_id          INTEGER NOT NULL,
    row_no          INTEGER NOT NULL,
    account_id      TEXT    NOT NULL
);
CREATE INDEX row_accounts_row ON row_accounts (run_id, row_no);

-- An HTTP attempt, committed before the request is sent. `seq` is its id.
CREATE TABLE requests (
    seq             INTEGER PRIMARY KEY,
    hash            BLOB    NOT NULL,
    run_id          INTEGER NOT NULL,
    row_no          INTEGER,
    attempt         INTEGER NOT NULL,
    method          TEXT    NOT NULL,
    path            TEXT    NOT NULL,
    started_at      TEXT    NOT NULL
);
-- By run only: a run's requests are read whole (by `resume`, `show`, `report`), and an index by
-- row too would put each new entry at a place of its own, a page written for every request.
CREATE INDEX requests_run ON requests (run_id);

-- What came of an attempt: its status, or the error of a transport failure. An attempt with no
-- result was in flight when the writing process stopped. `duration_us` is in microseconds.
CREATE TABLE request_results (
    seq             INTEGER PRIMARY KEY,
    hash            BLOB    NOT NULL,
    run_id          INTEGER NOT NULL,
    request         INTEGER NOT NULL UNIQUE,
    status          INTEGER,
    error           TEXT,
    duration_us     INTEGER NOT NULL
);

-- After each run's end: the head of the chain (the hash of the record before) and the count of
-- records up to it; signed with the operator's Ed25519 key when a run was given one
-- (`public_key` and `signature` are then the hex of 32 and 64 bytes; the signed message is in
-- chain.rs).
CREATE TABLE checkpoints (
    seq             INTEGER PRIMARY KEY,
    hash            BLOB    NOT NULL,
    run_id          INTEGER NOT NULL,
    head            TEXT    NOT NULL,
    records         INTEGER NOT NULL,
    public_key      TEXT,
    signature       TEXT
);

-- In a log migrated from schema 01, the record after the facts carried over: the head hash and
-- record count of the old chain, kept in `legacy_evidence`, so that a head taken before the
-- migration still verifies, and the chain from here on descends from it.
CREATE TABLE migration (
    seq             INTEGER PRIMARY KEY,
    hash            BLOB    NOT NULL,
    legacy_head     TEXT    NOT NULL,
    legacy_records  INTEGER NOT NULL,
    migrated_at     TEXT    NOT NULL
);

-- The facts are never changed or removed by embatch; these refuse it to anyone who tries by
-- mistake. They do not stop a determined editor, which is what `verify` is for.
CREATE TRIGGER legacy_evidence_no_update BEFORE UPDATE ON legacy_evidence
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER legacy_evidence_no_delete BEFORE DELETE ON legacy_evidence
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER run_starts_no_update BEFORE UPDATE ON run_starts
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER run_starts_no_delete BEFORE DELETE ON run_starts
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER run_resumes_no_update BEFORE UPDATE ON run_resumes
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER run_resumes_no_delete BEFORE DELETE ON run_resumes
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER run_ends_no_update BEFORE UPDATE ON run_ends
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER run_ends_no_delete BEFORE DELETE ON run_ends
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER planned_rows_no_update BEFORE UPDATE ON planned_rows
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER planned_rows_no_delete BEFORE DELETE ON planned_rows
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER prior_states_no_update BEFORE UPDATE ON prior_states
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER prior_states_no_delete BEFORE DELETE ON prior_states
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER row_outcomes_no_update BEFORE UPDATE ON row_outcomes
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER row_outcomes_no_delete BEFORE DELETE ON row_outcomes
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER row_accounts_no_update BEFORE UPDATE ON row_accounts
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER row_accounts_no_delete BEFORE DELETE ON row_accounts
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER requests_no_update BEFORE UPDATE ON requests
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER requests_no_delete BEFORE DELETE ON requests
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER request_results_no_update BEFORE UPDATE ON request_results
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER request_results_no_delete BEFORE DELETE ON request_results
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER migration_no_update BEFORE UPDATE ON migration
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER migration_no_delete BEFORE DELETE ON migration
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

-- Private: each run as it stands now, derived from its facts (the columns of schema 01's table).
CREATE VIEW runs AS
SELECT
    s.id AS id,
    s.kind AS kind,
    s.parent_run_id AS parent_run_id,
    CASE WHEN e.seq IS NOT NULL AND (r.seq IS NULL OR e.seq > r.seq)
         THEN e.status ELSE 'running' END AS status,
    s.started_at AS started_at,
    CASE WHEN e.seq IS NOT NULL AND (r.seq IS NULL OR e.seq > r.seq)
         THEN e.ended_at END AS ended_at,
    s.operator AS operator,
    s.server_url AS server_url,
    s.wire AS wire,
    s.tls_verify AS tls_verify,
    s.insecure AS insecure,
    s.plan_file AS plan_file,
    s.plan_sha256 AS plan_sha256,
    s.tool_version AS tool_version,
    s.options AS options,
    CASE WHEN r.seq IS NULL THEN s.writer_pid ELSE r.writer_pid END AS writer_pid,
    CASE WHEN r.seq IS NULL THEN s.writer_start ELSE r.writer_start END AS writer_start,
    CASE WHEN r.seq IS NULL THEN s.writer_boot_id ELSE r.writer_boot_id END AS writer_boot_id
FROM run_starts s
LEFT JOIN run_ends e ON e.seq = (SELECT max(seq) FROM run_ends WHERE run_id = s.id)
LEFT JOIN run_resumes r ON r.seq = (SELECT max(seq) FROM run_resumes WHERE run_id = s.id);

-- Private: each plan row as it stands now (the columns of schema 01's table). A row's account
-- id is the newest one learnt, with its outcome or on its own.
CREATE VIEW plan_rows AS
SELECT
    p.run_id AS run_id,
    p.row_no AS row_no,
    p.line AS line,
    p.account AS account,
    (SELECT account_id FROM (
         SELECT seq, account_id FROM row_outcomes
         WHERE run_id = p.run_id AND row_no = p.row_no AND account_id IS NOT NULL
         UNION ALL
         SELECT seq, account_id FROM row_accounts
         WHERE run_id = p.run_id AND row_no = p.row_no)
     ORDER BY seq DESC LIMIT 1) AS account_id,
    p.action AS action,
    p.target AS target,
    p.object_name AS object_name,
    p.ticket AS ticket,
    p.comment AS comment,
    p.annotations AS annotations,
    coalesce(o.outcome, 'pending') AS outcome,
    o.error AS error,
    CASE WHEN o.prior_patch IS NULL THEN s.content
         ELSE json_patch(s.content, o.prior_patch) END AS prior_state,
    o.result AS result,
    o.finished_at AS finished_at
FROM planned_rows p
LEFT JOIN row_outcomes o
    ON o.seq = (SELECT max(seq) FROM row_outcomes WHERE run_id = p.run_id AND row_no = p.row_no)
LEFT JOIN prior_states s ON s.seq = o.prior_state;

-- Private: each HTTP attempt with its result (the columns of schema 01's table).
CREATE VIEW attempts AS
SELECT
    q.seq AS id,
    q.run_id AS run_id,
    q.row_no AS row_no,
    q.attempt AS attempt,
    q.method AS method,
    q.path AS path,
    x.status AS status,
    x.error AS error,
    q.started_at AS started_at,
    x.duration_us / 1000.0 AS duration_ms
FROM requests q
LEFT JOIN request_results x ON x.request = q.seq;

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
    count(CASE WHEN o.outcome = 'applied' THEN 1 END)      AS applied,
    count(CASE WHEN o.outcome = 'noop' THEN 1 END)         AS noop,
    count(CASE WHEN o.outcome = 'failed' THEN 1 END)       AS failed,
    count(CASE WHEN o.outcome = 'skipped' THEN 1 END)      AS skipped,
    count(CASE WHEN o.outcome = 'in_doubt' THEN 1 END)     AS in_doubt,
    count(CASE WHEN coalesce(o.outcome, 'pending') = 'pending' THEN p.row_no END) AS pending,
    count(CASE WHEN o.outcome = 'conflict' THEN 1 END)     AS conflict,
    (SELECT count(*) FROM requests q WHERE q.run_id = r.id) AS requests
FROM runs r
LEFT JOIN planned_rows p ON p.run_id = r.id
LEFT JOIN row_outcomes o
    ON o.seq = (SELECT max(seq) FROM row_outcomes WHERE run_id = p.run_id AND row_no = p.row_no)
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

-- Stable interface: the chain, one row per record; `seq` orders them. `content` is the text the
-- record's hash covers.
CREATE VIEW evidence_log AS
SELECT
    seq, kind, run_id, ref, content,
    coalesce(lag(hash) OVER (ORDER BY seq),
             '0000000000000000000000000000000000000000000000000000000000000000') AS prev_hash,
    hash
FROM (
    SELECT seq, 'migration' AS kind, 0 AS run_id, NULL AS ref,
        json_object('legacy_head', legacy_head, 'legacy_records', legacy_records,
                    'migrated_at', migrated_at) AS content,
        lower(hex(hash)) AS hash
    FROM migration
    UNION ALL
    SELECT seq, 'run', id, NULL,
        json_object('id', id, 'insecure', insecure, 'kind', kind, 'operator', operator,
                    'options', options, 'parent_run_id', parent_run_id, 'plan_file', plan_file,
                    'plan_sha256', plan_sha256, 'server_url', server_url,
                    'started_at', started_at, 'tls_verify', tls_verify,
                    'tool_version', tool_version, 'wire', wire,
                    'writer_boot_id', writer_boot_id, 'writer_pid', writer_pid,
                    'writer_start', writer_start),
        lower(hex(hash))
    FROM run_starts
    UNION ALL
    SELECT seq, 'resume', run_id, seq,
        json_object('previous_status', previous_status, 'resumed_at', resumed_at,
                    'run_id', run_id, 'writer_boot_id', writer_boot_id,
                    'writer_pid', writer_pid, 'writer_start', writer_start),
        lower(hex(hash))
    FROM run_resumes
    UNION ALL
    SELECT seq, 'end', run_id, NULL,
        json_object('ended_at', ended_at, 'run_id', run_id, 'status', status),
        lower(hex(hash))
    FROM run_ends
    UNION ALL
    SELECT seq, 'row', run_id, row_no,
        json_object('account', account, 'action', action, 'annotations', annotations,
                    'comment', comment, 'line', line, 'object_name', object_name,
                    'row_no', row_no, 'run_id', run_id, 'target', target, 'ticket', ticket),
        lower(hex(hash))
    FROM planned_rows
    UNION ALL
    SELECT seq, 'state', run_id, NULL,
        json_object('content', content, 'run_id', run_id),
        lower(hex(hash))
    FROM prior_states
    UNION ALL
    SELECT seq, 'outcome', run_id, row_no,
        json_object('account_id', account_id, 'error', error, 'finished_at', finished_at,
                    'outcome', outcome, 'prior_patch', prior_patch,
                    'prior_state', prior_state, 'result', result, 'row_no', row_no,
                    'run_id', run_id),
        lower(hex(hash))
    FROM row_outcomes
    UNION ALL
    SELECT seq, 'account', run_id, row_no,
        json_object('account_id', account_id, 'row_no', row_no, 'run_id', run_id),
        lower(hex(hash))
    FROM row_accounts
    UNION ALL
    SELECT seq, 'attempt', run_id, seq,
        json_object('attempt', attempt, 'method', method, 'path', path, 'row_no', row_no,
                    'run_id', run_id, 'started_at', started_at),
        lower(hex(hash))
    FROM requests
    UNION ALL
    SELECT seq, 'result', run_id, request,
        json_object('duration_us', duration_us, 'error', error, 'request', request,
                    'run_id', run_id, 'status', status),
        lower(hex(hash))
    FROM request_results
    UNION ALL
    SELECT seq, 'checkpoint', run_id, NULL,
        json_object('head', head, 'public_key', public_key, 'records', records,
                    'run_id', run_id, 'signature', signature),
        lower(hex(hash))
    FROM checkpoints
);
