//! Shadow runs (`[shadow]`, docs/shadow.md): for a sampled share of executor runs the same
//! prompt also runs on the shadow choice, in a sibling worktree checked out (detached) at the
//! commit the primary attempt starts from. The shadow is admitted like any run (it reserves
//! and settles within the day's and month's caps) and within its own `shadow.daily_usd`; its
//! worktree gets the same acceptance commands (tiers 0 and 1) and is then removed. Nothing of
//! it is committed, delivered, pushed or reviewed, and nothing it does changes how the primary
//! job ends: it runs on its own thread, and the pair is recorded once both sides are done.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::verify::{self, CommandResult, CommandRun};
use super::{JobContext, JobResult, JobSpec, worktree};
use crate::clock::{day_of, now_ms};
use crate::config::ShadowConfig;
use crate::ledger::events::{ShadowObserved, ShadowSide};
use crate::ledger::{FailureClass, Ledger};
use crate::money::usd_to_micro;
use crate::runner::{self, RunRequest, RunnerError};
use crate::worker::{Classification, WorkerRole};

/// How one side of a pair ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SideOutcome {
    /// The run ran and ended so.
    Ran(Classification),
    /// `shadow.daily_usd` had no room for the run's reservation: it never started.
    ShadowCap,
    /// The day's or month's cap refused it (a `budget_refused` event says which).
    BudgetRefused,
    /// Its worktree or run could not be set up.
    NotStarted,
}

impl SideOutcome {
    /// As recorded in `shadow_pairs` and `shadow_observed`.
    fn as_str(self) -> &'static str {
        match self {
            SideOutcome::Ran(class) => class.as_str(),
            SideOutcome::ShadowCap => "shadow_cap",
            SideOutcome::BudgetRefused => "budget_refused",
            SideOutcome::NotStarted => "not_started",
        }
    }
}

/// What was decided before the primary starts: the shadow's choice and where it starts from.
struct Plan<'a> {
    worker: &'a str,
    model: Option<String>,
    /// The commit the primary attempt starts from (as `worktree::prepare` will resolve it).
    start_commit: String,
    path: PathBuf,
}

/// Serializes shadow admissions in this process, so two shadows never both fit under
/// `shadow.daily_usd`'s last headroom (only shadows spend against it, and one scheduler process
/// runs at a time).
static ADMIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// True when the attempt is in the sample: a hash of the task id and attempt, so a re-tick of
/// the same attempt decides the same way, and the share over many attempts is `share`.
pub(crate) fn sampled(task_id: &str, attempt: u32, share: f64) -> bool {
    let mut hasher = Sha256::new();
    hasher.update(task_id.as_bytes());
    hasher.update([0]);
    hasher.update(attempt.to_le_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 4];
    first.copy_from_slice(&digest[..4]);
    // 32 bits as a fraction in [0, 1): fine-grained enough for any share an operator sets.
    let fraction = f64::from(u32::from_be_bytes(first)) / 4_294_967_296.0;
    fraction < share
}

/// Runs `primary` (the job), and beside it the shadow when this attempt is sampled. The
/// primary's result is returned as it came; the shadow's own thread is joined after the primary
/// ended (so the job's slot is held until the shadow is recorded and its worktree removed).
pub(super) fn beside<E>(
    ctx: &JobContext<'_>,
    spec: &JobSpec,
    shutdown: &watch::Receiver<bool>,
    primary: impl FnOnce() -> Result<JobResult, E>,
) -> Result<JobResult, E> {
    let Some(plan) = plan(ctx, spec) else {
        return primary();
    };
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<JobResult>();
        let thread = std::thread::Builder::new()
            .name("oxi-shadow".to_owned())
            .spawn_scoped(scope, move || {
                shadow_thread(ctx, spec, &plan, shutdown.clone(), &rx);
            });
        if let Err(e) = &thread {
            tracing::warn!(
                "task {}: the shadow run could not start: {e}",
                spec.task.spec.id
            );
        }
        let result = primary();
        if let Ok(result) = &result {
            let _ = tx.send(result.clone());
        }
        drop(tx);
        if let Ok(thread) = thread
            && thread.join().is_err()
        {
            tracing::warn!(
                "task {}: the shadow run's thread panicked",
                spec.task.spec.id
            );
        }
        result
    })
}

/// The shadow's choice when this attempt is sampled, its rule is in, and the choice differs
/// from the primary's; `None` otherwise.
fn plan<'a>(ctx: &'a JobContext<'_>, spec: &JobSpec) -> Option<Plan<'a>> {
    let config = &ctx.config.config;
    let shadow: &ShadowConfig = &config.shadow;
    let worker = shadow.enabled_worker()?;
    let route = spec.routes.executor.route.as_str();
    if (!shadow.rules.is_empty() && !shadow.rules.iter().any(|r| r == route))
        || shadow.skip_rules.iter().any(|r| r == route)
    {
        return None;
    }
    if !sampled(&spec.task.spec.id, spec.attempt, shadow.sample) {
        return None;
    }
    let model = shadow
        .model
        .clone()
        .or_else(|| config.workers.get(worker).and_then(|w| w.model.clone()));
    if worker == spec.worker && model == spec.routes.executor.model {
        // The same choice as the primary: a pair would compare a run with itself.
        return None;
    }
    let repo = &ctx.config.repo_root;
    let base = &config.project.base_branch;
    let start_commit = worktree::resolve(repo, &format!("refs/heads/{}", spec.branch))
        .or_else(|| {
            spec.start_from
                .as_deref()
                .and_then(|c| worktree::resolve(repo, c))
        })
        .or_else(|| worktree::resolve(repo, base))?;
    let mut name = spec.worktree.file_name()?.to_os_string();
    name.push("-shadow");
    Some(Plan {
        worker,
        model,
        start_commit,
        path: spec.worktree.with_file_name(name),
    })
}

/// The shadow's thread: its own runtime and ledger handle; runs the shadow, waits for the
/// primary's result, records the pair.
fn shadow_thread(
    ctx: &JobContext<'_>,
    spec: &JobSpec,
    plan: &Plan<'_>,
    shutdown: watch::Receiver<bool>,
    primary: &mpsc::Receiver<JobResult>,
) {
    let id = &spec.task.spec.id;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::warn!("task {id}: the shadow run could not start: {e}");
            return;
        }
    };
    let mut ledger = match Ledger::open_at(&ctx.config.ledger_at()) {
        Ok(ledger) => ledger,
        Err(e) => {
            tracing::warn!("task {id}: the shadow run could not open the ledger: {e}");
            return;
        }
    };
    let side = runtime.block_on(run_shadow(ctx, spec, plan, &mut ledger, shutdown));
    worktree::discard(&ctx.config.repo_root, &plan.path);
    let Ok(result) = primary.recv() else {
        tracing::warn!("task {id}: the job ended without a result; its shadow is not paired");
        return;
    };
    let primary = primary_side(ctx, &ledger, &result);
    let pair = compare(spec.routes.executor.route.clone(), primary, side);
    if let Err(e) = ledger.write(|q| q.record_shadow_pair(id, spec.attempt, &pair, now_ms())) {
        tracing::warn!("task {id}: could not record its shadow pair: {e}");
    }
}

/// Admits, runs and verifies the shadow; what it did, as one side of the pair.
async fn run_shadow(
    ctx: &JobContext<'_>,
    spec: &JobSpec,
    plan: &Plan<'_>,
    ledger: &mut Ledger,
    shutdown: watch::Receiver<bool>,
) -> ShadowSide {
    let mut side = ShadowSide {
        worker: plan.worker.to_owned(),
        model: plan.model.clone(),
        ..ShadowSide::default()
    };
    let worktree_text = plan.path.display().to_string();
    let request = RunRequest {
        worker_name: plan.worker,
        model: plan.model.as_deref(),
        route: Some(&spec.routes.executor.route),
        prompt: &spec.prompt,
        cwd: &plan.path,
        role: WorkerRole::Shadow,
        task_id: Some(&spec.task.spec.id),
        attempt: spec.attempt,
        worktree: Some(&worktree_text),
        branch: None,
        actor: ctx.actor,
        parent_env: ctx.parent_env.clone(),
        live: None,
        track_files: false,
        run_id: None,
    };
    let outcome = admit(ctx, spec, plan, ledger, request);
    let prepared = match outcome {
        Ok(prepared) => prepared,
        Err(outcome) => {
            outcome.as_str().clone_into(&mut side.outcome);
            return side;
        }
    };
    side.run_id = Some(prepared.run_id.clone());
    let run_dir = prepared.run_dir.clone();
    let redactor = prepared.redactor.clone();
    let report = match prepared.run(ledger, shutdown.clone()).await {
        Ok(report) => report,
        Err(e) => {
            tracing::warn!(
                "task {}: the shadow run failed to run: {e}",
                spec.task.spec.id
            );
            SideOutcome::NotStarted
                .as_str()
                .clone_into(&mut side.outcome);
            return side;
        }
    };
    SideOutcome::Ran(report.classification)
        .as_str()
        .clone_into(&mut side.outcome);
    side.tokens = report.tokens.input + report.tokens.output;
    side.cost_microusd = report.cost_microusd;
    side.duration_ms = report.elapsed_ms;
    if let Ok(diff) = verify::diff(&plan.path, &plan.start_commit) {
        side.files = diff.paths();
        side.lines_changed = diff.changed_lines();
    }
    if report.classification == Classification::Success && !side.files.is_empty() {
        let results = acceptance(ctx, &plan.path, &run_dir, &redactor, &shutdown).await;
        side.green = results.iter().all(CommandResult::passed);
    }
    side
}

/// The shadow's admission: its own daily cap, then the day's and month's caps with its run row
/// and reservation in one transaction (as every run), then its worktree.
fn admit<'r>(
    ctx: &JobContext<'_>,
    spec: &JobSpec,
    plan: &Plan<'_>,
    ledger: &mut Ledger,
    request: RunRequest<'r>,
) -> Result<runner::PreparedRun<'r>, SideOutcome> {
    let id = &spec.task.spec.id;
    let cap = usd_to_micro(ctx.config.config.shadow.daily_usd);
    let reserve = spec.estimate;
    let _guard = ADMIT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let spent = ledger.read().shadow_spend(&day_of(now_ms())).map_err(|e| {
        tracing::warn!("task {id}: the shadow's spend could not be read: {e}");
        SideOutcome::NotStarted
    })?;
    if spent.saturating_add(reserve) > cap {
        tracing::info!(
            "task {id}: no shadow run: shadow.daily_usd has {} left, the run reserves {}",
            crate::money::format_usd((cap - spent).max(0)),
            crate::money::format_usd(reserve)
        );
        return Err(SideOutcome::ShadowCap);
    }
    let prepared = runner::prepare(ctx.config, request).map_err(|e| {
        tracing::warn!("task {id}: the shadow run could not be prepared: {e}");
        SideOutcome::NotStarted
    })?;
    match prepared.admit(ledger, reserve) {
        Ok(()) => {}
        Err(RunnerError::Budget(_)) => return Err(SideOutcome::BudgetRefused),
        Err(e) => {
            tracing::warn!("task {id}: the shadow run could not be admitted: {e}");
            return Err(SideOutcome::NotStarted);
        }
    }
    if let Err(e) = worktree::add_detached(&ctx.config.repo_root, &plan.path, &plan.start_commit) {
        let detail = format!("the shadow's worktree could not be made: {e}");
        tracing::warn!("task {id}: {detail}");
        let _ = prepared.abandon(ledger, &detail);
        return Err(SideOutcome::NotStarted);
    }
    Ok(prepared)
}

/// The acceptance commands of tiers 0 and 1 in the shadow's worktree, as the primary's run
/// (without the workers' secrets and GitHub's token); logs go to the shadow's run directory.
/// Not recorded as verification results: those are the delivered work's.
async fn acceptance(
    ctx: &JobContext<'_>,
    cwd: &Path,
    log_dir: &Path,
    redactor: &crate::redact::Redactor,
    shutdown: &watch::Receiver<bool>,
) -> Vec<CommandResult> {
    let config = &ctx.config.config;
    let withheld: Vec<String> = config
        .workers
        .values()
        .flat_map(|w| w.env.iter().cloned())
        .chain(config.github.as_ref().map(|g| g.token_env.clone()))
        .collect();
    let env = verify::command_env(&ctx.parent_env, &withheld);
    let run = CommandRun {
        cwd,
        env: &env,
        log_dir,
        grace: config.caps.kill_grace.as_duration(),
        redactor,
        shutdown,
    };
    let mut results = Vec::new();
    for (tier, commands) in [
        ("tier0", &config.verify.tier0),
        ("tier1", &config.verify.tier1),
    ] {
        match verify::run_commands(tier, commands, &run).await {
            Ok(more) => results.extend(more),
            Err(e) => {
                tracing::warn!("the shadow's {tier} could not run: {e}");
                // A tier that cannot run is not green.
                results.push(CommandResult {
                    tier: tier.to_owned(),
                    name: format!("({tier})"),
                    status: "error",
                    exit_code: None,
                    duration_ms: 0,
                    log_path: PathBuf::new(),
                    tail: e.to_string(),
                });
            }
        }
        if !results.iter().all(CommandResult::passed) {
            break;
        }
    }
    results
}

/// The primary's side, from its job result and its run row: green when its run succeeded,
/// changed files, reached acceptance and every tier 0 and 1 command passed.
fn primary_side(ctx: &JobContext<'_>, ledger: &Ledger, result: &JobResult) -> ShadowSide {
    let q = ledger.read();
    let run = q.run(&result.run_id).ok().flatten();
    let statuses = q.run_verify_statuses(&result.run_id).unwrap_or_default();
    let verify = &ctx.config.config.verify;
    let has_commands = !verify.tier0.is_empty() || !verify.tier1.is_empty();
    let stopped_before = result.failure_class.as_deref().is_some_and(|class| {
        [
            FailureClass::Governance,
            FailureClass::SecretInDiff,
            FailureClass::VerifyError,
        ]
        .iter()
        .any(|c| c.as_str() == class)
    });
    let succeeded = result.classification.as_deref() == Some(Classification::Success.as_str());
    let acceptance_green = if has_commands {
        !statuses.is_empty() && statuses.iter().all(|s| s == "passed")
    } else {
        true
    };
    let mut side = ShadowSide {
        run_id: Some(result.run_id.clone()),
        worker: result.worker.clone(),
        outcome: result
            .classification
            .clone()
            .unwrap_or_else(|| "unknown".to_owned()),
        green: succeeded && !result.paths.is_empty() && !stopped_before && acceptance_green,
        files: result.paths.clone(),
        lines_changed: result.lines_added + result.lines_removed,
        ..ShadowSide::default()
    };
    if let Some(run) = run {
        side.model = run.model;
        side.tokens = run.input_tokens + run.output_tokens;
        side.cost_microusd = run.cost_microusd;
        side.duration_ms = run
            .ended_at_ms
            .map_or(0, |end| u64::try_from(end - run.started_at_ms).unwrap_or(0));
    }
    side
}

fn signed(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// The pair: the files both touched, the deltas, and `shape_match` (the shadow ran, both
/// sides' verification agreed, and they touched the same set of files).
fn compare(rule: String, primary: ShadowSide, shadow: ShadowSide) -> ShadowObserved {
    let mine: BTreeSet<&String> = primary.files.iter().collect();
    let theirs: BTreeSet<&String> = shadow.files.iter().collect();
    let overlap = mine.intersection(&theirs).map(|f| (*f).clone()).collect();
    let ran = shadow.run_id.is_some() && shadow.outcome != SideOutcome::NotStarted.as_str();
    ShadowObserved {
        rule,
        overlap,
        shape_match: ran && primary.green == shadow.green && mine == theirs,
        cost_delta_microusd: shadow.cost_microusd - primary.cost_microusd,
        duration_delta_ms: signed(shadow.duration_ms) - signed(primary.duration_ms),
        primary,
        shadow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_is_deterministic_and_near_its_share() {
        assert_eq!(sampled("T1-1", 1, 0.5), sampled("T1-1", 1, 0.5));
        assert!(!sampled("T1-1", 1, 0.0));
        assert!(sampled("T1-1", 1, 1.0));
        let hits = (0..4000)
            .filter(|i| sampled(&format!("T-{i}"), 1, 0.2))
            .count();
        assert!((600..1000).contains(&hits), "{hits} of 4000 sampled at 0.2");
    }

    #[test]
    fn shape_match_needs_a_run_the_same_verdict_and_the_same_files() {
        let side = |run: Option<&str>, green: bool, files: &[&str]| ShadowSide {
            run_id: run.map(str::to_owned),
            outcome: "success".into(),
            green,
            files: files.iter().map(|f| (*f).to_owned()).collect(),
            ..ShadowSide::default()
        };
        let p = side(Some("p"), true, &["a", "b"]);
        assert!(compare("r".into(), p.clone(), side(Some("s"), true, &["b", "a"])).shape_match);
        assert!(!compare("r".into(), p.clone(), side(Some("s"), false, &["a", "b"])).shape_match);
        let other = compare("r".into(), p.clone(), side(Some("s"), true, &["a"]));
        assert!(!other.shape_match);
        assert_eq!(other.overlap, vec!["a".to_owned()]);
        assert!(
            !compare(
                "r".into(),
                side(Some("p"), false, &[]),
                side(None, false, &[])
            )
            .shape_match
        );
    }
}
