//! The mock's answers against the recorded captures, and its HTTP behaviour through a raw
//! client (the crate has no HTTP client dependency).

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::sse::{self, SseEvent};
use super::*;

fn capture(name: &str) -> Vec<SseEvent> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/captures/sse")
        .join(name);
    sse::parse(&std::fs::read_to_string(&path).unwrap())
}

/// The structure of an event with ids, texts and timestamps blanked, so generated events can
/// be compared with captured ones field for field.
fn shape(value: &Value) -> Value {
    match value {
        Value::String(_) => json!(""),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let value = if key == "created_at" {
                        json!(0)
                    } else {
                        shape(value)
                    };
                    (key.clone(), value)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn assert_same_shape(generated: &[SseEvent], captured: &[SseEvent]) {
    let names = |events: &[SseEvent]| events.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(generated), names(captured));
    for (generated, captured) in generated.iter().zip(captured) {
        assert_eq!(
            shape(&generated.data),
            shape(&captured.data),
            "event {}:\n generated {}\n captured  {}",
            generated.name,
            generated.data,
            captured.data
        );
    }
}

fn ctx(model: &str) -> ReplyContext {
    let ids = Arc::new(Ids::new());
    ReplyContext {
        message_id: ids.next("msg"),
        ids,
        model: model.into(),
        usage: Usage::default(),
        created_at: 1_795_254_905,
    }
}

fn texts(events: &[SseEvent], delta_field: &str) -> String {
    events
        .iter()
        .filter_map(|e| {
            e.data
                .get("delta")
                .and_then(|d| d.get(delta_field).or(Some(d)))
                .and_then(Value::as_str)
        })
        .collect()
}

fn claude_request(messages: Value) -> Value {
    json!({
        "model": "claude-opus-5-5",
        "stream": true,
        "system": [{"type": "text", "text": "You are a Claude agent."}],
        "tools": [{"name": "Bash"}, {"name": "Write"}],
        "messages": messages,
    })
}

fn claude_first_turn() -> Value {
    claude_request(json!([
        {"role": "user", "content": [{"type": "text", "text": "create hello.txt"}]},
        {"role": "system", "content": [{"type": "text", "text":
            "# Environment\n - Primary working directory: /home/dev/runs/claude-edit/repo\n - Is a git repository: true\n"}]},
    ]))
}

fn claude_second_turn() -> Value {
    claude_request(json!([
        {"role": "user", "content": [{"type": "text", "text": "create hello.txt"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Write", "input": {}}]},
        {"role": "user", "content": [{"tool_use_id": "toolu_1", "type": "tool_result", "content": "File created successfully"}]},
    ]))
}

#[test]
fn anthropic_auto_answers_like_the_capture() {
    let first = claude_first_turn();
    assert_eq!(anthropic::auto(&first), Step::write_file("hello.txt", "hi"));
    let events = anthropic::stream(&Step::Auto, &first, &ctx("claude-opus-5-5")).unwrap();
    assert_same_shape(&events, &capture("claude-edit.response1.sse"));
    let tool_json = texts(&events, "partial_json");
    assert_eq!(
        serde_json::from_str::<Value>(&tool_json).unwrap(),
        json!({"file_path": "/home/dev/runs/claude-edit/repo/hello.txt", "content": "hi"})
    );

    let second = claude_second_turn();
    assert!(anthropic::latest_is_tool_result(&second));
    let events = anthropic::stream(&Step::Auto, &second, &ctx("claude-opus-5-5")).unwrap();
    assert_same_shape(&events, &capture("claude-edit.response2.sse"));
    assert_eq!(texts(&events, "text"), "done");
    let results = anthropic::tool_results(&second);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].call_id, "toolu_1");
    assert_eq!(results[0].output, "File created successfully");
}

#[test]
fn anthropic_shell_is_a_bash_tool_use() {
    let events = anthropic::stream(
        &Step::shell("echo hi > out.txt"),
        &claude_first_turn(),
        &ctx("m"),
    )
    .unwrap();
    let start = events
        .iter()
        .find(|e| e.data["content_block"]["type"] == "tool_use")
        .unwrap();
    assert_eq!(start.data["content_block"]["name"], "Bash");
    let input: Value = serde_json::from_str(&texts(&events, "partial_json")).unwrap();
    assert_eq!(input["command"], "echo hi > out.txt");
    let stop = events.iter().find(|e| e.name == "message_delta").unwrap();
    assert_eq!(stop.data["delta"]["stop_reason"], "tool_use");
}

fn codex_request(input: Value) -> Value {
    json!({
        "model": "gpt-5.5",
        "stream": true,
        "tools": [
            {"type": "function", "name": "exec_command", "parameters": {}},
            {"type": "custom", "name": "apply_patch", "format": {}},
            {"type": "web_search"},
        ],
        "input": input,
    })
}

#[test]
fn openai_auto_answers_like_the_capture() {
    let first = codex_request(json!([
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "create hello.txt"}]},
    ]));
    let events = openai::stream(&Step::Auto, &first, &ctx("gpt-5.5")).unwrap();
    assert_same_shape(&events, &capture("codex-edit.response1.sse"));
    let done = events
        .iter()
        .find(|e| e.name == "response.custom_tool_call_input.done")
        .unwrap();
    assert_eq!(
        done.data["input"],
        "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch\n"
    );

    let second = codex_request(json!([
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "create hello.txt"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "custom_tool_call", "call_id": "call_1", "name": "apply_patch", "input": "…"},
        {"type": "custom_tool_call_output", "call_id": "call_1", "output": "Exit code: 0\nSuccess."},
    ]));
    assert!(openai::latest_is_tool_result(&second));
    let events = openai::stream(&Step::Auto, &second, &ctx("gpt-5.5")).unwrap();
    assert_same_shape(&events, &capture("codex-edit.response2.sse"));
    assert_eq!(texts(&events, "delta"), "done");
    assert_eq!(
        openai::tool_results(&second),
        vec![ToolResult {
            call_id: "call_1".into(),
            output: "Exit code: 0\nSuccess.".into(),
            is_error: false,
        }]
    );
}

#[test]
fn openai_shell_uses_the_offered_shell_tool() {
    let body = codex_request(json!([]));
    let events = openai::stream(&Step::shell("ls -la"), &body, &ctx("gpt-5.5")).unwrap();
    let done = events
        .iter()
        .filter(|e| e.name == "response.output_item.done")
        .find(|e| e.data["item"]["type"] == "function_call")
        .unwrap();
    assert_eq!(done.data["item"]["name"], "exec_command");
    let args: Value =
        serde_json::from_str(done.data["item"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"cmd": "ls -la"}));
    let seq: Vec<u64> = events
        .iter()
        .map(|e| e.data["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(seq, (0..events.len() as u64).collect::<Vec<_>>());

    let older = json!({"tools": [{"type": "function", "name": "shell"}], "input": []});
    let events = openai::stream(&Step::shell("ls"), &older, &ctx("m")).unwrap();
    let args = events
        .iter()
        .find(|e| e.name == "response.function_call_arguments.done")
        .unwrap();
    assert_eq!(args.data["arguments"], r#"{"command":["bash","-lc","ls"]}"#);
}

#[test]
fn usage_is_reported_in_each_apis_fields() {
    let usage = Usage {
        input_tokens: 7,
        cached_input_tokens: 3,
        cache_creation_input_tokens: 2,
        output_tokens: 5,
        reasoning_output_tokens: 1,
    };
    let mut c = ctx("m");
    c.usage = usage;
    let events = anthropic::stream(&Step::text("x"), &json!({}), &c).unwrap();
    let delta = events.iter().find(|e| e.name == "message_delta").unwrap();
    assert_eq!(
        delta.data["usage"],
        json!({"input_tokens": 7, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 2, "output_tokens": 5})
    );
    let events = openai::stream(&Step::text("x"), &json!({}), &c).unwrap();
    let completed = events.last().unwrap();
    assert_eq!(completed.name, "response.completed");
    assert_eq!(
        completed.data["response"]["usage"],
        json!({"input_tokens": 7, "input_tokens_details": {"cached_tokens": 3}, "output_tokens": 5,
               "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 12})
    );
}

#[test]
fn huge_answers_have_exactly_the_requested_size_in_bounded_deltas() {
    for bytes in [0, 1, 100_000] {
        let events = anthropic::stream(&Step::Huge { bytes }, &json!({}), &ctx("m")).unwrap();
        let deltas: Vec<&str> = events
            .iter()
            .filter_map(|e| e.data["delta"]["text"].as_str())
            .collect();
        assert_eq!(deltas.concat().len(), bytes);
        assert!(deltas.iter().all(|d| d.len() <= 16 * 1024));
        let events = openai::stream(&Step::Huge { bytes }, &json!({}), &ctx("m")).unwrap();
        assert_eq!(texts(&events, "delta").len(), bytes);
    }
}

#[test]
fn add_file_patch_follows_the_grammar() {
    assert_eq!(
        add_file_patch("a/b.txt", "one\ntwo\n"),
        "*** Begin Patch\n*** Add File: a/b.txt\n+one\n+two\n*** End Patch\n"
    );
    assert_eq!(
        add_file_patch("e", ""),
        "*** Begin Patch\n*** Add File: e\n+\n*** End Patch\n"
    );
}

#[test]
fn script_runs_steps_then_fallback_with_usage_overrides() {
    let custom = Usage {
        output_tokens: 1,
        ..Usage::default()
    };
    let mut script = Script::new()
        .then(Step::text("a"))
        .then_with_usage(Step::Hang, custom)
        .fallback(Step::text("z"));
    assert_eq!(script.next(), (Step::text("a"), Usage::default()));
    assert_eq!(script.next(), (Step::Hang, custom));
    assert_eq!(script.next(), (Step::text("z"), Usage::default()));
    assert_eq!(script.next(), (Step::text("z"), Usage::default()));
}

/// What the raw client got back.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn send(
    server: &MockModelServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Reply {
    send_to(server.addr(), method, path, headers, body).await
}

async fn send_to(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Reply {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// Decodes `Transfer-Encoding: chunked`, tolerating a body cut off by shutdown.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

#[tokio::test]
async fn serves_scripted_steps_and_records_requests() {
    let server = MockModelServer::start(
        Script::new()
            .then(Step::text("OXI_RESULT {\"status\":\"done\"}"))
            .then(Step::status(429, Some(3)))
            .then(Step::status(500, None)),
    )
    .await
    .unwrap();
    let anthropic = [
        ("anthropic-version", "2023-06-01"),
        ("x-api-key", "sk-secret"),
    ];

    let reply = send(
        &server,
        "POST",
        "/v1/messages?beta=true",
        &anthropic,
        &claude_first_turn(),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = sse::parse(&reply.body);
    assert_eq!(events.first().unwrap().name, "message_start");
    assert_eq!(events.last().unwrap().name, "message_stop");
    assert_eq!(texts(&events, "text"), "OXI_RESULT {\"status\":\"done\"}");

    let reply = send(
        &server,
        "POST",
        "/v1/messages?beta=true",
        &anthropic,
        &claude_first_turn(),
    )
    .await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("3"));
    let error: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "rate_limit_error");
    assert_eq!(error["request_id"].as_str(), reply.header("request-id"));

    let reply = send(
        &server,
        "POST",
        "/v1/responses",
        &[("authorization", "Bearer sk-x")],
        &codex_request(json!([])),
    )
    .await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.header("retry-after"), None);
    let error: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(error["error"]["type"], "server_error");
    assert!(reply.header("x-request-id").unwrap().starts_with("req_"));

    // The script is used up: Auto, which edits because apply_patch is offered.
    let reply = send(
        &server,
        "POST",
        "/v1/responses",
        &[],
        &codex_request(json!([])),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("*** Add File: hello.txt"));

    // Start-up style requests get sensible answers and consume no step.
    let reply = send(
        &server,
        "POST",
        "/v1/messages/count_tokens",
        &anthropic,
        &json!({"messages": []}),
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&reply.body).unwrap(),
        json!({"input_tokens": 1200})
    );
    let reply = send(&server, "GET", "/v1/models", &anthropic, &Value::Null).await;
    assert_eq!(
        serde_json::from_str::<Value>(&reply.body).unwrap()["data"][0]["type"],
        "model"
    );
    let reply = send(&server, "GET", "/v1/models", &[], &Value::Null).await;
    assert_eq!(
        serde_json::from_str::<Value>(&reply.body).unwrap()["object"],
        "list"
    );
    let reply = send(&server, "GET", "/v1/nope", &[], &Value::Null).await;
    assert_eq!(reply.status, 404);

    let recorded = server.requests();
    assert_eq!(recorded.len(), 8);
    let statuses: Vec<Option<u16>> = recorded.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 429, 500, 200, 200, 200, 200, 404].map(Some));
    assert_eq!(recorded[0].path, "/v1/messages?beta=true");
    assert_eq!(recorded[0].api, Some(Api::Anthropic));
    assert_eq!(recorded[0].header("x-api-key"), Some("<redacted>"));
    assert_eq!(recorded[2].header("authorization"), Some("<redacted>"));
    assert_eq!(recorded[0].body["model"], "claude-opus-5-5");
    assert_eq!(recorded[3].reply, "auto: write_file hello.txt");
    assert_eq!(recorded[0].tool_names(), ["Bash", "Write"]);
    assert_eq!(server.model_requests().len(), 4);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn non_streaming_requests_get_whole_json_answers() {
    let server = MockModelServer::start(Script::steps([Step::text("hello"), Step::text("hi")]))
        .await
        .unwrap();
    let mut body = claude_first_turn();
    body["stream"] = json!(false);
    let reply = send(&server, "POST", "/v1/messages", &[], &body).await;
    let message: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        message["content"],
        json!([{"type": "text", "text": "hello"}])
    );
    assert_eq!(message["usage"]["output_tokens"], 50);
    let mut body = codex_request(json!([]));
    body["stream"] = json!(false);
    let reply = send(&server, "POST", "/v1/responses", &[], &body).await;
    let response: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(response["output"][0]["content"][0]["text"], "hi");
    assert_eq!(response["status"], "completed");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn hang_and_stall_hold_the_request_until_shutdown() {
    let server = MockModelServer::start(Script::steps([Step::Hang, Step::Stall]))
        .await
        .unwrap();
    let addr = server.addr();
    let hung = tokio::spawn(async move {
        send_to(addr, "POST", "/v1/messages", &[], &claude_first_turn()).await
    });
    assert!(
        server
            .wait_for_model_requests(1, Duration::from_secs(5))
            .await
    );
    let stalled = tokio::spawn(async move {
        send_to(
            addr,
            "POST",
            "/v1/responses",
            &[],
            &codex_request(json!([])),
        )
        .await
    });
    assert!(
        server
            .wait_for_model_requests(2, Duration::from_secs(5))
            .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!hung.is_finished() && !stalled.is_finished());
    let recorded = server.requests();
    assert_eq!(recorded[0].status, None);
    assert_eq!(recorded[1].status, Some(200));

    let started = std::time::Instant::now();
    server.shutdown().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let hung = hung.await.unwrap();
    assert_eq!(hung.status, 503);
    let stalled = stalled.await.unwrap();
    let names: Vec<String> = sse::parse(&stalled.body)
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["response.created", "response.in_progress"]);
}

#[tokio::test]
async fn huge_streams_through_http() {
    let server = MockModelServer::start(Script::steps([Step::Huge { bytes: 1_000_000 }]))
        .await
        .unwrap();
    let reply = send(&server, "POST", "/v1/messages", &[], &claude_first_turn()).await;
    let events = sse::parse(&reply.body);
    assert_eq!(texts(&events, "text").len(), 1_000_000);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn chat_completions_answer_whole_with_each_providers_cost() {
    let chat = |stream: bool| json!({"model": "grok-4-fast", "messages": [{"role": "user", "content": "hi"}], "stream": stream});
    let server = MockModelServer::start(
        Script::steps([Step::text("first"), Step::status(429, Some(2))])
            .chat_cost(ChatCost::LitellmHeader("0.00042".into())),
    )
    .await
    .unwrap();
    let reply = send(&server, "POST", "/v1/chat/completions", &[], &chat(false)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-litellm-response-cost"), Some("0.00042"));
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "grok-4-fast");
    assert_eq!(body["choices"][0]["message"]["content"], "first");
    // prompt_tokens counts the cached ones, as OpenAI reports them.
    assert_eq!(body["usage"]["prompt_tokens"], 1400);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 200);
    assert_eq!(body["usage"]["completion_tokens"], 50);
    assert!(body["usage"].get("cost").is_none());
    let reply = send(&server, "POST", "/v1/chat/completions", &[], &chat(false)).await;
    assert_eq!(
        (reply.status, reply.header("retry-after")),
        (429, Some("2"))
    );
    let reply = send(&server, "POST", "/v1/chat/completions", &[], &chat(true)).await;
    assert_eq!(reply.status, 400, "streaming is refused: {}", reply.body);
    let reply = send(&server, "GET", "/health/readiness", &[], &Value::Null).await;
    assert_eq!(
        serde_json::from_str::<Value>(&reply.body).unwrap()["status"],
        "healthy"
    );
    assert_eq!(server.model_requests().len(), 3);
    assert_eq!(server.model_requests()[0].api, Some(Api::ChatCompletions));
    server.shutdown().await.unwrap();

    let server = MockModelServer::start(Script::new().chat_cost(ChatCost::OpenRouterBody(0.0042)))
        .await
        .unwrap();
    let reply = send(
        &server,
        "POST",
        "/api/v1/chat/completions",
        &[],
        &chat(false),
    )
    .await;
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["usage"]["cost"], 0.0042);
    assert_eq!(body["choices"][0]["message"]["content"], "ok");
    assert!(reply.header("x-litellm-response-cost").is_none());
    let reply = send(&server, "GET", "/api/v1/models", &[], &Value::Null).await;
    assert_eq!(
        serde_json::from_str::<Value>(&reply.body).unwrap()["object"],
        "list"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn embeddings_are_deterministic_near_for_shared_words_and_scripted_faults_answer() {
    let server = MockModelServer::start(
        Script::new()
            .embed_dimensions(32)
            .then_embed(EmbedStep::Auto)
            .then_embed(EmbedStep::Dimensions(8))
            .then_embed(EmbedStep::MissingOne)
            .then_embed(EmbedStep::Status(503))
            .then_embed(EmbedStep::Auto),
    )
    .await
    .unwrap();
    let request = json!({"model": "text-embedding-3-small", "input": [
        "supervisor budget caps", "budget caps for a supervisor", "gardening recipes"]});
    let reply = send(&server, "POST", "/v1/embeddings", &[], &request).await;
    assert_eq!(reply.status, 200);
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "text-embedding-3-small");
    assert_eq!(body["usage"]["prompt_tokens"], 10);
    let vectors: Vec<Vec<f64>> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(d["index"], i);
            assert_eq!(d["object"], "embedding");
            serde_json::from_value(d["embedding"].clone()).unwrap()
        })
        .collect();
    assert_eq!(vectors.len(), 3);
    assert!(vectors.iter().all(|v| v.len() == 32));
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    assert!(dot(&vectors[0], &vectors[1]) > dot(&vectors[0], &vectors[2]));
    assert!((dot(&vectors[0], &vectors[0]) - 1.0).abs() < 1e-5);
    let expected: Vec<f64> = embedding_vector("supervisor budget caps", 32)
        .into_iter()
        .map(f64::from)
        .collect();
    assert!(dot(&vectors[0], &expected) > 0.9999);

    let reply = send(&server, "POST", "/v1/embeddings", &[], &request).await;
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 8);
    let reply = send(&server, "POST", "/v1/embeddings", &[], &request).await;
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let reply = send(&server, "POST", "/v1/embeddings", &[], &request).await;
    assert_eq!(reply.status, 503);
    let single = json!({"model": "m", "input": "one text"});
    let reply = send(&server, "POST", "/v1/embeddings", &[], &single).await;
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    let reply = send(&server, "POST", "/v1/embeddings", &[], &json!({"input": 7})).await;
    assert_eq!(reply.status, 400);
    // Embeddings never consume a model step.
    assert!(server.model_requests().is_empty());
    assert_eq!(server.embeddings_requests().len(), 6);
    server.shutdown().await.unwrap();
}
