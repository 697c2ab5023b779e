//! Numbered SQL migrations embedded in the binary.
//!
//! `PRAGMA user_version` holds the schema version; `schema_migrations` records each applied
//! migration with a checksum so an edited migration is caught instead of silently diverging.
//! (A crate such as rusqlite_migration covers the happy path, but not the checksum guard or the
//! "written by a newer oxi" message we want, and it pins rusqlite versions; this is 60 lines.)

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{LedgerError, Result};

/// One schema step. `version` is its number; migrations apply in order and never change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration this binary knows, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "run_details",
        sql: include_str!("migrations/0002_run_details.sql"),
    },
    Migration {
        version: 3,
        name: "tick",
        sql: include_str!("migrations/0003_tick.sql"),
    },
    Migration {
        version: 4,
        name: "release",
        sql: include_str!("migrations/0004_release.sql"),
    },
    Migration {
        version: 5,
        name: "spend_rollup",
        sql: include_str!("migrations/0005_spend_rollup.sql"),
    },
    Migration {
        version: 6,
        name: "spend_indexes",
        sql: include_str!("migrations/0006_spend_indexes.sql"),
    },
    Migration {
        version: 7,
        name: "hold_kind",
        sql: include_str!("migrations/0007_hold_kind.sql"),
    },
    Migration {
        version: 8,
        name: "issue_tasks",
        sql: include_str!("migrations/0008_issue_tasks.sql"),
    },
    Migration {
        version: 9,
        name: "notifications",
        sql: include_str!("migrations/0009_notifications.sql"),
    },
    Migration {
        version: 10,
        name: "run_route",
        sql: include_str!("migrations/0010_run_route.sql"),
    },
    Migration {
        version: 11,
        name: "gateway_calls",
        sql: include_str!("migrations/0011_gateway_calls.sql"),
    },
    Migration {
        version: 12,
        name: "hosts",
        sql: include_str!("migrations/0012_hosts.sql"),
    },
    Migration {
        version: 13,
        name: "plans",
        sql: include_str!("migrations/0013_plans.sql"),
    },
    Migration {
        version: 14,
        name: "shadow_pairs",
        sql: include_str!("migrations/0014_shadow_pairs.sql"),
    },
    Migration {
        version: 15,
        name: "worker_probes",
        sql: include_str!("migrations/0015_worker_probes.sql"),
    },
    Migration {
        version: 16,
        name: "improve",
        sql: include_str!("migrations/0016_improve.sql"),
    },
    Migration {
        version: 17,
        name: "improve_embeddings",
        sql: include_str!("migrations/0017_improve_embeddings.sql"),
    },
    Migration {
        version: 18,
        name: "run_resume",
        sql: include_str!("migrations/0018_run_resume.sql"),
    },
    Migration {
        version: 19,
        name: "improve_decisions",
        sql: include_str!("migrations/0019_improve_decisions.sql"),
    },
    Migration {
        version: 20,
        name: "claim_in_one_step",
        sql: include_str!("migrations/0020_claim_in_one_step.sql"),
    },
];

/// True when every applied migration's recorded checksum matches this binary's text.
fn checksums_match(conn: &Connection) -> Result<bool> {
    let mut stmt = conn.prepare("SELECT version, checksum FROM schema_migrations")?;
    let recorded: Vec<(i64, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(MIGRATIONS.iter().all(|m| {
        recorded
            .iter()
            .any(|(v, c)| *v == m.version && *c == checksum(m.sql))
    }))
}

pub(super) fn checksum(sql: &str) -> String {
    crate::digest::sha256_hex(sql.as_bytes(), 32)
}

/// Brings the schema up to `target` (default: the newest migration).
pub(super) fn migrate(conn: &mut Connection, path: &Path, target: Option<i64>) -> Result<()> {
    let latest = MIGRATIONS.last().map_or(0, |m| m.version);
    let target = target.unwrap_or(latest).min(latest);
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > latest {
        return Err(LedgerError::TooNew {
            path: path.to_path_buf(),
            found: current,
            supported: latest,
        });
    }
    if current == latest && current > 0 && checksums_match(conn)? {
        // The common case (every command opens the ledger): nothing to do, and no write lock.
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            checksum TEXT NOT NULL,
            applied_at_ms INTEGER NOT NULL
        )",
    )?;
    // Re-read under the write lock: another process may have migrated meanwhile.
    let current: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for migration in MIGRATIONS {
        if migration.version <= current {
            let recorded: Option<String> = tx
                .query_row(
                    "SELECT checksum FROM schema_migrations WHERE version = ?1",
                    [migration.version],
                    |r| r.get(0),
                )
                .optional()?;
            if recorded.is_some_and(|c| c != checksum(migration.sql)) {
                return Err(LedgerError::MigrationChanged {
                    version: migration.version,
                    name: migration.name.to_owned(),
                });
            }
            continue;
        }
        if migration.version > target {
            break;
        }
        tx.execute_batch(migration.sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                migration.version,
                migration.name,
                checksum(migration.sql),
                crate::clock::now_ms()
            ],
        )?;
        tx.pragma_update(None, "user_version", migration.version)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_increasing() {
        // Numbers are assigned to branches ahead of time, so a branch may carry a gap until
        // the ones before it merge; order is what the runner relies on.
        for pair in MIGRATIONS.windows(2) {
            assert!(
                pair[0].version < pair[1].version,
                "migration {} out of order",
                pair[1].name
            );
        }
    }
}
