//! Tasks made from GitHub issues: the `issue_tasks` rows (migration 0008) and the
//! `tasks.outside_text` mark.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::queries::Db;
use super::{Queries, Result, pg};

/// Where a task made from an issue came from, and what oxi last wrote back to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssueLink {
    pub task_id: String,
    /// `owner/name`.
    pub repo: String,
    pub number: u64,
    /// The issue's page.
    pub url: String,
    /// `open` or `closed` at the last sync.
    pub issue_state: String,
    /// Open, labelled and within the filters at the last sync.
    pub matches: bool,
    /// The issue body's size in bytes (a brief longer than the limit was truncated).
    pub body_bytes: u64,
    /// The one comment oxi writes on the issue and then edits (release mode).
    pub comment_id: Option<u64>,
    /// The task stage that comment last reported.
    pub comment_stage: Option<String>,
    /// Hash of the comment text last written (unchanged text is not sent again).
    pub comment_sha: Option<String>,
    pub synced_at_ms: i64,
}

const LINK_COLUMNS: &str = "task_id, repo, number, url, issue_state, matches, body_bytes,
    comment_id, comment_stage, comment_sha, synced_at_ms";

fn link_from_row(row: &Row<'_>) -> rusqlite::Result<IssueLink> {
    Ok(IssueLink {
        task_id: row.get(0)?,
        repo: row.get(1)?,
        number: row.get::<_, i64>(2)?.max(0) as u64,
        url: row.get(3)?,
        issue_state: row.get(4)?,
        matches: row.get(5)?,
        body_bytes: row.get::<_, i64>(6)?.max(0) as u64,
        comment_id: row.get::<_, Option<i64>>(7)?.map(|n| n.max(0) as u64),
        comment_stage: row.get(8)?,
        comment_sha: row.get(9)?,
        synced_at_ms: row.get(10)?,
    })
}

/// What a sync learnt about one issue.
#[derive(Debug, Clone)]
pub struct IssueSeen<'a> {
    pub task_id: &'a str,
    pub repo: &'a str,
    pub number: u64,
    pub url: &'a str,
    pub issue_state: &'a str,
    pub matches: bool,
    pub body_bytes: u64,
}

impl Queries<'_> {
    /// Every task made from an issue, by task id.
    pub fn issue_links(&self) -> Result<HashMap<String, IssueLink>> {
        if let Db::Pg(pg) = self.db {
            return pg::issue_links(pg);
        }
        let mut stmt = self
            .sqlite()?
            .prepare_cached(&format!("SELECT {LINK_COLUMNS} FROM issue_tasks"))?;
        let rows = stmt.query_map([], link_from_row)?;
        let mut links = HashMap::new();
        for row in rows {
            let link = row?;
            links.insert(link.task_id.clone(), link);
        }
        Ok(links)
    }

    /// The issue a task was made from, if it was.
    pub fn issue_link(&self, task_id: &str) -> Result<Option<IssueLink>> {
        if let Db::Pg(pg) = self.db {
            return pg::issue_link(pg, task_id);
        }
        Ok(self
            .sqlite()?
            .prepare_cached(&format!(
                "SELECT {LINK_COLUMNS} FROM issue_tasks WHERE task_id = ?1"
            ))?
            .query_row([task_id], link_from_row)
            .optional()?)
    }

    /// Records what a sync saw of an issue (the comment columns are left as they are).
    pub fn upsert_issue_link(&self, seen: &IssueSeen<'_>, now_ms: i64) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::upsert_issue_link(pg, seen, now_ms);
        }
        self.sqlite()?
            .prepare_cached(
                "INSERT INTO issue_tasks (task_id, repo, number, url, issue_state, matches,
                    body_bytes, synced_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (task_id) DO UPDATE SET repo = ?2, number = ?3, url = ?4,
                    issue_state = ?5, matches = ?6, body_bytes = ?7, synced_at_ms = ?8",
            )?
            .execute(params![
                seen.task_id,
                seen.repo,
                i64::try_from(seen.number).unwrap_or(i64::MAX),
                seen.url,
                seen.issue_state,
                seen.matches,
                i64::try_from(seen.body_bytes).unwrap_or(i64::MAX),
                now_ms,
            ])?;
        Ok(())
    }

    /// Notes that an issue left the sync's view (closed, unlabelled, filtered out).
    pub fn set_issue_presence(
        &self,
        task_id: &str,
        issue_state: &str,
        matches: bool,
    ) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::set_issue_presence(pg, task_id, issue_state, matches);
        }
        self.sqlite()?
            .prepare_cached(
                "UPDATE issue_tasks SET issue_state = ?2, matches = ?3
                 WHERE task_id = ?1 AND (issue_state <> ?2 OR matches <> ?3)",
            )?
            .execute(params![task_id, issue_state, matches])?;
        Ok(())
    }

    /// Records the comment oxi keeps on the issue and the stage its text reports.
    pub fn set_issue_comment(
        &self,
        task_id: &str,
        comment_id: u64,
        stage: &str,
        sha: &str,
    ) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::set_issue_comment(pg, task_id, comment_id, stage, sha);
        }
        self.sqlite()?
            .prepare_cached(
                "UPDATE issue_tasks SET comment_id = ?2, comment_stage = ?3, comment_sha = ?4
                 WHERE task_id = ?1",
            )?
            .execute(params![
                task_id,
                i64::try_from(comment_id).unwrap_or(i64::MAX),
                stage,
                sha
            ])?;
        Ok(())
    }

    /// Marks a task's brief as outside text (or not).
    pub fn set_outside_text(&self, task_id: &str, outside: bool) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::set_outside_text(pg, task_id, outside);
        }
        self.sqlite()?
            .prepare_cached(
                "UPDATE tasks SET outside_text = ?2 WHERE id = ?1 AND outside_text <> ?2",
            )?
            .execute(params![task_id, outside])?;
        Ok(())
    }

    /// True when the task's brief is outside text (an issue body): what a screening step reads.
    pub fn is_outside_text(&self, task_id: &str) -> Result<bool> {
        if let Db::Pg(pg) = self.db {
            return pg::is_outside_text(pg, task_id);
        }
        Ok(self
            .sqlite()?
            .prepare_cached("SELECT outside_text FROM tasks WHERE id = ?1")?
            .query_row([task_id], |r| r.get::<_, bool>(0))
            .optional()?
            .unwrap_or(false))
    }
}
