//! Gateway calls in the ledger (migration 0011): a call reserves before it is sent, in the
//! same transaction that checked the caps, and settles at its cost or is released when it
//! fails; triggers keep `spend_rollup`, and so the day's and month's caps, in step.

use rusqlite::params;
use serde::Serialize;

use super::queries::Db;
use super::{Queries, Result, pg};
use crate::money::MicroUsd;

/// A call about to be sent, with what it holds.
#[derive(Debug, Clone)]
pub struct NewGatewayCall<'a> {
    pub role: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
    pub task_id: Option<&'a str>,
    pub day: &'a str,
    pub month: &'a str,
    pub reserve_microusd: MicroUsd,
    pub at_ms: i64,
}

/// How a call ended: `cost` settles it (0 releases it), the rest is kept for the record.
#[derive(Debug, Clone)]
pub struct GatewayCallEnd<'a> {
    /// `ok`, `error` or `refused`.
    pub outcome: &'a str,
    pub cost_microusd: MicroUsd,
    /// `header`, `body`, `card` or `none`.
    pub cost_source: &'a str,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub attempts: u32,
    pub latency_ms: Option<i64>,
    pub error: Option<&'a str>,
    pub at_ms: i64,
}

/// One call as `oxi gateway calls` and the tests read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayCallRow {
    pub id: i64,
    pub role: String,
    pub provider: String,
    pub model: String,
    pub task_id: Option<String>,
    pub status: String,
    pub outcome: Option<String>,
    pub reserved_microusd: MicroUsd,
    pub cost_microusd: MicroUsd,
    pub cost_source: Option<String>,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub attempts: i64,
    pub latency_ms: Option<i64>,
    pub error: Option<String>,
    pub created_at_ms: i64,
}

impl Queries<'_> {
    /// What `role`'s calls spent and still hold on `day`.
    pub fn gateway_role_spend(&self, role: &str, day: &str) -> Result<MicroUsd> {
        if let Db::Pg(pg) = self.db {
            return pg::gateway_role_spend(pg, role, day);
        }
        Ok(self
            .sqlite()?
            .prepare_cached(
                "SELECT COALESCE(SUM(actual_microusd
                    + CASE WHEN status = 'reserved'
                        THEN MAX(reserved_microusd - actual_microusd, 0) ELSE 0 END), 0)
                 FROM gateway_calls WHERE day = ?1 AND role = ?2",
            )?
            .query_row(params![day, role], |r| r.get(0))?)
    }

    /// Records a call and holds its reservation; returns its id.
    pub fn begin_gateway_call(&self, call: &NewGatewayCall<'_>) -> Result<i64> {
        if let Db::Pg(pg) = self.db {
            return pg::begin_gateway_call(pg, call);
        }
        self.sqlite()?
            .prepare_cached(
                "INSERT INTO gateway_calls (role, provider, model, task_id, day, month,
                     reserved_microusd, status, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'reserved', ?8)",
            )?
            .execute(params![
                call.role,
                call.provider,
                call.model,
                call.task_id,
                call.day,
                call.month,
                call.reserve_microusd,
                call.at_ms
            ])?;
        Ok(self.sqlite()?.last_insert_rowid())
    }

    /// Records a call that never held money (refused by a cap, or its provider is off).
    pub fn record_unsent_gateway_call(
        &self,
        call: &NewGatewayCall<'_>,
        outcome: &str,
        error: &str,
    ) -> Result<i64> {
        if let Db::Pg(pg) = self.db {
            return pg::record_unsent_gateway_call(pg, call, outcome, error);
        }
        self.sqlite()?
            .prepare_cached(
                "INSERT INTO gateway_calls (role, provider, model, task_id, day, month,
                     reserved_microusd, status, outcome, cost_source, error, created_at_ms,
                     settled_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 'released', ?7, 'none', ?8, ?9, ?9)",
            )?
            .execute(params![
                call.role,
                call.provider,
                call.model,
                call.task_id,
                call.day,
                call.month,
                outcome,
                error,
                call.at_ms
            ])?;
        Ok(self.sqlite()?.last_insert_rowid())
    }

    /// Settles a call at its cost (or releases it when it cost nothing) and records how it
    /// ended. Only a call still reserved changes, so a second end is a no-op.
    pub fn end_gateway_call(&self, id: i64, end: &GatewayCallEnd<'_>) -> Result<()> {
        let status = if end.cost_microusd > 0 {
            "settled"
        } else {
            "released"
        };
        if let Db::Pg(pg) = self.db {
            return pg::end_gateway_call(pg, id, status, end);
        }
        self.sqlite()?
            .prepare_cached(
                "UPDATE gateway_calls SET status = ?2, actual_microusd = ?3, outcome = ?4,
                     cost_source = ?5, tokens_in = ?6, tokens_out = ?7, attempts = ?8,
                     latency_ms = ?9, error = ?10, settled_at_ms = ?11
                 WHERE id = ?1 AND status = 'reserved'",
            )?
            .execute(params![
                id,
                status,
                end.cost_microusd,
                end.outcome,
                end.cost_source,
                end.tokens_in as i64,
                end.tokens_out as i64,
                end.attempts,
                end.latency_ms,
                end.error,
                end.at_ms
            ])?;
        Ok(())
    }

    /// The newest `limit` calls, newest first.
    pub fn gateway_calls(&self, limit: usize) -> Result<Vec<GatewayCallRow>> {
        if let Db::Pg(pg) = self.db {
            return pg::gateway_calls(pg, limit);
        }
        let mut statement = self.sqlite()?.prepare_cached(
            "SELECT id, role, provider, model, task_id, status, outcome, reserved_microusd,
                    actual_microusd, cost_source, tokens_in, tokens_out, attempts, latency_ms,
                    error, created_at_ms
             FROM gateway_calls ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = statement.query_map([limit as i64], |r| {
            Ok(GatewayCallRow {
                id: r.get(0)?,
                role: r.get(1)?,
                provider: r.get(2)?,
                model: r.get(3)?,
                task_id: r.get(4)?,
                status: r.get(5)?,
                outcome: r.get(6)?,
                reserved_microusd: r.get(7)?,
                cost_microusd: r.get(8)?,
                cost_source: r.get(9)?,
                tokens_in: r.get(10)?,
                tokens_out: r.get(11)?,
                attempts: r.get(12)?,
                latency_ms: r.get(13)?,
                error: r.get(14)?,
                created_at_ms: r.get(15)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Until when `provider` is off (epoch ms), if it is.
    pub fn gateway_down_until(&self, provider: &str) -> Result<Option<i64>> {
        Ok(self
            .kv_get(&down_key(provider))?
            .and_then(|v| v.parse().ok()))
    }

    /// Marks `provider` off until `until_ms`.
    pub fn set_gateway_down(&self, provider: &str, until_ms: i64, now_ms: i64) -> Result<()> {
        self.kv_set(&down_key(provider), &until_ms.to_string(), now_ms)
    }

    /// Marks `provider` on again.
    pub fn clear_gateway_down(&self, provider: &str) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            pg::remove_kv(pg, &down_key(provider))?;
            return Ok(());
        }
        self.sqlite()?
            .prepare_cached("DELETE FROM kv WHERE key = ?1")?
            .execute([down_key(provider)])?;
        Ok(())
    }
}

fn down_key(provider: &str) -> String {
    format!("gateway_down:{provider}")
}
