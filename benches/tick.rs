//! Tick benchmarks (`cargo bench --bench tick`):
//!
//! - a tick with nothing to do, as `oxi tick` is run by cron (a fresh process each time), on
//!   ledgers of 0 and 1,000,000 events: median wall time and its ratio to `/bin/true` spawned
//!   the same way in the same run (goal: <= 5 ms, flat in ledger size), and the CPU time the
//!   tick process used over that of `oxi --version` (the same binary's start and exit);
//! - the overhead of one dispatch for a worker that exits at once (`oxi-fake-worker edit`, no
//!   acceptance commands), by phase (goal: <= 50 ms excluding `git worktree add`).
//!
//! `-- --quick` (CI): the no-op tick only, 25 samples (the fastest wall time counts, the median
//! CPU time), 0 and 100,000 events; its two CPU ratios to `oxi --version` are checked against
//! benches/baseline.json (see benches/support/mod.rs). The wall ratio to `/bin/true` is
//! printed, not gated: a debug `oxi` is a 200–340 MB file whose start is page faults, and those
//! do not scale with the machine's load as `/bin/true`'s exec does (the ratio measured 9.9
//! under load 17 and 14 on an idle machine, for the same binary). The CPU time of the same
//! binary's `--version` moves with the same costs, and CPU time leaves out the waits for a core
//! that a loaded machine adds. The dispatch figures are absolute times, printed and never gated.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const OXI: &str = env!("CARGO_BIN_EXE_oxi");
const FAKE: &str = env!("CARGO_BIN_EXE_oxi-fake-worker");

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

fn repo(roadmap: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    git(root, &["init", "-q", "-b", "main"]);
    std::fs::write(root.join(".gitignore"), ".oxi/\n").unwrap();
    std::fs::write(root.join("roadmap.md"), roadmap).unwrap();
    std::fs::write(
        root.join("oxi.toml"),
        format!(
            "[workers.fake]\nkind = \"claude\"\ncommand = [\"{FAKE}\"]\nmodel = \"claude-sonnet-4-5\"\nset_env = {{ OXI_FAKE_SCENARIO = \"edit\" }}\n\n[routing]\nexecutor = [\"fake\"]\nreviewer = [\"fake\"]\n"
        ),
    )
    .unwrap();
    git(root, &["add", "-A"]);
    git(root, &["commit", "-q", "-m", "bench"]);
    dir
}

fn run(program: &str, args: &[&str], dir: &Path) -> (Duration, String) {
    let started = Instant::now();
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stderr(Stdio::null())
        .output()
        .unwrap();
    (
        started.elapsed(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// One run of a process, as [`run`], with the CPU time it used (its own and its children's).
fn run_timed(program: &str, args: &[&str], dir: &Path) -> (Duration, Duration) {
    let before = support::children_cpu();
    let (wall, _) = run(program, args, dir);
    (wall, support::children_cpu() - before)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn add_events(db: &Path, n: u64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(&format!(
        "WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < {n})
         INSERT INTO events (at_ms, kind, task_id, actor, data)
         SELECT 1700000000000 + x, 'task_state_changed', 'T0-1', 'oxi', '{{\"from\":\"queued\",\"to\":\"dispatched\"}}' FROM seq;"
    ))
    .unwrap();
}

fn noop_bench(guard: &mut support::Guard) {
    println!("\n## tick with nothing to do (fresh process each time)");
    // One task, already done in the roadmap: nothing is eligible.
    let dir = repo("# Roadmap\n\n- [x] already done\n");
    let (_, first) = run(OXI, &["tick", "--format", "json"], dir.path());
    assert!(first.contains("nothing_to_do"), "{first}");
    let db = dir.path().join(".oxi/ledger.db");
    let (samples, events) = if support::quick() {
        (25, 100_000)
    } else {
        (40, 1_000_000)
    };
    for (name, extra) in [("0_events", 0u64), ("with_events", events)] {
        let label = format!("{extra} events");
        if extra > 0 {
            add_events(&db, extra);
        }
        let (mut tick_wall, mut tick_cpu, mut start_cpu, mut truth) =
            (vec![], vec![], vec![], vec![]);
        for _ in 0..samples {
            let (wall, cpu) = run_timed(OXI, &["tick"], dir.path());
            tick_wall.push(wall);
            tick_cpu.push(cpu);
            start_cpu.push(run_timed(OXI, &["--version"], dir.path()).1);
            truth.push(run("/bin/true", &[], dir.path()).0);
        }
        let (o, t) = (support::typical(tick_wall), support::typical(truth));
        // The median, even in quick mode: waiting for a core adds no CPU time, so the fastest
        // sample is not the least disturbed one here but a lucky one (a `--version` that
        // found more of the binary's pages mapped), and a lucky denominator moved the ratio
        // 13% between runs where the median moved it 7%.
        let (tc, sc) = (median(tick_cpu), median(start_cpu));
        println!(
            "{label}: oxi tick {:.2} ms, /bin/true {:.2} ms, ratio {:.1}; CPU: oxi tick {:.2} ms, oxi --version {:.2} ms, ratio {:.2}",
            o.as_secs_f64() * 1e3,
            t.as_secs_f64() * 1e3,
            o.as_secs_f64() / t.as_secs_f64(),
            tc.as_secs_f64() * 1e3,
            sc.as_secs_f64() * 1e3,
            tc.as_secs_f64() / sc.as_secs_f64(),
        );
        guard.ratio(
            &format!("noop_cpu_vs_version_{name}"),
            tc.as_secs_f64() / sc.as_secs_f64(),
        );
    }
}

fn dispatch_bench() {
    println!("\n## one dispatch, worker exits at once (medians over 10 ticks)");
    let mut roadmap = String::from("# Roadmap\n\n");
    for i in 0..10 {
        roadmap.push_str(&format!("**T0-{i} · Task number {i}**\nDo it.\n\n"));
    }
    let dir = repo(&roadmap);
    let mut phases: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
    let mut walls = Vec::new();
    for _ in 0..10 {
        let (wall, out) = run(OXI, &["tick", "--format", "json"], dir.path());
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let job = &v["jobs"][0];
        assert_eq!(job["state"], "delivered", "{v:#}");
        walls.push(wall);
        for (name, value) in [
            ("tick: reap", &v["phases_ms"]["reap"]),
            ("tick: ingest", &v["phases_ms"]["ingest"]),
            (
                "tick: plan + claim (admission, run row)",
                &v["phases_ms"]["claim"],
            ),
            ("job: git worktree add", &job["phases_ms"]["worktree"]),
            (
                "job: spawn -> exit -> settle",
                &job["phases_ms"]["executor"],
            ),
            (
                "job: verify (diff, governance, secret scan; no commands)",
                &job["phases_ms"]["verify"],
            ),
            ("job: commit", &job["phases_ms"]["commit"]),
            (
                "job: deliver (worktree remove, state)",
                &job["phases_ms"]["deliver"],
            ),
            ("tick: total in-process", &v["phases_ms"]["total"]),
        ] {
            phases
                .entry(name)
                .or_default()
                .push(value.as_u64().unwrap_or(0));
        }
    }
    for (name, mut values) in phases {
        values.sort();
        println!("{name}: {} ms", values[values.len() / 2]);
    }
    println!(
        "wall (process start to exit): {:.1} ms",
        median(walls).as_secs_f64() * 1e3
    );
}

fn main() {
    let machine = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("machine: {machine} cores");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |part: &str| args.is_empty() || args.iter().any(|a| a == part);
    let mut guard = support::Guard::new("tick");
    if wanted("noop") {
        noop_bench(&mut guard);
    }
    // Quick mode gates ratios only, and dispatch has none.
    if wanted("dispatch") && !(support::quick() && args.is_empty()) {
        dispatch_bench();
    }
    guard.finish();
}
