//! Claude Code (`claude -p … --output-format stream-json --verbose`), as version 2.1.328 prints
//! it (fixtures/captures/claude-*.jsonl).
//!
//! Facts the normalizer relies on: `assistant` lines carry one content block each, several
//! share a `message.id`, and their `usage` is the stream-start figure, not the final count;
//! the `result` line carries the run's real usage and `total_cost_usd`; `result.subtype` is
//! `success` even when the API failed (`is_error` and `api_error_status` tell).

use serde::Deserialize;

use super::event::{Event, Normalized, Tokens, UsageScope, clip};

/// Bumped when the mapping below changes meaning; recorded in every run's meta.json.
pub const CONTRACT_VERSION: &str = "claude-stream-json/1";
/// Versions whose output this normalizer was tested against.
pub const TESTED_VERSIONS: &[&str] = &["2.1.328"];

/// Claude Code's state: `CLAUDE_CONFIG_DIR` when set, else `~/.claude` (sessions, projects,
/// backups, plugins) and `~/.claude.json` (settings, written in place when it cannot be
/// replaced atomically).
pub fn state_paths(env: &[(String, String)]) -> crate::confine::Writable {
    let mut writable = crate::confine::Writable::default();
    if let Some(dir) = super::env_value(env, "CLAUDE_CONFIG_DIR") {
        writable.dirs.push(dir.into());
    } else if let Some(home) = super::env_value(env, "HOME") {
        let home = std::path::Path::new(home);
        writable.dirs.push(home.join(".claude"));
        writable.files.push(home.join(".claude.json"));
    }
    writable
}

const TEXT_CLIP: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    System(SystemLine),
    Assistant(MessageLine),
    User(MessageLine),
    Result(ResultLine),
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SystemLine {
    subtype: Option<String>,
    session_id: Option<String>,
    model: Option<String>,
    cwd: Option<String>,
    tools: Vec<String>,
    claude_code_version: Option<String>,
    attempt: Option<u64>,
    retry_delay_ms: Option<u64>,
    error_status: Option<u16>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct MessageLine {
    message: Message,
    #[serde(default)]
    tool_use_result: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    content: Content,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Blocks(Vec<Block>),
    Text(String),
}

impl Default for Content {
    fn default() -> Self {
        Content::Blocks(Vec::new())
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        #[serde(default)]
        text: String,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    ToolUse {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        name: String,
        #[serde(default)]
        input: serde_json::Value,
    },
    ToolResult {
        #[serde(default)]
        tool_use_id: Option<String>,
        #[serde(default)]
        content: serde_json::Value,
        #[serde(default)]
        is_error: Option<bool>,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default)]
struct Usage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default)]
struct OutputDetails {
    thinking_tokens: u64,
}

impl Usage {
    /// Anthropic reports input parts separately; canonical `input` is their sum.
    fn tokens(&self) -> Tokens {
        Tokens {
            // Saturating: a hostile or broken stream can report any u64 (found by fuzzing).
            input: self
                .input_tokens
                .saturating_add(self.cache_creation_input_tokens)
                .saturating_add(self.cache_read_input_tokens),
            cached_input: self.cache_read_input_tokens,
            cache_write_input: self.cache_creation_input_tokens,
            output: self.output_tokens,
            reasoning: self.output_tokens_details.map_or(0, |d| d.thinking_tokens),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResultLine {
    subtype: Option<String>,
    is_error: bool,
    result: Option<String>,
    num_turns: Option<u64>,
    duration_ms: Option<u64>,
    total_cost_usd: Option<f64>,
    usage: Option<Usage>,
    api_error_status: Option<u16>,
    terminal_reason: Option<String>,
}

/// Text of a tool result, which Claude sends as a string or as content blocks.
fn tool_result_text(content: &serde_json::Value) -> String {
    match content {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
            .collect::<Vec<_>>()
            .join("\n"),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn raw_type(line: &[u8]) -> String {
    #[derive(Deserialize)]
    struct TypeOnly {
        #[serde(rename = "type")]
        kind: Option<String>,
        subtype: Option<String>,
    }
    match serde_json::from_slice::<TypeOnly>(line) {
        Ok(TypeOnly {
            kind: Some(kind),
            subtype: Some(sub),
        }) => format!("{kind}/{sub}"),
        Ok(TypeOnly {
            kind: Some(kind), ..
        }) => kind,
        _ => "(no type)".to_owned(),
    }
}

/// One stdout line to canonical events. Pure: no I/O, no state.
pub fn normalize(line: &[u8]) -> Normalized {
    let parsed: Line = match serde_json::from_slice(line) {
        Ok(parsed) => parsed,
        Err(e) => return Normalized::unparsed(line, &e, raw_type),
    };
    let events = match parsed {
        Line::System(sys) => match sys.subtype.as_deref() {
            Some("init") => vec![Event::SessionStarted {
                session_id: sys.session_id,
                model: sys.model,
                cwd: sys.cwd,
                tools: sys.tools,
                cli_version: sys.claude_code_version,
            }],
            Some("api_retry") => {
                let message = match &sys.error {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => "api retry".to_owned(),
                };
                if sys.error_status == Some(429) {
                    vec![Event::RateLimited {
                        message,
                        retry_after_ms: sys.retry_delay_ms,
                        attempt: sys.attempt,
                    }]
                } else {
                    vec![Event::Error {
                        message,
                        status: sys.error_status,
                        retrying: true,
                    }]
                }
            }
            _ => vec![Event::Unknown {
                raw_type: raw_type(line),
            }],
        },
        Line::Assistant(msg) => {
            let mut events = Vec::new();
            if let Content::Blocks(blocks) = msg.message.content {
                for block in blocks {
                    match block {
                        Block::Text { text } => events.push(Event::Message {
                            text: clip(&text, TEXT_CLIP),
                        }),
                        Block::Thinking { thinking } => events.push(Event::Reasoning {
                            text: clip(&thinking, TEXT_CLIP),
                        }),
                        Block::ToolUse { id, name, input } => {
                            events.push(Event::ToolCall { id, name, input });
                        }
                        Block::ToolResult { .. } | Block::Other => {}
                    }
                }
            } else if let Content::Text(text) = msg.message.content {
                events.push(Event::Message {
                    text: clip(&text, TEXT_CLIP),
                });
            }
            if let Some(usage) = msg.message.usage {
                events.push(Event::Usage {
                    scope: UsageScope::MessageEstimate,
                    message_id: msg.message.id,
                    tokens: usage.tokens(),
                    cost_usd: None,
                });
            }
            events
        }
        Line::User(msg) => {
            let mut events = Vec::new();
            if let Content::Blocks(blocks) = msg.message.content {
                for block in blocks {
                    if let Block::ToolResult {
                        tool_use_id,
                        content,
                        is_error,
                    } = block
                    {
                        events.push(Event::ToolResult {
                            id: tool_use_id,
                            is_error: is_error.unwrap_or(false),
                            content: clip(&tool_result_text(&content), TEXT_CLIP),
                        });
                    }
                }
            }
            if let Some(result) = &msg.tool_use_result
                && let Some(path) = result.get("filePath").and_then(|p| p.as_str())
            {
                let change = match result.get("type").and_then(|t| t.as_str()) {
                    Some("create") => "add",
                    Some("update") => "update",
                    Some(other) => other,
                    None => "update",
                };
                events.push(Event::FileChange {
                    path: path.to_owned(),
                    change: change.to_owned(),
                });
            }
            events
        }
        Line::Result(result) => {
            let mut events = vec![Event::Result {
                is_error: result.is_error,
                subtype: result.subtype,
                text: result.result.map(|t| clip(&t, TEXT_CLIP)),
                num_turns: result.num_turns,
                duration_ms: result.duration_ms,
                api_error_status: result.api_error_status,
                terminal_reason: result.terminal_reason,
            }];
            if result.usage.is_some() || result.total_cost_usd.is_some() {
                events.push(Event::Usage {
                    scope: UsageScope::RunTotal,
                    message_id: None,
                    tokens: result.usage.unwrap_or_default().tokens(),
                    cost_usd: result.total_cost_usd,
                });
            }
            events
        }
        Line::Other => vec![Event::Unknown {
            raw_type: raw_type(line),
        }],
    };
    Normalized::Events(events)
}

/// Arguments for one non-interactive run. The prompt goes last, after `--`, so a prompt that
/// starts with `-` is never read as a flag.
pub fn argv(
    command: &[String],
    prompt: &str,
    model: Option<&str>,
    permission_mode: &str,
    max_turns: Option<u32>,
    extra: &[String],
) -> Vec<String> {
    let mut argv: Vec<String> = command.to_vec();
    argv.extend(
        [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
        ]
        .map(String::from),
    );
    argv.push(permission_mode.to_owned());
    if let Some(model) = model {
        argv.push("--model".to_owned());
        argv.push(model.to_owned());
    }
    if let Some(turns) = max_turns {
        argv.push("--max-turns".to_owned());
        argv.push(turns.to_string());
    }
    argv.extend(extra.iter().cloned());
    argv.push("--".to_owned());
    argv.push(prompt.to_owned());
    argv
}
