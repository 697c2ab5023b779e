//! What `[triage]` and `[screen]` read back from their own events: no table of their own, the
//! event trail is the record (and the screen's cache, by brief digest).

use rusqlite::params;

use super::events::ScreenVerdict;
use super::queries::Db;
use super::{EventKind, Queries, Result, pg};

impl Queries<'_> {
    /// The `[triage]` summary recorded for `task_id` after event `after` (a `failed` state
    /// change), if one was.
    ///
    /// # Errors
    /// The ledger cannot be read.
    pub fn triage_after(&self, task_id: &str, after: i64) -> Result<Option<String>> {
        if let Db::Pg(pg) = self.db {
            return pg::triage_after(pg, task_id, after);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT json_extract(data, '$.summary') FROM events \
             WHERE task_id = ?1 AND id > ?2 AND kind = ?3 ORDER BY id LIMIT 1",
        )?;
        let mut rows = stmt.query(params![task_id, after, EventKind::TriageSummary.as_str()])?;
        Ok(rows.next()?.map(|row| row.get(0)).transpose()?.flatten())
    }

    /// The latest screen verdict on a brief with this digest (any task's: the same text gets
    /// the same verdict), and when it was recorded.
    ///
    /// # Errors
    /// The ledger cannot be read.
    pub fn screen_verdict(&self, digest: &str) -> Result<Option<(ScreenVerdict, i64)>> {
        if let Db::Pg(pg) = self.db {
            return Ok(pg::screen_verdict(pg, digest)?
                .and_then(|(data, at)| serde_json::from_str(&data).ok().map(|v| (v, at))));
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT data, at_ms FROM events \
             WHERE kind = ?1 AND json_extract(data, '$.digest') = ?2 ORDER BY id DESC LIMIT 1",
        )?;
        let mut rows = stmt.query(params![EventKind::ScreenVerdict.as_str(), digest])?;
        let Some(row) = rows.next()? else {
            return Ok(None);
        };
        let data: String = row.get(0)?;
        let at: i64 = row.get(1)?;
        Ok(serde_json::from_str(&data).ok().map(|v| (v, at)))
    }

    /// The task's latest screen event (a verdict, or none given): when, and the digest of the
    /// brief it was about.
    ///
    /// # Errors
    /// The ledger cannot be read.
    pub fn last_screen(&self, task_id: &str) -> Result<Option<(i64, String)>> {
        if let Db::Pg(pg) = self.db {
            return pg::last_screen(pg, task_id);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT at_ms, json_extract(data, '$.digest') FROM events \
             WHERE task_id = ?1 AND kind IN (?2, ?3) ORDER BY id DESC LIMIT 1",
        )?;
        let mut rows = stmt.query(params![
            task_id,
            EventKind::ScreenVerdict.as_str(),
            EventKind::ScreenFailed.as_str()
        ])?;
        Ok(match rows.next()? {
            Some(row) => Some((
                row.get(0)?,
                row.get::<_, Option<String>>(1)?.unwrap_or_default(),
            )),
            None => None,
        })
    }
}
