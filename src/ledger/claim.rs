//! The scheduler's claim of a task, and a run's end, as single steps.
//!
//! On `PostgreSQL` every claim and every settle on every host waits for the day's and the
//! month's spend rollup rows, and holds them until its commit, so the fleet's claim rate is one
//! over the time they are held. In a transaction of a dozen statements they are held across
//! round trips (each one a wait for the network and the scheduler); as one statement calling a
//! server-side function (migration 0020) they are held only while the server runs it.
//! [`Ledger::claim_in_one_step`] and [`Ledger::finish_run`] are those statements. On `SQLite`,
//! whose writes run in this process, a round trip costs nothing: the claim is the write
//! `PreparedRun::admit_task` makes with [`TaskClaim::apply`], and a run's end one write.

use super::pg;
use super::queries::{Db, state_changed_event};
use super::runs::run_started_event;
use super::{
    Backend, Ledger, LedgerError, NewRun, Queries, Result, RunEnd, RunLabels, SpendTotals,
    TaskState, Transition, TransitionFields,
};
use crate::money::MicroUsd;

/// A queued (or retryable) task claimed for its next attempt: it moves to `dispatched`, its
/// attempt is counted, and the run that carries the attempt is created in the same step.
#[derive(Debug, Clone, Copy)]
pub struct TaskClaim<'a> {
    pub task_id: &'a str,
    /// The state the task was seen in when it was chosen; a task that left it since is
    /// another claimer's.
    pub from: TaskState,
    pub actor: &'a str,
    /// The state change's reason, e.g. "claimed for attempt 2 on codex".
    pub reason: &'a str,
    pub at_ms: i64,
}

/// How [`Ledger::claim_in_one_step`] came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneStepClaim {
    /// The task is claimed and the run created, holding its reservation; the totals are the
    /// day's and month's before it.
    Admitted(SpendTotals),
    /// Another claimer holds or took the task (a lost race, not an error): nothing written.
    Lost,
    /// A cap has no room for the reservation: nothing written (the statement is undone), and
    /// the refusal is the caller's to record, in a write that checks the caps again.
    Refused,
}

/// The day's and month's caps a claim is admitted under, in micro-dollars.
#[derive(Debug, Clone, Copy)]
pub struct ClaimCaps {
    pub day: MicroUsd,
    pub month: MicroUsd,
}

impl TaskClaim<'_> {
    fn transition(&self) -> Transition<'_> {
        Transition {
            from: self.from,
            to: TaskState::Dispatched,
            fields: TransitionFields::default(),
            actor: self.actor,
            reason: self.reason,
        }
    }

    /// What a lost race is, as an error: the task was not in `from`, or another claimer held it.
    #[must_use]
    pub fn lost(&self) -> LedgerError {
        LedgerError::StateConflict {
            task: self.task_id.to_owned(),
            expected: self.from,
            found: "claimed elsewhere".to_owned(),
        }
    }

    /// The claim's own writes inside a write that admits it (`Queries::admit_claim`): the
    /// candidate taken (on Postgres, locked without waiting), its state change and event, its
    /// attempt counted.
    ///
    /// # Errors
    /// [`Self::lost`] when another claimer holds or took the task; the ledger's.
    pub fn apply(&self, q: &Queries<'_>) -> Result<()> {
        if !q.lock_claim_candidate(self.task_id, self.from)? {
            return Err(self.lost());
        }
        q.transition_task(self.task_id, &self.transition(), self.at_ms)?;
        q.count_attempt(self.task_id, self.at_ms)
    }
}

impl Ledger {
    /// The claim of `claim.task_id` for `run`, made in one statement on a Postgres ledger
    /// (`oxi_claim_task`): the candidate's lock, [`TaskClaim::apply`]'s writes, the run row with
    /// `labels`, `run_started` and the task's unused over-estimate approval marked used, then
    /// the caps under the rollup rows' locks and the reservation: the rows the write path
    /// writes, its locks in its order, the rollup rows held for the reservation and the commit
    /// only. `None` on `SQLite`, where the write path is already one step in this process.
    ///
    /// # Errors
    /// The ledger's; an illegal transition from `claim.from`.
    pub fn claim_in_one_step(
        &mut self,
        claim: &TaskClaim<'_>,
        run: &NewRun<'_>,
        labels: &RunLabels<'_>,
        caps: ClaimCaps,
    ) -> Result<Option<OneStepClaim>> {
        let Backend::Pg { client, .. } = &self.backend else {
            return Ok(None);
        };
        let transition = claim.transition();
        if !transition.from.can_transition_to(transition.to) {
            return Err(LedgerError::IllegalTransition {
                task: claim.task_id.to_owned(),
                from: transition.from,
                to: transition.to,
            });
        }
        let events = pg::ClaimEvents {
            state_changed: state_changed_event(&transition),
            run_started: run_started_event(run),
        };
        pg::claim_task(client, claim, run, labels, caps, &events).map(Some)
    }

    /// Ends a run as [`Queries::finish_run`] does, in a transaction of its own: on Postgres
    /// one statement (so its rollup rows are held for no round trip), on `SQLite` one write.
    ///
    /// # Errors
    /// The ledger's.
    pub fn finish_run(&mut self, run_id: &str, end: &RunEnd<'_>) -> Result<bool> {
        if let Backend::Pg { client, .. } = &self.backend {
            // One statement outside `BEGIN`: its own transaction, committed before it returns.
            return Queries { db: Db::Pg(client) }.finish_run(run_id, end);
        }
        self.write(|q| q.finish_run(run_id, end))
    }
}
