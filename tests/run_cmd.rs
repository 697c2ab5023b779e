//! `oxi run` end to end with `oxi-fake-worker`, which speaks the real wire formats and
//! misbehaves on cue: every classification, the artifacts, the ledger rows and money, the
//! environment allow-list, secret masking, and no process left behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oxi::ledger::Ledger;
use serde_json::Value;

use crate::support::{OxiToml, Run, Sandbox, Worker};

const FAKE: &str = env!("CARGO_BIN_EXE_oxi-fake-worker");
const SECRET: &str = "sk-ant-honeytoken-5f2c9e1d7a";

/// A repository whose oxi.toml has a `fake` (claude-flavoured) and a `fakecodex` worker.
fn sandbox(scenario: &str, caps: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", "- [ ] something\n");
    s.config(
        &OxiToml::new()
            .worker(
                Worker::fake("fake")
                    .env("ANTHROPIC_API_KEY")
                    .scenario(scenario)
                    .sleep_ms(20000),
            )
            .worker(
                Worker::fake_codex("fakecodex")
                    .env("OPENAI_API_KEY")
                    .scenario(scenario)
                    .sleep_ms(20000)
                    .version("codex-cli 0.169.0"),
            )
            .routing(&["fake"], &["fake"])
            .raw("[rates.\"gpt-5.5\"]\ninput_per_mtok = 1.25\ncached_input_per_mtok = 0.125\noutput_per_mtok = 10.0\n")
            .raw("[rates.\"claude-sonnet-4-5\"]\ninput_per_mtok = 3.0\noutput_per_mtok = 15.0\n")
            .raw(&format!("[caps]\nkill_grace = \"1s\"\n{caps}\n")),
    );
    s
}

fn run(s: &Sandbox, args: &[&str]) -> Run {
    let mut all = vec!["run", "--format", "json"];
    all.extend_from_slice(args);
    s.oxi_env(
        &all,
        &[
            ("ANTHROPIC_API_KEY", SECRET),
            ("GITHUB_TOKEN", "ghp_neverpassed0000000000000000000000"),
        ],
    )
}

fn ledger(s: &Sandbox) -> Ledger {
    Ledger::open_existing(&s.file(".oxi/ledger.db")).expect("ledger exists")
}

fn run_dir(report: &Value) -> PathBuf {
    PathBuf::from(report["run_dir"].as_str().expect("run_dir"))
}

fn meta(report: &Value) -> Value {
    let text = std::fs::read_to_string(run_dir(report).join("meta.json")).expect("meta.json");
    serde_json::from_str(&text).expect("meta.json is JSON")
}

/// The whole process group the run recorded is gone.
#[track_caller]
fn assert_group_gone(s: &Sandbox, report: &Value) {
    let row = ledger(s)
        .read()
        .run(report["run_id"].as_str().unwrap())
        .unwrap()
        .expect("run row");
    let pgid = row.pgid.expect("pgid recorded");
    assert!(!oxi::process::group_alive(pgid), "group {pgid} still alive");
}

fn event_kinds(s: &Sandbox, run_id: &str) -> Vec<String> {
    let mut ledger = ledger(s);
    let conn = ledger.raw_connection();
    let mut stmt = conn
        .prepare("SELECT kind FROM events WHERE run_id = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([run_id], |r| r.get(0))
        .unwrap()
        .collect::<Result<Vec<String>, _>>()
        .unwrap()
}

#[test]
fn a_successful_run_is_recorded_accounted_and_settled() {
    let s = sandbox("edit", "");
    let out = run(&s, &["add a greeting"]);
    out.ok();
    let report = out.json();
    assert_eq!(report["classification"], "success");
    assert_eq!(report["worker"], "fake");
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["tokens"]["input"], 3000);
    assert_eq!(report["tokens"]["cached_input"], 400);
    assert_eq!(report["tokens"]["output"], 100);
    assert_eq!(report["cost_usd"], 0.01268);
    assert_eq!(report["cost_source"], "cli");
    assert_eq!(report["files_changed"], serde_json::json!(["hello.txt"]));
    assert_eq!(report["result"], serde_json::json!({"status": "done"}));
    assert_eq!(s.read("hello.txt"), "hi\n");
    // The transcript streamed to stderr.
    assert!(out.stderr.contains("→ Write"), "{}", out.stderr);

    let dir = run_dir(&report);
    for file in [
        "raw.jsonl",
        "events.jsonl",
        "transcript.md",
        "meta.json",
        "prompt.md",
        "stderr.log",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let meta = meta(&report);
    assert_eq!(meta["contract_version"], "claude-stream-json/1");
    assert_eq!(meta["cli_version"], "2.1.328");
    assert_eq!(meta["version_tested"], true);
    let argv: Vec<&str> = meta["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        &argv[1..],
        [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            "acceptEdits",
            "--model",
            "claude-sonnet-4-5",
            "--",
            "<prompt: prompt.md>"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("prompt.md")).unwrap(),
        "add a greeting"
    );
    let events: Vec<Value> = std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"session_started"));
    assert!(
        kinds.contains(&"file_change") && kinds.contains(&"result"),
        "{kinds:?}"
    );

    let ledger = ledger(&s);
    let row = ledger
        .read()
        .run(report["run_id"].as_str().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(row.status, "finished");
    assert_eq!(row.classification.as_deref(), Some("success"));
    assert_eq!(row.role, "adhoc");
    assert_eq!(row.cost_microusd, 12_680);
    assert!(row.pid.is_some() && row.pgid == row.pid);
    let spend = ledger.read().spend_for_run(&row.id).unwrap().unwrap();
    assert_eq!(
        (spend.status.as_str(), spend.actual_microusd),
        ("settled", 12_680)
    );
    assert_eq!(
        spend.reserved_microusd, 2_000_000,
        "reserved the per-job cap"
    );
    assert_eq!(event_kinds(&s, &row.id), ["run_started", "run_finished"]);
    assert_group_gone(&s, &report);
}

#[test]
fn the_codex_flavour_is_priced_from_the_rate_card() {
    let s = sandbox("edit", "");
    let out = run(&s, &["--worker", "fakecodex", "add a greeting"]);
    out.ok();
    let report = out.json();
    assert_eq!(report["worker_kind"], "codex");
    assert_eq!(report["cost_source"], "rate_card");
    // 2000 plain input at 1.25, 400 cached at 0.125, 100 output at 10 (per million).
    assert_eq!(report["cost_microusd"], 2_500 + 50 + 1_000);
    assert_eq!(report["tokens"]["reasoning"], 40);
    let meta = meta(&report);
    assert_eq!(
        meta["cli_version"], "0.169.0",
        "codex prints no version; oxi asks it"
    );
    let argv: Vec<&str> = meta["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        &argv[1..],
        [
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--disable",
            "unbounded_connection_retries",
            "--sandbox",
            "workspace-write",
            "--model",
            "gpt-5.5",
            "--",
            "<prompt: prompt.md>"
        ]
    );
}

#[test]
fn a_runaway_spender_is_stopped_at_the_job_cap() {
    let s = sandbox("spend", "job_usd = 1.0");
    let out = run(&s, &["spend it all"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let report = out.json();
    assert_eq!(report["classification"], "budget_exceeded");
    assert_eq!(report["stop_reason"], "budget");
    let cost = report["cost_usd"].as_f64().unwrap();
    // Stopped at the first message past $1.00 (each adds $0.30).
    assert!((1.0..1.31).contains(&cost), "cost {cost}");
    assert!(report["detail"].as_str().unwrap().contains("caps.job_usd"));
    let spend = ledger(&s)
        .read()
        .spend_for_run(report["run_id"].as_str().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(spend.status, "settled");
    assert_eq!(
        spend.actual_microusd,
        report["cost_microusd"].as_i64().unwrap()
    );
    assert_group_gone(&s, &report);
}

#[test]
fn a_silent_worker_is_stopped_as_stalled_and_one_that_ignores_sigterm_is_killed() {
    let s = sandbox("ignore-term", "stall_timeout = \"1s\"");
    let started = Instant::now();
    let out = run(&s, &["wait"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let report = out.json();
    assert_eq!(report["classification"], "stalled");
    assert_eq!(
        report["signal"], 9,
        "SIGTERM was ignored, so SIGKILL ended it"
    );
    let meta = meta(&report);
    let stop_to_exit = meta["stop_to_exit_ms"].as_u64().unwrap();
    assert!(
        (1000..1500).contains(&stop_to_exit),
        "grace 1s, took {stop_to_exit} ms"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_group_gone(&s, &report);
}

#[test]
fn the_wall_clock_cap_ends_a_busy_run() {
    let s = sandbox(
        "spend",
        "job_runtime = \"1s\"\nstall_timeout = \"1s\"\njob_usd = 100.0\ndaily_usd = 200.0\nmonthly_usd = 400.0",
    );
    let out = run(&s, &["busy"]);
    let report = out.json();
    assert_eq!(report["classification"], "timeout", "{}", out.stderr);
    assert_eq!(report["signal"], 15, "it exits on SIGTERM");
    assert_group_gone(&s, &report);
}

#[test]
fn garbage_lines_are_counted_kept_and_never_fatal() {
    let s = sandbox("garbage", "");
    let out = run(&s, &["parse this"]);
    out.ok();
    let report = out.json();
    assert_eq!(report["classification"], "success");
    // Not JSON, a JSON array, invalid UTF-8: three failures. Valid objects of an unknown or
    // wrong shape are `unknown` events, not failures.
    assert_eq!(report["parse_failures"], 3);
    let meta = meta(&report);
    assert_eq!(meta["parse_failure_samples"].as_array().unwrap().len(), 3);
    assert_eq!(meta["unknown_types"]["brand_new_event"], 1);
    assert_eq!(meta["unknown_types"]["assistant"], 1);
    let raw = std::fs::read_to_string(run_dir(&report).join("raw.jsonl")).unwrap_or_default();
    assert!(raw.contains("this is not json"), "raw lines are kept");
}

#[test]
fn an_8_mib_line_is_truncated_marked_and_memory_stays_flat() {
    let s = sandbox("long-line", "");
    let out = run(&s, &["one long line"]);
    assert_eq!(out.code, 1);
    let report = out.json();
    assert_eq!(report["classification"], "parse_failure");
    assert_eq!(report["lines_truncated"], 1);
    assert_eq!(report["parse_failures"], 1);
    let raw = std::fs::read_to_string(run_dir(&report).join("raw.jsonl")).unwrap();
    assert!(
        raw.len() < 16 * 1024,
        "raw.jsonl keeps a marker, not 8 MiB: {}",
        raw.len()
    );
    assert!(raw.contains("oxi.truncated_line"));
}

#[test]
fn the_raw_log_cap_and_the_output_cap_bound_a_flood() {
    let s = sandbox(
        "flood:3000000",
        "raw_log_per_run = \"100 KiB\"\noutput_per_run = \"1 MiB\"",
    );
    let out = run(&s, &["flood"]);
    let report = out.json();
    assert_eq!(report["classification"], "output_capped", "{}", out.stderr);
    let dir = run_dir(&report);
    let raw_len = std::fs::metadata(dir.join("raw.jsonl")).unwrap().len();
    assert!(raw_len <= 100 * 1024, "raw.jsonl {raw_len} bytes");
    assert!(report["bytes_cut"].as_u64().unwrap() > 500_000);
    assert_group_gone(&s, &report);
}

#[test]
fn a_grandchild_holding_the_pipes_does_not_hang_oxi() {
    let s = sandbox("grandchild-escape", "");
    let started = Instant::now();
    let out = run(&s, &["spawn and leave"]);
    out.ok();
    let report = out.json();
    assert_eq!(report["classification"], "success");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // The run's guard ended the grandchild (it left the worker's group, not the guard's
    // tree) before it exited itself, so the pipes closed with it and no drain was needed.
    assert_eq!(meta(&report)["pipes_abandoned"], false);
}

#[test]
fn exit_130_is_transient_and_a_429_is_rate_limited() {
    let s = sandbox("exit130", "");
    let report = run(&s, &["x"]).json();
    assert_eq!(report["classification"], "transient");
    assert_eq!(report["retryable"], true);
    let s = sandbox("rate-limited", "");
    let report = run(&s, &["x"]).json();
    assert_eq!(report["classification"], "rate_limited");
    let s = sandbox("fail", "");
    let report = run(&s, &["x"]).json();
    assert_eq!(report["classification"], "worker_error");
    assert!(
        report["detail"]
            .as_str()
            .unwrap()
            .contains("fatal: something went wrong"),
        "the last stderr line explains it: {}",
        report["detail"]
    );
}

#[test]
fn a_missing_binary_is_spawn_failed_naming_the_config_key() {
    let s = sandbox("edit", "");
    let toml = s.read("oxi.toml").replacen(FAKE, "/nonexistent/claude", 1);
    s.write("oxi.toml", toml);
    let out = run(&s, &["x"]);
    assert_eq!(out.code, 1);
    let report = out.json();
    assert_eq!(report["classification"], "spawn_failed");
    let detail = report["detail"].as_str().unwrap();
    assert!(
        detail.contains("workers.fake.command") && detail.contains("/nonexistent/claude"),
        "{detail}"
    );
    let row = ledger(&s)
        .read()
        .run(report["run_id"].as_str().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.status.as_str(), row.classification.as_deref()),
        ("finished", Some("spawn_failed"))
    );
}

#[test]
fn secrets_never_reach_artifacts_ledger_or_output_and_github_tokens_never_reach_workers() {
    let s = sandbox("echo-env:ANTHROPIC_API_KEY", "");
    let out = run(&s, &["leak it"]);
    out.ok();
    let report = out.json();
    // The worker really had the key (it wrote it into the work tree, which is its business).
    assert_eq!(s.read("leak.txt"), SECRET);
    assert!(!out.stdout.contains(SECRET) && !out.stderr.contains(SECRET));
    for entry in std::fs::read_dir(run_dir(&report)).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !contains(&bytes, SECRET.as_bytes()),
            "{} leaks the secret",
            path.display()
        );
    }
    for file in [".oxi/ledger.db", ".oxi/ledger.db-wal"] {
        if let Ok(bytes) = std::fs::read(s.file(file)) {
            assert!(
                !contains(&bytes, SECRET.as_bytes()),
                "{file} leaks the secret"
            );
        }
    }
    let transcript = std::fs::read_to_string(run_dir(&report).join("transcript.md")).unwrap();
    assert!(transcript.contains("[REDACTED]"), "{transcript}");

    let s = sandbox("env-names", "");
    // oxi's guard keeps LLVM_PROFILE_FILE (a coverage build's profile path) for itself: the
    // worker never sees it. Under scripts/coverage the measurement's own path is kept.
    let profile = std::env::var("LLVM_PROFILE_FILE")
        .unwrap_or_else(|_| "/nonexistent/oxi-%p.profraw".to_owned());
    let out = s.oxi_env(
        &["run", "--format", "json", "list your environment"],
        &[
            ("ANTHROPIC_API_KEY", SECRET),
            ("GITHUB_TOKEN", "ghp_x"),
            ("AWS_SECRET_ACCESS_KEY", "nope"),
            ("LC_ALL", "C.UTF-8"),
            ("LLVM_PROFILE_FILE", profile.as_str()),
        ],
    );
    out.ok();
    let message = out.json()["last_message"].as_str().unwrap().to_owned();
    let names: Vec<&str> = message.trim_start_matches("ENV ").split(',').collect();
    for name in &names {
        assert!(
            [
                "ANTHROPIC_API_KEY",
                // The push block (docs/safety.md).
                "GIT_CONFIG_COUNT",
                "GIT_CONFIG_KEY_0",
                "GIT_CONFIG_VALUE_0",
                "HOME",
                "LANG",
                "LC_ALL",
                "PATH",
                "TERM",
                "TMPDIR",
                "USER",
                "OXI_FAKE_SCENARIO",
                "OXI_FAKE_SLEEP_MS"
            ]
            .contains(name),
            "{name} is not on the allow-list: {names:?}"
        );
    }
    assert!(names.contains(&"ANTHROPIC_API_KEY") && names.contains(&"LC_ALL"));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_daily_cap_refuses_a_run_that_could_cross_it() {
    let s = sandbox(
        "spend",
        "job_usd = 1.0\ndaily_usd = 1.5\ndaily_soft_warn_usd = 1.0",
    );
    let first = run(&s, &["spend"]).json();
    assert_eq!(first["classification"], "budget_exceeded");
    let second = run(&s, &["spend again"]);
    let err = second.fails_with(6);
    assert!(
        err.contains("daily spend cap $1.50 would be crossed") && err.contains("caps.daily_usd"),
        "{err}"
    );
    let mut ledger = ledger(&s);
    let refused: i64 = ledger
        .raw_connection()
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'budget_refused'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(refused, 1);
    let runs: i64 = ledger
        .raw_connection()
        .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(runs, 1, "nothing was started");
}

#[test]
fn sigint_stops_the_run_cleanly_and_records_it() {
    let s = sandbox("hang", "stall_timeout = \"5m\"");
    // The worker must outlive any scheduling delay of a loaded machine.
    let toml = s.read("oxi.toml").replace(
        "OXI_FAKE_SLEEP_MS = \"20000\"",
        "OXI_FAKE_SLEEP_MS = \"300000\"",
    );
    s.write("oxi.toml", toml);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_oxi"))
        .args(["run", "--format", "json", "wait forever"])
        .current_dir(s.path())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let db = s.file(".oxi/ledger.db");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut child = child;
    let pgid = loop {
        if Instant::now() >= deadline {
            // Not left behind for the next test run to trip over.
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the run never recorded its pid\nstdout {}\nstderr {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if let Some(pgid) = wait_for_pgid(&db) {
            break pgid;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The group was recorded right after spawn; on a loaded machine give /proc a moment.
    let alive_by = Instant::now() + Duration::from_secs(3);
    while !oxi::process::group_alive(pgid) && Instant::now() < alive_by {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !oxi::process::group_alive(pgid) {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        let row = ledger(&s).read().running_runs().unwrap();
        panic!(
            "group {pgid} is not alive; running runs {row:?}\nstdout {}\nstderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["classification"], "killed");
    assert!(!oxi::process::group_alive(pgid));
    let row = ledger(&s)
        .read()
        .run(report["run_id"].as_str().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(row.classification.as_deref(), Some("killed"));
}

fn wait_for_pgid(db: &Path) -> Option<u32> {
    let mut ledger = Ledger::open_existing(db).ok()?;
    ledger
        .raw_connection()
        .query_row(
            "SELECT pgid FROM runs WHERE pgid IS NOT NULL LIMIT 1",
            [],
            |r| r.get(0),
        )
        .ok()
}

#[test]
fn bad_input_gets_a_clear_error() {
    let s = sandbox("edit", "");
    let err = s
        .oxi(&["run", "--worker", "gemini", "x"])
        .fails_with(2)
        .to_owned();
    assert!(
        err.contains("no worker named \"gemini\"") && err.contains("fake, fakecodex"),
        "{err}"
    );
    let err = s
        .oxi(&["run", "--cwd", "missing-dir", "x"])
        .fails_with(2)
        .to_owned();
    assert!(err.contains("missing-dir"), "{err}");
    let err = s.oxi(&["run", "   "]).fails_with(1).to_owned();
    assert!(err.contains("prompt is empty"), "{err}");
}

#[test]
fn oxi_workers_reports_binary_version_and_contract() {
    let s = sandbox("edit", "");
    let toml = s.read("oxi.toml").replacen(
        &format!("command = [\"{FAKE}\"]\nmodel = \"gpt-5.5\""),
        "command = [\"/nonexistent/codex\"]\nmodel = \"gpt-5.5\"",
        1,
    );
    s.write("oxi.toml", toml);
    let out = s.oxi(&["workers", "--format", "json"]);
    assert_eq!(out.code, 1, "a missing binary fails the check");
    let reports = out.json();
    let fake = &reports[0];
    assert_eq!(fake["worker"], "fake");
    assert_eq!(fake["fixture"]["ok"], true);
    assert_eq!(fake["version"], "2.1.328");
    assert_eq!(fake["verdict"], "ok");
    let codex = &reports[1];
    assert_eq!(codex["verdict"], "fail");
    assert!(
        codex["problems"][0]
            .as_str()
            .unwrap()
            .contains("workers.fakecodex.command")
    );
}
