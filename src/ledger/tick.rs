//! Reads and writes the tick needs beyond task states and runs: attempt counters, a task's
//! branch and last failure, cost estimates, verification results and deferrals.

use rusqlite::{OptionalExtension, params};

use super::pg::TaskCounters;
use super::queries::Db;
use super::{ApprovalKind, Queries, Result, RunRow, pg};
use crate::money::MicroUsd;

/// A task's runs, summed (see `Queries::task_run_totals`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskRunTotals {
    pub cost_microusd: MicroUsd,
    /// The worker of its latest executor run.
    pub last_worker: Option<String>,
}

/// One acceptance command's outcome, as recorded.
#[derive(Debug, Clone)]
pub struct VerifyRecord<'a> {
    pub run_id: &'a str,
    pub task_id: Option<&'a str>,
    pub tier: &'a str,
    pub name: &'a str,
    /// `passed`, `failed`, `timed_out` or `error`.
    pub status: &'a str,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub log_path: Option<&'a str>,
    pub at_ms: i64,
}

impl Queries<'_> {
    /// One more attempt (and worker call) for a task being claimed.
    pub fn count_attempt(&self, task_id: &str, now_ms: i64) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::update_task_counters(pg, task_id, TaskCounters::Attempt, now_ms);
        }
        self.sqlite()?
            .prepare_cached(
                "UPDATE tasks SET attempts = attempts + 1, worker_calls = worker_calls + 1,
                     updated_at_ms = ?2 WHERE id = ?1",
            )?
            .execute(params![task_id, now_ms])?;
        Ok(())
    }

    /// One more worker call (a reviewer run) for a task.
    pub fn count_worker_call(&self, task_id: &str, now_ms: i64) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::update_task_counters(pg, task_id, TaskCounters::WorkerCall, now_ms);
        }
        self.sqlite()?
            .prepare_cached(
                "UPDATE tasks SET worker_calls = worker_calls + 1, updated_at_ms = ?2 WHERE id = ?1",
            )?
            .execute(params![task_id, now_ms])?;
        Ok(())
    }

    /// Resets a task's counters (an operator's `oxi retry`).
    pub fn reset_task_counters(&self, task_id: &str, now_ms: i64) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::update_task_counters(pg, task_id, TaskCounters::Reset, now_ms);
        }
        self.sqlite()?
            .prepare_cached(
                "UPDATE tasks SET attempts = 0, worker_calls = 0, updated_at_ms = ?2 WHERE id = ?1",
            )?
            .execute(params![task_id, now_ms])?;
        Ok(())
    }

    pub fn set_task_branch(&self, task_id: &str, branch: &str, base_commit: &str) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::set_task_branch(pg, task_id, branch, base_commit);
        }
        self.sqlite()?
            .prepare_cached("UPDATE tasks SET branch = ?2, base_commit = ?3 WHERE id = ?1")?
            .execute(params![task_id, branch, base_commit])?;
        Ok(())
    }

    pub fn set_task_pr(&self, task_id: &str, number: u64, url: Option<&str>) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::set_task_pr(pg, task_id, number, url);
        }
        self.sqlite()?
            .prepare_cached("UPDATE tasks SET pr_number = ?2, pr_url = ?3 WHERE id = ?1")?
            .execute(params![
                task_id,
                i64::try_from(number).unwrap_or(i64::MAX),
                url
            ])?;
        Ok(())
    }

    pub fn set_task_failure(&self, task_id: &str, failure: Option<&str>) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::set_task_failure(pg, task_id, failure);
        }
        self.sqlite()?
            .prepare_cached("UPDATE tasks SET last_failure = ?2 WHERE id = ?1")?
            .execute(params![task_id, failure])?;
        Ok(())
    }

    /// Records that a runnable task waited this pass, and why.
    pub fn defer_task(&self, task_id: &str, reason: &str, now_ms: i64) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            pg::mark_deferred(pg, task_id, now_ms)?;
        } else {
            self.sqlite()?
                .prepare_cached("UPDATE tasks SET last_deferred_at_ms = ?2 WHERE id = ?1")?
                .execute(params![task_id, now_ms])?;
        }
        self.append_event(&super::NewEvent {
            at_ms: now_ms,
            task_id: Some(task_id),
            run_id: None,
            actor: "oxi",
            event: super::Event::TaskDeferred(super::events::TaskDeferred {
                reason: reason.to_owned(),
            }),
        })?;
        Ok(())
    }

    /// The 90th percentile cost of the last 50 finished runs of `worker` in `role`, if any.
    /// A run stopped at the per-job cap counts at `job_cap`: it ended one cost report past the
    /// cap, which says how finely the CLI reports, not what the next task needs. Counted at
    /// its full cost, a few runaways among the last ten runs would put every estimate over the
    /// cap and hold the whole queue (the chaos harness found exactly that).
    pub fn cost_p90(
        &self,
        worker: &str,
        role: &str,
        job_cap: MicroUsd,
    ) -> Result<Option<MicroUsd>> {
        let mut costs = if let Db::Pg(pg) = self.db {
            pg::recent_costs(pg, worker, role, job_cap)?
        } else {
            self.recent_costs_sqlite(worker, role, job_cap)?
        };
        if costs.is_empty() {
            return Ok(None);
        }
        costs.sort_unstable();
        let rank = (costs.len() * 9).div_ceil(10).max(1) - 1;
        Ok(Some(costs[rank]))
    }

    /// The costs `cost_p90` ranks, on `SQLite`.
    fn recent_costs_sqlite(
        &self,
        worker: &str,
        role: &str,
        job_cap: MicroUsd,
    ) -> Result<Vec<MicroUsd>> {
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT CASE WHEN classification = 'budget_exceeded'
                         THEN MIN(cost_microusd, ?3) ELSE cost_microusd END
             FROM runs
             WHERE worker = ?1 AND role = ?2 AND status = 'finished'
               AND classification NOT IN ('spawn_failed', 'reaped')
             ORDER BY started_at_ms DESC LIMIT 50",
        )?;
        Ok(stmt
            .query_map(params![worker, role, job_cap], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    pub fn insert_verify_result(&self, record: &VerifyRecord<'_>) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::insert_verify_result(pg, record);
        }
        self.sqlite()?
            .prepare_cached(
                "INSERT INTO verify_results (run_id, task_id, tier, name, status, exit_code,
                     duration_ms, log_path, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                record.run_id,
                record.task_id,
                record.tier,
                record.name,
                record.status,
                record.exit_code,
                i64::try_from(record.duration_ms).unwrap_or(i64::MAX),
                record.log_path,
                record.at_ms,
            ])?;
        Ok(())
    }

    /// True when the last `n` verified executor runs all passed every command (tier0_fast).
    pub fn last_runs_green(&self, n: u32) -> Result<bool> {
        if n == 0 {
            return Ok(false);
        }
        if let Db::Pg(pg) = self.db {
            let failures = pg::last_runs_failures(pg, n)?;
            return Ok(failures.len() == n as usize && failures.iter().all(|f| *f == 0));
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT run_id, SUM(status != 'passed') FROM verify_results
             GROUP BY run_id ORDER BY MAX(id) DESC LIMIT ?1",
        )?;
        let rows: Vec<(String, i64)> = stmt
            .query_map([n], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows.len() == n as usize && rows.iter().all(|(_, failed)| *failed == 0))
    }

    /// The paths the task's branch changed at its last verified attempt (from its `verified`
    /// event).
    pub fn last_attempt_paths(&self, task_id: &str) -> Result<Vec<String>> {
        let data = self.latest_event_data(task_id, super::EventKind::Verified)?;
        Ok(data
            .and_then(|d| serde_json::from_str::<super::events::Verified>(&d).ok())
            // What the branch holds (earlier attempts' work included), else the run's own.
            .map(|v| v.delivery.map_or(v.paths, |d| d.paths))
            .unwrap_or_default())
    }

    /// The commit the task's latest delivery put on its branch (from its `delivered` event,
    /// which outlives the branch: an operator may delete a branch once it is merged). `None`
    /// for a delivery that recorded no commit (delivered after an approval).
    pub fn delivered_commit(&self, task_id: &str) -> Result<Option<String>> {
        let data = self.latest_event_data(task_id, super::EventKind::Delivered)?;
        Ok(data
            .and_then(|d| serde_json::from_str::<super::events::Delivered>(&d).ok())
            .and_then(|d| d.commit().map(str::to_owned)))
    }

    /// What every task's runs add up to, by task id: cost, and the worker of its latest
    /// executor run (one pass over the runs, for `oxi tasks`).
    pub fn task_run_totals(&self) -> Result<std::collections::HashMap<String, TaskRunTotals>> {
        if let Db::Pg(pg) = self.db {
            return pg::task_run_totals(pg);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT task_id, SUM(cost_microusd),
                    (SELECT worker FROM runs AS last
                      WHERE last.task_id = runs.task_id AND last.role = 'executor'
                      ORDER BY last.started_at_ms DESC LIMIT 1)
               FROM runs WHERE task_id IS NOT NULL GROUP BY task_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                TaskRunTotals {
                    cost_microusd: r.get(1)?,
                    last_worker: r.get(2)?,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn runs_for_task(&self, task_id: &str) -> Result<Vec<RunRow>> {
        let ids: Vec<String> = if let Db::Pg(pg) = self.db {
            pg::run_ids_for_task(pg, task_id)?
        } else {
            self.sqlite()?
                .prepare_cached("SELECT id FROM runs WHERE task_id = ?1 ORDER BY started_at_ms")?
                .query_map([task_id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut runs = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(run) = self.run(&id)? {
                runs.push(run);
            }
        }
        Ok(runs)
    }

    /// The data of the task's latest event of `kind`.
    fn latest_event_data(&self, task_id: &str, kind: super::EventKind) -> Result<Option<String>> {
        if let Db::Pg(pg) = self.db {
            return pg::latest_event_data(pg, task_id, kind.as_str());
        }
        Ok(self
            .sqlite()?
            .prepare_cached(
                "SELECT data FROM events WHERE task_id = ?1 AND kind = ?2
                 ORDER BY id DESC LIMIT 1",
            )?
            .query_row([task_id, kind.as_str()], |r| r.get(0))
            .optional()?)
    }
}

/// An operator's approval of a task.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApprovalRow {
    pub id: i64,
    pub task_id: String,
    /// What was approved; `None` for text this version does not know.
    pub kind: Option<ApprovalKind>,
    pub approved_by: String,
    pub note: Option<String>,
    pub at_ms: i64,
    pub used_by_run: Option<String>,
}

impl Queries<'_> {
    pub fn insert_approval(
        &self,
        task_id: &str,
        kind: ApprovalKind,
        approved_by: &str,
        note: Option<&str>,
        at_ms: i64,
    ) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::insert_approval(pg, task_id, kind, approved_by, note, at_ms);
        }
        self.sqlite()?
            .prepare_cached(
                "INSERT INTO approvals (task_id, kind, approved_by, note, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![task_id, kind.as_str(), approved_by, note, at_ms])?;
        Ok(())
    }

    pub fn approvals_for(&self, task_id: &str) -> Result<Vec<ApprovalRow>> {
        if let Db::Pg(pg) = self.db {
            return pg::approvals_for(pg, task_id);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT id, task_id, kind, approved_by, note, at_ms, used_by_run
             FROM approvals WHERE task_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([task_id], |r| {
            Ok(ApprovalRow {
                id: r.get(0)?,
                task_id: r.get(1)?,
                kind: ApprovalKind::parse(&r.get::<_, String>(2)?),
                approved_by: r.get(3)?,
                note: r.get(4)?,
                at_ms: r.get(5)?,
                used_by_run: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Consumes an unused over-estimate approval (one approval, one run).
    pub fn mark_over_estimate_used(&self, task_id: &str, run_id: &str) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::mark_over_estimate_used(pg, task_id, run_id);
        }
        self.sqlite()?
            .prepare_cached(
                "UPDATE approvals SET used_by_run = ?2
                 WHERE task_id = ?1 AND kind = ?3 AND used_by_run IS NULL",
            )?
            .execute([task_id, run_id, ApprovalKind::OverEstimate.as_str()])?;
        Ok(())
    }
}

/// The tick lock on a shared (Postgres) ledger: held for as long as the value lives, by a
/// session of its own holding a session-level advisory lock. The server drops it when that
/// session ends, so a host that dies (even by SIGKILL, or with its network) never wedges the
/// queue.
pub struct PgTickLock {
    _session: Box<pg::Session>,
}

impl std::fmt::Debug for PgTickLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgTickLock")
    }
}

/// What asking for the tick lock of a host and repository gave.
#[derive(Debug)]
pub enum TickLockAttempt {
    /// A ledger in a file: the tick lock is the file lock beside it (`scheduler::lock`).
    Sqlite,
    /// Taken: no other tick or saturate of this host on this repository runs until it drops.
    Taken(PgTickLock),
    /// Another process of this host holds it; what it wrote about itself, if it did yet.
    Held(Option<String>),
}

/// The advisory lock key of a host's ticks on a repository: the first 8 bytes of a SHA-256
/// of both, so different hosts (and one host's different repositories) never share one.
fn tick_lock_key(host: &str, repository: &str) -> i64 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("oxi tick lock\0{host}\0{repository}"));
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

impl super::Ledger {
    /// Takes the tick lock of `host` on `repository` on a Postgres ledger, without waiting:
    /// two hosts tick at once, one host never twice. `holder` (the holder's description, as
    /// `scheduler::lock` writes it) is kept in the ledger while the lock is held, so a refused
    /// process can name it.
    ///
    /// # Errors
    /// When the lock's own session cannot connect or the ledger cannot be written.
    pub fn try_tick_lock(
        &self,
        host: &str,
        repository: &str,
        holder: &str,
    ) -> Result<TickLockAttempt> {
        let super::Backend::Pg { target, .. } = &self.backend else {
            return Ok(TickLockAttempt::Sqlite);
        };
        let key = tick_lock_key(host, repository);
        let holder_key = format!("tick_lock_holder:{key:016x}");
        let session = std::cell::RefCell::new(pg::connect(&target.url, &target.secret)?);
        let taken: bool =
            pg::query_one(&session, "SELECT pg_try_advisory_lock($1)", &[&key])?.try_get(0)?;
        if !taken {
            let held_by = pg::query_opt(
                &session,
                "SELECT value FROM kv WHERE key = $1",
                &[&holder_key],
            )?
            .map(|r| r.try_get(0))
            .transpose()?;
            return Ok(TickLockAttempt::Held(held_by));
        }
        pg::execute(
            &session,
            "INSERT INTO kv (key, value, updated_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                updated_at_ms = excluded.updated_at_ms",
            &[&holder_key, &holder, &crate::clock::now_ms()],
        )?;
        let session = session.into_inner();
        Ok(TickLockAttempt::Taken(PgTickLock {
            _session: Box::new(session),
        }))
    }
}
