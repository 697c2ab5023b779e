-- What a finished run needs for triage and the report beyond migration 0001's columns.
ALTER TABLE runs ADD COLUMN stop_reason TEXT;          -- why oxi stopped it (wall_clock, stalled, budget, ...)
ALTER TABLE runs ADD COLUMN signal INTEGER;            -- the signal that ended the process, if any
ALTER TABLE runs ADD COLUMN cli_version TEXT;
ALTER TABLE runs ADD COLUMN session_id TEXT;
ALTER TABLE runs ADD COLUMN parse_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN bytes_cut INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN retry_after_ms INTEGER;
ALTER TABLE runs ADD COLUMN detail TEXT;               -- one line a person reads: why it ended so

CREATE INDEX runs_by_worker ON runs (worker_kind, model, started_at_ms);
