-- One row per inference-gateway call (triage, screen, summary, `oxi gateway test`): who asked,
-- which provider and model, what it cost and where that figure came from. A call holds money
-- like a run does (reserved before the request, settled at its cost or released on failure),
-- and the same triggers as `spend` keep `spend_rollup` whole, so the day's and month's caps
-- see gateway spend with no change to admission.
CREATE TABLE gateway_calls (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    role               TEXT NOT NULL,
    provider           TEXT NOT NULL,
    model              TEXT NOT NULL,
    task_id            TEXT REFERENCES tasks(id),
    day                TEXT NOT NULL,     -- YYYY-MM-DD, UTC
    month              TEXT NOT NULL,     -- YYYY-MM, UTC
    reserved_microusd  INTEGER NOT NULL CHECK (reserved_microusd >= 0),
    actual_microusd    INTEGER NOT NULL DEFAULT 0 CHECK (actual_microusd >= 0),
    status             TEXT NOT NULL CHECK (status IN ('reserved', 'settled', 'released')),
    outcome            TEXT,              -- ok | error, once the call ended
    cost_source        TEXT,              -- header | body | card | none
    tokens_in          INTEGER NOT NULL DEFAULT 0,
    tokens_out         INTEGER NOT NULL DEFAULT 0,
    attempts           INTEGER NOT NULL DEFAULT 0,
    latency_ms         INTEGER,
    error              TEXT,
    created_at_ms      INTEGER NOT NULL,
    settled_at_ms      INTEGER
);

CREATE INDEX gateway_calls_by_day_role ON gateway_calls (day, role);

CREATE TRIGGER gateway_calls_rollup_insert AFTER INSERT ON gateway_calls
BEGIN
    INSERT INTO spend_rollup (period, spent, held) VALUES
        (NEW.day, NEW.actual_microusd,
         CASE WHEN NEW.status = 'reserved' THEN MAX(NEW.reserved_microusd - NEW.actual_microusd, 0) ELSE 0 END),
        (NEW.month, NEW.actual_microusd,
         CASE WHEN NEW.status = 'reserved' THEN MAX(NEW.reserved_microusd - NEW.actual_microusd, 0) ELSE 0 END)
    ON CONFLICT (period) DO UPDATE SET spent = spent + excluded.spent, held = held + excluded.held;
END;

CREATE TRIGGER gateway_calls_rollup_update AFTER UPDATE OF actual_microusd, reserved_microusd, status ON gateway_calls
BEGIN
    UPDATE spend_rollup SET
        spent = spent - OLD.actual_microusd,
        held = held - CASE WHEN OLD.status = 'reserved' THEN MAX(OLD.reserved_microusd - OLD.actual_microusd, 0) ELSE 0 END
    WHERE period IN (OLD.day, OLD.month);
    INSERT INTO spend_rollup (period, spent, held) VALUES
        (NEW.day, NEW.actual_microusd,
         CASE WHEN NEW.status = 'reserved' THEN MAX(NEW.reserved_microusd - NEW.actual_microusd, 0) ELSE 0 END),
        (NEW.month, NEW.actual_microusd,
         CASE WHEN NEW.status = 'reserved' THEN MAX(NEW.reserved_microusd - NEW.actual_microusd, 0) ELSE 0 END)
    ON CONFLICT (period) DO UPDATE SET spent = spent + excluded.spent, held = held + excluded.held;
END;
