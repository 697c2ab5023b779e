//! Words stored on a task that decide what happens to it: why it failed (`failure_class`) and
//! what kind of hold it waits in (`hold_kind`). Each enum maps to its stored text in one place;
//! text a version does not know (a newer oxi's, a hand edit) is kept as it is.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::worker::Classification;

/// Why a task's attempt failed, as stored in `tasks.failure_class` and in the
/// `task_state_changed` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureClass {
    /// The worker's run ended with this classification (never `success`).
    Run(Classification),
    /// The change left the allowed roots, touched a protected path or the main checkout.
    Governance,
    /// The diff held a secret.
    SecretInDiff,
    /// The review run was refused by the budget.
    BudgetRefused,
    /// The reviewer rejected the work.
    CriticRejected,
    /// The reviewer asked for changes.
    ChangesRequested,
    /// No attempts or worker calls left.
    AttemptsExhausted,
    /// The reaper ended the task's orphaned run.
    Reaped,
    /// The task's worktree could not be made.
    WorktreeFailed,
    /// The admitted run never started.
    RunNotStarted,
    /// Verification could not run.
    VerifyError,
    /// Verification ran red.
    VerifyFailed,
    /// The worker said it was done but changed nothing.
    NoChanges,
    /// The verified work could not be committed.
    DeliverFailed,
    /// The planner's `OXI_PLAN` block was missing or invalid twice (the run and its retry).
    PlanInvalid,
    /// Text this version does not know, kept as it is.
    Other(String),
}

const RUN_CLASSES: [Classification; 11] = [
    Classification::RateLimited,
    Classification::Transient,
    Classification::WorkerError,
    Classification::Timeout,
    Classification::Stalled,
    Classification::ParseFailure,
    Classification::OutputCapped,
    Classification::SpawnFailed,
    Classification::BudgetExceeded,
    Classification::Killed,
    Classification::AuthFailed,
];

impl FailureClass {
    pub fn as_str(&self) -> &str {
        match self {
            FailureClass::Run(class) => class.as_str(),
            FailureClass::Governance => "governance",
            FailureClass::SecretInDiff => "secret_in_diff",
            FailureClass::BudgetRefused => "budget_refused",
            FailureClass::CriticRejected => "critic_rejected",
            FailureClass::ChangesRequested => "changes_requested",
            FailureClass::AttemptsExhausted => "attempts_exhausted",
            FailureClass::Reaped => "reaped",
            FailureClass::WorktreeFailed => "worktree_failed",
            FailureClass::RunNotStarted => "run_not_started",
            FailureClass::VerifyError => "verify_error",
            FailureClass::VerifyFailed => "verify_failed",
            FailureClass::NoChanges => "no_changes",
            FailureClass::DeliverFailed => "deliver_failed",
            FailureClass::PlanInvalid => "plan_invalid",
            FailureClass::Other(text) => text,
        }
    }

    /// Reads stored text; unknown text is kept as `Other`.
    pub fn parse(text: &str) -> FailureClass {
        const OWN: [FailureClass; 14] = [
            FailureClass::Governance,
            FailureClass::SecretInDiff,
            FailureClass::BudgetRefused,
            FailureClass::CriticRejected,
            FailureClass::ChangesRequested,
            FailureClass::AttemptsExhausted,
            FailureClass::Reaped,
            FailureClass::WorktreeFailed,
            FailureClass::RunNotStarted,
            FailureClass::VerifyError,
            FailureClass::VerifyFailed,
            FailureClass::NoChanges,
            FailureClass::DeliverFailed,
            FailureClass::PlanInvalid,
        ];
        if let Some(class) = RUN_CLASSES.iter().find(|c| c.as_str() == text) {
            return FailureClass::Run(*class);
        }
        OWN.into_iter()
            .find(|c| c.as_str() == text)
            .unwrap_or_else(|| FailureClass::Other(text.to_owned()))
    }
}

impl From<Classification> for FailureClass {
    fn from(class: Classification) -> Self {
        FailureClass::Run(class)
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for FailureClass {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FailureClass {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(FailureClass::parse(&String::deserialize(d)?))
    }
}

/// What a held task waits for, as stored in `tasks.hold_kind`. Decides what `oxi approve`
/// does; the hold's reason text is for people only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldKind {
    /// Verified work touching `governance.needs_approval` paths, committed on its branch:
    /// approving delivers it.
    NeedsApproval,
    /// The estimated cost is over `caps.job_usd`: approving runs it anyway.
    OverEstimate,
    /// Verified work committed on its branch whose review could not happen (no reviewer, a
    /// failed review run, no verdict, no budget room): approving delivers it without review.
    ReviewUnavailable,
    /// Verified work committed on its branch whose review waited for budget room held by runs
    /// in flight: approving delivers it (recorded as a `needs_approval` approval, as before
    /// kinds were stored).
    ReviewOverBudget,
    /// Anything else (a hold set by hand, or one from before kinds were stored): approving
    /// queues it.
    Operator,
    /// `[screen]` flagged the brief for prompt injection (or, failing closed, gave no
    /// verdict): approving queues it, and it is not screened again.
    Screened,
}

impl HoldKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldKind::NeedsApproval => "needs_approval",
            HoldKind::OverEstimate => "over_estimate",
            HoldKind::ReviewUnavailable => "review_unavailable",
            HoldKind::ReviewOverBudget => "review_over_budget",
            HoldKind::Operator => "operator",
            HoldKind::Screened => "screened",
        }
    }

    pub fn parse(text: &str) -> Option<HoldKind> {
        [
            HoldKind::NeedsApproval,
            HoldKind::OverEstimate,
            HoldKind::ReviewUnavailable,
            HoldKind::ReviewOverBudget,
            HoldKind::Operator,
            HoldKind::Screened,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

impl fmt::Display for HoldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an operator approved, as stored in `approvals.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalKind {
    /// Deliver work held for approval (release mode then opens its PR ready to merge).
    NeedsApproval,
    /// Run a task despite its estimate (consumed by the run it admits).
    OverEstimate,
    /// Deliver work whose review could not happen, without the reviewer.
    Review,
    /// Release any other hold.
    Held,
    /// Merge a delivered task's pull request once its checks pass.
    Merge,
}

impl ApprovalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalKind::NeedsApproval => "needs_approval",
            ApprovalKind::OverEstimate => "over_estimate",
            ApprovalKind::Review => "review",
            ApprovalKind::Held => "held",
            ApprovalKind::Merge => "merge",
        }
    }

    /// Reads stored text; `None` for text this version does not know.
    pub fn parse(text: &str) -> Option<ApprovalKind> {
        [
            ApprovalKind::NeedsApproval,
            ApprovalKind::OverEstimate,
            ApprovalKind::Review,
            ApprovalKind::Held,
            ApprovalKind::Merge,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_classes_read_back_from_their_text() {
        for class in RUN_CLASSES {
            assert_eq!(
                FailureClass::parse(class.as_str()),
                FailureClass::Run(class)
            );
        }
        for text in ["governance", "attempts_exhausted", "reaped", "no_changes"] {
            assert_eq!(FailureClass::parse(text).as_str(), text);
            assert!(!matches!(FailureClass::parse(text), FailureClass::Other(_)));
        }
        assert_eq!(
            FailureClass::parse("from_the_future"),
            FailureClass::Other("from_the_future".into())
        );
    }

    #[test]
    fn approval_kinds_read_back_from_their_text() {
        for kind in [
            ApprovalKind::NeedsApproval,
            ApprovalKind::OverEstimate,
            ApprovalKind::Review,
            ApprovalKind::Held,
            ApprovalKind::Merge,
        ] {
            assert_eq!(ApprovalKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn hold_kinds_read_back_from_their_text() {
        for kind in [
            HoldKind::NeedsApproval,
            HoldKind::OverEstimate,
            HoldKind::ReviewUnavailable,
            HoldKind::ReviewOverBudget,
            HoldKind::Operator,
            HoldKind::Screened,
        ] {
            assert_eq!(HoldKind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap_or_default(),
                serde_json::Value::from(kind.as_str())
            );
        }
    }
}
