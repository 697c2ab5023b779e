//! The day's digest: a Markdown page in `.oxi/improve/YYYY-MM-DD.md` with what the scan
//! proposed (and how to accept each), what it skipped and why (by dedup layer), what it
//! rejected as fabricated, what the judge declined or failed to judge, which sources failed,
//! and what the judge's budget held back. A scan run again the same day (`--force`) rewrites
//! it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{Ranking, ScanReport};
use crate::config::ImproveConfig;
use crate::ledger::{DecisionRow, ProposalRow};

/// What the digest is made of.
pub(super) struct Page<'a> {
    pub(super) report: &'a ScanReport,
    pub(super) staged: &'a [ProposalRow],
    pub(super) decisions: &'a [DecisionRow],
    pub(super) improve: &'a ImproveConfig,
}

/// Writes the digest; returns its path.
pub(super) fn write(state_dir: &Path, page: &Page<'_>) -> std::io::Result<PathBuf> {
    let dir = state_dir.join("improve");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}.md", page.report.day));
    std::fs::write(&path, render(page))?;
    Ok(path)
}

/// The digest's text.
pub(super) fn render(page: &Page<'_>) -> String {
    let report = page.report;
    let mut text = format!("# Auto-improve digest, {}\n\n", report.day);
    let _ = writeln!(
        text,
        "Scan #{}: {} candidates found, {} proposed, {} sources failed.\n",
        report.scan_id,
        report.candidates,
        page.staged.len(),
        report.failed_sources.len()
    );
    how_it_chose(&mut text, page);
    text.push_str("## Top proposals\n\n");
    if page.staged.is_empty() {
        text.push_str("None.\n");
    }
    for p in page.staged {
        let _ = writeln!(
            text,
            "{}. [{}]({}) — {} ({}), tier {}, score {:.4}; `oxi improve accept {}`",
            p.rank,
            link_text(&p.title),
            p.url,
            p.source_name,
            p.source_kind,
            p.tier,
            p.score,
            p.id
        );
    }
    skipped(&mut text, page.decisions);
    let sections: [(&str, &str, &str); 4] = [
        ("Rejected as fabricated", "fabricated", "None."),
        ("Declined by the judge", "declined", "None."),
        ("Judge failures", "judge_failed", "None."),
        ("Budget held", "budget_held", "None."),
    ];
    for (heading, outcome, none) in sections {
        let _ = writeln!(text, "\n## {heading}\n");
        list(&mut text, page.decisions, outcome, none);
    }
    text.push_str("\n## Source failures\n\n");
    if report.failed_sources.is_empty() {
        text.push_str("None.\n");
    }
    for f in &report.failed_sources {
        let _ = writeln!(text, "- {} ({}): {}", f.source, f.kind, f.cause);
    }
    text
}

/// The ranking, the judge and the dedup layers this scan used.
fn how_it_chose(text: &mut String, page: &Page<'_>) {
    let report = page.report;
    let _ = writeln!(text, "Ranking: {}.\n", report.ranking.describe());
    if report.ranking == Ranking::Bm25 {
        match &report.embeddings_failed {
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
    match &report.judge {
        Some(judge) => {
            let _ = writeln!(
                text,
                "Judge: {judge}; a candidate is staged with relevance ≥ {} and concreteness ≥ {}, \
                 not a duplicate and not fabricated.\n",
                page.improve.min_relevance, page.improve.min_concreteness
            );
        }
        None => text.push_str(
            "Judge: none (no improve.judge is set); the ranking alone staged the proposals.\n\n",
        ),
    }
    if let Some(cause) = &report.judge_capped {
        let _ = writeln!(text, "Judging stopped for the day: {cause}\n");
    }
    match &report.semantic_off {
        Some(why) => {
            let _ = writeln!(
                text,
                "Dedup: identifier and temporal; the semantic layer is off ({why}).\n"
            );
        }
        None => text.push_str("Dedup: identifier, temporal and semantic.\n\n"),
    }
}

/// The skipped candidates, grouped by layer.
fn skipped(text: &mut String, decisions: &[DecisionRow]) {
    text.push_str("\n## Skipped\n\n");
    let mut any = false;
    for layer in ["identifier", "temporal", "semantic"] {
        let rows: Vec<&DecisionRow> = decisions
            .iter()
            .filter(|d| d.outcome == "skipped" && d.layer.as_deref() == Some(layer))
            .collect();
        if rows.is_empty() {
            continue;
        }
        any = true;
        let _ = writeln!(text, "### {layer}\n");
        for d in rows {
            let _ = writeln!(text, "- [{}]({}): {}", link_text(&d.title), d.url, d.detail);
        }
        text.push('\n');
    }
    if !any {
        text.push_str("None.\n");
    } else if text.ends_with("\n\n") {
        text.pop();
    }
}

fn list(text: &mut String, decisions: &[DecisionRow], outcome: &str, none: &str) {
    let rows: Vec<&DecisionRow> = decisions.iter().filter(|d| d.outcome == outcome).collect();
    if rows.is_empty() {
        let _ = writeln!(text, "{none}");
    }
    for d in rows {
        let _ = writeln!(
            text,
            "- [{}]({}) — {}: {}",
            link_text(&d.title),
            d.url,
            d.source_name,
            d.detail
        );
    }
}

/// A title as a link's text (brackets would end it).
fn link_text(title: &str) -> String {
    title.replace(['[', ']'], "")
}
