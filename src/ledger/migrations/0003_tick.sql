-- What the tick needs: a task's branch and the failure fed to its next attempt, the supervisor
-- of each run (so a run whose supervisor died is reaped at once), verification results per
-- tier (a KPI), and the two transitions an operator approval needs.
ALTER TABLE tasks ADD COLUMN branch TEXT;              -- oxi/<id>-<slug>, once dispatched
ALTER TABLE tasks ADD COLUMN base_commit TEXT;         -- the base-branch commit the branch started from
ALTER TABLE tasks ADD COLUMN last_failure TEXT;        -- what went wrong last time, for the next prompt

ALTER TABLE runs ADD COLUMN supervisor_pid INTEGER;    -- the oxi process that supervises it

CREATE TABLE verify_results (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       TEXT NOT NULL REFERENCES runs(id),
    task_id      TEXT REFERENCES tasks(id),
    tier         TEXT NOT NULL,                        -- tier0, tier1, tier2
    name         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('passed', 'failed', 'timed_out', 'error')),
    exit_code    INTEGER,
    duration_ms  INTEGER NOT NULL,
    log_path     TEXT,
    at_ms        INTEGER NOT NULL
);

CREATE INDEX verify_results_by_run ON verify_results (run_id);
CREATE INDEX verify_results_by_time ON verify_results (at_ms);

-- `oxi approve` on a task held for approval after a green verification delivers it; a held
-- task can also wait for a retry.
INSERT INTO task_transitions (from_state, to_state) VALUES
    ('held', 'deliver_pending'), ('held', 'retry_wait');
