//! Roadmap parsing on the three seed shapes, bad input, and idempotent ingest.

use std::path::Path;

use oxi::ledger::{Ledger, TaskState, Transition};
use oxi::roadmap::{self, RoadmapError, ingest};

use crate::support::{Sandbox, fixture_text};

/// The parts of an item worth pinning in a snapshot (bodies trimmed to their first line).
fn summary(r: &roadmap::Roadmap) -> serde_json::Value {
    let items: Vec<_> = r
        .items
        .iter()
        .map(|i| {
            serde_json::json!({
                "id": i.id,
                "line": i.line,
                "tier": i.priority_tier,
                "format": i.format,
                "title": i.title,
                "subtitle": i.subtitle,
                "section": i.section,
                "milestone": i.milestone,
                "depends_on": i.depends_on,
                "file_hints": i.file_hints,
                "done": i.done,
                "body_start": i.body.lines().next().unwrap_or("").chars().take(72).collect::<String>(),
            })
        })
        .collect();
    serde_json::json!({ "items": items, "warnings": r.warnings })
}

fn parse_fixture(name: &str) -> roadmap::Roadmap {
    let text = fixture_text(&format!("roadmaps/{name}"));
    roadmap::parse(text.as_bytes(), Path::new(name), 1).unwrap()
}

#[test]
fn ancestor_roadmap_yields_exactly_the_35_open_items() {
    let r = parse_fixture("oxi-ancestor.md");
    let ids: Vec<&str> = r.items.iter().map(|i| i.id.as_str()).collect();
    let mut expected = vec!["T0-104", "T0-105", "T1-19", "T2-43", "T2-44", "T2-45"];
    let t2_early: Vec<String> = (12..=16).map(|n| format!("T2-{n}")).collect();
    let t2_late: Vec<String> = (30..=42).map(|n| format!("T2-{n}")).collect();
    let t1_b: Vec<String> = (1..=11).map(|n| format!("T1-B{n}")).collect();
    expected.extend(t2_early.iter().map(String::as_str));
    expected.extend(t2_late.iter().map(String::as_str));
    expected.extend(t1_b.iter().map(String::as_str));
    assert_eq!(ids, expected);
    assert!(r.items.iter().all(|i| !i.done));
    // Tiers come from the ids.
    for item in &r.items {
        let tier: u8 = item.id[1..2].parse().unwrap();
        assert_eq!(item.priority_tier, tier, "{}", item.id);
    }
    // Ids listed only under "Done" are not items.
    for done in ["T0-1", "T0-101", "T1-3", "T2-8", "T3-1"] {
        assert!(!ids.contains(&done), "{done} is only listed as done");
    }
    let t2_41 = r.items.iter().find(|i| i.id == "T2-41").unwrap();
    assert_eq!(t2_41.depends_on, vec!["T2-37"]);
    insta::assert_json_snapshot!("ingest_ancestor", summary(&r));
}

#[test]
fn milestone_roadmap_records_the_milestone() {
    let r = parse_fixture("milestones.md");
    let ids: Vec<&str> = r.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "T-022", "T-023", "T-024", "T-025", "T-026", "T-027", "T-028", "T-029", "T-030"
        ]
    );
    let t026 = &r.items[4];
    assert!(
        t026.milestone
            .as_deref()
            .unwrap()
            .starts_with("Milestone M2")
    );
    assert_eq!(
        t026.subtitle.as_deref(),
        Some("approve QC/missions gated by role")
    );
    insta::assert_json_snapshot!("ingest_milestones", summary(&r));
}

#[test]
fn checklist_roadmap_yields_the_11_action_items_with_stable_ids() {
    let r = parse_fixture("checklist.md");
    assert_eq!(r.items.len(), 11);
    assert!(
        r.items
            .iter()
            .all(|i| i.derived_id && i.id.starts_with("C-"))
    );
    assert_eq!(r.items[0].section.as_deref(), Some("Action items"));
    let again = parse_fixture("checklist.md");
    assert_eq!(r.items, again.items);
    insta::assert_json_snapshot!("ingest_checklist", summary(&r));
}

#[test]
fn checked_items_and_done_sections_are_recorded_done() {
    let text = "## Now\n- [ ] write docs\n- [x] ship it\n\n## Done\n**T0-1 · old thing**\n";
    let r = roadmap::parse(text.as_bytes(), Path::new("r.md"), 1).unwrap();
    let done: Vec<(bool, &str)> = r.items.iter().map(|i| (i.done, i.title.as_str())).collect();
    assert_eq!(
        done,
        [
            (false, "write docs"),
            (true, "ship it"),
            (true, "old thing")
        ]
    );
}

fn parse_err(bytes: &[u8]) -> String {
    roadmap::parse(bytes, Path::new("roadmap.md"), 1)
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_input_errors_name_the_line() {
    insta::assert_snapshot!(
        "bad_invalid_utf8",
        parse_err(b"**T0-1 \xc2\xb7 ok**\nT0-2 \xff\xfe broken\n")
    );
    insta::assert_snapshot!("bad_nul", parse_err(b"- [ ] a\n- [ ] b\0\n"));
    insta::assert_snapshot!(
        "bad_duplicate",
        parse_err("**T0-1 · first**\n\n**T0-1 · second**\n".as_bytes())
    );
    insta::assert_snapshot!(
        "bad_duplicate_checklist",
        parse_err(b"- [ ] same text\n- [ ] Same  text\n")
    );
}

#[test]
fn zero_items_lists_the_formats_and_quotes_the_near_miss() {
    // The ancestor's classic: a typographic dash inside the id.
    insta::assert_snapshot!(
        "bad_zero_items_en_dash",
        parse_err("# Roadmap\n\nSome intro.\n\n**T0–104 · file-overlap gate**\n".as_bytes())
    );
    insta::assert_snapshot!(
        "bad_zero_items_no_separator",
        parse_err(b"# Roadmap\n\nT0-104 file-overlap gate\n")
    );
    insta::assert_snapshot!(
        "bad_zero_items_nothing",
        parse_err(b"# Just prose\n\nHello.\n")
    );
}

#[test]
fn huge_lines_are_skipped_with_a_warning_and_escaping_hints_dropped() {
    let mut text = String::from("**T0-1 · ok**\nTouch `src/a.rs` and `../../etc/passwd`.\n");
    text.push_str(&"x".repeat(roadmap::MAX_LINE_BYTES + 1));
    text.push_str("\n- [ ] after the blob\n");
    let r = roadmap::parse(text.as_bytes(), Path::new("r.md"), 1).unwrap();
    assert_eq!(r.items.len(), 2);
    assert_eq!(r.items[0].file_hints, vec!["src/a.rs"]);
    let messages: Vec<String> = r
        .warnings
        .iter()
        .map(|w| format!("{}: {}", w.line, w.message))
        .collect();
    insta::assert_json_snapshot!("warnings_huge_line_and_escape", messages);
}

#[test]
fn too_large_is_an_error_not_an_allocation_spree() {
    let big = vec![b'a'; roadmap::MAX_ROADMAP_BYTES + 1];
    assert!(matches!(
        roadmap::parse(&big, Path::new("r.md"), 1),
        Err(RoadmapError::TooLarge { .. })
    ));
}

fn apply(ledger: &mut Ledger, text: &str) -> ingest::IngestSummary {
    let r = roadmap::parse(text.as_bytes(), Path::new("roadmap.md"), 1).unwrap();
    ingest::apply(
        ledger,
        &r,
        "roadmap.md",
        &ingest::roadmap_hash(text.as_bytes()),
        1_000,
    )
    .unwrap()
}

#[test]
fn reingest_is_idempotent_and_tracks_edits_removals_and_checkboxes() {
    let mut ledger = Ledger::open_in_memory().unwrap();
    let v1 = "**T0-1 · one**\n**T0-2 · two**\n**T0-3 · three**\n- [ ] tidy up\n";
    let first = apply(&mut ledger, v1);
    assert_eq!(first.added.len(), 4);

    let second = apply(&mut ledger, v1);
    assert!(second.added.is_empty() && second.updated.is_empty());
    assert_eq!(second.unchanged, 4);
    assert_eq!(ledger.read().tasks().unwrap().len(), 4);

    // T0-2 is in flight; T0-3 gets new text; T0-1 leaves; the checklist item is checked.
    ledger
        .write(|q| {
            q.transition_task(
                "T0-2",
                &Transition::by_oxi(TaskState::Queued, TaskState::Dispatched, "test"),
                2_000,
            )
        })
        .unwrap();
    let v2 = "**T0-3 · three, reworded**\n- [x] tidy up\n";
    let third = apply(&mut ledger, v2);
    assert_eq!(third.updated, vec!["T0-3"]);
    assert_eq!(third.abandoned, vec!["T0-1"]);
    assert_eq!(third.in_flight_untouched, vec!["T0-2"]);
    assert_eq!(third.marked_done.len(), 1);

    fn state(ledger: &Ledger, id: &str) -> TaskState {
        ledger.read().task(id).unwrap().unwrap().state
    }
    assert_eq!(state(&ledger, "T0-1"), TaskState::Abandoned);
    assert_eq!(state(&ledger, "T0-2"), TaskState::Dispatched);
    assert_eq!(
        ledger.read().task("T0-3").unwrap().unwrap().spec.title,
        "three, reworded"
    );

    // Unchecking reopens; an abandoned item that comes back is queued again.
    let v3 = "**T0-1 · one**\n**T0-3 · three, reworded**\n- [ ] tidy up\n";
    let fourth = apply(&mut ledger, v3);
    assert_eq!(fourth.reopened.len(), 2);
    assert_eq!(state(&ledger, "T0-1"), TaskState::Queued);
}

#[test]
fn cli_ingest_then_plan_json_is_in_dispatch_order_with_held_reasons() {
    let s = Sandbox::initialised(
        "## Tier 1\n**T1-1 · first**\n\n## Tier 0\n**T0-9 · urgent**\nDepends on T2-5.\n\n## Tier 2\n**T2-5 · groundwork**\n**T2-6 · later**\nDepends on T1-1.\n",
    );
    insta::assert_snapshot!("cli_ingest_summary", s.oxi(&["ingest"]).ok());
    let plan = s.oxi(&["plan", "--dry-run", "--format", "json"]).json();
    let rows: Vec<(String, u64, String, Option<String>)> = plan
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                t["priority_tier"].as_u64().unwrap(),
                t["state"].as_str().unwrap().to_owned(),
                t["held_reason"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("T2-5".into(), 2, "queued".into(), None),
            (
                "T0-9".into(),
                0,
                "queued".into(),
                Some("depends on T2-5 (queued)".into())
            ),
            ("T1-1".into(), 1, "queued".into(), None),
            (
                "T2-6".into(),
                2,
                "queued".into(),
                Some("depends on T1-1 (queued)".into())
            ),
        ]
    );
    insta::assert_snapshot!("cli_plan_table", s.oxi(&["plan", "--dry-run"]).ok());
    // Re-ingest through the CLI changes nothing.
    let again = s.oxi(&["ingest", "--format", "json"]).json();
    assert_eq!(again["added"].as_array().unwrap().len(), 0);
    assert_eq!(again["unchanged"], 4);
}

#[test]
fn cli_zero_items_is_exit_5_with_the_near_miss() {
    let s = Sandbox::initialised("# Roadmap\n\n- T0‑1 · non-breaking hyphen in the id\n");
    let stderr = s.oxi(&["ingest"]).fails_with(5).to_owned();
    assert!(stderr.contains("roadmap.md:3"), "{stderr}");
    assert!(stderr.contains("plain hyphen"), "{stderr}");
    // Nothing was recorded.
    assert_eq!(
        s.oxi(&["status", "--format", "json"]).json()["tasks_total"],
        0
    );
}
