-- 0008: tasks that come from GitHub issues, and the outside-text mark.
--
-- `tasks.outside_text`: the task's brief is text oxi did not get from the operator's own files
-- (an issue body anyone with access to the tracker may write). A screening step may apply to
-- such tasks before a worker reads them; governance applies to every task alike.
ALTER TABLE tasks ADD COLUMN outside_text INTEGER NOT NULL DEFAULT 0;

-- One row per task made from an issue: where it came from, what the last sync saw, and the one
-- comment oxi keeps on the issue (release mode only).
CREATE TABLE issue_tasks (
    task_id        TEXT PRIMARY KEY REFERENCES tasks(id),
    repo           TEXT NOT NULL,               -- owner/name
    number         INTEGER NOT NULL,
    url            TEXT NOT NULL,               -- the issue's html_url
    issue_state    TEXT NOT NULL,               -- 'open' | 'closed' at the last sync
    matches        INTEGER NOT NULL DEFAULT 1,  -- open, labelled and within the filters at the last sync
    body_bytes     INTEGER NOT NULL DEFAULT 0,  -- the issue body's size (over the brief limit: truncated)
    comment_id     INTEGER,                     -- the comment oxi writes and then edits
    comment_stage  TEXT,                        -- the task's stage that comment last reported
    comment_sha    TEXT,                        -- hash of the comment text last written
    synced_at_ms   INTEGER NOT NULL
);

CREATE UNIQUE INDEX issue_tasks_by_number ON issue_tasks (repo, number);
