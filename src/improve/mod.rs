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
mod dedup;
mod digest;
mod github;
mod health;
mod judge;
mod names;
mod newsletter;
pub mod rank;
mod report;
mod select;
mod vectors;
mod x;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use crate::config::{Config, ImproveConfig, ImproveSource, ImproveSourceKind};
use crate::github::GithubError;
use crate::ledger::events::{ImproveEmbeddingsFailed, ImproveScanCompleted, ImproveSourceFailed};
use crate::ledger::{Event, Ledger, LedgerError, NewCandidate, NewEvent, ScanEnd};

pub use accept::{AcceptError, accept_proposal};
pub use dedup::Layer;
pub use judge::Verdict;
pub use names::RepoNames;
pub use rank::Ranking;
pub use report::{ImproveSection, report_rows, report_section, staleness};
pub use select::Decisions;
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
    /// `improve.judge` (`provider:model`), when a judge chose what was staged.
    pub judge: Option<String>,
    /// What happened to each candidate the scan considered.
    pub decisions: Decisions,
    /// Why judging stopped for the day (a cap), when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge_capped: Option<String>,
    /// Why the semantic dedup layer did not run, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub semantic_off: Option<String>,
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
            judge: ctx.improve.judge.clone(),
            decisions: Decisions::default(),
            judge_capped: None,
            semantic_off: None,
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
    let reranked = rerank(ctx, ledger, &documents, &pool, bm25).await?;
    let (dedup, semantic_off) =
        dedup_layers(ctx, ledger, reranked.embeddings_failed.as_deref()).await?;
    let names = RepoNames::of_repo(ctx.root);
    let judge = make_judge(ctx, ledger)?;
    let inputs = select::Inputs {
        dedup,
        names,
        judge,
        vectors: reranked.vectors,
    };
    let selection = select::select(ctx, ledger, scan_id, &pool, &reranked.ranked, inputs).await?;
    let ranking = reranked.ranking;
    let proposed = selection.decisions.staged;
    finish_scan(
        ctx,
        ledger,
        scan_id,
        candidates,
        proposed,
        failed.len() as u64,
        ranking,
    )?;
    let mut report = ScanReport {
        scan_id,
        day,
        already_ran: false,
        candidates,
        proposed,
        failed_sources: failed,
        ranking,
        embeddings_failed: reranked.embeddings_failed,
        judge: ctx.improve.judge.clone(),
        decisions: selection.decisions,
        judge_capped: selection.capped,
        semantic_off,
        digest: None,
    };
    report.digest = write_digest(ctx, ledger, &report)?;
    Ok(report)
}

/// The judge of this scan, when `improve.judge` is set.
fn make_judge<'a>(
    ctx: &ScanContext<'a>,
    ledger: &Ledger,
) -> Result<Option<judge::Judge<'a>>, LedgerError> {
    let Some(choice) = &ctx.improve.judge else {
        return Ok(None);
    };
    let gateway = match crate::gateway::Gateway::new(ctx.config, ctx.env, ctx.actor) {
        Ok(gateway) => gateway,
        Err(e) => {
            tracing::warn!("auto-improve runs without its judge: {e}");
            return Ok(None);
        }
    };
    // Open tasks only: none was touched after the end of time.
    let tasks = ledger.read().improve_task_titles(Some(i64::MAX))?;
    let modules: Vec<String> =
        context::module_names(&crate::git::run(ctx.root, &["ls-files"]).unwrap_or_default())
            .into_iter()
            .collect();
    Ok(judge::Judge::new(gateway, choice, &tasks, &modules))
}

/// Closes the scan's row and records `improve_scan_completed`.
fn finish_scan(
    ctx: &ScanContext<'_>,
    ledger: &mut Ledger,
    scan_id: i64,
    candidates: u64,
    proposed: u64,
    failed_sources: u64,
    ranking: Ranking,
) -> Result<(), LedgerError> {
    let end = ScanEnd {
        candidates: to_i64(candidates),
        proposed: to_i64(proposed),
        failed_sources: to_i64(failed_sources),
        ranking: ranking.as_str(),
        at_ms: crate::clock::now_ms(),
    };
    ledger.write(|q| {
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
                failed_sources,
                ranking: ranking.as_str().to_owned(),
            }),
        })?;
        Ok(())
    })
}

/// What ranking gave: the order, which ranking it was, why embeddings failed if they did,
/// and the ranked candidates' vectors by index in the pool (none without embeddings).
struct Reranked {
    ranked: Vec<rank::Scored>,
    ranking: Ranking,
    embeddings_failed: Option<String>,
    vectors: HashMap<usize, Vec<f32>>,
}

/// How far back a task touched still counts for the semantic dedup layer.
const TOUCHED_DAYS: i64 = 30;

/// The dedup layers for this scan; the semantic one only with embeddings (and the reason
/// it is off otherwise).
async fn dedup_layers(
    ctx: &ScanContext<'_>,
    ledger: &mut Ledger,
    embeddings_failed: Option<&str>,
) -> Result<(dedup::Dedup, Option<String>), LedgerError> {
    let day_ms = 24 * 3600 * 1000;
    let window_ms = i64::try_from(ctx.improve.temporal_window.0.as_millis()).unwrap_or(i64::MAX);
    let dedup = dedup::Dedup::new(
        &ledger.read().improve_known_proposals()?,
        &ledger.read().improve_task_titles(None)?,
        ctx.now_ms.saturating_sub(window_ms),
        ctx.improve.similarity_threshold,
    );
    let Some(choice) = ctx.improve.embeddings.as_deref() else {
        return Ok((dedup, Some("no improve.embeddings is set".to_owned())));
    };
    if let Some(cause) = embeddings_failed {
        return Ok((
            dedup,
            Some(format!("the embeddings could not be had ({cause})")),
        ));
    }
    let tasks = ledger
        .read()
        .improve_task_titles(Some(ctx.now_ms - TOUCHED_DAYS * day_ms))?;
    let titles: Vec<String> = tasks.iter().map(|(_, t)| t.clone()).collect();
    let texts: Vec<&String> = titles.iter().collect();
    match vectors::embed_texts(ctx, ledger, choice, &texts).await {
        Ok(vectors) => {
            let references = tasks
                .iter()
                .zip(vectors)
                .map(|((id, title), v)| (format!("task {id} ({title})"), v))
                .collect();
            Ok((dedup.with_references(references), None))
        }
        Err(vectors::VectorError::Ledger(e)) => Err(e),
        Err(error) => {
            let cause = error.to_string();
            embeddings_failed_event(ctx, ledger, choice, &cause)?;
            Ok((
                dedup,
                Some(format!(
                    "the task titles' embeddings could not be had ({cause})"
                )),
            ))
        }
    }
}

/// BM25's order, reranked by embeddings when `improve.embeddings` is set and they can be
/// had; otherwise BM25 alone, with the reason recorded (`improve_embeddings_failed`).
async fn rerank(
    ctx: &ScanContext<'_>,
    ledger: &mut Ledger,
    documents: &[String],
    pool: &[crate::ledger::CandidateRow],
    bm25: Vec<rank::Scored>,
) -> Result<Reranked, LedgerError> {
    let alone = |ranked, embeddings_failed| Reranked {
        ranked,
        ranking: Ranking::Bm25,
        embeddings_failed,
        vectors: HashMap::new(),
    };
    let Some(choice) = ctx.improve.embeddings.as_deref() else {
        return Ok(alone(bm25, None));
    };
    if bm25.is_empty() {
        return Ok(alone(bm25, None));
    }
    match vectors::rerank(ctx, ledger, choice, documents, pool, &bm25).await {
        Ok((ranked, vectors)) => Ok(Reranked {
            ranked,
            ranking: Ranking::Bm25Vector,
            embeddings_failed: None,
            vectors,
        }),
        Err(vectors::VectorError::Ledger(e)) => Err(e),
        Err(error) => {
            let cause = error.to_string();
            tracing::warn!("auto-improve ranks by BM25 alone: embeddings failed: {cause}");
            embeddings_failed_event(ctx, ledger, choice, &cause)?;
            Ok(alone(bm25, Some(cause)))
        }
    }
}

fn embeddings_failed_event(
    ctx: &ScanContext<'_>,
    ledger: &mut Ledger,
    choice: &str,
    cause: &str,
) -> Result<(), LedgerError> {
    let at_ms = crate::clock::now_ms();
    ledger.write(|q| {
        q.append_event(&NewEvent {
            at_ms,
            task_id: None,
            run_id: None,
            actor: ctx.actor,
            event: Event::ImproveEmbeddingsFailed(ImproveEmbeddingsFailed {
                model: choice.to_owned(),
                cause: cause.to_owned(),
            }),
        })?;
        Ok(())
    })
}

/// Writes the day's digest of the scan `report` describes; a digest that cannot be written
/// is a warning (the scan itself is already recorded).
fn write_digest(
    ctx: &ScanContext<'_>,
    ledger: &Ledger,
    report: &ScanReport,
) -> Result<Option<String>, LedgerError> {
    let staged: Vec<_> = ledger
        .read()
        .improve_proposals(None)?
        .into_iter()
        .filter(|p| p.scan_id == report.scan_id)
        .collect();
    let decisions = ledger.read().improve_decisions(report.scan_id)?;
    let page = digest::Page {
        report,
        staged: &staged,
        decisions: &decisions,
        improve: ctx.improve,
    };
    Ok(digest::write(ctx.state_dir, &page)
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
pub(super) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A proposal's brief: where it came from, and what the source said.
pub(super) fn proposal_body(candidate: &crate::ledger::CandidateRow) -> String {
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
