//! The OpenAI Responses API as Codex 0.169.0 uses it (`POST /v1/responses`, `stream: true`),
//! mirroring `fixtures/captures/sse/codex-edit.response{1,2}.sse`. Codex acts on
//! `response.output_item.done` items and takes usage from `response.completed`.

use serde_json::{Value, json};

use super::sse::{SseEvent, chunk_text, split_text};
use super::{ReplyContext, Step, ToolResult, filler_text};

const TEXT_CHUNK: usize = 1024;
const HUGE_CHUNK: usize = 16 * 1024;

/// One output item, with what its streaming events need.
enum Item {
    Reasoning {
        id: String,
        summary: String,
    },
    Message {
        id: String,
        text: String,
    },
    /// A freeform tool such as Codex's `apply_patch` (`type: "custom"`).
    CustomCall {
        id: String,
        call_id: String,
        name: String,
        input: String,
    },
    /// A JSON-argument tool such as `exec_command` (`type: "function"`).
    FunctionCall {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

impl Item {
    /// The item as `output_item.added` shows it (still empty) or as `output_item.done` and
    /// `response.completed` show it.
    fn to_json(&self, done: bool) -> Value {
        let status = if done { "completed" } else { "in_progress" };
        match self {
            Item::Reasoning { id, summary } => {
                let summary = if done {
                    json!([{"type": "summary_text", "text": summary}])
                } else {
                    json!([])
                };
                json!({"type": "reasoning", "id": id, "summary": summary, "content": null, "encrypted_content": null})
            }
            Item::Message { id, text } => {
                let content = if done {
                    json!([{"type": "output_text", "text": text, "annotations": []}])
                } else {
                    json!([])
                };
                json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": content})
            }
            Item::CustomCall {
                id,
                call_id,
                name,
                input,
            } => {
                let input = if done { input.as_str() } else { "" };
                json!({"type": "custom_tool_call", "id": id, "status": status, "call_id": call_id, "name": name, "input": input})
            }
            Item::FunctionCall {
                id,
                call_id,
                name,
                arguments,
            } => {
                let arguments = if done { arguments.as_str() } else { "" };
                json!({"type": "function_call", "id": id, "status": status, "call_id": call_id, "name": name, "arguments": arguments})
            }
        }
    }

    /// The events between `output_item.added` and `output_item.done`.
    fn body_events(&self, output_index: usize, chunk: usize) -> Vec<Value> {
        let mut events = Vec::new();
        match self {
            Item::Reasoning { id, summary } => {
                let base = json!({"item_id": id, "output_index": output_index, "summary_index": 0});
                events.push(with(
                    &base,
                    json!({"type": "response.reasoning_summary_part.added", "part": {"type": "summary_text", "text": ""}}),
                ));
                for piece in chunk_text(summary, chunk) {
                    events.push(with(
                        &base,
                        json!({"type": "response.reasoning_summary_text.delta", "delta": piece}),
                    ));
                }
                events.push(with(
                    &base,
                    json!({"type": "response.reasoning_summary_text.done", "text": summary}),
                ));
            }
            Item::Message { id, text } => {
                let base = json!({"item_id": id, "output_index": output_index, "content_index": 0});
                events.push(with(
                    &base,
                    json!({"type": "response.content_part.added", "part": {"type": "output_text", "text": "", "annotations": []}}),
                ));
                for piece in split_text(text, chunk) {
                    events.push(with(
                        &base,
                        json!({"type": "response.output_text.delta", "delta": piece}),
                    ));
                }
                events.push(with(
                    &base,
                    json!({"type": "response.output_text.done", "text": text}),
                ));
                events.push(with(
                    &base,
                    json!({"type": "response.content_part.done", "part": {"type": "output_text", "text": text, "annotations": []}}),
                ));
            }
            Item::CustomCall { id, input, .. } => {
                let base = json!({"item_id": id, "output_index": output_index});
                for piece in chunk_text(input, chunk) {
                    events.push(with(
                        &base,
                        json!({"type": "response.custom_tool_call_input.delta", "delta": piece}),
                    ));
                }
                events.push(with(
                    &base,
                    json!({"type": "response.custom_tool_call_input.done", "input": input}),
                ));
            }
            Item::FunctionCall { id, arguments, .. } => {
                let base = json!({"item_id": id, "output_index": output_index});
                for piece in chunk_text(arguments, chunk) {
                    events.push(with(
                        &base,
                        json!({"type": "response.function_call_arguments.delta", "delta": piece}),
                    ));
                }
                events.push(with(
                    &base,
                    json!({"type": "response.function_call_arguments.done", "arguments": arguments}),
                ));
            }
        }
        events
    }
}

/// `extra`'s fields after `base`'s, with `type` first as the API orders them.
fn with(base: &Value, extra: Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(kind) = extra.get("type") {
        out.insert("type".into(), kind.clone());
    }
    for source in [base, &extra] {
        if let Some(map) = source.as_object() {
            for (key, value) in map {
                if key != "type" {
                    out.insert(key.clone(), value.clone());
                }
            }
        }
    }
    Value::Object(out)
}

fn item_type(item: &Value) -> Option<&str> {
    item.get("type").and_then(Value::as_str)
}

/// Whether the newest input item (reasoning aside) is the output of a tool call.
pub(crate) fn latest_is_tool_result(body: &Value) -> bool {
    body.get("input")
        .and_then(Value::as_array)
        .and_then(|items| {
            items
                .iter()
                .rev()
                .find(|item| item_type(item) != Some("reasoning"))
        })
        .and_then(item_type)
        .is_some_and(|kind| kind.ends_with("_call_output"))
}

/// The `type` of the offered tool with that name (`custom`, `function`, …).
pub(crate) fn offered_tool_type<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get("tools")?
        .as_array()?
        .iter()
        .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
        .map(|t| item_type(t).unwrap_or("function"))
}

/// Every `*_call_output` item in the history, oldest first.
pub(crate) fn tool_results(body: &Value) -> Vec<ToolResult> {
    let items = body.get("input").and_then(Value::as_array);
    items
        .into_iter()
        .flatten()
        .filter(|item| item_type(item).is_some_and(|kind| kind.ends_with("_call_output")))
        .map(|item| ToolResult {
            call_id: item
                .get("call_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            output: output_text(item.get("output")),
            is_error: false,
        })
        .collect()
}

/// Tool output is a string, or a list of content items whose texts are joined.
fn output_text(output: Option<&Value>) -> String {
    match output {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        Some(Value::Object(map)) => map
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

/// The captures' behaviour: after a tool result say `done`; otherwise create `hello.txt`
/// with `apply_patch` when offered; otherwise say `ok`.
pub(crate) fn auto(body: &Value) -> Step {
    if latest_is_tool_result(body) {
        Step::Text("done".into())
    } else if offered_tool_type(body, "apply_patch").is_some() {
        Step::WriteFile {
            path: "hello.txt".into(),
            content: "hi".into(),
        }
    } else {
        Step::Text("ok".into())
    }
}

/// A patch in Codex's `apply_patch` grammar that adds `path` with `content`. The grammar
/// needs at least one `+` line, and every line ends with a newline, so the file Codex writes
/// always ends with one.
pub fn add_file_patch(path: &str, content: &str) -> String {
    let mut patch = format!("*** Begin Patch\n*** Add File: {path}\n");
    if content.is_empty() {
        patch.push_str("+\n");
    }
    for line in content.lines() {
        patch.push('+');
        patch.push_str(line);
        patch.push('\n');
    }
    patch.push_str("*** End Patch\n");
    patch
}

/// The shell call for the shell tool the request offers. Codex 0.169.0 with `gpt-5.5` offers
/// `exec_command` (`{"cmd": …}`); other models get `shell_command` (`{"command": …}`) or
/// `shell` (`{"command": [argv]}`).
fn shell_call(body: &Value, command: &str) -> (String, Value) {
    if offered_tool_type(body, "exec_command").is_some() {
        ("exec_command".into(), json!({"cmd": command}))
    } else if offered_tool_type(body, "shell_command").is_some() {
        ("shell_command".into(), json!({"command": command}))
    } else if offered_tool_type(body, "shell").is_some() {
        ("shell".into(), json!({"command": ["bash", "-lc", command]}))
    } else {
        ("exec_command".into(), json!({"cmd": command}))
    }
}

fn items(step: &Step, body: &Value, ctx: &ReplyContext) -> Option<Vec<Item>> {
    let reasoning = |summary: String| Item::Reasoning {
        id: ctx.ids.next("rs"),
        summary,
    };
    match step {
        Step::Auto => items(&auto(body), body, ctx),
        Step::Text(text) => Some(vec![Item::Message {
            id: ctx.ids.next("msg"),
            text: text.clone(),
        }]),
        Step::Huge { bytes } => Some(vec![Item::Message {
            id: ctx.ids.next("msg"),
            text: filler_text(*bytes),
        }]),
        Step::WriteFile { path, content } => {
            let patch = add_file_patch(path, content);
            let call = if offered_tool_type(body, "apply_patch") == Some("function") {
                // Older tool sets offer apply_patch as a JSON function taking `input`.
                Item::FunctionCall {
                    id: ctx.ids.next("fc"),
                    call_id: ctx.ids.next("call"),
                    name: "apply_patch".into(),
                    arguments: json!({"input": patch}).to_string(),
                }
            } else {
                Item::CustomCall {
                    id: ctx.ids.next("ctc"),
                    call_id: ctx.ids.next("call"),
                    name: "apply_patch".into(),
                    input: patch,
                }
            };
            Some(vec![
                reasoning(format!("**Planning** I will write {path}.")),
                call,
            ])
        }
        Step::Shell { command } => {
            let (name, arguments) = shell_call(body, command);
            Some(vec![
                reasoning("**Planning** I will run a command.".into()),
                Item::FunctionCall {
                    id: ctx.ids.next("fc"),
                    call_id: ctx.ids.next("call"),
                    name,
                    arguments: arguments.to_string(),
                },
            ])
        }
        Step::Status { .. } | Step::Hang | Step::Stall => None,
    }
}

fn usage(ctx: &ReplyContext) -> Value {
    let u = &ctx.usage;
    json!({
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_input_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_output_tokens},
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

fn response(ctx: &ReplyContext, status: &str, output: Vec<Value>, usage: Option<Value>) -> Value {
    let mut response = json!({
        "id": ctx.message_id,
        "object": "response",
        "created_at": ctx.created_at,
        "model": ctx.model,
        "status": status,
        "output": output,
    });
    if let (Some(usage), Some(map)) = (usage, response.as_object_mut()) {
        map.insert("usage".into(), usage);
    }
    response
}

fn opening(ctx: &ReplyContext) -> Vec<Value> {
    vec![
        json!({"type": "response.created", "response": response(ctx, "in_progress", vec![], None)}),
        json!({"type": "response.in_progress", "response": response(ctx, "in_progress", vec![], None)}),
    ]
}

fn numbered(events: Vec<Value>) -> Vec<SseEvent> {
    events
        .into_iter()
        .enumerate()
        .map(|(n, mut event)| {
            if let Some(map) = event.as_object_mut() {
                map.insert("sequence_number".into(), json!(n));
            }
            SseEvent::typed(event)
        })
        .collect()
}

/// What a stalled stream sends before going silent: the opening events only.
pub(crate) fn stall_prefix(ctx: &ReplyContext) -> Vec<SseEvent> {
    numbered(opening(ctx))
}

/// The streamed answer for `step`, or `None` if the step does not answer with a response.
pub(crate) fn stream(step: &Step, body: &Value, ctx: &ReplyContext) -> Option<Vec<SseEvent>> {
    let items = items(step, body, ctx)?;
    let chunk = if matches!(step, Step::Huge { .. }) {
        HUGE_CHUNK
    } else {
        TEXT_CHUNK
    };
    let mut events = opening(ctx);
    for (index, item) in items.iter().enumerate() {
        events.push(json!({"type": "response.output_item.added", "output_index": index, "item": item.to_json(false)}));
        events.extend(item.body_events(index, chunk));
        events.push(json!({"type": "response.output_item.done", "output_index": index, "item": item.to_json(true)}));
    }
    let output = items.iter().map(|item| item.to_json(true)).collect();
    events.push(json!({"type": "response.completed", "response": response(ctx, "completed", output, Some(usage(ctx)))}));
    Some(numbered(events))
}

/// The whole response for a `stream: false` request.
pub(crate) fn response_json(step: &Step, body: &Value, ctx: &ReplyContext) -> Option<Value> {
    let items = items(step, body, ctx)?;
    let output = items.iter().map(|item| item.to_json(true)).collect();
    Some(response(ctx, "completed", output, Some(usage(ctx))))
}

/// The error JSON the API answers a failed request with. Codex reports the `x-request-id`
/// header, not the body, so the body stays the documented shape.
pub(crate) fn error_body(code: u16) -> Value {
    let (kind, error_code, message) = match code {
        400 => (
            "invalid_request_error",
            Value::Null,
            "Invalid request (mock)",
        ),
        401 => (
            "invalid_request_error",
            json!("invalid_api_key"),
            "Incorrect API key provided (mock)",
        ),
        403 => ("invalid_request_error", Value::Null, "Forbidden (mock)"),
        404 => ("invalid_request_error", Value::Null, "Not found (mock)"),
        429 => (
            "requests",
            json!("rate_limit_exceeded"),
            "Rate limit reached for requests (mock)",
        ),
        500..=599 => (
            "server_error",
            Value::Null,
            "The server had an error while processing your request (mock)",
        ),
        _ => (
            "invalid_request_error",
            Value::Null,
            "Request failed (mock)",
        ),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": error_code}})
}

/// `GET /v1/models` in the OpenAI list shape.
pub(crate) fn models() -> Value {
    let data: Vec<Value> = ["gpt-5.5", "gpt-5-codex"]
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 1_767_225_600, "owned_by": "openai"}))
        .collect();
    json!({"object": "list", "data": data})
}
