//! Typed reads and writes. `Queries` wraps a connection or an open transaction; every SQL
//! statement oxi runs is in this file or in the migrations.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::events::{Event, Killswitched, TaskStateChanged};
use super::{FailureClass, HoldKind, LedgerError, Result, TaskState, pg};
use crate::money::MicroUsd;

/// Typed access over a connection or a transaction, of either backend.
pub struct Queries<'c> {
    pub(super) db: Db<'c>,
}

/// The backend a `Queries` runs its statements on.
pub(super) enum Db<'c> {
    Sqlite(&'c Connection),
    Pg(super::pg::Pg<'c>),
}

impl<'c> Queries<'c> {
    pub(super) fn sqlite_conn(conn: &'c Connection) -> Self {
        Queries {
            db: Db::Sqlite(conn),
        }
    }

    /// The sqlite connection, for a method's sqlite body (below its Postgres branch). On a
    /// Postgres ledger it fails with `WrongBackend`, naming the caller, instead of sending
    /// sqlite's SQL to the wrong server (a method that lost its Postgres branch; a unit test
    /// checks every method has one).
    #[track_caller]
    pub(super) fn sqlite(&self) -> Result<&'c Connection> {
        match self.db {
            Db::Sqlite(conn) => Ok(conn),
            Db::Pg(_) => Err(LedgerError::WrongBackend(
                std::panic::Location::caller().to_string(),
            )),
        }
    }
}

/// What the roadmap says about a task: everything ingest may write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub id: String,
    pub priority_tier: u8,
    pub title: String,
    pub subtitle: Option<String>,
    pub body: String,
    pub section: Option<String>,
    pub milestone: Option<String>,
    pub format: String,
    pub depends_on: Vec<String>,
    pub file_hints: Vec<String>,
    pub source_line: u32,
    pub roadmap_order: u32,
    /// Hash of the fields that form the worker's brief; a change means the task text changed.
    pub content_hash: String,
    /// Checked off (`[x]`) or under a "Done" heading in the roadmap.
    pub roadmap_done: bool,
}

/// A task as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskRow {
    #[serde(flatten)]
    pub spec: TaskSpec,
    pub in_roadmap: bool,
    pub state: TaskState,
    pub held_reason: Option<String>,
    /// What a held task waits for (`None` unless it is held).
    pub hold_kind: Option<HoldKind>,
    pub failure_class: Option<FailureClass>,
    pub attempts: u32,
    pub worker_calls: u32,
    pub retry_at_ms: Option<i64>,
    pub last_deferred_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// `oxi/<id>-<slug>` once dispatched.
    pub branch: Option<String>,
    pub base_commit: Option<String>,
    /// The last attempt's failure, fed to the next attempt's prompt.
    pub last_failure: Option<String>,
    /// The pull request delivering it (release mode).
    pub pr_number: Option<u64>,
    pub pr_url: Option<String>,
}

/// A new row for the event trail.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub at_ms: i64,
    pub task_id: Option<&'a str>,
    pub run_id: Option<&'a str>,
    /// `oxi` for the supervisor, `operator:<user>` for a human action.
    pub actor: &'a str,
    pub event: Event,
}

/// Extra fields set together with a state change.
#[derive(Debug, Clone, Default)]
pub struct TransitionFields {
    pub held_reason: Option<String>,
    /// What a hold waits for; set with `held_reason` when the task moves to `held`.
    pub hold_kind: Option<HoldKind>,
    pub failure_class: Option<FailureClass>,
    pub retry_at_ms: Option<i64>,
}

/// One state change: from where, to where, who asked and why.
#[derive(Debug, Clone)]
pub struct Transition<'a> {
    pub from: TaskState,
    pub to: TaskState,
    pub fields: TransitionFields,
    /// `oxi` or `operator:<user>`.
    pub actor: &'a str,
    pub reason: &'a str,
}

impl<'a> Transition<'a> {
    /// A change made by oxi itself with no extra fields.
    pub fn by_oxi(from: TaskState, to: TaskState, reason: &'a str) -> Self {
        Self {
            from,
            to,
            fields: TransitionFields::default(),
            actor: "oxi",
            reason,
        }
    }
}

/// Money for one budget day and its month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SpendTotals {
    pub day_spent: MicroUsd,
    pub day_reserved: MicroUsd,
    pub month_spent: MicroUsd,
    pub month_reserved: MicroUsd,
}

/// The killswitch, as stored under `KILLSWITCH_KEY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Killswitch {
    pub paused: bool,
    pub by: String,
    pub reason: Option<String>,
    pub at_ms: i64,
}

pub const KILLSWITCH_KEY: &str = "killswitch";

pub(super) const TASK_COLUMNS: &str =
    "id, priority_tier, title, subtitle, body, section, format, depends_on,
    file_hints, source_line, roadmap_order, content_hash, in_roadmap, state, held_reason,
    failure_class, attempts, worker_calls, retry_at_ms, last_deferred_at_ms, created_at_ms,
    updated_at_ms, milestone, roadmap_done, branch, base_commit, last_failure, pr_number, pr_url,
    hold_kind";

pub(super) fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

pub(super) fn to_json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

fn task_from_row(row: &Row<'_>) -> rusqlite::Result<(TaskRow, String)> {
    let state_text: String = row.get(13)?;
    let task = TaskRow {
        spec: TaskSpec {
            id: row.get(0)?,
            priority_tier: row.get(1)?,
            title: row.get(2)?,
            subtitle: row.get(3)?,
            body: row.get(4)?,
            section: row.get(5)?,
            format: row.get(6)?,
            depends_on: json_list(&row.get::<_, String>(7)?),
            file_hints: json_list(&row.get::<_, String>(8)?),
            source_line: row.get(9)?,
            roadmap_order: row.get(10)?,
            content_hash: row.get(11)?,
            milestone: row.get(22)?,
            roadmap_done: row.get(23)?,
        },
        in_roadmap: row.get(12)?,
        state: TaskState::Queued,
        held_reason: row.get(14)?,
        hold_kind: row
            .get::<_, Option<String>>(29)?
            .as_deref()
            .and_then(HoldKind::parse),
        failure_class: row
            .get::<_, Option<String>>(15)?
            .as_deref()
            .map(FailureClass::parse),
        attempts: row.get(16)?,
        worker_calls: row.get(17)?,
        retry_at_ms: row.get(18)?,
        last_deferred_at_ms: row.get(19)?,
        created_at_ms: row.get(20)?,
        updated_at_ms: row.get(21)?,
        branch: row.get(24)?,
        base_commit: row.get(25)?,
        last_failure: row.get(26)?,
        pr_number: row.get::<_, Option<i64>>(27)?.map(|n| n.max(0) as u64),
        pr_url: row.get(28)?,
    };
    Ok((task, state_text))
}

fn finish_task(pair: (TaskRow, String)) -> Result<TaskRow> {
    let (mut task, state_text) = pair;
    task.state = state_text
        .parse()
        .map_err(|e| LedgerError::Corrupt(format!("task {}: {e}", task.spec.id)))?;
    Ok(task)
}

impl Queries<'_> {
    /// The schema version (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<i64> {
        if let Db::Pg(pg) = self.db {
            return pg::schema_version(pg);
        }
        Ok(self
            .sqlite()?
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// Every task, in roadmap order (tasks no longer in the roadmap last).
    pub fn tasks(&self) -> Result<Vec<TaskRow>> {
        if let Db::Pg(pg) = self.db {
            return pg::tasks(pg);
        }
        let mut stmt = self.sqlite()?.prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks ORDER BY in_roadmap DESC, roadmap_order, id"
        ))?;
        let rows = stmt.query_map([], task_from_row)?;
        rows.map(|r| finish_task(r?)).collect()
    }

    pub fn task(&self, id: &str) -> Result<Option<TaskRow>> {
        if let Db::Pg(pg) = self.db {
            return pg::task(pg, id);
        }
        let mut stmt = self
            .sqlite()?
            .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))?;
        stmt.query_row([id], task_from_row)
            .optional()?
            .map(finish_task)
            .transpose()
    }

    /// A task by the id a person typed: the exact id, else the one id equal to it ignoring
    /// case (`t0-1` finds `T0-1`). Two ids that differ only in case match neither way.
    pub fn find_task(&self, id: &str) -> Result<Option<TaskRow>> {
        if let Some(task) = self.task(id)? {
            return Ok(Some(task));
        }
        let ids: Vec<String> = if let Db::Pg(pg) = self.db {
            pg::task_ids_nocase(pg, id)?
        } else {
            self.sqlite()?
                .prepare_cached("SELECT id FROM tasks WHERE id = ?1 COLLATE NOCASE LIMIT 2")?
                .query_map([id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        match ids.as_slice() {
            [one] => self.task(one),
            _ => Ok(None),
        }
    }

    /// How many tasks are in each state (states with none are left out). Uses the state index.
    pub fn task_counts(&self) -> Result<BTreeMap<TaskState, u64>> {
        if let Db::Pg(pg) = self.db {
            return pg::task_counts(pg);
        }
        let mut stmt = self
            .sqlite()?
            .prepare_cached("SELECT state, COUNT(*) FROM tasks GROUP BY state")?;
        let mut counts = BTreeMap::new();
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (state, n) = row?;
            let state: TaskState = state.parse().map_err(LedgerError::Corrupt)?;
            counts.insert(state, u64::try_from(n).unwrap_or(0));
        }
        Ok(counts)
    }

    /// Called first in a write that reads the tasks and then adds or changes them (the
    /// roadmap's ingest): such writes run one at a time, so two hosts ingesting the same new
    /// roadmap at once never both insert its tasks. On Postgres a transaction-scoped advisory
    /// lock, waited for, so the second writer's reads see what the first committed; on `SQLite`
    /// the write already excludes every other writer.
    ///
    /// # Errors
    /// `Busy` when another host held the lock past the lock timeout.
    pub fn lock_for_ingest(&self) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::lock_for_ingest(pg);
        }
        self.sqlite().map(|_| ())
    }

    /// Inserts a task from the roadmap in `state` (queued, or done for checked-off items).
    pub fn insert_task(&self, spec: &TaskSpec, state: TaskState, now_ms: i64) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::insert_task(pg, spec, state, now_ms);
        }
        self.sqlite()?
            .prepare_cached(
                "INSERT INTO tasks (id, priority_tier, title, subtitle, body, section, format,
                    depends_on, file_hints, source_line, roadmap_order, content_hash, in_roadmap,
                    state, created_at_ms, updated_at_ms, milestone, roadmap_done)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 1, ?13, ?14, ?14,
                    ?15, ?16)",
            )?
            .execute(params![
                spec.id,
                spec.priority_tier,
                spec.title,
                spec.subtitle,
                spec.body,
                spec.section,
                spec.format,
                to_json_list(&spec.depends_on),
                to_json_list(&spec.file_hints),
                spec.source_line,
                spec.roadmap_order,
                spec.content_hash,
                state.as_str(),
                now_ms,
                spec.milestone,
                spec.roadmap_done,
            ])?;
        Ok(())
    }

    /// Rewrites a task's roadmap fields (text, tier, dependencies, position) and marks it present.
    pub fn update_task_spec(&self, spec: &TaskSpec, now_ms: i64) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::update_task_spec(pg, spec, now_ms);
        }
        let changed = self
            .sqlite()?
            .prepare_cached(
                "UPDATE tasks SET priority_tier = ?2, title = ?3, subtitle = ?4, body = ?5,
                    section = ?6, format = ?7, depends_on = ?8, file_hints = ?9,
                    source_line = ?10, roadmap_order = ?11, content_hash = ?12, in_roadmap = 1,
                    updated_at_ms = ?13, milestone = ?14, roadmap_done = ?15
                 WHERE id = ?1",
            )?
            .execute(params![
                spec.id,
                spec.priority_tier,
                spec.title,
                spec.subtitle,
                spec.body,
                spec.section,
                spec.format,
                to_json_list(&spec.depends_on),
                to_json_list(&spec.file_hints),
                spec.source_line,
                spec.roadmap_order,
                spec.content_hash,
                now_ms,
                spec.milestone,
                spec.roadmap_done,
            ])?;
        if changed == 0 {
            return Err(LedgerError::NoSuchTask(spec.id.clone()));
        }
        Ok(())
    }

    /// Records where a task sits in the roadmap (and its checkbox) without touching its text.
    pub fn update_task_position(
        &self,
        id: &str,
        source_line: u32,
        roadmap_order: u32,
        in_roadmap: bool,
        roadmap_done: bool,
    ) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::update_task_position(
                pg,
                id,
                (source_line, roadmap_order, in_roadmap, roadmap_done),
            );
        }
        self.sqlite()?
            .prepare_cached(
                "UPDATE tasks SET source_line = ?2, roadmap_order = ?3, in_roadmap = ?4,
                    roadmap_done = ?5
                 WHERE id = ?1 AND (source_line <> ?2 OR roadmap_order <> ?3 OR in_roadmap <> ?4
                    OR roadmap_done <> ?5)",
            )?
            .execute(params![
                id,
                source_line,
                roadmap_order,
                in_roadmap,
                roadmap_done
            ])?;
        Ok(())
    }

    /// Moves a task from `from` to `to`, setting `fields`, and records a `task_state_changed`
    /// event naming `actor` and `reason`. Refuses transitions the state machine forbids and
    /// fails with `StateConflict` if the task is no longer in `from`.
    pub fn transition_task(&self, id: &str, change: &Transition<'_>, now_ms: i64) -> Result<()> {
        let Transition {
            from,
            to,
            ref fields,
            actor,
            ..
        } = *change;
        if !from.can_transition_to(to) {
            return Err(LedgerError::IllegalTransition {
                task: id.to_owned(),
                from,
                to,
            });
        }
        if let Db::Pg(pg) = self.db {
            pg::change_task_state(pg, id, change, now_ms)?;
        } else {
            let changed = self
                .sqlite()?
                .prepare_cached(
                    "UPDATE tasks SET state = ?3, held_reason = ?4, failure_class = ?5,
                    retry_at_ms = ?6, updated_at_ms = ?7, hold_kind = ?8
                 WHERE id = ?1 AND state = ?2",
                )?
                .execute(params![
                    id,
                    from.as_str(),
                    to.as_str(),
                    fields.held_reason,
                    fields.failure_class.as_ref().map(FailureClass::as_str),
                    fields.retry_at_ms,
                    now_ms,
                    fields.hold_kind.map(HoldKind::as_str),
                ])?;
            if changed == 0 {
                let found: Option<String> = self
                    .sqlite()?
                    .query_row("SELECT state FROM tasks WHERE id = ?1", [id], |r| r.get(0))
                    .optional()?;
                return Err(match found {
                    None => LedgerError::NoSuchTask(id.to_owned()),
                    Some(found) => LedgerError::StateConflict {
                        task: id.to_owned(),
                        expected: from,
                        found,
                    },
                });
            }
        }
        self.append_event(&NewEvent {
            at_ms: now_ms,
            task_id: Some(id),
            run_id: None,
            actor,
            event: state_changed_event(change),
        })?;
        Ok(())
    }

    /// Appends one row to the audit trail and returns its id.
    pub fn append_event(&self, event: &NewEvent<'_>) -> Result<i64> {
        if let Db::Pg(pg) = self.db {
            return pg::append_event(pg, event);
        }
        self.sqlite()?
            .prepare_cached(
                "INSERT INTO events (at_ms, kind, task_id, run_id, actor, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                event.at_ms,
                event.event.kind().as_str(),
                event.task_id,
                event.run_id,
                event.actor,
                event.event.data().to_string(),
            ])?;
        Ok(self.sqlite()?.last_insert_rowid())
    }

    /// The number of events ever recorded. The trail is append-only with AUTOINCREMENT ids, so
    /// the largest id is the count; reading it is one index probe, not a scan.
    pub fn event_count(&self) -> Result<i64> {
        if let Db::Pg(pg) = self.db {
            return pg::event_count(pg);
        }
        Ok(self
            .sqlite()?
            .query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?)
    }

    /// Spent (settled and running costs) and outstanding reservations for `day` and `month`.
    /// Two primary-key reads of `spend_rollup`, which triggers keep equal to the sums over
    /// `spend` (migration 0005; `spend_totals_by_scan` is the reference the tests compare).
    pub fn spend_totals(&self, day: &str, month: &str) -> Result<SpendTotals> {
        if let Db::Pg(pg) = self.db {
            return pg::spend_totals(pg, day, month);
        }
        let mut stmt = self
            .sqlite()?
            .prepare_cached("SELECT spent, held FROM spend_rollup WHERE period = ?1")?;
        let mut read = |period: &str| -> Result<(MicroUsd, MicroUsd)> {
            Ok(stmt
                .query_row([period], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .unwrap_or((0, 0)))
        };
        let (day_spent, day_reserved) = read(day)?;
        let (month_spent, month_reserved) = read(month)?;
        Ok(SpendTotals {
            day_spent,
            day_reserved,
            month_spent,
            month_reserved,
        })
    }

    /// `spend_totals` computed by summing `spend` and `gateway_calls` (the definition the rollup
    /// must match: both tables' triggers feed it).
    pub fn spend_totals_by_scan(&self, day: &str, month: &str) -> Result<SpendTotals> {
        if let Db::Pg(pg) = self.db {
            return pg::spend_totals_by_scan(pg, day, month);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT COALESCE(SUM(actual_microusd), 0),
                    COALESCE(SUM(CASE WHEN status = 'reserved'
                        THEN MAX(reserved_microusd - actual_microusd, 0) ELSE 0 END), 0)
             FROM (SELECT day, month, status, reserved_microusd, actual_microusd FROM spend
                   UNION ALL
                   SELECT day, month, status, reserved_microusd, actual_microusd FROM gateway_calls)
             WHERE day = ?1",
        )?;
        let (day_spent, day_reserved) = stmt.query_row([day], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT COALESCE(SUM(actual_microusd), 0),
                    COALESCE(SUM(CASE WHEN status = 'reserved'
                        THEN MAX(reserved_microusd - actual_microusd, 0) ELSE 0 END), 0)
             FROM (SELECT day, month, status, reserved_microusd, actual_microusd FROM spend
                   UNION ALL
                   SELECT day, month, status, reserved_microusd, actual_microusd FROM gateway_calls)
             WHERE month = ?1",
        )?;
        let (month_spent, month_reserved) =
            stmt.query_row([month], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(SpendTotals {
            day_spent,
            day_reserved,
            month_spent,
            month_reserved,
        })
    }

    pub fn kv_get(&self, key: &str) -> Result<Option<String>> {
        if let Db::Pg(pg) = self.db {
            return pg::kv_get(pg, key);
        }
        Ok(self
            .sqlite()?
            .prepare_cached("SELECT value FROM kv WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    pub fn kv_set(&self, key: &str, value: &str, now_ms: i64) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::kv_set(pg, key, value, now_ms);
        }
        self.sqlite()?
            .prepare_cached(
                "INSERT INTO kv (key, value, updated_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                    updated_at_ms = excluded.updated_at_ms",
            )?
            .execute(params![key, value, now_ms])?;
        Ok(())
    }

    /// The killswitch, if it was ever set.
    pub fn killswitch(&self) -> Result<Option<Killswitch>> {
        self.kv_get(KILLSWITCH_KEY)?
            .map(|text| {
                serde_json::from_str(&text)
                    .map_err(|e| LedgerError::Corrupt(format!("kv {KILLSWITCH_KEY}: {e}")))
            })
            .transpose()
    }

    /// Engages or releases the killswitch and records who did it.
    pub fn set_killswitch(&self, switch: &Killswitch) -> Result<()> {
        let text = serde_json::to_string(switch)
            .map_err(|e| LedgerError::Corrupt(format!("killswitch: {e}")))?;
        self.kv_set(KILLSWITCH_KEY, &text, switch.at_ms)?;
        self.append_event(&NewEvent {
            at_ms: switch.at_ms,
            task_id: None,
            run_id: None,
            actor: &switch.by,
            event: {
                let data = Killswitched {
                    reason: switch.reason.clone(),
                };
                if switch.paused {
                    Event::Paused(data)
                } else {
                    Event::Resumed(data)
                }
            },
        })?;
        Ok(())
    }
}

/// The `task_state_changed` event of a transition (one builder for both backends' claims).
pub(super) fn state_changed_event(change: &Transition<'_>) -> Event {
    Event::TaskStateChanged(TaskStateChanged {
        from: change.from,
        to: change.to,
        reason: change.reason.to_owned(),
        held_reason: change.fields.held_reason.clone(),
        failure_class: change.fields.failure_class.clone(),
    })
}

#[cfg(test)]
mod backend_tests {
    /// The ledger's sources whose methods run SQL.
    const SOURCES: &[(&str, &str)] = &[
        ("queries.rs", include_str!("queries.rs")),
        ("runs.rs", include_str!("runs.rs")),
        ("tick.rs", include_str!("tick.rs")),
        ("hosts.rs", include_str!("hosts.rs")),
        ("backup.rs", include_str!("backup.rs")),
        ("report.rs", include_str!("report.rs")),
        ("notify.rs", include_str!("notify.rs")),
        ("issues.rs", include_str!("issues.rs")),
        ("gateway.rs", include_str!("gateway.rs")),
        ("inference.rs", include_str!("inference.rs")),
        ("blocks.rs", include_str!("blocks.rs")),
        ("plans.rs", include_str!("plans.rs")),
        ("probes.rs", include_str!("probes.rs")),
        ("shadow.rs", include_str!("shadow.rs")),
        ("improve.rs", include_str!("improve.rs")),
    ];

    /// Every method that reaches the sqlite connection has a Postgres branch first (or is a
    /// sqlite-only helper, named so), so `WrongBackend` stays a bug nobody meets.
    #[test]
    fn every_method_with_sqlite_sql_has_a_postgres_branch() {
        let mut missing = Vec::new();
        for (file, text) in SOURCES {
            for chunk in text.split("\n    pub fn ").skip(1).chain(
                text.split("\n    pub(crate) fn ")
                    .skip(1)
                    .chain(text.split("\n    pub(super) fn ").skip(1)),
            ) {
                let body = chunk.split("\n    }\n").next().unwrap_or_default();
                let name = body.split(['(', '<']).next().unwrap_or_default();
                let uses_sqlite = body.contains("sqlite()");
                let dispatches = ["Db::Pg", "pg::", "Backend::Pg"]
                    .iter()
                    .any(|m| body.contains(m));
                if uses_sqlite && !dispatches && !name.contains("sqlite") {
                    missing.push(format!("{file}: {name}"));
                }
            }
        }
        assert!(missing.is_empty(), "no Postgres branch: {missing:?}");
    }
}
