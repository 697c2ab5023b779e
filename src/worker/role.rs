//! What a worker run is for. Stored as `runs.role` in the ledger and `role` in meta.json.

use std::fmt;

use serde::Serialize;

/// The part a run plays. [`as_str`](Self::as_str) is the one place that names it; the ledger's
/// `runs.role` holds exactly that text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerRole {
    /// Plans (`routing.planner`).
    Planner,
    /// Does a task's work (`routing.executor`).
    Executor,
    /// Judges the executor's work, read-only (`routing.reviewer`).
    Reviewer,
    /// `oxi run`: one run outside the queue.
    Adhoc,
    /// `[shadow]`: an executor run's prompt again on the shadow choice, never delivered.
    Shadow,
}

impl WorkerRole {
    /// The roles `[routing]` names a worker chain for, in the order config checks them.
    pub const ROUTED: [WorkerRole; 3] = [
        WorkerRole::Planner,
        WorkerRole::Executor,
        WorkerRole::Reviewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkerRole::Planner => "planner",
            WorkerRole::Executor => "executor",
            WorkerRole::Reviewer => "reviewer",
            WorkerRole::Adhoc => "adhoc",
            WorkerRole::Shadow => "shadow",
        }
    }

    /// The role stored as `text` (`runs.role`), if oxi knows it.
    pub fn from_stored(text: &str) -> Option<Self> {
        [Self::Adhoc, Self::Shadow]
            .into_iter()
            .chain(Self::ROUTED)
            .find(|r| r.as_str() == text)
    }

    /// A run of this role must leave its worktree as it found it: the CLI gets its own
    /// read-only flags.
    pub fn is_read_only(self) -> bool {
        matches!(self, WorkerRole::Reviewer | WorkerRole::Planner)
    }

    /// A run of this role may write nowhere but its own temp directory (and its CLI's state):
    /// oxi's confinement leaves the worktree and its git metadata out.
    #[must_use]
    pub fn writes_nothing(self) -> bool {
        self == WorkerRole::Planner
    }
}

impl fmt::Display for WorkerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<WorkerRole> for str {
    fn eq(&self, role: &WorkerRole) -> bool {
        self == role.as_str()
    }
}

impl PartialEq<WorkerRole> for String {
    fn eq(&self, role: &WorkerRole) -> bool {
        self == role.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_text_round_trips_and_matches_serde() {
        for role in [WorkerRole::Adhoc, WorkerRole::Shadow]
            .into_iter()
            .chain(WorkerRole::ROUTED)
        {
            assert_eq!(WorkerRole::from_stored(role.as_str()), Some(role));
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
        assert_eq!(WorkerRole::Executor.as_str(), "executor");
        assert_eq!(WorkerRole::Reviewer.as_str(), "reviewer");
        let stored: String = serde_json::from_str("\"executor\"").unwrap();
        assert!(stored == WorkerRole::Executor);
        assert!(*"reviewer" == WorkerRole::Reviewer);
    }
}
