//! `oxi report [--since 24h|7d|30d|all] [--format table|markdown|json|html] [--output FILE]`.

use anyhow::{Context as _, Result};

use super::Context;
use crate::cli::ReportArgs;
use crate::ledger::HostRunTotals;
use crate::output::{Format, Grid, json_string, write_stdout};
use crate::report;

/// The per-host section: once more than one host has used the ledger, or with `--host`.
fn host_section(
    ledger: &crate::ledger::Ledger,
    args: &ReportArgs,
    now_ms: i64,
) -> Result<Option<Vec<HostRunTotals>>> {
    if args.host.is_none() && ledger.read().hosts()?.len() < 2 {
        return Ok(None);
    }
    let from = report::since_ms(&args.since, now_ms).map_err(anyhow::Error::msg)?;
    let mut totals = ledger.read().host_run_totals(from)?;
    if let Some(host) = &args.host {
        totals.retain(|t| &t.host == host);
    }
    Ok(Some(totals))
}

fn render_hosts(totals: &[HostRunTotals], format: Format) -> String {
    let mut grid = Grid::new(["host", "executor runs", "succeeded", "spent"]);
    for t in totals {
        grid.row([
            t.host.clone(),
            t.executor_runs.to_string(),
            t.succeeded.to_string(),
            crate::money::format_usd(t.cost_microusd),
        ]);
    }
    if totals.is_empty() {
        return "no runs by that host in the window\n".to_owned();
    }
    format!("\nby host\n{}", grid.render(format))
}

pub fn run(ctx: &Context, args: &ReportArgs) -> Result<()> {
    let config = ctx.config()?;
    let ledger = crate::ledger::Ledger::open_existing_at(&config.ledger_at())?;
    let now = crate::clock::now_ms();
    let r = report::build(&config, &ledger, &args.since, now)?;
    let hosts = host_section(&ledger, args, now)?;
    let text = match ctx.global.format {
        Format::Json => match &hosts {
            None => json_string(&r)?,
            Some(hosts) => {
                let mut value = serde_json::to_value(&r)?;
                if let Some(object) = value.as_object_mut() {
                    object.insert("hosts".to_owned(), serde_json::to_value(hosts)?);
                }
                json_string(&value)?
            }
        },
        Format::Html => report::html(&r),
        format => {
            let mut grid = Grid::new(["", "kpi", "value"]);
            for (section, metric, value) in report::rows(&r) {
                grid.row([section, metric, value]);
            }
            let failed = r.gates.iter().filter(|g| g.verdict == "fail").count();
            format!(
                "oxi report since {} ({})\n{}{} of {} gates failed\n{}",
                r.since,
                r.generated_at,
                grid.render(format),
                failed,
                r.gates.len(),
                hosts
                    .as_deref()
                    .map_or(String::new(), |h| render_hosts(h, format))
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
