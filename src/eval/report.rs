//! The suite's figures, per case and in total, and their Markdown rendering (JSON is the
//! serde shape). The variance measures are defined in docs/eval.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::case::Case;
use super::run::Repeat;

/// Median and 90th percentile (nearest rank).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Spread {
    pub p50: f64,
    pub p90: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            // Nearest rank: the smallest value with at least q of the values at or below it.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let i = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            values.get(i).copied().unwrap_or_default()
        };
        Self {
            p50: rank(0.5),
            p90: rank(0.9),
        }
    }
}

/// One case over its repeats.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    pub name: String,
    pub description: String,
    /// Every repeat met the expectation.
    pub passed: bool,
    pub repeats_passed: u32,
    pub repeats: u32,
    /// Each repeat's endings, `TASK=state` (and the failure class), joined by spaces.
    pub endings: Vec<String>,
    pub worker_calls_per_task: Spread,
    pub time_per_task_ms: Spread,
    pub parse_failures_per_100_calls: f64,
    pub retries: u64,
    /// `None`: no task was explored, or a single repeat.
    pub planned_path_variance: Option<f64>,
    /// `None`: nothing was verified, or a single repeat.
    pub test_outcome_variance: Option<f64>,
    pub verify_ms_per_tier: BTreeMap<String, Spread>,
    /// `repeat N: what missed`.
    pub misses: Vec<String>,
}

/// The whole suite.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    pub suite: String,
    pub worker: Option<String>,
    pub repeat: u32,
    pub cases: Vec<CaseReport>,
    pub total: Total,
}

#[derive(Debug, Clone, Serialize)]
pub struct Total {
    pub cases: usize,
    pub cases_passed: usize,
    pub repeats: u32,
    pub repeats_passed: u32,
    pub worker_calls_per_task: Spread,
    pub time_per_task_ms: Spread,
    pub parse_failures_per_100_calls: f64,
    pub retries: u64,
    pub verify_ms_per_tier: BTreeMap<String, Spread>,
    pub wall_ms: u64,
}

impl SuiteReport {
    /// Every case met its expectation in every repeat.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.cases.iter().all(|c| c.passed)
    }
}

#[allow(clippy::cast_precision_loss)]
fn per_100(failures: u64, calls: u64) -> f64 {
    if calls == 0 {
        0.0
    } else {
        (failures as f64 * 100.0 / calls as f64 * 100.0).round() / 100.0
    }
}

/// `1 − (repeats agreeing with the most common value) / repeats`: 0 when every repeat agrees.
#[allow(clippy::cast_precision_loss)]
fn variance<T: Ord>(values: &[T]) -> f64 {
    let mut counts: BTreeMap<&T, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    let top = counts.values().copied().max().unwrap_or(0);
    if values.is_empty() {
        0.0
    } else {
        ((1.0 - top as f64 / values.len() as f64) * 100.0).round() / 100.0
    }
}

/// The largest variance over the case's tasks, of what `pick` takes from each repeat's task.
fn case_variance<T: Ord>(
    repeats: &[Repeat],
    pick: impl Fn(&super::run::TaskOutcome) -> Option<T>,
) -> Option<f64> {
    if repeats.len() < 2 {
        return None;
    }
    let ids: Vec<&str> = repeats
        .first()
        .map(|r| r.tasks.iter().map(|t| t.id.as_str()).collect())
        .unwrap_or_default();
    let mut worst: Option<f64> = None;
    for id in ids {
        let values: Vec<Option<T>> = repeats
            .iter()
            .map(|r| r.tasks.iter().find(|t| t.id == id).and_then(&pick))
            .collect();
        if values.iter().all(Option::is_none) {
            continue;
        }
        let v = variance(&values);
        worst = Some(worst.map_or(v, |w: f64| w.max(v)));
    }
    worst
}

fn tiers(repeats: &[&Repeat]) -> BTreeMap<String, Spread> {
    let mut all: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in repeats {
        for (tier, ms) in &r.tier_ms {
            #[allow(clippy::cast_precision_loss)]
            all.entry(tier.clone())
                .or_default()
                .extend(ms.iter().map(|m| *m as f64));
        }
    }
    all.into_iter().map(|(t, v)| (t, Spread::of(v))).collect()
}

#[allow(clippy::cast_precision_loss)]
fn task_spreads(repeats: &[&Repeat]) -> (Spread, Spread) {
    let tasks = repeats.iter().flat_map(|r| r.tasks.iter());
    let calls = tasks.clone().map(|t| t.worker_calls as f64).collect();
    let times = tasks.map(|t| t.time_ms as f64).collect();
    (Spread::of(calls), Spread::of(times))
}

fn ending_of(repeat: &Repeat) -> String {
    repeat
        .tasks
        .iter()
        .map(|t| match &t.failure_class {
            Some(class) => format!("{}={}({class})", t.id, t.state),
            None => format!("{}={}", t.id, t.state),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn case_report(case: &Case, repeats: &[Repeat]) -> CaseReport {
    let refs: Vec<&Repeat> = repeats.iter().collect();
    let (calls, times) = task_spreads(&refs);
    let repeats_passed =
        u32::try_from(repeats.iter().filter(|r| r.misses.is_empty()).count()).unwrap_or(0);
    let misses = repeats
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            r.misses
                .iter()
                .map(move |m| format!("repeat {}: {m}", i + 1))
        })
        .collect();
    CaseReport {
        name: case.name.clone(),
        description: case.description.clone(),
        passed: repeats.iter().all(|r| r.misses.is_empty()),
        repeats_passed,
        repeats: u32::try_from(repeats.len()).unwrap_or(0),
        endings: repeats.iter().map(ending_of).collect(),
        worker_calls_per_task: calls,
        time_per_task_ms: times,
        parse_failures_per_100_calls: per_100(
            repeats.iter().map(|r| r.parse_failures).sum(),
            repeats.iter().map(|r| r.worker_calls).sum(),
        ),
        retries: repeats
            .iter()
            .flat_map(|r| &r.tasks)
            .map(|t| t.retries)
            .sum(),
        planned_path_variance: case_variance(repeats, |t| t.planned_files.clone()),
        test_outcome_variance: case_variance(repeats, |t| {
            (!t.test_outcome.is_empty()).then(|| t.test_outcome.clone())
        }),
        verify_ms_per_tier: tiers(&refs),
        misses,
    }
}

pub(super) fn build(
    suite: &str,
    worker: Option<&str>,
    repeat: u32,
    results: &[(&Case, Vec<Repeat>)],
) -> SuiteReport {
    let cases: Vec<CaseReport> = results.iter().map(|(c, r)| case_report(c, r)).collect();
    let all: Vec<&Repeat> = results.iter().flat_map(|(_, r)| r.iter()).collect();
    let (calls, times) = task_spreads(&all);
    SuiteReport {
        suite: suite.to_owned(),
        worker: worker.map(str::to_owned),
        repeat,
        total: Total {
            cases: cases.len(),
            cases_passed: cases.iter().filter(|c| c.passed).count(),
            repeats: cases.iter().map(|c| c.repeats).sum(),
            repeats_passed: cases.iter().map(|c| c.repeats_passed).sum(),
            worker_calls_per_task: calls,
            time_per_task_ms: times,
            parse_failures_per_100_calls: per_100(
                all.iter().map(|r| r.parse_failures).sum(),
                all.iter().map(|r| r.worker_calls).sum(),
            ),
            retries: cases.iter().map(|c| c.retries).sum(),
            verify_ms_per_tier: tiers(&all),
            wall_ms: all.iter().map(|r| r.wall_ms).sum(),
        },
        cases,
    }
}

fn secs(ms: f64) -> String {
    format!("{:.1} s", ms / 1000.0)
}

fn var(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"))
}

/// The report as Markdown: the case table, the tiers, then every miss.
pub fn markdown(report: &SuiteReport) -> String {
    let mut out = format!(
        "# oxi eval: {} ({} repeat{}, executor: {})\n\n",
        report.suite,
        report.repeat,
        if report.repeat == 1 { "" } else { "s" },
        report.worker.as_deref().unwrap_or("the suite's")
    );
    out.push_str("| case | result | endings | calls/task p50 | calls/task p90 | time/task p50 | time/task p90 | parse failures /100 calls | retries | planned-path variance | test-outcome variance |\n");
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for c in &report.cases {
        let mut endings: Vec<&str> = c.endings.iter().map(String::as_str).collect();
        endings.dedup();
        let _ = writeln!(
            out,
            "| {} | {} {}/{} | {} | {} | {} | {} | {} | {:.2} | {} | {} | {} |",
            c.name,
            if c.passed { "pass" } else { "MISS" },
            c.repeats_passed,
            c.repeats,
            endings.join("; "),
            c.worker_calls_per_task.p50,
            c.worker_calls_per_task.p90,
            secs(c.time_per_task_ms.p50),
            secs(c.time_per_task_ms.p90),
            c.parse_failures_per_100_calls,
            c.retries,
            var(c.planned_path_variance),
            var(c.test_outcome_variance),
        );
    }
    let t = &report.total;
    let _ = writeln!(
        out,
        "| **total** | {}/{} cases, {}/{} repeats | | {} | {} | {} | {} | {:.2} | {} | | |",
        t.cases_passed,
        t.cases,
        t.repeats_passed,
        t.repeats,
        t.worker_calls_per_task.p50,
        t.worker_calls_per_task.p90,
        secs(t.time_per_task_ms.p50),
        secs(t.time_per_task_ms.p90),
        t.parse_failures_per_100_calls,
        t.retries,
    );
    if !t.verify_ms_per_tier.is_empty() {
        out.push_str("\nVerification time per tier (one verification's commands of that tier):\n\n| tier | p50 | p90 |\n|---|---:|---:|\n");
        for (tier, s) in &t.verify_ms_per_tier {
            let _ = writeln!(out, "| {tier} | {} | {} |", secs(s.p50), secs(s.p90));
        }
    }
    let misses: Vec<String> = report
        .cases
        .iter()
        .flat_map(|c| c.misses.iter().map(move |m| format!("- {}, {m}\n", c.name)))
        .collect();
    if !misses.is_empty() {
        out.push_str("\nMissed expectations:\n\n");
        out.push_str(&misses.concat());
    }
    #[allow(clippy::cast_precision_loss)]
    let wall = t.wall_ms as f64;
    let _ = write!(out, "\nWall time: {}.\n", secs(wall));
    out
}

#[cfg(test)]
mod tests {
    use super::{Spread, variance};

    #[test]
    fn variance_is_the_share_of_repeats_that_disagree_with_the_most_common_answer() {
        assert!(variance::<u8>(&[]).abs() < f64::EPSILON);
        assert!(variance(&["a", "a", "a"]).abs() < f64::EPSILON);
        assert!((variance(&["a", "b", "a"]) - 0.33).abs() < 1e-9);
        assert!((variance(&[Some(1), None, Some(2), Some(3)]) - 0.75).abs() < 1e-9);
    }

    #[test]
    fn spreads_take_the_nearest_rank() {
        let s = Spread::of((1..=10).map(f64::from).collect());
        assert_eq!((s.p50, s.p90), (5.0, 9.0));
        let s = Spread::of(vec![7.0]);
        assert_eq!((s.p50, s.p90), (7.0, 7.0));
        assert_eq!(Spread::of(Vec::new()), Spread::default());
    }
}
