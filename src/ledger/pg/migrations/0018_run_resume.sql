-- 0018 (PostgreSQL twin of SQLite's 0018): a retry that continued the agent's session instead
-- of starting from nothing: the run whose session (claude's session id, codex's thread id,
-- `runs.session_id`) it resumed. NULL for a first attempt and for a retry that started fresh
-- (the `session_fresh` event says why).
ALTER TABLE runs ADD COLUMN resumed_from TEXT;

CREATE INDEX runs_by_resumed_from ON runs (resumed_from) WHERE resumed_from IS NOT NULL;
