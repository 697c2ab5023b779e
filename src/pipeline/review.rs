//! The review stage (the critic): a green, small diff with no risk trigger is auto-approved
//! without paying for a reviewer run; anything else goes to the reviewer role, whose verdict
//! block decides. The guardrails keep the cheap path for changes a reviewer would wave through.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::ending::{Ending, Outcome, Stop};
use super::verify::{Diff, Verified};
use super::{Job, attribution, worktree};
use crate::clock::now_ms;
use crate::config::CriticConfig;
use crate::ledger::events::{AutoApprove, AutoApproved, ReviewDecided, ReviewDecision, Reviewed};
use crate::ledger::{Event, FailureClass, HoldKind, TaskState, TransitionFields};
use crate::money::{MicroUsd, usd_to_micro};
use crate::prompt::{self, ReviewerPrompt};
use crate::runner::{self, PreparedRun, RunReport, RunRequest, RunnerError};
use crate::worker::{Classification, WorkerRole};

/// Dependency manifests and lockfiles: a change to them is a risk trigger.
const MANIFESTS: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "package.json",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "go.mod",
    "go.sum",
    "pyproject.toml",
    "poetry.lock",
    "uv.lock",
    "Pipfile.lock",
    "Gemfile",
    "Gemfile.lock",
    "pom.xml",
    "build.gradle",
];

/// Removed lines that look like a test: a drop in test count is a risk trigger.
#[allow(clippy::expect_used)] // A constant pattern.
static TEST_MARKER: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"#\[(tokio::)?test\b|\bdef test_|\bfunc Test[A-Z_]|@Test\b|\b(it|test|describe)\s*\(",
    )
    .expect("constant regex")
});

/// Why the reviewer cannot be skipped, if anything.
pub fn risk_triggers(diff: &Diff, file_hints: &[String]) -> Vec<String> {
    let mut triggers = Vec::new();
    let deleted: Vec<&str> = diff
        .files
        .iter()
        .filter(|f| f.status == 'D')
        .map(|f| f.path.as_str())
        .collect();
    if !deleted.is_empty() {
        triggers.push(format!("deletes {}", deleted.join(", ")));
    }
    let manifests: Vec<&str> = diff
        .files
        .iter()
        .map(|f| f.path.as_str())
        .filter(|p| {
            let name = p.rsplit('/').next().unwrap_or(p);
            MANIFESTS.contains(&name) || name.starts_with("requirements")
        })
        .collect();
    if !manifests.is_empty() {
        triggers.push(format!("changes dependencies: {}", manifests.join(", ")));
    }
    let removed_tests = diff
        .patch
        .lines()
        .filter(|l| l.starts_with('-') && !l.starts_with("---"))
        .filter(|l| TEST_MARKER.is_match(l))
        .count();
    if removed_tests > 0 {
        triggers.push(format!("removes {removed_tests} test line(s)"));
    }
    if !file_hints.is_empty() {
        let outside: Vec<&str> = diff
            .files
            .iter()
            .filter(|f| f.status == 'A')
            .map(|f| f.path.as_str())
            .filter(|p| !within_hints(p, file_hints))
            .collect();
        if !outside.is_empty() {
            triggers.push(format!(
                "new files outside the task's file hints: {}",
                outside.join(", ")
            ));
        }
    }
    triggers
}

/// A path is within the hints when it equals one, sits under one (a directory), or matches one
/// as a glob.
pub fn within_hints(path: &str, hints: &[String]) -> bool {
    hints.iter().any(|hint| {
        let hint = hint.trim_end_matches('/');
        path == hint
            || path.starts_with(&format!("{hint}/"))
            || globset::Glob::new(hint).is_ok_and(|g| g.compile_matcher().is_match(path))
    })
}

/// The critic's decision before any reviewer runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Gate {
    /// Skip the reviewer; `review_skipped_reason` says why that is safe.
    AutoApprove { review_skipped_reason: String },
    /// Run the reviewer; `reasons` say why it cannot be skipped.
    Review { reasons: Vec<String> },
}

pub fn gate(config: &CriticConfig, diff: &Diff, verify_green: bool, file_hints: &[String]) -> Gate {
    let mut reasons = Vec::new();
    if !config.auto_approve {
        reasons.push("critic.auto_approve is off".to_owned());
    }
    if !verify_green {
        reasons.push("verification is not green".to_owned());
    }
    if diff.files.len() as u64 > u64::from(config.max_files) {
        reasons.push(format!(
            "{} files changed (critic.max_files = {})",
            diff.files.len(),
            config.max_files
        ));
    }
    if diff.changed_lines() > u64::from(config.max_changed_lines) {
        reasons.push(format!(
            "{} lines changed (critic.max_changed_lines = {})",
            diff.changed_lines(),
            config.max_changed_lines
        ));
    }
    reasons.extend(risk_triggers(diff, file_hints));
    if reasons.is_empty() {
        Gate::AutoApprove {
            review_skipped_reason: format!(
                "auto-approved: verification green, {} file(s) and {} line(s) within critic limits ({} / {}), no risk trigger",
                diff.files.len(),
                diff.changed_lines(),
                config.max_files,
                config.max_changed_lines
            ),
        }
    } else {
        Gate::Review { reasons }
    }
}

/// tier0_fast: only tier0 before review when the recent runs were green and the diff is small
/// (a run of green verifications makes tier1 on a small change cost more time than it tells).
/// Returns the reason when it applies.
pub fn tier0_fast(config: &CriticConfig, recent_green: bool, diff: &Diff) -> Option<String> {
    (config.tier0_fast_after > 0
        && recent_green
        && diff.files.len() as u64 <= u64::from(config.max_files)
        && diff.changed_lines() <= u64::from(config.max_changed_lines))
    .then(|| {
        format!(
            "tier0_fast: the last {} verifications were green and the diff is small ({} files, {} lines); tier1 skipped",
            config.tier0_fast_after,
            diff.files.len(),
            diff.changed_lines()
        )
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    RequestChanges,
    Reject,
}

/// The reviewer's `OXI_REVIEW {json}` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub verdict: Verdict,
    #[serde(default)]
    pub comments: Vec<String>,
    #[serde(default)]
    pub confidence: Option<f64>,
}

#[allow(clippy::expect_used)] // A constant pattern.
static REVIEW_BLOCK: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"(?m)^\s*OXI_REVIEW\s+(\{.*\})\s*$").expect("constant regex")
});

/// The last well-formed review block in `text`.
pub fn parse_review(text: &str) -> Option<Review> {
    REVIEW_BLOCK
        .captures_iter(text)
        .filter_map(|c| serde_json::from_str(&c[1]).ok())
        .last()
}

/// The review stage: auto-approve what the gate lets through, else run the reviewer role on
/// the committed work and act on its verdict. Returns when the work is approved.
pub(super) async fn stage(job: &mut Job<'_>, verified: &Verified) -> Result<(), Stop> {
    let config = job.ctx.config;
    job.move_to(
        TaskState::Reviewing,
        TransitionFields::default(),
        "verified",
        None,
    )?;
    // Verification was green, or the job would have ended before the review.
    let mut gate = gate(
        &config.config.critic,
        &verified.diff,
        true,
        &job.spec.task.spec.file_hints,
    );
    // An explored task's diff that strays outside the plan's expected files is for a reviewer.
    if let Some(stray) = job
        .plan
        .as_ref()
        .and_then(|plan| super::explore::strays(&verified.diff.paths(), plan))
    {
        gate = match gate {
            Gate::AutoApprove { .. } => Gate::Review {
                reasons: vec![stray],
            },
            Gate::Review { mut reasons } => {
                reasons.push(stray);
                Gate::Review { reasons }
            }
        };
    }
    match gate {
        Gate::AutoApprove {
            review_skipped_reason,
        } => {
            job.result.review = Some(review_skipped_reason.clone());
            let run_id = job.result.run_id.clone();
            job.event(
                Some(&run_id),
                Event::ReviewDecided(ReviewDecided::AutoApproved(AutoApproved {
                    decision: AutoApprove::AutoApprove,
                    review_skipped_reason: Some(review_skipped_reason),
                    tier0_fast: verified.tier0_fast.clone(),
                })),
            );
            Ok(())
        }
        Gate::Review { reasons } => {
            let (reviewer, report) = run_reviewer(job, verified, &reasons).await?;
            act_on_verdict(job, &reviewer, &report, &reasons)
        }
    }
}

/// What a held review's reason ends with: how a person delivers it anyway.
fn approve_hint(job: &Job<'_>) -> String {
    format!(
        "review branch {} and `oxi approve {}`",
        job.spec.branch, job.spec.task.spec.id
    )
}

/// Runs the first reviewer of the task's route (`routing.reviewer`, or a matching rule's) once
/// the budget admits it; a reviewer run that did not succeed ends the job. Returns the reviewer
/// and its run.
async fn run_reviewer(
    job: &mut Job<'_>,
    verified: &Verified,
    reasons: &[String],
) -> Result<(String, RunReport), Stop> {
    let config = job.ctx.config;
    let spec = job.spec;
    let Some(route) = spec.routes.reviewer.as_ref() else {
        return Err(Ending::hold(
            HoldKind::ReviewUnavailable,
            format!(
                "needs review ({}) but routing.reviewer is empty; {}",
                reasons.join("; "),
                approve_hint(job)
            ),
            "no reviewer configured",
        )
        .into());
    };
    let reviewer = route.worker.clone();
    let text = reviewer_prompt(job, verified)?;
    let worktree = spec.worktree.display().to_string();
    let request = RunRequest {
        worker_name: &reviewer,
        model: route.model.as_deref(),
        route: Some(&route.route),
        prompt: &text,
        cwd: &spec.worktree,
        role: WorkerRole::Reviewer,
        task_id: Some(&spec.task.spec.id),
        attempt: spec.attempt,
        worktree: Some(&worktree),
        branch: Some(&spec.branch),
        actor: job.ctx.actor,
        parent_env: job.ctx.parent_env.clone(),
        live: None,
        track_files: false,
        run_id: None,
    };
    let prepared = runner::prepare(config, request)?;
    if let Some(warning) = prepared.unpriced_warning() {
        tracing::warn!("task {}: review: {warning}", spec.task.spec.id);
    }
    let floor = usd_to_micro(config.config.caps.estimate_floor_usd);
    let estimate = job
        .ledger
        .read()
        .cost_p90(
            &reviewer,
            WorkerRole::Reviewer.as_str(),
            usd_to_micro(config.config.caps.job_usd),
        )?
        .unwrap_or(floor)
        .max(floor);
    match admit_review(job, &prepared, estimate).await? {
        ReviewRoom::Admitted => {}
        ReviewRoom::CapReached(refusal) => {
            return Err(Ending::new(Outcome::RetryAt {
                class: FailureClass::BudgetRefused,
                at_ms: now_ms() + 3_600_000,
                why: format!("review refused: {refusal}"),
            })
            .salvage("oxi: salvage")
            .into());
        }
        ReviewRoom::NotFreed { refusal, why } => {
            // The verified work is committed on the branch: held for a person rather than
            // queued, whose next attempt would run (and pay) the executor again.
            return Err(Ending::hold(
                HoldKind::ReviewOverBudget,
                format!(
                    "verified and committed on {}; its review waited for budget room held by runs in flight until {why} ({refusal}); review branch {} and `oxi approve {}` delivers it without the reviewer, or `oxi retry {}` runs the task again",
                    spec.branch, spec.branch, spec.task.spec.id, spec.task.spec.id
                ),
                "review waited for budget room",
            )
            .salvage("oxi: salvage")
            .into());
        }
    }
    let anchor = attribution::WorktreeAnchor::take(&spec.worktree);
    let report = prepared.run(&mut job.ledger, job.shutdown.clone()).await?;
    job.note_cost(&report);
    // (A reviewing task cannot go to framework_fix_needed; it fails with the memo.)
    worktree::untouched(job, &anchor, "reviewer", TaskState::Failed)?;
    if worktree::is_dirty(&spec.worktree).unwrap_or(false) {
        // The reviewer is read-only by contract; whatever it changed is not the executor's work.
        let _ = worktree::discard_changes(&spec.worktree);
        tracing::warn!(
            "task {}: the reviewer edited files; discarded",
            spec.task.spec.id
        );
    }
    if report.classification != Classification::Success {
        let class = report.classification.as_str();
        let detail = report.detail.clone().unwrap_or_default();
        let ending = if report.classification.is_retryable() {
            Ending::new(Outcome::Retry {
                class: report.classification.into(),
                failure: format!("the review run ended {class}: {detail}"),
                retryable: true,
                retry_after_ms: report.retry_after_ms,
            })
        } else {
            Ending::hold(
                HoldKind::ReviewUnavailable,
                format!(
                    "the review run ended {class}: {detail}; {}",
                    approve_hint(job)
                ),
                "review failed",
            )
        };
        return Err(ending.salvage("oxi: salvage").into());
    }
    Ok((reviewer, report))
}

/// The reviewer's prompt: the task, the committed diff and how verification went.
fn reviewer_prompt(job: &Job<'_>, verified: &Verified) -> Result<String, Stop> {
    let spec = job.spec;
    let diff = &verified.diff;
    let verification: Vec<String> = verified
        .results
        .iter()
        .map(|r| {
            format!(
                "{} `{}`: {} in {} ms",
                r.tier, r.name, r.status, r.duration_ms
            )
        })
        .collect();
    prompt::reviewer(&ReviewerPrompt {
        id: &spec.task.spec.id,
        title: &spec.task.spec.title,
        brief: &spec.task.spec.body,
        attempt: spec.attempt,
        max_attempts: job.ctx.config.config.caps.max_attempts,
        files: diff.files.len(),
        lines_added: diff.lines_added,
        lines_removed: diff.lines_removed,
        patch: prompt::clip_head(&diff.patch, prompt::PATCH_CLIP),
        verification,
    })
    .map_err(|e| Stop::Runner(RunnerError::Prompt(e.to_string())))
}

/// Records the reviewer's decision and acts on it: approved goes on, changes requested is a
/// failure the caps decide on (the comments go to the next attempt), rejected fails the task,
/// no verdict holds it.
fn act_on_verdict(
    job: &mut Job<'_>,
    reviewer: &str,
    report: &RunReport,
    reasons: &[String],
) -> Result<(), Stop> {
    let text = report.last_message.clone().unwrap_or_default();
    let verdict = parse_review(&text);
    job.event(
        Some(&report.run_id),
        Event::ReviewDecided(ReviewDecided::Reviewed(Reviewed {
            decision: verdict.as_ref().map(|v| match v.verdict {
                Verdict::Approve => ReviewDecision::Approve,
                Verdict::RequestChanges => ReviewDecision::RequestChanges,
                Verdict::Reject => ReviewDecision::Reject,
            }),
            reviewer: reviewer.to_string(),
            review: serde_json::to_value(&verdict).unwrap_or_default(),
            reasons_for_review: reasons.to_vec(),
        })),
    );
    let Some(verdict) = verdict else {
        return Err(Ending::hold(
            HoldKind::ReviewUnavailable,
            format!(
                "the reviewer gave no OXI_REVIEW verdict (run {}); {}",
                report.run_id,
                approve_hint(job)
            ),
            "no verdict",
        )
        .salvage("oxi: salvage")
        .into());
    };
    let comments = if verdict.comments.is_empty() {
        "(no comments)".to_owned()
    } else {
        verdict
            .comments
            .iter()
            .map(|c| format!("- {c}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    match verdict.verdict {
        Verdict::Approve => {
            job.result.review = Some(format!("approved by {reviewer}"));
            Ok(())
        }
        Verdict::RequestChanges => {
            job.result.review = Some(format!("changes requested by {reviewer}"));
            Err(Ending::retry(
                FailureClass::ChangesRequested,
                format!("The reviewer requested changes:\n{comments}"),
                false,
            )
            .salvage("oxi: salvage")
            .into())
        }
        Verdict::Reject => {
            job.result.review = Some(format!("rejected by {reviewer}"));
            Err(Ending::new(Outcome::Fail {
                to: TaskState::Failed,
                class: FailureClass::CriticRejected,
                detail: format!("rejected by the reviewer:\n{comments}"),
                why: format!("the reviewer rejected it: {comments}"),
                failure: Some(comments),
            })
            .salvage("oxi: salvage")
            .into())
        }
    }
}

/// How often a review waiting for budget room looks again.
const REVIEW_ROOM_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// How the reviewer's admission ended.
enum ReviewRoom {
    Admitted,
    /// Spent + the estimate crosses a cap: no run settling can make room.
    CapReached(crate::budget::Refusal),
    /// The room was held by runs in flight and did not free up: oxi is stopping, or the runs
    /// holding it are no longer live (their reservations wait for the reaper).
    NotFreed {
        refusal: crate::budget::Refusal,
        why: &'static str,
    },
}

/// Admits the reviewer run. A refusal only because runs in flight hold the room waits for them
/// to settle (they end by their deadlines) instead of giving up the verified work: it re-reads
/// the totals every second, without writing, and tries again once the estimate fits. The
/// refusal is recorded once.
async fn admit_review(
    job: &mut Job<'_>,
    prepared: &PreparedRun<'_>,
    estimate: MicroUsd,
) -> Result<ReviewRoom, Stop> {
    let id = job.id().to_owned();
    let mut said = false;
    loop {
        let now = now_ms();
        let refusal = match prepared
            .admit_with(&mut job.ledger, estimate, |q| q.count_worker_call(&id, now))
        {
            Ok(()) => return Ok(ReviewRoom::Admitted),
            Err(RunnerError::Budget(refusal)) => refusal,
            Err(e) => return Err(e.into()),
        };
        if !refusal.waits_for_runs_in_flight() {
            return Ok(ReviewRoom::CapReached(refusal));
        }
        if !said {
            tracing::info!("task {id}: the review waits for budget room: {refusal}");
            said = true;
        }
        loop {
            if *job.shutdown.borrow() {
                return Ok(ReviewRoom::NotFreed {
                    refusal,
                    why: "oxi was stopped",
                });
            }
            // Which runs are live, then the totals: a run that settles between the two reads
            // shows in the totals, so "nothing live" below never hides room it just freed.
            let now = now_ms();
            let live = job
                .ledger
                .read()
                .running_runs()?
                .iter()
                .any(|r| r.lease_expires_at_ms.is_none_or(|at| at > now));
            let totals = job
                .ledger
                .read()
                .spend_totals(&crate::clock::day_of(now), &crate::clock::month_of(now))?;
            match crate::budget::admit(&totals, estimate, &prepared.caps) {
                Err(again) if again.waits_for_runs_in_flight() => {}
                // It fits, or it never will: the admission decides (and records a refusal).
                _ => break,
            }
            if !live {
                return Ok(ReviewRoom::NotFreed {
                    refusal,
                    why: "no run holding it was live any more",
                });
            }
            let mut shutdown = job.shutdown.clone();
            tokio::select! {
                () = tokio::time::sleep(REVIEW_ROOM_RECHECK) => {}
                Ok(()) = shutdown.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::verify::ChangedFile;

    fn diff(files: &[(&str, char, u64, u64)], patch: &str) -> Diff {
        Diff {
            files: files
                .iter()
                .map(|(p, s, a, r)| ChangedFile {
                    path: (*p).into(),
                    status: *s,
                    added: *a,
                    removed: *r,
                })
                .collect(),
            lines_added: files.iter().map(|f| f.2).sum(),
            lines_removed: files.iter().map(|f| f.3).sum(),
            patch: patch.into(),
        }
    }

    #[test]
    fn small_green_diffs_inside_hints_are_auto_approved() {
        let config = CriticConfig::default();
        let d = diff(&[("src/a.rs", 'M', 10, 2)], "");
        assert!(matches!(
            gate(&config, &d, true, &["src/".into()]),
            Gate::AutoApprove { .. }
        ));
        assert!(matches!(gate(&config, &d, false, &[]), Gate::Review { .. }));
    }

    #[test]
    fn risk_triggers_force_a_review() {
        let d = diff(
            &[
                ("Cargo.toml", 'M', 1, 0),
                ("old.rs", 'D', 0, 5),
                ("x/new.rs", 'A', 3, 0),
            ],
            "-#[test]\n-fn it_works() {}\n",
        );
        let triggers = risk_triggers(&d, &["src/**".into()]);
        assert_eq!(triggers.len(), 4, "{triggers:?}");
    }

    fn limits(max_files: u32, max_changed_lines: u32) -> CriticConfig {
        CriticConfig {
            max_files,
            max_changed_lines,
            tier0_fast_after: 5,
            ..CriticConfig::default()
        }
    }

    #[test]
    fn the_critic_limits_are_inclusive() {
        let config = limits(2, 10);
        let at_limits = diff(&[("src/a.rs", 'M', 4, 2), ("src/b.rs", 'M', 3, 1)], "");
        assert!(matches!(
            gate(&config, &at_limits, true, &[]),
            Gate::AutoApprove { .. }
        ));
        let files = diff(
            &[
                ("src/a.rs", 'M', 1, 0),
                ("src/b.rs", 'M', 1, 0),
                ("src/c.rs", 'M', 1, 0),
            ],
            "",
        );
        let Gate::Review { reasons } = gate(&config, &files, true, &[]) else {
            panic!("three files are over critic.max_files = 2");
        };
        assert_eq!(reasons, ["3 files changed (critic.max_files = 2)"]);
        let lines = diff(&[("src/a.rs", 'M', 6, 5)], "");
        let Gate::Review { reasons } = gate(&config, &lines, true, &[]) else {
            panic!("eleven lines are over critic.max_changed_lines = 10");
        };
        assert_eq!(
            reasons,
            ["11 lines changed (critic.max_changed_lines = 10)"]
        );
    }

    #[test]
    fn tier0_fast_needs_green_runs_a_small_diff_and_the_setting_on() {
        let config = limits(2, 10);
        let at_limits = diff(&[("src/a.rs", 'M', 4, 2), ("src/b.rs", 'M', 3, 1)], "");
        assert_eq!(
            tier0_fast(&config, true, &at_limits).as_deref(),
            Some(
                "tier0_fast: the last 5 verifications were green and the diff is small (2 files, 10 lines); tier1 skipped"
            )
        );
        assert_eq!(tier0_fast(&config, false, &at_limits), None);
        let off = CriticConfig {
            tier0_fast_after: 0,
            ..config.clone()
        };
        assert_eq!(tier0_fast(&off, true, &at_limits), None);
        let files = diff(
            &[
                ("src/a.rs", 'M', 1, 0),
                ("src/b.rs", 'M', 1, 0),
                ("src/c.rs", 'M', 1, 0),
            ],
            "",
        );
        assert_eq!(tier0_fast(&config, true, &files), None);
        let lines = diff(&[("src/a.rs", 'M', 6, 5)], "");
        assert_eq!(tier0_fast(&config, true, &lines), None);
    }

    #[test]
    fn only_removed_tests_and_new_files_outside_the_hints_are_risks() {
        // Adding tests, touching a file's `---` header and modifying (not adding) a file
        // outside the hints are ordinary work: no trigger.
        let d = diff(
            &[("docs/guide.md", 'M', 4, 1), ("src/lib.rs", 'M', 3, 0)],
            "--- a/src/lib.rs\n+++ b/src/lib.rs\n+#[test]\n+fn it_works() {}\n-// old comment\n",
        );
        assert_eq!(risk_triggers(&d, &["src/**".into()]), Vec::<String>::new());
        let d = diff(
            &[("src/lib.rs", 'M', 0, 2)],
            "--- a/src/lib.rs\n+++ b/src/lib.rs\n-#[test]\n-fn it_works() {}\n",
        );
        assert_eq!(
            risk_triggers(&d, &["src/**".into()]),
            ["removes 1 test line(s)"]
        );
    }

    #[test]
    fn the_last_review_block_wins() {
        let text = "looks fine\nOXI_REVIEW {\"verdict\":\"request_changes\",\"comments\":[\"x\"]}\nOXI_REVIEW {\"verdict\":\"approve\"}";
        assert_eq!(parse_review(text).unwrap().verdict, Verdict::Approve);
        assert_eq!(parse_review("OXI_REVIEW {\"verdict\":\"maybe\"}"), None);
    }
}
