//! Blocked workers on Postgres: the twins of `ledger/blocks.rs` (a block is a `kv` row per
//! worker) and the `kv` delete that the gateway's provider switch shares.

use super::{Pg, execute, query};
use crate::ledger::Result;

/// `(key, value)` of the `kv` rows whose key starts with `prefix`, by key in byte order (as
/// sqlite's BINARY collation orders them). `ILIKE`, as sqlite's `LIKE` ignores ASCII case.
pub(in crate::ledger) fn kv_with_prefix(pg: Pg<'_>, prefix: &str) -> Result<Vec<(String, String)>> {
    query(
        pg,
        "SELECT key, value FROM kv WHERE key ILIKE $1 || '%' ORDER BY key COLLATE \"C\"",
        &[&prefix],
    )?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}

/// Deletes the `kv` row of `key`; how many rows went (0 or 1).
pub(in crate::ledger) fn remove_kv(pg: Pg<'_>, key: &str) -> Result<u64> {
    execute(pg, "DELETE FROM kv WHERE key = $1", &[&key])
}
