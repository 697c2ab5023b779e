-- What a held task waits for, as a word `oxi approve` can match instead of the hold's prose.
-- Existing held rows get the kind their reason text meant to `oxi approve` before this column:
-- work committed on its branch that needs approval (or whose review waited for budget room),
-- a cost over the estimate, a review that could not happen, else a plain hold.
ALTER TABLE tasks ADD COLUMN hold_kind TEXT;
UPDATE tasks SET hold_kind = CASE
    WHEN instr(held_reason, 'oxi approve') > 0 AND instr(held_reason, 'committed on') > 0
         AND instr(held_reason, 'its review waited for budget room') > 0 THEN 'review_over_budget'
    WHEN instr(held_reason, 'oxi approve') > 0 AND instr(held_reason, 'committed on') > 0
        THEN 'needs_approval'
    WHEN held_reason LIKE 'estimated cost%' THEN 'over_estimate'
    WHEN instr(held_reason, 'review') > 0 AND branch IS NOT NULL THEN 'review_unavailable'
    ELSE 'operator'
END
WHERE state = 'held';
