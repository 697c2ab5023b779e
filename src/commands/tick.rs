//! `oxi tick`: what cron, launchd or a systemd timer runs.

use crate::roadmap::github_issues::IssueSync;
use anyhow::Result;

use super::Context;
use super::parent_env;
use crate::output::{Format, Grid, json_string, write_stdout};
use crate::scheduler::lock;
use crate::scheduler::{self, Outcome, TickReport};
use crate::{ExitWith, exit};

fn render(report: &TickReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "tick ({} mode): {} in {} ms\n",
        report.mode, report.outcome, report.phases_ms.total
    ));
    for r in &report.reaped {
        out.push_str(&format!(
            "reaped {} {}: {}{}\n",
            r.run_id.as_deref().unwrap_or("-"),
            r.task_id.as_deref().unwrap_or(""),
            r.reason,
            r.task_state.map(|s| format!(" -> {s}")).unwrap_or_default()
        ));
    }
    if let Some(ingest) = &report.ingest
        && (!ingest.added.is_empty()
            || !ingest.updated.is_empty()
            || !ingest.marked_done.is_empty())
    {
        out.push_str(&format!(
            "roadmap: {} added, {} updated, {} done\n",
            ingest.added.len(),
            ingest.updated.len(),
            ingest.marked_done.len()
        ));
    }
    if let Some(line) = report.issues.as_ref().and_then(IssueSync::change_line) {
        out.push_str(&format!("{line}\n"));
    }
    for landed in &report.landed {
        out.push_str(&format!(
            "{}: {} is merged into {} -> done\n",
            landed.task_id,
            landed.branch.as_deref().unwrap_or(&landed.commit),
            landed.base_branch
        ));
    }
    for id in &report.delivered_approved {
        out.push_str(&format!("delivered {id} (approved)\n"));
    }
    for problem in &report.blocked {
        out.push_str(&format!("blocked: {problem}\n"));
    }
    if report.paused {
        out.push_str("paused: no new claims (`oxi resume` to continue)\n");
    }
    for stop in report
        .failed_at_claim
        .iter()
        .chain(&report.held_at_claim)
        .chain(&report.deferred)
    {
        out.push_str(&format!("{}: {}\n", stop.task_id, stop.reason));
    }
    if let Some(refusal) = &report.budget_refusal {
        if refusal.waits_for_runs_in_flight() {
            out.push_str(&format!(
                "budget held by runs in flight (a later tick claims once they settle): {refusal}\n"
            ));
        } else {
            out.push_str(&format!("budget: {refusal}\n"));
        }
    }
    if !report.jobs.is_empty() {
        let mut grid = Grid::new([
            "task", "attempt", "worker", "run", "result", "state", "cost", "branch",
        ]);
        for job in &report.jobs {
            grid.row([
                job.task_id.clone(),
                job.attempt.to_string(),
                job.worker.clone(),
                job.run_id.clone(),
                job.failure_class
                    .clone()
                    .or_else(|| job.classification.clone())
                    .unwrap_or_else(|| "-".to_owned()),
                job.state.to_string(),
                format!("${:.2}", job.cost_usd),
                job.branch.clone(),
            ]);
        }
        out.push_str(&grid.render(Format::Table));
        for job in &report.jobs {
            if let Some(detail) = &job.detail {
                let first = detail.lines().next().unwrap_or("");
                out.push_str(&format!("{}: {first}\n", job.task_id));
            }
            if let Some(reason) = &job.held_reason {
                out.push_str(&format!("{} held: {reason}\n", job.task_id));
            }
        }
    }
    for error in &report.job_errors {
        out.push_str(&format!(
            "error: {error} (the next tick recovers the task)\n"
        ));
    }
    out
}

pub fn run(ctx: &Context) -> Result<()> {
    let config = ctx.config()?;
    let _lock = match lock::acquire_for(&config) {
        Ok(lock) => lock,
        Err(lock::LockError::Held { holder, .. }) => {
            // Not an error: a scheduled tick that finds one running leaves the work to it.
            let text = match ctx.global.format {
                Format::Json => json_string(&serde_json::json!({
                    "outcome": Outcome::AlreadyRunning,
                    // A string, as before `holder` carried the details.
                    "pid": holder.as_ref().map_or("unknown".to_owned(), |h| h.pid.to_string()),
                    "holder": holder,
                }))?,
                _ => format!(
                    "tick already running: {}\n",
                    lock::describe(holder.as_ref())
                ),
            };
            write_stdout(&text)?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let mut ledger = ctx.ledger(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let actor = "oxi".to_owned();
    let report = runtime.block_on(async {
        let shutdown = super::watch_signals();
        scheduler::pass(&config, &mut ledger, parent_env(), &actor, shutdown).await
    })?;
    let text = match ctx.global.format {
        Format::Json => json_string(&report)?,
        _ => render(&report),
    };
    write_stdout(&text)?;
    match report.outcome.exit_code() {
        exit::OK => Ok(()),
        code => Err(ExitWith(code).into()),
    }
}
