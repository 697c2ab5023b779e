-- One row per live probe of a worker's CLI (`oxi workers --probe`, or `oxi doctor` when the
-- installed version is not the last one probed): which version, pass or fail, and the first
-- expectation it missed. A worker whose latest probe failed is quarantined: routing skips it
-- until a probe of another version passes.
CREATE TABLE worker_probes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    worker          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    cli_version     TEXT,
    verdict         TEXT NOT NULL CHECK (verdict IN ('pass', 'fail')),
    first_mismatch  TEXT,
    duration_ms     INTEGER NOT NULL DEFAULT 0,
    at_ms           INTEGER NOT NULL
);

CREATE INDEX worker_probes_by_worker ON worker_probes (worker, id);
