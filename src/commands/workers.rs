//! `oxi workers`: the contract check for each configured worker (binary, version, recorded
//! output still parsing), the same check `oxi doctor` runs; with `--probe`, also the live
//! probe of each CLI (src/worker/probe), recorded in the ledger.

use anyhow::Result;
use serde::Serialize;
use std::fmt::Write as _;

use super::Context;
use super::parent_env;
use crate::cli::WorkersArgs;
use crate::config::LoadedConfig;
use crate::ledger::Ledger;
use crate::output::{Format, Grid, json_string, write_stdout};
use crate::runner::contract::{self, ContractReport, Verdict};
use crate::runner::env::worker_env;
use crate::worker::probe::{self, ProbeReport, ProbeVerdict};
use crate::{ExitWith, exit};

pub fn run(ctx: &Context, args: &WorkersArgs) -> Result<()> {
    let config = ctx.config()?;
    let token_env = config.config.github.as_ref().map(|g| g.token_env.as_str());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut reports = Vec::new();
    for (name, worker) in &config.config.workers {
        let env = worker_env(worker, parent_env(), token_env);
        reports.push(runtime.block_on(contract::check(name, worker, &env.vars, &config.repo_root)));
    }
    if args.probe {
        return run_probes(ctx, &config, &runtime, &reports);
    }
    let text = match ctx.global.format {
        Format::Json => json_string(&reports)?,
        format => {
            let mut grid = Grid::new([
                "worker", "kind", "binary", "version", "tested", "fixture", "verdict",
            ]);
            for r in &reports {
                grid.row([
                    r.worker.clone(),
                    r.kind.to_string(),
                    r.binary
                        .as_ref()
                        .map(|b| b.display().to_string())
                        .unwrap_or_else(|| "not found".to_owned()),
                    r.version.clone().unwrap_or_else(|| "-".to_owned()),
                    r.tested_versions.join(", "),
                    if r.fixture.ok { "parses" } else { "DRIFT" }.to_owned(),
                    format!("{:?}", r.verdict).to_lowercase(),
                ]);
            }
            let mut text = grid.render(format);
            for r in &reports {
                for problem in &r.problems {
                    let _ = writeln!(text, "\n{}: {problem}", r.worker);
                }
            }
            text
        }
    };
    write_stdout(&text)?;
    if reports.iter().any(|r| r.verdict == Verdict::Fail) {
        return Err(ExitWith(exit::FAILURE).into());
    }
    Ok(())
}

/// One worker's line of `oxi workers --probe --format json`. Field names are a documented
/// interface.
#[derive(Debug, Serialize)]
struct ProbeLine {
    worker: String,
    /// The probe, or `None` when the CLI could not be found.
    probe: Option<ProbeReport>,
    /// Why it did not run, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    not_run: Option<String>,
    /// What to do when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

/// Probes every worker whose binary was found, records each verdict, and prints them; exits
/// 1 when any probe failed or could not run.
fn run_probes(
    ctx: &Context,
    config: &LoadedConfig,
    runtime: &tokio::runtime::Runtime,
    reports: &[ContractReport],
) -> Result<()> {
    let token_env = config.config.github.as_ref().map(|g| g.token_env.as_str());
    let mut ledger = Ledger::open_at(&config.ledger_at())?;
    let mut lines = Vec::new();
    for report in reports {
        let Some(worker) = config.config.workers.get(&report.worker) else {
            continue;
        };
        if report.binary.is_none() {
            lines.push(ProbeLine {
                worker: report.worker.clone(),
                probe: None,
                not_run: Some(report.problems.join("; ")),
                fix: None,
            });
            continue;
        }
        let env = worker_env(worker, parent_env(), token_env);
        let found = runtime.block_on(probe::probe(
            &report.worker,
            worker,
            &env.vars,
            report.version.clone(),
            &config.state_dir,
        ))?;
        ledger.write(|q| q.record_probe(&probe::row(&found, crate::clock::now_ms())))?;
        let fix = if found.verdict == ProbeVerdict::Fail {
            let last_good = ledger.read().last_good_probe(&report.worker)?;
            Some(probe::quarantine_fix(
                worker.kind,
                &report.worker,
                last_good.and_then(|g| g.cli_version).as_deref(),
            ))
        } else {
            None
        };
        lines.push(ProbeLine {
            worker: report.worker.clone(),
            probe: Some(found),
            not_run: None,
            fix,
        });
    }
    write_stdout(&render(ctx.global.format, &lines)?)?;
    let failed = lines.iter().any(|l| {
        l.probe
            .as_ref()
            .is_none_or(|p| p.verdict == ProbeVerdict::Fail)
    });
    if failed {
        return Err(ExitWith(exit::FAILURE).into());
    }
    Ok(())
}

fn render(format: Format, lines: &[ProbeLine]) -> Result<String> {
    if format == Format::Json {
        return Ok(json_string(&lines)?);
    }
    let mut grid = Grid::new(["worker", "kind", "version", "checks", "verdict"]);
    let mut notes = String::new();
    for line in lines {
        if let Some(p) = &line.probe {
            let passed = p.checks.iter().filter(|c| c.ok).count();
            grid.row([
                line.worker.clone(),
                p.kind.to_string(),
                p.version.clone().unwrap_or_else(|| "-".to_owned()),
                format!("{passed}/{}", p.checks.len()),
                p.verdict.as_str().to_owned(),
            ]);
            if let Some(mismatch) = &p.first_mismatch {
                let _ = write!(
                    notes,
                    "\n{}: quarantined; first mismatch: {mismatch}\n",
                    line.worker
                );
            }
            if let Some(fix) = &line.fix {
                let _ = writeln!(notes, "{}: fix: {fix}", line.worker);
            }
        } else {
            grid.row([
                line.worker.clone(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "not run".to_owned(),
            ]);
            let _ = write!(
                notes,
                "\n{}: not probed: {}\n",
                line.worker,
                line.not_run.as_deref().unwrap_or_default()
            );
        }
    }
    Ok(grid.render(format) + &notes)
}
