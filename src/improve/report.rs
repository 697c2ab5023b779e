//! Auto-improve in `oxi report` and `oxi doctor`: what it emitted and what became of it over
//! the report's window, what it cost, and whether scans still run (`improve.stale_after`).

use serde::Serialize;

use crate::config::{Config, ImproveConfig};
use crate::ledger::{LedgerError, Queries};
use crate::money::micro_to_usd;

/// The report's improve section (present only with `[improve]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImproveSection {
    /// Scans that started in the window and finished.
    pub scans: u64,
    /// Proposals staged in the window, and what the operator did with them.
    pub emitted: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Accepted ÷ emitted (`None` when nothing was emitted).
    pub acceptance_ratio: Option<f64>,
    /// The improve role's gateway spend in the window (embeddings and judge).
    pub spend_usd: f64,
    /// When the latest scan finished (RFC 3339), whatever the window.
    pub last_scan_at: Option<String>,
    /// Why auto-improve is paused, while it is.
    pub paused: Option<String>,
    /// Set when no scan has finished within `improve.stale_after`: what to do about it.
    pub stale: Option<String>,
}

/// The section for proposals and spend since `from_ms`; `None` without `[improve]`.
///
/// # Errors
///
/// The ledger could not be read.
pub fn report_section(
    config: &Config,
    q: &Queries<'_>,
    from_ms: i64,
    now_ms: i64,
) -> Result<Option<ImproveSection>, LedgerError> {
    let Some(improve) = &config.improve else {
        return Ok(None);
    };
    let totals = q.improve_totals(from_ms)?;
    // Proposal counts stay far below 2^52, where f64 is exact.
    #[allow(clippy::cast_precision_loss)]
    let ratio = (totals.emitted > 0).then(|| totals.accepted as f64 / totals.emitted as f64);
    Ok(Some(ImproveSection {
        scans: totals.scans,
        emitted: totals.emitted,
        accepted: totals.accepted,
        rejected: totals.rejected,
        acceptance_ratio: ratio,
        spend_usd: micro_to_usd(totals.spend_microusd),
        last_scan_at: totals.last_scan_ms.map(crate::clock::rfc3339),
        paused: q.improve_paused()?,
        stale: staleness(improve, totals.last_scan_ms, now_ms),
    }))
}

/// The warning when no scan has finished within `improve.stale_after` of `now_ms`.
#[must_use]
pub fn staleness(
    improve: &ImproveConfig,
    last_scan_ms: Option<i64>,
    now_ms: i64,
) -> Option<String> {
    let limit = improve.stale_after.0;
    let limit_ms = i64::try_from(limit.as_millis()).unwrap_or(i64::MAX);
    let hint = "is `oxi improve scan` scheduled? `oxi init --schedule improve` prints the files";
    match last_scan_ms {
        None => Some(format!(
            "[improve] is set but no auto-improve scan has finished yet; {hint}"
        )),
        Some(at) if now_ms.saturating_sub(at) > limit_ms => Some(format!(
            "no auto-improve scan has finished for {} h (improve.stale_after {}); {hint}",
            now_ms.saturating_sub(at) / 3_600_000,
            if limit.as_secs().is_multiple_of(3600) {
                format!("{}h", limit.as_secs() / 3600)
            } else {
                humantime::format_duration(limit).to_string()
            }
        )),
        Some(_) => None,
    }
}

/// The section's rows for the text, Markdown and HTML report (section, metric, value).
#[must_use]
pub fn report_rows(section: Option<&ImproveSection>) -> Vec<(String, String, String)> {
    let Some(s) = section else {
        return Vec::new();
    };
    let row = |metric: &str, value: String| ("improve".to_owned(), metric.to_owned(), value);
    let mut rows = vec![
        row("scans", s.scans.to_string()),
        row("proposals emitted", s.emitted.to_string()),
        row("accepted", s.accepted.to_string()),
        row("rejected", s.rejected.to_string()),
        row(
            "acceptance ratio",
            s.acceptance_ratio
                .map_or("-".to_owned(), |r| format!("{:.0}%", r * 100.0)),
        ),
        row("spend", format!("${:.2}", s.spend_usd)),
        row(
            "last scan",
            s.last_scan_at.clone().unwrap_or_else(|| "never".to_owned()),
        ),
    ];
    if let Some(reason) = &s.paused {
        rows.push(row("paused", reason.clone()));
    }
    if let Some(warning) = &s.stale {
        rows.push(row("warning", warning.clone()));
    }
    rows
}
