//! The chaos harness: real `oxi tick` and `oxi saturate` processes over `oxi-fake-worker`
//! (scenario `chaos`: slow edits, failures, runaway spenders, hangs with grandchildren, hangs
//! that ignore SIGTERM) in a real repository with a bare `origin`, with one fault injected per
//! round at a random point: SIGKILL of the supervisor (tick or saturate), SIGKILL of a worker,
//! an expired lease whose supervisor pid now belongs to another live process, a full disk under
//! the run directory (a tmpfs, where mounting is allowed), a ledger locked by another process.
//! After each round the next tick runs to completion and the invariants are checked (see
//! `check`). Everything stays on loopback; every wait is bounded.
//!
//! Short form (in `cargo test`): 50 injections. Full form, with its figures:
//! `OXI_CHAOS_INJECTIONS=1000 cargo test --locked --test all chaos -- --nocapture`.
//! `OXI_CHAOS_KEEP=1` keeps the repository and the logs. `OXI_CHAOS_SEED=N` replays the same sequence of faults and delays (the workers' own choices
//! and the machine's timing still vary); `OXI_CHAOS_MINUTES` bounds the time (default 25).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rusqlite::{Connection, OpenFlags};

use crate::support::{OxiToml, Sandbox, Tmpfs, Worker, git};

const OXI: &str = env!("CARGO_BIN_EXE_oxi");

const JOB_CAP_USD: f64 = 0.5;
const DAY_CAP_STEP_USD: f64 = 8.0;
/// The largest single cost report a chaos worker makes: 10k input tokens at Sonnet's $3/Mtok
/// plus one output token at $15/Mtok. A run is stopped at the first report that crosses its
/// reservation (when the caps leave no room to raise it) or the job cap, so it can end at most
/// this far past either; the caps are checked with exactly this allowance per run and no more.
const LARGEST_STEP_MICROUSD: i64 = 30_015;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillTick,
    KillSaturate,
    KillWorker,
    ExpiredLease,
    FullDisk,
    LockedLedger,
}

const FAULTS: [Fault; 6] = [
    Fault::KillTick,
    Fault::KillSaturate,
    Fault::KillWorker,
    Fault::ExpiredLease,
    Fault::FullDisk,
    Fault::LockedLedger,
];

/// splitmix64: a seeded sequence, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

#[derive(Default)]
struct Tally {
    landed: BTreeMap<Fault, u32>,
    seconds: BTreeMap<Fault, f64>,
    missed: BTreeMap<Fault, u32>,
    ticks: u32,
    tick_exits: BTreeMap<i32, u32>,
    day_caps_reached: u32,
}

struct Harness {
    rng: Rng,
    // Field order matters: the mount must go before the directory under it.
    full_disk: Option<Tmpfs>,
    logs: tempfile::TempDir,
    s: Sandbox,
    items: usize,
    day_cap_usd: f64,
    tally: Tally,
    seq: u32,
}

fn roadmap_items(from: usize, to: usize) -> String {
    (from..to)
        .map(|n| {
            format!("**T1-{n} · Chaos item {n}**\nWrite the chaos note. Touch `chaos/{n}.txt`.\n\n")
        })
        .collect()
}

impl Harness {
    fn new(seed: u64) -> Self {
        let s = Sandbox::git_repo();
        s.write(".gitignore", ".oxi/\n");
        s.write(
            "roadmap.md",
            format!("# Roadmap\n\n## Tier 1\n\n{}", roadmap_items(0, 30)),
        );
        let mut h = Harness {
            rng: Rng(seed),
            full_disk: None,
            logs: tempfile::tempdir().unwrap(),
            s,
            items: 30,
            day_cap_usd: DAY_CAP_STEP_USD,
            tally: Tally::default(),
            seq: 0,
        };
        h.write_config();
        git(h.s.path(), &["add", "-A"]);
        git(h.s.path(), &["commit", "-q", "-m", "chaos setup"]);
        let origin = h.logs.path().join("origin.git");
        git(
            h.s.path(),
            &["init", "-q", "--bare", origin.to_str().unwrap()],
        );
        git(
            h.s.path(),
            &["remote", "add", "origin", origin.to_str().unwrap()],
        );
        git(h.s.path(), &["push", "-q", "origin", "main"]);
        h.full_disk = Tmpfs::mount(&h.s.file(".oxi/runs"), "256m");
        if h.full_disk.is_none() {
            eprintln!(
                "chaos: cannot mount a tmpfs here (needs root); full-disk faults are skipped"
            );
        }
        h
    }

    fn write_config(&self) {
        self.s.config(
            &OxiToml::new()
                .project()
                .raw("[run]\nmax_parallel_jobs = 3\n")
                .raw(&format!(
                    r#"[caps]
job_runtime = "20s"
stall_timeout = "1s"
kill_grace = "300ms"
job_usd = {JOB_CAP_USD}
daily_usd = {day}
daily_soft_warn_usd = {warn}
monthly_usd = 100000.0
max_attempts = 3
max_worker_calls = 6
estimate_floor_usd = 0.1
retry_backoff = "1ms"
retry_backoff_max = "1ms"
"#,
                    day = self.day_cap_usd,
                    warn = self.day_cap_usd / 2.0,
                ))
                .worker(Worker::fake("fake").scenario("chaos").sleep_ms(30000))
                .routing(&["fake"], &[])
                .raw("[critic]\nauto_approve = true\n"),
        );
    }

    /// Keeps the repository and the logs past the test (OXI_CHAOS_KEEP) and says where.
    fn keep(self) {
        let Harness {
            s, logs, full_disk, ..
        } = self;
        drop(full_disk);
        eprintln!(
            "chaos: kept {} and {}",
            s.keep().display(),
            logs.keep().display()
        );
    }

    /// Prints the last `n` oxi logs of this harness to stderr.
    fn print_last_logs(&self, n: usize) {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.logs.path())
            .map(|dir| dir.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
        logs.sort();
        for log in logs.iter().rev().take(n).rev() {
            eprintln!(
                "chaos: {}:\n{}",
                log.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }

    fn ledger_path(&self) -> PathBuf {
        self.s.file(".oxi/ledger.db")
    }

    fn reader(&self) -> Option<Connection> {
        Connection::open_with_flags(self.ledger_path(), OpenFlags::SQLITE_OPEN_READ_ONLY).ok()
    }

    /// Starts `oxi <args>` with its output in the log directory.
    fn spawn(&mut self, args: &[&str]) -> (Child, PathBuf) {
        self.seq += 1;
        let log = self
            .logs
            .path()
            .join(format!("{:05}-{}.log", self.seq, args[0]));
        let out = File::create(&log).unwrap();
        let child = Command::new(OXI)
            .args(args)
            .current_dir(self.s.path())
            .env_remove("OXI_CONFIG")
            .env_remove("OXI_RUN_MODE")
            .env("NO_COLOR", "1")
            .env("OXI_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        (child, log)
    }

    /// Waits for a process with a bound: oxi must never hang.
    fn wait(child: &mut Child, log: &Path, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                assert!(
                    !text.contains("panicked at"),
                    "oxi panicked ({}):\n{text}",
                    log.display()
                );
                return status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal_number());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "oxi did not finish within {within:?} (a hang); its log {}:\n{}",
                    log.display(),
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A run in flight with a recorded process group, within `within`.
    fn live_run(&self, within: Duration) -> Option<(String, u32, u32)> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(conn) = self.reader() {
                let found = conn.query_row(
                    "SELECT id, pid, pgid FROM runs WHERE status = 'running' AND pgid IS NOT NULL \
                     ORDER BY started_at_ms DESC LIMIT 1",
                    [],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, u32>(1)?,
                            r.get::<_, u32>(2)?,
                        ))
                    },
                );
                match found {
                    Ok(run) => return Some(run),
                    Err(rusqlite::Error::QueryReturnedNoRows) => {
                        // While waiting, the money invariant must hold at every moment.
                        check_caps(&conn, self.day_cap_usd, "mid-round");
                        check_single_live_run(&conn);
                    }
                    // The very first tick may still be creating the ledger.
                    Err(_) => {}
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    fn inject(&mut self, fault: Fault) -> bool {
        match fault {
            Fault::KillTick | Fault::KillSaturate => {
                let (mut child, log) = if fault == Fault::KillTick {
                    self.spawn(&["tick"])
                } else {
                    self.spawn(&["saturate", "--concurrency", "3"])
                };
                // Anywhere from start-up through ingest, claim, worktree, run, verify, commit.
                let delay = self.rng.millis(0, 1_500);
                std::thread::sleep(delay);
                let landed = child.try_wait().unwrap().is_none();
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                Self::wait(&mut child, &log, Duration::from_secs(10));
                landed
            }
            Fault::KillWorker => {
                let (mut child, log) = self.spawn(&["tick"]);
                let run = self.live_run(Duration::from_secs(3));
                if let Some((_, pid, pgid)) = &run {
                    std::thread::sleep(self.rng.millis(0, 300));
                    // Half the time the worker alone, half the time its whole group.
                    let target = if self.rng.below(2) == 0 {
                        *pid as i32
                    } else {
                        -(*pgid as i32)
                    };
                    let _ = kill(Pid::from_raw(target), Signal::SIGKILL);
                }
                Self::wait(&mut child, &log, Duration::from_secs(60));
                run.is_some()
            }
            Fault::ExpiredLease => {
                let (mut child, log) = self.spawn(&["tick"]);
                let run = self.live_run(Duration::from_secs(3));
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                Self::wait(&mut child, &log, Duration::from_secs(10));
                let Some((run_id, _, _)) = run else {
                    return false;
                };
                // The supervisor's pid now belongs to an unrelated live process (pid reuse, or
                // another pid namespace): only the expired lease tells the reaper it is dead.
                let mut decoy = Command::new("sleep").arg("30").spawn().unwrap();
                let conn = Connection::open(self.ledger_path()).unwrap();
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                let changed = conn
                    .execute(
                        "UPDATE runs SET supervisor_pid = ?1, lease_expires_at_ms = ?2 \
                         WHERE id = ?3 AND status = 'running'",
                        rusqlite::params![decoy.id(), oxi::clock::now_ms() - 1_000, run_id],
                    )
                    .unwrap();
                drop(conn);
                self.next_tick();
                let _ = decoy.kill();
                let _ = decoy.wait();
                changed == 1
            }
            Fault::FullDisk => {
                let Some(mount) = &self.full_disk else {
                    return false;
                };
                // Fill the run directory's filesystem, leaving 0..64 KiB: runs fail to start or
                // fail part-way through their artifacts.
                let filler = mount.path().join("filler");
                let leave = self.rng.below(64 * 1024);
                fill(&filler, leave);
                let (mut child, log) = self.spawn(&["tick"]);
                Self::wait(&mut child, &log, Duration::from_secs(60));
                std::fs::remove_file(&filler).unwrap();
                true
            }
            Fault::LockedLedger => {
                let (mut child, log) = self.spawn(&["tick"]);
                std::thread::sleep(self.rng.millis(0, 800));
                // Another process takes the write lock: mostly for a moment, one time in four
                // for longer than oxi's 10 s busy timeout.
                let hold = if self.rng.below(4) == 0 {
                    self.rng.millis(10_500, 11_500)
                } else {
                    self.rng.millis(100, 2_000)
                };
                let conn = Connection::open(self.ledger_path()).unwrap();
                conn.busy_timeout(Duration::from_secs(30)).unwrap();
                conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                std::thread::sleep(hold);
                conn.execute_batch("COMMIT").unwrap();
                drop(conn);
                Self::wait(&mut child, &log, Duration::from_secs(60));
                true
            }
        }
    }

    /// The next tick, run to completion: it reaps whatever the fault left behind.
    fn next_tick(&mut self) -> i32 {
        let (mut child, log) = self.spawn(&["tick"]);
        let code = Self::wait(&mut child, &log, Duration::from_secs(120));
        self.tally.ticks += 1;
        *self.tally.tick_exits.entry(code).or_default() += 1;
        // 0 nothing failed, 6 budget reached, 7 some task failed. Anything else on a tick that
        // nothing disturbed is a defect (4 would be a ledger error, 8 a blocked tick).
        assert!(
            matches!(code, 0 | 6 | 7),
            "an undisturbed tick exited {code}:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        code
    }

    /// Keeps work available: more roadmap items when few are left, a new budget "day" when
    /// the day's cap is reached (the clock cannot be moved, so the cap is raised instead).
    fn replenish(&mut self, code: i32) {
        let conn = self.reader().unwrap();
        let open: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM tasks WHERE state IN ('queued', 'retry_wait')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if open < 6 {
            let more = roadmap_items(self.items, self.items + 20);
            let mut text = self.s.read("roadmap.md");
            text.push_str(&more);
            self.s.write("roadmap.md", text);
            self.items += 20;
        }
        if code == 6 {
            self.tally.day_caps_reached += 1;
            self.day_cap_usd += DAY_CAP_STEP_USD;
            self.write_config();
        }
    }

    /// The invariants, after the next tick has run.
    fn check(&self, round: u32, fault: Fault) {
        let conn = self.reader().unwrap();
        let context = format!("round {round} ({fault:?})");

        let integrity: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(integrity, "ok", "{context}: integrity_check");

        // Every roadmap item is in exactly one state, and none is left in flight.
        let roadmap = oxi::roadmap::load(&self.s.file("roadmap.md"), 1).unwrap();
        let ids: BTreeSet<String> = roadmap.items.iter().map(|i| i.id.clone()).collect();
        let mut states: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut stmt = conn.prepare("SELECT id, state FROM tasks").unwrap();
        for row in stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .unwrap()
        {
            let (id, state) = row.unwrap();
            states.entry(id).or_default().push(state);
        }
        for id in &ids {
            let found = states.get(id).map_or(0, Vec::len);
            assert_eq!(found, 1, "{context}: roadmap item {id} has {found} states");
            let state = &states[id][0];
            assert!(
                state.parse::<oxi::ledger::TaskState>().is_ok(),
                "{context}: {id} in unknown state {state}"
            );
            assert!(
                !matches!(state.as_str(), "dispatched" | "verifying" | "reviewing"),
                "{context}: {id} still {state} after an undisturbed tick"
            );
            // Nothing in this configuration asks for a human (no approval paths, no reviewer):
            // a held task would mean a fault wedged the queue.
            assert_ne!(state, "held", "{context}: {id} is held");
        }

        // No run is live any more, so certainly no task has two.
        let live: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM runs WHERE status = 'running'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(live, 0, "{context}: runs still marked running");

        // No process of any recorded group is alive, nor any worker nobody recorded (one
        // started just as its supervisor was killed).
        let mut recorded: BTreeMap<u32, String> = BTreeMap::new();
        let mut stmt = conn
            .prepare("SELECT id, pgid FROM runs WHERE pgid IS NOT NULL ORDER BY started_at_ms")
            .unwrap();
        for row in stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))
            .unwrap()
        {
            let (run, pgid) = row.unwrap();
            recorded.insert(pgid, run);
        }
        let survivors = fake_workers_under(self.s.path());
        assert!(
            survivors.is_empty(),
            "{context}: workers outlived the next tick: {}",
            survivors
                .iter()
                .map(|w| format!(
                    "pid {} (group {}, {}, state {}, cwd {})",
                    w.pid,
                    w.pgid,
                    recorded.get(&w.pgid).map_or_else(
                        || "recorded by no run".to_owned(),
                        |r| format!("last run {r}")
                    ),
                    w.state,
                    w.cwd.display()
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );

        // Every reservation is settled or released; the rollup equals the sums.
        let open: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM spend WHERE status = 'reserved'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(open, 0, "{context}: reservations left open");
        let drift: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM spend_rollup r WHERE r.spent != \
                 (SELECT COALESCE(SUM(actual_microusd), 0) FROM spend s WHERE s.day = r.period OR s.month = r.period)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            drift, 0,
            "{context}: spend_rollup differs from the spend rows"
        );
        check_caps(&conn, self.day_cap_usd, &context);
    }

    fn summary(&self, started: Instant) -> String {
        let conn = self.reader().unwrap();
        let scalar = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        let mut by_state = String::new();
        let mut stmt = conn
            .prepare("SELECT state, COUNT(*) FROM tasks GROUP BY state ORDER BY state")
            .unwrap();
        for row in stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .unwrap()
        {
            let (state, n) = row.unwrap();
            by_state.push_str(&format!(" {state}={n}"));
        }
        let mut classes = String::new();
        let mut stmt = conn
            .prepare("SELECT COALESCE(classification, '-'), COUNT(*) FROM runs GROUP BY 1 ORDER BY 2 DESC")
            .unwrap();
        for row in stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .unwrap()
        {
            let (class, n) = row.unwrap();
            classes.push_str(&format!(" {class}={n}"));
        }
        format!(
            "chaos: {} injections landed {:?}, missed {:?}, in {:.0}s\n\
             seconds per kind of round: {:?}\n\
             ticks checked: {} (exits {:?}); day caps reached: {}\n\
             runs: {} ({classes} )\ntasks: {} ({by_state} )\nspent: ${:.2}",
            self.tally.landed.values().sum::<u32>(),
            self.tally.landed,
            self.tally.missed,
            started.elapsed().as_secs_f64(),
            self.tally
                .seconds
                .iter()
                .map(|(k, v)| (k, v.round()))
                .collect::<BTreeMap<_, _>>(),
            self.tally.ticks,
            self.tally.tick_exits,
            self.tally.day_caps_reached,
            scalar("SELECT COUNT(*) FROM runs"),
            scalar("SELECT COUNT(*) FROM tasks"),
            scalar("SELECT COALESCE(SUM(actual_microusd), 0) FROM spend") as f64 / 1e6,
        )
    }
}

/// Spent + reserved against the caps, per day and month, allowing each run to end at most one
/// cost report past its reservation (the granularity the CLIs report at; the reservation is
/// raised ahead of the cost while the caps allow) and nothing else.
fn check_caps(conn: &Connection, day_cap_usd: f64, context: &str) {
    let job_cap = (JOB_CAP_USD * 1e6) as i64;
    let day_cap = (day_cap_usd * 1e6) as i64;
    let worst_run: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(actual_microusd), 0) FROM spend",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        worst_run <= job_cap + LARGEST_STEP_MICROUSD,
        "{context}: a run spent {worst_run} µUSD, past the job cap {job_cap}"
    );
    // A run's reservation is raised ahead of its cost while the caps allow; past it by more
    // than the one cost report that crossed it would mean money spent without a reservation.
    let worst_gap: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(actual_microusd - reserved_microusd), 0) FROM spend",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        worst_gap <= LARGEST_STEP_MICROUSD,
        "{context}: a run spent {worst_gap} µUSD past its reservation"
    );
    let mut stmt = conn
        .prepare(
            "SELECT day, SUM(actual_microusd) + SUM(CASE WHEN status = 'reserved' \
             THEN MAX(reserved_microusd - actual_microusd, 0) ELSE 0 END), \
             SUM(MAX(actual_microusd - reserved_microusd, 0)) FROM spend GROUP BY day",
        )
        .unwrap();
    for row in stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .unwrap()
    {
        let (day, committed, overshoot) = row.unwrap();
        assert!(
            committed <= day_cap + overshoot,
            "{context}: {day}: spent + reserved {committed} µUSD over the daily cap {day_cap}"
        );
    }
}

fn check_single_live_run(conn: &Connection) {
    let doubled: Option<String> = conn
        .query_row(
            "SELECT task_id FROM runs WHERE status = 'running' AND task_id IS NOT NULL \
             GROUP BY task_id HAVING COUNT(*) > 1",
            [],
            |r| r.get(0),
        )
        .ok();
    assert!(doubled.is_none(), "task {doubled:?} has two live runs");
}

/// A fake worker still alive after the next tick.
#[derive(Debug)]
struct Survivor {
    pid: u32,
    pgid: u32,
    state: String,
    cwd: PathBuf,
}

/// Live (not zombie) fake workers whose working directory is in `root`: this harness's
/// workers, never another test's (tests run concurrently, and pids are reused).
fn fake_workers_under(root: &Path) -> Vec<Survivor> {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if !exe.to_string_lossy().contains("oxi-fake-worker") {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state ppid pgrp ...
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split(' ').collect();
        let (Some(state), Some(pgid)) = (
            fields.first(),
            fields.get(2).and_then(|p| p.parse::<u32>().ok()),
        ) else {
            continue;
        };
        if matches!(*state, "Z" | "X") {
            continue;
        }
        // A removed worktree reads as "<path> (deleted)": still under root.
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
        if cwd.starts_with(&root) {
            found.push(Survivor {
                pid,
                pgid,
                state: (*state).to_owned(),
                cwd,
            });
        }
    }
    found
}

/// Writes `path` until the filesystem is full, then frees `leave` bytes.
fn fill(path: &Path, leave: u64) {
    use std::io::Write;
    let mut file = File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    let _ = file.sync_all();
    file.set_len(written.saturating_sub(leave)).unwrap();
}

trait SignalNumber {
    fn signal_number(&self) -> i32;
}

impl SignalNumber for std::process::ExitStatus {
    fn signal_number(&self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        self.signal().unwrap_or(0)
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn chaos_rounds_keep_every_invariant() {
    let injections = env_number("OXI_CHAOS_INJECTIONS").unwrap_or(50);
    let minutes = env_number("OXI_CHAOS_MINUTES").unwrap_or(25);
    let seed = env_number("OXI_CHAOS_SEED").unwrap_or_else(|| {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    });
    eprintln!("chaos: seed {seed} (OXI_CHAOS_SEED={seed} replays it), {injections} injections");
    let started = Instant::now();
    let limit = Duration::from_secs(minutes * 60);
    let mut h = Harness::new(seed);
    let rounds = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut round = 0;
        while u64::from(h.tally.landed.values().sum::<u32>()) < injections {
            assert!(
                started.elapsed() < limit,
                "chaos: time bound reached after {round} rounds\n{}",
                h.summary(started)
            );
            round += 1;
            let fault = FAULTS[h.rng.below(FAULTS.len() as u64) as usize];
            let round_started = Instant::now();
            let landed = h.inject(fault);
            if landed {
                *h.tally.landed.entry(fault).or_default() += 1;
            } else {
                *h.tally.missed.entry(fault).or_default() += 1;
            }
            let code = h.next_tick();
            h.check(round, fault);
            h.replenish(code);
            *h.tally.seconds.entry(fault).or_default() += round_started.elapsed().as_secs_f64();
        }
    }));
    if let Err(failure) = rounds {
        // Survivors would outlive the test (a runaway never stops on its own).
        for worker in fake_workers_under(h.s.path()) {
            let _ = kill(Pid::from_raw(worker.pid as i32), Signal::SIGKILL);
        }
        // What the last oxi processes said (the fault's and the checked tick's), so a failure
        // in CI, where nothing is kept, can still be read.
        h.print_last_logs(3);
        // A failed round is worth a look: keep what it left when asked to.
        if std::env::var_os("OXI_CHAOS_KEEP").is_some() {
            h.keep();
        }
        std::panic::resume_unwind(failure);
    }
    eprintln!("{}", h.summary(started));
    let delivered: i64 = h
        .reader()
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM tasks WHERE state = 'delivered'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(delivered > 0, "chaos: work never got through");
    if std::env::var_os("OXI_CHAOS_KEEP").is_some() {
        h.keep();
    }
}
