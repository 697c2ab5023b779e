//! The order in which PostgreSQL ledger writers take the spend rollup rows. A claim locks the
//! month's and the day's rows in key order (the month's first) for its admission; the rollup
//! trigger of a settle updates them in its plan's order (the day's first, as a rule). A settle
//! holding the day's row while it waits for the month's, beside a claim holding the month's
//! while it waits for the day's, is a deadlock PostgreSQL breaks by failing one of them — which
//! the claim benchmark (benches/claim.rs) hit with 4 claimers. So every writer of the rollup
//! takes its rows in key order before the trigger runs.
//!
//! A claim takes its task row first and the rollup rows last (`Queries::admit_claim`): a claim
//! that lost its race never queues for the rollup rows, a refusal leaves the task as it was,
//! and the task lock does not block what a settle holding the rollup rows takes of a task row
//! (a foreign key check's `KEY SHARE`).
//!
//! Without PostgreSQL installed these skip, printing the command that enables them; under
//! `CI=true` they fail instead.

use std::time::{Duration, Instant};

use oxi::ledger::{
    GatewayCallEnd, Ledger, LedgerError, NewGatewayCall, NewRun, Queries, RunEnd, TaskSpec,
    TaskState, Transition, TransitionFields,
};
use oxi_testkit::pg::cluster_or_skip;

use crate::support::plain_task;

fn spec(id: &str) -> TaskSpec {
    plain_task(id, 1)
}

const DAY: &str = "2026-11-30";
const MONTH: &str = "2026-11";

/// Waits until another session of this database waits for a lock.
fn until_someone_waits(client: &mut postgres::Client) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the settle never waited for the month's rollup row"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A ledger holding a task and a run with its reservation, and a gateway call reserved.
fn seeded(test: &str) -> Option<(String, Ledger, i64)> {
    let cluster = cluster_or_skip(test)?;
    let url = cluster.database(test).unwrap();
    let mut ledger = Ledger::open_postgres(&url, None).unwrap();
    let call = ledger
        .write(|q| {
            q.insert_task(&spec("T1-1"), TaskState::Queued, 1_000)?;
            q.admission_totals(DAY, MONTH)?;
            q.begin_run(&NewRun {
                id: "r1",
                task_id: Some("T1-1"),
                attempt: 1,
                role: "executor",
                worker: "codex",
                worker_kind: "codex",
                model: None,
                run_dir: "/tmp/runs/r1",
                worktree: None,
                branch: None,
                started_at_ms: 1_000,
                reserve_microusd: 2_000,
                day: DAY,
                month: MONTH,
                actor: "oxi",
                supervisor_pid: 4242,
            })?;
            q.begin_gateway_call(&gateway_call())
        })
        .unwrap();
    Some((url, ledger, call))
}

fn gateway_call() -> NewGatewayCall<'static> {
    NewGatewayCall {
        role: "triage",
        provider: "mock",
        model: "m",
        task_id: None,
        day: DAY,
        month: MONTH,
        reserve_microusd: 300,
        at_ms: 1_000,
    }
}

/// Runs `write` on the ledger's session while another host's claim sits between its two row
/// locks (the month's taken, the day's next), and requires that the writer, waiting for the
/// month's row, holds not the day's: else that claim and this writer deadlock.
fn waits_in_key_order(
    test: &str,
    write: impl FnOnce(&oxi::ledger::Queries<'_>, i64) -> oxi::ledger::Result<()> + Send + 'static,
) -> Option<Ledger> {
    let (url, mut ledger, call) = seeded(test)?;
    let mut claim = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    claim.batch_execute("BEGIN").unwrap();
    claim
        .query(
            "SELECT 1 FROM spend_rollup WHERE period = $1 FOR UPDATE",
            &[&MONTH],
        )
        .unwrap();
    let writer = std::thread::spawn(move || {
        let written = ledger.write(|q| write(q, call));
        (ledger, written)
    });
    until_someone_waits(&mut claim);
    let day = claim.query(
        "SELECT 1 FROM spend_rollup WHERE period = $1 FOR UPDATE NOWAIT",
        &[&DAY],
    );
    claim.batch_execute("ROLLBACK").unwrap();
    assert!(
        day.is_ok(),
        "{test}: the writer holds the day's rollup row while it waits for the month's, so a \
         claim that took the month's first would deadlock with it: {:?}",
        day.err()
    );
    let (ledger, written) = writer.join().unwrap();
    written.unwrap();
    Some(ledger)
}

#[test]
fn a_settle_waiting_for_the_months_rollup_row_holds_not_the_days() {
    let end = RunEnd {
        ended_at_ms: 2_000,
        classification: "success",
        cost_microusd: 1_500,
        ..RunEnd::default()
    };
    let Some(ledger) = waits_in_key_order("rollup_locks_settle", move |q, _| {
        assert!(q.finish_run("r1", &end)?, "the run was running");
        Ok(())
    }) else {
        return;
    };
    let totals = ledger.read().spend_totals(DAY, MONTH).unwrap();
    // The run's 1,500 spent, its reservation gone; the gateway call's 300 still held.
    assert_eq!(
        (totals.day_spent, totals.day_reserved, totals.month_spent),
        (1_500, 300, 1_500)
    );
}

#[test]
fn a_lease_renewal_and_gateway_call_ends_take_the_rollup_rows_in_key_order() {
    let Some(ledger) =
        waits_in_key_order("rollup_locks_renew", |q, _| q.renew_run("r1", 9_000, 700))
    else {
        return;
    };
    let totals = ledger.read().spend_totals(DAY, MONTH).unwrap();
    assert_eq!(
        (totals.day_spent, totals.day_reserved),
        (700, 2_000 - 700 + 300)
    );
    waits_in_key_order("rollup_locks_gateway_end", |q, call| {
        q.end_gateway_call(
            call,
            &GatewayCallEnd {
                outcome: "ok",
                cost_microusd: 250,
                cost_source: "header",
                tokens_in: 10,
                tokens_out: 5,
                attempts: 1,
                latency_ms: Some(12),
                error: None,
                at_ms: 2_000,
            },
        )
    });
    waits_in_key_order("rollup_locks_gateway_unsent", |q, _| {
        q.record_unsent_gateway_call(&gateway_call(), "refused", "over the cap")
            .map(|_| ())
    });
}

/// A ledger with queued tasks T1-1 and T1-2 and the day's and month's rollup rows, and a second
/// session on the same database (another host).
fn two_sessions(test: &str) -> Option<(Ledger, postgres::Client)> {
    let cluster = cluster_or_skip(test)?;
    let url = cluster.database(test).unwrap();
    let mut ledger = Ledger::open_postgres(&url, None).unwrap();
    ledger
        .write(|q| {
            q.insert_task(&spec("T1-1"), TaskState::Queued, 1_000)?;
            q.insert_task(&spec("T1-2"), TaskState::Queued, 1_000)?;
            q.admission_totals(DAY, MONTH).map(|_| ())
        })
        .unwrap();
    let other = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    Some((ledger, other))
}

/// A claim's own writes, as the scheduler's claim round makes them.
fn claim_task(q: &Queries<'_>, id: &str) -> oxi::ledger::Result<()> {
    if !q.lock_claim_candidate(id, TaskState::Queued)? {
        return Err(LedgerError::StateConflict {
            task: id.to_owned(),
            expected: TaskState::Queued,
            found: "claimed elsewhere".to_owned(),
        });
    }
    q.transition_task(
        id,
        &Transition {
            from: TaskState::Queued,
            to: TaskState::Dispatched,
            fields: TransitionFields::default(),
            actor: "oxi",
            reason: "claimed",
        },
        2_000,
    )?;
    q.count_attempt(id, 2_000)
}

/// Whether `sql` (a `NOWAIT` lock) gets its row at once, inside a transaction rolled back.
fn locks_at_once(other: &mut postgres::Client, sql: &str, param: &str) -> bool {
    other.batch_execute("BEGIN").unwrap();
    let got = other.query(sql, &[&param]).is_ok();
    other.batch_execute("ROLLBACK").unwrap();
    got
}

#[test]
fn a_refused_claim_leaves_its_task_and_the_rollup_rows_as_they_were() {
    let Some((mut ledger, mut other)) = two_sessions("rollup_locks_refused") else {
        return;
    };
    let refused = ledger
        .write(|q| {
            let refused = q.admit_claim(DAY, MONTH, |q| claim_task(q, "T1-1"), |_| Err("cap"))?;
            // Before this write commits: the savepoint's rollback let go of the task's row
            // and the rollup rows, and undid the state change and the attempt count.
            let task = q.task("T1-1")?.unwrap();
            assert_eq!((task.state, task.attempts), (TaskState::Queued, 0));
            for (sql, param) in [
                (
                    "SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE NOWAIT",
                    "T1-1",
                ),
                (
                    "SELECT 1 FROM spend_rollup WHERE period = $1 FOR UPDATE NOWAIT",
                    DAY,
                ),
                (
                    "SELECT 1 FROM spend_rollup WHERE period = $1 FOR UPDATE NOWAIT",
                    MONTH,
                ),
            ] {
                assert!(
                    locks_at_once(&mut other, sql, param),
                    "still locked after the refusal: {sql} ({param})"
                );
            }
            Ok(refused)
        })
        .unwrap();
    assert_eq!(refused, Err("cap"));
    let task = ledger.read().task("T1-1").unwrap().unwrap();
    assert_eq!((task.state, task.attempts), (TaskState::Queued, 0));
    // Admitted, the claim's writes stay.
    let admitted = ledger
        .write(|q| q.admit_claim(DAY, MONTH, |q| claim_task(q, "T1-1"), |_| Ok::<(), ()>(())))
        .unwrap();
    assert_eq!(admitted, Ok(()));
    let task = ledger.read().task("T1-1").unwrap().unwrap();
    assert_eq!((task.state, task.attempts), (TaskState::Dispatched, 1));
}

#[test]
fn a_claim_that_lost_its_race_never_waits_for_the_rollup_rows() {
    let Some((mut ledger, mut other)) = two_sessions("rollup_locks_lost_race") else {
        return;
    };
    // Another host mid-claim of T1-1: its task row and both rollup rows held.
    other.batch_execute("BEGIN").unwrap();
    other
        .query(
            "SELECT 1 FROM tasks WHERE id = $1 FOR NO KEY UPDATE",
            &[&"T1-1"],
        )
        .unwrap();
    other
        .query(
            "SELECT 1 FROM spend_rollup WHERE period IN ($1, $2) ORDER BY period FOR UPDATE",
            &[&DAY, &MONTH],
        )
        .unwrap();
    // Had the claim locked the rollup rows first, it would wait for them until the lock
    // timeout and fail `Busy`; it finds its task taken instead.
    let lost = ledger
        .write(|q| q.admit_claim(DAY, MONTH, |q| claim_task(q, "T1-1"), |_| Ok::<(), ()>(())));
    other.batch_execute("ROLLBACK").unwrap();
    assert!(
        matches!(lost, Err(LedgerError::StateConflict { ref task, .. }) if task == "T1-1"),
        "{lost:?}"
    );
}

#[test]
fn a_claim_waiting_for_the_rollup_rows_blocks_no_foreign_key_check_on_its_task() {
    let Some((mut ledger, mut other)) = two_sessions("rollup_locks_claim_waits") else {
        return;
    };
    // A settle's write, holding the rollup rows.
    other.batch_execute("BEGIN").unwrap();
    other
        .query(
            "SELECT 1 FROM spend_rollup WHERE period IN ($1, $2) ORDER BY period FOR UPDATE",
            &[&DAY, &MONTH],
        )
        .unwrap();
    let claim = std::thread::spawn(move || {
        let claimed = ledger
            .write(|q| q.admit_claim(DAY, MONTH, |q| claim_task(q, "T1-2"), |_| Ok::<(), ()>(())));
        (ledger, claimed)
    });
    until_someone_waits(&mut other);
    // The claim holds T1-2 and waits for the rollup rows. The settle appending an event that
    // names T1-2 checks its foreign key with `KEY SHARE` on T1-2's row: were the claim's lock
    // `FOR UPDATE`, that check would wait for the claim, which waits for the settle.
    let key_share = other.query(
        "SELECT 1 FROM tasks WHERE id = $1 FOR KEY SHARE NOWAIT",
        &[&"T1-2"],
    );
    other.batch_execute("COMMIT").unwrap();
    assert!(key_share.is_ok(), "{:?}", key_share.err());
    let (ledger, claimed) = claim.join().unwrap();
    assert_eq!(claimed.unwrap(), Ok(()));
    let task = ledger.read().task("T1-2").unwrap().unwrap();
    assert_eq!(task.state, TaskState::Dispatched);
}
