//! The event trail as types: one struct per event kind's `data`, in one enum.
//!
//! The `kind` column holds `EventKind::as_str`; the `data` column holds the variant's payload
//! as a JSON object whose field names and shapes are those every oxi version wrote, so old
//! ledgers read unchanged. Fields a later version added, or that an old row may lack, default
//! on reading. Report SQL reads a few fields with `json_extract`; their names are the consts in
//! [`fields`], used to build that SQL, and a test checks the types still write them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{FailureClass, TaskState, WorkerBlock};
use crate::money::MicroUsd;

/// Declares the event kinds once: each line names the kind, its payload type and the text the
/// `kind` column holds. It makes [`EventKind`] (with `as_str`/`from_text`), [`Event`] (one
/// variant per kind) and the mapping between them, so a kind's text is written in one place.
macro_rules! event_kinds {
    ($($(#[$doc:meta])* $kind:ident($payload:ty) = $text:literal,)+) => {
        /// What happened, as stored in the `kind` column. Every KPI in `oxi report` is derived
        /// from these.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum EventKind {
            $($(#[$doc])* $kind,)+
        }

        impl EventKind {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$kind => $text,)+
                }
            }

            /// The kind a `kind` column's text names; `None` for one this version does not
            /// know.
            pub fn from_text(text: &str) -> Option<EventKind> {
                match text {
                    $($text => Some(EventKind::$kind),)+
                    _ => None,
                }
            }
        }

        /// One event's payload; its variant is its kind.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Event {
            $($kind($payload),)+
        }

        impl Event {
            pub fn kind(&self) -> EventKind {
                match self {
                    $(Event::$kind(_) => EventKind::$kind,)+
                }
            }

            /// The `data` column's JSON: the payload alone, its keys in sorted order (as every
            /// version wrote them).
            pub fn data(&self) -> Value {
                // Each payload serializes on its own: no tagged wrapper to build and take apart.
                let value = match self {
                    $(Event::$kind(payload) => serde_json::to_value(payload),)+
                };
                value.unwrap_or(Value::Null)
            }

            /// Reads a stored row back; `None` for a kind this version does not know or data
            /// that does not fit it (a hand-edited row).
            pub fn parse(kind: &str, data: &Value) -> Option<Event> {
                // Dispatching on the kind first reads the payload straight from the borrowed
                // value, one deserializer per payload type; a tagged enum would buffer it and
                // instantiate a second one for each type.
                match EventKind::from_text(kind)? {
                    $(EventKind::$kind => <$payload>::deserialize(data).ok().map(Event::$kind),)+
                }
            }
        }
    };
}

event_kinds! {
    /// Ingest created a task.
    TaskAdded(TaskAdded) = "task_added",
    /// Ingest changed an unstarted task's text, tier or dependencies.
    TaskUpdated(RoadmapLine) = "task_updated",
    /// A task changed state.
    TaskStateChanged(TaskStateChanged) = "task_state_changed",
    /// An in-flight task's roadmap text changed; the running attempt keeps the old brief.
    TaskChangedInFlight(RoadmapLine) = "task_changed_in_flight",
    /// An in-flight task left the roadmap; it is left to finish.
    TaskRemovedInFlight(TaskRemovedInFlight) = "task_removed_in_flight",
    /// One ingest pass finished.
    IngestCompleted(IngestCompleted) = "ingest_completed",
    /// The killswitch was engaged.
    Paused(Killswitched) = "paused",
    /// The killswitch was released.
    Resumed(Killswitched) = "resumed",
    /// A worker run started (its pid is recorded on the run row).
    RunStarted(RunStarted) = "run_started",
    /// A worker run ended, with its classification and cost.
    RunFinished(RunFinished) = "run_finished",
    /// A run was refused because it could cross a spend cap.
    BudgetRefused(BudgetRefused) = "budget_refused",
    /// A runnable task waited (file overlap with in-flight work).
    TaskDeferred(TaskDeferred) = "task_deferred",
    /// The reaper ended an orphaned run.
    RunReaped(RunReaped) = "run_reaped",
    /// Verification results for one run, per tier.
    Verified(Verified) = "verified",
    /// Governance stopped or held a task (memo: paths and trigger).
    GovernanceMemo(GovernanceMemo) = "governance_memo",
    /// The critic's decision (auto-approve with `review_skipped_reason`, or a reviewer verdict).
    ReviewDecided(ReviewDecided) = "review_decided",
    /// A task's work was committed on its branch (fast mode: the delivery).
    Delivered(Delivered) = "delivered",
    /// A run or a day/month ended above its cap.
    BudgetBreach(BudgetBreach) = "budget_breach",
    /// An operator acted on one task (`oxi retry`, `cancel`, `approve`).
    OperatorAction(OperatorAction) = "operator_action",
    /// One tick pass finished.
    TickCompleted(TickCompleted) = "tick_completed",
    /// A task's branch was pushed and its pull request opened or updated.
    PrOpened(PrOpened) = "pr_opened",
    /// A pull request's checks finished (`first_pass` for the first result of the PR).
    CiResult(CiResult) = "ci_result",
    /// A review was submitted on an oxi pull request.
    PrReviewed(PrReviewed) = "pr_reviewed",
    /// An oxi pull request was merged (by oxi after approval, or by a maintainer).
    PrMerged(PrMerged) = "pr_merged",
    /// An oxi pull request was closed without merging.
    PrClosed(PrClosed) = "pr_closed",
    /// Fast mode: a delivered branch's commit was found on the base branch (an operator merged
    /// it), so the task moved on to `merged` and `done`.
    BranchMerged(BranchMerged) = "branch_merged",
    /// A delivered task went back to work because of CI or review feedback.
    FollowUp(FollowUp) = "follow_up",
    /// `oxi saturate` stopped claiming: the day's cap is reached.
    DailyBudgetReached(DailyBudgetReached) = "daily_budget_reached",
    /// A GitHub step failed; the task waits where it was.
    GithubError(GithubError) = "github_error",
    /// A worker gets no new runs until `oxi doctor` passes it (its CLI could not authenticate).
    WorkerBlocked(WorkerBlock) = "worker_blocked",
    /// `oxi doctor` cleared a worker's block.
    WorkerUnblocked(WorkerUnblocked) = "worker_unblocked",
    /// One sync of GitHub issues into tasks finished.
    IssueSyncCompleted(IssueSyncCompleted) = "issue_sync_completed",
    /// The GitHub issues sync could not read the issues (status and message); nothing changed.
    IssueSyncFailed(IssueSyncFailed) = "issue_sync_failed",
    /// Something in one issue was not taken as written (a truncated body, a tier label out of
    /// range, a dependency that is not a task).
    IssueWarning(IssueWarning) = "issue_warning",
    /// Release mode: oxi wrote (created or edited) its comment on a task's issue.
    IssueCommentWritten(IssueCommentWritten) = "issue_comment_written",
    /// An inference-gateway provider could not be reached: the features routed to it are off
    /// until it answers again.
    GatewayUnavailable(GatewayUnavailable) = "gateway_unavailable",
    /// A provider that was off answered again.
    GatewayRestored(GatewayRestored) = "gateway_restored",
    /// `oxi restore` replaced the ledger with a backup (recorded in the restored ledger).
    LedgerRestored(LedgerRestored) = "ledger_restored",
    /// The planner's `OXI_PLAN` block was stored: what the executor's prompt now carries.
    PlanRecorded(PlanRecorded) = "plan_recorded",
    /// The planner's answer had no valid `OXI_PLAN` block (the field and what is wrong).
    PlanInvalid(PlanInvalid) = "plan_invalid",
    /// An executor run and its shadow both ended: each side's outcome and the comparison.
    ShadowObserved(ShadowObserved) = "shadow_observed",
    /// A worker's CLI failed the live probe: routing skips it until a probe passes.
    WorkerQuarantined(WorkerQuarantined) = "worker_quarantined",
    /// `[triage]`: the gateway's summary of why a run was reaped or a task failed for good.
    TriageSummary(TriageSummary) = "triage_summary",
    /// `[triage]` got no summary (provider down, a cap, an empty answer); nothing else changed.
    TriageSkipped(TriageSkipped) = "triage_skipped",
    /// `[screen]`'s verdict on a brief (also its cache, by the brief's digest).
    ScreenVerdict(ScreenVerdict) = "screen_verdict",
    /// `[screen]` got no verdict (provider down, a cap, an unparseable answer): what it did.
    ScreenFailed(ScreenFailed) = "screen_failed",
    /// One auto-improve source could not be read (its cause); the scan went on without it.
    ImproveSourceFailed(ImproveSourceFailed) = "improve_source_failed",
    /// An auto-improve scan finished: candidates found, proposals staged, sources failed.
    ImproveScanCompleted(ImproveScanCompleted) = "improve_scan_completed",
    /// The operator accepted or rejected an auto-improve proposal.
    ImproveProposalDecided(ImproveProposalDecided) = "improve_proposal_decided",
    /// Auto-improve paused itself: too few of its proposals were accepted (the figures).
    ImprovePaused(ImprovePaused) = "improve_paused",
    /// `oxi improve unpause` resumed auto-improve.
    ImproveUnpaused(ImproveUnpaused) = "improve_unpaused",
    /// A retry continues the agent's session of an earlier run, with the failure appended.
    SessionResumed(SessionResumed) = "session_resumed",
    /// A retry starts the agent from nothing, and why it could not continue the session.
    SessionFresh(SessionFresh) = "session_fresh",
    /// Auto-improve's embeddings could not be had (the model, the cause): the scan ranked by
    /// BM25 alone.
    ImproveEmbeddingsFailed(ImproveEmbeddingsFailed) = "improve_embeddings_failed",
    /// `[routing] summary`: the gateway's summary of what a pull request changes and why.
    PrSummary(PrSummary) = "pr_summary",
    /// `[routing] summary` got no summary (provider down, a cap, an empty answer): the pull
    /// request went out without one.
    PrSummarySkipped(PrSummarySkipped) = "pr_summary_skipped",
}

/// The `data` field names report SQL reads with `json_extract` / `json_type`, and the values
/// it compares them with.
pub mod fields {
    /// `governance_memo.trigger` (a [`super::GovernanceMemo`]'s tag).
    pub const TRIGGER: &str = "trigger";
    /// The trigger that is a hold for approval, not a violation.
    pub const TRIGGER_NEEDS_APPROVAL: &str = "needs_approval";
    /// `ci_result.green`.
    pub const GREEN: &str = "green";
    /// `ci_result.first_pass`.
    pub const FIRST_PASS: &str = "first_pass";
    /// `review_decided.decision`.
    pub const DECISION: &str = "decision";
    /// The decision of an auto-approval.
    pub const DECISION_AUTO_APPROVE: &str = "auto_approve";
    /// `review_decided.review_skipped_reason`.
    pub const REVIEW_SKIPPED_REASON: &str = "review_skipped_reason";
}

/// `task_added`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskAdded {
    pub state: TaskState,
    #[serde(default)]
    pub line: u32,
    #[serde(default)]
    pub priority_tier: u8,
    #[serde(default)]
    pub format: String,
}

/// `task_updated`, `task_changed_in_flight`: the task's line in the roadmap.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RoadmapLine {
    pub line: u32,
}

/// `task_state_changed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStateChanged {
    pub from: TaskState,
    pub to: TaskState,
    #[serde(default)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_class: Option<FailureClass>,
}

/// `task_removed_in_flight`: the state it was in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRemovedInFlight {
    pub state: TaskState,
}

/// `ingest_completed`: the roadmap read and what changed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestCompleted {
    pub roadmap: String,
    pub sha256: String,
    pub items: usize,
    pub added: usize,
    pub updated: usize,
    pub abandoned: usize,
    pub marked_done: usize,
    pub reopened: usize,
    pub warnings: usize,
}

/// `paused`, `resumed`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Killswitched {
    pub reason: Option<String>,
}

/// `run_started`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunStarted {
    pub role: String,
    pub worker: String,
    pub worker_kind: String,
    pub model: Option<String>,
    pub attempt: u32,
    pub reserved_microusd: MicroUsd,
    pub run_dir: String,
}

/// A run's token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Tokens {
    pub input: u64,
    pub cached_input: u64,
    pub output: u64,
    pub reasoning: u64,
}

/// `run_finished`: how the run ended, plus the fields of the worker's own summary.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunFinished {
    pub classification: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stop_reason: Option<String>,
    pub cost_microusd: MicroUsd,
    pub tokens: Tokens,
    pub parse_failures: u64,
    pub bytes_cut: u64,
    pub detail: Option<String>,
    /// The run's summary (its shape is the worker adapter's); its keys sit beside the others
    /// and win over them.
    #[serde(flatten)]
    pub summary: serde_json::Map<String, Value>,
}

/// What a run's end adds to its `run_finished` event beside the fields every run has; the
/// keys each variant writes are the ones [`RunSummary::into_fields`] names, and `oxi show` and
/// the report read them back through [`RunFinished::summary`].
#[derive(Debug, Clone, PartialEq, Default)]
pub enum RunSummary {
    /// Nothing more.
    #[default]
    Bare,
    /// The run never started (its worktree could not be made, say).
    NotStarted,
    /// The runner saw the run to its end.
    Ran {
        files_changed: Vec<String>,
        elapsed_ms: u64,
        /// Where its cost came from (the worker's report, a rate card, none).
        cost_source: String,
        /// Ledger writes that failed while the run went on (the run still ended).
        ledger_errors: Vec<String>,
        /// How the run was confined (the confinement module's own shape; null when none).
        protection: Value,
    },
    /// The reaper ended the run.
    Reaped {
        group_ended: bool,
        /// Where its charge came from (published, run artifacts, reservation).
        cost_source: String,
    },
}

impl RunSummary {
    /// The keys written into `run_finished`, as every version of oxi wrote them.
    pub fn into_fields(self) -> serde_json::Map<String, Value> {
        let mut fields = serde_json::Map::new();
        match self {
            RunSummary::Bare => {}
            RunSummary::NotStarted => {
                fields.insert("started".into(), Value::Bool(false));
            }
            RunSummary::Ran {
                files_changed,
                elapsed_ms,
                cost_source,
                ledger_errors,
                protection,
            } => {
                fields.insert("files_changed".into(), files_changed.into());
                fields.insert("elapsed_ms".into(), elapsed_ms.into());
                fields.insert("cost_source".into(), cost_source.into());
                fields.insert("ledger_errors".into(), ledger_errors.into());
                fields.insert("protection".into(), protection);
            }
            RunSummary::Reaped {
                group_ended,
                cost_source,
            } => {
                fields.insert("group_ended".into(), group_ended.into());
                fields.insert("cost_source".into(), cost_source.into());
            }
        }
        fields
    }
}

/// `budget_refused`: the worker and the budget's refusal (its figures).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BudgetRefused {
    pub worker: String,
    pub refusal: Value,
}

/// `ledger_restored`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LedgerRestored {
    /// The backup file restored.
    pub from: String,
    /// Where the replaced ledger was kept, if there was one.
    pub kept_aside: Option<String>,
    /// The backup's schema version (the ledger was then brought up to date).
    pub schema_version: i64,
    /// Runs the backup had marked running (the next tick reaps or requeues them).
    pub running_runs: Vec<String>,
}

/// `task_deferred`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskDeferred {
    pub reason: String,
}

/// `run_reaped`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunReaped {
    pub reason: String,
    pub pgid: Option<u32>,
    pub group_ended: bool,
}

/// A change's size and paths.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Change {
    pub files: u64,
    pub lines_added: u64,
    pub lines_removed: u64,
    pub paths: Vec<String>,
}

/// `verified`: the acceptance results of one run, this run's own change (the top-level size
/// and paths) and what the branch holds against the base (`delivery`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Verified {
    pub green: bool,
    /// One object per acceptance command (the verifier's result shape).
    pub results: Value,
    pub tier1_skipped: Option<String>,
    pub files: u64,
    pub lines_added: u64,
    pub lines_removed: u64,
    pub paths: Vec<String>,
    pub delivery: Option<Change>,
    /// How the run was confined (the confinement's own shape), if recorded.
    pub protection: Value,
    pub main_checkout_unattributed: Vec<String>,
}

/// `governance_memo`, by what triggered it (the `trigger` field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "trigger", rename_all = "snake_case")]
pub enum GovernanceMemo {
    /// The worker changed the worktree's git metadata.
    WorktreeMetadata {
        #[serde(default)]
        memo: String,
        #[serde(default)]
        paths: Vec<String>,
    },
    /// Paths outside the allowed roots, protected paths, or writes to the main checkout.
    Governance {
        #[serde(default)]
        memo: String,
        #[serde(default)]
        outside: Vec<String>,
        #[serde(default)]
        protected: Vec<String>,
        #[serde(default)]
        main_checkout: Vec<String>,
    },
    /// A secret in the diff (where, never the value).
    SecretInDiff {
        #[serde(default)]
        memo: String,
        #[serde(default)]
        places: Vec<String>,
    },
    /// A read-only run (the planner) wrote, or tried to write, these paths; what it wrote was
    /// discarded.
    ReadOnlyWrite {
        #[serde(default)]
        memo: String,
        #[serde(default)]
        paths: Vec<String>,
        /// What found them: `worktree_diff` (the worktree changed), `write_events` (the CLI
        /// announced a write, refused or not).
        #[serde(default)]
        detectors: Vec<String>,
    },
    /// Paths that need an operator's approval; the verified work is committed.
    NeedsApproval {
        #[serde(default)]
        memo: String,
        #[serde(default)]
        paths: Vec<String>,
        #[serde(default)]
        commit: Option<String>,
    },
}

impl GovernanceMemo {
    pub fn trigger(&self) -> &'static str {
        match self {
            GovernanceMemo::WorktreeMetadata { .. } => "worktree_metadata",
            GovernanceMemo::Governance { .. } => "governance",
            GovernanceMemo::SecretInDiff { .. } => "secret_in_diff",
            GovernanceMemo::ReadOnlyWrite { .. } => "read_only_write",
            GovernanceMemo::NeedsApproval { .. } => fields::TRIGGER_NEEDS_APPROVAL,
        }
    }

    pub fn memo(&self) -> &str {
        match self {
            GovernanceMemo::WorktreeMetadata { memo, .. }
            | GovernanceMemo::Governance { memo, .. }
            | GovernanceMemo::SecretInDiff { memo, .. }
            | GovernanceMemo::ReadOnlyWrite { memo, .. }
            | GovernanceMemo::NeedsApproval { memo, .. } => memo,
        }
    }
}

/// `review_decided`: auto-approved by the critic, or a reviewer's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReviewDecided {
    AutoApproved(AutoApproved),
    Reviewed(Reviewed),
}

/// The one value of an auto-approval's `decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum AutoApprove {
    #[default]
    #[serde(rename = "auto_approve")]
    AutoApprove,
}

/// The critic skipped the reviewer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoApproved {
    pub decision: AutoApprove,
    #[serde(default)]
    pub review_skipped_reason: Option<String>,
    #[serde(default)]
    pub tier0_fast: Option<String>,
}

/// A reviewer's verdict, as the ledger stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    Approve,
    RequestChanges,
    Reject,
}

/// A reviewer ran: its verdict (`None` when it gave none), the verdict block and why the
/// review was needed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Reviewed {
    pub decision: Option<ReviewDecision>,
    pub reviewer: String,
    /// The reviewer's `OXI_REVIEW` block (the critic's shape), or null.
    pub review: Value,
    pub reasons_for_review: Vec<String>,
}

/// How a delivery was made (only fast mode records `delivered`; release mode opens a PR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    #[default]
    Fast,
}

/// `delivered`: after an approval (the work was committed earlier), or by the job itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Delivered {
    AfterApproval(DeliveredAfterApproval),
    Job(DeliveredJob),
}

impl Delivered {
    /// The commit the delivery put on the branch, when it recorded one.
    pub fn commit(&self) -> Option<&str> {
        match self {
            Delivered::AfterApproval(_) => None,
            Delivered::Job(job) => job.commit.as_deref(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveredAfterApproval {
    #[serde(default)]
    pub mode: DeliveryMode,
    #[serde(default)]
    pub branch: Option<String>,
    /// Always true; its presence tells this shape from the job's.
    pub after_approval: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveredJob {
    pub mode: DeliveryMode,
    pub branch: String,
    pub commit: Option<String>,
    pub files: u64,
    pub lines_added: u64,
    pub lines_removed: u64,
    pub review: Option<String>,
    pub cost_microusd: MicroUsd,
}

/// `budget_breach`: a day or month that ended above its cap, or one run above the job cap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BudgetBreach {
    Period {
        /// `day` or `month`.
        scope: String,
        /// The day or month (`YYYY-MM-DD`, `YYYY-MM`).
        period: String,
        spent_microusd: MicroUsd,
        cap_microusd: MicroUsd,
    },
    Job {
        /// `job`.
        scope: String,
        #[serde(default)]
        cost_microusd: MicroUsd,
        #[serde(default)]
        cap_microusd: MicroUsd,
    },
}

/// `operator_action`: a state change an operator asked for, or an approved merge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OperatorAction {
    Transition {
        /// `approve`, `retry`, `cancel`, `done`.
        action: String,
        from: TaskState,
        to: TaskState,
        #[serde(default)]
        note: Option<String>,
    },
    Merge {
        /// `approve_merge`.
        action: String,
        #[serde(default)]
        pr: Option<u64>,
        #[serde(default)]
        note: Option<String>,
    },
}

/// `tick_completed`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TickCompleted {
    pub outcome: String,
    pub claimed: Vec<String>,
    pub reaped: usize,
    pub budget_refusal: Option<String>,
    pub ms: u64,
}

/// `pr_opened`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PrOpened {
    pub number: u64,
    pub url: Option<String>,
    pub branch: String,
    pub draft: bool,
    pub labels: Vec<String>,
}

/// One check of a `ci_result`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Check {
    pub name: String,
    pub conclusion: Option<String>,
}

/// `ci_result`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CiResult {
    pub number: u64,
    pub sha: String,
    pub green: bool,
    pub first_pass: bool,
    pub checks: Vec<Check>,
}

/// `pr_reviewed`: the review's state as GitHub names it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PrReviewed {
    pub number: u64,
    pub state: String,
}

/// Who merged an oxi pull request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergedBy {
    #[default]
    Maintainer,
    Oxi,
}

/// `pr_merged`; `approved_by` is the operator whose approval oxi merged on.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PrMerged {
    pub number: u64,
    pub by: MergedBy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
}

/// `pr_closed`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PrClosed {
    pub number: u64,
}

/// `branch_merged`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BranchMerged {
    pub branch: Option<String>,
    pub commit: String,
    pub base_branch: String,
}

/// `follow_up`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FollowUp {
    pub pr: Option<u64>,
}

/// `daily_budget_reached`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DailyBudgetReached {
    pub refusal: String,
    pub in_flight: usize,
}

/// `github_error`: the release step that failed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GithubError {
    pub step: String,
    pub error: String,
}

/// `worker_unblocked`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerUnblocked {
    pub worker: String,
    pub why: String,
}

/// `issue_sync_completed`: the issues read and what changed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct IssueSyncCompleted {
    /// `owner/name`.
    pub repo: String,
    /// Open issues that carry the labels and pass the filters.
    pub issues: usize,
    /// Pull requests the issues list returned (GitHub lists them there too); never tasks.
    pub pull_requests_skipped: usize,
    pub added: usize,
    pub updated: usize,
    pub reopened: usize,
    pub cancelled: usize,
    pub abandoned: usize,
    pub warnings: usize,
}

/// `issue_sync_failed`: GitHub's status (none for a network error) and message.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct IssueSyncFailed {
    pub repo: String,
    pub status: Option<u16>,
    pub message: String,
}

/// `issue_warning`: what in issue `number` was not taken as written.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct IssueWarning {
    pub number: u64,
    pub message: String,
}

/// `issue_comment_written`: the comment on issue `number` now reports `stage`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct IssueCommentWritten {
    pub number: u64,
    pub comment_id: u64,
    pub stage: String,
    /// True when the comment was created (once per issue), false when it was edited.
    pub created: bool,
}

/// `gateway_unavailable`: a provider failed to answer; what it disables and until when.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewayUnavailable {
    pub provider: String,
    /// The role whose call found it down.
    pub role: String,
    /// The gateway features that are off while it is down (its roles).
    pub disabled: Vec<String>,
    pub reason: String,
    pub until_ms: i64,
}

/// `gateway_restored`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewayRestored {
    pub provider: String,
}

/// `plan_recorded`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRecorded {
    pub files_expected: Vec<String>,
    pub steps: usize,
    /// The executor's prompt with the whole brief, and the one it is sent (with the plan).
    pub full_prompt_bytes: u64,
    pub prompt_bytes: u64,
    /// `false` when a retry reuses the plan an earlier attempt's planner gave.
    #[serde(default)]
    pub fresh: bool,
}

/// `plan_invalid`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanInvalid {
    pub error: String,
    /// Whether the planner runs once more.
    pub retry: bool,
}

/// `shadow_observed`: one shadow pair (also a `shadow_pairs` row; docs/shadow.md).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ShadowObserved {
    /// The routing rule (or `default`) the primary ran by.
    pub rule: String,
    pub primary: ShadowSide,
    pub shadow: ShadowSide,
    /// Files both sides touched.
    pub overlap: Vec<String>,
    /// Both verified green or both not, and the same set of files touched.
    pub shape_match: bool,
    /// Shadow minus primary.
    pub cost_delta_microusd: i64,
    pub duration_delta_ms: i64,
}

/// One side of a shadow pair.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ShadowSide {
    /// `None`: the side never ran (the shadow's cap was reached, say).
    pub run_id: Option<String>,
    pub worker: String,
    pub model: Option<String>,
    /// The run's classification, or why it never ran (`shadow_cap`, `budget_refused`,
    /// `not_started`).
    pub outcome: String,
    /// It succeeded, changed files, and every acceptance command of tiers 0 and 1 passed.
    pub green: bool,
    pub files: Vec<String>,
    pub lines_changed: u64,
    pub tokens: u64,
    pub cost_microusd: i64,
    pub duration_ms: u64,
}

/// `worker_quarantined`: the version that failed the probe and the first expectation it
/// missed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerQuarantined {
    pub worker: String,
    pub version: Option<String>,
    pub mismatch: String,
}

/// What `[triage]` was asked to explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriageTrigger {
    /// The reaper ended a stuck run (its task requeued or failed).
    Reaped,
    /// A task failed for good (no attempts left, or a failure no attempt fixes).
    Failed,
}

impl TriageTrigger {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TriageTrigger::Reaped => "reaped",
            TriageTrigger::Failed => "failed",
        }
    }
}

/// `triage_summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriageSummary {
    pub trigger: TriageTrigger,
    /// The gateway's answer, masked, at most a few sentences.
    pub summary: String,
    /// `provider:model` that answered.
    pub choice: String,
    /// The `gateway_calls` row.
    pub call_id: i64,
}

/// `triage_skipped`: why no summary was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriageSkipped {
    pub trigger: TriageTrigger,
    pub reason: String,
}

/// `pr_summary`: the summary a pull request body carries and who wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrSummary {
    pub summary: String,
    /// `provider:model`.
    pub choice: String,
    /// The `gateway_calls` row.
    pub call_id: i64,
}

/// `pr_summary_skipped`: why the pull request has no summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrSummarySkipped {
    pub reason: String,
}

/// `screen_verdict`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScreenVerdict {
    /// The brief's digest (title and text): the same brief is not screened twice.
    pub digest: String,
    pub flagged: bool,
    /// The classifier's reason, masked.
    pub reason: String,
    /// `provider:model` that answered.
    pub choice: String,
    /// The `gateway_calls` row.
    pub call_id: i64,
}

/// `screen_failed`: no verdict, and what was done (`held`: fail closed; else passed unscreened).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScreenFailed {
    pub digest: String,
    pub reason: String,
    pub held: bool,
}

/// `improve_source_failed`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImproveSourceFailed {
    pub source_kind: String,
    pub source: String,
    pub cause: String,
}

/// `improve_scan_completed`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImproveScanCompleted {
    pub scan_id: i64,
    pub candidates: u64,
    pub proposed: u64,
    pub failed_sources: u64,
    /// `bm25`, or `bm25+vector` when embeddings reranked.
    pub ranking: String,
}

/// `improve_proposal_decided`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImproveProposalDecided {
    pub proposal_id: i64,
    /// `accepted` or `rejected`.
    pub verdict: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// `improve_paused`: each 7-day window's figures, older first.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImprovePaused {
    pub windows: Vec<AcceptanceWindow>,
    pub threshold: f64,
    pub reason: String,
}

/// Proposals emitted and accepted in one 7-day window.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AcceptanceWindow {
    pub from_ms: i64,
    pub to_ms: i64,
    pub emitted: u64,
    pub accepted: u64,
}

/// `improve_unpaused`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImproveUnpaused {
    /// Why it had paused.
    pub was: String,
}

/// `improve_embeddings_failed`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImproveEmbeddingsFailed {
    /// `provider:model`, as `improve.embeddings` names it.
    pub model: String,
    pub cause: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(event: &Event) -> serde_json::Map<String, Value> {
        event.data().as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn the_fields_report_sql_reads_are_the_ones_the_types_write() {
        let memo = Event::GovernanceMemo(GovernanceMemo::NeedsApproval {
            memo: "m".into(),
            paths: vec![],
            commit: None,
        });
        assert_eq!(
            data(&memo)[fields::TRIGGER],
            Value::from(fields::TRIGGER_NEEDS_APPROVAL)
        );
        let ci = data(&Event::CiResult(CiResult::default()));
        assert!(ci.contains_key(fields::GREEN) && ci.contains_key(fields::FIRST_PASS));
        let auto = data(&Event::ReviewDecided(ReviewDecided::AutoApproved(
            AutoApproved {
                decision: AutoApprove::AutoApprove,
                review_skipped_reason: Some("small".into()),
                tier0_fast: None,
            },
        )));
        assert_eq!(
            auto[fields::DECISION],
            Value::from(fields::DECISION_AUTO_APPROVE)
        );
        assert_eq!(auto[fields::REVIEW_SKIPPED_REASON], Value::from("small"));
    }

    #[test]
    fn every_shape_reads_back_as_written() {
        let events = [
            Event::TaskStateChanged(TaskStateChanged {
                from: TaskState::Queued,
                to: TaskState::Failed,
                reason: "r".into(),
                held_reason: None,
                failure_class: Some(FailureClass::AttemptsExhausted),
            }),
            Event::Delivered(Delivered::AfterApproval(DeliveredAfterApproval {
                mode: DeliveryMode::Fast,
                branch: Some("b".into()),
                after_approval: true,
            })),
            Event::Delivered(Delivered::Job(DeliveredJob {
                commit: Some("c".into()),
                ..DeliveredJob::default()
            })),
            Event::BudgetBreach(BudgetBreach::Job {
                scope: "job".into(),
                cost_microusd: 2,
                cap_microusd: 1,
            }),
            Event::BudgetBreach(BudgetBreach::Period {
                scope: "day".into(),
                period: "2026-01-01".into(),
                spent_microusd: 2,
                cap_microusd: 1,
            }),
            Event::OperatorAction(OperatorAction::Merge {
                action: "approve_merge".into(),
                pr: Some(3),
                note: None,
            }),
            Event::ReviewDecided(ReviewDecided::Reviewed(Reviewed {
                decision: Some(ReviewDecision::RequestChanges),
                reviewer: "r".into(),
                review: Value::Null,
                reasons_for_review: vec![],
            })),
            Event::PrMerged(PrMerged {
                number: 1,
                by: MergedBy::Oxi,
                approved_by: Some("me".into()),
            }),
        ];
        for event in events {
            let back = Event::parse(event.kind().as_str(), &event.data());
            assert_eq!(back.as_ref(), Some(&event), "{:?}", event.data());
        }
    }

    #[test]
    fn absent_options_keep_their_old_shapes() {
        // Fields every version wrote as null stay null; fields it added only when set stay out.
        let changed = data(&Event::TaskStateChanged(TaskStateChanged {
            from: TaskState::Queued,
            to: TaskState::Dispatched,
            reason: "r".into(),
            held_reason: None,
            failure_class: None,
        }));
        assert_eq!(changed.keys().collect::<Vec<_>>(), ["from", "reason", "to"]);
        let paused = data(&Event::Paused(Killswitched { reason: None }));
        assert_eq!(paused["reason"], Value::Null);
        let merged = data(&Event::PrMerged(PrMerged {
            number: 1,
            by: MergedBy::Maintainer,
            approved_by: None,
        }));
        assert_eq!(merged.keys().collect::<Vec<_>>(), ["by", "number"]);
    }
}

/// `session_resumed`: the retry's run continues the session of run `from_run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionResumed {
    pub from_run: String,
    /// The CLI's session (claude) or thread (codex) id.
    pub session_id: String,
    /// The failure class the earlier attempt stopped with.
    pub after: String,
}

/// Why a retry could not continue the earlier run's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FreshReason {
    /// `run.resume_sessions = false`.
    Disabled,
    /// The task has no earlier executor run.
    NoEarlierRun,
    /// The earlier attempt stopped in a way a session does not survive (or should not).
    NotResumable,
    /// The retry runs on another worker than the session's.
    OtherWorker,
    /// The earlier run's stream gave no session id.
    NoSession,
    /// The worker's CLI has no way to resume from the command line.
    Unsupported,
    /// The CLI said it does not know the session.
    UnknownSession,
    /// A reason this version does not know, kept readable.
    #[serde(other)]
    Other,
}

/// `session_fresh`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionFresh {
    pub reason: FreshReason,
    /// The reason in a sentence, for a reader.
    pub detail: String,
    /// The earlier run whose session was not continued, when there is one.
    #[serde(default)]
    pub from_run: Option<String>,
}
