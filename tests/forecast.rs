//! `oxi plan --forecast` through the binary: on a seeded ledger (three finished tasks with
//! fixed costs and durations, two open) the figures are fixed; with no history it says so and
//! what it assumed.

use oxi::ledger::Ledger;
use serde_json::Value;

use crate::support::{OxiToml, Sandbox, Worker};

const ROADMAP: &str = "# Roadmap\n\n## Tier 0\n\n**T0-1 · One**\nx\n\n**T0-2 · Two**\nx\n\n**T0-3 · Three**\nx\n\n**T0-4 · Four**\nx\n\n**T0-5 · Five**\nx\n";

fn sandbox() -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.config(
        &OxiToml::new()
            .project()
            .worker(Worker::fake("fake"))
            .routing(&["fake"], &["fake"])
            .raw("[caps]\ndaily_usd = 1.5\ndaily_soft_warn_usd = 1.0\njob_usd = 1.5\nestimate_floor_usd = 0.25\njob_runtime = \"40m\"\n"),
    );
    s.oxi(&["ingest"]).ok();
    s
}

/// Marks `task` done with one executor run of `cost_usd` lasting `minutes`, in 2020.
fn finished(s: &Sandbox, task: &str, cost_usd: f64, minutes: i64) {
    let mut ledger = Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap();
    let conn = ledger.raw_connection();
    conn.execute("UPDATE tasks SET state = 'done' WHERE id = ?1", [task])
        .unwrap();
    let started: i64 = 1_577_836_800_000; // 2020-01-01
    conn.execute(
        "INSERT INTO runs (id, task_id, role, worker, worker_kind, status, classification,
                           started_at_ms, ended_at_ms, cost_microusd)
         VALUES (?1, ?2, 'executor', 'fake', 'claude', 'finished', 'success', ?3, ?4, ?5)",
        rusqlite::params![
            format!("run-{task}"),
            task,
            started,
            started + minutes * 60_000,
            (cost_usd * 1_000_000.0).round() as i64
        ],
    )
    .unwrap();
}

/// The next two months' dates replaced by their distance from today, so the snapshot does not move with the calendar.
fn undated(text: &str) -> String {
    let day = |offset: i64| {
        jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_hours(24 * offset))
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .strftime("%Y-%m-%d")
            .to_string()
    };
    (0..=60).fold(text.to_owned(), |text, n| {
        text.replace(&day(n), &format!("<today+{n}>"))
    })
}

#[test]
fn a_seeded_ledger_gives_fixed_figures() {
    let s = sandbox();
    finished(&s, "T0-1", 0.40, 10);
    finished(&s, "T0-2", 0.60, 20);
    finished(&s, "T0-3", 1.00, 30);
    let text = s.oxi(&["plan", "--forecast"]);
    insta::assert_snapshot!("forecast_seeded", undated(text.ok()));
    let json = s.oxi(&["plan", "--forecast", "--format", "json"]);
    let mut value: Value = serde_json::from_str(&undated(json.ok())).unwrap();
    // Two open tasks at p50 $0.60 / p90 $1.00 each; 20 / 30 minutes each on one slot; a $1.50
    // daily cap: today at p50, tomorrow at p90.
    assert_eq!(value["cost_usd"]["p50"], 1.2);
    assert_eq!(value["cost_usd"]["p90"], 2.0);
    assert_eq!(value["days"]["p50"], 0.0);
    assert_eq!(value["days"]["p90"], 1.0);
    value["spent_today_usd"] = Value::from(0.0);
    insta::assert_json_snapshot!("forecast_seeded_json", value);
}

#[test]
fn with_no_history_it_says_what_it_assumed() {
    let s = sandbox();
    let text = s.oxi(&["plan", "--forecast"]);
    let out = undated(text.ok());
    assert!(
        out.contains("too little history: 0 finished task(s) in the ledger, fewer than 3"),
        "{out}"
    );
    insta::assert_snapshot!("forecast_no_history", out);
}
