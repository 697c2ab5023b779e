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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, GithubConfig, ModeSource};
    use crate::ledger::{NewRun, RunRow, TaskSpec};
    use crate::routing::ChoiceKind;

    fn choice(text: &str) -> RouteChoice {
        RouteChoice::parse(text, ChoiceKind::Worker).unwrap()
    }

    fn run(role: WorkerRole, worker: &str, model: Option<&str>, class: Option<&str>) -> RunRow {
        RunRow {
            id: format!("run-{worker}"),
            task_id: Some("T1".to_owned()),
            attempt: 1,
            role: role.as_str().to_owned(),
            worker: worker.to_owned(),
            worker_kind: worker.to_owned(),
            model: model.map(str::to_owned),
            status: "finished".to_owned(),
            classification: class.map(str::to_owned),
            pid: None,
            pgid: None,
            lease_expires_at_ms: None,
            started_at_ms: 0,
            ended_at_ms: None,
            exit_code: None,
            signal: None,
            stop_reason: None,
            input_tokens: 0,
            cached_input_tokens: 0,
            output_tokens: 0,
            reasoning_tokens: 0,
            cost_microusd: 0,
            run_dir: None,
            worktree: None,
            branch: None,
            cli_version: None,
            session_id: None,
            parse_failures: 0,
            bytes_cut: 0,
            retry_after_ms: None,
            detail: None,
            supervisor_pid: None,
            route: None,
            host: None,
        }
    }

    fn name(chosen: Option<&RouteChoice>) -> Option<String> {
        chosen.map(ToString::to_string)
    }

    #[test]
    fn a_throttled_or_broken_worker_hands_the_next_attempt_to_the_next_in_the_chain() {
        let (a, b, c) = (choice("codex"), choice("claude"), choice("gemini"));
        let chain = [&a, &b, &c];
        for class in ["rate_limited", "transient", "spawn_failed"] {
            let last = [run(WorkerRole::Executor, "codex", None, Some(class))];
            assert_eq!(
                name(choose_worker(&chain, &last)),
                Some("claude".into()),
                "{class}"
            );
        }
        let last = [run(
            WorkerRole::Executor,
            "claude",
            None,
            Some("rate_limited"),
        )];
        assert_eq!(name(choose_worker(&chain, &last)), Some("gemini".into()));
        // Past the end of the chain it wraps to the first.
        let last = [run(
            WorkerRole::Executor,
            "gemini",
            None,
            Some("rate_limited"),
        )];
        assert_eq!(name(choose_worker(&chain, &last)), Some("codex".into()));
        let two = [&a, &b];
        let last = [run(WorkerRole::Executor, "claude", None, Some("transient"))];
        assert_eq!(name(choose_worker(&two, &last)), Some("codex".into()));
    }

    #[test]
    fn any_other_ending_or_no_run_starts_from_the_first_in_the_chain() {
        let (a, b) = (choice("codex"), choice("claude"));
        let chain = [&a, &b];
        assert_eq!(name(choose_worker(&chain, &[])), Some("codex".into()));
        for class in [None, Some("failed"), Some("budget_exceeded")] {
            let last = [run(WorkerRole::Executor, "claude", None, class)];
            assert_eq!(
                name(choose_worker(&chain, &last)),
                Some("codex".into()),
                "{class:?}"
            );
        }
        // Only the latest executor run counts: not an older one, nor a later reviewer run.
        let last = [
            run(WorkerRole::Executor, "codex", None, Some("rate_limited")),
            run(WorkerRole::Executor, "codex", None, Some("failed")),
        ];
        assert_eq!(name(choose_worker(&chain, &last)), Some("codex".into()));
        let last = [
            run(WorkerRole::Executor, "codex", None, Some("rate_limited")),
            run(WorkerRole::Reviewer, "claude", None, None),
        ];
        assert_eq!(name(choose_worker(&chain, &last)), Some("claude".into()));
    }

    #[test]
    fn a_chain_of_one_retries_its_worker_and_an_empty_chain_has_none() {
        let a = choice("codex");
        let last = [run(
            WorkerRole::Executor,
            "codex",
            None,
            Some("rate_limited"),
        )];
        assert_eq!(name(choose_worker(&[&a], &last)), Some("codex".into()));
        assert_eq!(choose_worker(&[], &last), None);
        assert_eq!(choose_worker(&[], &[]), None);
    }

    #[test]
    fn the_choice_that_ran_is_found_by_worker_and_model() {
        let (m1, m2, other) = (choice("codex:m1"), choice("codex:m2"), choice("claude"));
        let chain = [&m1, &m2, &other];
        let last = [run(
            WorkerRole::Executor,
            "codex",
            Some("m2"),
            Some("rate_limited"),
        )];
        assert_eq!(name(choose_worker(&chain, &last)), Some("claude".into()));
        let last = [run(
            WorkerRole::Executor,
            "codex",
            Some("m1"),
            Some("rate_limited"),
        )];
        assert_eq!(name(choose_worker(&chain, &last)), Some("codex:m2".into()));
        // A worker the chain no longer holds: the position of the first, so the second next.
        let last = [run(
            WorkerRole::Executor,
            "gone",
            None,
            Some("rate_limited"),
        )];
        assert_eq!(name(choose_worker(&chain, &last)), Some("codex:m2".into()));
    }

    fn set(paths: &[&str]) -> BTreeSet<String> {
        paths.iter().map(|p| (*p).to_owned()).collect()
    }

    fn owned(paths: &[&str]) -> Vec<String> {
        paths.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn paths_overlap_when_equal_nested_either_way_or_matched_by_a_glob_either_way() {
        for (a, b) in [
            ("src/a.rs", "src/a.rs"),
            ("src/", "src"),
            ("src/a.rs", "src"),
            ("src", "src/a.rs"),
            ("src/a.rs", "src/*.rs"),
            ("src/*.rs", "src/a.rs"),
        ] {
            assert_eq!(
                overlaps(&owned(&[a]), &set(&[b])),
                Some(format!("{a} overlaps {b}")),
                "{a} / {b}"
            );
        }
        // The first pair that overlaps is named.
        assert_eq!(
            overlaps(&owned(&["docs/x.md", "src/b.rs"]), &set(&["lib", "src"])),
            Some("src/b.rs overlaps src".to_owned())
        );
    }

    #[test]
    fn disjoint_paths_and_siblings_with_a_common_prefix_do_not_overlap() {
        for (a, b) in [
            ("src/a.rs", "src/ab.rs"),
            ("src/a", "src/ab/c.rs"),
            ("docs", "src"),
            ("src/*.md", "src/a.rs"),
        ] {
            assert_eq!(overlaps(&owned(&[a]), &set(&[b])), None, "{a} / {b}");
        }
        assert_eq!(overlaps(&[], &set(&["src"])), None);
        assert_eq!(overlaps(&owned(&["src"]), &BTreeSet::new()), None);
    }

    /// A ledger and a config in a temporary directory, for one claim round's gates.
    struct Bench {
        _dir: tempfile::TempDir,
        ledger: Ledger,
        config: LoadedConfig,
    }

    impl Bench {
        fn new(edit: impl FnOnce(&mut Config)) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().to_path_buf();
            let ledger = Ledger::open(&root.join(".oxi/ledger.db")).unwrap();
            let mut config = Config::default();
            edit(&mut config);
            let config = LoadedConfig {
                config,
                path: root.join("oxi.toml"),
                repo_root: root.clone(),
                state_dir: root.join(".oxi"),
                mode_source: ModeSource::File,
            };
            Self {
                _dir: dir,
                ledger,
                config,
            }
        }

        fn add(&mut self, id: &str, hints: &[&str], state: TaskState) {
            let spec = TaskSpec {
                id: id.to_owned(),
                priority_tier: 1,
                title: format!("task {id}"),
                subtitle: None,
                body: String::new(),
                section: None,
                milestone: None,
                format: "oxi".to_owned(),
                depends_on: Vec::new(),
                file_hints: owned(hints),
                source_line: 1,
                roadmap_order: 0,
                content_hash: String::new(),
                roadmap_done: false,
            };
            self.ledger
                .write(|q| q.insert_task(&spec, state, 0))
                .unwrap();
        }

        fn task(&self, id: &str) -> TaskRow {
            self.ledger.read().task(id).unwrap().unwrap()
        }

        /// The gates for `id` (after `edit` on its row), with `pulls` as the open pull requests.
        fn gate(
            &mut self,
            id: &str,
            pulls: Result<OpenPulls, String>,
            edit: impl FnOnce(&mut TaskRow),
        ) -> Gate {
            let tasks = self.ledger.read().tasks().unwrap();
            let request = ClaimRequest {
                config: &self.config,
                parent_env: &[],
                actor: "oxi",
                slots: None,
                github: None,
                github_unavailable: None,
            };
            let round = Round::new(&self.ledger, &request, &tasks, pulls).unwrap();
            let planned = super::super::plan::plan_with(&tasks, 0, false)
                .into_iter()
                .find(|p| p.id == id)
                .unwrap();
            let mut task = round.by_id[id].clone();
            edit(&mut task);
            round.gate(&mut self.ledger, &task, &planned).unwrap()
        }
    }

    /// What a gate decided, as `go`, `failed: …`, `held: …`, `deferred: …` or `skip`.
    fn said(gate: &Gate) -> String {
        match gate {
            Gate::Go(spec) => format!("go {}", spec.task.spec.id),
            Gate::Failed(stop) => format!("failed: {}", stop.reason),
            Gate::Held(stop) => format!("held: {}", stop.reason),
            Gate::Deferred(stop) => format!("deferred: {}", stop.reason),
            Gate::Skip => "skip".to_owned(),
        }
    }

    fn pull(number: u64, head: &str, files: &[&str]) -> (u64, String, BTreeSet<String>) {
        (number, head.to_owned(), set(files))
    }

    #[test]
    fn an_open_pull_request_of_another_branch_touching_the_tasks_files_defers_it() {
        let mut bench = Bench::new(|_| {});
        bench.add("T1", &["src/a.rs"], TaskState::Queued);
        let pulls = || {
            Ok(vec![
                pull(6, "oxi/t9", &["docs/x.md"]),
                pull(7, "oxi/t8", &["src/a.rs"]),
            ])
        };
        let gate = bench.gate("T1", pulls(), |_| {});
        assert_eq!(
            said(&gate),
            "deferred: open pull request #7: src/a.rs overlaps src/a.rs"
        );
        assert!(bench.task("T1").last_deferred_at_ms.is_some());
        // The task's own pull request (its branch) is not in its way.
        let gate = bench.gate("T1", pulls(), |t| t.branch = Some("oxi/t8".to_owned()));
        assert_eq!(said(&gate), "go T1");
        // Nor are pull requests on other files, or none at all.
        let other = Ok(vec![pull(6, "oxi/t9", &["docs/x.md"])]);
        assert_eq!(said(&bench.gate("T1", other, |_| {})), "go T1");
        assert_eq!(said(&bench.gate("T1", Ok(Vec::new()), |_| {})), "go T1");
    }

    #[test]
    fn when_pull_requests_cannot_be_listed_the_task_waits_unless_overlap_unknown_is_allow() {
        let mut bench = Bench::new(|_| {});
        bench.add("T1", &["src/a.rs"], TaskState::Queued);
        let gate = bench.gate("T1", Err("GitHub is not reachable".to_owned()), |_| {});
        assert_eq!(
            said(&gate),
            "deferred: overlap_unknown: open pull requests could not be listed (GitHub is not reachable); github.overlap_unknown = \"defer\""
        );
        let mut bench = Bench::new(|c| {
            let github: GithubConfig =
                toml::from_str("repo = \"o/n\"\noverlap_unknown = \"allow\"").unwrap();
            c.github = Some(github);
        });
        bench.add("T1", &["src/a.rs"], TaskState::Queued);
        let gate = bench.gate("T1", Err("GitHub is not reachable".to_owned()), |_| {});
        assert_eq!(said(&gate), "go T1");
    }

    #[test]
    fn files_of_work_in_flight_defer_a_task_that_names_them_and_no_other() {
        let mut bench = Bench::new(|_| {});
        bench.add("T0", &["src/a.rs"], TaskState::Dispatched);
        bench.add("T1", &["src"], TaskState::Queued);
        bench.add("T2", &["docs/b.md"], TaskState::Queued);
        assert_eq!(
            said(&bench.gate("T1", Ok(Vec::new()), |_| {})),
            "deferred: file overlap with in-flight work: src overlaps src/a.rs"
        );
        assert_eq!(said(&bench.gate("T2", Ok(Vec::new()), |_| {})), "go T2");
    }

    #[test]
    fn a_task_out_of_attempts_or_worker_calls_fails_as_attempts_exhausted() {
        let mut bench = Bench::new(|_| {});
        for id in ["T1", "T2", "T3"] {
            bench.add(id, &[], TaskState::Queued);
        }
        let gate = bench.gate("T1", Ok(Vec::new()), |t| t.attempts = 3);
        assert_eq!(
            said(&gate),
            "failed: attempts_exhausted: 3 attempts (caps.max_attempts 3), 0 worker calls (caps.max_worker_calls 6)"
        );
        let task = bench.task("T1");
        assert_eq!(task.state, TaskState::Failed);
        assert_eq!(task.failure_class, Some(FailureClass::AttemptsExhausted));
        let gate = bench.gate("T2", Ok(Vec::new()), |t| {
            t.attempts = 1;
            t.worker_calls = 6;
        });
        assert_eq!(
            said(&gate),
            "failed: attempts_exhausted: 1 attempts (caps.max_attempts 3), 6 worker calls (caps.max_worker_calls 6)"
        );
        assert_eq!(bench.task("T2").state, TaskState::Failed);
        // One below either cap still runs.
        let gate = bench.gate("T3", Ok(Vec::new()), |t| {
            t.attempts = 2;
            t.worker_calls = 5;
        });
        assert_eq!(said(&gate), "go T3");
    }

    #[test]
    fn a_task_through_every_gate_runs_its_next_attempt_on_its_branch_at_the_estimate() {
        let mut bench = Bench::new(|c| c.caps.estimate_floor_usd = 0.5);
        bench.add("T1", &["src/a.rs"], TaskState::Queued);
        let spec = match bench.gate("T1", Ok(Vec::new()), |t| t.attempts = 1) {
            Gate::Go(spec) => spec,
            other => panic!("{}", said(&other)),
        };
        assert_eq!(spec.attempt, 2);
        assert_eq!(spec.worker, "claude");
        assert_eq!(spec.estimate, 500_000);
        assert_eq!(spec.branch, "oxi/t1-task-t1");
        assert!(
            spec.worktree.ends_with(".oxi/worktrees/t1-a2"),
            "{:?}",
            spec.worktree
        );
        assert_eq!(spec.start_from, None);
        assert!(spec.prompt.contains("src/a.rs"));
        // A task that has a branch keeps it.
        let spec = match bench.gate("T1", Ok(Vec::new()), |t| t.branch = Some("oxi/kept".into())) {
            Gate::Go(spec) => spec,
            other => panic!("{}", said(&other)),
        };
        assert_eq!((spec.attempt, spec.branch.as_str()), (1, "oxi/kept"));
    }

    fn decide(bench: &mut Bench, id: &str) -> String {
        said(&bench.gate(id, Ok(Vec::new()), |_| {}))
    }

    #[test]
    fn an_estimate_over_the_job_cap_holds_the_task_until_an_operator_approves_it() {
        // No past runs: the estimate is the floor.
        let mut bench = Bench::new(|c| {
            c.caps.job_usd = 2.0;
            c.caps.estimate_floor_usd = 2.5;
        });
        bench.add("T1", &[], TaskState::Queued);
        assert_eq!(
            decide(&mut bench, "T1"),
            "held: estimated cost $2.50 (p90 of claude's past runs) exceeds caps.job_usd $2.00; `oxi approve T1` runs it anyway"
        );
        let task = bench.task("T1");
        assert_eq!(task.state, TaskState::Held);
        assert_eq!(task.hold_kind, Some(HoldKind::OverEstimate));
        assert!(
            task.held_reason
                .unwrap()
                .starts_with("estimated cost $2.50")
        );
    }

    #[test]
    fn an_estimate_at_or_under_the_job_cap_runs() {
        for floor in [2.0, 1.0] {
            let mut bench = Bench::new(|c| {
                c.caps.job_usd = 2.0;
                c.caps.estimate_floor_usd = floor;
            });
            bench.add("T1", &[], TaskState::Queued);
            assert_eq!(decide(&mut bench, "T1"), "go T1", "floor {floor}");
        }
    }

    #[test]
    fn only_an_unused_over_estimate_approval_lets_an_estimate_over_the_cap_run() {
        let mut bench = Bench::new(|c| {
            c.caps.job_usd = 2.0;
            c.caps.estimate_floor_usd = 2.5;
        });
        for id in ["T1", "T2", "T3"] {
            bench.add(id, &[], TaskState::Queued);
        }
        let approve = |bench: &mut Bench, id: &str, kind| {
            bench
                .ledger
                .write(|q| q.insert_approval(id, kind, "op", None, 0))
                .unwrap();
        };
        approve(&mut bench, "T1", ApprovalKind::NeedsApproval);
        assert!(
            decide(&mut bench, "T1").starts_with("held: "),
            "another kind"
        );
        approve(&mut bench, "T2", ApprovalKind::OverEstimate);
        assert_eq!(decide(&mut bench, "T2"), "go T2");
        // One approval, one run: used by a run, it no longer counts.
        approve(&mut bench, "T3", ApprovalKind::OverEstimate);
        bench
            .ledger
            .write(|q| {
                q.begin_run(&NewRun {
                    id: "r1",
                    task_id: Some("T3"),
                    attempt: 1,
                    role: "executor",
                    worker: "claude",
                    worker_kind: "claude",
                    model: None,
                    run_dir: "runs/r1",
                    worktree: None,
                    branch: None,
                    started_at_ms: 0,
                    reserve_microusd: 0,
                    day: "1970-01-01",
                    month: "1970-01",
                    actor: "oxi",
                    supervisor_pid: 1,
                })?;
                q.mark_over_estimate_used("T3", "r1")
            })
            .unwrap();
        assert!(decide(&mut bench, "T3").starts_with("held: "), "used");
    }
}
