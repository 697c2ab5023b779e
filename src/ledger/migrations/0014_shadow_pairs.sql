-- One row per shadow pair: an executor run and the same prompt run on the `[shadow]` choice in
-- a sibling worktree from the same commit, never delivered. Each side's outcome, whether its
-- verification was green, the files it touched, its size, tokens, cost and time; `shape_match`
-- is 1 when both sides' verification agreed and they touched the same set of files
-- (docs/shadow.md). Files are JSON arrays of paths.
CREATE TABLE shadow_pairs (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id                TEXT NOT NULL REFERENCES tasks(id),
    attempt                INTEGER NOT NULL,
    rule                   TEXT NOT NULL,
    primary_run_id         TEXT NOT NULL UNIQUE REFERENCES runs(id),
    shadow_run_id          TEXT REFERENCES runs(id),   -- NULL: the shadow never started
    primary_worker         TEXT NOT NULL,
    primary_model          TEXT,
    shadow_worker          TEXT NOT NULL,
    shadow_model           TEXT,
    primary_outcome        TEXT NOT NULL,
    shadow_outcome         TEXT NOT NULL,
    primary_green          INTEGER NOT NULL CHECK (primary_green IN (0, 1)),
    shadow_green           INTEGER NOT NULL CHECK (shadow_green IN (0, 1)),
    primary_files          TEXT NOT NULL,
    shadow_files           TEXT NOT NULL,
    overlap_files          INTEGER NOT NULL,
    primary_lines          INTEGER NOT NULL,
    shadow_lines           INTEGER NOT NULL,
    primary_tokens         INTEGER NOT NULL,
    shadow_tokens          INTEGER NOT NULL,
    primary_cost_microusd  INTEGER NOT NULL,
    shadow_cost_microusd   INTEGER NOT NULL,
    primary_ms             INTEGER NOT NULL,
    shadow_ms              INTEGER NOT NULL,
    shape_match            INTEGER NOT NULL CHECK (shape_match IN (0, 1)),
    at_ms                  INTEGER NOT NULL
);

CREATE INDEX shadow_pairs_by_time ON shadow_pairs (at_ms);
