//! The Postgres ledger's migrations: numbered like their sqlite twins (the first one, 0011,
//! is the sqlite schema through 0011 in one step), checksummed in `schema_migrations`, and
//! refused when the database was migrated by a newer oxi.
//!
//! Several hosts may open the ledger at once: the whole migration runs in one transaction
//! (Postgres's DDL is transactional) under a transaction-scoped advisory lock, so one host
//! migrates and the others then find the work done.

use std::path::PathBuf;

use postgres::Client;

use crate::ledger::migrate::{Migration, checksum};
use crate::ledger::{LedgerError, Result};

/// Every Postgres migration this binary knows, oldest first.
pub(in crate::ledger) const PG_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 11,
        name: "baseline",
        sql: include_str!("migrations/0011_baseline.sql"),
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

/// The advisory lock key migrations hold (`oxi` + "mig" in ASCII, so no other user of advisory
/// locks on the database is likely to pick it).
const MIGRATION_LOCK: i64 = 0x006f_7869_006d_6967;

/// Brings the schema of the database behind `client` to the newest migration. `url` names it
/// in errors.
pub(in crate::ledger) fn migrate(session: &mut super::Session, url: &str) -> Result<()> {
    let client = session.client();
    super::blocking(|| migrate_here(client, url))
}

fn migrate_here(client: &mut Client, url: &str) -> Result<()> {
    let latest = PG_MIGRATIONS.last().map_or(0, |m| m.version);
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY,
            name TEXT NOT NULL,
            checksum TEXT NOT NULL,
            applied_at_ms BIGINT NOT NULL
        )",
    )?;
    let recorded: Vec<(i64, String)> = tx
        .query("SELECT version, checksum FROM schema_migrations", &[])?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, postgres::Error>>()?;
    let current = recorded.iter().map(|(v, _)| *v).max().unwrap_or(0);
    if current > latest {
        return Err(LedgerError::TooNew {
            path: PathBuf::from(url),
            found: current,
            supported: latest,
        });
    }
    for migration in PG_MIGRATIONS {
        if let Some((_, sum)) = recorded.iter().find(|(v, _)| *v == migration.version) {
            if *sum != checksum(migration.sql) {
                return Err(LedgerError::MigrationChanged {
                    version: migration.version,
                    name: migration.name.to_owned(),
                });
            }
            continue;
        }
        tx.batch_execute(migration.sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at_ms)
             VALUES ($1, $2, $3, $4)",
            &[
                &migration.version,
                &migration.name,
                &checksum(migration.sql),
                &crate::clock::now_ms(),
            ],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// The schema version: the newest migration applied.
pub(in crate::ledger) fn schema_version(pg: super::Pg<'_>) -> Result<i64> {
    let row = super::query_one(
        pg,
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        &[],
    )?;
    Ok(row.try_get(0)?)
}

/// The triggers the ledger's guarantees rest on: (table, trigger).
const GUARD_TRIGGERS: &[(&str, &str)] = &[
    ("tasks", "tasks_legal_transition"),
    ("events", "events_no_update"),
    ("events", "events_no_truncate"),
    ("spend", "spend_rollup"),
    ("gateway_calls", "gateway_calls_rollup_insert"),
    ("gateway_calls", "gateway_calls_rollup_update"),
];

/// What `oxi doctor`'s integrity check means on Postgres. The server keeps its own pages
/// consistent (there is no `PRAGMA integrity_check` to run), so this checks what oxi adds on
/// top: each trigger that keeps the state machine, the append-only trail and the spend rollup
/// is present and enabled (an operator's `ALTER TABLE … DISABLE TRIGGER` would silently drop a
/// guarantee), and the rollup equals the sums it stands for. Empty: all holds.
pub(in crate::ledger) fn integrity_problems(pg: super::Pg<'_>) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for (table, trigger) in GUARD_TRIGGERS {
        let enabled: Option<String> = super::query_opt(
            pg,
            "SELECT tgenabled::text FROM pg_trigger
             WHERE tgrelid = to_regclass($1) AND tgname = $2",
            &[table, trigger],
        )?
        .map(|r| r.try_get(0))
        .transpose()?;
        match enabled.as_deref() {
            None => problems.push(format!("trigger {trigger} on {table} is missing")),
            Some("D") => problems.push(format!("trigger {trigger} on {table} is disabled")),
            Some(_) => {}
        }
    }
    // Every period a reservation or gateway call names, with the rollup's row beside the sums.
    let drift = super::query(
        pg,
        "WITH money AS (
             SELECT day, month, reserved_microusd AS r, actual_microusd AS a, status FROM spend
             UNION ALL
             SELECT day, month, reserved_microusd, actual_microusd, status FROM gateway_calls
         ), sums AS (
             SELECT period, SUM(a)::BIGINT AS spent, SUM(spend_held(status, r, a))::BIGINT AS held
             FROM (SELECT day AS period, r, a, status FROM money
                   UNION ALL SELECT month, r, a, status FROM money) AS p
             GROUP BY period
         )
         SELECT COALESCE(s.period, r.period) FROM sums s
         FULL JOIN spend_rollup r ON r.period = s.period
         WHERE COALESCE(s.spent, 0) <> COALESCE(r.spent, 0)
            OR COALESCE(s.held, 0) <> COALESCE(r.held, 0)
         ORDER BY 1",
        &[],
    )?;
    for row in drift {
        let period: String = row.try_get(0)?;
        problems.push(format!(
            "spend_rollup for {period} differs from the reservations it sums"
        ));
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::PG_MIGRATIONS;

    #[test]
    fn versions_increase_and_start_at_the_sqlite_baseline() {
        assert_eq!(PG_MIGRATIONS.first().map(|m| m.version), Some(11));
        for pair in PG_MIGRATIONS.windows(2) {
            assert_eq!(pair[1].version, pair[0].version + 1);
        }
        // Every PostgreSQL migration has a SQLite twin of the same number, so both backends
        // report the same version for the same schema.
        let sqlite_latest = crate::ledger::MIGRATIONS.last().map(|m| m.version);
        assert_eq!(PG_MIGRATIONS.last().map(|m| m.version), sqlite_latest);
    }
}
