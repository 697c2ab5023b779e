//! Runs, their leases, and the money held for them.
//!
//! A run's life in the ledger: `begin_run` creates the row, reserves its budget and records
//! `run_started` in one transaction (after the caller checked the caps in that same
//! transaction); `record_run_process` stores pid/pgid before the first byte of output is read;
//! `renew_run` extends the lease and publishes the running cost; `finish_run` records the end
//! and settles the reservation to what the run really cost.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::events::{Event, RunFinished, RunStarted, Tokens};
use super::queries::Db;
use super::{LedgerError, NewEvent, Queries, Result, SpendTotals, TaskState, pg};
use crate::money::MicroUsd;

/// Everything known about a run when it is created.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub id: &'a str,
    /// `None` for a run outside the queue (`oxi run`).
    pub task_id: Option<&'a str>,
    pub attempt: u32,
    /// `executor`, `reviewer`, `planner` or `adhoc`.
    pub role: &'a str,
    pub worker: &'a str,
    pub worker_kind: &'a str,
    pub model: Option<&'a str>,
    pub run_dir: &'a str,
    pub worktree: Option<&'a str>,
    pub branch: Option<&'a str>,
    pub started_at_ms: i64,
    /// Held against the day's and month's caps until the run settles.
    pub reserve_microusd: MicroUsd,
    /// UTC budget day and month of `started_at_ms`.
    pub day: &'a str,
    pub month: &'a str,
    /// `oxi` or `operator:<user>`.
    pub actor: &'a str,
    /// The oxi process supervising it (a run whose supervisor is gone is reaped at once).
    pub supervisor_pid: u32,
}

/// What `begin_labelled_run` writes on a new run's row beside [`NewRun`]: each `None` leaves
/// its column empty, as `begin_run` does.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunLabels<'a> {
    /// The host the run starts on.
    pub host: Option<&'a str>,
    /// The route that chose its worker.
    pub route: Option<&'a str>,
    /// How many bytes of prompt it is sent.
    pub prompt_bytes: Option<usize>,
}

/// How a run ended, as recorded on its row.
#[derive(Debug, Clone, Default)]
pub struct RunEnd<'a> {
    pub ended_at_ms: i64,
    pub classification: &'a str,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stop_reason: Option<&'a str>,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_microusd: MicroUsd,
    pub cli_version: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub parse_failures: u64,
    pub bytes_cut: u64,
    pub retry_after_ms: Option<u64>,
    pub detail: Option<&'a str>,
    /// What the run's end adds to its `run_finished` event (files changed, durations, ...).
    pub summary: super::events::RunSummary,
    /// Release the reservation instead of settling it (a reaped run: what it spent is unknown
    /// beyond the running cost it last published, which is kept as `actual`).
    pub release: bool,
}

/// A run row as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRow {
    pub id: String,
    pub task_id: Option<String>,
    pub attempt: u32,
    pub role: String,
    pub worker: String,
    pub worker_kind: String,
    pub model: Option<String>,
    pub status: String,
    pub classification: Option<String>,
    pub pid: Option<u32>,
    pub pgid: Option<u32>,
    pub lease_expires_at_ms: Option<i64>,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stop_reason: Option<String>,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_microusd: MicroUsd,
    pub run_dir: Option<String>,
    pub worktree: Option<String>,
    pub branch: Option<String>,
    pub cli_version: Option<String>,
    pub session_id: Option<String>,
    pub parse_failures: u64,
    pub bytes_cut: u64,
    pub retry_after_ms: Option<u64>,
    pub detail: Option<String>,
    pub supervisor_pid: Option<u32>,
    /// The route that chose the worker (a rule's name or `default`); `None` outside the queue
    /// (and left out of JSON then, as it was before routes were recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The host that started it (`[host] name`; `None` for runs before hosts were recorded):
    /// the reaper touches only its own host's process groups. Left out of JSON, where a run's
    /// host is reported beside it (`task_hosts`), as before.
    #[serde(skip)]
    pub host: Option<String>,
}

/// A reservation as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpendRow {
    pub run_id: String,
    pub day: String,
    pub month: String,
    pub reserved_microusd: MicroUsd,
    pub actual_microusd: MicroUsd,
    pub status: String,
}

pub(super) const RUN_COLUMNS: &str =
    "id, task_id, attempt, role, worker, worker_kind, model, status,
    classification, pid, pgid, lease_expires_at_ms, started_at_ms, ended_at_ms, exit_code, signal,
    stop_reason, input_tokens, cached_input_tokens, output_tokens, reasoning_tokens,
    cost_microusd, run_dir, worktree, branch, cli_version, session_id, parse_failures, bytes_cut,
    retry_after_ms, detail, supervisor_pid, route, host";

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: row.get(0)?,
        task_id: row.get(1)?,
        attempt: row.get(2)?,
        role: row.get(3)?,
        worker: row.get(4)?,
        worker_kind: row.get(5)?,
        model: row.get(6)?,
        status: row.get(7)?,
        classification: row.get(8)?,
        pid: row.get(9)?,
        pgid: row.get(10)?,
        lease_expires_at_ms: row.get(11)?,
        started_at_ms: row.get(12)?,
        ended_at_ms: row.get(13)?,
        exit_code: row.get(14)?,
        signal: row.get(15)?,
        stop_reason: row.get(16)?,
        input_tokens: count(row, 17)?,
        cached_input_tokens: count(row, 18)?,
        output_tokens: count(row, 19)?,
        reasoning_tokens: count(row, 20)?,
        cost_microusd: row.get(21)?,
        run_dir: row.get(22)?,
        worktree: row.get(23)?,
        branch: row.get(24)?,
        cli_version: row.get(25)?,
        session_id: row.get(26)?,
        parse_failures: count(row, 27)?,
        bytes_cut: count(row, 28)?,
        retry_after_ms: row.get::<_, Option<i64>>(29)?.map(|v| v.max(0) as u64),
        detail: row.get(30)?,
        supervisor_pid: row.get(31)?,
        route: row.get(32)?,
        host: row.get(33)?,
    })
}

/// A run `finish_run` ended: its task, for the `run_finished` event (`None` outside the queue).
pub(super) struct Ended {
    pub(super) task_id: Option<String>,
}

/// SQLite integers are signed; counts are stored as non-negative i64.
fn count(row: &Row<'_>, index: usize) -> rusqlite::Result<u64> {
    Ok(row.get::<_, i64>(index)?.max(0) as u64)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Queries<'_> {
    /// Creates a running run, reserves its budget and records `run_started`. Call it inside the
    /// same `Ledger::write` that checked the caps, so no other claimer sees stale totals.
    pub fn begin_run(&self, run: &NewRun<'_>) -> Result<()> {
        self.begin_labelled_run(run, &RunLabels::default())
    }

    /// `begin_run`, with the run's host, route and prompt size written by its `INSERT` (one
    /// statement instead of an `UPDATE` each, which on Postgres would run while the claim
    /// holds the rollup rows).
    ///
    /// # Errors
    /// The ledger's, when the rows cannot be written.
    pub fn begin_labelled_run(&self, run: &NewRun<'_>, labels: &RunLabels<'_>) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            pg::insert_run(pg, run, labels)?;
            return self.run_started(run);
        }
        let prompt_bytes = labels
            .prompt_bytes
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        self.sqlite()?
            .prepare_cached(
                "INSERT INTO runs (id, task_id, attempt, role, worker, worker_kind, model, status,
                     started_at_ms, run_dir, worktree, branch, supervisor_pid, host, route,
                     prompt_bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8, ?9, ?10, ?11, ?12, ?13, ?14,
                     ?15)",
            )?
            .execute(params![
                run.id,
                run.task_id,
                run.attempt,
                run.role,
                run.worker,
                run.worker_kind,
                run.model,
                run.started_at_ms,
                run.run_dir,
                run.worktree,
                run.branch,
                run.supervisor_pid,
                labels.host,
                labels.route,
                prompt_bytes,
            ])?;
        self.sqlite()?
            .prepare_cached(
                "INSERT INTO spend (run_id, day, month, reserved_microusd, status, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, 'reserved', ?5)",
            )?
            .execute(params![
                run.id,
                run.day,
                run.month,
                run.reserve_microusd,
                run.started_at_ms
            ])?;
        self.run_started(run)
    }

    /// `run_started` for a run `begin_run` just created.
    fn run_started(&self, run: &NewRun<'_>) -> Result<()> {
        self.append_event(&NewEvent {
            at_ms: run.started_at_ms,
            task_id: run.task_id,
            run_id: Some(run.id),
            actor: run.actor,
            event: run_started_event(run),
        })?;
        Ok(())
    }

    /// Records the route that chose a run's worker (in the transaction that began the run).
    pub fn record_run_route(&self, run_id: &str, route: &str) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::record_run_route(pg, run_id, route);
        }
        self.sqlite()?
            .prepare_cached("UPDATE runs SET route = ?2 WHERE id = ?1")?
            .execute(params![run_id, route])?;
        Ok(())
    }

    /// Stores the process id and group of a started run and its first lease.
    pub fn record_run_process(&self, run_id: &str, pid: u32, lease_until_ms: i64) -> Result<()> {
        let changed = if let Db::Pg(pg) = self.db {
            pg::record_run_process(pg, run_id, pid, lease_until_ms)?
        } else {
            self.sqlite()?
                .prepare_cached(
                    "UPDATE runs SET pid = ?2, pgid = ?2, lease_expires_at_ms = ?3
                     WHERE id = ?1 AND status = 'running'",
                )?
                .execute(params![run_id, pid, lease_until_ms])?
                > 0
        };
        if !changed {
            return Err(LedgerError::Corrupt(format!(
                "run {run_id} is not running; cannot record its process"
            )));
        }
        Ok(())
    }

    /// Extends a running run's lease and publishes its running cost into its reservation, so
    /// `oxi status` and other claimers see money as it is spent.
    pub fn renew_run(&self, run_id: &str, lease_until_ms: i64, running: MicroUsd) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::renew_run(pg, run_id, lease_until_ms, running);
        }
        self.sqlite()?
            .prepare_cached(
                "UPDATE runs SET lease_expires_at_ms = ?2, cost_microusd = MAX(cost_microusd, ?3)
                 WHERE id = ?1 AND status = 'running'",
            )?
            .execute(params![run_id, lease_until_ms, running])?;
        self.sqlite()?
            .prepare_cached(
                "UPDATE spend SET actual_microusd = MAX(actual_microusd, ?2)
                 WHERE run_id = ?1 AND status = 'reserved'",
            )?
            .execute(params![run_id, running])?;
        Ok(())
    }

    /// A live run's reservation: `(day, month, reserved, published cost)`; `None` once it is
    /// settled or released (or for a run that never reserved).
    pub fn live_reservation(
        &self,
        run_id: &str,
    ) -> Result<Option<(String, String, MicroUsd, MicroUsd)>> {
        if let Db::Pg(pg) = self.db {
            return pg::live_reservation(pg, run_id);
        }
        Ok(self
            .sqlite()?
            .prepare_cached(
                "SELECT day, month, reserved_microusd, actual_microusd FROM spend
                 WHERE run_id = ?1 AND status = 'reserved'",
            )?
            .query_row([run_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?)
    }

    /// Raises a live run's reservation to `to` (never lowers it). The caller has checked the
    /// caps in the same transaction.
    pub fn raise_reservation(&self, run_id: &str, to: MicroUsd) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::raise_reservation(pg, run_id, to);
        }
        self.sqlite()?
            .prepare_cached(
                "UPDATE spend SET reserved_microusd = MAX(reserved_microusd, ?2)
                 WHERE run_id = ?1 AND status = 'reserved'",
            )?
            .execute(params![run_id, to])?;
        Ok(())
    }

    /// Records how a run ended, settles its reservation to the real cost and appends
    /// `run_finished`. A run already finished (by the reaper, say) is left as it is.
    ///
    /// On Postgres it is one statement (`oxi_finish_run`, migration 0020), event included: the
    /// rollup rows it locks are held for no round trip but the commit's, and
    /// [`Ledger::finish_run`](super::Ledger::finish_run) runs it as a transaction of its own.
    pub fn finish_run(&self, run_id: &str, end: &RunEnd<'_>) -> Result<bool> {
        if let Db::Pg(pg) = self.db {
            return pg::finish_run(pg, run_id, end, &run_finished_event(end));
        }
        // RETURNING hands back the task id for the event instead of a second read of the row.
        let Some(Ended { task_id }) = self.settle_sqlite(run_id, end)? else {
            return Ok(false);
        };
        self.append_event(&NewEvent {
            at_ms: end.ended_at_ms,
            task_id: task_id.as_deref(),
            run_id: Some(run_id),
            actor: RUN_FINISHED_ACTOR,
            event: run_finished_event(end),
        })?;
        Ok(true)
    }

    /// The row and reservation half of `finish_run` on `SQLite`: the run's task id, or `None`
    /// when it was not running.
    fn settle_sqlite(&self, run_id: &str, end: &RunEnd<'_>) -> Result<Option<Ended>> {
        let finished: Option<Option<String>> = self
            .sqlite()?
            .prepare_cached(
                "UPDATE runs SET status = 'finished', classification = ?2, ended_at_ms = ?3,
                     exit_code = ?4, signal = ?5, stop_reason = ?6, input_tokens = ?7,
                     cached_input_tokens = ?8, output_tokens = ?9, reasoning_tokens = ?10,
                     cost_microusd = ?11, cli_version = ?12, session_id = ?13,
                     parse_failures = ?14, bytes_cut = ?15, retry_after_ms = ?16, detail = ?17,
                     lease_expires_at_ms = NULL
                 WHERE id = ?1 AND status = 'running'
                 RETURNING task_id",
            )?
            .query_row(
                params![
                    run_id,
                    end.classification,
                    end.ended_at_ms,
                    end.exit_code,
                    end.signal,
                    end.stop_reason,
                    to_i64(end.input_tokens),
                    to_i64(end.cached_input_tokens),
                    to_i64(end.output_tokens),
                    to_i64(end.reasoning_tokens),
                    end.cost_microusd,
                    end.cli_version,
                    end.session_id,
                    to_i64(end.parse_failures),
                    to_i64(end.bytes_cut),
                    end.retry_after_ms.map(to_i64),
                    end.detail,
                ],
                |r| r.get(0),
            )
            .optional()?;
        let Some(task_id) = finished else {
            return Ok(None);
        };
        self.sqlite()?
            .prepare_cached(
                "UPDATE spend SET status = ?4, settled_at_ms = ?3,
                     actual_microusd = CASE WHEN ?4 = 'settled' THEN ?2
                                            ELSE MAX(actual_microusd, ?2) END
                 WHERE run_id = ?1 AND status = 'reserved'",
            )?
            .execute(params![
                run_id,
                end.cost_microusd,
                end.ended_at_ms,
                if end.release { "released" } else { "settled" }
            ])?;
        Ok(Some(Ended { task_id }))
    }

    pub fn run(&self, run_id: &str) -> Result<Option<RunRow>> {
        if let Db::Pg(pg) = self.db {
            return pg::run(pg, run_id);
        }
        Ok(self
            .sqlite()?
            .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))?
            .query_row([run_id], run_from_row)
            .optional()?)
    }

    /// Runs still marked running (live, or orphaned by a supervisor that died).
    pub fn running_runs(&self) -> Result<Vec<RunRow>> {
        if let Db::Pg(pg) = self.db {
            return pg::running_runs(pg);
        }
        let mut stmt = self.sqlite()?.prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' ORDER BY started_at_ms"
        ))?;
        let rows = stmt.query_map([], run_from_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub fn spend_for_run(&self, run_id: &str) -> Result<Option<SpendRow>> {
        if let Db::Pg(pg) = self.db {
            return pg::spend_for_run(pg, run_id);
        }
        Ok(self
            .sqlite()?
            .prepare_cached(
                "SELECT run_id, day, month, reserved_microusd, actual_microusd, status
                 FROM spend WHERE run_id = ?1",
            )?
            .query_row([run_id], |r| {
                Ok(SpendRow {
                    run_id: r.get(0)?,
                    day: r.get(1)?,
                    month: r.get(2)?,
                    reserved_microusd: r.get(3)?,
                    actual_microusd: r.get(4)?,
                    status: r.get(5)?,
                })
            })
            .optional()?)
    }

    /// Takes a claim's candidate task in this write: `true` when it is still in `from` and no
    /// other claimer holds it. On Postgres the row stays locked until the write ends and a row
    /// another host is claiming is passed over without waiting (`FOR UPDATE SKIP LOCKED`); on
    /// `SQLite` the write already excludes every other writer, so this is a plain read.
    ///
    /// # Errors
    /// The ledger could not be read.
    pub fn lock_claim_candidate(&self, task_id: &str, from: TaskState) -> Result<bool> {
        if let Db::Pg(pg) = self.db {
            return pg::lock_claim_candidate(pg, task_id, from);
        }
        Ok(self
            .sqlite()?
            .prepare_cached("SELECT 1 FROM tasks WHERE id = ?1 AND state = ?2")?
            .query_row(params![task_id, from.as_str()], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// `spend_totals` for admission, inside the write that reserves: on Postgres the day's and
    /// month's rollup rows stay locked until that write ends, so admissions on every host
    /// check the caps one after another (fleet-wide); on `SQLite` the write already excludes
    /// every other writer.
    ///
    /// # Errors
    /// The ledger could not be read, or `Busy` when another claimer held the rows past the
    /// lock timeout.
    pub fn admission_totals(&self, day: &str, month: &str) -> Result<SpendTotals> {
        if let Db::Pg(pg) = self.db {
            return pg::admission_totals(pg, day, month);
        }
        self.spend_totals(day, month)
    }

    /// A claim's admission in one step of its transaction: `claim` (the task's own writes) and
    /// `check` (the caps against the day's and month's totals), `claim` kept only when `check`
    /// passes. On `SQLite` the totals are read first, then `claim` runs if they pass: the write
    /// excludes every other writer, so the order costs nothing.
    ///
    /// On Postgres `claim` runs first and the rollup rows are locked last
    /// ([`Self::admission_totals`]), so they are held for the statements after the check, and a
    /// claim that lost its race (`claim` fails) never queues for them. A refusal rolls back to
    /// a savepoint taken before `claim`: the task is left as it was (and its row and the rollup
    /// rows unlocked) while the transaction goes on, so the caller records the refusal in the
    /// same transaction, as on `SQLite`.
    ///
    /// Lock order: the task row (taken without waiting, `FOR NO KEY UPDATE SKIP LOCKED`), then
    /// the rollup rows in key order. No writer holds a rollup row while it waits for a task
    /// row's update lock: settles, lease renewals and gateway calls lock the rollup rows
    /// (`lock_rollup`) and then touch a task row only through a foreign key check (`FOR KEY
    /// SHARE`, which the candidate's lock does not block), and every claim takes its task
    /// first. So a claim waiting for the rollup rows while holding its task waits on writers
    /// that wait on nobody it holds: no cycle.
    ///
    /// # Errors
    /// `claim`'s, the ledger's, or `Busy` when another writer held the rows past the lock
    /// timeout.
    pub fn admit_claim<E>(
        &self,
        day: &str,
        month: &str,
        claim: impl FnOnce(&Queries<'_>) -> Result<()>,
        check: impl FnOnce(&SpendTotals) -> std::result::Result<(), E>,
    ) -> Result<std::result::Result<(), E>> {
        if let Db::Pg(pg) = self.db {
            pg::savepoint(pg, pg::Savepoint::Take)?;
            claim(self)?;
            let totals = pg::admission_totals(pg, day, month)?;
            return match check(&totals) {
                Ok(()) => Ok(Ok(())),
                Err(refusal) => {
                    pg::savepoint(pg, pg::Savepoint::RollBack)?;
                    Ok(Err(refusal))
                }
            };
        }
        let totals = self.spend_totals(day, month)?;
        if let Err(refusal) = check(&totals) {
            return Ok(Err(refusal));
        }
        claim(self)?;
        Ok(Ok(()))
    }
}

/// The actor of every `run_finished`: oxi ends runs, whoever started them.
pub(super) const RUN_FINISHED_ACTOR: &str = "oxi";

/// The `run_started` event of a new run (one builder for both backends' claims).
pub(super) fn run_started_event(run: &NewRun<'_>) -> Event {
    Event::RunStarted(RunStarted {
        role: run.role.to_owned(),
        worker: run.worker.to_owned(),
        worker_kind: run.worker_kind.to_owned(),
        model: run.model.map(str::to_owned),
        attempt: run.attempt,
        reserved_microusd: run.reserve_microusd,
        run_dir: run.run_dir.to_owned(),
    })
}

/// The `run_finished` event of a run's end (one builder for both backends).
fn run_finished_event(end: &RunEnd<'_>) -> Event {
    Event::RunFinished(RunFinished {
        classification: end.classification.to_owned(),
        exit_code: end.exit_code,
        signal: end.signal,
        stop_reason: end.stop_reason.map(str::to_owned),
        cost_microusd: end.cost_microusd,
        tokens: Tokens {
            input: end.input_tokens,
            cached_input: end.cached_input_tokens,
            output: end.output_tokens,
            reasoning: end.reasoning_tokens,
        },
        parse_failures: end.parse_failures,
        bytes_cut: end.bytes_cut,
        detail: end.detail.map(str::to_owned),
        summary: end.summary.clone().into_fields(),
    })
}

/// The executor run a retry may continue: the latest one of a task before an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeSource {
    pub run_id: String,
    pub attempt: u32,
    pub worker: String,
    pub worker_kind: String,
    /// The CLI's session (claude) or thread (codex) id, when its stream gave one.
    pub session_id: Option<String>,
    pub classification: Option<String>,
}

/// What a session's earlier runs already spent: the figures a CLI that reports its session's
/// running totals (claude's cost, codex's tokens) includes again in a resumed run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionSpent {
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_microusd: MicroUsd,
}

impl Queries<'_> {
    /// The task's latest executor run of an attempt before `attempt`, if any.
    ///
    /// # Errors
    /// The ledger's, when it cannot be read.
    pub fn resume_source(&self, task_id: &str, attempt: u32) -> Result<Option<ResumeSource>> {
        if let Db::Pg(pg) = self.db {
            return pg::resume_source(pg, task_id, attempt);
        }
        Ok(self
            .sqlite()?
            .prepare_cached(
                "SELECT id, attempt, worker, worker_kind, session_id, classification FROM runs
                 WHERE task_id = ?1 AND role = 'executor' AND attempt < ?2
                 ORDER BY attempt DESC, started_at_ms DESC, rowid DESC LIMIT 1",
            )?
            .query_row(params![task_id, attempt], |r| {
                Ok(ResumeSource {
                    run_id: r.get(0)?,
                    attempt: r.get(1)?,
                    worker: r.get(2)?,
                    worker_kind: r.get(3)?,
                    session_id: r.get(4)?,
                    classification: r.get(5)?,
                })
            })
            .optional()?)
    }

    /// Records that run `run_id` resumed the session of run `from` (`None`: it started fresh).
    ///
    /// # Errors
    /// The ledger's, when it cannot be written.
    pub fn set_resumed_from(&self, run_id: &str, from: Option<&str>) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::set_resumed_from(pg, run_id, from);
        }
        self.sqlite()?
            .prepare_cached("UPDATE runs SET resumed_from = ?2 WHERE id = ?1")?
            .execute(params![run_id, from])?;
        Ok(())
    }

    /// The run whose session run `run_id` resumed, if it resumed one.
    ///
    /// # Errors
    /// The ledger's, when it cannot be read.
    pub fn resumed_from(&self, run_id: &str) -> Result<Option<String>> {
        if let Db::Pg(pg) = self.db {
            return pg::resumed_from(pg, run_id);
        }
        Ok(self
            .sqlite()?
            .prepare_cached("SELECT resumed_from FROM runs WHERE id = ?1")?
            .query_row([run_id], |r| r.get::<_, Option<String>>(0))
            .optional()?
            .flatten())
    }

    /// What the session of run `run_id` had spent by its end: its own figures and those of
    /// every run it resumed, back to the session's first.
    ///
    /// # Errors
    /// The ledger's, when it cannot be read.
    pub fn session_spent(&self, run_id: &str) -> Result<SessionSpent> {
        if let Db::Pg(pg) = self.db {
            return pg::session_spent(pg, run_id);
        }
        Ok(self
            .sqlite()?
            .prepare_cached(
                "WITH RECURSIVE chain(id, depth) AS (
                     SELECT ?1, 0
                     UNION
                     SELECT runs.resumed_from, chain.depth + 1 FROM runs JOIN chain ON runs.id = chain.id
                     WHERE runs.resumed_from IS NOT NULL AND chain.depth < 100
                 )
                 SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(cached_input_tokens), 0),
                        COALESCE(SUM(output_tokens), 0), COALESCE(SUM(reasoning_tokens), 0),
                        COALESCE(SUM(cost_microusd), 0)
                 FROM runs WHERE id IN (SELECT id FROM chain)",
            )?
            .query_row([run_id], |r| {
                Ok(SessionSpent {
                    input_tokens: count(r, 0)?,
                    cached_input_tokens: count(r, 1)?,
                    output_tokens: count(r, 2)?,
                    reasoning_tokens: count(r, 3)?,
                    cost_microusd: r.get(4)?,
                })
            })?)
    }
}
