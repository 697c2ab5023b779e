//! `oxi report`: the project's gates and KPIs, all derived from the ledger for a time
//! window, each checked against its `[kpi]` target; rendered as a table, Markdown, stable JSON,
//! or one self-contained HTML page with charts.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{KpiConfig, LoadedConfig};
use crate::ledger::{EventKind, Ledger, LedgerError, Queries, RunFact};
use crate::money::micro_to_usd;
use crate::worker::{Classification, WorkerRole};

mod failures;
mod kpi;
mod shadow;
pub use failures::FailedTask;
pub use kpi::ValueKpis;
pub use shadow::{ShadowGroup, ShadowPairLine, ShadowReport};

/// Median and 90th/95th percentiles of a sample.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Spread {
    pub count: usize,
    pub median: f64,
    pub p90: f64,
    pub p95: f64,
}

fn spread(mut values: Vec<f64>) -> Spread {
    if values.is_empty() {
        return Spread::default();
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let rank = ((values.len() as f64) * q).ceil() as usize;
        values[rank.clamp(1, values.len()) - 1]
    };
    Spread {
        count: values.len(),
        median: at(0.5),
        p90: at(0.9),
        p95: at(0.95),
    }
}

fn ratio(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// One KPI against its target.
#[derive(Debug, Clone, Serialize)]
pub struct Gate {
    pub kpi: &'static str,
    /// `None` when there is no data in the window.
    pub value: Option<f64>,
    pub target: String,
    /// `pass`, `fail` or `no_data`.
    pub verdict: &'static str,
}

fn gate_min(kpi: &'static str, value: Option<f64>, min: f64) -> Gate {
    Gate {
        kpi,
        value,
        target: format!(">= {min}"),
        verdict: match value {
            None => "no_data",
            Some(v) if v >= min => "pass",
            Some(_) => "fail",
        },
    }
}

fn gate_max(kpi: &'static str, value: Option<f64>, max: f64) -> Gate {
    Gate {
        kpi,
        value,
        target: format!("<= {max}"),
        verdict: match value {
            None => "no_data",
            Some(v) if v <= max => "pass",
            Some(_) => "fail",
        },
    }
}

/// Everything the report shows. Field names are stable (scripts and dashboards read them).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub since: String,
    pub generated_at: String,
    pub tasks_worked: usize,
    pub delivered: usize,
    pub merged: usize,
    pub rejected: usize,
    pub maintainer_acceptance_rate: Option<f64>,
    pub executor_runs: usize,
    pub job_success_rate: Option<f64>,
    pub queue_wait_hours: Spread,
    pub time_per_task_minutes: Spread,
    pub worker_calls_per_task: Spread,
    pub verify_seconds_by_tier: BTreeMap<String, Spread>,
    pub worker_calls: usize,
    pub parse_failures_per_100_calls: Option<f64>,
    pub retry_rate: Option<f64>,
    pub human_interventions: usize,
    pub human_intervention_rate: Option<f64>,
    pub governance_violations: usize,
    /// Bytes of prompt per executor call (the explore phase trims them to the plan).
    pub executor_prompt_bytes: crate::ledger::PromptBytes,
    pub review_skips: BTreeMap<String, usize>,
    pub first_pass_ci_green_rate: Option<f64>,
    pub spend_usd: f64,
    /// Spent today and this month (UTC) as of `generated_at`, whatever the window.
    pub day_spend_usd: f64,
    pub month_spend_usd: f64,
    pub spend_by_day_usd: Vec<(String, f64)>,
    pub daily_cap_usd: f64,
    pub monthly_cap_usd: f64,
    pub budget_breaches: usize,
    pub cost_per_delivered_task_usd: Option<f64>,
    pub tokens: BTreeMap<&'static str, i64>,
    pub failure_taxonomy: BTreeMap<String, usize>,
    pub outcomes_by_day: BTreeMap<String, BTreeMap<String, usize>>,
    pub gates: Vec<Gate>,
    /// Of `spend_usd`, what inference-gateway calls cost.
    pub gateway_spend_usd: f64,
    /// `spend_usd` per role: the runs' (`executor`, `reviewer`, `shadow`, ...) and the gateway
    /// calls' (`triage`, `screen`, ...).
    pub spend_by_role_usd: BTreeMap<String, f64>,
    pub shadow: ShadowReport,
    /// The external-value share and the cost per merged pull request.
    pub value: ValueKpis,
    /// Tasks that failed for good in the window, newest first, with their triage summaries.
    pub failed_tasks: Vec<FailedTask>,
}

/// Parses `24h`, `7d`, `30d` or `all` into the window's start.
pub fn since_ms(since: &str, now_ms: i64) -> Result<i64, String> {
    if since == "all" {
        return Ok(0);
    }
    let duration = humantime::parse_duration(since)
        .map_err(|e| format!("--since {since:?}: {e}; use 24h, 7d, 30d or all"))?;
    Ok(now_ms - duration.as_millis() as i64)
}

/// Computes the report for events and runs since `since` (a `since_ms` spec).
pub fn build(
    config: &LoadedConfig,
    ledger: &Ledger,
    since: &str,
    now_ms: i64,
) -> Result<Report, ReportError> {
    let from = since_ms(since, now_ms).map_err(ReportError::Since)?;
    let q = ledger.read();
    let all_runs: Vec<RunFact> = q.report_runs(from)?;
    let money = Money::of(&q, &all_runs, from)?;
    // Shadow runs are observations, not the task's work: they count in spend only.
    let runs: Vec<RunFact> = all_runs
        .into_iter()
        .filter(|r| r.role != WorkerRole::Shadow)
        .collect();
    let executor: Vec<&RunFact> = runs
        .iter()
        .filter(|r| r.role == WorkerRole::Executor)
        .collect();
    let successes = executor
        .iter()
        .filter(|r| r.classification == Classification::Success.as_str())
        .count();
    let tasks = q.tasks()?;
    let created: BTreeMap<&str, i64> = tasks
        .iter()
        .map(|t| (t.spec.id.as_str(), t.created_at_ms))
        .collect();
    let per_task = PerTask::of(&runs);
    let queue_wait = per_task.queue_wait(&created);
    let delivered_at = first_deliveries(&q, from)?;
    let time_per_task = per_task.time_to_delivery(&delivered_at);
    let calls_per_task = spread(per_task.calls.values().map(|c| *c as f64).collect());
    let verify = verify_spreads(&q, from)?;
    let counts = Counts::read(&q, from)?;
    let spend = money.total;
    let spend_by_day = spend_by_day(&q, from)?;
    let outcomes = Outcomes::of(&executor);
    let worker_calls = runs.len();
    let parse_failures: i64 = runs.iter().map(|r| r.parse_failures).sum();
    let retried = per_task.attempts.values().filter(|a| **a > 1).count();
    let worked = per_task.calls.len();
    let delivered = delivered_at.len();
    let rates = Rates {
        acceptance: ratio(counts.merged, counts.merged + counts.rejected),
        success: ratio(successes, executor.len()),
        first_pass: ratio(counts.first_green, counts.first_ci),
        parse: (worker_calls > 0).then(|| parse_failures as f64 * 100.0 / worker_calls as f64),
        intervention: ratio(counts.interventions, worked),
    };
    let gates = gates(&config.config.kpi, &rates, &queue_wait, &counts);
    let value = kpi::build(config, &tasks, &per_task, spend, counts.merged);
    let gates = kpi::gated(gates, config, &value, &time_per_task, &calls_per_task);
    let current = q.spend_totals(
        &crate::clock::day_of(now_ms),
        &crate::clock::month_of(now_ms),
    )?;
    let mut tokens = BTreeMap::new();
    tokens.insert("input", runs.iter().map(|r| r.input_tokens).sum());
    tokens.insert("output", runs.iter().map(|r| r.output_tokens).sum());
    Ok(Report {
        since: since.to_owned(),
        generated_at: crate::clock::rfc3339(now_ms),
        tasks_worked: worked,
        delivered,
        merged: counts.merged,
        rejected: counts.rejected,
        maintainer_acceptance_rate: rates.acceptance,
        executor_runs: executor.len(),
        job_success_rate: rates.success,
        queue_wait_hours: queue_wait,
        time_per_task_minutes: time_per_task,
        worker_calls_per_task: calls_per_task,
        verify_seconds_by_tier: verify,
        worker_calls,
        parse_failures_per_100_calls: rates.parse,
        retry_rate: ratio(retried, worked),
        human_interventions: counts.interventions,
        human_intervention_rate: rates.intervention,
        governance_violations: counts.governance,
        executor_prompt_bytes: q.report_prompt_bytes(WorkerRole::Executor.as_str(), from)?,
        review_skips: counts.review_skips,
        first_pass_ci_green_rate: rates.first_pass,
        spend_usd: micro_to_usd(spend),
        day_spend_usd: micro_to_usd(current.day_spent),
        month_spend_usd: micro_to_usd(current.month_spent),
        spend_by_day_usd: spend_by_day,
        daily_cap_usd: config.config.caps.daily_usd,
        monthly_cap_usd: config.config.caps.monthly_usd,
        budget_breaches: counts.breaches,
        cost_per_delivered_task_usd: (delivered > 0)
            .then(|| micro_to_usd(spend) / delivered as f64),
        tokens,
        failure_taxonomy: outcomes.taxonomy,
        outcomes_by_day: outcomes.by_day,
        gates,
        gateway_spend_usd: micro_to_usd(money.gateway),
        spend_by_role_usd: money.by_role,
        shadow: shadow::build(&q, from)?,
        value,
        failed_tasks: failures::build(&q, &tasks, from)?,
    })
}

/// The window's spend: runs' (shadow runs too) and gateway calls', in all and per role.
struct Money {
    total: i64,
    gateway: i64,
    by_role: BTreeMap<String, f64>,
}

impl Money {
    fn of(q: &Queries<'_>, runs: &[RunFact], from: i64) -> Result<Self, ReportError> {
        let mut by_role: BTreeMap<String, i64> = BTreeMap::new();
        for run in runs {
            *by_role.entry(run.role.clone()).or_default() += run.cost_microusd;
        }
        let mut gateway = 0;
        for (role, micro) in q.report_gateway_spend(from)? {
            gateway += micro;
            *by_role.entry(role).or_default() += micro;
        }
        Ok(Self {
            total: by_role.values().sum(),
            gateway,
            by_role: by_role
                .into_iter()
                .map(|(role, micro)| (role, micro_to_usd(micro)))
                .collect(),
        })
    }
}

/// Per task: its first dispatch, its number of worker calls and of executor attempts.
struct PerTask {
    first_start: BTreeMap<String, i64>,
    calls: BTreeMap<String, usize>,
    attempts: BTreeMap<String, usize>,
}

impl PerTask {
    fn of(runs: &[RunFact]) -> Self {
        let mut first_start: BTreeMap<String, i64> = BTreeMap::new();
        let mut calls: BTreeMap<String, usize> = BTreeMap::new();
        let mut attempts: BTreeMap<String, usize> = BTreeMap::new();
        for run in runs {
            let Some(task) = &run.task_id else { continue };
            *calls.entry(task.clone()).or_default() += 1;
            if run.role == WorkerRole::Executor {
                *attempts.entry(task.clone()).or_default() += 1;
            }
            let entry = first_start.entry(task.clone()).or_insert(run.started_at_ms);
            *entry = (*entry).min(run.started_at_ms);
        }
        Self {
            first_start,
            calls,
            attempts,
        }
    }

    /// Hours from a task's creation to its first dispatch.
    fn queue_wait(&self, created: &BTreeMap<&str, i64>) -> Spread {
        spread(
            self.first_start
                .iter()
                .filter_map(|(task, start)| {
                    created
                        .get(task.as_str())
                        .map(|c| (start - c).max(0) as f64 / 3_600_000.0)
                })
                .collect(),
        )
    }

    /// Minutes from a task's first dispatch to its delivery.
    fn time_to_delivery(&self, delivered_at: &BTreeMap<String, i64>) -> Spread {
        spread(
            delivered_at
                .iter()
                .filter_map(|(task, at)| {
                    self.first_start
                        .get(task)
                        .map(|s| (at - s).max(0) as f64 / 60_000.0)
                })
                .collect(),
        )
    }
}

/// When each task was first delivered (a delivered branch, else an opened pull request).
fn first_deliveries(q: &Queries<'_>, from: i64) -> Result<BTreeMap<String, i64>, ReportError> {
    // Counts and the few fields the report needs are read in SQL: over a long history,
    // parsing every event's JSON in Rust was most of the report's time.
    let delivered_events = q.report_event_times(EventKind::Delivered, from)?;
    let pr_opened = q.report_event_times(EventKind::PrOpened, from)?;
    let mut delivered_at: BTreeMap<String, i64> = BTreeMap::new();
    for (at, task) in delivered_events.into_iter().chain(pr_opened) {
        delivered_at.entry(task).or_insert(at);
    }
    Ok(delivered_at)
}

/// Seconds each verification tier took.
fn verify_spreads(q: &Queries<'_>, from: i64) -> Result<BTreeMap<String, Spread>, ReportError> {
    Ok(q.report_verify_times(from)?
        .into_iter()
        .map(|(tier, ms)| {
            (
                tier,
                spread(ms.into_iter().map(|m| m as f64 / 1000.0).collect()),
            )
        })
        .collect())
}

/// What the window's events count.
struct Counts {
    merged: usize,
    rejected: usize,
    first_ci: usize,
    first_green: usize,
    interventions: usize,
    governance: usize,
    review_skips: BTreeMap<String, usize>,
    breaches: usize,
}

impl Counts {
    fn read(q: &Queries<'_>, from: i64) -> Result<Self, ReportError> {
        // Accepted: a merged pull request (release mode), or a delivered branch the operator
        // merged into the base branch (fast mode).
        let merged = q.report_count(EventKind::PrMerged, from)?
            + q.report_count(EventKind::BranchMerged, from)?;
        let rejected = q.report_count(EventKind::PrClosed, from)?;
        let (first_ci, first_green) = q.report_first_ci(from)?;
        let interventions = q.report_count(EventKind::OperatorAction, from)?;
        let governance = q.report_governance_violations(from)?;
        let mut review_skips: BTreeMap<String, usize> = BTreeMap::new();
        for (reason, n) in q.report_review_skips(from)? {
            let reason = reason.as_deref().unwrap_or("auto-approved");
            // Group by the reason's kind, not its per-diff numbers.
            let kind = reason.split(':').next().unwrap_or(reason).to_owned();
            *review_skips.entry(kind).or_default() += n;
        }
        let breaches = q.report_count(EventKind::BudgetBreach, from)?;
        Ok(Self {
            merged,
            rejected,
            first_ci,
            first_green,
            interventions,
            governance,
            review_skips,
            breaches,
        })
    }
}

/// Spend per UTC day from the window's first day (every day for `all`).
fn spend_by_day(q: &Queries<'_>, from: i64) -> Result<Vec<(String, f64)>, ReportError> {
    let since_day = crate::clock::day_of(from.max(0));
    Ok(
        q.report_spend_by_day(if from == 0 { "0000-00-00" } else { &since_day })?
            .into_iter()
            .map(|(d, m)| (d, micro_to_usd(m)))
            .collect(),
    )
}

/// Executor runs by classification, overall and per day they ended.
struct Outcomes {
    taxonomy: BTreeMap<String, usize>,
    by_day: BTreeMap<String, BTreeMap<String, usize>>,
}

impl Outcomes {
    fn of(executor: &[&RunFact]) -> Self {
        let mut taxonomy: BTreeMap<String, usize> = BTreeMap::new();
        let mut by_day: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for run in executor {
            *taxonomy.entry(run.classification.clone()).or_default() += 1;
            *by_day
                .entry(crate::clock::day_of(run.ended_at_ms))
                .or_default()
                .entry(run.classification.clone())
                .or_default() += 1;
        }
        Self { taxonomy, by_day }
    }
}

/// The rates the gates check (`None` when the window has no data for one).
struct Rates {
    acceptance: Option<f64>,
    success: Option<f64>,
    first_pass: Option<f64>,
    parse: Option<f64>,
    intervention: Option<f64>,
}

/// Each KPI against its `[kpi]` target, in the report's order.
fn gates(kpi: &KpiConfig, rates: &Rates, queue_wait: &Spread, counts: &Counts) -> Vec<Gate> {
    vec![
        gate_min(
            "maintainer_acceptance_rate",
            rates.acceptance,
            kpi.min_acceptance_rate,
        ),
        gate_min("job_success_rate", rates.success, kpi.min_job_success_rate),
        gate_max(
            "queue_wait_p95_hours",
            (queue_wait.count > 0).then_some(queue_wait.p95),
            kpi.max_queue_wait_p95.as_duration().as_secs_f64() / 3600.0,
        ),
        gate_max(
            "budget_breaches",
            Some(counts.breaches as f64),
            f64::from(kpi.max_budget_breaches),
        ),
        gate_min(
            "first_pass_ci_green_rate",
            rates.first_pass,
            kpi.min_first_pass_ci_rate,
        ),
        gate_max(
            "parse_failures_per_100_calls",
            rates.parse,
            kpi.max_parse_failures_per_100_calls,
        ),
        gate_max(
            "human_intervention_rate",
            rates.intervention,
            kpi.max_human_intervention_rate,
        ),
        gate_max(
            "governance_violations",
            Some(counts.governance as f64),
            f64::from(kpi.max_governance_violations),
        ),
    ]
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Since(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |v| format!("{:.0}%", v * 100.0))
}

fn num(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.2}"))
}

fn spread_text(s: &Spread, unit: &str) -> String {
    if s.count == 0 {
        "-".to_owned()
    } else {
        format!(
            "median {:.1}{unit}, p90 {:.1}{unit} (n={})",
            s.median, s.p90, s.count
        )
    }
}

/// Rows of (section, metric, value) for the table and Markdown forms.
pub fn rows(r: &Report) -> Vec<(String, String, String)> {
    let mut rows = vec![
        (
            "tasks",
            "worked / delivered",
            format!("{} / {}", r.tasks_worked, r.delivered),
        ),
        (
            "tasks",
            "maintainer acceptance",
            format!(
                "{} ({} merged, {} closed)",
                pct(r.maintainer_acceptance_rate),
                r.merged,
                r.rejected
            ),
        ),
        (
            "runs",
            "job success rate",
            format!(
                "{} of {} executor runs",
                pct(r.job_success_rate),
                r.executor_runs
            ),
        ),
        ("time", "queue wait", spread_text(&r.queue_wait_hours, "h")),
        (
            "time",
            "time per task",
            spread_text(&r.time_per_task_minutes, "m"),
        ),
        (
            "runs",
            "worker calls per task",
            spread_text(&r.worker_calls_per_task, ""),
        ),
        (
            "runs",
            "parse failures per 100 calls",
            num(r.parse_failures_per_100_calls),
        ),
        ("runs", "retry rate", pct(r.retry_rate)),
        (
            "runs",
            "prompt bytes per executor call",
            match (r.executor_prompt_bytes.median, r.executor_prompt_bytes.p90) {
                (Some(median), Some(p90)) => format!(
                    "median {median} · p90 {p90} ({} calls)",
                    r.executor_prompt_bytes.calls
                ),
                _ => "-".to_owned(),
            },
        ),
        (
            "humans",
            "interventions",
            format!(
                "{} ({} per task)",
                r.human_interventions,
                num(r.human_intervention_rate)
            ),
        ),
        (
            "safety",
            "governance violations",
            r.governance_violations.to_string(),
        ),
        ("ci", "first-pass CI green", pct(r.first_pass_ci_green_rate)),
        (
            "money",
            "spend in the window",
            format!("${:.2}", r.spend_usd),
        ),
        (
            "money",
            "today / this month",
            format!(
                "${:.2} of ${:.2} / ${:.2} of ${:.2}",
                r.day_spend_usd, r.daily_cap_usd, r.month_spend_usd, r.monthly_cap_usd
            ),
        ),
        (
            "money",
            "cost per delivered task",
            r.cost_per_delivered_task_usd
                .map_or("-".to_owned(), |c| format!("${c:.2}")),
        ),
        (
            "money",
            "spend by role",
            if r.spend_by_role_usd.is_empty() {
                "-".to_owned()
            } else {
                r.spend_by_role_usd
                    .iter()
                    .map(|(role, usd)| format!("{role} ${usd:.2}"))
                    .collect::<Vec<_>>()
                    .join(" · ")
            },
        ),
        ("money", "budget breaches", r.budget_breaches.to_string()),
        (
            "money",
            "tokens in / out",
            format!(
                "{} / {}",
                r.tokens.get("input").unwrap_or(&0),
                r.tokens.get("output").unwrap_or(&0)
            ),
        ),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c))
    .collect::<Vec<_>>();
    for (tier, s) in &r.verify_seconds_by_tier {
        rows.push(("time".into(), format!("verify {tier}"), spread_text(s, "s")));
    }
    for (reason, n) in &r.review_skips {
        rows.push(("review".into(), format!("skipped: {reason}"), n.to_string()));
    }
    for (class, n) in &r.failure_taxonomy {
        rows.push(("outcomes".into(), class.clone(), n.to_string()));
    }
    rows.extend(kpi::rows(&r.value));
    for g in &r.gates {
        rows.push((
            "gates".into(),
            g.kpi.to_owned(),
            format!("{} (target {}) {}", num(g.value), g.target, g.verdict),
        ));
    }
    rows.extend(failures::rows(&r.failed_tasks));
    rows.extend(shadow::rows(&r.shadow));
    rows
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What a chart's numbers are, for its axis and value labels.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Usd,
    Percent,
    Minutes,
}

impl Unit {
    fn label(self, value: f64, decimals: usize) -> String {
        match self {
            Unit::Usd => format!("${value:.decimals$}"),
            Unit::Percent => format!("{value:.decimals$}%"),
            Unit::Minutes => format!("{value:.decimals$}m"),
        }
    }

    /// A bar's own value: cents, whole percents, minutes to a tenth (a hundredth below one),
    /// or finer when the axis is finer.
    fn value(self, value: f64, axis_decimals: usize) -> String {
        let decimals = match self {
            Unit::Usd => 2,
            Unit::Percent => 0,
            Unit::Minutes if value < 1.0 => 2,
            Unit::Minutes => 1,
        };
        self.label(value, decimals.max(axis_decimals))
    }
}

/// A round step (1, 2 or 5 times a power of ten) that cuts `top` into about four.
fn axis_step(top: f64) -> f64 {
    let raw = (top / 4.0).max(1e-9);
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= raw * 0.999)
        .unwrap_or(10.0 * power)
}

/// Decimals that tell `step`'s multiples apart (0 for whole steps).
fn decimals_for(step: f64) -> usize {
    if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    }
}

/// A bar chart as inline SVG: `bars` of (label, value), a value axis with round ticks, each
/// bar's value above it, and an optional dashed line at `cap`. The scale always reaches the
/// cap, so a small spend is a short bar under a visible cap line; bars with a value are at
/// least 2 px tall and carry their value, so they can be read however small.
fn bar_chart(title: &str, bars: &[(String, f64)], cap: Option<f64>, unit: Unit) -> String {
    let (w, h) = (640.0, 240.0);
    let (left, right, top_pad, bottom) = (64.0, 20.0, 24.0, 30.0);
    let plot_h = h - top_pad - bottom;
    let top = bars
        .iter()
        .map(|(_, v)| *v)
        .chain(cap)
        .fold(0.0_f64, f64::max);
    let step = axis_step(if top > 0.0 { top } else { 1.0 });
    let ticks = ((if top > 0.0 { top } else { 1.0 }) / step - 1e-9)
        .ceil()
        .max(1.0) as u32;
    let max = step * f64::from(ticks);
    let y_of = |v: f64| h - bottom - (v / max) * plot_h;
    let n = bars.len().max(1) as f64;
    let bw = (w - left - right) / n;
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\" font-family=\"sans-serif\">",
        escape(title),
        escape(title)
    );
    let decimals = decimals_for(step);
    for i in 0..=ticks {
        let v = step * f64::from(i);
        // Whole pixels with crisp edges: a 1 px line between two pixel rows is a faint blur.
        let y = y_of(v).round();
        svg.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{}\" shape-rendering=\"crispEdges\"/><text class=\"axis\" x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#444\" text-anchor=\"end\">{}</text>",
            w - right,
            if i == 0 { "#888" } else { "#e5e7eb" },
            left - 6.0,
            y + 3.5,
            escape(&unit.label(v, decimals))
        ));
    }
    for (i, (label, value)) in bars.iter().enumerate() {
        let bh = if *value > 0.0 {
            ((value / max) * plot_h).max(2.0)
        } else {
            0.0
        };
        let x = left + i as f64 * bw + bw * 0.1;
        let value_text = escape(&unit.value(*value, decimals));
        svg.push_str(&format!(
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#3b82f6\"><title>{}: {value_text}</title></rect>",
            h - bottom - bh,
            bw * 0.8,
            escape(label)
        ));
        svg.push_str(&format!(
            "<text class=\"value\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{value_text}</text>",
            x + bw * 0.4,
            h - bottom - bh - 4.0
        ));
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            x + bw * 0.4,
            h - bottom + 14.0,
            escape(label)
        ));
    }
    if let Some(cap) = cap {
        let y = y_of(cap).round();
        svg.push_str(&format!(
            "<line class=\"cap\" x1=\"{left}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#dc2626\" stroke-width=\"2\" stroke-dasharray=\"8 4\" shape-rendering=\"crispEdges\"/><text class=\"cap\" x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#dc2626\" text-anchor=\"end\">cap {}</text>",
            w - right,
            w - right,
            y - 5.0,
            escape(&unit.label(cap, 2))
        ));
    }
    svg.push_str("</svg></figure>");
    svg
}

/// One self-contained page: no scripts, no external resources.
pub fn html(r: &Report) -> String {
    let spend: Vec<(String, f64)> = r
        .spend_by_day_usd
        .iter()
        .map(|(d, v)| (d[5..].to_owned(), *v))
        .collect();
    let outcomes: Vec<(String, f64)> = r
        .outcomes_by_day
        .iter()
        .map(|(day, by)| {
            let ok = *by.get("success").unwrap_or(&0) as f64;
            let total: usize = by.values().sum();
            (
                format!("{} ({ok:.0}/{total})", &day[5..]),
                ok / total.max(1) as f64 * 100.0,
            )
        })
        .collect();
    let s = &r.time_per_task_minutes;
    let distribution = vec![
        ("median".to_owned(), s.median),
        ("p90".to_owned(), s.p90),
        ("p95".to_owned(), s.p95),
    ];
    let agreement = shadow::agreement_bars(&r.shadow);
    let shadow_chart = if agreement.is_empty() {
        String::new()
    } else {
        bar_chart(
            "Shadow agreement (shape match) per rule and shadow choice (%)",
            &agreement,
            None,
            Unit::Percent,
        )
    };
    let mut rows_html = String::new();
    for (section, metric, value) in rows(r) {
        let class = if value.ends_with(" fail") {
            " class=\"fail\""
        } else {
            ""
        };
        rows_html.push_str(&format!(
            "<tr{class}><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&section),
            escape(&metric),
            escape(&value)
        ));
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>oxi report</title>\
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#111}}\
table{{border-collapse:collapse;width:100%}}td{{border-bottom:1px solid #ddd;padding:.3em .6em}}\
tr.fail td{{color:#b91c1c;font-weight:600}}figure{{margin:1.5em 0}}figcaption{{font-weight:600}}</style>\
</head><body><h1>oxi report</h1><p>Since {} · generated {}</p>{}{}{}{shadow_chart}<h2>KPIs</h2><table>{rows_html}</table></body></html>\n",
        escape(&r.since),
        escape(&r.generated_at),
        bar_chart(
            "Spend per day (USD) against the daily cap",
            &spend,
            Some(r.daily_cap_usd),
            Unit::Usd
        ),
        bar_chart(
            "Executor runs that succeeded, per day (%)",
            &outcomes,
            None,
            Unit::Percent
        ),
        bar_chart(
            "Time per task (minutes)",
            &distribution,
            None,
            Unit::Minutes
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_rank_up() {
        let s = spread((1..=10).map(f64::from).collect());
        assert_eq!((s.median, s.p90, s.p95), (5.0, 9.0, 10.0));
        assert_eq!(spread(Vec::new()).count, 0);
        assert!(since_ms("7d", 1_000_000_000_000).is_ok());
        assert!(since_ms("last week", 0).is_err());
    }

    #[test]
    fn axis_steps_are_round_and_cover_the_top() {
        assert_eq!(axis_step(20.0), 5.0);
        assert_eq!(axis_step(100.0), 50.0);
        assert_eq!(axis_step(0.45), 0.2);
        assert_eq!(axis_step(0.04), 0.01);
        assert_eq!(
            (decimals_for(5.0), decimals_for(0.2), decimals_for(0.01)),
            (0, 1, 2)
        );
    }
}
