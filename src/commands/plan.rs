//! `oxi plan --dry-run`: the queue in dispatch order.

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::cli::PlanArgs;
use std::collections::HashMap;

use crate::ledger::{Ledger, TaskRow};
use crate::output::{Format, Grid, json_string, write_stdout};
use crate::routing::{DEFAULT_ROUTE, Router};
use crate::scheduler::plan::{PlannedTask, plan_with};

/// One row of `oxi plan --format json`. Field names are a documented interface.
#[derive(Debug, Serialize)]
struct PlanRow<'a> {
    position: usize,
    id: &'a str,
    priority_tier: u8,
    effective_tier: u8,
    title: &'a str,
    state: &'a str,
    held_reason: Option<&'a str>,
    depends_on: &'a [String],
    attempts: u32,
    section: Option<&'a str>,
    file_hints: &'a [String],
    /// The `[[routing.rules]]` rule the task routes by, or `default`.
    route: &'a str,
}

pub fn run(ctx: &Context, args: &PlanArgs) -> Result<()> {
    let config = ctx.config()?;
    let ledger = Ledger::open_existing(&config.ledger_path())?;
    super::warn_if_roadmap_changed(&config, &ledger);
    let tasks = ledger.read().tasks()?;
    let mut planned: Vec<PlannedTask> =
        plan_with(&tasks, crate::clock::now_ms(), config.stacks_on_delivered());
    // Every executor blocked (a CLI that could not authenticate): nothing is eligible, and
    // the block is why.
    let blocked = crate::preflight::blocked_executors(&config, &ledger)?;
    if !blocked.is_empty() {
        let reason = blocked.join("; ");
        for task in planned.iter_mut().filter(|t| t.is_eligible()) {
            task.held_reason = Some(reason.clone());
        }
    }
    if args.eligible {
        planned.retain(PlannedTask::is_eligible);
    }
    if let Some(switch) = ledger.read().killswitch()?
        && switch.paused
    {
        tracing::warn!(
            "paused by {}: nothing is dispatched until `oxi resume`",
            switch.by
        );
    }
    let router = Router::new(&config.config)?;
    let by_id: HashMap<&str, &TaskRow> = tasks.iter().map(|t| (t.spec.id.as_str(), t)).collect();
    let rows: Vec<PlanRow<'_>> = planned
        .iter()
        .enumerate()
        .map(|(i, p)| PlanRow {
            route: by_id
                .get(p.id.as_str())
                .map_or(DEFAULT_ROUTE, |t| router.route(&t.spec).name()),
            position: i + 1,
            id: &p.id,
            priority_tier: p.priority_tier,
            effective_tier: p.effective_tier,
            title: &p.title,
            state: p.state.as_str(),
            held_reason: p.held_reason.as_deref(),
            depends_on: &p.depends_on,
            attempts: p.attempts,
            section: p.section.as_deref(),
            file_hints: &p.file_hints,
        })
        .collect();
    let text = match ctx.global.format {
        Format::Json => json_string(&rows)?,
        format => {
            if rows.is_empty() {
                "nothing waiting: every task is in flight or finished (`oxi tasks` lists them all)\n"
                    .to_owned()
            } else {
                // Without rules every task routes by the default: no column to read.
                let with_route = !config.config.routing.rules.is_empty();
                let mut header = vec!["#", "ID", "TIER", "STATE", "TITLE", "HELD"];
                if with_route {
                    header.insert(4, "ROUTE");
                }
                let mut grid = Grid::new(header);
                for row in &rows {
                    let tier = if row.effective_tier < row.priority_tier {
                        format!("{} (from {})", row.effective_tier, row.priority_tier)
                    } else {
                        row.priority_tier.to_string()
                    };
                    let mut cells = vec![
                        row.position.to_string(),
                        row.id.to_owned(),
                        tier,
                        row.state.to_owned(),
                        truncate(row.title, 60),
                        row.held_reason.unwrap_or("-").to_owned(),
                    ];
                    if with_route {
                        cells.insert(4, row.route.to_owned());
                    }
                    grid.row(cells);
                }
                let eligible = rows.iter().filter(|r| r.held_reason.is_none()).count();
                format!(
                    "{}\n{} waiting, {eligible} eligible now\n",
                    grid.render(format).trim_end(),
                    rows.len()
                )
            }
        }
    };
    write_stdout(&text)?;
    Ok(())
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut t: String = text.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}
