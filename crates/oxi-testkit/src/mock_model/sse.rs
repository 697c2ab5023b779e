//! Server-sent events exactly as both APIs frame them: an `event:` line naming the type, one
//! `data:` line of JSON, and a blank line.

use serde_json::Value;

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// The `event:` name; both APIs repeat it as the `type` field of `data`.
    pub name: String,
    /// The `data:` payload.
    pub data: Value,
}

impl SseEvent {
    /// An event whose name is taken from the payload's `type` field, as both APIs do.
    pub fn typed(data: Value) -> Self {
        let name = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message")
            .to_owned();
        Self { name, data }
    }

    /// The bytes on the wire. Compact JSON never contains a newline, so one `data:` line is
    /// always enough.
    pub fn encode(&self) -> String {
        format!("event: {}\ndata: {}\n\n", self.name, self.data)
    }
}

/// Parses an SSE body back into events (for tests and for reading captured streams). Lines
/// other than `event:` and `data:` are ignored; several `data:` lines are joined by newlines,
/// as the SSE specification says; an event whose data is not JSON is kept as a JSON string.
pub fn parse(body: &str) -> Vec<SseEvent> {
    let mut events = Vec::new();
    let mut name: Option<String> = None;
    let mut data: Vec<&str> = Vec::new();
    let mut flush = |name: &mut Option<String>, data: &mut Vec<&str>| {
        if name.is_none() && data.is_empty() {
            return;
        }
        let joined = data.join("\n");
        let value = serde_json::from_str(&joined).unwrap_or_else(|_| Value::String(joined.clone()));
        events.push(SseEvent {
            name: name.take().unwrap_or_else(|| "message".to_owned()),
            data: value,
        });
        data.clear();
    };
    for line in body.lines() {
        if line.is_empty() {
            flush(&mut name, &mut data);
        } else if let Some(rest) = line.strip_prefix("event:") {
            name = Some(rest.trim_start().to_owned());
        } else if let Some(rest) = line.strip_prefix("data:") {
            data.push(rest.strip_prefix(' ').unwrap_or(rest));
        }
    }
    flush(&mut name, &mut data);
    events
}

/// Splits `text` into stream deltas of at most `max_bytes` bytes, on character boundaries.
/// Short texts still come in two pieces, as the real APIs stream them, so that clients are
/// always exercised on joining deltas.
pub fn split_text(text: &str, max_bytes: usize) -> Vec<&str> {
    let max_bytes = max_bytes.max(4);
    if text.is_empty() {
        return vec![""];
    }
    if text.len() <= max_bytes {
        let mid = floor_char_boundary(text, text.len() / 2);
        if mid == 0 {
            return vec![text];
        }
        return vec![&text[..mid], &text[mid..]];
    }
    chunk_text(text, max_bytes)
}

/// Splits `text` into pieces of at most `max_bytes` bytes, on character boundaries, without
/// splitting a short text (Codex's captured tool inputs and reasoning came in one delta).
pub fn chunk_text(text: &str, max_bytes: usize) -> Vec<&str> {
    let max_bytes = max_bytes.max(4);
    if text.len() <= max_bytes {
        return vec![text];
    }
    let mut pieces = Vec::with_capacity(text.len() / max_bytes + 1);
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = floor_char_boundary(rest, max_bytes.min(rest.len()));
        if end == 0 {
            // A character wider than max_bytes: take it whole.
            end = rest
                .char_indices()
                .nth(1)
                .map_or(rest.len(), |(index, _)| index);
        }
        pieces.push(&rest[..end]);
        rest = &rest[end..];
    }
    pieces
}

/// The largest char boundary at or below `index` (`str::floor_char_boundary` is unstable).
fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_one_event_per_frame() {
        let event = SseEvent::typed(json!({"type": "message_stop"}));
        assert_eq!(
            event.encode(),
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        );
    }

    #[test]
    fn newlines_in_payload_stay_escaped_on_one_data_line() {
        let event = SseEvent::typed(json!({"type": "x", "text": "a\nb\n\nc"}));
        let wire = event.encode();
        assert_eq!(wire.matches('\n').count(), 3, "{wire}");
        assert_eq!(parse(&wire), vec![event]);
    }

    #[test]
    fn parse_round_trips_and_joins_data_lines() {
        let events = vec![
            SseEvent::typed(json!({"type": "a", "n": 1})),
            SseEvent::typed(json!({"type": "b", "s": "ü"})),
        ];
        let wire: String = events.iter().map(SseEvent::encode).collect();
        assert_eq!(parse(&wire), events);
        let multi = parse("event: e\ndata: {\"a\":\ndata: 1}\n\n: comment\n\ndata: plain\n");
        assert_eq!(multi.len(), 2);
        assert_eq!(multi[0].data, json!({"a": 1}));
        assert_eq!(multi[1].name, "message");
        assert_eq!(multi[1].data, json!("plain"));
    }

    #[test]
    fn split_text_keeps_every_byte_and_respects_the_limit() {
        assert_eq!(split_text("done", 1024), vec!["do", "ne"]);
        assert_eq!(split_text("x", 1024), vec!["x"]);
        assert_eq!(split_text("", 1024), vec![""]);
        let text = "héllo wörld ✓ ".repeat(100);
        let pieces = split_text(&text, 16);
        assert!(pieces.iter().all(|p| p.len() <= 16 && !p.is_empty()));
        assert_eq!(pieces.concat(), text);
        assert_eq!(chunk_text("done", 1024), vec!["done"]);
        assert_eq!(chunk_text(&text, 16), pieces);
    }
}
