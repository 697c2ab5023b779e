//! The read side of the PostgreSQL ledger (`oxi status`, `tasks`, `plan`, `report`, `notify
//! status`, `gateway calls`, the issue sync, worker blocks, plans, CLI probes) against a real
//! PostgreSQL: each test body runs on a fresh SQLite ledger, then on a fresh PostgreSQL one,
//! and asserts the same answers from both.
//!
//! Event data a person edited by hand (not JSON, a number where text belongs) is written with
//! raw SQL that both dialects accept, so the report's tolerance of it is checked on both.
//! Without PostgreSQL installed the PostgreSQL half skips, printing the command that enables
//! it; under `CI=true` it fails instead.

use oxi::ledger::{
    Attempt, AttemptStatus, EventKind, GatewayCallEnd, IssueSeen, Ledger, NewGatewayCall,
    NewOutbox, NewRun, OutboxState, ProbeRow, RunEnd, TaskState, Transition, VerifyRecord,
    WorkerBlock,
};
use oxi_testkit::pg::cluster_or_skip;

use crate::support::plain_task as spec;

/// Runs `body` on a fresh SQLite ledger, then on a fresh PostgreSQL one (unless skipped).
fn on_both_backends(test: &str, body: impl Fn(&mut Ledger)) {
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = Ledger::open(&dir.path().join("ledger.db")).unwrap();
    body(&mut sqlite);
    if let Some(cluster) = cluster_or_skip(test) {
        let url = cluster.database(test).expect("create the test database");
        let mut pg = Ledger::open_postgres(&url, None).unwrap();
        body(&mut pg);
    }
}

/// Runs `sql` beside the typed layer, on whichever backend `ledger` is (what a person editing
/// the database by hand would write; the statements are valid in both dialects).
fn exec_raw(ledger: &Ledger, sql: &str) {
    let target = ledger.path().to_string_lossy().into_owned();
    if target.starts_with("postgres") {
        ::postgres::Client::connect(&target, ::postgres::NoTls)
            .unwrap()
            .batch_execute(sql)
            .unwrap();
    } else {
        rusqlite::Connection::open(&target)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
    }
}

/// An event row with hand-written data (`data` is SQL text: quote it).
fn raw_event(ledger: &Ledger, at_ms: i64, kind: EventKind, task: Option<&str>, data: &str) {
    let task = task.map_or("NULL".to_owned(), |t| format!("'{t}'"));
    exec_raw(
        ledger,
        &format!(
            "INSERT INTO events (at_ms, kind, task_id, actor, data)
             VALUES ({at_ms}, '{}', {task}, 'oxi', '{data}')",
            kind.as_str()
        ),
    );
}

fn new_run<'a>(id: &'a str, task: &'a str, role: &'a str, started: i64) -> NewRun<'a> {
    NewRun {
        id,
        task_id: Some(task),
        attempt: 1,
        role,
        worker: "codex",
        worker_kind: "codex",
        model: Some("gpt-5"),
        run_dir: "/tmp/runs/r",
        worktree: None,
        branch: None,
        started_at_ms: started,
        reserve_microusd: 1_000,
        day: "2026-11-30",
        month: "2026-11",
        actor: "oxi",
        supervisor_pid: 4242,
    }
}

fn finish(ledger: &mut Ledger, run: &str, classification: &str, cost: i64, ended: i64) {
    let end = RunEnd {
        ended_at_ms: ended,
        classification,
        cost_microusd: cost,
        input_tokens: 10,
        output_tokens: 5,
        parse_failures: 1,
        ..RunEnd::default()
    };
    assert!(ledger.write(|q| q.finish_run(run, &end)).unwrap());
}

fn gateway_call<'a>(role: &'a str, at_ms: i64) -> NewGatewayCall<'a> {
    NewGatewayCall {
        role,
        provider: "local",
        model: "m1",
        task_id: Some("T1-1"),
        day: "2026-11-30",
        month: "2026-11",
        reserve_microusd: 500,
        at_ms,
    }
}

fn call_end(cost: i64, at_ms: i64) -> GatewayCallEnd<'static> {
    GatewayCallEnd {
        outcome: "ok",
        cost_microusd: cost,
        cost_source: "header",
        tokens_in: 100,
        tokens_out: 20,
        attempts: 2,
        latency_ms: Some(40),
        error: None,
        at_ms,
    }
}

// --- oxi report / oxi show ---------------------------------------------------------------

/// The failures, governance memos, first CI results and review skips of the report's window,
/// with the hand-edited rows each query must pass over or count the way SQLite's does.
fn write_report_events(ledger: &mut Ledger) {
    use EventKind::{
        CiResult, GovernanceMemo, PrMerged, ReviewDecided, TaskStateChanged, TriageSummary,
    };
    ledger
        .write(|q| {
            q.insert_task(&spec("T1-1", 0), TaskState::Queued, 1)?;
            q.insert_task(&spec("T1-2", 1), TaskState::Queued, 1)
        })
        .unwrap();
    let failed = r#"{"from":"running","to":"failed","reason":"tests failed","failure_class":"verify_failed"}"#;
    raw_event(ledger, 50, TaskStateChanged, Some("T1-2"), failed); // before the window
    raw_event(ledger, 100, TaskStateChanged, Some("T1-1"), failed);
    raw_event(ledger, 101, TriageSummary, Some("T1-1"), "not json");
    raw_event(
        ledger,
        102,
        TriageSummary,
        Some("T1-1"),
        r#"{"summary":"the test broke"}"#,
    );
    raw_event(
        ledger,
        103,
        TriageSummary,
        Some("T1-1"),
        r#"{"summary":"a second one"}"#,
    );
    raw_event(
        ledger,
        104,
        TaskStateChanged,
        Some("T1-1"),
        r#"{"from":"failed","to":"queued"}"#,
    );
    raw_event(
        ledger,
        105,
        TaskStateChanged,
        Some("T1-1"),
        r#"{"to":"failed","reason":7}"#,
    );
    raw_event(ledger, 106, TaskStateChanged, Some("T1-2"), "garbage");
    raw_event(ledger, 107, TaskStateChanged, None, failed);

    raw_event(
        ledger,
        110,
        GovernanceMemo,
        Some("T1-1"),
        r#"{"trigger":"needs_approval"}"#,
    );
    raw_event(
        ledger,
        111,
        GovernanceMemo,
        Some("T1-1"),
        r#"{"trigger":"protected_path"}"#,
    );
    raw_event(ledger, 112, GovernanceMemo, Some("T1-1"), "oops");
    raw_event(ledger, 113, GovernanceMemo, None, "{}");

    raw_event(
        ledger,
        120,
        CiResult,
        Some("T1-1"),
        r#"{"first_pass":true,"green":true}"#,
    );
    raw_event(
        ledger,
        121,
        CiResult,
        Some("T1-1"),
        r#"{"first_pass":true,"green":1}"#,
    );
    raw_event(
        ledger,
        122,
        CiResult,
        Some("T1-2"),
        r#"{"first_pass":1,"green":true}"#,
    );
    raw_event(
        ledger,
        123,
        CiResult,
        Some("T1-2"),
        r#"{"first_pass":false,"green":true}"#,
    );
    raw_event(ledger, 124, CiResult, Some("T1-2"), "bad");

    let skipped = r#"{"decision":"auto_approve","review_skipped_reason":"small_diff:3"}"#;
    raw_event(ledger, 130, ReviewDecided, Some("T1-1"), skipped);
    raw_event(ledger, 131, ReviewDecided, Some("T1-2"), skipped);
    raw_event(
        ledger,
        132,
        ReviewDecided,
        Some("T1-2"),
        r#"{"decision":"auto_approve"}"#,
    );
    raw_event(
        ledger,
        133,
        ReviewDecided,
        Some("T1-2"),
        r#"{"decision":"approve"}"#,
    );
    raw_event(ledger, 134, ReviewDecided, Some("T1-2"), "[1");

    raw_event(ledger, 140, PrMerged, Some("T1-2"), r#"{"number":1}"#);
    raw_event(ledger, 141, PrMerged, None, r#"{"number":2}"#);
    raw_event(ledger, 142, PrMerged, Some("T1-1"), r#"{"number":3}"#);
}

#[test]
fn report_event_reads_on_both_backends() {
    on_both_backends("report_events", |ledger| {
        write_report_events(ledger);
        let q = ledger.read();

        let failed = q.report_failed_tasks(60).unwrap();
        let seen: Vec<_> = failed
            .iter()
            .map(|f| {
                (
                    f.task_id.as_str(),
                    f.at_ms,
                    f.failure_class.as_deref(),
                    f.reason.as_str(),
                    f.triage.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("T1-1", 105, None, "", None),
                (
                    "T1-1",
                    100,
                    Some("verify_failed"),
                    "tests failed",
                    Some("the test broke")
                ),
            ],
            "newest first; the triage is the first valid one before the next state change"
        );
        assert_eq!(q.report_failed_tasks(0).unwrap().len(), 3);

        assert_eq!(q.report_governance_violations(60).unwrap(), 3);
        assert_eq!(q.report_governance_violations(112).unwrap(), 2);
        assert_eq!(
            q.report_first_ci(60).unwrap(),
            (2, 1),
            "JSON true only, not 1"
        );
        let mut skips = q.report_review_skips(60).unwrap();
        skips.sort();
        assert_eq!(skips, [(None, 1), (Some("small_diff:3".to_owned()), 2)]);

        assert_eq!(q.report_count(EventKind::CiResult, 60).unwrap(), 5);
        assert_eq!(q.report_count(EventKind::CiResult, 122).unwrap(), 3);
        assert_eq!(q.report_count(EventKind::PrClosed, 0).unwrap(), 0);
        assert_eq!(
            q.report_event_times(EventKind::PrMerged, 60).unwrap(),
            [(140, "T1-2".to_owned()), (142, "T1-1".to_owned())]
        );

        let history = q.task_history("T1-1").unwrap();
        let kinds: Vec<(i64, &str)> = history
            .iter()
            .map(|(at, k, _, _)| (*at, k.as_str()))
            .collect();
        assert_eq!(kinds.first(), Some(&(100, "task_state_changed")));
        assert!(kinds.contains(&(101, "triage_summary")));
        assert!(kinds.contains(&(120, "ci_result")));
        assert!(
            !kinds.iter().any(|(_, k)| *k == "pr_merged"),
            "not a history kind"
        );
        let at = |ms: i64| history.iter().find(|(at, ..)| *at == ms).unwrap();
        assert_eq!(at(101).3, serde_json::Value::Null, "data that is not JSON");
        assert_eq!(at(102).3["summary"], "the test broke");
        assert_eq!(at(102).2, "oxi");
        assert!(q.task_history("T9-9").unwrap().is_empty());
    });
}

#[test]
fn report_run_spend_and_verify_reads_on_both_backends() {
    on_both_backends("report_runs", |ledger| {
        ledger
            .write(|q| q.insert_task(&spec("T1-1", 0), TaskState::Queued, 1))
            .unwrap();
        for (id, role, started) in [
            ("r1", "executor", 1_000),
            ("r2", "reviewer", 2_000),
            ("r3", "executor", 3_000),
            ("r4", "executor", 4_000),
            ("r0", "executor", 500),
        ] {
            ledger
                .write(|q| q.begin_run(&new_run(id, "T1-1", role, started)))
                .unwrap();
        }
        finish(ledger, "r0", "success", 1, 600);
        finish(ledger, "r1", "success", 300, 1_500);
        finish(ledger, "r2", "rejected", 200, 2_500);
        finish(ledger, "r3", "withdrawn", 0, 3_100);
        // r4 still runs.
        let q = ledger.read();
        let runs = q.report_runs(900).unwrap();
        let seen: Vec<_> = runs
            .iter()
            .map(|r| {
                (
                    r.role.as_str(),
                    r.classification.as_str(),
                    r.cost_microusd,
                    r.started_at_ms,
                    r.ended_at_ms,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("executor", "success", 300, 1_000, 1_500),
                ("reviewer", "rejected", 200, 2_000, 2_500)
            ],
            "finished, in the window, not withdrawn"
        );
        let r = &runs[0];
        assert_eq!(r.task_id.as_deref(), Some("T1-1"));
        assert_eq!(
            (r.input_tokens, r.output_tokens, r.parse_failures),
            (10, 5, 1)
        );

        let record = |run_id: &'static str, tier: &'static str, ms: u64, at_ms: i64| VerifyRecord {
            run_id,
            task_id: Some("T1-1"),
            tier,
            name: "test",
            status: "passed",
            exit_code: Some(0),
            duration_ms: ms,
            log_path: None,
            at_ms,
        };
        ledger
            .write(|q| {
                q.insert_verify_result(&record("r1", "tier1", 30, 1_000))?;
                q.insert_verify_result(&record("r1", "tier0", 7, 1_001))?;
                q.insert_verify_result(&record("r2", "tier1", 10, 1_002))?;
                q.insert_verify_result(&record("r2", "tier1", 5, 10))
            })
            .unwrap();
        let times = ledger.read().report_verify_times(900).unwrap();
        assert_eq!(times.len(), 2);
        assert_eq!(times["tier0"], [7]);
        assert_eq!(times["tier1"], [30, 10], "in the order recorded");

        let id = ledger
            .write(|q| q.begin_gateway_call(&gateway_call("triage", 1_000)))
            .unwrap();
        ledger
            .write(|q| q.end_gateway_call(id, &call_end(40, 1_100)))
            .unwrap();
        let mut other_day = gateway_call("screen", 900);
        other_day.day = "2026-11-29";
        let id = ledger.write(|q| q.begin_gateway_call(&other_day)).unwrap();
        ledger
            .write(|q| q.end_gateway_call(id, &call_end(2, 1_100)))
            .unwrap();
        let q = ledger.read();
        assert_eq!(
            q.report_spend_by_day("2026-11-01").unwrap(),
            [
                ("2026-11-29".to_owned(), 2),
                ("2026-11-30".to_owned(), 1 + 300 + 200 + 40)
            ],
            "runs and gateway calls, by day"
        );
        assert_eq!(
            q.report_spend_by_day("2026-11-30").unwrap(),
            [("2026-11-30".to_owned(), 541)]
        );
        assert!(q.report_spend_by_day("2026-12-01").unwrap().is_empty());
    });
}

// --- oxi notify status, the notifier ----------------------------------------------------

#[test]
fn notify_cursor_outbox_and_attempts_on_both_backends() {
    on_both_backends("notify", |ledger| {
        ledger
            .write(|q| q.insert_task(&spec("T1-1", 0), TaskState::Queued, 1))
            .unwrap();
        assert_eq!(ledger.read().notify_cursor().unwrap(), None);
        ledger.write(|q| q.set_notify_cursor(5, 10)).unwrap();
        ledger.write(|q| q.set_notify_cursor(7, 11)).unwrap();
        assert_eq!(ledger.read().notify_cursor().unwrap(), Some(7));

        let first = ledger.read().event_count().unwrap();
        let to_held = Transition {
            fields: oxi::ledger::TransitionFields {
                held_reason: Some("waits".into()),
                hold_kind: Some(oxi::ledger::HoldKind::Operator),
                ..Default::default()
            },
            ..Transition::by_oxi(TaskState::Queued, TaskState::Held, "test")
        };
        ledger
            .write(|q| q.transition_task("T1-1", &to_held, 100))
            .unwrap();
        let back = Transition::by_oxi(TaskState::Held, TaskState::Queued, "test");
        ledger
            .write(|q| q.transition_task("T1-1", &back, 200))
            .unwrap();
        raw_event(ledger, 150, EventKind::PrMerged, None, r#"{"number":1}"#);
        let q = ledger.read();
        let after = q.events_after(0, 100).unwrap();
        assert_eq!(after.len() as i64, q.event_count().unwrap());
        let ours: Vec<_> = after.iter().skip(usize::try_from(first).unwrap()).collect();
        assert_eq!(
            ours.iter()
                .map(|e| (e.at_ms, e.kind.as_str()))
                .collect::<Vec<_>>(),
            [
                (100, "task_state_changed"),
                (200, "task_state_changed"),
                (150, "pr_merged")
            ],
            "by id, not by time"
        );
        assert_eq!(ours[0].data["to"], "held");
        assert_eq!(ours[0].task_id.as_deref(), Some("T1-1"));
        assert_eq!(q.events_after(ours[0].id, 1).unwrap()[0].id, ours[1].id);
        assert!(q.events_after(ours[2].id, 10).unwrap().is_empty());
        assert_eq!(q.last_event_before(150).unwrap(), ours[0].id);
        assert_eq!(q.last_event_before(1_000).unwrap(), ours[2].id);
        assert_eq!(q.last_event_before(i64::MIN).unwrap(), 0);

        let kinds = q.event_kind_counts(100, 200).unwrap();
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            [
                ("pr_merged".to_owned(), 1),
                ("task_state_changed".to_owned(), 1)
            ]
        );
        let to = q.transitions_to_counts(0, 1_000).unwrap();
        assert_eq!(
            to.into_iter().collect::<Vec<_>>(),
            [("held".to_owned(), 1), ("queued".to_owned(), 1)]
        );

        let outbox = |sink: &'static str, topic: &'static str, now_ms: i64| NewOutbox {
            sink,
            topic,
            event_id: None,
            what: "a task failed",
            payload: r#"{"text":"T1-1 failed"}"#,
            now_ms,
        };
        assert!(
            ledger
                .write(|q| q.queue_notification(&outbox("slack", "t1", 10)))
                .unwrap()
        );
        assert!(
            !ledger
                .write(|q| q.queue_notification(&outbox("slack", "t1", 11)))
                .unwrap()
        );
        assert!(
            ledger
                .write(|q| q.queue_notification(&outbox("slack", "t2", 20)))
                .unwrap()
        );
        assert!(
            ledger
                .write(|q| q.queue_notification(&outbox("hook", "t1", 30)))
                .unwrap()
        );
        let q = ledger.read();
        assert!(q.notification_queued("slack", "t1").unwrap());
        assert!(!q.notification_queued("hook", "t2").unwrap());
        let due = q.due_notifications(20, 10).unwrap();
        let topics: Vec<_> = due
            .iter()
            .map(|r| (r.sink.as_str(), r.topic.as_str()))
            .collect();
        assert_eq!(topics, [("slack", "t1"), ("slack", "t2")]);
        assert_eq!(q.due_notifications(20, 1).unwrap().len(), 1);
        let row = &due[0];
        assert_eq!(
            (row.state, row.attempts, row.event_id),
            (OutboxState::Pending, 0, None)
        );
        assert_eq!(row.payload, r#"{"text":"T1-1 failed"}"#);

        let attempt = |n: u32, status: AttemptStatus, at_ms: i64| Attempt {
            sink: "slack".into(),
            topic: "t1".into(),
            event_id: None,
            attempt: n,
            status,
            http_status: Some(503),
            exit_code: None,
            error: Some("busy".into()),
            ms: 12,
            at_ms,
        };
        let (t1, t2) = (due[0].id, due[1].id);
        ledger
            .write(|q| q.record_attempt(Some(t1), &attempt(1, AttemptStatus::Failed, 40), 100))
            .unwrap();
        let q = ledger.read();
        assert!(
            q.due_notifications(99, 10)
                .unwrap()
                .iter()
                .all(|r| r.id != t1)
        );
        let again = q.due_notifications(100, 10).unwrap();
        assert_eq!((again[0].id, again[0].attempts), (t1, 1));
        let mut delivered = attempt(2, AttemptStatus::Delivered, 120);
        delivered.http_status = Some(200);
        delivered.error = None;
        ledger
            .write(|q| {
                q.record_attempt(Some(t1), &delivered, 0)?;
                q.record_attempt(Some(t2), &attempt(5, AttemptStatus::GaveUp, 130), 0)?;
                q.record_attempt(None, &attempt(1, AttemptStatus::Failed, 140), 0)
            })
            .unwrap();
        let q = ledger.read();
        assert!(
            q.due_notifications(i64::MAX, 10)
                .unwrap()
                .iter()
                .all(|r| r.sink == "hook")
        );
        let counts = q.notification_counts("slack").unwrap();
        assert_eq!(
            (counts.pending, counts.delivered, counts.gave_up),
            (0, 1, 1)
        );
        let counts = q.notification_counts("hook").unwrap();
        assert_eq!(
            (counts.pending, counts.delivered, counts.gave_up),
            (1, 0, 0)
        );
        let attempts = q.notification_attempts(None, 10).unwrap();
        assert_eq!(
            attempts.iter().map(|a| a.at_ms).collect::<Vec<_>>(),
            [140, 130, 120, 40],
            "newest first"
        );
        let a = &attempts[2];
        assert_eq!(
            (a.attempt, a.status, a.http_status, a.exit_code, a.ms),
            (2, AttemptStatus::Delivered, Some(200), None, 12)
        );
        assert_eq!(attempts[3].error.as_deref(), Some("busy"));
        assert_eq!(q.notification_attempts(Some("slack"), 2).unwrap().len(), 2);
        assert!(
            q.notification_attempts(Some("hook"), 10)
                .unwrap()
                .is_empty()
        );
    });
}

// --- The issue sync ----------------------------------------------------------------------

#[test]
fn issue_links_and_outside_text_on_both_backends() {
    on_both_backends("issues", |ledger| {
        ledger
            .write(|q| {
                q.insert_task(&spec("GH-7", 0), TaskState::Queued, 1)?;
                q.insert_task(&spec("GH-8", 1), TaskState::Queued, 1)
            })
            .unwrap();
        let seen = |task_id: &'static str, number: u64| IssueSeen {
            task_id,
            repo: "acme/app",
            number,
            url: "https://github.test/acme/app/issues/7",
            issue_state: "open",
            matches: true,
            body_bytes: 120,
        };
        ledger
            .write(|q| {
                q.upsert_issue_link(&seen("GH-7", 7), 10)?;
                q.upsert_issue_link(&seen("GH-8", 8), 10)?;
                q.set_issue_comment("GH-7", 9_001, "queued", "sha1")
            })
            .unwrap();
        let q = ledger.read();
        let links = q.issue_links().unwrap();
        assert_eq!(links.len(), 2);
        let link = q.issue_link("GH-7").unwrap().unwrap();
        assert_eq!(links["GH-7"], link);
        assert_eq!(
            (
                link.number,
                link.matches,
                link.body_bytes,
                link.synced_at_ms
            ),
            (7, true, 120, 10)
        );
        assert_eq!(link.comment_id, Some(9_001));
        assert_eq!(link.comment_stage.as_deref(), Some("queued"));
        assert_eq!(link.comment_sha.as_deref(), Some("sha1"));
        assert_eq!(q.issue_link("T9-9").unwrap(), None);

        // A later sync keeps the comment; presence changes only what changed.
        let mut closed = seen("GH-7", 7);
        closed.body_bytes = 300;
        ledger
            .write(|q| {
                q.upsert_issue_link(&closed, 20)?;
                q.set_issue_presence("GH-8", "closed", false)
            })
            .unwrap();
        let q = ledger.read();
        let link = q.issue_link("GH-7").unwrap().unwrap();
        assert_eq!((link.body_bytes, link.synced_at_ms), (300, 20));
        assert_eq!(link.comment_id, Some(9_001));
        let gone = q.issue_link("GH-8").unwrap().unwrap();
        assert_eq!((gone.issue_state.as_str(), gone.matches), ("closed", false));

        assert!(!q.is_outside_text("GH-7").unwrap());
        ledger.write(|q| q.set_outside_text("GH-7", true)).unwrap();
        assert!(ledger.read().is_outside_text("GH-7").unwrap());
        ledger.write(|q| q.set_outside_text("GH-7", false)).unwrap();
        assert!(!ledger.read().is_outside_text("GH-7").unwrap());
        assert!(!ledger.read().is_outside_text("T9-9").unwrap());
    });
}

// --- oxi gateway calls --------------------------------------------------------------------

#[test]
fn gateway_calls_spend_and_provider_switch_on_both_backends() {
    on_both_backends("gateway", |ledger| {
        ledger
            .write(|q| q.insert_task(&spec("T1-1", 0), TaskState::Queued, 1))
            .unwrap();
        let first = ledger
            .write(|q| q.begin_gateway_call(&gateway_call("triage", 100)))
            .unwrap();
        let second = ledger
            .write(|q| q.begin_gateway_call(&gateway_call("triage", 110)))
            .unwrap();
        let q = ledger.read();
        assert_eq!(q.gateway_role_spend("triage", "2026-11-30").unwrap(), 1_000);
        assert_eq!(q.gateway_role_spend("screen", "2026-11-30").unwrap(), 0);
        assert_eq!(q.gateway_role_spend("triage", "2026-11-29").unwrap(), 0);

        ledger
            .write(|q| q.end_gateway_call(first, &call_end(40, 150)))
            .unwrap();
        // A second end changes nothing.
        ledger
            .write(|q| q.end_gateway_call(first, &call_end(99, 160)))
            .unwrap();
        ledger
            .write(|q| q.end_gateway_call(second, &call_end(0, 170)))
            .unwrap();
        let unsent = ledger
            .write(|q| {
                q.record_unsent_gateway_call(&gateway_call("screen", 180), "refused", "cap reached")
            })
            .unwrap();
        assert!(unsent > second && second > first);
        let q = ledger.read();
        assert_eq!(q.gateway_role_spend("triage", "2026-11-30").unwrap(), 40);
        let calls = q.gateway_calls(10).unwrap();
        assert_eq!(
            calls
                .iter()
                .map(|c| (c.id, c.status.as_str()))
                .collect::<Vec<_>>(),
            [
                (unsent, "released"),
                (second, "released"),
                (first, "settled")
            ]
        );
        let settled = &calls[2];
        assert_eq!(
            (
                settled.reserved_microusd,
                settled.cost_microusd,
                settled.tokens_in,
                settled.tokens_out,
                settled.attempts,
                settled.latency_ms,
            ),
            (500, 40, 100, 20, 2, Some(40))
        );
        assert_eq!(settled.outcome.as_deref(), Some("ok"));
        assert_eq!(settled.cost_source.as_deref(), Some("header"));
        assert_eq!(settled.task_id.as_deref(), Some("T1-1"));
        assert_eq!(
            (settled.role.as_str(), settled.created_at_ms),
            ("triage", 100)
        );
        let refused = &calls[0];
        assert_eq!(
            (
                refused.reserved_microusd,
                refused.outcome.as_deref(),
                refused.error.as_deref()
            ),
            (0, Some("refused"), Some("cap reached"))
        );
        assert_eq!(refused.cost_source.as_deref(), Some("none"));
        assert_eq!(q.gateway_calls(1).unwrap().len(), 1);
        let totals = q.spend_totals("2026-11-30", "2026-11").unwrap();
        assert_eq!((totals.day_spent, totals.day_reserved), (40, 0));

        assert_eq!(q.gateway_down_until("local").unwrap(), None);
        ledger
            .write(|q| q.set_gateway_down("local", 5_000, 100))
            .unwrap();
        assert_eq!(
            ledger.read().gateway_down_until("local").unwrap(),
            Some(5_000)
        );
        assert_eq!(ledger.read().gateway_down_until("other").unwrap(), None);
        ledger.write(|q| q.clear_gateway_down("local")).unwrap();
        ledger.write(|q| q.clear_gateway_down("never")).unwrap();
        assert_eq!(ledger.read().gateway_down_until("local").unwrap(), None);
    });
}

// --- Triage and screen read-backs ---------------------------------------------------------

#[test]
fn triage_and_screen_reads_on_both_backends() {
    on_both_backends("inference", |ledger| {
        ledger
            .write(|q| {
                q.insert_task(&spec("T1-1", 0), TaskState::Queued, 1)?;
                q.insert_task(&spec("T1-2", 1), TaskState::Queued, 1)
            })
            .unwrap();
        let verdict = |digest: &str, flagged: bool| {
            format!(
                r#"{{"digest":"{digest}","flagged":{flagged},"reason":"r","choice":"local:m1","call_id":1}}"#
            )
        };
        raw_event(
            ledger,
            10,
            EventKind::TriageSummary,
            Some("T1-1"),
            r#"{"summary":"one"}"#,
        );
        raw_event(
            ledger,
            20,
            EventKind::TriageSummary,
            Some("T1-1"),
            r#"{"summary":"two"}"#,
        );
        raw_event(
            ledger,
            30,
            EventKind::ScreenVerdict,
            Some("T1-1"),
            &verdict("d1", false),
        );
        raw_event(
            ledger,
            40,
            EventKind::ScreenVerdict,
            Some("T1-2"),
            &verdict("d1", true),
        );
        raw_event(
            ledger,
            50,
            EventKind::ScreenVerdict,
            Some("T1-2"),
            &verdict("d2", false),
        );
        raw_event(
            ledger,
            60,
            EventKind::ScreenFailed,
            Some("T1-1"),
            r#"{"digest":"d3","reason":"503","held":true}"#,
        );
        let q = ledger.read();
        let events = q.events_after(0, 100).unwrap();
        let id_at = |ms: i64| events.iter().find(|e| e.at_ms == ms).unwrap().id;

        assert_eq!(q.triage_after("T1-1", 0).unwrap().as_deref(), Some("one"));
        assert_eq!(
            q.triage_after("T1-1", id_at(10)).unwrap().as_deref(),
            Some("two")
        );
        assert_eq!(q.triage_after("T1-1", id_at(20)).unwrap(), None);
        assert_eq!(q.triage_after("T1-2", 0).unwrap(), None);

        let (v, at) = q.screen_verdict("d1").unwrap().unwrap();
        assert_eq!((v.flagged, at), (true, 40), "the latest, whichever task");
        assert_eq!(v.choice, "local:m1");
        assert_eq!(q.screen_verdict("d2").unwrap().unwrap().1, 50);
        assert!(
            q.screen_verdict("d3").unwrap().is_none(),
            "a failure is no verdict"
        );

        assert_eq!(q.last_screen("T1-1").unwrap(), Some((60, "d3".to_owned())));
        assert_eq!(q.last_screen("T1-2").unwrap(), Some((50, "d2".to_owned())));
        assert_eq!(q.last_screen("T9-9").unwrap(), None);
    });
}

// --- Worker blocks, plans, probes ---------------------------------------------------------

#[test]
fn worker_blocks_on_both_backends() {
    on_both_backends("blocks", |ledger| {
        let block = |worker: &str, at_ms: i64| WorkerBlock {
            worker: worker.to_owned(),
            class: "auth_failed".into(),
            message: "not logged in".into(),
            run_id: None,
            task_id: None,
            at_ms,
        };
        let events = ledger.read().event_count().unwrap();
        ledger
            .write(|q| {
                q.block_worker(&block("codex", 10))?;
                q.block_worker(&block("claude", 20))?;
                q.block_worker(&block("codex", 30))?;
                q.block_worker(&block("Codex_2", 40))?;
                q.kv_set("worker_blocked_note", "not a block", 1)
            })
            .unwrap();
        let blocks = ledger.read().worker_blocks().unwrap();
        assert_eq!(
            blocks
                .iter()
                .map(|b| (b.worker.as_str(), b.at_ms))
                .collect::<Vec<_>>(),
            [("Codex_2", 40), ("claude", 20), ("codex", 30)],
            "one per worker, by key in byte order"
        );
        assert_eq!(blocks[2], block("codex", 30));
        assert!(
            ledger
                .write(|q| q.unblock_worker("codex", "operator:amy", "fixed", 50))
                .unwrap()
        );
        assert!(
            !ledger
                .write(|q| q.unblock_worker("codex", "oxi", "again", 60))
                .unwrap()
        );
        assert_eq!(ledger.read().worker_blocks().unwrap().len(), 2);
        assert_eq!(ledger.read().event_count().unwrap(), events + 5);

        ledger
            .write(|q| q.kv_set("worker_block:broken", "{not json", 1))
            .unwrap();
        let broken = ledger.read().worker_blocks();
        assert!(
            matches!(&broken, Err(oxi::ledger::LedgerError::Corrupt(m)) if m.contains("worker_block:broken")),
            "{broken:?}"
        );
    });
}

#[test]
fn plans_and_prompt_sizes_on_both_backends() {
    on_both_backends("plans", |ledger| {
        ledger
            .write(|q| q.insert_task(&spec("T1-1", 0), TaskState::Queued, 1))
            .unwrap();
        for (i, id) in ["p1", "p2", "e1", "e2", "e3", "e4"].into_iter().enumerate() {
            let role = if id.starts_with('p') {
                "planner"
            } else {
                "executor"
            };
            ledger
                .write(|q| q.begin_run(&new_run(id, "T1-1", role, 1_000 + i as i64)))
                .unwrap();
        }
        assert_eq!(ledger.read().latest_plan("T1-1").unwrap(), None);
        let plan = serde_json::json!({"steps": ["read", "write"], "files": ["src/a.rs"]});
        ledger
            .write(|q| {
                q.record_plan("T1-1", "p1", 1, &serde_json::json!({"steps": []}), 10)?;
                q.record_plan("T1-1", "p2", 2, &plan, 20)
            })
            .unwrap();
        let latest = ledger.read().latest_plan("T1-1").unwrap().unwrap();
        assert_eq!(
            (latest.run_id.as_str(), latest.attempt, latest.created_at_ms),
            ("p2", 2, 20)
        );
        assert_eq!(latest.plan, plan);

        ledger
            .write(|q| {
                for (id, bytes) in [("e1", 400), ("e2", 100), ("e3", 300), ("p1", 9_000)] {
                    q.record_prompt_bytes(id, bytes)?;
                }
                Ok(())
            })
            .unwrap();
        let q = ledger.read();
        assert_eq!(q.prompt_bytes("e1").unwrap(), Some(400));
        assert_eq!(q.prompt_bytes("e4").unwrap(), None, "not recorded");
        assert_eq!(q.prompt_bytes("zz").unwrap(), None, "no such run");
        let sizes = q.report_prompt_bytes("executor", 0).unwrap();
        assert_eq!(
            (sizes.calls, sizes.median, sizes.p90),
            (3, Some(300), Some(400))
        );
        let later = q.report_prompt_bytes("executor", 1_004).unwrap();
        assert_eq!((later.calls, later.median), (1, Some(300)));
        assert_eq!(q.report_prompt_bytes("reviewer", 0).unwrap().calls, 0);
    });
}

#[test]
fn cli_probes_and_quarantine_on_both_backends() {
    on_both_backends("probes", |ledger| {
        let probe = |worker: &str, version: Option<&str>, verdict: &str, at_ms: i64| ProbeRow {
            worker: worker.to_owned(),
            kind: "codex".into(),
            cli_version: version.map(str::to_owned),
            verdict: verdict.to_owned(),
            first_mismatch: (verdict == "fail").then(|| "event shape".to_owned()),
            duration_ms: 1_200,
            at_ms,
        };
        let events = ledger.read().event_count().unwrap();
        ledger
            .write(|q| {
                q.record_probe(&probe("codex", Some("0.1"), "pass", 10))?;
                q.record_probe(&probe("codex", None, "pass", 15))?;
                q.record_probe(&probe("codex", Some("0.2"), "fail", 20))?;
                q.record_probe(&probe("zeta", Some("1"), "fail", 25))?;
                q.record_probe(&probe("Alpha", Some("1"), "fail", 26))?;
                q.record_probe(&probe("claude", Some("2.0"), "fail", 30))?;
                q.record_probe(&probe("claude", Some("2.1"), "pass", 40))
            })
            .unwrap();
        let q = ledger.read();
        assert_eq!(
            q.event_count().unwrap(),
            events + 4,
            "a failed probe quarantines"
        );
        assert_eq!(
            q.latest_probe("codex").unwrap(),
            Some(probe("codex", Some("0.2"), "fail", 20))
        );
        assert_eq!(
            q.last_good_probe("codex").unwrap(),
            Some(probe("codex", Some("0.1"), "pass", 10)),
            "a pass with a version"
        );
        assert_eq!(q.latest_probe("none").unwrap(), None);
        assert_eq!(q.last_good_probe("zeta").unwrap(), None);
        let quarantined: Vec<String> = q
            .quarantined_workers()
            .unwrap()
            .into_iter()
            .map(|p| p.worker)
            .collect();
        assert_eq!(quarantined, ["Alpha", "codex", "zeta"], "byte order");
    });
}

// --- oxi report, end to end ---------------------------------------------------------------

/// 2026-11-20T00:00:00Z.
const T0: i64 = 1_795_132_800_000;
const HOUR: i64 = 3_600_000;

fn typed_event(ledger: &mut Ledger, at: i64, kind: EventKind, task: &str, data: serde_json::Value) {
    ledger
        .write(|q| {
            q.append_event(&oxi::ledger::NewEvent {
                at_ms: at,
                task_id: Some(task),
                run_id: None,
                actor: "oxi",
                event: oxi::ledger::Event::parse(kind.as_str(), &data)
                    .unwrap_or_else(|| panic!("{} does not fit {data}", kind.as_str())),
            })
        })
        .unwrap();
}

/// Runs of every role and outcome, verification, pull requests, CI, reviews, governance, a
/// failure with its triage, gateway calls and prompt sizes: what `oxi report` reads.
fn seed_report(ledger: &mut Ledger) {
    ledger
        .write(|q| {
            for (i, id) in ["T0-1", "T0-2", "T0-3"].into_iter().enumerate() {
                q.insert_task(&spec(id, i as u32), TaskState::Queued, T0 - 2 * HOUR)?;
            }
            Ok(())
        })
        .unwrap();
    let runs = [
        ("r1", "T0-1", "planner", 0, "success", 50_000),
        ("r2", "T0-1", "executor", 1, "success", 1_200_000),
        ("r3", "T0-2", "executor", 2, "verify_failed_run", 400_000),
        ("r4", "T0-2", "executor", 3, "success", 600_000),
        ("r5", "T0-2", "reviewer", 4, "success", 100_000),
        ("r6", "T0-3", "executor", 5, "parse_failure", 300_000),
        ("r7", "T0-3", "shadow", 6, "success", 70_000),
    ];
    for (id, task, role, hour, class, cost) in runs {
        let at = T0 + hour * HOUR;
        let day = oxi::clock::day_of(at);
        let month = oxi::clock::month_of(at);
        let mut run = new_run(id, task, role, at);
        run.day = &day;
        run.month = &month;
        ledger
            .write(|q| {
                q.begin_run(&run)?;
                q.record_prompt_bytes(id, 1_000 * usize::try_from(hour + 1).unwrap())?;
                q.finish_run(
                    id,
                    &RunEnd {
                        ended_at_ms: at + 600_000,
                        classification: class,
                        cost_microusd: cost,
                        input_tokens: 1_000,
                        output_tokens: 100,
                        parse_failures: u64::from(class == "parse_failure"),
                        ..RunEnd::default()
                    },
                )
                .map(|_| ())
            })
            .unwrap();
    }
    ledger
        .write(|q| {
            for (run_id, tier, ms, status) in [
                ("r2", "tier0", 4_000, "passed"),
                ("r3", "tier0", 5_000, "failed"),
                ("r4", "tier0", 5_500, "passed"),
                ("r4", "tier1", 60_000, "passed"),
            ] {
                q.insert_verify_result(&VerifyRecord {
                    run_id,
                    task_id: None,
                    tier,
                    name: "unit",
                    status,
                    exit_code: Some(i32::from(status != "passed")),
                    duration_ms: ms,
                    log_path: None,
                    at_ms: T0 + HOUR,
                })?;
            }
            let mut call = gateway_call("triage", T0 + 7 * HOUR);
            call.task_id = Some("T0-3");
            call.day = "2026-11-20";
            let id = q.begin_gateway_call(&call)?;
            q.end_gateway_call(id, &call_end(9_000, T0 + 7 * HOUR))
        })
        .unwrap();
    use serde_json::json;
    let events = [
        (1, EventKind::PrOpened, "T0-1", json!({ "number": 1 })),
        (
            2,
            EventKind::ReviewDecided,
            "T0-1",
            json!({ "decision": "auto_approve", "review_skipped_reason": "auto-approved: green, 1 file(s)" }),
        ),
        (
            2,
            EventKind::CiResult,
            "T0-1",
            json!({ "first_pass": true, "green": true }),
        ),
        (3, EventKind::PrOpened, "T0-2", json!({ "number": 2 })),
        (
            4,
            EventKind::CiResult,
            "T0-2",
            json!({ "first_pass": true, "green": false }),
        ),
        (
            5,
            EventKind::PrMerged,
            "T0-1",
            json!({ "number": 1, "by": "maintainer" }),
        ),
        (5, EventKind::PrClosed, "T0-2", json!({ "number": 2 })),
        (
            6,
            EventKind::OperatorAction,
            "T0-3",
            json!({ "action": "retry" }),
        ),
        (
            6,
            EventKind::GovernanceMemo,
            "T0-3",
            json!({ "trigger": "governance", "memo": "protected path" }),
        ),
        (
            6,
            EventKind::BudgetBreach,
            "T0-2",
            json!({ "scope": "job" }),
        ),
        (
            7,
            EventKind::TaskStateChanged,
            "T0-3",
            json!({ "from": "dispatched", "to": "failed", "reason": "parse failures", "failure_class": "attempts_exhausted" }),
        ),
        (
            7,
            EventKind::TriageSummary,
            "T0-3",
            json!({ "trigger": "failed", "summary": "the worker's output never parsed", "choice": "local:m1", "call_id": 1 }),
        ),
    ];
    for (hour, kind, task, data) in events {
        typed_event(ledger, T0 + hour * HOUR + 1_000, kind, task, data);
    }
}

#[test]
fn oxi_report_is_the_same_on_both_backends() {
    let sandbox = crate::support::Sandbox::git_repo();
    sandbox.write("roadmap.md", "- [ ] x\n");
    sandbox.write(
        "oxi.toml",
        "[caps]\ndaily_usd = 5.0\ndaily_soft_warn_usd = 2.0\n",
    );
    let config = oxi::config::load(&sandbox.file("oxi.toml"), None).unwrap();
    let reports = std::cell::RefCell::new(Vec::new());
    on_both_backends("report_end_to_end", |ledger| {
        seed_report(ledger);
        for since in ["all", "24h"] {
            let report = oxi::report::build(&config, ledger, since, T0 + 2 * 86_400_000).unwrap();
            reports.borrow_mut().push((
                since,
                serde_json::to_value(&report).unwrap(),
                oxi::report::html(&report),
            ));
        }
    });
    let reports = reports.into_inner();
    let (_, all, _) = &reports[0];
    assert_eq!(all["merged"], 1, "{all:#}");
    assert_eq!(all["rejected"], 1, "{all:#}");
    assert_eq!(
        all["failed_tasks"][0]["triage_summary"], "the worker's output never parsed",
        "{all:#}"
    );
    if reports.len() == 4 {
        for (sqlite, pg) in reports[..2].iter().zip(&reports[2..]) {
            assert_eq!(sqlite.1, pg.1, "`oxi report --since {}` as JSON", sqlite.0);
            assert_eq!(sqlite.2, pg.2, "`oxi report --since {}` as HTML", sqlite.0);
        }
    }
}
