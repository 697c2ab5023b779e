//! One claimed task through the pipeline: worktree → executor run → verify (diff, governance,
//! secrets, acceptance tiers) → critic (auto-approve or reviewer verdict) → deliver (fast mode:
//! commit on the task branch, remove the worktree). Every ending is a recorded state change.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::watch;

use crate::clock::now_ms;
use crate::config::{AcceptanceCommand, LoadedConfig};
use crate::ledger::{
    EventKind, Ledger, LedgerError, TaskRow, TaskState, Transition, TransitionFields, VerifyRecord,
};
use crate::money::{MicroUsd, usd_to_micro};
use crate::prompt::{self, ReviewerPrompt};
use crate::redact::Redactor;
use crate::runner::{self, PreparedRun, RunReport, RunRequest, RunnerError};
use crate::worker::Classification;
use attribution::{Evidence, MainSnapshot};
use review::{self as critic, Gate, Verdict};
use verify::{CommandResult, Diff};
pub mod attribution;
pub mod deliver;
pub mod review;
pub mod verify;
pub mod worktree;

/// What a job needs that the claim decided.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub task: TaskRow,
    /// The attempt number this run is (1-based).
    pub attempt: u32,
    pub worker: String,
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
            prompt: &self.prompt,
            cwd: &self.worktree,
            role: "executor",
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
}

impl Job<'_> {
    fn id(&self) -> &str {
        &self.spec.task.spec.id
    }

    fn event(&mut self, kind: EventKind, run_id: Option<&str>, data: serde_json::Value) {
        let id = self.spec.task.spec.id.clone();
        if let Err(e) = self.ledger.record(kind, Some(&id), run_id, data) {
            tracing::warn!("task {id}: could not record {}: {e}", kind.as_str());
        }
    }

    /// Moves the task on; a conflict (an operator cancelled it meanwhile) ends the job quietly.
    fn move_to(
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
                    self.result.failure_class = failure_class;
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
        class: &str,
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
                    failure_class: Some(class.to_owned()),
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
                    failure_class: Some(class.to_owned()),
                    ..TransitionFields::default()
                },
                &format!("{class}: another attempt"),
                Some(&failure),
            );
        }
        self.move_to(
            TaskState::Failed,
            TransitionFields {
                failure_class: Some(class.to_owned()),
                ..TransitionFields::default()
            },
            &format!("{class}: no attempts left"),
            Some(&failure),
        )
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

    /// Stops the task (to `to`) when the run changed its worktree's git metadata; true when
    /// it did. No git may run in that worktree then (not even to salvage it): it could commit
    /// onto another branch or run hooks the worker planted.
    fn stop_if_tampered(
        &mut self,
        anchor: &attribution::WorktreeAnchor,
        who: &str,
        to: TaskState,
    ) -> Result<bool, LedgerError> {
        let tampered = anchor.changed();
        if tampered.is_empty() {
            return Ok(false);
        }
        let memo = format!(
            "the {who} changed its worktree's git metadata ({}); oxi ran no git there and left {} for a person to inspect",
            tampered.join(", "),
            self.spec.worktree.display()
        );
        self.event(
            EventKind::GovernanceMemo,
            Some(&self.result.run_id.clone()),
            serde_json::json!({ "trigger": "worktree_metadata", "memo": memo, "paths": tampered }),
        );
        self.result.detail = Some(memo.clone());
        self.move_to(
            to,
            TransitionFields {
                failure_class: Some("governance".to_owned()),
                held_reason: (to == TaskState::FrameworkFixNeeded).then(|| memo.clone()),
                ..TransitionFields::default()
            },
            &memo,
            Some(&memo),
        )?;
        Ok(true)
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
                EventKind::BudgetBreach,
                Some(&report.run_id),
                serde_json::json!({
                    "scope": "job",
                    "cost_microusd": report.cost_microusd,
                    "cap_microusd": cap,
                }),
            );
        }
    }

    async fn acceptance(
        &mut self,
        tier: &str,
        commands: &[AcceptanceCommand],
        run_id: &str,
    ) -> Result<Vec<CommandResult>, String> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let withheld: Vec<String> = self
            .ctx
            .config
            .config
            .workers
            .values()
            .flat_map(|w| w.env.iter().cloned())
            .chain(
                self.ctx
                    .config
                    .config
                    .github
                    .as_ref()
                    .map(|g| g.token_env.clone()),
            )
            .collect();
        let env = verify::command_env(&self.ctx.parent_env, &withheld);
        let results = verify::run_commands(
            tier,
            commands,
            &self.spec.worktree,
            &env,
            &self.result.run_dir,
            self.ctx.config.config.caps.kill_grace.as_duration(),
            &self.redactor,
            self.shutdown.clone(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let ms = elapsed_ms(started);
        self.result.verification.extend(results.iter().map(|r| {
            format!(
                "{} `{}`: {} in {:.1}s",
                r.tier,
                r.name,
                r.status.replace('_', " "),
                r.duration_ms as f64 / 1000.0
            )
        }));
        self.result
            .phases_ms
            .verify_by_tier
            .insert(tier.to_owned(), ms);
        let id = self.id().to_owned();
        let now = now_ms();
        let write = self.ledger.write(|q| {
            for r in &results {
                let log = r.log_path.display().to_string();
                q.insert_verify_result(&VerifyRecord {
                    run_id,
                    task_id: Some(&id),
                    tier: &r.tier,
                    name: &r.name,
                    status: r.status,
                    exit_code: r.exit_code,
                    duration_ms: r.duration_ms,
                    log_path: Some(&log),
                    at_ms: now,
                })?;
            }
            Ok(())
        });
        if let Err(e) = write {
            tracing::warn!("task {id}: could not record verification: {e}");
        }
        Ok(results)
    }
}

fn failure_text(results: &[CommandResult]) -> String {
    results
        .iter()
        .filter(|r| !r.passed())
        .map(|r| {
            format!(
                "Acceptance command {:?} ({}) {} (exit {}):\n{}",
                r.name,
                r.tier,
                r.status.replace('_', " "),
                r.exit_code.map_or("-".to_owned(), |c| c.to_string()),
                r.tail
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Runs one claimed task to a recorded stop. `prepared` was admitted by the claim.
pub async fn run(
    ctx: &JobContext<'_>,
    spec: &JobSpec,
    prepared: PreparedRun<'_>,
    shutdown: watch::Receiver<bool>,
) -> Result<JobResult, RunnerError> {
    let ledger = Ledger::open(&ctx.config.ledger_path())?;
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
    match pipeline(&mut job, prepared).await {
        Ok(()) | Err(PipelineStop::Conflict) => {}
        Err(PipelineStop::Runner(e)) => return Err(e),
    }
    write_artifacts(&job);
    Ok(job.result)
}

enum PipelineStop {
    /// The task changed state under us (an operator acted); nothing more to do.
    Conflict,
    Runner(RunnerError),
}

impl From<LedgerError> for PipelineStop {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::StateConflict { .. } => PipelineStop::Conflict,
            other => PipelineStop::Runner(RunnerError::Ledger(other)),
        }
    }
}

impl From<RunnerError> for PipelineStop {
    fn from(e: RunnerError) -> Self {
        match e {
            RunnerError::Ledger(l) => l.into(),
            other => PipelineStop::Runner(other),
        }
    }
}

async fn pipeline(job: &mut Job<'_>, prepared: PreparedRun<'_>) -> Result<(), PipelineStop> {
    let config = job.ctx.config;
    let repo = &config.repo_root;
    let spec = job.spec;

    // Worktree.
    let started = Instant::now();
    let tree = match worktree::prepare(
        repo,
        &spec.worktree,
        &spec.branch,
        &config.config.project.base_branch,
        spec.start_from.as_deref(),
    ) {
        Ok(tree) => tree,
        Err(e) => {
            let detail = format!("could not create the worktree: {e}");
            prepared.abandon(&mut job.ledger, &detail)?;
            job.result.classification = Some("worker_error".to_owned());
            job.fail_or_retry("worktree_failed", &detail, false, None)?;
            return Ok(());
        }
    };
    job.result.phases_ms.worktree = elapsed_ms(started);
    {
        let (id, branch, base) = (
            job.id().to_owned(),
            tree.branch.clone(),
            tree.base_commit.clone(),
        );
        job.ledger
            .write(|q| q.set_task_branch(&id, &branch, &base))?;
    }

    // Executor. The worktree's HEAD now tells later which commits the worker made; its git
    // metadata must be as oxi left it before oxi runs git there again.
    let start_head = worktree::resolve(&spec.worktree, "HEAD");
    let anchor = attribution::WorktreeAnchor::take(&spec.worktree);
    let started = Instant::now();
    let report = match prepared.run(&mut job.ledger, job.shutdown.clone()).await {
        Ok(report) => report,
        Err(RunnerError::Ledger(e)) => return Err(e.into()),
        Err(e) => {
            // The run never started (its directory could not be written: a full disk); the
            // runner closed its row. The task is retried like any transient failure.
            let detail = format!("the run could not start: {e}");
            job.retire(&format!(
                "oxi: attempt {} could not start its run",
                spec.attempt
            ));
            job.result.classification = Some(Classification::WorkerError.as_str().to_owned());
            job.fail_or_retry("run_not_started", &detail, true, None)?;
            return Ok(());
        }
    };
    job.result.phases_ms.executor = elapsed_ms(started);
    job.result.classification = Some(report.classification.as_str().to_owned());
    job.note_cost(&report);
    if job.stop_if_tampered(&anchor, "worker", TaskState::FrameworkFixNeeded)? {
        return Ok(());
    }
    if report.classification != Classification::Success {
        job.credit(&tree.start_commit);
        let attempt_note = format!(
            "oxi: attempt {} ended {} (not delivered)",
            spec.attempt,
            report.classification.as_str()
        );
        job.retire(&attempt_note);
        let detail = report
            .detail
            .clone()
            .unwrap_or_else(|| report.classification.as_str().to_owned());
        let failure = match &report.last_message {
            Some(message) => format!(
                "The worker's run ended {}: {detail}\nIts last message:\n{message}",
                report.classification.as_str()
            ),
            None => format!(
                "The worker's run ended {}: {detail}",
                report.classification.as_str()
            ),
        };
        if report.classification == Classification::Killed {
            // oxi was stopped, not the task's fault: it goes back to the queue as it was.
            job.move_to(
                TaskState::Queued,
                TransitionFields::default(),
                "oxi was stopped during the run",
                Some(&failure),
            )?;
            return Ok(());
        }
        if report.classification == Classification::AuthFailed {
            // The worker's login, not the task, failed: the runner blocked the worker, and the
            // task waits in the queue for a worker that can run it.
            job.result.detail = Some(detail.clone());
            job.move_to(
                TaskState::Queued,
                TransitionFields {
                    failure_class: Some(report.classification.as_str().to_owned()),
                    ..TransitionFields::default()
                },
                "the worker could not authenticate; it is blocked until `oxi doctor` passes",
                Some(&failure),
            )?;
            return Ok(());
        }
        job.fail_or_retry(
            report.classification.as_str(),
            &failure,
            report.classification.is_retryable(),
            report.retry_after_ms,
        )?;
        return Ok(());
    }

    // Verify.
    job.move_to(
        TaskState::Verifying,
        TransitionFields::default(),
        "worker finished",
        None,
    )?;
    let verify_started = Instant::now();
    let diff = match verify::diff(&spec.worktree, &tree.base_commit) {
        Ok(diff) => diff,
        Err(e) => {
            job.retire("oxi: salvage (diff failed)");
            job.fail_or_retry(
                "verify_error",
                &format!("could not diff the work: {e}"),
                false,
                None,
            )?;
            return Ok(());
        }
    };
    job.result.delivery = Some(ChangeSummary::from(&diff));
    job.credit(&tree.start_commit);
    if diff.files.is_empty() {
        job.retire("oxi: nothing to salvage");
        job.fail_or_retry(
            "no_changes",
            "The previous attempt said it was done but changed no file. Make the change the task asks for.",
            false,
            None,
        )?;
        return Ok(());
    }
    let attribution = match (&job.ctx.main_before, MainSnapshot::take(repo)) {
        (Some(before), Some(after)) => {
            let evidence = Evidence {
                worktree: spec.worktree.clone(),
                own_ref: format!("refs/heads/{}", spec.branch),
                files_named: report.files_changed.clone(),
                diff_paths: diff.paths(),
                commits: Evidence::commits_since(&spec.worktree, start_head.as_deref()),
                confined: report
                    .protection
                    .as_ref()
                    .is_some_and(crate::confine::Protection::is_landlock),
            };
            attribution::attribute(repo, before, &after, &evidence)
        }
        _ => attribution::Attribution::default(),
    };
    if !attribution.unattributed.is_empty() {
        tracing::info!(
            "task {}: the main checkout changed during the run, not by the worker (kept, not held against it): {}",
            job.id(),
            attribution.unattributed.join(", ")
        );
    }
    let governance = match verify::governance(
        &spec.worktree,
        &diff,
        &config.config.governance,
        attribution.worker,
    ) {
        Ok(g) => g,
        Err(e) => {
            job.retire("oxi: salvage (governance check failed)");
            job.fail_or_retry("verify_error", &e.to_string(), false, None)?;
            return Ok(());
        }
    };
    if governance.is_violation() {
        let memo = governance.memo();
        job.event(
            EventKind::GovernanceMemo,
            Some(&job.result.run_id.clone()),
            serde_json::json!({
                "trigger": "governance",
                "memo": memo,
                "outside": governance.outside,
                "protected": governance.protected,
                "main_checkout": governance.main_checkout,
            }),
        );
        job.retire("oxi: governance stop (not delivered; see the memo)");
        job.result.detail = Some(memo.clone());
        job.move_to(
            TaskState::FrameworkFixNeeded,
            TransitionFields {
                failure_class: Some("governance".to_owned()),
                held_reason: Some(memo.clone()),
                ..TransitionFields::default()
            },
            &memo,
            None,
        )?;
        return Ok(());
    }
    let hits = verify::secrets_in_patch(&diff.patch, &job.redactor);
    if !hits.is_empty() {
        let places: Vec<String> = hits
            .iter()
            .map(|h| format!("{}:{}", h.path, h.line))
            .collect();
        let memo = format!(
            "the diff adds a secret or token-shaped string at {}; nothing was committed and the worktree {} is left for a person to inspect",
            places.join(", "),
            spec.worktree.display()
        );
        job.event(
            EventKind::GovernanceMemo,
            Some(&job.result.run_id.clone()),
            serde_json::json!({
                "trigger": "secret_in_diff",
                "memo": memo,
                "places": places,
            }),
        );
        job.result.detail = Some(memo.clone());
        job.move_to(
            TaskState::Failed,
            TransitionFields {
                failure_class: Some("secret_in_diff".to_owned()),
                ..TransitionFields::default()
            },
            &memo,
            None,
        )?;
        return Ok(());
    }

    let run_id = job.result.run_id.clone();
    let recent_green = job
        .ledger
        .read()
        .last_runs_green(config.config.critic.tier0_fast_after)
        .unwrap_or(false);
    let mut results = match job
        .acceptance("tier0", &config.config.verify.tier0, &run_id)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            job.retire("oxi: salvage (verification could not run)");
            job.fail_or_retry("verify_error", &e, false, None)?;
            return Ok(());
        }
    };
    let tier0_fast = critic::tier0_fast(&config.config.critic, recent_green, &diff);
    let tier1_skip = match (&tier0_fast, config.config.verify.tier1_time_box) {
        (Some(reason), _) => Some(reason.clone()),
        (None, Some(time_box)) => {
            let total: std::time::Duration = config
                .config
                .verify
                .tier1
                .iter()
                .map(|c| c.timeout.as_duration())
                .sum();
            (total > time_box.as_duration()).then(|| {
                format!(
                    "tier1 skipped: its timeouts add up to {} > verify.tier1_time_box ({time_box})",
                    humantime::format_duration(total)
                )
            })
        }
        (None, None) => None,
    };
    if results.iter().all(CommandResult::passed) && tier1_skip.is_none() {
        match job
            .acceptance("tier1", &config.config.verify.tier1, &run_id)
            .await
        {
            Ok(more) => results.extend(more),
            Err(e) => results.push(CommandResult {
                tier: "tier1".into(),
                name: "(tier1)".into(),
                status: "error",
                exit_code: None,
                duration_ms: 0,
                log_path: PathBuf::new(),
                tail: e,
            }),
        }
    }
    let green = results.iter().all(CommandResult::passed);
    job.event(
        EventKind::Verified,
        Some(&run_id),
        serde_json::json!({
            "green": green,
            "results": results,
            "tier1_skipped": tier1_skip,
            // This run's own change; `delivery` is what the branch holds against the base.
            "files": job.result.files_changed,
            "lines_added": job.result.lines_added,
            "lines_removed": job.result.lines_removed,
            "paths": job.result.paths,
            "delivery": job.result.delivery,
            "protection": report.protection,
            "main_checkout_unattributed": attribution.unattributed,
        }),
    );
    if !green {
        job.retire(&format!(
            "oxi: attempt {} (verification failed; not delivered)",
            spec.attempt
        ));
        job.fail_or_retry("verify_failed", &failure_text(&results), false, None)?;
        return Ok(());
    }

    job.result.phases_ms.verify = elapsed_ms(verify_started);
    // Commit the verified work on the task branch (trailers say where it came from): one
    // commit of oxi's, holding also what earlier attempts left undelivered.
    let commit_started = Instant::now();
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
    let commit = match worktree::commit_delivery(&spec.worktree, &tree.base_commit, &message) {
        Ok(commit) => Some(commit),
        Err(e) => {
            job.fail_or_retry(
                "deliver_failed",
                &format!("could not commit: {e}"),
                false,
                None,
            )?;
            return Ok(());
        }
    };
    job.result.commit = commit.clone();
    job.result.phases_ms.commit = elapsed_ms(commit_started);

    if !governance.needs_approval.is_empty() {
        let memo = governance.memo();
        job.event(
            EventKind::GovernanceMemo,
            Some(&run_id),
            serde_json::json!({
                "trigger": "needs_approval",
                "memo": memo,
                "paths": governance.needs_approval,
                "commit": commit,
            }),
        );
        job.retire("oxi: salvage");
        job.move_to(
            TaskState::Held,
            TransitionFields {
                held_reason: Some(format!(
                    "{memo}; verified and committed on {}; `oxi approve {}` delivers it",
                    spec.branch, spec.task.spec.id
                )),
                ..TransitionFields::default()
            },
            "needs approval",
            None,
        )?;
        return Ok(());
    }

    // Critic.
    job.move_to(
        TaskState::Reviewing,
        TransitionFields::default(),
        "verified",
        None,
    )?;
    let started = Instant::now();
    let gate = critic::gate(
        &config.config.critic,
        &diff,
        green,
        &spec.task.spec.file_hints,
    );
    let approved = match &gate {
        Gate::AutoApprove {
            review_skipped_reason,
        } => {
            job.result.review = Some(review_skipped_reason.clone());
            job.event(
                EventKind::ReviewDecided,
                Some(&run_id),
                serde_json::json!({
                    "decision": "auto_approve",
                    "review_skipped_reason": review_skipped_reason,
                    "tier0_fast": tier0_fast,
                }),
            );
            true
        }
        Gate::Review { reasons } => review(job, &diff, &results, reasons).await?,
    };
    job.result.phases_ms.review = elapsed_ms(started);
    if !approved {
        return Ok(());
    }

    // tier2, at the end only.
    if !config.config.verify.tier2.is_empty() {
        let tier2 = job
            .acceptance("tier2", &config.config.verify.tier2, &run_id)
            .await;
        let tier2 = tier2.unwrap_or_else(|e| {
            vec![CommandResult {
                tier: "tier2".into(),
                name: "(tier2)".into(),
                status: "error",
                exit_code: None,
                duration_ms: 0,
                log_path: PathBuf::new(),
                tail: e,
            }]
        });
        if !tier2.iter().all(CommandResult::passed) {
            job.retire("oxi: salvage");
            job.fail_or_retry("verify_failed", &failure_text(&tier2), false, None)?;
            return Ok(());
        }
    }

    // Deliver. The commit is on the branch; fast mode stops there, release mode leaves the
    // push and the pull request to the tick's deliver stage (which also resumes it later).
    let started = Instant::now();
    if let Err(e) = worktree::remove_clean(repo, &spec.worktree) {
        tracing::warn!("task {}: {e}", spec.task.spec.id);
        job.retire("oxi: salvage");
    }
    if config.config.run.mode == crate::config::RunMode::Release {
        job.move_to(
            TaskState::DeliverPending,
            TransitionFields::default(),
            "verified and approved; push and pull request next",
            None,
        )?;
        let id = job.id().to_owned();
        job.ledger.write(|q| q.set_task_failure(&id, None))?;
        job.result.phases_ms.deliver = elapsed_ms(started);
        return Ok(());
    }
    job.move_to(
        TaskState::Delivered,
        TransitionFields::default(),
        "delivered locally (fast mode)",
        None,
    )?;
    job.event(
        EventKind::Delivered,
        Some(&run_id),
        serde_json::json!({
            "mode": "fast",
            "branch": spec.branch,
            "commit": job.result.commit,
            "files": diff.files.len(),
            "lines_added": diff.lines_added,
            "lines_removed": diff.lines_removed,
            "review": job.result.review,
            "cost_microusd": job.cost,
        }),
    );
    {
        let id = job.id().to_owned();
        job.ledger.write(|q| q.set_task_failure(&id, None))?;
    }
    job.result.phases_ms.deliver = elapsed_ms(started);
    Ok(())
}

/// Runs the reviewer role on the committed work. True when it approved.
async fn review(
    job: &mut Job<'_>,
    diff: &Diff,
    results: &[CommandResult],
    reasons: &[String],
) -> Result<bool, PipelineStop> {
    let config = job.ctx.config;
    let spec = job.spec;
    let Some(reviewer) = config.config.routing.reviewer.0.first().cloned() else {
        job.move_to(
            TaskState::Held,
            TransitionFields {
                held_reason: Some(format!(
                    "needs review ({}) but routing.reviewer is empty; review branch {} and `oxi approve {}`",
                    reasons.join("; "),
                    spec.branch,
                    spec.task.spec.id
                )),
                ..TransitionFields::default()
            },
            "no reviewer configured",
            None,
        )?;
        return Ok(false);
    };
    let verification: Vec<String> = results
        .iter()
        .map(|r| {
            format!(
                "{} `{}`: {} in {} ms",
                r.tier, r.name, r.status, r.duration_ms
            )
        })
        .collect();
    let text = prompt::reviewer(&ReviewerPrompt {
        id: &spec.task.spec.id,
        title: &spec.task.spec.title,
        brief: &spec.task.spec.body,
        attempt: spec.attempt,
        max_attempts: config.config.caps.max_attempts,
        files: diff.files.len(),
        lines_added: diff.lines_added,
        lines_removed: diff.lines_removed,
        patch: prompt::clip_head(&diff.patch, prompt::PATCH_CLIP),
        verification,
    })
    .map_err(|e| PipelineStop::Runner(RunnerError::Prompt(e.to_string())))?;
    let worktree = spec.worktree.display().to_string();
    let request = RunRequest {
        worker_name: &reviewer,
        prompt: &text,
        cwd: &spec.worktree,
        role: "reviewer",
        task_id: Some(&spec.task.spec.id),
        attempt: spec.attempt,
        worktree: Some(&worktree),
        branch: Some(&spec.branch),
        actor: job.ctx.actor,
        parent_env: job.ctx.parent_env.clone(),
        live: None,
        track_files: false,
        run_id: None,
    };
    let prepared = runner::prepare(config, request)?;
    if let Some(warning) = prepared.unpriced_warning() {
        tracing::warn!("task {}: review: {warning}", spec.task.spec.id);
    }
    let floor = usd_to_micro(config.config.caps.estimate_floor_usd);
    let estimate = job
        .ledger
        .read()
        .cost_p90(
            &reviewer,
            "reviewer",
            usd_to_micro(config.config.caps.job_usd),
        )?
        .unwrap_or(floor)
        .max(floor);
    match admit_review(job, &prepared, estimate).await? {
        ReviewRoom::Admitted => {}
        ReviewRoom::CapReached(refusal) => {
            job.retire("oxi: salvage");
            job.move_to(
                TaskState::RetryWait,
                TransitionFields {
                    failure_class: Some("budget_refused".to_owned()),
                    retry_at_ms: Some(now_ms() + 3_600_000),
                    ..TransitionFields::default()
                },
                &format!("review refused: {refusal}"),
                None,
            )?;
            return Ok(false);
        }
        ReviewRoom::NotFreed { refusal, why } => {
            // The verified work is committed on the branch: held for a person rather than
            // queued, whose next attempt would run (and pay) the executor again.
            job.retire("oxi: salvage");
            job.move_to(
                TaskState::Held,
                TransitionFields {
                    held_reason: Some(format!(
                        "verified and committed on {}; its review waited for budget room held by runs in flight until {why} ({refusal}); review branch {} and `oxi approve {}` delivers it without the reviewer, or `oxi retry {}` runs the task again",
                        spec.branch, spec.branch, spec.task.spec.id, spec.task.spec.id
                    )),
                    ..TransitionFields::default()
                },
                "review waited for budget room",
                None,
            )?;
            return Ok(false);
        }
    }
    let anchor = attribution::WorktreeAnchor::take(&spec.worktree);
    let report = prepared.run(&mut job.ledger, job.shutdown.clone()).await?;
    job.note_cost(&report);
    // (A reviewing task cannot go to framework_fix_needed; it fails with the memo.)
    if job.stop_if_tampered(&anchor, "reviewer", TaskState::Failed)? {
        return Ok(false);
    }
    if worktree::is_dirty(&spec.worktree).unwrap_or(false) {
        // The reviewer is read-only by contract; whatever it changed is not the executor's work.
        let _ = worktree::discard_changes(&spec.worktree);
        tracing::warn!(
            "task {}: the reviewer edited files; discarded",
            spec.task.spec.id
        );
    }
    if report.classification != Classification::Success {
        job.retire("oxi: salvage");
        let detail = report.detail.clone().unwrap_or_default();
        if report.classification.is_retryable() {
            job.fail_or_retry(
                report.classification.as_str(),
                &format!(
                    "the review run ended {}: {detail}",
                    report.classification.as_str()
                ),
                true,
                report.retry_after_ms,
            )?;
        } else {
            job.move_to(
                TaskState::Held,
                TransitionFields {
                    held_reason: Some(format!(
                        "the review run ended {}: {detail}; review branch {} and `oxi approve {}`",
                        report.classification.as_str(),
                        spec.branch,
                        spec.task.spec.id
                    )),
                    ..TransitionFields::default()
                },
                "review failed",
                None,
            )?;
        }
        return Ok(false);
    }
    let text = report.last_message.clone().unwrap_or_default();
    let verdict = critic::parse_review(&text);
    job.event(
        EventKind::ReviewDecided,
        Some(&report.run_id),
        serde_json::json!({
            "decision": verdict.as_ref().map(|v| v.verdict),
            "reviewer": reviewer,
            "review": verdict,
            "reasons_for_review": reasons,
        }),
    );
    let Some(verdict) = verdict else {
        job.retire("oxi: salvage");
        job.move_to(
            TaskState::Held,
            TransitionFields {
                held_reason: Some(format!(
                    "the reviewer gave no OXI_REVIEW verdict (run {}); review branch {} and `oxi approve {}`",
                    report.run_id, spec.branch, spec.task.spec.id
                )),
                ..TransitionFields::default()
            },
            "no verdict",
            None,
        )?;
        return Ok(false);
    };
    let comments = if verdict.comments.is_empty() {
        "(no comments)".to_owned()
    } else {
        verdict
            .comments
            .iter()
            .map(|c| format!("- {c}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    match verdict.verdict {
        Verdict::Approve => {
            job.result.review = Some(format!("approved by {reviewer}"));
            Ok(true)
        }
        Verdict::RequestChanges => {
            job.result.review = Some(format!("changes requested by {reviewer}"));
            job.retire("oxi: salvage");
            job.fail_or_retry(
                "changes_requested",
                &format!("The reviewer requested changes:\n{comments}"),
                false,
                None,
            )?;
            Ok(false)
        }
        Verdict::Reject => {
            job.result.review = Some(format!("rejected by {reviewer}"));
            job.retire("oxi: salvage");
            job.result.detail = Some(format!("rejected by the reviewer:\n{comments}"));
            job.move_to(
                TaskState::Failed,
                TransitionFields {
                    failure_class: Some("critic_rejected".to_owned()),
                    ..TransitionFields::default()
                },
                &format!("the reviewer rejected it: {comments}"),
                Some(&comments),
            )?;
            Ok(false)
        }
    }
}

/// How often a review waiting for budget room looks again.
const REVIEW_ROOM_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// How the reviewer's admission ended.
enum ReviewRoom {
    Admitted,
    /// Spent + the estimate crosses a cap: no run settling can make room.
    CapReached(crate::budget::Refusal),
    /// The room was held by runs in flight and did not free up: oxi is stopping, or the runs
    /// holding it are no longer live (their reservations wait for the reaper).
    NotFreed {
        refusal: crate::budget::Refusal,
        why: &'static str,
    },
}

/// Admits the reviewer run. A refusal only because runs in flight hold the room waits for them
/// to settle (they end by their deadlines) instead of giving up the verified work: it re-reads
/// the totals every second, without writing, and tries again once the estimate fits. The
/// refusal is recorded once.
async fn admit_review(
    job: &mut Job<'_>,
    prepared: &PreparedRun<'_>,
    estimate: MicroUsd,
) -> Result<ReviewRoom, PipelineStop> {
    let id = job.id().to_owned();
    let mut said = false;
    loop {
        let now = now_ms();
        let refusal = match prepared
            .admit_with(&mut job.ledger, estimate, |q| q.count_worker_call(&id, now))
        {
            Ok(()) => return Ok(ReviewRoom::Admitted),
            Err(RunnerError::Budget(refusal)) => refusal,
            Err(e) => return Err(e.into()),
        };
        if !refusal.waits_for_runs_in_flight() {
            return Ok(ReviewRoom::CapReached(refusal));
        }
        if !said {
            tracing::info!("task {id}: the review waits for budget room: {refusal}");
            said = true;
        }
        loop {
            if *job.shutdown.borrow() {
                return Ok(ReviewRoom::NotFreed {
                    refusal,
                    why: "oxi was stopped",
                });
            }
            let now = now_ms();
            let live = job
                .ledger
                .read()
                .running_runs()?
                .iter()
                .any(|r| r.lease_expires_at_ms.is_none_or(|at| at > now));
            if !live {
                return Ok(ReviewRoom::NotFreed {
                    refusal,
                    why: "no run holding it was live any more",
                });
            }
            let mut shutdown = job.shutdown.clone();
            tokio::select! {
                () = tokio::time::sleep(REVIEW_ROOM_RECHECK) => {}
                Ok(()) = shutdown.changed() => {}
            }
            let now = now_ms();
            let totals = job
                .ledger
                .read()
                .spend_totals(&crate::clock::day_of(now), &crate::clock::month_of(now))?;
            match crate::budget::admit(&totals, estimate, &prepared.caps) {
                Err(again) if again.waits_for_runs_in_flight() => {}
                // It fits, or it never will: the admission decides (and records a refusal).
                _ => break,
            }
        }
    }
}

/// `state.json` and `summary.md` beside the executor run's transcript.
fn write_artifacts(job: &Job<'_>) {
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

/// The worktree path for an attempt.
pub fn worktree_path(state_dir: &Path, task_id: &str, attempt: u32) -> PathBuf {
    let id = worktree::slug(task_id, 24);
    state_dir.join("worktrees").join(format!("{id}-a{attempt}"))
}

/// Runs one admitted job to its end on the current thread (its own small runtime: git and
/// acceptance commands block).
pub fn start_job(
    ctx: &JobContext<'_>,
    spec: &JobSpec,
    run_id: &str,
    shutdown: watch::Receiver<bool>,
) -> Result<JobResult, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let worktree = spec.worktree.display().to_string();
    let request = spec.executor_request(
        &worktree,
        ctx.actor,
        ctx.parent_env.clone(),
        Some(run_id.to_owned()),
    );
    let prepared = runner::prepare(ctx.config, request)
        .map_err(|e| format!("task {}: {e}", spec.task.spec.id))?;
    if let Some(warning) = prepared.unpriced_warning() {
        tracing::warn!("task {}: {warning}", spec.task.spec.id);
    }
    runtime
        .block_on(run(ctx, spec, prepared, shutdown))
        .map_err(|e| format!("task {}: {e}", spec.task.spec.id))
}
