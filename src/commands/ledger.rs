//! `oxi ledger migrate --to TARGET`: this ledger's rows copied into an empty ledger on the other
//! backend (the sqlite file into a postgres database, and back), then compared table by
//! table.

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde::Serialize;

use super::Context;
use crate::cli::LedgerMigrateArgs;
use crate::ledger::{CopySummary, Ledger};
use crate::output::{Format, json_string, write_stdout};
use crate::scheduler::lock;

/// Where `--to` points.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Postgres(String),
    Sqlite(PathBuf),
}

impl Target {
    fn parse(text: &str, ctx: &Context) -> Result<Self> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(Self::Postgres(text.to_owned()));
        }
        if let Some(path) = text.strip_prefix("sqlite:") {
            if path.is_empty() {
                bail!("--to sqlite: needs a path, e.g. --to sqlite:.oxi/ledger-copy.db");
            }
            return Ok(Self::Sqlite(ctx.cwd.join(path)));
        }
        bail!(
            "--to {text}: expected a postgres:// URL (e.g. postgres://oxi@db.internal/oxi) or sqlite:PATH"
        )
    }
}

/// What the command did.
#[derive(Debug, Serialize)]
struct Migrated {
    from: String,
    to: String,
    rows: u64,
    /// Rows by table, in copy order.
    tables: Vec<(String, u64)>,
    /// Every table (and the spend rollup the destination rebuilt) equal on both sides.
    verified: bool,
}

fn render(m: &Migrated, target: &Target) -> String {
    let next = match target {
        Target::Postgres(_) => format!(
            "to use it, set in oxi.toml:\n  [ledger]\n  url = \"{}\"\n",
            m.to
        ),
        Target::Sqlite(path) => format!(
            "to use it, stop oxi, move {} to .oxi/ledger.db and remove [ledger] url from oxi.toml\n",
            path.display()
        ),
    };
    format!(
        "copied {} row(s) in {} table(s) from {} to {}; every table compared equal\n{next}",
        m.rows,
        m.tables.len(),
        m.from,
        m.to
    )
}

pub(crate) fn migrate(ctx: &Context, args: &LedgerMigrateArgs) -> Result<()> {
    let config = ctx.config()?;
    let target = Target::parse(&args.to, ctx)?;
    // No tick or saturate writes to the source meanwhile: what it wrote after the snapshot
    // would not be in the copy.
    let _lock = match lock::acquire_for(&config) {
        Ok(lock) => lock,
        Err(lock::LockError::Held { holder, .. }) => bail!(
            "refusing to copy the ledger: {} is running on it; stop it first (nothing was copied)",
            lock::describe(holder.as_ref())
        ),
        Err(e) => return Err(e.into()),
    };
    let source = Ledger::open_existing_at(&config.ledger_at())?;
    let mut dest = match &target {
        Target::Postgres(url) => Ledger::open_postgres(url, args.password_env.as_deref())?,
        Target::Sqlite(path) => {
            if path.exists() {
                bail!(
                    "{} exists; choose a new file (a copy never goes into an existing file)",
                    path.display()
                );
            }
            Ledger::open(path)?
        }
    };
    let summary: CopySummary = source.copy_into(&mut dest)?;
    let (before, after) = (source.contents()?, dest.contents()?);
    if let Some((table, _)) = before.iter().find(|(t, rows)| after.get(*t) != Some(rows)) {
        bail!(
            "the copy in {} differs from the source in table {table}; do not use it (remove it and run again)",
            dest.path().display()
        );
    }
    let migrated = Migrated {
        from: source.path().display().to_string(),
        to: dest.path().display().to_string(),
        rows: summary.rows(),
        tables: summary.tables,
        verified: true,
    };
    let text = match ctx.global.format {
        Format::Json => json_string(&migrated)?,
        _ => render(&migrated, &target),
    };
    write_stdout(&text)?;
    Ok(())
}
