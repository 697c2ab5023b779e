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
    repo_verified_by(&format!("[verify]\ntier0 = [{tier0}]\n"))
}

/// The same repository, its acceptance the `[verify]` table given.
fn repo_verified_by(verify: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.write("notes/README.md", "# Notes\n");
    s.write(".gitignore", ".oxi/\n");
    s.config(
        &OxiToml::new()
            .raw("[run]\nmode = \"fast\"\nmax_parallel_jobs = 1\n")
            .worker(Worker::fake("offline").scenario("demo"))
            .routing(&["offline"], &["offline"])
            .raw(verify),
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

/// Every acceptance command recorded, as `tier name status`, in order.
fn verify_results(s: &Sandbox) -> Vec<String> {
    let mut l = Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap();
    let conn = l.raw_connection();
    let mut stmt = conn
        .prepare("SELECT tier, name, status FROM verify_results ORDER BY rowid")
        .unwrap();
    stmt.query_map([], |r| {
        Ok(format!(
            "{} {} {}",
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// The `verified` events' `tier1_skipped`, in order.
fn tier1_skips(s: &Sandbox) -> Vec<Value> {
    let mut l = Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap();
    let conn = l.raw_connection();
    let mut stmt = conn
        .prepare("SELECT data FROM events WHERE kind = 'verified' ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|d| serde_json::from_str::<Value>(&d.unwrap()).unwrap()["tier1_skipped"].clone())
        .collect()
}

fn t0_1(s: &Sandbox) -> oxi::ledger::TaskRow {
    Ledger::open_existing(&s.file(".oxi/ledger.db"))
        .unwrap()
        .read()
        .task("T0-1")
        .unwrap()
        .unwrap()
}

#[test]
fn tier1_runs_after_a_green_tier0_and_a_red_tier1_sends_its_output_to_the_next_attempt() {
    let s = repo_verified_by(
        r#"[verify]
tier0 = [{ name = "quick", argv = ["true"], timeout = "30s" }]
tier1 = [
  { name = "slow suite", argv = ["sh", "-c", "echo the slow suite broke; exit 4"], timeout = "30s" },
  { name = "never reached", argv = ["true"], timeout = "30s" },
]
"#,
    );
    let report = tick(&s);
    assert_eq!(
        verify_results(&s),
        ["tier0 quick passed", "tier1 slow suite failed"],
        "{report:#}"
    );
    assert_eq!(tier1_skips(&s), [Value::Null]);
    let task = t0_1(&s);
    assert_eq!(task.state, TaskState::Queued);
    assert_eq!(task.failure_class, Some(FailureClass::VerifyFailed));
    let failure = task.last_failure.unwrap_or_default();
    assert!(
        failure.contains(
            "Acceptance command \"slow suite\" (tier1) failed (exit 4):\nthe slow suite broke"
        ),
        "{failure}"
    );
}

#[test]
fn tier1_past_its_time_box_is_skipped_and_a_red_tier2_after_the_review_holds_back_delivery() {
    let tier1_and_2 = |each: &str, tier2: &str| {
        format!(
            r#"[verify]
tier0 = [{{ name = "quick", argv = ["true"], timeout = "30s" }}]
tier1 = [
  {{ name = "a", argv = ["true"], timeout = "{each}" }},
  {{ name = "b", argv = ["true"], timeout = "{each}" }},
]
tier1_time_box = "1m"
tier2 = [{{ name = "release check", argv = ["sh", "-c", "{tier2}"], timeout = "30s" }}]
"#
        )
    };
    // 45s + 45s > 1m: tier1 is skipped, saying why; tier2 runs after the review and is red.
    let s = repo_verified_by(&tier1_and_2("45s", "echo not releasable; exit 2"));
    let report = tick(&s);
    assert_eq!(
        verify_results(&s),
        ["tier0 quick passed", "tier2 release check failed"],
        "{report:#}"
    );
    assert_eq!(
        tier1_skips(&s),
        ["tier1 skipped: its timeouts add up to 1m 30s > verify.tier1_time_box (1m)"]
    );
    assert_eq!(
        moves(&s, "T0-1"),
        [
            "queued -> dispatched",
            "dispatched -> verifying",
            "verifying -> reviewing",
            "reviewing -> queued"
        ]
    );
    let task = t0_1(&s);
    assert_eq!(task.failure_class, Some(FailureClass::VerifyFailed));
    let failure = task.last_failure.unwrap_or_default();
    assert!(
        failure.contains(
            "Acceptance command \"release check\" (tier2) failed (exit 2):\nnot releasable"
        ),
        "{failure}"
    );

    // 30s + 30s is not over 1m: tier1 runs; a green tier2 lets the work through.
    let s = repo_verified_by(&tier1_and_2("30s", "true"));
    let report = tick(&s);
    assert_eq!(
        verify_results(&s),
        [
            "tier0 quick passed",
            "tier1 a passed",
            "tier1 b passed",
            "tier2 release check passed"
        ],
        "{report:#}"
    );
    assert_eq!(tier1_skips(&s), [Value::Null]);
    assert_eq!(t0_1(&s).state, TaskState::Delivered);
}
