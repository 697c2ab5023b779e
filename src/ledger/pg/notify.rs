//! The notifier's tables on Postgres: the twins of `ledger/notify.rs` (its cursor over the
//! event trail, the outbox per sink, one row per delivery attempt).

use std::collections::BTreeMap;

use postgres::Row;

use super::{Pg, execute, query, query_one, query_opt};
use crate::ledger::{
    Attempt, AttemptStatus, LedgerError, NewOutbox, OutboxRow, OutboxState, Result, SinkCounts,
    TrailEvent,
};

fn int<T: TryInto<i64>>(n: T) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// A stored count or code that must fit `T` (a row written by oxi always does).
fn narrow<T: TryFrom<i64>>(n: i64, what: &str) -> Result<T> {
    T::try_from(n).map_err(|_| LedgerError::Corrupt(format!("{what} out of range: {n}")))
}

fn count(row: &Row, index: usize) -> Result<u64> {
    Ok(u64::try_from(row.try_get::<_, i64>(index)?).unwrap_or(0))
}

pub(in crate::ledger) fn notify_cursor(pg: Pg<'_>) -> Result<Option<i64>> {
    Ok(query_opt(
        pg,
        "SELECT last_event_id FROM notify_cursor WHERE id = 1",
        &[],
    )?
    .map(|r| r.try_get(0))
    .transpose()?)
}

pub(in crate::ledger) fn set_notify_cursor(
    pg: Pg<'_>,
    last_event_id: i64,
    now_ms: i64,
) -> Result<()> {
    execute(
        pg,
        "INSERT INTO notify_cursor (id, last_event_id, updated_at_ms) VALUES (1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET last_event_id = $1, updated_at_ms = $2",
        &[&last_event_id, &now_ms],
    )?;
    Ok(())
}

pub(in crate::ledger) fn last_event_before(pg: Pg<'_>, at_ms: i64) -> Result<i64> {
    Ok(query_one(
        pg,
        "SELECT COALESCE(MAX(id), 0) FROM events WHERE at_ms < $1",
        &[&at_ms],
    )?
    .try_get(0)?)
}

pub(in crate::ledger) fn events_after(
    pg: Pg<'_>,
    after: i64,
    limit: u32,
) -> Result<Vec<TrailEvent>> {
    query(
        pg,
        "SELECT id, at_ms, kind, task_id, data FROM events WHERE id > $1 ORDER BY id LIMIT $2",
        &[&after, &i64::from(limit)],
    )?
    .iter()
    .map(|r| {
        Ok(TrailEvent {
            id: r.try_get(0)?,
            at_ms: r.try_get(1)?,
            kind: r.try_get(2)?,
            task_id: r.try_get(3)?,
            data: serde_json::from_str(r.try_get(4)?).unwrap_or(serde_json::Value::Null),
        })
    })
    .collect()
}

pub(in crate::ledger) fn event_kind_counts(
    pg: Pg<'_>,
    from_ms: i64,
    to_ms: i64,
) -> Result<BTreeMap<String, u64>> {
    query(
        pg,
        "SELECT kind, COUNT(*) FROM events WHERE at_ms >= $1 AND at_ms < $2 GROUP BY kind",
        &[&from_ms, &to_ms],
    )?
    .iter()
    .map(|r| Ok((r.try_get(0)?, count(r, 1)?)))
    .collect()
}

/// Like sqlite's `json_extract(data, '$.to')`, data that is not JSON fails the statement.
pub(in crate::ledger) fn transitions_to_counts(
    pg: Pg<'_>,
    from_ms: i64,
    to_ms: i64,
) -> Result<BTreeMap<String, u64>> {
    let mut counts = BTreeMap::new();
    for r in query(
        pg,
        "SELECT data::jsonb ->> 'to', COUNT(*) FROM events
         WHERE kind = 'task_state_changed' AND at_ms >= $1 AND at_ms < $2
         GROUP BY 1",
        &[&from_ms, &to_ms],
    )? {
        let to: Option<String> = r.try_get(0)?;
        *counts.entry(to.unwrap_or_default()).or_default() += count(&r, 1)?;
    }
    Ok(counts)
}

/// Queues a notification; false when this sink already has this topic.
pub(in crate::ledger) fn queue_notification(pg: Pg<'_>, row: &NewOutbox<'_>) -> Result<bool> {
    let inserted = execute(
        pg,
        "INSERT INTO notify_outbox (sink, topic, event_id, what, payload, next_at_ms, created_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
         ON CONFLICT (sink, topic) DO NOTHING",
        &[
            &row.sink,
            &row.topic,
            &row.event_id,
            &row.what,
            &row.payload,
            &row.now_ms,
        ],
    )?;
    Ok(inserted == 1)
}

pub(in crate::ledger) fn notification_queued(pg: Pg<'_>, sink: &str, topic: &str) -> Result<bool> {
    Ok(query_opt(
        pg,
        "SELECT 1 FROM notify_outbox WHERE sink = $1 AND topic = $2",
        &[&sink, &topic],
    )?
    .is_some())
}

pub(in crate::ledger) fn due_notifications(
    pg: Pg<'_>,
    now_ms: i64,
    limit: u32,
) -> Result<Vec<OutboxRow>> {
    query(
        pg,
        "SELECT id, sink, topic, event_id, what, payload, state, attempts FROM notify_outbox
         WHERE state = 'pending' AND next_at_ms <= $1 ORDER BY id LIMIT $2",
        &[&now_ms, &i64::from(limit)],
    )?
    .iter()
    .map(|r| {
        Ok(OutboxRow {
            id: r.try_get(0)?,
            sink: r.try_get(1)?,
            topic: r.try_get(2)?,
            event_id: r.try_get(3)?,
            what: r.try_get(4)?,
            payload: r.try_get(5)?,
            state: OutboxState::parse(r.try_get(6)?),
            attempts: narrow(r.try_get(7)?, "notify_outbox.attempts")?,
        })
    })
    .collect()
}

/// Records one attempt and moves its outbox row on (a test send has none).
pub(in crate::ledger) fn record_attempt(
    pg: Pg<'_>,
    outbox_id: Option<i64>,
    attempt: &Attempt,
    next_at_ms: i64,
) -> Result<()> {
    execute(
        pg,
        "INSERT INTO notifications
             (outbox_id, event_id, sink, topic, attempt, status, http_status, exit_code,
              error, ms, at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            &outbox_id,
            &attempt.event_id,
            &attempt.sink,
            &attempt.topic,
            &i64::from(attempt.attempt),
            &attempt.status.as_str(),
            &attempt.http_status.map(i64::from),
            &attempt.exit_code.map(i64::from),
            &attempt.error,
            &int(attempt.ms),
            &attempt.at_ms,
        ],
    )?;
    if let Some(id) = outbox_id {
        let state = match attempt.status {
            AttemptStatus::Delivered => OutboxState::Delivered,
            AttemptStatus::GaveUp => OutboxState::GaveUp,
            AttemptStatus::Failed => OutboxState::Pending,
        };
        execute(
            pg,
            "UPDATE notify_outbox SET state = $2, attempts = $3, next_at_ms = $4 WHERE id = $1",
            &[
                &id,
                &state.as_str(),
                &i64::from(attempt.attempt),
                &next_at_ms,
            ],
        )?;
    }
    Ok(())
}

pub(in crate::ledger) fn notification_attempts(
    pg: Pg<'_>,
    sink: Option<&str>,
    limit: u32,
) -> Result<Vec<Attempt>> {
    query(
        pg,
        "SELECT sink, topic, event_id, attempt, status, http_status, exit_code, error, ms, at_ms
         FROM notifications WHERE $1::TEXT IS NULL OR sink = $1 ORDER BY id DESC LIMIT $2",
        &[&sink, &i64::from(limit)],
    )?
    .iter()
    .map(|r| {
        Ok(Attempt {
            sink: r.try_get(0)?,
            topic: r.try_get(1)?,
            event_id: r.try_get(2)?,
            attempt: narrow(r.try_get(3)?, "notifications.attempt")?,
            status: AttemptStatus::parse(r.try_get(4)?),
            http_status: r
                .try_get::<_, Option<i64>>(5)?
                .map(|n| narrow(n, "notifications.http_status"))
                .transpose()?,
            exit_code: r
                .try_get::<_, Option<i64>>(6)?
                .map(|n| narrow(n, "notifications.exit_code"))
                .transpose()?,
            error: r.try_get(7)?,
            ms: count(r, 8)?,
            at_ms: r.try_get(9)?,
        })
    })
    .collect()
}

pub(in crate::ledger) fn notification_counts(pg: Pg<'_>, sink: &str) -> Result<SinkCounts> {
    let mut counts = SinkCounts::default();
    for r in query(
        pg,
        "SELECT state, COUNT(*) FROM notify_outbox WHERE sink = $1 GROUP BY state",
        &[&sink],
    )? {
        let n = count(&r, 1)?;
        match OutboxState::parse(r.try_get(0)?) {
            OutboxState::Pending => counts.pending = n,
            OutboxState::Delivered => counts.delivered = n,
            OutboxState::GaveUp => counts.gave_up = n,
        }
    }
    Ok(counts)
}
