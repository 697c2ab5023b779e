//! Claiming: which planned tasks start now. The iteration caps, the PR-overlap and file-overlap
//! gates, the cost estimate, then admission under the spend caps.

use std::collections::BTreeSet;

use super::pass::{ClaimStop, TickError, TickReport, stacked_start};
use crate::clock::now_ms;
use crate::config::LoadedConfig;
use crate::ledger::{Ledger, TaskRow, TaskState, Transition, TransitionFields};
use crate::money::{format_usd, usd_to_micro};
use crate::prompt::{self, ExecutorPrompt};
use crate::runner::{self, RunnerError};
use crate::tick::job::{self, JobSpec};

/// The worker for a task's next attempt: the first in the role's chain, moving past workers
/// whose last run for this task was rate-limited, transient or could not start (seed 004 T2-39).
pub fn choose_worker(chain: &[String], last_runs: &[crate::ledger::RunRow]) -> Option<String> {
    let last = last_runs.iter().rev().find(|r| r.role == "executor");
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
                || crate::critic::within_hints(x_, std::slice::from_ref(y))
                || crate::critic::within_hints(y_, std::slice::from_ref(x))
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
                .any(|a| a.kind == "over_estimate" && a.used_by_run.is_none())
        })
        .unwrap_or(false)
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
    planned: Vec<super::plan::PlannedTask>,
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
        Some(client) => crate::release::open_oxi_pulls(config, client)
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
                            failure_class: Some("attempts_exhausted".to_owned()),
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
            .cost_p90(&worker, "executor", job_cap)?
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
            .unwrap_or_else(|| crate::worktree::branch_name(&id, &task.spec.title));
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
