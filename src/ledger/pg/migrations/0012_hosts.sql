-- 0012 (PostgreSQL twin of SQLite's 0012): hosts. Several oxi hosts may work one queue; each
-- run (and so its lease) records the host that started it, and each host keeps a heartbeat
-- row that `oxi hosts` lists and that routing's label requirements and `oxi doctor` read.
ALTER TABLE runs ADD COLUMN host TEXT;                 -- [host] name; NULL for runs before 0012

CREATE INDEX runs_live_by_host ON runs (host) WHERE status = 'running';

-- One row per host name and machine: two machines that claim the same name both show (and
-- `oxi doctor` fails on that), rather than overwriting each other's heartbeat.
CREATE TABLE hosts (
    name               TEXT NOT NULL,
    machine_id         TEXT NOT NULL,             -- /etc/machine-id (or the hostname if none)
    labels             TEXT NOT NULL DEFAULT '[]', -- JSON array, lower-case
    pid                BIGINT NOT NULL,           -- the oxi process of the last heartbeat
    oxi_version        TEXT NOT NULL,
    cli_versions       TEXT NOT NULL DEFAULT '{}', -- JSON object: worker -> version last reported
    first_seen_ms      BIGINT NOT NULL,
    last_heartbeat_ms  BIGINT NOT NULL,
    PRIMARY KEY (name, machine_id)
);
