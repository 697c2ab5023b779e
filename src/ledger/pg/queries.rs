//! The ledger functions on Postgres, one per `Queries` method that runs SQL; each keeps the
//! sqlite version's contract (errors included), and a test body runs on both backends.

use std::collections::BTreeMap;

use postgres::Row;

use super::{Pg, execute, query, query_one, query_opt};
use crate::ledger::queries::{TASK_COLUMNS, json_list, to_json_list};
use crate::ledger::{
    FailureClass, HoldKind, LedgerError, NewEvent, Result, SpendTotals, TaskRow, TaskSpec,
    TaskState, Transition,
};

fn count<T: TryFrom<i64>>(row: &Row, index: usize, what: &str) -> Result<T> {
    let n: i64 = row.try_get(index)?;
    T::try_from(n).map_err(|_| LedgerError::Corrupt(format!("{what} out of range: {n}")))
}

fn task_from_row(row: &Row) -> Result<TaskRow> {
    let id: String = row.try_get(0)?;
    let state: String = row.try_get(13)?;
    let state: TaskState = state
        .parse()
        .map_err(|e| LedgerError::Corrupt(format!("task {id}: {e}")))?;
    Ok(TaskRow {
        spec: TaskSpec {
            priority_tier: count(row, 1, "priority_tier")?,
            title: row.try_get(2)?,
            subtitle: row.try_get(3)?,
            body: row.try_get(4)?,
            section: row.try_get(5)?,
            format: row.try_get(6)?,
            depends_on: json_list(row.try_get(7)?),
            file_hints: json_list(row.try_get(8)?),
            source_line: count(row, 9, "source_line")?,
            roadmap_order: count(row, 10, "roadmap_order")?,
            content_hash: row.try_get(11)?,
            milestone: row.try_get(22)?,
            roadmap_done: row.try_get(23)?,
            id,
        },
        in_roadmap: row.try_get(12)?,
        state,
        held_reason: row.try_get(14)?,
        hold_kind: row
            .try_get::<_, Option<&str>>(29)?
            .and_then(HoldKind::parse),
        failure_class: row.try_get::<_, Option<&str>>(15)?.map(FailureClass::parse),
        attempts: count(row, 16, "attempts")?,
        worker_calls: count(row, 17, "worker_calls")?,
        retry_at_ms: row.try_get(18)?,
        last_deferred_at_ms: row.try_get(19)?,
        created_at_ms: row.try_get(20)?,
        updated_at_ms: row.try_get(21)?,
        branch: row.try_get(24)?,
        base_commit: row.try_get(25)?,
        last_failure: row.try_get(26)?,
        pr_number: row
            .try_get::<_, Option<i64>>(27)?
            .map(|n| u64::try_from(n).unwrap_or(0)),
        pr_url: row.try_get(28)?,
    })
}

pub(in crate::ledger) fn tasks(pg: Pg<'_>) -> Result<Vec<TaskRow>> {
    query(
        pg,
        &format!("SELECT {TASK_COLUMNS} FROM tasks ORDER BY in_roadmap DESC, roadmap_order, id"),
        &[],
    )?
    .iter()
    .map(task_from_row)
    .collect()
}

pub(in crate::ledger) fn task(pg: Pg<'_>, id: &str) -> Result<Option<TaskRow>> {
    query_opt(
        pg,
        &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"),
        &[&id],
    )?
    .as_ref()
    .map(task_from_row)
    .transpose()
}

/// The ids equal to `id` ignoring case (at most two: more are as ambiguous as two).
pub(in crate::ledger) fn task_ids_nocase(pg: Pg<'_>, id: &str) -> Result<Vec<String>> {
    Ok(query(
        pg,
        "SELECT id FROM tasks WHERE lower(id) = lower($1) LIMIT 2",
        &[&id],
    )?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?)
}

pub(in crate::ledger) fn task_counts(pg: Pg<'_>) -> Result<BTreeMap<TaskState, u64>> {
    let mut counts = BTreeMap::new();
    for row in query(pg, "SELECT state, COUNT(*) FROM tasks GROUP BY state", &[])? {
        let state: TaskState = row
            .try_get::<_, &str>(0)?
            .parse()
            .map_err(LedgerError::Corrupt)?;
        counts.insert(state, count(&row, 1, "task count")?);
    }
    Ok(counts)
}

/// The advisory lock key of the roadmap's ingest (`oxi` + "ing" in ASCII, beside the
/// migrations' `oxi` + "mig").
const INGEST_LOCK: i64 = 0x006f_7869_0069_6e67;

/// Holds the ingest's advisory lock until the transaction ends.
pub(in crate::ledger) fn lock_for_ingest(pg: Pg<'_>) -> Result<()> {
    query(pg, "SELECT pg_advisory_xact_lock($1)", &[&INGEST_LOCK]).map(|_| ())
}

pub(in crate::ledger) fn insert_task(
    pg: Pg<'_>,
    spec: &TaskSpec,
    state: TaskState,
    now_ms: i64,
) -> Result<()> {
    execute(
        pg,
        "INSERT INTO tasks (id, priority_tier, title, subtitle, body, section, format,
            depends_on, file_hints, source_line, roadmap_order, content_hash, in_roadmap,
            state, created_at_ms, updated_at_ms, milestone, roadmap_done)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, TRUE, $13, $14, $14,
            $15, $16)",
        &[
            &spec.id,
            &i64::from(spec.priority_tier),
            &spec.title,
            &spec.subtitle,
            &spec.body,
            &spec.section,
            &spec.format,
            &to_json_list(&spec.depends_on),
            &to_json_list(&spec.file_hints),
            &i64::from(spec.source_line),
            &i64::from(spec.roadmap_order),
            &spec.content_hash,
            &state.as_str(),
            &now_ms,
            &spec.milestone,
            &spec.roadmap_done,
        ],
    )?;
    Ok(())
}

pub(in crate::ledger) fn update_task_spec(pg: Pg<'_>, spec: &TaskSpec, now_ms: i64) -> Result<()> {
    let changed = execute(
        pg,
        "UPDATE tasks SET priority_tier = $2, title = $3, subtitle = $4, body = $5,
            section = $6, format = $7, depends_on = $8, file_hints = $9,
            source_line = $10, roadmap_order = $11, content_hash = $12, in_roadmap = TRUE,
            updated_at_ms = $13, milestone = $14, roadmap_done = $15
         WHERE id = $1",
        &[
            &spec.id,
            &i64::from(spec.priority_tier),
            &spec.title,
            &spec.subtitle,
            &spec.body,
            &spec.section,
            &spec.format,
            &to_json_list(&spec.depends_on),
            &to_json_list(&spec.file_hints),
            &i64::from(spec.source_line),
            &i64::from(spec.roadmap_order),
            &spec.content_hash,
            &now_ms,
            &spec.milestone,
            &spec.roadmap_done,
        ],
    )?;
    if changed == 0 {
        return Err(LedgerError::NoSuchTask(spec.id.clone()));
    }
    Ok(())
}

pub(in crate::ledger) fn update_task_position(
    pg: Pg<'_>,
    id: &str,
    position: (u32, u32, bool, bool),
) -> Result<()> {
    let (source_line, roadmap_order, in_roadmap, roadmap_done) = position;
    execute(
        pg,
        "UPDATE tasks SET source_line = $2, roadmap_order = $3, in_roadmap = $4,
            roadmap_done = $5
         WHERE id = $1 AND (source_line <> $2 OR roadmap_order <> $3 OR in_roadmap <> $4
            OR roadmap_done <> $5)",
        &[
            &id,
            &i64::from(source_line),
            &i64::from(roadmap_order),
            &in_roadmap,
            &roadmap_done,
        ],
    )?;
    Ok(())
}

/// The state change of `transition_task` (its event is appended by the caller, on either
/// backend alike).
pub(in crate::ledger) fn change_task_state(
    pg: Pg<'_>,
    id: &str,
    change: &Transition<'_>,
    now_ms: i64,
) -> Result<()> {
    let fields = &change.fields;
    let changed = execute(
        pg,
        "UPDATE tasks SET state = $3, held_reason = $4, failure_class = $5,
            retry_at_ms = $6, updated_at_ms = $7, hold_kind = $8
         WHERE id = $1 AND state = $2",
        &[
            &id,
            &change.from.as_str(),
            &change.to.as_str(),
            &fields.held_reason,
            &fields.failure_class.as_ref().map(FailureClass::as_str),
            &fields.retry_at_ms,
            &now_ms,
            &fields.hold_kind.map(HoldKind::as_str),
        ],
    )?;
    if changed > 0 {
        return Ok(());
    }
    let found: Option<String> = query_opt(pg, "SELECT state FROM tasks WHERE id = $1", &[&id])?
        .map(|r| r.try_get(0))
        .transpose()?;
    Err(match found {
        None => LedgerError::NoSuchTask(id.to_owned()),
        Some(found) => LedgerError::StateConflict {
            task: id.to_owned(),
            expected: change.from,
            found,
        },
    })
}

pub(in crate::ledger) fn append_event(pg: Pg<'_>, event: &NewEvent<'_>) -> Result<i64> {
    let row = query_one(
        pg,
        "INSERT INTO events (at_ms, kind, task_id, run_id, actor, data)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        &[
            &event.at_ms,
            &event.event.kind().as_str(),
            &event.task_id,
            &event.run_id,
            &event.actor,
            &event.event.data().to_string(),
        ],
    )?;
    Ok(row.try_get(0)?)
}

/// The number of events ever recorded: the largest id. Unlike sqlite's AUTOINCREMENT, an
/// identity column can skip ids a rolled-back insert took, so this counts rows (an index-only
/// scan on the primary key).
pub(in crate::ledger) fn event_count(pg: Pg<'_>) -> Result<i64> {
    Ok(query_one(pg, "SELECT COUNT(*) FROM events", &[])?.try_get(0)?)
}

pub(in crate::ledger) fn spend_totals(pg: Pg<'_>, day: &str, month: &str) -> Result<SpendTotals> {
    totals_of_rollup_rows(
        &query(
            pg,
            "SELECT period, spent, held FROM spend_rollup WHERE period IN ($1, $2)",
            &[&day, &month],
        )?,
        day,
    )
}

/// The day's and the month's totals from their `spend_rollup` rows (`period, spent, held`):
/// the row named `day` is the day's, the other the month's; a missing row is nothing spent.
pub(super) fn totals_of_rollup_rows(rows: &[Row], day: &str) -> Result<SpendTotals> {
    let mut totals = SpendTotals::default();
    for row in rows {
        let period: &str = row.try_get(0)?;
        let (spent, held): (i64, i64) = (row.try_get(1)?, row.try_get(2)?);
        if period == day {
            (totals.day_spent, totals.day_reserved) = (spent, held);
        } else {
            (totals.month_spent, totals.month_reserved) = (spent, held);
        }
    }
    Ok(totals)
}

pub(in crate::ledger) fn spend_totals_by_scan(
    pg: Pg<'_>,
    day: &str,
    month: &str,
) -> Result<SpendTotals> {
    let sums = |column: &str, period: &str| -> Result<(i64, i64)> {
        let row = query_one(
            pg,
            &format!(
                "SELECT COALESCE(SUM(actual_microusd), 0)::BIGINT,
                        COALESCE(SUM(spend_held(status, reserved_microusd, actual_microusd)), 0)::BIGINT
                 FROM (SELECT day, month, status, reserved_microusd, actual_microusd FROM spend
                       UNION ALL
                       SELECT day, month, status, reserved_microusd, actual_microusd
                       FROM gateway_calls) AS money
                 WHERE {column} = $1"
            ),
            &[&period],
        )?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    };
    let (day_spent, day_reserved) = sums("day", day)?;
    let (month_spent, month_reserved) = sums("month", month)?;
    Ok(SpendTotals {
        day_spent,
        day_reserved,
        month_spent,
        month_reserved,
    })
}

pub(in crate::ledger) fn kv_get(pg: Pg<'_>, key: &str) -> Result<Option<String>> {
    Ok(
        query_opt(pg, "SELECT value FROM kv WHERE key = $1", &[&key])?
            .map(|r| r.try_get(0))
            .transpose()?,
    )
}

pub(in crate::ledger) fn kv_set(pg: Pg<'_>, key: &str, value: &str, now_ms: i64) -> Result<()> {
    execute(
        pg,
        "INSERT INTO kv (key, value, updated_at_ms) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value,
            updated_at_ms = excluded.updated_at_ms",
        &[&key, &value, &now_ms],
    )?;
    Ok(())
}
