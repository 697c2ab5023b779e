//! The canonical event: what every worker line becomes, whichever CLI printed it.

use serde::{Deserialize, Serialize};

/// Token counts in one shape for both CLIs.
///
/// `input` is every input token (cached and cache-write included); `cached_input` and
/// `cache_write_input` are parts of it. `output` is every output token; `reasoning` is part
/// of it. (Codex reports this way already; Claude reports the parts separately and the
/// normalizer adds them up.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tokens {
    pub input: u64,
    pub cached_input: u64,
    pub cache_write_input: u64,
    pub output: u64,
    pub reasoning: u64,
}

impl Tokens {
    /// Saturating: usage figures come from a worker's stdout and can be any u64; a sum that
    /// wrapped would under-count cost (found by fuzzing).
    pub fn add(&mut self, other: &Tokens) {
        self.input = self.input.saturating_add(other.input);
        self.cached_input = self.cached_input.saturating_add(other.cached_input);
        self.cache_write_input = self
            .cache_write_input
            .saturating_add(other.cache_write_input);
        self.output = self.output.saturating_add(other.output);
        self.reasoning = self.reasoning.saturating_add(other.reasoning);
    }

    pub fn is_zero(&self) -> bool {
        *self == Tokens::default()
    }

    /// `self` less `other`, each part at least zero: a resumed session's totals less what its
    /// earlier runs already reported.
    #[must_use]
    pub fn less(&self, other: &Tokens) -> Tokens {
        Tokens {
            input: self.input.saturating_sub(other.input),
            cached_input: self.cached_input.saturating_sub(other.cached_input),
            cache_write_input: self
                .cache_write_input
                .saturating_sub(other.cache_write_input),
            output: self.output.saturating_sub(other.output),
            reasoning: self.reasoning.saturating_sub(other.reasoning),
        }
    }
}

/// How a usage report relates to the run's total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageScope {
    /// The final, authoritative total for the run (Claude's `result`).
    RunTotal,
    /// A total for one turn; turns add up (Codex's `turn.completed`).
    Turn,
    /// An early, partial figure for one model message (Claude's `assistant` usage, taken at
    /// stream start). Good for a running estimate only.
    MessageEstimate,
}

/// One canonical event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    SessionStarted {
        session_id: Option<String>,
        model: Option<String>,
        cwd: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tools: Vec<String>,
        cli_version: Option<String>,
    },
    TurnStarted,
    Message {
        text: String,
    },
    Reasoning {
        text: String,
    },
    ToolCall {
        id: Option<String>,
        name: String,
        input: serde_json::Value,
    },
    ToolResult {
        id: Option<String>,
        is_error: bool,
        content: String,
    },
    FileChange {
        path: String,
        change: String,
    },
    Command {
        command: String,
        exit_code: Option<i64>,
        status: Option<String>,
        output: String,
    },
    Usage {
        scope: UsageScope,
        /// Identifies the model message for `MessageEstimate` (several lines share one).
        message_id: Option<String>,
        tokens: Tokens,
        cost_usd: Option<f64>,
    },
    RateLimited {
        message: String,
        retry_after_ms: Option<u64>,
        attempt: Option<u64>,
    },
    Error {
        message: String,
        status: Option<u16>,
        /// The CLI says it will retry by itself.
        retrying: bool,
    },
    Result {
        is_error: bool,
        subtype: Option<String>,
        text: Option<String>,
        num_turns: Option<u64>,
        duration_ms: Option<u64>,
        api_error_status: Option<u16>,
        terminal_reason: Option<String>,
    },
    /// A line of a type this adapter does not know (kept, never fatal: a newer CLI may add
    /// types); `raw_type` names it.
    Unknown {
        raw_type: String,
    },
}

impl Event {
    /// The canonical kind's name, for counts and KPIs.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::SessionStarted { .. } => "session_started",
            Event::TurnStarted => "turn_started",
            Event::Message { .. } => "message",
            Event::Reasoning { .. } => "reasoning",
            Event::ToolCall { .. } => "tool_call",
            Event::ToolResult { .. } => "tool_result",
            Event::FileChange { .. } => "file_change",
            Event::Command { .. } => "command",
            Event::Usage { .. } => "usage",
            Event::RateLimited { .. } => "rate_limited",
            Event::Error { .. } => "error",
            Event::Result { .. } => "result",
            Event::Unknown { .. } => "unknown",
        }
    }
}

/// What one raw line became.
#[derive(Debug, Clone, PartialEq)]
pub enum Normalized {
    /// Zero or more canonical events (a known line that carries nothing yields none).
    Events(Vec<Event>),
    /// Not JSON, or JSON of the wrong shape; the raw line is kept and counted.
    ParseFailure { reason: String },
}

impl Normalized {
    /// A line the typed parse rejected: valid JSON of a shape we do not know is kept as
    /// `unknown` (named by `raw_type`); anything else is a parse failure.
    pub fn unparsed(line: &[u8], error: &serde_json::Error, raw_type: fn(&[u8]) -> String) -> Self {
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(_)) => Normalized::Events(vec![Event::Unknown {
                raw_type: raw_type(line),
            }]),
            _ => Normalized::ParseFailure {
                reason: error.to_string(),
            },
        }
    }
}

/// Truncates text kept in events and transcripts; the raw line keeps everything (up to caps).
pub fn clip(text: &str, max_chars: usize) -> String {
    if text.len() <= max_chars {
        return text.to_owned();
    }
    let mut end = max_chars;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} more bytes]", &text[..end], text.len() - end)
}

/// Up to `max_bytes` of `bytes` as (lossy) UTF-8 text, marked when cut.
pub fn clip_bytes(bytes: &[u8], max_bytes: usize) -> String {
    if bytes.len() <= max_bytes {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    format!(
        "{}… [{} more bytes]",
        String::from_utf8_lossy(&bytes[..max_bytes]),
        bytes.len() - max_bytes
    )
}
