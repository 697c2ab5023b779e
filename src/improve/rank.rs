//! Ranking candidates against the project's context with `SQLite` FTS5 (BM25). The context's
//! vocabulary (FTS5's `fts5vocab` over an index of the context documents) gives the terms
//! that say what the project is about, most widespread first; the candidates are indexed in
//! turn and ranked by BM25 for those terms, so a candidate ranks by how much of the project's
//! own language it speaks, with words common to all candidates weighing little. Ties keep the
//! order the sources gave. All of it runs in an in-memory database: nothing here touches the
//! ledger, and the same inputs give the same ranking.
//!
//! With embeddings, [`fuse`] reranks BM25's candidates by the cosine similarity of each one's
//! vector to the project's (the normalised mean of its documents' vectors) and fuses the two
//! orders by reciprocal rank fusion: a candidate's score is the sum of `1 / (k + rank)` over
//! both orders, with k = 60, so neither scale dominates and a candidate strong in both wins.

use rusqlite::Connection;
use serde::Serialize;

use crate::ledger::CandidateRow;

/// How many of the context's terms make the query.
const QUERY_TERMS: usize = 200;
/// Reciprocal rank fusion's constant: ranks far down either order weigh little, and the
/// first few places do not swamp the other order.
pub const RRF_K: f64 = 60.0;
/// A title counts this much more than a summary.
const TITLE_WEIGHT: f64 = 3.0;

/// Words too common to say anything about a project.
const STOPWORDS: &[&str] = &[
    "about", "after", "also", "and", "any", "are", "but", "can", "each", "for", "from", "has",
    "have", "into", "its", "more", "not", "now", "one", "only", "other", "our", "out", "than",
    "that", "the", "their", "them", "then", "there", "these", "they", "this", "was", "were",
    "what", "when", "which", "while", "who", "will", "with", "you", "your", "all", "new", "use",
    "used", "uses", "using", "how", "may", "must", "should", "would", "could", "does", "done",
    "its", "per", "via", "own", "just", "like", "get", "set", "two", "first", "last",
];

/// Which ranking a scan used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ranking {
    /// BM25 alone (no embeddings configured, or none to be had this scan).
    Bm25,
    /// BM25 and the cosine rerank, fused by reciprocal rank fusion.
    #[serde(rename = "bm25+vector")]
    Bm25Vector,
}

impl Ranking {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Ranking::Bm25 => "bm25",
            Ranking::Bm25Vector => "bm25+vector",
        }
    }

    /// A stored ranking's text (an unknown one reads as BM25, the ranking every scan has).
    #[must_use]
    pub fn from_text(text: &str) -> Self {
        if text == Ranking::Bm25Vector.as_str() {
            Ranking::Bm25Vector
        } else {
            Ranking::Bm25
        }
    }

    /// What the digest and `oxi improve scan` say about it.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Ranking::Bm25 => "BM25 over the project's context alone (no vector rerank)",
            Ranking::Bm25Vector => {
                "BM25 over the project's context, reranked by embeddings (cosine to the project) and fused by reciprocal rank fusion (k = 60)"
            }
        }
    }
}

/// A candidate's place: its index in the input and its score (higher is better).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scored {
    pub index: usize,
    pub score: f64,
}

/// The candidates that share any of the context's terms, best first.
///
/// # Errors
///
/// The in-memory indexes could not be built or queried.
pub fn bm25(
    documents: &[String],
    candidates: &[CandidateRow],
) -> Result<Vec<Scored>, rusqlite::Error> {
    if documents.is_empty() || candidates.is_empty() {
        return Ok(Vec::new());
    }
    let conn = Connection::open_in_memory()?;
    conn.execute_batch(
        "CREATE VIRTUAL TABLE context USING fts5(body, tokenize = 'unicode61 remove_diacritics 2');
         CREATE VIRTUAL TABLE context_terms USING fts5vocab(context, 'row');
         CREATE VIRTUAL TABLE candidates USING fts5(title, summary,
             tokenize = 'unicode61 remove_diacritics 2');",
    )?;
    let tx = conn.unchecked_transaction()?;
    {
        let mut insert = tx.prepare("INSERT INTO context (body) VALUES (?1)")?;
        for document in documents {
            insert.execute([document])?;
        }
        let mut insert =
            tx.prepare("INSERT INTO candidates (rowid, title, summary) VALUES (?1, ?2, ?3)")?;
        for (i, candidate) in candidates.iter().enumerate() {
            insert.execute(rusqlite::params![
                i64::try_from(i + 1).unwrap_or(i64::MAX),
                candidate.title,
                candidate.summary
            ])?;
        }
    }
    tx.commit()?;
    let terms = query_terms(&conn)?;
    if terms.is_empty() {
        return Ok(Vec::new());
    }
    let query = terms
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(" OR ");
    let mut stmt = conn.prepare(&format!(
        "SELECT rowid, bm25(candidates, {TITLE_WEIGHT}, 1.0) AS rank FROM candidates
         WHERE candidates MATCH ?1 ORDER BY rank, rowid"
    ))?;
    let ranked = stmt
        .query_map([query], |r| {
            let rowid: i64 = r.get(0)?;
            let rank: f64 = r.get(1)?;
            Ok(Scored {
                index: usize::try_from(rowid - 1).unwrap_or(0),
                // FTS5's bm25() is lower-is-better; a score reads better the other way.
                score: -rank,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ranked)
}

/// The context's most widespread words (by how many documents hold them), stopwords, numbers
/// and short tokens left out.
fn query_terms(conn: &Connection) -> Result<Vec<String>, rusqlite::Error> {
    let mut stmt =
        conn.prepare("SELECT term FROM context_terms ORDER BY doc DESC, cnt DESC, term")?;
    let mut terms = Vec::new();
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let term: String = row.get(0)?;
        let useful = term.chars().count() >= 3
            && term.chars().any(char::is_alphabetic)
            && !term.contains('"')
            && !STOPWORDS.contains(&term.as_str());
        if useful {
            terms.push(term);
            if terms.len() == QUERY_TERMS {
                break;
            }
        }
    }
    Ok(terms)
}

/// The cosine similarity of two vectors (0 when either is all zeros or they differ in width).
#[must_use]
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        dot / (aa.sqrt() * bb.sqrt())
    }
}

/// The project's vector: the mean of its documents' unit vectors, itself made a unit vector.
/// `None` without documents.
#[must_use]
pub fn centroid(vectors: &[Vec<f32>]) -> Option<Vec<f32>> {
    let width = vectors.first()?.len();
    let mut sum = vec![0.0f64; width];
    for v in vectors.iter().filter(|v| v.len() == width) {
        let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        if norm > 0.0 {
            for (s, x) in sum.iter_mut().zip(v) {
                *s += f64::from(*x) / norm;
            }
        }
    }
    let norm = sum.iter().map(|x| x * x).sum::<f64>().sqrt();
    // Vectors are f32 wherever they are stored; a unit vector's components fit one.
    #[allow(clippy::cast_possible_truncation)]
    (norm > 0.0).then(|| sum.iter().map(|x| (x / norm) as f32).collect())
}

/// BM25's order fused with the cosine order: `vectors[i]` is the vector of `bm25[i]`'s
/// candidate (same order). Each candidate scores `1/(k + its BM25 rank) + 1/(k + its cosine
/// rank)` (ranks from 1); ties keep BM25's order, so the result is deterministic.
#[must_use]
pub fn fuse(bm25: &[Scored], vectors: &[Vec<f32>], project: &[f32]) -> Vec<Scored> {
    let cosines: Vec<f64> = vectors.iter().map(|v| cosine(v, project)).collect();
    let mut by_cosine: Vec<usize> = (0..bm25.len()).collect();
    // Stable: equal similarities keep BM25's order.
    by_cosine.sort_by(|a, b| {
        let (x, y) = (
            cosines.get(*a).copied().unwrap_or(0.0),
            cosines.get(*b).copied().unwrap_or(0.0),
        );
        y.total_cmp(&x)
    });
    let mut cosine_rank = vec![0usize; bm25.len()];
    for (rank, position) in by_cosine.into_iter().enumerate() {
        cosine_rank[position] = rank + 1;
    }
    let mut fused: Vec<Scored> = bm25
        .iter()
        .enumerate()
        .map(|(position, scored)| Scored {
            index: scored.index,
            score: reciprocal(position + 1) + reciprocal(cosine_rank[position]),
        })
        .collect();
    fused.sort_by(|a, b| b.score.total_cmp(&a.score));
    fused
}

/// `1 / (k + rank)`, rank from 1.
fn reciprocal(rank: usize) -> f64 {
    1.0 / (RRF_K + f64::from(u32::try_from(rank).unwrap_or(u32::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fusion_lifts_what_both_orders_like_and_keeps_ties_in_bm25_order() {
        let bm25: Vec<Scored> = (0..4)
            .map(|i| Scored {
                index: 10 + i,
                score: 4.0 - i as f64,
            })
            .collect();
        let project = vec![1.0, 0.0];
        // The last by BM25 is the nearest: it rises, the first stays on top (first by BM25,
        // second by cosine), the third (far) falls to last.
        let vectors = vec![
            vec![0.9, 0.1],
            vec![0.5, 0.5],
            vec![0.0, 1.0],
            vec![1.0, 0.0],
        ];
        let fused: Vec<usize> = fuse(&bm25, &vectors, &project)
            .iter()
            .map(|s| s.index)
            .collect();
        assert_eq!(fused, [10, 13, 11, 12]);
        let same = vec![vec![1.0, 0.0]; 4];
        let fused: Vec<usize> = fuse(&bm25, &same, &project)
            .iter()
            .map(|s| s.index)
            .collect();
        assert_eq!(fused, [10, 11, 12, 13]);
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-9);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
        let c = centroid(&[vec![2.0, 0.0], vec![0.0, 1.0]]).unwrap();
        assert!((c[0] - c[1]).abs() < 1e-6);
    }
}
