//! Plans and prompt sizes in the ledger (migration 0013): the planner's validated answer per
//! task, which the executor's prompt, the overlap gate and the critic read back, and the bytes
//! of every worker call's prompt, which `oxi report` sums up per role.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::queries::Db;
use super::{Queries, Result, pg};

/// One stored plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanRow {
    pub run_id: String,
    pub attempt: u32,
    /// The plan as the planner gave it, validated (secrets masked).
    pub plan: serde_json::Value,
    pub created_at_ms: i64,
}

/// Prompt sizes of one role's worker calls in a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PromptBytes {
    /// Calls with a recorded size.
    pub calls: usize,
    pub median: Option<u64>,
    pub p90: Option<u64>,
}

impl Queries<'_> {
    /// Stores a validated plan for `task_id`, made by run `run_id`.
    ///
    /// # Errors
    /// The ledger's, when the row cannot be written.
    pub fn record_plan(
        &self,
        task_id: &str,
        run_id: &str,
        attempt: u32,
        plan: &serde_json::Value,
        at_ms: i64,
    ) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::record_plan(pg, task_id, run_id, attempt, plan, at_ms);
        }
        self.sqlite()?
            .prepare_cached(
                "INSERT INTO plans (task_id, run_id, attempt, plan, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![task_id, run_id, attempt, plan.to_string(), at_ms])?;
        Ok(())
    }

    /// The task's latest plan, if any planner gave one.
    ///
    /// # Errors
    /// The ledger's, when it cannot be read.
    pub fn latest_plan(&self, task_id: &str) -> Result<Option<PlanRow>> {
        let row = if let Db::Pg(pg) = self.db {
            pg::latest_plan(pg, task_id)?
        } else {
            self.sqlite()?
                .prepare_cached(
                    "SELECT run_id, attempt, plan, created_at_ms FROM plans
                     WHERE task_id = ?1 ORDER BY id DESC LIMIT 1",
                )?
                .query_row([task_id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, u32>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .optional()?
        };
        Ok(row.map(|(run_id, attempt, plan, created_at_ms)| PlanRow {
            run_id,
            attempt,
            // Written by `record_plan` from a value; text that is not JSON reads as null.
            plan: serde_json::from_str(&plan).unwrap_or_default(),
            created_at_ms,
        }))
    }

    /// Records how many bytes of prompt run `run_id` was sent.
    ///
    /// # Errors
    /// The ledger's, when the row cannot be written.
    pub fn record_prompt_bytes(&self, run_id: &str, bytes: usize) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::record_prompt_bytes(pg, run_id, bytes);
        }
        self.sqlite()?
            .prepare_cached("UPDATE runs SET prompt_bytes = ?2 WHERE id = ?1")?
            .execute(params![run_id, i64::try_from(bytes).unwrap_or(i64::MAX)])?;
        Ok(())
    }

    /// The prompt bytes of run `run_id`, when recorded.
    ///
    /// # Errors
    /// The ledger's, when it cannot be read.
    pub fn prompt_bytes(&self, run_id: &str) -> Result<Option<u64>> {
        if let Db::Pg(pg) = self.db {
            return pg::prompt_bytes(pg, run_id);
        }
        let bytes: Option<Option<i64>> = self
            .sqlite()?
            .prepare_cached("SELECT prompt_bytes FROM runs WHERE id = ?1")?
            .query_row([run_id], |r| r.get(0))
            .optional()?;
        Ok(bytes.flatten().and_then(|b| u64::try_from(b).ok()))
    }

    /// Median and p90 prompt bytes of `role`'s runs started since `since_ms`.
    ///
    /// # Errors
    /// The ledger's, when it cannot be read.
    pub fn report_prompt_bytes(&self, role: &str, since_ms: i64) -> Result<PromptBytes> {
        let sizes = if let Db::Pg(pg) = self.db {
            pg::prompt_sizes(pg, role, since_ms)?
        } else {
            let mut stmt = self.sqlite()?.prepare_cached(
                "SELECT prompt_bytes FROM runs
                 WHERE role = ?1 AND started_at_ms >= ?2 AND prompt_bytes IS NOT NULL
                 ORDER BY prompt_bytes",
            )?;
            stmt.query_map(params![role, since_ms], |r| r.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?
        };
        let sizes: Vec<u64> = sizes
            .into_iter()
            .filter_map(|b| u64::try_from(b).ok())
            .collect();
        // Nearest rank on the sorted sizes (`percent` of them at or below it).
        let rank = |percent: usize| {
            let i = (sizes.len() * percent).div_ceil(100).saturating_sub(1);
            sizes.get(i).copied()
        };
        Ok(PromptBytes {
            calls: sizes.len(),
            median: rank(50),
            p90: rank(90),
        })
    }
}
