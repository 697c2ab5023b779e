//! GitHub as it really answers when things do not go to plan: real `oxi tick` processes against
//! the fake GitHub's unhappy answers (merge refusals, drafts a plan lacks, secondary rate limits,
//! renamed repositories and files, commit statuses, late checks, lost answers to writes, GitHub
//! Enterprise's GraphQL path).

use oxi::ledger::TaskState;
use oxi_testkit::fake_github::{Fault, RepoSettings};

use crate::support::Sandbox;
use crate::support::release_world::{Setup, World};
const BRANCH: &str = "oxi/t0-1-add-a-greeting-file";

const ROADMAP: &str = "# Roadmap\n\n## Tier 0\n\n**T0-1 · Add a greeting file**\nCreate `hello.txt` saying hi.\n\n**T0-2 · Shout the greeting**\nChange `hello.txt` to HI.\n";

/// Two tasks whose hints do not overlap (the fake worker writes hello.txt for both).
const TWO_APART: &str = "# Roadmap\n\n## Tier 0\n\n**T0-1 · Add a greeting file**\nCreate `hello.txt` saying hi.\n\n**T0-3 · Write notes**\nCreate `notes.txt`.\n";

/// The shared release world (tests/support/release_world.rs), with [`ROADMAP`] unless the test
/// names another.
async fn world(setup: Setup<'_>) -> World {
    World::start(Setup {
        roadmap: Some(setup.roadmap.unwrap_or(ROADMAP)),
        ..setup
    })
    .await
}

/// Item 1: GitHub Enterprise Server serves GraphQL at `/api/graphql`, not under `/api/v3`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_enterprise_the_draft_is_marked_ready_through_api_graphql() {
    let w = world(Setup {
        enterprise: true,
        ..Setup::default()
    })
    .await;
    assert!(w.github.url().ends_with("/api/v3"));
    let tick = w.tick_full().await;
    assert_eq!(
        w.task("T0-1").state,
        TaskState::Delivered,
        "{:#}",
        tick.report
    );
    w.approve_merge("T0-1");
    w.github.set_check_run(BRANCH, "ci", "success", "green");
    let tick = w.tick_full().await;
    assert_eq!(
        tick.actions("merged_by_oxi").len(),
        1,
        "{:#}\n{}",
        tick.report,
        tick.stderr
    );
    assert_eq!(w.task("T0-1").state, TaskState::Done);
    assert_eq!(w.requests("POST", "/api/graphql"), 1);
    assert_eq!(w.github.pulls()[0]["draft"], false);
    w.github.shutdown().await;
}

/// Item 2: a refused merge is that task's problem: held with GitHub's message while the other
/// task merges in the same tick; a new approval tries again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_merge_holds_that_task_and_the_tick_goes_on() {
    let w = world(Setup {
        roadmap: Some(TWO_APART),
        run: "max_parallel_jobs = 2",
        ..Setup::default()
    })
    .await;
    let tick = w.tick_full().await;
    for id in ["T0-1", "T0-3"] {
        assert_eq!(w.task(id).state, TaskState::Delivered, "{:#}", tick.report);
        w.approve_merge(id);
    }
    w.github
        .set_check_run("oxi/t0-1-add-a-greeting-file", "ci", "success", "ok");
    w.github
        .set_check_run("oxi/t0-3-write-notes", "ci", "success", "ok");
    let held = w.pr("T0-1");
    const REFUSAL: &str = "At least 1 approving review is required by reviewers with write access.";
    w.github.add_fault(Fault::refused(
        Some("PUT"),
        &format!("/pulls/{held}/merge"),
        405,
        REFUSAL,
        1,
    ));
    let tick = w.tick_full().await;
    assert_eq!(tick.code, 0, "{:#}\n{}", tick.report, tick.stderr);
    assert_eq!(w.task("T0-3").state, TaskState::Done, "{:#}", tick.report);
    assert_eq!(w.task("T0-1").state, TaskState::Delivered);
    let hold = tick.actions("merge_held");
    assert_eq!(hold.len(), 1, "{:#}", tick.report);
    assert_eq!(hold[0]["task_id"], "T0-1");
    assert!(
        hold[0]["detail"].as_str().unwrap().contains(REFUSAL),
        "{hold:?}"
    );
    let errors = w.events("github_error");
    assert!(
        errors
            .iter()
            .any(|e| e["step"] == "merge" && e["error"].as_str().unwrap().contains(REFUSAL)),
        "{errors:?}"
    );
    // Held: the next tick does not send the same merge again.
    let puts = w.requests("PUT", &format!("/pulls/{held}/merge"));
    w.tick_full().await;
    assert_eq!(w.requests("PUT", &format!("/pulls/{held}/merge")), puts);
    assert_eq!(w.task("T0-1").state, TaskState::Delivered);
    // A person sees the hold, with GitHub's reason, in `oxi status` and `oxi show`.
    let status = w.s.oxi(&["status"]);
    let text = status.ok();
    assert!(
        text.contains(&format!("T0-1 #{held}"))
            && text.contains(REFUSAL)
            && text.contains("oxi approve T0-1 --merge"),
        "{text}"
    );
    let status = w.s.oxi(&["status", "--format", "json"]).json();
    assert_eq!(status["held_merges"][0]["task_id"], "T0-1", "{status:#}");
    assert_eq!(status["held_merges"][0]["pr_number"], held);
    assert_eq!(status["held_merges"].as_array().unwrap().len(), 1);
    let shown = w.s.oxi(&["show", "T0-1"]);
    let text = shown.ok();
    assert!(
        text.contains("merge held since") && text.contains(REFUSAL),
        "{text}"
    );
    let shown = w.s.oxi(&["show", "T0-1", "--format", "json"]).json();
    assert!(
        shown["merge_held"]["reason"]
            .as_str()
            .unwrap()
            .contains(REFUSAL),
        "{shown:#}"
    );
    assert!(w.s.oxi(&["show", "T0-3", "--format", "json"]).json()["merge_held"].is_null());
    // A new approval (the review was given) tries again, and the hold is no longer shown.
    w.approve_merge("T0-1");
    let status = w.s.oxi(&["status", "--format", "json"]).json();
    assert_eq!(status["held_merges"], serde_json::json!([]), "{status:#}");
    w.tick_full().await;
    assert_eq!(w.task("T0-1").state, TaskState::Done);
    w.github.shutdown().await;
}

/// Item 2: the merge uses a method the repository allows; a 409 (head moved) is re-read and
/// retried once when the head is still the one CI passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_merge_uses_a_method_the_repository_allows_and_survives_a_409() {
    let w = world(Setup::default()).await;
    w.github.set_repo_settings(RepoSettings {
        allow_squash_merge: false,
        allow_rebase_merge: false,
        ..RepoSettings::default()
    });
    w.tick_full().await;
    w.approve_merge("T0-1");
    w.github.set_check_run(BRANCH, "ci", "success", "ok");
    w.github.add_fault(Fault::refused(
        Some("PUT"),
        "/merge",
        409,
        "Head branch was modified. Review and try the merge again.",
        1,
    ));
    let tick = w.tick_full().await;
    assert_eq!(
        w.task("T0-1").state,
        TaskState::Done,
        "{:#}\n{}",
        tick.report,
        tick.stderr
    );
    assert_eq!(w.github.merge_methods(), vec![(1, "merge".to_owned())]);
    assert_eq!(w.requests("PUT", "/pulls/1/merge"), 2);
    w.github.shutdown().await;
}

/// Item 3: a plan without draft pull requests gets a ready one, recorded as not a draft.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_without_drafts_gets_a_ready_pull_request() {
    let w = world(Setup::default()).await;
    w.github.set_repo_settings(RepoSettings {
        drafts: false,
        ..RepoSettings::default()
    });
    let tick = w.tick_full().await;
    assert_eq!(
        w.task("T0-1").state,
        TaskState::Delivered,
        "{:#}",
        tick.report
    );
    let pulls = w.github.pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0]["draft"], false);
    assert_eq!(w.events("pr_opened")[0]["draft"], false);
    w.github.shutdown().await;
}

/// Item 4: a secondary rate limit without `retry-after` waits at least a minute (not until the
/// primary limit's reset, an hour away); with `retry-after`, that long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_rate_limit_waits_as_github_documents() {
    let w = world(Setup::default()).await;
    w.github.add_fault(Fault::secondary_rate_limited(
        Some("POST"),
        "/pulls",
        None,
        1,
    ));
    let tick = w.tick_full().await;
    assert_eq!(
        w.task("T0-1").state,
        TaskState::DeliverPending,
        "{:#}",
        tick.report
    );
    let detail = tick.actions("deliver_pending")[0]["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        detail.contains("secondary rate limit") && detail.contains("wait 60s"),
        "{detail}"
    );
    // With retry-after: 1, waited out in the same tick.
    w.github.add_fault(Fault::secondary_rate_limited(
        Some("POST"),
        "/pulls",
        Some(1),
        1,
    ));
    let tick = w.tick_full().await;
    assert_eq!(
        w.task("T0-1").state,
        TaskState::Delivered,
        "{:#}",
        tick.report
    );
    w.github.shutdown().await;
}

/// Item 5: a renamed file overlaps by its old name too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_file_in_an_open_pull_request_overlaps_by_its_old_name() {
    let w = world(Setup {
        roadmap: Some("# Roadmap\n\n## Tier 0\n\n**T0-1 · Add a greeting file**\nCreate `hello.txt` saying hi; see `README.md`.\n"),
        ..Setup::default()
    })
    .await;
    w.push_branch("oxi/rename-readme", &[&["mv", "README.md", "GUIDE.md"]]);
    let number = w
        .github
        .open_pull("oxi/rename-readme", "main", "Rename the readme", &["oxi"]);
    let tick = w.tick_full().await;
    let deferred = &tick.report["deferred"][0];
    assert_eq!(deferred["task_id"], "T0-1", "{:#}", tick.report);
    assert!(
        deferred["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("#{number}")),
        "{deferred}"
    );
    w.github.shutdown().await;
}

/// Item 6: an error answer to a list endpoint is reported with its status and message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_answer_to_a_list_is_reported_as_github_gave_it() {
    let w = world(Setup::default()).await;
    w.github.add_fault(Fault::refused(
        Some("GET"),
        "/pulls",
        422,
        "Validation Failed",
        1,
    ));
    let tick = w.tick_full().await;
    let reason = tick.report["deferred"][0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("422") && reason.contains("Validation Failed"),
        "{:#}",
        tick.report
    );
    assert!(!reason.contains("not what oxi expected"), "{reason}");
    w.github.shutdown().await;
}

/// Item 7: every page of check runs, the latest run per check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ci_reads_every_page_and_the_latest_run_of_each_check() {
    // A re-run that passed replaces the failure before it.
    let w = world(Setup::default()).await;
    w.tick_full().await;
    w.approve_merge("T0-1");
    w.github.set_check_run(BRANCH, "unit", "failure", "flaky");
    w.github
        .set_check_run(BRANCH, "unit", "success", "re-run passed");
    let tick = w.tick_full().await;
    assert_eq!(w.task("T0-1").state, TaskState::Done, "{:#}", tick.report);
    assert_eq!(w.events("ci_result")[0]["green"], true);
    w.github.shutdown().await;

    // A failure on the second page is seen.
    let w = world(Setup::default()).await;
    w.github.set_page_size(1);
    w.tick_full().await;
    w.github.set_check_run(BRANCH, "lint", "success", "clean");
    w.github
        .set_check_run(BRANCH, "unit", "failure", "test_greeting failed");
    let tick = w.tick_full().await;
    assert_eq!(tick.actions("follow_up_ci").len(), 1, "{:#}", tick.report);
    assert_eq!(w.events("ci_result")[0]["green"], false);
    w.github.shutdown().await;
}

/// Item 7: CI reported only as commit statuses counts; a pending status is waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_statuses_count_as_ci() {
    let w = world(Setup::default()).await;
    w.tick_full().await;
    w.approve_merge("T0-1");
    w.github
        .set_commit_status(BRANCH, "ci/jenkins", "pending", "build started");
    let tick = w.tick_full().await;
    assert_eq!(
        w.task("T0-1").state,
        TaskState::Delivered,
        "{:#}",
        tick.report
    );
    assert!(w.events("ci_result").is_empty());
    w.github
        .set_commit_status(BRANCH, "ci/jenkins", "failure", "3 tests failed");
    let tick = w.tick_full().await;
    assert_eq!(tick.actions("follow_up_ci").len(), 1, "{:#}", tick.report);
    let ci = w.events("ci_result");
    assert_eq!(ci[0]["green"], false);
    assert_eq!(ci[0]["checks"][0]["name"], "ci/jenkins");
    w.github.shutdown().await;
}

/// Item 7: a check seen on an earlier head of the pull request is awaited on the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_that_registers_late_is_awaited() {
    let w = world(Setup::default()).await;
    w.tick_full().await;
    let first = w.head(BRANCH);
    w.github.set_check_run(&first, "lint", "success", "clean");
    w.github
        .set_check_run(&first, "unit", "failure", "expected HI");
    // Red: the follow-up runs in the same tick and pushes a new head.
    let tick = w.tick_full().await;
    assert_eq!(tick.actions("follow_up_ci").len(), 1, "{:#}", tick.report);
    let second = w.head(BRANCH);
    assert_ne!(first, second);
    w.approve_merge("T0-1");
    w.github.set_check_run(&second, "lint", "success", "clean");
    let tick = w.tick_full().await;
    assert_eq!(
        w.task("T0-1").state,
        TaskState::Delivered,
        "`unit` has not reported on the new head yet: {:#}",
        tick.report
    );
    w.github
        .set_check_run(&second, "unit", "success", "all green");
    let tick = w.tick_full().await;
    assert_eq!(w.task("T0-1").state, TaskState::Done, "{:#}", tick.report);
    w.github.shutdown().await;
}

/// Item 7: a repository with no CI at all: nothing is concluded while checks may still
/// register; once nothing did for a while, the approved merge goes ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_ci_the_approved_merge_waits_for_checks_to_register_then_goes_ahead() {
    let w = world(Setup::default()).await;
    w.tick_full().await;
    w.approve_merge("T0-1");
    w.tick_full().await;
    assert_eq!(w.task("T0-1").state, TaskState::Delivered);
    // As if the head had been waiting for checks for a long time.
    let updated = w
        .ledger()
        .raw_connection()
        .execute("UPDATE kv SET value = '0' WHERE key LIKE 'ci_wait:%'", [])
        .unwrap();
    assert_eq!(updated, 1);
    let tick = w.tick_full().await;
    assert_eq!(w.task("T0-1").state, TaskState::Done, "{:#}", tick.report);
    w.github.shutdown().await;
}

/// Item 8: a write whose answer was lost is read back before it is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_answer_was_lost_is_not_sent_twice() {
    let w = world(Setup::default()).await;
    w.github
        .add_fault_after_applying(Fault::status(Some("POST"), "/pulls", 502, 1));
    let tick = w.tick_full().await;
    assert_eq!(
        w.task("T0-1").state,
        TaskState::Delivered,
        "{:#}\n{}",
        tick.report,
        tick.stderr
    );
    assert_eq!(w.github.pulls().len(), 1);
    assert_eq!(w.requests("POST", "/repos/acme/widgets/pulls"), 1);

    w.approve_merge("T0-1");
    w.github.set_check_run(BRANCH, "ci", "success", "ok");
    w.github
        .add_fault_after_applying(Fault::status(Some("PUT"), "/merge", 502, 1));
    let tick = w.tick_full().await;
    assert_eq!(
        w.task("T0-1").state,
        TaskState::Done,
        "{:#}\n{}",
        tick.report,
        tick.stderr
    );
    assert_eq!(w.requests("PUT", "/pulls/1/merge"), 1);
    assert_eq!(w.events("pr_merged")[0]["by"], "oxi");
    w.github.shutdown().await;
}

/// Item 9: a 422 to deleting the branch means "already gone" only when GitHub says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_github_refuses_to_delete_is_reported() {
    let w = world(Setup::default()).await;
    w.tick_full().await;
    w.approve_merge("T0-1");
    w.github.set_check_run(BRANCH, "ci", "success", "ok");
    w.github.add_fault(Fault::refused(
        Some("DELETE"),
        "/git/refs/heads/",
        422,
        "Cannot delete this protected branch",
        1,
    ));
    let tick = w.tick_full().await;
    assert_eq!(w.task("T0-1").state, TaskState::Done, "{:#}", tick.report);
    assert!(w.bare_has(BRANCH));
    let errors = w.events("github_error");
    assert!(
        errors.iter().any(|e| e["step"] == "delete_branch"
            && e["error"]
                .as_str()
                .unwrap()
                .contains("Cannot delete this protected branch")),
        "{errors:?}"
    );
    w.github.shutdown().await;
}

/// Item 10: a renamed repository is reported with its new name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_repository_is_reported_with_its_new_name() {
    let w = world(Setup::default()).await;
    w.github.rename_repo("acme/gadgets");
    let tick = w.tick_full().await;
    assert_eq!(tick.code, 8, "{:#}\n{}", tick.report, tick.stderr);
    let blocked = tick.report["blocked"][0].as_str().unwrap();
    assert!(
        blocked.contains("acme/gadgets") && blocked.contains("github.repo"),
        "{blocked}"
    );
    w.set_toml("repo = \"acme/widgets\"", "repo = \"acme/gadgets\"");
    let tick = w.tick_full().await;
    assert_eq!(
        w.task("T0-1").state,
        TaskState::Delivered,
        "{:#}\n{}",
        tick.report,
        tick.stderr
    );
    w.github.shutdown().await;
}

/// Item 11: every open pull request counts for the overlap gate by default (a person's too);
/// `github.overlap_scope = "oxi"` counts only oxi's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overlap_gate_counts_every_open_pull_request_unless_told_otherwise() {
    let w = world(Setup::default()).await;
    w.push_branch("feature/greet", &[&["write", "hello.txt", "hello\n"]]);
    let number = w
        .github
        .open_pull("feature/greet", "main", "A person's greeting", &[]);
    let tick = w.tick_full().await;
    let deferred = &tick.report["deferred"][0];
    assert_eq!(deferred["task_id"], "T0-1", "{:#}", tick.report);
    assert!(
        deferred["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("#{number}")),
        "{deferred}"
    );
    // Its files are read once while its head and base stay put.
    let listed = w.requests("GET", "/repos/acme/widgets/pulls");
    w.tick_full().await;
    assert!(w.requests("GET", "/repos/acme/widgets/pulls") > listed);
    assert_eq!(w.requests("GET", &format!("/pulls/{number}/files")), 1);
    w.set_toml(
        "retry_backoff = \"50ms\"",
        "retry_backoff = \"50ms\"\noverlap_scope = \"oxi\"",
    );
    let tick = w.tick_full().await;
    assert_eq!(
        tick.report["jobs"][0]["task_id"], "T0-1",
        "{:#}",
        tick.report
    );
    w.github.shutdown().await;
}

#[test]
fn a_bad_overlap_scope_is_a_config_error_naming_the_key() {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", "- [ ] x\n");
    s.write(
        "oxi.toml",
        "[github]\nrepo = \"acme/widgets\"\noverlap_scope = \"mine\"\n",
    );
    let err = s.oxi(&["status"]).fails_with(3).to_owned();
    assert!(
        err.contains("oxi.toml:3")
            && err.contains("github.overlap_scope")
            && err.contains("unknown variant `mine`, expected `all` or `oxi`"),
        "{err}"
    );
}
