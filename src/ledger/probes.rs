//! Live probes of the workers' CLIs (`worker_probes`): what `oxi workers --probe` and
//! `oxi doctor` found, per version. A worker whose latest probe failed is quarantined.

use rusqlite::{OptionalExtension, params};

use super::events::{Event, WorkerQuarantined};
use super::queries::Db;
use super::{NewEvent, Queries, Result, pg};

/// One stored probe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProbeRow {
    pub worker: String,
    pub kind: String,
    pub cli_version: Option<String>,
    /// `pass` or `fail`.
    pub verdict: String,
    pub first_mismatch: Option<String>,
    pub duration_ms: i64,
    pub at_ms: i64,
}

impl ProbeRow {
    #[must_use]
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }
}

const COLUMNS: &str = "worker, kind, cli_version, verdict, first_mismatch, duration_ms, at_ms";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProbeRow> {
    Ok(ProbeRow {
        worker: r.get(0)?,
        kind: r.get(1)?,
        cli_version: r.get(2)?,
        verdict: r.get(3)?,
        first_mismatch: r.get(4)?,
        duration_ms: r.get(5)?,
        at_ms: r.get(6)?,
    })
}

impl Queries<'_> {
    /// Stores a probe; a failed one also records `worker_quarantined`.
    ///
    /// # Errors
    /// When the ledger cannot be read or written.
    pub fn record_probe(&self, probe: &ProbeRow) -> Result<()> {
        if let Db::Pg(pg) = self.db {
            pg::insert_probe(pg, probe)?;
        } else {
            self.sqlite()?
                .prepare_cached(&format!(
                    "INSERT INTO worker_probes ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ))?
                .execute(params![
                    probe.worker,
                    probe.kind,
                    probe.cli_version,
                    probe.verdict,
                    probe.first_mismatch,
                    probe.duration_ms,
                    probe.at_ms
                ])?;
        }
        if !probe.passed() {
            self.append_event(&NewEvent {
                at_ms: probe.at_ms,
                task_id: None,
                run_id: None,
                actor: "oxi",
                event: Event::WorkerQuarantined(WorkerQuarantined {
                    worker: probe.worker.clone(),
                    version: probe.cli_version.clone(),
                    mismatch: probe.first_mismatch.clone().unwrap_or_default(),
                }),
            })?;
        }
        Ok(())
    }

    /// The newest probe of `worker`.
    ///
    /// # Errors
    /// When the ledger cannot be read or written.
    pub fn latest_probe(&self, worker: &str) -> Result<Option<ProbeRow>> {
        if let Db::Pg(pg) = self.db {
            return pg::latest_probe(pg, worker);
        }
        Ok(self
            .sqlite()?
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM worker_probes WHERE worker = ?1 ORDER BY id DESC LIMIT 1"
            ))?
            .query_row([worker], row)
            .optional()?)
    }

    /// The newest version of `worker`'s CLI that passed a probe.
    ///
    /// # Errors
    /// When the ledger cannot be read or written.
    pub fn last_good_probe(&self, worker: &str) -> Result<Option<ProbeRow>> {
        if let Db::Pg(pg) = self.db {
            return pg::last_good_probe(pg, worker);
        }
        Ok(self
            .sqlite()?
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM worker_probes
                 WHERE worker = ?1 AND verdict = 'pass' AND cli_version IS NOT NULL
                 ORDER BY id DESC LIMIT 1"
            ))?
            .query_row([worker], row)
            .optional()?)
    }

    /// Workers whose latest probe failed: routing skips them.
    ///
    /// # Errors
    /// When the ledger cannot be read or written.
    pub fn quarantined_workers(&self) -> Result<Vec<ProbeRow>> {
        if let Db::Pg(pg) = self.db {
            return pg::quarantined_workers(pg);
        }
        let mut statement = self.sqlite()?.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM worker_probes p
             WHERE id = (SELECT MAX(id) FROM worker_probes q WHERE q.worker = p.worker)
               AND verdict = 'fail'
             ORDER BY worker"
        ))?;
        let rows = statement.query_map([], row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}
