//! One worker run, start to finish: the argv and allow-listed environment for the configured
//! CLI, the run directory, the ledger row with its budget reservation and lease, supervision
//! under every cap, and the settled outcome. `oxi run` calls this directly; the tick calls it
//! for each claimed task.

pub mod artifacts;
pub mod contract;
pub mod env;
pub mod recorder;
pub mod transcript;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::budget::{self, Caps, Refusal};
use crate::clock::{day_of, month_of, now_ms, rfc3339};
use crate::config::{ConfineMode, LoadedConfig, RateCard, WorkerConfig, WorkerKind};
use crate::confine::{Confinement, Protection, RunTemp, Writable};
use crate::git::TreeSnapshot;
use crate::ledger::events::{BudgetRefused, RunSummary};
use crate::ledger::{
    ClaimCaps, Event, Ledger, LedgerError, NewEvent, NewRun, OneStepClaim, RunEnd, RunLabels,
    TaskClaim,
};
use crate::money::{MicroUsd, micro_to_usd};
use crate::process::{self, Limits, ProcessError, Spawn};
use crate::redact::Redactor;
use crate::worker::{self, Classification, Ending, Tokens, WorkerRole};
use artifacts::{ArtifactError, CappedFile};
use env::WorkerEnv;
use recorder::{Files, Recorder};

/// The classification of a run withdrawn before it started ([`PreparedRun::withdraw`]).
pub const WITHDRAWN: &str = "withdrawn";

/// Longest line kept whole; longer lines are truncated, marked, and counted as parse failures.
pub const LINE_CAP: usize = 1024 * 1024;
/// How long oxi keeps reading pipes a worker's grandchildren hold open after it exits.
pub const DRAIN: Duration = Duration::from_secs(2);

/// Errors that prevent a run from being recorded at all. A run that starts and fails is not an
/// error: it is a `RunReport` with a classification.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(
        "no worker named {name:?} in {config} (configured: {known}); add a [workers.{name}] table"
    )]
    UnknownWorker {
        name: String,
        config: String,
        known: String,
    },
    #[error(transparent)]
    Budget(#[from] Refusal),
    #[error("working directory {0} does not exist or is not a directory")]
    BadCwd(PathBuf),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("{0}")]
    Prompt(String),
    #[error(transparent)]
    Confine(#[from] crate::confine::ConfineError),
}

/// What to run.
pub struct RunRequest<'a> {
    pub worker_name: &'a str,
    /// The model the route names for this run, over the worker's own (`None`: the worker's).
    pub model: Option<&'a str>,
    /// The route that chose the worker (a rule's name or `default`); `None` for `oxi run`.
    pub route: Option<&'a str>,
    pub prompt: &'a str,
    pub cwd: &'a Path,
    /// What the run is for (`adhoc` for `oxi run`).
    pub role: WorkerRole,
    pub task_id: Option<&'a str>,
    pub attempt: u32,
    pub worktree: Option<&'a str>,
    pub branch: Option<&'a str>,
    /// `oxi` or `operator:<user>`.
    pub actor: &'a str,
    /// oxi's own environment, from which the worker's allow-list is drawn.
    pub parent_env: Vec<(String, String)>,
    /// Where the transcript streams while the run goes.
    pub live: Option<Box<dyn Write + Send>>,
    /// Snapshot the work tree before and after to report `files_changed` (`oxi run`); the tick
    /// diffs the task branch itself and skips this.
    pub track_files: bool,
    /// Reuse this run id (a run admitted by the claim and started by a job thread); `None`
    /// makes a new one.
    pub run_id: Option<String>,
}

/// How a run ended, as `oxi run` prints it and the tick consumes it.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub worker: String,
    pub worker_kind: WorkerKind,
    pub model: Option<String>,
    pub classification: Classification,
    pub retryable: bool,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stop_reason: Option<process::StopReason>,
    pub tokens: TokenSummary,
    pub cost_usd: f64,
    pub cost_microusd: MicroUsd,
    /// `cli` (the CLI's own figure), `rate_card`, or `unknown`.
    pub cost_source: &'static str,
    pub run_dir: PathBuf,
    pub files_changed: Vec<String>,
    pub elapsed_ms: u64,
    pub cli_version: Option<String>,
    pub session_id: Option<String>,
    pub parse_failures: u64,
    pub bytes_cut: u64,
    pub lines_truncated: u64,
    pub retry_after_ms: Option<u64>,
    /// The worker's `OXI_RESULT {json}` block, when it printed one.
    pub result: Option<serde_json::Value>,
    /// What followed the planner's last `OXI_PLAN` marker, as written (not masked: it is
    /// validated, then stored masked).
    #[serde(skip)]
    pub plan_line: Option<String>,
    /// Paths the model asked an edit tool to write, carried out or refused (relative to the
    /// working directory when inside it).
    #[serde(skip)]
    pub write_attempts: Vec<String>,
    /// The worker's last message (clipped), for a reader.
    pub last_message: Option<String>,
    /// Why it ended so, in one line, when it did not succeed.
    pub detail: Option<String>,
    /// How the worker's writes were guarded (task runs; `None` for `oxi run`).
    pub protection: Option<Protection>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct TokenSummary {
    pub input: u64,
    pub cached_input: u64,
    pub cache_write_input: u64,
    pub output: u64,
    pub reasoning: u64,
}

impl From<Tokens> for TokenSummary {
    fn from(t: Tokens) -> Self {
        Self {
            input: t.input,
            cached_input: t.cached_input,
            cache_write_input: t.cache_write_input,
            output: t.output,
            reasoning: t.reasoning,
        }
    }
}

/// A sortable, unique run id: UTC time to the second, then 8 hex digits of a hash of the
/// time in nanoseconds, the pid and a process-wide counter.
pub fn new_run_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = jiff::Timestamp::now();
    let mut hasher = Sha256::new();
    hasher.update(now.as_nanosecond().to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let digest = hasher.finalize();
    let suffix = crate::digest::hex(&digest[..4]);
    format!(
        "{}-{suffix}",
        now.to_zoned(jiff::tz::TimeZone::UTC)
            .strftime("%Y%m%dT%H%M%SZ")
    )
}

/// How the worker's process ended, as the run records it.
struct Outcome {
    classification: Classification,
    finished: Option<process::Finished>,
    detail: Option<String>,
}

/// What guards a task run's writes while it goes.
struct RunGuard {
    confinement: Option<std::sync::Arc<Confinement>>,
    protection: Protection,
    temp: RunTemp,
}

/// Everything decided before the process starts.
pub struct PreparedRun<'a> {
    pub run_id: String,
    pub request: RunRequest<'a>,
    pub worker: WorkerConfig,
    pub argv: Vec<String>,
    pub env: WorkerEnv,
    pub redactor: Redactor,
    pub run_dir: PathBuf,
    pub limits: Limits,
    pub caps: Caps,
    pub card: Option<RateCard>,
    pub output_cap: u64,
    pub raw_cap: u64,
    pub lease: Duration,
    /// `governance.confine`.
    pub confine: crate::config::ConfineMode,
    /// `[host] name`, recorded on the run.
    pub host: String,
    /// A resumed session's earlier figures, which the CLI reports again (zero when fresh).
    pub session_base: worker::SessionBase,
}

/// Resolves the worker, argv, environment and limits for `request`.
pub fn prepare<'a>(
    config: &LoadedConfig,
    request: RunRequest<'a>,
) -> Result<PreparedRun<'a>, RunnerError> {
    let mut worker = config
        .config
        .workers
        .get(request.worker_name)
        .cloned()
        .ok_or_else(|| RunnerError::UnknownWorker {
            name: request.worker_name.to_owned(),
            config: config.display_path(),
            known: config
                .config
                .workers
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let token_env = config.config.github.as_ref().map(|g| g.token_env.as_str());
    let env = env::worker_env(&worker, request.parent_env.clone(), token_env);
    // Every secret oxi holds is masked, not only this worker's: the GitHub token is never
    // passed, but if a worker ever echoed it, it must still be masked.
    let redactor = env::redactor_for(config, &request.parent_env);
    // A reviewer judges; it must not edit. The CLI's own flags enforce that where it has them;
    // otherwise the critic discards its edits (if any) after the run.
    if request.role.is_read_only() {
        worker.kind.adapter().make_read_only(&mut worker);
    }
    if let Some(model) = request.model {
        worker.model = Some(model.to_owned());
    }
    // Secrets are masked before the prompt leaves oxi.
    let argv = worker
        .kind
        .adapter()
        .argv(&worker, &redactor.redact(request.prompt));
    let caps_config = &config.config.caps;
    let limits = Limits {
        wall: caps_config.job_runtime.as_duration(),
        stall: caps_config.stall_timeout.as_duration(),
        grace: caps_config.kill_grace.as_duration(),
        line_cap: LINE_CAP,
        drain: DRAIN,
    };
    let card = worker
        .model
        .as_ref()
        .and_then(|m| config.config.rates.get(m))
        .cloned();
    let run_id = request.run_id.clone().unwrap_or_else(new_run_id);
    Ok(PreparedRun {
        run_dir: config.runs_dir().join(&run_id),
        run_id,
        request,
        argv,
        env,
        redactor,
        limits,
        caps: Caps::from_config(caps_config),
        card,
        output_cap: caps_config.output_per_run.bytes(),
        raw_cap: caps_config.raw_log_per_run.bytes(),
        lease: limits.stall + limits.grace + Duration::from_secs(30),
        confine: config.config.governance.confine,
        host: config.config.host.resolved_name(),
        session_base: worker::SessionBase::default(),
        worker,
    })
}

/// A run's admission time, its budget day and month, and its directory as text: what its row
/// borrows.
struct RunParts {
    now: i64,
    day: String,
    month: String,
    run_dir: String,
}

impl RunParts {
    fn now(run_dir: &Path) -> Self {
        let now = now_ms();
        Self {
            now,
            day: day_of(now),
            month: month_of(now),
            run_dir: run_dir.display().to_string(),
        }
    }
}

impl PreparedRun<'_> {
    /// argv as recorded: secrets masked, the prompt replaced by a pointer to prompt.md.
    pub fn recorded_argv(&self) -> Vec<String> {
        let last = self.argv.len().saturating_sub(1);
        self.argv
            .iter()
            .enumerate()
            .map(|(i, arg)| {
                if i == last {
                    "<prompt: prompt.md>".to_owned()
                } else {
                    self.redactor.redact(arg).into_owned()
                }
            })
            .collect()
    }

    /// Said when the worker's model has no price: the running cost is then unknown until the
    /// CLI reports a final figure, so the per-job cap cannot stop the run early.
    pub fn unpriced_warning(&self) -> Option<String> {
        if self.card.is_some() {
            return None;
        }
        let model = self.worker.model.as_deref().unwrap_or("(none)");
        Some(format!(
            "no [rates] card for model {model:?} (workers.{}): the running cost is unknown until the CLI reports one, so caps.job_usd cannot stop this run early; add [rates.\"{model}\"] to oxi.toml",
            self.request.worker_name
        ))
    }

    /// Checks the day's and month's caps and, in the same transaction, creates the run row
    /// and reserves `reserve` (the per-job cap for `oxi run`). A refusal is recorded as a
    /// `budget_refused` event and returned.
    pub fn admit(&self, ledger: &mut Ledger, reserve: MicroUsd) -> Result<(), RunnerError> {
        self.admit_with(ledger, reserve, |_| Ok(()))
    }

    /// `admit`, also running `claim` (e.g. the task's state change) in the same transaction,
    /// before the run row is created.
    pub fn admit_with(
        &self,
        ledger: &mut Ledger,
        reserve: MicroUsd,
        claim: impl FnOnce(&crate::ledger::Queries<'_>) -> Result<(), LedgerError>,
    ) -> Result<(), RunnerError> {
        self.admit_in_write(ledger, &RunParts::now(&self.run_dir), reserve, claim, None)
    }

    /// The scheduler's claim of `task` for this run, admitted under the caps: on a Postgres
    /// ledger in one statement (`Ledger::claim_in_one_step`), else (and to record a refusal,
    /// which checks the caps again) in one write with [`TaskClaim::apply`]. Either way the
    /// task's unused over-estimate approval is marked used by this run in the same step.
    ///
    /// # Errors
    /// `RunnerError::Budget` when a cap refuses (recorded as `budget_refused`); the ledger's
    /// `StateConflict` ([`TaskClaim::lost`]) when another claimer holds or took the task.
    pub fn admit_task(
        &self,
        ledger: &mut Ledger,
        reserve: MicroUsd,
        task: &TaskClaim<'_>,
    ) -> Result<(), RunnerError> {
        let parts = RunParts::now(&self.run_dir);
        let (new_run, labels) = self.new_run(&parts, reserve);
        let caps = ClaimCaps {
            day: self.caps.daily,
            month: self.caps.monthly,
        };
        match ledger.claim_in_one_step(task, &new_run, &labels, caps)? {
            Some(OneStepClaim::Admitted(before)) => {
                // The function's arithmetic is `budget::admit`'s; a test pins them together,
                // and debug builds check every claim.
                debug_assert!(
                    budget::admit(&before, reserve, &self.caps).is_ok(),
                    "oxi_claim_task admitted what budget::admit refuses: {before:?}"
                );
                Ok(())
            }
            Some(OneStepClaim::Lost) => Err(RunnerError::Ledger(task.lost())),
            // The refusal is recorded by the write below, which checks the caps again (room
            // may have come back since) under the same locks.
            Some(OneStepClaim::Refused) | None => self.admit_in_write(
                ledger,
                &parts,
                reserve,
                |q| task.apply(q),
                Some(task.task_id),
            ),
        }
    }

    /// The run row and its labels, from `parts` (its time, budget periods and directory).
    fn new_run<'a>(
        &'a self,
        parts: &'a RunParts,
        reserve: MicroUsd,
    ) -> (NewRun<'a>, RunLabels<'a>) {
        let new_run = NewRun {
            id: &self.run_id,
            task_id: self.request.task_id,
            attempt: self.request.attempt,
            role: self.request.role.as_str(),
            worker: self.request.worker_name,
            worker_kind: self.worker.kind.as_str(),
            model: self.worker.model.as_deref(),
            run_dir: &parts.run_dir,
            worktree: self.request.worktree,
            branch: self.request.branch,
            started_at_ms: parts.now,
            reserve_microusd: reserve,
            day: &parts.day,
            month: &parts.month,
            actor: self.request.actor,
            supervisor_pid: std::process::id(),
        };
        let labels = RunLabels {
            host: Some(&self.host),
            route: self.request.route,
            prompt_bytes: Some(self.request.prompt.len()),
        };
        (new_run, labels)
    }

    /// Admission in one write at `parts`' time: `claim`, the caps, the run row; with
    /// `over_estimate_of`, that task's unused over-estimate approval marked used by the run
    /// (one approval, one run).
    fn admit_in_write(
        &self,
        ledger: &mut Ledger,
        parts: &RunParts,
        reserve: MicroUsd,
        claim: impl FnOnce(&crate::ledger::Queries<'_>) -> Result<(), LedgerError>,
        over_estimate_of: Option<&str>,
    ) -> Result<(), RunnerError> {
        let (new_run, labels) = self.new_run(parts, reserve);
        let caps = self.caps;
        let outcome = ledger.write(|q| {
            // The caps checked and the reservation made in the claim's own transaction: on
            // Postgres the rollup rows are locked after `claim`'s writes and held to the
            // commit (lock order and refusal: `Queries::admit_claim`).
            let admitted = q.admit_claim(&parts.day, &parts.month, claim, |totals| {
                budget::admit(totals, reserve, &caps)
            })?;
            match admitted {
                Ok(()) => {
                    q.begin_labelled_run(&new_run, &labels)?;
                    if let Some(task) = over_estimate_of {
                        q.mark_over_estimate_used(task, new_run.id)?;
                    }
                    Ok(Ok(()))
                }
                Err(refusal) => {
                    q.append_event(&NewEvent {
                        at_ms: parts.now,
                        task_id: new_run.task_id,
                        run_id: None,
                        actor: new_run.actor,
                        event: Event::BudgetRefused(BudgetRefused {
                            worker: new_run.worker.to_owned(),
                            refusal: serde_json::to_value(refusal).unwrap_or_default(),
                        }),
                    })?;
                    Ok(Err(refusal))
                }
            }
        })?;
        outcome.map_err(RunnerError::Budget)
    }

    /// Ends an admitted run that never started (its worktree could not be made, say): the row
    /// is finished as `worker_error` with `detail`, the reservation settled at zero.
    pub fn abandon(&self, ledger: &mut Ledger, detail: &str) -> Result<(), RunnerError> {
        let now = now_ms();
        ledger.finish_run(
            &self.run_id,
            &RunEnd {
                ended_at_ms: now,
                classification: Classification::WorkerError.as_str(),
                detail: Some(detail),
                summary: RunSummary::NotStarted,
                ..RunEnd::default()
            },
        )?;
        Ok(())
    }

    /// Withdraws an admitted run that never started because its job ended before it (the
    /// explore phase stopped it): the row is finished as [`WITHDRAWN`] with `detail` and its
    /// reservation released. Not a worker failure: the report leaves it out of every rate.
    ///
    /// # Errors
    /// The ledger's, when the row cannot be written.
    pub fn withdraw(&self, ledger: &mut Ledger, detail: &str) -> Result<(), RunnerError> {
        let now = now_ms();
        ledger.finish_run(
            &self.run_id,
            &RunEnd {
                ended_at_ms: now,
                classification: WITHDRAWN,
                detail: Some(detail),
                summary: RunSummary::NotStarted,
                release: true,
                ..RunEnd::default()
            },
        )?;
        Ok(())
    }

    /// Runs the admitted process to its end and settles it. Never leaves the run row
    /// `running` unless the ledger itself fails: when the run directory cannot be written the
    /// row is finished as `worker_error` and the error returned.
    pub async fn run(
        mut self,
        ledger: &mut Ledger,
        shutdown: watch::Receiver<bool>,
    ) -> Result<RunReport, RunnerError> {
        let (files, guard) = self.start(ledger)?;
        let before = if self.request.track_files {
            TreeSnapshot::take(self.request.cwd)
        } else {
            None
        };
        let started_ms = now_ms();
        let adapter = worker::adapter(self.worker.kind);
        let live = self.request.live.take();
        let spawn = self.spawn(guard.as_ref());
        let mut recorder = Recorder::new(
            recorder::Setup {
                adapter,
                redactor: &self.redactor,
                run_id: &self.run_id,
                files,
                live,
                card: self.card,
                caps: self.caps,
                output_cap: self.output_cap,
                lease: self.lease,
            },
            ledger,
        );
        recorder.acc.session_base = self.session_base;
        self.write_header(&mut recorder, started_ms);
        let outcome = process::supervise(&spawn, &self.limits, &mut recorder, shutdown).await;
        recorder.flush();
        let outcome = self.outcome(outcome, &recorder);
        let protection = guard.as_ref().map(|g| g.protection.clone());
        // The CLI's version from its own output, else by asking it (after a confined run, under
        // the same confinement).
        let mut cli_version = recorder.acc.cli_version.clone();
        if cli_version.is_none() && outcome.finished.is_some() {
            cli_version = contract::probe_version(
                &self.worker.command,
                &spawn.env,
                self.request.cwd,
                spawn.confine.as_ref(),
            )
            .await
            .ok()
            .and_then(|out| adapter.parse_version(&out));
        }
        let (report, ended_ms) = self.report(
            &outcome,
            &recorder,
            cli_version,
            before.as_ref(),
            protection,
            started_ms,
        );
        // The run's temp directory goes with the run.
        drop(guard);
        self.settle(
            recorder,
            report,
            outcome.finished.as_ref(),
            started_ms,
            ended_ms,
        )
    }

    /// The run directory and the guard, before anything runs; on failure the run row is
    /// finished so the reservation goes back at once.
    fn start(&self, ledger: &mut Ledger) -> Result<(Files, Option<RunGuard>), RunnerError> {
        let files = match self.open_artifacts() {
            Ok(files) => files,
            Err(e) => {
                // A full disk or a vanished worktree: the worker never starts, and the run row
                // is closed here so the reservation goes back at once, not at the next reap.
                self.abandon(ledger, &format!("the run could not start: {e}"))?;
                return Err(e);
            }
        };
        let guard = match self.guard() {
            Ok(guard) => guard,
            Err(e) => {
                let e = RunnerError::from(e);
                self.abandon(ledger, &format!("the run could not start: {e}"))?;
                return Err(e);
            }
        };
        Ok((files, guard))
    }

    /// What to spawn: the argv and the environment, with a guarded run's own temp directory.
    fn spawn(&self, guard: Option<&RunGuard>) -> Spawn {
        let mut env = self.env.vars.clone();
        if let Some(guard) = guard {
            // Its own temp directory, the only one it may write when confined.
            env.retain(|(k, _)| k != "TMPDIR");
            env.push(("TMPDIR".to_owned(), guard.temp.path().display().to_string()));
        }
        Spawn {
            argv: self.argv.clone(),
            cwd: self.request.cwd.to_path_buf(),
            env,
            guard: process::guard::program(),
            confine: guard.and_then(|g| g.confinement.clone()),
        }
    }

    /// The transcript's first line, on disk before the worker starts.
    fn write_header(&self, recorder: &mut Recorder<'_>, started_ms: i64) {
        let header = format!(
            "# oxi run {} · worker {} ({}{}) · {}",
            self.run_id,
            self.request.worker_name,
            self.worker.kind,
            self.worker
                .model
                .as_deref()
                .map(|m| format!(", {m}"))
                .unwrap_or_default(),
            rfc3339(started_ms)
        );
        recorder.files.transcript.line(header.as_bytes());
        // The header is on disk at once, so `oxi logs RUN --follow` of a quiet run shows which
        // run it follows before the worker's first lines (one write per run).
        recorder.files.transcript.flush();
    }

    /// How the process ended, classified, with a line on why when it did not succeed.
    fn outcome(
        &self,
        outcome: Result<process::Finished, ProcessError>,
        recorder: &Recorder<'_>,
    ) -> Outcome {
        let (classification, finished, mut detail) = match outcome {
            Ok(finished) => {
                let ending = Ending {
                    exit_code: finished.exit_code,
                    signal: finished.signal,
                    stop: finished.stop,
                };
                let classification = worker::classify(&recorder.acc, &ending);
                (classification, Some(finished), None)
            }
            Err(ProcessError::Spawn { program, source }) => (
                Classification::SpawnFailed,
                None,
                Some(format!(
                    "cannot start `{program}` (workers.{}.command): {source}; install it or set workers.{}.command to its path",
                    self.request.worker_name, self.request.worker_name
                )),
            ),
            Err(e) => (Classification::WorkerError, None, Some(e.to_string())),
        };
        if detail.is_none() && classification != Classification::Success {
            detail = Some(self.explain(classification, recorder, finished.as_ref()));
        }
        let artifact_errors = recorder.artifact_errors();
        if let Some(first) = artifact_errors.first() {
            let note = format!("run artifacts incomplete: {first}");
            detail = Some(match detail {
                Some(d) => format!("{d}; {note}"),
                None => note,
            });
        }

        Outcome {
            classification,
            finished,
            detail,
        }
    }

    /// The run's report: its outcome, cost, tokens, version and changed files.
    fn report(
        &self,
        outcome: &Outcome,
        recorder: &Recorder<'_>,
        cli_version: Option<String>,
        before: Option<&TreeSnapshot>,
        protection: Option<Protection>,
        started_ms: i64,
    ) -> (RunReport, i64) {
        let Outcome {
            classification,
            finished,
            detail,
        } = outcome;
        let classification = *classification;
        let acc = &recorder.acc;
        let cost = acc.cost(self.card.as_ref());
        let cost_source = match (acc.reported_cost_usd, cost) {
            (Some(_), _) => "cli",
            (None, Some(_)) => "rate_card",
            (None, None) => "unknown",
        };
        let cost_microusd = cost.unwrap_or(0);
        // Final totals when the CLI reported them, else the stream-start estimates.
        let tokens = acc.running_tokens();
        let mut files_changed: Vec<String> = Vec::new();
        if let Some(before) = &before
            && let Some(after) = TreeSnapshot::take(self.request.cwd)
        {
            files_changed = before
                .changed_since(&after)
                .into_iter()
                .filter(|p| !p.starts_with(".oxi/"))
                .collect();
        }
        for path in &acc.files_changed {
            let relative = Path::new(path)
                .strip_prefix(
                    before
                        .as_ref()
                        .map(|b| b.toplevel.as_path())
                        .unwrap_or(self.request.cwd),
                )
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| path.clone());
            if !files_changed.contains(&relative) {
                files_changed.push(relative);
            }
        }
        files_changed.sort();
        let ended_ms = now_ms();
        let report = RunReport {
            run_id: self.run_id.clone(),
            worker: self.request.worker_name.to_owned(),
            worker_kind: self.worker.kind,
            model: acc.model.clone().or_else(|| self.worker.model.clone()),
            classification,
            retryable: classification.is_retryable(),
            exit_code: finished.as_ref().and_then(|f| f.exit_code),
            signal: finished.as_ref().and_then(|f| f.signal),
            stop_reason: finished.as_ref().and_then(|f| f.stop),
            tokens: tokens.into(),
            cost_usd: micro_to_usd(cost_microusd),
            cost_microusd,
            cost_source,
            run_dir: self.run_dir.clone(),
            files_changed,
            elapsed_ms: finished
                .as_ref()
                .map(|f| f.elapsed_ms)
                .unwrap_or_else(|| (ended_ms - started_ms).max(0) as u64),
            cli_version,
            session_id: acc.session_id.clone(),
            parse_failures: acc.parse_failures,
            bytes_cut: recorder.bytes_cut(),
            lines_truncated: recorder.lines_truncated,
            retry_after_ms: acc.retry_after_ms,
            result: acc.result_block.clone(),
            plan_line: acc.plan_line.clone(),
            write_attempts: acc
                .write_attempts
                .iter()
                .map(|p| {
                    Path::new(p)
                        .strip_prefix(self.request.cwd)
                        .map_or_else(|_| p.clone(), |r| r.display().to_string())
                })
                .collect(),
            last_message: acc.last_message.as_deref().map(|m| {
                self.redactor
                    .redact(&worker::event::clip(m, 2000))
                    .into_owned()
            }),
            detail: detail
                .as_deref()
                .map(|d| self.redactor.redact(d).into_owned()),
            protection,
        };
        (report, ended_ms)
    }

    /// Ends the transcript, finishes the run row (blocking the worker when it could not
    /// authenticate) and writes meta.json.
    fn settle(
        &self,
        mut recorder: Recorder<'_>,
        report: RunReport,
        finished: Option<&process::Finished>,
        started_ms: i64,
        ended_ms: i64,
    ) -> Result<RunReport, RunnerError> {
        let summary = format!(
            "■ {} · {} · {} · exit {}{}",
            report.classification.as_str(),
            crate::money::format_usd(report.cost_microusd),
            humantime::format_duration(Duration::from_millis(report.elapsed_ms / 100 * 100)),
            report
                .exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".to_owned()),
            report
                .detail
                .as_deref()
                .map(|d| format!("\n  {d}"))
                .unwrap_or_default()
        );
        recorder.files.transcript.line(summary.as_bytes());
        if let Some(live) = &mut recorder.live {
            let _ = writeln!(live, "{summary}");
        }
        recorder.flush();

        let auth_block = (report.classification == Classification::AuthFailed).then(|| {
            crate::ledger::WorkerBlock {
                worker: report.worker.clone(),
                class: report.classification.as_str().to_owned(),
                message: worker::auth_failure(&recorder.acc)
                    .map(|m| {
                        self.redactor
                            .redact(&worker::event::clip(&m, 500))
                            .into_owned()
                    })
                    .unwrap_or_default(),
                run_id: Some(report.run_id.clone()),
                task_id: self.request.task_id.map(str::to_owned),
                at_ms: ended_ms,
            }
        });
        let meta = self.meta(&report, &recorder, finished, started_ms, ended_ms);
        let ledger_errors = recorder.ledger_errors.clone();
        let Recorder { ledger, .. } = recorder;
        let end = RunEnd {
            ended_at_ms: ended_ms,
            classification: report.classification.as_str(),
            exit_code: report.exit_code,
            signal: report.signal,
            stop_reason: report.stop_reason.map(stop_reason_str),
            input_tokens: report.tokens.input,
            cached_input_tokens: report.tokens.cached_input,
            output_tokens: report.tokens.output,
            reasoning_tokens: report.tokens.reasoning,
            cost_microusd: report.cost_microusd,
            cli_version: report.cli_version.as_deref(),
            session_id: report.session_id.as_deref(),
            parse_failures: report.parse_failures,
            bytes_cut: report.bytes_cut,
            retry_after_ms: report.retry_after_ms,
            detail: report.detail.as_deref(),
            release: false,
            summary: RunSummary::Ran {
                files_changed: report.files_changed.clone(),
                elapsed_ms: report.elapsed_ms,
                cost_source: report.cost_source.to_owned(),
                ledger_errors: ledger_errors.clone(),
                protection: serde_json::to_value(&report.protection)
                    .unwrap_or(serde_json::Value::Null),
            },
        };
        match &auth_block {
            None => {
                ledger.finish_run(&report.run_id, &end)?;
            }
            // A CLI that cannot authenticate fails every run alike: no more runs on it until a
            // person fixes the login and `oxi doctor` passes it.
            Some(block) => ledger.write(|q| {
                q.finish_run(&report.run_id, &end)?;
                q.block_worker(block)
            })?,
        }
        let mut meta_text = serde_json::to_vec_pretty(&meta).unwrap_or_default();
        meta_text.push(b'\n');
        // The ledger already holds the run's record; a missing meta.json (a full disk) costs a
        // convenience, not the outcome.
        if let Err(e) = artifacts::write_atomic(&self.run_dir.join("meta.json"), &meta_text) {
            tracing::warn!("run {}: {e}", report.run_id);
        }
        Ok(report)
    }

    /// A task run's guard (`oxi run`, which has no worktree, gets none): its temp directory
    /// and, unless `governance.confine = "off"` or the kernel has no Landlock, a ruleset that
    /// lets it write only in its worktree, that directory and its CLI's state.
    fn guard(&self) -> Result<Option<RunGuard>, crate::confine::ConfineError> {
        if self.request.worktree.is_none() {
            return Ok(None);
        }
        let temp = RunTemp::create(&self.run_id)?;
        let codex_sandbox = self.worker.kind.adapter().own_sandbox(&self.worker);
        let confinement = match (self.confine, &codex_sandbox) {
            // Codex's sandbox mounts and pivots in a user namespace, which a Landlocked process
            // may not do: it would fail every command. It confines itself instead.
            (ConfineMode::Off, _) | (ConfineMode::Auto, Some(_)) => None,
            (ConfineMode::Auto, None) => {
                let mut writable = if self.request.role.writes_nothing() {
                    Writable::read_only(temp.path())
                } else {
                    Writable::worktree(self.request.cwd, temp.path())
                };
                let state = worker::adapter(self.worker.kind).state_paths(&self.env.vars);
                // A first run's state directory does not exist yet: made now, or no rule could
                // name it and the CLI could not create it either.
                for dir in &state.dirs {
                    let _ = std::fs::create_dir_all(dir);
                }
                writable.extend(state);
                writable.extend(Writable::coverage_profiles());
                Confinement::build(&writable)?.map(std::sync::Arc::new)
            }
        };
        let protection = match (&confinement, codex_sandbox) {
            (Some(c), _) => c.protection(),
            (None, Some(mode)) => Protection::CodexSandbox { mode },
            (None, None) => Protection::PostRunCheck,
        };
        Ok(Some(RunGuard {
            protection,
            confinement,
            temp,
        }))
    }

    /// The run directory with its prompt and open artifact files, before the worker starts.
    fn open_artifacts(&self) -> Result<Files, RunnerError> {
        // Checked here, not in `prepare`: a task's worktree is created between claim and run.
        if !self.request.cwd.is_dir() {
            return Err(RunnerError::BadCwd(self.request.cwd.to_path_buf()));
        }
        artifacts::create_private_dir(&self.run_dir)?;
        let masked_prompt = self.redactor.redact(self.request.prompt).into_owned();
        artifacts::write_atomic(&self.run_dir.join("prompt.md"), masked_prompt.as_bytes())?;
        Ok(Files {
            raw: CappedFile::create(self.run_dir.join("raw.jsonl"), self.raw_cap)?,
            stderr: CappedFile::create(self.run_dir.join("stderr.log"), self.raw_cap)?,
            events: CappedFile::create(self.run_dir.join("events.jsonl"), self.raw_cap)?,
            transcript: CappedFile::create(self.run_dir.join("transcript.md"), self.raw_cap)?,
        })
    }

    /// One line on why a run did not succeed.
    fn explain(
        &self,
        classification: Classification,
        recorder: &Recorder<'_>,
        finished: Option<&process::Finished>,
    ) -> String {
        let name = self.request.worker_name;
        let stderr_tail = recorder
            .stderr_tail
            .back()
            .map(|l| format!("; last stderr: {l}"))
            .unwrap_or_default();
        let first_error = recorder
            .acc
            .errors
            .last()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        match classification {
            Classification::Timeout => format!(
                "stopped after caps.job_runtime ({})",
                humantime::format_duration(self.limits.wall)
            ),
            Classification::Stalled => format!(
                "no output for caps.stall_timeout ({}); stopped",
                humantime::format_duration(self.limits.stall)
            ),
            Classification::BudgetExceeded => recorder.budget_stop.clone().unwrap_or_else(|| {
                format!(
                    "running cost {} crossed caps.job_usd ({}); stopped",
                    crate::money::format_usd(recorder.running_cost()),
                    crate::money::format_usd(self.caps.job)
                )
            }),
            Classification::OutputCapped => format!(
                "output passed caps.output_per_run ({} bytes); stopped",
                self.output_cap
            ),
            Classification::Killed => "oxi was asked to stop (signal); the run was ended".into(),
            Classification::RateLimited => format!(
                "the model API rate-limited the worker{}{first_error}",
                recorder
                    .acc
                    .retry_after_ms
                    .map(|ms| format!(" (retry after {:.0}s)", ms as f64 / 1000.0))
                    .unwrap_or_default()
            ),
            Classification::Transient => {
                format!("a transient failure (5xx, network or SIGINT){first_error}{stderr_tail}")
            }
            Classification::AuthFailed => format!(
                "{name} could not authenticate: “{}”; log it in (or fix its API key), then run `oxi doctor`, which clears the block on {name}",
                worker::auth_failure(&recorder.acc).unwrap_or_default()
            ),
            Classification::ParseFailure => format!(
                "{name} exited 0 without a result line ({} lines did not parse){stderr_tail}",
                recorder.acc.parse_failures
            ),
            _ => format!(
                "{name} failed (exit {}){first_error}{stderr_tail}",
                finished
                    .and_then(|f| f.exit_code)
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into())
            ),
        }
    }

    fn meta(
        &self,
        report: &RunReport,
        recorder: &Recorder<'_>,
        finished: Option<&process::Finished>,
        started_ms: i64,
        ended_ms: i64,
    ) -> serde_json::Value {
        let adapter = worker::adapter(self.worker.kind);
        let identity = serde_json::json!({
            "run_id": report.run_id,
            "task_id": self.request.task_id,
            "role": self.request.role,
            "attempt": self.request.attempt,
            "worker": report.worker,
            "worker_kind": report.worker_kind,
            "model": report.model,
            "argv": self.recorded_argv(),
            "cwd": self.request.cwd,
            "env_names": self.env.names(),
            "env_missing": self.env.missing,
            "cli_version": report.cli_version,
            "contract_version": adapter.contract_version(),
            "tested_versions": adapter.tested_versions(),
            "version_tested": report
                .cli_version
                .as_deref()
                .map(|v| adapter.tested_versions().contains(&v)),
        });
        let outcome = serde_json::json!({
            "started_at": rfc3339(started_ms),
            "ended_at": rfc3339(ended_ms),
            "elapsed_ms": report.elapsed_ms,
            "stop_to_exit_ms": finished.and_then(|f| f.stop_to_exit_ms),
            "stop_to_gone_ms": finished.and_then(|f| f.stop_to_gone_ms),
            "exit_code": report.exit_code,
            "signal": report.signal,
            "stop_reason": report.stop_reason,
            "classification": report.classification,
            "detail": report.detail,
            "session_id": report.session_id,
            "tokens": report.tokens,
            "cost_microusd": report.cost_microusd,
            "cost_usd": report.cost_usd,
            "cost_source": report.cost_source,
            "files_changed": report.files_changed,
            "result": report.result,
            "protection": report.protection,
        });
        let limits = serde_json::json!({
            "job_runtime_ms": self.limits.wall.as_millis() as u64,
            "stall_timeout_ms": self.limits.stall.as_millis() as u64,
            "kill_grace_ms": self.limits.grace.as_millis() as u64,
            "job_usd_microusd": self.caps.job,
            "output_per_run_bytes": self.output_cap,
            "raw_log_per_run_bytes": self.raw_cap,
            "line_cap_bytes": self.limits.line_cap,
        });
        let output = serde_json::json!({
            "stdout_bytes": finished.map(|f| f.stdout_bytes),
            "stderr_bytes": finished.map(|f| f.stderr_bytes),
            "raw_bytes_kept": recorder.files.raw.kept(),
            "bytes_cut": report.bytes_cut,
            "lines_truncated": report.lines_truncated,
            "pipes_abandoned": finished.map(|f| f.pipes_abandoned),
            "parse_failures": report.parse_failures,
            "parse_failure_samples": recorder.parse_failure_samples,
            "unknown_types": recorder.acc.unknown_types,
            "event_counts": recorder.acc.event_counts,
            "stderr_tail": recorder.stderr_tail,
            "artifact_errors": recorder.artifact_errors(),
            "ledger_errors": recorder.ledger_errors,
        });
        let mut meta = serde_json::Map::new();
        for part in [identity, outcome, output] {
            if let serde_json::Value::Object(map) = part {
                meta.extend(map);
            }
        }
        meta.insert("limits".into(), limits);
        let mut meta = serde_json::Value::Object(meta);
        self.redactor.redact_json(&mut meta);
        meta
    }
}

pub fn stop_reason_str(reason: process::StopReason) -> &'static str {
    match reason {
        process::StopReason::WallClock => "wall_clock",
        process::StopReason::Stalled => "stalled",
        process::StopReason::Budget => "budget",
        process::StopReason::OutputCapped => "output_capped",
        process::StopReason::Shutdown => "shutdown",
    }
}
