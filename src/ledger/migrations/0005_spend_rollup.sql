-- Spend totals per UTC day and month, kept by triggers, so admission reads two rows instead
-- of summing every reservation of the month (which made each claim slower than the last).
-- A row's contribution: spent = actual; held = what a live reservation still holds beyond it.
CREATE TABLE spend_rollup (
    period  TEXT PRIMARY KEY,                 -- YYYY-MM-DD or YYYY-MM
    spent   INTEGER NOT NULL DEFAULT 0,
    held    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

INSERT INTO spend_rollup (period, spent, held)
SELECT day, SUM(actual_microusd),
       SUM(CASE WHEN status = 'reserved' THEN MAX(reserved_microusd - actual_microusd, 0) ELSE 0 END)
FROM spend GROUP BY day;

INSERT INTO spend_rollup (period, spent, held)
SELECT month, SUM(actual_microusd),
       SUM(CASE WHEN status = 'reserved' THEN MAX(reserved_microusd - actual_microusd, 0) ELSE 0 END)
FROM spend GROUP BY month;

CREATE TRIGGER spend_rollup_insert AFTER INSERT ON spend
BEGIN
    INSERT INTO spend_rollup (period, spent, held) VALUES
        (NEW.day, NEW.actual_microusd,
         CASE WHEN NEW.status = 'reserved' THEN MAX(NEW.reserved_microusd - NEW.actual_microusd, 0) ELSE 0 END),
        (NEW.month, NEW.actual_microusd,
         CASE WHEN NEW.status = 'reserved' THEN MAX(NEW.reserved_microusd - NEW.actual_microusd, 0) ELSE 0 END)
    ON CONFLICT (period) DO UPDATE SET spent = spent + excluded.spent, held = held + excluded.held;
END;

CREATE TRIGGER spend_rollup_update AFTER UPDATE ON spend
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

CREATE TRIGGER spend_rollup_delete AFTER DELETE ON spend
BEGIN
    UPDATE spend_rollup SET
        spent = spent - OLD.actual_microusd,
        held = held - CASE WHEN OLD.status = 'reserved' THEN MAX(OLD.reserved_microusd - OLD.actual_microusd, 0) ELSE 0 END
    WHERE period IN (OLD.day, OLD.month);
END;
