-- 0009: notifications. The notifier reads new events after a cursor, queues one row per
-- (sink, topic) in `notify_outbox` (the payload as sent, secrets already masked), and records
-- every delivery attempt in `notifications`. A topic is `event:<id>` for a ledger event, or
-- `digest:<day>` / `budget_soft:<day>` for what the notifier derives once per day, so the
-- same thing is never queued twice for a sink.

CREATE TABLE notify_cursor (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    last_event_id INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

CREATE TABLE notify_outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    sink          TEXT NOT NULL,
    topic         TEXT NOT NULL,
    event_id      INTEGER REFERENCES events(id),
    what          TEXT NOT NULL,                 -- the notification's event name (held, failed, ...)
    payload       TEXT NOT NULL,                 -- JSON, masked
    state         TEXT NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'delivered', 'gave_up')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at_ms    INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (sink, topic)
);

CREATE INDEX notify_outbox_due ON notify_outbox (state, next_at_ms);

CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id   INTEGER REFERENCES notify_outbox(id),
    event_id    INTEGER REFERENCES events(id),
    sink        TEXT NOT NULL,
    topic       TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('delivered', 'failed', 'gave_up')),
    http_status INTEGER,
    exit_code   INTEGER,
    error       TEXT,
    ms          INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL
);

CREATE INDEX notifications_by_sink ON notifications (sink, id);
