//! The scheduler's claim and a run's end as single steps: on PostgreSQL one statement each
//! (`oxi_claim_task` and `oxi_finish_run`, migration 0020), on SQLite one write each. The
//! PostgreSQL function must write exactly what the write path writes, admit exactly what
//! `budget::admit` admits, and take a task only once.

use std::path::Path;

use oxi::config::LoadedConfig;
use oxi::ledger::{
    ApprovalKind, ClaimCaps, Ledger, NewRun, OneStepClaim, RunEnd, RunLabels, SpendTotals,
    TaskClaim, TaskRow, TaskState,
};
use oxi::scheduler::{BenchClaim, claim_for_bench};
use oxi_testkit::pg::cluster_or_skip;

/// Every run's reserve and cost ($1), in microdollars.
const AMOUNT: i64 = 1_000_000;
const WORKER: &str = "w";

/// A repository directory whose `oxi.toml` fits `daily` runs a day and `monthly` a month.
fn config(daily: i64, monthly: i64) -> (tempfile::TempDir, LoadedConfig) {
    let dir = tempfile::tempdir().unwrap();
    let usd = |runs: i64| (AMOUNT * runs) as f64 / 1_000_000.0;
    let path = dir.path().join("oxi.toml");
    std::fs::write(
        &path,
        format!(
            "[workers.{WORKER}]\nkind = \"claude\"\ncommand = [\"/bin/true\"]\nmodel = \"claude-sonnet-4-5\"\n\n\
             [routing]\nexecutor = [\"{WORKER}\"]\nreviewer = [\"{WORKER}\"]\n\n\
             [caps]\njob_usd = {job}\nestimate_floor_usd = {job}\ndaily_usd = {daily}\n\
             daily_soft_warn_usd = {daily}\nmonthly_usd = {monthly}\n",
            job = usd(1),
            daily = usd(daily),
            monthly = usd(monthly),
        ),
    )
    .unwrap();
    let loaded = oxi::config::load(&path, None).unwrap();
    (dir, loaded)
}

/// `tasks` queued tasks T0-0 … ingested from a roadmap, as `oxi tick` would.
fn ingest(ledger: &mut Ledger, tasks: usize) -> Vec<TaskRow> {
    let mut text = String::from("# Claims\n\n");
    for n in 0..tasks {
        text.push_str(&format!("**T0-{n} · task {n}**\nChange `src/m{n}.rs`.\n\n"));
    }
    let parsed = oxi::roadmap::parse(text.as_bytes(), Path::new("roadmap.md"), 1).unwrap();
    let hash = oxi::roadmap::ingest::roadmap_hash(text.as_bytes());
    oxi::roadmap::ingest::apply(ledger, &parsed, "roadmap.md", &hash, 1).unwrap();
    let mut rows = ledger.read().tasks().unwrap();
    rows.sort_by_key(|t| t.spec.roadmap_order);
    rows
}

fn pg_ledger(test: &str) -> Option<Ledger> {
    let url = cluster_or_skip(test)?.database(test).unwrap();
    Some(Ledger::open_postgres(&url, None).unwrap())
}

fn claim(ledger: &mut Ledger, config: &LoadedConfig, task: &TaskRow) -> BenchClaim {
    claim_for_bench(ledger, config, task, WORKER, AMOUNT).unwrap()
}

/// What a claim leaves in the ledger, with what differs by nature between two ledgers (run
/// ids, times, directories, event ids) taken out: tasks, runs, reservations, events, approvals.
fn written(ledger: &Ledger) -> serde_json::Value {
    let q = ledger.read();
    let mut run_ids: Vec<String> = Vec::new();
    let mut tasks = Vec::new();
    for task in q.tasks().unwrap() {
        let id = task.spec.id.clone();
        let approvals: Vec<_> = q
            .approvals_for(&id)
            .unwrap()
            .into_iter()
            .map(|a| {
                (
                    a.kind.map(|k| k.as_str().to_owned()),
                    a.used_by_run.is_some(),
                )
            })
            .collect();
        tasks.push(serde_json::json!({
            "id": id, "state": task.state.as_str(), "attempts": task.attempts,
            "worker_calls": task.worker_calls, "held_reason": task.held_reason,
            "approvals": approvals,
        }));
    }
    let mut runs = Vec::new();
    for run in q.running_runs().unwrap() {
        let spend = q.spend_for_run(&run.id).unwrap().unwrap();
        runs.push(serde_json::json!({
            "task": run.task_id, "attempt": run.attempt, "role": run.role, "worker": run.worker,
            "worker_kind": run.worker_kind, "model": run.model, "status": run.status,
            "host": run.host, "route": run.route, "supervisor_pid": run.supervisor_pid,
            "dir_is_the_runs": run.run_dir.as_deref().is_some_and(|d| d.ends_with(&run.id)),
            "reserved": spend.reserved_microusd, "spend_status": spend.status,
            "day": spend.day, "month": spend.month,
        }));
        run_ids.push(run.id);
    }
    let events: Vec<_> = q
        .events_after(0, 1_000)
        .unwrap()
        .into_iter()
        .map(|e| {
            let mut data = e.data.to_string();
            for (n, id) in run_ids.iter().enumerate() {
                data = data.replace(id.as_str(), &format!("run-{n}"));
            }
            serde_json::json!({ "kind": e.kind, "task": e.task_id, "data": data })
        })
        .collect();
    serde_json::json!({ "tasks": tasks, "runs": runs, "events": events })
}

/// The same three claims (one with an over-estimate approval, the third refused by the day's
/// cap) on SQLite, through the write path, and on PostgreSQL, through `oxi_claim_task` (and the
/// write path for the refusal): the same rows and events.
#[test]
fn a_claim_in_one_statement_writes_what_the_write_path_writes() {
    let Some(url) = cluster_or_skip("claim_step_same_rows")
        .map(|cluster| cluster.database("claim_step_same_rows").unwrap())
    else {
        return;
    };
    let mut pg = Ledger::open_postgres(&url, None).unwrap();
    let (_dir, config) = config(2, 100);
    let sqlite_dir = tempfile::tempdir().unwrap();
    let mut sqlite = Ledger::open(&sqlite_dir.path().join("ledger.db")).unwrap();
    let mut outcomes = Vec::new();
    // Which statement moved each task: the write path's own UPDATE, or `oxi_claim_task`.
    let mut raw = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    raw.batch_execute(
        "CREATE TABLE spy (query TEXT);
         CREATE FUNCTION spy() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO spy VALUES (current_query()); RETURN NULL; END $$;
         CREATE TRIGGER spy AFTER UPDATE OF state ON tasks FOR EACH ROW EXECUTE FUNCTION spy();",
    )
    .unwrap();
    for ledger in [&mut sqlite, &mut pg] {
        let tasks = ingest(ledger, 4);
        ledger
            .write(|q| q.insert_approval("T0-0", ApprovalKind::OverEstimate, "ana", None, 1))
            .unwrap();
        let claims: Vec<String> = tasks[..3]
            .iter()
            .map(|task| match claim(ledger, &config, task) {
                BenchClaim::Admitted(_) => "admitted".to_owned(),
                BenchClaim::Lost => "lost".to_owned(),
                BenchClaim::Refused(refusal) => format!("refused: {}", refusal.period),
            })
            .collect();
        outcomes.push(claims);
    }
    assert_eq!(outcomes[0], ["admitted", "admitted", "refused: daily"]);
    assert_eq!(outcomes[1], outcomes[0]);
    let moved_by: Vec<String> = raw
        .query("SELECT query FROM spy", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(moved_by.len(), 2, "{moved_by:?}");
    assert!(
        moved_by.iter().all(|q| q.contains("oxi_claim_task")),
        "a claim took the write path: {moved_by:?}"
    );
    raw.batch_execute("DROP TRIGGER spy ON tasks").unwrap();
    let (on_sqlite, on_pg) = (written(&sqlite), written(&pg));
    assert_eq!(on_pg, on_sqlite);
    // And what the comparison stands on: the approval used, the refusal recorded.
    let text = on_pg.to_string();
    assert!(
        text.contains(r#""approvals":[["over_estimate",true]]"#),
        "{text}"
    );
    assert!(text.contains("budget_refused"), "{text}");
    assert!(pg.integrity_check().unwrap().is_empty());
}

/// `oxi_claim_task`'s arithmetic is `budget::admit`'s at the edge of each cap: a claim that
/// brings spent + held exactly to a cap is admitted, one more refused, naming that cap; the
/// refused task stays queued. The month's cap is reached through spend of another day of the
/// month. (Debug builds also check every admitted claim against `budget::admit`.)
#[test]
fn a_claim_in_one_statement_fills_each_cap_exactly() {
    // (daily runs, monthly runs, runs spent earlier this month, runs that fit, the cap named)
    for (daily, monthly, earlier, fit, period) in [(3, 10, 0, 3, "daily"), (3, 4, 2, 2, "monthly")]
    {
        let test = format!("claim_step_cap_{period}");
        let Some(mut pg) = pg_ledger(&test) else {
            return;
        };
        let (_dir, config) = config(daily, monthly);
        let tasks = ingest(&mut pg, 5);
        let now = oxi::clock::now_ms();
        let (day, month) = (oxi::clock::day_of(now), oxi::clock::month_of(now));
        if earlier > 0 {
            spend_earlier_this_month(&mut pg, &day, &month, AMOUNT * earlier);
        }
        let caps = ClaimCaps {
            day: AMOUNT * daily,
            month: AMOUNT * monthly,
        };
        // The function itself, not the write path a refusal falls back to, admits up to the
        // cap and refuses past it, writing nothing then.
        for (n, task) in tasks.iter().take(fit + 1).enumerate() {
            let run_id = format!("R{n}");
            let run = NewRun {
                task_id: Some(&task.spec.id),
                attempt: 1,
                role: "executor",
                ..earlier_run(&run_id, AMOUNT, &day, &month)
            };
            let claim = TaskClaim {
                task_id: &task.spec.id,
                from: TaskState::Queued,
                actor: "oxi",
                reason: "claimed",
                at_ms: now,
            };
            let events = pg.read().event_count().unwrap();
            let step = pg
                .claim_in_one_step(&claim, &run, &RunLabels::default(), caps)
                .unwrap()
                .expect("one step on PostgreSQL");
            let before = SpendTotals {
                day_spent: 0,
                day_reserved: AMOUNT * n as i64,
                month_spent: AMOUNT * earlier,
                month_reserved: AMOUNT * n as i64,
            };
            if n < fit {
                assert_eq!(step, OneStepClaim::Admitted(before), "{period}: claim {n}");
            } else {
                assert_eq!(step, OneStepClaim::Refused, "{period}: claim {n}");
                assert_eq!(pg.read().event_count().unwrap(), events, "a refusal wrote");
            }
        }
        // Through the scheduler's admission, the refusal is recorded.
        let refused = claim(&mut pg, &config, &tasks[fit]);
        let BenchClaim::Refused(refusal) = refused else {
            panic!("{period}: claim {} past the cap: {refused:?}", fit + 1);
        };
        assert_eq!(refusal.period, period);
        assert_eq!(refusal.held_microusd, AMOUNT * fit as i64);
        assert_eq!(
            refusal.spent_microusd,
            if period == "monthly" {
                AMOUNT * earlier
            } else {
                0
            }
        );
        let q = pg.read();
        let left = q.task(&tasks[fit].spec.id).unwrap().unwrap();
        assert_eq!((left.state, left.attempts), (TaskState::Queued, 0));
        let totals = q.spend_totals(&day, &month).unwrap();
        assert_eq!(totals.day_reserved, AMOUNT * fit as i64);
        let refusals = events_of(&q, "budget_refused");
        assert_eq!(refusals, 1);
    }
}

/// A run outside the queue reserving `amount` on `day` of `month`.
fn earlier_run<'a>(id: &'a str, amount: i64, day: &'a str, month: &'a str) -> NewRun<'a> {
    NewRun {
        id,
        task_id: None,
        attempt: 0,
        role: "adhoc",
        worker: WORKER,
        worker_kind: "claude",
        model: None,
        run_dir: "/tmp/earlier",
        worktree: None,
        branch: None,
        started_at_ms: 1,
        reserve_microusd: amount,
        day,
        month,
        actor: "oxi",
        supervisor_pid: 1,
    }
}

/// `amount` spent by a run outside the queue on a day of `month` other than `today`.
fn spend_earlier_this_month(ledger: &mut Ledger, today: &str, month: &str, amount: i64) {
    let other_day = if today.ends_with("-01") {
        format!("{month}-02")
    } else {
        format!("{month}-01")
    };
    let run = earlier_run("earlier", amount, &other_day, month);
    ledger.write(|q| q.begin_run(&run)).unwrap();
    let end = RunEnd {
        ended_at_ms: 2,
        classification: "success",
        cost_microusd: amount,
        ..RunEnd::default()
    };
    assert!(ledger.finish_run("earlier", &end).unwrap());
}

/// A task another claimer took (its state moved on) or holds (its row locked in an open
/// transaction) is lost at once, with nothing written; free again, it is claimed.
#[test]
fn a_claim_in_one_statement_passes_over_a_task_taken_or_held_elsewhere() {
    let Some(url) =
        cluster_or_skip("claim_step_lost").map(|c| c.database("claim_step_lost").unwrap())
    else {
        return;
    };
    let (_dir, config) = config(100, 1_000);
    let mut mine = Ledger::open_postgres(&url, None).unwrap();
    let mut theirs = Ledger::open_postgres(&url, None).unwrap();
    let tasks = ingest(&mut mine, 2);
    assert!(matches!(
        claim(&mut theirs, &config, &tasks[0]),
        BenchClaim::Admitted(_)
    ));
    let events = mine.read().event_count().unwrap();
    assert!(matches!(
        claim(&mut mine, &config, &tasks[0]),
        BenchClaim::Lost
    ));
    let mut other = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    let mut tx = other.transaction().unwrap();
    tx.execute("SELECT 1 FROM tasks WHERE id = 'T0-1' FOR UPDATE", &[])
        .unwrap();
    assert!(matches!(
        claim(&mut mine, &config, &tasks[1]),
        BenchClaim::Lost
    ));
    assert_eq!(
        mine.read().event_count().unwrap(),
        events,
        "a lost claim wrote"
    );
    assert_eq!(mine.read().running_runs().unwrap().len(), 1);
    tx.rollback().unwrap();
    assert!(matches!(
        claim(&mut mine, &config, &tasks[1]),
        BenchClaim::Admitted(_)
    ));
    let task = mine.read().task("T0-1").unwrap().unwrap();
    assert_eq!((task.state, task.attempts), (TaskState::Dispatched, 1));
}

/// `Ledger::finish_run` ends a run once, in a transaction of its own: the reservation becomes
/// spend (or, released, gives back what it held), `run_finished` is appended, and a second end
/// writes nothing. The rollup equals its sums throughout (the delta trigger of migration 0020).
#[test]
fn a_runs_end_in_one_statement_settles_or_releases_once() {
    let Some(mut pg) = pg_ledger("claim_step_finish") else {
        return;
    };
    let (_dir, config) = config(100, 1_000);
    let tasks = ingest(&mut pg, 2);
    let mut runs = Vec::new();
    for task in &tasks {
        let BenchClaim::Admitted(run) = claim(&mut pg, &config, task) else {
            panic!("not admitted");
        };
        runs.push(run);
    }
    let day = oxi::clock::day_of(oxi::clock::now_ms());
    let month = oxi::clock::month_of(oxi::clock::now_ms());
    let settled = RunEnd {
        ended_at_ms: oxi::clock::now_ms(),
        classification: "success",
        cost_microusd: 4_000,
        ..RunEnd::default()
    };
    assert!(pg.finish_run(&runs[0], &settled).unwrap());
    let released = RunEnd {
        classification: "reaped",
        cost_microusd: 0,
        release: true,
        ..settled.clone()
    };
    assert!(pg.finish_run(&runs[1], &released).unwrap());
    let before = pg.read().event_count().unwrap();
    assert!(!pg.finish_run(&runs[0], &released).unwrap());
    assert_eq!(pg.read().event_count().unwrap(), before);
    let q = pg.read();
    let totals = q.spend_totals(&day, &month).unwrap();
    assert_eq!((totals.day_spent, totals.day_reserved), (4_000, 0));
    assert_eq!((totals.month_spent, totals.month_reserved), (4_000, 0));
    assert_eq!(totals, q.spend_totals_by_scan(&day, &month).unwrap());
    assert_eq!(
        q.spend_for_run(&runs[1]).unwrap().unwrap().status,
        "released"
    );
    let finished = events_of(&q, "run_finished");
    assert_eq!(finished, 2);
    assert!(pg.integrity_check().unwrap().is_empty());
}

/// How many events of `kind` the ledger holds.
fn events_of(q: &oxi::ledger::Queries<'_>, kind: &str) -> usize {
    q.events_after(0, 1_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .count()
}
