//! What a tick's pass ended with: the word `oxi tick` prints, stores in its `tick_completed`
//! event and reports in `--format json`, and the exit status it maps to (docs/cli.md). Both are
//! produced here and nowhere else.

use serde::Serialize;

use crate::budget::Refusal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing was claimable, or nothing changed.
    NothingToDo,
    /// At least one job ran, none failed.
    Dispatched,
    /// A task ended in a terminal failure (or oxi could not carry a job to a recorded stop).
    Failures,
    /// Admission refused: spent + the estimate crosses a cap; nothing changes before the next
    /// day or month, or a raised cap.
    Budget,
    /// Admission refused only because runs in flight (of this or another process) hold the
    /// room; once they settle a later tick claims, so it is no failure.
    BudgetHeldByRunsInFlight,
    /// The killswitch is engaged.
    Paused,
    /// A doctor-level problem blocks dispatch.
    Blocked,
    /// Another tick holds the lock (printed by `oxi tick` only; no pass ran).
    AlreadyRunning,
}

impl Outcome {
    /// The outcome's word, as printed and stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NothingToDo => "nothing_to_do",
            Self::Dispatched => "dispatched",
            Self::Failures => "failures",
            Self::Budget => "budget",
            Self::BudgetHeldByRunsInFlight => "budget_held_by_runs_in_flight",
            Self::Paused => "paused",
            Self::Blocked => "blocked",
            Self::AlreadyRunning => "already_running",
        }
    }

    /// `oxi tick`'s exit status for this outcome (docs/cli.md).
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Failures => crate::exit::TASK_FAILURES,
            Self::Blocked => crate::exit::BLOCKED,
            Self::Budget => crate::exit::BUDGET,
            Self::NothingToDo
            | Self::Dispatched
            | Self::BudgetHeldByRunsInFlight
            | Self::Paused
            | Self::AlreadyRunning => crate::exit::OK,
        }
    }

    /// A pass that claimed nothing because admission refused.
    pub fn for_refusal(refusal: &Refusal) -> Self {
        if refusal.waits_for_runs_in_flight() {
            Self::BudgetHeldByRunsInFlight
        } else {
            Self::Budget
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Outcome; 8] = [
        Outcome::NothingToDo,
        Outcome::Dispatched,
        Outcome::Failures,
        Outcome::Budget,
        Outcome::BudgetHeldByRunsInFlight,
        Outcome::Paused,
        Outcome::Blocked,
        Outcome::AlreadyRunning,
    ];

    #[test]
    fn words_and_exit_codes_are_the_documented_ones() {
        let table: Vec<(&str, i32)> = ALL.iter().map(|o| (o.as_str(), o.exit_code())).collect();
        assert_eq!(
            table,
            [
                ("nothing_to_do", 0),
                ("dispatched", 0),
                ("failures", 7),
                ("budget", 6),
                ("budget_held_by_runs_in_flight", 0),
                ("paused", 0),
                ("blocked", 8),
                ("already_running", 0),
            ]
        );
    }

    #[test]
    fn json_carries_the_word() {
        for outcome in ALL {
            assert_eq!(
                serde_json::to_value(outcome).ok(),
                Some(serde_json::Value::String(outcome.as_str().to_owned()))
            );
        }
    }
}
