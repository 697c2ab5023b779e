//! Workers held back from dispatch until a person fixes them: today, a worker whose CLI could
//! not authenticate (`auth_failed`). A block lives in the key/value table (one key per worker,
//! so it needs no migration) and is recorded as `worker_blocked` / `worker_unblocked` events;
//! `oxi doctor` clears it once that worker's checks pass.

use serde::{Deserialize, Serialize};

use super::events::{Event, WorkerUnblocked};
use super::queries::Db;
use super::{LedgerError, NewEvent, Queries, Result, pg};

const KEY_PREFIX: &str = "worker_block:";

/// Why one worker gets no new runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerBlock {
    pub worker: String,
    /// The run classification that caused it (`auth_failed`).
    pub class: String,
    /// The CLI's own words, quoted.
    pub message: String,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub at_ms: i64,
}

impl WorkerBlock {
    /// The hold reason `oxi plan`, `oxi tick` and `oxi doctor` print.
    pub fn reason(&self) -> String {
        format!(
            "worker {} is blocked since {}: {} (“{}”); log it in or fix its key, then run `oxi doctor`, which clears the block once the worker's checks pass",
            self.worker,
            crate::clock::rfc3339(self.at_ms),
            self.class,
            self.message
        )
    }
}

impl Queries<'_> {
    /// Every blocked worker, by name.
    pub fn worker_blocks(&self) -> Result<Vec<WorkerBlock>> {
        let rows = if let Db::Pg(pg) = self.db {
            pg::kv_with_prefix(pg, KEY_PREFIX)?
        } else {
            let mut statement = self.sqlite()?.prepare_cached(
                "SELECT key, value FROM kv WHERE key LIKE 'worker_block:%' ORDER BY key",
            )?;
            statement
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?
        };
        let mut blocks = Vec::new();
        for (key, value) in rows {
            let block = serde_json::from_str(&value)
                .map_err(|e| LedgerError::Corrupt(format!("kv {key}: {e}")))?;
            blocks.push(block);
        }
        Ok(blocks)
    }

    /// Blocks a worker (replacing an older block of it) and records `worker_blocked`.
    pub fn block_worker(&self, block: &WorkerBlock) -> Result<()> {
        let text = serde_json::to_string(block)
            .map_err(|e| LedgerError::Corrupt(format!("worker block: {e}")))?;
        self.kv_set(&format!("{KEY_PREFIX}{}", block.worker), &text, block.at_ms)?;
        self.append_event(&NewEvent {
            at_ms: block.at_ms,
            task_id: block.task_id.as_deref(),
            run_id: block.run_id.as_deref(),
            actor: "oxi",
            event: Event::WorkerBlocked(block.clone()),
        })?;
        Ok(())
    }

    /// Clears a worker's block, if it has one, and records `worker_unblocked` by `actor`.
    pub fn unblock_worker(
        &self,
        worker: &str,
        actor: &str,
        why: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let key = format!("{KEY_PREFIX}{worker}");
        let removed = if let Db::Pg(pg) = self.db {
            pg::remove_kv(pg, &key)?
        } else {
            let n = self
                .sqlite()?
                .prepare_cached("DELETE FROM kv WHERE key = ?1")?
                .execute([&key])?;
            u64::try_from(n).unwrap_or(u64::MAX)
        };
        if removed > 0 {
            self.append_event(&NewEvent {
                at_ms: now_ms,
                task_id: None,
                run_id: None,
                actor,
                event: Event::WorkerUnblocked(WorkerUnblocked {
                    worker: worker.to_owned(),
                    why: why.to_owned(),
                }),
            })?;
        }
        Ok(removed > 0)
    }
}
