//! The real `claude` and `codex` CLIs, offline against `oxi_testkit::mock_model`: the mock's scripted
//! answers must drive them the way the recorded captures say (edits, final text, API errors,
//! a silent model). Skipped with a hint when the pinned CLIs are not installed
//! (`.ci/install-agent-clis`); under `CI=true` that is a failure instead.

use std::time::Duration;

use oxi_testkit::mock_model::{MockModelServer, Script, Step};
use serde_json::Value;

use crate::support::live::{self, Cli, Running, Scratch};

const OXI_RESULT: &str = r#"OXI_RESULT {"status":"done"}"#;

/// How long a hanging model must keep the CLI silent in the hang tests.
const SILENCE: Duration = Duration::from_secs(3);

async fn server(script: Script) -> MockModelServer {
    MockModelServer::start(script)
        .await
        .expect("mock model server starts")
}

fn final_text(text: &str) -> String {
    format!("Created the file.\n{text}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_writes_a_file_and_reports_usage_and_cost() {
    let Some(bin) = live::require(Cli::Claude) else {
        return;
    };
    let scratch = Scratch::new();
    let server = server(Script::steps([
        Step::write_file("notes/plan.md", "# Plan\nstep one\n"),
        Step::text(final_text(OXI_RESULT)),
    ]))
    .await;
    let run = live::run(live::claude(&bin, &server, &scratch, "write the plan")).await;

    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(
        scratch.read("notes/plan.md").as_deref(),
        Some("# Plan\nstep one\n")
    );
    let init = run.one_event("system", Some("init"));
    assert_eq!(init["claude_code_version"], live::CLAUDE_VERSION);
    assert_eq!(init["permissionMode"], "bypassPermissions");
    let tool_use = run
        .events_of("assistant", None)
        .into_iter()
        .flat_map(|e| {
            e["message"]["content"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|block| block["type"] == "tool_use")
        .unwrap_or_else(|| panic!("no tool_use event\n{run}"));
    assert_eq!(tool_use["name"], "Write");
    let user = run.one_event("user", None);
    assert_eq!(user["tool_use_result"]["type"], "create");

    let result = run.one_event("result", Some("success"));
    assert_eq!(result["is_error"], false, "{run}");
    assert_eq!(result["num_turns"], 2);
    assert_eq!(result["result"], final_text(OXI_RESULT));
    // Summed over the two model calls: 2 × the mock's 1200/200/100/50.
    assert_eq!(result["usage"]["input_tokens"], 2400);
    assert_eq!(result["usage"]["cache_read_input_tokens"], 400);
    assert_eq!(result["usage"]["cache_creation_input_tokens"], 200);
    assert_eq!(result["usage"]["output_tokens"], 100);
    assert!(
        result["total_cost_usd"].as_f64().is_some_and(|c| c > 0.0),
        "{run}"
    );

    let requests = server.model_requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert!(requests.iter().all(|r| r.path == "/v1/messages?beta=true"));
    assert_eq!(requests[0].header("x-api-key"), Some("<redacted>"));
    assert!(requests[0].tool_names().iter().any(|t| t == "Write"));
    assert!(!requests[0].latest_is_tool_result());
    assert!(requests[1].latest_is_tool_result());
    let results = requests[1].tool_results();
    assert_eq!(results.len(), 1, "{results:#?}");
    assert_eq!(results[0].call_id, tool_use["id"].as_str().unwrap());
    assert!(results[0].output.contains("notes/plan.md"), "{results:#?}");
    assert!(!results[0].is_error);
    // Claude Code makes no other requests offline.
    assert_eq!(server.requests().len(), 2);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_writes_a_file_and_reports_usage() {
    let Some(bin) = live::require(Cli::Codex) else {
        return;
    };
    let scratch = Scratch::new();
    let server = server(Script::steps([
        Step::write_file("notes/plan.md", "# Plan\nstep one\n"),
        Step::text(final_text(OXI_RESULT)),
    ]))
    .await;
    let run = live::run(live::codex(&bin, &server, &scratch, "write the plan", "")).await;

    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(
        scratch.read("notes/plan.md").as_deref(),
        Some("# Plan\nstep one\n")
    );
    assert_eq!(run.events_of("thread.started", None).len(), 1, "{run}");
    let change = run
        .events_of("item.completed", None)
        .into_iter()
        .find(|e| e["item"]["type"] == "file_change")
        .unwrap_or_else(|| panic!("no file_change item\n{run}"));
    assert_eq!(change["item"]["status"], "completed");
    assert_eq!(change["item"]["changes"][0]["kind"], "add");
    assert!(
        change["item"]["changes"][0]["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("notes/plan.md")),
        "{run}"
    );
    let message = run
        .events_of("item.completed", None)
        .into_iter()
        .find(|e| e["item"]["type"] == "agent_message")
        .unwrap_or_else(|| panic!("no agent_message\n{run}"));
    assert_eq!(message["item"]["text"], final_text(OXI_RESULT));
    let completed = run.one_event("turn.completed", None);
    // Summed over the two model calls: 2 × the mock's 1200 (200 cached) / 50 (20 reasoning).
    assert_eq!(completed["usage"]["input_tokens"], 2400);
    assert_eq!(completed["usage"]["cached_input_tokens"], 400);
    assert_eq!(completed["usage"]["output_tokens"], 100);
    assert_eq!(completed["usage"]["reasoning_output_tokens"], 40);

    let requests = server.model_requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert!(requests.iter().all(|r| r.path == "/v1/responses"));
    assert_eq!(requests[0].header("authorization"), Some("<redacted>"));
    assert!(requests[0].tool_names().iter().any(|t| t == "apply_patch"));
    assert!(requests[1].latest_is_tool_result());
    let results = requests[1].tool_results();
    assert_eq!(results.len(), 1, "{results:#?}");
    assert!(results[0].output.contains("Success"), "{results:#?}");
    assert_eq!(
        server.requests().len(),
        2,
        "no start-up requests besides the model's"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_final_text_carries_oxi_result() {
    let Some(bin) = live::require(Cli::Claude) else {
        return;
    };
    let scratch = Scratch::new();
    let server = server(Script::steps([Step::text(final_text(OXI_RESULT))])).await;
    let run = live::run(live::claude(&bin, &server, &scratch, "report")).await;

    assert_eq!(run.code, Some(0), "{run}");
    let result = run.one_event("result", Some("success"));
    assert_eq!(result["num_turns"], 1);
    let text = result["result"].as_str().unwrap_or_default();
    assert!(text.lines().any(|l| l == OXI_RESULT), "{run}");
    assert_eq!(server.model_requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_final_text_carries_oxi_result() {
    let Some(bin) = live::require(Cli::Codex) else {
        return;
    };
    let scratch = Scratch::new();
    let server = server(Script::steps([Step::text(final_text(OXI_RESULT))])).await;
    let run = live::run(live::codex(&bin, &server, &scratch, "report", "")).await;

    assert_eq!(run.code, Some(0), "{run}");
    let messages: Vec<Value> = run
        .events_of("item.completed", None)
        .into_iter()
        .filter(|e| e["item"]["type"] == "agent_message")
        .collect();
    let last = messages
        .last()
        .unwrap_or_else(|| panic!("no agent_message\n{run}"));
    let text = last["item"]["text"].as_str().unwrap_or_default();
    assert!(text.lines().any(|l| l == OXI_RESULT), "{run}");
    assert_eq!(run.events_of("turn.completed", None).len(), 1, "{run}");
    assert_eq!(server.model_requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_runs_a_scripted_shell_command() {
    let Some(bin) = live::require(Cli::Claude) else {
        return;
    };
    let scratch = Scratch::new();
    let server = server(Script::steps([
        Step::shell("echo from-bash > shell.txt && echo printed"),
        Step::text("ran it"),
    ]))
    .await;
    let run = live::run(live::claude(&bin, &server, &scratch, "run it")).await;

    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(scratch.read("shell.txt").as_deref(), Some("from-bash\n"));
    let requests = server.model_requests();
    assert_eq!(requests.len(), 2, "{run}");
    let results = requests[1].tool_results();
    assert_eq!(results.len(), 1, "{results:#?}");
    assert!(results[0].output.contains("printed"), "{results:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_runs_a_scripted_shell_command() {
    let Some(bin) = live::require(Cli::Codex) else {
        return;
    };
    let scratch = Scratch::new();
    let server = server(Script::steps([
        Step::shell("echo from-exec > shell.txt && echo printed"),
        Step::text("ran it"),
    ]))
    .await;
    let run = live::run(live::codex(&bin, &server, &scratch, "run it", "")).await;

    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(scratch.read("shell.txt").as_deref(), Some("from-exec\n"));
    let command = run
        .events_of("item.completed", None)
        .into_iter()
        .find(|e| e["item"]["type"] == "command_execution")
        .unwrap_or_else(|| panic!("no command_execution item\n{run}"));
    assert_eq!(command["item"]["exit_code"], 0, "{run}");
    assert!(
        command["item"]["aggregated_output"]
            .as_str()
            .is_some_and(|o| o.contains("printed")),
        "{run}"
    );
    let requests = server.model_requests();
    assert_eq!(requests.len(), 2, "{run}");
    assert!(requests[0].tool_names().iter().any(|t| t == "exec_command"));
    let results = requests[1].tool_results();
    assert!(
        results.iter().any(|r| r.output.contains("printed")),
        "{results:#?}"
    );
}

/// `WriteFile` also replaces a file the agent never read (here the committed README).
async fn overwrites_an_existing_file(cli: Cli) {
    let Some(bin) = live::require(cli) else {
        return;
    };
    let scratch = Scratch::new();
    let server = server(Script::steps([
        Step::write_file("README.md", "# replaced\n"),
        Step::text("replaced it"),
    ]))
    .await;
    let command = match cli {
        Cli::Claude => live::claude(&bin, &server, &scratch, "replace the readme"),
        Cli::Codex => live::codex(&bin, &server, &scratch, "replace the readme", ""),
    };
    let run = live::run(command).await;

    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(
        scratch.read("README.md").as_deref(),
        Some("# replaced\n"),
        "{run}"
    );
    let requests = server.model_requests();
    assert_eq!(requests.len(), 2, "{run}");
    let results = requests[1].tool_results();
    assert_eq!(results.len(), 1, "{results:#?}");
    assert!(!results[0].is_error, "{results:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_overwrites_an_existing_file() {
    overwrites_an_existing_file(Cli::Claude).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_overwrites_an_existing_file() {
    overwrites_an_existing_file(Cli::Codex).await;
}

/// Claude Code retries failed requests `CLAUDE_CODE_MAX_RETRIES` times, printing an
/// `api_retry` event for each, then ends with a `success` result that has `is_error: true`.
async fn claude_surfaces_status(code: u16, error: &str) {
    let Some(bin) = live::require(Cli::Claude) else {
        return;
    };
    let scratch = Scratch::new();
    let server = server(Script::new().fallback(Step::status(code, None))).await;
    let mut command = live::claude(&bin, &server, &scratch, "create hello.txt");
    command.env("CLAUDE_CODE_MAX_RETRIES", "1");
    let run = live::run(command).await;

    assert_eq!(run.code, Some(1), "{run}");
    let retry = run.one_event("system", Some("api_retry"));
    assert_eq!(retry["attempt"], 1);
    assert_eq!(retry["max_retries"], 1);
    assert_eq!(retry["error_status"], code);
    assert_eq!(retry["error"], error);
    let result = run.one_event("result", Some("success"));
    assert_eq!(result["is_error"], true);
    assert_eq!(result["terminal_reason"], "api_error");
    assert_eq!(result["api_error_status"], code);
    assert_eq!(result["total_cost_usd"], 0);
    let requests = server.model_requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.status == Some(code)));
    assert_eq!(scratch.read("hello.txt"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_surfaces_429_after_its_retries() {
    claude_surfaces_status(429, "rate_limit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_surfaces_500_after_its_retries() {
    claude_surfaces_status(500, "server_error").await;
}

/// Codex prints an `error` event and `turn.failed`, and exits 1.
async fn codex_surfaces_status(code: u16, provider_extra: &str, message: &str) {
    let Some(bin) = live::require(Cli::Codex) else {
        return;
    };
    let scratch = Scratch::new();
    let server = server(Script::new().fallback(Step::status(code, None))).await;
    let run = live::run(live::codex(
        &bin,
        &server,
        &scratch,
        "create hello.txt",
        provider_extra,
    ))
    .await;

    assert_eq!(run.code, Some(1), "{run}");
    let error = run.one_event("error", None);
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains(message)),
        "{run}"
    );
    let failed = run.one_event("turn.failed", None);
    assert_eq!(failed["error"]["message"], error["message"]);
    assert!(run.events_of("turn.completed", None).is_empty());
    assert_eq!(server.model_requests().len(), 1, "not retried\n{run}");
    assert_eq!(scratch.read("hello.txt"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_does_not_retry_a_429_without_retry_after() {
    codex_surfaces_status(429, "", "429 Too Many Requests").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_surfaces_500_with_provider_retries_off() {
    codex_surfaces_status(
        500,
        "request_max_retries=0, stream_max_retries=0",
        "high demand",
    )
    .await;
}

/// Runs the CLI against a model that never answers: once its request is in, the CLI must
/// print nothing more and keep waiting; then it is killed.
async fn goes_silent_when_the_model_hangs(cli: Cli, step: Step) {
    let Some(bin) = live::require(cli) else {
        return;
    };
    let scratch = Scratch::new();
    let server = server(Script::new().fallback(step)).await;
    let command = match cli {
        Cli::Claude => live::claude(&bin, &server, &scratch, "create hello.txt"),
        Cli::Codex => live::codex(&bin, &server, &scratch, "create hello.txt", ""),
    };
    let mut child = Running::spawn(command);
    assert!(
        server
            .wait_for_model_requests(1, Duration::from_secs(20))
            .await,
        "the CLI never asked the model\n{}",
        child.kill().await
    );
    // What it printed before the request (init / thread.started) may still be in flight.
    while child.next_line(Duration::from_millis(500)).await.is_some() {}
    let late = child.next_line(SILENCE).await;
    let still_running = child.is_running();
    let run = child.kill().await;
    assert_eq!(late, None, "output while the model hung\n{run}");
    assert!(still_running, "the CLI gave up on a hanging model\n{run}");
    assert_eq!(server.model_requests().len(), 1, "{run}");
    match cli {
        Cli::Claude => assert_eq!(run.events_of("result", None).len(), 0, "{run}"),
        Cli::Codex => assert_eq!(run.events_of("turn.completed", None).len(), 0, "{run}"),
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_goes_silent_when_the_model_hangs() {
    goes_silent_when_the_model_hangs(Cli::Claude, Step::Hang).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_goes_silent_when_the_model_hangs() {
    goes_silent_when_the_model_hangs(Cli::Codex, Step::Hang).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_goes_silent_when_the_stream_stalls() {
    goes_silent_when_the_model_hangs(Cli::Claude, Step::Stall).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_goes_silent_when_the_stream_stalls() {
    goes_silent_when_the_model_hangs(Cli::Codex, Step::Stall).await;
}
