//! The per-task pipeline ends each job in one place (`src/pipeline/ending.rs`): whatever stage
//! stops it, the task moves once from where that stage left it, the worktree is salvaged onto
//! the task branch before it moves, and the run's `state.json` says how it ended.
//!
//! Everything runs the real `oxi` and `oxi-fake-worker` binaries in a real git repository.

use oxi::ledger::{FailureClass, Ledger, TaskState};
use serde_json::Value;

use crate::support::{OxiToml, Sandbox, Worker, git};

const ROADMAP: &str = "# Roadmap\n\n## Tier 0\n\n**T0-1 · Write the greeting note**\nCreate `notes/greeting.md` that welcomes new contributors.\n";

const BRANCH: &str = "oxi/t0-1-write-the-greeting-note";

/// A fast-mode repository whose executor writes the hinted file; `tier0` is its acceptance.
fn repo(tier0: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.write("notes/README.md", "# Notes\n");
    s.write(".gitignore", ".oxi/\n");
    s.config(
        &OxiToml::new()
            .raw("[run]\nmode = \"fast\"\nmax_parallel_jobs = 1\n")
            .worker(Worker::fake("offline").scenario("demo"))
            .routing(&["offline"], &["offline"])
            .raw(&format!("[verify]\ntier0 = [{tier0}]\n")),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    s
}

/// The task's recorded moves, as `from -> to`, in order.
fn moves(s: &Sandbox, task: &str) -> Vec<String> {
    let mut l = Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap();
    let conn = l.raw_connection();
    let mut stmt = conn
        .prepare("SELECT data FROM events WHERE kind = 'task_state_changed' AND task_id = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([task], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|d| {
            let d: Value = serde_json::from_str(&d.unwrap()).unwrap();
            format!(
                "{} -> {}",
                d["from"].as_str().unwrap(),
                d["to"].as_str().unwrap()
            )
        })
        .collect()
}

fn tick(s: &Sandbox) -> Value {
    let out = s.oxi(&["tick", "--format", "json"]);
    out.json()
}

fn state_json(report: &Value) -> Value {
    let dir = report["jobs"][0]["run_dir"].as_str().unwrap();
    serde_json::from_str(&std::fs::read_to_string(format!("{dir}/state.json")).unwrap()).unwrap()
}

#[test]
fn a_red_verification_ends_the_job_once_with_its_work_salvaged_on_the_branch() {
    let s = repo(r#"{ name = "always red", argv = ["false"], timeout = "30s" }"#);
    let report = tick(&s);
    assert_eq!(
        moves(&s, "T0-1"),
        [
            "queued -> dispatched",
            "dispatched -> verifying",
            "verifying -> queued"
        ],
        "{report:#}"
    );
    let task = Ledger::open_existing(&s.file(".oxi/ledger.db"))
        .unwrap()
        .read()
        .task("T0-1")
        .unwrap()
        .unwrap();
    assert_eq!(task.state, TaskState::Queued);
    assert_eq!(task.failure_class, Some(FailureClass::VerifyFailed));
    // Salvaged before the move: the attempt's work is a commit on the branch, no worktree left.
    let subject = git(s.path(), &["log", "-1", "--format=%s", BRANCH]);
    assert_eq!(
        subject.trim(),
        "oxi: attempt 1 (verification failed; not delivered)"
    );
    assert!(!s.file(".oxi/worktrees/t0-1-a1").exists());
    let state = state_json(&report);
    assert_eq!(state["state"], "queued", "{state:#}");
    assert_eq!(state["failure_class"], "verify_failed", "{state:#}");
}

#[test]
fn a_delivered_job_ends_with_oxis_commit_on_the_branch_and_no_salvage() {
    let s = repo(r#"{ name = "always green", argv = ["true"], timeout = "30s" }"#);
    let report = tick(&s);
    assert_eq!(
        moves(&s, "T0-1"),
        [
            "queued -> dispatched",
            "dispatched -> verifying",
            "verifying -> reviewing",
            "reviewing -> delivered"
        ],
        "{report:#}"
    );
    let body = git(s.path(), &["log", "-1", "--format=%B", BRANCH]);
    assert!(body.starts_with("T0-1: Write the greeting note"), "{body}");
    assert!(body.contains("Oxi-Run: "), "{body}");
    assert!(!s.file(".oxi/worktrees/t0-1-a1").exists());
    let state = state_json(&report);
    assert_eq!(state["state"], "delivered", "{state:#}");
    assert!(state["commit"].is_string(), "{state:#}");
}
