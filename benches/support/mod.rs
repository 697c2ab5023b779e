//! The benchmark regression guard, shared by the benches that print ratios.
//!
//! Each ratio is oxi's CPU time over a reference's measured in the same run (`oxi --version`,
//! `serde_json::Value`, splitting lines, an empty ledger), so a loaded or slower machine moves
//! both sides and the ratio stays comparable where absolute times do not. CPU time, not wall
//! time: waiting for a core is what a loaded machine adds, and it fell unevenly on the two
//! sides ([`thread_cpu`], [`children_cpu`]). Lower is better for every ratio. Absolute times
//! are printed by the benches, never gated.
//!
//! - `--quick` (or `OXI_BENCH_QUICK=1`): smaller inputs and fewer iterations, as CI runs it;
//! - after a bench has recorded its ratios, [`Guard::finish`] compares each with
//!   benches/baseline.json (the entry for this mode and build profile) and exits 1 when one is
//!   more than 20% above its baseline;
//! - `--update-baseline` (or `OXI_BENCH_UPDATE_BASELINE=1`): write the ratios measured into
//!   benches/baseline.json instead, leaving the other benches' entries as they are.
//!
//! `cargo bench --bench tick -- --quick --update-baseline` passes the flags to the bench's
//! `main` (the benches have `harness = false`); the environment variables do the same for a
//! `cargo bench` of several benches at once.

// Each bench includes this file and uses what it needs of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How far above its baseline a ratio may go before the guard fails.
pub const TOLERANCE: f64 = 1.20;

fn flag(arg: &str, env: &str) -> bool {
    std::env::args().any(|a| a == arg)
        || std::env::var(env).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Whether the bench runs in quick mode (CI).
pub fn quick() -> bool {
    flag("--quick", "OXI_BENCH_QUICK")
}

/// The figure a bench reports from its samples: the median, or in quick mode the fastest. Quick
/// mode runs in CI beside other work, and the fastest of a few samples is the one least moved
/// by what else runs (noise only ever adds time), so the ratio of two minimums is steadier
/// than the ratio of two medians of few samples.
pub fn typical(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    if quick() {
        samples[0]
    } else {
        samples[samples.len() / 2]
    }
}

/// CPU time the calling thread has used. The in-process benches time with it rather than the
/// wall clock: a loaded machine preempts a 50 ms parse several times and a 1 ms reference
/// rarely, so wall-time ratios rose with the load (`ledger/parse_vs_line_split` measured 35 to
/// 133 on one machine) where CPU time leaves the time spent waiting for a core out.
pub fn thread_cpu() -> Duration {
    use nix::time::{ClockId, clock_gettime};
    let now = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
    Duration::new(
        now.tv_sec().try_into().unwrap(),
        now.tv_nsec().try_into().unwrap(),
    )
}

/// User plus system time of every child process this bench has waited for so far: what the
/// benches that spawn `oxi` time, for the same reason as [`thread_cpu`].
pub fn children_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    let time = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().try_into().unwrap())
            + Duration::from_micros(t.tv_usec().try_into().unwrap())
    };
    time(usage.user_time()) + time(usage.system_time())
}

/// `full` when `quick` is false; quick mode's ratios differ (smaller inputs), so each mode has
/// its own baseline. So does each build profile: a debug build's ratios are not a release
/// build's.
fn baseline_key() -> String {
    let mode = if quick() { "quick" } else { "full" };
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    format!("{mode}-{profile}")
}

fn baseline_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/baseline.json")
}

/// The ratios one bench measured, by name (`<bench>/<ratio>`).
pub struct Guard {
    bench: &'static str,
    ratios: BTreeMap<String, f64>,
}

impl Guard {
    pub fn new(bench: &'static str) -> Self {
        Guard {
            bench,
            ratios: BTreeMap::new(),
        }
    }

    /// Records a ratio (lower is better) to compare with the baseline at the end.
    pub fn ratio(&mut self, name: &str, value: f64) {
        assert!(value.is_finite() && value > 0.0, "{name}: ratio {value}");
        self.ratios.insert(format!("{}/{name}", self.bench), value);
    }

    /// Compares (or with `--update-baseline` stores) the ratios; exits 1 on a regression.
    pub fn finish(self) {
        let path = baseline_path();
        let mut file: serde_json::Value = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        let key = baseline_key();
        if flag("--update-baseline", "OXI_BENCH_UPDATE_BASELINE") {
            let entry = &mut file[&key];
            for (name, value) in &self.ratios {
                entry[name] = serde_json::json!((value * 1000.0).round() / 1000.0);
            }
            let text = serde_json::to_string_pretty(&file).unwrap() + "\n";
            std::fs::write(&path, text).unwrap();
            println!(
                "\nbaseline {key}: {} ratios written to {}",
                self.ratios.len(),
                path.display()
            );
            return;
        }
        let ratios = self.best_of_attempts();
        let failures = compare(&ratios, &file[&key], &key);
        if !failures.is_empty() {
            println!(
                "\nbench regression ({key}), more than {:.0}% above benches/baseline.json:\n  {}\n\
                 If this is expected (a deliberate trade), refresh the baseline on purpose:\n  \
                 cargo bench {}--bench {} -- {}--update-baseline",
                (TOLERANCE - 1.0) * 100.0,
                failures.join("\n  "),
                if cfg!(debug_assertions) {
                    "--profile dev "
                } else {
                    ""
                },
                self.bench,
                if quick() { "--quick " } else { "" },
            );
            std::process::exit(1);
        }
    }

    /// With `OXI_BENCH_ATTEMPTS` naming a file (.ci/bench-guard sets one per run), each ratio's
    /// lowest value over the attempts so far, which the file keeps between attempts. A busy
    /// machine slows some ratio in most attempts, rarely the same one every time; a regression
    /// slows its ratio in each. Judging each ratio by its best attempt tells the two apart.
    /// Without the variable, this attempt's ratios.
    fn best_of_attempts(&self) -> BTreeMap<String, f64> {
        let Some(path) = std::env::var_os("OXI_BENCH_ATTEMPTS") else {
            return self.ratios.clone();
        };
        let mut best: BTreeMap<String, f64> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        for (name, &now) in &self.ratios {
            let value = best.get(name).map_or(now, |&earlier| earlier.min(now));
            if value < now {
                println!("{name}: {now:.3} this attempt, {value:.3} at best so far");
            }
            best.insert(name.clone(), value);
        }
        std::fs::write(&path, serde_json::to_string_pretty(&best).unwrap()).unwrap();
        self.ratios
            .keys()
            .map(|name| (name.clone(), best[name]))
            .collect()
    }
}

/// The ratios above their baseline × [`TOLERANCE`]; prints every comparison.
fn compare(ratios: &BTreeMap<String, f64>, baseline: &serde_json::Value, key: &str) -> Vec<String> {
    println!("\n## ratios against benches/baseline.json ({key}; lower is better)");
    let mut failures = Vec::new();
    for (name, &now) in ratios {
        let Some(base) = baseline[name].as_f64() else {
            println!("{name}: {now:.3} (no baseline: run with --update-baseline to record one)");
            continue;
        };
        let change = now / base;
        let verdict = if change > TOLERANCE {
            failures.push(format!(
                "{name}: {now:.3} vs baseline {base:.3} ({change:.2}x)"
            ));
            "REGRESSED"
        } else if change < 1.0 / TOLERANCE {
            "improved (consider --update-baseline)"
        } else {
            "ok"
        };
        println!("{name}: {now:.3} vs baseline {base:.3} ({change:.2}x) {verdict}");
    }
    failures
}
