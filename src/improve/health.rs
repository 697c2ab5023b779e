//! Whether auto-improve is worth its noise: accepted ÷ emitted proposals in each of the last
//! two 7-day windows. Both below `improve.acceptance_ratio_threshold` → auto-improve pauses
//! itself (an `improve_paused` event with the figures) until `oxi improve unpause`. A window
//! with nothing emitted says nothing and never pauses; windows start after the last unpause,
//! so the proposals that caused a pause do not pause it again.

use crate::config::ImproveConfig;
use crate::ledger::events::{AcceptanceWindow, ImprovePaused};
use crate::ledger::{Event, Ledger, LedgerError, NewEvent};

const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;

/// Checks the two windows ending at `now_ms`; pauses (and returns the reason) when both are
/// below the threshold.
pub(super) fn check(
    ledger: &mut Ledger,
    improve: &ImproveConfig,
    actor: &str,
    now_ms: i64,
) -> Result<Option<String>, LedgerError> {
    let floor = ledger.read().improve_unpaused_at()?.unwrap_or(i64::MIN);
    let mut windows = Vec::new();
    for back in [2, 1] {
        let from_ms = (now_ms - back * WEEK_MS).max(floor);
        let to_ms = now_ms - (back - 1) * WEEK_MS;
        let (emitted, accepted) = if from_ms < to_ms {
            ledger.read().improve_window(from_ms, to_ms)?
        } else {
            (0, 0)
        };
        windows.push(AcceptanceWindow {
            from_ms,
            to_ms,
            emitted,
            accepted,
        });
    }
    let threshold = improve.acceptance_ratio_threshold;
    // Proposal counts stay far below 2^52, where f64 is exact.
    #[allow(clippy::cast_precision_loss)]
    let low =
        |w: &AcceptanceWindow| w.emitted > 0 && (w.accepted as f64 / w.emitted as f64) < threshold;
    if !windows.iter().all(low) {
        return Ok(None);
    }
    let figures: Vec<String> = windows
        .iter()
        .map(|w| format!("{}/{}", w.accepted, w.emitted))
        .collect();
    let reason = format!(
        "accepted ÷ emitted proposals {} in the last two 7-day windows, both below improve.acceptance_ratio_threshold {threshold}",
        figures.join(" and ")
    );
    ledger.write(|q| {
        q.set_improve_paused(true, &reason, actor, now_ms)?;
        q.append_event(&NewEvent {
            at_ms: now_ms,
            task_id: None,
            run_id: None,
            actor,
            event: Event::ImprovePaused(ImprovePaused {
                windows: windows.clone(),
                threshold,
                reason: reason.clone(),
            }),
        })?;
        Ok(())
    })?;
    Ok(Some(reason))
}
