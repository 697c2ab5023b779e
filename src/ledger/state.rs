//! Task states and the only transitions the ledger will write.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a task is in its life. `queued → dispatched → verifying → reviewing → delivered →
/// merged`, with side exits for holds, retries, failures and governance stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a slot.
    Queued,
    /// Waiting for a human: needs approval, over the per-job cap, or held by an operator.
    Held,
    /// A transient failure; eligible again after its backoff.
    RetryWait,
    /// A worker is running for it.
    Dispatched,
    /// Acceptance commands and governance checks are running.
    Verifying,
    /// The critic (auto-approve guard or reviewer worker) is deciding.
    Reviewing,
    /// Committed locally; a GitHub step failed and the next tick resumes it.
    DeliverPending,
    /// A branch (fast) or a draft pull request (release) exists.
    Delivered,
    /// Its pull request merged.
    Merged,
    /// Finished: checked off in the roadmap, or merged and closed out.
    Done,
    /// Terminal failure with a failure class.
    Failed,
    /// Stopped by governance with a memo; the framework or config must change first.
    FrameworkFixNeeded,
    /// Its pull request was closed unmerged.
    Rejected,
    /// An operator cancelled it.
    Cancelled,
    /// It left the roadmap while nothing was in flight for it.
    Abandoned,
}

impl TaskState {
    pub const ALL: [TaskState; 15] = [
        TaskState::Queued,
        TaskState::Held,
        TaskState::RetryWait,
        TaskState::Dispatched,
        TaskState::Verifying,
        TaskState::Reviewing,
        TaskState::DeliverPending,
        TaskState::Delivered,
        TaskState::Merged,
        TaskState::Done,
        TaskState::Failed,
        TaskState::FrameworkFixNeeded,
        TaskState::Rejected,
        TaskState::Cancelled,
        TaskState::Abandoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Held => "held",
            TaskState::RetryWait => "retry_wait",
            TaskState::Dispatched => "dispatched",
            TaskState::Verifying => "verifying",
            TaskState::Reviewing => "reviewing",
            TaskState::DeliverPending => "deliver_pending",
            TaskState::Delivered => "delivered",
            TaskState::Merged => "merged",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
            TaskState::FrameworkFixNeeded => "framework_fix_needed",
            TaskState::Rejected => "rejected",
            TaskState::Cancelled => "cancelled",
            TaskState::Abandoned => "abandoned",
        }
    }

    /// The legal transitions. Mirrored by the `task_transitions` table (migration 0001), which
    /// the database enforces with a trigger; `transition_table_matches_migration` keeps them equal.
    pub fn can_transition_to(self, to: TaskState) -> bool {
        use TaskState::*;
        matches!(
            (self, to),
            (
                Queued,
                Dispatched | Held | Failed | Cancelled | Abandoned | Done
            ) | (
                Held,
                Queued
                    | Dispatched
                    | DeliverPending
                    | RetryWait
                    | Failed
                    | Cancelled
                    | Abandoned
                    | Done
            ) | (
                RetryWait,
                Dispatched | Queued | Held | Failed | Cancelled | Abandoned | Done
            ) | (
                Dispatched,
                Verifying | RetryWait | Queued | Held | Failed | FrameworkFixNeeded | Cancelled
            ) | (
                Verifying,
                Reviewing | RetryWait | Queued | Held | Failed | FrameworkFixNeeded | Cancelled
            ) | (
                Reviewing,
                DeliverPending | Delivered | RetryWait | Queued | Held | Failed | Cancelled
            ) | (DeliverPending, Delivered | Held | Failed | Cancelled)
                | (
                    Delivered,
                    Merged | Rejected | Dispatched | Queued | Done | Cancelled
                )
                | (Merged, Done)
                | (Done, Queued)
                | (Failed, Queued | Abandoned | Done)
                | (FrameworkFixNeeded, Queued | Cancelled | Abandoned | Done)
                | (Rejected, Queued | Abandoned | Done)
                | (Cancelled, Queued | Abandoned | Done)
                | (Abandoned, Queued | Done)
        )
    }

    /// A worker or a pipeline stage is working on it right now.
    pub fn is_in_flight(self) -> bool {
        matches!(
            self,
            TaskState::Dispatched
                | TaskState::Verifying
                | TaskState::Reviewing
                | TaskState::DeliverPending
        )
    }

    /// Nothing has started for it yet; ingest may rewrite its text.
    pub fn is_unstarted(self) -> bool {
        matches!(
            self,
            TaskState::Queued | TaskState::Held | TaskState::Abandoned
        )
    }

    /// Waiting in the queue (eligible now, or after a backoff or a human).
    pub fn is_waiting(self) -> bool {
        matches!(
            self,
            TaskState::Queued | TaskState::Held | TaskState::RetryWait
        )
    }

    /// Its work is on the base branch, so tasks that depend on it may start.
    pub fn satisfies_dependents(self) -> bool {
        matches!(self, TaskState::Merged | TaskState::Done)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown task state {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for state in TaskState::ALL {
            assert_eq!(state.as_str().parse::<TaskState>().unwrap(), state);
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::Value::String(state.as_str().to_owned())
            );
        }
        assert!("running".parse::<TaskState>().is_err());
    }

    /// Which states are in flight (the reaper and the overlap gate look at these) and which
    /// are unstarted (ingest may rewrite their text): exactly these, no other.
    #[test]
    fn in_flight_and_unstarted_are_exactly_these_states() {
        use TaskState::*;
        let in_flight: Vec<_> = TaskState::ALL
            .into_iter()
            .filter(|s| s.is_in_flight())
            .collect();
        assert_eq!(
            in_flight,
            [Dispatched, Verifying, Reviewing, DeliverPending]
        );
        let unstarted: Vec<_> = TaskState::ALL
            .into_iter()
            .filter(|s| s.is_unstarted())
            .collect();
        assert_eq!(unstarted, [Queued, Held, Abandoned]);
    }

    #[test]
    fn no_state_transitions_to_itself() {
        for state in TaskState::ALL {
            assert!(!state.can_transition_to(state), "{state} -> {state}");
        }
    }

    #[test]
    fn every_state_can_be_left_except_through_its_terminal_path() {
        // Every state has a way out (operators can always retry or close out a task).
        for state in TaskState::ALL {
            assert!(
                TaskState::ALL.iter().any(|to| state.can_transition_to(*to)),
                "{state} is a dead end"
            );
        }
    }
}
