//! The reads `oxi report` and `oxi show` need, on Postgres: the twins of `ledger/report.rs`.
//!
//! Where the sqlite query guards its `json_extract` with `json_valid` (event data edited by
//! hand must not break the report), the data is read here and judged in Rust by the same
//! rules (`json_text`): Postgres 15 has no test for valid JSON short of a cast that fails
//! the whole statement. The rows read are one event kind within the report's window.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Pg, query, query_one};
use crate::ledger::events::fields::{
    DECISION, DECISION_AUTO_APPROVE, FIRST_PASS, GREEN, REVIEW_SKIPPED_REASON, TRIGGER,
    TRIGGER_NEEDS_APPROVAL,
};
use crate::ledger::{EventKind, FailedTaskFact, Result, RunFact, TaskState};

/// Event data as JSON, or `None` where sqlite's `json_valid` is false.
fn json(data: &str) -> Option<Value> {
    serde_json::from_str(data).ok()
}

/// What sqlite's `json_extract(data, '$.key')` reads as text: a string's value, an array or
/// object as JSON text; `None` for a number, a boolean, null or no such key.
pub(super) fn json_text(data: &Value, key: &str) -> Option<String> {
    match data.get(key)? {
        Value::String(s) => Some(s.clone()),
        v @ (Value::Array(_) | Value::Object(_)) => Some(v.to_string()),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

/// An event as the report's JSON rules read it.
struct RawEvent {
    id: i64,
    task_id: Option<String>,
    at_ms: i64,
    data: String,
}

/// The events of `kind` since `since_ms`, oldest first.
fn events_of(pg: Pg<'_>, kind: EventKind, since_ms: i64) -> Result<Vec<RawEvent>> {
    query(
        pg,
        "SELECT id, task_id, at_ms, data FROM events WHERE kind = $1 AND at_ms >= $2 ORDER BY id",
        &[&kind.as_str(), &since_ms],
    )?
    .iter()
    .map(|r| {
        Ok(RawEvent {
            id: r.try_get(0)?,
            task_id: r.try_get(1)?,
            at_ms: r.try_get(2)?,
            data: r.try_get(3)?,
        })
    })
    .collect()
}

fn usize_of(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

pub(in crate::ledger) fn report_runs(pg: Pg<'_>, since_ms: i64) -> Result<Vec<RunFact>> {
    query(
        pg,
        "SELECT task_id, role, COALESCE(classification, ''), cost_microusd, input_tokens,
                output_tokens, parse_failures, started_at_ms, COALESCE(ended_at_ms, started_at_ms)
         FROM runs WHERE status = 'finished' AND started_at_ms >= $1
           AND COALESCE(classification, '') <> 'withdrawn'
         ORDER BY started_at_ms, id",
        &[&since_ms],
    )?
    .iter()
    .map(|r| {
        Ok(RunFact {
            task_id: r.try_get(0)?,
            role: r.try_get(1)?,
            classification: r.try_get(2)?,
            cost_microusd: r.try_get(3)?,
            input_tokens: r.try_get(4)?,
            output_tokens: r.try_get(5)?,
            parse_failures: r.try_get(6)?,
            started_at_ms: r.try_get(7)?,
            ended_at_ms: r.try_get(8)?,
        })
    })
    .collect()
}

/// Tasks that moved to `failed` since `since_ms`, newest first, each with the summary of the
/// first (valid) triage event after that failure and before the task's next state change.
pub(in crate::ledger) fn report_failed_tasks(
    pg: Pg<'_>,
    since_ms: i64,
) -> Result<Vec<FailedTaskFact>> {
    let change_kind = EventKind::TaskStateChanged.as_str();
    let mut out = Vec::new();
    let changes = events_of(pg, EventKind::TaskStateChanged, since_ms)?;
    for RawEvent {
        id,
        task_id,
        at_ms,
        data,
    } in changes.into_iter().rev()
    {
        let (Some(task_id), Some(data)) = (task_id, json(&data)) else {
            continue;
        };
        if json_text(&data, "to").as_deref() != Some(TaskState::Failed.as_str()) {
            continue;
        }
        let summaries = query(
            pg,
            "SELECT s.data FROM events s
             WHERE s.task_id = $1 AND s.kind = $2 AND s.id > $3
               AND s.id < COALESCE((SELECT MIN(n.id) FROM events n WHERE n.task_id = $1
                                    AND n.kind = $4 AND n.id > $3), 9223372036854775807)
             ORDER BY s.id",
            &[
                &task_id,
                &EventKind::TriageSummary.as_str(),
                &id,
                &change_kind,
            ],
        )?;
        let mut triage = None;
        for row in summaries {
            if let Some(summary) = json(row.try_get(0)?) {
                triage = json_text(&summary, "summary");
                break;
            }
        }
        out.push(FailedTaskFact {
            task_id,
            at_ms,
            failure_class: json_text(&data, "failure_class"),
            reason: json_text(&data, "reason").unwrap_or_default(),
            triage,
        });
    }
    Ok(out)
}

pub(in crate::ledger) fn report_count(pg: Pg<'_>, kind: EventKind, since_ms: i64) -> Result<usize> {
    let n: i64 = query_one(
        pg,
        "SELECT COUNT(*) FROM events WHERE kind = $1 AND at_ms >= $2",
        &[&kind.as_str(), &since_ms],
    )?
    .try_get(0)?;
    Ok(usize_of(n))
}

pub(in crate::ledger) fn report_event_times(
    pg: Pg<'_>,
    kind: EventKind,
    since_ms: i64,
) -> Result<Vec<(i64, String)>> {
    query(
        pg,
        "SELECT at_ms, task_id FROM events
         WHERE kind = $1 AND at_ms >= $2 AND task_id IS NOT NULL ORDER BY id",
        &[&kind.as_str(), &since_ms],
    )?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}

/// Governance memos that are violations: data that is not JSON, or a trigger other than the
/// hold for approval.
pub(in crate::ledger) fn report_governance_violations(pg: Pg<'_>, since_ms: i64) -> Result<usize> {
    Ok(events_of(pg, EventKind::GovernanceMemo, since_ms)?
        .iter()
        .filter(|e| {
            json(&e.data)
                .is_none_or(|d| json_text(&d, TRIGGER).as_deref() != Some(TRIGGER_NEEDS_APPROVAL))
        })
        .count())
}

/// First CI results: `(how many, how many green)`; only JSON `true` counts (not `1`).
pub(in crate::ledger) fn report_first_ci(pg: Pg<'_>, since_ms: i64) -> Result<(usize, usize)> {
    let (mut first, mut green) = (0, 0);
    for event in events_of(pg, EventKind::CiResult, since_ms)? {
        let Some(data) = json(&event.data) else {
            continue;
        };
        if data.get(FIRST_PASS) == Some(&Value::Bool(true)) {
            first += 1;
            if data.get(GREEN) == Some(&Value::Bool(true)) {
                green += 1;
            }
        }
    }
    Ok((first, green))
}

/// Reviews skipped by auto-approval: `(reason, how many)`, by reason.
pub(in crate::ledger) fn report_review_skips(
    pg: Pg<'_>,
    since_ms: i64,
) -> Result<Vec<(Option<String>, usize)>> {
    let mut by_reason: BTreeMap<Option<String>, usize> = BTreeMap::new();
    for event in events_of(pg, EventKind::ReviewDecided, since_ms)? {
        let Some(data) = json(&event.data) else {
            continue;
        };
        if json_text(&data, DECISION).as_deref() == Some(DECISION_AUTO_APPROVE) {
            *by_reason
                .entry(json_text(&data, REVIEW_SKIPPED_REASON))
                .or_default() += 1;
        }
    }
    Ok(by_reason.into_iter().collect())
}

/// `(at_ms, kind, actor, data)` of the task's events of `kinds`, oldest first.
pub(in crate::ledger) fn task_history(
    pg: Pg<'_>,
    task_id: &str,
    kinds: &[&str],
) -> Result<Vec<(i64, String, String, Value)>> {
    query(
        pg,
        "SELECT at_ms, kind, actor, data FROM events WHERE task_id = $1 AND kind = ANY($2)
         ORDER BY id",
        &[&task_id, &kinds],
    )?
    .iter()
    .map(|r| {
        Ok((
            r.try_get(0)?,
            r.try_get(1)?,
            r.try_get(2)?,
            json(r.try_get(3)?).unwrap_or(Value::Null),
        ))
    })
    .collect()
}

pub(in crate::ledger) fn report_verify_times(
    pg: Pg<'_>,
    since_ms: i64,
) -> Result<BTreeMap<String, Vec<i64>>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in query(
        pg,
        "SELECT tier, duration_ms FROM verify_results WHERE at_ms >= $1 ORDER BY id",
        &[&since_ms],
    )? {
        out.entry(r.try_get(0)?).or_default().push(r.try_get(1)?);
    }
    Ok(out)
}

/// Spend per UTC day since `since_day` (days are `YYYY-MM-DD`, so text order is time order).
pub(in crate::ledger) fn report_spend_by_day(
    pg: Pg<'_>,
    since_day: &str,
) -> Result<Vec<(String, i64)>> {
    query(
        pg,
        "SELECT day, SUM(actual_microusd)::BIGINT FROM
             (SELECT day, actual_microusd FROM spend
              UNION ALL SELECT day, actual_microusd FROM gateway_calls) AS both_kinds
         WHERE day COLLATE \"C\" >= $1 GROUP BY day ORDER BY day COLLATE \"C\"",
        &[&since_day],
    )?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}

pub(in crate::ledger) fn report_gateway_spend(
    pg: Pg<'_>,
    since_ms: i64,
) -> Result<Vec<(String, i64)>> {
    query(
        pg,
        "SELECT role, SUM(actual_microusd)::BIGINT FROM gateway_calls WHERE created_at_ms >= $1
         GROUP BY role ORDER BY role COLLATE \"C\"",
        &[&since_ms],
    )?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}

#[cfg(test)]
mod tests {
    use crate::ledger::{GatewayCallEnd, NewGatewayCall};

    #[test]
    fn report_gateway_spend_on_both_backends() {
        super::super::on_both_backends("report_gateway_spend", |ledger| {
            let call = |role: &'static str, at_ms: i64| NewGatewayCall {
                role,
                provider: "local",
                model: "m",
                task_id: None,
                day: "2026-11-30",
                month: "2026-11",
                reserve_microusd: 100,
                at_ms,
            };
            let end = |cost: i64| GatewayCallEnd {
                outcome: "ok",
                cost_microusd: cost,
                cost_source: "card",
                tokens_in: 1,
                tokens_out: 1,
                attempts: 1,
                latency_ms: None,
                error: None,
                at_ms: 0,
            };
            for (role, at_ms, cost) in [
                ("triage", 10, 5),
                ("screen", 20, 7),
                ("triage", 30, 11),
                ("Summary", 40, 1),
                ("improve", 5, 99),
            ] {
                let id = ledger
                    .write(|q| q.begin_gateway_call(&call(role, at_ms)))
                    .unwrap();
                ledger
                    .write(|q| q.end_gateway_call(id, &end(cost)))
                    .unwrap();
            }
            assert_eq!(
                ledger.read().report_gateway_spend(10).unwrap(),
                [
                    ("Summary".to_owned(), 1),
                    ("screen".to_owned(), 7),
                    ("triage".to_owned(), 16)
                ],
                "by role in byte order"
            );
        });
    }
}
