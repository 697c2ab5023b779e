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

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rusqlite::{Connection, OpenFlags};

use crate::support::chaos::{
    JOB_CAP_USD, Rng, chaos_toml, check_caps, check_settled, check_single_live_run, env_number,
    fake_workers_under, print_last_logs, roadmap_items, seed_from_env, spawn_logged, wait_bounded,
};
use crate::support::{Sandbox, Tmpfs, git};

const DAY_CAP_STEP_USD: f64 = 8.0;

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
        self.s.config(&chaos_toml(3, self.day_cap_usd));
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
        let child = spawn_logged(self.s.path(), &log, args);
        (child, log)
    }

    /// A run in flight with a recorded process group, within `within`.
    fn live_run(&self, within: Duration) -> Option<(String, u32, u32)> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(mut conn) = self.reader() {
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
                        check_caps(&mut conn, JOB_CAP_USD, self.day_cap_usd, "mid-round").unwrap();
                        check_single_live_run(&mut conn).unwrap();
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
                wait_bounded(&mut child, &log, Duration::from_secs(10));
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
                wait_bounded(&mut child, &log, Duration::from_secs(60));
                run.is_some()
            }
            Fault::ExpiredLease => {
                let (mut child, log) = self.spawn(&["tick"]);
                let run = self.live_run(Duration::from_secs(3));
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                wait_bounded(&mut child, &log, Duration::from_secs(10));
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
                wait_bounded(&mut child, &log, Duration::from_secs(60));
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
                wait_bounded(&mut child, &log, Duration::from_secs(60));
                true
            }
        }
    }

    /// The next tick, run to completion: it reaps whatever the fault left behind.
    fn next_tick(&mut self) -> i32 {
        let (mut child, log) = self.spawn(&["tick"]);
        let code = wait_bounded(&mut child, &log, Duration::from_secs(120));
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

        let mut conn = conn;
        check_settled(
            &mut conn,
            &self.s.file("roadmap.md"),
            self.s.path(),
            (JOB_CAP_USD, self.day_cap_usd),
            &context,
        );
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

#[test]
fn chaos_rounds_keep_every_invariant() {
    let injections = env_number("OXI_CHAOS_INJECTIONS").unwrap_or(50);
    let minutes = env_number("OXI_CHAOS_MINUTES").unwrap_or(25);
    let seed = seed_from_env("OXI_CHAOS_SEED");
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
        print_last_logs(h.logs.path(), 3, "chaos");
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
