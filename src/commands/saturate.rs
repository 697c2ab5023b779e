//! `oxi saturate`: see `crate::saturate`.

use anyhow::{Result, bail};

use super::Context;
use super::parent_env;
use crate::cli::SaturateArgs;
use crate::output::{Format, json_string, write_stdout};
use crate::scheduler::saturate::{self, Concurrency, Options};

pub fn run(ctx: &Context, args: &SaturateArgs) -> Result<()> {
    let path = match &ctx.global.config {
        Some(path) => path.clone(),
        None => crate::config::discover(&ctx.cwd)?,
    };
    let concurrency = match args.concurrency.as_str() {
        "auto" => Concurrency::Auto,
        n => match n.parse::<u32>() {
            Ok(n) if n > 0 => Concurrency::Fixed(n),
            _ => bail!("--concurrency {n:?}: use a number of slots (1 or more) or `auto`"),
        },
    };
    if let Some(usd) = args.max_cost_per_day
        && !(usd.is_finite() && usd > 0.0)
    {
        bail!("--max-cost-per-day {usd}: use a positive amount in USD");
    }
    let env_mode = std::env::var(crate::config::RUN_MODE_ENV).ok();
    let summary = saturate::run(
        &path,
        &Options {
            concurrency,
            max_cost_per_day: args.max_cost_per_day,
            until_empty: args.until_empty,
            grace: args.grace.into(),
        },
        parent_env(),
        env_mode.as_deref(),
    )?;
    let text = match ctx.global.format {
        Format::Json => json_string(&summary)?,
        _ => format!(
            "saturate stopped ({}): {} job(s) run with {} slot(s)\n{}",
            summary.reason,
            summary.jobs.len(),
            summary.concurrency,
            summary
                .detail
                .as_deref()
                .map(|d| format!("{d}\n"))
                .unwrap_or_default()
        ),
    };
    write_stdout(&text)?;
    Ok(())
}
