//! Auto-improve: once a day oxi looks outside the repository (releases and topic searches on
//! GitHub, newsletters, accounts on X) for changes relevant to it, ranks what it found against
//! what the project is (the roadmap, the changelog, recent merges, module names), and stages
//! the best few as proposals that an operator accepts into roadmap.md or rejects.
//!
//! Every source fails alone: a source that cannot be read (down, changed layout, bad JSON, an
//! oversized page, a hang) is an `improve_source_failed` event with its cause, and the scan
//! goes on with the others. With `[improve]` absent nothing here runs.

mod accept;
mod context;
mod digest;
mod github;
mod health;
mod newsletter;
pub mod rank;
mod vectors;
mod x;

use std::path::Path;
use std::time::Duration;

use crate::config::{Config, ImproveConfig, ImproveSource, ImproveSourceKind};
use crate::github::GithubError;
use crate::ledger::events::{ImproveEmbeddingsFailed, ImproveScanCompleted, ImproveSourceFailed};
use crate::ledger::{Event, Ledger, LedgerError, NewCandidate, NewEvent, NewProposal, ScanEnd};

pub use accept::{AcceptError, accept_proposal};
pub use rank::Ranking;
pub use vectors::{cache_vectors, cached_vectors, candidate_text};

/// Why a scan (not one source) could not run.
#[derive(Debug, thiserror::Error)]
pub enum ImproveError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(
        "auto-improve is paused: {0}; `oxi improve unpause` resumes it once the sources are tuned"
    )]
    Paused(String),
    #[error("cannot read the project's context ({what}): {detail}")]
    Context { what: String, detail: String },
    #[error("ranking failed: {0}")]
    Rank(#[from] rusqlite::Error),
}

/// Why one source yielded nothing; recorded, never fatal to the scan.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Github(#[from] GithubError),
    #[error("no GitHub token for [github] (${0}); export it or run `gh auth login`")]
    NoToken(String),
    #[error("GET {url}: {detail}")]
    Http { url: String, detail: String },
    #[error("GET {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: the page is larger than improve.max_page_size ({limit} bytes)")]
    TooLarge { url: String, limit: u64 },
    #[error("no answer within improve.source_timeout ({0:?})")]
    Timeout(Duration),
    #[error(
        "{url}: the {parser} parser found no {what}; the page's layout may have changed (try parser = \"links\")"
    )]
    Layout {
        url: String,
        parser: &'static str,
        what: &'static str,
    },
    #[error("cannot start {program}: {detail}")]
    Spawn { program: String, detail: String },
    #[error("{program} exited with {status}: {stderr}")]
    Exit {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("{program} printed something that is not the JSON array of posts: {detail}")]
    Json { program: String, detail: String },
}

/// One thing a source found, before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub url: String,
    pub title: String,
    pub summary: String,
    /// The repository, page or account it is about (temporal dedup groups by it).
    pub target: String,
    pub published_at_ms: Option<i64>,
}

/// What one scan did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScanReport {
    pub scan_id: i64,
    pub day: String,
    /// A scan had already run today; nothing was fetched.
    pub already_ran: bool,
    pub candidates: u64,
    pub proposed: u64,
    pub failed_sources: Vec<FailedSource>,
    pub ranking: Ranking,
    /// Why the vector rerank did not happen although `improve.embeddings` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embeddings_failed: Option<String>,
    /// The day's Markdown digest (`.oxi/improve/YYYY-MM-DD.md`).
    pub digest: Option<String>,
}

/// A source that failed, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailedSource {
    pub kind: &'static str,
    pub source: String,
    pub cause: String,
}

/// Where a scan runs: the config, the repository root, oxi's environment and who asked.
pub struct ScanContext<'a> {
    pub config: &'a Config,
    pub improve: &'a ImproveConfig,
    pub root: &'a Path,
    pub roadmap: &'a Path,
    /// `.oxi/`: the digest goes in its `improve/`.
    pub state_dir: &'a Path,
    pub env: &'a [(String, String)],
    pub actor: &'a str,
    pub now_ms: i64,
    /// Scan again even if today's scan ran.
    pub force: bool,
}

/// One scan: every source (each failing alone), then ranking, then the top candidates staged
/// as proposals. Idempotent per UTC day unless `force`.
///
/// # Errors
///
/// Auto-improve is paused, the ledger failed, the project's context could not be read, or
/// ranking failed. A source that fails is not an error: it is recorded and the scan goes on.
pub async fn scan(ctx: &ScanContext<'_>, ledger: &mut Ledger) -> Result<ScanReport, ImproveError> {
    if let Some(reason) = ledger.read().improve_paused()? {
        return Err(ImproveError::Paused(reason));
    }
    if let Some(reason) = health::check(ledger, ctx.improve, ctx.actor, ctx.now_ms)? {
        return Err(ImproveError::Paused(reason));
    }
    let day = crate::clock::day_of(ctx.now_ms);
    if !ctx.force
        && let Some(done) = ledger.read().improve_scan_on(&day)?
    {
        return Ok(ScanReport {
            scan_id: done.id,
            day,
            already_ran: true,
            candidates: u64::try_from(done.candidates).unwrap_or(0),
            proposed: u64::try_from(done.proposed).unwrap_or(0),
            failed_sources: Vec::new(),
            ranking: Ranking::from_text(&done.ranking),
            embeddings_failed: None,
            digest: None,
        });
    }
    let since_ms = ledger
        .read()
        .last_improve_scan()?
        .map_or(ctx.now_ms - 7 * 24 * 3600 * 1000, |s| s.started_at_ms);
    let scan_id = ledger.write(|q| q.begin_improve_scan(&day, ctx.now_ms))?;
    let (candidates, failed) = read_sources(ctx, ledger, scan_id, since_ms).await?;
    let pool = ledger.read().unproposed_improve_candidates(ctx.now_ms)?;
    let documents = context::collect(ctx.root, ctx.roadmap, ctx.now_ms)?;
    let bm25 = rank::bm25(&documents, &pool)?;
    let (ranked, ranking, embeddings_failed) = rerank(ctx, ledger, &documents, &pool, bm25).await?;
    let top: Vec<_> = ranked.into_iter().take(ctx.improve.top).collect();
    let proposed = top.len() as u64;
    let end = ScanEnd {
        candidates: to_i64(candidates),
        proposed: to_i64(proposed),
        failed_sources: to_i64(failed.len() as u64),
        ranking: ranking.as_str(),
        at_ms: crate::clock::now_ms(),
    };
    ledger.write(|q| {
        for (i, scored) in top.iter().enumerate() {
            let candidate = &pool[scored.index];
            let body = proposal_body(candidate);
            q.insert_improve_proposal(&NewProposal {
                scan_id,
                candidate_id: candidate.id,
                rank: to_i64(i as u64 + 1),
                score: scored.score,
                tier: 2,
                title: &candidate.title,
                body: &body,
                at_ms: end.at_ms,
            })?;
        }
        q.finish_improve_scan(scan_id, &end)?;
        q.append_event(&NewEvent {
            at_ms: end.at_ms,
            task_id: None,
            run_id: None,
            actor: ctx.actor,
            event: Event::ImproveScanCompleted(ImproveScanCompleted {
                scan_id,
                candidates,
                proposed,
                failed_sources: failed.len() as u64,
                ranking: ranking.as_str().to_owned(),
            }),
        })?;
        Ok(())
    })?;
    let outcome = DigestInput {
        candidates,
        failed: &failed,
        ranking,
        embeddings_failed: embeddings_failed.as_deref(),
    };
    let digest = write_digest(ctx, ledger, &day, scan_id, &outcome)?;
    Ok(ScanReport {
        scan_id,
        day,
        already_ran: false,
        candidates,
        proposed,
        failed_sources: failed,
        ranking,
        embeddings_failed,
        digest,
    })
}

/// BM25's order, reranked by embeddings when `improve.embeddings` is set and they can be
/// had; otherwise BM25 alone, with the reason recorded (`improve_embeddings_failed`).
async fn rerank(
    ctx: &ScanContext<'_>,
    ledger: &mut Ledger,
    documents: &[String],
    pool: &[crate::ledger::CandidateRow],
    bm25: Vec<rank::Scored>,
) -> Result<(Vec<rank::Scored>, Ranking, Option<String>), LedgerError> {
    let Some(choice) = ctx.improve.embeddings.as_deref() else {
        return Ok((bm25, Ranking::Bm25, None));
    };
    if bm25.is_empty() {
        return Ok((bm25, Ranking::Bm25, None));
    }
    match vectors::rerank(ctx, ledger, choice, documents, pool, &bm25).await {
        Ok(fused) => Ok((fused, Ranking::Bm25Vector, None)),
        Err(vectors::VectorError::Ledger(e)) => Err(e),
        Err(error) => {
            let cause = error.to_string();
            tracing::warn!("auto-improve ranks by BM25 alone: embeddings failed: {cause}");
            let at_ms = crate::clock::now_ms();
            ledger.write(|q| {
                q.append_event(&NewEvent {
                    at_ms,
                    task_id: None,
                    run_id: None,
                    actor: ctx.actor,
                    event: Event::ImproveEmbeddingsFailed(ImproveEmbeddingsFailed {
                        model: choice.to_owned(),
                        cause: cause.clone(),
                    }),
                })?;
                Ok(())
            })?;
            Ok((bm25, Ranking::Bm25, Some(cause)))
        }
    }
}

/// What the digest says about a scan besides its proposals.
struct DigestInput<'a> {
    candidates: u64,
    failed: &'a [FailedSource],
    ranking: Ranking,
    embeddings_failed: Option<&'a str>,
}

/// Writes the day's digest of `scan_id`; a digest that cannot be written is a warning (the
/// scan itself is already recorded).
fn write_digest(
    ctx: &ScanContext<'_>,
    ledger: &Ledger,
    day: &str,
    scan_id: i64,
    outcome: &DigestInput<'_>,
) -> Result<Option<String>, LedgerError> {
    let staged: Vec<_> = ledger
        .read()
        .improve_proposals(None)?
        .into_iter()
        .filter(|p| p.scan_id == scan_id)
        .collect();
    Ok(digest::write(ctx.state_dir, day, scan_id, &staged, outcome)
        .map_err(|e| tracing::warn!("cannot write the auto-improve digest: {e}"))
        .ok()
        .map(|p| p.display().to_string()))
}

/// Reads every source in turn; a failure is recorded and the next source is read. Returns
/// how many candidates were found and which sources failed.
async fn read_sources(
    ctx: &ScanContext<'_>,
    ledger: &mut Ledger,
    scan_id: i64,
    since_ms: i64,
) -> Result<(u64, Vec<FailedSource>), LedgerError> {
    let mut failed = Vec::new();
    let mut candidates = 0u64;
    for source in &ctx.improve.sources {
        match fetch(ctx, source, since_ms).await {
            Ok(found) => candidates += store(ledger, ctx, source, &found)?,
            Err(error) => {
                let failure = FailedSource {
                    kind: source.kind.as_str(),
                    source: source.name(),
                    cause: error.to_string(),
                };
                record_failure(ledger, ctx, scan_id, &failure)?;
                failed.push(failure);
            }
        }
    }
    Ok((candidates, failed))
}

/// A count as the ledger stores it.
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A proposal's brief: where it came from, and what the source said.
fn proposal_body(candidate: &crate::ledger::CandidateRow) -> String {
    let mut body = format!(
        "Proposed by auto-improve from {} ({}): {}",
        candidate.source_name, candidate.source_kind, candidate.url
    );
    let summary = candidate.summary.trim();
    if !summary.is_empty() {
        body.push_str("\n\n");
        body.push_str(&crate::worker::event::clip(summary, 600));
    }
    body
}

/// Reads one source under `improve.source_timeout`: a source that hangs is a failure.
async fn fetch(
    ctx: &ScanContext<'_>,
    source: &ImproveSource,
    since_ms: i64,
) -> Result<Vec<Found>, SourceError> {
    let limit = ctx.improve.source_timeout.0;
    let work = async {
        match source.kind {
            ImproveSourceKind::GithubReleases | ImproveSourceKind::GithubSearch => {
                github::fetch(ctx, source).await
            }
            ImproveSourceKind::Newsletter => newsletter::fetch(ctx.improve, source).await,
            ImproveSourceKind::X => x::fetch(ctx, source, since_ms).await,
        }
    };
    if source.kind == ImproveSourceKind::X {
        // The command runs under its own deadline, which also ends its process group; the
        // timeout below would drop it mid-way instead.
        return work.await;
    }
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| SourceError::Timeout(limit))?
}

fn store(
    ledger: &mut Ledger,
    ctx: &ScanContext<'_>,
    source: &ImproveSource,
    found: &[Found],
) -> Result<u64, LedgerError> {
    let name = source.name();
    ledger.write(|q| {
        for f in found {
            q.upsert_improve_candidate(&NewCandidate {
                source_kind: source.kind.as_str(),
                source_name: &name,
                url: &f.url,
                title: &f.title,
                summary: &f.summary,
                target: &f.target,
                published_at_ms: f.published_at_ms,
                at_ms: ctx.now_ms,
            })?;
        }
        Ok(found.len() as u64)
    })
}

fn record_failure(
    ledger: &mut Ledger,
    ctx: &ScanContext<'_>,
    scan_id: i64,
    failure: &FailedSource,
) -> Result<(), LedgerError> {
    tracing::warn!(source = %failure.source, "auto-improve source failed: {}", failure.cause);
    let at_ms = crate::clock::now_ms();
    ledger.write(|q| {
        q.record_improve_source_failure(&crate::ledger::SourceFailureRow {
            scan_id,
            source_kind: failure.kind.to_owned(),
            source_name: failure.source.clone(),
            cause: failure.cause.clone(),
            at_ms,
        })?;
        q.append_event(&NewEvent {
            at_ms,
            task_id: None,
            run_id: None,
            actor: ctx.actor,
            event: Event::ImproveSourceFailed(ImproveSourceFailed {
                source_kind: failure.kind.to_owned(),
                source: failure.source.clone(),
                cause: failure.cause.clone(),
            }),
        })?;
        Ok(())
    })
}
