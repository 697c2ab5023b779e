//! `oxi saturate` (seed 004 T2-45): keep N slots busy. A slot that frees up is refilled at once;
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

use crate::clock::now_ms;
use crate::config::{LoadedConfig, RunMode};
use crate::ledger::events::DailyBudgetReached;
use crate::ledger::{Event, Ledger};
use crate::pipeline::deliver::{self, release_stage};
use crate::pipeline::{JobContext, JobError, JobResult, JobSpec};
use crate::tick::{self, TickError, TickReport};

#[derive(Debug, thiserror::Error)]
pub enum SaturateError {
    #[error("oxi saturate is already running (pid {0}); stop it first (kill -TERM {0})")]
    AlreadyRunning(u32),
    #[error(transparent)]
    Lock(#[from] tick::lock::LockError),
    #[error(transparent)]
    Tick(#[from] TickError),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error("dispatch blocked: {0}")]
    Blocked(String),
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

/// `min(ceiling, memory envelope, CPU envelope)`, with the reason (seed 004 T2-43).
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

fn pid_alive(pid: u32) -> bool {
    tick::reap::pid_alive(pid)
}

/// The PID file: refuses beside a live saturate, replaces a stale one. Removed on drop.
struct PidFile(PathBuf);

impl PidFile {
    fn claim(path: &Path) -> Result<Self, SaturateError> {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse::<u32>()
            && pid != std::process::id()
            && pid_alive(pid)
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

/// Runs saturate until it has a reason to stop.
/// How often saturate looks for delivered branches merged into the base branch.
const LANDED_EVERY: Duration = Duration::from_secs(5);

pub fn run(
    config_path: &Path,
    options: &Options,
    parent_env: Vec<(String, String)>,
    env_mode: Option<&str>,
) -> Result<Summary, SaturateError> {
    let load = |path: &Path| -> Result<LoadedConfig, crate::config::ConfigError> {
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
    };
    let mut config =
        Arc::new(load(config_path).map_err(|e| SaturateError::Blocked(e.to_string()))?);
    let _lock = tick::lock::acquire(&config.state_dir.join("tick.lock"))?;
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
    let stops = Arc::new(AtomicU32::new(0));
    let reload = Arc::new(AtomicBool::new(false));
    {
        let (stops, reload) = (Arc::clone(&stops), Arc::clone(&reload));
        runtime.spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = int.recv() => { stops.fetch_add(1, Ordering::SeqCst); }
                    _ = term.recv() => { stops.fetch_add(1, Ordering::SeqCst); }
                    _ = hup.recv() => reload.store(true, Ordering::SeqCst),
                }
            }
        });
    }
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut ledger = Ledger::open(&config.ledger_path())?;
    let mut slots: Vec<Slot> = Vec::new();
    let mut jobs = Vec::new();
    let mut stopping: Option<(Instant, String)> = None;
    let mut budget_stop: Option<String> = None;
    let mut pause_stop: Option<String> = None;
    // Set when a claim was refused only because runs in flight hold the room: the slots busy
    // then, and when. No claim is tried again until one of them ends (or, for reservations
    // another process holds, a while has passed): each refusal is a ledger event.
    let mut budget_wait: Option<(usize, Instant)> = None;
    let mut last_release = Instant::now() - Duration::from_secs(3600);
    let mut last_landed = Instant::now() - Duration::from_secs(3600);
    let mut was_paused = false;
    let reason = loop {
        // Finished slots.
        let (done, running): (Vec<Slot>, Vec<Slot>) =
            slots.into_iter().partition(|s| s.handle.is_finished());
        slots = running;
        for slot in done {
            match slot.handle.join() {
                Ok(Ok(job)) => {
                    status.log(&format!(
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
                    jobs.push(job);
                }
                Ok(Err(e)) => status.log(&format!("{} ({}): {e}", slot.task, slot.run_id)),
                Err(_) => status.log(&format!(
                    "{} ({}): the job thread panicked",
                    slot.task, slot.run_id
                )),
            }
        }

        if reload.swap(false, Ordering::SeqCst) {
            match load(config_path) {
                Ok(fresh) => {
                    config = Arc::new(fresh);
                    status.log(&format!("reloaded {}", config.display_path()));
                }
                Err(e) => status.log(&format!("SIGHUP: keeping the running config; {e}")),
            }
        }

        let signals = stops.load(Ordering::SeqCst);
        if signals >= 1 && stopping.is_none() {
            stopping = Some((Instant::now(), "signal".to_owned()));
            status.log(&format!(
                "stopping: no new claims; {} run(s) may finish within {}s (a second signal stops them now)",
                slots.len(),
                options.grace.as_secs()
            ));
        }
        if let Some((since, _)) = &stopping
            && (signals >= 2 || since.elapsed() > options.grace)
            && !*shutdown_rx.borrow()
        {
            status
                .log("stopping the runs still going (their process groups are ended and recorded)");
            let _ = shutdown_tx.send(true);
        }
        if let Some((_, why)) = &stopping
            && slots.is_empty()
        {
            break why.clone();
        }

        if stopping.is_none() {
            // Release mode: resume deliveries and follow pull requests, once a minute.
            if config.config.run.mode == RunMode::Release
                && last_release.elapsed() > Duration::from_secs(60)
            {
                last_release = Instant::now();
                let cfg = Arc::clone(&config);
                let result = runtime.block_on(async {
                    let (client, token) = tick::github_preflight(&cfg, &parent_env)
                        .await
                        .map_err(|e| e.to_string())?;
                    let release = cfg.release_mode().ok_or("not in release mode")?;
                    let writer = crate::github::GithubWriter::new(&client, release);
                    let redactor = crate::runner::env::redactor_for(&cfg, &parent_env);
                    release_stage(&cfg, &mut ledger, &client, &writer, &token, &redactor, true)
                        .await
                        .map_err(|e| match e {
                            deliver::ReleaseStop::Blocked(e) => e.to_string(),
                            deliver::ReleaseStop::Ledger(e) => e.to_string(),
                        })
                });
                if let Err(e) = result {
                    status.log(&format!("GitHub: {e}"));
                }
            }
            let busy: Vec<String> = slots.iter().map(|s| s.task.clone()).collect();
            let reaped = runtime.block_on(tick::reap::reap(&mut ledger, &config, &busy))?;
            for r in &reaped {
                status.log(&format!(
                    "reaped {}: {}",
                    r.run_id.as_deref().unwrap_or("-"),
                    r.reason
                ));
            }
            if let Some(ingest) = tick::ingest(&mut ledger, &config, &parent_env)? {
                status.log(&format!(
                    "roadmap changed: {} added, {} updated",
                    ingest.added.len(),
                    ingest.updated.len()
                ));
            }
            // Delivered branches merged by the operator (a few git calls: every few seconds).
            if last_landed.elapsed() > LANDED_EVERY {
                last_landed = Instant::now();
                for landed in tick::landed::settle(&config, &mut ledger)? {
                    status.log(&format!(
                        "{}: merged into {} -> done",
                        landed.task_id, landed.base_branch
                    ));
                }
            }
            let killswitch = ledger.read().killswitch()?.filter(|k| k.paused);
            let paused = killswitch.is_some();
            if paused != was_paused {
                status.log(&pause_line(killswitch.as_ref(), slots.len()));
                was_paused = paused;
            }
            // Paused, nothing in flight: nothing can empty the queue until a person resumes.
            if let Some(k) = &killswitch
                && options.until_empty
                && slots.is_empty()
            {
                pause_stop = Some(format!(
                    "paused by {}{}: --until-empty stops here with nothing in flight; `oxi resume`, then run saturate again",
                    k.by,
                    k.reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ));
                break "paused".to_owned();
            }
            let free = concurrency.saturating_sub(slots.len() as u32);
            let waiting_for_budget = budget_wait.is_some_and(|(busy, since)| {
                slots.len() >= busy && since.elapsed() < BUDGET_RECHECK
            });
            if free > 0 && !paused && !waiting_for_budget {
                let tasks = ledger.read().tasks()?;
                let planned =
                    crate::plan::plan_with(&tasks, now_ms(), config.stacks_on_delivered());
                let eligible = planned.iter().any(crate::plan::PlannedTask::is_eligible);
                // A task in its retry backoff becomes eligible by itself: wait for it.
                let backing_off = planned.iter().any(|p| p.backoff_until_ms.is_some());
                if !eligible && !backing_off && slots.is_empty() && options.until_empty {
                    break "until_empty".to_owned();
                }
                if eligible {
                    let mut problems = tick::blocking_problems(&config, &parent_env);
                    problems.extend(tick::blocked_executors(&config, &ledger)?);
                    if !problems.is_empty() {
                        if slots.is_empty() {
                            return Err(SaturateError::Blocked(problems.join("; ")));
                        }
                        stopping = Some((Instant::now(), "blocked".to_owned()));
                        continue;
                    }
                    let mut report = TickReport::empty(config.config.run.mode);
                    let admitted = runtime.block_on(tick::claim(
                        &config,
                        &mut ledger,
                        &parent_env,
                        "oxi",
                        Some(free),
                        None,
                        &mut report,
                        &tasks,
                        planned,
                    ))?;
                    for stop in report
                        .deferred
                        .iter()
                        .chain(&report.held_at_claim)
                        .chain(&report.failed_at_claim)
                    {
                        status.log(&format!("{}: {}", stop.task_id, stop.reason));
                    }
                    for (spec, run_id) in admitted {
                        slots.push(spawn(
                            &config,
                            &parent_env,
                            spec,
                            run_id,
                            shutdown_rx.clone(),
                        ));
                    }
                    match report.budget_refusal {
                        Some(refusal) if refusal.waits_for_runs_in_flight() => {
                            if budget_wait.is_none() {
                                status.log(&format!(
                                    "budget: waiting for the runs in flight to settle: {refusal}"
                                ));
                            }
                            budget_wait = Some((slots.len(), Instant::now()));
                        }
                        Some(refusal) => {
                            let text = refusal.to_string();
                            status.log(&format!("budget: {text}"));
                            let reason = if refusal.period == "daily" {
                                ledger.record(
                                    None,
                                    None,
                                    Event::DailyBudgetReached(DailyBudgetReached {
                                        refusal: text.clone(),
                                        in_flight: slots.len(),
                                    }),
                                )?;
                                status.log("the day's cap is reached: no new claims; exiting when the runs in flight finish");
                                "daily_budget_reached"
                            } else {
                                status.log("the month's cap is reached: no new claims; exiting when the runs in flight finish");
                                "monthly_budget_reached"
                            };
                            budget_stop = Some(text);
                            stopping = Some((Instant::now(), reason.to_owned()));
                            continue;
                        }
                        None => budget_wait = None,
                    }
                }
            }
        }

        if !status.terminal && slots.is_empty() && stopping.is_none() {
            // Nothing running and nothing claimable: poll less often.
            std::thread::sleep(Duration::from_millis(500));
        }
        let now = now_ms();
        let totals = ledger
            .read()
            .spend_totals(&crate::clock::day_of(now), &crate::clock::month_of(now))?;
        let queue = ledger
            .read()
            .task_counts()?
            .into_iter()
            .filter(|(s, _)| s.is_waiting())
            .map(|(_, n)| n)
            .sum::<u64>();
        let mut block = format!(
            "saturate: {}{}/{} slot(s) busy · spend today {} of {} (held {}) · queue {queue}\n",
            if was_paused {
                "PAUSED (`oxi resume` to claim again) · "
            } else {
                ""
            },
            slots.len(),
            concurrency,
            crate::money::format_usd(totals.day_spent),
            crate::money::format_usd(crate::money::usd_to_micro(config.config.caps.daily_usd)),
            crate::money::format_usd(totals.day_reserved),
        );
        for slot in &slots {
            let cost = ledger
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
        status.show(&block);
        std::thread::sleep(Duration::from_millis(250));
    };
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
