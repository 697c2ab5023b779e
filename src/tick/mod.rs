//! `oxi tick`: one bounded pass of reap → ingest → plan → claim → dispatch → verify → critic →
//! deliver, waiting for the runs it started, then exit. One tick at a time (a file lock);
//! the killswitch stops new claims; every cap is enforced in-process.

pub mod landed;
pub mod lock;
pub mod reap;

use std::collections::BTreeSet;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::watch;

use crate::clock::now_ms;
use crate::config::{LoadedConfig, RunMode};
use crate::ledger::events::{BudgetBreach, TickCompleted};
use crate::ledger::{
    ApprovalKind, Event, FailureClass, HoldKind, Ledger, LedgerError, NewEvent, TaskRow, TaskState,
    Transition, TransitionFields,
};
use crate::money::{format_usd, usd_to_micro};
use crate::pipeline::deliver::{ReleaseStop, release_stage};
use crate::pipeline::worktree::stacked_start;
use crate::pipeline::{self as job, JobContext, JobError, JobResult, JobSpec, start_job};
use crate::prompt::{self, ExecutorPrompt};
use crate::roadmap::{self, ingest::IngestSummary};
use crate::runner::{self, RunnerError};
use crate::worker::WorkerRole;
use reap::Reaped;

#[derive(Debug, thiserror::Error)]
pub enum TickError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Runner(#[from] RunnerError),
    #[error(transparent)]
    Roadmap(#[from] roadmap::RoadmapError),
    #[error("{0}")]
    Prompt(String),
}

/// What one pass did, printed by `oxi tick`.
#[derive(Debug, Clone, Serialize)]
pub struct TickReport {
    /// `nothing_to_do`, `dispatched`, `failures`, `budget`, `budget_held_by_runs_in_flight`,
    /// `paused`, `blocked`.
    pub outcome: &'static str,
    pub mode: RunMode,
    pub reaped: Vec<Reaped>,
    pub ingest: Option<IngestSummary>,
    /// Fast mode: delivered branches found merged into the base branch (now `done`).
    pub landed: Vec<landed::Landed>,
    pub delivered_approved: Vec<String>,
    pub failed_at_claim: Vec<ClaimStop>,
    pub held_at_claim: Vec<ClaimStop>,
    pub deferred: Vec<ClaimStop>,
    /// Why admission refused the next claim (printed as its message).
    #[serde(serialize_with = "as_message")]
    pub budget_refusal: Option<crate::budget::Refusal>,
    pub paused: bool,
    pub blocked: Vec<String>,
    pub jobs: Vec<JobResult>,
    /// Jobs oxi itself could not carry to a recorded stop (the ledger failed under them): their
    /// task stays in flight and the next tick's reaper recovers it.
    pub job_errors: Vec<String>,
    /// Release mode: pushes, pull requests, syncs, merges, follow-ups.
    pub release: Vec<crate::pipeline::deliver::release::ReleaseAction>,
    /// Release mode: why GitHub could not be used this pass (the next tick retries).
    pub github_unavailable: Option<String>,
    pub phases_ms: TickPhases,
}

/// A refusal as the message a person reads (what `--format json` has always printed).
fn as_message<S: serde::Serializer>(
    refusal: &Option<crate::budget::Refusal>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match refusal {
        Some(refusal) => serializer.collect_str(refusal),
        None => serializer.serialize_none(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ClaimStop {
    pub task_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TickPhases {
    pub reap: u64,
    pub ingest: u64,
    pub claim: u64,
    pub jobs: u64,
    pub total: u64,
}

impl TickReport {
    pub fn empty(mode: RunMode) -> Self {
        Self {
            outcome: "nothing_to_do",
            mode,
            reaped: Vec::new(),
            ingest: None,
            landed: Vec::new(),
            delivered_approved: Vec::new(),
            failed_at_claim: Vec::new(),
            held_at_claim: Vec::new(),
            deferred: Vec::new(),
            budget_refusal: None,
            paused: false,
            blocked: Vec::new(),
            jobs: Vec::new(),
            job_errors: Vec::new(),
            release: Vec::new(),
            github_unavailable: None,
            phases_ms: TickPhases::default(),
        }
    }
}

/// Problems that make dispatch pointless; the tick refuses to claim while any is present.
pub fn blocking_problems(config: &LoadedConfig, parent_env: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let repo = &config.repo_root;
    if !repo.join(".git").exists() && crate::git::toplevel(repo).is_none() {
        problems.push(format!(
            "{} is not a git repository; oxi works in git worktrees (git init, or fix project.root)",
            repo.display()
        ));
        return problems;
    }
    let base = &config.config.project.base_branch;
    if crate::pipeline::worktree::resolve(repo, base).is_none() {
        problems.push(format!(
            "base branch {base:?} does not exist; create it or set project.base_branch in {}",
            config.display_path()
        ));
    }
    let path_var = parent_env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let executors = &config.config.routing.executor.0;
    let found = executors.iter().any(|name| {
        config.config.workers.get(name).is_some_and(|w| {
            w.command.first().is_some_and(|program| {
                runner::contract::resolve_binary(program, path_var, repo).is_some()
            })
        })
    });
    if !found {
        problems.push(format!(
            "no executor worker can start: none of {} has its command on PATH; install the CLI or fix workers.<name>.command (`oxi workers` shows each)",
            executors.join(", ")
        ));
    }
    for (tier, commands) in [
        ("tier0", &config.config.verify.tier0),
        ("tier1", &config.config.verify.tier1),
        ("tier2", &config.config.verify.tier2),
    ] {
        for command in commands {
            if let Some(program) = command.argv.first()
                && runner::contract::resolve_binary(program, path_var, repo).is_none()
            {
                problems.push(format!(
                    "acceptance command {:?} (verify.{tier}) cannot run: {program:?} is not found",
                    command.name
                ));
            }
        }
    }
    problems
}

/// The hold reasons when every executor in `routing.executor` is blocked (its CLI could not
/// authenticate; see [`crate::ledger::WorkerBlock`]); empty while any executor can run.
pub fn blocked_executors(
    config: &LoadedConfig,
    ledger: &Ledger,
) -> Result<Vec<String>, LedgerError> {
    let blocks = ledger.read().worker_blocks()?;
    let chain = &config.config.routing.executor.0;
    let all_blocked =
        !chain.is_empty() && chain.iter().all(|w| blocks.iter().any(|b| &b.worker == w));
    Ok(if all_blocked {
        blocks
            .iter()
            .filter(|b| chain.contains(&b.worker))
            .map(crate::ledger::WorkerBlock::reason)
            .collect()
    } else {
        Vec::new()
    })
}

/// Ingests the roadmap when it changed since the last ingest (same bytes: nothing to do, and
/// no write, so a no-op tick costs no fsync).
pub(crate) fn ingest(
    ledger: &mut Ledger,
    config: &LoadedConfig,
    parent_env: &[(String, String)],
) -> Result<Option<IngestSummary>, TickError> {
    let file = roadmap::ingest::RoadmapFile::read(&config.roadmap_path(), &config.repo_root)?;
    if ledger
        .read()
        .kv_get(roadmap::ingest::ROADMAP_HASH_KEY)?
        .as_deref()
        == Some(file.sha256.as_str())
    {
        return Ok(None);
    }
    let mut parsed = file.parse(config.config.project.default_priority_tier)?;
    parsed.mask(&runner::env::redactor_for(config, parent_env));
    Ok(Some(roadmap::ingest::apply(
        ledger,
        &parsed,
        &file.label,
        &file.sha256,
        now_ms(),
    )?))
}

/// The worker for a task's next attempt: the first in the role's chain, moving past workers
/// whose last run for this task was rate-limited, transient or could not start (seed 004 T2-39).
pub fn choose_worker(chain: &[String], last_runs: &[crate::ledger::RunRow]) -> Option<String> {
    let last = last_runs
        .iter()
        .rev()
        .find(|r| r.role == WorkerRole::Executor);
    let skip = last.and_then(|run| {
        let class = run.classification.as_deref()?;
        ["rate_limited", "transient", "spawn_failed"]
            .contains(&class)
            .then(|| run.worker.clone())
    });
    match skip {
        Some(worker) if chain.len() > 1 => {
            let at = chain.iter().position(|w| *w == worker).unwrap_or(0);
            chain.get((at + 1) % chain.len()).cloned()
        }
        _ => chain.first().cloned(),
    }
}

/// Two path sets overlap when a path equals, contains or is contained by another, or a glob
/// of one matches a path of the other.
pub fn overlaps(a: &[String], b: &BTreeSet<String>) -> Option<String> {
    for x in a {
        for y in b {
            let (x_, y_) = (x.trim_end_matches('/'), y.trim_end_matches('/'));
            if x_ == y_
                || x_.starts_with(&format!("{y_}/"))
                || y_.starts_with(&format!("{x_}/"))
                || crate::pipeline::review::within_hints(x_, std::slice::from_ref(y))
                || crate::pipeline::review::within_hints(y_, std::slice::from_ref(x))
            {
                return Some(format!("{x} overlaps {y}"));
            }
        }
    }
    None
}

fn operator_approved_over_estimate(ledger: &Ledger, task_id: &str) -> bool {
    ledger
        .read()
        .approvals_for(task_id)
        .map(|a| {
            a.iter()
                .any(|a| a.kind == Some(ApprovalKind::OverEstimate) && a.used_by_run.is_none())
        })
        .unwrap_or(false)
}

/// One pass. The caller holds the tick lock.
pub async fn pass(
    config: &LoadedConfig,
    ledger: &mut Ledger,
    parent_env: Vec<(String, String)>,
    actor: &str,
    shutdown: watch::Receiver<bool>,
) -> Result<TickReport, TickError> {
    let started = Instant::now();
    let mut report = TickReport::empty(config.config.run.mode);

    let t = Instant::now();
    report.reaped = reap::reap(ledger, config, &[]).await?;
    report.phases_ms.reap = t.elapsed().as_millis() as u64;

    let t = Instant::now();
    report.ingest = ingest(ledger, config, &parent_env)?;
    report.phases_ms.ingest = t.elapsed().as_millis() as u64;

    // Delivered branches the operator merged: their dependents may start in this pass.
    report.landed = landed::settle(config, ledger)?;

    // Tasks an operator approved after a hold: their work is committed on their branch.
    if config.config.run.mode == RunMode::Fast {
        report.delivered_approved = crate::pipeline::deliver::deliver_approved(ledger)?;
    }

    // Release mode: GitHub, checked up front (a bad token blocks the pass), then resume
    // deliveries and follow every open pull request before claiming anything new.
    let release_mode = config.release_mode();
    let mut github: Option<(crate::github::GithubClient, String)> = None;
    if release_mode.is_some() {
        match github_preflight(config, &parent_env).await {
            Ok(ready) => github = Some(ready),
            Err(e) if e.is_transient() => report.github_unavailable = Some(e.to_string()),
            Err(e) => {
                report.blocked.push(e.to_string());
                report.outcome = "blocked";
                report.phases_ms.total = started.elapsed().as_millis() as u64;
                return Ok(report);
            }
        }
    }
    let writer = github
        .as_ref()
        .zip(release_mode)
        .map(|((client, _), proof)| crate::github::GithubWriter::new(client, proof));
    let redactor = runner::env::redactor_for(config, &parent_env);
    if let (Some((client, token)), Some(writer)) = (&github, &writer) {
        match release_stage(config, ledger, client, writer, token, &redactor, true).await {
            Ok(actions) => report.release.extend(actions),
            Err(ReleaseStop::Blocked(e)) => {
                report.blocked.push(e.to_string());
                report.outcome = "blocked";
                report.phases_ms.total = started.elapsed().as_millis() as u64;
                return Ok(report);
            }
            Err(ReleaseStop::Ledger(e)) => return Err(e.into()),
        }
    }

    let tasks = ledger.read().tasks()?;
    let now = now_ms();
    let planned = crate::plan::plan_with(&tasks, now, config.stacks_on_delivered());
    if !planned.iter().any(crate::plan::PlannedTask::is_eligible) {
        // Nothing to claim: no checks, no writes beyond what reaping needed.
        report.phases_ms.total = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    report.blocked = blocking_problems(config, &parent_env);
    report.blocked.extend(blocked_executors(config, ledger)?);
    if !report.blocked.is_empty() {
        report.outcome = "blocked";
        report.phases_ms.total = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    if ledger.read().killswitch()?.is_some_and(|k| k.paused) {
        report.paused = true;
        report.outcome = "paused";
        report.phases_ms.total = started.elapsed().as_millis() as u64;
        return Ok(report);
    }

    // Plan and claim.
    let t = Instant::now();
    let admitted = claim(
        config,
        ledger,
        &parent_env,
        actor,
        None,
        github.as_ref().map(|(client, _)| client),
        &mut report,
        &tasks,
        planned,
    )
    .await?;
    report.phases_ms.claim = t.elapsed().as_millis() as u64;

    // Dispatch: each job in its own thread (git and acceptance commands block), all awaited.
    let t = Instant::now();
    let ctx = JobContext {
        config,
        parent_env: parent_env.clone(),
        actor,
        // Only worth two git calls when something will run.
        main_before: if admitted.is_empty() {
            None
        } else {
            crate::pipeline::attribution::MainSnapshot::take(&config.repo_root)
        },
    };
    let results: Vec<Result<JobResult, JobError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = admitted
            .into_iter()
            .map(|(spec, run_id)| {
                let ctx = &ctx;
                let shutdown = shutdown.clone();
                scope.spawn(move || start_job(ctx, &spec, &run_id, shutdown))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(JobError::Panicked)))
            .collect()
    });
    report.phases_ms.jobs = t.elapsed().as_millis() as u64;
    for result in results {
        match result {
            Ok(job) => report.jobs.push(job),
            Err(e) => {
                tracing::error!("{e}");
                report.job_errors.push(e.to_string());
            }
        }
    }

    // Release mode: push and open pull requests for what this pass verified.
    if let (Some((client, token)), Some(writer)) = (&github, &writer) {
        match release_stage(config, ledger, client, writer, token, &redactor, false).await {
            Ok(actions) => {
                for action in &actions {
                    if action.action == "pr_opened"
                        && let Some(job) =
                            report.jobs.iter_mut().find(|j| j.task_id == action.task_id)
                    {
                        job.state = TaskState::Delivered;
                    }
                }
                report.release.extend(actions);
            }
            Err(ReleaseStop::Blocked(e)) => report.blocked.push(e.to_string()),
            Err(ReleaseStop::Ledger(e)) => return Err(e.into()),
        }
    }
    record_period_breach(ledger, config)?;
    report.outcome = if report
        .jobs
        .iter()
        .any(|j| matches!(j.state, TaskState::Failed | TaskState::FrameworkFixNeeded))
        || !report.failed_at_claim.is_empty()
        || !report.job_errors.is_empty()
    {
        "failures"
    } else if !report.jobs.is_empty() {
        "dispatched"
    } else if let Some(refusal) = &report.budget_refusal {
        budget_outcome(refusal)
    } else {
        "nothing_to_do"
    };
    report.phases_ms.total = started.elapsed().as_millis() as u64;
    let summary = TickCompleted {
        outcome: report.outcome.to_owned(),
        claimed: report.jobs.iter().map(|j| j.task_id.clone()).collect(),
        reaped: report.reaped.len(),
        budget_refusal: report.budget_refusal.as_ref().map(ToString::to_string),
        ms: report.phases_ms.total,
    };
    let something_happened = report.outcome != "nothing_to_do"
        || !report.reaped.is_empty()
        || !report.deferred.is_empty()
        || !report.held_at_claim.is_empty();
    if !something_happened {
        return Ok(report);
    }
    ledger.write(|q| {
        q.append_event(&NewEvent {
            at_ms: now_ms(),
            task_id: None,
            run_id: None,
            actor: "oxi",
            event: Event::TickCompleted(summary),
        })
        .map(|_| ())
    })?;
    Ok(report)
}

/// Claims up to `slots` tasks (default: `run.max_parallel_jobs` minus runs already live):
/// iteration caps, the PR-overlap and file-overlap gates, the estimate, then admission, the
/// claim and the run row in one transaction each. Stops go into `report`; returns each claimed
/// task with the id of its admitted run.
#[allow(clippy::too_many_arguments)]
pub async fn claim(
    config: &LoadedConfig,
    ledger: &mut Ledger,
    parent_env: &[(String, String)],
    actor: &str,
    slots: Option<u32>,
    github: Option<&crate::github::GithubClient>,
    report: &mut TickReport,
    tasks: &[TaskRow],
    planned: Vec<crate::plan::PlannedTask>,
) -> Result<Vec<(JobSpec, String)>, TickError> {
    let now = now_ms();
    let caps = &config.config.caps;
    let job_cap = usd_to_micro(caps.job_usd);
    let floor = usd_to_micro(caps.estimate_floor_usd);
    let live_runs = ledger.read().running_runs()?.len() as u32;
    // A tick fills `max_parallel_jobs` minus what is already running; a caller that tracks its
    // own slots (saturate) says exactly how many to claim.
    let slots = slots.unwrap_or_else(|| {
        config
            .config
            .run
            .max_parallel_jobs
            .saturating_sub(live_runs)
    });
    let by_id: std::collections::HashMap<&str, &TaskRow> =
        tasks.iter().map(|t| (t.spec.id.as_str(), t)).collect();
    let mut in_flight_files: BTreeSet<String> = BTreeSet::new();
    for task in tasks.iter().filter(|t| t.state.is_in_flight()) {
        in_flight_files.extend(task.spec.file_hints.iter().cloned());
    }
    // The PR-overlap gate (seed 004 T0-104): files that open oxi pull requests touch. When
    // GitHub cannot be asked the gate fails closed unless github.overlap_unknown = "allow".
    let open_pulls: Result<Vec<(u64, String, BTreeSet<String>)>, String> = match github {
        Some(client) => crate::pipeline::deliver::release::open_oxi_pulls(config, client)
            .await
            .map_err(|e| e.to_string()),
        None if config.release_mode().is_some() => Err(report
            .github_unavailable
            .clone()
            .unwrap_or_else(|| "GitHub is not reachable".to_owned())),
        None => Ok(Vec::new()),
    };
    let overlap_policy = config
        .config
        .github
        .as_ref()
        .map(|g| g.overlap_unknown)
        .unwrap_or_default();
    // Blocked workers (their CLI could not authenticate) get no new runs.
    let blocked: Vec<String> = ledger
        .read()
        .worker_blocks()?
        .into_iter()
        .map(|b| b.worker)
        .collect();
    let executors: Vec<String> = config
        .config
        .routing
        .executor
        .0
        .iter()
        .filter(|w| !blocked.contains(w))
        .cloned()
        .collect();
    let mut specs: Vec<JobSpec> = Vec::new();
    for planned in planned {
        if specs.len() as u32 >= slots {
            break;
        }
        if !planned.is_eligible() {
            continue;
        }
        let Some(task) = by_id.get(planned.id.as_str()).copied() else {
            continue;
        };
        let id = task.spec.id.clone();
        if task.attempts >= caps.max_attempts || task.worker_calls >= caps.max_worker_calls {
            let reason = format!(
                "attempts_exhausted: {} attempts (caps.max_attempts {}), {} worker calls (caps.max_worker_calls {})",
                task.attempts, caps.max_attempts, task.worker_calls, caps.max_worker_calls
            );
            ledger.write(|q| {
                q.transition_task(
                    &id,
                    &Transition {
                        from: task.state,
                        to: TaskState::Failed,
                        fields: TransitionFields {
                            failure_class: Some(FailureClass::AttemptsExhausted),
                            ..TransitionFields::default()
                        },
                        actor: "oxi",
                        reason: &reason,
                    },
                    now,
                )
            })?;
            report.failed_at_claim.push(ClaimStop {
                task_id: id,
                reason,
            });
            continue;
        }
        let pr_overlap = match &open_pulls {
            Ok(pulls) if !pulls.is_empty() => {
                // The task's declared files and what its last attempt actually changed.
                let mut files = task.spec.file_hints.clone();
                files.extend(ledger.read().last_attempt_paths(&id)?);
                pulls
                    .iter()
                    .filter(|(_, head, _)| Some(head) != task.branch.as_ref())
                    .find_map(|(number, _, pr_files)| {
                        overlaps(&files, pr_files)
                            .map(|why| format!("open pull request #{number}: {why}"))
                    })
            }
            Ok(_) => None,
            Err(e) if overlap_policy == crate::config::OverlapUnknown::Defer => Some(format!(
                "overlap_unknown: open pull requests could not be listed ({e}); github.overlap_unknown = \"defer\""
            )),
            Err(_) => None,
        };
        if let Some(reason) = pr_overlap {
            ledger.write(|q| q.defer_task(&id, &reason, now))?;
            report.deferred.push(ClaimStop {
                task_id: id,
                reason,
            });
            continue;
        }
        if let Some(reason) = overlaps(&task.spec.file_hints, &in_flight_files) {
            let reason = format!("file overlap with in-flight work: {reason}");
            ledger.write(|q| q.defer_task(&id, &reason, now))?;
            report.deferred.push(ClaimStop {
                task_id: id,
                reason,
            });
            continue;
        }
        let runs = ledger.read().runs_for_task(&id)?;
        let Some(worker) = choose_worker(&executors, &runs) else {
            continue;
        };
        let estimate = ledger
            .read()
            .cost_p90(&worker, WorkerRole::Executor.as_str(), job_cap)?
            .unwrap_or(floor)
            .max(floor);
        if estimate > job_cap && !operator_approved_over_estimate(ledger, &id) {
            let reason = format!(
                "estimated cost {} (p90 of {worker}'s past runs) exceeds caps.job_usd {}; `oxi approve {id}` runs it anyway",
                format_usd(estimate),
                format_usd(job_cap)
            );
            ledger.write(|q| {
                q.transition_task(
                    &id,
                    &Transition {
                        from: task.state,
                        to: TaskState::Held,
                        fields: TransitionFields {
                            held_reason: Some(reason.clone()),
                            hold_kind: Some(HoldKind::OverEstimate),
                            ..TransitionFields::default()
                        },
                        actor: "oxi",
                        reason: "over estimate",
                    },
                    now,
                )
            })?;
            report.held_at_claim.push(ClaimStop {
                task_id: id,
                reason,
            });
            continue;
        }
        let start_from = match &planned.start_from {
            Some(dep) => stacked_start(ledger, &by_id, dep)?,
            None => None,
        };
        let attempt = task.attempts + 1;
        let worktree = job::worktree_path(&config.state_dir, &id, attempt);
        let branch = task
            .branch
            .clone()
            .unwrap_or_else(|| crate::pipeline::worktree::branch_name(&id, &task.spec.title));
        let acceptance: Vec<String> = config
            .config
            .verify
            .tier0
            .iter()
            .chain(&config.config.verify.tier1)
            .chain(&config.config.verify.tier2)
            .map(|c| prompt::shell_words(&c.argv))
            .collect();
        let text = prompt::executor(&ExecutorPrompt {
            id: &id,
            title: &task.spec.title,
            subtitle: task.spec.subtitle.as_deref(),
            brief: &task.spec.body,
            file_hints: &task.spec.file_hints,
            acceptance,
            worktree: worktree.display().to_string(),
            protected: &config.config.governance.protected,
            attempt,
            max_attempts: caps.max_attempts,
            last_failure: task
                .last_failure
                .as_deref()
                .map(|f| prompt::clip_tail(f, prompt::FAILURE_CLIP)),
        })
        .map_err(|e| TickError::Prompt(e.to_string()))?;
        in_flight_files.extend(task.spec.file_hints.iter().cloned());
        specs.push(JobSpec {
            task: task.clone(),
            attempt,
            worker,
            worktree,
            branch,
            start_from,
            prompt: text,
            estimate,
        });
    }

    // Admission: reserve each estimate in the transaction that claims the task and creates the
    // run; the first refusal stops claiming.
    let mut admitted = Vec::new();
    let worktree_strings: Vec<String> = specs
        .iter()
        .map(|s| s.worktree.display().to_string())
        .collect();
    for (spec, worktree) in specs.iter().zip(&worktree_strings) {
        let request = spec.executor_request(worktree, actor, parent_env.to_vec(), None);
        let prepared = runner::prepare(config, request)?;
        let id = spec.task.spec.id.clone();
        let from = spec.task.state;
        let now = now_ms();
        let worker = spec.worker.clone();
        let result = prepared.admit_with(ledger, spec.estimate, |q| {
            q.transition_task(
                &id,
                &Transition {
                    from,
                    to: TaskState::Dispatched,
                    fields: TransitionFields::default(),
                    actor: "oxi",
                    reason: &format!("claimed for attempt {} on {worker}", spec.attempt),
                },
                now,
            )?;
            q.count_attempt(&id, now)
        });
        match result {
            Ok(()) => {
                let run_id = prepared.run_id.clone();
                ledger.write(|q| q.mark_over_estimate_used(&id, &run_id))?;
                admitted.push((spec.clone(), run_id));
            }
            Err(RunnerError::Budget(refusal)) => {
                report.budget_refusal = Some(refusal);
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(admitted)
}

/// The GitHub client for a release tick, after checking the token and push rights.
pub(crate) async fn github_preflight(
    config: &LoadedConfig,
    parent_env: &[(String, String)],
) -> Result<(crate::github::GithubClient, String), crate::github::GithubError> {
    let Some(github) = &config.config.github else {
        return Err(crate::github::GithubError::Client(format!(
            "release mode needs a [github] table in {} (repo, api_url, token_env)",
            config.display_path()
        )));
    };
    let token = crate::github::resolve_token(github, parent_env)?;
    let client = crate::github::GithubClient::new(github, &token)?;
    let repository = client.repository().await?;
    if !repository.permissions.is_some_and(|p| p.push) {
        return Err(crate::github::GithubError::Forbidden {
            endpoint: format!("GET /repos/{}", github.repo),
            message: "the token has no push access".to_owned(),
            repo: github.repo.clone(),
        });
    }
    Ok((client, token))
}

/// A `budget_breach` event once per day or month whose spend ended above its cap.
fn record_period_breach(ledger: &mut Ledger, config: &LoadedConfig) -> Result<(), LedgerError> {
    let now = now_ms();
    let (day, month) = (crate::clock::day_of(now), crate::clock::month_of(now));
    let totals = ledger.read().spend_totals(&day, &month)?;
    let caps = crate::budget::Caps::from_config(&config.config.caps);
    for (scope, period, spent, cap) in [
        ("day", &day, totals.day_spent, caps.daily),
        ("month", &month, totals.month_spent, caps.monthly),
    ] {
        let key = format!("budget_breach:{scope}:{period}");
        if spent > cap && ledger.read().kv_get(&key)?.is_none() {
            ledger.write(|q| {
                q.kv_set(&key, &spent.to_string(), now)?;
                q.append_event(&NewEvent {
                    at_ms: now,
                    task_id: None,
                    run_id: None,
                    actor: "oxi",
                    event: Event::BudgetBreach(BudgetBreach::Period {
                        scope: scope.to_owned(),
                        period: period.clone(),
                        spent_microusd: spent,
                        cap_microusd: cap,
                    }),
                })
                .map(|_| ())
            })?;
        }
    }
    Ok(())
}

/// A pass that claimed nothing because admission refused: `budget` when spent + the estimate
/// crosses a cap (nothing changes before the next day or month, or a raised cap), else
/// `budget_held_by_runs_in_flight` (the room is only held by runs in flight, of this or another
/// process; once they settle a later tick claims, so it is no failure).
pub fn budget_outcome(refusal: &crate::budget::Refusal) -> &'static str {
    if refusal.waits_for_runs_in_flight() {
        BUDGET_HELD
    } else {
        "budget"
    }
}

/// The outcome of a pass whose claim waits for runs in flight to settle.
pub const BUDGET_HELD: &str = "budget_held_by_runs_in_flight";

/// The tick's exit status, documented in docs/cli.md.
pub fn exit_code(report: &TickReport) -> i32 {
    match report.outcome {
        "failures" => crate::exit::TASK_FAILURES,
        "blocked" => crate::exit::BLOCKED,
        "budget" => crate::exit::BUDGET,
        _ => crate::exit::OK,
    }
}
