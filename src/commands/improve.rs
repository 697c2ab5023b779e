//! `oxi improve scan | status | proposals | accept | reject | unpause`: auto-improve from the
//! command line. With `[improve]` absent every subcommand says so and nothing is fetched.

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::json;

use super::{Context, parent_env};
use crate::UsageError;
use crate::cli::{ImproveCommand, ImproveDecideArgs, ImproveProposalsArgs, ImproveScanArgs};
use crate::config::{ImproveConfig, LoadedConfig};
use crate::improve::{ScanContext, accept_proposal};
use crate::ledger::events::{ImproveProposalDecided, ImproveUnpaused};
use crate::ledger::{Event, Ledger, NewEvent, ProposalRow};
use crate::output::{Format, Grid, json_string, write_stdout};

pub(super) fn run(ctx: &Context, command: &ImproveCommand) -> Result<()> {
    let config = ctx.config()?;
    let Some(improve) = config.config.improve.as_ref() else {
        let text = match ctx.global.format {
            Format::Json => json_string(&json!({ "enabled": false }))?,
            _ => format!(
                "auto-improve is off: no [improve] in {} (docs/improve.md shows how to set it up)\n",
                config.display_path()
            ),
        };
        write_stdout(&text)?;
        return Ok(());
    };
    let mut ledger = ctx.ledger(&config)?;
    match command {
        ImproveCommand::Scan(args) => scan(ctx, &config, improve, &mut ledger, args),
        ImproveCommand::Status => status(ctx, improve, &ledger),
        ImproveCommand::Proposals(args) => proposals(ctx, &ledger, args),
        ImproveCommand::Accept(args) => decide(ctx, &config, &mut ledger, args, true),
        ImproveCommand::Reject(args) => decide(ctx, &config, &mut ledger, args, false),
        ImproveCommand::Unpause => unpause(ctx, &mut ledger),
    }
}

fn scan(
    ctx: &Context,
    config: &LoadedConfig,
    improve: &ImproveConfig,
    ledger: &mut Ledger,
    args: &ImproveScanArgs,
) -> Result<()> {
    let env = parent_env();
    let actor = ctx.operator();
    let roadmap = config.roadmap_path();
    let scan_ctx = ScanContext {
        config: &config.config,
        improve,
        root: &config.repo_root,
        roadmap: &roadmap,
        state_dir: &config.state_dir,
        env: &env,
        actor: &actor,
        now_ms: crate::clock::now_ms(),
        force: args.force,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(crate::improve::scan(&scan_ctx, ledger))?;
    let text = match ctx.global.format {
        Format::Json => json_string(&report)?,
        _ if report.already_ran => format!(
            "today's scan (#{}, {}) already ran: {} candidates, {} proposed; --force scans again\n",
            report.scan_id, report.day, report.candidates, report.proposed
        ),
        _ => {
            let mut text = format!(
                "scan #{}: {} candidates from {} sources, {} proposed\nranking: {}\n",
                report.scan_id,
                report.candidates,
                improve.sources.len(),
                report.proposed,
                report.ranking.describe()
            );
            for failed in &report.failed_sources {
                let _ = writeln!(
                    text,
                    "source failed: {} ({}): {}",
                    failed.source, failed.kind, failed.cause
                );
            }
            if let Some(digest) = &report.digest {
                let _ = writeln!(text, "digest: {digest}");
            }
            if report.proposed > 0 {
                text.push_str("`oxi improve proposals` lists them\n");
            }
            text
        }
    };
    write_stdout(&text)?;
    Ok(())
}

fn status(ctx: &Context, improve: &ImproveConfig, ledger: &Ledger) -> Result<()> {
    let q = ledger.read();
    let paused = q.improve_paused()?;
    let last = q.last_improve_scan()?;
    let failures = match &last {
        Some(scan) => q.improve_source_failures(scan.id)?,
        None => Vec::new(),
    };
    let counts = q.improve_proposal_counts()?;
    let count = |status: &str| {
        counts
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n)
    };
    // Two shapes only: JSON, or the text every other format shows.
    #[allow(clippy::single_match_else)]
    let text = match ctx.global.format {
        Format::Json => json_string(&json!({
            "enabled": true,
            "paused": paused.is_some(),
            "paused_reason": paused,
            "sources": improve.sources.iter().map(|s| json!({"kind": s.kind.as_str(), "name": s.name()})).collect::<Vec<_>>(),
            "last_scan": last,
            "last_scan_failures": failures,
            "proposals": {
                "proposed": count("proposed"),
                "accepted": count("accepted"),
                "rejected": count("rejected"),
            },
        }))?,
        _ => {
            let mut text = match &paused {
                Some(reason) => {
                    format!("auto-improve: paused ({reason}); `oxi improve unpause` resumes\n")
                }
                None => "auto-improve: on\n".to_owned(),
            };
            let _ = writeln!(text, "sources: {}", improve.sources.len());
            match &last {
                Some(scan) => {
                    let _ = writeln!(
                        text,
                        "last scan: #{} at {}: {} candidates, {} proposed, {} sources failed",
                        scan.id,
                        crate::clock::rfc3339(scan.started_at_ms),
                        scan.candidates,
                        scan.proposed,
                        scan.failed_sources
                    );
                }
                None => text.push_str("last scan: none yet (`oxi improve scan` runs one)\n"),
            }
            for f in &failures {
                let _ = writeln!(
                    text,
                    "  failed: {} ({}): {}",
                    f.source_name, f.source_kind, f.cause
                );
            }
            let _ = writeln!(
                text,
                "proposals: {} waiting, {} accepted, {} rejected",
                count("proposed"),
                count("accepted"),
                count("rejected")
            );
            text
        }
    };
    write_stdout(&text)?;
    Ok(())
}

fn proposals(ctx: &Context, ledger: &Ledger, args: &ImproveProposalsArgs) -> Result<()> {
    let rows = ledger
        .read()
        .improve_proposals((!args.all).then_some("proposed"))?;
    let text = match ctx.global.format {
        Format::Json => json_string(&rows)?,
        _ if rows.is_empty() => if args.all {
            "no proposals yet (`oxi improve scan` makes some)\n"
        } else {
            "no proposals waiting (`oxi improve proposals --all` lists decided ones)\n"
        }
        .to_owned(),
        format => {
            let mut grid = Grid::new(["id", "rank", "score", "status", "source", "title", "url"]);
            for p in &rows {
                grid.row([
                    p.id.to_string(),
                    p.rank.to_string(),
                    format!("{:.2}", p.score),
                    p.task_id
                        .as_ref()
                        .map_or_else(|| p.status.clone(), |t| format!("{} ({t})", p.status)),
                    p.source_name.clone(),
                    crate::worker::event::clip(&p.title, 60),
                    p.url.clone(),
                ]);
            }
            grid.render(format)
        }
    };
    write_stdout(&text)?;
    Ok(())
}

/// Accepts (into the roadmap) or rejects each named proposal; every id is checked before any
/// is decided, so a typo changes nothing.
fn decide(
    ctx: &Context,
    config: &LoadedConfig,
    ledger: &mut Ledger,
    args: &ImproveDecideArgs,
    accept: bool,
) -> Result<()> {
    let mut chosen: Vec<ProposalRow> = Vec::new();
    for id in &args.ids {
        let Some(proposal) = ledger.read().improve_proposal(*id)? else {
            return Err(UsageError(format!(
                "no proposal #{id} (`oxi improve proposals --all` lists them)"
            ))
            .into());
        };
        if proposal.status != "proposed" {
            return Err(UsageError(format!(
                "proposal #{id} was already {}{}",
                proposal.status,
                proposal
                    .task_id
                    .as_deref()
                    .map(|t| format!(" (roadmap item {t})"))
                    .unwrap_or_default()
            ))
            .into());
        }
        chosen.push(proposal);
    }
    let actor = ctx.operator();
    let verdict = if accept { "accepted" } else { "rejected" };
    let roadmap = config.roadmap_path();
    let mut decided = Vec::new();
    for proposal in &chosen {
        let task_id = if accept {
            Some(accept_proposal(&roadmap, proposal)?)
        } else {
            None
        };
        let at_ms = crate::clock::now_ms();
        let why = args.why.as_deref();
        ledger.write(|q| {
            q.decide_improve_proposal(
                proposal.id,
                verdict,
                task_id.as_deref(),
                &actor,
                why,
                at_ms,
            )?;
            q.append_event(&NewEvent {
                at_ms,
                task_id: None,
                run_id: None,
                actor: &actor,
                event: Event::ImproveProposalDecided(ImproveProposalDecided {
                    proposal_id: proposal.id,
                    verdict: verdict.to_owned(),
                    task_id: task_id.clone(),
                    why: why.map(str::to_owned),
                }),
            })?;
            Ok(())
        })?;
        decided.push(json!({ "id": proposal.id, "verdict": verdict, "task_id": task_id, "title": proposal.title }));
    }
    // Two shapes only: JSON, or the text every other format shows.
    #[allow(clippy::single_match_else)]
    let text = match ctx.global.format {
        Format::Json => json_string(&decided)?,
        _ => {
            let mut text = String::new();
            for d in &decided {
                match d["task_id"].as_str() {
                    Some(task) => {
                        let _ = writeln!(
                            text,
                            "#{} accepted: {task} appended to {} (`oxi ingest` reads it in)",
                            d["id"],
                            config.config.project.roadmap.display()
                        );
                    }
                    None => {
                        let _ = writeln!(text, "#{} rejected", d["id"]);
                    }
                }
            }
            text
        }
    };
    write_stdout(&text)?;
    Ok(())
}

fn unpause(ctx: &Context, ledger: &mut Ledger) -> Result<()> {
    let was = ledger.read().improve_paused()?;
    if let Some(reason) = &was {
        let actor = ctx.operator();
        let at_ms = crate::clock::now_ms();
        ledger.write(|q| {
            q.set_improve_paused(false, "unpaused", &actor, at_ms)?;
            q.append_event(&NewEvent {
                at_ms,
                task_id: None,
                run_id: None,
                actor: &actor,
                event: Event::ImproveUnpaused(ImproveUnpaused {
                    was: reason.clone(),
                }),
            })?;
            Ok(())
        })?;
    }
    let text = match ctx.global.format {
        Format::Json => json_string(&json!({ "was_paused": was.is_some(), "paused": false }))?,
        _ if was.is_some() => "auto-improve resumed: the next scan runs\n".to_owned(),
        _ => "auto-improve was not paused\n".to_owned(),
    };
    write_stdout(&text)?;
    Ok(())
}
