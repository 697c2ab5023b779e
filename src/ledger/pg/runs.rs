//! Runs, their reservations and the claim on Postgres: the twins of `ledger/runs.rs`, plus the
//! two locks that make a claim safe across hosts (the candidate task row, taken without
//! waiting, and the day's and month's rollup rows, under which admission checks the caps).

use postgres::Row;

use super::{Pg, execute, query, query_one, query_opt};
use crate::ledger::claim::{ClaimCaps, OneStepClaim, TaskClaim};
use crate::ledger::events::Event;
use crate::ledger::runs::{RUN_COLUMNS, RUN_FINISHED_ACTOR};
use crate::ledger::{
    ApprovalKind, LedgerError, NewRun, Result, ResumeSource, RunEnd, RunLabels, RunRow,
    SessionSpent, SpendRow, SpendTotals, TaskState,
};
use crate::money::MicroUsd;

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A non-negative count stored as BIGINT.
fn count(row: &Row, index: usize) -> Result<u64> {
    Ok(u64::try_from(row.try_get::<_, i64>(index)?.max(0)).unwrap_or(0))
}

/// A 32-bit value stored as BIGINT (pids, exit codes, attempts); out of range is corrupt.
fn narrow<T: TryFrom<i64>>(row: &Row, index: usize, what: &str) -> Result<Option<T>> {
    row.try_get::<_, Option<i64>>(index)?
        .map(|n| {
            T::try_from(n).map_err(|_| LedgerError::Corrupt(format!("{what} out of range: {n}")))
        })
        .transpose()
}

fn run_from_row(row: &Row) -> Result<RunRow> {
    let attempt: Option<u32> = narrow(row, 2, "attempt")?;
    Ok(RunRow {
        id: row.try_get(0)?,
        task_id: row.try_get(1)?,
        attempt: attempt.unwrap_or(0),
        role: row.try_get(3)?,
        worker: row.try_get(4)?,
        worker_kind: row.try_get(5)?,
        model: row.try_get(6)?,
        status: row.try_get(7)?,
        classification: row.try_get(8)?,
        pid: narrow(row, 9, "pid")?,
        pgid: narrow(row, 10, "pgid")?,
        lease_expires_at_ms: row.try_get(11)?,
        started_at_ms: row.try_get(12)?,
        ended_at_ms: row.try_get(13)?,
        exit_code: narrow(row, 14, "exit_code")?,
        signal: narrow(row, 15, "signal")?,
        stop_reason: row.try_get(16)?,
        input_tokens: count(row, 17)?,
        cached_input_tokens: count(row, 18)?,
        output_tokens: count(row, 19)?,
        reasoning_tokens: count(row, 20)?,
        cost_microusd: row.try_get(21)?,
        run_dir: row.try_get(22)?,
        worktree: row.try_get(23)?,
        branch: row.try_get(24)?,
        cli_version: row.try_get(25)?,
        session_id: row.try_get(26)?,
        parse_failures: count(row, 27)?,
        bytes_cut: count(row, 28)?,
        retry_after_ms: row
            .try_get::<_, Option<i64>>(29)?
            .map(|v| u64::try_from(v.max(0)).unwrap_or(0)),
        detail: row.try_get(30)?,
        supervisor_pid: narrow(row, 31, "supervisor_pid")?,
        route: row.try_get(32)?,
        host: row.try_get(33)?,
    })
}

/// The run row and its reservation of `begin_run` (its `run_started` event is appended by the
/// caller, on either backend alike).
pub(in crate::ledger) fn insert_run(
    pg: Pg<'_>,
    run: &NewRun<'_>,
    labels: &RunLabels<'_>,
) -> Result<()> {
    let prompt_bytes = labels
        .prompt_bytes
        .map(|b| i64::try_from(b).unwrap_or(i64::MAX));
    execute(
        pg,
        "INSERT INTO runs (id, task_id, attempt, role, worker, worker_kind, model, status,
             started_at_ms, run_dir, worktree, branch, supervisor_pid, host, route, prompt_bytes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $9, $10, $11, $12, $13, $14, $15)",
        &[
            &run.id,
            &run.task_id,
            &i64::from(run.attempt),
            &run.role,
            &run.worker,
            &run.worker_kind,
            &run.model,
            &run.started_at_ms,
            &run.run_dir,
            &run.worktree,
            &run.branch,
            &i64::from(run.supervisor_pid),
            &labels.host,
            &labels.route,
            &prompt_bytes,
        ],
    )?;
    execute(
        pg,
        "INSERT INTO spend (run_id, day, month, reserved_microusd, status, created_at_ms)
         VALUES ($1, $2, $3, $4, 'reserved', $5)",
        &[
            &run.id,
            &run.day,
            &run.month,
            &run.reserve_microusd,
            &run.started_at_ms,
        ],
    )?;
    Ok(())
}

pub(in crate::ledger) fn record_run_route(pg: Pg<'_>, run_id: &str, route: &str) -> Result<()> {
    execute(
        pg,
        "UPDATE runs SET route = $2 WHERE id = $1",
        &[&run_id, &route],
    )?;
    Ok(())
}

/// Whether the run was running (and so got its process recorded).
pub(in crate::ledger) fn record_run_process(
    pg: Pg<'_>,
    run_id: &str,
    pid: u32,
    lease_until_ms: i64,
) -> Result<bool> {
    let changed = execute(
        pg,
        "UPDATE runs SET pid = $2, pgid = $2, lease_expires_at_ms = $3
         WHERE id = $1 AND status = 'running'",
        &[&run_id, &i64::from(pid), &lease_until_ms],
    )?;
    Ok(changed > 0)
}

pub(in crate::ledger) fn renew_run(
    pg: Pg<'_>,
    run_id: &str,
    lease_until_ms: i64,
    running: MicroUsd,
) -> Result<()> {
    execute(
        pg,
        "UPDATE runs SET lease_expires_at_ms = $2, cost_microusd = GREATEST(cost_microusd, $3)
         WHERE id = $1 AND status = 'running'",
        &[&run_id, &lease_until_ms, &running],
    )?;
    lock_rollup(pg, RUN_PERIODS, &[&run_id])?;
    execute(
        pg,
        "UPDATE spend SET actual_microusd = GREATEST(actual_microusd, $2)
         WHERE run_id = $1 AND status = 'reserved'",
        &[&run_id, &running],
    )?;
    Ok(())
}

pub(in crate::ledger) fn live_reservation(
    pg: Pg<'_>,
    run_id: &str,
) -> Result<Option<(String, String, MicroUsd, MicroUsd)>> {
    query_opt(
        pg,
        "SELECT day, month, reserved_microusd, actual_microusd FROM spend
         WHERE run_id = $1 AND status = 'reserved'",
        &[&run_id],
    )?
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
    .transpose()
}

pub(in crate::ledger) fn raise_reservation(pg: Pg<'_>, run_id: &str, to: MicroUsd) -> Result<()> {
    execute(
        pg,
        "UPDATE spend SET reserved_microusd = GREATEST(reserved_microusd, $2)
         WHERE run_id = $1 AND status = 'reserved'",
        &[&run_id, &to],
    )?;
    Ok(())
}

/// `Queries::finish_run` in one statement (`oxi_finish_run`, migration 0020): the row finished
/// if it was still running, its reservation settled (or released) under its rollup rows'
/// locks taken in key order, and `finished` appended. `false` when the run was not running
/// (already finished, by the reaper say): nothing is written.
pub(in crate::ledger) fn finish_run(
    pg: Pg<'_>,
    run_id: &str,
    end: &RunEnd<'_>,
    finished: &Event,
) -> Result<bool> {
    let row = query_one(
        pg,
        "SELECT oxi_finish_run($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
             $16, $17, $18, $19, $20, $21)",
        &[
            &run_id,
            &end.classification,
            &end.ended_at_ms,
            &end.exit_code.map(i64::from),
            &end.signal.map(i64::from),
            &end.stop_reason,
            &to_i64(end.input_tokens),
            &to_i64(end.cached_input_tokens),
            &to_i64(end.output_tokens),
            &to_i64(end.reasoning_tokens),
            &end.cost_microusd,
            &end.cli_version,
            &end.session_id,
            &to_i64(end.parse_failures),
            &to_i64(end.bytes_cut),
            &end.retry_after_ms.map(to_i64),
            &end.detail,
            &end.release,
            &RUN_FINISHED_ACTOR,
            &finished.kind().as_str(),
            &finished.data().to_string(),
        ],
    )?;
    Ok(row.try_get(0)?)
}

pub(in crate::ledger) fn run(pg: Pg<'_>, run_id: &str) -> Result<Option<RunRow>> {
    query_opt(
        pg,
        &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"),
        &[&run_id],
    )?
    .as_ref()
    .map(run_from_row)
    .transpose()
}

pub(in crate::ledger) fn running_runs(pg: Pg<'_>) -> Result<Vec<RunRow>> {
    query(
        pg,
        &format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' ORDER BY started_at_ms, id"
        ),
        &[],
    )?
    .iter()
    .map(run_from_row)
    .collect()
}

pub(in crate::ledger) fn spend_for_run(pg: Pg<'_>, run_id: &str) -> Result<Option<SpendRow>> {
    query_opt(
        pg,
        "SELECT run_id, day, month, reserved_microusd, actual_microusd, status
         FROM spend WHERE run_id = $1",
        &[&run_id],
    )?
    .map(|r| {
        Ok(SpendRow {
            run_id: r.try_get(0)?,
            day: r.try_get(1)?,
            month: r.try_get(2)?,
            reserved_microusd: r.try_get(3)?,
            actual_microusd: r.try_get(4)?,
            status: r.try_get(5)?,
        })
    })
    .transpose()
}

/// Takes the claim's candidate: the task row, locked for this transaction if it is still in
/// `from` and no other claimer holds it. `SKIP LOCKED`: a task another host is claiming right
/// now is passed over at once instead of waited for (its claim will move it out of `from`).
/// `NO KEY UPDATE`, the lock the claim's own `UPDATE` takes: it excludes every other claimer
/// but not the `KEY SHARE` lock of a foreign key check (an event or run row naming the task),
/// so a settle holding the rollup rows never waits for a claim waiting for them.
pub(in crate::ledger) fn lock_claim_candidate(
    pg: Pg<'_>,
    task_id: &str,
    from: TaskState,
) -> Result<bool> {
    Ok(query_opt(
        pg,
        "SELECT id FROM tasks WHERE id = $1 AND state = $2 FOR NO KEY UPDATE SKIP LOCKED",
        &[&task_id, &from.as_str()],
    )?
    .is_some())
}

/// A claim's savepoint (`Queries::admit_claim`): taken before the claim's writes, rolled back
/// to when the caps refuse it.
#[derive(Debug, Clone, Copy)]
pub(in crate::ledger) enum Savepoint {
    Take,
    RollBack,
}

pub(in crate::ledger) fn savepoint(pg: Pg<'_>, step: Savepoint) -> Result<()> {
    let sql = match step {
        Savepoint::Take => "SAVEPOINT oxi_claim",
        Savepoint::RollBack => "ROLLBACK TO SAVEPOINT oxi_claim",
    };
    execute(pg, sql, &[])?;
    Ok(())
}

/// The day and month of a run's live reservation (`$1`: the run's id), for [`lock_rollup`].
const RUN_PERIODS: &str = "SELECT day FROM spend WHERE run_id = $1 AND status = 'reserved'
     UNION ALL SELECT month FROM spend WHERE run_id = $1 AND status = 'reserved'";

/// Locks the spend rollup rows of `periods` (a query of period keys) in key order, as
/// [`admission_totals`] does, before a statement whose rollup trigger updates them. The
/// trigger takes them in its plan's order (the day's row first as a rule): a settle holding the
/// day's row while it waits for the month's, beside a claim holding the month's while it waits
/// for the day's, is a deadlock the server breaks by failing one of them. Taken here in key
/// order first, every writer of the rollup waits its turn instead.
pub(super) fn lock_rollup(pg: Pg<'_>, periods: &str, params: super::Params<'_>) -> Result<()> {
    query(
        pg,
        &format!(
            "SELECT period FROM spend_rollup WHERE period IN ({periods})
             ORDER BY period FOR UPDATE"
        ),
        params,
    )?;
    Ok(())
}

/// The spend totals admission checks, with the day's and month's rollup rows locked (created
/// first if missing) until the transaction ends: every admission on every host serializes on
/// those two rows, so none can cross a cap another host's reservations fill.
pub(in crate::ledger) fn admission_totals(
    pg: Pg<'_>,
    day: &str,
    month: &str,
) -> Result<SpendTotals> {
    execute(
        pg,
        "INSERT INTO spend_rollup (period) VALUES ($1), ($2) ON CONFLICT (period) DO NOTHING",
        &[&day, &month],
    )?;
    // One statement, rows in key order: two admissions lock them in the same order.
    let rows = query(
        pg,
        "SELECT period, spent, held FROM spend_rollup WHERE period IN ($1, $2)
         ORDER BY period FOR UPDATE",
        &[&day, &month],
    )?;
    super::queries::totals_of_rollup_rows(&rows, day)
}

/// The twin of `Queries::resume_source`. The sqlite query breaks a tie of attempt and start
/// time by insertion order (its `rowid`); a Postgres table has none, so the run id breaks it
/// (two executor runs of one attempt never start in the same millisecond: an attempt runs one
/// executor).
pub(in crate::ledger) fn resume_source(
    pg: Pg<'_>,
    task_id: &str,
    attempt: u32,
) -> Result<Option<ResumeSource>> {
    query_opt(
        pg,
        "SELECT id, attempt, worker, worker_kind, session_id, classification FROM runs
         WHERE task_id = $1 AND role = 'executor' AND attempt < $2
         ORDER BY attempt DESC, started_at_ms DESC, id DESC LIMIT 1",
        &[&task_id, &i64::from(attempt)],
    )?
    .map(|r| {
        let attempt: Option<u32> = narrow(&r, 1, "attempt")?;
        Ok(ResumeSource {
            run_id: r.try_get(0)?,
            attempt: attempt.unwrap_or(0),
            worker: r.try_get(2)?,
            worker_kind: r.try_get(3)?,
            session_id: r.try_get(4)?,
            classification: r.try_get(5)?,
        })
    })
    .transpose()
}

pub(in crate::ledger) fn set_resumed_from(
    pg: Pg<'_>,
    run_id: &str,
    from: Option<&str>,
) -> Result<()> {
    execute(
        pg,
        "UPDATE runs SET resumed_from = $2 WHERE id = $1",
        &[&run_id, &from],
    )?;
    Ok(())
}

pub(in crate::ledger) fn resumed_from(pg: Pg<'_>, run_id: &str) -> Result<Option<String>> {
    Ok(query_opt(
        pg,
        "SELECT resumed_from FROM runs WHERE id = $1",
        &[&run_id],
    )?
    .map(|r| r.try_get::<_, Option<String>>(0))
    .transpose()?
    .flatten())
}

/// The twin of `Queries::session_spent`: the same recursive walk back along `resumed_from`,
/// bounded at 100 links so a hand-made cycle cannot loop.
pub(in crate::ledger) fn session_spent(pg: Pg<'_>, run_id: &str) -> Result<SessionSpent> {
    let row = query_one(
        pg,
        "WITH RECURSIVE chain(id, depth) AS (
             SELECT $1::TEXT, 0
             UNION
             SELECT runs.resumed_from, chain.depth + 1 FROM runs JOIN chain ON runs.id = chain.id
             WHERE runs.resumed_from IS NOT NULL AND chain.depth < 100
         )
         SELECT COALESCE(SUM(input_tokens), 0)::BIGINT,
                COALESCE(SUM(cached_input_tokens), 0)::BIGINT,
                COALESCE(SUM(output_tokens), 0)::BIGINT,
                COALESCE(SUM(reasoning_tokens), 0)::BIGINT,
                COALESCE(SUM(cost_microusd), 0)::BIGINT
         FROM runs WHERE id IN (SELECT id FROM chain)",
        &[&run_id],
    )?;
    Ok(SessionSpent {
        input_tokens: count(&row, 0)?,
        cached_input_tokens: count(&row, 1)?,
        output_tokens: count(&row, 2)?,
        reasoning_tokens: count(&row, 3)?,
        cost_microusd: row.try_get(4)?,
    })
}

/// The runs marked running, as a restore checks them (the twin of `backup.rs`'s `running`).
pub(in crate::ledger) fn running_brief(pg: Pg<'_>) -> Result<Vec<crate::ledger::RunningRun>> {
    query(
        pg,
        "SELECT id, task_id, supervisor_pid, host, lease_expires_at_ms FROM runs
         WHERE status = 'running' ORDER BY started_at_ms, id",
        &[],
    )?
    .iter()
    .map(|r| {
        Ok(crate::ledger::RunningRun {
            id: r.try_get(0)?,
            task_id: r.try_get(1)?,
            supervisor_pid: narrow(r, 2, "supervisor_pid")?,
            host: r.try_get(3)?,
            lease_expires_at_ms: r.try_get(4)?,
        })
    })
    .collect()
}

/// The two events a claim appends, built by the caller (one builder for both backends).
pub(in crate::ledger) struct ClaimEvents {
    pub(in crate::ledger) state_changed: Event,
    pub(in crate::ledger) run_started: Event,
}

/// The SQLSTATE `oxi_claim_task` raises when the caps have no room for the reservation.
const NO_ROOM: &str = "OXCAP";

/// `Ledger::claim_in_one_step` on Postgres: one statement (`oxi_claim_task`, migration 0020),
/// so the rollup rows it locks last are held only while the server writes the reservation and
/// commits, before it returns.
pub(in crate::ledger) fn claim_task(
    pg: Pg<'_>,
    claim: &TaskClaim<'_>,
    run: &NewRun<'_>,
    labels: &RunLabels<'_>,
    caps: ClaimCaps,
    events: &ClaimEvents,
) -> Result<OneStepClaim> {
    let prompt_bytes = labels
        .prompt_bytes
        .map(|b| i64::try_from(b).unwrap_or(i64::MAX));
    let answer = pg.borrow_mut().query(
        "SELECT outcome, day_spent, day_held, month_spent, month_held FROM oxi_claim_task(
             $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
             $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30)",
        &[
            &claim.task_id,
            &claim.from.as_str(),
            &TaskState::Dispatched.as_str(),
            &claim.at_ms,
            &claim.actor,
            &events.state_changed.kind().as_str(),
            &events.state_changed.data().to_string(),
            &run.id,
            &i64::from(run.attempt),
            &run.role,
            &run.worker,
            &run.worker_kind,
            &run.model,
            &run.started_at_ms,
            &run.run_dir,
            &run.worktree,
            &run.branch,
            &i64::from(run.supervisor_pid),
            &labels.host,
            &labels.route,
            &prompt_bytes,
            &run.actor,
            &events.run_started.kind().as_str(),
            &events.run_started.data().to_string(),
            &run.day,
            &run.month,
            &run.reserve_microusd,
            &caps.day,
            &caps.month,
            &ApprovalKind::OverEstimate.as_str(),
        ],
    );
    let rows = match answer {
        Ok(rows) => rows,
        // The caps had no room: the statement, and every write of it, undone.
        Err(e) if e.code().map(postgres::error::SqlState::code) == Some(NO_ROOM) => {
            return Ok(OneStepClaim::Refused);
        }
        Err(e) => return Err(e.into()),
    };
    let row = rows.first().ok_or_else(|| {
        LedgerError::Corrupt(format!(
            "oxi_claim_task gave no row for task {}",
            claim.task_id
        ))
    })?;
    let totals = SpendTotals {
        day_spent: row.try_get(1)?,
        day_reserved: row.try_get(2)?,
        month_spent: row.try_get(3)?,
        month_reserved: row.try_get(4)?,
    };
    let outcome: &str = row.try_get(0)?;
    match outcome {
        "admitted" => Ok(OneStepClaim::Admitted(totals)),
        "lost" => Ok(OneStepClaim::Lost),
        other => Err(LedgerError::Corrupt(format!(
            "oxi_claim_task answered {other:?} for task {}; expected admitted or lost",
            claim.task_id
        ))),
    }
}
