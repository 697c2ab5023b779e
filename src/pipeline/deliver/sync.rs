//! Release mode, after delivery: follow each delivered task's pull request (merged, closed,
//! CI, reviews), send it back to work with the feedback, and merge only what a human (or, opted
//! in, the critic) approved. What GitHub refuses for one pull request is that task's problem:
//! recorded, and the others go on.

mod ci;
mod merge;

pub(crate) use merge::current_hold;

use super::release::{ReleaseAction, ReleaseError, action, event, transition};
use crate::clock::now_ms;
use crate::github::model::PullRequest;
use crate::github::{CiEntry, GithubClient, GithubError, GithubWriter};
use crate::ledger::events::{
    Check, CiResult, FollowUp, GithubError as GithubErrorEvent, MergedBy, PrClosed, PrMerged,
    PrReviewed,
};
use crate::ledger::{Event, Ledger, LedgerError, NewEvent, TaskRow, TaskState, Transition};

/// Follows every delivered task's pull request: merged → `merged` then `done`; closed →
/// `rejected`; CI results recorded (first pass or not); a failed CI run or a "changes
/// requested" review sends the task back to work on its branch; approved merges happen.
pub async fn sync(
    ledger: &mut Ledger,
    client: &GithubClient,
    writer: &GithubWriter<'_>,
) -> Result<Vec<ReleaseAction>, ReleaseError> {
    let mut actions = Vec::new();
    let delivered: Vec<TaskRow> = ledger
        .read()
        .tasks()?
        .into_iter()
        .filter(|t| t.state == TaskState::Delivered && t.pr_number.is_some())
        .collect();
    for task in delivered {
        let id = task.spec.id.clone();
        let Some(number) = task.pr_number else {
            continue;
        };
        let followed = match client.pull(number).await {
            Ok(pull) => follow(ledger, client, writer, &task, number, &pull).await,
            Err(e) => Err(e.into()),
        };
        match followed {
            Ok(act) => actions.extend(act),
            Err(ReleaseError::Github(e)) if e.is_transient() => {
                actions.push(action(
                    &id,
                    "sync_skipped",
                    Some(number),
                    Some(e.to_string()),
                ));
            }
            // GitHub refused something about this one pull request: recorded, and the
            // others are followed all the same.
            Err(ReleaseError::Github(e @ GithubError::Rejected { .. })) => {
                event(
                    ledger,
                    &id,
                    Event::GithubError(GithubErrorEvent {
                        step: "sync".to_owned(),
                        error: e.to_string(),
                    }),
                )?;
                actions.push(action(
                    &id,
                    "sync_failed",
                    Some(number),
                    Some(e.to_string()),
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(actions)
}

/// One delivered task's open (or just merged or closed) pull request: what it calls for, in
/// order (its end, then CI, then reviews, then an approved merge); at most one action.
async fn follow(
    ledger: &mut Ledger,
    client: &GithubClient,
    writer: &GithubWriter<'_>,
    task: &TaskRow,
    number: u64,
    pull: &PullRequest,
) -> Result<Option<ReleaseAction>, ReleaseError> {
    let id = task.spec.id.clone();
    if pull.is_merged() {
        transition(
            ledger,
            &id,
            TaskState::Delivered,
            TaskState::Merged,
            "pull request merged",
        )?;
        transition(ledger, &id, TaskState::Merged, TaskState::Done, "merged")?;
        event(
            ledger,
            &id,
            Event::PrMerged(PrMerged {
                number,
                by: MergedBy::Maintainer,
                approved_by: None,
            }),
        )?;
        return Ok(Some(action(&id, "merged", Some(number), None)));
    }
    if pull.state == "closed" {
        transition(
            ledger,
            &id,
            TaskState::Delivered,
            TaskState::Rejected,
            "pull request closed without merging",
        )?;
        event(ledger, &id, Event::PrClosed(PrClosed { number }))?;
        return Ok(Some(action(&id, "rejected", Some(number), None)));
    }

    let sha = pull.head.sha.clone();
    let ci = ci::judge(ledger, number, &sha, client.ci(&sha).await?)?;
    if let ci::Ci::Done(entries) = &ci
        && let Some(act) = ci_result(ledger, task, number, &sha, entries)?
    {
        return Ok(Some(act));
    }
    if let Some(act) = new_reviews(ledger, client, task, number).await? {
        return Ok(Some(act));
    }
    if ci.passed() {
        return merge::merge_if_approved(ledger, client, writer, task, number, pull, &sha).await;
    }
    Ok(None)
}

/// Records CI's result on the head commit once (and whether it was the pull request's first);
/// red CI sends the task back to work with the failed checks' output.
fn ci_result(
    ledger: &mut Ledger,
    task: &TaskRow,
    number: u64,
    sha: &str,
    entries: &[CiEntry],
) -> Result<Option<ReleaseAction>, ReleaseError> {
    let failed: Vec<&CiEntry> = entries.iter().filter(|e| e.failed).collect();
    let id = task.spec.id.clone();
    let seen_key = format!("ci:{number}:{sha}");
    if ledger.read().kv_get(&seen_key)?.is_some() {
        return Ok(None);
    }
    let first_key = format!("ci_first:{number}");
    let first_pass = ledger.read().kv_get(&first_key)?.is_none();
    let green = failed.is_empty();
    let now = now_ms();
    ledger.write(|q| {
        q.kv_set(&seen_key, if green { "green" } else { "red" }, now)?;
        if first_pass {
            q.kv_set(&first_key, if green { "green" } else { "red" }, now)?;
        }
        q.append_event(&NewEvent {
            at_ms: now,
            task_id: Some(&id),
            run_id: None,
            actor: "oxi",
            event: Event::CiResult(CiResult {
                number,
                sha: sha.to_string(),
                green,
                first_pass,
                checks: entries
                    .iter()
                    .map(|e| Check {
                        name: e.name.clone(),
                        conclusion: e.conclusion.clone(),
                    })
                    .collect(),
            }),
        })
        .map(|_| ())
    })?;
    if green {
        return Ok(None);
    }
    let log: Vec<String> = failed
        .iter()
        .map(|e| {
            format!(
                "Check {:?} ended {}:\n{}",
                e.name,
                e.conclusion.as_deref().unwrap_or("?"),
                e.report
            )
        })
        .collect();
    follow_up(
        ledger,
        task,
        &format!("CI failed on pull request #{number}:\n{}", log.join("\n")),
    )?;
    Ok(Some(action(&id, "follow_up_ci", Some(number), None)))
}

/// Records reviews not seen before; one requesting changes sends the task back to work with
/// the reviewers' comments.
async fn new_reviews(
    ledger: &mut Ledger,
    client: &GithubClient,
    task: &TaskRow,
    number: u64,
) -> Result<Option<ReleaseAction>, ReleaseError> {
    let id = task.spec.id.clone();
    let reviews = client.reviews(number).await?;
    let seen_key = format!("reviews_seen:{number}");
    let seen: usize = ledger
        .read()
        .kv_get(&seen_key)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if reviews.len() <= seen {
        return Ok(None);
    }
    let new = &reviews[seen..];
    let now = now_ms();
    ledger.write(|q| q.kv_set(&seen_key, &reviews.len().to_string(), now))?;
    for review in new {
        event(
            ledger,
            &id,
            Event::PrReviewed(PrReviewed {
                number,
                state: review.state.clone(),
            }),
        )?;
    }
    let requested: Vec<String> = new
        .iter()
        .filter(|r| r.state == "CHANGES_REQUESTED")
        .map(|r| r.body.clone().unwrap_or_default())
        .collect();
    if requested.is_empty() {
        return Ok(None);
    }
    follow_up(
        ledger,
        task,
        &format!(
            "A reviewer requested changes on pull request #{number}:\n{}",
            requested.join("\n---\n")
        ),
    )?;
    Ok(Some(action(&id, "follow_up_review", Some(number), None)))
}

/// Sends a delivered task back to work on its branch with `feedback` in its next prompt
/// (within its caps: the claim fails it `attempts_exhausted` past them).
fn follow_up(ledger: &mut Ledger, task: &TaskRow, feedback: &str) -> Result<(), LedgerError> {
    let id = task.spec.id.clone();
    let now = now_ms();
    let feedback = crate::prompt::clip_tail(feedback, crate::prompt::FAILURE_CLIP);
    ledger.write(|q| {
        q.transition_task(
            &id,
            &Transition::by_oxi(
                TaskState::Delivered,
                TaskState::Queued,
                "pull request feedback",
            ),
            now,
        )?;
        q.set_task_failure(&id, Some(&feedback))?;
        q.append_event(&NewEvent {
            at_ms: now,
            task_id: Some(&id),
            run_id: None,
            actor: "oxi",
            event: Event::FollowUp(FollowUp { pr: task.pr_number }),
        })
        .map(|_| ())
    })
}
