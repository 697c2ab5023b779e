//! `[routing] summary` through the binary: a release tick with a summary route asks the mock
//! model server once (masked, non-streaming) and the pull request body opens with its answer;
//! without the route, or with a provider that fails, the body is exactly the usual one (one
//! snapshot for both) and a failure leaves a `pr_summary_skipped` event.

use oxi_testkit::mock_model::{ChatCost, MockModelServer, Script, Step};
use serde_json::Value;

use crate::support::release_world::{Setup, World};

const KEY_VAR: &str = "OXI_TEST_GATEWAY_KEY";
const KEY: &str = "sk-test-gateway-key-0000";
/// A token-shaped secret in the brief: masked by its shape before it leaves oxi.
const SHAPED: &str = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
const SUMMARY: &str = "Adds `hello.txt` saying hi, so the greeting check passes.";

fn roadmap() -> String {
    format!(
        "# Roadmap\n\n## Tier 0\n\n**T0-1 · Add a greeting file**\nCreate `hello.txt` saying hi (not {SHAPED}).\n"
    )
}

/// A release world whose gateway provider is the mock at `base_url`; `summary` is the
/// `[routing] summary` chain's line (or nothing).
async fn world(base_url: &str, summary: &str) -> World {
    let roadmap = roadmap();
    let tables = format!(
        "[gateway.providers.lite]\nkind = \"litellm\"\nbase_url = \"{base_url}\"\nkey_env = \"{KEY_VAR}\"\ntimeout = \"5s\"\nretries = 0\n"
    );
    World::start(Setup {
        roadmap: Some(&roadmap),
        routing: summary,
        tables: &tables,
        ..Setup::default()
    })
    .await
}

/// The pull request body after one tick, with what differs run to run (run id, times taken)
/// replaced.
async fn delivered_body(w: &World) -> String {
    let report = w.tick_env(&[(KEY_VAR, KEY)]).await;
    let pulls = w.github.pulls();
    assert_eq!(pulls.len(), 1, "{report:#}");
    let body = pulls[0]["body"].as_str().unwrap().to_owned();
    let run = regex::Regex::new(r"run `[^`]+`").unwrap();
    let time = regex::Regex::new(r"tokens · [^·]+ · attempt").unwrap();
    let check = regex::Regex::new(r"passed in [0-9.]+s").unwrap();
    let body = run.replace_all(&body, "run `[run]`");
    let body = check.replace_all(&body, "passed in [t]s");
    time.replace_all(&body, "tokens · [time] · attempt")
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_summary_route_the_body_is_as_before() {
    let server = MockModelServer::start(Script::steps([Step::text(SUMMARY)]))
        .await
        .unwrap();
    let w = world(&server.base_url(), "").await;
    let body = delivered_body(&w).await;
    insta::assert_snapshot!("pr_body_without_summary", body);
    assert!(server.model_requests().is_empty());
    assert!(w.events("pr_summary").is_empty());
    assert!(w.events("pr_summary_skipped").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_summary_route_opens_the_body_with_the_models_summary() {
    let server = MockModelServer::start(
        Script::steps([Step::text(SUMMARY)]).chat_cost(ChatCost::LitellmHeader("0.000300".into())),
    )
    .await
    .unwrap();
    let w = world(
        &server.base_url(),
        "summary = [\"lite:claude-haiku-4-5\"]\n",
    )
    .await;
    let body = delivered_body(&w).await;
    assert!(
        body.contains(&format!("## Summary\n\n{SUMMARY}\n\n## What changed")),
        "{body}"
    );

    // One request: the task, the diff stat and the transcript's end, masked, not streamed.
    let requests = server.model_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0].body;
    assert_eq!(request["stream"], Value::Bool(false));
    assert_eq!(request["model"], "claude-haiku-4-5");
    let sent = request.to_string();
    assert!(sent.contains("Diff stat: 1 file(s)"), "{sent}");
    assert!(sent.contains("hello.txt"), "{sent}");
    assert!(sent.contains("End of the agent's transcript"), "{sent}");
    assert!(
        !sent.contains(SHAPED),
        "a token-shaped secret left oxi: {sent}"
    );
    assert!(!sent.contains(KEY), "{sent}");

    // Recorded: the event, and a gateway call of the summary role at the header's cost.
    let written = w.events("pr_summary");
    assert_eq!(written.len(), 1);
    assert_eq!(written[0]["summary"], SUMMARY);
    assert_eq!(written[0]["choice"], "lite:claude-haiku-4-5");
    let calls = w.oxi(&["gateway", "calls", "--format", "json"]).await;
    assert_eq!(calls.code, 0, "{}", calls.stderr);
    let rows = calls.json();
    assert_eq!(rows[0]["role"], "summary");
    assert_eq!(rows[0]["outcome"], "ok");
    assert_eq!(rows[0]["cost_microusd"], 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_leaves_the_usual_body_and_an_event() {
    let server = MockModelServer::start(Script::new().fallback(Step::status(500, None)))
        .await
        .unwrap();
    let w = world(
        &server.base_url(),
        "summary = [\"lite:claude-haiku-4-5\"]\n",
    )
    .await;
    let body = delivered_body(&w).await;
    // The very body a world without the route gets.
    insta::assert_snapshot!("pr_body_without_summary", body);
    assert!(!server.model_requests().is_empty());
    let skipped = w.events("pr_summary_skipped");
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0]["reason"].as_str().unwrap().contains("500"),
        "{skipped:?}"
    );
    assert!(w.events("pr_summary").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_summary_cap_too_small_refuses_the_call_and_the_body_goes_out_without_it() {
    let server = MockModelServer::start(Script::steps([Step::text(SUMMARY)]))
        .await
        .unwrap();
    let roadmap = roadmap();
    let tables = format!(
        "[gateway.caps]\ncall_reserve_usd = 0.05\nsummary_daily_usd = 0.01\n\n[gateway.providers.lite]\nkind = \"litellm\"\nbase_url = \"{}\"\nkey_env = \"{KEY_VAR}\"\ntimeout = \"5s\"\nretries = 0\n",
        server.base_url()
    );
    let w = World::start(Setup {
        roadmap: Some(&roadmap),
        routing: "summary = [\"lite:claude-haiku-4-5\"]\n",
        tables: &tables,
        ..Setup::default()
    })
    .await;
    let body = delivered_body(&w).await;
    assert!(!body.contains("## Summary"), "{body}");
    assert!(
        server.model_requests().is_empty(),
        "the cap refuses before sending"
    );
    let skipped = w.events("pr_summary_skipped");
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("summary role's daily cap $0.01 (gateway.caps.summary_daily_usd)"),
        "{skipped:?}"
    );
}
