-- 0011 (PostgreSQL): the SQLite ledger's schema through its migration 0011, in one step.
-- Never edit a migration once it has landed: add a new one, numbered like its SQLite twin, so
-- both backends report the same schema version for the same meaning.
--
-- Times are Unix milliseconds (UTC). Money is integer micro-USD so sums are exact. SQLite's
-- INTEGER is 64-bit, so every integer here is BIGINT; SQLite's 0/1 flags are BOOLEAN.

CREATE TABLE task_states (
    name TEXT PRIMARY KEY
);

INSERT INTO task_states (name) VALUES
    ('queued'), ('held'), ('retry_wait'), ('dispatched'), ('verifying'), ('reviewing'),
    ('deliver_pending'), ('delivered'), ('merged'), ('done'), ('failed'),
    ('framework_fix_needed'), ('rejected'), ('cancelled'), ('abandoned');

-- Every legal (from, to) pair; the trigger on `tasks` refuses any other state change, so an
-- illegal transition cannot be written even by hand. The same rows as SQLite's 0001, 0003, 0004.
CREATE TABLE task_transitions (
    from_state TEXT NOT NULL REFERENCES task_states(name),
    to_state   TEXT NOT NULL REFERENCES task_states(name),
    PRIMARY KEY (from_state, to_state)
);

INSERT INTO task_transitions (from_state, to_state) VALUES
    ('queued', 'dispatched'), ('queued', 'held'), ('queued', 'failed'), ('queued', 'cancelled'),
    ('queued', 'abandoned'), ('queued', 'done'),
    ('held', 'queued'), ('held', 'dispatched'), ('held', 'failed'), ('held', 'cancelled'),
    ('held', 'abandoned'), ('held', 'done'), ('held', 'deliver_pending'), ('held', 'retry_wait'),
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
    ('delivered', 'done'), ('delivered', 'cancelled'), ('delivered', 'queued'),
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
    priority_tier       BIGINT NOT NULL,
    title               TEXT NOT NULL,
    subtitle            TEXT,
    body                TEXT NOT NULL DEFAULT '',
    section             TEXT,
    milestone           TEXT,
    format              TEXT NOT NULL,
    depends_on          TEXT NOT NULL DEFAULT '[]',   -- JSON array of task ids
    file_hints          TEXT NOT NULL DEFAULT '[]',   -- JSON array of repository paths/globs
    source_line         BIGINT NOT NULL,
    roadmap_order       BIGINT NOT NULL,
    in_roadmap          BOOLEAN NOT NULL DEFAULT TRUE,
    roadmap_done        BOOLEAN NOT NULL DEFAULT FALSE,
    content_hash        TEXT NOT NULL,
    state               TEXT NOT NULL REFERENCES task_states(name),
    held_reason         TEXT,
    hold_kind           TEXT,
    failure_class       TEXT,
    attempts            BIGINT NOT NULL DEFAULT 0,
    worker_calls        BIGINT NOT NULL DEFAULT 0,
    retry_at_ms         BIGINT,
    last_deferred_at_ms BIGINT,
    created_at_ms       BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL,
    branch              TEXT,
    base_commit         TEXT,
    last_failure        TEXT,
    pr_number           BIGINT,
    pr_url              TEXT,
    outside_text        BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE INDEX tasks_by_state ON tasks (state);

CREATE FUNCTION tasks_legal_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state <> NEW.state AND NOT EXISTS (
        SELECT 1 FROM task_transitions WHERE from_state = OLD.state AND to_state = NEW.state
    ) THEN
        RAISE EXCEPTION 'illegal task state transition' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER tasks_legal_transition BEFORE UPDATE OF state ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_legal_transition();

-- One row per worker invocation (an attempt, a review, or an `oxi run` outside the queue).
CREATE TABLE runs (
    id                   TEXT PRIMARY KEY,
    task_id              TEXT REFERENCES tasks(id),
    attempt              BIGINT NOT NULL DEFAULT 0,
    role                 TEXT NOT NULL,
    worker               TEXT NOT NULL,
    worker_kind          TEXT NOT NULL,
    model                TEXT,
    status               TEXT NOT NULL CHECK (status IN ('running', 'finished')),
    classification       TEXT,
    pid                  BIGINT,
    pgid                 BIGINT,
    lease_expires_at_ms  BIGINT,
    started_at_ms        BIGINT NOT NULL,
    ended_at_ms          BIGINT,
    exit_code            BIGINT,
    input_tokens         BIGINT NOT NULL DEFAULT 0,
    cached_input_tokens  BIGINT NOT NULL DEFAULT 0,
    output_tokens        BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens     BIGINT NOT NULL DEFAULT 0,
    cost_microusd        BIGINT NOT NULL DEFAULT 0,
    run_dir              TEXT,
    worktree             TEXT,
    branch               TEXT,
    stop_reason          TEXT,
    signal               BIGINT,
    cli_version          TEXT,
    session_id           TEXT,
    parse_failures       BIGINT NOT NULL DEFAULT 0,
    bytes_cut            BIGINT NOT NULL DEFAULT 0,
    retry_after_ms       BIGINT,
    detail               TEXT,
    supervisor_pid       BIGINT,
    route                TEXT
);

CREATE INDEX runs_by_task ON runs (task_id, started_at_ms);
CREATE INDEX runs_live ON runs (status) WHERE status = 'running';
CREATE INDEX runs_by_worker ON runs (worker_kind, model, started_at_ms);

-- The audit trail. Append-only: the triggers refuse updates, deletes and truncation.
CREATE TABLE events (
    id        BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    at_ms     BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    task_id   TEXT,
    run_id    TEXT,
    actor     TEXT NOT NULL DEFAULT 'oxi',
    data      TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX events_by_task ON events (task_id, id);
CREATE INDEX events_by_kind ON events (kind, at_ms);

CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only' USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

-- Budget held for a run between claim and settlement, then what it really cost.
CREATE TABLE spend (
    run_id             TEXT PRIMARY KEY REFERENCES runs(id),
    day                TEXT NOT NULL,     -- YYYY-MM-DD, UTC
    month              TEXT NOT NULL,     -- YYYY-MM, UTC
    reserved_microusd  BIGINT NOT NULL CHECK (reserved_microusd >= 0),
    actual_microusd    BIGINT NOT NULL DEFAULT 0 CHECK (actual_microusd >= 0),
    status             TEXT NOT NULL CHECK (status IN ('reserved', 'settled', 'released')),
    created_at_ms      BIGINT NOT NULL,
    settled_at_ms      BIGINT
);

CREATE INDEX spend_by_day ON spend (day);

-- Spend totals per UTC day and month, kept by the triggers below, so admission reads (and
-- locks, fleet-wide) two rows instead of summing every reservation of the month. A row's
-- contribution: spent = actual; held = what a live reservation still holds beyond it.
CREATE TABLE spend_rollup (
    period  TEXT PRIMARY KEY,                 -- YYYY-MM-DD or YYYY-MM
    spent   BIGINT NOT NULL DEFAULT 0,
    held    BIGINT NOT NULL DEFAULT 0
);

CREATE FUNCTION spend_held(status TEXT, reserved BIGINT, actual BIGINT) RETURNS BIGINT
    LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN status = 'reserved' THEN GREATEST(reserved - actual, 0) ELSE 0 END
$$;

-- Shared by `spend` and `gateway_calls`: both hold and spend money against the same caps.
CREATE FUNCTION spend_rollup_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE spend_rollup SET
            spent = spent - OLD.actual_microusd,
            held = held - spend_held(OLD.status, OLD.reserved_microusd, OLD.actual_microusd)
        WHERE period IN (OLD.day, OLD.month);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO spend_rollup AS r (period, spent, held) VALUES
            (NEW.day, NEW.actual_microusd,
             spend_held(NEW.status, NEW.reserved_microusd, NEW.actual_microusd)),
            (NEW.month, NEW.actual_microusd,
             spend_held(NEW.status, NEW.reserved_microusd, NEW.actual_microusd))
        ON CONFLICT (period) DO UPDATE
            SET spent = r.spent + excluded.spent, held = r.held + excluded.held;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER spend_rollup AFTER INSERT OR UPDATE OR DELETE ON spend
    FOR EACH ROW EXECUTE FUNCTION spend_rollup_apply();

CREATE TABLE approvals (
    id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    task_id      TEXT NOT NULL REFERENCES tasks(id),
    kind         TEXT NOT NULL,
    approved_by  TEXT NOT NULL,
    note         TEXT,
    at_ms        BIGINT NOT NULL,
    used_by_run  TEXT REFERENCES runs(id)
);

CREATE INDEX approvals_by_task ON approvals (task_id);

CREATE TABLE kv (
    key            TEXT PRIMARY KEY,
    value          TEXT NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);

CREATE TABLE verify_results (
    id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    run_id       TEXT NOT NULL REFERENCES runs(id),
    task_id      TEXT REFERENCES tasks(id),
    tier         TEXT NOT NULL,                        -- tier0, tier1, tier2
    name         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('passed', 'failed', 'timed_out', 'error')),
    exit_code    BIGINT,
    duration_ms  BIGINT NOT NULL,
    log_path     TEXT,
    at_ms        BIGINT NOT NULL
);

CREATE INDEX verify_results_by_run ON verify_results (run_id);
CREATE INDEX verify_results_by_time ON verify_results (at_ms);

-- Tasks made from GitHub issues (SQLite's 0008).
CREATE TABLE issue_tasks (
    task_id        TEXT PRIMARY KEY REFERENCES tasks(id),
    repo           TEXT NOT NULL,
    number         BIGINT NOT NULL,
    url            TEXT NOT NULL,
    issue_state    TEXT NOT NULL,
    matches        BOOLEAN NOT NULL DEFAULT TRUE,
    body_bytes     BIGINT NOT NULL DEFAULT 0,
    comment_id     BIGINT,
    comment_stage  TEXT,
    comment_sha    TEXT,
    synced_at_ms   BIGINT NOT NULL
);

CREATE UNIQUE INDEX issue_tasks_by_number ON issue_tasks (repo, number);

-- Notifications (SQLite's 0009).
CREATE TABLE notify_cursor (
    id            BIGINT PRIMARY KEY CHECK (id = 1),
    last_event_id BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE notify_outbox (
    id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    sink          TEXT NOT NULL,
    topic         TEXT NOT NULL,
    event_id      BIGINT REFERENCES events(id),
    what          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'delivered', 'gave_up')),
    attempts      BIGINT NOT NULL DEFAULT 0,
    next_at_ms    BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (sink, topic)
);

CREATE INDEX notify_outbox_due ON notify_outbox (state, next_at_ms);

CREATE TABLE notifications (
    id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    outbox_id   BIGINT REFERENCES notify_outbox(id),
    event_id    BIGINT REFERENCES events(id),
    sink        TEXT NOT NULL,
    topic       TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('delivered', 'failed', 'gave_up')),
    http_status BIGINT,
    exit_code   BIGINT,
    error       TEXT,
    ms          BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL
);

CREATE INDEX notifications_by_sink ON notifications (sink, id);

-- Inference-gateway calls (SQLite's 0011): they hold money like runs, through the same rollup.
CREATE TABLE gateway_calls (
    id                 BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    role               TEXT NOT NULL,
    provider           TEXT NOT NULL,
    model              TEXT NOT NULL,
    task_id            TEXT REFERENCES tasks(id),
    day                TEXT NOT NULL,
    month              TEXT NOT NULL,
    reserved_microusd  BIGINT NOT NULL CHECK (reserved_microusd >= 0),
    actual_microusd    BIGINT NOT NULL DEFAULT 0 CHECK (actual_microusd >= 0),
    status             TEXT NOT NULL CHECK (status IN ('reserved', 'settled', 'released')),
    outcome            TEXT,
    cost_source        TEXT,
    tokens_in          BIGINT NOT NULL DEFAULT 0,
    tokens_out         BIGINT NOT NULL DEFAULT 0,
    attempts           BIGINT NOT NULL DEFAULT 0,
    latency_ms         BIGINT,
    error              TEXT,
    created_at_ms      BIGINT NOT NULL,
    settled_at_ms      BIGINT
);

CREATE INDEX gateway_calls_by_day_role ON gateway_calls (day, role);

CREATE TRIGGER gateway_calls_rollup_insert AFTER INSERT OR DELETE ON gateway_calls
    FOR EACH ROW EXECUTE FUNCTION spend_rollup_apply();
CREATE TRIGGER gateway_calls_rollup_update
    AFTER UPDATE OF actual_microusd, reserved_microusd, status ON gateway_calls
    FOR EACH ROW EXECUTE FUNCTION spend_rollup_apply();
