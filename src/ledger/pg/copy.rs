//! Copying a whole ledger between backends: `oxi ledger migrate --to` (SQLite into an empty
//! Postgres ledger, and back), and the Postgres ledger's backups, which are SQLite ledger files.
//!
//! The source is read in one snapshot (an SQLite read transaction; on Postgres a `REPEATABLE
//! READ` read-only transaction), so a copy taken while oxi runs is consistent. The destination
//! is written in one transaction: it ends with every row or none. Each table is copied by column
//! name (the two backends' column orders differ where Postgres's baseline folded several SQLite
//! migrations into one), and each value converted to the destination column's type: SQLite's
//! 0/1 flags become booleans and back, integers stay 64-bit, reals stay doubles, blobs bytes.
//!
//! Copied: every table that holds what happened. Not copied, because each backend derives them
//! itself: `schema_migrations` (each backend's own migrations and checksums), `task_states` and
//! `task_transitions` (the state machine, written by the migrations), and `spend_rollup` (the
//! destination's triggers rebuild it from `spend` and `gateway_calls` as those rows arrive, so
//! it comes out equal to the sums by construction; the test compares it too).

#![allow(clippy::doc_markdown)] // "SQLite" and "Postgres" are the engines' names here.

use std::collections::BTreeMap;

use postgres::types::ToSql;
use rusqlite::types::Value;

use crate::ledger::{Backend, Ledger, LedgerError, Result};

/// The tables a copy carries, parents before children (each table's foreign keys point only
/// at tables above it).
pub(in crate::ledger) const COPIED_TABLES: &[&str] = &[
    "tasks",
    "runs",
    "events",
    "spend",
    "approvals",
    "kv",
    "verify_results",
    "issue_tasks",
    "notify_cursor",
    "notify_outbox",
    "notifications",
    "gateway_calls",
    "hosts",
    "plans",
    "shadow_pairs",
    "worker_probes",
    "improve_candidates",
    "improve_scans",
    "improve_proposals",
    "improve_verdicts",
    "improve_source_failures",
    "improve_pauses",
    "improve_embeddings",
    "improve_decisions",
];

/// Tables each backend derives or writes itself (see the module's documentation).
const DERIVED_TABLES: &[&str] = &[
    "schema_migrations",
    "task_states",
    "task_transitions",
    "spend_rollup",
];

/// One value, whichever backend it came from.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Bool(bool),
}

/// One table's rows, by column name.
struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

/// What a copy carried, table by table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopySummary {
    /// Rows copied, by table, in copy order.
    pub tables: Vec<(String, u64)>,
}

impl CopySummary {
    /// Every row copied.
    #[must_use]
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

fn mismatch(table: &str, problem: String) -> LedgerError {
    LedgerError::CopyMismatch {
        table: table.to_owned(),
        problem,
    }
}

// --- SQLite ---------------------------------------------------------------------------------

fn sqlite_tables(conn: &rusqlite::Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
         ORDER BY name",
    )?;
    let names = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(names)
}

fn sqlite_read(conn: &rusqlite::Connection, table: &str) -> Result<Table> {
    let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\""))?;
    let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    let width = columns.len();
    let rows = stmt
        .query_map([], |r| {
            (0..width)
                .map(|i| {
                    Ok(match r.get::<_, Value>(i)? {
                        Value::Null => Cell::Null,
                        Value::Integer(n) => Cell::Int(n),
                        Value::Real(f) => Cell::Real(f),
                        Value::Text(s) => Cell::Text(s),
                        Value::Blob(b) => Cell::Blob(b),
                    })
                })
                .collect::<rusqlite::Result<Vec<Cell>>>()
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Table { columns, rows })
}

/// `INSERT INTO "table" ("a", "b") VALUES (?1, ?2)`, the numbered parameters marked by
/// `mark`: `?` for SQLite, `$` for PostgreSQL.
fn insert_sql(table: &str, columns: &[String], mark: char) -> String {
    let names = columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let marks = (1..=columns.len())
        .map(|i| format!("{mark}{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("INSERT INTO \"{table}\" ({names}) VALUES ({marks})")
}

fn sqlite_write(conn: &rusqlite::Connection, table: &str, data: &Table) -> Result<()> {
    let mut stmt = conn.prepare(&insert_sql(table, &data.columns, '?'))?;
    for row in &data.rows {
        let values: Vec<Value> = row
            .iter()
            .map(|cell| match cell {
                Cell::Null => Value::Null,
                Cell::Int(n) => Value::Integer(*n),
                Cell::Real(f) => Value::Real(*f),
                Cell::Text(s) => Value::Text(s.clone()),
                Cell::Blob(b) => Value::Blob(b.clone()),
                Cell::Bool(b) => Value::Integer(i64::from(*b)),
            })
            .collect();
        stmt.execute(rusqlite::params_from_iter(values))?;
    }
    Ok(())
}

fn sqlite_count(conn: &rusqlite::Connection, table: &str) -> Result<i64> {
    Ok(
        conn.query_row(&format!("SELECT COUNT(*) FROM \"{table}\""), [], |r| {
            r.get(0)
        })?,
    )
}

// --- Postgres -------------------------------------------------------------------------------

fn pg_tables(client: &mut impl postgres::GenericClient) -> Result<Vec<String>> {
    Ok(client
        .query(
            "SELECT table_name::TEXT FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
             ORDER BY 1",
            &[],
        )?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// The columns of `table` and their types, in the table's order.
fn pg_columns(
    client: &mut impl postgres::GenericClient,
    table: &str,
) -> Result<Vec<(String, String)>> {
    Ok(client
        .query(
            "SELECT column_name::TEXT, data_type::TEXT FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1
             ORDER BY ordinal_position",
            &[&table],
        )?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, postgres::Error>>()?)
}

fn pg_read(client: &mut impl postgres::GenericClient, table: &str) -> Result<Table> {
    let typed = pg_columns(client, table)?;
    let names = typed
        .iter()
        .map(|(c, _)| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut rows = Vec::new();
    for row in client.query(&format!("SELECT {names} FROM \"{table}\""), &[])? {
        let mut cells = Vec::with_capacity(typed.len());
        for (i, (column, kind)) in typed.iter().enumerate() {
            let cell = match kind.as_str() {
                "bigint" => row.try_get::<_, Option<i64>>(i)?.map(Cell::Int),
                "integer" => row
                    .try_get::<_, Option<i32>>(i)?
                    .map(|n| Cell::Int(i64::from(n))),
                "boolean" => row.try_get::<_, Option<bool>>(i)?.map(Cell::Bool),
                "double precision" => row.try_get::<_, Option<f64>>(i)?.map(Cell::Real),
                "text" => row.try_get::<_, Option<String>>(i)?.map(Cell::Text),
                "bytea" => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Cell::Blob),
                other => {
                    return Err(mismatch(
                        table,
                        format!("column {column} has type {other}, which a copy does not carry"),
                    ));
                }
            };
            cells.push(cell.unwrap_or(Cell::Null));
        }
        rows.push(cells);
    }
    Ok(Table {
        columns: typed.into_iter().map(|(c, _)| c).collect(),
        rows,
    })
}

/// `cell` as a parameter for a column of Postgres type `kind`.
fn pg_param(table: &str, column: &str, kind: &str, cell: &Cell) -> Result<Box<dyn ToSql + Sync>> {
    let wrong = || {
        mismatch(
            table,
            format!("column {column} ({kind}) cannot hold the value {cell:?}"),
        )
    };
    Ok(match (kind, cell) {
        ("bigint", Cell::Null) => Box::new(None::<i64>),
        ("bigint", Cell::Int(n)) => Box::new(*n),
        ("bigint", Cell::Bool(b)) => Box::new(i64::from(*b)),
        ("integer", Cell::Null) => Box::new(None::<i32>),
        ("integer", Cell::Int(n)) => Box::new(i32::try_from(*n).map_err(|_| wrong())?),
        ("boolean", Cell::Null) => Box::new(None::<bool>),
        ("boolean", Cell::Int(n)) => Box::new(*n != 0),
        ("boolean", Cell::Bool(b)) => Box::new(*b),
        ("double precision", Cell::Null) => Box::new(None::<f64>),
        ("double precision", Cell::Real(f)) => Box::new(*f),
        #[allow(clippy::cast_precision_loss)] // a REAL column holding an integer: SQLite's own
        // affinity would have stored it as this same double.
        ("double precision", Cell::Int(n)) => Box::new(*n as f64),
        ("text", Cell::Null) => Box::new(None::<String>),
        ("text", Cell::Text(s)) => Box::new(s.clone()),
        ("bytea", Cell::Null) => Box::new(None::<Vec<u8>>),
        ("bytea", Cell::Blob(b)) => Box::new(b.clone()),
        _ => return Err(wrong()),
    })
}

fn pg_write(client: &mut impl postgres::GenericClient, table: &str, data: &Table) -> Result<()> {
    let typed: BTreeMap<String, String> = pg_columns(client, table)?.into_iter().collect();
    let kinds = data
        .columns
        .iter()
        .map(|c| {
            typed
                .get(c)
                .cloned()
                .ok_or_else(|| mismatch(table, format!("the destination has no column {c}")))
        })
        .collect::<Result<Vec<_>>>()?;
    // Ids come from the source: an identity column takes them as given (BY DEFAULT).
    let stmt = client.prepare(&insert_sql(table, &data.columns, '$'))?;
    for row in &data.rows {
        let params = row
            .iter()
            .zip(data.columns.iter().zip(&kinds))
            .map(|(cell, (column, kind))| pg_param(table, column, kind, cell))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(AsRef::as_ref).collect();
        client.execute(&stmt, &refs)?;
    }
    // The identity sequences go on after the largest id copied, so the next insert does not
    // collide with a copied row.
    if typed.get("id").is_some_and(|k| k == "bigint") {
        client.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'),
                        COALESCE((SELECT MAX(id) FROM \"{table}\"), 0) + 1, false)
                 WHERE pg_get_serial_sequence('\"{table}\"', 'id') IS NOT NULL"
            ),
            &[],
        )?;
    }
    Ok(())
}

fn pg_count(client: &mut impl postgres::GenericClient, table: &str) -> Result<i64> {
    Ok(client
        .query_one(&format!("SELECT COUNT(*) FROM \"{table}\""), &[])?
        .try_get(0)?)
}

// --- Both -----------------------------------------------------------------------------------

/// A source's tables must all be known: a table this oxi does not copy would be lost silently.
fn check_known(tables: &[String]) -> Result<()> {
    for table in tables {
        if !COPIED_TABLES.contains(&table.as_str()) && !DERIVED_TABLES.contains(&table.as_str()) {
            return Err(mismatch(
                table,
                "this oxi does not know the table (written by a newer oxi?); nothing was copied"
                    .to_owned(),
            ));
        }
    }
    Ok(())
}

/// Every copied table of `ledger`, read in one snapshot.
fn read_all(ledger: &Ledger) -> Result<Vec<(&'static str, Table)>> {
    match &ledger.backend {
        Backend::Sqlite { conn, .. } => {
            // One read transaction: a snapshot while writers go on (WAL).
            let tx = conn.unchecked_transaction()?;
            check_known(&sqlite_tables(&tx)?)?;
            let tables = COPIED_TABLES
                .iter()
                .map(|t| Ok((*t, sqlite_read(&tx, t)?)))
                .collect::<Result<Vec<_>>>()?;
            tx.commit()?;
            Ok(tables)
        }
        Backend::Pg { client, .. } => {
            let mut session = client.borrow_mut();
            let client = session.client();
            super::blocking(|| {
                let mut tx = client
                    .build_transaction()
                    .isolation_level(postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()?;
                check_known(&pg_tables(&mut tx)?)?;
                let tables = COPIED_TABLES
                    .iter()
                    .map(|t| Ok((*t, pg_read(&mut tx, t)?)))
                    .collect::<Result<Vec<_>>>()?;
                tx.commit()?;
                Ok(tables)
            })
        }
    }
}

/// Writes `tables` into `ledger` in one transaction, after checking it holds none of their
/// rows.
fn write_all(ledger: &mut Ledger, tables: &[(&'static str, Table)]) -> Result<()> {
    let shown = ledger.path.display().to_string();
    match &mut ledger.backend {
        Backend::Sqlite { conn, .. } => {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for (table, data) in tables {
                let rows = sqlite_count(&tx, table)?;
                if rows > 0 {
                    return Err(not_empty(&shown, table, rows));
                }
                sqlite_write(&tx, table, data)?;
            }
            tx.commit()?;
        }
        Backend::Pg { client, .. } => {
            let mut session = client.borrow_mut();
            let client = session.client();
            super::blocking(|| {
                let mut tx = client.transaction()?;
                pg_write_all(&mut tx, &shown, tables)?;
                Ok::<_, LedgerError>(tx.commit()?)
            })?;
        }
    }
    Ok(())
}

fn not_empty(ledger: &str, table: &str, rows: i64) -> LedgerError {
    LedgerError::NotEmpty {
        ledger: ledger.to_owned(),
        table: table.to_owned(),
        rows,
    }
}

fn pg_write_all(
    tx: &mut postgres::Transaction<'_>,
    shown: &str,
    tables: &[(&'static str, Table)],
) -> Result<()> {
    for (table, data) in tables {
        let rows = pg_count(tx, table)?;
        if rows > 0 {
            return Err(not_empty(shown, table, rows));
        }
        pg_write(tx, table, data)?;
    }
    Ok(())
}

/// Replaces every row of the Postgres ledger `to` with those of `from`, in one transaction: it
/// ends with all of `from` or with `to` as it was. The append-only trail refuses TRUNCATE by a
/// trigger; that trigger is switched off for this one statement, inside the transaction, so no
/// other session ever sees it off.
pub(in crate::ledger) fn replace_all(from: &Ledger, to: &mut Ledger) -> Result<CopySummary> {
    let tables = read_all(from)?;
    let shown = to.path.display().to_string();
    let Backend::Pg { client, .. } = &mut to.backend else {
        return Err(mismatch(
            "*",
            "replacing in place is for a Postgres ledger; an SQLite one is replaced as a file"
                .to_owned(),
        ));
    };
    let mut session = client.borrow_mut();
    let client = session.client();
    let all = COPIED_TABLES
        .iter()
        .chain(&["spend_rollup"])
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    super::blocking(|| {
        let mut tx = client.transaction()?;
        tx.batch_execute(&format!(
            "ALTER TABLE events DISABLE TRIGGER events_no_truncate;
             TRUNCATE {all} RESTART IDENTITY;
             ALTER TABLE events ENABLE TRIGGER events_no_truncate;"
        ))?;
        pg_write_all(&mut tx, &shown, &tables)?;
        Ok::<_, LedgerError>(tx.commit()?)
    })?;
    Ok(summary(&tables))
}

fn summary(tables: &[(&'static str, Table)]) -> CopySummary {
    CopySummary {
        tables: tables
            .iter()
            .map(|(t, data)| ((*t).to_owned(), data.rows.len() as u64))
            .collect(),
    }
}

impl Ledger {
    /// Copies every row of this ledger into `to`, which must be empty (freshly created, on
    /// either backend): one consistent snapshot of this one, written in one transaction there.
    ///
    /// # Errors
    /// [`LedgerError::NotEmpty`] when `to` has rows (nothing was written),
    /// [`LedgerError::CopyMismatch`] when a table or value does not fit the other backend's
    /// schema, or either ledger's error.
    pub fn copy_into(&self, to: &mut Ledger) -> Result<CopySummary> {
        let tables = read_all(self)?;
        write_all(to, &tables)?;
        Ok(summary(&tables))
    }

    /// Every copied table and the rollup, each row as text in one backend-neutral form (flags
    /// as 0/1), rows sorted: two ledgers with equal contents give equal maps. For checking a
    /// copy, and the tests that prove it lossless.
    ///
    /// # Errors
    /// The ledger's, when it cannot be read.
    pub fn contents(&self) -> Result<BTreeMap<String, Vec<Vec<String>>>> {
        let mut tables = read_all(self)?;
        let rollup = match &self.backend {
            Backend::Sqlite { conn, .. } => sqlite_read(conn, "spend_rollup")?,
            Backend::Pg { client, .. } => {
                let mut session = client.borrow_mut();
                let client = session.client();
                super::blocking(|| pg_read(client, "spend_rollup"))?
            }
        };
        tables.push(("spend_rollup", rollup));
        Ok(tables
            .into_iter()
            .map(|(name, table)| (name.to_owned(), canonical(&table)))
            .collect())
    }
}

/// `table`'s rows as text, columns in name order, rows sorted.
fn canonical(table: &Table) -> Vec<Vec<String>> {
    let mut order: Vec<usize> = (0..table.columns.len()).collect();
    order.sort_by(|a, b| table.columns[*a].cmp(&table.columns[*b]));
    let mut rows: Vec<Vec<String>> = table
        .rows
        .iter()
        .map(|row| {
            order
                .iter()
                .map(|i| {
                    let text = match &row[*i] {
                        Cell::Null => "NULL".to_owned(),
                        Cell::Int(n) => n.to_string(),
                        Cell::Bool(b) => i64::from(*b).to_string(),
                        Cell::Real(f) => format!("{f:?}"),
                        Cell::Text(s) => format!("{s:?}"),
                        Cell::Blob(b) => format!("x{b:02x?}"),
                    };
                    format!("{}={text}", table.columns[*i])
                })
                .collect()
        })
        .collect();
    rows.sort();
    rows
}
