//! The fast-mode loop closes (issue 13, items 8–10): a delivered branch the operator merges
//! satisfies its dependents on the next tick; `oxi done` closes work landed by other means;
//! `oxi tasks` lists every task with why it waits or stopped; task ids are matched
//! case-insensitively; `oxi retry` refuses a delivered task; the tick's table says why a task
//! is held; `oxi saturate --until-empty` waits for tasks in `retry_wait`.
//!
//! Everything runs the real `oxi` and `oxi-fake-worker` binaries in a real git repository.

use std::process::{Command, Stdio};

use oxi::ledger::{Ledger, TaskState};
use serde_json::Value;

use crate::support::{OxiToml, Run, Sandbox, Worker, git};

/// T0-2 depends on T0-1; T1-1 stands alone. The `demo` scenario writes the hinted file.
const ROADMAP: &str = "# Roadmap\n\n## Tier 0\n\n**T0-1 · Write the greeting note**\nCreate `notes/greeting.md` that welcomes new contributors.\n\n**T0-2 · Write the farewell note**\nCreate `notes/farewell.md` for contributors who move on.\nDepends on T0-1.\n\n## Tier 1\n\n**T1-1 · Write the thanks note**\nCreate `notes/thanks.md`.\n";

const CHECK: &str = "for f in notes/*.md; do head -n 1 \"$f\" | grep -q '^# ' || { echo \"$f: no title\"; exit 1; }; done\n";

const BRANCH_1: &str = "oxi/t0-1-write-the-greeting-note";

/// A repository in fast mode whose executor is the offline worker's `demo` scenario.
fn repo(extra: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.write("check.sh", CHECK);
    s.write("notes/README.md", "# Notes\n");
    s.write(".gitignore", ".oxi/\n");
    s.config(
        &OxiToml::new()
            .raw("[run]\nmode = \"fast\"\nmax_parallel_jobs = 1\n")
            .worker(Worker::fake("offline").scenario("demo"))
            .routing(&["offline"], &["offline"])
            .raw("[verify]\ntier0 = [{ name = \"notes have titles\", argv = [\"sh\", \"check.sh\"], timeout = \"30s\" }]\n")
            .raw(&format!("{extra}\n")),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    s
}

fn tick(s: &Sandbox) -> Value {
    let out = s.oxi(&["tick", "--format", "json"]);
    out.ok();
    out.json()
}

fn ledger(s: &Sandbox) -> Ledger {
    Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap()
}

fn state(s: &Sandbox, id: &str) -> TaskState {
    ledger(s).read().task(id).unwrap().unwrap().state
}

fn job_ids(report: &Value) -> Vec<String> {
    report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["task_id"].as_str().unwrap().to_owned())
        .collect()
}

fn plan_reason(s: &Sandbox, id: &str) -> Option<String> {
    let plan = s.oxi(&["plan", "--format", "json"]);
    plan.ok();
    plan.json()
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .and_then(|p| p["held_reason"].as_str().map(str::to_owned))
}

/// The operator actions recorded for `task`: (actor, data).
fn operator_actions(s: &Sandbox, task: &str) -> Vec<(String, Value)> {
    let mut l = ledger(s);
    let conn = l.raw_connection();
    let mut stmt = conn
        .prepare("SELECT actor, data FROM events WHERE kind = 'operator_action' AND task_id = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([task], |r| {
        Ok((
            r.get::<_, String>(0)?,
            serde_json::from_str(&r.get::<_, String>(1)?).unwrap(),
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// Runs `oxi tick` until T0-1 is delivered (one pass with one slot).
fn deliver_first(s: &Sandbox) {
    let report = tick(s);
    assert_eq!(job_ids(&report), ["T0-1"], "{report:#}");
    assert_eq!(state(s, "T0-1"), TaskState::Delivered, "{report:#}");
    assert_eq!(
        plan_reason(s, "T0-2").as_deref(),
        Some("depends on T0-1 (delivered)")
    );
}

#[test]
fn a_delivered_branch_merged_into_the_base_satisfies_its_dependent_on_the_next_tick() {
    let s = repo("");
    deliver_first(&s);
    // The operator merges the branch, then deletes it, as one does after a merge: oxi must
    // recognise the delivered commit, not only the branch.
    git(
        s.path(),
        &["merge", "--no-ff", "-q", "-m", "merge T0-1", BRANCH_1],
    );
    git(s.path(), &["branch", "-d", BRANCH_1]);

    let report = tick(&s);
    let landed = report["landed"].as_array().expect("a landed list");
    assert_eq!(landed.len(), 1, "{report:#}");
    assert_eq!(landed[0]["task_id"], "T0-1");
    assert_eq!(landed[0]["branch"], BRANCH_1);
    assert_eq!(state(&s, "T0-1"), TaskState::Done);
    // Its dependent ran in the same pass, on a base that has the merged work.
    assert_eq!(job_ids(&report), ["T0-2"], "{report:#}");
    assert_eq!(state(&s, "T0-2"), TaskState::Delivered, "{report:#}");
    let branch = report["jobs"][0]["branch"].as_str().unwrap();
    git(
        s.path(),
        &["cat-file", "-e", &format!("{branch}:notes/greeting.md")],
    );

    // The trail says how it moved: delivered -> merged -> done, by oxi.
    let show = s.oxi(&["show", "T0-1"]);
    let text = show.ok();
    assert!(
        text.contains("delivered -> merged: branch merged into main"),
        "{text}"
    );
    assert!(text.contains("merged -> done"), "{text}");
    assert!(
        text.contains(&format!("branch_merged (oxi) {BRANCH_1} (")),
        "{text}"
    );

    // The table form says it too.
    git(
        s.path(),
        &["merge", "--no-ff", "-q", "-m", "merge T0-2", branch],
    );
    let table = s.oxi(&["tick"]);
    assert!(
        table
            .ok()
            .contains(&format!("T0-2: {branch} is merged into main -> done")),
        "{}",
        table.stdout
    );
}

/// A delivered commit is checked against the base branch once per base tip, not on every tick
/// (with many unmerged branches, one git call each made every tick slow); a tip that moves is
/// checked again, so a merge is still seen.
#[test]
fn a_delivered_commit_is_checked_once_per_base_tip_and_again_when_the_tip_moves() {
    let s = repo("");
    deliver_first(&s);
    let record = || -> Value {
        serde_json::from_str(&std::fs::read_to_string(s.file(".oxi/not-merged.json")).unwrap())
            .unwrap()
    };
    let tip = |rev: &str| git(s.path(), &["rev-parse", rev]).trim().to_owned();
    // The next tick finds T0-1 not merged and keeps that, for main's tip.
    tick(&s);
    let kept = record();
    assert_eq!(kept["tip"], tip("main"), "{kept:#}");
    let delivered = tip(BRANCH_1);
    assert!(
        kept["commits"]
            .as_array()
            .unwrap()
            .contains(&Value::from(format!("T0-1@{delivered}"))),
        "{kept:#}"
    );
    // The operator merges it: main's tip moves, the commit is checked again and lands.
    git(
        s.path(),
        &["merge", "--no-ff", "-q", "-m", "merge T0-1", BRANCH_1],
    );
    let report = tick(&s);
    assert_eq!(report["landed"][0]["task_id"], "T0-1", "{report:#}");
    assert_eq!(state(&s, "T0-1"), TaskState::Done);
    let kept = record();
    assert_eq!(kept["tip"], tip("main"), "{kept:#}");
    assert!(
        !kept.to_string().contains("T0-1@"),
        "a landed task is no longer kept: {kept:#}"
    );
}

#[test]
fn a_squash_merged_task_is_closed_with_oxi_done() {
    let s = repo("");
    deliver_first(&s);
    // A squash merge: the delivered commit is not an ancestor of main, so oxi cannot tell.
    git(s.path(), &["merge", "--squash", "-q", BRANCH_1]);
    git(s.path(), &["commit", "-q", "-m", "T0-1 (squashed)"]);
    let report = tick(&s);
    assert_eq!(report["landed"], serde_json::json!([]), "{report:#}");
    assert_eq!(state(&s, "T0-1"), TaskState::Delivered);
    assert!(!job_ids(&report).contains(&"T0-2".to_owned()), "{report:#}");

    let done = s.oxi(&["done", "t0-1", "--why", "squash-merged into main"]);
    assert!(
        done.ok().contains("T0-1: delivered -> done"),
        "{}",
        done.stdout
    );
    assert_eq!(state(&s, "T0-1"), TaskState::Done);
    let actions = operator_actions(&s, "T0-1");
    let (actor, data) = actions.last().unwrap();
    assert_eq!(actor, "operator:tester");
    assert_eq!(data["action"], "done");
    assert_eq!(data["from"], "delivered");
    assert_eq!(data["note"], "squash-merged into main");

    // Nothing is done twice, and work in flight is not closed under a worker.
    let again = s.oxi(&["done", "T0-1"]);
    assert!(
        again.fails_with(1).contains("T0-1 is already done"),
        "{}",
        again.stderr
    );

    let report = tick(&s);
    assert_eq!(job_ids(&report), ["T0-2"], "{report:#}");
    assert_eq!(state(&s, "T0-2"), TaskState::Delivered);
}

#[test]
fn oxi_tasks_lists_every_task_with_why_it_waits_or_stopped() {
    let s = repo("");
    s.oxi(&["ingest"]).ok();
    deliver_first(&s);

    let table = s.oxi(&["tasks"]);
    insta::assert_snapshot!("tasks_table", table.ok());

    let json = s.oxi(&["tasks", "--format", "json"]);
    let rows = json.json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let t1 = &rows[0];
    assert_eq!(t1["id"], "T0-1");
    assert_eq!(t1["state"], "delivered");
    assert_eq!(t1["attempts"], 1);
    assert_eq!(t1["worker"], "offline");
    assert_eq!(t1["branch"], BRANCH_1);
    assert!(t1["cost_usd"].as_f64().unwrap() > 0.0, "{t1:#}");
    assert!(
        t1["reason"].as_str().unwrap().contains("oxi done T0-1"),
        "{t1:#}"
    );
    let t2 = &rows[1];
    assert_eq!(t2["id"], "T0-2");
    assert_eq!(t2["state"], "queued");
    assert_eq!(t2["reason"], "depends on T0-1 (delivered)");
    assert_eq!(t2["worker"], Value::Null);
    assert_eq!(t2["cost_usd"], 0.0);

    // Filters, repeated and case-insensitive; a bad state names the good ones.
    let some = s.oxi(&[
        "tasks",
        "--state",
        "delivered",
        "--state",
        "Queued",
        "--format",
        "json",
    ]);
    let ids: Vec<String> = some
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["T0-1", "T0-2", "T1-1"]);
    let delivered = s.oxi(&["tasks", "--state", "delivered", "--format", "markdown"]);
    insta::assert_snapshot!("tasks_markdown_delivered", delivered.ok());
    let bad = s.oxi(&["tasks", "--state", "running"]);
    let err = bad.fails_with(2);
    assert!(
        err.contains("retry_wait") && err.contains("delivered"),
        "{err}"
    );

    // Hints that send users looking for ids point at `oxi tasks`.
    let missing = s.oxi(&["show", "T9-9"]);
    assert!(missing.stderr.contains("`oxi tasks`"), "{}", missing.stderr);
}

#[test]
fn task_ids_are_matched_case_insensitively() {
    let s = repo("");
    deliver_first(&s);
    let show = s.oxi(&["show", "t0-1"]);
    assert!(
        show.ok().starts_with("T0-1: Write the greeting note"),
        "{}",
        show.stdout
    );
    let logs = s.oxi(&["logs", "t0-1"]);
    assert!(!logs.ok().is_empty());
    let cancel = s.oxi(&["cancel", "t1-1"]);
    assert!(
        cancel.ok().contains("T1-1: queued -> cancelled"),
        "{}",
        cancel.stdout
    );
    let retry = s.oxi(&["retry", "t1-1"]);
    assert!(
        retry.ok().contains("T1-1: cancelled -> queued"),
        "{}",
        retry.stdout
    );
    let json = s.oxi(&["show", "t1-1", "--format", "json"]);
    assert_eq!(json.json()["task"]["id"], "T1-1");
    let done = s.oxi(&["done", "t1-1"]);
    assert!(
        done.ok().contains("T1-1: queued -> done"),
        "{}",
        done.stdout
    );
    assert_eq!(state(&s, "T1-1"), TaskState::Done);
}

#[test]
fn retry_refuses_a_delivered_task_and_the_next_tick_does_not_pay_for_it_again() {
    let s = repo("");
    deliver_first(&s);
    let retry = s.oxi(&["retry", "T0-1"]);
    let err = retry.fails_with(1);
    assert!(err.contains("T0-1 is delivered"), "{err}");
    for accepted in [
        "failed",
        "framework_fix_needed",
        "held",
        "retry_wait",
        "rejected",
        "cancelled",
        "abandoned",
    ] {
        assert!(err.contains(accepted), "{accepted} missing from: {err}");
    }
    assert!(err.contains("oxi done T0-1"), "{err}");
    assert_eq!(state(&s, "T0-1"), TaskState::Delivered);
    let report = tick(&s);
    assert!(!job_ids(&report).contains(&"T0-1".to_owned()), "{report:#}");
    let runs = ledger(&s).read().runs_for_task("T0-1").unwrap();
    assert_eq!(runs.iter().filter(|r| r.role == "executor").count(), 1);
}

#[test]
fn the_tick_table_says_why_a_task_is_held() {
    let s = repo("[governance]\nneeds_approval = [\"notes/greeting.md\"]\n");
    let out = s.oxi(&["tick"]);
    let text = out.ok();
    let held = ledger(&s).read().task("T0-1").unwrap().unwrap();
    assert_eq!(held.state, TaskState::Held, "{text}");
    let reason = held.held_reason.unwrap();
    assert!(
        text.contains(&format!("T0-1 held: {reason}")),
        "the tick's table does not say why T0-1 is held ({reason}):\n{text}"
    );
    // The JSON report carries it too (a retry runs it again, to the same hold).
    s.oxi(&["retry", "T0-1"]).ok();
    let report = tick(&s);
    assert_eq!(report["jobs"][0]["state"], "held");
    assert!(
        report["jobs"][0]["held_reason"]
            .as_str()
            .unwrap()
            .contains("oxi approve T0-1"),
        "{report:#}"
    );
}

#[test]
fn saturate_until_empty_waits_for_a_task_in_retry_wait() {
    // The first worker is rate limited; the retry (after a one-second backoff) goes to the
    // next worker in the chain, which delivers.
    let s = repo(
        &OxiToml::new()
            .worker(Worker::fake("limited").scenario("rate-limited"))
            .raw("[caps]\nretry_backoff = \"1s\"\nretry_backoff_max = \"1s\"\n")
            .text(),
    );
    let toml = s.read("oxi.toml").replace(
        "executor = [\"offline\"]",
        "executor = [\"limited\", \"offline\"]",
    );
    s.write("oxi.toml", toml);
    // Only T1-1 (independent) and T0-1: T0-2 waits for T0-1 to be merged.
    let out = Command::new(env!("CARGO_BIN_EXE_oxi"))
        .args([
            "saturate",
            "--concurrency",
            "1",
            "--until-empty",
            "--format",
            "json",
        ])
        .current_dir(s.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let summary = run.json();
    assert_eq!(summary["reason"], "until_empty", "{}", run.stderr);
    for id in ["T0-1", "T1-1"] {
        assert_eq!(
            state(&s, id),
            TaskState::Delivered,
            "{id} was left waiting:\n{}",
            run.stderr
        );
    }
    assert_eq!(state(&s, "T0-2"), TaskState::Queued);
}

#[test]
fn with_stack_on_delivered_a_dependent_starts_from_its_dependency_branch() {
    let s = repo("");
    let toml = s.read("oxi.toml").replace(
        "max_parallel_jobs = 1\n",
        "max_parallel_jobs = 1\nstack_on_delivered = true\n",
    );
    s.write("oxi.toml", toml);
    assert_eq!(job_ids(&tick(&s)), ["T0-1"]);
    assert_eq!(
        plan_reason(&s, "T0-2"),
        None,
        "T0-2 is eligible on T0-1's branch"
    );

    // T0-2 runs on top of T0-1's unmerged work; its own diff is only its own file.
    let report = tick(&s);
    assert_eq!(job_ids(&report), ["T0-2"], "{report:#}");
    let job = &report["jobs"][0];
    assert_eq!(job["state"], "delivered", "{report:#}");
    assert_eq!(
        job["paths"],
        serde_json::json!(["notes/farewell.md"]),
        "{job:#}"
    );
    let branch = job["branch"].as_str().unwrap();
    git(s.path(), &["merge-base", "--is-ancestor", BRANCH_1, branch]);

    // Merging the top of the stack lands both.
    git(
        s.path(),
        &["merge", "--no-ff", "-q", "-m", "merge the stack", branch],
    );
    let report = tick(&s);
    let mut landed: Vec<&str> = report["landed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["task_id"].as_str().unwrap())
        .collect();
    landed.sort_unstable();
    assert_eq!(landed, ["T0-1", "T0-2"], "{report:#}");
}
