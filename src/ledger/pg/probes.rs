//! Live probes of the workers' CLIs on Postgres: the twins of `ledger/probes.rs`.

use postgres::Row;

use super::{Pg, execute, query, query_opt};
use crate::ledger::{ProbeRow, Result};

const COLUMNS: &str = "worker, kind, cli_version, verdict, first_mismatch, duration_ms, at_ms";

fn probe_row(r: &Row) -> Result<ProbeRow> {
    Ok(ProbeRow {
        worker: r.try_get(0)?,
        kind: r.try_get(1)?,
        cli_version: r.try_get(2)?,
        verdict: r.try_get(3)?,
        first_mismatch: r.try_get(4)?,
        duration_ms: r.try_get(5)?,
        at_ms: r.try_get(6)?,
    })
}

/// Stores the probe's row (its event is the caller's).
pub(in crate::ledger) fn insert_probe(pg: Pg<'_>, probe: &ProbeRow) -> Result<()> {
    execute(
        pg,
        &format!("INSERT INTO worker_probes ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
        &[
            &probe.worker,
            &probe.kind,
            &probe.cli_version,
            &probe.verdict,
            &probe.first_mismatch,
            &probe.duration_ms,
            &probe.at_ms,
        ],
    )?;
    Ok(())
}

pub(in crate::ledger) fn latest_probe(pg: Pg<'_>, worker: &str) -> Result<Option<ProbeRow>> {
    query_opt(
        pg,
        &format!("SELECT {COLUMNS} FROM worker_probes WHERE worker = $1 ORDER BY id DESC LIMIT 1"),
        &[&worker],
    )?
    .as_ref()
    .map(probe_row)
    .transpose()
}

pub(in crate::ledger) fn last_good_probe(pg: Pg<'_>, worker: &str) -> Result<Option<ProbeRow>> {
    query_opt(
        pg,
        &format!(
            "SELECT {COLUMNS} FROM worker_probes
             WHERE worker = $1 AND verdict = 'pass' AND cli_version IS NOT NULL
             ORDER BY id DESC LIMIT 1"
        ),
        &[&worker],
    )?
    .as_ref()
    .map(probe_row)
    .transpose()
}

/// Workers whose latest probe failed, by name in byte order.
pub(in crate::ledger) fn quarantined_workers(pg: Pg<'_>) -> Result<Vec<ProbeRow>> {
    query(
        pg,
        &format!(
            "SELECT {COLUMNS} FROM worker_probes p
             WHERE id = (SELECT MAX(id) FROM worker_probes q WHERE q.worker = p.worker)
               AND verdict = 'fail'
             ORDER BY worker COLLATE \"C\""
        ),
        &[],
    )?
    .iter()
    .map(probe_row)
    .collect()
}
