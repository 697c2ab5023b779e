//! The Postgres backend of the ledger, for several hosts sharing one queue.
//!
//! Same tables, same meaning, same guarantees as the sqlite ledger, by Postgres's means (see
//! docs/postgres.md): the task state machine and append-only events are triggers, the spend
//! rollup is kept by triggers, every commit is synced (`synchronous_commit = on` for the
//! session, whatever the server's default).
//!
//! The client is the `postgres` crate, the synchronous wrapper over tokio-postgres: the ledger's
//! API is synchronous (every caller holds a `Ledger` on its own thread), so a blocking client
//! keeps it so without an async runtime at each call site.

mod blocks;
pub(crate) mod conninfo;
mod copy;
mod gateway;
mod hosts;
mod improve;
mod inference;
mod issues;
mod migrate;
mod notify;
mod plans;
mod probes;
mod queries;
mod report;
mod runs;
mod shadow;
mod tick;

use std::cell::RefCell;
use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement, Transaction};

pub(super) use blocks::*;
pub use conninfo::ConnInfoError;
pub use copy::CopySummary;
pub(super) use copy::replace_all;
pub(super) use gateway::*;
pub(super) use hosts::*;
pub(super) use improve::*;
pub(super) use inference::*;
pub(super) use issues::*;
pub(super) use migrate::{integrity_problems, migrate, schema_version};
pub(super) use notify::*;
pub(super) use plans::*;
pub(super) use probes::*;
pub(super) use queries::*;
pub(super) use report::*;
pub(super) use runs::*;
pub(super) use shadow::*;
pub(super) use tick::*;

use super::{BUSY_TIMEOUT, LedgerError, Result};

// `Transaction` stays a `PgExec` for the migration, which runs inside one.

/// The parameters of one statement.
pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A session or a transaction: what a ledger function runs its statements on. Object-safe (the
/// crate's own `GenericClient` is not), so `Queries` can hold either behind one reference.
pub(super) trait PgExec {
    fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, postgres::Error>;
    fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, postgres::Error>;
}

/// Runs `f`, which blocks on the `postgres` crate's own runtime, where that is allowed: on this
/// thread, or when this thread is driving a tokio runtime (the tick's pipeline, saturate's
/// slots, most commands), on a scoped thread of its own, since a runtime cannot be started or
/// dropped from within another.
pub(crate) fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| match scope.spawn(f).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// One session: a client whose every blocking call, closing included, goes through
/// [`blocking`].
pub(crate) struct Session {
    /// `None` only while being dropped. Boxed: a `Ledger` stays near the size of an `SQLite` one.
    open: Option<Box<Open>>,
}

/// A session's client and what it keeps.
struct Open {
    client: Client,
    /// The statements this session has prepared, by their text. The client prepares a statement
    /// given as text on every call (a round trip to the server before the one that runs it);
    /// the ledger's statements are few and run again and again, so each is prepared once per
    /// session. A claim's transaction holds the spend rollup rows every claimer waits for, so
    /// each round trip saved inside it is saved for every claimer on every host.
    statements: HashMap<String, Statement>,
}

/// At most this many prepared statements per session; past it the cache starts again, so SQL
/// built at run time cannot grow it without bound.
const STATEMENTS_KEPT: usize = 512;

impl Session {
    pub(super) fn new(client: Client) -> Self {
        Self {
            open: Some(Box::new(Open {
                client,
                statements: HashMap::new(),
            })),
        }
    }

    fn open(&mut self) -> &mut Open {
        match self.open.as_deref_mut() {
            Some(open) => open,
            None => unreachable!("a session's client is taken only by its drop"),
        }
    }

    /// Runs `f` with `sql` prepared on this session (from the cache, or prepared now), on the
    /// thread [`blocking`] picks: one hop per call, the prepare included.
    fn with_statement<T: Send>(
        &mut self,
        sql: &str,
        f: impl FnOnce(&mut Client, &Statement) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, postgres::Error> {
        let Open { client, statements } = self.open();
        blocking(|| {
            let statement = if let Some(statement) = statements.get(sql) {
                statement.clone()
            } else {
                let statement = client.prepare(sql)?;
                if statements.len() >= STATEMENTS_KEPT {
                    statements.clear();
                }
                statements.insert(sql.to_owned(), statement.clone());
                statement
            };
            f(client, &statement)
        })
    }

    /// The client, for a call made inside [`blocking`].
    pub(super) fn client(&mut self) -> &mut Client {
        &mut self.open().client
    }

    /// A statement with no parameters and no rows (`BEGIN`, `COMMIT`, `SET`).
    pub(super) fn batch(&mut self, sql: &str) -> Result<(), postgres::Error> {
        let client = self.client();
        blocking(|| client.batch_execute(sql))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(open) = self.open.take() {
            blocking(move || drop(open));
        }
    }
}

impl PgExec for Session {
    fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, postgres::Error> {
        self.with_statement(sql, |client, statement| client.query(statement, params))
    }
    fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, postgres::Error> {
        self.with_statement(sql, |client, statement| client.execute(statement, params))
    }
}

impl PgExec for Transaction<'_> {
    fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, postgres::Error> {
        Transaction::query(self, sql, params)
    }
    fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, postgres::Error> {
        Transaction::execute(self, sql, params)
    }
}

/// What `Queries` holds for a Postgres ledger.
pub(super) type Pg<'c> = &'c RefCell<dyn PgExec + 'c>;

/// Rows of one statement.
pub(super) fn query(pg: Pg<'_>, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
    Ok(pg.borrow_mut().query(sql, params)?)
}

/// At most one row of one statement.
pub(super) fn query_opt(pg: Pg<'_>, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
    let mut rows = query(pg, sql, params)?;
    if rows.len() > 1 {
        return Err(LedgerError::Corrupt(format!(
            "expected at most one row, got {}: {sql}",
            rows.len()
        )));
    }
    Ok(rows.pop())
}

/// The one row of one statement.
pub(super) fn query_one(pg: Pg<'_>, sql: &str, params: Params<'_>) -> Result<Row> {
    query_opt(pg, sql, params)?
        .ok_or_else(|| LedgerError::Corrupt(format!("expected a row: {sql}")))
}

/// How many rows one statement changed.
pub(super) fn execute(pg: Pg<'_>, sql: &str, params: Params<'_>) -> Result<u64> {
    Ok(pg.borrow_mut().execute(sql, params)?)
}

/// Where the password comes from: never the URL (it would sit in oxi.toml and in logs).
#[derive(Debug, Clone, Default)]
pub(crate) struct Secret {
    /// The name of an environment variable holding the password.
    pub(crate) password_env: Option<String>,
}

/// A database to connect to, again: the URL (password-free) and where its password comes from.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) secret: Secret,
}

/// A transaction `Ledger::write` has begun and not yet ended. Dropped without [`end`] — `f`
/// panicked — it rolls the transaction back, so a session that outlives the panic never
/// commits half a write with the next one (`PostgreSQL` would take the next `BEGIN` as a
/// warning and go on in the same transaction).
///
/// [`end`]: OpenTransaction::end
pub(crate) struct OpenTransaction<'a> {
    session: &'a RefCell<Session>,
    ended: bool,
}

impl<'a> OpenTransaction<'a> {
    pub(crate) fn new(session: &'a RefCell<Session>) -> Self {
        Self {
            session,
            ended: false,
        }
    }

    /// The write ends normally: its caller commits or rolls back.
    pub(crate) fn end(mut self) {
        self.ended = true;
    }
}

impl Drop for OpenTransaction<'_> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        // A panic while the session was borrowed leaves it borrowed; the session is then
        // unusable anyway, and its drop closes the connection, which ends the transaction.
        if let Ok(mut session) = self.session.try_borrow_mut()
            && let Err(e) = session.batch("ROLLBACK")
        {
            tracing::warn!("rolling back a ledger write that panicked failed: {e}");
        }
    }
}

/// Connects to the database at `url` and sets the session up for the ledger.
pub(super) fn connect(url: &str, secret: &Secret) -> Result<Session> {
    blocking(|| connect_here(url, secret).map(Session::new))
}

fn connect_here(url: &str, secret: &Secret) -> Result<Client> {
    let mut config = conninfo::resolve(url, secret.password_env.as_deref(), &conninfo::ProcessEnv)
        .map_err(|source| LedgerError::PgConnInfo {
            url: redact(url),
            source,
        })?;
    config.application_name("oxi");
    let without_password = config.get_password().is_none();
    let mut client = config
        .connect(NoTls)
        .map_err(|source| LedgerError::PgConnect {
            url: redact(url),
            source,
            without_password,
        })?;
    // Every commit durable whatever the server's default; a lock held by another host longer
    // than the SQLite ledger's busy timeout is the same `Busy` error; the server's notices
    // ("already exists, skipping" of a migration another host ran) stay out of oxi's log.
    client.batch_execute(&format!(
        "SET synchronous_commit = on; SET lock_timeout = '{}ms'; SET client_min_messages = warning",
        BUSY_TIMEOUT.as_millis()
    ))?;
    Ok(client)
}

/// The URL with any password blanked, for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}{tail}")
        }
        _ => url.to_owned(),
    }
}

impl From<postgres::Error> for LedgerError {
    fn from(e: postgres::Error) -> Self {
        use postgres::error::SqlState;
        match e.code() {
            Some(code)
                if *code == SqlState::LOCK_NOT_AVAILABLE
                    || *code == SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == SqlState::T_R_DEADLOCK_DETECTED =>
            {
                LedgerError::Busy
            }
            _ => LedgerError::Postgres(e),
        }
    }
}

/// Runs `body` on a fresh sqlite ledger, then on a fresh Postgres one unless the Postgres
/// tests skip here: the unit tests of the crate-private ledger functions (the public ones are
/// tested the same way in tests/postgres_read.rs).
#[cfg(test)]
fn on_both_backends(test: &str, body: impl Fn(&mut super::Ledger)) {
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = super::Ledger::open(&dir.path().join("ledger.db")).unwrap();
    body(&mut sqlite);
    if let Some(cluster) = oxi_testkit::pg::cluster_or_skip(test) {
        let url = cluster.database(test).unwrap();
        body(&mut super::Ledger::open_postgres(&url, None).unwrap());
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_blanks_only_a_password() {
        assert_eq!(
            redact("postgres://oxi:hunter2@db/oxi"),
            "postgres://oxi:***@db/oxi"
        );
        assert_eq!(
            redact("postgres://oxi@/oxi?host=/run/pg"),
            "postgres://oxi@/oxi?host=/run/pg"
        );
    }
}
