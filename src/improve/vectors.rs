//! The vector rerank: embeddings of the project's context documents and of BM25's candidates,
//! through the gateway (`improve.embeddings`, role `improve`), cached in the ledger by model
//! and text hash so a text is embedded once; then [`rank::fuse`]. When no vectors can be had
//! (no `improve.embeddings`, the provider down, a cap, an answer of the wrong shape) the scan
//! ranks by BM25 alone and says why: never a lost scan.

use std::collections::BTreeMap;

use super::ScanContext;
use super::rank::{self, Scored};
use crate::gateway::{EmbedRequest, Gateway, GatewayError, GatewayRole};
use crate::ledger::{CandidateRow, Ledger, LedgerError};
use crate::routing::{ChoiceKind, RouteChoice};

/// Texts per embeddings call: `OpenAI` takes up to 2,048 inputs, but a smaller batch keeps one
/// failed call cheap and one request well under any proxy's body limit.
const BATCH: usize = 128;

/// Why the rerank did not happen; the scan goes on with BM25.
#[derive(Debug, thiserror::Error)]
pub(super) enum VectorError {
    #[error("improve.embeddings = {0:?} is not provider:model")]
    Choice(String),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("cannot build the gateway: {0}")]
    Setup(String),
    /// The ledger failed: that ends the scan, unlike the others.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The text a candidate is embedded (and hashed) as: its title, a newline, its summary.
#[must_use]
pub fn candidate_text(candidate: &CandidateRow) -> String {
    format!("{}\n{}", candidate.title, candidate.summary)
}

fn text_hash(text: &str) -> String {
    crate::digest::sha256_hex(text.as_bytes(), 32)
}

/// BM25's order reranked by embeddings and fused; `Err` names why it could not be.
pub(super) async fn rerank(
    ctx: &ScanContext<'_>,
    ledger: &mut Ledger,
    choice: &str,
    documents: &[String],
    pool: &[CandidateRow],
    bm25: &[Scored],
) -> Result<Vec<Scored>, VectorError> {
    let Some(RouteChoice::Gateway { provider, model }) =
        RouteChoice::parse(choice, ChoiceKind::Gateway)
    else {
        return Err(VectorError::Choice(choice.to_owned()));
    };
    let key = format!("{provider}:{model}");
    let candidates: Vec<String> = bm25
        .iter()
        .filter_map(|s| pool.get(s.index))
        .map(candidate_text)
        .collect();
    let texts: Vec<&String> = documents.iter().chain(candidates.iter()).collect();
    let vectors = embed_all(ctx, ledger, &provider, &model, &key, &texts).await?;
    let (context, candidates) = vectors.split_at(documents.len());
    let Some(project) = rank::centroid(context) else {
        return Ok(bm25.to_vec());
    };
    Ok(rank::fuse(bm25, candidates, &project))
}

/// The vectors cached for `texts` under `model` (`provider:model`), in order; `None` where a
/// text has none.
///
/// # Errors
///
/// The ledger could not be read.
pub fn cached_vectors(
    ledger: &Ledger,
    model: &str,
    texts: &[&str],
) -> Result<Vec<Option<Vec<f32>>>, LedgerError> {
    let hashes: Vec<String> = texts.iter().map(|t| text_hash(t)).collect();
    ledger.read().improve_embeddings(model, &hashes)
}

/// Caches `vectors` of `texts` (same order) under `model`.
///
/// # Errors
///
/// The ledger could not be written.
pub fn cache_vectors(
    ledger: &mut Ledger,
    model: &str,
    texts: &[&str],
    vectors: &[Vec<f32>],
) -> Result<(), LedgerError> {
    let rows: Vec<(String, Vec<f32>)> = texts
        .iter()
        .map(|t| text_hash(t))
        .zip(vectors.iter().cloned())
        .collect();
    let at_ms = crate::clock::now_ms();
    ledger.write(|q| q.put_improve_embeddings(model, &rows, at_ms))
}

/// A vector for every text, in order: the cached ones read, the others embedded in batches
/// and cached.
async fn embed_all(
    ctx: &ScanContext<'_>,
    ledger: &mut Ledger,
    provider: &str,
    model: &str,
    key: &str,
    texts: &[&String],
) -> Result<Vec<Vec<f32>>, VectorError> {
    let hashes: Vec<String> = texts.iter().map(|t| text_hash(t)).collect();
    let cached = ledger.read().improve_embeddings(key, &hashes)?;
    let mut known: BTreeMap<&str, Vec<f32>> = BTreeMap::new();
    let mut missing: BTreeMap<&str, &String> = BTreeMap::new();
    for ((hash, text), vector) in hashes.iter().zip(texts).zip(cached) {
        match vector {
            Some(v) => {
                known.insert(hash, v);
            }
            None => {
                missing.insert(hash, text);
            }
        }
    }
    if !missing.is_empty() {
        let gateway = Gateway::new(ctx.config, ctx.env, ctx.actor)
            .map_err(|e| VectorError::Setup(e.to_string()))?;
        let mut dimensions = ledger.read().improve_embedding_dims(key)?;
        let missing: Vec<(&str, &String)> = missing.into_iter().collect();
        for batch in missing.chunks(BATCH) {
            let inputs: Vec<String> = batch.iter().map(|(_, t)| (*t).clone()).collect();
            let answer = gateway
                .embed(
                    ledger,
                    &EmbedRequest {
                        role: GatewayRole::Improve,
                        provider,
                        model,
                        inputs: &inputs,
                        dimensions,
                    },
                )
                .await
                .map_err(|e| match e {
                    GatewayError::Ledger(e) => VectorError::Ledger(e),
                    other => VectorError::Gateway(other),
                })?;
            dimensions = dimensions.or_else(|| answer.vectors.first().map(Vec::len));
            let rows: Vec<(String, Vec<f32>)> = batch
                .iter()
                .map(|(h, _)| (*h).to_owned())
                .zip(answer.vectors)
                .collect();
            let at_ms = crate::clock::now_ms();
            ledger.write(|q| q.put_improve_embeddings(key, &rows, at_ms))?;
            for (i, (hash, vector)) in rows.into_iter().enumerate() {
                if let Some((h, _)) = batch.get(i) {
                    debug_assert_eq!(*h, hash);
                    known.insert(h, vector);
                }
            }
        }
    }
    Ok(hashes
        .iter()
        .map(|h| known.get(h.as_str()).cloned().unwrap_or_default())
        .collect())
}
