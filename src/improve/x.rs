//! X through a command the operator configures (argv-form, no shell): oxi runs
//! `command… --since <RFC 3339> ACCOUNT…` under the source's time limit and reads a JSON array
//! of posts from its stdout. Without an `x` source no process is started.

use serde::Deserialize;

use super::{Found, ScanContext, SourceError};
use crate::config::ImproveSource;
use crate::process::{Control, Limits, LineSink, Spawn, StopReason, Stream};

/// How much of the command's stderr an error quotes.
const STDERR_TAIL: usize = 400;

/// One post, as the command prints it.
#[derive(Debug, Deserialize)]
struct Post {
    url: String,
    text: String,
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
}

/// Collects stdout up to a limit and the end of stderr.
struct Collect {
    stdout: Vec<u8>,
    stderr: String,
    limit: usize,
}

impl LineSink for Collect {
    fn spawned(&mut self, _pid: u32) -> Result<(), String> {
        Ok(())
    }

    fn line(&mut self, stream: Stream, line: &[u8], _truncated: bool) -> Control {
        match stream {
            Stream::Stdout => {
                if self.stdout.len() + line.len() + 1 > self.limit {
                    return Control::Stop(StopReason::OutputCapped);
                }
                self.stdout.extend_from_slice(line);
                self.stdout.push(b'\n');
            }
            Stream::Stderr => {
                self.stderr.push_str(&String::from_utf8_lossy(line));
                self.stderr.push('\n');
                if self.stderr.len() > 4 * STDERR_TAIL {
                    let cut = self.stderr.len() - STDERR_TAIL;
                    let cut = (cut..self.stderr.len())
                        .find(|i| self.stderr.is_char_boundary(*i))
                        .unwrap_or(0);
                    self.stderr.drain(..cut);
                }
            }
        }
        Control::Continue
    }
}

pub(super) async fn fetch(
    ctx: &ScanContext<'_>,
    source: &ImproveSource,
    since_ms: i64,
) -> Result<Vec<Found>, SourceError> {
    let program = source.command.first().cloned().unwrap_or_default();
    let mut argv = source.command.clone();
    argv.push("--since".to_owned());
    argv.push(crate::clock::rfc3339(since_ms));
    argv.extend(source.accounts.iter().cloned());
    let env: Vec<(String, String)> = ctx
        .env
        .iter()
        .filter(|(k, _)| !crate::runner::env::NEVER_PASSED.contains(&k.as_str()))
        .cloned()
        .collect();
    let spawn = Spawn {
        argv,
        cwd: ctx.root.to_path_buf(),
        env,
        guard: crate::process::guard::program(),
        confine: None,
    };
    let limit = ctx.improve.source_timeout.0;
    let limits = Limits {
        wall: limit,
        stall: limit,
        grace: std::time::Duration::from_secs(2),
        line_cap: usize::try_from(ctx.improve.max_page_size.0.as_u64()).unwrap_or(usize::MAX),
        drain: std::time::Duration::from_secs(1),
    };
    let mut sink = Collect {
        stdout: Vec::new(),
        stderr: String::new(),
        limit: limits.line_cap,
    };
    let (_tx, shutdown) = tokio::sync::watch::channel(false);
    let finished = crate::process::supervise(&spawn, &limits, &mut sink, shutdown)
        .await
        .map_err(|e| SourceError::Spawn {
            program: program.clone(),
            detail: e.to_string(),
        })?;
    match finished.stop {
        Some(StopReason::WallClock | StopReason::Stalled) => {
            return Err(SourceError::Timeout(limit));
        }
        Some(StopReason::OutputCapped) => {
            return Err(SourceError::TooLarge {
                url: program,
                limit: ctx.improve.max_page_size.0.as_u64(),
            });
        }
        _ => {}
    }
    if finished.exit_code != Some(0) {
        return Err(SourceError::Exit {
            program,
            status: finished.exit_code.map_or_else(
                || format!("signal {}", finished.signal.unwrap_or(0)),
                |c| format!("code {c}"),
            ),
            stderr: crate::worker::event::clip(sink.stderr.trim(), STDERR_TAIL),
        });
    }
    parse(&program, &sink.stdout)
}

fn parse(program: &str, stdout: &[u8]) -> Result<Vec<Found>, SourceError> {
    let posts: Vec<Post> = serde_json::from_slice(stdout).map_err(|e| SourceError::Json {
        program: program.to_owned(),
        detail: e.to_string(),
    })?;
    Ok(posts
        .into_iter()
        .filter(|p| p.url.starts_with("https://") || p.url.starts_with("http://"))
        .map(|p| {
            let text = p.text.split_whitespace().collect::<Vec<_>>().join(" ");
            Found {
                title: crate::worker::event::clip(&text, 120),
                summary: text,
                target: p.author.unwrap_or_default(),
                published_at_ms: p.created_at.as_deref().and_then(super::github::parse_ms),
                url: p.url,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_parse_and_bad_json_is_named() {
        let found = parse(
            "x-skill",
            br#"[{"url":"https://x.com/a/status/1","text":"New  agent\nrelease","author":"a","created_at":"2026-11-29T10:00:00Z"}]"#,
        )
        .unwrap();
        assert_eq!(found[0].title, "New agent release");
        assert_eq!(found[0].target, "a");
        let error = parse("x-skill", b"{not json").unwrap_err();
        assert!(
            error.to_string().starts_with("x-skill printed something"),
            "{error}"
        );
    }
}
