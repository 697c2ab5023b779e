//! The day's digest: a Markdown page in `.oxi/improve/YYYY-MM-DD.md` with what the scan
//! proposed (and how to accept each), which sources failed and why, and how it ranked. A scan
//! run again the same day (`--force`) rewrites it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{DigestInput, Ranking};
use crate::ledger::ProposalRow;

/// Writes the digest of `scan_id`; returns its path.
pub(super) fn write(
    state_dir: &Path,
    day: &str,
    scan_id: i64,
    proposals: &[ProposalRow],
    outcome: &DigestInput<'_>,
) -> std::io::Result<PathBuf> {
    let dir = state_dir.join("improve");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{day}.md"));
    std::fs::write(&path, render(day, scan_id, proposals, outcome))?;
    Ok(path)
}

fn render(day: &str, scan_id: i64, proposals: &[ProposalRow], outcome: &DigestInput<'_>) -> String {
    let (candidates, failed) = (outcome.candidates, outcome.failed);
    let mut text = format!("# Auto-improve digest, {day}\n\n");
    let _ = writeln!(
        text,
        "Scan #{scan_id}: {candidates} candidates found, {} proposed, {} sources failed.\n",
        proposals.len(),
        failed.len()
    );
    let _ = writeln!(text, "Ranking: {}.\n", outcome.ranking.describe());
    if outcome.ranking == Ranking::Bm25 {
        match outcome.embeddings_failed {
            Some(cause) => {
                let _ = writeln!(
                    text,
                    "BM25 stands alone: the embeddings could not be had ({cause}).\n"
                );
            }
            None => text.push_str(
                "BM25 stands alone: no improve.embeddings is set (docs/improve.md, Ranking).\n\n",
            ),
        }
    }
    text.push_str("## Top proposals\n\n");
    if proposals.is_empty() {
        text.push_str("None: nothing found shares the project's vocabulary.\n");
    }
    for p in proposals {
        let _ = writeln!(
            text,
            "{}. [{}]({}) — {} ({}), score {:.2}; `oxi improve accept {}`",
            p.rank,
            p.title.replace(['[', ']'], ""),
            p.url,
            p.source_name,
            p.source_kind,
            p.score,
            p.id
        );
    }
    text.push_str("\n## Source failures\n\n");
    if failed.is_empty() {
        text.push_str("None.\n");
    }
    for f in failed {
        let _ = writeln!(text, "- {} ({}): {}", f.source, f.kind, f.cause);
    }
    text
}
