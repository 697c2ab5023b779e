//! Merging an approved pull request, as GitHub allows it: with a merge method the repository
//! allows, re-reading once when GitHub says the head moved (409), and holding the merge with
//! GitHub's message when it refuses (405: branch protection, a conflict; 422) — that task's
//! problem, not the tick's. A held merge is not sent again for the same head until a new
//! `oxi approve TASK --merge`.

use super::super::release::{ReleaseAction, ReleaseError, action, event, transition};
use crate::clock::now_ms;
use crate::github::model::PullRequest;
use crate::github::{GithubClient, GithubError, GithubWriter};
use crate::ledger::events::{GithubError as GithubErrorEvent, MergedBy, PrMerged};
use crate::ledger::{ApprovalKind, Event, Ledger, LedgerError, TaskRow, TaskState};

/// A merge GitHub refused on a head, until a newer approval.
pub(crate) struct Hold {
    /// The head GitHub refused to merge.
    pub(crate) sha: String,
    pub(crate) at_ms: i64,
    /// GitHub's answer.
    pub(crate) reason: String,
}

fn hold_key(number: u64) -> String {
    format!("merge_held:{number}")
}

fn read_hold(ledger: &Ledger, number: u64) -> Result<Option<Hold>, LedgerError> {
    Ok(ledger.read().kv_get(&hold_key(number))?.and_then(|v| {
        let mut parts = v.splitn(3, '\t');
        Some(Hold {
            sha: parts.next()?.to_owned(),
            at_ms: parts.next()?.parse().ok()?,
            reason: parts.next()?.to_owned(),
        })
    }))
}

/// The hold on `task`'s pull request that still stands (what `oxi status` and `oxi show`
/// print): the task is delivered and no merge approval came after GitHub's refusal.
pub(crate) fn current_hold(ledger: &Ledger, task: &TaskRow) -> Result<Option<Hold>, LedgerError> {
    let Some(number) = task
        .pr_number
        .filter(|_| task.state == TaskState::Delivered)
    else {
        return Ok(None);
    };
    let Some(hold) = read_hold(ledger, number)? else {
        return Ok(None);
    };
    let approved_since = ledger
        .read()
        .approvals_for(&task.spec.id)?
        .iter()
        .any(|a| a.kind == Some(ApprovalKind::Merge) && a.at_ms > hold.at_ms);
    Ok((!approved_since).then_some(hold))
}

/// What one merge attempt came to.
enum Merge {
    Done,
    /// The head moved since CI passed: the new head's CI decides.
    HeadMoved(String),
}

/// Merges a pull request whose CI passed, only with a merge approval (a person's, or the
/// critic's under `github.merge = on_critic_approve`).
pub(super) async fn merge_if_approved(
    ledger: &mut Ledger,
    client: &GithubClient,
    writer: &GithubWriter<'_>,
    task: &TaskRow,
    number: u64,
    pull: &PullRequest,
    sha: &str,
) -> Result<Option<ReleaseAction>, ReleaseError> {
    let id = task.spec.id.clone();
    let approval = ledger
        .read()
        .approvals_for(&id)?
        .into_iter()
        .rev()
        .find(|a| a.kind == Some(ApprovalKind::Merge));
    let Some(approval) = approval else {
        return Ok(None);
    };
    if let Some(hold) = read_hold(ledger, number)?
        && hold.sha == sha
        && approval.at_ms <= hold.at_ms
    {
        return Ok(Some(action(
            &id,
            "merge_held",
            Some(number),
            Some(hold.reason),
        )));
    }
    match try_merge(client, writer, task, number, pull, sha).await {
        Ok(Merge::Done) => {}
        Ok(Merge::HeadMoved(new)) => {
            let detail = format!("the head moved to {new}; CI on it decides");
            return Ok(Some(action(&id, "merge_waits", Some(number), Some(detail))));
        }
        Err(e @ GithubError::Rejected { .. }) => {
            let reason = e.to_string();
            tracing::warn!("task {id}: merge of #{number} held: {reason}");
            let now = now_ms();
            ledger
                .write(|q| q.kv_set(&hold_key(number), &format!("{sha}\t{now}\t{reason}"), now))?;
            event(
                ledger,
                &id,
                Event::GithubError(GithubErrorEvent {
                    step: "merge".to_owned(),
                    error: reason.clone(),
                }),
            )?;
            return Ok(Some(action(&id, "merge_held", Some(number), Some(reason))));
        }
        Err(e) => return Err(e.into()),
    }
    // The merge stands whatever happens to the branch; a refused deletion is recorded.
    if let Err(e) = writer.delete_branch(&pull.head.name).await {
        tracing::warn!("task {id}: {e}");
        event(
            ledger,
            &id,
            Event::GithubError(GithubErrorEvent {
                step: "delete_branch".to_owned(),
                error: e.to_string(),
            }),
        )?;
    }
    transition(
        ledger,
        &id,
        TaskState::Delivered,
        TaskState::Merged,
        "merged by oxi after approval",
    )?;
    transition(ledger, &id, TaskState::Merged, TaskState::Done, "merged")?;
    event(
        ledger,
        &id,
        Event::PrMerged(PrMerged {
            number,
            by: MergedBy::Oxi,
            approved_by: Some(approval.approved_by.clone()),
        }),
    )?;
    Ok(Some(action(
        &id,
        "merged_by_oxi",
        Some(number),
        Some(approval.approved_by),
    )))
}

/// Out of draft, then the merge with a method the repository allows; on 409 (the head is not
/// `sha`) the pull request is read again and, if its head is still `sha`, merged once more.
async fn try_merge(
    client: &GithubClient,
    writer: &GithubWriter<'_>,
    task: &TaskRow,
    number: u64,
    pull: &PullRequest,
    sha: &str,
) -> Result<Merge, GithubError> {
    if pull.draft
        && let Some(node) = &pull.node_id
    {
        writer.mark_ready(node).await?;
    }
    let repository = client.repository().await?;
    let method = repository
        .merge_method()
        .ok_or_else(|| GithubError::Rejected {
            endpoint: format!("GET /repos/{}", client.repo),
            status: 200,
            message: "the repository allows no merge method (allow_squash_merge, allow_merge_commit and allow_rebase_merge are all false)".to_owned(),
        })?;
    let title = format!("{}: {}", task.spec.id, task.spec.title);
    match writer.merge_pull(number, sha, &title, method).await {
        Err(GithubError::Rejected { status: 409, .. }) => {
            let now = client.pull(number).await?;
            if now.is_merged() {
                return Ok(Merge::Done);
            }
            if now.head.sha != sha {
                return Ok(Merge::HeadMoved(now.head.sha));
            }
            writer.merge_pull(number, sha, &title, method).await?;
            Ok(Merge::Done)
        }
        other => other.map(|()| Merge::Done),
    }
}
