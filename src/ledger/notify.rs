//! The notifier's tables (migration 0009): its cursor over the event trail, the outbox of
//! notifications per sink, and one row per delivery attempt.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::queries::Db;
use super::{Queries, Result, pg};

/// Where an outbox row stands, as stored in `notify_outbox.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxState {
    /// Not delivered yet; tried again at `next_at_ms`.
    Pending,
    Delivered,
    /// Failed `notify.max_attempts` times; never tried again.
    GaveUp,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Delivered => "delivered",
            OutboxState::GaveUp => "gave_up",
        }
    }

    pub(super) fn parse(text: &str) -> OutboxState {
        match text {
            "delivered" => OutboxState::Delivered,
            "gave_up" => OutboxState::GaveUp,
            _ => OutboxState::Pending,
        }
    }
}

/// How one attempt ended, as stored in `notifications.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    Delivered,
    /// Failed; tried again later.
    Failed,
    /// Failed, and it was the last attempt.
    GaveUp,
}

impl AttemptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Delivered => "delivered",
            AttemptStatus::Failed => "failed",
            AttemptStatus::GaveUp => "gave_up",
        }
    }

    pub(super) fn parse(text: &str) -> AttemptStatus {
        match text {
            "delivered" => AttemptStatus::Delivered,
            "gave_up" => AttemptStatus::GaveUp,
            _ => AttemptStatus::Failed,
        }
    }
}

/// A notification to queue for one sink.
#[derive(Debug, Clone)]
pub struct NewOutbox<'a> {
    pub sink: &'a str,
    pub topic: &'a str,
    pub event_id: Option<i64>,
    pub what: &'a str,
    pub payload: &'a str,
    pub now_ms: i64,
}

/// A queued notification.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub sink: String,
    pub topic: String,
    pub event_id: Option<i64>,
    pub what: String,
    pub payload: String,
    pub state: OutboxState,
    pub attempts: u32,
}

/// One delivery attempt, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub sink: String,
    pub topic: String,
    pub event_id: Option<i64>,
    pub attempt: u32,
    pub status: AttemptStatus,
    pub http_status: Option<u16>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub ms: u64,
    pub at_ms: i64,
}

/// A sink's counts in the outbox.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SinkCounts {
    pub pending: u64,
    pub delivered: u64,
    pub gave_up: u64,
}

/// An event as the notifier reads it.
#[derive(Debug, Clone)]
pub struct TrailEvent {
    pub id: i64,
    pub at_ms: i64,
    pub kind: String,
    pub task_id: Option<String>,
    pub data: serde_json::Value,
}

impl Queries<'_> {
    /// The last event the notifier has looked at; `None` before its first pass.
    pub fn notify_cursor(&self) -> Result<Option<i64>> {
        if let Db::Pg(pg) = self.db {
            return pg::notify_cursor(pg);
        }
        Ok(self
            .sqlite()?
            .query_row(
                "SELECT last_event_id FROM notify_cursor WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_notify_cursor(&self, last_event_id: i64, now_ms: i64) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::set_notify_cursor(pg, last_event_id, now_ms);
        }
        self.sqlite()?.execute(
            "INSERT INTO notify_cursor (id, last_event_id, updated_at_ms) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET last_event_id = ?1, updated_at_ms = ?2",
            params![last_event_id, now_ms],
        )?;
        Ok(())
    }

    /// The id of the last event recorded before `at_ms` (0 when none).
    pub fn last_event_before(&self, at_ms: i64) -> Result<i64> {
        if let Db::Pg(pg) = self.db {
            return pg::last_event_before(pg, at_ms);
        }
        Ok(self.sqlite()?.query_row(
            "SELECT COALESCE(MAX(id), 0) FROM events WHERE at_ms < ?1",
            [at_ms],
            |r| r.get(0),
        )?)
    }

    /// Up to `limit` events after `after`, oldest first.
    pub fn events_after(&self, after: i64, limit: u32) -> Result<Vec<TrailEvent>> {
        if let Db::Pg(pg) = self.db {
            return pg::events_after(pg, after, limit);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT id, at_ms, kind, task_id, data FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, limit], |r| {
            let data: String = r.get(4)?;
            Ok(TrailEvent {
                id: r.get(0)?,
                at_ms: r.get(1)?,
                kind: r.get(2)?,
                task_id: r.get(3)?,
                data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Events of `kinds` recorded in `[from_ms, to_ms)`, counted by kind.
    pub fn event_kind_counts(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<std::collections::BTreeMap<String, u64>> {
        if let Db::Pg(pg) = self.db {
            return pg::event_kind_counts(pg, from_ms, to_ms);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT kind, COUNT(*) FROM events WHERE at_ms >= ?1 AND at_ms < ?2 GROUP BY kind",
        )?;
        let rows = stmt.query_map(params![from_ms, to_ms], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// `task_state_changed` events in `[from_ms, to_ms)`, counted by the state they went to.
    pub fn transitions_to_counts(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<std::collections::BTreeMap<String, u64>> {
        if let Db::Pg(pg) = self.db {
            return pg::transitions_to_counts(pg, from_ms, to_ms);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT json_extract(data, '$.to'), COUNT(*) FROM events
             WHERE kind = 'task_state_changed' AND at_ms >= ?1 AND at_ms < ?2
             GROUP BY 1",
        )?;
        let rows = stmt.query_map(params![from_ms, to_ms], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                r.get::<_, i64>(1)? as u64,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Queues a notification; false when this sink already has this topic (never twice).
    pub fn queue_notification(&self, row: &NewOutbox<'_>) -> Result<bool> {
        if let Db::Pg(pg) = self.db {
            return pg::queue_notification(pg, row);
        }
        let inserted = self.sqlite()?.execute(
            "INSERT OR IGNORE INTO notify_outbox
                 (sink, topic, event_id, what, payload, next_at_ms, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            params![
                row.sink,
                row.topic,
                row.event_id,
                row.what,
                row.payload,
                row.now_ms
            ],
        )?;
        Ok(inserted == 1)
    }

    /// True when this sink has this topic queued (whatever its state).
    pub fn notification_queued(&self, sink: &str, topic: &str) -> Result<bool> {
        if let Db::Pg(pg) = self.db {
            return pg::notification_queued(pg, sink, topic);
        }
        Ok(self
            .sqlite()?
            .query_row(
                "SELECT 1 FROM notify_outbox WHERE sink = ?1 AND topic = ?2",
                params![sink, topic],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Pending notifications due at `now_ms`, oldest first.
    pub fn due_notifications(&self, now_ms: i64, limit: u32) -> Result<Vec<OutboxRow>> {
        if let Db::Pg(pg) = self.db {
            return pg::due_notifications(pg, now_ms, limit);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT id, sink, topic, event_id, what, payload, state, attempts FROM notify_outbox
             WHERE state = 'pending' AND next_at_ms <= ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now_ms, limit], |r| {
            Ok(OutboxRow {
                id: r.get(0)?,
                sink: r.get(1)?,
                topic: r.get(2)?,
                event_id: r.get(3)?,
                what: r.get(4)?,
                payload: r.get(5)?,
                state: OutboxState::parse(&r.get::<_, String>(6)?),
                attempts: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records one attempt and moves its outbox row on: delivered, given up, or pending until
    /// `next_at_ms`. A test send has no outbox row (`outbox_id` None).
    pub fn record_attempt(
        &self,
        outbox_id: Option<i64>,
        attempt: &Attempt,
        next_at_ms: i64,
    ) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::record_attempt(pg, outbox_id, attempt, next_at_ms);
        }
        self.sqlite()?.execute(
            "INSERT INTO notifications
                 (outbox_id, event_id, sink, topic, attempt, status, http_status, exit_code,
                  error, ms, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                outbox_id,
                attempt.event_id,
                attempt.sink,
                attempt.topic,
                attempt.attempt,
                attempt.status.as_str(),
                attempt.http_status,
                attempt.exit_code,
                attempt.error,
                attempt.ms as i64,
                attempt.at_ms,
            ],
        )?;
        if let Some(id) = outbox_id {
            let state = match attempt.status {
                AttemptStatus::Delivered => OutboxState::Delivered,
                AttemptStatus::GaveUp => OutboxState::GaveUp,
                AttemptStatus::Failed => OutboxState::Pending,
            };
            self.sqlite()?.execute(
                "UPDATE notify_outbox SET state = ?2, attempts = ?3, next_at_ms = ?4 WHERE id = ?1",
                params![id, state.as_str(), attempt.attempt, next_at_ms],
            )?;
        }
        Ok(())
    }

    /// The latest attempts, newest first; only `sink`'s when given.
    pub fn notification_attempts(&self, sink: Option<&str>, limit: u32) -> Result<Vec<Attempt>> {
        if let Db::Pg(pg) = self.db {
            return pg::notification_attempts(pg, sink, limit);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT sink, topic, event_id, attempt, status, http_status, exit_code, error, ms, at_ms
             FROM notifications WHERE ?1 IS NULL OR sink = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![sink, limit], |r| {
            Ok(Attempt {
                sink: r.get(0)?,
                topic: r.get(1)?,
                event_id: r.get(2)?,
                attempt: r.get(3)?,
                status: AttemptStatus::parse(&r.get::<_, String>(4)?),
                http_status: r.get(5)?,
                exit_code: r.get(6)?,
                error: r.get(7)?,
                ms: r.get::<_, i64>(8)?.max(0) as u64,
                at_ms: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A sink's outbox rows counted by state.
    pub fn notification_counts(&self, sink: &str) -> Result<SinkCounts> {
        if let Db::Pg(pg) = self.db {
            return pg::notification_counts(pg, sink);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT state, COUNT(*) FROM notify_outbox WHERE sink = ?1 GROUP BY state",
        )?;
        let mut counts = SinkCounts::default();
        let rows = stmt.query_map([sink], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        for row in rows {
            let (state, n) = row?;
            match OutboxState::parse(&state) {
                OutboxState::Pending => counts.pending = n,
                OutboxState::Delivered => counts.delivered = n,
                OutboxState::GaveUp => counts.gave_up = n,
            }
        }
        Ok(counts)
    }
}
