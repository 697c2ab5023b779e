//! The probe's model server: a loopback HTTP server that answers the Anthropic Messages API
//! (Claude Code) and the `OpenAI` Responses API (Codex) with one fixed session, so a configured
//! CLI can be run for real without a model.
//!
//! The session is read off each request's history rather than from a queue, so a side request
//! a CLI makes (a title, a quota check) cannot shift it: no tool result yet → write
//! [`PROBE_FILE`]; one → run the shell command; two or more → a final text. Every answer reports
//! [`USAGE`]. The wire shapes follow the captures in `fixtures/captures/sse/` (the test kit's
//! mock server speaks the same, with far more options; it is a dev-dependency and stays out
//! of the shipped binary).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The file the scripted session creates, relative to the repository.
pub(crate) const PROBE_FILE: &str = "oxi-probe.txt";
/// What it writes there (Codex's patch ends every line with a newline).
pub(crate) const PROBE_CONTENT: &str = "written by the oxi probe\n";
/// What the scripted shell command prints; the probe looks for it in the command's output.
pub(crate) const SHELL_MARKER: &str = "oxi-probe-shell-ok";
/// The final answer.
pub(crate) const FINAL_TEXT: &str = "Probe done.\nOXI_RESULT {\"status\":\"done\"}";

/// Token counts every answer reports: uncached input, cache reads, cache writes, output,
/// reasoning (part of output).
pub(crate) struct ProbeUsage {
    pub(crate) input: u64,
    pub(crate) cached: u64,
    pub(crate) cache_write: u64,
    pub(crate) output: u64,
    pub(crate) reasoning: u64,
}

pub(crate) const USAGE: ProbeUsage = ProbeUsage {
    input: 1200,
    cached: 200,
    cache_write: 100,
    output: 50,
    reasoning: 20,
};

/// The running server; dropping it stops it.
pub(crate) struct ProbeServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    shared: Arc<Shared>,
}

struct Shared {
    ids: AtomicU64,
    model_requests: AtomicU64,
}

impl Shared {
    fn id(&self, prefix: &str) -> String {
        format!(
            "{prefix}_probe{:08}",
            self.ids.fetch_add(1, Ordering::Relaxed)
        )
    }
}

impl ProbeServer {
    /// Binds `127.0.0.1` on a free port and serves on the current runtime.
    pub(crate) async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            ids: AtomicU64::new(0),
            model_requests: AtomicU64::new(0),
        });
        tokio::spawn(accept(listener, stopped, Arc::clone(&shared)));
        Ok(Self { addr, stop, shared })
    }

    /// Claude Code's `ANTHROPIC_BASE_URL`.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A Codex model provider's `base_url` (Codex appends `/responses`).
    pub(crate) fn openai_base_url(&self) -> String {
        format!("{}/v1", self.base_url())
    }

    /// How many model requests were answered.
    pub(crate) fn model_requests(&self) -> u64 {
        self.shared.model_requests.load(Ordering::Relaxed)
    }
}

impl Drop for ProbeServer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

async fn accept(listener: TcpListener, mut stopped: watch::Receiver<bool>, shared: Arc<Shared>) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        let shared = Arc::clone(&shared);
        let mut stop = stopped.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let shared = Arc::clone(&shared);
                async move { handle(&shared, request).await }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = stop.wait_for(|stop| *stop) => {}
            }
        });
    }
}

async fn handle(
    shared: &Shared,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().trim_end_matches('/').to_owned();
    let body = match request.into_body().collect().await {
        Ok(collected) => serde_json::from_slice(&collected.to_bytes()).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let post = method == Method::POST;
    let response = if post && path.ends_with("/messages/count_tokens") {
        json_response(StatusCode::OK, &json!({"input_tokens": USAGE.input}))
    } else if post && path.ends_with("/messages") {
        shared.model_requests.fetch_add(1, Ordering::Relaxed);
        answer(&body, &anthropic::render(shared, &body))
    } else if post && path.ends_with("/responses") {
        shared.model_requests.fetch_add(1, Ordering::Relaxed);
        answer(&body, &openai::render(shared, &body))
    } else if method == Method::GET && path.ends_with("/models") {
        json_response(StatusCode::OK, &json!({"object": "list", "data": []}))
    } else if method == Method::GET || method == Method::HEAD {
        json_response(StatusCode::OK, &json!({}))
    } else {
        json_response(
            StatusCode::NOT_FOUND,
            &json!({"type": "error", "error": {"type": "not_found_error", "message": "not found (oxi probe)"}}),
        )
    };
    Ok(response)
}

/// One answer, as a stream of server-sent events or as one JSON body (whichever the request
/// asked for).
struct Rendered {
    events: Vec<Value>,
    whole: Value,
}

fn answer(body: &Value, rendered: &Rendered) -> Response<Full<Bytes>> {
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        return json_response(StatusCode::OK, &rendered.whole);
    }
    let mut text = String::new();
    for event in &rendered.events {
        let name = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        let _ = write!(text, "event: {name}\ndata: {event}\n\n");
    }
    response(StatusCode::OK, "text/event-stream; charset=utf-8", text)
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    response(status, "application/json", body.to_string())
}

fn response(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// Where the session stands, read off the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Write,
    Shell,
    Finish,
}

impl Stage {
    fn after(tool_results: usize, tools_offered: bool) -> Self {
        match tool_results {
            _ if !tools_offered => Stage::Finish,
            0 => Stage::Write,
            1 => Stage::Shell,
            _ => Stage::Finish,
        }
    }
}

fn shell_command() -> String {
    format!("echo {SHELL_MARKER}")
}

mod anthropic {
    use serde_json::{Value, json};

    use super::{
        FINAL_TEXT, PROBE_CONTENT, PROBE_FILE, Rendered, Shared, Stage, USAGE, shell_command,
    };

    fn tool_results(body: &Value) -> usize {
        let messages = body.get("messages").and_then(Value::as_array);
        messages
            .into_iter()
            .flatten()
            .filter_map(|m| m.get("content").and_then(Value::as_array))
            .flatten()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            .count()
    }

    /// Claude's `Write` takes an absolute path; Claude states its directory in the prompt.
    fn working_directory(body: &Value) -> Option<String> {
        const MARKER: &str = "Primary working directory: ";
        fn search(value: &Value) -> Option<String> {
            match value {
                Value::String(text) => {
                    let start = text.find(MARKER)? + MARKER.len();
                    let line = text[start..].lines().next()?.trim();
                    (!line.is_empty()).then(|| line.to_owned())
                }
                Value::Array(items) => items.iter().find_map(search),
                Value::Object(map) => map.values().find_map(search),
                _ => None,
            }
        }
        ["system", "messages"]
            .iter()
            .find_map(|key| body.get(*key).and_then(search))
    }

    fn usage(output: u64) -> Value {
        json!({
            "input_tokens": USAGE.input,
            "cache_creation_input_tokens": USAGE.cache_write,
            "cache_read_input_tokens": USAGE.cached,
            "output_tokens": output,
        })
    }

    pub(super) fn render(shared: &Shared, body: &Value) -> Rendered {
        let offered = body
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty());
        let stage = Stage::after(tool_results(body), offered);
        let (text, tool, stop) = match stage {
            Stage::Write => {
                let dir = working_directory(body).unwrap_or_else(|| ".".to_owned());
                let path = format!("{}/{PROBE_FILE}", dir.trim_end_matches('/'));
                let input = json!({"file_path": path, "content": PROBE_CONTENT});
                (
                    "I'll write the probe file.",
                    Some(("Write", input)),
                    "tool_use",
                )
            }
            Stage::Shell => {
                let input = json!({"command": shell_command(), "description": "oxi probe"});
                ("I'll run a command.", Some(("Bash", input)), "tool_use")
            }
            Stage::Finish => (FINAL_TEXT, None, "end_turn"),
        };
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("claude-sonnet-4-5");
        let id = shared.id("msg");
        let mut content = vec![json!({"type": "text", "text": text})];
        let mut events = vec![
            json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage(1)}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
            json!({"type": "content_block_stop", "index": 0}),
        ];
        if let Some((name, input)) = tool {
            let tool_id = shared.id("toolu");
            events.push(json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}}}));
            events.push(json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": input.to_string()}}));
            events.push(json!({"type": "content_block_stop", "index": 1}));
            content.push(json!({"type": "tool_use", "id": tool_id, "name": name, "input": input}));
        }
        events.push(json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": usage(USAGE.output)}));
        events.push(json!({"type": "message_stop"}));
        let whole = json!({"id": id, "type": "message", "role": "assistant", "model": model, "content": content, "stop_reason": stop, "stop_sequence": null, "usage": usage(USAGE.output)});
        Rendered { events, whole }
    }
}

mod openai {
    use serde_json::{Value, json};

    use super::{
        FINAL_TEXT, PROBE_CONTENT, PROBE_FILE, Rendered, Shared, Stage, USAGE, shell_command,
    };

    fn item_type(item: &Value) -> Option<&str> {
        item.get("type").and_then(Value::as_str)
    }

    fn tool_results(body: &Value) -> usize {
        body.get("input")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|i| item_type(i).is_some_and(|t| t.ends_with("_call_output")))
            .count()
    }

    fn offered<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
        body.get("tools")?
            .as_array()?
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
            .map(|t| item_type(t).unwrap_or("function"))
    }

    fn patch() -> String {
        let mut patch = format!("*** Begin Patch\n*** Add File: {PROBE_FILE}\n");
        for line in PROBE_CONTENT.lines() {
            patch.push('+');
            patch.push_str(line);
            patch.push('\n');
        }
        patch.push_str("*** End Patch\n");
        patch
    }

    /// The output item for this stage: a patch, a shell call in the shape of the shell tool
    /// the request offers, or the final message.
    fn item(shared: &Shared, body: &Value, stage: Stage) -> Value {
        let call_id = shared.id("call");
        match stage {
            Stage::Write if offered(body, "apply_patch") == Some("function") => {
                json!({"type": "function_call", "id": shared.id("fc"), "status": "completed", "call_id": call_id, "name": "apply_patch", "arguments": json!({"input": patch()}).to_string()})
            }
            Stage::Write => {
                json!({"type": "custom_tool_call", "id": shared.id("ctc"), "status": "completed", "call_id": call_id, "name": "apply_patch", "input": patch()})
            }
            Stage::Shell => {
                let command = shell_command();
                let (name, arguments) = if offered(body, "exec_command").is_some() {
                    ("exec_command", json!({"cmd": command}))
                } else if offered(body, "shell_command").is_some() {
                    ("shell_command", json!({"command": command}))
                } else if offered(body, "shell").is_some() {
                    ("shell", json!({"command": ["bash", "-lc", command]}))
                } else {
                    ("exec_command", json!({"cmd": command}))
                };
                json!({"type": "function_call", "id": shared.id("fc"), "status": "completed", "call_id": call_id, "name": name, "arguments": arguments.to_string()})
            }
            Stage::Finish => {
                json!({"type": "message", "id": shared.id("msg"), "status": "completed", "role": "assistant", "content": [{"type": "output_text", "text": FINAL_TEXT, "annotations": []}]})
            }
        }
    }

    pub(super) fn render(shared: &Shared, body: &Value) -> Rendered {
        let offered_any = body
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty());
        let stage = Stage::after(tool_results(body), offered_any);
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("gpt-5.5");
        let id = shared.id("resp");
        let item = item(shared, body, stage);
        let usage = json!({
            "input_tokens": USAGE.input,
            "input_tokens_details": {"cached_tokens": USAGE.cached},
            "output_tokens": USAGE.output,
            "output_tokens_details": {"reasoning_tokens": USAGE.reasoning},
            "total_tokens": USAGE.input + USAGE.output,
        });
        let response = |status: &str, output: Value, usage: Option<&Value>| {
            let mut r = json!({"id": id, "object": "response", "created_at": 0, "model": model, "status": status, "output": output});
            if let (Some(usage), Some(map)) = (usage, r.as_object_mut()) {
                map.insert("usage".into(), usage.clone());
            }
            r
        };
        let whole = response("completed", json!([item]), Some(&usage));
        let mut events = vec![
            json!({"type": "response.created", "response": response("in_progress", json!([]), None)}),
            json!({"type": "response.in_progress", "response": response("in_progress", json!([]), None)}),
            json!({"type": "response.output_item.added", "output_index": 0, "item": item}),
            json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
            json!({"type": "response.completed", "response": whole}),
        ];
        for (n, event) in events.iter_mut().enumerate() {
            if let Some(map) = event.as_object_mut() {
                map.insert("sequence_number".into(), json!(n));
            }
        }
        Rendered { events, whole }
    }
}
