//! The execute stage: the executor run in the attempt's worktree, and what its ending means for
//! the task (retried, requeued, or on to verification). The runner retries nothing itself; a
//! failed run's next attempt is the ending's to decide, within the caps.

use std::time::Instant;

use super::ending::{Ending, Outcome, Stop};
use super::worktree::{self, Worktree};
use super::{Job, attribution, elapsed_ms, resume};
use crate::ledger::{FailureClass, TaskState};
use crate::runner::{PreparedRun, RunReport, RunnerError};
use crate::worker::Classification;

/// A successful executor run.
pub(super) struct Executed {
    pub(super) report: RunReport,
    /// The worktree's HEAD before the run: what is past it the worker committed.
    pub(super) start_head: Option<String>,
}

/// How the executor starts: its worktree, and whether it continues an earlier session (then a
/// session the CLI does not know is started over with `fresh_prompt`).
pub(super) struct Start<'s> {
    pub(super) tree: &'s Worktree,
    pub(super) resumed: bool,
    pub(super) fresh_prompt: &'s str,
}

/// Runs the executor. The worktree's HEAD now tells later which commits the worker made; its
/// git metadata must be as oxi left it before oxi runs git there again.
pub(super) async fn stage(
    job: &mut Job<'_>,
    prepared: PreparedRun<'_>,
    start: &Start<'_>,
) -> Result<Executed, Stop> {
    let spec = job.spec;
    let tree = start.tree;
    let start_head = worktree::resolve(&spec.worktree, "HEAD");
    let anchor = attribution::WorktreeAnchor::take(&spec.worktree);
    let started = Instant::now();
    let mut outcome = prepared.run(&mut job.ledger, job.shutdown.clone()).await;
    if let Ok(report) = &outcome
        && resume::refused(report, start.resumed)
    {
        job.note_cost(report);
        let refused = report.clone();
        outcome = resume::start_over(job, &refused, start.fresh_prompt).await;
    }
    let report = match outcome {
        Ok(report) => report,
        Err(RunnerError::Ledger(e)) => return Err(e.into()),
        Err(RunnerError::Budget(refusal)) => {
            return Err(Ending::new(Outcome::RetryAt {
                class: FailureClass::BudgetRefused,
                at_ms: crate::clock::now_ms() + 3_600_000,
                why: format!("the fresh run after a refused session was refused: {refusal}"),
            })
            .salvage(format!(
                "oxi: attempt {} could not start afresh",
                spec.attempt
            ))
            .into());
        }
        Err(e) => {
            // The run never started (its directory could not be written: a full disk); the
            // runner closed its row. The task is retried like any transient failure.
            job.result.classification = Some(Classification::WorkerError.as_str().to_owned());
            return Err(Ending::retry(
                FailureClass::RunNotStarted,
                format!("the run could not start: {e}"),
                true,
            )
            .salvage(format!(
                "oxi: attempt {} could not start its run",
                spec.attempt
            ))
            .into());
        }
    };
    job.result.phases_ms.executor = elapsed_ms(started);
    job.result.classification = Some(report.classification.as_str().to_owned());
    job.note_cost(&report);
    worktree::untouched(job, &anchor, "worker", TaskState::FrameworkFixNeeded)?;
    if report.classification != Classification::Success {
        job.credit(&tree.start_commit);
        return Err(unsuccessful(job, &report).into());
    }
    Ok(Executed { report, start_head })
}

/// A run that did not succeed: salvaged, then requeued when it was not the task's fault, else
/// a failure the caps decide on.
fn unsuccessful(job: &Job<'_>, report: &RunReport) -> Ending {
    let class = report.classification.as_str();
    let salvage = format!(
        "oxi: attempt {} ended {class} (not delivered)",
        job.spec.attempt
    );
    let detail = report.detail.clone().unwrap_or_else(|| class.to_owned());
    let failure = match &report.last_message {
        Some(message) => {
            format!("The worker's run ended {class}: {detail}\nIts last message:\n{message}")
        }
        None => format!("The worker's run ended {class}: {detail}"),
    };
    let outcome = match report.classification {
        // oxi was stopped, not the task's fault: it goes back to the queue as it was.
        Classification::Killed => Outcome::Requeue {
            class: None,
            why: "oxi was stopped during the run",
            failure,
            detail: None,
        },
        // The worker's login, not the task, failed: the runner blocked the worker, and the
        // task waits in the queue for a worker that can run it.
        Classification::AuthFailed => Outcome::Requeue {
            class: Some(report.classification.into()),
            why: "the worker could not authenticate; it is blocked until `oxi doctor` passes",
            failure,
            detail: Some(detail),
        },
        _ => Outcome::Retry {
            class: report.classification.into(),
            failure,
            retryable: report.classification.is_retryable(),
            retry_after_ms: report.retry_after_ms,
        },
    };
    Ending::new(outcome).salvage(salvage)
}
