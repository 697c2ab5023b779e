//! `oxi saturate`: keep N slots busy. A slot that frees up is refilled at once;
//! the roadmap is re-ingested when it changes; the same caps, gates and admission as the tick.
//! SIGTERM/SIGINT stop claiming and let in-flight runs finish within a grace period (then stop
//! them cleanly); a second signal stops at once. SIGHUP reloads `oxi.toml`. A claim the caps
//! refuse only because of what runs in flight hold waits for them to settle; saturate exits when
//! spent + the next estimate would cross the day's or month's cap (`daily_budget_reached`,
//! `monthly_budget_reached`) and, with `--until-empty`, when nothing is eligible or when it is
//! paused with nothing in flight (`paused`: only a person's `oxi resume` could change that).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{ClaimRequest, SchedulerError, lock};
use crate::clock::now_ms;
use crate::config::{LoadedConfig, RunMode};
use crate::ledger::events::DailyBudgetReached;
use crate::ledger::{Event, Ledger};
use crate::pipeline::{JobContext, JobError, JobResult, JobSpec};

#[derive(Debug, thiserror::Error)]
pub enum SaturateError {
    #[error("oxi saturate is already running (pid {0}); stop it first (kill -TERM {0})")]
    AlreadyRunning(u32),
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    /// Dispatch cannot start: the problems, joined (see `dispatch_problems`).
    #[error("dispatch blocked: {0}")]
    Blocked(String),
    /// `oxi.toml` could not be loaded at start. Not a `#[source]`: saturate has always exited 1
    /// for it, with this text, and the exit-code mapping follows sources.
    #[error("dispatch blocked: {0}")]
    Config(crate::config::ConfigError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// While a claim waits for runs in flight to settle, how often it is tried again anyway (the
/// room may be held by another process's run, which no slot of ours ending would announce).
const BUDGET_RECHECK: Duration = Duration::from_secs(5);

/// `--concurrency`.
#[derive(Debug, Clone, Copy)]
pub enum Concurrency {
    Fixed(u32),
    Auto,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub concurrency: Concurrency,
    pub max_cost_per_day: Option<f64>,
    pub until_empty: bool,
    /// How long in-flight runs may finish after the first stop signal.
    pub grace: Duration,
}

/// How saturate ended.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `until_empty`, `paused` (`--until-empty` while paused with nothing in flight),
    /// `daily_budget_reached`, `monthly_budget_reached`, `signal`, `blocked`.
    pub reason: String,
    /// For a budget stop, the refusal: which cap (and which setting holds it), with the figures;
    /// for `paused`, who paused it and how to go on.
    pub detail: Option<String>,
    pub concurrency: u32,
    pub concurrency_reason: String,
    pub jobs: Vec<JobResult>,
}

/// `min(ceiling, memory envelope, CPU envelope)`, with the reason: more slots than free cores
/// or free memory would slow every run down (and risk the OOM killer) rather than finish more.
pub fn auto_concurrency(ceiling: u32) -> (u32, String) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let load5 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    let cpu = ((cores - load5).floor() as i64).max(1) as u32;
    // One GiB per run: an agent CLI (node) plus the acceptance commands it triggers.
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                })
        })
        .map_or(ceiling, |kib| ((kib / (1024 * 1024)) as u32).max(1));
    let chosen = ceiling.min(cpu).min(mem).max(1);
    (
        chosen,
        format!(
            "auto: min(run.max_parallel_jobs {ceiling}, memory envelope {mem} (1 GiB per run), CPU envelope {cpu} ({cores:.0} cores - 5-min load {load5:.2}))"
        ),
    )
}

/// The PID file: refuses beside a live saturate, replaces a stale one. Removed on drop.
struct PidFile(PathBuf);

impl PidFile {
    fn claim(path: &Path) -> Result<Self, SaturateError> {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse::<u32>()
            && pid != std::process::id()
            && super::pid_alive(pid)
        {
            return Err(SaturateError::AlreadyRunning(pid));
        }
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|source| {
            SaturateError::Io {
                path: path.to_path_buf(),
                source,
            }
        })?;
        Ok(Self(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Slot {
    task: String,
    run_id: String,
    started: Instant,
    handle: std::thread::JoinHandle<Result<JobResult, JobError>>,
}

/// Writes status lines: redrawn in place on a terminal, plain lines otherwise.
struct Status {
    terminal: bool,
    last: String,
    /// Off a terminal the block is a log line at most this often.
    last_logged: Option<Instant>,
}

impl Status {
    fn show(&mut self, text: &str) {
        use std::io::Write;
        let mut err = std::io::stderr();
        if self.terminal {
            // Clear the previous block and redraw.
            let lines = self.last.lines().count();
            let _ = write!(err, "{}", "\x1b[1A\x1b[2K".repeat(lines));
            let _ = write!(err, "{text}");
        } else if self
            .last_logged
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(30))
        {
            let _ = write!(err, "{text}");
            self.last_logged = Some(Instant::now());
        }
        self.last = text.to_owned();
    }

    fn log(&mut self, line: &str) {
        use std::io::Write;
        let mut err = std::io::stderr();
        if self.terminal {
            let lines = self.last.lines().count();
            let _ = write!(err, "{}", "\x1b[1A\x1b[2K".repeat(lines));
            self.last.clear();
        }
        let _ = writeln!(err, "{line}");
    }
}

/// How often saturate looks for delivered branches merged into the base branch.
const LANDED_EVERY: Duration = Duration::from_secs(5);

/// How often release mode resumes deliveries and follows pull requests.
const RELEASE_EVERY: Duration = Duration::from_secs(60);
/// How often GitHub issues are read (`[sources.github_issues]`): one list call, well inside
/// GitHub's hourly allowance.
const ISSUES_EVERY: Duration = Duration::from_secs(60);

/// Runs saturate until it has a reason to stop.
pub fn run(
    config_path: &Path,
    options: &Options,
    parent_env: Vec<(String, String)>,
    env_mode: Option<&str>,
) -> Result<Summary, SaturateError> {
    let load = |path: &Path| load_config(path, env_mode, options);
    let config = Arc::new(load(config_path).map_err(SaturateError::Config)?);
    let _lock = lock::acquire_for(&config)?;
    let _pid = PidFile::claim(&config.state_dir.join("saturate.pid"))?;
    let (concurrency, concurrency_reason) = match options.concurrency {
        Concurrency::Fixed(n) => (n.max(1), format!("--concurrency {n}")),
        Concurrency::Auto => auto_concurrency(config.config.run.max_parallel_jobs),
    };
    let mut status = Status {
        terminal: std::io::stderr().is_terminal(),
        last: String::new(),
        last_logged: None,
    };
    status.log(&format!(
        "oxi saturate: {concurrency} slot(s) ({concurrency_reason}); SIGTERM/SIGINT stop claiming, a second stops at once; SIGHUP reloads {}",
        config.display_path()
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|source| SaturateError::Io {
            path: PathBuf::from("tokio runtime"),
            source,
        })?;
    let signals = Signals::watch(&runtime);
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let ledger = Ledger::open_at(&config.ledger_at())?;
    let mut saturator = Saturator {
        options,
        config,
        parent_env,
        concurrency,
        runtime,
        ledger,
        status,
        shutdown_tx,
        shutdown_rx,
        slots: Vec::new(),
        jobs: Vec::new(),
        stopping: None,
        budget_stop: None,
        pause_stop: None,
        budget_wait: None,
        last_release: Instant::now() - Duration::from_secs(3600),
        last_landed: Instant::now() - Duration::from_secs(3600),
        last_issues: Instant::now() - Duration::from_secs(3600),
        last_beat: None,
        was_paused: false,
        started_ms: now_ms(),
    };
    let reason = loop {
        saturator.collect_finished();
        if signals.reload.swap(false, Ordering::SeqCst) {
            saturator.reload(load(config_path));
        }
        if let Some(reason) = saturator.follow_signals(signals.stops.load(Ordering::SeqCst)) {
            break reason;
        }
        if saturator.stopping.is_none() {
            match saturator.refill()? {
                Step::Idle => {}
                Step::Again => continue,
                Step::Stop(reason) => break reason.to_owned(),
            }
        }
        saturator.show_status()?;
        saturator.notify();
        std::thread::sleep(Duration::from_millis(250));
    };
    saturator.notify();
    let Saturator {
        mut status,
        budget_stop,
        pause_stop,
        jobs,
        ..
    } = saturator;
    status.log(&format!("oxi saturate: stopped ({reason})"));
    Ok(Summary {
        detail: budget_stop
            .filter(|_| reason.ends_with("_budget_reached"))
            .or(pause_stop),
        reason,
        concurrency,
        concurrency_reason,
        jobs,
    })
}

/// `oxi.toml`, with `--max-cost-per-day` lowering the daily cap (and the caps below it).
fn load_config(
    path: &Path,
    env_mode: Option<&str>,
    options: &Options,
) -> Result<LoadedConfig, crate::config::ConfigError> {
    let mut config = crate::config::load(path, env_mode)?;
    if let Some(max) = options.max_cost_per_day {
        let caps = &mut config.config.caps;
        if max < caps.daily_usd {
            caps.daily_source = crate::config::DailyCapSource::MaxCostPerDay;
        }
        caps.daily_usd = caps.daily_usd.min(max);
        caps.daily_soft_warn_usd = caps.daily_soft_warn_usd.min(caps.daily_usd);
        caps.job_usd = caps.job_usd.min(caps.daily_usd);
    }
    Ok(config)
}

/// What the signal handler saw: stop signals (SIGINT/SIGTERM) counted, a SIGHUP pending.
struct Signals {
    stops: Arc<AtomicU32>,
    reload: Arc<AtomicBool>,
}

impl Signals {
    fn watch(runtime: &tokio::runtime::Runtime) -> Self {
        let stops = Arc::new(AtomicU32::new(0));
        let reload = Arc::new(AtomicBool::new(false));
        let (task_stops, task_reload) = (Arc::clone(&stops), Arc::clone(&reload));
        runtime.spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            // A stop that arrives twice at once (`timeout`, a group's signal) counts once.
            let (Ok(mut stops), Ok(mut hup)) = (
                crate::stop_signals::StopSignals::listen(),
                signal(SignalKind::hangup()),
            ) else {
                return;
            };
            loop {
                tokio::select! {
                    () = stops.next() => { task_stops.fetch_add(1, Ordering::SeqCst); }
                    _ = hup.recv() => task_reload.store(true, Ordering::SeqCst),
                }
            }
        });
        Self { stops, reload }
    }
}

/// What one round of refilling decided.
enum Step {
    /// Go on: show the status, wait a moment, look again.
    Idle,
    /// Something changed the stop state: look again at once.
    Again,
    /// Stop now (nothing in flight can change what stopped it).
    Stop(&'static str),
}

/// Saturate's state between rounds of its loop.
struct Saturator<'o> {
    options: &'o Options,
    config: Arc<LoadedConfig>,
    parent_env: Vec<(String, String)>,
    concurrency: u32,
    runtime: tokio::runtime::Runtime,
    ledger: Ledger,
    status: Status,
    shutdown_tx: tokio::sync::watch::Sender<bool>,
    shutdown_rx: tokio::sync::watch::Receiver<bool>,
    slots: Vec<Slot>,
    jobs: Vec<JobResult>,
    /// Since when, and why, no new claims are made (saturate exits when the slots are empty).
    stopping: Option<(Instant, String)>,
    budget_stop: Option<String>,
    pause_stop: Option<String>,
    /// Set when a claim was refused only because runs in flight hold the room: the slots busy
    /// then, and when. No claim is tried again until one of them ends (or, for reservations
    /// another process holds, a while has passed): each refusal is a ledger event.
    budget_wait: Option<(usize, Instant)>,
    last_release: Instant,
    last_landed: Instant,
    last_issues: Instant,
    /// This host's last heartbeat (see [`crate::host::SATURATE_BEAT_EVERY`]).
    last_beat: Option<Instant>,
    was_paused: bool,
    /// When saturate started (the notifier's first pass starts from there).
    started_ms: i64,
}

impl Saturator<'_> {
    /// Joins finished slots and logs how each job ended.
    fn collect_finished(&mut self) {
        let (done, running): (Vec<Slot>, Vec<Slot>) = std::mem::take(&mut self.slots)
            .into_iter()
            .partition(|s| s.handle.is_finished());
        self.slots = running;
        for slot in done {
            match slot.handle.join() {
                Ok(Ok(job)) => {
                    self.status.log(&format!(
                        "{} attempt {} ({}) -> {}{} in {:.0}s, ${:.2}",
                        job.task_id,
                        job.attempt,
                        job.run_id,
                        job.state,
                        job.failure_class
                            .as_deref()
                            .map(|c| format!(" [{c}]"))
                            .unwrap_or_default(),
                        slot.started.elapsed().as_secs_f64(),
                        job.cost_usd
                    ));
                    self.jobs.push(job);
                }
                Ok(Err(e)) => self
                    .status
                    .log(&format!("{} ({}): {e}", slot.task, slot.run_id)),
                Err(_) => self.status.log(&format!(
                    "{} ({}): the job thread panicked",
                    slot.task, slot.run_id
                )),
            }
        }
    }

    /// SIGHUP: the fresh config, or the running one kept when the file is now invalid.
    fn reload(&mut self, fresh: Result<LoadedConfig, crate::config::ConfigError>) {
        match fresh {
            Ok(fresh) => {
                self.config = Arc::new(fresh);
                self.status
                    .log(&format!("reloaded {}", self.config.display_path()));
            }
            Err(e) => self
                .status
                .log(&format!("SIGHUP: keeping the running config; {e}")),
        }
    }

    /// The first stop signal stops claiming; a second, or the grace period's end, stops the
    /// runs. The reason to exit once stopping and no slot is busy.
    fn follow_signals(&mut self, signals: u32) -> Option<String> {
        if signals >= 1 && self.stopping.is_none() {
            self.stopping = Some((Instant::now(), "signal".to_owned()));
            self.status.log(&format!(
                "stopping: no new claims; {} run(s) may finish within {}s (a second signal stops them now)",
                self.slots.len(),
                self.options.grace.as_secs()
            ));
        }
        if let Some((since, _)) = &self.stopping
            && (signals >= 2 || since.elapsed() > self.options.grace)
            && !*self.shutdown_rx.borrow()
        {
            self.status
                .log("stopping the runs still going (their process groups are ended and recorded)");
            let _ = self.shutdown_tx.send(true);
        }
        match &self.stopping {
            Some((_, why)) if self.slots.is_empty() => Some(why.clone()),
            _ => None,
        }
    }

    /// One round while claiming: the scheduler's upkeep, then claims for the free slots.
    fn refill(&mut self) -> Result<Step, SaturateError> {
        let paused = self.upkeep()?;
        if paused && self.options.until_empty && self.slots.is_empty() {
            return Ok(Step::Stop("paused"));
        }
        let free = self.concurrency.saturating_sub(self.slots.len() as u32);
        let waiting_for_budget = self.budget_wait.is_some_and(|(busy, since)| {
            self.slots.len() >= busy && since.elapsed() < BUDGET_RECHECK
        });
        if free > 0 && !paused && !waiting_for_budget {
            return self.claim(free);
        }
        Ok(Step::Idle)
    }

    /// Release follow-up, reaping, ingest, landed branches and the killswitch; true when paused.
    fn upkeep(&mut self) -> Result<bool, SaturateError> {
        if self
            .last_beat
            .is_none_or(|t| t.elapsed() >= crate::host::SATURATE_BEAT_EVERY)
        {
            self.last_beat = Some(Instant::now());
            let me = crate::host::Identity::of(&self.config);
            crate::host::heartbeat(&mut self.ledger, &me)?;
        }
        if self.config.config.run.mode == RunMode::Release
            && self.last_release.elapsed() > RELEASE_EVERY
        {
            self.last_release = Instant::now();
            let result = self.runtime.block_on(super::follow_release(
                &self.config,
                &mut self.ledger,
                &self.parent_env,
            ));
            if let Err(e) = result {
                self.status.log(&format!("GitHub: {e}"));
            }
        }
        let busy: Vec<String> = self.slots.iter().map(|s| s.task.clone()).collect();
        let reaped = self.runtime.block_on(super::reap(
            &mut self.ledger,
            &self.config,
            &busy,
            &self.parent_env,
        ))?;
        for r in &reaped {
            self.status.log(&format!(
                "reaped {}: {}",
                r.run_id.as_deref().unwrap_or("-"),
                r.reason
            ));
        }
        if let Some(ingest) =
            super::refresh_roadmap(&mut self.ledger, &self.config, &self.parent_env)?
        {
            self.status.log(&format!(
                "roadmap changed: {} added, {} updated",
                ingest.added.len(),
                ingest.updated.len()
            ));
        }
        if self.last_issues.elapsed() > ISSUES_EVERY {
            self.last_issues = Instant::now();
            let synced = self.runtime.block_on(super::sync_issues(
                &mut self.ledger,
                &self.config,
                &self.parent_env,
            ))?;
            if let Some(line) = synced
                .as_ref()
                .and_then(crate::roadmap::github_issues::IssueSync::change_line)
            {
                self.status.log(&line);
            }
        }
        // `[screen]`: queued briefs it covers are judged before this round's claims.
        let held = self
            .runtime
            .block_on(crate::pipeline::screen::screen_queued(
                &mut self.ledger,
                &self.config,
                &self.parent_env,
            ));
        if held > 0 {
            self.status.log(&format!("screen: {held} task(s) held"));
        }
        // Delivered branches merged by the operator (a few git calls: every few seconds).
        if self.last_landed.elapsed() > LANDED_EVERY {
            self.last_landed = Instant::now();
            for landed in super::settle_landed(&self.config, &mut self.ledger)? {
                self.status.log(&format!(
                    "{}: merged into {} -> done",
                    landed.task_id, landed.base_branch
                ));
            }
        }
        let killswitch = self.ledger.read().killswitch()?.filter(|k| k.paused);
        let paused = killswitch.is_some();
        if paused != self.was_paused {
            self.status
                .log(&pause_line(killswitch.as_ref(), self.slots.len()));
            self.was_paused = paused;
        }
        // Paused, nothing in flight: nothing can empty the queue until a person resumes.
        if let Some(k) = &killswitch
            && self.options.until_empty
            && self.slots.is_empty()
        {
            self.pause_stop = Some(format!(
                "paused by {}{}: --until-empty stops here with nothing in flight; `oxi resume`, then run saturate again",
                k.by,
                k.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
        }
        Ok(paused)
    }

    /// Plans, checks dispatch, claims up to `free` tasks and starts a slot for each.
    fn claim(&mut self, free: u32) -> Result<Step, SaturateError> {
        let tasks = self.ledger.read().tasks()?;
        let planned = super::plan::plan_with(&tasks, now_ms(), self.config.stacks_on_delivered());
        let eligible = planned.iter().any(super::plan::PlannedTask::is_eligible);
        // A task in its retry backoff becomes eligible by itself: wait for it.
        let backing_off = planned.iter().any(|p| p.backoff_until_ms.is_some());
        if !eligible && !backing_off && self.slots.is_empty() && self.options.until_empty {
            return Ok(Step::Stop("until_empty"));
        }
        if !eligible {
            return Ok(Step::Idle);
        }
        let problems = super::dispatch_problems(&self.config, &self.ledger, &self.parent_env)?;
        if !problems.is_empty() {
            if self.slots.is_empty() {
                return Err(SaturateError::Blocked(problems.join("; ")));
            }
            self.stopping = Some((Instant::now(), "blocked".to_owned()));
            return Ok(Step::Again);
        }
        let request = ClaimRequest {
            config: &self.config,
            parent_env: &self.parent_env,
            actor: "oxi",
            slots: Some(free),
            github: None,
            github_unavailable: None,
        };
        let claimed =
            self.runtime
                .block_on(super::claim(&mut self.ledger, &request, &tasks, planned))?;
        for stop in claimed
            .deferred
            .iter()
            .chain(&claimed.held)
            .chain(&claimed.failed)
        {
            self.status
                .log(&format!("{}: {}", stop.task_id, stop.reason));
        }
        for (spec, run_id) in claimed.admitted {
            self.slots.push(spawn(
                &self.config,
                &self.parent_env,
                spec,
                run_id,
                self.shutdown_rx.clone(),
            ));
        }
        match claimed.budget_refusal {
            Some(refusal) => self.refused(&refusal),
            None => {
                self.budget_wait = None;
                Ok(Step::Idle)
            }
        }
    }

    /// Admission refused: wait for the runs in flight to settle, or stop claiming at a
    /// period's cap (saturate exits when the runs in flight finish).
    fn refused(&mut self, refusal: &crate::budget::Refusal) -> Result<Step, SaturateError> {
        if refusal.waits_for_runs_in_flight() {
            if self.budget_wait.is_none() {
                self.status.log(&format!(
                    "budget: waiting for the runs in flight to settle: {refusal}"
                ));
            }
            self.budget_wait = Some((self.slots.len(), Instant::now()));
            return Ok(Step::Idle);
        }
        let text = refusal.to_string();
        self.status.log(&format!("budget: {text}"));
        let reason = if refusal.period == "daily" {
            self.ledger.record(
                None,
                None,
                Event::DailyBudgetReached(DailyBudgetReached {
                    refusal: text.clone(),
                    in_flight: self.slots.len(),
                }),
            )?;
            self.status.log(
                "the day's cap is reached: no new claims; exiting when the runs in flight finish",
            );
            "daily_budget_reached"
        } else {
            self.status.log(
                "the month's cap is reached: no new claims; exiting when the runs in flight finish",
            );
            "monthly_budget_reached"
        };
        self.budget_stop = Some(text);
        self.stopping = Some((Instant::now(), reason.to_owned()));
        Ok(Step::Again)
    }

    /// The notifier's pass over what this round recorded (never stops saturate).
    fn notify(&mut self) {
        self.runtime.block_on(crate::notify::run_pass(
            &self.config,
            &mut self.ledger,
            &self.parent_env,
            self.started_ms,
        ));
    }

    /// The status block: slots, spend, queue, and each slot's run.
    fn show_status(&mut self) -> Result<(), SaturateError> {
        if !self.status.terminal && self.slots.is_empty() && self.stopping.is_none() {
            // Nothing running and nothing claimable: poll less often.
            std::thread::sleep(Duration::from_millis(500));
        }
        let now = now_ms();
        let totals = self
            .ledger
            .read()
            .spend_totals(&crate::clock::day_of(now), &crate::clock::month_of(now))?;
        let queue = self
            .ledger
            .read()
            .task_counts()?
            .into_iter()
            .filter(|(s, _)| s.is_waiting())
            .map(|(_, n)| n)
            .sum::<u64>();
        let mut block = format!(
            "saturate: {}{}/{} slot(s) busy · spend today {} of {} (held {}) · queue {queue}\n",
            if self.was_paused {
                "PAUSED (`oxi resume` to claim again) · "
            } else {
                ""
            },
            self.slots.len(),
            self.concurrency,
            crate::money::format_usd(totals.day_spent),
            crate::money::format_usd(crate::money::usd_to_micro(
                self.config.config.caps.daily_usd
            )),
            crate::money::format_usd(totals.day_reserved),
        );
        for slot in &self.slots {
            let cost = self
                .ledger
                .read()
                .run(&slot.run_id)?
                .map_or(0, |r| r.cost_microusd);
            block.push_str(&format!(
                "  {} {} {:.0}s {}\n",
                slot.task,
                slot.run_id,
                slot.started.elapsed().as_secs_f64(),
                crate::money::format_usd(cost)
            ));
        }
        self.status.show(&block);
        Ok(())
    }
}

/// The log line when the killswitch is engaged (`Some`) or released (`None`).
fn pause_line(killswitch: Option<&crate::ledger::Killswitch>, in_flight: usize) -> String {
    match killswitch {
        Some(k) => format!(
            "PAUSED by {}{} at {}: no new claims until `oxi resume`; {in_flight} run(s) in flight go on",
            k.by,
            k.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
            crate::clock::rfc3339(k.at_ms)
        ),
        None => "resumed: claiming again".to_owned(),
    }
}

fn spawn(
    config: &Arc<LoadedConfig>,
    parent_env: &[(String, String)],
    spec: JobSpec,
    run_id: String,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Slot {
    let task = spec.task.spec.id.clone();
    let config = Arc::clone(config);
    let parent_env = parent_env.to_vec();
    let thread_run_id = run_id.clone();
    let handle = std::thread::spawn(move || {
        let ctx = JobContext {
            config: &config,
            parent_env,
            actor: "oxi",
            main_before: crate::pipeline::attribution::MainSnapshot::take(&config.repo_root),
        };
        crate::pipeline::start_job(&ctx, &spec, &thread_run_id, shutdown)
    });
    Slot {
        task,
        run_id,
        started: Instant::now(),
        handle,
    }
}
