//! Budget admission for claimed work: each job's estimate is reserved in the transaction that
//! claims its task and creates its run, so two claimers can never both squeeze under a cap
//! (the arithmetic is [`crate::budget::admit`], which the runner applies inside that
//! transaction). The first refusal stops the round.

use super::SchedulerError;
use super::claim::{ClaimRequest, Claimed};
use crate::clock::now_ms;
use crate::ledger::{Ledger, LedgerError, TaskClaim};
use crate::pipeline::JobSpec;
use crate::runner::{self, RunnerError};

/// Admits `specs` in order into `claimed`: each job with the id of its admitted run, and the
/// refusal that stopped the round, if any.
pub(super) fn admit(
    ledger: &mut Ledger,
    request: &ClaimRequest<'_>,
    specs: &[JobSpec],
    claimed: &mut Claimed,
) -> Result<(), SchedulerError> {
    for spec in specs {
        let worktree = spec.worktree.display().to_string();
        let request_for_run =
            spec.executor_request(&worktree, request.actor, request.parent_env.to_vec(), None);
        let prepared = runner::prepare(request.config, request_for_run)?;
        let id = spec.task.spec.id.clone();
        let reason = format!("claimed for attempt {} on {}", spec.attempt, spec.worker);
        let claim = TaskClaim {
            task_id: &id,
            from: spec.task.state,
            actor: "oxi",
            reason: &reason,
            at_ms: now_ms(),
        };
        match prepared.admit_task(ledger, spec.estimate, &claim) {
            Ok(()) => {
                claimed
                    .admitted
                    .push((spec.clone(), prepared.run_id.clone()));
            }
            Err(RunnerError::Ledger(LedgerError::StateConflict { task, .. })) if task == id => {}
            Err(RunnerError::Budget(refusal)) => {
                claimed.budget_refusal = Some(refusal);
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// What one claim of the claim benchmark came to.
#[doc(hidden)]
#[derive(Debug)]
pub enum BenchClaim {
    /// Admitted: the id of the task's new run, holding its reservation.
    Admitted(String),
    /// Another claimer holds or took the task (a lost race, not an error).
    Lost,
    /// A cap refused the reservation.
    Refused(crate::budget::Refusal),
}

/// The claim benchmark's way in (benches/claim.rs): claims `task` for its next attempt on
/// `worker` with `estimate` reserved, through the claim round's own `admit`, so the benchmark
/// prices the writes a claim round makes (the caps, the candidate's lock, the state change,
/// the attempt count, the run row, then the over-estimate mark) and not a copy of them. The
/// gates before admission (plan, overlap, estimate) are not part of it.
///
/// # Errors
/// As a claim round's admission: the ledger's, or a run that cannot be prepared.
#[doc(hidden)]
pub fn claim_for_bench(
    ledger: &mut Ledger,
    config: &crate::config::LoadedConfig,
    task: &crate::ledger::TaskRow,
    worker: &str,
    estimate: i64,
) -> Result<BenchClaim, SchedulerError> {
    let attempt = task.attempts + 1;
    let id = &task.spec.id;
    let spec = JobSpec {
        task: task.clone(),
        attempt,
        worker: worker.to_owned(),
        routes: crate::routing::JobRoutes {
            executor: crate::routing::Assignment {
                route: crate::routing::DEFAULT_ROUTE.to_owned(),
                worker: worker.to_owned(),
                model: None,
            },
            reviewer: None,
        },
        worktree: crate::pipeline::worktree_path(&config.state_dir, id, attempt),
        branch: crate::pipeline::worktree::branch_name(id, &task.spec.title),
        start_from: None,
        prompt: format!("Do {id}: {}", task.spec.title),
        estimate,
    };
    let request = ClaimRequest {
        config,
        parent_env: &[],
        actor: "oxi",
        slots: Some(1),
        github: None,
        github_unavailable: None,
    };
    let mut claimed = Claimed::default();
    admit(ledger, &request, std::slice::from_ref(&spec), &mut claimed)?;
    Ok(match (claimed.admitted.pop(), claimed.budget_refusal) {
        (Some((_, run_id)), _) => BenchClaim::Admitted(run_id),
        (None, Some(refusal)) => BenchClaim::Refused(refusal),
        (None, None) => BenchClaim::Lost,
    })
}
