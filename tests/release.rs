//! Release mode end to end: a local bare repository as `origin`, the project's fake GitHub REST
//! server on 127.0.0.1, `oxi-fake-worker` as the agent and real `oxi tick` processes.

use std::path::PathBuf;

use oxi::ledger::TaskState;
use oxi_testkit::fake_github::Fault;
use serde_json::Value;

use crate::support::release_world::{Setup, TOKEN, World};
use crate::support::{Sandbox, git};

const ROADMAP: &str = "# Roadmap\n\n## Tier 0\n\n**T0-1 · Add a greeting file**\nCreate `hello.txt` saying hi.\n\n**T0-2 · Shout the greeting**\nChange `hello.txt` to HI.\n";

/// The shared release world (tests/support/release_world.rs) in `mode`, the executor its own
/// reviewer, `extra` appended to `[github]`.
async fn world(mode: &str, extra: &str) -> World {
    World::start(Setup {
        roadmap: Some(ROADMAP),
        mode,
        github: extra,
        reviewer: "fake",
        ..Setup::default()
    })
    .await
}

const BRANCH: &str = "oxi/t0-1-add-a-greeting-file";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_tick_pushes_the_branch_and_opens_a_labelled_draft_pull_request() {
    let w = world("release", "").await;
    let tick = w.tick_full().await;
    assert_eq!(tick.code, 0, "{:#}\n{}", tick.report, tick.stderr);
    assert_eq!(
        tick.report["jobs"][0]["state"], "delivered",
        "{:#}",
        tick.report
    );
    assert!(w.bare_has(BRANCH), "the branch was pushed to origin");
    let pulls = w.github.pulls();
    assert_eq!(pulls.len(), 1);
    let pr = &pulls[0];
    assert_eq!(pr["title"], "T0-1: Add a greeting file");
    assert_eq!(pr["draft"], true);
    assert_eq!(pr["head"]["ref"], BRANCH);
    let labels: Vec<&str> = pr["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["oxi", "tier-0"]);
    let body = pr["body"].as_str().unwrap();
    for needle in [
        "Create `hello.txt` saying hi.",
        "`hello.txt`",
        "tier0 `says hi`: passed",
        "auto-approved",
        "attempt 1",
        "oxi approve T0-1 --merge",
    ] {
        assert!(body.contains(needle), "PR body lacks {needle:?}:\n{body}");
    }
    let task = w.task("T0-1");
    assert_eq!(
        (task.state, task.pr_number),
        (TaskState::Delivered, Some(1))
    );
    assert_eq!(w.events("pr_opened").len(), 1);
    // The token never lands in the ledger or a run directory.
    for file in [".oxi/ledger.db", ".oxi/ledger.db-wal"] {
        if let Ok(bytes) = std::fs::read(w.s.file(file)) {
            assert!(
                !bytes.windows(TOKEN.len()).any(|x| x == TOKEN.as_bytes()),
                "{file} holds the token"
            );
        }
    }

    // A second tick sees the open PR, claims T0-2 only if it does not overlap: it does
    // (both touch hello.txt), so it waits with the PR number.
    let tick = w.tick_full().await;
    let deferred = &tick.report["deferred"][0];
    assert_eq!(deferred["task_id"], "T0-2", "{:#}", tick.report);
    assert!(
        deferred["reason"].as_str().unwrap().contains("#1"),
        "{deferred}"
    );
    assert!(w.task("T0-2").last_deferred_at_ms.is_some());
    assert_eq!(w.github.pulls().len(), 1, "no duplicate pull request");
    w.github.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_mode_with_a_complete_github_table_sends_no_request_at_all() {
    let w = world("fast", "").await;
    let tick = w.tick_full().await;
    assert_eq!(tick.report["jobs"][0]["state"], "delivered");
    assert_eq!(w.github.writes(), vec![], "fast mode wrote to GitHub");
    assert!(w.github.requests().is_empty(), "{:?}", w.github.requests());
    assert!(!w.bare_has(BRANCH), "fast mode never pushes");
    w.github.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_merge_waits_for_green_checks_then_squash_merges_and_deletes_the_branch() {
    let w = world("release", "").await;
    w.tick_full().await;
    let approve = w.s.oxi(&["approve", "T0-1", "--merge", "--note", "LGTM"]);
    assert!(
        approve.ok().contains("merge of pull request #1 approved"),
        "{}",
        approve.stdout
    );
    // No checks yet: nothing is merged.
    w.tick_full().await;
    assert_eq!(w.task("T0-1").state, TaskState::Delivered);
    w.github.set_check_run(BRANCH, "ci", "success", "all green");
    let tick = w.tick_full().await;
    assert!(
        tick.report["release"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "merged_by_oxi"),
        "{:#}",
        tick.report
    );
    assert_eq!(w.task("T0-1").state, TaskState::Done);
    assert_eq!(w.github.pulls()[0]["merged"], true);
    assert_eq!(
        w.github.pulls()[0]["draft"],
        false,
        "marked ready before merging"
    );
    assert!(!w.bare_has(BRANCH), "the branch was deleted");
    let merged = w.events("pr_merged");
    assert_eq!(merged[0]["approved_by"], "operator:tester");
    // The weekly prune: a diff first, then --write.
    let preview = w.s.oxi(&["roadmap", "prune"]);
    let shown = preview.ok();
    assert!(
        shown.contains("-**T0-1 · Add a greeting file**") && shown.contains("--write"),
        "{shown}"
    );
    assert!(
        w.s.read("roadmap.md").contains("T0-1"),
        "nothing written without --write"
    );
    w.s.oxi(&["roadmap", "prune", "--write"]).ok();
    let roadmap = w.s.read("roadmap.md");
    assert!(
        !roadmap.contains("T0-1") && roadmap.contains("T0-2 · Shout the greeting"),
        "{roadmap}"
    );
    let ci = w.events("ci_result");
    assert_eq!(ci[0]["first_pass"], true);
    assert_eq!(ci[0]["green"], true);
    w.github.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_and_closed_pull_requests_are_synced() {
    let w = world("release", "").await;
    // One task at a time: T0-1 then (T0-2 overlaps) nothing; merge T0-1 by hand.
    w.tick_full().await;
    w.github.set_pull_state(1, true);
    let tick = w.tick_full().await;
    assert_eq!(w.task("T0-1").state, TaskState::Done);
    assert_eq!(w.events("pr_merged")[0]["by"], "maintainer");
    // The same tick claims T0-2: the open PR that blocked it is gone.
    assert_eq!(
        tick.report["jobs"][0]["task_id"], "T0-2",
        "{:#}",
        tick.report
    );
    w.github.set_pull_state(2, false);
    w.tick_full().await;
    assert_eq!(w.task("T0-2").state, TaskState::Rejected);
    assert_eq!(w.events("pr_closed").len(), 1);
    w.github.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_ci_run_starts_a_follow_up_that_updates_the_same_pull_request() {
    let w = world("release", "").await;
    w.tick_full().await;
    w.github.set_check_run(
        BRANCH,
        "unit tests",
        "failure",
        "test_greeting failed: expected HI",
    );
    let tick = w.tick_full().await;
    assert!(
        tick.report["release"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "follow_up_ci"),
        "{:#}",
        tick.report
    );
    let prompts: Vec<String> = w
        .ledger()
        .read()
        .runs_for_task("T0-1")
        .unwrap()
        .into_iter()
        .filter(|r| r.role == "executor")
        .map(|r| {
            std::fs::read_to_string(PathBuf::from(r.run_dir.unwrap()).join("prompt.md")).unwrap()
        })
        .collect();
    assert_eq!(prompts.len(), 2);
    assert!(
        prompts[1].contains("CI failed on pull request #1")
            && prompts[1].contains("test_greeting failed"),
        "{}",
        prompts[1]
    );
    // That tick also claimed the follow-up: the second attempt's prompt carries the CI log and
    // its delivery updated PR #1.
    assert_eq!(
        tick.report["jobs"][0]["task_id"], "T0-1",
        "{:#}",
        tick.report
    );
    assert_eq!(tick.report["jobs"][0]["attempt"], 2);
    assert_eq!(w.task("T0-1").state, TaskState::Delivered);
    assert_eq!(w.github.pulls().len(), 1, "the PR is updated, not replaced");
    let ci = w.events("ci_result");
    assert_eq!(
        (ci[0]["first_pass"].clone(), ci[0]["green"].clone()),
        (Value::Bool(true), Value::Bool(false))
    );
    assert_eq!(w.events("follow_up").len(), 1);
    w.github.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_mid_deliver_is_waited_out_or_resumed_by_the_next_tick() {
    let w = world("release", "").await;
    // A short primary rate limit on opening the PR: waited out in the same tick.
    w.github
        .add_fault(Fault::rate_limited(Some("POST"), "/pulls", 1, 1));
    let tick = w.tick_full().await;
    assert_eq!(
        tick.report["jobs"][0]["state"], "delivered",
        "{:#}\n{}",
        tick.report, tick.stderr
    );
    assert_eq!(w.github.pulls().len(), 1);

    // A long one (beyond github.max_rate_limit_wait): the task waits in deliver_pending with
    // its branch pushed, and the next tick opens the PR. Needs a task that does not overlap.
    let w = world("release", "").await;
    w.github
        .add_fault(Fault::rate_limited(Some("POST"), "/pulls", 3600, 1));
    let tick = w.tick_full().await;
    assert_eq!(
        w.task("T0-1").state,
        TaskState::DeliverPending,
        "{:#}",
        tick.report
    );
    assert!(w.bare_has(BRANCH));
    assert_eq!(w.events("github_error").len(), 1);
    let tick = w.tick_full().await;
    assert_eq!(
        w.task("T0-1").state,
        TaskState::Delivered,
        "{:#}",
        tick.report
    );
    assert_eq!(w.github.pulls().len(), 1);
    w.github.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_and_a_bad_token_blocks_the_tick() {
    let w = world("release", "").await;
    w.github
        .add_fault(Fault::status(Some("GET"), "/repos/acme/widgets", 502, 2));
    let tick = w.tick_full().await;
    assert_eq!(
        tick.report["jobs"][0]["state"], "delivered",
        "{:#}",
        tick.report
    );

    let tick = w
        .tick_as("ghp_wrongtoken0000000000000000000000000", &[])
        .await;
    assert_eq!(tick.code, 8, "{:#}", tick.report);
    let blocked = tick.report["blocked"][0].as_str().unwrap();
    assert!(
        blocked.contains("401") && blocked.contains("OXI_TEST_GH_TOKEN"),
        "{blocked}"
    );
    assert!(
        !tick.stderr.contains("ghp_wrongtoken"),
        "the token is never printed"
    );
    w.github.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overlap_gate_pages_through_pull_requests_and_fails_closed_without_github() {
    let w = world("release", "").await;
    w.github.set_page_size(1);
    w.tick_full().await;
    let tick = w.tick_full().await;
    assert!(
        tick.report["deferred"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("#1")
    );
    // A malformed answer is an error naming the endpoint (here the sync's read of PR #1 gets
    // it first); nothing is claimed in that pass.
    w.github.add_fault(Fault {
        method: Some("GET".into()),
        path_contains: "/pulls".into(),
        status: 200,
        headers: Vec::new(),
        body: serde_json::json!({ "unexpected": "shape" }),
        times: 1,
    });
    let tick = w.tick_full().await;
    let blocked = tick.report["blocked"][0].as_str().unwrap_or("");
    assert!(
        blocked.contains("GET /repos/acme/widgets/pulls")
            && blocked.contains("not what oxi expected"),
        "{:#}",
        tick.report
    );
    assert!(tick.report["jobs"].as_array().unwrap().is_empty());
    // GitHub down for listing pulls: the gate defers rather than risk a conflict.
    w.github
        .add_fault(Fault::status(Some("GET"), "/pulls", 500, 100));
    let tick = w.tick_full().await;
    let reason = tick.report["deferred"][0]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("overlap_unknown"), "{:#}", tick.report);
    w.github.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_down_from_the_start_of_a_release_tick_defers_every_task_as_overlap_unknown() {
    let w = world("release", "").await;
    // Every retry of the preflight's read of the repository fails: GitHub is unavailable for
    // the whole pass, so the pull requests a task might overlap cannot be listed.
    w.github.add_fault(Fault::status(
        Some("GET"),
        "/repos/acme/widgets",
        502,
        1_000,
    ));
    let tick = w.tick_full().await;
    assert!(
        tick.report["jobs"].as_array().unwrap().is_empty(),
        "{:#}",
        tick.report
    );
    let reason = tick.report["deferred"][0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("overlap_unknown") && reason.contains("502"),
        "{:#}",
        tick.report
    );
    assert_eq!(w.task("T0-1").state, TaskState::Queued);
    assert!(w.github.pulls().is_empty());
    w.github.shutdown().await;
}

#[test]
fn unattended_merge_needs_its_acknowledgement() {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", "- [ ] x\n");
    s.write(
        "oxi.toml",
        "[github]\nrepo = \"acme/widgets\"\nmerge = \"on_critic_approve\"\n",
    );
    let err = s.oxi(&["status"]).fails_with(3).to_owned();
    assert!(
        err.contains("github.merge") && err.contains("acknowledge_unattended_merge"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_honeytoken_never_reaches_a_pull_request_a_commit_or_github() {
    const HONEY: &str = "hny-9d1c3e5a7b2f4d6e8a0c1b3d";
    let w = world("release", "").await;
    // In the brief (which the PR body quotes) and in the worker's API key variable, which the
    // worker repeats in its messages and on stderr.
    w.s.write(
        "roadmap.md",
        ROADMAP.replace(
            "Create `hello.txt` saying hi.",
            &format!("Create `hello.txt` saying hi. The old key was {HONEY}."),
        ),
    );
    let config = w.s.read("oxi.toml").replace(
        r#"set_env = { OXI_FAKE_SCENARIO = "edit" }"#,
        "env = [\"HONEY_API_KEY\"]\nset_env = { OXI_FAKE_SCENARIO = \"echo-env-edit:HONEY_API_KEY\" }",
    );
    w.s.write("oxi.toml", config);
    git(w.s.path(), &["commit", "-q", "-am", "honeytoken"]);
    let tick = w.tick_as(TOKEN, &[("HONEY_API_KEY", HONEY)]).await;
    assert_eq!(tick.code, 0, "{:#}\n{}", tick.report, tick.stderr);
    assert_eq!(
        tick.report["jobs"][0]["state"], "delivered",
        "{:#}",
        tick.report
    );
    let pulls = w.github.pulls();
    let pr = &pulls[0];
    let body = pr["body"].as_str().unwrap();
    assert!(body.contains("The old key was [REDACTED]"), "{body}");
    assert!(
        !pr.to_string().contains(HONEY),
        "the PR holds the honeytoken:\n{pr:#}"
    );
    // Nor the pushed commit, nor anything oxi printed.
    let log = git(&w.bare, &["log", "--format=%B", BRANCH]);
    assert!(!log.contains(HONEY), "{log}");
    assert!(!tick.stderr.contains(HONEY) && !tick.report.to_string().contains(HONEY));
    w.github.shutdown().await;
}
