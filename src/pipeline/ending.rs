//! How a job ends. A stage that stops the job returns an [`Ending`] (as [`Stop::End`]) instead
//! of moving the task itself; [`Job::end`] applies it in one place, always in the same order:
//! record the governance memo, salvage the worktree, move the task (and record delivery).

use std::time::Instant;

use super::{Job, elapsed_ms};
use crate::clock::now_ms;
use crate::ledger::events::{Delivered, DeliveredJob, DeliveryMode, GovernanceMemo};
use crate::ledger::{
    Event, FailureClass, HoldKind, LedgerError, TaskState, Transition, TransitionFields,
};
use crate::prompt;
use crate::runner::RunnerError;

/// Why the stages stopped before the next one.
pub(super) enum Stop {
    /// The job is over: this is what happens to its task.
    End(Box<Ending>),
    /// The task changed state under us (an operator acted); nothing more to do.
    Conflict,
    /// oxi could not carry the job to a recorded stop (the ledger failed under it).
    Runner(RunnerError),
}

impl From<LedgerError> for Stop {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::StateConflict { .. } => Stop::Conflict,
            other => Stop::Runner(RunnerError::Ledger(other)),
        }
    }
}

impl From<RunnerError> for Stop {
    fn from(e: RunnerError) -> Self {
        match e {
            RunnerError::Ledger(l) => l.into(),
            other => Stop::Runner(other),
        }
    }
}

impl From<Ending> for Stop {
    fn from(ending: Ending) -> Self {
        Stop::End(Box::new(ending))
    }
}

/// What happens to the task, and what is done on the way.
pub(super) struct Ending {
    outcome: Outcome,
    /// Commit what the worktree holds with this message and remove it, before the task moves.
    salvage: Option<String>,
    /// A `governance_memo` event, recorded first.
    memo: Option<GovernanceMemo>,
}

/// Where the task goes.
pub(super) enum Outcome {
    /// A failure the caps decide on: `retry_wait` when retryable and attempts are left,
    /// `queued` (with the failure for the next attempt's prompt) when attempts are left,
    /// `failed` otherwise.
    Retry {
        class: FailureClass,
        failure: String,
        retryable: bool,
        retry_after_ms: Option<u64>,
    },
    /// `retry_wait` until `at_ms`, whatever the attempts (a review a budget cap refused).
    RetryAt {
        class: FailureClass,
        at_ms: i64,
        why: String,
    },
    /// Back to the queue: not the task's fault (oxi stopped, or the worker's login failed).
    Requeue {
        class: Option<FailureClass>,
        why: &'static str,
        failure: String,
        detail: Option<String>,
    },
    /// Held for a person, with the reason they read.
    Hold {
        kind: HoldKind,
        reason: String,
        why: &'static str,
    },
    /// Stopped for good: `failed`, or `framework_fix_needed` (held with `detail` as its reason).
    Fail {
        to: TaskState,
        class: FailureClass,
        detail: String,
        why: String,
        failure: Option<String>,
    },
    /// Verified, approved and committed on the task branch: `delivered` (fast mode) or
    /// `deliver_pending` (release mode: the push and the pull request come next).
    Delivered { release: bool, started: Instant },
}

impl Ending {
    pub(super) fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            salvage: None,
            memo: None,
        }
    }

    /// A failure the caps decide on (see [`Outcome::Retry`]).
    pub(super) fn retry(class: FailureClass, failure: impl Into<String>, retryable: bool) -> Self {
        Self::new(Outcome::Retry {
            class,
            failure: failure.into(),
            retryable,
            retry_after_ms: None,
        })
    }

    pub(super) fn hold(kind: HoldKind, reason: String, why: &'static str) -> Self {
        Self::new(Outcome::Hold { kind, reason, why })
    }

    /// Salvages the worktree first (commits what it holds with `message`, removes it).
    pub(super) fn salvage(mut self, message: impl Into<String>) -> Self {
        self.salvage = Some(message.into());
        self
    }

    /// Records a governance memo first.
    pub(super) fn memo(mut self, memo: GovernanceMemo) -> Self {
        self.memo = Some(memo);
        self
    }
}

impl Job<'_> {
    /// Applies a job's ending. A conflict (an operator moved the task meanwhile) is returned as
    /// `LedgerError::StateConflict`, after noting it in the result.
    pub(super) fn end(&mut self, ending: Ending) -> Result<(), LedgerError> {
        if let Some(memo) = ending.memo {
            let run_id = self.result.run_id.clone();
            self.event(Some(&run_id), Event::GovernanceMemo(memo));
        }
        if let Some(message) = ending.salvage {
            self.retire(&message);
        }
        match ending.outcome {
            Outcome::Retry {
                class,
                failure,
                retryable,
                retry_after_ms,
            } => self.fail_or_retry(class, &failure, retryable, retry_after_ms),
            Outcome::RetryAt { class, at_ms, why } => self.move_to(
                TaskState::RetryWait,
                TransitionFields {
                    failure_class: Some(class),
                    retry_at_ms: Some(at_ms),
                    ..TransitionFields::default()
                },
                &why,
                None,
            ),
            Outcome::Requeue {
                class,
                why,
                failure,
                detail,
            } => {
                if detail.is_some() {
                    self.result.detail = detail;
                }
                self.move_to(
                    TaskState::Queued,
                    TransitionFields {
                        failure_class: class,
                        ..TransitionFields::default()
                    },
                    why,
                    Some(&failure),
                )
            }
            Outcome::Hold { kind, reason, why } => self.move_to(
                TaskState::Held,
                TransitionFields {
                    held_reason: Some(reason),
                    hold_kind: Some(kind),
                    ..TransitionFields::default()
                },
                why,
                None,
            ),
            Outcome::Fail {
                to,
                class,
                detail,
                why,
                failure,
            } => {
                self.result.detail = Some(detail.clone());
                self.move_to(
                    to,
                    TransitionFields {
                        failure_class: Some(class),
                        held_reason: (to == TaskState::FrameworkFixNeeded).then_some(detail),
                        ..TransitionFields::default()
                    },
                    &why,
                    failure.as_deref(),
                )
            }
            Outcome::Delivered { release, started } => self.delivered(release, started),
        }
    }

    /// The task leaves the pipeline delivered (fast mode) or for the push (release mode), its
    /// last failure cleared.
    fn delivered(&mut self, release: bool, started: Instant) -> Result<(), LedgerError> {
        let id = self.id().to_owned();
        if release {
            self.move_to(
                TaskState::DeliverPending,
                TransitionFields::default(),
                "verified and approved; push and pull request next",
                None,
            )?;
            self.ledger.write(|q| q.set_task_failure(&id, None))?;
            self.result.phases_ms.deliver = elapsed_ms(started);
            return Ok(());
        }
        self.move_to(
            TaskState::Delivered,
            TransitionFields::default(),
            "delivered locally (fast mode)",
            None,
        )?;
        let delivery = self.result.delivery.clone().unwrap_or_default();
        let run_id = self.result.run_id.clone();
        self.event(
            Some(&run_id),
            Event::Delivered(Delivered::Job(DeliveredJob {
                mode: DeliveryMode::Fast,
                branch: self.spec.branch.clone(),
                commit: self.result.commit.clone(),
                files: delivery.files as u64,
                lines_added: delivery.lines_added,
                lines_removed: delivery.lines_removed,
                review: self.result.review.clone(),
                cost_microusd: self.cost,
            })),
        );
        self.ledger.write(|q| q.set_task_failure(&id, None))?;
        self.result.phases_ms.deliver = elapsed_ms(started);
        Ok(())
    }

    /// Moves the task on; a conflict (an operator cancelled it meanwhile) ends the job quietly.
    pub(super) fn move_to(
        &mut self,
        to: TaskState,
        fields: TransitionFields,
        reason: &str,
        failure: Option<&str>,
    ) -> Result<(), LedgerError> {
        let id = self.spec.task.spec.id.clone();
        let from = self.state;
        let now = now_ms();
        let failure_class = fields.failure_class.clone();
        let held_reason = fields.held_reason.clone();
        let outcome = self.ledger.write(|q| {
            q.transition_task(
                &id,
                &Transition {
                    from,
                    to,
                    fields,
                    actor: "oxi",
                    reason,
                },
                now,
            )?;
            if let Some(text) = failure {
                q.set_task_failure(&id, Some(text))?;
            }
            Ok(())
        });
        match outcome {
            Ok(()) => {
                self.state = to;
                self.result.state = to;
                if failure_class.is_some() {
                    self.result.failure_class = failure_class.map(|c| c.to_string());
                }
                self.result.held_reason = held_reason;
                Ok(())
            }
            Err(LedgerError::StateConflict { found, .. }) => {
                tracing::warn!("task {id} is now {found} (changed by someone else); leaving it");
                self.result.detail = Some(format!("task changed to {found} while it ran"));
                if let Ok(state) = found.parse() {
                    self.state = state;
                    self.result.state = state;
                }
                Err(LedgerError::StateConflict {
                    task: id,
                    expected: from,
                    found,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// A failure: retry-wait for retryable classes, queued with the failure for the next
    /// attempt when attempts remain, failed otherwise.
    fn fail_or_retry(
        &mut self,
        class: FailureClass,
        failure: &str,
        retryable: bool,
        retry_after_ms: Option<u64>,
    ) -> Result<(), LedgerError> {
        let caps = &self.ctx.config.config.caps;
        let task = self.ledger.read().task(self.id())?;
        let (attempts, calls) = task.map_or((u32::MAX, u32::MAX), |t| (t.attempts, t.worker_calls));
        let failure = prompt::clip_tail(&self.redactor.redact(failure), prompt::FAILURE_CLIP);
        self.result.detail = Some(crate::worker::event::clip(&failure, 500));
        let left = attempts < caps.max_attempts && calls < caps.max_worker_calls;
        if retryable && left {
            let base = caps.retry_backoff.as_duration().as_millis() as u64;
            let max = caps.retry_backoff_max.as_duration().as_millis() as u64;
            let backoff = base
                .saturating_mul(1u64 << attempts.saturating_sub(1).min(20))
                .min(max)
                .max(retry_after_ms.unwrap_or(0));
            let at = now_ms() + backoff as i64;
            return self.move_to(
                TaskState::RetryWait,
                TransitionFields {
                    failure_class: Some(class.clone()),
                    retry_at_ms: Some(at),
                    ..TransitionFields::default()
                },
                &format!("{class}: retry after backoff"),
                Some(&failure),
            );
        }
        if left {
            return self.move_to(
                TaskState::Queued,
                TransitionFields {
                    failure_class: Some(class.clone()),
                    ..TransitionFields::default()
                },
                &format!("{class}: another attempt"),
                Some(&failure),
            );
        }
        self.move_to(
            TaskState::Failed,
            TransitionFields {
                failure_class: Some(class.clone()),
                ..TransitionFields::default()
            },
            &format!("{class}: no attempts left"),
            Some(&failure),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_conflict_stops_quietly_and_other_ledger_errors_fail_the_job() {
        let conflict = LedgerError::StateConflict {
            task: "T1".into(),
            expected: TaskState::Verifying,
            found: "cancelled".into(),
        };
        assert!(matches!(Stop::from(conflict), Stop::Conflict));
        let runner = RunnerError::Ledger(LedgerError::StateConflict {
            task: "T1".into(),
            expected: TaskState::Reviewing,
            found: "held".into(),
        });
        assert!(matches!(Stop::from(runner), Stop::Conflict));
    }

    #[test]
    fn an_ending_salvages_and_records_its_memo_only_when_asked() {
        let plain = Ending::retry(FailureClass::VerifyFailed, "red", false);
        assert!(plain.salvage.is_none() && plain.memo.is_none());
        let full = Ending::retry(FailureClass::VerifyFailed, "red", false)
            .salvage("oxi: salvage")
            .memo(GovernanceMemo::SecretInDiff {
                memo: "a secret".into(),
                places: vec!["a.rs:1".into()],
            });
        assert_eq!(full.salvage.as_deref(), Some("oxi: salvage"));
        assert!(full.memo.is_some());
    }
}
