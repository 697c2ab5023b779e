//! `oxi show TASK` and `oxi logs RUN|TASK [--follow]`: triage, everything a person needs to
//! decide what to do with one task or run.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};

use super::Context;
use crate::cli::{LogsArgs, ShowArgs};
use crate::ledger::events::{ReviewDecided, Verified};
use crate::ledger::{Event, Ledger, LedgerError, RunRow, TaskState};
use crate::money::format_usd;
use crate::output::{Format, Grid, json_string, write_stdout};

fn artifacts(run: &RunRow) -> Vec<String> {
    let Some(dir) = &run.run_dir else {
        return Vec::new();
    };
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path().display().to_string())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// One history line's text: the event read as its type, or its raw data, clipped, for a kind
/// this version does not summarise (or data that does not fit its kind).
fn summarize(kind: &str, data: &serde_json::Value) -> String {
    let raw = || crate::worker::event::clip(&data.to_string(), 200);
    let Some(event) = Event::parse(kind, data) else {
        return raw();
    };
    match event {
        Event::TaskStateChanged(e) => format!(
            "{} -> {}: {}{}",
            e.from.as_str(),
            e.to.as_str(),
            e.reason,
            e.failure_class
                .map(|c| format!(" [{c}]"))
                .unwrap_or_default()
        ),
        Event::Verified(e) => verified_line(&e),
        Event::ReviewDecided(ReviewDecided::AutoApproved(e)) => e
            .review_skipped_reason
            .unwrap_or_else(|| "auto-approved".to_owned()),
        Event::ReviewDecided(ReviewDecided::Reviewed(e)) => format!(
            "reviewer {}: {}",
            if e.reviewer.is_empty() {
                "?"
            } else {
                &e.reviewer
            },
            serde_json::to_string(&e.decision).unwrap_or_default()
        ),
        Event::GovernanceMemo(e) => format!("{}: {}", e.trigger(), e.memo()),
        Event::PlanRecorded(e) => format!(
            "{} step(s), files expected {}; executor prompt {} bytes (whole brief: {})",
            e.steps,
            e.files_expected.join(", "),
            e.prompt_bytes,
            e.full_prompt_bytes
        ),
        Event::SessionResumed(e) => format!(
            "continues the session {} of run {} (after {})",
            e.session_id, e.from_run, e.after
        ),
        Event::SessionFresh(e) => format!("starts fresh: {}", e.detail),
        Event::PlanInvalid(e) => format!(
            "{}{}",
            e.error,
            if e.retry {
                "; the planner runs again"
            } else {
                ""
            }
        ),
        Event::BranchMerged(e) => format!(
            "{} ({}) is in {}",
            e.branch.as_deref().unwrap_or("its branch"),
            match e.commit.as_str() {
                "" => "?",
                c => c.get(..12).unwrap_or(c),
            },
            match e.base_branch.as_str() {
                "" => "the base branch",
                b => b,
            }
        ),
        Event::TriageSummary(e) => format!(
            "why it {} ({}): {}",
            e.trigger.as_str(),
            e.choice,
            e.summary
        ),
        Event::TriageSkipped(e) => format!("no triage summary: {}", e.reason),
        Event::ShadowObserved(e) => shadow_line(&e),
        _ => raw(),
    }
}

/// A shadow pair: both sides' outcomes, whether their shapes matched, and what the shadow
/// would have cost more (or less).
fn shadow_line(e: &crate::ledger::events::ShadowObserved) -> String {
    let side = |s: &crate::ledger::events::ShadowSide| {
        format!(
            "{}{} {}{}, {} file(s), {}",
            s.worker,
            s.model
                .as_deref()
                .map(|m| format!(":{m}"))
                .unwrap_or_default(),
            s.outcome,
            if s.green { " green" } else { "" },
            s.files.len(),
            format_usd(s.cost_microusd)
        )
    };
    let delta = e.cost_delta_microusd;
    format!(
        "shadow pair ({}): shape_match {}; primary {}; shadow {}; cost delta {}{}",
        e.rule,
        e.shape_match,
        side(&e.primary),
        side(&e.shadow),
        if delta < 0 { "-" } else { "+" },
        format_usd(delta.abs())
    )
}

pub fn show(ctx: &Context, args: &ShowArgs) -> Result<()> {
    let config = ctx.config()?;
    let ledger = Ledger::open_existing_at(&config.ledger_at())?;
    let task = ledger
        .read()
        .find_task(&args.task)?
        .ok_or_else(|| LedgerError::NoSuchTask(args.task.clone()))?;
    let runs = ledger.read().runs_for_task(&task.spec.id)?;
    let events = ledger.read().task_history(&task.spec.id)?;
    let issue = ledger.read().issue_link(&task.spec.id)?;
    let plan = ledger.read().latest_plan(&task.spec.id)?;
    let hold = crate::pipeline::deliver::current_merge_hold(&ledger, &task)?;
    if ctx.global.format == Format::Json {
        let runs_json: Vec<serde_json::Value> = runs
            .iter()
            .map(|r| serde_json::json!({ "run": r, "artifacts": artifacts(r) }))
            .collect();
        let events_json: Vec<serde_json::Value> = events
            .iter()
            .map(|(at, kind, actor, data)| serde_json::json!({ "at": crate::clock::rfc3339(*at), "kind": kind, "actor": actor, "data": data }))
            .collect();
        let mut shown =
            serde_json::json!({ "task": task, "runs": runs_json, "events": events_json });
        if let Some(link) = &issue {
            shown["issue"] = serde_json::json!(link);
        }
        if let Some(plan) = &plan {
            shown["plan"] = serde_json::json!(plan);
        }
        if let Some(hold) = &hold {
            shown["merge_held"] = serde_json::json!({
                "reason": hold.reason, "head": hold.sha, "since": crate::clock::rfc3339(hold.at_ms),
            });
        }
        write_stdout(&json_string(&shown)?)?;
        return Ok(());
    }
    let mut out = format!(
        "{}: {}\nstate {}{}{} · attempts {} · worker calls {}{}{}\n",
        task.spec.id,
        task.spec.title,
        task.state,
        task.failure_class
            .as_ref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default(),
        task.held_reason
            .as_deref()
            .map(|r| format!("\nwaiting: {r}"))
            .unwrap_or_default(),
        task.attempts,
        task.worker_calls,
        task.branch
            .as_deref()
            .map(|b| format!(" · branch {b}"))
            .unwrap_or_default(),
        task.pr_url
            .as_deref()
            .map(|u| format!(" · {u}"))
            .unwrap_or_default(),
    );
    if let Some(hold) = &hold {
        let line = format!(
            "merge held since {}: {}\nfix it on GitHub, then `oxi approve {} --merge`\n",
            crate::clock::rfc3339(hold.at_ms),
            hold.reason,
            task.spec.id
        );
        out.push_str(&line);
    }
    if let Some(link) = &issue {
        out.push_str(&format!(
            "source: GitHub issue #{} {} (outside text){}\n",
            link.number,
            link.url,
            if link.matches {
                ""
            } else {
                " · no longer open with the labels"
            }
        ));
    }
    if let Some(plan) = &plan {
        out.push_str(&plan_text(plan));
    }
    if !runs.is_empty() {
        // Runs recorded before routes were have none: no column then.
        let with_route = runs.iter().any(|r| r.route.is_some());
        let mut header = vec!["run", "role", "worker", "result", "cost", "time", "detail"];
        if with_route {
            header.insert(3, "route");
        }
        let mut grid = Grid::new(header);
        for r in &runs {
            let ms = r.ended_at_ms.unwrap_or_else(crate::clock::now_ms) - r.started_at_ms;
            let mut cells = vec![
                r.id.clone(),
                r.role.clone(),
                r.worker.clone(),
                r.classification.clone().unwrap_or_else(|| r.status.clone()),
                format_usd(r.cost_microusd),
                format!("{:.1}s", ms as f64 / 1000.0),
                r.detail
                    .as_deref()
                    .map(|d| crate::worker::event::clip(d, 80))
                    .unwrap_or_default(),
            ];
            if with_route {
                // The route and the model it ran: `rule (model)`.
                let route = r.route.as_deref().unwrap_or("-");
                cells.insert(
                    3,
                    match &r.model {
                        Some(model) => format!("{route} ({model})"),
                        None => route.to_owned(),
                    },
                );
            }
            grid.row(cells);
        }
        out.push('\n');
        out.push_str(&grid.render(Format::Table));
    }
    if !events.is_empty() {
        out.push_str("\nhistory:\n");
        for (at, kind, actor, data) in &events {
            out.push_str(&format!(
                "  {} {kind} ({actor}) {}\n",
                crate::clock::rfc3339(*at),
                summarize(kind, data)
            ));
        }
    }
    for r in &runs {
        let files = artifacts(r);
        if !files.is_empty() {
            out.push_str(&format!("\nartifacts of {}:\n", r.id));
            for f in files {
                out.push_str(&format!("  {f}\n"));
            }
        }
    }
    write_stdout(&out)?;
    Ok(())
}

/// The task's latest plan (the explore phase's), as `oxi show` prints it.
fn plan_text(row: &crate::ledger::PlanRow) -> String {
    use std::fmt::Write as _;
    let list = |field: &str| -> Vec<String> {
        row.plan[field]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = format!(
        "\nplan (run {}, attempt {}):\n  files expected: {}\n  steps:\n",
        row.run_id,
        row.attempt,
        list("files_expected").join(", ")
    );
    for (i, step) in list("steps").iter().enumerate() {
        let _ = writeln!(out, "    {}. {step}", i + 1);
    }
    for (field, label) in [
        ("assumptions", "assumptions"),
        ("info_needs", "info needs"),
        ("risks", "risks"),
    ] {
        let items = list(field);
        if !items.is_empty() {
            let _ = writeln!(out, "  {label}: {}", items.join("; "));
        }
    }
    out
}

/// The run `target` names, or a task's latest run. Following a task that has no run yet waits
/// for its first one (a person starts `oxi logs T --follow` before the tick claims T).
fn resolve_run(ledger: &Ledger, target: &str, follow: bool) -> Result<RunRow> {
    if let Some(run) = ledger.read().run(target)? {
        return Ok(run);
    }
    if let Some(task) = ledger.read().find_task(target)? {
        let target = task.spec.id.as_str();
        let mut said = false;
        loop {
            if let Some(run) = ledger.read().runs_for_task(target)?.pop() {
                return Ok(run);
            }
            if !follow {
                bail!("task {target} has no runs yet");
            }
            if !said {
                tracing::info!("task {target} has no run yet; waiting for its first one");
                said = true;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    Err(crate::UsageError(format!(
        "no run or task {target:?}; `oxi tasks` lists the tasks, `oxi show TASK` a task's runs"
    ))
    .into())
}

/// Prints what `path` holds past `offset` and returns the offset after what was printed.
/// Until `to_end`, only complete lines are printed: a writer's buffer may end mid-line or
/// mid-character, and the rest comes with the next read.
fn print_from(path: &Path, offset: u64, to_end: bool) -> Result<u64> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return Ok(offset);
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let take = if to_end {
        bytes.len()
    } else {
        bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
    };
    if take > 0 {
        write_stdout(&String::from_utf8_lossy(&bytes[..take]))?;
    }
    Ok(offset + take as u64)
}

pub fn logs(ctx: &Context, args: &LogsArgs) -> Result<()> {
    let config = ctx.config()?;
    let ledger = Ledger::open_existing_at(&config.ledger_at())?;
    let mut run = resolve_run(&ledger, &args.target, args.follow)?;
    if !args.follow {
        print_from(&transcript(&run)?, 0, true)?;
        return Ok(());
    }
    // A task is followed across its runs (a retry, its review); a run alone to its end.
    let task = match run.task_id.clone() {
        Some(task) if run.id != args.target => Some(task),
        _ => None,
    };
    loop {
        follow_run(&ledger, &run)?;
        let Some(task) = &task else {
            return Ok(());
        };
        match next_run(&ledger, task, &run.id)? {
            Some(next) => {
                write_stdout(&format!(
                    "\n── {task}: run {} ({}, attempt {}) ──\n",
                    next.id, next.role, next.attempt
                ))?;
                run = next;
            }
            None => return Ok(()),
        }
    }
}

fn transcript(run: &RunRow) -> Result<PathBuf> {
    let Some(dir) = run.run_dir.clone() else {
        bail!("run {} has no run directory", run.id);
    };
    Ok(PathBuf::from(dir).join("transcript.md"))
}

/// Prints `run`'s transcript as it grows, until the run has ended.
fn follow_run(ledger: &Ledger, run: &RunRow) -> Result<()> {
    let path = transcript(run)?;
    let mut offset = 0u64;
    loop {
        // Whether the run had ended is read before the file, so the last read sees all of it.
        let finished = ledger
            .read()
            .run(&run.id)?
            .is_none_or(|r| r.status != "running");
        offset = print_from(&path, offset, finished)?;
        if finished {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The task's run after `after`, waiting for it while the task is still on its way: in flight,
/// or queued / in `retry_wait` for another attempt that oxi makes by itself. `None` once the
/// task is at rest (delivered, held, failed, done, cancelled, …) with no newer run, or when
/// `after` was killed because oxi was stopped (nothing runs the task until oxi is started
/// again).
fn next_run(ledger: &Ledger, task: &str, after: &str) -> Result<Option<RunRow>> {
    let stopped = ledger
        .read()
        .run(after)?
        .is_some_and(|r| r.classification.as_deref() == Some("killed"));
    loop {
        // The state is read before the runs, so a run started just before the task came to
        // rest is still found.
        let state = ledger.read().task(task)?.map(|t| t.state);
        let runs = ledger.read().runs_for_task(task)?;
        let next = runs
            .iter()
            .position(|r| r.id == after)
            .and_then(|at| runs.get(at + 1).cloned());
        if next.is_some() {
            return Ok(next);
        }
        let on_its_way = state.is_some_and(|s| {
            s.is_in_flight() || (!stopped && matches!(s, TaskState::Queued | TaskState::RetryWait))
        });
        if !on_its_way {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A `verified` event: this run's own change, and the branch's when a retry continued earlier
/// attempts' work (so the two differ).
fn verified_line(v: &Verified) -> String {
    let size = |files: u64, added: u64, removed: u64| format!("{files} files, +{added} -{removed}");
    let own = size(v.files, v.lines_added, v.lines_removed);
    let branch = match &v.delivery {
        Some(d) if size(d.files, d.lines_added, d.lines_removed) != own => format!(
            "; branch: {}",
            size(d.files, d.lines_added, d.lines_removed)
        ),
        _ => String::new(),
    };
    format!(
        "verification {} (this run: {own}{branch})",
        if v.green { "green" } else { "red" }
    )
}
