//! Ranking candidates against the project's context with `SQLite` FTS5 (BM25). The context's
//! vocabulary (FTS5's `fts5vocab` over an index of the context documents) gives the terms
//! that say what the project is about, most widespread first; the candidates are indexed in
//! turn and ranked by BM25 for those terms, so a candidate ranks by how much of the project's
//! own language it speaks, with words common to all candidates weighing little. Ties keep the
//! order the sources gave. All of it runs in an in-memory database: nothing here touches the
//! ledger, and the same inputs give the same ranking.

use rusqlite::Connection;
use serde::Serialize;

use crate::ledger::CandidateRow;

/// How many of the context's terms make the query.
const QUERY_TERMS: usize = 200;
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
    /// BM25 alone (no embeddings endpoint configured).
    Bm25,
}

impl Ranking {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Ranking::Bm25 => "bm25",
        }
    }

    /// A stored ranking's text (an unknown one reads as BM25, the ranking every scan has).
    #[must_use]
    pub fn from_text(_text: &str) -> Self {
        Ranking::Bm25
    }

    /// What the digest and `oxi improve scan` say about it.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Ranking::Bm25 => {
                "BM25 over the project's context alone (no improve.embeddings: no vector rerank)"
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
