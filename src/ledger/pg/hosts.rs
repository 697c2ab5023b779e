//! Hosts on Postgres: the twins of `ledger/hosts.rs` (each host's heartbeat row, the host a run
//! started on, and what `oxi hosts`, routing and `oxi doctor` read back).

use std::collections::{BTreeMap, HashMap};

use postgres::Row;

use super::{Pg, execute, query};
use crate::ledger::{HostBeat, HostRow, HostRunTotals, LedgerError, Result};

/// A 32-bit count or pid stored as BIGINT; out of range is corrupt.
fn narrow<T: TryFrom<i64>>(row: &Row, index: usize, what: &str) -> Result<T> {
    let n: i64 = row.try_get(index)?;
    T::try_from(n).map_err(|_| LedgerError::Corrupt(format!("{what} out of range: {n}")))
}

pub(in crate::ledger) fn host_heartbeat(
    pg: Pg<'_>,
    beat: &HostBeat<'_>,
    labels: &str,
    versions: &str,
) -> Result<()> {
    execute(
        pg,
        "INSERT INTO hosts (name, machine_id, labels, pid, oxi_version, cli_versions,
             first_seen_ms, last_heartbeat_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
         ON CONFLICT (name, machine_id) DO UPDATE SET labels = excluded.labels,
             pid = excluded.pid, oxi_version = excluded.oxi_version,
             cli_versions = excluded.cli_versions,
             last_heartbeat_ms = GREATEST(hosts.last_heartbeat_ms, excluded.last_heartbeat_ms)",
        &[
            &beat.name,
            &beat.machine_id,
            &labels,
            &i64::from(beat.pid),
            &beat.oxi_version,
            &versions,
            &beat.at_ms,
        ],
    )?;
    Ok(())
}

/// Every host row with its runs in flight, and its labels and CLI versions as stored (JSON,
/// parsed by the caller on either backend alike).
pub(in crate::ledger) fn hosts(pg: Pg<'_>) -> Result<Vec<(HostRow, String, String)>> {
    query(
        pg,
        "SELECT h.name, h.machine_id, h.labels, h.pid, h.oxi_version, h.cli_versions,
             h.first_seen_ms, h.last_heartbeat_ms,
             (SELECT COUNT(*) FROM runs r WHERE r.status = 'running' AND r.host = h.name),
             (SELECT MAX(r.lease_expires_at_ms) FROM runs r
              WHERE r.status = 'running' AND r.host = h.name)
         FROM hosts h ORDER BY h.name, h.machine_id",
        &[],
    )?
    .iter()
    .map(|row| {
        Ok((
            HostRow {
                name: row.try_get(0)?,
                machine_id: row.try_get(1)?,
                labels: Vec::new(),
                pid: narrow(row, 3, "hosts.pid")?,
                oxi_version: row.try_get(4)?,
                cli_versions: BTreeMap::new(),
                first_seen_ms: row.try_get(6)?,
                last_heartbeat_ms: row.try_get(7)?,
                running_jobs: narrow(row, 8, "running jobs")?,
                lease_until_ms: row.try_get(9)?,
            },
            row.try_get(2)?,
            row.try_get(5)?,
        ))
    })
    .collect()
}

pub(in crate::ledger) fn record_run_host(pg: Pg<'_>, run_id: &str, host: &str) -> Result<()> {
    execute(
        pg,
        "UPDATE runs SET host = $2 WHERE id = $1",
        &[&run_id, &host],
    )?;
    Ok(())
}

pub(in crate::ledger) fn task_hosts(pg: Pg<'_>) -> Result<HashMap<String, String>> {
    query(
        pg,
        "SELECT task_id, host FROM runs r
         WHERE task_id IS NOT NULL AND host IS NOT NULL
           AND started_at_ms = (SELECT MAX(started_at_ms) FROM runs
                                WHERE task_id = r.task_id AND host IS NOT NULL)",
        &[],
    )?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}

pub(in crate::ledger) fn host_run_totals(pg: Pg<'_>, from_ms: i64) -> Result<Vec<HostRunTotals>> {
    query(
        pg,
        "SELECT host,
                COUNT(*) FILTER (WHERE role = 'executor' AND status = 'finished'),
                COUNT(*) FILTER (WHERE role = 'executor' AND status = 'finished'
                                   AND classification = 'success'),
                COALESCE(SUM(cost_microusd), 0)::BIGINT
         FROM runs WHERE host IS NOT NULL AND started_at_ms >= $1
         GROUP BY host ORDER BY host",
        &[&from_ms],
    )?
    .iter()
    .map(|r| {
        Ok(HostRunTotals {
            host: r.try_get(0)?,
            executor_runs: narrow(r, 1, "executor runs")?,
            succeeded: narrow(r, 2, "succeeded runs")?,
            cost_microusd: r.try_get(3)?,
        })
    })
    .collect()
}

pub(in crate::ledger) fn host_cli_versions(
    pg: Pg<'_>,
    host: &str,
) -> Result<BTreeMap<String, String>> {
    query(
        pg,
        "SELECT worker, cli_version FROM runs r
         WHERE host = $1 AND cli_version IS NOT NULL
           AND started_at_ms = (SELECT MAX(started_at_ms) FROM runs
                                WHERE host = $1 AND worker = r.worker
                                  AND cli_version IS NOT NULL)",
        &[&host],
    )?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}
