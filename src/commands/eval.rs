//! `oxi eval SUITE`: runs an eval suite (docs/eval.md) and prints its report; exits nonzero
//! when a case missed its expectation.

use anyhow::Result;

use super::Context;
use crate::cli::EvalArgs;
use crate::output::{Format, write_stdout};

pub(crate) fn run(ctx: &Context, args: &EvalArgs) -> Result<()> {
    let suite = ctx.cwd.join(&args.suite);
    let config = ctx.global.config.as_ref().map(|c| ctx.cwd.join(c));
    let progress = |case: &str, repeat: u32, met: bool| {
        tracing::info!(
            "{case} repeat {repeat}: {}",
            if met {
                "met its expectation"
            } else {
                "MISSED its expectation"
            }
        );
    };
    let report = crate::eval::run_suite(&crate::eval::Options {
        suite: &suite,
        label: &args.suite.display().to_string(),
        config: config.as_deref(),
        worker: args.worker.as_deref(),
        repeat: args.repeat,
        progress: &progress,
    })?;
    match ctx.global.format {
        Format::Json => write_stdout(&format!("{}\n", crate::output::json_string(&report)?))?,
        Format::Table | Format::Markdown | Format::Html => {
            write_stdout(&crate::eval::markdown(&report))?;
        }
    }
    if !report.passed() {
        return Err(crate::ExitWith(crate::exit::TASK_FAILURES).into());
    }
    Ok(())
}
