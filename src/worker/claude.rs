//! Claude Code (`claude -p … --output-format stream-json --verbose`), as version 2.1.328 prints
//! it (fixtures/captures/claude-*.jsonl).
//!
//! Facts the normalizer relies on: `assistant` lines carry one content block each, several
//! share a `message.id`, and their `usage` is the stream-start figure, not the final count;
//! the `result` line carries the run's real usage and `total_cost_usd`; `result.subtype` is
//! `success` even when the API failed (`is_error` and `api_error_status` tell).

use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;

use super::event::{Event, Normalized, Tokens, UsageScope, clip};
use super::login::stored_login;
use super::{Adapter, KeyProblem, Login, LoginCheck, LoginStatus, WorkerConfig, WorkerKind};

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

/// Permission modes that run unattended (the others prompt, or refuse to edit).
const PERMISSION_MODES: &[&str] = &["acceptEdits", "bypassPermissions"];

/// The effective `--permission-mode` of `worker`: `acceptEdits` unless configured.
fn permission_mode(worker: &WorkerConfig) -> &str {
    worker.permission_mode.as_deref().unwrap_or("acceptEdits")
}

/// Arguments for one non-interactive run. The prompt goes last, after `--`, so a prompt that
/// starts with `-` is never read as a flag.
fn argv(worker: &WorkerConfig, prompt: &str) -> Vec<String> {
    argv_resuming(worker, None, prompt)
}

/// [`argv`], continuing session `resume` when given (`--resume <id>`, which 2.1.328 finds
/// from any working directory; an unknown id ends the run with "No conversation found with
/// session ID").
fn argv_resuming(worker: &WorkerConfig, resume: Option<&str>, prompt: &str) -> Vec<String> {
    let mut argv: Vec<String> = worker.command.clone();
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
    argv.push(permission_mode(worker).to_owned());
    if let Some(model) = &worker.model {
        argv.push("--model".to_owned());
        argv.push(model.clone());
    }
    if let Some(turns) = worker.max_turns {
        argv.push("--max-turns".to_owned());
        argv.push(turns.to_string());
    }
    if let Some(session) = resume {
        argv.push("--resume".to_owned());
        argv.push(session.to_owned());
    }
    argv.extend(worker.args.iter().cloned());
    argv.push("--".to_owned());
    argv.push(prompt.to_owned());
    argv
}

/// `permission_mode` must run unattended; `max_turns` must allow a turn.
fn check_keys(worker: &WorkerConfig) -> Vec<KeyProblem> {
    let mut problems = Vec::new();
    if let Some(mode) = &worker.permission_mode
        && !PERMISSION_MODES.contains(&mode.as_str())
    {
        problems.push(KeyProblem {
            key: "permission_mode",
            message: format!(
                "{mode:?} does not run unattended; use one of {}",
                PERMISSION_MODES.join(", ")
            ),
        });
    }
    if worker.max_turns == Some(0) {
        problems.push(KeyProblem {
            key: "max_turns",
            message: "must be at least 1".to_owned(),
        });
    }
    problems
}

/// How long `claude auth status` may take (it answers in well under a second, offline).
const STATUS_TIMEOUT: Duration = Duration::from_secs(15);

/// Claude Code (2.1.328) answers `claude auth status --json` offline with `{"loggedIn": …,
/// "authMethod": …}`, counting `ANTHROPIC_API_KEY`, `CLAUDE_CODE_OAUTH_TOKEN` and a stored
/// login (`~/.claude/.credentials.json` on Linux, or `$CLAUDE_CONFIG_DIR`; the Keychain on
/// macOS); when it gives no such answer, the variables and the file are looked for here.
async fn login(command: &[String], env: &[(String, String)]) -> Login {
    match auth_status(command, env).await {
        Some((true, method)) => Login::new(LoginStatus::Ok, format!("logged in ({method}; `claude auth status`)"), None),
        Some((false, _)) => Login::new(
            LoginStatus::Fail,
            "not logged in (`claude auth status` with the worker's environment)",
            Some("log in as the user oxi runs as (`claude auth login`, or `claude setup-token` and CLAUDE_CODE_OAUTH_TOKEN), or list ANTHROPIC_API_KEY in workers.NAME.env and export it".to_owned()),
        ),
        None => login_by_files(env),
    }
}

/// `claude auth status --json`: `(loggedIn, authMethod)`, or `None` when the CLI gives no such
/// answer (another version, a stand-in). Run in a scratch directory so nothing lands in the
/// repository.
async fn auth_status(command: &[String], env: &[(String, String)]) -> Option<(bool, String)> {
    let (program, prefix) = command.split_first()?;
    let scratch = tempfile::tempdir().ok()?;
    let child = tokio::process::Command::new(program)
        .args(prefix)
        .args(["auth", "status", "--json"])
        .current_dir(scratch.path())
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(STATUS_TIMEOUT, child)
        .await
        .ok()?
        .ok()?;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let logged_in = json.get("loggedIn")?.as_bool()?;
    let method = json
        .get("authMethod")
        .and_then(|m| m.as_str())
        .unwrap_or("unknown")
        .to_owned();
    Some((logged_in, method))
}

fn login_by_files(env: &[(String, String)]) -> Login {
    if let Some(found) = stored_login(
        env,
        &[
            "ANTHROPIC_API_KEY",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "ANTHROPIC_AUTH_TOKEN",
        ],
        ("CLAUDE_CONFIG_DIR", ".claude"),
        ".credentials.json",
    ) {
        return Login::new(LoginStatus::Ok, found, None);
    }
    Login::new(
        LoginStatus::Warn,
        "could not confirm a login: no ANTHROPIC_API_KEY, no CLAUDE_CODE_OAUTH_TOKEN and no ~/.claude/.credentials.json (macOS keeps the login in the Keychain)",
        Some("if runs end auth_failed, log in as the user oxi runs as (`claude auth login`) or export ANTHROPIC_API_KEY".to_owned()),
    )
}

/// Claude Code behind the [`Adapter`] trait.
pub struct ClaudeAdapter;

impl Adapter for ClaudeAdapter {
    fn kind(&self) -> WorkerKind {
        WorkerKind::Claude
    }
    fn contract_version(&self) -> &'static str {
        CONTRACT_VERSION
    }
    fn tested_versions(&self) -> &'static [&'static str] {
        TESTED_VERSIONS
    }
    fn normalize(&self, line: &[u8]) -> Normalized {
        normalize(line)
    }
    fn state_paths(&self, env: &[(String, String)]) -> crate::confine::Writable {
        state_paths(env)
    }
    fn argv(&self, worker: &WorkerConfig, prompt: &str) -> Vec<String> {
        argv(worker, prompt)
    }
    fn resume_argv(
        &self,
        worker: &WorkerConfig,
        session_id: &str,
        prompt: &str,
    ) -> Option<Vec<String>> {
        Some(argv_resuming(worker, Some(session_id), prompt))
    }
    /// 2.1.328 prints it on stderr and in the result line's `errors`.
    fn session_unknown(&self, detail: &str) -> bool {
        detail.contains("No conversation found with session ID")
    }
    /// 2.1.328's `total_cost_usd` after `--resume` is the session's (the earlier runs' cost
    /// included); its `usage` is the run's own.
    fn session_totals(&self) -> super::SessionTotals {
        super::SessionTotals {
            tokens: false,
            cost: true,
        }
    }
    /// `--permission-mode plan` (claude 2.1.328's `--help` lists it): the CLI reads and
    /// plans but runs no edit tool. A reviewer's or planner's edits, if any slipped through,
    /// are still found and discarded after the run.
    fn make_read_only(&self, worker: &mut WorkerConfig) {
        worker.permission_mode = Some("plan".to_owned());
    }
    fn reports_cost(&self) -> bool {
        // `total_cost_usd` on the result line.
        true
    }
    fn own_keys(&self) -> &'static [&'static str] {
        &["permission_mode", "max_turns"]
    }
    fn check_keys(&self, worker: &WorkerConfig) -> Vec<KeyProblem> {
        check_keys(worker)
    }
    fn install_hint(&self) -> &'static str {
        "npm install -g @anthropic-ai/claude-code"
    }
    fn fixture(&self) -> &'static str {
        include_str!("../../fixtures/captures/claude-edit.jsonl")
    }
    fn login_vars(&self) -> &'static [&'static str] {
        &["ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"]
    }
    fn login<'a>(
        &'a self,
        worker: &'a WorkerConfig,
        env: &'a [(String, String)],
    ) -> LoginCheck<'a> {
        Box::pin(login(&worker.command, env))
    }
}
