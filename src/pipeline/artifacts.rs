//! A job's artifacts beside the executor run's transcript: `state.json` (what the pull request
//! body and `oxi show` read) and `summary.md` (for a person).

use super::Job;
use crate::runner;

/// `state.json` and `summary.md` beside the executor run's transcript.
pub(super) fn write(job: &Job<'_>) {
    let r = &job.result;
    let dir = &r.run_dir;
    if !dir.is_dir() {
        return;
    }
    let (attempts, worker_calls) = job
        .ledger
        .read()
        .task(&r.task_id)
        .ok()
        .flatten()
        .map_or((r.attempt, 0), |t| (t.attempts, t.worker_calls));
    let state = serde_json::json!({
        "task_id": r.task_id,
        "attempt": r.attempt,
        "retries": attempts.saturating_sub(1),
        "worker_calls": worker_calls,
        "state": r.state,
        "classification": r.classification,
        "failure_class": r.failure_class,
        "detail": r.detail,
        "worker": r.worker,
        "route": job.spec.routes,
        "branch": r.branch,
        "commit": r.commit,
        "cost_usd": r.cost_usd,
        "files_changed": r.files_changed,
        "lines_changed": r.lines_changed,
        "lines_added": r.lines_added,
        "lines_removed": r.lines_removed,
        "paths": r.paths,
        "delivery": r.delivery,
        "verification": r.verification,
        "tokens": { "input": r.tokens.0, "output": r.tokens.1 },
        "run_id": r.run_id,
        "review": r.review,
        "phases_ms": r.phases_ms,
    });
    let mut text = serde_json::to_vec_pretty(&state).unwrap_or_default();
    text.push(b'\n');
    let _ = runner::artifacts::write_atomic(&dir.join("state.json"), &text);
    let tiers: Vec<String> = r
        .phases_ms
        .verify_by_tier
        .iter()
        .map(|(t, ms)| format!("{t} {ms} ms"))
        .collect();
    let summary = format!(
        "# {} attempt {} — {}\n\n\
         | | |\n|---|---|\n\
         | worker | {} |\n| worker calls | {} (retries so far: {}) |\n| outcome | {}{} |\n| branch | `{}`{} |\n| this run's change | {} files, {} lines |\n{}\
         | review | {} |\n| cost | {} |\n\
         | time | worktree {} ms · executor {} ms · verify {} ms ({}) · commit {} ms · review {} ms · deliver {} ms |\n{}",
        r.task_id,
        r.attempt,
        r.state,
        r.worker,
        worker_calls,
        attempts.saturating_sub(1),
        r.classification.as_deref().unwrap_or("-"),
        r.failure_class
            .as_deref()
            .map(|c| format!(" / {c}"))
            .unwrap_or_default(),
        r.branch,
        r.commit
            .as_deref()
            .map(|c| format!(" at `{}`", &c[..c.len().min(12)]))
            .unwrap_or_default(),
        r.files_changed,
        r.lines_changed,
        r.delivery
            .as_ref()
            .map(|d| format!(
                "| the branch's change | {} files, {} lines |\n",
                d.files,
                d.lines_added + d.lines_removed
            ))
            .unwrap_or_default(),
        r.review.as_deref().unwrap_or("-"),
        crate::money::format_usd(job.cost),
        r.phases_ms.worktree,
        r.phases_ms.executor,
        r.phases_ms.verify,
        if tiers.is_empty() {
            "none".to_owned()
        } else {
            tiers.join(", ")
        },
        r.phases_ms.commit,
        r.phases_ms.review,
        r.phases_ms.deliver,
        r.detail
            .as_deref()
            .map(|d| format!("\n## Why\n\n{d}\n"))
            .unwrap_or_default(),
    );
    let _ = runner::artifacts::write_atomic(&dir.join("summary.md"), summary.as_bytes());
}
