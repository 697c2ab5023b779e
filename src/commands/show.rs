//! `oxi show TASK` and `oxi logs RUN|TASK [--follow]`: triage (seed 000's operator checklist).

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};

use super::Context;
use crate::cli::{LogsArgs, ShowArgs};
use crate::ledger::{Ledger, LedgerError, RunRow};
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

fn summarize(kind: &str, data: &serde_json::Value) -> String {
    match kind {
        "task_state_changed" => format!(
            "{} -> {}: {}{}",
            data["from"].as_str().unwrap_or("?"),
            data["to"].as_str().unwrap_or("?"),
            data["reason"].as_str().unwrap_or(""),
            data["failure_class"]
                .as_str()
                .map(|c| format!(" [{c}]"))
                .unwrap_or_default()
        ),
        "verified" => format!(
            "verification {} ({} files, +{} -{})",
            if data["green"] == true {
                "green"
            } else {
                "red"
            },
            data["files"],
            data["lines_added"],
            data["lines_removed"]
        ),
        "review_decided" => match data["decision"].as_str() {
            Some("auto_approve") => data["review_skipped_reason"]
                .as_str()
                .unwrap_or("auto-approved")
                .to_owned(),
            _ => format!(
                "reviewer {}: {}",
                data["reviewer"].as_str().unwrap_or("?"),
                data["decision"]
            ),
        },
        "governance_memo" => format!(
            "{}: {}",
            data["trigger"].as_str().unwrap_or("?"),
            data["memo"].as_str().unwrap_or("")
        ),
        _ => crate::worker::event::clip(&data.to_string(), 200),
    }
}

pub fn show(ctx: &Context, args: &ShowArgs) -> Result<()> {
    let config = ctx.config()?;
    let ledger = Ledger::open_existing(&config.ledger_path())?;
    let task = ledger
        .read()
        .task(&args.task)?
        .ok_or_else(|| LedgerError::NoSuchTask(args.task.clone()))?;
    let runs = ledger.read().runs_for_task(&task.spec.id)?;
    let events = ledger.read().task_history(&task.spec.id)?;
    if ctx.global.format == Format::Json {
        let runs_json: Vec<serde_json::Value> = runs
            .iter()
            .map(|r| serde_json::json!({ "run": r, "artifacts": artifacts(r) }))
            .collect();
        let events_json: Vec<serde_json::Value> = events
            .iter()
            .map(|(at, kind, actor, data)| serde_json::json!({ "at": crate::clock::rfc3339(*at), "kind": kind, "actor": actor, "data": data }))
            .collect();
        write_stdout(&json_string(
            &serde_json::json!({ "task": task, "runs": runs_json, "events": events_json }),
        )?)?;
        return Ok(());
    }
    let mut out = format!(
        "{}: {}\nstate {}{}{} · attempts {} · worker calls {}{}{}\n",
        task.spec.id,
        task.spec.title,
        task.state,
        task.failure_class
            .as_deref()
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
    if !runs.is_empty() {
        let mut grid = Grid::new(["run", "role", "worker", "result", "cost", "time", "detail"]);
        for r in &runs {
            let ms = r.ended_at_ms.unwrap_or_else(crate::clock::now_ms) - r.started_at_ms;
            grid.row([
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
            ]);
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

fn resolve_run(ledger: &Ledger, target: &str) -> Result<RunRow> {
    if let Some(run) = ledger.read().run(target)? {
        return Ok(run);
    }
    if ledger.read().task(target)?.is_some() {
        if let Some(run) = ledger.read().runs_for_task(target)?.pop() {
            return Ok(run);
        }
        bail!("task {target} has no runs yet");
    }
    Err(crate::UsageError(format!(
        "no run or task {target:?}; `oxi show TASK` lists a task's runs"
    ))
    .into())
}

pub fn logs(ctx: &Context, args: &LogsArgs) -> Result<()> {
    let config = ctx.config()?;
    let ledger = Ledger::open_existing(&config.ledger_path())?;
    let run = resolve_run(&ledger, &args.target)?;
    let Some(dir) = run.run_dir.clone() else {
        bail!("run {} has no run directory", run.id);
    };
    let path = PathBuf::from(dir).join("transcript.md");
    let mut offset = 0u64;
    loop {
        if let Ok(mut file) = std::fs::File::open(&path) {
            file.seek(SeekFrom::Start(offset))?;
            let mut text = String::new();
            file.read_to_string(&mut text)?;
            offset += text.len() as u64;
            if !text.is_empty() {
                write_stdout(&text)?;
            }
        }
        if !args.follow {
            break;
        }
        let finished = ledger
            .read()
            .run(&run.id)?
            .is_none_or(|r| r.status != "running");
        if finished {
            // One last read after the run closed its files.
            if let Ok(mut file) = std::fs::File::open(&path) {
                file.seek(SeekFrom::Start(offset))?;
                let mut text = String::new();
                file.read_to_string(&mut text)?;
                write_stdout(&text)?;
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}
