//! `oxi workers`: the contract check for each configured worker (binary, version, recorded
//! output still parsing), the same check `oxi doctor` runs.

use anyhow::Result;

use super::Context;
use super::parent_env;
use crate::output::{Format, Grid, json_string, write_stdout};
use crate::runner::contract::{self, Verdict};
use crate::runner::env::worker_env;
use crate::{ExitWith, exit};

pub fn run(ctx: &Context) -> Result<()> {
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
                    text.push_str(&format!("\n{}: {problem}\n", r.worker));
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
