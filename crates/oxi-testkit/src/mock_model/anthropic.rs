//! The Anthropic Messages API as Claude Code 2.1.328 uses it (`POST /v1/messages?beta=true`,
//! `stream: true`), mirroring `fixtures/captures/sse/claude-edit.response{1,2}.sse`.

use serde_json::{Value, json};

use super::sse::{SseEvent, split_text};
use super::{ReplyContext, Step, ToolResult, filler_text};

/// Deltas of normal answers; a huge answer uses [`HUGE_CHUNK`].
const TEXT_CHUNK: usize = 1024;
const HUGE_CHUNK: usize = 16 * 1024;

/// One content block of an assistant message.
enum Block {
    Text(String),
    ToolUse {
        id: String,
        name: &'static str,
        input: Value,
    },
}

/// Whether the newest turn is the client returning a tool result. Claude Code may append a
/// `role: "system"` message after the user's (seen with `--model haiku` and the environment
/// block), so system messages are skipped.
pub(crate) fn latest_is_tool_result(body: &Value) -> bool {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return false;
    };
    let Some(latest) = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) != Some("system"))
    else {
        return false;
    };
    latest.get("role").and_then(Value::as_str) == Some("user")
        && latest
            .get("content")
            .and_then(Value::as_array)
            .is_some_and(|blocks| blocks.iter().any(|b| block_type(b) == Some("tool_result")))
}

fn block_type(block: &Value) -> Option<&str> {
    block.get("type").and_then(Value::as_str)
}

/// Whether the request offers a tool of that name.
pub(crate) fn offers_tool(body: &Value, name: &str) -> bool {
    body.get("tools")
        .and_then(Value::as_array)
        .is_some_and(|tools| {
            tools
                .iter()
                .any(|t| t.get("name").and_then(Value::as_str) == Some(name))
        })
}

/// Every `tool_result` block in the history, oldest first.
pub(crate) fn tool_results(body: &Value) -> Vec<ToolResult> {
    let mut results = Vec::new();
    let messages = body.get("messages").and_then(Value::as_array);
    for message in messages.into_iter().flatten() {
        let blocks = message.get("content").and_then(Value::as_array);
        for block in blocks.into_iter().flatten() {
            if block_type(block) != Some("tool_result") {
                continue;
            }
            results.push(ToolResult {
                call_id: str_field(block, "tool_use_id"),
                output: content_text(block.get("content")),
                is_error: block.get("is_error").and_then(Value::as_bool) == Some(true),
            });
        }
    }
    results
}

/// A tool result's content is a string or a list of blocks; the text blocks are joined.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn str_field(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The working directory Claude Code states in its environment block ("Primary working
/// directory: …"); its `Write` tool only takes absolute paths.
pub(crate) fn working_directory(body: &Value) -> Option<String> {
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

/// The captures' behaviour: after a tool result say `done`; otherwise create `hello.txt`
/// with `Write` when offered; otherwise say `ok`.
pub(crate) fn auto(body: &Value) -> Step {
    if latest_is_tool_result(body) {
        Step::Text("done".into())
    } else if offers_tool(body, "Write") {
        Step::WriteFile {
            path: "hello.txt".into(),
            content: "hi".into(),
        }
    } else {
        Step::Text("ok".into())
    }
}

fn absolute(path: &str, body: &Value) -> String {
    if path.starts_with('/') {
        return path.to_owned();
    }
    match working_directory(body) {
        Some(dir) => format!("{}/{}", dir.trim_end_matches('/'), path),
        None => path.to_owned(),
    }
}

/// The content blocks and stop reason for an answering step (`None` for steps that do not
/// answer with a message).
fn blocks(step: &Step, body: &Value, ctx: &ReplyContext) -> Option<(Vec<Block>, &'static str)> {
    match step {
        Step::Auto => blocks(&auto(body), body, ctx),
        Step::Text(text) => Some((vec![Block::Text(text.clone())], "end_turn")),
        Step::Huge { bytes } => Some((vec![Block::Text(filler_text(*bytes))], "end_turn")),
        Step::WriteFile { path, content } => {
            let file_path = absolute(path, body);
            Some((
                vec![
                    Block::Text(format!("I'll write {path}.")),
                    Block::ToolUse {
                        id: ctx.ids.next("toolu"),
                        name: "Write",
                        input: json!({"file_path": file_path, "content": content}),
                    },
                ],
                "tool_use",
            ))
        }
        Step::Shell { command } => Some((
            vec![
                Block::Text("I'll run a command.".into()),
                Block::ToolUse {
                    id: ctx.ids.next("toolu"),
                    name: "Bash",
                    input: json!({"command": command, "description": "Run the scripted command"}),
                },
            ],
            "tool_use",
        )),
        Step::Status { .. } | Step::Hang | Step::Stall => None,
    }
}

fn start_usage(ctx: &ReplyContext) -> Value {
    json!({
        "input_tokens": ctx.usage.input_tokens,
        "cache_creation_input_tokens": ctx.usage.cache_creation_input_tokens,
        "cache_read_input_tokens": ctx.usage.cached_input_tokens,
        "output_tokens": 1,
    })
}

fn final_usage(ctx: &ReplyContext) -> Value {
    json!({
        "output_tokens": ctx.usage.output_tokens,
        "input_tokens": ctx.usage.input_tokens,
        "cache_creation_input_tokens": ctx.usage.cache_creation_input_tokens,
        "cache_read_input_tokens": ctx.usage.cached_input_tokens,
    })
}

fn message_start(ctx: &ReplyContext) -> SseEvent {
    SseEvent::typed(json!({
        "type": "message_start",
        "message": {
            "id": ctx.message_id,
            "type": "message",
            "role": "assistant",
            "model": ctx.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": start_usage(ctx),
        },
    }))
}

/// What a stalled stream sends before going silent: the opening events only.
pub(crate) fn stall_prefix(ctx: &ReplyContext) -> Vec<SseEvent> {
    vec![message_start(ctx), SseEvent::typed(json!({"type": "ping"}))]
}

/// The streamed answer for `step`, or `None` if the step does not answer with a message.
pub(crate) fn stream(step: &Step, body: &Value, ctx: &ReplyContext) -> Option<Vec<SseEvent>> {
    let (blocks, stop_reason) = blocks(step, body, ctx)?;
    let chunk = if matches!(step, Step::Huge { .. }) {
        HUGE_CHUNK
    } else {
        TEXT_CHUNK
    };
    let mut events = stall_prefix(ctx);
    for (index, block) in blocks.iter().enumerate() {
        match block {
            Block::Text(text) => {
                events.push(SseEvent::typed(json!({
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                })));
                for piece in split_text(text, chunk) {
                    events.push(SseEvent::typed(json!({
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": piece},
                    })));
                }
            }
            Block::ToolUse { id, name, input } => {
                events.push(SseEvent::typed(json!({
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}},
                })));
                let json = input.to_string();
                for piece in split_text(&json, chunk) {
                    events.push(SseEvent::typed(json!({
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    })));
                }
            }
        }
        events.push(SseEvent::typed(
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push(SseEvent::typed(json!({
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": final_usage(ctx),
    })));
    events.push(SseEvent::typed(json!({"type": "message_stop"})));
    Some(events)
}

/// The whole message for a `stream: false` request.
pub(crate) fn message(step: &Step, body: &Value, ctx: &ReplyContext) -> Option<Value> {
    let (blocks, stop_reason) = blocks(step, body, ctx)?;
    let content: Vec<Value> = blocks
        .into_iter()
        .map(|block| match block {
            Block::Text(text) => json!({"type": "text", "text": text}),
            Block::ToolUse { id, name, input } => {
                json!({"type": "tool_use", "id": id, "name": name, "input": input})
            }
        })
        .collect();
    Some(json!({
        "id": ctx.message_id,
        "type": "message",
        "role": "assistant",
        "model": ctx.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": final_usage(ctx),
    }))
}

/// The error JSON the API answers a failed request with; `request_id` is also sent as the
/// `request-id` header, which Claude Code reports.
pub(crate) fn error_body(code: u16, request_id: &str) -> Value {
    let (kind, message) = match code {
        400 => ("invalid_request_error", "Invalid request (mock)"),
        401 => ("authentication_error", "invalid x-api-key (mock)"),
        403 => ("permission_error", "Permission denied (mock)"),
        404 => ("not_found_error", "Not found (mock)"),
        413 => (
            "request_too_large",
            "Request exceeds the maximum size (mock)",
        ),
        429 => (
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit (mock)",
        ),
        529 => ("overloaded_error", "Overloaded (mock)"),
        500..=599 => ("api_error", "Internal server error (mock)"),
        _ => ("invalid_request_error", "Request failed (mock)"),
    };
    json!({
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": request_id,
    })
}

/// `GET /v1/models`: the models Claude Code names by default, so a listing never fails.
pub(crate) fn models() -> Value {
    let data: Vec<Value> = ["claude-opus-5-5", "claude-sonnet-4-5", "claude-haiku-5-5"]
        .iter()
        .map(|id| {
            json!({
                "type": "model",
                "id": id,
                "display_name": id,
                "created_at": "2026-01-01T00:00:00Z",
            })
        })
        .collect();
    json!({
        "data": data,
        "has_more": false,
        "first_id": "claude-opus-5-5",
        "last_id": "claude-haiku-5-5",
    })
}
