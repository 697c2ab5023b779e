//! The deliver stage, and delivery as a whole. A job that passed verification and review is
//! committed on its task branch ([`commit`]) and leaves the pipeline ([`hand_off`]): fast mode
//! stops there (the branch is the delivery), release mode leaves the task `deliver_pending` for
//! [`release_stage`], which the scheduler calls each pass to push branches, open and follow
//! their pull requests (`release`, `sync`) — and which also resumes deliveries an earlier
//! pass or an operator's approval left pending. Everything that delivers lives here.

pub(crate) mod release;
mod sync;

pub(crate) use sync::current_hold as current_merge_hold;

use std::time::Instant;

use super::ending::{Ending, Outcome, Stop};
use super::verify::Verified;
use super::worktree::{self, Worktree};
use super::{Job, elapsed_ms};
use crate::clock::now_ms;
use crate::config::{LoadedConfig, RunMode};
use crate::github::{GithubClient, GithubWriter};
use crate::ledger::events::{Delivered, DeliveredAfterApproval, DeliveryMode, GovernanceMemo};
use crate::ledger::{
    Event, FailureClass, HoldKind, Ledger, LedgerError, NewEvent, TaskState, Transition,
};
use crate::redact::Redactor;
use release::{ReleaseAction, ReleaseError};
pub use sync::sync;

/// Commits the verified work on the task branch (trailers say where it came from): one commit
/// of oxi's, holding also what earlier attempts left undelivered. Paths that need approval hold
/// the task here, committed, for `oxi approve`.
pub(super) fn commit(job: &mut Job<'_>, tree: &Worktree, verified: &Verified) -> Result<(), Stop> {
    let spec = job.spec;
    let run_id = job.result.run_id.clone();
    let started = Instant::now();
    let message = format!(
        "{}: {}\n\nOxi-Task: {}\n{}: {}\nOxi-Attempt: {}\nOxi-Worker: {}\n",
        spec.task.spec.id,
        spec.task.spec.title,
        spec.task.spec.id,
        worktree::RUN_TRAILER,
        run_id,
        spec.attempt,
        spec.worker
    );
    // `verify::diff` staged everything and found changes.
    let commit =
        worktree::commit_delivery(&spec.worktree, &tree.base_commit, &message).map_err(|e| {
            Ending::retry(
                FailureClass::DeliverFailed,
                format!("could not commit: {e}"),
                false,
            )
        })?;
    job.result.commit = Some(commit.clone());
    job.result.phases_ms.commit = elapsed_ms(started);
    let governance = &verified.governance;
    if !governance.needs_approval.is_empty() {
        let memo = governance.memo();
        return Err(Ending::hold(
            HoldKind::NeedsApproval,
            format!(
                "{memo}; verified and committed on {}; `oxi approve {}` delivers it",
                spec.branch, spec.task.spec.id
            ),
            "needs approval",
        )
        .memo(GovernanceMemo::NeedsApproval {
            memo: memo.clone(),
            paths: governance.needs_approval.clone(),
            commit: Some(commit),
        })
        .salvage("oxi: salvage")
        .into());
    }
    Ok(())
}

/// The job's last step: the worktree goes (its work is on the branch), and the task is
/// delivered (fast mode) or waits for the push and the pull request (release mode).
pub(super) fn hand_off(job: &mut Job<'_>) -> Ending {
    let started = Instant::now();
    if let Err(e) = worktree::remove_clean(&job.ctx.config.repo_root, &job.spec.worktree) {
        tracing::warn!("task {}: {e}", job.spec.task.spec.id);
        job.retire("oxi: salvage");
    }
    Ending::new(Outcome::Delivered {
        release: job.ctx.config.config.run.mode == RunMode::Release,
        started,
    })
}

/// Fast mode: tasks an operator approved after a hold (`deliver_pending`; their verified work
/// is committed on their branch) are delivered. Returns their ids.
pub fn deliver_approved(ledger: &mut Ledger) -> Result<Vec<String>, LedgerError> {
    let mut delivered = Vec::new();
    for task in ledger.read().tasks()? {
        if task.state == TaskState::DeliverPending {
            let id = task.spec.id.clone();
            let now = now_ms();
            ledger.write(|q| {
                q.transition_task(
                    &id,
                    &Transition::by_oxi(
                        TaskState::DeliverPending,
                        TaskState::Delivered,
                        "delivered locally after approval (fast mode)",
                    ),
                    now,
                )?;
                q.append_event(&NewEvent {
                    at_ms: now,
                    task_id: Some(&id),
                    run_id: None,
                    actor: "oxi",
                    event: Event::Delivered(Delivered::AfterApproval(DeliveredAfterApproval {
                        mode: DeliveryMode::Fast,
                        branch: task.branch.clone(),
                        after_approval: true,
                    })),
                })?;
                Ok(())
            })?;
            delivered.push(task.spec.id.clone());
        }
    }
    Ok(delivered)
}

/// Why the release stage stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseStop {
    /// A problem a person must fix (bad token, no rights, a push refused): the pass reports it
    /// as blocked and the next pass tries again.
    #[error(transparent)]
    Blocked(ReleaseError),
    /// The ledger failed: the pass fails.
    #[error(transparent)]
    Ledger(LedgerError),
}

/// Resume deliveries (and, before claiming, follow open pull requests).
pub async fn release_stage(
    config: &LoadedConfig,
    ledger: &mut Ledger,
    client: &GithubClient,
    writer: &GithubWriter<'_>,
    token: &str,
    redactor: &Redactor,
    with_sync: bool,
) -> Result<Vec<ReleaseAction>, ReleaseStop> {
    let classify = |e: ReleaseError| match e {
        ReleaseError::Ledger(l) => ReleaseStop::Ledger(l),
        other => ReleaseStop::Blocked(other),
    };
    let release = release::Release {
        config,
        client,
        writer,
        token,
        redactor,
    };
    let mut actions = release::deliver_pending(&release, ledger)
        .await
        .map_err(classify)?;
    if with_sync {
        match sync(ledger, client, writer).await {
            Ok(more) => actions.extend(more),
            Err(ReleaseError::Github(e)) if e.is_transient() => {
                tracing::warn!("pull request sync skipped this tick: {e}");
            }
            Err(e) => return Err(classify(e)),
        }
    }
    // Tasks made from issues: the one comment on each issue follows its task (after the sync,
    // so a merge found there is reported in the same pass).
    for id in crate::roadmap::github_issues::write_comments(ledger, writer)
        .await
        .map_err(ReleaseStop::Ledger)?
    {
        actions.push(release::action(&id, "issue_comment", None, None));
    }
    Ok(actions)
}
