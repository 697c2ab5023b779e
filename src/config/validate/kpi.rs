//! `[kpi]`'s value targets: the external-value share is a fraction, worker-call targets are
//! not negative, and the external labels are words a `labels:` line can hold.

use super::{Problem, problem};
use crate::config::Config;

/// `kpi.min_external_value_share`, `kpi.external_labels`, the worker-call targets.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
    let kpi = &config.kpi;
    let share = kpi.min_external_value_share;
    if !(0.0..=1.0).contains(&share) {
        problems.push(problem(
            &["kpi", "min_external_value_share"],
            format!("{share} is not a share: use a fraction from 0 to 1 (0.8 is 80%)"),
        ));
    }
    for (key, value) in [
        (
            "max_worker_calls_per_task_median",
            kpi.max_worker_calls_per_task_median,
        ),
        (
            "max_worker_calls_per_task_p90",
            kpi.max_worker_calls_per_task_p90,
        ),
    ] {
        if !value.is_finite() || value < 0.0 {
            problems.push(problem(
                &["kpi", key],
                format!("{value} is not a number of worker calls: use 0 or more"),
            ));
        }
    }
    for (i, label) in kpi.external_labels.iter().enumerate() {
        if label.trim().is_empty() || label.contains(',') {
            problems.push(problem(
                &["kpi", "external_labels", &i.to_string()],
                format!("{label:?} is not a label: one word or phrase, no commas"),
            ));
        }
    }
}
