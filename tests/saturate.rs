//! `oxi saturate`: slots refilled, signals (graceful then immediate), the PID file, the
//! day's cap, `--until-empty`, and no orphan process either way.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use oxi::ledger::{Ledger, TaskState};

use crate::support::{OxiToml, Sandbox, Worker, git};

const ROADMAP: &str = "# Roadmap\n\n**T0-1 · First**\nSay hello.\n\n**T0-2 · Second**\nSay hello again.\n\n**T0-3 · Third**\nAnd once more.\n";

fn repo(scenario: &str, caps: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.write(".gitignore", ".oxi/\n");
    s.config(
        &OxiToml::new()
            .raw("[run]\nmax_parallel_jobs = 3\n")
            .worker(Worker::fake("fake").scenario(scenario).sleep_ms(60000))
            .routing(&["fake"], &["fake"])
            .raw("[verify]\ntier0 = [{ name = \"hello\", argv = [\"test\", \"-f\", \"hello.txt\"] }]\n")
            .raw(&format!("[caps]\nkill_grace = \"1s\"\n{caps}\n")),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "setup"]);
    s
}

fn saturate(s: &Sandbox, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_oxi"))
        .arg("saturate")
        .args(args)
        .current_dir(s.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn ledger(s: &Sandbox) -> Ledger {
    Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap()
}

/// Waits until `n` runs are live with a recorded process group; returns their groups.
fn wait_for_live(s: &Sandbox, n: usize) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "{n} runs never went live");
        if let Ok(l) = Ledger::open_existing(&s.file(".oxi/ledger.db")) {
            let live: Vec<u32> = l
                .read()
                .running_runs()
                .unwrap()
                .into_iter()
                .filter_map(|r| r.pgid)
                .collect();
            if live.len() >= n {
                return live;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn finish(child: Child) -> (i32, String, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sigterm_lets_three_runs_in_flight_finish_and_leaves_no_orphans() {
    let s = repo("slow-edit:2000", "");
    let child = saturate(&s, &["--concurrency", "3", "--grace", "60s"]);
    let groups = wait_for_live(&s, 3);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let (code, stdout, stderr) = finish(child);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("saturate stopped (signal): 3 job(s)"),
        "{stdout}\n{stderr}"
    );
    assert!(stderr.contains("stopping: no new claims"), "{stderr}");
    for id in ["T0-1", "T0-2", "T0-3"] {
        assert_eq!(
            ledger(&s).read().task(id).unwrap().unwrap().state,
            TaskState::Delivered,
            "{id}\n{stderr}"
        );
    }
    assert!(ledger(&s).read().running_runs().unwrap().is_empty());
    for pgid in groups {
        assert!(!oxi::process::group_alive(pgid), "group {pgid} survived");
    }
    assert!(
        !s.file(".oxi/saturate.pid").exists(),
        "the PID file is removed"
    );
}

#[test]
fn a_second_saturate_is_refused_and_a_second_signal_stops_runs_at_once() {
    let s = repo("hang", "stall_timeout = \"5m\"");
    let first = saturate(&s, &["--concurrency", "2", "--grace", "5m"]);
    let groups = wait_for_live(&s, 2);
    let second = saturate(&s, &["--concurrency", "1"]);
    let (code, _, stderr) = finish(second);
    assert_ne!(code, 0);
    assert!(stderr.contains("already running"), "{stderr}");
    let started = Instant::now();
    kill(Pid::from_raw(first.id() as i32), Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    kill(Pid::from_raw(first.id() as i32), Signal::SIGTERM).unwrap();
    let (code, stdout, stderr) = finish(first);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the second signal must not wait for the grace period"
    );
    assert!(stdout.contains("(signal)"), "{stdout}");
    let runs = ledger(&s).read().runs_for_task("T0-1").unwrap();
    assert_eq!(
        runs[0].classification.as_deref(),
        Some("killed"),
        "{stderr}"
    );
    assert_eq!(
        ledger(&s).read().task("T0-1").unwrap().unwrap().state,
        TaskState::Queued
    );
    for pgid in groups {
        assert!(!oxi::process::group_alive(pgid), "group {pgid} survived");
    }
}

/// Runs of $0.60 with a $1.00 estimate under a $1.50 day: the second claim waits while the
/// first run holds its reservation; once it settled, $0.60 spent + $1.00 would cross the cap.
#[test]
fn the_day_cap_ends_saturate_cleanly() {
    let s = repo(
        "edit\", OXI_FAKE_COST_USD = \"0.6",
        "job_usd = 1.0\ndaily_usd = 1.5\ndaily_soft_warn_usd = 1.0\nestimate_floor_usd = 1.0",
    );
    let (code, stdout, stderr) = finish(saturate(&s, &["--concurrency", "3"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("(daily_budget_reached)") && stdout.contains("(caps.daily_usd)"),
        "{stdout}\n{stderr}"
    );
    let mut l = ledger(&s);
    let events: i64 = l
        .raw_connection()
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'daily_budget_reached'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(events, 1);
    let delivered = l
        .read()
        .tasks()
        .unwrap()
        .iter()
        .filter(|t| t.state == TaskState::Delivered)
        .count();
    assert_eq!(delivered, 1, "one run fits under the cap");
}

#[test]
fn until_empty_exits_when_everything_is_done() {
    let s = repo("edit", "");
    let (code, stdout, stderr) = finish(saturate(
        &s,
        &["--concurrency", "2", "--until-empty", "--format", "json"],
    ));
    assert_eq!(code, 0, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["reason"], "until_empty");
    assert_eq!(summary["concurrency"], 2);
    assert_eq!(summary["jobs"].as_array().unwrap().len(), 3, "{summary:#}");
    let (code, _, stderr) = finish(saturate(&s, &["--concurrency", "0"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("--concurrency"), "{stderr}");
}
