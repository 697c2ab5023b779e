//! Whether CI has spoken on a pull request's head. A check can register late (a CI service
//! that starts after the others finished, a workflow queued behind others), so oxi does not
//! judge too early: a check seen on an earlier head of the same pull request is awaited on the
//! new one, and a head with no check or status at all is "no CI" only once nothing registered
//! for [`SETTLE_MS`] after oxi first saw it.

use std::collections::BTreeSet;

use crate::clock::now_ms;
use crate::github::CiEntry;
use crate::ledger::{Ledger, LedgerError};

/// How long a new head may wait for its checks to register.
pub(super) const SETTLE_MS: i64 = 10 * 60 * 1000;

/// CI on one head commit.
pub(super) enum Ci {
    /// Something is running, or may still register.
    Waiting,
    /// Every check and status finished.
    Done(Vec<CiEntry>),
    /// Nothing registered on the head for [`SETTLE_MS`]: the repository runs no CI on it.
    None,
}

impl Ci {
    /// Nothing stands in the way of a merge.
    pub(super) fn passed(&self) -> bool {
        match self {
            Ci::Waiting => false,
            Ci::Done(entries) => entries.iter().all(|e| !e.failed),
            Ci::None => true,
        }
    }
}

/// Judges `entries` on `sha`, the head of pull request `number`, remembering (in the ledger's
/// key-value table) when oxi first saw the head and every check name seen on the pull request.
pub(super) fn judge(
    ledger: &mut Ledger,
    number: u64,
    sha: &str,
    entries: Vec<CiEntry>,
) -> Result<Ci, LedgerError> {
    let now = now_ms();
    let wait_key = format!("ci_wait:{number}:{sha}");
    let first_seen = match ledger
        .read()
        .kv_get(&wait_key)?
        .and_then(|v| v.parse().ok())
    {
        Some(at) => at,
        None => {
            ledger.write(|q| q.kv_set(&wait_key, &now.to_string(), now))?;
            now
        }
    };
    let settled = now.saturating_sub(first_seen) >= SETTLE_MS;
    let names_key = format!("ci_names:{number}");
    let mut names: BTreeSet<String> = ledger
        .read()
        .kv_get(&names_key)?
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default();
    let missing = names
        .iter()
        .any(|name| !entries.iter().any(|e| &e.name == name));
    let known = names.len();
    names.extend(entries.iter().map(|e| e.name.clone()));
    if names.len() != known {
        let text = serde_json::to_string(&names).unwrap_or_default();
        ledger.write(|q| q.kv_set(&names_key, &text, now))?;
    }
    Ok(if entries.iter().any(|e| !e.done) {
        Ci::Waiting
    } else if entries.is_empty() {
        if settled { Ci::None } else { Ci::Waiting }
    } else if missing && !settled {
        Ci::Waiting
    } else {
        Ci::Done(entries)
    })
}
