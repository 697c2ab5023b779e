//! `oxi plan --dry-run`: the queue in dispatch order.

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::cli::PlanArgs;
use std::collections::HashMap;

use crate::host::{Identity, Placement, place};
use crate::ledger::{HostRow, Ledger, TaskRow};
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
    /// The host labels that rule requires (left out when none).
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    requires: &'a [String],
    /// The live hosts that have those labels (left out when the rule requires none).
    #[serde(skip_serializing_if = "Option::is_none")]
    hosts: Option<Vec<String>>,
}

/// The host the plan is seen from: this one, or `--host`'s labels as its heartbeat recorded
/// them.
fn viewpoint(
    config: &crate::config::LoadedConfig,
    live: &[HostRow],
    host: Option<&str>,
) -> Identity {
    let me = Identity::of(config);
    match host {
        Some(name) if name != me.name => Identity {
            name: name.to_owned(),
            labels: live
                .iter()
                .find(|h| h.name == name)
                .map(|h| h.labels.clone())
                .unwrap_or_default(),
            machine_id: String::new(),
        },
        _ => me,
    }
}

/// Holds the eligible tasks whose rule requires host labels: with `--host`, those that host
/// lacks; without it, those no live host (nor this one) has.
fn hold_for_labels(
    planned: &mut [PlannedTask],
    by_id: &HashMap<&str, &TaskRow>,
    router: &Router,
    seen_from: &Identity,
    live: &[HostRow],
    strict: bool,
) {
    for task in planned.iter_mut().filter(|t| t.is_eligible()) {
        let Some(row) = by_id.get(task.id.as_str()) else {
            continue;
        };
        let route = router.route(&row.spec);
        match place(seen_from, live, route.name(), route.requires()) {
            Placement::Elsewhere(other) if strict => {
                task.held_reason = Some(format!(
                    "routing rule {:?} requires the labels {}, which {} lacks; {other} has them",
                    route.name(),
                    route.requires().join(", "),
                    seen_from.name
                ));
            }
            Placement::Here | Placement::Elsewhere(_) => {}
            Placement::Nowhere(reason) => task.held_reason = Some(reason),
        }
    }
}

pub fn run(ctx: &Context, args: &PlanArgs) -> Result<()> {
    let config = ctx.config()?;
    let ledger = Ledger::open_existing_at(&config.ledger_at())?;
    super::warn_if_roadmap_changed(&config, &ledger);
    if args.forecast {
        write_stdout(&super::plan_forecast::render(
            &config,
            &ledger,
            ctx.global.format,
        )?)?;
        return Ok(());
    }
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
    let router = Router::new(&config.config)?;
    let by_id: HashMap<&str, &TaskRow> = tasks.iter().map(|t| (t.spec.id.as_str(), t)).collect();
    let live = crate::host::live_hosts(&ledger)?;
    let seen_from = viewpoint(&config, &live, args.host.as_deref());
    hold_for_labels(
        &mut planned,
        &by_id,
        &router,
        &seen_from,
        &live,
        args.host.is_some(),
    );
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
    let rows: Vec<PlanRow<'_>> = planned
        .iter()
        .enumerate()
        .map(|(i, p)| PlanRow {
            route: by_id
                .get(p.id.as_str())
                .map_or(DEFAULT_ROUTE, |t| router.route(&t.spec).name()),
            requires: by_id
                .get(p.id.as_str())
                .map_or(&[][..], |t| router.route(&t.spec).requires()),
            hosts: by_id
                .get(p.id.as_str())
                .map(|t| router.route(&t.spec).requires())
                .filter(|r| !r.is_empty())
                .map(|required| {
                    live.iter()
                        .filter(|h| {
                            Identity {
                                name: h.name.clone(),
                                labels: h.labels.clone(),
                                machine_id: String::new(),
                            }
                            .can_take(required)
                        })
                        .map(|h| h.name.clone())
                        .collect()
                }),
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
        format => render(&rows, format, !config.config.routing.rules.is_empty()),
    };
    write_stdout(&text)?;
    Ok(())
}

/// The plan as a table; `rules_exist`: a ROUTE column (without rules every task routes by the
/// default).
fn render(rows: &[PlanRow<'_>], format: Format, rules_exist: bool) -> String {
    if rows.is_empty() {
        "nothing waiting: every task is in flight or finished (`oxi tasks` lists them all)\n"
            .to_owned()
    } else {
        // Without rules every task routes by the default: no column to read.
        let with_route = rules_exist;
        // Only rules that require host labels make hosts differ in what they can take.
        let with_hosts = rows.iter().any(|r| r.hosts.is_some());
        let mut header = vec!["#", "ID", "TIER", "STATE", "TITLE", "HELD"];
        if with_hosts {
            header.insert(4, "HOSTS");
        }
        if with_route {
            header.insert(4, "ROUTE");
        }
        let mut grid = Grid::new(header);
        for row in rows {
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
            if with_hosts {
                cells.insert(
                    4,
                    match &row.hosts {
                        None => "any".to_owned(),
                        Some(hosts) if hosts.is_empty() => "none live".to_owned(),
                        Some(hosts) => hosts.join(", "),
                    },
                );
            }
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

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut t: String = text.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}
