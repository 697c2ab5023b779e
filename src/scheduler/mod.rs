//! What `oxi tick` and `oxi saturate` share: the lock, the reaper, roadmap ingest, landed-branch
//! settlement, the dispatch preflight, the plan, claims and budget admission.
//!
//! Two drivers use it: [`pass`] (one bounded tick) and [`saturate`] (keep N slots busy). Both go
//! through the functions and types below; the submodules that implement them are private, so
//! a driver cannot come to depend on how a step is done.

mod admission;
mod claim;
mod landed;
pub mod lock;
mod outcome;
mod pass;
pub mod plan;
mod reap;
pub mod saturate;

use crate::config::LoadedConfig;
use crate::ledger::{Ledger, LedgerError, TaskRow};
use crate::roadmap::{self, ingest::IngestSummary};
use crate::runner::RunnerError;

#[doc(hidden)]
pub use admission::{BenchClaim, claim_for_bench};
pub use claim::ClaimStop;
pub(crate) use claim::{ClaimRequest, Claimed};
pub use landed::Landed;
pub use outcome::Outcome;
pub use pass::{TickPhases, TickReport, pass};
pub use reap::Reaped;

/// Why a scheduler step (a pass, a claim round, a reap) could not finish.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The ledger failed; the step's writes so far are committed, the rest are not.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A claimed job's run could not be prepared (an unknown worker, a bad directory).
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// The roadmap could not be read or parsed at ingest.
    #[error(transparent)]
    Roadmap(#[from] roadmap::RoadmapError),
    /// A task's executor prompt could not be rendered.
    #[error(transparent)]
    Prompt(#[from] crate::prompt::PromptError),
    /// Release mode: GitHub cannot be used (the token, the rights, the network).
    #[error(transparent)]
    Github(#[from] crate::github::GithubError),
    /// Release mode: a delivery a person must unblock (the message says how).
    #[error(transparent)]
    ReleaseBlocked(crate::pipeline::deliver::release::ReleaseError),
    /// `[routing]` does not compile (validation catches that when the config loads).
    #[error("[routing]: {0}")]
    Routing(#[from] crate::routing::RouteError),
}

/// Ends runs whose supervisor is gone or whose lease expired, and recovers tasks left in flight
/// without a run. `busy`: tasks this process is itself running (never reaped).
pub(crate) async fn reap(
    ledger: &mut Ledger,
    config: &LoadedConfig,
    busy: &[String],
    parent_env: &[(String, String)],
) -> Result<Vec<Reaped>, SchedulerError> {
    let reaped = reap::reap(ledger, config, busy).await?;
    // `[triage]`: why each recovered task's run was stuck (after the task moved: it never
    // waits on the gateway).
    for r in &reaped {
        if let (Some(task_id), Some(_)) = (r.task_id.as_deref(), r.task_state) {
            let subject = crate::pipeline::triage::Subject {
                task_id,
                run_id: r.run_id.as_deref(),
                trigger: crate::ledger::events::TriageTrigger::Reaped,
            };
            crate::pipeline::triage::summarise(ledger, config, parent_env, subject).await;
        }
    }
    Ok(reaped)
}

/// Ingests the roadmap when it changed since the last ingest; `None` when it did not.
pub(crate) fn refresh_roadmap(
    ledger: &mut Ledger,
    config: &LoadedConfig,
    parent_env: &[(String, String)],
) -> Result<Option<IngestSummary>, SchedulerError> {
    pass::ingest(ledger, config, parent_env)
}

/// `[sources.github_issues]`: reads the issues and applies them (a GitHub failure is recorded
/// and returned as `IssueSync::Failed`); `None` when the source is not configured.
pub(crate) async fn sync_issues(
    ledger: &mut Ledger,
    config: &LoadedConfig,
    parent_env: &[(String, String)],
) -> Result<Option<roadmap::github_issues::IssueSync>, SchedulerError> {
    Ok(roadmap::github_issues::sync(ledger, config, parent_env).await?)
}

/// Fast mode: delivered branches an operator merged into the base branch become `done`.
pub(crate) fn settle_landed(
    config: &LoadedConfig,
    ledger: &mut Ledger,
) -> Result<Vec<Landed>, SchedulerError> {
    Ok(landed::settle(config, ledger)?)
}

/// What stops dispatch now (see [`crate::preflight`]): the repository, the executors' and
/// acceptance commands' binaries, every executor blocked. Empty when claiming may go on.
pub(crate) fn dispatch_problems(
    config: &LoadedConfig,
    ledger: &Ledger,
    parent_env: &[(String, String)],
) -> Result<Vec<String>, SchedulerError> {
    let mut problems = crate::preflight::blocking_problems(config, parent_env);
    problems.extend(crate::preflight::blocked_executors(config, ledger)?);
    Ok(problems)
}

/// One claim round over `planned` (see [`ClaimRequest`]): the gates, then budget admission.
pub(crate) async fn claim(
    ledger: &mut Ledger,
    request: &ClaimRequest<'_>,
    tasks: &[TaskRow],
    planned: Vec<plan::PlannedTask>,
) -> Result<Claimed, SchedulerError> {
    claim::claim(ledger, request, tasks, planned).await
}

/// True when a process with this pid exists.
pub(crate) fn pid_alive(pid: u32) -> bool {
    reap::pid_alive(pid)
}

/// Release mode: resume deliveries and follow open pull requests (what a pass does before it
/// claims); nothing outside release mode.
pub(crate) async fn follow_release(
    config: &LoadedConfig,
    ledger: &mut Ledger,
    parent_env: &[(String, String)],
) -> Result<Vec<crate::pipeline::deliver::release::ReleaseAction>, SchedulerError> {
    let Some(release) = config.release_mode() else {
        return Ok(Vec::new());
    };
    let (client, token) = crate::preflight::github_preflight(config, parent_env).await?;
    let writer = crate::github::GithubWriter::new(&client, release);
    let redactor = crate::runner::env::redactor_for(config, parent_env);
    crate::pipeline::deliver::release_stage(
        config, ledger, &client, &writer, &token, &redactor, true,
    )
    .await
    .map_err(|e| match e {
        crate::pipeline::deliver::ReleaseStop::Blocked(e) => SchedulerError::ReleaseBlocked(e),
        crate::pipeline::deliver::ReleaseStop::Ledger(e) => SchedulerError::Ledger(e),
    })
}
