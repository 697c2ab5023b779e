//! `oxi tick`: one bounded pass of reap → ingest → plan → claim → dispatch → verify → critic →
//! deliver, waiting for the runs it started, then exit. One tick at a time (a file lock);
//! the killswitch stops new claims; every cap is enforced in-process.

use std::time::Instant;

use serde::Serialize;
use tokio::sync::watch;

use super::SchedulerError;
use super::claim::{ClaimRequest, ClaimStop, Claimed};
use super::landed;
use super::outcome::Outcome;
use super::reap::Reaped;
use crate::clock::now_ms;
use crate::config::{LoadedConfig, RunMode};
use crate::github::{GithubClient, GithubWriter};
use crate::ledger::events::{BudgetBreach, TickCompleted};
use crate::ledger::{Event, Ledger, LedgerError, NewEvent, TaskState};
use crate::pipeline::deliver::{ReleaseStop, release_stage};
use crate::pipeline::{JobContext, JobError, JobResult, JobSpec, start_job};
use crate::roadmap::{self, ingest::IngestSummary};
use crate::runner;

/// What one pass did, printed by `oxi tick`.
#[derive(Debug, Clone, Serialize)]
pub struct TickReport {
    pub outcome: Outcome,
    pub mode: RunMode,
    pub reaped: Vec<Reaped>,
    pub ingest: Option<IngestSummary>,
    /// `[sources.github_issues]`: what the issue sync did (or why GitHub could not be read).
    pub issues: Option<roadmap::github_issues::IssueSync>,
    /// Fast mode: delivered branches found merged into the base branch (now `done`).
    pub landed: Vec<landed::Landed>,
    pub delivered_approved: Vec<String>,
    pub failed_at_claim: Vec<ClaimStop>,
    pub held_at_claim: Vec<ClaimStop>,
    pub deferred: Vec<ClaimStop>,
    /// Why admission refused the next claim (printed as its message).
    #[serde(serialize_with = "as_message")]
    pub budget_refusal: Option<crate::budget::Refusal>,
    pub paused: bool,
    pub blocked: Vec<String>,
    pub jobs: Vec<JobResult>,
    /// Jobs oxi itself could not carry to a recorded stop (the ledger failed under them): their
    /// task stays in flight and the next tick's reaper recovers it.
    pub job_errors: Vec<String>,
    /// Release mode: pushes, pull requests, syncs, merges, follow-ups.
    pub release: Vec<crate::pipeline::deliver::release::ReleaseAction>,
    /// Release mode: why GitHub could not be used this pass (the next tick retries).
    pub github_unavailable: Option<String>,
    pub phases_ms: TickPhases,
}

/// A refusal as the message a person reads (what `--format json` has always printed).
fn as_message<S: serde::Serializer>(
    refusal: &Option<crate::budget::Refusal>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match refusal {
        Some(refusal) => serializer.collect_str(refusal),
        None => serializer.serialize_none(),
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TickPhases {
    pub reap: u64,
    pub ingest: u64,
    pub claim: u64,
    pub jobs: u64,
    pub total: u64,
}

impl TickReport {
    fn empty(mode: RunMode) -> Self {
        Self {
            outcome: Outcome::NothingToDo,
            mode,
            reaped: Vec::new(),
            ingest: None,
            issues: None,
            landed: Vec::new(),
            delivered_approved: Vec::new(),
            failed_at_claim: Vec::new(),
            held_at_claim: Vec::new(),
            deferred: Vec::new(),
            budget_refusal: None,
            paused: false,
            blocked: Vec::new(),
            jobs: Vec::new(),
            job_errors: Vec::new(),
            release: Vec::new(),
            github_unavailable: None,
            phases_ms: TickPhases::default(),
        }
    }

    /// The claim round's stops and refusal, recorded in the report.
    fn record_claim(&mut self, claimed: &mut Claimed) {
        self.failed_at_claim.append(&mut claimed.failed);
        self.held_at_claim.append(&mut claimed.held);
        self.deferred.append(&mut claimed.deferred);
        self.budget_refusal = claimed.budget_refusal.take();
    }

    /// Ends the pass early (blocked, paused, nothing eligible).
    fn stop(mut self, outcome: Outcome, started: Instant) -> Self {
        self.outcome = outcome;
        self.phases_ms.total = started.elapsed().as_millis() as u64;
        self
    }
}

/// Ingests the roadmap when it changed since the last ingest (same bytes: nothing to do, and
/// no write, so a no-op tick costs no fsync).
pub(crate) fn ingest(
    ledger: &mut Ledger,
    config: &LoadedConfig,
    parent_env: &[(String, String)],
) -> Result<Option<IngestSummary>, SchedulerError> {
    // Issues alone may feed the queue: then a missing roadmap file is no roadmap, not an error.
    if config.config.sources.github_issues.is_some() && !config.roadmap_path().exists() {
        return Ok(None);
    }
    let file = roadmap::ingest::RoadmapFile::read(&config.roadmap_path(), &config.repo_root)?;
    if ledger
        .read()
        .kv_get(roadmap::ingest::ROADMAP_HASH_KEY)?
        .as_deref()
        == Some(file.sha256.as_str())
    {
        return Ok(None);
    }
    let mut parsed = file.parse(config.config.project.default_priority_tier)?;
    parsed.mask(&runner::env::redactor_for(config, parent_env));
    Ok(Some(roadmap::ingest::apply(
        ledger,
        &parsed,
        &file.label,
        &file.sha256,
        now_ms(),
    )?))
}

/// One pass, then the notifier's (after the pass's writes committed; it never fails the
/// pass). The caller holds the tick lock.
pub async fn pass(
    config: &LoadedConfig,
    ledger: &mut Ledger,
    parent_env: Vec<(String, String)>,
    actor: &str,
    shutdown: watch::Receiver<bool>,
) -> Result<TickReport, SchedulerError> {
    let started_ms = now_ms();
    let env = parent_env.clone();
    // A tick heartbeats at both ends (its runs renew their leases in between). The start beat
    // is skipped when the last is younger than saturate's interval (cron's ticks every minute
    // still beat each time; a no-op tick run in a loop does not pay a synced write per run);
    // the end beat is made when the pass ran jobs (it records the CLI versions they reported).
    let me = crate::host::Identity::of(config);
    let fresh = crate::host::SATURATE_BEAT_EVERY;
    crate::host::heartbeat_unless_fresh(ledger, &me, fresh)?;
    let report = pass_only(config, ledger, parent_env, actor, shutdown).await;
    let ran_jobs = report.as_ref().is_ok_and(|r| !r.jobs.is_empty());
    let beat = if ran_jobs {
        crate::host::heartbeat(ledger, &me)
    } else {
        crate::host::heartbeat_unless_fresh(ledger, &me, fresh)
    };
    if let Err(e) = beat {
        tracing::warn!("host heartbeat: {e}");
    }
    crate::notify::run_pass(config, ledger, &env, started_ms).await;
    report
}

async fn pass_only(
    config: &LoadedConfig,
    ledger: &mut Ledger,
    parent_env: Vec<(String, String)>,
    actor: &str,
    shutdown: watch::Receiver<bool>,
) -> Result<TickReport, SchedulerError> {
    let started = Instant::now();
    let mut report = TickReport::empty(config.config.run.mode);
    settle(config, ledger, &parent_env, &mut report).await?;

    // Release mode: GitHub, checked up front (a bad token blocks the pass), then resume
    // deliveries and follow every open pull request before claiming anything new.
    let github = match open_github(config, &parent_env, &mut report).await {
        Ok(github) => github,
        Err(()) => return Ok(report.stop(Outcome::Blocked, started)),
    };
    let writer = github
        .as_ref()
        .zip(config.release_mode())
        .map(|((client, _), proof)| GithubWriter::new(client, proof));
    let redactor = runner::env::redactor_for(config, &parent_env);
    if let (Some((client, token)), Some(writer)) = (&github, &writer) {
        match release_stage(config, ledger, client, writer, token, &redactor, true).await {
            Ok(actions) => report.release.extend(actions),
            Err(ReleaseStop::Blocked(e)) => {
                report.blocked.push(e.to_string());
                return Ok(report.stop(Outcome::Blocked, started));
            }
            Err(ReleaseStop::Ledger(e)) => return Err(e.into()),
        }
    }

    let tasks = ledger.read().tasks()?;
    let planned = super::plan::plan_with(&tasks, now_ms(), config.stacks_on_delivered());
    if !planned.iter().any(super::plan::PlannedTask::is_eligible) {
        // Nothing to claim: no checks, no writes beyond what reaping needed.
        return Ok(report.stop(Outcome::NothingToDo, started));
    }
    report.blocked = super::dispatch_problems(config, ledger, &parent_env)?;
    if !report.blocked.is_empty() {
        return Ok(report.stop(Outcome::Blocked, started));
    }
    if ledger.read().killswitch()?.is_some_and(|k| k.paused) {
        report.paused = true;
        return Ok(report.stop(Outcome::Paused, started));
    }

    let t = Instant::now();
    let request = ClaimRequest {
        config,
        parent_env: &parent_env,
        actor,
        slots: None,
        github: github.as_ref().map(|(client, _)| client),
        github_unavailable: report.github_unavailable.as_deref(),
    };
    let mut claimed = super::claim::claim(ledger, &request, &tasks, planned).await?;
    report.record_claim(&mut claimed);
    report.phases_ms.claim = t.elapsed().as_millis() as u64;

    let t = Instant::now();
    dispatch(
        config,
        &parent_env,
        actor,
        claimed.admitted,
        shutdown,
        &mut report,
    );
    report.phases_ms.jobs = t.elapsed().as_millis() as u64;

    // Release mode: push and open pull requests for what this pass verified.
    if let (Some((client, token)), Some(writer)) = (&github, &writer) {
        match release_stage(config, ledger, client, writer, token, &redactor, false).await {
            Ok(actions) => {
                for action in &actions {
                    if action.action == "pr_opened"
                        && let Some(job) =
                            report.jobs.iter_mut().find(|j| j.task_id == action.task_id)
                    {
                        job.state = TaskState::Delivered;
                    }
                }
                report.release.extend(actions);
            }
            Err(ReleaseStop::Blocked(e)) => report.blocked.push(e.to_string()),
            Err(ReleaseStop::Ledger(e)) => return Err(e.into()),
        }
    }
    record_period_breach(ledger, config)?;
    report.outcome = final_outcome(&report);
    report.phases_ms.total = started.elapsed().as_millis() as u64;
    record_completed(ledger, &report)?;
    Ok(report)
}

/// The head of every pass: reap, ingest, landed branches, deliveries approved after a hold.
async fn settle(
    config: &LoadedConfig,
    ledger: &mut Ledger,
    parent_env: &[(String, String)],
    report: &mut TickReport,
) -> Result<(), SchedulerError> {
    let t = Instant::now();
    report.reaped = super::reap(ledger, config, &[], parent_env).await?;
    report.phases_ms.reap = t.elapsed().as_millis() as u64;

    let t = Instant::now();
    report.ingest = ingest(ledger, config, parent_env)?;
    report.issues = roadmap::github_issues::sync(ledger, config, parent_env).await?;
    // `[screen]`: every queued brief it covers is judged before a claim can hand it out.
    crate::pipeline::screen::screen_queued(ledger, config, parent_env).await;
    report.phases_ms.ingest = t.elapsed().as_millis() as u64;

    // Delivered branches the operator merged: their dependents may start in this pass.
    report.landed = landed::settle(config, ledger)?;
    // Tasks an operator approved after a hold: their work is committed on their branch.
    if config.config.run.mode == RunMode::Fast {
        report.delivered_approved = crate::pipeline::deliver::deliver_approved(ledger)?;
    }
    Ok(())
}

/// Release mode's GitHub client and token, after the preflight. A transient failure is noted
/// in the report (the pass goes on without GitHub); `Err` when a person must fix something (the
/// problem is in `report.blocked`).
async fn open_github(
    config: &LoadedConfig,
    parent_env: &[(String, String)],
    report: &mut TickReport,
) -> Result<Option<(GithubClient, String)>, ()> {
    if config.release_mode().is_none() {
        return Ok(None);
    }
    match crate::preflight::github_preflight(config, parent_env).await {
        Ok(ready) => Ok(Some(ready)),
        Err(e) if e.is_transient() => {
            report.github_unavailable = Some(e.to_string());
            Ok(None)
        }
        Err(e) => {
            report.blocked.push(e.to_string());
            Err(())
        }
    }
}

/// Runs each admitted job in its own thread (git and acceptance commands block), all awaited.
fn dispatch(
    config: &LoadedConfig,
    parent_env: &[(String, String)],
    actor: &str,
    admitted: Vec<(JobSpec, String)>,
    shutdown: watch::Receiver<bool>,
    report: &mut TickReport,
) {
    let ctx = JobContext {
        config,
        parent_env: parent_env.to_vec(),
        actor,
        // Only worth two git calls when something will run.
        main_before: if admitted.is_empty() {
            None
        } else {
            crate::pipeline::attribution::MainSnapshot::take(&config.repo_root)
        },
    };
    let results: Vec<Result<JobResult, JobError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = admitted
            .into_iter()
            .map(|(spec, run_id)| {
                let ctx = &ctx;
                let shutdown = shutdown.clone();
                scope.spawn(move || start_job(ctx, &spec, &run_id, shutdown))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(JobError::Panicked)))
            .collect()
    });
    for result in results {
        match result {
            Ok(job) => report.jobs.push(job),
            Err(e) => {
                tracing::error!("{e}");
                report.job_errors.push(e.to_string());
            }
        }
    }
}

/// The outcome of a pass that got as far as claiming.
fn final_outcome(report: &TickReport) -> Outcome {
    if report
        .jobs
        .iter()
        .any(|j| matches!(j.state, TaskState::Failed | TaskState::FrameworkFixNeeded))
        || !report.failed_at_claim.is_empty()
        || !report.job_errors.is_empty()
    {
        Outcome::Failures
    } else if !report.jobs.is_empty() {
        Outcome::Dispatched
    } else if let Some(refusal) = &report.budget_refusal {
        Outcome::for_refusal(refusal)
    } else {
        Outcome::NothingToDo
    }
}

/// A `tick_completed` event, when the pass did something (a no-op tick writes nothing).
fn record_completed(ledger: &mut Ledger, report: &TickReport) -> Result<(), LedgerError> {
    let summary = TickCompleted {
        outcome: report.outcome.as_str().to_owned(),
        claimed: report.jobs.iter().map(|j| j.task_id.clone()).collect(),
        reaped: report.reaped.len(),
        budget_refusal: report.budget_refusal.as_ref().map(ToString::to_string),
        ms: report.phases_ms.total,
    };
    let something_happened = report.outcome != Outcome::NothingToDo
        || !report.reaped.is_empty()
        || !report.deferred.is_empty()
        || !report.held_at_claim.is_empty();
    if !something_happened {
        return Ok(());
    }
    ledger.write(|q| {
        q.append_event(&NewEvent {
            at_ms: now_ms(),
            task_id: None,
            run_id: None,
            actor: "oxi",
            event: Event::TickCompleted(summary),
        })
        .map(|_| ())
    })
}

/// A `budget_breach` event once per day or month whose spend ended above its cap.
fn record_period_breach(ledger: &mut Ledger, config: &LoadedConfig) -> Result<(), LedgerError> {
    let now = now_ms();
    let (day, month) = (crate::clock::day_of(now), crate::clock::month_of(now));
    let totals = ledger.read().spend_totals(&day, &month)?;
    let caps = crate::budget::Caps::from_config(&config.config.caps);
    for (scope, period, spent, cap) in [
        ("day", &day, totals.day_spent, caps.daily),
        ("month", &month, totals.month_spent, caps.monthly),
    ] {
        let key = format!("budget_breach:{scope}:{period}");
        if spent > cap && ledger.read().kv_get(&key)?.is_none() {
            ledger.write(|q| {
                q.kv_set(&key, &spent.to_string(), now)?;
                q.append_event(&NewEvent {
                    at_ms: now,
                    task_id: None,
                    run_id: None,
                    actor: "oxi",
                    event: Event::BudgetBreach(BudgetBreach::Period {
                        scope: scope.to_owned(),
                        period: period.clone(),
                        spent_microusd: spent,
                        cap_microusd: cap,
                    }),
                })
                .map(|_| ())
            })?;
        }
    }
    Ok(())
}
