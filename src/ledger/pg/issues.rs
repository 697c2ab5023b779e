//! Tasks made from GitHub issues on Postgres: the twins of `ledger/issues.rs` (the
//! `issue_tasks` rows and the `tasks.outside_text` mark).

use std::collections::HashMap;

use postgres::Row;

use super::{Pg, execute, query, query_opt};
use crate::ledger::{IssueLink, IssueSeen, Result};

const LINK_COLUMNS: &str = "task_id, repo, number, url, issue_state, matches, body_bytes,
    comment_id, comment_stage, comment_sha, synced_at_ms";

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn link_from_row(row: &Row) -> Result<IssueLink> {
    Ok(IssueLink {
        task_id: row.try_get(0)?,
        repo: row.try_get(1)?,
        number: unsigned(row.try_get(2)?),
        url: row.try_get(3)?,
        issue_state: row.try_get(4)?,
        matches: row.try_get(5)?,
        body_bytes: unsigned(row.try_get(6)?),
        comment_id: row.try_get::<_, Option<i64>>(7)?.map(unsigned),
        comment_stage: row.try_get(8)?,
        comment_sha: row.try_get(9)?,
        synced_at_ms: row.try_get(10)?,
    })
}

pub(in crate::ledger) fn issue_links(pg: Pg<'_>) -> Result<HashMap<String, IssueLink>> {
    query(pg, &format!("SELECT {LINK_COLUMNS} FROM issue_tasks"), &[])?
        .iter()
        .map(|r| link_from_row(r).map(|link| (link.task_id.clone(), link)))
        .collect()
}

pub(in crate::ledger) fn issue_link(pg: Pg<'_>, task_id: &str) -> Result<Option<IssueLink>> {
    query_opt(
        pg,
        &format!("SELECT {LINK_COLUMNS} FROM issue_tasks WHERE task_id = $1"),
        &[&task_id],
    )?
    .as_ref()
    .map(link_from_row)
    .transpose()
}

/// Records what a sync saw of an issue (the comment columns are left as they are).
pub(in crate::ledger) fn upsert_issue_link(
    pg: Pg<'_>,
    seen: &IssueSeen<'_>,
    now_ms: i64,
) -> Result<()> {
    execute(
        pg,
        "INSERT INTO issue_tasks (task_id, repo, number, url, issue_state, matches,
            body_bytes, synced_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (task_id) DO UPDATE SET repo = $2, number = $3, url = $4,
            issue_state = $5, matches = $6, body_bytes = $7, synced_at_ms = $8",
        &[
            &seen.task_id,
            &seen.repo,
            &int(seen.number),
            &seen.url,
            &seen.issue_state,
            &seen.matches,
            &int(seen.body_bytes),
            &now_ms,
        ],
    )?;
    Ok(())
}

pub(in crate::ledger) fn set_issue_presence(
    pg: Pg<'_>,
    task_id: &str,
    issue_state: &str,
    matches: bool,
) -> Result<()> {
    execute(
        pg,
        "UPDATE issue_tasks SET issue_state = $2, matches = $3
         WHERE task_id = $1 AND (issue_state <> $2 OR matches <> $3)",
        &[&task_id, &issue_state, &matches],
    )?;
    Ok(())
}

pub(in crate::ledger) fn set_issue_comment(
    pg: Pg<'_>,
    task_id: &str,
    comment_id: u64,
    stage: &str,
    sha: &str,
) -> Result<()> {
    execute(
        pg,
        "UPDATE issue_tasks SET comment_id = $2, comment_stage = $3, comment_sha = $4
         WHERE task_id = $1",
        &[&task_id, &int(comment_id), &stage, &sha],
    )?;
    Ok(())
}

pub(in crate::ledger) fn set_outside_text(pg: Pg<'_>, task_id: &str, outside: bool) -> Result<()> {
    execute(
        pg,
        "UPDATE tasks SET outside_text = $2 WHERE id = $1 AND outside_text <> $2",
        &[&task_id, &outside],
    )?;
    Ok(())
}

pub(in crate::ledger) fn is_outside_text(pg: Pg<'_>, task_id: &str) -> Result<bool> {
    Ok(query_opt(
        pg,
        "SELECT outside_text FROM tasks WHERE id = $1",
        &[&task_id],
    )?
    .map(|r| r.try_get(0))
    .transpose()?
    .unwrap_or(false))
}
