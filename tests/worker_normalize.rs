//! The normalizers on what the pinned CLI versions really printed (fixtures/captures), line by
//! line, and the classification of every recorded scenario.

use oxi::config::{RateCard, WorkerKind};
use oxi::process::StopReason;
use oxi::worker::{self, Accumulator, Classification, Ending, Event, Normalized, Tokens};

use crate::support::fixture;

fn replay(kind: WorkerKind, name: &str) -> (Vec<Event>, Accumulator) {
    let text = std::fs::read(fixture(&format!("captures/{name}.jsonl"))).unwrap();
    let adapter = worker::adapter(kind);
    let mut events = Vec::new();
    let mut acc = Accumulator::default();
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match adapter.normalize(line) {
            Normalized::Events(evs) => {
                for e in evs {
                    acc.observe(&e);
                    events.push(e);
                }
            }
            Normalized::ParseFailure { reason } => {
                panic!(
                    "{name}: parse failure {reason} on {}",
                    String::from_utf8_lossy(line)
                )
            }
        }
    }
    (events, acc)
}

fn ending(code: i32) -> Ending {
    Ending {
        exit_code: Some(code),
        signal: None,
        stop: None,
    }
}

#[test]
fn every_recorded_scenario_classifies_as_observed() {
    let cases: &[(WorkerKind, &str, Ending, Classification)] = &[
        (
            WorkerKind::Claude,
            "claude-edit",
            ending(0),
            Classification::Success,
        ),
        (
            WorkerKind::Claude,
            "claude-edit-haiku",
            ending(0),
            Classification::Success,
        ),
        (
            WorkerKind::Claude,
            "claude-edit-acceptedits-nosandboxenv",
            ending(0),
            Classification::Success,
        ),
        (
            WorkerKind::Claude,
            "claude-429-then-ok",
            ending(0),
            Classification::Success,
        ),
        (
            WorkerKind::Claude,
            "claude-429",
            ending(1),
            Classification::RateLimited,
        ),
        (
            WorkerKind::Claude,
            "claude-429-maxretries1",
            ending(1),
            Classification::RateLimited,
        ),
        (
            WorkerKind::Claude,
            "claude-500",
            ending(1),
            Classification::Transient,
        ),
        (
            WorkerKind::Claude,
            "claude-down",
            ending(1),
            Classification::Transient,
        ),
        (
            WorkerKind::Codex,
            "codex-edit",
            ending(0),
            Classification::Success,
        ),
        (
            WorkerKind::Codex,
            "codex-edit-sandbox-workspace-write",
            ending(0),
            Classification::Success,
        ),
        (
            WorkerKind::Codex,
            "codex-429-then-ok",
            ending(0),
            Classification::Success,
        ),
        (
            WorkerKind::Codex,
            "codex-429",
            ending(1),
            Classification::RateLimited,
        ),
        (
            WorkerKind::Codex,
            "codex-429-no-retry-after",
            ending(1),
            Classification::RateLimited,
        ),
        (
            WorkerKind::Codex,
            "codex-500",
            ending(1),
            Classification::Transient,
        ),
        (
            WorkerKind::Codex,
            "codex-500-noretry",
            ending(1),
            Classification::Transient,
        ),
        (
            WorkerKind::Codex,
            "codex-down-bounded",
            ending(1),
            Classification::Transient,
        ),
        (
            WorkerKind::Codex,
            "codex-down",
            Ending {
                exit_code: None,
                signal: Some(15),
                stop: Some(StopReason::Stalled),
            },
            Classification::Stalled,
        ),
    ];
    for (kind, name, end, expected) in cases {
        let (_, acc) = replay(*kind, name);
        assert!(
            acc.unknown_types.is_empty(),
            "{name}: unknown {:?}",
            acc.unknown_types
        );
        assert_eq!(worker::classify(&acc, end), *expected, "{name}");
    }
}

#[test]
fn claude_usage_and_cost_come_from_the_result_line() {
    let (events, acc) = replay(WorkerKind::Claude, "claude-edit");
    assert_eq!(
        acc.tokens,
        Tokens {
            input: 3000,
            cached_input: 400,
            cache_write_input: 200,
            output: 100,
            reasoning: 0
        }
    );
    assert_eq!(acc.cost(None), Some(12_680));
    assert_eq!(
        acc.session_id.as_deref(),
        Some("153c087a-d0a1-42cf-9494-953019647e2c")
    );
    assert_eq!(
        acc.files_changed,
        vec!["/home/dev/runs/claude-edit/repo/hello.txt"]
    );
    insta::assert_json_snapshot!("claude_edit_events", events);
}

#[test]
fn codex_usage_is_priced_with_the_rate_card() {
    let (events, acc) = replay(WorkerKind::Codex, "codex-edit");
    assert_eq!(
        acc.tokens,
        Tokens {
            input: 2400,
            cached_input: 400,
            cache_write_input: 0,
            output: 100,
            reasoning: 40
        }
    );
    let card = RateCard {
        input_per_mtok: 1.25,
        cached_input_per_mtok: Some(0.125),
        output_per_mtok: 10.0,
        reasoning_per_mtok: None,
    };
    // 2000 * 1.25 + 400 * 0.125 + 100 * 10 = 3550 micro-USD.
    assert_eq!(acc.cost(Some(&card)), Some(3_550));
    assert_eq!(acc.cost(None), None, "codex reports no cost of its own");
    insta::assert_json_snapshot!("codex_edit_events", events);
}

#[test]
fn rate_limit_retry_delay_is_kept() {
    let (_, acc) = replay(WorkerKind::Claude, "claude-429");
    assert!(acc.rate_limited);
    assert!(acc.retry_after_ms.is_some());
}

#[test]
fn garbage_and_wrong_shapes_never_panic() {
    for kind in [WorkerKind::Claude, WorkerKind::Codex] {
        let adapter = worker::adapter(kind);
        for line in [
            &b"not json"[..],
            b"",
            b"[1,2,3]",
            b"{\"type\":42}",
            b"{\"type\":\"assistant\",\"message\":\"wrong shape\"}",
            b"{\"type\":\"item.completed\",\"item\":{\"type\":\"file_change\",\"changes\":\"x\"}}",
            b"{\"type\":\"brand.new\",\"x\":1}",
            b"\xff\xfe\x00",
        ] {
            match adapter.normalize(line) {
                Normalized::ParseFailure { .. } => {}
                Normalized::Events(events) => {
                    // Valid JSON objects of unknown shape are kept, typed as unknown.
                    assert!(
                        events.iter().all(|e| matches!(e, Event::Unknown { .. })),
                        "{kind}: {:?} -> {events:?}",
                        String::from_utf8_lossy(line)
                    );
                }
            }
        }
    }
}
