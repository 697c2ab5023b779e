//! The PostgreSQL ledger against a real PostgreSQL (a throwaway cluster from oxi-testkit): each
//! ported ledger function runs one test body on both backends, then what only PostgreSQL has to
//! prove (its migrations, the triggers that keep the state machine, the append-only trail and
//! the spend rollup, the URL and password rules).
//!
//! Without PostgreSQL installed the PostgreSQL half skips, printing the command that enables
//! it; under `CI=true` it fails instead.

use oxi::budget::Caps;
use oxi::ledger::{
    ApprovalKind, Event, HostBeat, Killswitch, Ledger, LedgerError, MIGRATIONS, NewEvent, NewRun,
    RunEnd, TaskSpec, TaskState, TickLockAttempt, Transition, TransitionFields,
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
    // The scan over `spend` and `gateway_calls` is the rollup's definition, as on SQLite.
    let scan = q.spend_totals_by_scan("2026-11-30", "2026-11").unwrap();
    assert_eq!(scan, totals);
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

// --- Resumed sessions, hosts and the tick lock ------------------------------------------------

#[test]
fn resumed_sessions_on_both_backends() {
    on_both_backends("resume", |ledger| {
        ledger
            .write(|q| q.insert_task(&spec("T1-1", 0), TaskState::Queued, 1))
            .unwrap();
        assert_eq!(ledger.read().resume_source("T1-1", 1).unwrap(), None);
        let runs = [("r1", 1, 100), ("r2", 2, 250), ("r3", 3, 400)];
        for (id, attempt, cost) in runs {
            let run = NewRun {
                attempt,
                started_at_ms: 1_000 * i64::from(attempt),
                ..new_run(id, "T1-1", 1_000)
            };
            ledger.write(|q| q.begin_run(&run)).unwrap();
            let end = RunEnd {
                ended_at_ms: 1_000 * i64::from(attempt) + 500,
                classification: "timeout",
                input_tokens: 10 * u64::from(attempt),
                cached_input_tokens: 1,
                output_tokens: 2,
                reasoning_tokens: 3,
                cost_microusd: cost,
                session_id: Some("sess-1"),
                ..RunEnd::default()
            };
            assert!(ledger.write(|q| q.finish_run(id, &end)).unwrap());
        }
        let source = ledger.read().resume_source("T1-1", 3).unwrap().unwrap();
        assert_eq!(
            (
                source.run_id.as_str(),
                source.attempt,
                source.session_id.as_deref()
            ),
            ("r2", 2, Some("sess-1"))
        );
        assert_eq!(source.classification.as_deref(), Some("timeout"));
        ledger
            .write(|q| {
                q.set_resumed_from("r2", Some("r1"))?;
                q.set_resumed_from("r3", Some("r2"))
            })
            .unwrap();
        let q = ledger.read();
        assert_eq!(q.resumed_from("r3").unwrap().as_deref(), Some("r2"));
        assert_eq!(q.resumed_from("r1").unwrap(), None);
        assert_eq!(q.resumed_from("nope").unwrap(), None);
        let spent = q.session_spent("r3").unwrap();
        assert_eq!(
            (
                spent.input_tokens,
                spent.cached_input_tokens,
                spent.cost_microusd
            ),
            (60, 3, 750)
        );
        assert_eq!(q.session_spent("r1").unwrap().cost_microusd, 100);
        ledger.write(|q| q.set_resumed_from("r3", None)).unwrap();
        assert_eq!(
            ledger.read().session_spent("r3").unwrap().cost_microusd,
            400
        );
    });
}

#[test]
fn hosts_heartbeats_and_run_hosts_on_both_backends() {
    on_both_backends("hosts", |ledger| {
        let labels = vec!["gpu".to_owned(), "linux".to_owned()];
        let mut versions = std::collections::BTreeMap::new();
        versions.insert("codex".to_owned(), "0.169.0".to_owned());
        let beat = |at_ms| HostBeat {
            name: "box-a",
            machine_id: "m-1",
            labels: &labels,
            pid: 77,
            oxi_version: "0.1.0",
            cli_versions: &versions,
            at_ms,
        };
        ledger.write(|q| q.host_heartbeat(&beat(5_000))).unwrap();
        // An older beat arriving late never moves the heartbeat back.
        ledger.write(|q| q.host_heartbeat(&beat(4_000))).unwrap();
        ledger
            .write(|q| {
                q.insert_task(&spec("T1-1", 0), TaskState::Queued, 1)?;
                q.insert_task(&spec("T1-2", 1), TaskState::Queued, 1)?;
                q.begin_run(&new_run("r1", "T1-1", 10))?;
                q.record_run_host("r1", "box-a")?;
                q.begin_run(&NewRun {
                    started_at_ms: 1_500,
                    ..new_run("r2", "T1-2", 10)
                })?;
                q.record_run_host("r2", "box-b")?;
                q.renew_run("r1", 9_000, 3)
            })
            .unwrap();
        let hosts = ledger.read().hosts().unwrap();
        assert_eq!(hosts.len(), 1);
        let h = &hosts[0];
        assert_eq!((h.name.as_str(), h.machine_id.as_str()), ("box-a", "m-1"));
        assert_eq!(h.labels, labels);
        assert_eq!(h.cli_versions, versions);
        assert_eq!(
            (h.pid, h.first_seen_ms, h.last_heartbeat_ms),
            (77, 5_000, 5_000)
        );
        assert_eq!((h.running_jobs, h.lease_until_ms), (1, Some(9_000)));
        let task_hosts = ledger.read().task_hosts().unwrap();
        assert_eq!(task_hosts.get("T1-1").map(String::as_str), Some("box-a"));
        assert_eq!(task_hosts.get("T1-2").map(String::as_str), Some("box-b"));
        let end = RunEnd {
            ended_at_ms: 2_000,
            classification: "success",
            cost_microusd: 5,
            cli_version: Some("0.170.0"),
            ..RunEnd::default()
        };
        ledger.write(|q| q.finish_run("r1", &end)).unwrap();
        let totals = ledger.read().host_run_totals(0).unwrap();
        let by_host: Vec<(&str, u32, u32, i64)> = totals
            .iter()
            .map(|t| {
                (
                    t.host.as_str(),
                    t.executor_runs,
                    t.succeeded,
                    t.cost_microusd,
                )
            })
            .collect();
        assert_eq!(by_host, [("box-a", 1, 1, 5), ("box-b", 0, 0, 0)]);
        assert!(
            ledger
                .read()
                .host_run_totals(1_200)
                .unwrap()
                .iter()
                .all(|t| t.host == "box-b")
        );
        let cli = ledger.read().host_cli_versions("box-a").unwrap();
        assert_eq!(cli.get("codex").map(String::as_str), Some("0.170.0"));
        assert!(ledger.read().host_cli_versions("box-b").unwrap().is_empty());
    });
}

#[test]
fn postgres_tick_lock_is_per_host_and_repository_across_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Ledger::open(&dir.path().join("ledger.db")).unwrap();
    assert!(matches!(
        sqlite.try_tick_lock("box-a", "/repo", "{}").unwrap(),
        TickLockAttempt::Sqlite
    ));
    let Some(url) = pg_url("tick_lock") else {
        return;
    };
    // Two sessions, as two processes (or two hosts) would have.
    let first = Ledger::open_postgres(&url, None).unwrap();
    let second = Ledger::open_postgres(&url, None).unwrap();
    let TickLockAttempt::Taken(lock_a) = first.try_tick_lock("box-a", "/repo", "holder a").unwrap()
    else {
        panic!("the first tick of box-a takes the lock");
    };
    // The same host again, from another session: refused, naming the holder.
    match second.try_tick_lock("box-a", "/repo", "holder a2").unwrap() {
        TickLockAttempt::Held(holder) => assert_eq!(holder.as_deref(), Some("holder a")),
        other => panic!("one host never ticks twice: {other:?}"),
    }
    // Another host, or the same host on another repository, ticks at once.
    let TickLockAttempt::Taken(lock_b) =
        second.try_tick_lock("box-b", "/repo", "holder b").unwrap()
    else {
        panic!("two hosts tick at once");
    };
    assert!(matches!(
        second.try_tick_lock("box-a", "/other", "x").unwrap(),
        TickLockAttempt::Taken(_)
    ));
    // Dropping the lock ends its session, and the server releases the lock with it.
    drop(lock_a);
    assert!(matches!(
        second.try_tick_lock("box-a", "/repo", "holder a3").unwrap(),
        TickLockAttempt::Taken(_)
    ));
    drop(lock_b);
}

// --- Moving a ledger between backends ----------------------------------------------------------

/// Every event kind's text, from the one table that declares them (so a kind added later is
/// covered without touching this test).
fn every_event_kind() -> Vec<String> {
    let source = include_str!("../src/ledger/events.rs");
    let start = source
        .find("event_kinds! {")
        .expect("the event_kinds! table");
    let kinds: Vec<String> = source[start..]
        .lines()
        .take_while(|l| l.trim() != "}")
        .filter_map(|l| {
            let (_, text) = l.trim().split_once(") = \"")?;
            Some(text.trim_end_matches("\",").to_owned())
        })
        .collect();
    assert!(kinds.len() > 40, "found only {kinds:?}");
    kinds
}

/// A value for column `column` (declared `decl`) of `table` in the filler row: the fixed ids
/// of the parent rows, a legal word for each CHECKed column, else one of the declared type.
fn filler_value(table: &str, column: &str, decl: &str) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    let text = |s: &str| Value::Text(s.to_owned());
    match (table, column) {
        ("tasks", "id") | (_, "task_id") => return text("T1-1"),
        ("runs", "id") | (_, "run_id" | "primary_run_id" | "shadow_run_id" | "used_by_run") => {
            return text("r1");
        }
        ("tasks", "state") => return text("queued"),
        ("runs", "status") => return text("finished"),
        ("spend" | "gateway_calls", "status") => return text("reserved"),
        ("verify_results", "status") => return text("passed"),
        ("notify_outbox", "state") => return text("pending"),
        ("notifications", "status") => return text("delivered"),
        ("improve_proposals", "status") => return text("proposed"),
        ("worker_probes", "verdict") => return text("pass"),
        ("improve_verdicts", "verdict") => return text("accepted"),
        // A skip names its layer (the table's CHECK ties the two).
        ("improve_decisions", "outcome") => return text("skipped"),
        ("improve_decisions", "layer") => return text("semantic"),
        ("events", "kind") => return text("paused"),
        _ => {}
    }
    let decl = decl.to_ascii_uppercase();
    if decl.contains("INT") {
        Value::Integer(1)
    } else if decl.contains("REAL") {
        Value::Real(0.25)
    } else if decl.contains("BLOB") {
        Value::Blob(vec![0, 1, 2, 255])
    } else {
        Value::Text(format!("{table}.{column} \u{2713} 'q'"))
    }
}

/// A SQLite ledger with a row in every table (all columns set), rows with NULLs from the typed
/// layer, and an event of every kind.
fn full_sqlite_ledger(path: &std::path::Path) -> Ledger {
    let mut ledger = Ledger::open(path).unwrap();
    let conn = ledger.raw_connection();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let derived = [
        "schema_migrations",
        "task_states",
        "task_transitions",
        "spend_rollup",
    ];
    for table in tables.iter().filter(|t| !derived.contains(&t.as_str())) {
        let columns: Vec<(String, String)> = conn
            .prepare(&format!("PRAGMA table_info({table})"))
            .unwrap()
            .query_map([], |r| Ok((r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let values: Vec<rusqlite::types::Value> = columns
            .iter()
            .map(|(n, d)| filler_value(table, n, d))
            .collect();
        conn.execute(
            &format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                names.join(", "),
                marks.join(", ")
            ),
            rusqlite::params_from_iter(values),
        )
        .unwrap_or_else(|e| panic!("filler row of {table}: {e}"));
    }
    for (i, kind) in every_event_kind().iter().enumerate() {
        conn.execute(
            "INSERT INTO events (at_ms, kind, task_id, run_id, actor, data)
             VALUES (?1, ?2, NULL, NULL, 'oxi', ?3)",
            rusqlite::params![100 + i as i64, kind, format!("{{\"n\":{i}}}")],
        )
        .unwrap();
    }
    // Rows the typed layer writes, with their NULLs, a settled run and a released one.
    ledger
        .write(|q| {
            q.insert_task(&spec("T2-1", 1), TaskState::Queued, 1)?;
            q.begin_run(&new_run("r2", "T2-1", 500))?;
            q.begin_run(&NewRun {
                role: "reviewer",
                ..new_run("r3", "T2-1", 300)
            })
        })
        .unwrap();
    finish(&mut ledger, "r2", "success", 120);
    let released = RunEnd {
        ended_at_ms: 2_500,
        classification: "reaped",
        release: true,
        ..RunEnd::default()
    };
    ledger.write(|q| q.finish_run("r3", &released)).unwrap();
    ledger
}

#[test]
fn postgres_ledger_migrate_round_trips_every_table_and_event_kind() {
    let dir = tempfile::tempdir().unwrap();
    let source = full_sqlite_ledger(&dir.path().join("ledger.db"));
    let before = source.contents().unwrap();
    for (table, rows) in &before {
        assert!(!rows.is_empty(), "the source ledger has no row in {table}");
    }
    let Some(url) = pg_url("ledger_migrate") else {
        return;
    };
    let mut pg = Ledger::open_postgres(&url, None).unwrap();
    let copied = source.copy_into(&mut pg).unwrap();
    assert_eq!(
        copied.rows(),
        before
            .iter()
            .filter(|(t, _)| *t != "spend_rollup")
            .map(|(_, r)| r.len() as u64)
            .sum::<u64>()
    );
    let on_pg = pg.contents().unwrap();
    for (table, rows) in &before {
        assert_eq!(
            on_pg.get(table),
            Some(rows),
            "table {table} after SQLite -> PostgreSQL"
        );
    }
    assert_eq!(pg.integrity_check().unwrap(), Vec::<String>::new());
    // A second copy into a ledger that is not empty is refused, and changes nothing.
    let again = source.copy_into(&mut pg).unwrap_err();
    assert!(
        matches!(&again, LedgerError::NotEmpty { table, .. } if table == "tasks"),
        "{again}"
    );
    assert_eq!(pg.contents().unwrap(), on_pg);
    // And back into a new SQLite ledger: the same rows again.
    let mut back = Ledger::open(&dir.path().join("back.db")).unwrap();
    pg.copy_into(&mut back).unwrap();
    assert_eq!(
        back.contents().unwrap(),
        before,
        "SQLite -> PostgreSQL -> SQLite"
    );
    assert_eq!(back.integrity_check().unwrap(), Vec::<String>::new());
    // The copies go on working: ids continue after the copied ones on both.
    let next = |ledger: &mut Ledger| {
        ledger
            .write(|q| {
                q.append_event(&NewEvent {
                    at_ms: 9,
                    task_id: None,
                    run_id: None,
                    actor: "oxi",
                    event: Event::Paused(oxi::ledger::events::Killswitched { reason: None }),
                })
            })
            .unwrap()
    };
    let max_id = before["events"].len() as i64;
    assert!(next(&mut pg) > max_id);
    assert!(next(&mut back) > max_id);
}

#[test]
fn postgres_backup_is_a_snapshot_file_and_restore_replaces_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let source = full_sqlite_ledger(&dir.path().join("ledger.db"));
    let Some(url) = pg_url("pg_backup") else {
        return;
    };
    let mut pg = Ledger::open_postgres(&url, None).unwrap();
    source.copy_into(&mut pg).unwrap();
    let original = pg.contents().unwrap();
    assert!(pg.running_runs_brief().unwrap().is_empty());

    let file = dir.path().join("backups/pg.db");
    let summary = pg.backup_to(&file).unwrap();
    assert_eq!(summary.tasks, original["tasks"].len() as i64);
    assert_eq!(summary.events, original["events"].len() as i64);
    // The backup is an SQLite ledger with the same rows.
    assert_eq!(Ledger::open(&file).unwrap().contents().unwrap(), original);
    let exists = pg.backup_to(&file).unwrap_err();
    assert!(
        matches!(exists, oxi::ledger::BackupError::Exists { .. }),
        "{exists}"
    );

    // Changes after the backup: a task and a live run.
    pg.write(|q| {
        q.insert_task(&spec("T3-1", 3), TaskState::Queued, 5)?;
        q.begin_run(&new_run("r9", "T3-1", 10))
    })
    .unwrap();
    let running = pg.running_runs_brief().unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(
        (running[0].id.as_str(), running[0].supervisor_pid),
        ("r9", Some(4242))
    );

    let aside = dir.path().join("backups/replaced.db");
    let restored = pg.restore_postgres(&file, &aside).unwrap();
    assert_eq!(restored.kept_aside.as_deref(), Some(aside.as_path()));
    let now = pg.contents().unwrap();
    for (table, rows) in &original {
        if table == "events" {
            // The restore itself is recorded: one `ledger_restored` more.
            assert_eq!(now[table].len(), rows.len() + 1);
            assert!(
                now[table]
                    .iter()
                    .any(|r| r.iter().any(|c| c.contains("ledger_restored")))
            );
        } else {
            assert_eq!(&now[table], rows, "table {table} after the restore");
        }
    }
    assert_eq!(pg.integrity_check().unwrap(), Vec::<String>::new());
    // What was replaced is kept aside, the later task in it.
    let kept = Ledger::open(&aside).unwrap();
    assert!(kept.read().task("T3-1").unwrap().is_some());
    // The append-only trail is still guarded after the restore.
    let mut client = raw(&url);
    assert!(client.batch_execute("TRUNCATE events CASCADE").is_err());
    assert!(client.batch_execute("DELETE FROM events").is_err());

    // A file that is not a ledger replaces nothing.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"not a database").unwrap();
    let before = pg.contents().unwrap();
    assert!(
        pg.restore_postgres(&junk, &dir.path().join("aside2.db"))
            .is_err()
    );
    assert_eq!(pg.contents().unwrap(), before);
}

#[test]
fn oxi_ledger_migrate_copies_to_postgres_and_back_through_the_binary() {
    use crate::support::Sandbox;
    let repo =
        Sandbox::initialised("# Roadmap\n\n- [ ] T1-1 first thing\n- [ ] T1-2 second thing\n");
    repo.oxi(&["ingest"]).ok();
    // Bad input first, before any database is needed.
    let bad = repo.oxi(&["ledger", "migrate", "--to", "mysql://db/oxi"]);
    assert!(
        bad.fails_with(1).contains("expected a postgres:// URL"),
        "{}",
        bad.stderr
    );
    repo.write("taken.db", "x");
    let taken = repo.oxi(&["ledger", "migrate", "--to", "sqlite:taken.db"]);
    assert!(
        taken.fails_with(1).contains("taken.db exists"),
        "{}",
        taken.stderr
    );
    let Some(url) = pg_url("ledger_migrate_cli") else {
        return;
    };
    let out = repo
        .oxi(&["ledger", "migrate", "--to", &url])
        .ok()
        .to_owned();
    assert!(out.contains("every table compared equal"), "{out}");
    assert!(out.contains("[ledger]"), "{out}");
    let source = Ledger::open_existing(&repo.file(".oxi/ledger.db")).unwrap();
    let pg = Ledger::open_postgres(&url, None).unwrap();
    assert_eq!(pg.contents().unwrap(), source.contents().unwrap());
    assert_eq!(pg.read().tasks().unwrap().len(), 2);
    // The target now holds rows: a second copy is refused and changes nothing.
    let again = repo.oxi(&["ledger", "migrate", "--to", &url]);
    assert!(
        again.fails_with(4).contains("is not empty"),
        "{}",
        again.stderr
    );
    let json = repo.oxi(&[
        "ledger",
        "migrate",
        "--to",
        "sqlite:copy.db",
        "--format",
        "json",
    ]);
    let json = json.json();
    assert_eq!(json["verified"], true);
    assert!(json["rows"].as_u64().unwrap() >= 2);
    let copy = Ledger::open_existing(&repo.file("copy.db")).unwrap();
    assert_eq!(copy.contents().unwrap(), source.contents().unwrap());
}

// --- oxi on a PostgreSQL ledger, through the binary ------------------------------------------

/// A repository whose `oxi.toml` puts the ledger at `url`, with the fake worker.
fn pg_repo(url: &str) -> crate::support::Sandbox {
    use crate::support::{OxiToml, Sandbox, Worker, git};
    let s = Sandbox::git_repo();
    s.write(
        "roadmap.md",
        "# Roadmap\n\n## Tier 0\n\n**T0-1 · Add a greeting file**\nSay hi.\n",
    );
    s.write(".gitignore", ".oxi/\n");
    s.config(
        &OxiToml::new()
            .project()
            .raw(&format!("[ledger]\nurl = \"{url}\"\n"))
            .raw("[host]\nname = \"box-a\"\nlabels = [\"linux\"]\n")
            .worker(Worker::fake("fake"))
            .routing(&["fake"], &[]),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    s
}

#[test]
fn oxi_ingests_ticks_and_reports_on_a_postgres_ledger() {
    let Some(url) = pg_url("e2e_tick") else {
        return;
    };
    let s = pg_repo(&url);
    s.oxi(&["ingest"]).ok();
    let tick = s.oxi(&["tick"]);
    tick.ok();
    // Everything went to PostgreSQL: no SQLite ledger beside the config.
    assert!(!s.file(".oxi/ledger.db").exists());
    let ledger = Ledger::open_postgres(&url, None).unwrap();
    let task = ledger
        .read()
        .task("T0-1")
        .unwrap()
        .expect("ingested into PostgreSQL");
    assert_ne!(
        task.state,
        TaskState::Queued,
        "the tick dispatched it: {task:?}"
    );
    let runs = ledger.read().runs_for_task("T0-1").unwrap();
    assert!(!runs.is_empty());
    assert_eq!(
        ledger
            .read()
            .task_hosts()
            .unwrap()
            .get("T0-1")
            .map(String::as_str),
        Some("box-a")
    );
    let status = s.oxi(&["status", "--format", "json"]).json();
    assert!(
        status.to_string().contains("T0-1") || status["tasks"].is_object(),
        "{status}"
    );
    let hosts = s.oxi(&["hosts"]).ok().to_owned();
    assert!(hosts.contains("box-a"), "{hosts}");
    // doctor checks the connection, the schema, this host's name and the clock.
    let doctor = s.oxi(&["doctor", "--format", "json"]).json();
    let checks = doctor["checks"].as_array().cloned().unwrap_or_default();
    let status_of = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["status"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(status_of("ledger").as_deref(), Some("ok"), "{doctor}");
    assert_eq!(status_of("clock").as_deref(), Some("ok"), "{doctor}");
    // A backup of the shared ledger is a file.
    let out = s.oxi(&["backup", "-o", "b.db"]).ok().to_owned();
    assert!(out.contains("b.db"), "{out}");
    assert!(
        Ledger::open(&s.file("b.db"))
            .unwrap()
            .read()
            .task("T0-1")
            .unwrap()
            .is_some()
    );
}

#[test]
fn postgres_tick_lock_keeps_one_host_to_one_tick_through_the_binary() {
    let Some(url) = pg_url("e2e_lock") else {
        return;
    };
    let s = pg_repo(&url);
    s.oxi(&["ingest"]).ok();
    // Another process of the same host holds the advisory lock of this repository.
    let other = Ledger::open_postgres(&url, None).unwrap();
    let repo = s.path().canonicalize().unwrap();
    let held = other
        .try_tick_lock(
            "box-a",
            &repo.display().to_string(),
            "{\"pid\":1,\"host\":\"box-a\",\"started_at\":\"then\",\"command\":\"oxi saturate\"}",
        )
        .unwrap();
    assert!(matches!(held, TickLockAttempt::Taken(_)));
    let out = s.oxi(&["tick"]).ok().to_owned();
    assert!(out.contains("tick already running"), "{out}");
    assert!(out.contains("oxi saturate"), "{out}");
    drop(held);
    let out = s.oxi(&["tick"]).ok().to_owned();
    assert!(!out.contains("tick already running"), "{out}");
}

#[test]
fn ledger_config_errors_name_the_file_line_and_key() {
    use crate::support::{OxiToml, Sandbox};
    let s = Sandbox::git_repo();
    s.write("roadmap.md", "# Roadmap\n");
    s.config(
        &OxiToml::new()
            .project()
            .raw("[ledger]\nurl = \"postgres://oxi:hunter2@db/oxi\"\n"),
    );
    let err = s.oxi(&["status"]);
    let text = format!("{}{}", err.stdout, err.stderr);
    assert_ne!(err.code, 0);
    assert!(text.contains("ledger.url"), "{text}");
    assert!(text.contains("oxi.toml:"), "{text}");
    assert!(text.contains("has a password in it"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    s.config(
        &OxiToml::new()
            .project()
            .raw("[ledger]\npassword_env = \"OXI_PW\"\n"),
    );
    let err = s.oxi(&["status"]);
    let text = format!("{}{}", err.stdout, err.stderr);
    assert!(text.contains("ledger.password_env"), "{text}");
    assert!(text.contains("set [ledger] url too"), "{text}");
}

#[test]
fn a_write_that_panics_commits_nothing_with_the_next_one() {
    let Some(url) = pg_url("panicking_write") else {
        return;
    };
    let mut ledger = Ledger::open_postgres(&url, None).unwrap();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ledger.write(|q| -> Result<(), LedgerError> {
            q.insert_task(&spec("T1-1", 0), TaskState::Queued, 1)?;
            panic!("a bug inside a write");
        })
    }));
    assert!(panicked.is_err());
    // The same session goes on: its next write commits only itself.
    ledger
        .write(|q| q.insert_task(&spec("T1-2", 1), TaskState::Queued, 1))
        .unwrap();
    let ids: Vec<String> = ledger
        .read()
        .tasks()
        .unwrap()
        .into_iter()
        .map(|t| t.spec.id)
        .collect();
    assert_eq!(ids, ["T1-2"]);
    let seen_elsewhere: i64 = raw(&url)
        .query_one("SELECT COUNT(*) FROM tasks", &[])
        .unwrap()
        .get(0);
    assert_eq!(seen_elsewhere, 1);
}
