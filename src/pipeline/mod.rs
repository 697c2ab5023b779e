//! One claimed task through the pipeline, a stage per file: [`worktree`] (prepare the attempt's
//! worktree) → `explore` (the read-only planner, for the tasks that get one) → [`execute`] (the executor run) → [`verify`] (diff, governance, secrets,
//! acceptance tiers) → [`review`] (auto-approve or the reviewer's verdict) → [`deliver`] (the
//! commit on the task branch; release mode pushes it and opens the pull request later). Each
//! stage either hands the next one what it found or stops with an [`ending::Ending`]; the driver
//! ([`run`]) applies that ending in one place, so every job ends as one recorded state change.

mod artifacts;
pub(crate) mod attribution;
pub(crate) mod deliver;
mod ending;
mod execute;
pub(crate) mod explore;
mod resume;
pub(crate) mod review;
pub(crate) mod screen;
mod shadow;
pub(crate) mod triage;
pub(crate) mod verify;
pub(crate) mod worktree;

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::watch;

use crate::config::LoadedConfig;
use crate::ledger::events::BudgetBreach;
use crate::ledger::{Event, Ledger, LedgerError, TaskRow, TaskState};
use crate::money::{MicroUsd, usd_to_micro};
use crate::redact::Redactor;
use crate::runner::{self, PreparedRun, RunReport, RunRequest, RunnerError};
use crate::worker::WorkerRole;
use attribution::MainSnapshot;
use ending::{Ending, Stop};
use verify::Diff;

pub use worktree::worktree_path;

/// What a job needs that the claim decided.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub task: TaskRow,
    /// The attempt number this run is (1-based).
    pub attempt: u32,
    pub worker: String,
    /// The routes the claim chose (executor: `worker` and its model; the reviewer).
    pub routes: crate::routing::JobRoutes,
    pub worktree: PathBuf,
    pub branch: String,
    /// `run.stack_on_delivered`: the commit (a delivered dependency's) to start from instead of
    /// the base branch; also the base of the diff that is verified and reviewed.
    pub start_from: Option<String>,
    pub prompt: String,
    pub estimate: MicroUsd,
}

impl JobSpec {
    /// The executor run's request: the claim admits it, the job thread starts it by id.
    pub fn executor_request<'a>(
        &'a self,
        worktree: &'a str,
        actor: &'a str,
        parent_env: Vec<(String, String)>,
        run_id: Option<String>,
    ) -> RunRequest<'a> {
        RunRequest {
            worker_name: &self.worker,
            model: self.routes.executor.model.as_deref(),
            route: Some(&self.routes.executor.route),
            prompt: &self.prompt,
            cwd: &self.worktree,
            role: WorkerRole::Executor,
            task_id: Some(&self.task.spec.id),
            attempt: self.attempt,
            worktree: Some(worktree),
            branch: Some(&self.branch),
            actor,
            parent_env,
            live: None,
            track_files: false,
            run_id,
        }
    }
}

/// How one job ended, for the tick's summary.
#[derive(Debug, Clone, Serialize)]
pub struct JobResult {
    pub task_id: String,
    pub attempt: u32,
    pub worker: String,
    pub run_id: String,
    pub state: TaskState,
    pub classification: Option<String>,
    pub failure_class: Option<String>,
    pub detail: Option<String>,
    /// Why the task is held, when this job ended with it `held`.
    pub held_reason: Option<String>,
    pub branch: String,
    pub commit: Option<String>,
    pub cost_usd: f64,
    /// This run's own change (the worktree against the commit the attempt started from: a
    /// retry is not credited with the earlier attempts' work it continued).
    pub files_changed: usize,
    pub lines_changed: u64,
    pub lines_added: u64,
    pub lines_removed: u64,
    pub paths: Vec<String>,
    /// What the branch holds against the base (what is verified, reviewed and delivered), once
    /// the run got that far.
    pub delivery: Option<ChangeSummary>,
    /// One line per acceptance command run.
    pub verification: Vec<String>,
    /// Input and output tokens of every run of this job.
    pub tokens: (u64, u64),
    pub review: Option<String>,
    pub phases_ms: Phases,
    pub run_dir: PathBuf,
}

/// A change's size and paths.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChangeSummary {
    pub files: usize,
    pub lines_added: u64,
    pub lines_removed: u64,
    pub paths: Vec<String>,
}

impl From<&Diff> for ChangeSummary {
    fn from(diff: &Diff) -> Self {
        Self {
            files: diff.files.len(),
            lines_added: diff.lines_added,
            lines_removed: diff.lines_removed,
            paths: diff.paths(),
        }
    }
}

/// Wall time per phase of a job.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phases {
    pub worktree: u64,
    pub executor: u64,
    /// Diff, governance, secret scan and acceptance tiers 0 and 1.
    pub verify: u64,
    pub verify_by_tier: std::collections::BTreeMap<String, u64>,
    pub commit: u64,
    pub review: u64,
    pub deliver: u64,
}

/// The shared context of every job in a pass.
pub struct JobContext<'a> {
    pub config: &'a LoadedConfig,
    pub parent_env: Vec<(String, String)>,
    pub actor: &'a str,
    /// The main checkout and its refs before the job started: what the worker changed there
    /// stops it (`crate::pipeline::attribution`); what the operator changed meanwhile does not.
    pub main_before: Option<MainSnapshot>,
}

fn elapsed_ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

/// One job's mutable state as it goes.
struct Job<'a> {
    ctx: &'a JobContext<'a>,
    spec: &'a JobSpec,
    ledger: Ledger,
    state: TaskState,
    result: JobResult,
    redactor: Redactor,
    cost: MicroUsd,
    shutdown: watch::Receiver<bool>,
    /// The planner's plan, when the task was explored (the critic reads its expected files).
    plan: Option<explore::Plan>,
}

impl Job<'_> {
    fn id(&self) -> &str {
        &self.spec.task.spec.id
    }

    fn event(&mut self, run_id: Option<&str>, event: Event) {
        let id = self.spec.task.spec.id.clone();
        let kind = event.kind();
        if let Err(e) = self.ledger.record(Some(&id), run_id, event) {
            tracing::warn!("task {id}: could not record {}: {e}", kind.as_str());
        }
    }

    /// Records this run's own change: the worktree against the commit the attempt started
    /// from, so a retry is credited with what it did, not with earlier attempts' work.
    fn credit(&mut self, start_commit: &str) {
        match verify::diff(&self.spec.worktree, start_commit) {
            Ok(own) => {
                self.result.files_changed = own.files.len();
                self.result.lines_changed = own.changed_lines();
                self.result.lines_added = own.lines_added;
                self.result.lines_removed = own.lines_removed;
                self.result.paths = own.paths();
            }
            Err(e) => tracing::warn!("task {}: could not diff this run's change: {e}", self.id()),
        }
    }

    /// Commits what is in the worktree (so nothing is lost) and removes it.
    fn retire(&mut self, message: &str) {
        if let Err(e) = worktree::retire(&self.ctx.config.repo_root, &self.spec.worktree, message) {
            tracing::warn!("task {}: {e}", self.id());
        }
    }

    fn note_cost(&mut self, report: &RunReport) {
        self.cost += report.cost_microusd;
        self.result.tokens.0 += report.tokens.input;
        self.result.tokens.1 += report.tokens.output;
        self.result.cost_usd = crate::money::micro_to_usd(self.cost);
        let cap = usd_to_micro(self.ctx.config.config.caps.job_usd);
        if report.cost_microusd > cap {
            self.event(
                Some(&report.run_id),
                Event::BudgetBreach(BudgetBreach::Job {
                    scope: "job".to_owned(),
                    cost_microusd: report.cost_microusd,
                    cap_microusd: cap,
                }),
            );
        }
    }
}

/// Why a job could not be carried to a recorded stop: its task stays in flight and the next
/// tick's reaper recovers it.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job thread's own runtime could not be built (no file descriptors left, say).
    #[error("{0}")]
    Runtime(std::io::Error),
    /// The executor run could not be prepared, or the ledger failed under the job. Not retried
    /// by the job; the reaper settles the task.
    #[error("task {task}: {source}")]
    Task { task: String, source: RunnerError },
    /// The job's thread panicked (returned by the caller that joins it).
    #[error("a job thread panicked")]
    Panicked,
}

/// Runs one admitted job to its end on the current thread (its own small runtime: git and
/// acceptance commands block).
pub fn start_job(
    ctx: &JobContext<'_>,
    spec: &JobSpec,
    run_id: &str,
    shutdown: watch::Receiver<bool>,
) -> Result<JobResult, JobError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(JobError::Runtime)?;
    let task_error = |source| JobError::Task {
        task: spec.task.spec.id.clone(),
        source,
    };
    let worktree = spec.worktree.display().to_string();
    let request = spec.executor_request(
        &worktree,
        ctx.actor,
        ctx.parent_env.clone(),
        Some(run_id.to_owned()),
    );
    let prepared = runner::prepare(ctx.config, request).map_err(task_error)?;
    if let Some(warning) = prepared.unpriced_warning() {
        tracing::warn!("task {}: {warning}", spec.task.spec.id);
    }
    let watch = shutdown.clone();
    shadow::beside(ctx, spec, &watch, || {
        runtime.block_on(run(ctx, spec, prepared, shutdown))
    })
    .map_err(task_error)
}

/// Runs one claimed task to a recorded stop. `prepared` was admitted by the claim.
pub async fn run(
    ctx: &JobContext<'_>,
    spec: &JobSpec,
    prepared: PreparedRun<'_>,
    shutdown: watch::Receiver<bool>,
) -> Result<JobResult, RunnerError> {
    let ledger = Ledger::open_at(&ctx.config.ledger_at())?;
    let run_dir = prepared.run_dir.clone();
    let redactor = prepared.redactor.clone();
    let mut job = Job {
        ctx,
        spec,
        ledger,
        state: TaskState::Dispatched,
        redactor,
        cost: 0,
        shutdown: shutdown.clone(),
        plan: None,
        result: JobResult {
            task_id: spec.task.spec.id.clone(),
            attempt: spec.attempt,
            worker: spec.worker.clone(),
            run_id: prepared.run_id.clone(),
            state: TaskState::Dispatched,
            classification: None,
            failure_class: None,
            detail: None,
            held_reason: None,
            branch: spec.branch.clone(),
            commit: None,
            cost_usd: 0.0,
            files_changed: 0,
            lines_changed: 0,
            lines_added: 0,
            lines_removed: 0,
            paths: Vec::new(),
            delivery: None,
            verification: Vec::new(),
            tokens: (0, 0),
            review: None,
            phases_ms: Phases::default(),
            run_dir,
        },
    };
    let ending = match stages(&mut job, prepared).await {
        Ok(ending) => ending,
        Err(Stop::End(ending)) => *ending,
        Err(Stop::Conflict) => return finish(job),
        Err(Stop::Runner(e)) => return Err(e),
    };
    match job.end(ending) {
        // A conflict: an operator moved the task meanwhile; it stays as they left it.
        Ok(()) | Err(LedgerError::StateConflict { .. }) => {
            if job.state == TaskState::Failed {
                let subject = triage::Subject {
                    task_id: &spec.task.spec.id,
                    run_id: Some(&job.result.run_id),
                    trigger: crate::ledger::events::TriageTrigger::Failed,
                };
                triage::summarise(&mut job.ledger, ctx.config, &ctx.parent_env, subject).await;
            }
            finish(job)
        }
        Err(e) => Err(RunnerError::Ledger(e)),
    }
}

fn finish(job: Job<'_>) -> Result<JobResult, RunnerError> {
    artifacts::write(&job);
    Ok(job.result)
}

/// The stages in order. Each returns what the next needs, or stops the job with its ending
/// (`Stop::End`); a delivered job ends with the deliver stage's ending.
async fn stages(job: &mut Job<'_>, prepared: PreparedRun<'_>) -> Result<Ending, Stop> {
    let tree = worktree::stage(job, &prepared)?;
    let (plan, planned_prompt) = explore::stage(job, &prepared)
        .await?
        .map(|e| (e.plan, e.prompt))
        .unzip();
    job.plan = plan;
    let prepared = match planned_prompt.as_deref() {
        Some(text) => explore::reprepare(job.ctx.config, &mut job.ledger, prepared, text)?,
        None => prepared,
    };
    let spec = job.spec;
    let fresh_prompt = planned_prompt.as_deref().unwrap_or(&spec.prompt);
    let resumption = resume::decide(job)?;
    let prepared = match &resumption {
        Some(resumption) => resume::reprepare(job, prepared, resumption)?,
        None => prepared,
    };
    let start = execute::Start {
        tree: &tree,
        resumed: resumption.is_some(),
        fresh_prompt,
    };
    let executed = execute::stage(job, prepared, &start).await?;
    let verified = verify::stage(job, &tree, &executed).await?;
    deliver::commit(job, &tree, &verified)?;
    let started = Instant::now();
    let reviewed = review::stage(job, &verified).await;
    job.result.phases_ms.review = elapsed_ms(started);
    reviewed?;
    verify::tier2(job).await?;
    Ok(deliver::hand_off(job))
}
