//! `oxi ingest`: roadmap.md -> tasks in the ledger.

use anyhow::Result;

use super::Context;
use crate::cli::IngestArgs;
use crate::output::{Format, json_string, write_stdout};
use crate::roadmap::{
    self,
    ingest::{IngestSummary, RoadmapFile},
};

pub fn run(ctx: &Context, args: &IngestArgs) -> Result<()> {
    let config = ctx.config()?;
    let path = match &args.roadmap {
        Some(path) => ctx.cwd.join(path),
        None => config.roadmap_path(),
    };
    let file = RoadmapFile::read(&path, &config.repo_root)?;
    let mut parsed = file.parse(config.config.project.default_priority_tier)?;
    parsed.mask(&crate::runner::env::redactor_for(
        &config,
        &super::parent_env(),
    ));
    let mut ledger = ctx.ledger(&config)?;
    let summary = roadmap::ingest::apply(
        &mut ledger,
        &parsed,
        &file.label,
        &file.sha256,
        crate::clock::now_ms(),
    )?;
    let text = match ctx.global.format {
        Format::Json => json_string(&summary)?,
        Format::Table | Format::Markdown | Format::Html => render(&summary, ctx.global.format),
    };
    write_stdout(&text)?;
    Ok(())
}

fn list(ids: &[String]) -> String {
    const SHOWN: usize = 12;
    if ids.len() <= SHOWN {
        ids.join(", ")
    } else {
        format!(
            "{}, … ({} more)",
            ids[..SHOWN].join(", "),
            ids.len() - SHOWN
        )
    }
}

/// The human summary of an ingest.
pub fn render(summary: &IngestSummary, format: Format) -> String {
    let formats: Vec<String> = summary
        .by_format
        .iter()
        .map(|(format, n)| format!("{n} {format}"))
        .collect();
    let mut out = String::new();
    let bullet = if format == Format::Markdown {
        "- "
    } else {
        "  "
    };
    out.push_str(&format!(
        "{}: {} items ({})\n",
        summary.roadmap,
        summary.items,
        formats.join(", ")
    ));
    let lines = [
        ("added", &summary.added),
        ("updated", &summary.updated),
        ("marked done", &summary.marked_done),
        ("reopened", &summary.reopened),
        ("abandoned", &summary.abandoned),
        ("in flight, left alone", &summary.in_flight_untouched),
    ];
    for (label, ids) in lines {
        if !ids.is_empty() {
            out.push_str(&format!("{bullet}{label} {}: {}\n", ids.len(), list(ids)));
        }
    }
    out.push_str(&format!("{bullet}unchanged {}\n", summary.unchanged));
    if !summary.warnings.is_empty() {
        out.push_str(&format!(
            "{bullet}warnings {} (shown on stderr)\n",
            summary.warnings.len()
        ));
    }
    out
}
