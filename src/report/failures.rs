//! The report's failed tasks: each task that failed for good in the window, its failure class
//! and reason, and the triage summary of why when `[triage]` made one (docs/gateway.md).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ledger::{FailedTaskFact, Queries, TaskRow};

/// How many failures the report lists one by one (newest first).
const LAST: usize = 50;

/// One failure as the report lists it.
#[derive(Debug, Clone, Serialize)]
pub struct FailedTask {
    pub at: String,
    pub task_id: String,
    pub title: String,
    /// `None` for a failure recorded without one (an operator's `oxi task fail`, say).
    pub failure_class: Option<String>,
    pub reason: String,
    /// Why it failed, as the triage call summarised it.
    pub triage_summary: Option<String>,
}

/// The window's failures, newest first (at most 50).
pub(super) fn build(
    q: &Queries<'_>,
    tasks: &[TaskRow],
    from: i64,
) -> Result<Vec<FailedTask>, crate::ledger::LedgerError> {
    let titles: BTreeMap<&str, &str> = tasks
        .iter()
        .map(|t| (t.spec.id.as_str(), t.spec.title.as_str()))
        .collect();
    Ok(q.report_failed_tasks(from)?
        .into_iter()
        .take(LAST)
        .map(|f: FailedTaskFact| FailedTask {
            at: crate::clock::rfc3339(f.at_ms),
            title: titles
                .get(f.task_id.as_str())
                .map_or_else(String::new, |t| (*t).to_owned()),
            task_id: f.task_id,
            failure_class: f.failure_class,
            reason: f.reason,
            triage_summary: f.triage,
        })
        .collect())
}

/// The section's rows for the table and Markdown forms (and the HTML page's table): one per
/// failure, none when nothing failed.
pub(super) fn rows(failed: &[FailedTask]) -> Vec<(String, String, String)> {
    failed
        .iter()
        .map(|f| {
            let mut value = format!(
                "{} · {}",
                f.failure_class.as_deref().unwrap_or("unclassified"),
                crate::worker::event::clip(&f.reason, 120)
            );
            if let Some(summary) = &f.triage_summary {
                value.push_str(" · triage: ");
                value.push_str(&one_line(summary));
            }
            (
                "failed tasks".to_owned(),
                format!("{} {}", f.task_id, crate::worker::event::clip(&f.title, 60)),
                value,
            )
        })
        .collect()
}

/// A summary on one line: a table row cannot hold line breaks.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
