//! The report's value KPIs: the external-value share of the job volume (at least 80% of the
//! tasks worked should be work for someone outside the project), the cost per merged pull
//! request, and time and worker calls per task at median and p90, each against its `[kpi]`
//! target.

use std::collections::BTreeSet;

use serde::Serialize;

use super::{Gate, PerTask, Spread, gate_max, gate_min, pct};
use crate::config::LoadedConfig;
use crate::ledger::TaskRow;
use crate::money::{MicroUsd, micro_to_usd};
use crate::routing::labels;

/// What the value KPIs show. Field names are stable (JSON readers).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ValueKpis {
    /// Tasks worked in the window (the job volume) and those of them marked external.
    pub tasks_worked: usize,
    pub external_tasks: usize,
    pub external_value_share: Option<f64>,
    /// The labels, sections or milestones that mark a task external (`[kpi] external_labels`).
    pub external_labels: Vec<String>,
    pub merged_pull_requests: usize,
    /// Spend in the window / pull requests merged in it.
    pub cost_per_merged_pr_usd: Option<f64>,
}

/// Whether `task` is external: its `labels:` line, its section or its milestone names one of
/// `wanted` (lower-case).
fn is_external(task: &TaskRow, wanted: &[String]) -> bool {
    let spec = &task.spec;
    marked(
        &spec.body,
        [spec.section.as_deref(), spec.milestone.as_deref()],
        wanted,
    )
}

/// Whether a brief's `labels:` line or one of `places` names one of `wanted`.
fn marked(body: &str, places: [Option<&str>; 2], wanted: &[String]) -> bool {
    if labels(body).iter().any(|l| wanted.contains(l)) {
        return true;
    }
    places
        .into_iter()
        .flatten()
        .map(str::to_lowercase)
        .any(|place| wanted.iter().any(|w| place.contains(w.as_str())))
}

/// The value KPIs of the tasks worked in the window, with its spend and merges.
pub(super) fn build(
    config: &LoadedConfig,
    tasks: &[TaskRow],
    per_task: &PerTask,
    spend: MicroUsd,
    merged: usize,
) -> ValueKpis {
    let kpi = &config.config.kpi;
    let worked: BTreeSet<&str> = per_task.calls.keys().map(String::as_str).collect();
    let spend_usd = micro_to_usd(spend);
    let wanted: Vec<String> = kpi
        .external_labels
        .iter()
        .map(|l| l.to_lowercase())
        .collect();
    let external_tasks = tasks
        .iter()
        .filter(|t| worked.contains(t.spec.id.as_str()) && is_external(t, &wanted))
        .count();
    ValueKpis {
        tasks_worked: worked.len(),
        external_tasks,
        external_value_share: super::ratio(external_tasks, worked.len()),
        external_labels: kpi.external_labels.clone(),
        merged_pull_requests: merged,
        cost_per_merged_pr_usd: u32::try_from(merged)
            .ok()
            .filter(|m| *m > 0)
            .map(|m| spend_usd / f64::from(m)),
    }
}

/// `gates` and the value KPIs' own: the external share, and time and worker calls per task.
pub(super) fn gated(
    mut gates: Vec<Gate>,
    config: &LoadedConfig,
    value: &ValueKpis,
    time_minutes: &Spread,
    calls: &Spread,
) -> Vec<Gate> {
    let kpi = &config.config.kpi;
    let minutes = |d: &crate::config::HumanDuration| d.as_duration().as_secs_f64() / 60.0;
    let of = |s: &Spread, f: fn(&Spread) -> f64| (s.count > 0).then(|| f(s));
    gates.extend([
        gate_min(
            "external_value_share",
            value.external_value_share,
            kpi.min_external_value_share,
        ),
        gate_max(
            "time_per_task_median_minutes",
            of(time_minutes, |s| s.median),
            minutes(&kpi.max_time_per_task_median),
        ),
        gate_max(
            "time_per_task_p90_minutes",
            of(time_minutes, |s| s.p90),
            minutes(&kpi.max_time_per_task_p90),
        ),
        gate_max(
            "worker_calls_per_task_median",
            of(calls, |s| s.median),
            kpi.max_worker_calls_per_task_median,
        ),
        gate_max(
            "worker_calls_per_task_p90",
            of(calls, |s| s.p90),
            kpi.max_worker_calls_per_task_p90,
        ),
    ]);
    gates
}

/// Rows of (section, metric, value) for the table and Markdown forms.
pub(super) fn rows(value: &ValueKpis) -> Vec<(String, String, String)> {
    vec![
        (
            "value".to_owned(),
            "external-value share".to_owned(),
            format!(
                "{} ({} of {} tasks worked; labels {})",
                pct(value.external_value_share),
                value.external_tasks,
                value.tasks_worked,
                value.external_labels.join(", ")
            ),
        ),
        (
            "value".to_owned(),
            "cost per merged pull request".to_owned(),
            match value.cost_per_merged_pr_usd {
                Some(usd) => format!("${usd:.2} ({} merged)", value.merged_pull_requests),
                None => "- (0 merged)".to_owned(),
            },
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_is_a_label_a_section_or_a_milestone() {
        let wanted = vec!["external".to_owned()];
        assert!(!marked("Fix it.", [None, None], &wanted));
        assert!(marked(
            "Fix it.\nlabels: bug, External\n",
            [None, None],
            &wanted
        ));
        assert!(marked("", [Some("External requests"), None], &wanted));
        assert!(marked("", [None, Some("M2 · external")], &wanted));
        assert!(!marked("labels: internal", [Some("Tier 0"), None], &wanted));
    }
}
