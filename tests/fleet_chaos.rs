//! The fleet chaos test: three hosts (`h1`, `h2`, `h3`: three clones of one bare `origin`, each
//! with its own `oxi.toml` naming its host) run `oxi saturate` on one PostgreSQL ledger — a
//! cluster of this test's own, so restarting it disturbs no other test — over
//! `oxi-fake-worker`'s `chaos` mix, while faults land at seeded random moments: SIGKILL of one
//! host's saturate (started again a moment later), SIGKILL of a worker or its whole process
//! group, and `pg_ctl restart -m immediate` of PostgreSQL (every session cut, crash recovery).
//!
//! While the hosts run, the ledger is sampled between faults: spent + reserved within every
//! cap, with the SQLite chaos test's per-run allowance and no more, and never two live runs of
//! one task. Before each restart of PostgreSQL the event trail's digest is taken. At each
//! checkpoint every host is stopped (SIGTERM), then ticks once to completion in turn (each
//! reaps what the faults left of its own runs), and the settled ledger must show every
//! invariant of the SQLite chaos test (`support::chaos::check_settled`: no task lost or in
//! flight, no run left running, no worker of any host alive, reservations settled, the
//! rollup equal to the sums, the caps), plus: no two runs of one task ever overlapped in time,
//! every event recorded before a crash is still there unchanged, and the database's own
//! guarantees (triggers, rollup) pass `integrity_check`. Every wait is bounded.
//!
//! Short form (in `cargo test`, where PostgreSQL is installed; it skips with the command that
//! enables it otherwise, and fails under `CI=true`): 12 injections. Long form:
//! `OXI_FLEET_CHAOS_INJECTIONS=120 cargo test --locked --test all fleet_chaos -- --nocapture`
//! (`OXI_FLEET_CHAOS_SEED=N` replays the sequence of faults and delays, `OXI_FLEET_CHAOS_MINUTES`
//! bounds the time, default 20, `OXI_FLEET_CHAOS_KEEP=1` keeps the clones and the logs).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use oxi_testkit::pg::{PrivateCluster, private_cluster_or_skip};

use crate::support::chaos::{
    Cell, JOB_CAP_USD, LedgerSql, Rng, chaos_toml, check_caps, check_settled,
    check_single_live_run, env_number, fake_workers_under, print_last_logs, roadmap_items,
    seed_from_env, spawn_logged, wait_bounded,
};
use crate::support::{Sandbox, git};

const OXI: &str = env!("CARGO_BIN_EXE_oxi");

const HOSTS: [&str; 3] = ["h1", "h2", "h3"];
const DAY_CAP_STEP_USD: f64 = 8.0;
/// Slots per host: three hosts keep six runs in flight.
const CONCURRENCY: &str = "2";
/// Faults between two checkpoints.
const PHASE: u32 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillHost,
    KillWorker,
    RestartPostgres,
}

/// One host: its clone and its `oxi saturate`, if running.
struct Host {
    name: &'static str,
    dir: PathBuf,
    saturate: Option<(Child, PathBuf)>,
    /// When a host that was killed or exited may start again.
    back_at: Instant,
    /// Exited at the day's cap: stays down until the next checkpoint raises it.
    at_day_cap: bool,
}

#[derive(Default)]
struct Tally {
    landed: BTreeMap<Fault, u32>,
    missed: BTreeMap<Fault, u32>,
    /// Exit codes of saturates that ended on their own (not killed, not stopped by the test).
    saturate_exits: BTreeMap<i32, u32>,
    /// Exit codes of saturates stopped by SIGTERM at a checkpoint.
    stop_exits: BTreeMap<i32, u32>,
    tick_exits: BTreeMap<i32, u32>,
    samples: u32,
    /// Samples the server refused (it was restarting).
    samples_refused: u32,
    checkpoints: u32,
    day_caps_reached: u32,
}

struct Fleet {
    rng: Rng,
    /// origin.git, the clones h1..h3 and logs/.
    root: tempfile::TempDir,
    pg: PrivateCluster,
    url: String,
    hosts: Vec<Host>,
    items: usize,
    day_cap_usd: f64,
    tally: Tally,
    seq: u32,
    sampler: Option<postgres::Client>,
    /// Every event seen before a crash, by id: a digest of the row.
    trail: BTreeMap<i64, String>,
}

impl Fleet {
    fn new(seed: u64, pg: PrivateCluster) -> Self {
        let url = pg.database("fleet_chaos").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("logs")).unwrap();
        let seed_repo = Sandbox::git_repo();
        seed_repo.write(".gitignore", ".oxi/\n");
        seed_repo.write(
            "roadmap.md",
            format!("# Roadmap\n\n## Tier 1\n\n{}", roadmap_items(0, 30)),
        );
        git(seed_repo.path(), &["add", "-A"]);
        git(
            seed_repo.path(),
            &["commit", "-q", "-m", "fleet chaos setup"],
        );
        let origin = root.path().join("origin.git");
        let origin = origin.to_str().unwrap();
        git(seed_repo.path(), &["init", "-q", "--bare", origin]);
        git(seed_repo.path(), &["remote", "add", "origin", origin]);
        git(seed_repo.path(), &["push", "-q", "origin", "main"]);
        let hosts = HOSTS
            .iter()
            .map(|name| {
                git(root.path(), &["clone", "-q", "-b", "main", origin, name]);
                Host {
                    name,
                    dir: root.path().join(name),
                    saturate: None,
                    back_at: Instant::now(),
                    at_day_cap: false,
                }
            })
            .collect();
        let fleet = Fleet {
            rng: Rng(seed),
            root,
            pg,
            url,
            hosts,
            items: 30,
            day_cap_usd: DAY_CAP_STEP_USD,
            tally: Tally::default(),
            seq: 0,
            sampler: None,
            trail: BTreeMap::new(),
        };
        fleet.write_configs();
        fleet
    }

    /// Each clone's `oxi.toml`: the chaos configuration, the shared ledger, its host name.
    fn write_configs(&self) {
        for host in &self.hosts {
            chaos_toml(2, self.day_cap_usd)
                .raw(&format!(
                    "[ledger]\nurl = \"{}\"\n\n[host]\nname = \"{}\"\n",
                    self.url, host.name
                ))
                .write_in(&host.dir);
        }
    }

    fn logs(&self) -> PathBuf {
        self.root.path().join("logs")
    }

    /// Starts `oxi <args>` in host `i`'s clone, its output in the log directory.
    fn spawn(&mut self, i: usize, args: &[&str]) -> (Child, PathBuf) {
        self.seq += 1;
        let log = self.logs().join(format!(
            "{:05}-{}-{}.log",
            self.seq, self.hosts[i].name, args[0]
        ));
        let child = spawn_logged(&self.hosts[i].dir, &log, args);
        (child, log)
    }

    fn start_saturate(&mut self, i: usize) {
        let started = self.spawn(
            i,
            &["saturate", "--concurrency", CONCURRENCY, "--grace", "1s"],
        );
        self.hosts[i].saturate = Some(started);
    }

    /// Notes saturates that ended on their own and starts every host that is due.
    fn tend_hosts(&mut self) {
        for i in 0..self.hosts.len() {
            let host = &mut self.hosts[i];
            if let Some((child, log)) = &mut host.saturate {
                if child.try_wait().unwrap().is_none() {
                    continue;
                }
                let code = wait_bounded(child, log, Duration::from_secs(1));
                // The day's cap is reached: it stays down until a checkpoint raises it.
                host.at_day_cap = stopped_at_day_cap(code, log);
                host.saturate = None;
                host.back_at = Instant::now() + Duration::from_millis(300);
                *self.tally.saturate_exits.entry(code).or_default() += 1;
            }
            let host = &self.hosts[i];
            if !host.at_day_cap && Instant::now() >= host.back_at {
                self.start_saturate(i);
            }
        }
    }

    /// The money and single-run invariants, read while the hosts run. A server that is
    /// restarting refuses the read; that sample is counted and skipped.
    fn sample(&mut self) {
        if self.sampler.is_none() {
            self.sampler = postgres::Client::connect(&self.url, postgres::NoTls).ok();
        }
        let Some(db) = &mut self.sampler else {
            self.tally.samples_refused += 1;
            return;
        };
        let read = check_caps(db, JOB_CAP_USD, self.day_cap_usd, "mid-run")
            .and_then(|()| check_single_live_run(db));
        if read.is_ok() {
            self.tally.samples += 1;
        } else {
            self.tally.samples_refused += 1;
            self.sampler = None;
        }
    }

    /// The time between two faults: hosts started as they are due, the ledger sampled.
    fn gap(&mut self) {
        let until = Instant::now() + self.rng.millis(300, 2_500);
        while Instant::now() < until {
            self.tend_hosts();
            self.sample();
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn inject(&mut self, fault: Fault) -> bool {
        match fault {
            Fault::KillHost => {
                let running: Vec<usize> = (0..self.hosts.len())
                    .filter(|&i| self.hosts[i].saturate.is_some())
                    .collect();
                if running.is_empty() {
                    return false;
                }
                let i = running[self.rng.below(running.len() as u64) as usize];
                let down_for = self.rng.millis(200, 2_000);
                let host = &mut self.hosts[i];
                let (mut child, log) = host.saturate.take().unwrap();
                let landed = child.try_wait().unwrap().is_none();
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                wait_bounded(&mut child, &log, Duration::from_secs(10));
                host.back_at = Instant::now() + down_for;
                landed
            }
            Fault::KillWorker => {
                // A live worker of this fleet, found in /proc (never a pid the ledger recorded
                // that another process may have taken since).
                let workers = fake_workers_under(self.root.path());
                if workers.is_empty() {
                    return false;
                }
                let worker = &workers[self.rng.below(workers.len() as u64) as usize];
                // Half the time the worker alone, half the time its whole group.
                let target = if self.rng.below(2) == 0 {
                    worker.pid as i32
                } else {
                    -(worker.pgid as i32)
                };
                kill(Pid::from_raw(target), Signal::SIGKILL).is_ok()
            }
            Fault::RestartPostgres => {
                self.remember_trail();
                self.sampler = None;
                self.pg.restart_immediate().unwrap();
                true
            }
        }
    }

    /// The trail as it stands, to compare after the crash: every event committed before it
    /// must survive it unchanged.
    fn remember_trail(&mut self) {
        let Ok(mut db) = postgres::Client::connect(&self.url, postgres::NoTls) else {
            return;
        };
        if let Ok(rows) = trail(&mut db) {
            self.compare_trail(rows, "before a crash");
        }
    }

    /// Every event seen before is still there, unchanged; the new ones are remembered.
    fn compare_trail(&mut self, rows: Vec<(i64, String)>, context: &str) {
        let now: BTreeMap<i64, String> = rows.into_iter().collect();
        for (id, digest) in &self.trail {
            assert_eq!(
                now.get(id),
                Some(digest),
                "{context}: event {id}, recorded before a crash, is gone or changed"
            );
        }
        self.trail.extend(now);
    }

    /// Stops every host, ticks each once to completion, checks the settled ledger and tops up
    /// the work and the budget.
    fn checkpoint(&mut self, context: &str) {
        self.tally.checkpoints += 1;
        for i in 0..self.hosts.len() {
            if let Some((mut child, log)) = self.hosts[i].saturate.take() {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
                let code = wait_bounded(&mut child, &log, Duration::from_secs(60));
                *self.tally.stop_exits.entry(code).or_default() += 1;
                self.hosts[i].at_day_cap |= stopped_at_day_cap(code, &log);
            }
        }
        // One undisturbed tick per host, in turn: each reaps its own host's leftovers.
        let mut day_cap = self.hosts.iter().any(|h| h.at_day_cap);
        for i in 0..self.hosts.len() {
            let (mut child, log) = self.spawn(i, &["tick"]);
            let code = wait_bounded(&mut child, &log, Duration::from_secs(120));
            *self.tally.tick_exits.entry(code).or_default() += 1;
            // 0 nothing failed, 6 budget reached, 7 some task failed. Anything else on a tick
            // that nothing disturbed is a defect (4 would be a ledger error).
            assert!(
                matches!(code, 0 | 6 | 7),
                "{context}: an undisturbed tick of {} exited {code}:\n{}",
                self.hosts[i].name,
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            day_cap |= code == 6;
        }
        self.check(context);
        self.replenish(day_cap);
        for host in &mut self.hosts {
            host.at_day_cap = false;
            host.back_at = Instant::now();
        }
    }

    fn db(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }

    /// The invariants of a settled fleet.
    fn check(&mut self, context: &str) {
        let mut db = self.db();
        check_settled(
            &mut db,
            &self.hosts[0].dir.join("roadmap.md"),
            self.root.path(),
            (JOB_CAP_USD, self.day_cap_usd),
            context,
        );
        // No two runs of one task ever overlapped: a run's span runs from its start to its
        // end as recorded (a reaped run's end is when it was reaped, later than its death).
        let overlaps = db
            .rows(
                "SELECT a.task_id, a.id, a.host, b.id, b.host FROM runs a JOIN runs b \
                 ON a.task_id = b.task_id AND a.id < b.id \
                 WHERE a.started_at_ms < b.ended_at_ms AND b.started_at_ms < a.ended_at_ms",
            )
            .unwrap();
        assert!(
            overlaps.is_empty(),
            "{context}: runs of one task overlapped: {overlaps:?}"
        );
        // What was committed before each crash survived it unchanged.
        let rows = trail(&mut db).unwrap();
        self.compare_trail(rows, context);
        let ledger = oxi::ledger::Ledger::open_postgres(&self.url, None).unwrap();
        let problems = ledger.integrity_check().unwrap();
        assert!(
            problems.is_empty(),
            "{context}: integrity_check: {problems:?}"
        );
    }

    /// More roadmap items (in every clone) when few are left open; a higher daily cap when a
    /// host reached it (the clock cannot be moved, so the cap is raised instead).
    fn replenish(&mut self, day_cap: bool) {
        let open = self
            .db()
            .int("SELECT COUNT(*) FROM tasks WHERE state IN ('queued', 'retry_wait')")
            .unwrap();
        if open < 12 {
            let more = roadmap_items(self.items, self.items + 30);
            for host in &self.hosts {
                let path = host.dir.join("roadmap.md");
                let mut text = std::fs::read_to_string(&path).unwrap();
                text.push_str(&more);
                std::fs::write(&path, text).unwrap();
            }
            self.items += 30;
        }
        if day_cap {
            self.tally.day_caps_reached += 1;
            self.day_cap_usd += DAY_CAP_STEP_USD;
            self.write_configs();
        }
    }

    /// Kills whatever still runs (after a failure: a runaway never stops on its own).
    fn kill_all(&mut self) {
        for host in &mut self.hosts {
            if let Some((mut child, _)) = host.saturate.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for worker in fake_workers_under(self.root.path()) {
            let _ = kill(Pid::from_raw(worker.pid as i32), Signal::SIGKILL);
        }
    }

    fn summary(&self, started: Instant) -> String {
        let mut db = self.db();
        let pairs = |db: &mut postgres::Client, sql: &str| -> String {
            db.rows(sql)
                .unwrap()
                .iter()
                .map(|r| {
                    let key = match &r[0] {
                        Cell::Text(t) => t.clone(),
                        other => format!("{other:?}"),
                    };
                    format!(" {key}={}", r[1].int())
                })
                .collect()
        };
        let by_state = pairs(
            &mut db,
            "SELECT state, COUNT(*) FROM tasks GROUP BY state ORDER BY state",
        );
        let by_class = pairs(
            &mut db,
            "SELECT COALESCE(classification, '-'), COUNT(*) FROM runs GROUP BY 1 ORDER BY 2 DESC",
        );
        let by_host = pairs(
            &mut db,
            "SELECT COALESCE(host, '-'), COUNT(*) FROM runs GROUP BY 1 ORDER BY 1",
        );
        let spent = db
            .int("SELECT CAST(COALESCE(SUM(actual_microusd), 0) AS BIGINT) FROM spend")
            .unwrap();
        format!(
            "fleet chaos: {} injections landed {:?}, missed {:?}, in {:.0}s\n\
             checkpoints: {} (ticks' exits {:?}); saturates ended on their own: {:?}, \
             stopped: {:?}; day caps reached: {}\n\
             samples: {} ({} refused while the server restarted)\n\
             runs by host:{by_host}; by class:{by_class}\ntasks:{by_state}\nspent: ${:.2}",
            self.tally.landed.values().sum::<u32>(),
            self.tally.landed,
            self.tally.missed,
            started.elapsed().as_secs_f64(),
            self.tally.checkpoints,
            self.tally.tick_exits,
            self.tally.saturate_exits,
            self.tally.stop_exits,
            self.tally.day_caps_reached,
            self.tally.samples,
            self.tally.samples_refused,
            spent as f64 / 1e6,
        )
    }

    /// Keeps the clones and logs past the test (OXI_FLEET_CHAOS_KEEP) and says where.
    fn keep(self) {
        eprintln!("fleet chaos: kept {}", self.root.keep().display());
    }
}

/// A saturate that ended because the day's cap left no room (it says so; its exit is 0 when
/// every run it started finished well).
fn stopped_at_day_cap(code: i32, log: &std::path::Path) -> bool {
    code == 6
        || std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("stopped (daily_budget_reached)")
}

/// Every event's id and a digest of its row: any change to one changes its digest.
fn trail(db: &mut postgres::Client) -> Result<Vec<(i64, String)>, postgres::Error> {
    Ok(db
        .query(
            "SELECT id, md5(id::text || '|' || at_ms::text || '|' || kind || '|' || \
             COALESCE(task_id, '') || '|' || COALESCE(run_id, '') || '|' || actor || '|' || data) \
             FROM events ORDER BY id",
            &[],
        )?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// The next fault: a host killed 4 times in 10, a worker 3, PostgreSQL restarted 3.
fn pick(rng: &mut Rng) -> Fault {
    match rng.below(10) {
        0..=3 => Fault::KillHost,
        4..=6 => Fault::KillWorker,
        _ => Fault::RestartPostgres,
    }
}

fn run(fleet: &mut Fleet, injections: u64, limit: Duration, started: Instant) {
    let mut round = 0u32;
    while u64::from(fleet.tally.landed.values().sum::<u32>()) < injections {
        assert!(
            started.elapsed() < limit,
            "fleet chaos: time bound reached after {round} rounds\n{}",
            fleet.summary(started)
        );
        round += 1;
        fleet.gap();
        let fault = pick(&mut fleet.rng);
        if fleet.inject(fault) {
            *fleet.tally.landed.entry(fault).or_default() += 1;
        } else {
            *fleet.tally.missed.entry(fault).or_default() += 1;
        }
        if round.is_multiple_of(PHASE) {
            fleet.checkpoint(&format!("checkpoint after round {round} ({fault:?})"));
        }
    }
    fleet.gap();
    fleet.checkpoint(&format!("final checkpoint after round {round}"));
}

#[test]
fn fleet_chaos_three_hosts_on_postgres_keep_every_invariant() {
    let Some(pg) = private_cluster_or_skip("fleet_chaos") else {
        return;
    };
    let injections = env_number("OXI_FLEET_CHAOS_INJECTIONS").unwrap_or(12);
    let minutes = env_number("OXI_FLEET_CHAOS_MINUTES").unwrap_or(20);
    let seed = seed_from_env("OXI_FLEET_CHAOS_SEED");
    eprintln!(
        "fleet chaos: seed {seed} (OXI_FLEET_CHAOS_SEED={seed} replays it), {injections} injections"
    );
    let started = Instant::now();
    let mut fleet = Fleet::new(seed, pg);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(
            &mut fleet,
            injections,
            Duration::from_secs(minutes * 60),
            started,
        );
    }));
    let keep = std::env::var_os("OXI_FLEET_CHAOS_KEEP").is_some();
    if let Err(failure) = outcome {
        fleet.kill_all();
        print_last_logs(&fleet.logs(), 4, "fleet chaos");
        if keep {
            fleet.keep();
        }
        std::panic::resume_unwind(failure);
    }
    eprintln!("{}", fleet.summary(started));
    // Work got through, and on every host.
    let mut db = fleet.db();
    let delivered = db
        .int("SELECT COUNT(*) FROM tasks WHERE state = 'delivered'")
        .unwrap();
    assert!(delivered > 0, "fleet chaos: work never got through");
    for host in HOSTS {
        let runs = db
            .int(&format!("SELECT COUNT(*) FROM runs WHERE host = '{host}'"))
            .unwrap();
        assert!(runs > 0, "fleet chaos: host {host} never ran anything");
    }
    if keep {
        fleet.keep();
    }
}

// --- What the fleet chaos test found, each pinned by a test of its own ----------------------

/// A repository of host `alpha` working `roadmap` with `worker`, its ledger at `ledger_url`
/// (else the SQLite file).
fn alpha_repo_with(
    roadmap: &str,
    worker: crate::support::Worker,
    ledger_url: Option<&str>,
) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", format!("# Roadmap\n\n## Tier 0\n\n{roadmap}"));
    s.write(".gitignore", ".oxi/\n");
    let ledger =
        ledger_url.map_or_else(String::new, |url| format!("[ledger]\nurl = \"{url}\"\n\n"));
    s.config(
        &crate::support::OxiToml::new()
            .project()
            .worker(worker)
            .routing(&["fake"], &[])
            .raw(&format!("{ledger}[host]\nname = \"alpha\"\n")),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    s
}

const TWO_TASKS: &str =
    "**T0-1 · Add a greeting file**\nSay hi.\n\n**T0-2 · Add a farewell file**\nSay goodbye.\n";

/// A repository of host `alpha` with two tasks, ingested into its SQLite ledger (or into the
/// database at `ledger_url`), and that ledger open.
fn alpha_repo(ledger_url: Option<&str>) -> (Sandbox, oxi::ledger::Ledger) {
    let s = alpha_repo_with(
        TWO_TASKS,
        crate::support::Worker::fake("fake").scenario("edit"),
        ledger_url,
    );
    s.oxi(&["ingest"]).ok();
    let ledger = match ledger_url {
        Some(url) => oxi::ledger::Ledger::open_postgres(url, None),
        None => oxi::ledger::Ledger::open_existing(&s.file(".oxi/ledger.db")),
    };
    (s, ledger.unwrap())
}

/// Host `beta`'s heartbeat, now.
fn beta_beats(ledger: &mut oxi::ledger::Ledger) {
    let versions = BTreeMap::new();
    ledger
        .write(|q| {
            q.host_heartbeat(&oxi::ledger::HostBeat {
                name: "beta",
                machine_id: "machine-b",
                labels: &[],
                pid: 4242,
                oxi_version: "0.1.0",
                cli_versions: &versions,
                at_ms: oxi::clock::now_ms(),
            })
        })
        .unwrap();
}

/// Host `beta` claims `task` with run `run` (supervised by `supervisor`, its worker `pgid`,
/// its lease already expired).
fn beta_claims(
    ledger: &mut oxi::ledger::Ledger,
    task: &str,
    run: &str,
    supervisor: u32,
    pgid: u32,
) {
    use oxi::ledger::{NewRun, TaskState, Transition};
    let now = oxi::clock::now_ms();
    let day = oxi::clock::rfc3339(now)[..10].to_owned();
    ledger
        .write(|q| {
            q.transition_task(
                task,
                &Transition::by_oxi(TaskState::Queued, TaskState::Dispatched, "claimed by beta"),
                now,
            )?;
            q.begin_run(&NewRun {
                id: run,
                task_id: Some(task),
                attempt: 1,
                role: "executor",
                worker: "fake",
                worker_kind: "claude",
                model: None,
                run_dir: "/elsewhere/runs/r",
                worktree: Some("/elsewhere/wt"),
                branch: Some("oxi/elsewhere"),
                started_at_ms: now - 60_000,
                reserve_microusd: 100_000,
                day: &day,
                month: &day[..7],
                actor: "oxi",
                supervisor_pid: supervisor,
            })?;
            q.record_run_host(run, "beta")?;
            q.record_run_process(run, pgid, now - 1_000)
        })
        .unwrap();
}

/// A pid no process has any more.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// The fleet chaos test's first finding: each host's reaper took every task in flight without
/// a live run for its own, so a host requeued (and then ran) the task another host was
/// verifying, or had claimed a moment before; and it judged another host's runs by pids of its
/// own machine, where it would signal whatever process group has that number. A host now
/// reaps only its own; another host's runs and tasks wait until that host stops heartbeating,
/// and are then taken back without touching any process.
#[test]
fn a_host_never_reaps_a_live_hosts_runs_or_tasks_nor_signals_another_hosts_processes() {
    use oxi::ledger::{RunEnd, TaskState, Transition};
    use std::os::unix::process::CommandExt;
    let (s, mut ledger) = alpha_repo(None);
    // A process group standing in for beta's worker: the number is beta's, the process ours.
    let mut stand_in = Command::new("sleep")
        .arg("60")
        .process_group(0)
        .spawn()
        .unwrap();
    beta_beats(&mut ledger);
    beta_claims(&mut ledger, "T0-1", "run-beta-1", dead_pid(), stand_in.id());
    // T0-2: beta's run ended and beta is verifying it.
    beta_claims(&mut ledger, "T0-2", "run-beta-2", dead_pid(), dead_pid());
    ledger
        .write(|q| {
            let end = RunEnd {
                ended_at_ms: oxi::clock::now_ms(),
                classification: "success",
                release: false,
                ..RunEnd::default()
            };
            q.finish_run("run-beta-2", &end)?;
            q.transition_task(
                "T0-2",
                &Transition::by_oxi(TaskState::Dispatched, TaskState::Verifying, "verify"),
                oxi::clock::now_ms(),
            )
        })
        .unwrap();

    let out = s.oxi(&["tick", "--format", "json"]).json();
    assert_eq!(out["reaped"], serde_json::json!([]), "{out:#}");
    let state =
        |ledger: &oxi::ledger::Ledger, id: &str| ledger.read().task(id).unwrap().unwrap().state;
    assert_eq!(state(&ledger, "T0-1"), TaskState::Dispatched);
    assert_eq!(state(&ledger, "T0-2"), TaskState::Verifying);
    assert_eq!(ledger.read().running_runs().unwrap().len(), 1);
    assert!(
        stand_in.try_wait().unwrap().is_none(),
        "beta's process group was signalled"
    );

    // Beta stops heartbeating: its run and its task are taken back, and still no process of
    // its is touched (it ran on another machine).
    rusqlite::Connection::open(s.file(".oxi/ledger.db"))
        .unwrap()
        .execute(
            "UPDATE hosts SET last_heartbeat_ms = ?1 WHERE name = 'beta'",
            [oxi::clock::now_ms() - 3_600_000],
        )
        .unwrap();
    let out = s.oxi(&["tick", "--format", "json"]).json();
    let reaped = out["reaped"].as_array().unwrap();
    assert_eq!(reaped.len(), 2, "{out:#}");
    assert!(
        reaped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("its host beta stopped heartbeating"),
        "{out:#}"
    );
    assert_eq!(reaped[0]["group_ended"], false);
    assert!(ledger.read().running_runs().unwrap().is_empty());
    assert!(
        stand_in.try_wait().unwrap().is_none(),
        "beta's process group was signalled"
    );
    let _ = stand_in.kill();
    let _ = stand_in.wait();
    for id in ["T0-1", "T0-2"] {
        assert_ne!(state(&ledger, id), TaskState::Dispatched, "{id}");
        assert_ne!(state(&ledger, id), TaskState::Verifying, "{id}");
    }
}

/// The second: three hosts started on one new roadmap each ingested it, and all but the first
/// failed on the tasks' primary key (their reads, in PostgreSQL's read-committed transactions,
/// did not wait for the first's inserts). Ingests now take turns, each reading what the one
/// before it committed.
#[test]
fn a_host_ingesting_while_another_host_ingests_the_same_roadmap_waits_and_adds_nothing_twice() {
    let Some(cluster) = oxi_testkit::pg::cluster_or_skip("fleet_ingest") else {
        return;
    };
    let url = cluster.database("fleet_ingest").unwrap();
    // The tasks exactly as an ingest makes them: ingested into a scratch SQLite ledger first.
    let (_, scratch) = alpha_repo(None);
    let specs: Vec<oxi::ledger::TaskSpec> = scratch
        .read()
        .tasks()
        .unwrap()
        .into_iter()
        .map(|t| t.spec)
        .collect();
    let s = alpha_repo_with(
        TWO_TASKS,
        crate::support::Worker::fake("fake").scenario("edit"),
        Some(&url),
    );
    // Another host ingests the same roadmap and holds its transaction open a while.
    let mut other = oxi::ledger::Ledger::open_postgres(&url, None).unwrap();
    let (inserted, release) = (
        std::sync::mpsc::channel::<()>(),
        std::sync::mpsc::channel::<()>(),
    );
    let (inserted_tx, inserted_rx) = inserted;
    let (release_tx, release_rx) = release;
    let holder = std::thread::spawn(move || {
        other
            .write(|q| {
                q.lock_for_ingest()?;
                for spec in &specs {
                    q.insert_task(spec, oxi::ledger::TaskState::Queued, 1)?;
                }
                inserted_tx.send(()).unwrap();
                let _ = release_rx.recv_timeout(Duration::from_secs(3));
                Ok(())
            })
            .unwrap();
    });
    inserted_rx.recv().unwrap();
    let mut ingest = Command::new(OXI)
        .arg("ingest")
        .current_dir(s.path())
        .env_remove("OXI_CONFIG")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let it reach the ledger while the other host's transaction is open.
    std::thread::sleep(Duration::from_millis(1_500));
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ingest.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "oxi ingest hung");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = ingest.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The third: a saturate whose PostgreSQL session died in a restart said only "ledger: error
/// communicating with the server". It still exits (a session cut mid-write cannot be resumed
/// blindly), now saying what happened and what to do; nothing it had committed is lost, its
/// worker dies with it, and the next tick takes the interrupted run back and finishes the task.
#[test]
fn a_saturate_whose_postgres_restarts_exits_saying_so_and_the_next_tick_recovers() {
    use crate::support::Worker;
    let Some(pg) = private_cluster_or_skip("fleet_pg_restart") else {
        return;
    };
    let url = pg.database("fleet_pg_restart").unwrap();
    let s = alpha_repo_with(
        "**T0-1 · Add a greeting file**\nSay hi.\n",
        Worker::fake("fake").scenario("slow-edit:4000"),
        Some(&url),
    );
    let log = s.file("saturate.log");
    let mut saturate = spawn_logged(s.path(), &log, &["saturate", "--concurrency", "1"]);
    // Once its run is in flight, the server restarts.
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while db
        .int("SELECT COUNT(*) FROM runs WHERE status = 'running' AND pid IS NOT NULL")
        .unwrap_or(0)
        == 0
    {
        assert!(Instant::now() < deadline, "no run started");
        std::thread::sleep(Duration::from_millis(50));
    }
    pg.restart_immediate().unwrap();
    let code = wait_bounded(&mut saturate, &log, Duration::from_secs(60));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, 4, "{text}");
    assert!(
        text.contains("the connection to the PostgreSQL ledger was lost")
            && text.contains("run oxi again"),
        "{text}"
    );
    // Its worker went with it; the next tick takes the run back and finishes the task.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fake_workers_under(s.path()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the worker outlived its saturate"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let tick = s.oxi(&["tick", "--format", "json"]);
    let json = tick.json();
    assert_eq!(json["reaped"][0]["task_id"], "T0-1", "{json:#}");
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    assert_eq!(
        db.rows("SELECT state FROM tasks WHERE id = 'T0-1'")
            .unwrap()[0][0],
        Cell::Text("delivered".into())
    );
}
