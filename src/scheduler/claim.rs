//! Claiming: which planned tasks start now. The iteration caps, the PR-overlap and file-overlap
//! gates, the cost estimate, then admission under the spend caps.

use std::collections::BTreeSet;

use std::collections::HashMap;

use serde::Serialize;

use super::SchedulerError;
use super::plan::PlannedTask;
use crate::budget::Refusal;
use crate::clock::now_ms;
use crate::config::{LoadedConfig, OverlapUnknown};
use crate::github::GithubClient;
use crate::ledger::{
    ApprovalKind, FailureClass, HoldKind, Ledger, TaskRow, TaskState, Transition, TransitionFields,
};
use crate::money::{MicroUsd, format_usd, usd_to_micro};
use crate::pipeline::worktree::stacked_start;
use crate::pipeline::{self as job, JobSpec};
use crate::prompt;
use crate::routing::{Assignment, JobRoutes, RouteChoice, RouteRole, Router};
use crate::worker::WorkerRole;

/// The worker for a task's next attempt: the first in the role's chain, moving past workers
/// whose last run for this task was rate-limited, transient or could not start (another worker may
/// succeed where that one is throttled or broken; a chain of one retries the same worker).
pub(crate) fn choose_worker<'c>(
    chain: &[&'c RouteChoice],
    last_runs: &[crate::ledger::RunRow],
) -> Option<&'c RouteChoice> {
    let last = last_runs
        .iter()
        .rev()
        .find(|r| r.role == WorkerRole::Executor);
    let skip = last.filter(|run| {
        run.classification
            .as_deref()
            .is_some_and(|class| ["rate_limited", "transient", "spawn_failed"].contains(&class))
    });
    match skip {
        Some(run) if chain.len() > 1 => {
            // The choice that ran: its worker, and its model when it names one.
            let at = chain
                .iter()
                .position(|c| {
                    c.name() == run.worker
                        && c.model().is_none_or(|m| run.model.as_deref() == Some(m))
                })
                .unwrap_or(0);
            chain.get((at + 1) % chain.len()).copied()
        }
        _ => chain.first().copied(),
    }
}

/// Two path sets overlap when a path equals, contains or is contained by another, or a glob
/// of one matches a path of the other.
pub(crate) fn overlaps(a: &[String], b: &BTreeSet<String>) -> Option<String> {
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

/// A task the claim round did not start, and why (printed, and stored with the task).
#[derive(Debug, Clone, Serialize)]
pub struct ClaimStop {
    pub task_id: String,
    pub reason: String,
}

/// One claim round's inputs: what the driver knows besides the ledger and the plan.
pub(crate) struct ClaimRequest<'a> {
    pub config: &'a LoadedConfig,
    pub parent_env: &'a [(String, String)],
    pub actor: &'a str,
    /// How many tasks to claim; `None`: `run.max_parallel_jobs` minus the runs already live (a
    /// tick). A driver that tracks its own slots (saturate) says exactly how many.
    pub slots: Option<u32>,
    /// Release mode: the client the PR-overlap gate lists open pull requests with.
    pub github: Option<&'a GithubClient>,
    /// Release mode without a client: why GitHub could not be used (the gate's error).
    pub github_unavailable: Option<&'a str>,
}

/// What one claim round did.
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    /// Each claimed task's job, with the id of its admitted run.
    pub admitted: Vec<(JobSpec, String)>,
    /// Tasks failed at claim (their attempts or worker calls are used up).
    pub failed: Vec<ClaimStop>,
    /// Tasks held at claim (their estimate exceeds `caps.job_usd`).
    pub held: Vec<ClaimStop>,
    /// Tasks deferred at claim (overlap with an open pull request or in-flight work).
    pub deferred: Vec<ClaimStop>,
    /// Why admission refused the next claim; the round stopped there.
    pub budget_refusal: Option<Refusal>,
}

/// Open oxi pull requests: number, head branch, the files they touch.
type OpenPulls = Vec<(u64, String, BTreeSet<String>)>;

/// What one task's gates decided.
enum Gate {
    Go(Box<JobSpec>),
    Failed(ClaimStop),
    Held(ClaimStop),
    Deferred(ClaimStop),
    /// No executor can take it now (all blocked); it waits, unrecorded.
    Skip,
}

/// The state a claim round carries from one task to the next.
struct Round<'a> {
    request: &'a ClaimRequest<'a>,
    now: i64,
    job_cap: MicroUsd,
    floor: MicroUsd,
    by_id: HashMap<&'a str, &'a TaskRow>,
    /// Files the tasks in flight (and those claimed this round) declare.
    in_flight_files: BTreeSet<String>,
    open_pulls: Result<OpenPulls, String>,
    /// `[routing]` compiled: each task's executor and reviewer chains.
    router: Router,
    /// Workers whose CLI could not authenticate: they get no new runs.
    blocked: Vec<String>,
    /// This host, and the hosts alive now (for rules that require host labels).
    me: crate::host::Identity,
    live_hosts: Vec<crate::ledger::HostRow>,
}

/// Claims up to `request.slots` tasks of `planned`: the iteration caps, the PR-overlap and
/// file-overlap gates, the estimate, then admission, the claim and the run row in one
/// transaction each (see [`super::admission`]).
pub(crate) async fn claim(
    ledger: &mut Ledger,
    request: &ClaimRequest<'_>,
    tasks: &[TaskRow],
    planned: Vec<PlannedTask>,
) -> Result<Claimed, SchedulerError> {
    let live_runs = ledger.read().running_runs()?.len() as u32;
    let slots = request.slots.unwrap_or_else(|| {
        request
            .config
            .config
            .run
            .max_parallel_jobs
            .saturating_sub(live_runs)
    });
    let mut round = Round::new(ledger, request, tasks, open_pulls(request).await)?;
    let mut claimed = Claimed::default();
    let mut specs: Vec<JobSpec> = Vec::new();
    for planned in planned.iter().filter(|p| p.is_eligible()) {
        if specs.len() as u32 >= slots {
            break;
        }
        let Some(task) = round.by_id.get(planned.id.as_str()).copied() else {
            continue;
        };
        match round.gate(ledger, task, planned)? {
            Gate::Go(spec) => {
                round.in_flight_files.extend(hints(ledger, task));
                specs.push(*spec);
            }
            Gate::Failed(stop) => claimed.failed.push(stop),
            Gate::Held(stop) => claimed.held.push(stop),
            Gate::Deferred(stop) => claimed.deferred.push(stop),
            Gate::Skip => {}
        }
    }
    super::admission::admit(ledger, request, &specs, &mut claimed)?;
    Ok(claimed)
}

/// A task's file hints for the overlap gate: its own, and the files its latest plan expects
/// (the explore phase's `files_expected`).
fn hints(ledger: &Ledger, task: &TaskRow) -> Vec<String> {
    let mut hints = task.spec.file_hints.clone();
    hints.extend(crate::pipeline::explore::planned_files(
        ledger,
        &task.spec.id,
    ));
    hints
}

/// The PR-overlap gate's input: files that open oxi pull requests touch. When GitHub cannot be
/// asked, the error (the gate then fails closed unless github.overlap_unknown = "allow").
async fn open_pulls(request: &ClaimRequest<'_>) -> Result<OpenPulls, String> {
    let config = request.config;
    match request.github {
        Some(client) => crate::pipeline::deliver::release::open_pull_files(config, client)
            .await
            .map_err(|e| e.to_string()),
        None if config.release_mode().is_some() => Err(request
            .github_unavailable
            .map(str::to_owned)
            .unwrap_or_else(|| "GitHub is not reachable".to_owned())),
        None => Ok(Vec::new()),
    }
}

impl<'a> Round<'a> {
    fn new(
        ledger: &Ledger,
        request: &'a ClaimRequest<'a>,
        tasks: &'a [TaskRow],
        open_pulls: Result<OpenPulls, String>,
    ) -> Result<Self, SchedulerError> {
        let caps = &request.config.config.caps;
        let by_id: HashMap<&str, &TaskRow> =
            tasks.iter().map(|t| (t.spec.id.as_str(), t)).collect();
        let mut in_flight_files: BTreeSet<String> = BTreeSet::new();
        for task in tasks.iter().filter(|t| t.state.is_in_flight()) {
            in_flight_files.extend(hints(ledger, task));
        }
        // Blocked workers (their CLI could not authenticate) and quarantined ones (their CLI
        // failed the live probe) get no new runs.
        let mut blocked: Vec<String> = ledger
            .read()
            .worker_blocks()?
            .into_iter()
            .map(|b| b.worker)
            .collect();
        blocked.extend(
            ledger
                .read()
                .quarantined_workers()?
                .into_iter()
                .map(|q| q.worker),
        );
        let router = Router::new(&request.config.config)?;
        let live_hosts = crate::host::live_hosts(ledger)?;
        Ok(Self {
            me: crate::host::Identity::of(request.config),
            live_hosts,
            request,
            now: now_ms(),
            job_cap: usd_to_micro(caps.job_usd),
            floor: usd_to_micro(caps.estimate_floor_usd),
            by_id,
            in_flight_files,
            open_pulls,
            router,
            blocked,
        })
    }

    /// The gates for one eligible task, in order; each stop is recorded in the ledger here.
    fn gate(
        &self,
        ledger: &mut Ledger,
        task: &TaskRow,
        planned: &PlannedTask,
    ) -> Result<Gate, SchedulerError> {
        if let Some(stop) = self.attempts_exhausted(ledger, task)? {
            return Ok(Gate::Failed(stop));
        }
        let id = task.spec.id.clone();
        let overlap = match self.pr_overlap(ledger, task)? {
            Some(reason) => Some(reason),
            None => overlaps(&hints(ledger, task), &self.in_flight_files)
                .map(|reason| format!("file overlap with in-flight work: {reason}")),
        };
        if let Some(reason) = overlap {
            ledger.write(|q| q.defer_task(&id, &reason, self.now))?;
            return Ok(Gate::Deferred(ClaimStop {
                task_id: id,
                reason,
            }));
        }
        let runs = ledger.read().runs_for_task(&id)?;
        let route = self.router.route(&task.spec);
        match crate::host::place(&self.me, &self.live_hosts, route.name(), route.requires()) {
            crate::host::Placement::Here => {}
            // Left to the live host that has the labels.
            crate::host::Placement::Elsewhere(_) => return Ok(Gate::Skip),
            crate::host::Placement::Nowhere(reason) => {
                ledger.write(|q| q.defer_task(&id, &reason, self.now))?;
                return Ok(Gate::Deferred(ClaimStop {
                    task_id: id,
                    reason,
                }));
            }
        }
        let executors = route.pick(RouteRole::Executor);
        let unblocked = crate::routing::runnable(executors.chain, &self.blocked);
        let Some(choice) = choose_worker(&unblocked, &runs) else {
            return Ok(Gate::Skip);
        };
        let config = &self.request.config.config;
        let reviewers = route.pick(RouteRole::Reviewer);
        let routes = JobRoutes {
            executor: Assignment::resolve(&executors, choice, config),
            reviewer: reviewers
                .chain
                .first()
                .map(|c| Assignment::resolve(&reviewers, c, config)),
        };
        let worker = choice.name().to_owned();
        let estimate = ledger
            .read()
            .cost_p90(&worker, WorkerRole::Executor.as_str(), self.job_cap)?
            .unwrap_or(self.floor)
            .max(self.floor);
        if estimate > self.job_cap && !operator_approved_over_estimate(ledger, &id) {
            return self.hold_over_estimate(ledger, task, &worker, estimate);
        }
        let spec = self.job_spec(ledger, task, planned, routes, estimate)?;
        Ok(Gate::Go(Box::new(spec)))
    }

    /// Fails a task whose attempts or worker calls are used up.
    fn attempts_exhausted(
        &self,
        ledger: &mut Ledger,
        task: &TaskRow,
    ) -> Result<Option<ClaimStop>, SchedulerError> {
        let caps = &self.request.config.config.caps;
        if task.attempts < caps.max_attempts && task.worker_calls < caps.max_worker_calls {
            return Ok(None);
        }
        let id = task.spec.id.clone();
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
                self.now,
            )
        })?;
        Ok(Some(ClaimStop {
            task_id: id,
            reason,
        }))
    }

    /// Why the task must wait for an open pull request: its declared files, or what its last
    /// attempt actually changed, overlap one (another task's), or the pull requests could not
    /// be listed and `github.overlap_unknown = "defer"`.
    fn pr_overlap(
        &self,
        ledger: &Ledger,
        task: &TaskRow,
    ) -> Result<Option<String>, SchedulerError> {
        let overlap_policy = self
            .request
            .config
            .config
            .github
            .as_ref()
            .map(|g| g.overlap_unknown)
            .unwrap_or_default();
        Ok(match &self.open_pulls {
            Ok(pulls) if !pulls.is_empty() => {
                let mut files = task.spec.file_hints.clone();
                files.extend(ledger.read().last_attempt_paths(&task.spec.id)?);
                pulls
                    .iter()
                    .filter(|(_, head, _)| Some(head) != task.branch.as_ref())
                    .find_map(|(number, _, pr_files)| {
                        overlaps(&files, pr_files)
                            .map(|why| format!("open pull request #{number}: {why}"))
                    })
            }
            Ok(_) => None,
            Err(e) if overlap_policy == OverlapUnknown::Defer => Some(format!(
                "overlap_unknown: open pull requests could not be listed ({e}); github.overlap_unknown = \"defer\""
            )),
            Err(_) => None,
        })
    }

    /// Holds a task whose estimate exceeds `caps.job_usd` until an operator approves it.
    fn hold_over_estimate(
        &self,
        ledger: &mut Ledger,
        task: &TaskRow,
        worker: &str,
        estimate: MicroUsd,
    ) -> Result<Gate, SchedulerError> {
        let id = task.spec.id.clone();
        let reason = format!(
            "estimated cost {} (p90 of {worker}'s past runs) exceeds caps.job_usd {}; `oxi approve {id}` runs it anyway",
            format_usd(estimate),
            format_usd(self.job_cap)
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
                self.now,
            )
        })?;
        Ok(Gate::Held(ClaimStop {
            task_id: id,
            reason,
        }))
    }

    /// The job for a task that passed every gate: its worktree, branch, start and prompt.
    fn job_spec(
        &self,
        ledger: &Ledger,
        task: &TaskRow,
        planned: &PlannedTask,
        routes: JobRoutes,
        estimate: MicroUsd,
    ) -> Result<JobSpec, SchedulerError> {
        let config = self.request.config;
        let id = task.spec.id.clone();
        let start_from = match &planned.start_from {
            Some(dep) => stacked_start(ledger, &self.by_id, dep)?,
            None => None,
        };
        let attempt = task.attempts + 1;
        let worktree = job::worktree_path(&config.state_dir, &id, attempt);
        let branch = task
            .branch
            .clone()
            .unwrap_or_else(|| crate::pipeline::worktree::branch_name(&id, &task.spec.title));
        let text = prompt::executor_for(&config.config, task, attempt, &worktree, None)?;
        Ok(JobSpec {
            task: task.clone(),
            attempt,
            worker: routes.executor.worker.clone(),
            routes,
            worktree,
            branch,
            start_from,
            prompt: text,
            estimate,
        })
    }
}
