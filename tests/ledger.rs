//! The ledger: migrations, durability settings, file mode, the state machine as the database
//! enforces it, and the append-only trail.

use std::os::unix::fs::PermissionsExt;

use oxi::ledger::{Ledger, LedgerError, MIGRATIONS, TaskSpec, TaskState, Transition};

fn spec(id: &str) -> TaskSpec {
    TaskSpec {
        id: id.to_owned(),
        priority_tier: 0,
        title: "t".into(),
        subtitle: None,
        body: String::new(),
        section: None,
        milestone: None,
        format: "oxi".into(),
        depends_on: vec![],
        file_hints: vec![],
        source_line: 1,
        roadmap_order: 0,
        content_hash: "h".into(),
        roadmap_done: false,
    }
}

#[test]
fn fresh_ledger_is_wal_full_sync_private_and_current() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".oxi/ledger.db");
    let mut ledger = Ledger::open(&path).unwrap();
    assert_eq!(
        ledger.read().schema_version().unwrap(),
        MIGRATIONS.last().unwrap().version
    );
    let conn = ledger.raw_connection();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2, "synchronous=FULL");
    let fk: i64 = conn
        .pragma_query_value(None, "foreign_keys", |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
    ledger
        .write(|q| q.insert_task(&spec("T0-1"), TaskState::Queued, 1))
        .unwrap();
    for file in ["ledger.db", "ledger.db-wal"] {
        let mode = std::fs::metadata(dir.path().join(".oxi").join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
}

#[test]
fn loose_file_mode_is_tightened_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    drop(Ledger::open(&path).unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(Ledger::open(&path).unwrap());
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn migrating_from_the_previous_version_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let latest = MIGRATIONS.last().unwrap().version;
    // The migration before the last (numbers may skip while branches land).
    let previous = MIGRATIONS[MIGRATIONS.len() - 2].version;
    {
        let ledger = Ledger::open_at_version(&path, previous).unwrap();
        assert_eq!(ledger.read().schema_version().unwrap(), previous);
    }
    let mut ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.read().schema_version().unwrap(), latest);
    ledger
        .write(|q| q.insert_task(&spec("T0-1"), TaskState::Queued, 1))
        .unwrap();
    drop(ledger);
    // Re-opening an up-to-date ledger is a no-op that keeps the rows.
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.read().tasks().unwrap().len(), 1);
}

#[test]
fn a_ledger_from_a_newer_oxi_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut ledger = Ledger::open(&path).unwrap();
    ledger
        .raw_connection()
        .pragma_update(None, "user_version", 999)
        .unwrap();
    drop(ledger);
    let err = Ledger::open(&path).unwrap_err();
    assert!(
        matches!(err, LedgerError::TooNew { found: 999, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("written by a newer oxi"), "{err}");
}

#[test]
fn an_edited_migration_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut ledger = Ledger::open(&path).unwrap();
    ledger
        .raw_connection()
        .execute(
            "UPDATE schema_migrations SET checksum = 'x' WHERE version = 1",
            [],
        )
        .unwrap();
    drop(ledger);
    assert!(matches!(
        Ledger::open(&path).unwrap_err(),
        LedgerError::MigrationChanged { version: 1, .. }
    ));
}

#[test]
fn transition_table_matches_migration() {
    let mut ledger = Ledger::open_in_memory().unwrap();
    let conn = ledger.raw_connection();
    let mut stmt = conn
        .prepare("SELECT from_state, to_state FROM task_transitions")
        .unwrap();
    let mut in_sql: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    in_sql.sort();
    let mut in_rust = Vec::new();
    for from in TaskState::ALL {
        for to in TaskState::ALL {
            if from.can_transition_to(to) {
                in_rust.push((from.as_str().to_owned(), to.as_str().to_owned()));
            }
        }
    }
    in_rust.sort();
    assert_eq!(in_sql, in_rust);
    let states: i64 = conn
        .query_row("SELECT COUNT(*) FROM task_states", [], |r| r.get(0))
        .unwrap();
    assert_eq!(states, TaskState::ALL.len() as i64);
}

#[test]
fn illegal_transitions_cannot_be_written_even_by_hand() {
    let mut ledger = Ledger::open_in_memory().unwrap();
    ledger
        .write(|q| q.insert_task(&spec("T0-1"), TaskState::Queued, 1))
        .unwrap();
    // Through the typed layer.
    let err = ledger
        .write(|q| {
            q.transition_task(
                "T0-1",
                &Transition::by_oxi(TaskState::Queued, TaskState::Merged, "test"),
                2,
            )
        })
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::IllegalTransition { .. }),
        "{err}"
    );
    // Behind its back: the trigger refuses.
    let raw = ledger
        .raw_connection()
        .execute("UPDATE tasks SET state = 'merged' WHERE id = 'T0-1'", []);
    assert!(
        raw.unwrap_err()
            .to_string()
            .contains("illegal task state transition")
    );
    // A stale expectation is a conflict, not a silent overwrite.
    ledger
        .write(|q| {
            q.transition_task(
                "T0-1",
                &Transition::by_oxi(TaskState::Queued, TaskState::Dispatched, "claim"),
                3,
            )
        })
        .unwrap();
    let err = ledger
        .write(|q| {
            q.transition_task(
                "T0-1",
                &Transition::by_oxi(TaskState::Queued, TaskState::Dispatched, "claim again"),
                4,
            )
        })
        .unwrap_err();
    assert!(matches!(err, LedgerError::StateConflict { .. }), "{err}");
    assert_eq!(
        ledger.read().task("T0-1").unwrap().unwrap().state,
        TaskState::Dispatched
    );
}

#[test]
fn events_are_append_only() {
    let mut ledger = Ledger::open_in_memory().unwrap();
    ledger
        .write(|q| q.insert_task(&spec("T0-1"), TaskState::Queued, 1))
        .unwrap();
    ledger
        .write(|q| {
            q.transition_task(
                "T0-1",
                &Transition::by_oxi(TaskState::Queued, TaskState::Held, "test"),
                2,
            )
        })
        .unwrap();
    assert_eq!(ledger.read().event_count().unwrap(), 1);
    let conn = ledger.raw_connection();
    assert!(conn.execute("UPDATE events SET kind = 'x'", []).is_err());
    assert!(conn.execute("DELETE FROM events", []).is_err());
    let count: i64 = conn
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 1);
}

#[test]
fn a_failed_write_leaves_nothing_behind() {
    let mut ledger = Ledger::open_in_memory().unwrap();
    let result = ledger.write(|q| {
        q.insert_task(&spec("T0-1"), TaskState::Queued, 1)?;
        q.insert_task(&spec("T0-1"), TaskState::Queued, 1)
    });
    assert!(result.is_err());
    assert!(ledger.read().tasks().unwrap().is_empty());
}

mod rollup {
    use oxi::ledger::{Ledger, NewRun, RunEnd};
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Begin {
            day: u8,
            reserve: i64,
        },
        Renew {
            run: usize,
            cost: i64,
        },
        Finish {
            run: usize,
            cost: i64,
            release: bool,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3, 0i64..2_000_000).prop_map(|(day, reserve)| Op::Begin { day, reserve }),
            (0usize..20, 0i64..3_000_000).prop_map(|(run, cost)| Op::Renew { run, cost }),
            (0usize..20, 0i64..3_000_000, any::<bool>())
                .prop_map(|(run, cost, release)| Op::Finish { run, cost, release }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The trigger-kept totals always equal the sums over every reservation.
        #[test]
        fn spend_rollup_matches_the_sums(ops in proptest::collection::vec(op(), 1..40)) {
            let mut ledger = Ledger::open_in_memory().unwrap();
            let mut runs: Vec<String> = Vec::new();
            for op in ops {
                match op {
                    Op::Begin { day, reserve } => {
                        let id = format!("r{}", runs.len());
                        let day_text = format!("2026-11-2{day}");
                        ledger.write(|q| q.begin_run(&NewRun {
                            id: &id, task_id: None, attempt: 1, role: "adhoc", worker: "w", worker_kind: "claude",
                            model: None, run_dir: "/x", worktree: None, branch: None, started_at_ms: 0,
                            reserve_microusd: reserve, day: &day_text, month: "2026-11", actor: "t", supervisor_pid: 1,
                        })).unwrap();
                        runs.push(id);
                    }
                    Op::Renew { run, cost } => {
                        if let Some(id) = runs.get(run) {
                            ledger.write(|q| q.renew_run(id, 0, cost)).unwrap();
                        }
                    }
                    Op::Finish { run, cost, release } => {
                        if let Some(id) = runs.get(run) {
                            ledger.write(|q| q.finish_run(id, &RunEnd {
                                ended_at_ms: 1, classification: "success", cost_microusd: cost, release,
                                ..RunEnd::default()
                            })).unwrap();
                        }
                    }
                }
                for day in ["2026-11-20", "2026-11-21", "2026-11-22"] {
                    let q = ledger.read();
                    prop_assert_eq!(q.spend_totals(day, "2026-11").unwrap(), q.spend_totals_by_scan(day, "2026-11").unwrap());
                }
            }
        }
    }
}

/// Settling reads the task id back from its own UPDATE (RETURNING): the event names the task,
/// and a run already finished is left alone.
#[test]
fn finishing_a_run_names_its_task_once() {
    use oxi::ledger::{NewRun, RunEnd};
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("ledger.db")).unwrap();
    let run = NewRun {
        id: "r1",
        task_id: Some("T0-1"),
        attempt: 1,
        role: "executor",
        worker: "w",
        worker_kind: "claude",
        model: None,
        run_dir: "/x",
        worktree: None,
        branch: None,
        started_at_ms: 1,
        reserve_microusd: 100,
        day: "2026-11-21",
        month: "2026-11",
        actor: "oxi",
        supervisor_pid: 1,
    };
    ledger
        .write(|q| {
            q.insert_task(&spec("T0-1"), TaskState::Queued, 1)?;
            q.begin_run(&run)
        })
        .unwrap();
    let end = RunEnd {
        ended_at_ms: 2,
        classification: "success",
        cost_microusd: 60,
        summary: Default::default(),
        ..RunEnd::default()
    };
    assert!(ledger.write(|q| q.finish_run("r1", &end)).unwrap());
    assert!(!ledger.write(|q| q.finish_run("r1", &end)).unwrap());
    assert!(!ledger.write(|q| q.finish_run("no-such-run", &end)).unwrap());
    let finished: Vec<Option<String>> = {
        let conn = ledger.raw_connection();
        let mut stmt = conn
            .prepare("SELECT task_id FROM events WHERE kind = 'run_finished'")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(finished, vec![Some("T0-1".to_owned())]);
    let spend = ledger.read().spend_for_run("r1").unwrap().unwrap();
    assert_eq!(
        (spend.status.as_str(), spend.actual_microusd),
        ("settled", 60)
    );
}

/// Writers in one process queue for the ledger (`ledger::writers`).
mod writers {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use oxi::ledger::{Ledger, LedgerError, TaskState, TurnError};

    use super::spec;

    #[test]
    fn many_connections_in_one_process_all_get_their_turn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        drop(Ledger::open(&path).unwrap());
        std::thread::scope(|s| {
            for t in 0..8 {
                let path = &path;
                s.spawn(move || {
                    let mut ledger = Ledger::open(path).unwrap();
                    for i in 0..25 {
                        ledger
                            .write(|q| {
                                q.insert_task(&spec(&format!("T{t}-{i}")), TaskState::Queued, 1)
                            })
                            .unwrap();
                    }
                });
            }
        });
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(ledger.read().tasks().unwrap().len(), 200);
    }

    /// A write closure that writes through a second connection to the same file would wait for
    /// itself; it fails at once instead, and the outer write still commits.
    #[test]
    fn a_write_nested_in_a_write_to_the_same_file_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let mut outer = Ledger::open(&path).unwrap();
        let mut inner = Ledger::open(&path).unwrap();
        let mut elsewhere = Ledger::open(&dir.path().join("other.db")).unwrap();
        let started = Instant::now();
        outer
            .write(|q| {
                q.insert_task(&spec("T0-1"), TaskState::Queued, 1)?;
                let nested = inner.write(|q| q.insert_task(&spec("T0-2"), TaskState::Queued, 1));
                assert!(
                    matches!(nested, Err(LedgerError::Turn(TurnError::Nested))),
                    "{nested:?}"
                );
                // Another ledger file is another queue.
                elsewhere.write(|q| q.insert_task(&spec("T9-1"), TaskState::Queued, 1))?;
                Ok(())
            })
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        let ids: Vec<String> = outer
            .read()
            .tasks()
            .unwrap()
            .into_iter()
            .map(|t| t.spec.id)
            .collect();
        assert_eq!(ids, vec!["T0-1".to_owned()]);
        // The turn was given back: the second connection writes normally now.
        inner
            .write(|q| q.insert_task(&spec("T0-2"), TaskState::Queued, 1))
            .unwrap();
    }

    /// Reads never queue: another thread reads while a writer holds its turn.
    #[test]
    fn reads_do_not_wait_for_writers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let mut writer = Ledger::open(&path).unwrap();
        writer
            .write(|q| q.insert_task(&spec("T0-1"), TaskState::Queued, 1))
            .unwrap();
        let (holding, held) = mpsc::channel();
        let (read_done, reader_finished) = mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(move || {
                writer
                    .write(|q| {
                        q.insert_task(&spec("T0-2"), TaskState::Queued, 1)?;
                        holding.send(()).unwrap();
                        // Keep the turn (and SQLite's write lock) until the reader is done.
                        let read: usize = reader_finished
                            .recv_timeout(Duration::from_secs(10))
                            .expect("the reader was blocked by the writer");
                        assert_eq!(read, 1, "the reader saw the uncommitted row");
                        Ok(())
                    })
                    .unwrap();
            });
            let reader = Ledger::open(&path).unwrap();
            held.recv().unwrap();
            read_done
                .send(reader.read().tasks().unwrap().len())
                .unwrap();
        });
    }
}
