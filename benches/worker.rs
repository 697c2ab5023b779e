//! Worker-runtime benchmarks (`cargo bench --bench worker [-- normalize|flood|deadline]`):
//!
//! - normalize: the Claude and Codex adapters (normalize + accumulate) over the recorded
//!   captures, repeated to 64 MiB each, as a ratio to `serde_json::from_slice::<Value>` over
//!   the same bytes;
//! - flood: 32 concurrent runs of `oxi-fake-worker` streaming 1 GiB each through the full
//!   runner (ledger rows, capped artifacts, normalization, accounting) in one supervisor
//!   process: its peak RSS (goal <= 32 MB) and aggregate throughput, and the spread of
//!   per-run times (no run stalls another). `OXI_BENCH_FLOOD_BYTES` and `OXI_BENCH_WORKERS`
//!   change the size;
//! - deadline: from oxi's stop signal to the whole process group gone, for a worker that exits
//!   on SIGTERM and one that ignores it (goal: grace period + 100 ms).
//!
//! `-- --quick` (CI): normalize only, over 8 MiB per adapter; its two ratios are checked
//! against benches/baseline.json (see benches/support/mod.rs). flood and deadline report
//! absolute times and memory, printed and never gated.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxi::config::{LoadedConfig, WorkerKind};
use oxi::ledger::Ledger;
use oxi::process::{self, Control, Limits, LineSink, Spawn, Stream};
use oxi::runner::{self, RunRequest};
use oxi::worker::{self, Accumulator, Normalized};

const FAKE: &str = env!("CARGO_BIN_EXE_oxi-fake-worker");

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn corpus(prefix: &str, target: usize) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/captures");
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(prefix) && name.ends_with(".jsonl") {
            let text = std::fs::read(&path).unwrap();
            lines.extend(
                text.split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec),
            );
        }
    }
    let one: usize = lines.iter().map(Vec::len).sum();
    let copies = target / one.max(1) + 1;
    let mut all = Vec::with_capacity(lines.len() * copies);
    for _ in 0..copies {
        all.extend(lines.iter().cloned());
    }
    all
}

fn normalize_bench(guard: &mut support::Guard) {
    let size = if support::quick() { 8 << 20 } else { 64 << 20 };
    println!("\n## normalization (normalize + accumulate vs serde_json::from_slice::<Value>)");
    for (kind, prefix) in [
        (WorkerKind::Claude, "claude-"),
        (WorkerKind::Codex, "codex-"),
    ] {
        let lines = corpus(prefix, size);
        let bytes: usize = lines.iter().map(Vec::len).sum();
        let adapter = worker::adapter(kind);
        let mut best_adapter = Duration::MAX;
        let mut best_value = Duration::MAX;
        for _ in 0..3 {
            // CPU time, as the ledger bench (support::thread_cpu says why).
            let start = support::thread_cpu();
            let mut acc = Accumulator::default();
            for line in &lines {
                if let Normalized::Events(events) = adapter.normalize(line) {
                    for event in &events {
                        acc.observe(event);
                    }
                }
            }
            black_box(&acc);
            best_adapter = best_adapter.min(support::thread_cpu() - start);
            let start = support::thread_cpu();
            for line in &lines {
                black_box(serde_json::from_slice::<serde_json::Value>(line).ok());
            }
            best_value = best_value.min(support::thread_cpu() - start);
        }
        let mib = bytes as f64 / (1 << 20) as f64;
        println!(
            "{kind}: {:.0} MiB in {} lines; adapter {:.0} MiB/s, Value {:.0} MiB/s (CPU time); adapter/Value time ratio {:.2}",
            mib,
            lines.len(),
            mib / best_adapter.as_secs_f64(),
            mib / best_value.as_secs_f64(),
            best_adapter.as_secs_f64() / best_value.as_secs_f64()
        );
        guard.ratio(
            &format!("normalize_{kind}_vs_value"),
            best_adapter.as_secs_f64() / best_value.as_secs_f64(),
        );
    }
}

fn rss_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn flood_config(dir: &Path, bytes: u64, workers: u64) -> LoadedConfig {
    let toml = format!(
        r#"[workers.fake]
kind = "claude"
command = ["{FAKE}"]
model = "claude-sonnet-4-5"
set_env = {{ OXI_FAKE_SCENARIO = "flood:{bytes}" }}

[routing]
executor = ["fake"]
reviewer = ["fake"]

[caps]
job_usd = 0.01
# A run is reserved at least this much; above job_usd every task would wait for a human.
estimate_floor_usd = 0.01
daily_usd = {daily}
daily_soft_warn_usd = {daily}
monthly_usd = {daily}
job_runtime = "2h"
output_per_run = "{output} B"
raw_log_per_run = "8 MiB"
"#,
        daily = workers as f64 * 0.01 + 1.0,
        output = bytes + (64 << 20),
    );
    let path = dir.join("oxi.toml");
    std::fs::write(&path, toml).unwrap();
    oxi::config::load(&path, None).unwrap()
}

/// Runs in a child process so its peak RSS is the supervisor's alone.
fn flood_child() {
    let bytes = env_u64("OXI_BENCH_FLOOD_BYTES", 1 << 30);
    let workers = env_u64("OXI_BENCH_WORKERS", 32);
    let dir = tempfile::tempdir().unwrap();
    let config = Arc::new(flood_config(dir.path(), bytes, workers));
    drop(Ledger::open(&config.ledger_path()).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let baseline = rss_kb("VmRSS:");
    let started = Instant::now();
    let results = runtime.block_on(async {
        let mut handles = Vec::new();
        for _ in 0..workers {
            let config = Arc::clone(&config);
            handles.push(tokio::spawn(async move {
                let started = Instant::now();
                let mut ledger = Ledger::open(&config.ledger_path()).unwrap();
                let cwd = config.repo_root.clone();
                let request = RunRequest {
                    worker_name: "fake",
                    model: None,
                    route: None,
                    prompt: "flood",
                    cwd: &cwd,
                    role: oxi::worker::WorkerRole::Adhoc,
                    task_id: None,
                    attempt: 0,
                    worktree: None,
                    branch: None,
                    actor: "bench",
                    parent_env: vec![("PATH".into(), std::env::var("PATH").unwrap_or_default())],
                    live: None,
                    track_files: false,
                    run_id: None,
                };
                let prepared = runner::prepare(&config, request).unwrap();
                prepared.admit(&mut ledger, 0).unwrap();
                let (_tx, rx) = tokio::sync::watch::channel(false);
                let report = prepared.run(&mut ledger, rx).await.unwrap();
                (report.classification, started.elapsed())
            }));
        }
        let mut out = Vec::new();
        for handle in handles {
            out.push(handle.await.unwrap());
        }
        out
    });
    let elapsed = started.elapsed();
    let peak = rss_kb("VmHWM:");
    let times: Vec<f64> = results.iter().map(|(_, t)| t.as_secs_f64()).collect();
    let min = times.iter().cloned().fold(f64::MAX, f64::min);
    let max = times.iter().cloned().fold(0.0, f64::max);
    let ok = results
        .iter()
        .filter(|(c, _)| *c == worker::Classification::Success)
        .count();
    let total = bytes as f64 * workers as f64;
    println!(
        "{{\"workers\":{workers},\"bytes_each\":{bytes},\"succeeded\":{ok},\"secs\":{:.2},\"throughput_mib_s\":{:.0},\"baseline_rss_kib\":{baseline},\"peak_rss_kib\":{peak},\"run_secs_min\":{min:.2},\"run_secs_max\":{max:.2}}}",
        elapsed.as_secs_f64(),
        total / (1 << 20) as f64 / elapsed.as_secs_f64(),
    );
}

fn flood_bench() {
    println!("\n## flood (concurrent runs through one supervisor)");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--flood-child")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "flood child: {e}\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    println!(
        "{} runs × {} MiB: {}/{} succeeded in {} s, {} MiB/s aggregate; supervisor RSS {} KiB at start, peak {} KiB ({:.1} MB); per-run time {}–{} s",
        v["workers"],
        v["bytes_each"].as_u64().unwrap() >> 20,
        v["succeeded"],
        v["workers"],
        v["secs"],
        v["throughput_mib_s"],
        v["baseline_rss_kib"],
        v["peak_rss_kib"],
        v["peak_rss_kib"].as_f64().unwrap() * 1024.0 / 1e6,
        v["run_secs_min"],
        v["run_secs_max"],
    );
}

struct Quiet;

impl LineSink for Quiet {
    fn spawned(&mut self, _pid: u32) -> Result<(), String> {
        Ok(())
    }
    fn line(&mut self, _: Stream, _: &[u8], _: bool) -> Control {
        Control::Continue
    }
}

fn deadline_bench() {
    println!("\n## deadline -> process group gone");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let grace = Duration::from_millis(500);
    for scenario in ["hang", "ignore-term"] {
        let mut samples = Vec::new();
        for _ in 0..15 {
            let spawn = Spawn {
                argv: vec![FAKE.to_owned()],
                cwd: std::env::temp_dir(),
                env: vec![("OXI_FAKE_SCENARIO".into(), scenario.into())],
                guard: None,
                confine: None,
            };
            let limits = Limits {
                wall: Duration::from_secs(60),
                stall: Duration::from_millis(200),
                grace,
                line_cap: 1 << 20,
                drain: Duration::from_secs(2),
            };
            let (_tx, rx) = tokio::sync::watch::channel(false);
            let finished = runtime
                .block_on(process::supervise(&spawn, &limits, &mut Quiet, rx))
                .unwrap();
            assert!(!process::group_alive(finished.pid));
            samples.push(finished.stop_to_gone_ms.unwrap());
        }
        samples.sort();
        let over_grace = |ms: u64| ms as i64 - grace.as_millis() as i64;
        println!(
            "{scenario}: stop -> group gone p50 {} ms, max {} ms (grace {} ms; max - grace = {} ms)",
            samples[samples.len() / 2],
            samples[samples.len() - 1],
            grace.as_millis(),
            over_grace(samples[samples.len() - 1])
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--flood-child") {
        flood_child();
        return;
    }
    let named: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    // Quick mode (CI) runs what has a ratio to gate unless a part is named.
    let wanted = |part: &str| {
        if named.is_empty() {
            !support::quick() || part == "normalize"
        } else {
            named.iter().any(|a| a.as_str() == part)
        }
    };
    let mut guard = support::Guard::new("worker");
    let machine = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("machine: {machine} cores");
    if wanted("normalize") {
        normalize_bench(&mut guard);
    }
    if wanted("deadline") {
        deadline_bench();
    }
    if wanted("flood") {
        flood_bench();
    }
    guard.finish();
}
