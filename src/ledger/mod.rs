//! The ledger: one SQLite file (`.oxi/ledger.db`) holding tasks, runs, the append-only event
//! trail, spend reservations and settlements, approvals, and a small key/value table; or one
//! Postgres database with the same tables, shared by several hosts (`pg`, docs/postgres.md).
//!
//! All SQL lives in this module behind typed functions (`Queries`), which run on either
//! backend, so the pipeline does not know which one it talks to.
//!
//! Durability: WAL with `synchronous=FULL`. In WAL mode `NORMAL` may lose the last commits on
//! power loss; a task ledger must never roll back a committed claim (the worker would run twice
//! and the money be spent twice), so every commit is synced.

mod backup;
mod blocks;
mod claim;
pub mod events;
mod gateway;
mod hosts;
mod improve;
mod inference;
mod issues;
mod kinds;
mod migrate;
mod notify;
mod pg;
mod plans;
mod probes;
mod queries;
mod report;
mod runs;
mod shadow;
pub mod state;
mod tick;
mod writers;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

pub use backup::{
    BackupError, BackupInfo, BackupSummary, RestoreSummary, RunningRun, inspect_backup, restore,
};
pub use blocks::WorkerBlock;
pub use claim::{ClaimCaps, OneStepClaim, TaskClaim};
pub use events::{Event, EventKind};
pub use gateway::{GatewayCallEnd, GatewayCallRow, NewGatewayCall};
pub use hosts::{HostBeat, HostRow, HostRunTotals};
pub use improve::{
    CandidateRow, DecisionRow, ImproveTotals, KnownProposal, NewCandidate, NewDecision,
    NewProposal, ProposalRow, ScanEnd, ScanRow, SourceFailureRow,
};
pub use issues::{IssueLink, IssueSeen};
pub use kinds::{ApprovalKind, FailureClass, HoldKind};
pub use migrate::MIGRATIONS;
pub use notify::{
    Attempt, AttemptStatus, NewOutbox, OutboxRow, OutboxState, SinkCounts, TrailEvent,
};
pub(crate) use pg::conninfo::{split_service, with_cause as client_error_with_cause};
pub use pg::{ConnInfoError, CopySummary};
pub use plans::{PlanRow, PromptBytes};
pub use probes::ProbeRow;
pub use queries::*;
pub use report::*;
pub use runs::*;
pub(crate) use shadow::ShadowPairRow;
pub use state::TaskState;
pub use tick::*;
pub use writers::TurnError;

use writers::WriteGroup;

/// How long a writer waits for another writer before giving up with `SQLITE_BUSY`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// WAL pages after which a commit checkpoints (see `Ledger::configure`).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 4_000;

/// The WAL is cut back to this size after a checkpoint if it grew beyond it.
const WAL_SIZE_LIMIT_BYTES: i64 = 32 * 1024 * 1024;

/// Errors from the ledger. None is retryable by the caller except `Busy` and
/// `Turn(TurnError::TimedOut)`, which already waited `BUSY_TIMEOUT`.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The ledger file or its directory could not be created or opened.
    #[error("cannot open ledger {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A newer oxi wrote this ledger; this binary does not know its schema.
    #[error(
        "ledger {path} has schema version {found}, but this oxi knows versions up to {supported}; it was written by a newer oxi. Upgrade oxi (or restore an older ledger backup)."
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// An applied migration's text differs from the one in this binary (a landed migration was edited).
    #[error(
        "ledger migration {version:04} ({name}) differs from the one applied to this ledger; migrations must never be edited once released"
    )]
    MigrationChanged { version: i64, name: String },
    /// The state machine forbids this change.
    #[error("task {task}: illegal state transition {from} -> {to}")]
    IllegalTransition {
        task: String,
        from: TaskState,
        to: TaskState,
    },
    /// The task was not in the state the caller expected (someone else moved it first).
    #[error("task {task} is {found}, expected {expected}")]
    StateConflict {
        task: String,
        expected: TaskState,
        found: String,
    },
    /// No such task.
    #[error("no task {0} in the ledger; `oxi tasks` lists them")]
    NoSuchTask(String),
    /// Another process held the write lock for longer than `BUSY_TIMEOUT`.
    #[error("ledger is locked by another oxi process (waited {}s); try again", BUSY_TIMEOUT.as_secs())]
    Busy,
    /// A row could not be read back into its type (hand-edited or corrupted ledger).
    #[error("ledger row is corrupt: {0}")]
    Corrupt(String),
    /// No turn in this process's queue of writers to this file (see `writers`).
    #[error(transparent)]
    Turn(#[from] TurnError),
    #[error("ledger: {0}")]
    Sqlite(rusqlite::Error),
    /// A statement on a Postgres ledger failed.
    #[error("ledger: {}", pg_message(.0))]
    Postgres(postgres::Error),
    /// The Postgres ledger's connection settings (its URL, service file or password file) are
    /// unusable.
    #[error("ledger {url}: {source}")]
    PgConnInfo {
        url: String,
        #[source]
        source: pg::ConnInfoError,
    },
    /// The Postgres server could not be reached or refused the connection.
    #[error(
        "cannot connect to the ledger at {url}: {source}{}",
        if *without_password { " (oxi found no password for it: name the variable holding it in [ledger] password_env, or add a line to ~/.pgpass, chmod 0600)" } else { "" }
    )]
    PgConnect {
        url: String,
        #[source]
        source: postgres::Error,
        /// Neither `password_env`, the service nor the password file gave a password.
        without_password: bool,
    },
    /// A copy's destination already holds rows (`oxi ledger migrate` copies only into an empty
    /// ledger, so nothing is ever merged or overwritten).
    #[error(
        "ledger {ledger} is not empty (table {table} has {rows} row(s)); a copy goes only into an empty ledger, so nothing was copied"
    )]
    NotEmpty {
        ledger: String,
        table: String,
        rows: i64,
    },
    /// A table or a value of one ledger does not fit the other's schema.
    #[error("copying the ledger: table {table}: {problem}")]
    CopyMismatch { table: String, problem: String },
    /// A statement written for sqlite reached a Postgres ledger: every `Queries` method
    /// dispatches on its backend first, so this is a bug in oxi (a method that lost its
    /// Postgres body), reported with where it happened rather than sent to the wrong server.
    #[error(
        "internal error: the ledger statement at {0} is for SQLite but this ledger is PostgreSQL; please report it"
    )]
    WrongBackend(String),
}

/// A database URL with any password blanked, for messages.
#[must_use]
pub fn redact_url(url: &str) -> String {
    pg::redact(url)
}

/// A Postgres error as its server message and code when it has one (the crate's own text is
/// only "db error"), and what happened when the session itself is gone: the crate says only
/// "connection closed" or "error communicating with the server".
fn pg_message(e: &postgres::Error) -> String {
    let message = e.as_db_error().map_or_else(
        || e.to_string(),
        |db| format!("{} (SQLSTATE {})", db.message(), db.code().code()),
    );
    if pg_connection_lost(e) {
        return format!(
            "{message}: the connection to the PostgreSQL ledger was lost (the server restarted or stopped, or the network cut it); every write committed before is kept and the one cut short is committed whole or not at all; run oxi again once the server is back (the next tick takes back this host's interrupted runs)"
        );
    }
    message
}

/// The session to the server is gone: closed, cut at the socket, or ended by the server's
/// shutdown or crash recovery (SQLSTATE class 57P, "operator intervention").
fn pg_connection_lost(e: &postgres::Error) -> bool {
    let cut_at_the_socket = std::error::Error::source(e)
        .and_then(<dyn std::error::Error>::downcast_ref::<std::io::Error>)
        .is_some();
    e.is_closed()
        || cut_at_the_socket
        || e.code()
            .map(postgres::error::SqlState::code)
            .is_some_and(|c| c.starts_with("57P"))
}

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                LedgerError::Busy
            }
            _ => LedgerError::Sqlite(e),
        }
    }
}

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// Where a ledger is: the sqlite file, or a Postgres database (`[ledger] url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerAt {
    File(PathBuf),
    Postgres {
        url: String,
        /// The name of the environment variable holding the password.
        password_env: Option<String>,
    },
}

impl LedgerAt {
    /// Whether this is a shared (Postgres) ledger.
    #[must_use]
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Postgres { .. })
    }
}

impl std::fmt::Display for LedgerAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Postgres { url, .. } => f.write_str(&pg::redact(url)),
        }
    }
}

/// An open ledger.
pub struct Ledger {
    backend: Backend,
    /// The file, or the Postgres URL (its password blanked).
    path: PathBuf,
}

/// Which database a `Ledger` is open on.
enum Backend {
    Sqlite {
        conn: Connection,
        /// This process's writers to the same file (one shared write connection, turns, shared
        /// commits); `None` in memory, where each connection is its own database.
        writers: Option<Arc<WriteGroup>>,
    },
    /// One session per `Ledger`, as each sqlite `Ledger` has its own connection; writes are
    /// transactions on it (Postgres's own row locks order concurrent writers).
    Pg {
        client: RefCell<pg::Session>,
        /// Where it connected, for the sessions of its own a tick lock or a copy opens (boxed:
        /// the variant stays the size of the sqlite one).
        target: Box<pg::Target>,
    },
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("path", &self.path).finish()
    }
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, true)
    }

    /// Opens (creating if needed) the ledger `at` a file or a Postgres database.
    ///
    /// # Errors
    /// As [`Ledger::open`] or [`Ledger::open_postgres`].
    pub fn open_at(at: &LedgerAt) -> Result<Self> {
        match at {
            LedgerAt::File(path) => Self::open(path),
            LedgerAt::Postgres { url, password_env } => {
                Self::open_postgres(url, password_env.as_deref())
            }
        }
    }

    /// Opens the existing ledger `at` a file or a Postgres database: a file is not created;
    /// a database is (a Postgres ledger exists once its database does, and its schema is
    /// brought up to date as on opening any ledger).
    ///
    /// # Errors
    /// As [`Ledger::open_existing`] or [`Ledger::open_postgres`].
    pub fn open_existing_at(at: &LedgerAt) -> Result<Self> {
        match at {
            LedgerAt::File(path) => Self::open_existing(path),
            LedgerAt::Postgres { .. } => Self::open_at(at),
        }
    }

    /// Opens an existing ledger without creating it. Used by read-only commands so a typo'd
    /// path does not leave an empty ledger behind.
    pub fn open_existing(path: &Path) -> Result<Self> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, create: bool) -> Result<Self> {
        let io = |source| LedgerError::Io {
            path: path.to_path_buf(),
            source,
        };
        if create {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            create_private_file(path).map_err(io)?;
        } else if !path.exists() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no ledger yet; run `oxi init` or `oxi ingest` first",
            )));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let mut conn = conn;
        configure(&mut conn, path)?;
        migrate::migrate(&mut conn, path, None)?;
        Ok(Ledger {
            backend: Backend::Sqlite {
                conn,
                writers: Some(WriteGroup::for_file(path)),
            },
            path: path.to_path_buf(),
        })
    }

    /// Connects to the Postgres ledger at `url` (a `postgres://` URL without a password,
    /// completed by the connection service it names; the password, if the server asks for
    /// one, comes from the environment variable named by `password_env`, else from the service
    /// or the password file) and brings its schema up to date.
    ///
    /// # Errors
    /// `PgConnInfo` for an unusable URL, service file, password file or password variable,
    /// `PgConnect` when the server cannot be reached or refuses, `TooNew`/`MigrationChanged`
    /// as for sqlite.
    pub fn open_postgres(url: &str, password_env: Option<&str>) -> Result<Self> {
        let secret = pg::Secret {
            password_env: password_env.map(str::to_owned),
        };
        let mut client = pg::connect(url, &secret)?;
        let shown = pg::redact(url);
        pg::migrate(&mut client, &shown)?;
        Ok(Ledger {
            backend: Backend::Pg {
                client: RefCell::new(client),
                target: Box::new(pg::Target {
                    url: url.to_owned(),
                    secret,
                }),
            },
            path: PathBuf::from(shown),
        })
    }

    /// An in-memory ledger for tests and benchmarks.
    pub fn open_in_memory() -> Result<Self> {
        let mut conn = Connection::open_in_memory()?;
        configure(&mut conn, Path::new(":memory:"))?;
        migrate::migrate(&mut conn, Path::new(":memory:"), None)?;
        Ok(Ledger {
            backend: Backend::Sqlite {
                conn,
                writers: None,
            },
            path: PathBuf::from(":memory:"),
        })
    }

    /// Opens a ledger and migrates it only up to `version` (tests of migrations).
    pub fn open_at_version(path: &Path, version: i64) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| LedgerError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let mut conn = Connection::open(path)?;
        configure(&mut conn, path)?;
        migrate::migrate(&mut conn, path, Some(version))?;
        Ok(Ledger {
            backend: Backend::Sqlite {
                conn,
                writers: Some(WriteGroup::for_file(path)),
            },
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read access (each statement is its own snapshot).
    pub fn read(&self) -> Queries<'_> {
        match &self.backend {
            Backend::Sqlite { conn, .. } => Queries::sqlite_conn(conn),
            Backend::Pg { client, .. } => Queries {
                db: queries::Db::Pg(client),
            },
        }
    }

    /// Appends one event by oxi, now, in its own transaction.
    pub fn record(
        &mut self,
        task_id: Option<&str>,
        run_id: Option<&str>,
        event: Event,
    ) -> Result<()> {
        self.write(|q| {
            q.append_event(&NewEvent {
                at_ms: crate::clock::now_ms(),
                task_id,
                run_id,
                actor: "oxi",
                event,
            })
            .map(|_| ())
        })
    }

    /// Runs `f` as one atomic write: all of it commits or none of it does, and `write` returns
    /// only once it is synced.
    ///
    /// Writers in this process take turns in arrival order on one shared connection and share
    /// commits (`writers`): changes of writers queued together commit in one transaction, each
    /// writer's in its own savepoint. `f` must not write through another `Ledger` on the same
    /// file: that inner write would wait for this one, so it fails at once with
    /// `TurnError::Nested`. `f` must pass SQLite's errors on (`?`): under some (a full disk)
    /// SQLite rolls the whole transaction back, and the write then fails even if `f` said Ok.
    ///
    /// On Postgres, `f` runs in one transaction on this ledger's session; concurrent writers
    /// on other sessions (other threads, processes, hosts) are ordered by the rows they lock.
    pub fn write<T>(&mut self, f: impl FnOnce(&Queries<'_>) -> Result<T>) -> Result<T> {
        let (conn, writers) = match &mut self.backend {
            Backend::Sqlite { conn, writers } => (conn, writers),
            Backend::Pg { client, .. } => {
                // BEGIN and COMMIT as statements, not the crate's `Transaction`, whose drop
                // would block on its runtime wherever the write ends (see `pg::blocking`).
                client.borrow_mut().batch("BEGIN")?;
                let open = pg::OpenTransaction::new(client);
                let value = match f(&Queries {
                    db: queries::Db::Pg(client),
                }) {
                    Ok(value) => value,
                    Err(e) => {
                        open.end();
                        client.borrow_mut().batch("ROLLBACK")?;
                        return Err(e);
                    }
                };
                open.end();
                client.borrow_mut().batch("COMMIT")?;
                return Ok(value);
            }
        };
        let Some(group) = writers else {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&Queries::sqlite_conn(&tx))?;
            tx.commit()?;
            return Ok(value);
        };
        group.write(open_writer, f)
    }

    /// `PRAGMA integrity_check`: empty, or the problems SQLite lists. On Postgres, whose
    /// server keeps its own pages consistent: the triggers the guarantees rest on are present
    /// and enabled, and the spend rollup equals its sums (`pg::integrity_problems`).
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        let conn = match &self.backend {
            Backend::Sqlite { conn, .. } => conn,
            Backend::Pg { client, .. } => return pg::integrity_problems(client),
        };
        let mut stmt = conn.prepare("PRAGMA integrity_check")?;
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(rows.into_iter().filter(|r| r != "ok").collect())
    }

    /// How far this host's clock is ahead of the database server's (negative: behind), in
    /// milliseconds, measured at the middle of one round trip; 0 for a sqlite ledger, whose
    /// clock is this host's.
    ///
    /// # Errors
    /// The server cannot be asked.
    pub fn clock_skew_ms(&self) -> Result<i64> {
        let Backend::Pg { client, .. } = &self.backend else {
            return Ok(0);
        };
        let before = crate::clock::now_ms();
        let server: i64 = pg::query_one(
            client,
            "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
            &[],
        )?
        .try_get(0)?;
        let after = crate::clock::now_ms();
        Ok(before + (after - before) / 2 - server)
    }

    /// This process's writers to the ledger's file (tests of `writers`).
    #[cfg(test)]
    fn write_group(&self) -> Option<&Arc<WriteGroup>> {
        match &self.backend {
            Backend::Sqlite { writers, .. } => writers.as_ref(),
            Backend::Pg { .. } => None,
        }
    }

    /// The raw connection, for benchmarks and tests that need to bypass the typed layer.
    ///
    /// # Panics
    /// On a Postgres ledger: this hook is for tests of the SQLite one.
    #[doc(hidden)]
    pub fn raw_connection(&mut self) -> &mut Connection {
        match &mut self.backend {
            Backend::Sqlite { conn, .. } => conn,
            Backend::Pg { .. } => panic!("raw_connection is a test hook of SQLite ledgers"),
        }
    }
}

/// The settings every ledger connection gets: oxi's busy handler, WAL, `synchronous=FULL`,
/// foreign keys, the checkpoint policy.
fn configure(conn: &mut Connection, path: &Path) -> Result<()> {
    // Writers in this process queue in `writers` before they ask SQLite for the lock, so this
    // handler mostly waits for other oxi processes (and for migrations, which do not queue).
    // SQLite's own backs off up to 100 ms between tries, which puts writers hundreds of
    // milliseconds apart. Retry sooner (50 µs doubling to 2 ms), still giving up after
    // BUSY_TIMEOUT.
    let started = std::cell::Cell::new(None::<std::time::Instant>);
    conn.busy_handler(Some(move |attempt: i32| {
        if attempt == 0 {
            started.set(Some(std::time::Instant::now()));
        }
        if started.get().is_some_and(|t| t.elapsed() >= BUSY_TIMEOUT) {
            return false;
        }
        let micros = 50u64.saturating_mul(1 << attempt.clamp(0, 6)).min(2_000);
        std::thread::sleep(std::time::Duration::from_micros(micros));
        true
    }))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .or_else(|e| {
            // In-memory databases answer "memory"; that is fine for tests.
            if path == Path::new(":memory:") {
                Ok(())
            } else {
                Err(e)
            }
        })?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // A checkpoint costs two syncs (the WAL, then the database) plus one more for the header
    // of the restarted WAL, all inside the commit that crosses the threshold. SQLite's
    // default of 1,000 pages (~70 claims) made that 3% of all syncs; 4,000 pages (~16 MiB of
    // WAL) makes it under 1%, and a hot page rewritten by many commits is copied once.
    // Durability is unchanged: every commit is still synced to the WAL.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    // The WAL file keeps its largest size, and a long reader (a report over a big ledger)
    // can hold a checkpoint back and let it grow; trim it back after such a spike. Above
    // the steady ~16 MiB, so normal operation never truncates and regrows the file.
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)?;
    Ok(())
}

/// The shared write connection of this process to the ledger at `path` (already created and
/// migrated by the `Ledger` that asks).
fn open_writer(path: &Path) -> Result<Connection> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&mut conn, path)?;
    // Every writer of the process shares this connection's statement cache; the default 16
    // would evict statements the claim path reuses.
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// Creates the ledger file with mode 0600 if missing, and tightens it if it is looser. An
/// existing file is never opened here: this process may already have it open through SQLite,
/// whose POSIX locks on it would all be dropped by closing another descriptor of the file.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::metadata(path) {
        Ok(meta) => {
            if meta.permissions().mode() & 0o777 != 0o600 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map(drop),
        Err(e) => Err(e),
    }
}
