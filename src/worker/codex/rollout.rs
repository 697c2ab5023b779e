//! Codex's rollout file: the session record codex 0.169.0 keeps on disk at
//! `CODEX_HOME/sessions/YYYY/MM/DD/rollout-<local time>-<thread id>.jsonl`
//! (fixtures/captures/codex-read-only.rollout.jsonl).
//!
//! Why oxi reads it: in its read-only sandbox codex refuses an `apply_patch` without printing
//! anything on stdout — the `--json` stream shows neither the call nor the refusal. The rollout
//! has both: a `custom_tool_call` named `apply_patch` (the patch, which names its files) and
//! the `custom_tool_call_output` with the same `call_id` whose output begins
//! `patch rejected: writing is blocked by read-only sandbox`. A read-only run's refused
//! writes are governance violations (docs/safety.md), so after such a run oxi reads its
//! thread's rollout and records the paths.
//!
//! Every line is a typed record; a line of another type (most of them) is skipped, and a line
//! that is not JSON is counted, never fatal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where codex says a refused patch was refused: the start of the tool output.
const REJECTED: &str = "patch rejected";

/// The paths a read-only run tried to write and codex refused, from its rollout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusals {
    /// The rollout read.
    pub rollout: PathBuf,
    /// Each refused patch's files as the patch names them (relative to codex's working
    /// directory, or absolute), in order, without repeats.
    pub paths: Vec<String>,
    /// Lines that were not JSON (a rollout cut short, or not codex's).
    pub garbled_lines: usize,
}

/// Why a rollout could not be read. Not retryable: the run is over; the caller records it and
/// goes on.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// Neither `CODEX_HOME` nor `HOME` is in the worker's environment.
    #[error(
        "the worker's environment has neither CODEX_HOME nor HOME, so codex's sessions cannot be found"
    )]
    NoHome,
    /// No `rollout-*-<thread>.jsonl` in the days the run spans.
    #[error("no rollout for thread {thread} under {}", sessions.display())]
    NotFound { sessions: PathBuf, thread: String },
    /// The file exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not one line of it is a rollout record.
    #[error("{} holds no rollout record ({lines} lines, none JSON)", path.display())]
    Garbled { path: PathBuf, lines: usize },
}

/// One rollout line: `{"timestamp", "type", "payload", …}`.
#[derive(Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: LineKind,
    #[serde(default)]
    payload: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum LineKind {
    /// An item of the model conversation (messages, tool calls and their outputs).
    ResponseItem,
    /// `session_meta`, `event_msg`, `turn_context`, `token_usage_record`, …
    #[serde(other)]
    Other,
}

/// A `response_item`'s payload.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Item {
    CustomToolCall {
        call_id: String,
        name: String,
        #[serde(default)]
        input: String,
    },
    CustomToolCallOutput {
        call_id: String,
        /// A string in 0.169.0; anything else is read as its JSON text.
        #[serde(default)]
        output: serde_json::Value,
    },
    #[serde(other)]
    Other,
}

/// The refused writes in a rollout's text.
pub(crate) fn refusals(text: &str) -> Refusals {
    let mut patches: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut out = Refusals::default();
    for raw in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(line) = serde_json::from_str::<Line>(raw) else {
            if serde_json::from_str::<serde_json::Value>(raw).is_err() {
                out.garbled_lines += 1;
            }
            continue;
        };
        if !matches!(line.kind, LineKind::ResponseItem) {
            continue;
        }
        match Item::deserialize(line.payload) {
            Ok(Item::CustomToolCall {
                call_id,
                name,
                input,
            }) if name == "apply_patch" => {
                patches.insert(call_id, patch_paths(&input));
            }
            Ok(Item::CustomToolCallOutput { call_id, output }) => {
                let text = match &output {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if text.trim_start().starts_with(REJECTED)
                    && let Some(paths) = patches.remove(&call_id)
                {
                    for path in paths {
                        if !out.paths.contains(&path) {
                            out.paths.push(path);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The files an `apply_patch` input names (`*** Add File: x`, `*** Update File: x`,
/// `*** Delete File: x`, `*** Move to: x`).
fn patch_paths(patch: &str) -> Vec<String> {
    const HEADS: [&str; 4] = [
        "*** Add File: ",
        "*** Update File: ",
        "*** Delete File: ",
        "*** Move to: ",
    ];
    let mut paths: Vec<String> = Vec::new();
    for line in patch.lines() {
        let named = HEADS
            .iter()
            .find_map(|head| line.strip_prefix(head))
            .map(str::trim)
            .filter(|p| !p.is_empty());
        if let Some(path) = named
            && !paths.iter().any(|p| p == path)
        {
            paths.push(path.to_owned());
        }
    }
    paths
}

/// Reads thread `thread`'s rollout under `codex_home` (the worker's `CODEX_HOME`, else
/// `~/.codex`) for a run that started at `started_ms` and ended at `ended_ms`.
pub(crate) fn read(
    codex_home: Option<&Path>,
    thread: &str,
    started_ms: i64,
    ended_ms: i64,
) -> Result<Refusals, RolloutError> {
    let home = codex_home.ok_or(RolloutError::NoHome)?;
    let sessions = home.join("sessions");
    let path =
        find(&sessions, thread, started_ms, ended_ms).ok_or_else(|| RolloutError::NotFound {
            sessions: sessions.clone(),
            thread: thread.to_owned(),
        })?;
    let bytes = std::fs::read(&path).map_err(|source| RolloutError::Read {
        path: path.clone(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let found = refusals(&text);
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
    if found.garbled_lines == lines {
        return Err(RolloutError::Garbled { path, lines });
    }
    Ok(Refusals {
        rollout: path,
        ..found
    })
}

/// The rollout file of `thread`: codex names the day's directory and the file by its local
/// time, which oxi does not know, so every day from the day before the run started (in UTC)
/// to the day after it ended is looked in.
fn find(sessions: &Path, thread: &str, started_ms: i64, ended_ms: i64) -> Option<PathBuf> {
    let suffix = format!("-{thread}.jsonl");
    let day = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .ok()
            .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date())
    };
    let (first, last) = (day(started_ms)?, day(ended_ms)?);
    let mut date = first.yesterday().ok()?;
    let end = last.tomorrow().ok()?;
    while date <= end {
        let dir = sessions
            .join(format!("{:04}", date.year()))
            .join(format!("{:02}", date.month()))
            .join(format!("{:02}", date.day()));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let hit = entries.flatten().map(|e| e.path()).find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("rollout-") && n.ends_with(&suffix))
            });
            if hit.is_some() {
                return hit;
            }
        }
        date = date.tomorrow().ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURE: &str = include_str!("../../../fixtures/captures/codex-read-only.rollout.jsonl");
    const THREAD: &str = "01a22b51-c1b2-7ae2-a5de-6d947977dda3";

    #[test]
    fn a_captured_read_only_refusal_names_the_patched_file() {
        let found = refusals(CAPTURE);
        assert_eq!(found.paths, ["planner-was-here.txt"]);
        assert_eq!(found.garbled_lines, 0);
    }

    #[test]
    fn an_applied_patch_unknown_lines_and_garbage_are_no_refusals() {
        // The capture's patch output replaced by codex's success text: nothing was refused.
        let applied = CAPTURE.replace(
            "patch rejected: writing is blocked by read-only sandbox; rejected by user approval settings",
            "Exit code: 0\\nOutput:\\nSuccess. Updated the following files:\\nA planner-was-here.txt",
        );
        assert!(refusals(&applied).paths.is_empty());
        let odd = format!(
            "{{\"type\":\"from_the_future\",\"payload\":{{\"x\":1}}}}\nnot json at all\n{CAPTURE}{{\"type\":\"response_item\",\"payload\":{{\"type\":\"new_item\"}}}}\n"
        );
        let found = refusals(&odd);
        assert_eq!(found.paths, ["planner-was-here.txt"]);
        assert_eq!(found.garbled_lines, 1);
    }

    #[test]
    fn every_file_of_a_refused_patch_is_named_once() {
        let call = |id: &str, patch: &str| {
            serde_json::json!({"type": "response_item", "payload": {"type": "custom_tool_call", "call_id": id, "name": "apply_patch", "input": patch}}).to_string()
        };
        let output = |id: &str, text: &str| {
            serde_json::json!({"type": "response_item", "payload": {"type": "custom_tool_call_output", "call_id": id, "output": text}}).to_string()
        };
        let text = [
            call(
                "a",
                "*** Begin Patch\n*** Update File: src/lib.rs\n@@\n-x\n+y\n*** Move to: src/new.rs\n*** Delete File: old.txt\n*** End Patch\n",
            ),
            output("a", "patch rejected: writing is blocked by read-only sandbox"),
            call("b", "*** Begin Patch\n*** Add File: ok.txt\n+hi\n*** End Patch\n"),
            output("b", "Success."),
            call("c", "*** Begin Patch\n*** Add File: src/lib.rs\n+again\n*** End Patch\n"),
            output("c", "patch rejected: writing is blocked by read-only sandbox"),
        ]
        .join("\n");
        assert_eq!(
            refusals(&text).paths,
            ["src/lib.rs", "src/new.rs", "old.txt"]
        );
    }

    fn home_with(day: &str, name: &str, text: &str) -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("sessions").join(day);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
        home
    }

    /// 2026-11-30T07:18:28Z, when the capture was made.
    const AT: i64 = 1_796_023_108_000;

    #[test]
    fn the_rollout_is_found_by_thread_in_the_days_around_the_run() {
        let name = format!("rollout-2026-12-01T00-30-00-{THREAD}.jsonl");
        // Codex's local time may already be the next day.
        let home = home_with("2026/12/01", &name, CAPTURE);
        let found = read(Some(home.path()), THREAD, AT, AT + 5_000).unwrap();
        assert_eq!(found.paths, ["planner-was-here.txt"]);
        assert!(found.rollout.ends_with(&name));
        // Another thread's rollout is not this one's.
        let err = read(Some(home.path()), "other-thread", AT, AT).unwrap_err();
        assert!(matches!(err, RolloutError::NotFound { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("no rollout for thread other-thread")
        );
    }

    #[test]
    fn a_missing_home_or_a_garbled_rollout_is_an_error_never_a_panic() {
        assert!(matches!(
            read(None, THREAD, AT, AT),
            Err(RolloutError::NoHome)
        ));
        let name = format!("rollout-2026-11-30T07-18-28-{THREAD}.jsonl");
        let home = home_with("2026/11/30", &name, "\u{0}\u{1}garbage\n{not json\n");
        let err = read(Some(home.path()), THREAD, AT, AT).unwrap_err();
        assert!(
            matches!(err, RolloutError::Garbled { lines: 2, .. }),
            "{err}"
        );
        // A cut-off last line is counted, and what came before still counts.
        let cut = &CAPTURE[..CAPTURE.len() - 40];
        let home = home_with("2026/11/30", &name, cut);
        let found = read(Some(home.path()), THREAD, AT, AT).unwrap();
        assert_eq!(found.paths, ["planner-was-here.txt"]);
        assert_eq!(found.garbled_lines, 1);
    }
}
