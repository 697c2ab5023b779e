//! What `[triage]` and `[screen]` read back from their own events, on Postgres: the twins of
//! `ledger/inference.rs`. As sqlite's `json_extract` does, data that is not JSON fails the
//! statement (`data::jsonb`); every event oxi writes is JSON.

use super::{Pg, query_opt};
use crate::ledger::{EventKind, Result};

pub(in crate::ledger) fn triage_after(
    pg: Pg<'_>,
    task_id: &str,
    after: i64,
) -> Result<Option<String>> {
    Ok(query_opt(
        pg,
        "SELECT data::jsonb ->> 'summary' FROM events
         WHERE task_id = $1 AND id > $2 AND kind = $3 ORDER BY id LIMIT 1",
        &[&task_id, &after, &EventKind::TriageSummary.as_str()],
    )?
    .map(|r| r.try_get::<_, Option<String>>(0))
    .transpose()?
    .flatten())
}

/// `(data, at_ms)` of the latest screen verdict on a brief with this digest.
pub(in crate::ledger) fn screen_verdict(pg: Pg<'_>, digest: &str) -> Result<Option<(String, i64)>> {
    Ok(query_opt(
        pg,
        "SELECT data, at_ms FROM events
         WHERE kind = $1 AND data::jsonb ->> 'digest' = $2 ORDER BY id DESC LIMIT 1",
        &[&EventKind::ScreenVerdict.as_str(), &digest],
    )?
    .map(|r| Ok::<_, postgres::Error>((r.try_get(0)?, r.try_get(1)?)))
    .transpose()?)
}

pub(in crate::ledger) fn last_screen(pg: Pg<'_>, task_id: &str) -> Result<Option<(i64, String)>> {
    Ok(query_opt(
        pg,
        "SELECT at_ms, data::jsonb ->> 'digest' FROM events
         WHERE task_id = $1 AND kind IN ($2, $3) ORDER BY id DESC LIMIT 1",
        &[
            &task_id,
            &EventKind::ScreenVerdict.as_str(),
            &EventKind::ScreenFailed.as_str(),
        ],
    )?
    .map(|r| {
        Ok::<_, postgres::Error>((
            r.try_get(0)?,
            r.try_get::<_, Option<String>>(1)?.unwrap_or_default(),
        ))
    })
    .transpose()?)
}
