//! What the chaos harnesses share (`chaos`: one repository on SQLite; `fleet_chaos`: three
//! hosts on one PostgreSQL): the seeded sequence, bounded waits on oxi processes, the search
//! for surviving workers, and the invariants, written once in SQL both backends run (a
//! [`LedgerSql`] is an SQLite connection or a PostgreSQL session).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use super::{OxiToml, Worker};

/// The job cap of the chaos configuration ([`chaos_toml`]).
pub const JOB_CAP_USD: f64 = 0.5;

/// The largest single cost report a chaos worker makes: 10k input tokens at Sonnet's $3/Mtok
/// plus one output token at $15/Mtok. A run is stopped at the first report that crosses its
/// reservation (when the caps leave no room to raise it) or the job cap, so it can end at most
/// this far past either; the caps are checked with exactly this allowance per run and no more.
pub const LARGEST_STEP_MICROUSD: i64 = 30_015;

/// splitmix64: a seeded sequence, so a failing seed can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

/// Roadmap items `from..to`, each touching a file of its own.
pub fn roadmap_items(from: usize, to: usize) -> String {
    (from..to)
        .map(|n| {
            format!("**T1-{n} · Chaos item {n}**\nWrite the chaos note. Touch `chaos/{n}.txt`.\n\n")
        })
        .collect()
}

/// The chaos configuration: `oxi-fake-worker`'s `chaos` mix with tight deadlines (hangs end
/// as stalled within a second), small caps that bind often, a daily cap of `day_cap_usd`,
/// quick retries and auto-approval.
pub fn chaos_toml(max_parallel_jobs: u32, day_cap_usd: f64) -> OxiToml {
    OxiToml::new()
        .project()
        .raw(&format!("[run]\nmax_parallel_jobs = {max_parallel_jobs}\n"))
        .raw(&format!(
            r#"[caps]
job_runtime = "20s"
stall_timeout = "1s"
kill_grace = "300ms"
job_usd = {JOB_CAP_USD}
daily_usd = {day_cap_usd}
daily_soft_warn_usd = {warn}
monthly_usd = 100000.0
max_attempts = 3
max_worker_calls = 6
estimate_floor_usd = 0.1
retry_backoff = "1ms"
retry_backoff_max = "1ms"
"#,
            warn = day_cap_usd / 2.0,
        ))
        .worker(Worker::fake("fake").scenario("chaos").sleep_ms(30000))
        .routing(&["fake"], &[])
        .raw("[critic]\nauto_approve = true\n")
}

pub fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The seed named by the variable `name`, else a fresh one.
pub fn seed_from_env(name: &str) -> u64 {
    env_number(name).unwrap_or_else(|| {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    })
}

/// Starts `oxi <args>` in `dir`, its stdout and stderr in `log`: no `OXI_CONFIG` or
/// `OXI_RUN_MODE` from the test's environment, no colour, logging at info.
pub fn spawn_logged(dir: &Path, log: &Path, args: &[&str]) -> Child {
    let out = std::fs::File::create(log).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_oxi"))
        .args(args)
        .current_dir(dir)
        .env_remove("OXI_CONFIG")
        .env_remove("OXI_RUN_MODE")
        .env("NO_COLOR", "1")
        .env("OXI_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap()
}

/// Prints the last `n` oxi logs (`*.log`) of `dir` to stderr, so a failure in CI, where
/// nothing is kept, can still be read.
pub fn print_last_logs(dir: &Path, n: usize, harness: &str) {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|dir| dir.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
    logs.sort();
    for log in logs.iter().rev().take(n).rev() {
        eprintln!(
            "{harness}: {}:\n{}",
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}

/// Waits for an oxi process with a bound (oxi must never hang) and returns its exit code
/// (128 + the signal when a signal ended it). Fails on a panic in its log.
pub fn wait_bounded(child: &mut Child, log: &Path, within: Duration) -> i32 {
    use std::os::unix::process::ExitStatusExt;
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
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
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

/// One value of a row, as the invariants read it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Int(i64),
    Text(String),
    Null,
}

impl Cell {
    pub fn int(&self) -> i64 {
        match self {
            Cell::Int(n) => *n,
            other => panic!("expected an integer, got {other:?}"),
        }
    }

    pub fn text(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// A ledger the invariants can query: the same SQL on SQLite and PostgreSQL (no two-argument
/// `MAX`, sums cast back to `BIGINT`). An error is the connection's, as text.
pub trait LedgerSql {
    fn rows(&mut self, sql: &str) -> Result<Vec<Vec<Cell>>, String>;

    /// The first column of the first row, an integer.
    fn int(&mut self, sql: &str) -> Result<i64, String> {
        let rows = self.rows(sql)?;
        Ok(rows
            .first()
            .and_then(|r| r.first())
            .unwrap_or_else(|| panic!("no row from {sql}"))
            .int())
    }
}

impl LedgerSql for rusqlite::Connection {
    fn rows(&mut self, sql: &str) -> Result<Vec<Vec<Cell>>, String> {
        use rusqlite::types::ValueRef;
        let mut stmt = self.prepare(sql).map_err(|e| e.to_string())?;
        let width = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                (0..width)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            ValueRef::Integer(n) => Cell::Int(n),
                            ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into()),
                            ValueRef::Null => Cell::Null,
                            other => panic!("unexpected value {other:?} from {sql}"),
                        })
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| e.to_string())
    }
}

impl LedgerSql for postgres::Client {
    fn rows(&mut self, sql: &str) -> Result<Vec<Vec<Cell>>, String> {
        use postgres::types::Type;
        let rows = self.query(sql, &[]).map_err(|e| e.to_string())?;
        Ok(rows
            .iter()
            .map(|row| {
                row.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, column)| match *column.type_() {
                        Type::INT8 => row.get::<_, Option<i64>>(i).map_or(Cell::Null, Cell::Int),
                        Type::INT4 => row
                            .get::<_, Option<i32>>(i)
                            .map_or(Cell::Null, |n| Cell::Int(n.into())),
                        Type::BOOL => row
                            .get::<_, Option<bool>>(i)
                            .map_or(Cell::Null, |b| Cell::Int(b.into())),
                        Type::TEXT | Type::VARCHAR | Type::NAME => row
                            .get::<_, Option<String>>(i)
                            .map_or(Cell::Null, Cell::Text),
                        ref other => panic!("unexpected column type {other} from {sql}"),
                    })
                    .collect()
            })
            .collect())
    }
}

/// Spent + reserved against the caps, per day, allowing each run to end at most one cost
/// report past its reservation (the granularity the CLIs report at; the reservation is raised
/// ahead of the cost while the caps allow) and nothing else.
pub fn check_caps(
    db: &mut dyn LedgerSql,
    job_cap_usd: f64,
    day_cap_usd: f64,
    context: &str,
) -> Result<(), String> {
    let job_cap = (job_cap_usd * 1e6) as i64;
    let day_cap = (day_cap_usd * 1e6) as i64;
    let worst_run = db.int("SELECT COALESCE(MAX(actual_microusd), 0) FROM spend")?;
    assert!(
        worst_run <= job_cap + LARGEST_STEP_MICROUSD,
        "{context}: a run spent {worst_run} µUSD, past the job cap {job_cap}"
    );
    // A run's reservation is raised ahead of its cost while the caps allow; past it by more
    // than the one cost report that crossed it would mean money spent without a reservation.
    let worst_gap =
        db.int("SELECT COALESCE(MAX(actual_microusd - reserved_microusd), 0) FROM spend")?;
    assert!(
        worst_gap <= LARGEST_STEP_MICROUSD,
        "{context}: a run spent {worst_gap} µUSD past its reservation"
    );
    let days = db.rows(
        "SELECT day, CAST(SUM(actual_microusd) + SUM(CASE WHEN status = 'reserved' \
         AND reserved_microusd > actual_microusd THEN reserved_microusd - actual_microusd \
         ELSE 0 END) AS BIGINT), CAST(SUM(CASE WHEN actual_microusd > reserved_microusd \
         THEN actual_microusd - reserved_microusd ELSE 0 END) AS BIGINT) FROM spend GROUP BY day",
    )?;
    for row in days {
        let (day, committed, overshoot) = (row[0].text(), row[1].int(), row[2].int());
        assert!(
            committed <= day_cap + overshoot,
            "{context}: {day}: spent + reserved {committed} µUSD over the daily cap {day_cap}"
        );
    }
    Ok(())
}

/// No task has two live runs.
pub fn check_single_live_run(db: &mut dyn LedgerSql) -> Result<(), String> {
    let doubled = db.rows(
        "SELECT task_id FROM runs WHERE status = 'running' AND task_id IS NOT NULL \
         GROUP BY task_id HAVING COUNT(*) > 1",
    )?;
    assert!(
        doubled.is_empty(),
        "task {:?} has two live runs",
        doubled[0][0]
    );
    Ok(())
}

/// What a settled ledger must show once nothing runs: every roadmap item (`roadmap`) in
/// exactly one legal state, none in flight or held; no run marked running; no worker alive
/// under `root` (recorded or not); no reservation open; the rollup equal to the sums; the caps.
pub fn check_settled(
    db: &mut dyn LedgerSql,
    roadmap: &Path,
    root: &Path,
    caps: (f64, f64),
    context: &str,
) {
    // Every roadmap item is in exactly one state, and none is left in flight.
    let roadmap = oxi::roadmap::load(roadmap, 1).unwrap();
    let ids: BTreeSet<String> = roadmap.items.iter().map(|i| i.id.clone()).collect();
    let mut states: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in db.rows("SELECT id, state FROM tasks").unwrap() {
        states.entry(row[0].text()).or_default().push(row[1].text());
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
    let live = db
        .int("SELECT COUNT(*) FROM runs WHERE status = 'running'")
        .unwrap();
    assert_eq!(live, 0, "{context}: runs still marked running");

    // No process of any recorded group is alive, nor any worker nobody recorded (one
    // started just as its supervisor was killed).
    let recorded: BTreeMap<i64, String> = db
        .rows("SELECT id, pgid FROM runs WHERE pgid IS NOT NULL ORDER BY started_at_ms")
        .unwrap()
        .into_iter()
        .map(|row| (row[1].int(), row[0].text()))
        .collect();
    let survivors = fake_workers_under(root);
    assert!(
        survivors.is_empty(),
        "{context}: workers outlived the next tick: {}",
        survivors
            .iter()
            .map(|w| format!(
                "pid {} (group {}, {}, state {}, cwd {})",
                w.pid,
                w.pgid,
                recorded.get(&i64::from(w.pgid)).map_or_else(
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
    let open = db
        .int("SELECT COUNT(*) FROM spend WHERE status = 'reserved'")
        .unwrap();
    assert_eq!(open, 0, "{context}: reservations left open");
    let drift = db
        .int(
            "SELECT COUNT(*) FROM spend_rollup r WHERE r.spent != \
             (SELECT COALESCE(SUM(actual_microusd), 0) FROM spend s WHERE s.day = r.period OR s.month = r.period)",
        )
        .unwrap();
    assert_eq!(
        drift, 0,
        "{context}: spend_rollup differs from the spend rows"
    );
    check_caps(db, caps.0, caps.1, context).unwrap();
}

/// A fake worker still alive after the next tick.
#[derive(Debug)]
pub struct Survivor {
    pub pid: u32,
    pub pgid: u32,
    pub state: String,
    pub cwd: PathBuf,
}

/// Live (not zombie) fake workers whose working directory is in `root`: this harness's
/// workers, never another test's (tests run concurrently, and pids are reused).
pub fn fake_workers_under(root: &Path) -> Vec<Survivor> {
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
