//! `oxi ingest`: roadmap.md -> tasks in the ledger.

use anyhow::Result;

use super::Context;
use crate::cli::IngestArgs;
use crate::output::{Format, json_string, write_stdout};
use crate::roadmap::{
    self,
    github_issues::IssueSync,
    ingest::{IngestSummary, RoadmapFile},
};

/// `oxi ingest --format json`: the roadmap's summary, and the issue sync's when configured.
#[derive(serde::Serialize)]
struct Ingested {
    #[serde(flatten)]
    roadmap: IngestSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    issues: Option<IssueSync>,
}

pub fn run(ctx: &Context, args: &IngestArgs) -> Result<()> {
    let config = ctx.config()?;
    let path = match &args.roadmap {
        Some(path) => ctx.cwd.join(path),
        None => config.roadmap_path(),
    };
    let issues_on = config.config.sources.github_issues.is_some();
    // With issues configured, a missing roadmap file is no roadmap (issues alone feed the queue).
    let file = if issues_on && args.roadmap.is_none() && !path.exists() {
        None
    } else {
        let file = RoadmapFile::read(&path, &config.repo_root)?;
        let mut parsed = file.parse(config.config.project.default_priority_tier)?;
        parsed.mask(&crate::runner::env::redactor_for(
            &config,
            &super::parent_env(),
        ));
        Some((file, parsed))
    };
    let mut ledger = ctx.ledger(&config)?;
    let absent = file.is_none();
    let summary = match file {
        Some((file, parsed)) => roadmap::ingest::apply(
            &mut ledger,
            &parsed,
            &file.label,
            &file.sha256,
            crate::clock::now_ms(),
        )?,
        None => IngestSummary {
            roadmap: format!("{} (absent)", config.config.project.roadmap.display()),
            ..IngestSummary::default()
        },
    };
    let issues = if issues_on {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(roadmap::github_issues::sync(
            &mut ledger,
            &config,
            &super::parent_env(),
        ))?
    } else {
        None
    };
    let text = match ctx.global.format {
        Format::Json => json_string(&Ingested {
            roadmap: summary,
            issues,
        })?,
        Format::Table | Format::Markdown | Format::Html => {
            let mut text = match absent {
                true => format!(
                    "{}: absent; GitHub issues alone feed the queue\n",
                    config.config.project.roadmap.display()
                ),
                false => render(&summary, ctx.global.format),
            };
            if let Some(issues) = &issues {
                text.push_str(&render_issues(issues, ctx.global.format));
            }
            text
        }
    };
    write_stdout(&text)?;
    Ok(())
}

/// The human summary of an issue sync.
fn render_issues(sync: &IssueSync, format: Format) -> String {
    let bullet = if format == Format::Markdown {
        "- "
    } else {
        "  "
    };
    let summary = match sync {
        IssueSync::Failed { .. } => {
            return format!("{}\n", sync.change_line().unwrap_or_default());
        }
        IssueSync::Synced(summary) => summary,
    };
    let mut out = format!(
        "GitHub issues of {}: {} open with the labels ({} pull requests skipped)\n",
        summary.repo, summary.issues, summary.pull_requests_skipped
    );
    let lines = [
        ("added", &summary.added),
        ("updated", &summary.updated),
        ("reopened", &summary.reopened),
        ("cancelled", &summary.cancelled),
        ("abandoned", &summary.abandoned),
        ("in flight, left alone", &summary.in_flight_untouched),
    ];
    push_changes(&mut out, bullet, &lines, summary.unchanged);
    for warning in &summary.warnings {
        out.push_str(&format!("{bullet}warning {warning}\n"));
    }
    out
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
    push_changes(&mut out, bullet, &lines, summary.unchanged);
    if !summary.warnings.is_empty() {
        out.push_str(&format!(
            "{bullet}warnings {} (shown on stderr)\n",
            summary.warnings.len()
        ));
    }
    out
}

/// One line per kind of change that has ids (`added 2: T1-1, T1-2`), then the unchanged count:
/// the roadmap's and the issues' summaries read alike.
fn push_changes(out: &mut String, bullet: &str, lines: &[(&str, &Vec<String>)], unchanged: usize) {
    for (label, ids) in lines {
        if !ids.is_empty() {
            out.push_str(&format!("{bullet}{label} {}: {}\n", ids.len(), list(ids)));
        }
    }
    out.push_str(&format!("{bullet}unchanged {unchanged}\n"));
}
