//! The `oxi` binary's GitHub traffic against GitHub's published description: a checking proxy
//! (`oxi_testkit::github_contract`) between real `oxi tick` processes and the fake GitHub
//! records every request the binary sends and every answer it receives, and each must be valid
//! for its operation (path, parameters and body of the request; status and required fields of
//! the answer; GraphQL documents and variables against the schema). The library's calls are
//! held to the same description one by one in `src/github/contract.rs`; this is the binary,
//! whole, in a release-mode tick.

use std::collections::BTreeSet;

use oxi::ledger::TaskState;
use oxi_testkit::github_contract::{Answers, Called, CheckingProxy, description};

use crate::support::release_world::{Setup, World};

/// Every operation a release tick with an issue source goes through, from the issue sync to
/// the merge.
const EXPECTED: &[&str] = &[
    "issues/list-for-repo",
    "repos/get",
    "pulls/list",
    "pulls/create",
    "issues/add-labels",
    "issues/create-comment",
    "checks/list-for-ref",
    "repos/get-combined-status-for-ref",
    "markPullRequestReadyForReview",
    "pulls/merge",
    "git/delete-ref",
    "issues/update-comment",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_of_a_release_tick_and_every_answer_match_githubs_description() {
    let Some(description) = description() else {
        return;
    };
    let w = World::start(Setup {
        tables: "[sources.github_issues]\nlabels = [\"oxi\"]\n",
        ..Setup::default()
    })
    .await;
    let proxy = CheckingProxy::start(description, Answers::Forward(w.github.url()))
        .await
        .unwrap();
    w.set_api_url(&proxy.url());
    let issues = w.github.issues();
    issues.add(
        7,
        "Add a greeting file",
        "Create `hello.txt` saying hi.",
        &["oxi", "tier-0"],
    );

    // Sync the issue, run it, push, open the pull request, comment on the issue.
    proxy.set_caller("tick 1");
    let report = w.tick().await;
    assert_eq!(w.task("GH-7").state, TaskState::Delivered, "{report:#}");
    let pulls = w.github.pulls();
    assert_eq!(pulls.len(), 1, "{report:#}");
    let branch = pulls[0]["head"]["ref"].as_str().unwrap().to_owned();
    assert_eq!(issues.comments(7).len(), 1);

    // Approved, CI green on both APIs: ready, merge, delete the branch, update the comment.
    w.s.oxi(&["approve", "GH-7", "--merge"]).ok();
    w.github
        .set_check_run(&branch, "ci", "success", "all green");
    w.github
        .set_commit_status(&branch, "ci/legacy", "success", "the statuses API too");
    proxy.set_caller("tick 2");
    let report = w.tick().await;
    assert_eq!(w.task("GH-7").state, TaskState::Done, "{report:#}");
    assert_eq!(w.github.pulls()[0]["merged"], true);
    assert!(issues.comments(7)[0].edits >= 1);
    assert_eq!(w.events("pr_merged").len(), 1);
    let branch_left = std::process::Command::new("git")
        .arg("-C")
        .arg(&w.bare)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("refs/heads/{branch}"))
        .output()
        .unwrap();
    assert!(!branch_left.status.success(), "the branch was deleted");

    let seen = proxy.seen();
    let problems: Vec<String> = seen
        .iter()
        .flat_map(|s| {
            s.problems.iter().map(move |p| {
                format!(
                    "{}: {} {} → {} ({:?}): {p}",
                    s.caller, s.method, s.path, s.status, s.api
                )
            })
        })
        .collect();
    assert!(
        problems.is_empty(),
        "the binary's GitHub traffic against GitHub's description:\n{}",
        problems.join("\n")
    );
    let called: BTreeSet<&str> = seen
        .iter()
        .filter_map(|s| match &s.api {
            Some(Called::Rest(id) | Called::Graphql(id)) => Some(id.as_str()),
            None => None,
        })
        .collect();
    let missing: Vec<&&str> = EXPECTED.iter().filter(|e| !called.contains(**e)).collect();
    assert!(
        missing.is_empty(),
        "the ticks never called {missing:?}; they called {called:?}"
    );
    w.github.shutdown().await;
}
