-- Auto-improve's decisions (docs/improve.md): what each scan did with each ranked candidate it
-- considered. `outcome` is one of
--   staged       a proposal was made (the judge's verdict in `verdict` when a judge is set)
--   skipped      a dedup layer (`layer`: identifier | semantic | temporal) found it known
--   fabricated   it names a file, module or `oxi` command the repository lacks (`detail`)
--   declined     the judge's verdict is below the thresholds (`verdict`)
--   judge_failed the judge gave no valid verdict (`detail`: the cause)
--   budget_held  the judge was not asked: improve.daily_usd or a global cap was reached
-- A candidate that was declined or found fabricated is not judged again by a later scan.
CREATE TABLE improve_decisions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    scan_id         INTEGER NOT NULL REFERENCES improve_scans(id),
    candidate_id    INTEGER NOT NULL REFERENCES improve_candidates(id),
    outcome         TEXT NOT NULL CHECK (outcome IN ('staged', 'skipped', 'fabricated',
                        'declined', 'judge_failed', 'budget_held')),
    layer           TEXT CHECK (layer IS NULL OR layer IN ('identifier', 'semantic', 'temporal')),
    detail          TEXT NOT NULL DEFAULT '',
    verdict         TEXT,              -- the judge's verdict, JSON, when it gave one
    call_id         INTEGER,           -- the judge's gateway_calls row
    at_ms           INTEGER NOT NULL,
    CHECK ((outcome = 'skipped') = (layer IS NOT NULL))
);

CREATE INDEX improve_decisions_by_scan ON improve_decisions (scan_id);
CREATE INDEX improve_decisions_by_candidate ON improve_decisions (candidate_id, outcome);
