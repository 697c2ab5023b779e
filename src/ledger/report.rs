//! The reads `oxi report` needs, each bounded by a time window (`since_ms`).

use std::collections::BTreeMap;

use rusqlite::params;

use super::events::fields::{
    DECISION, DECISION_AUTO_APPROVE, FIRST_PASS, GREEN, REVIEW_SKIPPED_REASON, TRIGGER,
    TRIGGER_NEEDS_APPROVAL,
};
use super::queries::Db;
use super::{EventKind, Queries, Result, pg};

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

/// A task that failed for good, as the report lists it.
#[derive(Debug, Clone)]
pub struct FailedTaskFact {
    pub task_id: String,
    pub at_ms: i64,
    pub failure_class: Option<String>,
    pub reason: String,
    /// The triage summary recorded after this failure (before the task's next one), if any.
    pub triage: Option<String>,
}

impl Queries<'_> {
    pub fn report_runs(&self, since_ms: i64) -> Result<Vec<RunFact>> {
        if let Db::Pg(pg) = self.db {
            return pg::report_runs(pg, since_ms);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT task_id, role, COALESCE(classification, ''), cost_microusd, input_tokens,
                    output_tokens, parse_failures, started_at_ms, COALESCE(ended_at_ms, started_at_ms)
             FROM runs WHERE status = 'finished' AND started_at_ms >= ?1
               AND COALESCE(classification, '') <> 'withdrawn'",
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

    /// Tasks that moved to `failed` since `since_ms`, newest first, each with the first
    /// triage summary recorded after that failure and before the task's next one.
    ///
    /// # Errors
    /// When the ledger cannot be read.
    pub fn report_failed_tasks(&self, since_ms: i64) -> Result<Vec<FailedTaskFact>> {
        if let Db::Pg(pg) = self.db {
            return pg::report_failed_tasks(pg, since_ms);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT e.task_id, e.at_ms, json_extract(e.data, '$.failure_class'),
                    COALESCE(json_extract(e.data, '$.reason'), ''),
                    (SELECT json_extract(s.data, '$.summary') FROM events s
                     WHERE s.task_id = e.task_id AND s.kind = ?3 AND s.id > e.id AND json_valid(s.data)
                       AND s.id < COALESCE((SELECT MIN(n.id) FROM events n WHERE n.task_id = e.task_id
                                            AND n.kind = ?1 AND n.id > e.id), 9223372036854775807)
                     ORDER BY s.id LIMIT 1)
             FROM events e
             WHERE e.kind = ?1 AND e.at_ms >= ?2 AND e.task_id IS NOT NULL AND json_valid(e.data)
               AND json_extract(e.data, '$.to') = ?4
             ORDER BY e.id DESC",
        )?;
        let rows = stmt.query_map(
            params![
                EventKind::TaskStateChanged.as_str(),
                since_ms,
                EventKind::TriageSummary.as_str(),
                super::TaskState::Failed.as_str()
            ],
            |r| {
                // Hand-edited data that is not text reads as absent.
                let text = |i: usize| -> rusqlite::Result<Option<String>> {
                    Ok(match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Text(t) => {
                            Some(String::from_utf8_lossy(t).into_owned())
                        }
                        _ => None,
                    })
                };
                Ok(FailedTaskFact {
                    task_id: r.get(0)?,
                    at_ms: r.get(1)?,
                    failure_class: text(2)?,
                    reason: text(3)?.unwrap_or_default(),
                    triage: text(4)?,
                })
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// How many events of `kind` since `since_ms` (an index-only count: no row is read).
    pub fn report_count(&self, kind: EventKind, since_ms: i64) -> Result<usize> {
        if let Db::Pg(pg) = self.db {
            return pg::report_count(pg, kind, since_ms);
        }
        let mut stmt = self
            .sqlite()?
            .prepare_cached("SELECT COUNT(*) FROM events WHERE kind = ?1 AND at_ms >= ?2")?;
        let n: i64 = stmt.query_row(params![kind.as_str(), since_ms], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// `(at_ms, task_id)` of events of `kind` with a task since `since_ms`, oldest first: the
    /// report's delivery times, which need no event data.
    pub fn report_event_times(&self, kind: EventKind, since_ms: i64) -> Result<Vec<(i64, String)>> {
        if let Db::Pg(pg) = self.db {
            return pg::report_event_times(pg, kind, since_ms);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT at_ms, task_id FROM events
             WHERE kind = ?1 AND at_ms >= ?2 AND task_id IS NOT NULL ORDER BY id",
        )?;
        let rows = stmt.query_map(params![kind.as_str(), since_ms], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Governance memos since `since_ms` that are violations, not holds for approval (a memo
    /// with no trigger, or data that is not JSON, counts as a violation).
    pub fn report_governance_violations(&self, since_ms: i64) -> Result<usize> {
        if let Db::Pg(pg) = self.db {
            return pg::report_governance_violations(pg, since_ms);
        }
        let mut stmt = self.sqlite()?.prepare_cached(&format!(
            "SELECT COUNT(*) FROM events WHERE kind = ?1 AND at_ms >= ?2
               AND (NOT json_valid(data) OR json_extract(data, '$.{TRIGGER}') IS NOT ?3)"
        ))?;
        let n: i64 = stmt.query_row(
            params![
                EventKind::GovernanceMemo.as_str(),
                since_ms,
                TRIGGER_NEEDS_APPROVAL
            ],
            |r| r.get(0),
        )?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// First CI results since `since_ms`: `(how many, how many green)`.
    pub fn report_first_ci(&self, since_ms: i64) -> Result<(usize, usize)> {
        if let Db::Pg(pg) = self.db {
            return pg::report_first_ci(pg, since_ms);
        }
        let mut stmt = self.sqlite()?.prepare_cached(&format!(
            // json_type, not json_extract: the latter reads JSON `true` and `1` alike.
            "SELECT COUNT(*), COALESCE(SUM(json_type(data, '$.{GREEN}') = 'true'), 0) FROM events
             WHERE kind = '{}' AND at_ms >= ?1 AND json_valid(data)
               AND json_type(data, '$.{FIRST_PASS}') = 'true'",
            EventKind::CiResult.as_str()
        ))?;
        let (first, green): (i64, i64) =
            stmt.query_row([since_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok((
            usize::try_from(first).unwrap_or(0),
            usize::try_from(green).unwrap_or(0),
        ))
    }

    /// Reviews skipped by auto-approval since `since_ms`: `(reason, how many)`; a missing
    /// reason is `None`.
    pub fn report_review_skips(&self, since_ms: i64) -> Result<Vec<(Option<String>, usize)>> {
        if let Db::Pg(pg) = self.db {
            return pg::report_review_skips(pg, since_ms);
        }
        let mut stmt = self.sqlite()?.prepare_cached(&format!(
            "SELECT json_extract(data, '$.{REVIEW_SKIPPED_REASON}'), COUNT(*) FROM events
             WHERE kind = '{}' AND at_ms >= ?1 AND json_valid(data)
               AND json_extract(data, '$.{DECISION}') = '{DECISION_AUTO_APPROVE}'
             GROUP BY 1",
            EventKind::ReviewDecided.as_str()
        ))?;
        let rows = stmt.query_map([since_ms], |r| {
            // A reason that is not a string (hand-edited) reads as none.
            let reason = match r.get_ref(0)? {
                rusqlite::types::ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
                _ => None,
            };
            Ok((reason, usize::try_from(r.get::<_, i64>(1)?).unwrap_or(0)))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A task's history as `oxi show` prints it: `(at_ms, kind, actor, data)` of the events
    /// a person triaging it needs, oldest first.
    pub fn task_history(
        &self,
        task_id: &str,
    ) -> Result<Vec<(i64, String, String, serde_json::Value)>> {
        const HISTORY: [EventKind; 19] = [
            EventKind::TaskStateChanged,
            EventKind::Verified,
            EventKind::ReviewDecided,
            EventKind::GovernanceMemo,
            EventKind::Delivered,
            EventKind::PrOpened,
            EventKind::CiResult,
            EventKind::FollowUp,
            EventKind::OperatorAction,
            EventKind::RunReaped,
            EventKind::TaskDeferred,
            EventKind::BudgetBreach,
            EventKind::GithubError,
            EventKind::BranchMerged,
            EventKind::TriageSummary,
            EventKind::TriageSkipped,
            EventKind::SessionResumed,
            EventKind::SessionFresh,
            EventKind::ShadowObserved,
        ];
        if let Db::Pg(pg) = self.db {
            let kinds: Vec<&str> = HISTORY.iter().map(|k| k.as_str()).collect();
            return pg::task_history(pg, task_id, &kinds);
        }
        let kinds: Vec<String> = HISTORY
            .iter()
            .map(|k| format!("'{}'", k.as_str()))
            .collect();
        let mut stmt = self.sqlite()?.prepare_cached(&format!(
            "SELECT at_ms, kind, actor, data FROM events WHERE task_id = ?1 AND kind IN ({})
             ORDER BY id",
            kinds.join(", ")
        ))?;
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
        if let Db::Pg(pg) = self.db {
            return pg::report_verify_times(pg, since_ms);
        }
        let mut stmt = self
            .sqlite()?
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

    /// Spend per UTC day since `since_day` (inclusive): runs' and gateway calls'.
    pub fn report_spend_by_day(&self, since_day: &str) -> Result<Vec<(String, i64)>> {
        if let Db::Pg(pg) = self.db {
            return pg::report_spend_by_day(pg, since_day);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT day, SUM(actual_microusd) FROM
                 (SELECT day, actual_microusd FROM spend
                  UNION ALL SELECT day, actual_microusd FROM gateway_calls)
             WHERE day >= ?1 GROUP BY day ORDER BY day",
        )?;
        let rows = stmt.query_map([since_day], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// What gateway calls made since `since_ms` cost, per role.
    pub(crate) fn report_gateway_spend(&self, since_ms: i64) -> Result<Vec<(String, i64)>> {
        if let Db::Pg(pg) = self.db {
            return pg::report_gateway_spend(pg, since_ms);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT role, SUM(actual_microusd) FROM gateway_calls WHERE created_at_ms >= ?1
             GROUP BY role ORDER BY role",
        )?;
        let rows = stmt.query_map([since_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
