-- 0001: the ledger's first shape. Never edit a migration once it has landed: add a new one.
--
-- Times are Unix milliseconds (UTC). Money is integer micro-USD so sums are exact.

CREATE TABLE task_states (
    name TEXT PRIMARY KEY
) WITHOUT ROWID;

INSERT INTO task_states (name) VALUES
    ('queued'), ('held'), ('retry_wait'), ('dispatched'), ('verifying'), ('reviewing'),
    ('deliver_pending'), ('delivered'), ('merged'), ('done'), ('failed'),
    ('framework_fix_needed'), ('rejected'), ('cancelled'), ('abandoned');

-- Every legal (from, to) pair. The trigger below refuses any other state change, so an illegal
-- transition cannot be written even by hand. `TaskState::can_transition_to` mirrors this table
-- and a test keeps the two equal.
CREATE TABLE task_transitions (
    from_state TEXT NOT NULL REFERENCES task_states(name),
    to_state   TEXT NOT NULL REFERENCES task_states(name),
    PRIMARY KEY (from_state, to_state)
) WITHOUT ROWID;

INSERT INTO task_transitions (from_state, to_state) VALUES
    ('queued', 'dispatched'), ('queued', 'held'), ('queued', 'failed'), ('queued', 'cancelled'),
    ('queued', 'abandoned'), ('queued', 'done'),
    ('held', 'queued'), ('held', 'dispatched'), ('held', 'failed'), ('held', 'cancelled'),
    ('held', 'abandoned'), ('held', 'done'),
    ('retry_wait', 'dispatched'), ('retry_wait', 'queued'), ('retry_wait', 'held'),
    ('retry_wait', 'failed'), ('retry_wait', 'cancelled'), ('retry_wait', 'abandoned'),
    ('retry_wait', 'done'),
    ('dispatched', 'verifying'), ('dispatched', 'retry_wait'), ('dispatched', 'queued'),
    ('dispatched', 'held'), ('dispatched', 'failed'), ('dispatched', 'framework_fix_needed'),
    ('dispatched', 'cancelled'),
    ('verifying', 'reviewing'), ('verifying', 'retry_wait'), ('verifying', 'queued'),
    ('verifying', 'held'), ('verifying', 'failed'), ('verifying', 'framework_fix_needed'),
    ('verifying', 'cancelled'),
    ('reviewing', 'deliver_pending'), ('reviewing', 'delivered'), ('reviewing', 'retry_wait'),
    ('reviewing', 'queued'), ('reviewing', 'held'), ('reviewing', 'failed'),
    ('reviewing', 'cancelled'),
    ('deliver_pending', 'delivered'), ('deliver_pending', 'held'), ('deliver_pending', 'failed'),
    ('deliver_pending', 'cancelled'),
    ('delivered', 'merged'), ('delivered', 'rejected'), ('delivered', 'dispatched'),
    ('delivered', 'done'), ('delivered', 'cancelled'),
    ('merged', 'done'),
    ('done', 'queued'),
    ('failed', 'queued'), ('failed', 'abandoned'), ('failed', 'done'),
    ('framework_fix_needed', 'queued'), ('framework_fix_needed', 'cancelled'),
    ('framework_fix_needed', 'abandoned'), ('framework_fix_needed', 'done'),
    ('rejected', 'queued'), ('rejected', 'abandoned'), ('rejected', 'done'),
    ('cancelled', 'queued'), ('cancelled', 'abandoned'), ('cancelled', 'done'),
    ('abandoned', 'queued'), ('abandoned', 'done');

CREATE TABLE tasks (
    id                  TEXT PRIMARY KEY,
    priority_tier       INTEGER NOT NULL,
    title               TEXT NOT NULL,
    subtitle            TEXT,
    body                TEXT NOT NULL DEFAULT '',
    section             TEXT,
    milestone           TEXT,
    format              TEXT NOT NULL,
    depends_on          TEXT NOT NULL DEFAULT '[]',   -- JSON array of task ids
    file_hints          TEXT NOT NULL DEFAULT '[]',   -- JSON array of repository paths/globs
    source_line         INTEGER NOT NULL,
    roadmap_order       INTEGER NOT NULL,
    in_roadmap          INTEGER NOT NULL DEFAULT 1,
    roadmap_done        INTEGER NOT NULL DEFAULT 0,   -- checked off in the roadmap at last ingest
    content_hash        TEXT NOT NULL,
    state               TEXT NOT NULL REFERENCES task_states(name),
    held_reason         TEXT,
    failure_class       TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0,
    worker_calls        INTEGER NOT NULL DEFAULT 0,
    retry_at_ms         INTEGER,
    last_deferred_at_ms INTEGER,
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL
);

CREATE INDEX tasks_by_state ON tasks (state);

CREATE TRIGGER tasks_legal_transition
BEFORE UPDATE OF state ON tasks
WHEN OLD.state <> NEW.state
  AND NOT EXISTS (
    SELECT 1 FROM task_transitions WHERE from_state = OLD.state AND to_state = NEW.state
  )
BEGIN
    SELECT RAISE(ABORT, 'illegal task state transition');
END;

-- One row per worker invocation (an attempt, a review, or an `oxi run` outside the queue).
CREATE TABLE runs (
    id                   TEXT PRIMARY KEY,
    task_id              TEXT REFERENCES tasks(id),
    attempt              INTEGER NOT NULL DEFAULT 0,
    role                 TEXT NOT NULL,
    worker               TEXT NOT NULL,
    worker_kind          TEXT NOT NULL,
    model                TEXT,
    status               TEXT NOT NULL CHECK (status IN ('running', 'finished')),
    classification       TEXT,
    pid                  INTEGER,
    pgid                 INTEGER,
    lease_expires_at_ms  INTEGER,
    started_at_ms        INTEGER NOT NULL,
    ended_at_ms          INTEGER,
    exit_code            INTEGER,
    input_tokens         INTEGER NOT NULL DEFAULT 0,
    cached_input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens        INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens     INTEGER NOT NULL DEFAULT 0,
    cost_microusd        INTEGER NOT NULL DEFAULT 0,
    run_dir              TEXT,
    worktree             TEXT,
    branch               TEXT
);

CREATE INDEX runs_by_task ON runs (task_id, started_at_ms);
CREATE INDEX runs_live ON runs (status) WHERE status = 'running';

-- The audit trail. Append-only: the triggers refuse updates and deletes.
CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms     INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    task_id   TEXT,
    run_id    TEXT,
    actor     TEXT NOT NULL DEFAULT 'oxi',
    data      TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX events_by_task ON events (task_id, id);
CREATE INDEX events_by_kind ON events (kind, at_ms);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

-- Budget held for a run between claim and settlement, then what it really cost.
CREATE TABLE spend (
    run_id             TEXT PRIMARY KEY REFERENCES runs(id),
    day                TEXT NOT NULL,     -- YYYY-MM-DD, UTC
    month              TEXT NOT NULL,     -- YYYY-MM, UTC
    reserved_microusd  INTEGER NOT NULL CHECK (reserved_microusd >= 0),
    actual_microusd    INTEGER NOT NULL DEFAULT 0 CHECK (actual_microusd >= 0),
    status             TEXT NOT NULL CHECK (status IN ('reserved', 'settled', 'released')),
    created_at_ms      INTEGER NOT NULL,
    settled_at_ms      INTEGER
) WITHOUT ROWID;

CREATE INDEX spend_by_day ON spend (day, status);
CREATE INDEX spend_by_month ON spend (month, status);

CREATE TABLE approvals (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id      TEXT NOT NULL REFERENCES tasks(id),
    kind         TEXT NOT NULL,
    approved_by  TEXT NOT NULL,
    note         TEXT,
    at_ms        INTEGER NOT NULL,
    used_by_run  TEXT REFERENCES runs(id)
);

CREATE INDEX approvals_by_task ON approvals (task_id);

CREATE TABLE kv (
    key            TEXT PRIMARY KEY,
    value          TEXT NOT NULL,
    updated_at_ms  INTEGER NOT NULL
) WITHOUT ROWID;
