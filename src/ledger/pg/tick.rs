//! The tick's reads and writes on Postgres: the twins of `ledger/tick.rs` (counters, a task's
//! branch, pull request and last failure, deferrals, cost estimates, verification results,
//! approvals).

use std::collections::HashMap;

use super::{Pg, execute, query, query_opt};
use crate::ledger::{ApprovalKind, ApprovalRow, Result, TaskRunTotals, VerifyRecord};
use crate::money::MicroUsd;

/// `UPDATE tasks SET <set> WHERE id = $1` with `now_ms` as `$2`: the counters' statements.
pub(in crate::ledger) fn update_task_counters(
    pg: Pg<'_>,
    task_id: &str,
    set: TaskCounters,
    now_ms: i64,
) -> Result<()> {
    let set = match set {
        TaskCounters::Attempt => "attempts = attempts + 1, worker_calls = worker_calls + 1",
        TaskCounters::WorkerCall => "worker_calls = worker_calls + 1",
        TaskCounters::Reset => "attempts = 0, worker_calls = 0",
    };
    execute(
        pg,
        &format!("UPDATE tasks SET {set}, updated_at_ms = $2 WHERE id = $1"),
        &[&task_id, &now_ms],
    )?;
    Ok(())
}

/// Which change of a task's counters.
#[derive(Debug, Clone, Copy)]
pub(in crate::ledger) enum TaskCounters {
    Attempt,
    WorkerCall,
    Reset,
}

pub(in crate::ledger) fn set_task_branch(
    pg: Pg<'_>,
    task_id: &str,
    branch: &str,
    base_commit: &str,
) -> Result<()> {
    execute(
        pg,
        "UPDATE tasks SET branch = $2, base_commit = $3 WHERE id = $1",
        &[&task_id, &branch, &base_commit],
    )?;
    Ok(())
}

pub(in crate::ledger) fn set_task_pr(
    pg: Pg<'_>,
    task_id: &str,
    number: u64,
    url: Option<&str>,
) -> Result<()> {
    execute(
        pg,
        "UPDATE tasks SET pr_number = $2, pr_url = $3 WHERE id = $1",
        &[&task_id, &i64::try_from(number).unwrap_or(i64::MAX), &url],
    )?;
    Ok(())
}

pub(in crate::ledger) fn set_task_failure(
    pg: Pg<'_>,
    task_id: &str,
    failure: Option<&str>,
) -> Result<()> {
    execute(
        pg,
        "UPDATE tasks SET last_failure = $2 WHERE id = $1",
        &[&task_id, &failure],
    )?;
    Ok(())
}

/// The row half of `defer_task` (its event is appended by the caller).
pub(in crate::ledger) fn mark_deferred(pg: Pg<'_>, task_id: &str, now_ms: i64) -> Result<()> {
    execute(
        pg,
        "UPDATE tasks SET last_deferred_at_ms = $2 WHERE id = $1",
        &[&task_id, &now_ms],
    )?;
    Ok(())
}

/// The costs `cost_p90` ranks: the last 50 finished runs of `worker` in `role`.
pub(in crate::ledger) fn recent_costs(
    pg: Pg<'_>,
    worker: &str,
    role: &str,
    job_cap: MicroUsd,
) -> Result<Vec<MicroUsd>> {
    Ok(query(
        pg,
        "SELECT CASE WHEN classification = 'budget_exceeded'
                     THEN LEAST(cost_microusd, $3) ELSE cost_microusd END
         FROM runs
         WHERE worker = $1 AND role = $2 AND status = 'finished'
           AND classification NOT IN ('spawn_failed', 'reaped')
         ORDER BY started_at_ms DESC LIMIT 50",
        &[&worker, &role, &job_cap],
    )?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?)
}

pub(in crate::ledger) fn insert_verify_result(pg: Pg<'_>, record: &VerifyRecord<'_>) -> Result<()> {
    execute(
        pg,
        "INSERT INTO verify_results (run_id, task_id, tier, name, status, exit_code,
             duration_ms, log_path, at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &record.run_id,
            &record.task_id,
            &record.tier,
            &record.name,
            &record.status,
            &record.exit_code.map(i64::from),
            &i64::try_from(record.duration_ms).unwrap_or(i64::MAX),
            &record.log_path,
            &record.at_ms,
        ],
    )?;
    Ok(())
}

/// The failed-command count of each of the last `n` verified runs, newest first.
pub(in crate::ledger) fn last_runs_failures(pg: Pg<'_>, n: u32) -> Result<Vec<i64>> {
    Ok(query(
        pg,
        "SELECT COUNT(*) FILTER (WHERE status <> 'passed') FROM verify_results
         GROUP BY run_id ORDER BY MAX(id) DESC LIMIT $1",
        &[&i64::from(n)],
    )?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?)
}

/// The data of the task's latest event of `kind`.
pub(in crate::ledger) fn latest_event_data(
    pg: Pg<'_>,
    task_id: &str,
    kind: &str,
) -> Result<Option<String>> {
    Ok(query_opt(
        pg,
        "SELECT data FROM events WHERE task_id = $1 AND kind = $2 ORDER BY id DESC LIMIT 1",
        &[&task_id, &kind],
    )?
    .map(|r| r.try_get(0))
    .transpose()?)
}

pub(in crate::ledger) fn task_run_totals(pg: Pg<'_>) -> Result<HashMap<String, TaskRunTotals>> {
    query(
        pg,
        "SELECT task_id, SUM(cost_microusd)::BIGINT,
                (SELECT worker FROM runs AS last
                  WHERE last.task_id = runs.task_id AND last.role = 'executor'
                  ORDER BY last.started_at_ms DESC LIMIT 1)
           FROM runs WHERE task_id IS NOT NULL GROUP BY task_id",
        &[],
    )?
    .iter()
    .map(|r| {
        Ok((
            r.try_get(0)?,
            TaskRunTotals {
                cost_microusd: r.try_get(1)?,
                last_worker: r.try_get(2)?,
            },
        ))
    })
    .collect()
}

pub(in crate::ledger) fn run_ids_for_task(pg: Pg<'_>, task_id: &str) -> Result<Vec<String>> {
    Ok(query(
        pg,
        "SELECT id FROM runs WHERE task_id = $1 ORDER BY started_at_ms, id",
        &[&task_id],
    )?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?)
}

pub(in crate::ledger) fn insert_approval(
    pg: Pg<'_>,
    task_id: &str,
    kind: ApprovalKind,
    approved_by: &str,
    note: Option<&str>,
    at_ms: i64,
) -> Result<()> {
    execute(
        pg,
        "INSERT INTO approvals (task_id, kind, approved_by, note, at_ms)
         VALUES ($1, $2, $3, $4, $5)",
        &[&task_id, &kind.as_str(), &approved_by, &note, &at_ms],
    )?;
    Ok(())
}

pub(in crate::ledger) fn approvals_for(pg: Pg<'_>, task_id: &str) -> Result<Vec<ApprovalRow>> {
    query(
        pg,
        "SELECT id, task_id, kind, approved_by, note, at_ms, used_by_run
         FROM approvals WHERE task_id = $1 ORDER BY id",
        &[&task_id],
    )?
    .iter()
    .map(|r| {
        Ok(ApprovalRow {
            id: r.try_get(0)?,
            task_id: r.try_get(1)?,
            kind: ApprovalKind::parse(r.try_get(2)?),
            approved_by: r.try_get(3)?,
            note: r.try_get(4)?,
            at_ms: r.try_get(5)?,
            used_by_run: r.try_get(6)?,
        })
    })
    .collect()
}

pub(in crate::ledger) fn mark_over_estimate_used(
    pg: Pg<'_>,
    task_id: &str,
    run_id: &str,
) -> Result<()> {
    execute(
        pg,
        "UPDATE approvals SET used_by_run = $2
         WHERE task_id = $1 AND kind = $3 AND used_by_run IS NULL",
        &[&task_id, &run_id, &ApprovalKind::OverEstimate.as_str()],
    )?;
    Ok(())
}
