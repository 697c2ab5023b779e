//! The PostgreSQL ledger against a real PostgreSQL (a throwaway cluster from oxi-testkit): each
//! ported ledger function runs one test body on both backends, then what only PostgreSQL has to
//! prove (its migrations, the triggers that keep the state machine, the append-only trail and
//! the spend rollup, the URL and password rules).
//!
//! Without PostgreSQL installed the PostgreSQL half skips, printing the command that enables
//! it; under `CI=true` it fails instead.

use oxi::budget::Caps;
use oxi::ledger::{
    ApprovalKind, Event, Killswitch, Ledger, LedgerError, MIGRATIONS, NewEvent, NewRun, RunEnd,
    TaskSpec, TaskState, Transition, TransitionFields,
};
use oxi_testkit::pg::cluster_or_skip;

fn spec(id: &str, order: u32) -> TaskSpec {
    TaskSpec {
        id: id.to_owned(),
        priority_tier: 1,
        title: format!("title of {id}"),
        subtitle: Some("sub".into()),
        body: "body".into(),
        section: Some("Section".into()),
        milestone: Some("M1".into()),
        format: "oxi".into(),
        depends_on: vec!["T0-0".into()],
        file_hints: vec!["src/**".into()],
        source_line: 10 + order,
        roadmap_order: order,
        content_hash: format!("hash-{id}"),
        roadmap_done: false,
    }
}

/// A fresh PostgreSQL database for `test`, or `None` when the PostgreSQL tests skip here.
fn pg_url(test: &str) -> Option<String> {
    let cluster = cluster_or_skip(test)?;
    Some(cluster.database(test).expect("create the test database"))
}

/// Runs `body` on a fresh SQLite ledger, then on a fresh PostgreSQL one (unless skipped).
fn on_both_backends(test: &str, body: impl Fn(&mut Ledger)) {
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = Ledger::open(&dir.path().join("ledger.db")).unwrap();
    body(&mut sqlite);
    if let Some(url) = pg_url(test) {
        let mut pg = Ledger::open_postgres(&url, None).unwrap();
        body(&mut pg);
    }
}

/// A raw session on the PostgreSQL database (to write what the typed layer never would).
fn raw(url: &str) -> ::postgres::Client {
    ::postgres::Client::connect(url, ::postgres::NoTls).unwrap()
}

#[test]
fn tasks_round_trip_on_both_backends() {
    on_both_backends("tasks_round_trip", |ledger| {
        let (a, b) = (spec("T1-1", 2), spec("T1-2", 1));
        ledger
            .write(|q| {
                q.insert_task(&a, TaskState::Queued, 100)?;
                q.insert_task(&b, TaskState::Done, 100)
            })
            .unwrap();
        let q = ledger.read();
        let tasks = q.tasks().unwrap();
        let ids: Vec<&str> = tasks.iter().map(|t| t.spec.id.as_str()).collect();
        assert_eq!(ids, ["T1-2", "T1-1"], "roadmap order");
        let t = q.task("T1-1").unwrap().unwrap();
        assert_eq!(t.spec, a);
        assert_eq!(t.state, TaskState::Queued);
        assert!(t.in_roadmap);
        assert_eq!(
            (t.created_at_ms, t.updated_at_ms, t.attempts),
            (100, 100, 0)
        );
        assert_eq!(q.task("T9-9").unwrap(), None);
        assert_eq!(q.find_task("t1-1").unwrap().unwrap().spec.id, "T1-1");
        let counts = q.task_counts().unwrap();
        assert_eq!(counts.get(&TaskState::Queued), Some(&1));
        assert_eq!(counts.get(&TaskState::Done), Some(&1));

        let mut changed = a.clone();
        changed.title = "new title".into();
        changed.roadmap_done = true;
        ledger
            .write(|q| {
                q.update_task_spec(&changed, 200)?;
                q.update_task_position("T1-2", 99, 7, false, true)
            })
            .unwrap();
        let q = ledger.read();
        let t = q.task("T1-1").unwrap().unwrap();
        assert_eq!(
            (t.spec.title.as_str(), t.spec.roadmap_done),
            ("new title", true)
        );
        assert_eq!(t.updated_at_ms, 200);
        let t = q.task("T1-2").unwrap().unwrap();
        assert_eq!((t.spec.source_line, t.spec.roadmap_order), (99, 7));
        assert!(!t.in_roadmap && t.spec.roadmap_done);
        let missing = ledger.write(|q| q.update_task_spec(&spec("T9-9", 0), 1));
        assert!(matches!(missing, Err(LedgerError::NoSuchTask(id)) if id == "T9-9"));
    });
}

#[test]
fn transitions_and_their_events_on_both_backends() {
    on_both_backends("transitions", |ledger| {
        ledger
            .write(|q| q.insert_task(&spec("T1-1", 0), TaskState::Queued, 1))
            .unwrap();
        let events_before = ledger.read().event_count().unwrap();
        let held = Transition {
            fields: TransitionFields {
                held_reason: Some("waits".into()),
                hold_kind: Some(oxi::ledger::HoldKind::Operator),
                ..TransitionFields::default()
            },
            ..Transition::by_oxi(TaskState::Queued, TaskState::Held, "test")
        };
        ledger
            .write(|q| q.transition_task("T1-1", &held, 5))
            .unwrap();
        let t = ledger.read().task("T1-1").unwrap().unwrap();
        assert_eq!(t.state, TaskState::Held);
        assert_eq!(t.held_reason.as_deref(), Some("waits"));
        assert_eq!(t.hold_kind, Some(oxi::ledger::HoldKind::Operator));
        assert_eq!(ledger.read().event_count().unwrap(), events_before + 1);

        // Not in `from` any more: a conflict, and nothing written (the event neither).
        let again = ledger.write(|q| q.transition_task("T1-1", &held, 6));
        assert!(
            matches!(&again, Err(LedgerError::StateConflict { found, .. }) if found == "held"),
            "{again:?}"
        );
        assert_eq!(ledger.read().event_count().unwrap(), events_before + 1);
        let illegal = Transition::by_oxi(TaskState::Held, TaskState::Merged, "test");
        assert!(matches!(
            ledger.write(|q| q.transition_task("T1-1", &illegal, 7)),
            Err(LedgerError::IllegalTransition { .. })
        ));
        let none = Transition::by_oxi(TaskState::Queued, TaskState::Held, "test");
        assert!(matches!(
            ledger.write(|q| q.transition_task("T9-9", &none, 7)),
            Err(LedgerError::NoSuchTask(_))
        ));
    });
}

#[test]
fn a_failed_write_leaves_nothing_on_both_backends() {
    on_both_backends("failed_write", |ledger| {
        let result: Result<(), LedgerError> = ledger.write(|q| {
            q.insert_task(&spec("T1-1", 0), TaskState::Queued, 1)?;
            q.kv_set("k", "v", 1)?;
            Err(LedgerError::Corrupt("the caller gave up".into()))
        });
        assert!(result.is_err());
        let q = ledger.read();
        assert_eq!(q.task("T1-1").unwrap(), None);
        assert_eq!(q.kv_get("k").unwrap(), None);
    });
}

#[test]
fn events_kv_and_killswitch_on_both_backends() {
    on_both_backends("events_kv", |ledger| {
        let id = ledger
            .write(|q| {
                q.append_event(&NewEvent {
                    at_ms: 1,
                    task_id: None,
                    run_id: None,
                    actor: "oxi",
                    event: Event::Paused(oxi::ledger::events::Killswitched { reason: None }),
                })
            })
            .unwrap();
        assert!(id >= 1);
        assert_eq!(ledger.read().kv_get("missing").unwrap(), None);
        ledger.write(|q| q.kv_set("k", "one", 1)).unwrap();
        ledger.write(|q| q.kv_set("k", "two", 2)).unwrap();
        assert_eq!(ledger.read().kv_get("k").unwrap().as_deref(), Some("two"));
        let switch = Killswitch {
            paused: true,
            by: "operator:ann".into(),
            reason: Some("maintenance".into()),
            at_ms: 3,
        };
        ledger.write(|q| q.set_killswitch(&switch)).unwrap();
        assert_eq!(ledger.read().killswitch().unwrap(), Some(switch));
        assert_eq!(ledger.read().event_count().unwrap(), 2);
        let empty = ledger.read().spend_totals("2026-11-30", "2026-11").unwrap();
        assert_eq!(empty, oxi::ledger::SpendTotals::default());
    });
}

#[test]
fn postgres_schema_is_current_and_reopening_is_a_no_op() {
    let Some(url) = pg_url("schema_current") else {
        return;
    };
    let latest = MIGRATIONS.last().unwrap().version;
    let ledger = Ledger::open_postgres(&url, None).unwrap();
    assert_eq!(ledger.read().schema_version().unwrap(), latest);
    // A second host opening the same database finds the work done.
    let again = Ledger::open_postgres(&url, None).unwrap();
    assert_eq!(again.read().schema_version().unwrap(), latest);
    let rows: i64 = raw(&url)
        .query_one("SELECT COUNT(*) FROM schema_migrations", &[])
        .unwrap()
        .get(0);
    // The baseline (SQLite's 0001-0011 in one step), then one twin per later migration.
    assert_eq!(rows, latest - 10);
}

#[test]
fn postgres_written_by_a_newer_oxi_or_with_an_edited_migration_is_refused() {
    let Some(url) = pg_url("too_new") else {
        return;
    };
    drop(Ledger::open_postgres(&url, None).unwrap());
    let mut client = raw(&url);
    client
        .execute(
            "INSERT INTO schema_migrations VALUES (999, 'future', 'x', 0)",
            &[],
        )
        .unwrap();
    let err = Ledger::open_postgres(&url, None).unwrap_err();
    assert!(
        matches!(err, LedgerError::TooNew { found: 999, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("written by a newer oxi"), "{err}");
    client
        .batch_execute(
            "DELETE FROM schema_migrations WHERE version = 999;
             UPDATE schema_migrations SET checksum = 'edited'",
        )
        .unwrap();
    let err = Ledger::open_postgres(&url, None).unwrap_err();
    assert!(
        matches!(err, LedgerError::MigrationChanged { version: 11, .. }),
        "{err}"
    );
}

#[test]
fn postgres_enforces_the_state_machine_and_the_append_only_trail_in_the_database() {
    let Some(url) = pg_url("triggers") else {
        return;
    };
    let mut ledger = Ledger::open_postgres(&url, None).unwrap();
    ledger
        .write(|q| {
            q.insert_task(&spec("T1-1", 0), TaskState::Queued, 1)?;
            q.transition_task(
                "T1-1",
                &Transition::by_oxi(TaskState::Queued, TaskState::Held, "x"),
                2,
            )
        })
        .unwrap();
    let mut client = raw(&url);
    // By hand, past the typed layer: the trigger still refuses an illegal change.
    let err = client
        .execute("UPDATE tasks SET state = 'merged' WHERE id = 'T1-1'", &[])
        .unwrap_err();
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("illegal task state transition"),
        "{err}"
    );
    client
        .execute("UPDATE tasks SET state = 'queued' WHERE id = 'T1-1'", &[])
        .unwrap();
    let count = |client: &mut ::postgres::Client| -> i64 {
        client
            .query_one("SELECT COUNT(*) FROM events", &[])
            .unwrap()
            .get(0)
    };
    let before = count(&mut client);
    assert!(before > 0);
    for sql in ["UPDATE events SET actor = 'x'", "DELETE FROM events"] {
        let err = client.batch_execute(sql).unwrap_err();
        assert!(
            err.as_db_error()
                .unwrap()
                .message()
                .contains("events are append-only"),
            "{sql}: {err}"
        );
    }
    // TRUNCATE is refused too: by the trigger, or first by the foreign keys that point at
    // events (the notification outbox), whichever PostgreSQL checks first.
    let err = client.batch_execute("TRUNCATE events").unwrap_err();
    assert!(err.as_db_error().is_some(), "{err}");
    assert_eq!(count(&mut client), before);
}

#[test]
fn postgres_keeps_the_spend_rollup_in_the_database() {
    let Some(url) = pg_url("rollup") else {
        return;
    };
    let mut ledger = Ledger::open_postgres(&url, None).unwrap();
    let mut client = raw(&url);
    client
        .batch_execute(
            "INSERT INTO runs (id, role, worker, worker_kind, status, started_at_ms)
                 VALUES ('r1', 'attempt', 'w', 'codex', 'running', 0),
                        ('r2', 'attempt', 'w', 'codex', 'running', 0),
                        ('r3', 'attempt', 'w', 'codex', 'running', 0);
             INSERT INTO spend (run_id, day, month, reserved_microusd, actual_microusd, status,
                 created_at_ms) VALUES
                 ('r1', '2026-11-30', '2026-11', 500, 100, 'reserved', 0),
                 ('r2', '2026-11-30', '2026-11', 300, 0, 'reserved', 0),
                 ('r3', '2026-11-29', '2026-11', 200, 0, 'reserved', 0);
             UPDATE spend SET status = 'settled', actual_microusd = 250 WHERE run_id = 'r2';
             UPDATE spend SET status = 'released' WHERE run_id = 'r3';
             INSERT INTO gateway_calls (role, provider, model, day, month, reserved_microusd,
                 status, created_at_ms) VALUES ('triage', 'p', 'm', '2026-11-30', '2026-11',
                 40, 'reserved', 0);",
        )
        .unwrap();
    let q = ledger.read();
    let totals = q.spend_totals("2026-11-30", "2026-11").unwrap();
    assert_eq!(totals.day_spent, 350);
    assert_eq!(totals.day_reserved, 400 + 40);
    assert_eq!(totals.month_spent, 350);
    assert_eq!(totals.month_reserved, 440);
    // The scan over `spend` alone (no gateway calls) is the rollup's definition for runs.
    let scan = q.spend_totals_by_scan("2026-11-30", "2026-11").unwrap();
    assert_eq!((scan.day_spent, scan.day_reserved), (350, 400));
    assert!(ledger.write(|q| q.kv_set("still", "writable", 1)).is_ok());
}

#[test]
fn postgres_url_rules() {
    let Some(url) = pg_url("url_rules") else {
        return;
    };
    // A password in the URL is refused, and the message does not repeat it.
    let with_password = url.replacen("postgres@", "postgres:s3cret@", 1);
    let err = Ledger::open_postgres(&with_password, None).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("password in the URL is refused"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    // password_env must name a variable that is set.
    let err = Ledger::open_postgres(&url, Some("OXI_TEST_NO_SUCH_PASSWORD_VAR")).unwrap_err();
    assert!(
        err.to_string().contains("OXI_TEST_NO_SUCH_PASSWORD_VAR"),
        "{err}"
    );
    // A database that does not exist: the server's answer, with the URL.
    let missing = url.replacen("/t", "/no_such_db_", 1);
    let err = Ledger::open_postgres(&missing, None).unwrap_err();
    assert!(matches!(err, LedgerError::PgConnect { .. }), "{err}");
    // Functions not ported yet say so instead of touching anything.
    let ledger = Ledger::open_postgres(&url, None).unwrap();
    let err = ledger.running_runs_brief().unwrap_err();
    assert!(matches!(err, LedgerError::NotPorted(_)), "{err}");
}

// --- Runs and the claim ------------------------------------------------------------------

fn new_run<'a>(id: &'a str, task: &'a str, reserve: i64) -> NewRun<'a> {
    NewRun {
        id,
        task_id: Some(task),
        attempt: 1,
        role: "executor",
        worker: "codex",
        worker_kind: "codex",
        model: Some("gpt-5"),
        run_dir: "/tmp/runs/r",
        worktree: Some("/tmp/wt"),
        branch: Some("oxi/t"),
        started_at_ms: 1_000,
        reserve_microusd: reserve,
        day: "2026-11-30",
        month: "2026-11",
        actor: "oxi",
        supervisor_pid: 4242,
    }
}

#[test]
fn runs_and_their_reservations_on_both_backends() {
    on_both_backends("runs_round_trip", |ledger| {
        ledger
            .write(|q| {
                q.insert_task(&spec("T1-1", 0), TaskState::Queued, 1)?;
                q.begin_run(&new_run("r1", "T1-1", 1_000))?;
                q.record_run_route("r1", "default")?;
                q.begin_run(&new_run("r2", "T1-1", 700))
            })
            .unwrap();
        let events = ledger.read().event_count().unwrap();
        ledger
            .write(|q| {
                q.record_run_process("r1", 77, 5_000)?;
                q.renew_run("r1", 9_000, 300)?;
                q.raise_reservation("r1", 2_000)?;
                // Never lowered.
                q.raise_reservation("r1", 10)
            })
            .unwrap();
        let gone = ledger.write(|q| q.record_run_process("nope", 1, 1));
        assert!(matches!(gone, Err(LedgerError::Corrupt(_))), "{gone:?}");
        let q = ledger.read();
        let r1 = q.run("r1").unwrap().unwrap();
        assert_eq!((r1.pid, r1.pgid), (Some(77), Some(77)));
        assert_eq!(r1.lease_expires_at_ms, Some(9_000));
        assert_eq!(r1.cost_microusd, 300);
        assert_eq!(r1.route.as_deref(), Some("default"));
        assert_eq!((r1.status.as_str(), r1.attempt), ("running", 1));
        assert_eq!(r1.supervisor_pid, Some(4242));
        assert_eq!(q.run("r9").unwrap(), None);
        let running: Vec<String> = q
            .running_runs()
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(running, ["r1", "r2"]);
        assert_eq!(
            q.live_reservation("r1").unwrap(),
            Some(("2026-11-30".into(), "2026-11".into(), 2_000, 300))
        );
        let totals = q.spend_totals("2026-11-30", "2026-11").unwrap();
        assert_eq!((totals.day_spent, totals.day_reserved), (300, 1_700 + 700));
        assert_eq!(
            totals,
            q.spend_totals_by_scan("2026-11-30", "2026-11").unwrap()
        );
        assert_eq!(totals, q.admission_totals("2026-11-30", "2026-11").unwrap());

        let end = RunEnd {
            ended_at_ms: 20_000,
            classification: "success",
            exit_code: Some(0),
            input_tokens: 10,
            output_tokens: 5,
            cost_microusd: 500,
            cli_version: Some("1.2.3"),
            retry_after_ms: Some(60_000),
            ..RunEnd::default()
        };
        assert!(ledger.write(|q| q.finish_run("r1", &end)).unwrap());
        // A second finish (the reaper after the runner, say) changes nothing.
        assert!(!ledger.write(|q| q.finish_run("r1", &end)).unwrap());
        let released = RunEnd {
            ended_at_ms: 21_000,
            classification: "reaped",
            release: true,
            ..RunEnd::default()
        };
        assert!(ledger.write(|q| q.finish_run("r2", &released)).unwrap());
        let q = ledger.read();
        let r1 = q.run("r1").unwrap().unwrap();
        assert_eq!(r1.status, "finished");
        assert_eq!((r1.exit_code, r1.ended_at_ms), (Some(0), Some(20_000)));
        assert_eq!((r1.input_tokens, r1.output_tokens), (10, 5));
        assert_eq!(r1.retry_after_ms, Some(60_000));
        assert_eq!(r1.lease_expires_at_ms, None);
        assert!(q.running_runs().unwrap().is_empty());
        assert_eq!(q.live_reservation("r1").unwrap(), None);
        let spend = q.spend_for_run("r1").unwrap().unwrap();
        assert_eq!(
            (
                spend.status.as_str(),
                spend.reserved_microusd,
                spend.actual_microusd
            ),
            ("settled", 2_000, 500)
        );
        let spend = q.spend_for_run("r2").unwrap().unwrap();
        assert_eq!(
            (spend.status.as_str(), spend.actual_microusd),
            ("released", 0)
        );
        assert_eq!(q.spend_for_run("r9").unwrap(), None);
        let totals = q.spend_totals("2026-11-30", "2026-11").unwrap();
        assert_eq!((totals.day_spent, totals.day_reserved), (500, 0));
        assert_eq!(
            totals,
            q.spend_totals_by_scan("2026-11-30", "2026-11").unwrap()
        );
        // run_started twice before, then run_finished twice (not for the repeated finish).
        assert_eq!(q.event_count().unwrap(), events + 2);
    });
}

/// One claim as the runner's admission makes it, in one write: the candidate, the caps with
/// the rollup rows held, the transition, the run and its reservation. `None`: the caps are
/// full; `Some(false)`: another claimer holds or took the task.
fn claim_one(ledger: &mut Ledger, task: &str, run_id: &str, caps: &Caps) -> Option<bool> {
    ledger
        .write(|q| {
            let totals = q.admission_totals("2026-11-30", "2026-11")?;
            if oxi::budget::admit(&totals, 100, caps).is_err() {
                return Ok(None);
            }
            if !q.lock_claim_candidate(task, TaskState::Queued)? {
                return Ok(Some(false));
            }
            q.transition_task(
                task,
                &Transition::by_oxi(TaskState::Queued, TaskState::Dispatched, "claimed"),
                1_000,
            )?;
            q.begin_run(&new_run(run_id, task, 100))?;
            Ok(Some(true))
        })
        .unwrap()
}

/// Two ledgers on one database (two sessions, as two hosts) claim the same 20 tasks in the
/// same order at once: no task is claimed twice, and the cap (7 claims' worth) is filled
/// exactly, never crossed.
fn claim_race(open: impl Fn() -> Ledger + Sync) {
    let mut setup = open();
    setup
        .write(|q| {
            for i in 0..20 {
                q.insert_task(&spec(&format!("T1-{i}"), i), TaskState::Queued, 1)?;
            }
            Ok(())
        })
        .unwrap();
    let caps = Caps {
        job: 100,
        daily: 700,
        monthly: 10_000,
        daily_limit: oxi::budget::Limit::DailyUsd,
    };
    let claimed: Vec<Vec<String>> = std::thread::scope(|s| {
        let claimers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|host| {
                let (open, caps) = (&open, &caps);
                s.spawn(move || {
                    let mut ledger = open();
                    let mut mine = Vec::new();
                    for i in 0..20 {
                        let task = format!("T1-{i}");
                        match claim_one(&mut ledger, &task, &format!("{host}-{i}"), caps) {
                            None => break,
                            Some(true) => mine.push(task),
                            Some(false) => {}
                        }
                    }
                    mine
                })
            })
            .collect();
        claimers.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let mut all: Vec<&String> = claimed.iter().flatten().collect();
    all.sort();
    let total = all.len();
    all.dedup();
    assert_eq!(all.len(), total, "a task claimed twice: {claimed:?}");
    assert_eq!(total, 7, "the cap holds exactly 7 claims: {claimed:?}");
    let q = setup.read();
    let totals = q.spend_totals("2026-11-30", "2026-11").unwrap();
    assert_eq!(totals.day_reserved, 700);
    assert_eq!(
        totals,
        q.spend_totals_by_scan("2026-11-30", "2026-11").unwrap()
    );
    let runs = q.running_runs().unwrap();
    assert_eq!(runs.len(), 7);
    let counts = q.task_counts().unwrap();
    assert_eq!(counts.get(&TaskState::Dispatched), Some(&7));
}

#[test]
fn two_claimers_never_take_one_task_twice_nor_cross_a_cap_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    claim_race(|| Ledger::open(&path).unwrap());
    if let Some(url) = pg_url("claim_race") {
        claim_race(|| Ledger::open_postgres(&url, None).unwrap());
    }
}

#[test]
fn postgres_claim_passes_over_a_task_another_host_is_claiming() {
    let Some(url) = pg_url("claim_skip_locked") else {
        return;
    };
    let mut ledger = Ledger::open_postgres(&url, None).unwrap();
    ledger
        .write(|q| q.insert_task(&spec("T1-1", 0), TaskState::Queued, 1))
        .unwrap();
    // Another host's claim holds the task's row in its open transaction.
    let mut other = raw(&url);
    let mut tx = other.transaction().unwrap();
    tx.execute("SELECT 1 FROM tasks WHERE id = 'T1-1' FOR UPDATE", &[])
        .unwrap();
    // Passed over at once, not waited for (a wait would end in `Busy` after the lock timeout).
    let taken = ledger.write(|q| q.lock_claim_candidate("T1-1", TaskState::Queued));
    assert!(matches!(taken, Ok(false)), "{taken:?}");
    tx.rollback().unwrap();
    let free = ledger.write(|q| q.lock_claim_candidate("T1-1", TaskState::Queued));
    assert!(matches!(free, Ok(true)), "{free:?}");
    let moved = ledger.write(|q| q.lock_claim_candidate("T1-1", TaskState::Held));
    assert!(matches!(moved, Ok(false)), "{moved:?}");
}

// --- The tick's reads and writes -------------------------------------------------------------

fn finish(ledger: &mut Ledger, run: &str, classification: &str, cost: i64) {
    let end = RunEnd {
        ended_at_ms: 2_000,
        classification,
        cost_microusd: cost,
        ..RunEnd::default()
    };
    assert!(ledger.write(|q| q.finish_run(run, &end)).unwrap());
}

#[test]
fn task_counters_setters_and_deferrals_on_both_backends() {
    on_both_backends("tick_setters", |ledger| {
        ledger
            .write(|q| {
                q.insert_task(&spec("T1-1", 0), TaskState::Queued, 1)?;
                q.count_attempt("T1-1", 10)?;
                q.count_attempt("T1-1", 11)?;
                q.count_worker_call("T1-1", 12)?;
                q.set_task_branch("T1-1", "oxi/T1-1", "abc123")?;
                q.set_task_pr("T1-1", 42, Some("https://example.test/pr/42"))?;
                q.set_task_failure("T1-1", Some("tests failed"))
            })
            .unwrap();
        let t = ledger.read().task("T1-1").unwrap().unwrap();
        assert_eq!((t.attempts, t.worker_calls, t.updated_at_ms), (2, 3, 12));
        assert_eq!(t.branch.as_deref(), Some("oxi/T1-1"));
        assert_eq!(t.base_commit.as_deref(), Some("abc123"));
        assert_eq!(t.pr_number, Some(42));
        assert_eq!(t.pr_url.as_deref(), Some("https://example.test/pr/42"));
        assert_eq!(t.last_failure.as_deref(), Some("tests failed"));

        let events = ledger.read().event_count().unwrap();
        ledger
            .write(|q| {
                q.reset_task_counters("T1-1", 20)?;
                q.set_task_failure("T1-1", None)?;
                q.defer_task("T1-1", "overlaps T1-2", 30)
            })
            .unwrap();
        let t = ledger.read().task("T1-1").unwrap().unwrap();
        assert_eq!((t.attempts, t.worker_calls), (0, 0));
        assert_eq!(t.last_failure, None);
        assert_eq!(t.last_deferred_at_ms, Some(30));
        assert_eq!(ledger.read().event_count().unwrap(), events + 1);
    });
}

#[test]
fn cost_estimates_run_totals_and_verify_results_on_both_backends() {
    on_both_backends("tick_costs", |ledger| {
        ledger
            .write(|q| q.insert_task(&spec("T1-1", 0), TaskState::Queued, 1))
            .unwrap();
        let ids: Vec<String> = (1..=12).map(|i| format!("r{i:02}")).collect();
        for (i, id) in ids.iter().enumerate() {
            let mut run = new_run(id, "T1-1", 0);
            run.started_at_ms = 1_000 + i as i64;
            ledger.write(|q| q.begin_run(&run)).unwrap();
        }
        // Ten runs of 100..1000, one stopped at the cap (counted at the cap), one reaped (left out).
        for (i, id) in ids.iter().take(10).enumerate() {
            finish(ledger, id, "success", 100 * (i as i64 + 1));
        }
        finish(ledger, &ids[10], "budget_exceeded", 5_000);
        finish(ledger, &ids[11], "reaped", 9_000);
        let q = ledger.read();
        assert_eq!(q.cost_p90("codex", "executor", 1_050).unwrap(), Some(1_000));
        assert_eq!(q.cost_p90("codex", "executor", 950).unwrap(), Some(950));
        assert_eq!(q.cost_p90("codex", "reviewer", 1_000).unwrap(), None);
        let totals = q.task_run_totals().unwrap();
        let t = &totals["T1-1"];
        assert_eq!(t.cost_microusd, 5_500 + 5_000 + 9_000);
        assert_eq!(t.last_worker.as_deref(), Some("codex"));
        let runs: Vec<String> = q
            .runs_for_task("T1-1")
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(runs, ids);
        assert!(q.runs_for_task("T9-9").unwrap().is_empty());
        assert!(q.last_attempt_paths("T1-1").unwrap().is_empty());
        assert_eq!(q.delivered_commit("T1-1").unwrap(), None);

        let record = |run_id: &'static str, name: &'static str, status: &'static str| {
            oxi::ledger::VerifyRecord {
                run_id,
                task_id: Some("T1-1"),
                tier: "tier1",
                name,
                status,
                exit_code: Some(i32::from(status != "passed")),
                duration_ms: 5,
                log_path: None,
                at_ms: 3_000,
            }
        };
        ledger
            .write(|q| {
                q.insert_verify_result(&record("r01", "test", "failed"))?;
                q.insert_verify_result(&record("r02", "test", "passed"))?;
                q.insert_verify_result(&record("r02", "lint", "passed"))?;
                q.insert_verify_result(&record("r03", "test", "passed"))
            })
            .unwrap();
        let q = ledger.read();
        assert!(q.last_runs_green(2).unwrap());
        assert!(!q.last_runs_green(3).unwrap(), "r01 failed");
        assert!(!q.last_runs_green(4).unwrap(), "only three runs verified");
        assert!(!q.last_runs_green(0).unwrap());
    });
}

#[test]
fn approvals_on_both_backends() {
    on_both_backends("tick_approvals", |ledger| {
        ledger
            .write(|q| {
                q.insert_task(&spec("T1-1", 0), TaskState::Queued, 1)?;
                q.begin_run(&new_run("r1", "T1-1", 0))?;
                q.insert_approval("T1-1", ApprovalKind::OverEstimate, "ada", Some("ok"), 5)?;
                q.mark_over_estimate_used("T1-1", "r1")?;
                q.insert_approval("T1-1", ApprovalKind::OverEstimate, "bob", None, 6)
            })
            .unwrap();
        let approvals = ledger.read().approvals_for("T1-1").unwrap();
        let seen: Vec<(&str, Option<&str>, Option<&str>)> = approvals
            .iter()
            .map(|a| {
                (
                    a.approved_by.as_str(),
                    a.note.as_deref(),
                    a.used_by_run.as_deref(),
                )
            })
            .collect();
        assert_eq!(seen, [("ada", Some("ok"), Some("r1")), ("bob", None, None)]);
        assert!(
            approvals
                .iter()
                .all(|a| a.kind == Some(ApprovalKind::OverEstimate) && a.task_id == "T1-1")
        );
        assert!(ledger.read().approvals_for("T9-9").unwrap().is_empty());
    });
}

#[test]
fn postgres_integrity_check_finds_a_disabled_trigger_and_a_drifted_rollup() {
    let Some(url) = pg_url("integrity") else {
        return;
    };
    let mut ledger = Ledger::open_postgres(&url, None).unwrap();
    ledger
        .write(|q| {
            q.insert_task(&spec("T1-1", 0), TaskState::Queued, 1)?;
            q.begin_run(&new_run("r1", "T1-1", 500))
        })
        .unwrap();
    assert_eq!(ledger.integrity_check().unwrap(), Vec::<String>::new());
    let mut db = raw(&url);
    db.batch_execute(
        "ALTER TABLE events DISABLE TRIGGER events_no_update;
         DROP TRIGGER tasks_legal_transition ON tasks;
         UPDATE spend_rollup SET held = held + 1 WHERE period = '2026-11';",
    )
    .unwrap();
    assert_eq!(
        ledger.integrity_check().unwrap(),
        [
            "trigger tasks_legal_transition on tasks is missing",
            "trigger events_no_update on events is disabled",
            "spend_rollup for 2026-11 differs from the reservations it sums",
        ]
    );
}
