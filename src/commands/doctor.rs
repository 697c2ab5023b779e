//! `oxi doctor`: prints every check; exits 1 when any fails (warnings do not).

use anyhow::Result;

use super::Context;
use super::parent_env;
use crate::doctor::{self, Check, Status};
use crate::output::{Format, Grid, json_string, write_stdout};
use crate::{ExitWith, exit};

pub fn run(ctx: &Context) -> Result<()> {
    let checks: Vec<Check> = match ctx.config() {
        Ok(config) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(doctor::run(&config, &parent_env(), &ctx.operator()))
        }
        // A broken config is itself the finding, and every tick stops on it (exit 3).
        Err(e) => vec![
            Check {
                name: "config".into(),
                status: Status::Fail,
                detail: e.to_string(),
                fix: Some("fix the line named; oxi.toml.example documents every key".into()),
                blocks_dispatch: true,
            },
            Check {
                name: "dispatch".into(),
                status: Status::Fail,
                detail: format!("dispatch blocked: config: {e}"),
                fix: Some(
                    "oxi tick and oxi saturate refuse to dispatch until this is fixed".into(),
                ),
                blocks_dispatch: false,
            },
        ],
    };
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
    let text = match ctx.global.format {
        Format::Json => json_string(&serde_json::json!({
            "ok": failed == 0,
            "failed": failed,
            "warnings": warned,
            "checks": checks,
        }))?,
        format => {
            let mut grid = Grid::new(["check", "status", "detail"]);
            for c in &checks {
                let status = match c.status {
                    Status::Ok => "ok",
                    Status::Warn => "warn",
                    Status::Fail => "FAIL",
                };
                grid.row([c.name.clone(), status.to_owned(), c.detail.clone()]);
            }
            let mut text = grid.render(format);
            for c in checks.iter().filter(|c| c.status != Status::Ok) {
                if let Some(fix) = &c.fix {
                    text.push_str(&format!("fix {}: {fix}\n", c.name));
                }
            }
            text.push_str(&format!(
                "{} checks: {failed} failed, {warned} warnings\n",
                checks.len()
            ));
            text
        }
    };
    write_stdout(&text)?;
    if failed > 0 {
        return Err(ExitWith(exit::FAILURE).into());
    }
    Ok(())
}
