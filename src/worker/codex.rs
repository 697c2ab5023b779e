//! OpenAI Codex CLI (`codex exec --json`), as version 0.169.0 prints it
//! (fixtures/captures/codex-*.jsonl).
//!
//! Facts the normalizer relies on: `turn.completed.usage` is summed over the turn, with
//! `cached_input_tokens` inside `input_tokens` and `reasoning_output_tokens` inside
//! `output_tokens`; there is no cost, so oxi prices tokens with the rate card; retries show as
//! `error` lines ("Reconnecting... n/5 (…)") and a failed turn as `turn.failed`.

use serde::Deserialize;

use super::event::{Event, Normalized, Tokens, UsageScope, clip};
use super::login::stored_login;
use super::{Adapter, KeyProblem, Login, LoginCheck, LoginStatus, WorkerConfig, WorkerKind};

pub const CONTRACT_VERSION: &str = "codex-exec-json/1";
pub const TESTED_VERSIONS: &[&str] = &["0.169.0"];

/// Codex's state: `CODEX_HOME` (sessions, logs, its sqlite state, `tmp/arg0`), else `~/.codex`.
pub fn state_paths(env: &[(String, String)]) -> crate::confine::Writable {
    let dir = super::env_value(env, "CODEX_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| super::env_value(env, "HOME").map(|h| std::path::Path::new(h).join(".codex")));
    crate::confine::Writable {
        dirs: dir.into_iter().collect(),
        files: Vec::new(),
    }
}

const TEXT_CLIP: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(tag = "type")]
enum Line {
    #[serde(rename = "thread.started")]
    ThreadStarted {
        #[serde(default)]
        thread_id: Option<String>,
    },
    #[serde(rename = "turn.started")]
    TurnStarted {},
    #[serde(rename = "item.started")]
    ItemStarted { item: Item },
    #[serde(rename = "item.updated")]
    ItemUpdated { item: Item },
    #[serde(rename = "item.completed")]
    ItemCompleted { item: Item },
    #[serde(rename = "turn.completed")]
    TurnCompleted {
        #[serde(default)]
        usage: Option<Usage>,
    },
    #[serde(rename = "turn.failed")]
    TurnFailed {
        #[serde(default)]
        error: Option<ErrorBody>,
    },
    #[serde(rename = "error")]
    Error {
        #[serde(default)]
        message: Option<String>,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorBody {
    message: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default)]
struct Usage {
    input_tokens: u64,
    cached_input_tokens: u64,
    cache_write_input_tokens: u64,
    output_tokens: u64,
    reasoning_output_tokens: u64,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Item {
    AgentMessage {
        #[serde(default)]
        text: String,
    },
    Reasoning {
        #[serde(default)]
        text: String,
    },
    CommandExecution {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        command: String,
        #[serde(default)]
        aggregated_output: String,
        #[serde(default)]
        exit_code: Option<i64>,
        #[serde(default)]
        status: Option<String>,
    },
    FileChange {
        #[serde(default)]
        changes: Vec<Change>,
    },
    McpToolCall {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        server: String,
        #[serde(default)]
        tool: String,
        #[serde(default)]
        arguments: serde_json::Value,
        #[serde(default)]
        result: serde_json::Value,
        #[serde(default)]
        error: serde_json::Value,
    },
    WebSearch {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        query: String,
    },
    TodoList {
        #[serde(default)]
        items: Vec<TodoItem>,
    },
    Error {
        #[serde(default)]
        message: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    path: String,
    #[serde(default)]
    kind: String,
}

#[derive(Deserialize)]
struct TodoItem {
    #[serde(default)]
    text: String,
    #[serde(default)]
    completed: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Started,
    Updated,
    Completed,
}

fn item_events(item: Item, phase: Phase) -> Vec<Event> {
    match (item, phase) {
        (Item::AgentMessage { text }, Phase::Completed) => vec![Event::Message {
            text: clip(&text, TEXT_CLIP),
        }],
        (Item::Reasoning { text }, Phase::Completed) => vec![Event::Reasoning {
            text: clip(&text, TEXT_CLIP),
        }],
        (Item::CommandExecution { id, command, .. }, Phase::Started) => vec![Event::ToolCall {
            id,
            name: "shell".to_owned(),
            input: serde_json::json!({ "command": command }),
        }],
        (
            Item::CommandExecution {
                command,
                aggregated_output,
                exit_code,
                status,
                ..
            },
            Phase::Completed,
        ) => vec![Event::Command {
            command,
            exit_code,
            status,
            output: clip(&aggregated_output, TEXT_CLIP),
        }],
        (Item::FileChange { changes }, Phase::Completed) => changes
            .into_iter()
            .map(|c| Event::FileChange {
                path: c.path,
                change: c.kind,
            })
            .collect(),
        (
            Item::McpToolCall {
                id,
                server,
                tool,
                arguments,
                ..
            },
            Phase::Started,
        ) => vec![Event::ToolCall {
            id,
            name: format!("{server}.{tool}"),
            input: arguments,
        }],
        (
            Item::McpToolCall {
                id, result, error, ..
            },
            Phase::Completed,
        ) => {
            let is_error = !error.is_null();
            let content = if is_error { error } else { result };
            vec![Event::ToolResult {
                id,
                is_error,
                content: clip(&content.to_string(), TEXT_CLIP),
            }]
        }
        (Item::WebSearch { id, query }, Phase::Started) => vec![Event::ToolCall {
            id,
            name: "web_search".to_owned(),
            input: serde_json::json!({ "query": query }),
        }],
        (Item::TodoList { items }, Phase::Completed | Phase::Updated) => {
            let text = items
                .iter()
                .map(|i| format!("[{}] {}", if i.completed { "x" } else { " " }, i.text))
                .collect::<Vec<_>>()
                .join("\n");
            vec![Event::Reasoning {
                text: clip(&text, TEXT_CLIP),
            }]
        }
        (Item::Error { message }, Phase::Completed) => vec![Event::Error {
            message,
            status: None,
            retrying: false,
        }],
        // Started/updated phases of the other items carry nothing new.
        _ => Vec::new(),
    }
}

/// An HTTP status named in a codex error message ("last status: 429 Too Many Requests",
/// "unexpected status 401 Unauthorized: …").
fn status_in(message: &str) -> Option<u16> {
    ["status: ", "status "].iter().find_map(|marker| {
        let idx = message.find(marker)?;
        message[idx + marker.len()..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    })
}

fn is_rate_limit(message: &str) -> bool {
    status_in(message) == Some(429)
        || message.contains("Too Many Requests")
        || message.to_ascii_lowercase().contains("rate limit")
}

fn raw_type(line: &[u8]) -> String {
    #[derive(Deserialize)]
    struct TypeOnly {
        #[serde(rename = "type")]
        kind: Option<String>,
        item: Option<ItemType>,
    }
    #[derive(Deserialize)]
    struct ItemType {
        #[serde(rename = "type")]
        kind: Option<String>,
    }
    match serde_json::from_slice::<TypeOnly>(line) {
        Ok(TypeOnly {
            kind: Some(kind),
            item: Some(ItemType { kind: Some(item) }),
        }) => format!("{kind}/{item}"),
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
        Line::ThreadStarted { thread_id } => vec![Event::SessionStarted {
            session_id: thread_id,
            model: None,
            cwd: None,
            tools: Vec::new(),
            cli_version: None,
        }],
        Line::TurnStarted {} => vec![Event::TurnStarted],
        Line::ItemStarted { item } => item_events(item, Phase::Started),
        Line::ItemUpdated { item } => item_events(item, Phase::Updated),
        Line::ItemCompleted { item } => match item {
            Item::Other => vec![Event::Unknown {
                raw_type: raw_type(line),
            }],
            item => item_events(item, Phase::Completed),
        },
        Line::TurnCompleted { usage } => {
            let usage = usage.unwrap_or_default();
            vec![
                Event::Usage {
                    scope: UsageScope::Turn,
                    message_id: None,
                    tokens: Tokens {
                        input: usage.input_tokens,
                        cached_input: usage.cached_input_tokens,
                        cache_write_input: usage.cache_write_input_tokens,
                        output: usage.output_tokens,
                        reasoning: usage.reasoning_output_tokens,
                    },
                    cost_usd: None,
                },
                Event::Result {
                    is_error: false,
                    subtype: Some("turn.completed".to_owned()),
                    text: None,
                    num_turns: None,
                    duration_ms: None,
                    api_error_status: None,
                    terminal_reason: None,
                },
            ]
        }
        Line::TurnFailed { error } => {
            let message = error.and_then(|e| e.message).unwrap_or_default();
            vec![Event::Result {
                is_error: true,
                subtype: Some("turn.failed".to_owned()),
                api_error_status: status_in(&message).or(is_rate_limit(&message).then_some(429)),
                text: Some(message),
                num_turns: None,
                duration_ms: None,
                terminal_reason: None,
            }]
        }
        Line::Error { message } => {
            let message = message.unwrap_or_default();
            let retrying = message.starts_with("Reconnecting");
            if is_rate_limit(&message) {
                vec![Event::RateLimited {
                    message,
                    retry_after_ms: None,
                    attempt: None,
                }]
            } else {
                vec![Event::Error {
                    status: status_in(&message),
                    message,
                    retrying,
                }]
            }
        }
        Line::Other => vec![Event::Unknown {
            raw_type: raw_type(line),
        }],
    };
    Normalized::Events(events)
}

/// Sandbox policies, plus oxi's `bypass`.
const SANDBOXES: &[&str] = &[
    "read-only",
    "workspace-write",
    "danger-full-access",
    "bypass",
];

/// The effective `--sandbox` of `worker`: `workspace-write` unless configured.
fn sandbox(worker: &WorkerConfig) -> &str {
    worker.sandbox.as_deref().unwrap_or("workspace-write")
}

/// How codex may touch the machine: `workspace-write` (its sandbox: writes only in the
/// worktree) by default; `danger-full-access` or `bypass` where its sandbox cannot run.
fn argv(worker: &WorkerConfig, prompt: &str) -> Vec<String> {
    argv_resuming(worker, None, prompt)
}

/// [`argv`], continuing thread `resume` when given: 0.169.0's `codex exec [OPTIONS] resume
/// <SESSION_ID> [PROMPT]` takes `exec`'s options (sandbox, model, `-c`) before `resume`, and
/// finds the thread in `CODEX_HOME` from any working directory; an unknown id exits 1 with
/// "no rollout found for thread id".
fn argv_resuming(worker: &WorkerConfig, resume: Option<&str>, prompt: &str) -> Vec<String> {
    let mut argv: Vec<String> = worker.command.clone();
    argv.extend(
        [
            "exec",
            "--json",
            "--skip-git-repo-check",
            // Without this, an unreachable API is retried forever (seen in 0.169.0).
            "--disable",
            "unbounded_connection_retries",
        ]
        .map(String::from),
    );
    let sandbox = sandbox(worker);
    if sandbox == "bypass" {
        argv.push("--dangerously-bypass-approvals-and-sandbox".to_owned());
    } else {
        argv.push("--sandbox".to_owned());
        argv.push(sandbox.to_owned());
    }
    if let Some(model) = &worker.model {
        argv.push("--model".to_owned());
        argv.push(model.clone());
    }
    argv.extend(worker.args.iter().cloned());
    if let Some(thread) = resume {
        argv.push("resume".to_owned());
        argv.push(thread.to_owned());
    }
    argv.push("--".to_owned());
    argv.push(prompt.to_owned());
    argv
}

/// `sandbox` must be one codex knows (or oxi's `bypass`).
fn check_keys(worker: &WorkerConfig) -> Vec<KeyProblem> {
    match &worker.sandbox {
        Some(sandbox) if !SANDBOXES.contains(&sandbox.as_str()) => vec![KeyProblem {
            key: "sandbox",
            message: format!(
                "unknown sandbox {sandbox:?}; use one of {}",
                SANDBOXES.join(", ")
            ),
        }],
        _ => Vec::new(),
    }
}

/// The `env_key` of a model provider set in the worker's args (`-c 'model_providers.x={…,
/// env_key="NAME"}'`).
fn provider_env_key(args: &[String]) -> Option<String> {
    let text = args.join(" ");
    let at = text.find("env_key")?;
    let rest = text[at + "env_key".len()..]
        .trim_start()
        .strip_prefix('=')?;
    let rest = rest.trim_start().trim_start_matches(['"', '\'']);
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Codex (0.169.0) reads `OPENAI_API_KEY`, its provider's `env_key`, or the login that
/// `codex login` stores in `$CODEX_HOME/auth.json` (`~/.codex` when `CODEX_HOME` is unset);
/// its `codex login status` ignores the keys, so oxi looks itself.
fn login(args: &[String], env: &[(String, String)]) -> Login {
    if let Some(key) = provider_env_key(args) {
        return match super::env_value(env, &key) {
            Some(_) => Login::new(
                LoginStatus::Ok,
                format!("{key} is set (its provider's env_key)"),
                None,
            ),
            None => Login::new(
                LoginStatus::Fail,
                format!("{key} is not set (the env_key of the provider in workers.NAME.args)"),
                Some(format!(
                    "list {key} in workers.NAME.env and export it before oxi runs"
                )),
            ),
        };
    }
    if let Some(found) = stored_login(
        env,
        &["OPENAI_API_KEY", "CODEX_API_KEY"],
        ("CODEX_HOME", ".codex"),
        "auth.json",
    ) {
        return Login::new(LoginStatus::Ok, found, None);
    }
    Login::new(
        LoginStatus::Warn,
        "could not confirm a login: no OPENAI_API_KEY and no auth.json in CODEX_HOME or ~/.codex",
        Some("run `codex login` as the user oxi runs as, or list OPENAI_API_KEY in workers.NAME.env and export it".to_owned()),
    )
}

/// OpenAI Codex behind the [`Adapter`] trait.
pub struct CodexAdapter;

impl Adapter for CodexAdapter {
    fn kind(&self) -> WorkerKind {
        WorkerKind::Codex
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
    /// 0.169.0 exits 1 with "Error: thread/resume: … no rollout found for thread id …".
    fn session_unknown(&self, detail: &str) -> bool {
        detail.contains("no rollout found for thread id")
    }
    /// 0.169.0's `turn.completed.usage` after `exec resume` is the thread's running total.
    fn session_totals(&self) -> super::SessionTotals {
        super::SessionTotals {
            tokens: true,
            cost: false,
        }
    }
    /// Codex's sandbox enforces it.
    fn make_read_only(&self, worker: &mut WorkerConfig) {
        worker.sandbox = Some("read-only".to_owned());
    }
    fn own_sandbox(&self, worker: &WorkerConfig) -> Option<String> {
        let mode = sandbox(worker);
        (mode != "danger-full-access").then(|| mode.to_owned())
    }
    fn reports_cost(&self) -> bool {
        // Tokens only: oxi prices them with the model's rate card.
        false
    }
    fn own_keys(&self) -> &'static [&'static str] {
        &["sandbox"]
    }
    fn check_keys(&self, worker: &WorkerConfig) -> Vec<KeyProblem> {
        check_keys(worker)
    }
    fn install_hint(&self) -> &'static str {
        "npm install -g @openai/codex"
    }
    fn fixture(&self) -> &'static str {
        include_str!("../../fixtures/captures/codex-edit.jsonl")
    }
    fn login_vars(&self) -> &'static [&'static str] {
        &["OPENAI_API_KEY", "CODEX_API_KEY", "CODEX_HOME"]
    }
    fn login<'a>(
        &'a self,
        worker: &'a WorkerConfig,
        env: &'a [(String, String)],
    ) -> LoginCheck<'a> {
        Box::pin(std::future::ready(login(&worker.args, env)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_providers_env_key() {
        let args = vec![
            "-c".to_owned(),
            r#"model_providers.mock={name="mock", env_key="MOCK_API_KEY", wire_api="responses"}"#
                .to_owned(),
        ];
        assert_eq!(provider_env_key(&args).as_deref(), Some("MOCK_API_KEY"));
        assert_eq!(provider_env_key(&[]), None);
    }
}
