//! Hosts in the ledger (migration 0012): each oxi host's heartbeat row, the host each run
//! started on, and what `oxi hosts`, routing's label requirements and `oxi doctor` read back.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{Row, params};
use serde::Serialize;

use super::queries::Db;
use super::{LedgerError, Queries, Result, pg};

/// What a host says about itself at each heartbeat.
#[derive(Debug, Clone)]
pub struct HostBeat<'a> {
    pub name: &'a str,
    pub machine_id: &'a str,
    /// Lower-case, as `[host] labels` is normalised.
    pub labels: &'a [String],
    pub pid: u32,
    pub oxi_version: &'a str,
    /// Worker name -> the CLI version a run on this host last reported.
    pub cli_versions: &'a BTreeMap<String, String>,
    pub at_ms: i64,
}

/// One host's runs in a report's window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostRunTotals {
    pub host: String,
    /// Finished executor runs started in the window.
    pub executor_runs: u32,
    /// Of those, the ones classified `success`.
    pub succeeded: u32,
    /// What every run it started in the window cost (all roles).
    pub cost_microusd: crate::money::MicroUsd,
}

/// A host row as read back, with the runs it has in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostRow {
    pub name: String,
    pub machine_id: String,
    pub labels: Vec<String>,
    pub pid: u32,
    pub oxi_version: String,
    pub cli_versions: BTreeMap<String, String>,
    pub first_seen_ms: i64,
    pub last_heartbeat_ms: i64,
    /// Runs marked running that this host started.
    pub running_jobs: u32,
    /// The latest lease among those runs (a tick heartbeats only at its ends, while its runs
    /// renew their leases throughout).
    pub lease_until_ms: Option<i64>,
}

impl HostRow {
    /// Alive at `now_ms`: a heartbeat within `window_ms`, or a run of its whose lease has not
    /// expired.
    #[must_use]
    pub fn is_live(&self, now_ms: i64, window_ms: i64) -> bool {
        now_ms - self.last_heartbeat_ms <= window_ms
            || self.lease_until_ms.is_some_and(|until| until >= now_ms)
    }
}

const HOST_COLUMNS: &str = "h.name, h.machine_id, h.labels, h.pid, h.oxi_version, h.cli_versions,
    h.first_seen_ms, h.last_heartbeat_ms,
    (SELECT COUNT(*) FROM runs r WHERE r.status = 'running' AND r.host = h.name),
    (SELECT MAX(r.lease_expires_at_ms) FROM runs r WHERE r.status = 'running' AND r.host = h.name)";

fn host_from_row(row: &Row<'_>) -> rusqlite::Result<(HostRow, String, String)> {
    Ok((
        HostRow {
            name: row.get(0)?,
            machine_id: row.get(1)?,
            labels: Vec::new(),
            pid: row.get(3)?,
            oxi_version: row.get(4)?,
            cli_versions: BTreeMap::new(),
            first_seen_ms: row.get(6)?,
            last_heartbeat_ms: row.get(7)?,
            running_jobs: row.get(8)?,
            lease_until_ms: row.get(9)?,
        },
        row.get(2)?,
        row.get(5)?,
    ))
}

// Every function below fails only when the ledger cannot be read or written.
#[allow(clippy::missing_errors_doc)]
impl Queries<'_> {
    /// Records a host's heartbeat: creates its row on the first, refreshes it after.
    pub fn host_heartbeat(&self, beat: &HostBeat<'_>) -> Result<()> {
        let labels = serde_json::to_string(beat.labels)
            .map_err(|e| LedgerError::Corrupt(format!("host labels: {e}")))?;
        let versions = serde_json::to_string(beat.cli_versions)
            .map_err(|e| LedgerError::Corrupt(format!("host CLI versions: {e}")))?;
        if let Db::Pg(pg) = self.db {
            return pg::host_heartbeat(pg, beat, &labels, &versions);
        }
        self.sqlite()?
            .prepare_cached(
                "INSERT INTO hosts (name, machine_id, labels, pid, oxi_version, cli_versions,
                     first_seen_ms, last_heartbeat_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                 ON CONFLICT (name, machine_id) DO UPDATE SET labels = excluded.labels,
                     pid = excluded.pid, oxi_version = excluded.oxi_version,
                     cli_versions = excluded.cli_versions,
                     last_heartbeat_ms = MAX(last_heartbeat_ms, excluded.last_heartbeat_ms)",
            )?
            .execute(params![
                beat.name,
                beat.machine_id,
                labels,
                beat.pid,
                beat.oxi_version,
                versions,
                beat.at_ms
            ])?;
        Ok(())
    }

    /// Every host that ever heartbeat, by name, with its runs in flight.
    pub fn hosts(&self) -> Result<Vec<HostRow>> {
        let raw = if let Db::Pg(pg) = self.db {
            pg::hosts(pg)?
        } else {
            self.sqlite()?
                .prepare_cached(&format!(
                    "SELECT {HOST_COLUMNS} FROM hosts h ORDER BY h.name, h.machine_id"
                ))?
                .query_map([], host_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?
        };
        raw.into_iter()
            .map(|(mut host, labels, versions)| {
                host.labels = serde_json::from_str(&labels).map_err(|e| {
                    LedgerError::Corrupt(format!("hosts.labels of {}: {e}", host.name))
                })?;
                host.cli_versions = serde_json::from_str(&versions).map_err(|e| {
                    LedgerError::Corrupt(format!("hosts.cli_versions of {}: {e}", host.name))
                })?;
                Ok(host)
            })
            .collect()
    }

    /// Records the host a run started on (in the transaction that began the run).
    pub fn record_run_host(&self, run_id: &str, host: &str) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            return pg::record_run_host(pg, run_id, host);
        }
        self.sqlite()?
            .prepare_cached("UPDATE runs SET host = ?2 WHERE id = ?1")?
            .execute(params![run_id, host])?;
        Ok(())
    }

    /// Each task's host: the one its latest run started on.
    pub fn task_hosts(&self) -> Result<HashMap<String, String>> {
        if let Db::Pg(pg) = self.db {
            return pg::task_hosts(pg);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT task_id, host FROM runs r
             WHERE task_id IS NOT NULL AND host IS NOT NULL
               AND started_at_ms = (SELECT MAX(started_at_ms) FROM runs
                                    WHERE task_id = r.task_id AND host IS NOT NULL)",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Each host's finished runs started at or after `from_ms`, by host name.
    pub fn host_run_totals(&self, from_ms: i64) -> Result<Vec<HostRunTotals>> {
        if let Db::Pg(pg) = self.db {
            return pg::host_run_totals(pg, from_ms);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT host,
                    SUM(role = 'executor' AND status = 'finished'),
                    SUM(role = 'executor' AND status = 'finished' AND classification = 'success'),
                    SUM(cost_microusd)
             FROM runs WHERE host IS NOT NULL AND started_at_ms >= ?1
             GROUP BY host ORDER BY host",
        )?;
        let rows = stmt.query_map([from_ms], |r| {
            Ok(HostRunTotals {
                host: r.get(0)?,
                executor_runs: r.get(1)?,
                succeeded: r.get(2)?,
                cost_microusd: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The CLI version each worker's latest run on `host` reported.
    pub fn host_cli_versions(&self, host: &str) -> Result<BTreeMap<String, String>> {
        if let Db::Pg(pg) = self.db {
            return pg::host_cli_versions(pg, host);
        }
        let mut stmt = self.sqlite()?.prepare_cached(
            "SELECT worker, cli_version FROM runs r
             WHERE host = ?1 AND cli_version IS NOT NULL
               AND started_at_ms = (SELECT MAX(started_at_ms) FROM runs
                                    WHERE host = ?1 AND worker = r.worker
                                      AND cli_version IS NOT NULL)",
        )?;
        let rows = stmt.query_map([host], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
