//! Backing up and restoring the ledger.
//!
//! A backup goes through SQLite's online backup API in one step: it reads one consistent
//! snapshot (in WAL mode writers go on meanwhile), so it is safe while oxi ticks. A Postgres
//! ledger's backup is the same kind of file: its rows, read in one `REPEATABLE READ` snapshot,
//! copied into an SQLite ledger (`pg::copy`), so one restore path and one file format serve
//! both backends, and a backup of either can be opened, inspected or restored into either. A restore
//! checks the file first (`PRAGMA integrity_check`, an oxi ledger, a schema this binary knows),
//! then keeps the current ledger aside (itself backed up the same way) and only then replaces
//! it. Refusing while runs are live is the caller's part (it knows which processes are alive);
//! [`Ledger::running_runs_brief`] gives it what to check.

// "SQLite" in these docs is the engine's name, not an identifier to put in backticks.
#![allow(clippy::doc_markdown)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use super::migrate::MIGRATIONS;
use super::{BUSY_TIMEOUT, Ledger, LedgerError};

/// Why a backup or a restore stopped. None is retryable without a change, except
/// `Busy` (another process held the ledger's lock for longer than the busy timeout).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file could not be read, written, renamed or synced.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The ledger being copied failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The file to restore is not a readable SQLite database.
    #[error("{path} is not a readable SQLite database: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// `PRAGMA integrity_check` found problems in the file to restore.
    #[error(
        "{path} fails PRAGMA integrity_check: {}; nothing was replaced (use another backup)",
        problems.join("; ")
    )]
    Corrupt {
        path: PathBuf,
        problems: Vec<String>,
    },
    /// The file is a SQLite database but not an oxi ledger.
    #[error("{path} is not an oxi ledger (no schema_migrations table); nothing was replaced")]
    NotALedger { path: PathBuf },
    /// The file was written by a newer oxi.
    #[error(
        "{path} has ledger schema version {found}, but this oxi knows versions up to {supported}; restore it with the newer oxi that wrote it (nothing was replaced)"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// The destination of a backup exists already.
    #[error("{path} exists; choose another --output (a backup never overwrites a file)")]
    Exists { path: PathBuf },
    /// The source stayed locked for longer than the busy timeout.
    #[error("the ledger stayed locked for {}s during the copy; try again", BUSY_TIMEOUT.as_secs())]
    Busy,
    #[error("copying the ledger: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// What `oxi backup` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    pub path: PathBuf,
    pub bytes: u64,
    pub schema_version: i64,
    pub tasks: i64,
    pub runs: i64,
    pub events: i64,
    /// Runs marked running when the snapshot was taken (the next tick after a restore reaps
    /// or requeues them under the usual rules).
    pub running_runs: Vec<RunningRun>,
    pub at_ms: i64,
}

/// A run marked running, with what tells whether it is still alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunningRun {
    pub id: String,
    pub task_id: Option<String>,
    /// The oxi process supervising it (on `host`).
    pub supervisor_pid: Option<u32>,
    /// `None` for runs from before hosts were recorded.
    pub host: Option<String>,
    pub lease_expires_at_ms: Option<i64>,
}

/// What a backup file holds, checked before anything is replaced.
#[derive(Debug, Clone, Serialize)]
pub struct BackupInfo {
    pub path: PathBuf,
    pub schema_version: i64,
    pub tasks: i64,
    pub runs: i64,
    pub events: i64,
    pub running_runs: Vec<RunningRun>,
}

/// What `oxi restore` did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreSummary {
    pub restored: BackupInfo,
    pub ledger: PathBuf,
    /// Where the replaced ledger was kept (`None` when there was none).
    pub kept_aside: Option<PathBuf>,
    /// The schema version after the restored ledger was brought up to date.
    pub schema_version: i64,
}

/// Copies `from` into `to` in one step of the online backup API (one consistent snapshot),
/// retrying while the source is locked, up to the busy timeout.
fn copy(from: &Connection, to: &mut Connection) -> Result<(), BackupError> {
    let backup = Backup::new(from, to)?;
    let started = Instant::now();
    loop {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            StepResult::Busy | StepResult::Locked => {
                if started.elapsed() >= BUSY_TIMEOUT {
                    return Err(BackupError::Busy);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // `More` (a step of -1 pages copies everything, but SQLite may still say so) or a
            // future result kind: step again.
            _ => {}
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a snapshot of `from` to `dest` (which must not exist): into a temporary file beside
/// it, synced, mode 0600, checked, then renamed into place.
fn snapshot(from: &Connection, dest: &Path) -> Result<(), BackupError> {
    if dest.exists() {
        return Err(BackupError::Exists {
            path: dest.to_path_buf(),
        });
    }
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let partial = tempfile::Builder::new()
        .prefix(".oxi-backup-")
        .suffix(".partial")
        .tempfile_in(&dir)
        .map_err(io(&dir))?;
    {
        let mut to = Connection::open(partial.path())?;
        copy(from, &mut to)?;
        // A backup is one file: no WAL beside it.
        to.pragma_update(None, "journal_mode", "DELETE")?;
        let problems = integrity(&to)?;
        if !problems.is_empty() {
            return Err(BackupError::Corrupt {
                path: dest.to_path_buf(),
                problems,
            });
        }
    }
    partial.as_file().sync_all().map_err(io(partial.path()))?;
    // The temporary file is created 0600 already; persist keeps it.
    partial
        .persist_noclobber(dest)
        .map_err(|e| BackupError::Io {
            path: dest.to_path_buf(),
            source: e.error,
        })?;
    sync_dir(&dir)?;
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

fn integrity(conn: &Connection) -> Result<Vec<String>, rusqlite::Error> {
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(rows.into_iter().filter(|r| r != "ok").collect())
}

/// The runs a ledger at schema `version` has marked running (`supervisor_pid` came with
/// migration 0003, `host` with 0012).
fn running(conn: &Connection, version: i64) -> Result<Vec<RunningRun>, rusqlite::Error> {
    let pid = if version >= 3 {
        "supervisor_pid"
    } else {
        "NULL"
    };
    let host = if version >= 16 { "host" } else { "NULL" };
    let mut stmt = conn.prepare(&format!(
        "SELECT id, task_id, {pid}, {host}, lease_expires_at_ms FROM runs
         WHERE status = 'running' ORDER BY started_at_ms, id"
    ))?;
    stmt.query_map([], |r| {
        Ok(RunningRun {
            id: r.get(0)?,
            task_id: r.get(1)?,
            supervisor_pid: r.get(2)?,
            host: r.get(3)?,
            lease_expires_at_ms: r.get(4)?,
        })
    })?
    .collect()
}

/// Counts of tasks, runs and events.
fn counts(conn: &Connection) -> Result<(i64, i64, i64), rusqlite::Error> {
    let count = |table: &str| -> rusqlite::Result<i64> {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
    };
    Ok((count("tasks")?, count("runs")?, count("events")?))
}

impl Ledger {
    /// Writes a consistent snapshot of this ledger to `dest` (which must not exist).
    ///
    /// # Errors
    ///
    /// [`BackupError::Exists`] when `dest` exists; otherwise I/O, SQLite or busy errors.
    pub fn backup_to(&self, dest: &Path) -> Result<BackupSummary, BackupError> {
        if let super::Backend::Pg { .. } = self.backend {
            // The snapshot's rows into an SQLite ledger in memory, then that to the file the
            // way an SQLite ledger is backed up.
            let mut file = Ledger::open_in_memory()?;
            self.copy_into(&mut file)?;
            snapshot(file.read().sqlite()?, dest)?;
        } else {
            snapshot(self.read().sqlite()?, dest)?;
        }
        let info = inspect_backup(dest)?;
        let bytes = std::fs::metadata(dest).map_err(io(dest))?.len();
        Ok(BackupSummary {
            path: dest.to_path_buf(),
            bytes,
            schema_version: info.schema_version,
            tasks: info.tasks,
            runs: info.runs,
            events: info.events,
            running_runs: info.running_runs,
            at_ms: crate::clock::now_ms(),
        })
    }

    /// Runs marked running, for a restore to check none is still alive.
    ///
    /// # Errors
    ///
    /// When the ledger cannot be read.
    pub fn running_runs_brief(&self) -> Result<Vec<RunningRun>, LedgerError> {
        if let super::queries::Db::Pg(pg) = self.read().db {
            return super::pg::running_brief(pg);
        }
        let version = self.read().schema_version()?;
        Ok(running(self.read().sqlite()?, version)?)
    }
}

/// Checks a backup file without changing it: readable, `PRAGMA integrity_check` clean, an oxi
/// ledger, a schema version this binary knows.
///
/// # Errors
///
/// The check that failed: [`BackupError::Unreadable`], [`BackupError::Corrupt`],
/// [`BackupError::NotALedger`] or [`BackupError::TooNew`].
pub fn inspect_backup(path: &Path) -> Result<BackupInfo, BackupError> {
    if !path.is_file() {
        return Err(BackupError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such backup file"),
        });
    }
    let unreadable = |source| BackupError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(unreadable)?;
    let problems = integrity(&conn).map_err(unreadable)?;
    if !problems.is_empty() {
        return Err(BackupError::Corrupt {
            path: path.to_path_buf(),
            problems,
        });
    }
    let has_migrations: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
            [],
            |r| r.get(0),
        )
        .map_err(unreadable)?;
    if !has_migrations {
        return Err(BackupError::NotALedger {
            path: path.to_path_buf(),
        });
    }
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(unreadable)?;
    let supported = MIGRATIONS.last().map_or(0, |m| m.version);
    if version > supported {
        return Err(BackupError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported,
        });
    }
    let (tasks, runs, events) = counts(&conn).map_err(unreadable)?;
    let running_runs = running(&conn, version).map_err(unreadable)?;
    Ok(BackupInfo {
        path: path.to_path_buf(),
        schema_version: version,
        tasks,
        runs,
        events,
        running_runs,
    })
}

/// Replaces the ledger at `ledger` with the backup `file`, after [`inspect_backup`] passed: the
/// current ledger (if any) is first kept aside as `<ledger>.replaced-<time>` (a snapshot, so
/// its WAL is in it), the WAL files of the old one are removed, the backup is copied into a
/// temporary file, synced and renamed over the ledger, and the result opened (which brings an
/// older schema up to date). The caller holds the tick lock and checked that no run is live.
///
/// # Errors
///
/// What [`inspect_backup`] refuses (then nothing was replaced), or an I/O or SQLite error.
pub fn restore(ledger: &Path, file: &Path) -> Result<RestoreSummary, BackupError> {
    let info = inspect_backup(file)?;
    let kept_aside = if ledger.exists() {
        let current = Ledger::open_existing(ledger)?;
        let aside = aside_path(ledger);
        current.backup_to(&aside)?;
        drop(current);
        Some(aside)
    } else {
        None
    };
    let dir = match ledger.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let staged = tempfile::Builder::new()
        .prefix(".oxi-restore-")
        .tempfile_in(&dir)
        .map_err(io(&dir))?;
    {
        let from = Connection::open_with_flags(
            file,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let mut to = Connection::open(staged.path())?;
        copy(&from, &mut to)?;
        to.pragma_update(None, "journal_mode", "DELETE")?;
    }
    staged.as_file().sync_all().map_err(io(staged.path()))?;
    // The old ledger's WAL must not be replayed into the restored file.
    for suffix in ["-wal", "-shm"] {
        let mut side = ledger.as_os_str().to_owned();
        side.push(suffix);
        match std::fs::remove_file(PathBuf::from(side)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(ledger)(e)),
        }
    }
    staged.persist(ledger).map_err(|e| BackupError::Io {
        path: ledger.to_path_buf(),
        source: e.error,
    })?;
    sync_dir(&dir)?;
    let mut restored = Ledger::open(ledger)?;
    let schema_version = restored.read().schema_version()?;
    restored.record(
        None,
        None,
        super::Event::LedgerRestored(super::events::LedgerRestored {
            from: file.display().to_string(),
            kept_aside: kept_aside.as_ref().map(|p| p.display().to_string()),
            schema_version: info.schema_version,
            running_runs: info.running_runs.iter().map(|r| r.id.clone()).collect(),
        }),
    )?;
    Ok(RestoreSummary {
        restored: info,
        ledger: ledger.to_path_buf(),
        kept_aside,
        schema_version,
    })
}

impl Ledger {
    /// Replaces every row of this Postgres ledger with the backup `file`, after
    /// [`inspect_backup`] passed: the current rows are first written to `aside` (a backup like
    /// any other), the backup is brought up to this oxi's schema in memory (an older backup's
    /// migrations never run on the shared database), and the rows are swapped in one
    /// transaction, which ends with all of the backup or with the ledger as it was. The caller
    /// holds the tick lock and checked that no run is live on any host.
    ///
    /// # Errors
    ///
    /// What [`inspect_backup`] refuses (then nothing was replaced), or a copy or I/O error.
    pub fn restore_postgres(
        &mut self,
        file: &Path,
        aside: &Path,
    ) -> Result<RestoreSummary, BackupError> {
        let info = inspect_backup(file)?;
        let staged = load_into_memory(file)?;
        self.backup_to(aside)?;
        super::pg::replace_all(&staged, self)?;
        let schema_version = self.read().schema_version()?;
        self.record(
            None,
            None,
            super::Event::LedgerRestored(super::events::LedgerRestored {
                from: file.display().to_string(),
                kept_aside: Some(aside.display().to_string()),
                schema_version: info.schema_version,
                running_runs: info.running_runs.iter().map(|r| r.id.clone()).collect(),
            }),
        )?;
        Ok(RestoreSummary {
            restored: info,
            ledger: self.path.clone(),
            kept_aside: Some(aside.to_path_buf()),
            schema_version,
        })
    }
}

/// A backup file copied into an SQLite ledger in memory and migrated there to this oxi's
/// schema; the file itself is only read.
fn load_into_memory(file: &Path) -> Result<Ledger, BackupError> {
    let from = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mut conn = Connection::open_in_memory()?;
    copy(&from, &mut conn)?;
    super::configure(&mut conn, Path::new(":memory:"))?;
    super::migrate::migrate(&mut conn, file, None)?;
    Ok(Ledger {
        backend: super::Backend::Sqlite {
            conn,
            writers: None,
        },
        path: file.to_path_buf(),
    })
}

/// `<ledger>.replaced-<UTC time>`, beside the ledger.
fn aside_path(ledger: &Path) -> PathBuf {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%S%.3fZ")
        .to_string();
    let mut name = ledger.as_os_str().to_owned();
    name.push(format!(".replaced-{stamp}"));
    PathBuf::from(name)
}
