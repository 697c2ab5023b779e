-- Release mode: a task's pull request, and the transition a follow-up needs (a delivered
-- task whose PR failed CI or got "changes requested" goes back to the queue on its branch).
ALTER TABLE tasks ADD COLUMN pr_number INTEGER;
ALTER TABLE tasks ADD COLUMN pr_url TEXT;

INSERT INTO task_transitions (from_state, to_state) VALUES ('delivered', 'queued');
