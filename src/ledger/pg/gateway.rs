//! Gateway calls on Postgres: the twins of `ledger/gateway.rs`. A call reserves before it is
//! sent and settles or is released after; the rollup trigger keeps the caps in step.

use super::{Pg, execute, query, query_one};
use crate::ledger::{GatewayCallEnd, GatewayCallRow, NewGatewayCall, Result};
use crate::money::MicroUsd;

pub(in crate::ledger) fn gateway_role_spend(pg: Pg<'_>, role: &str, day: &str) -> Result<MicroUsd> {
    Ok(query_one(
        pg,
        "SELECT COALESCE(SUM(actual_microusd
            + CASE WHEN status = 'reserved'
                THEN GREATEST(reserved_microusd - actual_microusd, 0) ELSE 0 END), 0)::BIGINT
         FROM gateway_calls WHERE day = $1 AND role = $2",
        &[&day, &role],
    )?
    .try_get(0)?)
}

pub(in crate::ledger) fn begin_gateway_call(pg: Pg<'_>, call: &NewGatewayCall<'_>) -> Result<i64> {
    Ok(query_one(
        pg,
        "INSERT INTO gateway_calls (role, provider, model, task_id, day, month,
             reserved_microusd, status, created_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'reserved', $8)
         RETURNING id",
        &[
            &call.role,
            &call.provider,
            &call.model,
            &call.task_id,
            &call.day,
            &call.month,
            &call.reserve_microusd,
            &call.at_ms,
        ],
    )?
    .try_get(0)?)
}

pub(in crate::ledger) fn record_unsent_gateway_call(
    pg: Pg<'_>,
    call: &NewGatewayCall<'_>,
    outcome: &str,
    error: &str,
) -> Result<i64> {
    // Its rollup rows first, in key order (see `lock_rollup`).
    super::lock_rollup(pg, "$1, $2", &[&call.day, &call.month])?;
    Ok(query_one(
        pg,
        "INSERT INTO gateway_calls (role, provider, model, task_id, day, month,
             reserved_microusd, status, outcome, cost_source, error, created_at_ms,
             settled_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, 0, 'released', $7, 'none', $8, $9, $9)
         RETURNING id",
        &[
            &call.role,
            &call.provider,
            &call.model,
            &call.task_id,
            &call.day,
            &call.month,
            &outcome,
            &error,
            &call.at_ms,
        ],
    )?
    .try_get(0)?)
}

/// Settles or releases a call still reserved (a second end is a no-op).
pub(in crate::ledger) fn end_gateway_call(
    pg: Pg<'_>,
    id: i64,
    status: &str,
    end: &GatewayCallEnd<'_>,
) -> Result<()> {
    let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    // Its rollup rows first, in key order (see `lock_rollup`).
    super::lock_rollup(
        pg,
        "SELECT day FROM gateway_calls WHERE id = $1 AND status = 'reserved'
         UNION ALL SELECT month FROM gateway_calls WHERE id = $1 AND status = 'reserved'",
        &[&id],
    )?;
    execute(
        pg,
        "UPDATE gateway_calls SET status = $2, actual_microusd = $3, outcome = $4,
             cost_source = $5, tokens_in = $6, tokens_out = $7, attempts = $8,
             latency_ms = $9, error = $10, settled_at_ms = $11
         WHERE id = $1 AND status = 'reserved'",
        &[
            &id,
            &status,
            &end.cost_microusd,
            &end.outcome,
            &end.cost_source,
            &int(end.tokens_in),
            &int(end.tokens_out),
            &i64::from(end.attempts),
            &end.latency_ms,
            &end.error,
            &end.at_ms,
        ],
    )?;
    Ok(())
}

pub(in crate::ledger) fn gateway_calls(pg: Pg<'_>, limit: usize) -> Result<Vec<GatewayCallRow>> {
    query(
        pg,
        "SELECT id, role, provider, model, task_id, status, outcome, reserved_microusd,
                actual_microusd, cost_source, tokens_in, tokens_out, attempts, latency_ms,
                error, created_at_ms
         FROM gateway_calls ORDER BY id DESC LIMIT $1",
        &[&i64::try_from(limit).unwrap_or(i64::MAX)],
    )?
    .iter()
    .map(|r| {
        Ok(GatewayCallRow {
            id: r.try_get(0)?,
            role: r.try_get(1)?,
            provider: r.try_get(2)?,
            model: r.try_get(3)?,
            task_id: r.try_get(4)?,
            status: r.try_get(5)?,
            outcome: r.try_get(6)?,
            reserved_microusd: r.try_get(7)?,
            cost_microusd: r.try_get(8)?,
            cost_source: r.try_get(9)?,
            tokens_in: r.try_get(10)?,
            tokens_out: r.try_get(11)?,
            attempts: r.try_get(12)?,
            latency_ms: r.try_get(13)?,
            error: r.try_get(14)?,
            created_at_ms: r.try_get(15)?,
        })
    })
    .collect()
}
