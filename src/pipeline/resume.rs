//! Retries that continue the conversation: a retry after a stop that kept the work (the
//! runtime cap, a stall, the reaper, a transient error, a red verification) resumes the agent's
//! session of the earlier attempt (claude `--resume <session>`, codex `exec resume <thread>`)
//! with the failure appended, instead of sending the whole brief to an agent that starts from
//! nothing. The run records `resumed_from`. A session that cannot be continued (another worker,
//! no id recorded, a stop a session should not survive, the CLI does not know the id) starts
//! fresh, and a `session_fresh` event says why; when the CLI refuses the id, the refused run is
//! followed at once by a fresh one.

use super::Job;
use super::ending::Stop;
use crate::clock::now_ms;
use crate::ledger::events::{FreshReason, SessionFresh, SessionResumed};
use crate::ledger::{Event, FailureClass, ResumeSource};
use crate::prompt::{self, ExecutorPrompt};
use crate::runner::{self, PreparedRun, RunReport, RunnerError};
use crate::worker::{Classification, SessionBase, Tokens, WorkerKind};

/// A retry that continues an earlier run's session.
pub(super) struct Resumption {
    from: ResumeSource,
    session: String,
    /// The prompt sent to the resumed session: the attempt, the new directory, the failure.
    text: String,
}

/// Stops after which the earlier session is worth continuing: the work it did is on the branch
/// and the conversation knows why. Others start fresh: a governance stop, a secret or a rejected
/// review should not be argued with from inside the same conversation, and a run that could not
/// authenticate, start or parse has no conversation worth keeping.
fn resumable(class: &FailureClass) -> bool {
    matches!(
        class,
        FailureClass::Run(
            Classification::Timeout
                | Classification::Stalled
                | Classification::Transient
                | Classification::RateLimited
        ) | FailureClass::Reaped
            | FailureClass::VerifyFailed
    )
}

/// Whether this attempt continues the earlier one's session: the resumption, or `None` (and on
/// a retry a `session_fresh` event saying why).
pub(super) fn decide(job: &mut Job<'_>) -> Result<Option<Resumption>, Stop> {
    let spec = job.spec;
    if spec.attempt <= 1 {
        return Ok(None);
    }
    let source = job
        .ledger
        .read()
        .resume_source(&spec.task.spec.id, spec.attempt)?;
    let verdict = match source {
        None => Err((
            FreshReason::NoEarlierRun,
            "the task has no earlier executor run".to_owned(),
            None,
        )),
        Some(from) => judge(job, from),
    };
    match verdict {
        Ok((from, session)) => {
            let text =
                resume_prompt(job).map_err(|e| Stop::Runner(RunnerError::Prompt(e.to_string())))?;
            Ok(Some(Resumption {
                from,
                session,
                text,
            }))
        }
        Err((reason, detail, from_run)) => {
            fresh(job, reason, detail, from_run);
            Ok(None)
        }
    }
}

type Refusal = (FreshReason, String, Option<String>);

/// The earlier run's session, when this retry can continue it.
fn judge(job: &Job<'_>, from: ResumeSource) -> Result<(ResumeSource, String), Refusal> {
    let spec = job.spec;
    let config = &job.ctx.config.config;
    let refuse = |reason, detail: String| Err((reason, detail, Some(from.run_id.clone())));
    if !config.run.resume_sessions {
        return refuse(
            FreshReason::Disabled,
            "run.resume_sessions = false".to_owned(),
        );
    }
    let class = spec.task.failure_class.clone();
    if !class.as_ref().is_some_and(resumable) {
        let class = class.map_or_else(|| "none".to_owned(), |c| c.as_str().to_owned());
        return refuse(
            FreshReason::NotResumable,
            format!(
                "the previous attempt stopped with {class}, after which a session is not continued"
            ),
        );
    }
    let kind = config.workers.get(&spec.worker).map(|w| w.kind);
    if from.worker != spec.worker || kind.map(WorkerKind::as_str) != Some(from.worker_kind.as_str())
    {
        return refuse(
            FreshReason::OtherWorker,
            format!(
                "the session is {}'s ({}); this attempt runs on {}",
                from.worker, from.worker_kind, spec.worker
            ),
        );
    }
    let Some(session) = from.session_id.clone() else {
        return refuse(
            FreshReason::NoSession,
            format!("run {} recorded no session id", from.run_id),
        );
    };
    Ok((from, session))
}

/// Records that this retry starts fresh, and why.
fn fresh(job: &mut Job<'_>, reason: FreshReason, detail: String, from_run: Option<String>) {
    tracing::info!("task {}: the retry starts fresh: {detail}", job.id());
    let run_id = job.result.run_id.clone();
    job.event(
        Some(&run_id),
        Event::SessionFresh(SessionFresh {
            reason,
            detail,
            from_run,
        }),
    );
}

/// The resumed session's prompt: the session already holds the brief and the rules.
fn resume_prompt(job: &Job<'_>) -> Result<String, prompt::PromptError> {
    let spec = job.spec;
    let config = &job.ctx.config.config;
    prompt::resume(&ExecutorPrompt {
        id: &spec.task.spec.id,
        title: &spec.task.spec.title,
        subtitle: spec.task.spec.subtitle.as_deref(),
        brief: "",
        file_hints: &spec.task.spec.file_hints,
        acceptance: prompt::acceptance(config),
        worktree: spec.worktree.display().to_string(),
        protected: &config.governance.protected,
        attempt: spec.attempt,
        max_attempts: config.caps.max_attempts,
        last_failure: spec
            .task
            .last_failure
            .as_deref()
            .map(|f| prompt::clip_tail(f, prompt::FAILURE_CLIP)),
        plan: None,
    })
}

/// The executor's run, prepared again to continue the session (same run id, admitted by the
/// claim): the resume argv and prompt, the session's earlier figures to subtract, and the
/// `resumed_from` link. A CLI that cannot resume keeps the fresh run.
pub(super) fn reprepare<'p>(
    job: &mut Job<'_>,
    executor: PreparedRun<'p>,
    resumption: &'p Resumption,
) -> Result<PreparedRun<'p>, Stop> {
    let adapter = executor.worker.kind.adapter();
    let masked = executor.redactor.redact(&resumption.text).into_owned();
    let Some(argv) = adapter.resume_argv(&executor.worker, &resumption.session, &masked) else {
        let detail = format!("{} cannot resume a session", executor.worker.kind.as_str());
        fresh(
            job,
            FreshReason::Unsupported,
            detail,
            Some(resumption.from.run_id.clone()),
        );
        return Ok(executor);
    };
    let run_id = executor.run_id.clone();
    let request = runner::RunRequest {
        prompt: &resumption.text,
        run_id: Some(run_id.clone()),
        ..executor.request
    };
    let mut prepared = runner::prepare(job.ctx.config, request)?;
    prepared.argv = argv;
    let totals = adapter.session_totals();
    let from = resumption.from.run_id.as_str();
    let spent = job.ledger.read().session_spent(from)?;
    prepared.session_base = SessionBase {
        tokens: if totals.tokens {
            Tokens {
                input: spent.input_tokens,
                cached_input: spent.cached_input_tokens,
                cache_write_input: 0,
                output: spent.output_tokens,
                reasoning: spent.reasoning_tokens,
            }
        } else {
            Tokens::default()
        },
        cost_usd: if totals.cost {
            crate::money::micro_to_usd(spent.cost_microusd)
        } else {
            0.0
        },
    };
    job.ledger.write(|q| {
        q.set_resumed_from(&run_id, Some(from))?;
        q.record_prompt_bytes(&run_id, resumption.text.len())
    })?;
    let after = job
        .spec
        .task
        .failure_class
        .as_ref()
        .map_or_else(String::new, |c| c.as_str().to_owned());
    job.event(
        Some(&run_id),
        Event::SessionResumed(SessionResumed {
            from_run: from.to_owned(),
            session_id: resumption.session.clone(),
            after,
        }),
    );
    Ok(prepared)
}

/// Whether `report` is a resumed run the CLI refused because it does not know the session.
pub(super) fn refused(report: &RunReport, resumed: bool) -> bool {
    resumed
        && report.classification != Classification::Success
        && report
            .detail
            .as_deref()
            .is_some_and(|d| report.worker_kind.adapter().session_unknown(d))
}

/// After the CLI refused the session: a `session_fresh` event, and a fresh executor run with
/// `prompt` (the whole or planned brief), admitted as one more worker call.
pub(super) async fn start_over(
    job: &mut Job<'_>,
    refused: &RunReport,
    prompt: &str,
) -> Result<RunReport, RunnerError> {
    let detail = format!(
        "the CLI does not know the session: {}",
        refused.detail.as_deref().unwrap_or_default()
    );
    let from_run = job.ledger.read().resumed_from(&refused.run_id)?;
    fresh(job, FreshReason::UnknownSession, detail, from_run);
    let spec = job.spec;
    let worktree = spec.worktree.display().to_string();
    let mut request =
        spec.executor_request(&worktree, job.ctx.actor, job.ctx.parent_env.clone(), None);
    request.prompt = prompt;
    let prepared = runner::prepare(job.ctx.config, request)?;
    let id = spec.task.spec.id.clone();
    prepared.admit_with(&mut job.ledger, spec.estimate, |q| {
        q.count_worker_call(&id, now_ms())
    })?;
    job.result.run_id = prepared.run_id.clone();
    job.result.run_dir = prepared.run_dir.clone();
    prepared.run(&mut job.ledger, job.shutdown.clone()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stops_that_keep_the_work_resume() {
        for class in [
            FailureClass::Run(Classification::Timeout),
            FailureClass::Run(Classification::Stalled),
            FailureClass::Run(Classification::Transient),
            FailureClass::Reaped,
            FailureClass::VerifyFailed,
        ] {
            assert!(resumable(&class), "{class:?}");
        }
        for class in [
            FailureClass::Governance,
            FailureClass::SecretInDiff,
            FailureClass::Run(Classification::AuthFailed),
            FailureClass::Run(Classification::SpawnFailed),
            FailureClass::CriticRejected,
        ] {
            assert!(!resumable(&class), "{class:?}");
        }
    }
}
