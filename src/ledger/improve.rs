//! Auto-improve in the ledger (migrations 0016, 0017 and 0019): scans, the candidates they
//! found, the proposals staged from them, the operator's verdicts, the sources that failed,
//! the pause switch, the embeddings cache, and what each scan decided about each candidate. The rules live in `crate::improve`; this is storage only.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::queries::Db;
use super::{Queries, Result, pg};

/// A candidate as a source found it.
#[derive(Debug, Clone)]
pub struct NewCandidate<'a> {
    pub source_kind: &'a str,
    pub source_name: &'a str,
    pub url: &'a str,
    pub title: &'a str,
    pub summary: &'a str,
    pub target: &'a str,
    pub published_at_ms: Option<i64>,
    pub at_ms: i64,
}

/// A stored candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateRow {
    pub id: i64,
    pub source_kind: String,
    pub source_name: String,
    pub url: String,
    pub title: String,
    pub summary: String,
    pub target: String,
    pub published_at_ms: Option<i64>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// A scan, finished or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanRow {
    pub id: i64,
    pub day: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub candidates: i64,
    pub proposed: i64,
    pub failed_sources: i64,
    pub ranking: String,
}

/// How a scan ended.
#[derive(Debug, Clone)]
pub struct ScanEnd<'a> {
    pub candidates: i64,
    pub proposed: i64,
    pub failed_sources: i64,
    pub ranking: &'a str,
    pub at_ms: i64,
}

/// A proposal to stage.
#[derive(Debug, Clone)]
pub struct NewProposal<'a> {
    pub scan_id: i64,
    pub candidate_id: i64,
    pub rank: i64,
    pub score: f64,
    pub tier: u8,
    pub title: &'a str,
    pub body: &'a str,
    pub at_ms: i64,
}

/// A proposal with what it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProposalRow {
    pub id: i64,
    pub scan_id: i64,
    pub rank: i64,
    pub score: f64,
    pub tier: i64,
    pub title: String,
    pub body: String,
    pub status: String,
    pub task_id: Option<String>,
    pub source_kind: String,
    pub source_name: String,
    pub url: String,
    pub created_at_ms: i64,
}

/// A source that failed during a scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceFailureRow {
    pub scan_id: i64,
    pub source_kind: String,
    pub source_name: String,
    pub cause: String,
    pub at_ms: i64,
}

/// What a scan decided about one candidate (`improve_decisions`).
#[derive(Debug, Clone)]
pub struct NewDecision<'a> {
    pub scan_id: i64,
    pub candidate_id: i64,
    /// `staged`, `skipped`, `fabricated`, `declined`, `judge_failed` or `budget_held`.
    pub outcome: &'a str,
    /// The dedup layer of a `skipped` one.
    pub layer: Option<&'a str>,
    pub detail: &'a str,
    /// The judge's verdict as JSON, when it gave one.
    pub verdict: Option<&'a str>,
    pub call_id: Option<i64>,
    pub at_ms: i64,
}

/// A stored decision with its candidate's title, source and URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionRow {
    pub candidate_id: i64,
    pub outcome: String,
    pub layer: Option<String>,
    pub detail: String,
    pub verdict: Option<String>,
    pub title: String,
    pub url: String,
    pub source_name: String,
    pub source_kind: String,
}

/// An earlier proposal as the dedup layers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownProposal {
    pub id: i64,
    pub title: String,
    pub url: String,
    pub source_kind: String,
    pub target: String,
    pub created_at_ms: i64,
}

/// Auto-improve's figures over a window, for `oxi report`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ImproveTotals {
    pub scans: u64,
    pub emitted: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// The improve role's gateway spend (embeddings and judge), in micro-USD.
    pub spend_microusd: i64,
    /// When the latest scan finished, ever (not only in the window).
    pub last_scan_ms: Option<i64>,
}

pub(super) const PROPOSAL_COLUMNS: &str =
    "p.id, p.scan_id, p.rank, p.score, p.tier, p.title, p.body,
    p.status, p.task_id, c.source_kind, c.source_name, c.url, p.created_at_ms";

fn proposal_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProposalRow> {
    Ok(ProposalRow {
        id: r.get(0)?,
        scan_id: r.get(1)?,
        rank: r.get(2)?,
        score: r.get(3)?,
        tier: r.get(4)?,
        title: r.get(5)?,
        body: r.get(6)?,
        status: r.get(7)?,
        task_id: r.get(8)?,
        source_kind: r.get(9)?,
        source_name: r.get(10)?,
        url: r.get(11)?,
        created_at_ms: r.get(12)?,
    })
}

fn scan_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ScanRow> {
    Ok(ScanRow {
        id: r.get(0)?,
        day: r.get(1)?,
        started_at_ms: r.get(2)?,
        finished_at_ms: r.get(3)?,
        candidates: r.get(4)?,
        proposed: r.get(5)?,
        failed_sources: r.get(6)?,
        ranking: r.get(7)?,
    })
}

pub(super) const SCAN_COLUMNS: &str =
    "id, day, started_at_ms, finished_at_ms, candidates, proposed, failed_sources, ranking";

impl Queries<'_> {
    /// The cached vectors of `hashes` (text SHA-256s) for `model`, in order; `None` where a
    /// text has none. Read a few hundred hashes per statement: one statement per text made
    /// reading 15,000 cached vectors cost most of a scan's ranking time.
    pub(crate) fn improve_embeddings(
        &self,
        model: &str,
        hashes: &[String],
    ) -> Result<Vec<Option<Vec<f32>>>> {
        const CHUNK: usize = 500;
        if let Db::Pg(pg) = self.db {
            return pg::improve_embeddings(pg, model, hashes);
        }
        let mut found: std::collections::HashMap<String, Vec<f32>> =
            std::collections::HashMap::with_capacity(hashes.len());
        for chunk in hashes.chunks(CHUNK) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let mut stmt = self.sqlite()?.prepare_cached(&format!(
                "SELECT text_hash, vector FROM improve_embeddings
                 WHERE model = ? AND text_hash IN ({marks})"
            ))?;
            let params = std::iter::once(model).chain(chunk.iter().map(String::as_str));
            let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
            while let Some(row) = rows.next()? {
                let hash: String = row.get(0)?;
                let blob: Vec<u8> = row.get(1)?;
                found.insert(hash, from_le_bytes(&blob));
            }
        }
        Ok(hashes.iter().map(|h| found.get(h).cloned()).collect())
    }

    /// The width of `model`'s cached vectors, if any is cached.
    pub(crate) fn improve_embedding_dims(&self, model: &str) -> Result<Option<usize>> {
        if let Db::Pg(pg) = self.db {
            return pg::improve_embedding_dims(pg, model);
        }
        let dims: Option<i64> = self
            .sqlite()?
            .query_row(
                "SELECT dims FROM improve_embeddings WHERE model = ?1 LIMIT 1",
                [model],
                |r| r.get(0),
            )
            .optional()?;
        Ok(dims.and_then(|d| usize::try_from(d).ok()))
    }

    /// Caches `vectors` of `model` by text hash (a hash cached already keeps its vector).
    pub(crate) fn put_improve_embeddings(
        &self,
        model: &str,
        vectors: &[(String, Vec<f32>)],
        at_ms: i64,
    ) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::put_improve_embeddings(pg, model, vectors, at_ms);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "INSERT OR IGNORE INTO improve_embeddings (model, text_hash, dims, vector, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (hash, vector) in vectors {
            let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
            stmt.execute(params![
                model,
                hash,
                i64::try_from(vector.len()).unwrap_or(i64::MAX),
                bytes,
                at_ms
            ])?;
        }
        Ok(())
    }

    pub(crate) fn begin_improve_scan(&self, day: &str, at_ms: i64) -> Result<i64> {
        if let Db::Pg(pg) = self.db {
            return pg::begin_improve_scan(pg, day, at_ms);
        }
        self.sqlite()?.execute(
            "INSERT INTO improve_scans (day, started_at_ms) VALUES (?1, ?2)",
            params![day, at_ms],
        )?;
        Ok(self.sqlite()?.last_insert_rowid())
    }

    pub(crate) fn finish_improve_scan(&self, id: i64, end: &ScanEnd<'_>) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::finish_improve_scan(pg, id, end);
        }
        self.sqlite()?.execute(
            "UPDATE improve_scans SET finished_at_ms = ?2, candidates = ?3, proposed = ?4,
                 failed_sources = ?5, ranking = ?6 WHERE id = ?1",
            params![
                id,
                end.at_ms,
                end.candidates,
                end.proposed,
                end.failed_sources,
                end.ranking
            ],
        )?;
        Ok(())
    }

    /// The finished scan of `day`, if one ran.
    pub(crate) fn improve_scan_on(&self, day: &str) -> Result<Option<ScanRow>> {
        if let Db::Pg(pg) = self.db {
            return pg::improve_scan_on(pg, day);
        }
        Ok(self
            .sqlite()?
            .query_row(
                &format!(
                    "SELECT {SCAN_COLUMNS} FROM improve_scans
                     WHERE day = ?1 AND finished_at_ms IS NOT NULL ORDER BY id DESC LIMIT 1"
                ),
                [day],
                scan_row,
            )
            .optional()?)
    }

    /// The latest finished scan.
    pub(crate) fn last_improve_scan(&self) -> Result<Option<ScanRow>> {
        if let Db::Pg(pg) = self.db {
            return pg::last_improve_scan(pg);
        }
        Ok(self
            .sqlite()?
            .query_row(
                &format!(
                    "SELECT {SCAN_COLUMNS} FROM improve_scans
                     WHERE finished_at_ms IS NOT NULL ORDER BY id DESC LIMIT 1"
                ),
                [],
                scan_row,
            )
            .optional()?)
    }

    /// Stores a candidate, or refreshes the one already found at its url; returns its id.
    pub(crate) fn upsert_improve_candidate(&self, c: &NewCandidate<'_>) -> Result<i64> {
        if let Db::Pg(pg) = self.db {
            return pg::upsert_improve_candidate(pg, c);
        }
        Ok(self.sqlite()?.query_row(
            "INSERT INTO improve_candidates (source_kind, source_name, url, title, summary,
                 target, published_at_ms, first_seen_ms, last_seen_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
             ON CONFLICT (source_kind, url) DO UPDATE SET
                 title = excluded.title, summary = excluded.summary,
                 last_seen_ms = excluded.last_seen_ms
             RETURNING id",
            params![
                c.source_kind,
                c.source_name,
                c.url,
                c.title,
                c.summary,
                c.target,
                c.published_at_ms,
                c.at_ms
            ],
            |r| r.get(0),
        )?)
    }

    /// Candidates seen at or after `since_ms` that no proposal was made from yet, and that no
    /// judge declined and no scan found fabricated (those are not judged twice).
    pub(crate) fn unproposed_improve_candidates(&self, since_ms: i64) -> Result<Vec<CandidateRow>> {
        if let Db::Pg(pg) = self.db {
            return pg::unproposed_improve_candidates(pg, since_ms);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT c.id, c.source_kind, c.source_name, c.url, c.title, c.summary, c.target,
                    c.published_at_ms, c.first_seen_ms, c.last_seen_ms
             FROM improve_candidates c
             WHERE c.last_seen_ms >= ?1
               AND NOT EXISTS (SELECT 1 FROM improve_proposals p WHERE p.candidate_id = c.id)
               AND NOT EXISTS (SELECT 1 FROM improve_decisions d WHERE d.candidate_id = c.id
                               AND d.outcome IN ('declined', 'fabricated'))
             ORDER BY c.id",
        )?;
        let rows = stmt
            .query_map([since_ms], |r| {
                Ok(CandidateRow {
                    id: r.get(0)?,
                    source_kind: r.get(1)?,
                    source_name: r.get(2)?,
                    url: r.get(3)?,
                    title: r.get(4)?,
                    summary: r.get(5)?,
                    target: r.get(6)?,
                    published_at_ms: r.get(7)?,
                    first_seen_ms: r.get(8)?,
                    last_seen_ms: r.get(9)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Records what a scan decided about a candidate.
    pub(crate) fn insert_improve_decision(&self, d: &NewDecision<'_>) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::insert_improve_decision(pg, d);
        }
        self.sqlite()?.execute(
            "INSERT INTO improve_decisions (scan_id, candidate_id, outcome, layer, detail,
                 verdict, call_id, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                d.scan_id,
                d.candidate_id,
                d.outcome,
                d.layer,
                d.detail,
                d.verdict,
                d.call_id,
                d.at_ms
            ],
        )?;
        Ok(())
    }

    /// What `scan_id` decided, in the order it decided.
    pub(crate) fn improve_decisions(&self, scan_id: i64) -> Result<Vec<DecisionRow>> {
        if let Db::Pg(pg) = self.db {
            return pg::improve_decisions(pg, scan_id);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT d.candidate_id, d.outcome, d.layer, d.detail, d.verdict, c.title, c.url,
                    c.source_name, c.source_kind
             FROM improve_decisions d JOIN improve_candidates c ON c.id = d.candidate_id
             WHERE d.scan_id = ?1 ORDER BY d.id",
        )?;
        let rows = stmt
            .query_map([scan_id], |r| {
                Ok(DecisionRow {
                    candidate_id: r.get(0)?,
                    outcome: r.get(1)?,
                    layer: r.get(2)?,
                    detail: r.get(3)?,
                    verdict: r.get(4)?,
                    title: r.get(5)?,
                    url: r.get(6)?,
                    source_name: r.get(7)?,
                    source_kind: r.get(8)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Every proposal made so far, for the identifier and temporal dedup layers.
    pub(crate) fn improve_known_proposals(&self) -> Result<Vec<KnownProposal>> {
        if let Db::Pg(pg) = self.db {
            return pg::improve_known_proposals(pg);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT p.id, p.title, c.url, c.source_kind, c.target, p.created_at_ms
             FROM improve_proposals p JOIN improve_candidates c ON c.id = p.candidate_id
             ORDER BY p.id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(KnownProposal {
                    id: r.get(0)?,
                    title: r.get(1)?,
                    url: r.get(2)?,
                    source_kind: r.get(3)?,
                    target: r.get(4)?,
                    created_at_ms: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Roadmap tasks (id, title): every one when `touched_since_ms` is `None`; else the open
    /// ones and those updated since then (the semantic dedup layer's reference).
    pub(crate) fn improve_task_titles(
        &self,
        touched_since_ms: Option<i64>,
    ) -> Result<Vec<(String, String)>> {
        if let Db::Pg(pg) = self.db {
            return pg::improve_task_titles(pg, touched_since_ms);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT id, title FROM tasks
             WHERE in_roadmap = 1
               AND (?1 IS NULL
                    OR state NOT IN ('merged', 'done', 'failed', 'rejected', 'cancelled',
                                     'abandoned')
                    OR updated_at_ms >= ?1)
             ORDER BY roadmap_order, id",
        )?;
        let rows = stmt
            .query_map([touched_since_ms], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Auto-improve's figures for proposals made and spend since `since_ms`.
    pub(crate) fn improve_totals(&self, since_ms: i64) -> Result<ImproveTotals> {
        if let Db::Pg(pg) = self.db {
            return pg::improve_totals(pg, since_ms);
        }
        let conn = self.sqlite()?;
        let (scans, last_scan_ms): (i64, Option<i64>) = conn.query_row(
            "SELECT COALESCE(SUM(started_at_ms >= ?1), 0), MAX(finished_at_ms)
             FROM improve_scans WHERE finished_at_ms IS NOT NULL",
            [since_ms],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (emitted, accepted, rejected): (i64, i64, i64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(status = 'accepted'), 0),
                    COALESCE(SUM(status = 'rejected'), 0)
             FROM improve_proposals WHERE created_at_ms >= ?1",
            [since_ms],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let spend: i64 = conn.query_row(
            "SELECT COALESCE(SUM(actual_microusd), 0) FROM gateway_calls
             WHERE role = 'improve' AND created_at_ms >= ?1",
            [since_ms],
            |r| r.get(0),
        )?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(ImproveTotals {
            scans: count(scans),
            emitted: count(emitted),
            accepted: count(accepted),
            rejected: count(rejected),
            spend_microusd: spend,
            last_scan_ms,
        })
    }

    pub(crate) fn insert_improve_proposal(&self, p: &NewProposal<'_>) -> Result<i64> {
        if let Db::Pg(pg) = self.db {
            return pg::insert_improve_proposal(pg, p);
        }
        self.sqlite()?.execute(
            "INSERT INTO improve_proposals (scan_id, candidate_id, rank, score, tier, title,
                 body, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                p.scan_id,
                p.candidate_id,
                p.rank,
                p.score,
                p.tier,
                p.title,
                p.body,
                p.at_ms
            ],
        )?;
        Ok(self.sqlite()?.last_insert_rowid())
    }

    /// Proposals, newest scan first and best rank first; only `status` when given.
    pub(crate) fn improve_proposals(&self, status: Option<&str>) -> Result<Vec<ProposalRow>> {
        if let Db::Pg(pg) = self.db {
            return pg::improve_proposals(pg, status);
        }
        let mut stmt = self.sqlite()?.prepare_cached(&format!(
            "SELECT {PROPOSAL_COLUMNS} FROM improve_proposals p
             JOIN improve_candidates c ON c.id = p.candidate_id
             WHERE ?1 IS NULL OR p.status = ?1
             ORDER BY p.scan_id DESC, p.rank"
        ))?;
        let rows = stmt
            .query_map([status], proposal_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    pub(crate) fn improve_proposal(&self, id: i64) -> Result<Option<ProposalRow>> {
        if let Db::Pg(pg) = self.db {
            return pg::improve_proposal(pg, id);
        }
        Ok(self
            .sqlite()?
            .query_row(
                &format!(
                    "SELECT {PROPOSAL_COLUMNS} FROM improve_proposals p
                     JOIN improve_candidates c ON c.id = p.candidate_id WHERE p.id = ?1"
                ),
                [id],
                proposal_row,
            )
            .optional()?)
    }

    /// Records the operator's verdict on a proposal.
    pub(crate) fn decide_improve_proposal(
        &self,
        id: i64,
        verdict: &str,
        task_id: Option<&str>,
        actor: &str,
        why: Option<&str>,
        at_ms: i64,
    ) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::decide_improve_proposal(pg, id, verdict, task_id, actor, why, at_ms);
        }
        self.sqlite()?.execute(
            "UPDATE improve_proposals SET status = ?2, task_id = ?3 WHERE id = ?1",
            params![id, verdict, task_id],
        )?;
        self.sqlite()?.execute(
            "INSERT INTO improve_verdicts (proposal_id, verdict, actor, why, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, verdict, actor, why, at_ms],
        )?;
        Ok(())
    }

    pub(crate) fn record_improve_source_failure(&self, f: &SourceFailureRow) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::record_improve_source_failure(pg, f);
        }
        self.sqlite()?.execute(
            "INSERT INTO improve_source_failures (scan_id, source_kind, source_name, cause, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![f.scan_id, f.source_kind, f.source_name, f.cause, f.at_ms],
        )?;
        Ok(())
    }

    pub(crate) fn improve_source_failures(&self, scan_id: i64) -> Result<Vec<SourceFailureRow>> {
        if let Db::Pg(pg) = self.db {
            return pg::improve_source_failures(pg, scan_id);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT scan_id, source_kind, source_name, cause, at_ms
             FROM improve_source_failures WHERE scan_id = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map([scan_id], |r| {
                Ok(SourceFailureRow {
                    scan_id: r.get(0)?,
                    source_kind: r.get(1)?,
                    source_name: r.get(2)?,
                    cause: r.get(3)?,
                    at_ms: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Proposal counts by status.
    pub(crate) fn improve_proposal_counts(&self) -> Result<Vec<(String, i64)>> {
        if let Db::Pg(pg) = self.db {
            return pg::improve_proposal_counts(pg);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT status, COUNT(*) FROM improve_proposals GROUP BY status ORDER BY status",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Proposals emitted in `[from_ms, to_ms)`, and how many of them were accepted.
    pub(crate) fn improve_window(&self, from_ms: i64, to_ms: i64) -> Result<(u64, u64)> {
        if let Db::Pg(pg) = self.db {
            return pg::improve_window(pg, from_ms, to_ms);
        }
        let (emitted, accepted): (i64, i64) = self.sqlite()?.query_row(
            "SELECT COUNT(*), COALESCE(SUM(status = 'accepted'), 0) FROM improve_proposals
             WHERE created_at_ms >= ?1 AND created_at_ms < ?2",
            params![from_ms, to_ms],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((
            u64::try_from(emitted).unwrap_or(0),
            u64::try_from(accepted).unwrap_or(0),
        ))
    }

    /// The last time the pause switch was released (`oxi improve unpause`), if ever.
    pub(crate) fn improve_unpaused_at(&self) -> Result<Option<i64>> {
        if let Db::Pg(pg) = self.db {
            return pg::improve_unpaused_at(pg);
        }
        Ok(self
            .sqlite()?
            .query_row(
                "SELECT MAX(at_ms) FROM improve_pauses WHERE paused = 0",
                [],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// The pause switch: `Some(reason)` while paused.
    pub(crate) fn improve_paused(&self) -> Result<Option<String>> {
        if let Db::Pg(pg) = self.db {
            return pg::improve_paused(pg);
        }
        let latest: Option<(bool, String)> = self
            .sqlite()?
            .query_row(
                "SELECT paused, reason FROM improve_pauses ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(latest.and_then(|(paused, reason)| paused.then_some(reason)))
    }

    pub(crate) fn set_improve_paused(
        &self,
        paused: bool,
        reason: &str,
        actor: &str,
        at_ms: i64,
    ) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::set_improve_paused(pg, paused, reason, actor, at_ms);
        }
        self.sqlite()?.execute(
            "INSERT INTO improve_pauses (paused, reason, actor, at_ms) VALUES (?1, ?2, ?3, ?4)",
            params![paused, reason, actor, at_ms],
        )?;
        Ok(())
    }
}

/// A stored vector: little-endian f32s (a trailing partial value is dropped).
pub(super) fn from_le_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
