//! `oxi plan --forecast`: what finishing the open roadmap should cost and take, at p50 and
//! p90, from the ledger's own history, and the date the daily cap allows.
//!
//! A sample is one finished task (delivered, merged or done): the cost of all its runs (every
//! role, every attempt, so retries and reviews are in it) and its worker time (the runs'
//! durations added up). An open task takes the samples of tasks that routed the same way
//! (same rule, same executor); with fewer than [`MIN_SAMPLES`] of those, of the same executor;
//! then of every finished task; with fewer than that overall, it assumes what admission does
//! without history (cost: `caps.estimate_floor_usd` at p50, `caps.job_usd` at p90; time: half
//! of `caps.job_runtime`, and all of it) and says so.
//!
//! The totals add the tasks' p50s and p90s: the p90 total is then the cost if every task ran
//! at its p90, a cautious bound rather than the sum's own p90. Time is worker time spread over
//! `max_parallel_jobs` slots. The date is the later of the time and of the days the daily cap
//! needs (what is left of today's cap, then a full cap a day).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use serde::Serialize;

use crate::config::LoadedConfig;
use crate::ledger::{Ledger, RunRow, TaskRow, TaskState};
use crate::money::{MicroUsd, micro_to_usd, usd_to_micro};
use crate::output::{Format, Grid, json_string};
use crate::routing::{RouteRole, Router};

/// Fewer samples than this are too few to take a p90 from.
const MIN_SAMPLES: usize = 3;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// Where one group's figures came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Basis {
    /// Finished tasks of the same rule and executor.
    RouteWorker,
    /// Finished tasks of the same executor.
    Worker,
    /// Every finished task.
    All,
    /// Too little history: the caps' assumption.
    Assumed,
}

/// The figures for the open tasks of one rule and executor. Field names are a documented
/// interface (`oxi plan --forecast --format json`).
#[derive(Debug, Clone, Serialize)]
struct Group {
    route: String,
    worker: String,
    open_tasks: usize,
    basis: Basis,
    samples: usize,
    cost_p50_usd: f64,
    cost_p90_usd: f64,
    minutes_p50: f64,
    minutes_p90: f64,
}

/// p50 and p90 of one total.
#[derive(Debug, Clone, Copy, Serialize)]
struct Pair {
    p50: f64,
    p90: f64,
}

/// `oxi plan --forecast --format json`.
#[derive(Debug, Serialize)]
struct Forecast {
    open_tasks: usize,
    finished_tasks: usize,
    /// Set when some figures are assumed, saying what was assumed.
    #[serde(skip_serializing_if = "Option::is_none")]
    too_little_history: Option<String>,
    concurrency: u32,
    daily_cap_usd: f64,
    spent_today_usd: f64,
    cost_usd: Pair,
    hours: Pair,
    /// Days from today (0: today) until the work and the daily cap allow it to finish.
    days: Pair,
    finish_p50: String,
    finish_p90: String,
    groups: Vec<Group>,
}

/// One finished task's cost and worker minutes, and how it routed.
struct Sample {
    route: String,
    worker: String,
    cost: MicroUsd,
    minutes: f64,
}

fn is_finished(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::Delivered | TaskState::Merged | TaskState::Done
    )
}

fn is_closed(state: TaskState) -> bool {
    is_finished(state)
        || matches!(
            state,
            TaskState::Failed
                | TaskState::Rejected
                | TaskState::Cancelled
                | TaskState::Abandoned
                | TaskState::FrameworkFixNeeded
        )
}

fn sample(runs: &[RunRow]) -> Option<Sample> {
    let executor = runs.iter().rev().find(|r| r.role == "executor")?;
    let cost = runs.iter().map(|r| r.cost_microusd).sum();
    let ms: i64 = runs
        .iter()
        .filter_map(|r| Some(r.ended_at_ms? - r.started_at_ms))
        .filter(|ms| *ms > 0)
        .sum();
    Some(Sample {
        route: executor
            .route
            .clone()
            .unwrap_or_else(|| crate::routing::DEFAULT_ROUTE.to_owned()),
        worker: executor.worker.clone(),
        cost,
        minutes: std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0)).as_secs_f64()
            / 60.0,
    })
}

/// The nearest-rank percentile of `values` (sorted here).
fn percentile(values: &mut [f64], pct: usize) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = (values.len() * pct).div_ceil(100).max(1) - 1;
    values.get(rank).copied().unwrap_or(0.0)
}

/// Days from today until `usd` fits under the daily cap (what is left of today's, then a full
/// cap a day) and `hours` of work are done, whichever is later.
fn days_for(caps: &crate::config::CapsConfig, spent_today: MicroUsd, usd: f64, hours: f64) -> f64 {
    let left_today = (usd_to_micro(caps.daily_usd) - spent_today).max(0);
    let by_cap = if usd_to_micro(usd) <= left_today {
        0.0
    } else if caps.daily_usd > 0.0 {
        ((usd - micro_to_usd(left_today)) / caps.daily_usd).ceil()
    } else {
        f64::INFINITY
    };
    by_cap.max((hours / 24.0).floor())
}

/// A whole, finite, non-negative day count as an integer.
#[allow(clippy::cast_possible_truncation)] // `d` is a ceil/floor of a small positive figure
fn whole_days(d: f64) -> i64 {
    d.clamp(0.0, 36_500.0) as i64
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub(super) fn render(config: &LoadedConfig, ledger: &Ledger, format: Format) -> Result<String> {
    let forecast = compute(config, ledger, crate::clock::now_ms())?;
    if format == Format::Json {
        return Ok(json_string(&forecast)?);
    }
    Ok(text(&forecast, format))
}

fn compute(config: &LoadedConfig, ledger: &Ledger, now: i64) -> Result<Forecast> {
    let caps = &config.config.caps;
    let router = Router::new(&config.config)?;
    let tasks: Vec<TaskRow> = ledger.read().tasks()?;
    let mut samples = Vec::new();
    let mut open: BTreeMap<(String, String), usize> = BTreeMap::new();
    for task in &tasks {
        if is_finished(task.state) {
            samples.extend(sample(&ledger.read().runs_for_task(&task.spec.id)?));
        } else if !is_closed(task.state) {
            let route = router.route(&task.spec);
            let worker = route
                .pick(RouteRole::Executor)
                .chain
                .first()
                .map_or_else(|| "-".to_owned(), |c| c.name().to_owned());
            *open.entry((route.name().to_owned(), worker)).or_default() += 1;
        }
    }
    let runtime_minutes = caps.job_runtime.0.as_secs_f64() / 60.0;
    let assumed = Group {
        route: String::new(),
        worker: String::new(),
        open_tasks: 0,
        basis: Basis::Assumed,
        samples: 0,
        cost_p50_usd: caps.estimate_floor_usd,
        cost_p90_usd: caps.job_usd,
        minutes_p50: runtime_minutes / 2.0,
        minutes_p90: runtime_minutes,
    };
    let mut groups = Vec::new();
    for ((route, worker), count) in open {
        groups.push(group_for(route, worker, count, &samples, &assumed));
    }
    let open_tasks = groups.iter().map(|g| g.open_tasks).sum();
    let sum = |f: fn(&Group) -> f64| {
        groups
            .iter()
            .map(|g| f(g) * f64::from(u32::try_from(g.open_tasks).unwrap_or(u32::MAX)))
            .sum()
    };
    let cost = Pair {
        p50: round2(sum(|g| g.cost_p50_usd)),
        p90: round2(sum(|g| g.cost_p90_usd)),
    };
    let concurrency = config.config.run.max_parallel_jobs.max(1);
    let hours = Pair {
        p50: round2(sum(|g| g.minutes_p50) / 60.0 / f64::from(concurrency)),
        p90: round2(sum(|g| g.minutes_p90) / 60.0 / f64::from(concurrency)),
    };
    let spent = ledger
        .read()
        .spend_totals(&crate::clock::day_of(now), &crate::clock::month_of(now))?;
    let spent_today = spent.day_spent + spent.day_reserved;
    let days = Pair {
        p50: days_for(caps, spent_today, cost.p50, hours.p50),
        p90: days_for(caps, spent_today, cost.p90, hours.p90),
    };
    let date = |d: f64| {
        if d.is_finite() {
            crate::clock::day_of(now.saturating_add(whole_days(d).saturating_mul(DAY_MS)))
        } else {
            "never (caps.daily_usd is 0)".to_owned()
        }
    };
    let too_little_history = groups.iter().any(|g| g.basis == Basis::Assumed).then(|| {
        format!(
            "{} finished task(s) in the ledger, fewer than {MIN_SAMPLES}: assumed ${:.2} (caps.estimate_floor_usd) at p50 and ${:.2} (caps.job_usd) at p90 per task, and {:.0} / {:.0} minutes (half of and all of caps.job_runtime)",
            samples.len(),
            caps.estimate_floor_usd,
            caps.job_usd,
            runtime_minutes / 2.0,
            runtime_minutes
        )
    });
    Ok(Forecast {
        open_tasks,
        finished_tasks: samples.len(),
        too_little_history,
        concurrency,
        daily_cap_usd: caps.daily_usd,
        spent_today_usd: round2(micro_to_usd(spent_today)),
        cost_usd: cost,
        hours,
        finish_p50: date(days.p50),
        finish_p90: date(days.p90),
        days,
        groups,
    })
}

/// The figures for `count` open tasks of `route` and `worker`, from the closest samples.
fn group_for(
    route: String,
    worker: String,
    count: usize,
    samples: &[Sample],
    assumed: &Group,
) -> Group {
    let found = [Basis::RouteWorker, Basis::Worker, Basis::All]
        .into_iter()
        .find_map(|basis| {
            let picked: Vec<&Sample> = samples
                .iter()
                .filter(|s| match basis {
                    Basis::RouteWorker => s.route == route && s.worker == worker,
                    Basis::Worker => s.worker == worker,
                    Basis::All | Basis::Assumed => true,
                })
                .collect();
            (picked.len() >= MIN_SAMPLES).then_some((basis, picked))
        });
    let mut group = match found {
        Some((basis, picked)) => {
            let mut costs: Vec<f64> = picked.iter().map(|s| micro_to_usd(s.cost)).collect();
            let mut minutes: Vec<f64> = picked.iter().map(|s| s.minutes).collect();
            Group {
                basis,
                samples: picked.len(),
                cost_p50_usd: round2(percentile(&mut costs, 50)),
                cost_p90_usd: round2(percentile(&mut costs, 90)),
                minutes_p50: round2(percentile(&mut minutes, 50)),
                minutes_p90: round2(percentile(&mut minutes, 90)),
                ..assumed.clone()
            }
        }
        None => assumed.clone(),
    };
    group.route = route;
    group.worker = worker;
    group.open_tasks = count;
    group
}

fn text(f: &Forecast, format: Format) -> String {
    if f.open_tasks == 0 {
        return "nothing open: every task is finished or closed\n".to_owned();
    }
    let mut grid = Grid::new([
        "ROUTE", "WORKER", "OPEN", "BASIS", "SAMPLES", "COST P50", "COST P90", "MIN P50", "MIN P90",
    ]);
    for g in &f.groups {
        grid.row([
            g.route.clone(),
            g.worker.clone(),
            g.open_tasks.to_string(),
            serde_json::to_value(g.basis)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            g.samples.to_string(),
            format!("${:.2}", g.cost_p50_usd),
            format!("${:.2}", g.cost_p90_usd),
            format!("{:.1}", g.minutes_p50),
            format!("{:.1}", g.minutes_p90),
        ]);
    }
    let mut out = grid.render(format).trim_end().to_owned();
    let _ = write!(
        out,
        "\n{} open task(s), forecast from {} finished task(s), {} slot(s) (run.max_parallel_jobs)\n\
         cost: ${:.2} at p50, ${:.2} at p90\n\
         time: {:.1} h at p50, {:.1} h at p90\n\
         the daily cap (${:.2}, ${:.2} spent today) allows finishing by {} at p50, {} at p90\n",
        f.open_tasks,
        f.finished_tasks,
        f.concurrency,
        f.cost_usd.p50,
        f.cost_usd.p90,
        f.hours.p50,
        f.hours.p90,
        f.daily_cap_usd,
        f.spent_today_usd,
        f.finish_p50,
        f.finish_p90,
    );
    if let Some(why) = &f.too_little_history {
        let _ = writeln!(out, "too little history: {why}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&mut v, 50), 3.0);
        assert_eq!(percentile(&mut v, 90), 5.0);
        assert_eq!(percentile(&mut [7.0], 90), 7.0);
    }
}
