//! Money and delivery as a person meets them (issue 13, items 5–7): a retry after a transient
//! failure delivers oxi's own commit and credits each run with its own files; `oxi saturate`
//! waits for in-flight reservations instead of stopping at a cap they only seem to fill; the
//! built-in price cards survive `oxi init`'s `[rates]` table, and an unpriced model is said.

use std::path::Path;
use std::process::{Command, Stdio};

use oxi::ledger::{Ledger, TaskState};
use serde_json::Value;

use crate::support::{OxiToml, Run, Sandbox, Worker, git};

const FAKE: &str = env!("CARGO_BIN_EXE_oxi-fake-worker");

/// A repository whose `oxi.toml` has one executor `fake` (a Claude-flavoured fake worker with
/// `set_env`), `workers`/`routing` as given, and an acceptance command that checks hello.txt.
fn repo(roadmap: &str, toml: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", roadmap);
    s.write(".gitignore", ".oxi/\n");
    s.write("oxi.toml", toml);
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    s
}

fn fake_toml(fake: Worker, extra: &str) -> String {
    OxiToml::new()
        .project()
        .worker(fake)
        .routing(&["fake"], &["fake"])
        .raw("[verify]\ntier0 = [{ name = \"says hi\", argv = [\"grep\", \"-qx\", \"hi\", \"hello.txt\"], timeout = \"30s\" }]\n")
        .raw(&format!("{extra}\n"))
        .text()
}

fn ledger(s: &Sandbox) -> Ledger {
    Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap()
}

fn tick(s: &Sandbox) -> Run {
    s.oxi(&["tick", "--format", "json"])
}

fn job<'a>(report: &'a Value, task: &str) -> &'a Value {
    report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["task_id"] == task)
        .unwrap_or_else(|| panic!("no job for {task}: {report:#}"))
}

fn state_json(job: &Value) -> Value {
    let dir = Path::new(job["run_dir"].as_str().unwrap());
    serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap()
}

/// The `paths` of the `verified` event recorded for `run_id`.
fn verified_paths(s: &Sandbox, run_id: &str) -> Vec<String> {
    let mut l = ledger(s);
    let data: String = l
        .raw_connection()
        .query_row(
            "SELECT data FROM events WHERE kind = 'verified' AND run_id = ?1",
            [run_id],
            |r| r.get(0),
        )
        .unwrap();
    let data: Value = serde_json::from_str(&data).unwrap();
    serde_json::from_value(data["paths"].clone()).unwrap()
}

/// Item 5: attempt 1 writes hello.txt and then fails retryably; attempt 2 finds the work
/// there and changes nothing. The delivered commit is oxi's, with attempt 2's trailers, and
/// holds the task's whole change; no "not delivered" salvage commit is left in the delivered
/// branch; each run is credited with what it changed (attempt 2: nothing).
#[test]
fn a_retry_after_a_transient_failure_delivers_oxis_commit_and_credits_each_run_its_own_files() {
    let s = repo(
        "# Roadmap\n\n**T0-1 · Add a greeting file**\nCreate `hello.txt` saying hi.\n",
        &fake_toml(
            Worker::fake("fake").scenario("edit-transient"),
            "[caps]\nretry_backoff = \"1ms\"\nretry_backoff_max = \"1ms\"\n",
        ),
    );
    let first = tick(&s).json();
    let a1 = job(&first, "T0-1").clone();
    assert_eq!(a1["classification"], "transient", "{first:#}");
    assert_eq!(a1["state"], "retry_wait", "{first:#}");
    // What attempt 1 left is its own, recorded as such.
    assert_eq!(state_json(&a1)["paths"], serde_json::json!(["hello.txt"]));

    let second = tick(&s).json();
    let a2 = job(&second, "T0-1").clone();
    assert_eq!(a2["state"], "delivered", "{second:#}");
    assert_eq!(a2["attempt"], 2);
    let run2 = a2["run_id"].as_str().unwrap();
    let branch = a2["branch"].as_str().unwrap();

    // The delivered commit is oxi's, with the delivering run's trailers...
    let tip = git(s.path(), &["log", "-1", "--format=%B", branch]);
    assert!(tip.starts_with("T0-1: Add a greeting file"), "{tip}");
    assert!(tip.contains(&format!("Oxi-Run: {run2}")), "{tip}");
    assert!(tip.contains("Oxi-Attempt: 2"), "{tip}");
    assert_eq!(
        a2["commit"].as_str().unwrap(),
        git(s.path(), &["rev-parse", branch])
    );
    // ...it holds the task's change, and the branch is that one commit on the base.
    assert_eq!(
        git(s.path(), &["show", &format!("{branch}:hello.txt")]),
        "hi"
    );
    let subjects = git(
        s.path(),
        &["log", "--format=%s", &format!("main..{branch}")],
    );
    assert_eq!(subjects, "T0-1: Add a greeting file", "{subjects}");

    // Attempt 2 changed nothing and is credited with nothing.
    assert_eq!(a2["files_changed"], 0, "{second:#}");
    assert_eq!(a2["paths"], serde_json::json!([]), "{second:#}");
    assert_eq!(state_json(&a2)["paths"], serde_json::json!([]));
    assert!(verified_paths(&s, run2).is_empty());
    let runs = ledger(&s).read().runs_for_task("T0-1").unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        ledger(&s).read().task("T0-1").unwrap().unwrap().state,
        TaskState::Delivered
    );
}

fn saturate(s: &Sandbox, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_oxi"))
        .arg("saturate")
        .args(args)
        .current_dir(s.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Item 6: two slots, runs costing $0.20 each, a $0.25 estimate and `--max-cost-per-day 1`.
/// Each started run's reservation is raised towards the job cap, so claims are refused while
/// runs are in flight; saturate waits for them to settle and claims again, and stops only when
/// spent + the next estimate would cross the cap: after four runs ($0.80 + $0.25 > $1.00).
/// Its exit names the limit that applied, `--max-cost-per-day`.
#[test]
fn saturate_waits_for_in_flight_reservations_and_stops_only_when_spend_would_cross_the_cap() {
    let roadmap: String = (1..=6)
        .map(|i| format!("**T0-{i} · Task {i}**\nSay hi.\n\n"))
        .collect();
    let s = repo(
        &format!("# Roadmap\n\n{roadmap}"),
        &fake_toml(
            Worker::fake("fake")
                .scenario("slow-edit:500")
                .cost_usd("0.2"),
            "[caps]\nkill_grace = \"1s\"\n",
        ),
    );
    let (code, stdout, stderr) = saturate(
        &s,
        &[
            "--concurrency",
            "2",
            "--max-cost-per-day",
            "1",
            "--grace",
            "60s",
        ],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("(daily_budget_reached)"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("--max-cost-per-day"), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("caps.daily_usd") && !stderr.contains("caps.daily_usd"),
        "the flag, not the config key, set today's cap:\n{stdout}\n{stderr}"
    );
    let l = ledger(&s);
    let tasks = l.read().tasks().unwrap();
    let delivered = tasks
        .iter()
        .filter(|t| t.state == TaskState::Delivered)
        .count();
    assert_eq!(delivered, 4, "{stdout}\n{stderr}");
    let now = oxi::clock::now_ms();
    let totals = l
        .read()
        .spend_totals(&oxi::clock::day_of(now), &oxi::clock::month_of(now))
        .unwrap();
    assert_eq!(totals.day_spent, 800_000, "{stderr}");
    assert_eq!(totals.day_reserved, 0);
}

/// Item 7: `oxi init`'s `[rates]` table (a card for `gpt-5.5` only) keeps the built-in Claude
/// card: `oxi run` on the Claude worker does not warn that the job cap cannot stop it early,
/// and doctor shows the model priced.
#[test]
fn after_oxi_init_the_claude_model_is_still_priced() {
    let s = Sandbox::git_repo();
    s.oxi(&["init"]).ok();
    let toml = s.read("oxi.toml");
    assert!(toml.contains("[rates.\"gpt-5.5\"]"), "{toml}");
    assert!(!toml.contains("[rates.\"claude"), "{toml}");
    s.write(
        "oxi.toml",
        toml.replacen(
            "command = [\"claude\"]",
            &format!("command = [\"{FAKE}\"]"),
            1,
        ),
    );
    let env = [("ANTHROPIC_API_KEY", "sk-ant-money-test-0000")];
    let run = s.oxi_env(&["run", "--worker", "claude", "say hi"], &env);
    run.ok();
    assert!(
        !run.stderr.contains("no [rates] card"),
        "the built-in card was dropped:\n{}",
        run.stderr
    );
    let doctor = s.oxi_env(&["doctor", "--format", "json"], &env).json();
    let prices = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "prices")
        .unwrap_or_else(|| panic!("no prices check: {doctor:#}"))
        .clone();
    assert_eq!(prices["status"], "ok", "{prices}");
    assert!(
        prices["detail"]
            .as_str()
            .unwrap()
            .contains("claude-sonnet-4-5"),
        "{prices}"
    );
}

/// Item 7: a routed worker whose model has no price fails doctor (naming the model and the
/// table to add), and every tick that runs it says so.
#[test]
fn an_unpriced_routed_model_fails_doctor_and_ticks_warn() {
    let s = repo(
        "# Roadmap\n\n**T0-1 · Add a greeting file**\nCreate `hello.txt` saying hi.\n",
        &fake_toml(
            Worker::fake("fake")
                .model("claude-unpriced-9")
                .scenario("edit"),
            &OxiToml::new()
                .worker(Worker::claude("spare", "claude").model("claude-also-unpriced"))
                .text(),
        ),
    );
    let out = s.oxi(&["doctor", "--format", "json"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let doctor = out.json();
    let prices = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "prices")
        .unwrap_or_else(|| panic!("no prices check: {doctor:#}"))
        .clone();
    assert_eq!(prices["status"], "fail", "{prices}");
    let detail = prices["detail"].as_str().unwrap();
    assert!(detail.contains("claude-unpriced-9"), "{prices}");
    assert!(
        !detail.contains("claude-also-unpriced"),
        "an unrouted worker is not a failure: {prices}"
    );
    assert!(
        prices["fix"]
            .as_str()
            .unwrap()
            .contains("[rates.\"claude-unpriced-9\"]"),
        "{prices}"
    );

    let out = tick(&s);
    out.ok();
    assert_eq!(job(&out.json(), "T0-1")["state"], "delivered");
    assert!(
        out.stderr
            .contains("no [rates] card for model \"claude-unpriced-9\""),
        "the tick must warn about the unpriced model:\n{}",
        out.stderr
    );
}
