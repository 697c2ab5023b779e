//! `[caps]`: amounts are money, the caps nest (job ≤ day ≤ month), timers can fire.

use super::{Problem, problem};
use crate::config::Config;

/// The `[caps]` rules.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
    let caps = &config.caps;
    for (key, value) in [
        ("job_usd", caps.job_usd),
        ("daily_usd", caps.daily_usd),
        ("daily_soft_warn_usd", caps.daily_soft_warn_usd),
        ("monthly_usd", caps.monthly_usd),
    ] {
        if !value.is_finite() || value < 0.0 {
            problems.push(problem(
                &["caps", key],
                format!("must be a non-negative amount in USD, not {value}"),
            ));
        }
    }
    if caps.daily_usd > caps.monthly_usd {
        problems.push(problem(
            &["caps", "daily_usd"],
            format!(
                "daily cap {} USD is above the monthly cap {} USD; lower caps.daily_usd or raise caps.monthly_usd",
                caps.daily_usd, caps.monthly_usd
            ),
        ));
    }
    if caps.job_usd > caps.daily_usd {
        problems.push(problem(
            &["caps", "job_usd"],
            format!(
                "per-job cap {} USD is above the daily cap {} USD; no job could ever be admitted in full",
                caps.job_usd, caps.daily_usd
            ),
        ));
    }
    if caps.daily_soft_warn_usd > caps.daily_usd {
        problems.push(problem(
            &["caps", "daily_soft_warn_usd"],
            format!(
                "soft warning at {} USD is above the daily cap {} USD, so it could never fire",
                caps.daily_soft_warn_usd, caps.daily_usd
            ),
        ));
    }
    if caps.max_attempts == 0 {
        problems.push(problem(&["caps", "max_attempts"], "must be at least 1"));
    }
    if caps.max_worker_calls == 0 {
        problems.push(problem(&["caps", "max_worker_calls"], "must be at least 1"));
    }
    if caps.job_runtime.0.is_zero() {
        problems.push(problem(&["caps", "job_runtime"], "must be longer than 0s"));
    }
    if caps.stall_timeout.0.is_zero() {
        problems.push(problem(
            &["caps", "stall_timeout"],
            "must be longer than 0s",
        ));
    }
    if caps.stall_timeout > caps.job_runtime {
        problems.push(problem(
            &["caps", "stall_timeout"],
            format!(
                "stall timeout {} is longer than the job runtime cap {}, so it could never fire",
                caps.stall_timeout, caps.job_runtime
            ),
        ));
    }
    if !caps.estimate_floor_usd.is_finite() || caps.estimate_floor_usd < 0.0 {
        problems.push(problem(
            &["caps", "estimate_floor_usd"],
            "must be a non-negative amount",
        ));
    } else if caps.estimate_floor_usd > caps.job_usd {
        problems.push(problem(
            &["caps", "estimate_floor_usd"],
            format!(
                "{} is more than caps.job_usd ({}): every task would be held for a human",
                caps.estimate_floor_usd, caps.job_usd
            ),
        ));
    }
    if caps.retry_backoff > caps.retry_backoff_max {
        problems.push(problem(
            &["caps", "retry_backoff"],
            format!(
                "{} is longer than caps.retry_backoff_max ({})",
                caps.retry_backoff, caps.retry_backoff_max
            ),
        ));
    }
    if caps.kill_grace.as_duration().is_zero() {
        problems.push(problem(
            &["caps", "kill_grace"],
            "must be longer than 0s: workers need a moment to exit cleanly on SIGTERM",
        ));
    }
    if caps.output_per_run.bytes() < 64 * 1024 {
        problems.push(problem(
            &["caps", "output_per_run"],
            format!(
                "{} is too small for any real run; use at least 64 KiB (default 1 GiB)",
                caps.output_per_run
            ),
        ));
    }
    if caps.raw_log_per_run > caps.output_per_run {
        problems.push(problem(
            &["caps", "raw_log_per_run"],
            format!(
                "{} is more than caps.output_per_run ({}), so it could never be reached",
                caps.raw_log_per_run, caps.output_per_run
            ),
        ));
    }
}
