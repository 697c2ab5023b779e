//! Auto-improve's tables on Postgres: the twins of `ledger/improve.rs` (scans, candidates,
//! proposals and verdicts, failed sources, the pause switch, the embeddings cache). The BM25
//! index is not here on either backend: each scan builds it in memory (docs/postgres.md).

use std::collections::HashMap;

use postgres::Row;

use super::{Pg, execute, query, query_one, query_opt};
use crate::ledger::improve::{DecisionRow, ImproveTotals, KnownProposal, NewDecision};
use crate::ledger::improve::{PROPOSAL_COLUMNS, SCAN_COLUMNS, from_le_bytes};
use crate::ledger::{
    CandidateRow, NewCandidate, NewProposal, ProposalRow, Result, ScanEnd, ScanRow,
    SourceFailureRow,
};

fn proposal_row(r: &Row) -> Result<ProposalRow> {
    Ok(ProposalRow {
        id: r.try_get(0)?,
        scan_id: r.try_get(1)?,
        rank: r.try_get(2)?,
        score: r.try_get(3)?,
        tier: r.try_get(4)?,
        title: r.try_get(5)?,
        body: r.try_get(6)?,
        status: r.try_get(7)?,
        task_id: r.try_get(8)?,
        source_kind: r.try_get(9)?,
        source_name: r.try_get(10)?,
        url: r.try_get(11)?,
        created_at_ms: r.try_get(12)?,
    })
}

fn scan_row(r: &Row) -> Result<ScanRow> {
    Ok(ScanRow {
        id: r.try_get(0)?,
        day: r.try_get(1)?,
        started_at_ms: r.try_get(2)?,
        finished_at_ms: r.try_get(3)?,
        candidates: r.try_get(4)?,
        proposed: r.try_get(5)?,
        failed_sources: r.try_get(6)?,
        ranking: r.try_get(7)?,
    })
}

/// The cached vectors of `hashes` for `model`, in order (one statement for all of them).
pub(in crate::ledger) fn improve_embeddings(
    pg: Pg<'_>,
    model: &str,
    hashes: &[String],
) -> Result<Vec<Option<Vec<f32>>>> {
    let cached: HashMap<String, Vec<u8>> = query(
        pg,
        "SELECT text_hash, vector FROM improve_embeddings
         WHERE model = $1 AND text_hash = ANY($2)",
        &[&model, &hashes],
    )?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect::<Result<_>>()?;
    Ok(hashes
        .iter()
        .map(|h| cached.get(h).map(|b| from_le_bytes(b)))
        .collect())
}

pub(in crate::ledger) fn improve_embedding_dims(pg: Pg<'_>, model: &str) -> Result<Option<usize>> {
    let dims: Option<i64> = query_opt(
        pg,
        "SELECT dims FROM improve_embeddings WHERE model = $1 LIMIT 1",
        &[&model],
    )?
    .map(|r| r.try_get(0))
    .transpose()?;
    Ok(dims.and_then(|d| usize::try_from(d).ok()))
}

/// Caches `vectors` by text hash in one statement; a hash cached already keeps its vector
/// (and of two equal hashes in one batch the first is kept, as sqlite's `INSERT OR IGNORE`).
pub(in crate::ledger) fn put_improve_embeddings(
    pg: Pg<'_>,
    model: &str,
    vectors: &[(String, Vec<f32>)],
    at_ms: i64,
) -> Result<()> {
    let hashes: Vec<&str> = vectors.iter().map(|(h, _)| h.as_str()).collect();
    let dims: Vec<i64> = vectors
        .iter()
        .map(|(_, v)| i64::try_from(v.len()).unwrap_or(i64::MAX))
        .collect();
    let bytes: Vec<Vec<u8>> = vectors
        .iter()
        .map(|(_, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    execute(
        pg,
        "INSERT INTO improve_embeddings (model, text_hash, dims, vector, at_ms)
         SELECT $1, h, d, v, $5
           FROM UNNEST($2::TEXT[], $3::BIGINT[], $4::BYTEA[]) WITH ORDINALITY AS b (h, d, v, n)
          ORDER BY n
         ON CONFLICT (model, text_hash) DO NOTHING",
        &[&model, &hashes, &dims, &bytes, &at_ms],
    )?;
    Ok(())
}

pub(in crate::ledger) fn begin_improve_scan(pg: Pg<'_>, day: &str, at_ms: i64) -> Result<i64> {
    Ok(query_one(
        pg,
        "INSERT INTO improve_scans (day, started_at_ms) VALUES ($1, $2) RETURNING id",
        &[&day, &at_ms],
    )?
    .try_get(0)?)
}

pub(in crate::ledger) fn finish_improve_scan(pg: Pg<'_>, id: i64, end: &ScanEnd<'_>) -> Result<()> {
    execute(
        pg,
        "UPDATE improve_scans SET finished_at_ms = $2, candidates = $3, proposed = $4,
             failed_sources = $5, ranking = $6 WHERE id = $1",
        &[
            &id,
            &end.at_ms,
            &end.candidates,
            &end.proposed,
            &end.failed_sources,
            &end.ranking,
        ],
    )?;
    Ok(())
}

pub(in crate::ledger) fn improve_scan_on(pg: Pg<'_>, day: &str) -> Result<Option<ScanRow>> {
    query_opt(
        pg,
        &format!(
            "SELECT {SCAN_COLUMNS} FROM improve_scans
             WHERE day = $1 AND finished_at_ms IS NOT NULL ORDER BY id DESC LIMIT 1"
        ),
        &[&day],
    )?
    .as_ref()
    .map(scan_row)
    .transpose()
}

pub(in crate::ledger) fn last_improve_scan(pg: Pg<'_>) -> Result<Option<ScanRow>> {
    query_opt(
        pg,
        &format!(
            "SELECT {SCAN_COLUMNS} FROM improve_scans
             WHERE finished_at_ms IS NOT NULL ORDER BY id DESC LIMIT 1"
        ),
        &[],
    )?
    .as_ref()
    .map(scan_row)
    .transpose()
}

pub(in crate::ledger) fn upsert_improve_candidate(pg: Pg<'_>, c: &NewCandidate<'_>) -> Result<i64> {
    Ok(query_one(
        pg,
        "INSERT INTO improve_candidates (source_kind, source_name, url, title, summary,
             target, published_at_ms, first_seen_ms, last_seen_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
         ON CONFLICT (source_kind, url) DO UPDATE SET
             title = excluded.title, summary = excluded.summary,
             last_seen_ms = excluded.last_seen_ms
         RETURNING id",
        &[
            &c.source_kind,
            &c.source_name,
            &c.url,
            &c.title,
            &c.summary,
            &c.target,
            &c.published_at_ms,
            &c.at_ms,
        ],
    )?
    .try_get(0)?)
}

pub(in crate::ledger) fn unproposed_improve_candidates(
    pg: Pg<'_>,
    since_ms: i64,
) -> Result<Vec<CandidateRow>> {
    query(
        pg,
        "SELECT c.id, c.source_kind, c.source_name, c.url, c.title, c.summary, c.target,
                c.published_at_ms, c.first_seen_ms, c.last_seen_ms
         FROM improve_candidates c
         WHERE c.last_seen_ms >= $1
           AND NOT EXISTS (SELECT 1 FROM improve_proposals p WHERE p.candidate_id = c.id)
         ORDER BY c.id",
        &[&since_ms],
    )?
    .iter()
    .map(|r| {
        Ok(CandidateRow {
            id: r.try_get(0)?,
            source_kind: r.try_get(1)?,
            source_name: r.try_get(2)?,
            url: r.try_get(3)?,
            title: r.try_get(4)?,
            summary: r.try_get(5)?,
            target: r.try_get(6)?,
            published_at_ms: r.try_get(7)?,
            first_seen_ms: r.try_get(8)?,
            last_seen_ms: r.try_get(9)?,
        })
    })
    .collect()
}

pub(in crate::ledger) fn insert_improve_proposal(pg: Pg<'_>, p: &NewProposal<'_>) -> Result<i64> {
    Ok(query_one(
        pg,
        "INSERT INTO improve_proposals (scan_id, candidate_id, rank, score, tier, title,
             body, created_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING id",
        &[
            &p.scan_id,
            &p.candidate_id,
            &p.rank,
            &p.score,
            &i64::from(p.tier),
            &p.title,
            &p.body,
            &p.at_ms,
        ],
    )?
    .try_get(0)?)
}

/// Proposals, newest scan first and best rank first (then oldest first, where sqlite's
/// row order decided); only `status` when given.
pub(in crate::ledger) fn improve_proposals(
    pg: Pg<'_>,
    status: Option<&str>,
) -> Result<Vec<ProposalRow>> {
    query(
        pg,
        &format!(
            "SELECT {PROPOSAL_COLUMNS} FROM improve_proposals p
             JOIN improve_candidates c ON c.id = p.candidate_id
             WHERE $1::TEXT IS NULL OR p.status = $1
             ORDER BY p.scan_id DESC, p.rank, p.id"
        ),
        &[&status],
    )?
    .iter()
    .map(proposal_row)
    .collect()
}

pub(in crate::ledger) fn improve_proposal(pg: Pg<'_>, id: i64) -> Result<Option<ProposalRow>> {
    query_opt(
        pg,
        &format!(
            "SELECT {PROPOSAL_COLUMNS} FROM improve_proposals p
             JOIN improve_candidates c ON c.id = p.candidate_id WHERE p.id = $1"
        ),
        &[&id],
    )?
    .as_ref()
    .map(proposal_row)
    .transpose()
}

/// The operator's verdict on a proposal: its status, and the verdict's own row.
pub(in crate::ledger) fn decide_improve_proposal(
    pg: Pg<'_>,
    id: i64,
    verdict: &str,
    task_id: Option<&str>,
    actor: &str,
    why: Option<&str>,
    at_ms: i64,
) -> Result<()> {
    execute(
        pg,
        "UPDATE improve_proposals SET status = $2, task_id = $3 WHERE id = $1",
        &[&id, &verdict, &task_id],
    )?;
    execute(
        pg,
        "INSERT INTO improve_verdicts (proposal_id, verdict, actor, why, at_ms)
         VALUES ($1, $2, $3, $4, $5)",
        &[&id, &verdict, &actor, &why, &at_ms],
    )?;
    Ok(())
}

pub(in crate::ledger) fn record_improve_source_failure(
    pg: Pg<'_>,
    f: &SourceFailureRow,
) -> Result<()> {
    execute(
        pg,
        "INSERT INTO improve_source_failures (scan_id, source_kind, source_name, cause, at_ms)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &f.scan_id,
            &f.source_kind,
            &f.source_name,
            &f.cause,
            &f.at_ms,
        ],
    )?;
    Ok(())
}

pub(in crate::ledger) fn improve_source_failures(
    pg: Pg<'_>,
    scan_id: i64,
) -> Result<Vec<SourceFailureRow>> {
    query(
        pg,
        "SELECT scan_id, source_kind, source_name, cause, at_ms
         FROM improve_source_failures WHERE scan_id = $1 ORDER BY id",
        &[&scan_id],
    )?
    .iter()
    .map(|r| {
        Ok(SourceFailureRow {
            scan_id: r.try_get(0)?,
            source_kind: r.try_get(1)?,
            source_name: r.try_get(2)?,
            cause: r.try_get(3)?,
            at_ms: r.try_get(4)?,
        })
    })
    .collect()
}

pub(in crate::ledger) fn improve_proposal_counts(pg: Pg<'_>) -> Result<Vec<(String, i64)>> {
    query(
        pg,
        "SELECT status, COUNT(*) FROM improve_proposals GROUP BY status
         ORDER BY status COLLATE \"C\"",
        &[],
    )?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}

pub(in crate::ledger) fn improve_window(
    pg: Pg<'_>,
    from_ms: i64,
    to_ms: i64,
) -> Result<(u64, u64)> {
    let r = query_one(
        pg,
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE status = 'accepted') FROM improve_proposals
         WHERE created_at_ms >= $1 AND created_at_ms < $2",
        &[&from_ms, &to_ms],
    )?;
    let (emitted, accepted): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
    Ok((
        u64::try_from(emitted).unwrap_or(0),
        u64::try_from(accepted).unwrap_or(0),
    ))
}

pub(in crate::ledger) fn improve_unpaused_at(pg: Pg<'_>) -> Result<Option<i64>> {
    Ok(query_one(
        pg,
        "SELECT MAX(at_ms) FROM improve_pauses WHERE NOT paused",
        &[],
    )?
    .try_get(0)?)
}

pub(in crate::ledger) fn improve_paused(pg: Pg<'_>) -> Result<Option<String>> {
    let latest: Option<(bool, String)> = query_opt(
        pg,
        "SELECT paused, reason FROM improve_pauses ORDER BY id DESC LIMIT 1",
        &[],
    )?
    .map(|r| Ok::<_, postgres::Error>((r.try_get(0)?, r.try_get(1)?)))
    .transpose()?;
    Ok(latest.and_then(|(paused, reason)| paused.then_some(reason)))
}

pub(in crate::ledger) fn set_improve_paused(
    pg: Pg<'_>,
    paused: bool,
    reason: &str,
    actor: &str,
    at_ms: i64,
) -> Result<()> {
    execute(
        pg,
        "INSERT INTO improve_pauses (paused, reason, actor, at_ms) VALUES ($1, $2, $3, $4)",
        &[&paused, &reason, &actor, &at_ms],
    )?;
    Ok(())
}

pub(in crate::ledger) fn insert_improve_decision(pg: Pg<'_>, d: &NewDecision<'_>) -> Result<()> {
    execute(
        pg,
        "INSERT INTO improve_decisions (scan_id, candidate_id, outcome, layer, detail,
             verdict, call_id, at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &d.scan_id,
            &d.candidate_id,
            &d.outcome,
            &d.layer,
            &d.detail,
            &d.verdict,
            &d.call_id,
            &d.at_ms,
        ],
    )?;
    Ok(())
}

pub(in crate::ledger) fn improve_decisions(pg: Pg<'_>, scan_id: i64) -> Result<Vec<DecisionRow>> {
    query(
        pg,
        "SELECT d.candidate_id, d.outcome, d.layer, d.detail, d.verdict, c.title, c.url,
                c.source_name, c.source_kind
         FROM improve_decisions d JOIN improve_candidates c ON c.id = d.candidate_id
         WHERE d.scan_id = $1 ORDER BY d.id",
        &[&scan_id],
    )?
    .iter()
    .map(|r| {
        Ok(DecisionRow {
            candidate_id: r.try_get(0)?,
            outcome: r.try_get(1)?,
            layer: r.try_get(2)?,
            detail: r.try_get(3)?,
            verdict: r.try_get(4)?,
            title: r.try_get(5)?,
            url: r.try_get(6)?,
            source_name: r.try_get(7)?,
            source_kind: r.try_get(8)?,
        })
    })
    .collect()
}

pub(in crate::ledger) fn improve_known_proposals(pg: Pg<'_>) -> Result<Vec<KnownProposal>> {
    query(
        pg,
        "SELECT p.id, p.title, c.url, c.source_kind, c.target, p.created_at_ms
         FROM improve_proposals p JOIN improve_candidates c ON c.id = p.candidate_id
         ORDER BY p.id",
        &[],
    )?
    .iter()
    .map(|r| {
        Ok(KnownProposal {
            id: r.try_get(0)?,
            title: r.try_get(1)?,
            url: r.try_get(2)?,
            source_kind: r.try_get(3)?,
            target: r.try_get(4)?,
            created_at_ms: r.try_get(5)?,
        })
    })
    .collect()
}

pub(in crate::ledger) fn improve_task_titles(
    pg: Pg<'_>,
    touched_since_ms: Option<i64>,
) -> Result<Vec<(String, String)>> {
    query(
        pg,
        "SELECT id, title FROM tasks
         WHERE in_roadmap
           AND ($1::BIGINT IS NULL
                OR state NOT IN ('merged', 'done', 'failed', 'rejected', 'cancelled',
                                 'abandoned')
                OR updated_at_ms >= $1)
         ORDER BY roadmap_order, id COLLATE \"C\"",
        &[&touched_since_ms],
    )?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}

pub(in crate::ledger) fn improve_totals(pg: Pg<'_>, since_ms: i64) -> Result<ImproveTotals> {
    let scans = query_one(
        pg,
        "SELECT COUNT(*) FILTER (WHERE started_at_ms >= $1), MAX(finished_at_ms)
         FROM improve_scans WHERE finished_at_ms IS NOT NULL",
        &[&since_ms],
    )?;
    let proposals = query_one(
        pg,
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE status = 'accepted'),
                COUNT(*) FILTER (WHERE status = 'rejected')
         FROM improve_proposals WHERE created_at_ms >= $1",
        &[&since_ms],
    )?;
    let spend = query_one(
        pg,
        "SELECT COALESCE(SUM(actual_microusd), 0)::BIGINT FROM gateway_calls
         WHERE role = 'improve' AND created_at_ms >= $1",
        &[&since_ms],
    )?;
    let count = |row: &Row, i: usize| -> Result<u64> {
        Ok(u64::try_from(row.try_get::<_, i64>(i)?).unwrap_or(0))
    };
    Ok(ImproveTotals {
        scans: count(&scans, 0)?,
        emitted: count(&proposals, 0)?,
        accepted: count(&proposals, 1)?,
        rejected: count(&proposals, 2)?,
        spend_microusd: spend.try_get(0)?,
        last_scan_ms: scans.try_get(1)?,
    })
}

#[cfg(test)]
mod tests {
    use crate::ledger::{NewCandidate, NewProposal, ScanEnd, SourceFailureRow};

    fn candidate<'a>(url: &'a str, title: &'a str, at_ms: i64) -> NewCandidate<'a> {
        NewCandidate {
            source_kind: "github_releases",
            source_name: "codex",
            url,
            title,
            summary: "what changed",
            target: "openai/codex",
            published_at_ms: Some(5),
            at_ms,
        }
    }

    #[test]
    fn improve_embeddings_cache_on_both_backends() {
        super::super::on_both_backends("improve_embeddings", |ledger| {
            let q = ledger.read();
            assert_eq!(q.improve_embedding_dims("m").unwrap(), None);
            assert_eq!(q.improve_embeddings("m", &["a".into()]).unwrap(), [None]);
            ledger
                .write(|q| {
                    q.put_improve_embeddings(
                        "m",
                        &[
                            ("a".into(), vec![1.0, -2.5]),
                            ("b".into(), vec![0.5, 0.25]),
                            ("a".into(), vec![9.0, 9.0]),
                        ],
                        10,
                    )?;
                    q.put_improve_embeddings("m", &[("b".into(), vec![7.0, 7.0])], 20)?;
                    q.put_improve_embeddings("other", &[("a".into(), vec![3.0])], 30)
                })
                .unwrap();
            let q = ledger.read();
            assert_eq!(
                q.improve_embeddings("m", &["b".into(), "zz".into(), "a".into(), "b".into()])
                    .unwrap(),
                [
                    Some(vec![0.5, 0.25]),
                    None,
                    Some(vec![1.0, -2.5]),
                    Some(vec![0.5, 0.25])
                ],
                "in the order asked; the first vector cached for a hash is kept"
            );
            assert_eq!(q.improve_embedding_dims("m").unwrap(), Some(2));
            assert_eq!(q.improve_embedding_dims("other").unwrap(), Some(1));
            assert!(q.improve_embeddings("m", &[]).unwrap().is_empty());
        });
    }

    #[test]
    fn improve_scans_candidates_proposals_and_pauses_on_both_backends() {
        super::super::on_both_backends("improve_rows", |ledger| {
            let q = ledger.read();
            assert_eq!(q.last_improve_scan().unwrap(), None);
            assert_eq!(q.improve_paused().unwrap(), None);
            assert_eq!(q.improve_unpaused_at().unwrap(), None);
            let scan = ledger
                .write(|q| q.begin_improve_scan("2026-11-30", 100))
                .unwrap();
            assert_eq!(
                ledger.read().improve_scan_on("2026-11-30").unwrap(),
                None,
                "not finished"
            );
            let a = ledger
                .write(|q| q.upsert_improve_candidate(&candidate("https://a", "A", 110)))
                .unwrap();
            let b = ledger
                .write(|q| q.upsert_improve_candidate(&candidate("https://b", "B", 120)))
                .unwrap();
            let a_again = ledger
                .write(|q| q.upsert_improve_candidate(&candidate("https://a", "A2", 130)))
                .unwrap();
            assert_eq!(a, a_again, "one row per url");
            let unproposed = ledger.read().unproposed_improve_candidates(0).unwrap();
            let seen: Vec<_> = unproposed
                .iter()
                .map(|c| (c.id, c.title.as_str(), c.first_seen_ms, c.last_seen_ms))
                .collect();
            assert_eq!(seen, [(a, "A2", 110, 130), (b, "B", 120, 120)]);
            assert_eq!(unproposed[0].published_at_ms, Some(5));
            assert_eq!(
                ledger
                    .read()
                    .unproposed_improve_candidates(125)
                    .unwrap()
                    .len(),
                1
            );

            let proposal = |candidate_id: i64, rank: i64| NewProposal {
                scan_id: scan,
                candidate_id,
                rank,
                score: 0.75,
                tier: 2,
                title: "adopt it",
                body: "because",
                at_ms: 140,
            };
            let pb = ledger
                .write(|q| q.insert_improve_proposal(&proposal(b, 1)))
                .unwrap();
            let pa = ledger
                .write(|q| q.insert_improve_proposal(&proposal(a, 2)))
                .unwrap();
            let failure = SourceFailureRow {
                scan_id: scan,
                source_kind: "newsletter".into(),
                source_name: "weekly".into(),
                cause: "HTTP 503".into(),
                at_ms: 150,
            };
            let end = ScanEnd {
                candidates: 2,
                proposed: 2,
                failed_sources: 1,
                ranking: "bm25+vector",
                at_ms: 160,
            };
            ledger
                .write(|q| {
                    q.record_improve_source_failure(&failure)?;
                    q.finish_improve_scan(scan, &end)?;
                    q.decide_improve_proposal(
                        pa,
                        "accepted",
                        Some("T9-1"),
                        "operator:amy",
                        None,
                        170,
                    )
                })
                .unwrap();
            let q = ledger.read();
            assert!(q.unproposed_improve_candidates(0).unwrap().is_empty());
            let last = q.last_improve_scan().unwrap().unwrap();
            assert_eq!(q.improve_scan_on("2026-11-30").unwrap(), Some(last.clone()));
            assert_eq!(
                (
                    last.id,
                    last.finished_at_ms,
                    last.candidates,
                    last.failed_sources
                ),
                (scan, Some(160), 2, 1)
            );
            assert_eq!(last.ranking, "bm25+vector");
            assert_eq!(q.improve_scan_on("2026-11-29").unwrap(), None);
            assert_eq!(q.improve_source_failures(scan).unwrap(), [failure]);

            let all = q.improve_proposals(None).unwrap();
            assert_eq!(
                all.iter().map(|p| p.id).collect::<Vec<_>>(),
                [pb, pa],
                "by rank"
            );
            let accepted = q.improve_proposals(Some("accepted")).unwrap();
            assert_eq!(accepted.len(), 1);
            let p = &accepted[0];
            assert_eq!(
                (p.id, p.task_id.as_deref(), p.tier, p.score),
                (pa, Some("T9-1"), 2, 0.75)
            );
            assert_eq!(
                (p.source_kind.as_str(), p.url.as_str()),
                ("github_releases", "https://a")
            );
            assert_eq!(q.improve_proposal(pb).unwrap().unwrap().status, "proposed");
            assert_eq!(q.improve_proposal(999).unwrap(), None);
            assert_eq!(
                q.improve_proposal_counts().unwrap(),
                [("accepted".to_owned(), 1), ("proposed".to_owned(), 1)]
            );
            assert_eq!(q.improve_window(0, 1_000).unwrap(), (2, 1));
            assert_eq!(q.improve_window(141, 1_000).unwrap(), (0, 0));

            ledger
                .write(|q| {
                    q.set_improve_paused(true, "too many rejections", "oxi", 200)?;
                    q.set_improve_paused(false, "", "operator:amy", 210)?;
                    q.set_improve_paused(true, "again", "oxi", 220)
                })
                .unwrap();
            let q = ledger.read();
            assert_eq!(q.improve_paused().unwrap().as_deref(), Some("again"));
            assert_eq!(q.improve_unpaused_at().unwrap(), Some(210));
        });
    }
}
