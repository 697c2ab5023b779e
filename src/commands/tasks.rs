//! `oxi tasks [--state S]…`: every task with its state, attempts, worker, branch, cost and the
//! reason it waits or stopped — where a person looks up an id.

use std::collections::HashMap;

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::cli::TasksArgs;
use crate::ledger::{FailureClass, IssueLink, Ledger, TaskRow, TaskRunTotals, TaskState};
use crate::money::{format_usd, micro_to_usd};
use crate::output::{Format, Grid, json_string, write_stdout};
use crate::routing::Router;
use crate::scheduler::plan::PlannedTask;

/// One row of `oxi tasks --format json`. Field names are a documented interface.
#[derive(Debug, Serialize)]
struct TaskLine<'a> {
    id: &'a str,
    title: &'a str,
    state: TaskState,
    priority_tier: u8,
    attempts: u32,
    worker_calls: u32,
    /// The worker of its latest executor run.
    worker: Option<&'a str>,
    branch: Option<&'a str>,
    cost_usd: f64,
    /// Why it waits or stopped; `None` when nothing holds it (eligible, running, finished).
    reason: Option<String>,
    failure_class: Option<&'a str>,
    depends_on: &'a [String],
    pr_number: Option<u64>,
    pr_url: Option<&'a str>,
    in_roadmap: bool,
    /// `roadmap`, or `github_issue` (with `issue_url`) for a task made from an issue.
    source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    issue_url: Option<&'a str>,
    /// The `[[routing.rules]]` rule the task routes by now, or `default`.
    route: &'a str,
    /// The host its latest run started on; present once more than one host shares the ledger
    /// (or with `--host`).
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
}

/// Why a task waits or stopped, in one line.
fn reason(task: &TaskRow, planned: Option<&PlannedTask>, base_branch: &str) -> Option<String> {
    let id = &task.spec.id;
    match task.state {
        TaskState::Queued | TaskState::Held | TaskState::RetryWait => {
            planned.and_then(|p| p.held_reason.clone())
        }
        TaskState::Dispatched => Some(format!(
            "a worker is on it (`oxi logs {id} --follow` shows it)"
        )),
        TaskState::DeliverPending => Some(
            "committed; a GitHub step failed and the next tick resumes the delivery".to_owned(),
        ),
        TaskState::Delivered => Some(match task.pr_number {
            Some(number) => format!("pull request #{number} waits for review and merge"),
            None => format!(
                "merge its branch into {base_branch} (the next tick sees it), or `oxi done {id}` if it landed another way"
            ),
        }),
        TaskState::Failed | TaskState::FrameworkFixNeeded => {
            let class = task
                .failure_class
                .as_ref()
                .map_or("failed", FailureClass::as_str);
            let first = task
                .last_failure
                .as_deref()
                .and_then(|f| f.lines().find(|l| !l.trim().is_empty()));
            Some(match first {
                Some(line) => format!("{class}: {}", crate::worker::event::clip(line.trim(), 160)),
                None => class.to_owned(),
            })
        }
        TaskState::Rejected => Some("its pull request was closed without merging".to_owned()),
        TaskState::Abandoned => Some("it left the roadmap".to_owned()),
        TaskState::Verifying
        | TaskState::Reviewing
        | TaskState::Merged
        | TaskState::Done
        | TaskState::Cancelled => None,
    }
}

fn lines<'a>(
    tasks: &'a [TaskRow],
    totals: &'a HashMap<String, TaskRunTotals>,
    issues: &'a HashMap<String, IssueLink>,
    planned: &HashMap<&str, &PlannedTask>,
    base_branch: &str,
    states: &[TaskState],
    router: &'a Router,
) -> Vec<TaskLine<'a>> {
    tasks
        .iter()
        .filter(|t| states.is_empty() || states.contains(&t.state))
        .map(|t| {
            let total = totals.get(&t.spec.id);
            TaskLine {
                id: &t.spec.id,
                title: &t.spec.title,
                state: t.state,
                priority_tier: t.spec.priority_tier,
                attempts: t.attempts,
                worker_calls: t.worker_calls,
                worker: total.and_then(|r| r.last_worker.as_deref()),
                branch: t.branch.as_deref(),
                cost_usd: micro_to_usd(total.map_or(0, |r| r.cost_microusd)),
                reason: reason(t, planned.get(t.spec.id.as_str()).copied(), base_branch),
                failure_class: t.failure_class.as_ref().map(FailureClass::as_str),
                depends_on: &t.spec.depends_on,
                pr_number: t.pr_number,
                pr_url: t.pr_url.as_deref(),
                in_roadmap: t.in_roadmap,
                source: match issues.contains_key(&t.spec.id) {
                    true => "github_issue",
                    false => "roadmap",
                },
                issue_url: issues.get(&t.spec.id).map(|l| l.url.as_str()),
                route: router.route(&t.spec).name(),
                host: None,
            }
        })
        .collect()
}

/// `with_route`: a ROUTE column (when `[[routing.rules]]` exist; else every task is `default`).
/// `with_host`: a HOST column (when several hosts share the ledger, or with `--host`).
fn render(lines: &[TaskLine<'_>], format: Format, with_route: bool, with_host: bool) -> String {
    if lines.is_empty() {
        return "no tasks (`oxi ingest` reads the roadmap)\n".to_owned();
    }
    // The source column appears once a task comes from somewhere other than the roadmap; the
    // route column when `[[routing.rules]]` exist.
    let sourced = lines.iter().any(|l| l.issue_url.is_some());
    let mut header = vec!["ID"];
    if sourced {
        header.push("SOURCE");
    }
    header.extend(["STATE", "ATTEMPTS", "WORKER"]);
    if with_route {
        header.push("ROUTE");
    }
    if with_host {
        header.push("HOST");
    }
    header.extend(["COST", "BRANCH", "WHY"]);
    let mut grid = Grid::new(header);
    for line in lines {
        let mut cells = vec![line.id.to_owned()];
        if sourced {
            cells.push(line.issue_url.unwrap_or("roadmap").to_owned());
        }
        cells.extend([
            line.state.to_string(),
            line.attempts.to_string(),
            line.worker.unwrap_or("-").to_owned(),
        ]);
        if with_route {
            cells.push(line.route.to_owned());
        }
        if with_host {
            cells.push(line.host.unwrap_or("-").to_owned());
        }
        cells.extend([
            format_usd(crate::money::usd_to_micro(line.cost_usd)),
            line.branch.unwrap_or("-").to_owned(),
            match &line.reason {
                Some(reason) => reason.clone(),
                None if line.state.is_waiting() => "eligible".to_owned(),
                None => "-".to_owned(),
            },
        ]);
        grid.row(cells);
    }
    let mut counts: Vec<(TaskState, usize)> = Vec::new();
    for line in lines {
        match counts.iter_mut().find(|(s, _)| *s == line.state) {
            Some((_, n)) => *n += 1,
            None => counts.push((line.state, 1)),
        }
    }
    counts.sort();
    let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    // A blank line ends a Markdown table (a plain line after it would be read as a row).
    let gap = if format == Format::Markdown {
        "\n\n"
    } else {
        "\n"
    };
    format!(
        "{}{gap}{} task(s): {}\n",
        grid.render(format).trim_end(),
        lines.len(),
        counts.join(", ")
    )
}

pub fn run(ctx: &Context, args: &TasksArgs) -> Result<()> {
    let config = ctx.config()?;
    let ledger = Ledger::open_existing_at(&config.ledger_at())?;
    super::warn_if_roadmap_changed(&config, &ledger);
    let tasks = ledger.read().tasks()?;
    let totals = ledger.read().task_run_totals()?;
    let plan = crate::scheduler::plan::plan_with(
        &tasks,
        crate::clock::now_ms(),
        config.stacks_on_delivered(),
    );
    let planned: HashMap<&str, &PlannedTask> = plan.iter().map(|p| (p.id.as_str(), p)).collect();
    let issues = ledger.read().issue_links()?;
    let router = Router::new(&config.config)?;
    // One host: the column would say the same on every row.
    let with_host = args.host.is_some() || ledger.read().hosts()?.len() > 1;
    let task_hosts = if with_host {
        Some(ledger.read().task_hosts()?)
    } else {
        None
    };
    let mut lines = lines(
        &tasks,
        &totals,
        &issues,
        &planned,
        &config.config.project.base_branch,
        &args.states,
        &router,
    );
    if let Some(hosts) = &task_hosts {
        for line in &mut lines {
            line.host = hosts.get(line.id).map(String::as_str);
        }
    }
    if let Some(host) = &args.host {
        lines.retain(|l| l.host == Some(host.as_str()));
    }
    let text = match ctx.global.format {
        Format::Json => json_string(&lines)?,
        format => render(
            &lines,
            format,
            !config.config.routing.rules.is_empty(),
            with_host,
        ),
    };
    write_stdout(&text)?;
    Ok(())
}
