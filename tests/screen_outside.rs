//! `[screen] scope = "outside"` through the binary, with a task that came from a GitHub issue
//! (the issue source) next to one from roadmap.md: only the issue's brief is screened, and
//! when no verdict comes (the provider is down) only the issue's task is held.

use oxi::ledger::TaskState;
use oxi_testkit::mock_model::{MockModelServer, Script, Step};
use serde_json::Value;

use crate::support::release_world::{Setup, World};

const KEY_VAR: &str = "OXI_TEST_GATEWAY_KEY";
const KEY: &str = "sk-test-gateway-key-0000";
const CLEAN: &str = r#"{"flagged": false, "reason": "an ordinary task"}"#;

const ROADMAP: &str =
    "# Roadmap\n\n## Tier 0\n\n**T0-1 · Add a greeting file**\nCreate `hello.txt` saying hi.\n";

/// A release world with one roadmap task and one open issue labelled for oxi, `[screen]` on
/// for outside text only, its gateway the mock at `base_url`.
async fn world(base_url: &str) -> World {
    let tables = format!(
        "[sources.github_issues]\nlabels = [\"oxi\"]\n\n[gateway.providers.lite]\nkind = \"litellm\"\nbase_url = \"{base_url}\"\nkey_env = \"{KEY_VAR}\"\ntimeout = \"5s\"\nretries = 0\n\n[screen]\nenabled = true\nscope = \"outside\"\n"
    );
    let w = World::start(Setup {
        roadmap: Some(ROADMAP),
        routing: "screen = [\"lite:claude-haiku-4-5\"]\n",
        tables: &tables,
        ..Setup::default()
    })
    .await;
    w.github.issues().add(
        7,
        "Write the release notes",
        "Create `notes.txt` listing the changes.",
        &["oxi", "tier-0"],
    );
    w
}

/// The task each screening event of `kind` is about.
fn screened_tasks(w: &World, kind: &str) -> Vec<String> {
    let mut ledger = w.ledger();
    let conn = ledger.raw_connection();
    let mut stmt = conn
        .prepare("SELECT task_id FROM events WHERE kind = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([kind], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue_task_is_screened_and_the_roadmap_task_is_not() {
    let server = MockModelServer::start(Script::new().fallback(Step::text(CLEAN)))
        .await
        .unwrap();
    let w = world(&server.base_url()).await;
    let report = w.tick_env(&[(KEY_VAR, KEY)]).await;

    let requests = server.model_requests();
    assert_eq!(requests.len(), 1, "{requests:?}\n{report:#}");
    let sent = requests[0].body["messages"].to_string();
    assert!(sent.contains("Write the release notes"), "{sent}");
    assert!(!sent.contains("Add a greeting file"), "{sent}");
    assert_eq!(screened_tasks(&w, "screen_verdict"), ["GH-7"]);
    // A clean verdict holds nothing: both tasks went on.
    for id in ["T0-1", "GH-7"] {
        assert_ne!(w.task(id).state, TaskState::Held, "{id}: {report:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_verdict_the_issue_task_is_held_and_the_roadmap_task_goes_on() {
    let server = MockModelServer::start(Script::new().fallback(Step::status(500, None)))
        .await
        .unwrap();
    let w = world(&server.base_url()).await;
    let report = w.tick_env(&[(KEY_VAR, KEY)]).await;

    let issue = w.task("GH-7");
    assert_eq!(issue.state, TaskState::Held, "{report:#}");
    let shown = w
        .oxi_env(&["show", "GH-7", "--format", "json"], &[(KEY_VAR, KEY)])
        .await
        .json();
    assert_eq!(shown["task"]["hold_kind"], "screened", "{shown:#}");
    assert_eq!(screened_tasks(&w, "screen_failed"), ["GH-7"]);
    let failed: Vec<Value> = w.events("screen_failed");
    assert_eq!(failed[0]["held"], true);

    // The roadmap's own task was never sent, and was not held.
    let roadmap_task = w.task("T0-1");
    assert_ne!(roadmap_task.state, TaskState::Held, "{report:#}");
    assert_ne!(roadmap_task.state, TaskState::Queued, "{report:#}");
    for request in server.model_requests() {
        let sent = request.body["messages"].to_string();
        assert!(!sent.contains("Add a greeting file"), "{sent}");
    }
}
