//! Shadow pairs (migration 0014): recording one, what shadow runs spent today (their own cap),
//! and the reads `oxi report` shows.

use rusqlite::params;

use super::events::{ShadowObserved, ShadowSide};
use super::queries::Db;
use super::{Event, NewEvent, Queries, Result, pg};
use crate::money::MicroUsd;
use crate::worker::WorkerRole;

/// One recorded pair, as the report reads it back.
#[derive(Debug, Clone)]
pub(crate) struct ShadowPairRow {
    pub task_id: String,
    pub attempt: u32,
    pub at_ms: i64,
    pub pair: ShadowObserved,
}

/// A count for an `INTEGER` column (signed in the database; none of these come near the limit).
pub(super) fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn files_json(files: &[String]) -> String {
    serde_json::to_string(files).unwrap_or_else(|_| "[]".to_owned())
}

pub(super) fn side(
    run_id: Option<String>,
    worker: String,
    model: Option<String>,
    outcome: String,
    green: bool,
    files: &str,
    numbers: (i64, i64, i64, i64),
) -> ShadowSide {
    let (lines, tokens, cost, ms) = numbers;
    ShadowSide {
        run_id,
        worker,
        model,
        outcome,
        green,
        files: serde_json::from_str(files).unwrap_or_default(),
        lines_changed: u64::try_from(lines).unwrap_or(0),
        tokens: u64::try_from(tokens).unwrap_or(0),
        cost_microusd: cost,
        duration_ms: u64::try_from(ms).unwrap_or(0),
    }
}

impl Queries<'_> {
    /// Records a pair: its `shadow_pairs` row and its `shadow_observed` event, together.
    pub(crate) fn record_shadow_pair(
        &self,
        task_id: &str,
        attempt: u32,
        pair: &ShadowObserved,
        at_ms: i64,
    ) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            pg::insert_shadow_pair(pg, task_id, attempt, pair, at_ms)?;
        } else {
            self.sqlite_shadow_pair(task_id, attempt, pair, at_ms)?;
        }
        self.append_event(&NewEvent {
            at_ms,
            task_id: Some(task_id),
            run_id: pair.primary.run_id.as_deref(),
            actor: "oxi",
            event: Event::ShadowObserved(pair.clone()),
        })?;
        Ok(())
    }

    /// The sqlite half of `record_shadow_pair`: the pair's row.
    fn sqlite_shadow_pair(
        &self,
        task_id: &str,
        attempt: u32,
        pair: &ShadowObserved,
        at_ms: i64,
    ) -> Result<()> {
        let (p, s) = (&pair.primary, &pair.shadow);
        self.sqlite()?
            .prepare_cached(
                "INSERT INTO shadow_pairs (task_id, attempt, rule, primary_run_id, shadow_run_id,
                     primary_worker, primary_model, shadow_worker, shadow_model, primary_outcome,
                     shadow_outcome, primary_green, shadow_green, primary_files, shadow_files,
                     overlap_files, primary_lines, shadow_lines, primary_tokens, shadow_tokens,
                     primary_cost_microusd, shadow_cost_microusd, primary_ms, shadow_ms,
                     shape_match, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                     ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)",
            )?
            .execute(params![
                task_id,
                attempt,
                pair.rule,
                p.run_id,
                s.run_id,
                p.worker,
                p.model,
                s.worker,
                s.model,
                p.outcome,
                s.outcome,
                p.green,
                s.green,
                files_json(&p.files),
                files_json(&s.files),
                int(pair.overlap.len() as u64),
                int(p.lines_changed),
                int(s.lines_changed),
                int(p.tokens),
                int(s.tokens),
                p.cost_microusd,
                s.cost_microusd,
                int(p.duration_ms),
                int(s.duration_ms),
                pair.shape_match,
                at_ms,
            ])?;
        Ok(())
    }

    /// What shadow runs spent and hold on `day` (settled, running and reserved), for
    /// `shadow.daily_usd`.
    pub(crate) fn shadow_spend(&self, day: &str) -> Result<MicroUsd> {
        if let Db::Pg(pg) = self.db {
            return pg::role_spend_on(pg, day, WorkerRole::Shadow.as_str());
        }
        Ok(self
            .sqlite()?
            .prepare_cached(
                "SELECT COALESCE(SUM(s.actual_microusd + CASE WHEN s.status = 'reserved'
                        THEN MAX(s.reserved_microusd - s.actual_microusd, 0) ELSE 0 END), 0)
                 FROM spend s JOIN runs r ON r.id = s.run_id
                 WHERE s.day = ?1 AND r.role = ?2",
            )?
            .query_row(params![day, WorkerRole::Shadow.as_str()], |r| r.get(0))?)
    }

    /// The statuses of a run's tier 0 and 1 acceptance commands.
    pub(crate) fn run_verify_statuses(&self, run_id: &str) -> Result<Vec<String>> {
        if let Db::Pg(pg) = self.db {
            return pg::run_verify_statuses(pg, run_id);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT status FROM verify_results WHERE run_id = ?1 AND tier IN ('tier0', 'tier1')",
        )?;
        let rows = stmt.query_map([run_id], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Pairs recorded since `since_ms`, newest first.
    pub(crate) fn shadow_pairs(&self, since_ms: i64) -> Result<Vec<ShadowPairRow>> {
        if let Db::Pg(pg) = self.db {
            return pg::shadow_pairs(pg, since_ms);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT task_id, attempt, rule, primary_run_id, shadow_run_id, primary_worker,
                    primary_model, shadow_worker, shadow_model, primary_outcome, shadow_outcome,
                    primary_green, shadow_green, primary_files, shadow_files, primary_lines,
                    shadow_lines, primary_tokens, shadow_tokens, primary_cost_microusd,
                    shadow_cost_microusd, primary_ms, shadow_ms, shape_match, at_ms
             FROM shadow_pairs WHERE at_ms >= ?1 ORDER BY id DESC",
        )?;
        let rows = stmt.query_map([since_ms], |r| {
            let primary = side(
                r.get(3)?,
                r.get(5)?,
                r.get(6)?,
                r.get(9)?,
                r.get(11)?,
                &r.get::<_, String>(13)?,
                (r.get(15)?, r.get(17)?, r.get(19)?, r.get(21)?),
            );
            let shadow = side(
                r.get(4)?,
                r.get(7)?,
                r.get(8)?,
                r.get(10)?,
                r.get(12)?,
                &r.get::<_, String>(14)?,
                (r.get(16)?, r.get(18)?, r.get(20)?, r.get(22)?),
            );
            let overlap = primary
                .files
                .iter()
                .filter(|f| shadow.files.contains(f))
                .cloned()
                .collect();
            Ok(ShadowPairRow {
                task_id: r.get(0)?,
                attempt: r.get(1)?,
                at_ms: r.get(24)?,
                pair: ShadowObserved {
                    rule: r.get(2)?,
                    cost_delta_microusd: shadow.cost_microusd - primary.cost_microusd,
                    duration_delta_ms: int(shadow.duration_ms) - int(primary.duration_ms),
                    primary,
                    shadow,
                    overlap,
                    shape_match: r.get(23)?,
                },
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
