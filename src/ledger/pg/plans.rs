//! Plans and prompt sizes on Postgres: the twins of `ledger/plans.rs`.

use super::{Pg, execute, query, query_opt};
use crate::ledger::{LedgerError, Result};

pub(in crate::ledger) fn record_plan(
    pg: Pg<'_>,
    task_id: &str,
    run_id: &str,
    attempt: u32,
    plan: &serde_json::Value,
    at_ms: i64,
) -> Result<()> {
    execute(
        pg,
        "INSERT INTO plans (task_id, run_id, attempt, plan, created_at_ms)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &task_id,
            &run_id,
            &i64::from(attempt),
            &plan.to_string(),
            &at_ms,
        ],
    )?;
    Ok(())
}

/// `(run_id, attempt, plan text, created_at_ms)` of the task's latest plan.
pub(in crate::ledger) fn latest_plan(
    pg: Pg<'_>,
    task_id: &str,
) -> Result<Option<(String, u32, String, i64)>> {
    let Some(r) = query_opt(
        pg,
        "SELECT run_id, attempt, plan, created_at_ms FROM plans
         WHERE task_id = $1 ORDER BY id DESC LIMIT 1",
        &[&task_id],
    )?
    else {
        return Ok(None);
    };
    let attempt: i64 = r.try_get(1)?;
    let attempt = u32::try_from(attempt)
        .map_err(|_| LedgerError::Corrupt(format!("plans.attempt out of range: {attempt}")))?;
    Ok(Some((r.try_get(0)?, attempt, r.try_get(2)?, r.try_get(3)?)))
}

pub(in crate::ledger) fn record_prompt_bytes(pg: Pg<'_>, run_id: &str, bytes: usize) -> Result<()> {
    execute(
        pg,
        "UPDATE runs SET prompt_bytes = $2 WHERE id = $1",
        &[&run_id, &i64::try_from(bytes).unwrap_or(i64::MAX)],
    )?;
    Ok(())
}

pub(in crate::ledger) fn prompt_bytes(pg: Pg<'_>, run_id: &str) -> Result<Option<u64>> {
    let bytes: Option<Option<i64>> = query_opt(
        pg,
        "SELECT prompt_bytes FROM runs WHERE id = $1",
        &[&run_id],
    )?
    .map(|r| r.try_get(0))
    .transpose()?;
    Ok(bytes.flatten().and_then(|b| u64::try_from(b).ok()))
}

/// The prompt sizes of `role`'s runs started since `since_ms`, smallest first.
pub(in crate::ledger) fn prompt_sizes(pg: Pg<'_>, role: &str, since_ms: i64) -> Result<Vec<i64>> {
    Ok(query(
        pg,
        "SELECT prompt_bytes FROM runs
         WHERE role = $1 AND started_at_ms >= $2 AND prompt_bytes IS NOT NULL
         ORDER BY prompt_bytes",
        &[&role, &since_ms],
    )?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?)
}
