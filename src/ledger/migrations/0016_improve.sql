-- Auto-improve (docs/improve.md): what a scan found outside the repository, what it proposed,
-- what the operator said about each proposal, and each source that failed. A candidate is
-- kept once per (source kind, url): a later scan that finds it again only updates `seen`.
CREATE TABLE improve_candidates (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    source_kind     TEXT NOT NULL,     -- github_releases | github_search | newsletter | x
    source_name     TEXT NOT NULL,
    url             TEXT NOT NULL,
    title           TEXT NOT NULL,
    summary         TEXT NOT NULL DEFAULT '',
    target          TEXT NOT NULL DEFAULT '',   -- the repository, page or account it is about
    published_at_ms INTEGER,
    first_seen_ms   INTEGER NOT NULL,
    last_seen_ms    INTEGER NOT NULL,
    embedding       BLOB,              -- little-endian f32s, from the gateway, cached
    embedding_model TEXT,
    UNIQUE (source_kind, url)
);

CREATE TABLE improve_scans (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    day             TEXT NOT NULL,     -- YYYY-MM-DD, UTC: one completed scan per day
    started_at_ms   INTEGER NOT NULL,
    finished_at_ms  INTEGER,
    candidates      INTEGER NOT NULL DEFAULT 0,
    proposed        INTEGER NOT NULL DEFAULT 0,
    failed_sources  INTEGER NOT NULL DEFAULT 0,
    ranking         TEXT NOT NULL DEFAULT 'bm25'   -- bm25 | bm25+vector
);

CREATE INDEX improve_scans_by_day ON improve_scans (day);

CREATE TABLE improve_proposals (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    scan_id         INTEGER NOT NULL REFERENCES improve_scans(id),
    candidate_id    INTEGER NOT NULL REFERENCES improve_candidates(id),
    rank            INTEGER NOT NULL,
    score           REAL NOT NULL,
    tier            INTEGER NOT NULL DEFAULT 2 CHECK (tier BETWEEN 0 AND 2),
    title           TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'proposed'
                    CHECK (status IN ('proposed', 'accepted', 'rejected')),
    task_id         TEXT,              -- the roadmap id written on accept
    created_at_ms   INTEGER NOT NULL,
    UNIQUE (candidate_id)
);

CREATE TABLE improve_verdicts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    proposal_id     INTEGER NOT NULL REFERENCES improve_proposals(id),
    verdict         TEXT NOT NULL CHECK (verdict IN ('accepted', 'rejected')),
    actor           TEXT NOT NULL,
    why             TEXT,
    at_ms           INTEGER NOT NULL
);

CREATE TABLE improve_source_failures (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    scan_id         INTEGER NOT NULL REFERENCES improve_scans(id),
    source_kind     TEXT NOT NULL,
    source_name     TEXT NOT NULL,
    cause           TEXT NOT NULL,
    at_ms           INTEGER NOT NULL
);

-- Paused by the health check, or resumed by `oxi improve unpause`: the latest row wins.
CREATE TABLE improve_pauses (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    paused          INTEGER NOT NULL CHECK (paused IN (0, 1)),
    reason          TEXT NOT NULL,
    actor           TEXT NOT NULL,
    at_ms           INTEGER NOT NULL
);
