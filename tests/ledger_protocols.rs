//! What the ledger stores is read back unchanged: a ledger written by oxi 7d650eb (before event
//! payloads, hold kinds and failure classes became types; see
//! tests/fixtures/ledger_protocols/make.sh) gives the same `oxi show`, `oxi tasks` and
//! `oxi report` as that version printed (the snapshots were taken with it).

use crate::support::Sandbox;

/// The configuration the fixture was written under (its worker command aside).
const CONFIG: &str = r#"[run]
mode = "fast"
max_parallel_jobs = 2

[workers.offline]
kind = "claude"
command = ["oxi-fake-worker"]
model = "claude-sonnet-4-5"

[routing]
executor = ["offline"]
reviewer = ["offline"]

[governance]
needs_approval = ["notes/security.md"]

[caps]
max_attempts = 1
job_usd = 0.001
estimate_floor_usd = 0.0005
"#;

const TASKS: [&str; 9] = [
    "T0-1", "T0-2", "T1-1", "T2-1", "T2-2", "T2-3", "T2-4", "T2-5", "T2-6",
];

/// A sandbox holding a copy of the fixture ledger (opening it migrates the copy).
fn old_ledger() -> Sandbox {
    let s = Sandbox::empty();
    s.write("oxi.toml", CONFIG);
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ledger_protocols/ledger.db");
    std::fs::create_dir_all(s.file(".oxi")).unwrap();
    std::fs::copy(fixture, s.file(".oxi/ledger.db")).unwrap();
    s
}

fn text(s: &Sandbox, args: &[&str]) -> String {
    s.oxi(args)
        .ok()
        .replace(&s.path().display().to_string(), "[DIR]")
}

fn json(s: &Sandbox, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&text(s, args)).unwrap()
}

#[test]
fn show_of_an_old_ledger_is_unchanged() {
    let s = old_ledger();
    let mut tables = String::new();
    for id in TASKS {
        tables.push_str(&text(&s, &["show", id]));
        tables.push_str("\n----\n");
    }
    insta::assert_snapshot!("old_ledger_show", tables);
    let mut shown: Vec<serde_json::Value> = TASKS
        .iter()
        .map(|id| json(&s, &["show", id, "--format", "json"]))
        .collect();
    // A field added to the task since (the hold kind) is checked below, not in the snapshot.
    for task in &mut shown {
        if let Some(t) = task["task"].as_object_mut() {
            t.remove("hold_kind");
        }
    }
    insta::assert_json_snapshot!("old_ledger_show_json", shown);
}

#[test]
fn tasks_of_an_old_ledger_are_unchanged() {
    let s = old_ledger();
    insta::assert_snapshot!("old_ledger_tasks", text(&s, &["tasks"]));
    insta::assert_json_snapshot!(
        "old_ledger_tasks_json",
        json(&s, &["tasks", "--format", "json"])
    );
}

#[test]
fn report_of_an_old_ledger_is_unchanged() {
    let s = old_ledger();
    let mut report = json(&s, &["report", "--format", "json", "--since", "all"]);
    // These follow the clock, not the ledger.
    for key in ["generated_at", "day_spend_usd", "month_spend_usd"] {
        report.as_object_mut().unwrap().remove(key);
    }
    insta::assert_json_snapshot!("old_ledger_report_json", report);
}

#[test]
fn every_event_of_an_old_ledger_reads_as_its_type_and_writes_back_the_same_json() {
    let s = old_ledger();
    let conn = rusqlite::Connection::open(s.file(".oxi/ledger.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, kind, data FROM events ORDER BY id")
        .unwrap();
    let rows: Vec<(i64, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(rows.len() > 100, "the fixture holds {} events", rows.len());
    for (id, kind, text) in rows {
        let data: serde_json::Value = serde_json::from_str(&text).unwrap();
        let event = oxi::ledger::Event::parse(&kind, &data)
            .unwrap_or_else(|| panic!("event {id} ({kind}) does not read as its type: {text}"));
        assert_eq!(event.kind().as_str(), kind);
        assert_eq!(
            event.data().to_string(),
            text,
            "event {id} ({kind}) writes back differently"
        );
    }
}

#[test]
fn the_migration_gives_old_holds_the_kind_their_reason_meant() {
    let s = old_ledger();
    let kind = |id: &str| json(&s, &["show", id, "--format", "json"])["task"]["hold_kind"].clone();
    assert_eq!(kind("T2-4"), "needs_approval");
    assert_eq!(kind("T2-6"), "over_estimate");
    assert_eq!(kind("T2-5"), serde_json::Value::Null, "not held");
    assert_eq!(kind("T0-2"), serde_json::Value::Null);
    // `oxi approve` acts on the kind as it acted on the reason before.
    let approved = text(&s, &["approve", "T2-6"]);
    assert_eq!(
        approved,
        "T2-6: held -> queued; the next tick runs it despite the estimate\n"
    );
    let approved = text(&s, &["approve", "T2-4"]);
    assert_eq!(
        approved,
        "T2-4: held -> deliver_pending; the next tick delivers it\n"
    );
    assert_eq!(kind("T2-4"), serde_json::Value::Null, "no longer held");
}
