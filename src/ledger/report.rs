//! The reads `oxi report` needs, each bounded by a time window (`since_ms`).

use std::collections::BTreeMap;

use rusqlite::params;

use super::{Queries, Result};

/// A finished run, as the report sees it.
#[derive(Debug, Clone)]
pub struct RunFact {
    pub task_id: Option<String>,
    pub role: String,
    pub classification: String,
    pub cost_microusd: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub parse_failures: i64,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
}

impl Queries<'_> {
    pub fn report_runs(&self, since_ms: i64) -> Result<Vec<RunFact>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT task_id, role, COALESCE(classification, ''), cost_microusd, input_tokens,
                    output_tokens, parse_failures, started_at_ms, COALESCE(ended_at_ms, started_at_ms)
             FROM runs WHERE status = 'finished' AND started_at_ms >= ?1",
        )?;
        let rows = stmt.query_map([since_ms], |r| {
            Ok(RunFact {
                task_id: r.get(0)?,
                role: r.get(1)?,
                classification: r.get(2)?,
                cost_microusd: r.get(3)?,
                input_tokens: r.get(4)?,
                output_tokens: r.get(5)?,
                parse_failures: r.get(6)?,
                started_at_ms: r.get(7)?,
                ended_at_ms: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// `(at_ms, task_id, data)` of events of `kind` since `since_ms`, oldest first.
    pub fn report_events(
        &self,
        kind: &str,
        since_ms: i64,
    ) -> Result<Vec<(i64, Option<String>, serde_json::Value)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT at_ms, task_id, data FROM events WHERE kind = ?1 AND at_ms >= ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![kind, since_ms], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (at, task, data) = row?;
            out.push((
                at,
                task,
                serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
            ));
        }
        Ok(out)
    }

    /// A task's history as `oxi show` prints it: `(at_ms, kind, actor, data)` of the events
    /// a person triaging it needs, oldest first.
    pub fn task_history(
        &self,
        task_id: &str,
    ) -> Result<Vec<(i64, String, String, serde_json::Value)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT at_ms, kind, actor, data FROM events WHERE task_id = ?1 AND kind IN
             ('task_state_changed', 'verified', 'review_decided', 'governance_memo', 'delivered',
              'pr_opened', 'ci_result', 'follow_up', 'operator_action', 'run_reaped',
              'task_deferred', 'budget_breach', 'github_error')
             ORDER BY id",
        )?;
        let rows = stmt.query_map([task_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (at, kind, actor, data) = row?;
            out.push((
                at,
                kind,
                actor,
                serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
            ));
        }
        Ok(out)
    }

    /// Verification durations by tier since `since_ms`.
    pub fn report_verify_times(&self, since_ms: i64) -> Result<BTreeMap<String, Vec<i64>>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT tier, duration_ms FROM verify_results WHERE at_ms >= ?1")?;
        let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for row in stmt.query_map([since_ms], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })? {
            let (tier, ms) = row?;
            out.entry(tier).or_default().push(ms);
        }
        Ok(out)
    }

    /// Settled spend per UTC day since `since_day` (inclusive).
    pub fn report_spend_by_day(&self, since_day: &str) -> Result<Vec<(String, i64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT day, SUM(actual_microusd) FROM spend WHERE day >= ?1 GROUP BY day ORDER BY day",
        )?;
        let rows = stmt.query_map([since_day], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
