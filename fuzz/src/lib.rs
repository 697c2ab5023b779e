//! Checks shared by the fuzz targets in `fuzz_targets/`.

use oxi::config::{RateCard, WorkerKind};
use oxi::worker::{Accumulator, Ending, Event, Normalized, adapter, classify};

/// `TEXT_CLIP` in src/worker/{claude,codex}.rs (private there), plus room for the
/// `… [N more bytes]` marker `clip` appends.
const CLIPPED_MAX: usize = 16 * 1024 + 64;

/// Feeds `data` to `kind`'s adapter the way `runner::recorder` does: split into lines on
/// `\n` (a trailing `\r` dropped, as `process` does), all-whitespace lines skipped, each line
/// normalized, every event serialized (events.jsonl) and observed by one `Accumulator`; then
/// the accumulator is priced and classified.
pub fn check_stream(kind: WorkerKind, data: &[u8]) {
    let adapter = adapter(kind);
    let mut acc = Accumulator::default();
    for line in data.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let normalized = adapter.normalize(line);
        let is_object = matches!(
            serde_json::from_slice::<serde_json::Value>(line),
            Ok(serde_json::Value::Object(_))
        );
        match normalized {
            Normalized::Events(events) => {
                for event in &events {
                    check_event(event);
                    acc.observe(event);
                }
            }
            Normalized::ParseFailure { reason } => {
                // Valid JSON of an unknown shape is kept as `unknown`, never a parse failure.
                assert!(!is_object, "a JSON object became a parse failure: {reason}");
                acc.parse_failures += 1;
            }
        }
    }
    let card = RateCard {
        input_per_mtok: 3.0,
        cached_input_per_mtok: Some(0.3),
        output_per_mtok: 15.0,
        reasoning_per_mtok: None,
    };
    let _ = acc.running_tokens();
    let _ = acc.cost(Some(&card));
    let _ = acc.cost(None);
    let ending = Ending {
        exit_code: Some(0),
        signal: None,
        stop: None,
    };
    let _ = classify(&acc, &ending);
    let _ = serde_json::to_string(&acc);
}

fn check_event(event: &Event) {
    if let Err(e) = serde_json::to_string(event) {
        panic!("event not serializable: {e}: {event:?}");
    }
    let clipped = match event {
        Event::Message { text } => Some(text),
        Event::ToolResult { content, .. } => Some(content),
        Event::Command { output, .. } => Some(output),
        _ => None,
    };
    if let Some(text) = clipped {
        assert!(
            text.len() <= CLIPPED_MAX,
            "{} text of {} bytes was not clipped",
            event.kind(),
            text.len()
        );
    }
}
