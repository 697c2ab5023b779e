//! `oxi backup [--output FILE]` and `oxi restore FILE`: a consistent copy of the ledger taken
//! while oxi runs, and putting one back — checked first, never while a run is alive, the
//! replaced ledger kept aside (docs/operations.md has the drill).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::Context;
use crate::cli::{BackupArgs, RestoreArgs};
use crate::host::Identity;
use crate::ledger::{BackupSummary, Ledger, RestoreSummary, RunningRun};
use crate::output::{Format, json_string, write_stdout};
use crate::scheduler::lock;

/// `.oxi/backups/ledger-<UTC time>.db`.
fn default_output(state_dir: &Path) -> PathBuf {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    state_dir.join("backups").join(format!("ledger-{stamp}.db"))
}

/// `.oxi/backups/ledger-replaced-<UTC time>.db`: a shared ledger's rows before a restore.
fn replaced_output(state_dir: &Path) -> PathBuf {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%S%.3fZ")
        .to_string();
    state_dir
        .join("backups")
        .join(format!("ledger-replaced-{stamp}.db"))
}

fn in_flight_note(runs: &[RunningRun]) -> String {
    if runs.is_empty() {
        return String::new();
    }
    let ids: Vec<String> = runs
        .iter()
        .map(|r| match &r.task_id {
            Some(task) => format!("{} ({task})", r.id),
            None => r.id.clone(),
        })
        .collect();
    format!(
        "runs in flight at the snapshot: {}; after a restore the next tick reaps them and requeues their tasks\n",
        ids.join(", ")
    )
}

fn render_backup(s: &BackupSummary) -> String {
    format!(
        "backed up the ledger to {}: {} bytes, schema version {}, {} task(s), {} run(s), {} event(s)\n{}",
        s.path.display(),
        s.bytes,
        s.schema_version,
        s.tasks,
        s.runs,
        s.events,
        in_flight_note(&s.running_runs)
    )
}

pub(crate) fn backup(ctx: &Context, args: &BackupArgs) -> Result<()> {
    let config = ctx.config()?;
    let ledger = Ledger::open_existing_at(&config.ledger_at())?;
    let dest = match &args.output {
        Some(path) => ctx.cwd.join(path),
        None => default_output(&config.state_dir),
    };
    let summary = ledger.backup_to(&dest)?;
    let text = match ctx.global.format {
        Format::Json => json_string(&summary)?,
        _ => render_backup(&summary),
    };
    write_stdout(&text)?;
    Ok(())
}

/// Alive: on this host (or a run from before hosts were recorded), its supervising oxi
/// process exists; on another host, its lease has not expired (that host's processes cannot
/// be seen from here).
fn is_live(run: &RunningRun, me: &Identity, now_ms: i64) -> bool {
    match &run.host {
        Some(host) if *host != me.name => run.lease_expires_at_ms.is_some_and(|l| l >= now_ms),
        _ => run
            .supervisor_pid
            .is_some_and(|pid| pid != std::process::id() && crate::scheduler::pid_alive(pid)),
    }
}

fn describe_live(runs: &[&RunningRun]) -> String {
    runs.iter()
        .map(|r| {
            let task = r.task_id.as_deref().unwrap_or("no task");
            match (&r.host, r.supervisor_pid) {
                (Some(host), Some(pid)) => format!("{} ({task}, oxi pid {pid} on {host})", r.id),
                (None, Some(pid)) => format!("{} ({task}, oxi pid {pid})", r.id),
                (Some(host), None) => format!("{} ({task}, on {host})", r.id),
                (None, None) => format!("{} ({task})", r.id),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn render_restore(s: &RestoreSummary) -> String {
    let mut out = format!(
        "restored {} into {} (backup schema version {}, now {}): {} task(s), {} run(s), {} event(s)\n",
        s.restored.path.display(),
        s.ledger.display(),
        s.restored.schema_version,
        s.schema_version,
        s.restored.tasks,
        s.restored.runs,
        s.restored.events
    );
    match &s.kept_aside {
        Some(path) => {
            let _ = writeln!(out, "the replaced ledger is kept at {}", path.display());
        }
        None => out.push_str("there was no ledger to replace\n"),
    }
    out.push_str(&in_flight_note(&s.restored.running_runs));
    out
}

pub(crate) fn restore(ctx: &Context, args: &RestoreArgs) -> Result<()> {
    let config = ctx.config()?;
    let file = ctx.cwd.join(&args.file);
    // The file first: a bad backup replaces nothing.
    let info = crate::ledger::inspect_backup(&file)?;
    // No tick or saturate may write meanwhile (the lock is held until the restore is done).
    let _lock = match lock::acquire_for(&config) {
        Ok(lock) => lock,
        Err(lock::LockError::Held { holder, .. }) => bail!(
            "refusing to restore: {} is running on this ledger; stop it first (nothing was replaced)",
            lock::describe(holder.as_ref())
        ),
        Err(e) => return Err(e.into()),
    };
    let me = Identity::of(&config);
    let now = crate::clock::now_ms();
    let ledger_at = config.ledger_at();
    let ledger_path = config.ledger_path();
    let mut current: Vec<RunningRun> = Vec::new();
    let mut shared = None;
    if ledger_at.is_shared() {
        let ledger = Ledger::open_existing_at(&ledger_at)?;
        current = ledger.running_runs_brief()?;
        shared = Some(ledger);
    } else if ledger_path.exists() {
        current = Ledger::open_existing(&ledger_path)?.running_runs_brief()?;
    }
    let mut live: Vec<&RunningRun> = current
        .iter()
        .chain(&info.running_runs)
        .filter(|r| is_live(r, &me, now))
        .collect();
    live.sort_by(|a, b| a.id.cmp(&b.id));
    live.dedup_by(|a, b| a.id == b.id);
    if !live.is_empty() {
        bail!(
            "refusing to restore while runs are live: {}; let them finish or `oxi cancel` their tasks, then restore (nothing was replaced)",
            describe_live(&live)
        );
    }
    let summary = match shared.as_mut() {
        // The rows it holds now are kept as a backup file beside the others.
        Some(ledger) => ledger.restore_postgres(&file, &replaced_output(&config.state_dir))?,
        None => crate::ledger::restore(&ledger_path, &file)?,
    };
    let text = match ctx.global.format {
        Format::Json => json_string(&summary)?,
        _ => render_restore(&summary),
    };
    write_stdout(&text)?;
    Ok(())
}
