-- The explore phase: the planner's validated `OXI_PLAN` answer, one row per planner run that
-- gave one (a retry of the task reuses its latest plan), and the size of the prompt every
-- worker call was sent (a KPI: the executor's prompt is trimmed to the plan's steps).
CREATE TABLE plans (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id        TEXT NOT NULL REFERENCES tasks(id),
    run_id         TEXT NOT NULL REFERENCES runs(id),
    attempt        INTEGER NOT NULL,
    plan           TEXT NOT NULL,      -- the plan as JSON (secrets masked)
    created_at_ms  INTEGER NOT NULL
);

CREATE INDEX plans_by_task ON plans (task_id, id);

ALTER TABLE runs ADD COLUMN prompt_bytes INTEGER;
