//! `oxi report [--since 24h|7d|30d|all] [--format table|markdown|json|html] [--output FILE]`.

use anyhow::{Context as _, Result};

use super::Context;
use crate::cli::ReportArgs;
use crate::output::{Format, Grid, json_string, write_stdout};
use crate::report;

pub fn run(ctx: &Context, args: &ReportArgs) -> Result<()> {
    let config = ctx.config()?;
    let ledger = crate::ledger::Ledger::open_existing(&config.ledger_path())?;
    let r = report::build(&config, &ledger, &args.since, crate::clock::now_ms())?;
    let text = match ctx.global.format {
        Format::Json => json_string(&r)?,
        Format::Html => report::html(&r),
        format => {
            let mut grid = Grid::new(["", "kpi", "value"]);
            for (section, metric, value) in report::rows(&r) {
                grid.row([section, metric, value]);
            }
            let failed = r.gates.iter().filter(|g| g.verdict == "fail").count();
            format!(
                "oxi report since {} ({})\n{}{} of {} gates failed\n",
                r.since,
                r.generated_at,
                grid.render(format),
                failed,
                r.gates.len()
            )
        }
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => write_stdout(&text)?,
    }
    Ok(())
}
