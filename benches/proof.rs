//! Proof-suite benchmarks (`cargo bench --bench proof [-- claims|contention|report]`):
//!
//! - claims: admission (spend totals + budget check) + run row + reservation in one
//!   transaction, then settlement, with `synchronous=FULL`: claims settled per second, by one
//!   writer and by 8 slots at once as saturate runs them (goal >= 3,000/s on 2 cores);
//! - contention: 32 threads claiming at once, each with its own connection: p50/p99 claim
//!   latency (goal p99 <= 10 ms);
//! - report: `oxi report --since all` (the library's `report::build`) on 1,000,000 events
//!   (goal <= 1 s).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Barrier;
use std::time::{Duration, Instant};

use oxi::budget::{self, Caps};
use oxi::ledger::{Ledger, NewRun, RunEnd};

fn caps() -> Caps {
    Caps {
        job: 2_000_000,
        daily: i64::MAX / 4,
        monthly: i64::MAX / 4,
        daily_limit: budget::Limit::DailyUsd,
    }
}

/// One claim: check the caps and create the run with its reservation, in one transaction.
fn claim(ledger: &mut Ledger, id: &str) -> Duration {
    let started = Instant::now();
    let now = oxi::clock::now_ms();
    let (day, month) = (oxi::clock::day_of(now), oxi::clock::month_of(now));
    ledger
        .write(|q| {
            let totals = q.spend_totals(&day, &month)?;
            budget::admit(&totals, 250_000, &caps()).expect("under the caps");
            q.begin_run(&NewRun {
                id,
                task_id: None,
                attempt: 1,
                role: "bench",
                worker: "fake",
                worker_kind: "claude",
                model: None,
                run_dir: "/tmp",
                worktree: None,
                branch: None,
                started_at_ms: now,
                reserve_microusd: 250_000,
                day: &day,
                month: &month,
                actor: "bench",
                supervisor_pid: std::process::id(),
            })
        })
        .unwrap();
    started.elapsed()
}

fn settle(ledger: &mut Ledger, id: &str) {
    let now = oxi::clock::now_ms();
    ledger
        .write(|q| {
            q.finish_run(
                id,
                &RunEnd {
                    ended_at_ms: now,
                    classification: "success",
                    cost_microusd: 120_000,
                    summary: Default::default(),
                    ..RunEnd::default()
                },
            )
        })
        .unwrap();
}

/// Runs `work(thread, its own Ledger)` on `threads` threads started together on the ledger at
/// `path`; returns what each returned and the seconds from the start line to the last finish.
fn on_threads<T: Send>(
    path: &std::path::Path,
    threads: usize,
    work: impl Fn(usize, &mut Ledger) -> T + Sync,
) -> (Vec<T>, f64) {
    drop(Ledger::open(path).unwrap());
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, work) = (&barrier, &work);
                s.spawn(move || {
                    let mut ledger = Ledger::open(path).unwrap();
                    barrier.wait();
                    work(t, &mut ledger)
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let results = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (results, started.elapsed().as_secs_f64())
    })
}

fn claims_bench() {
    println!("\n## claim + settle throughput (WAL, synchronous=FULL)");
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("ledger.db")).unwrap();
    let n = 3_000;
    let started = Instant::now();
    for i in 0..n {
        let id = format!("run-{i}");
        claim(&mut ledger, &id);
        settle(&mut ledger, &id);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "one writer: {n} claims settled in {secs:.2}s: {:.0} claims+settlements/s (goal >= 3,000/s)",
        n as f64 / secs
    );

    // As `oxi saturate --concurrency 8` uses the ledger: each slot claims, runs, settles.
    let slots = 8;
    let per_slot = n / slots;
    let (_, secs) = on_threads(&dir.path().join("slots.db"), slots, |t, ledger| {
        for i in 0..per_slot {
            let id = format!("s{t}-{i}");
            claim(ledger, &id);
            settle(ledger, &id);
        }
    });
    let pairs = slots * per_slot;
    println!(
        "{slots} slots: {pairs} claims settled in {secs:.2}s: {:.0} claims+settlements/s (goal >= 3,000/s)",
        pairs as f64 / secs
    );
}

fn contention_bench() {
    println!("\n## 32 concurrent claimers");
    let dir = tempfile::tempdir().unwrap();
    let threads = 32;
    let per_thread = 60;
    let (latencies, secs) = on_threads(&dir.path().join("ledger.db"), threads, |t, ledger| {
        (0..per_thread)
            .map(|i| claim(ledger, &format!("t{t}-{i}")))
            .collect::<Vec<_>>()
    });
    let mut latencies: Vec<Duration> = latencies.into_iter().flatten().collect();
    latencies.sort();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    println!(
        "{} claims from {threads} threads in {secs:.2}s ({:.0}/s); latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (goal p99 <= 10 ms)",
        latencies.len(),
        latencies.len() as f64 / secs,
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3
    );
}

fn report_bench() {
    println!("\n## oxi report --since all on 1,000,000 events");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("oxi.toml"), "").unwrap();
    let config = oxi::config::load(&root.join("oxi.toml"), None).unwrap();
    let mut ledger = Ledger::open(&config.ledger_path()).unwrap();
    for i in 0..2_000 {
        let id = format!("run-{i}");
        claim(&mut ledger, &id);
        settle(&mut ledger, &id);
    }
    let kinds = [
        "task_state_changed",
        "verified",
        "review_decided",
        "delivered",
        "ci_result",
        "pr_merged",
        "operator_action",
        "run_finished",
    ];
    let conn = ledger.raw_connection();
    let tx = conn.transaction().unwrap();
    {
        let mut stmt = tx
            .prepare("INSERT INTO events (at_ms, kind, task_id, actor, data) VALUES (?1, ?2, ?3, 'oxi', ?4)")
            .unwrap();
        let now = oxi::clock::now_ms();
        for i in 0..1_000_000_i64 {
            let kind = kinds[(i % kinds.len() as i64) as usize];
            let data = match kind {
                "ci_result" => r#"{"first_pass":true,"green":true}"#,
                "review_decided" => {
                    r#"{"decision":"auto_approve","review_skipped_reason":"auto-approved: x"}"#
                }
                _ => r#"{"from":"queued","to":"dispatched"}"#,
            };
            stmt.execute(rusqlite::params![
                now - 20 * 86_400_000 + i * 1_000,
                kind,
                format!("T0-{}", i % 5_000),
                data
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
    let mut samples = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let report = oxi::report::build(&config, &ledger, "all", oxi::clock::now_ms()).unwrap();
        samples.push(started.elapsed());
        assert!(report.worker_calls > 0);
    }
    samples.sort();
    println!(
        "report::build over 1,000,000 events and 2,000 runs: median {:.0} ms (goal <= 1,000 ms)",
        samples[1].as_secs_f64() * 1e3
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
    if wanted("claims") {
        claims_bench();
    }
    if wanted("contention") {
        contention_bench();
    }
    if wanted("report") {
        report_bench();
    }
}
