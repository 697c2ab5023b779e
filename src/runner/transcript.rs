//! The transcript a person reads: one short block per canonical event, the same text in
//! `transcript.md` and (while the run goes) on stderr.

use crate::worker::{Event, UsageScope};

const DETAIL: usize = 400;

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    if flat.chars().count() <= max {
        return flat.to_owned();
    }
    let cut: String = flat.chars().take(max).collect();
    format!("{cut}…")
}

/// What a tool call is about, in a few words: the path or command when the input names one.
fn tool_subject(input: &serde_json::Value) -> String {
    for key in [
        "file_path",
        "path",
        "command",
        "cmd",
        "pattern",
        "url",
        "query",
    ] {
        match input.get(key) {
            Some(serde_json::Value::String(s)) => return one_line(s, 160),
            Some(serde_json::Value::Array(parts)) => {
                let words: Vec<&str> = parts.iter().filter_map(|p| p.as_str()).collect();
                if !words.is_empty() {
                    return one_line(&words.join(" "), 160);
                }
            }
            _ => {}
        }
    }
    one_line(&input.to_string(), 160)
}

/// The transcript text for one event, or `None` for events a reader does not need (usage
/// estimates, unknown lines: both are counted in meta.json).
pub fn render(event: &Event) -> Option<String> {
    Some(match event {
        Event::SessionStarted {
            session_id,
            model,
            cli_version,
            ..
        } => format!(
            "── session {} · model {} · cli {}",
            session_id.as_deref().unwrap_or("?"),
            model.as_deref().unwrap_or("?"),
            cli_version.as_deref().unwrap_or("?")
        ),
        Event::TurnStarted => "── turn".to_owned(),
        Event::Message { text } => text.trim_end().to_owned(),
        Event::Reasoning { text } => format!("(thinking) {}", one_line(text, DETAIL)),
        Event::ToolCall { name, input, .. } => format!("→ {name} {}", tool_subject(input)),
        Event::ToolResult {
            is_error, content, ..
        } => format!(
            "← {}{}",
            if *is_error { "error: " } else { "" },
            one_line(content, DETAIL)
        ),
        Event::FileChange { path, change } => format!("✎ {change} {path}"),
        Event::Command {
            command,
            exit_code,
            output,
            ..
        } => {
            let mut text = format!("$ {}", one_line(command, DETAIL));
            if let Some(code) = exit_code {
                text.push_str(&format!("  (exit {code})"));
            }
            if !output.trim().is_empty() {
                text.push_str(&format!("\n  {}", one_line(output, DETAIL)));
            }
            text
        }
        Event::Usage {
            scope: UsageScope::MessageEstimate,
            ..
        }
        | Event::Unknown { .. } => return None,
        Event::Usage { tokens, .. } => format!(
            "· tokens in {} (cached {}) out {} (reasoning {})",
            tokens.input, tokens.cached_input, tokens.output, tokens.reasoning
        ),
        Event::RateLimited {
            message,
            retry_after_ms,
            ..
        } => match retry_after_ms {
            Some(ms) => format!(
                "⚠ rate limited, the CLI retries in {:.1}s: {}",
                *ms as f64 / 1000.0,
                one_line(message, DETAIL)
            ),
            None => format!("⚠ rate limited: {}", one_line(message, DETAIL)),
        },
        Event::Error {
            message,
            status,
            retrying,
        } => format!(
            "✗ error{}{}: {}",
            status.map(|s| format!(" {s}")).unwrap_or_default(),
            if *retrying { " (the CLI retries)" } else { "" },
            one_line(message, DETAIL)
        ),
        Event::Result {
            is_error,
            subtype,
            num_turns,
            duration_ms,
            ..
        } => format!(
            "■ result: {}{}{}{}",
            if *is_error { "error" } else { "ok" },
            subtype
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default(),
            num_turns
                .map(|n| format!(" · {n} turns"))
                .unwrap_or_default(),
            duration_ms
                .map(|ms| format!(" · {:.1}s", ms as f64 / 1000.0))
                .unwrap_or_default()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_calls_name_their_subject() {
        let call = Event::ToolCall {
            id: None,
            name: "Write".into(),
            input: serde_json::json!({"file_path": "/r/hello.txt", "content": "x"}),
        };
        assert_eq!(render(&call).unwrap(), "→ Write /r/hello.txt");
        let shell = Event::ToolCall {
            id: None,
            name: "exec_command".into(),
            input: serde_json::json!({"cmd": ["cargo", "test"]}),
        };
        assert_eq!(render(&shell).unwrap(), "→ exec_command cargo test");
    }
}
