//! SIGINT and SIGTERM as stop requests, one request per stop however many copies arrive.
//!
//! The first request stops oxi's runs cleanly; a person's second one (a second Ctrl-C) is
//! taken as "now". But one stop often arrives twice: `timeout(1)` signals its command and then
//! its whole process group, oxi included; `kill -TERM -PGID` and a supervisor stopping a
//! process tree do the same. Counted as two, that copy ended `oxi tick` at once, leaving its
//! run marked running for the next tick to reap. A signal within [`SAME_STOP_WITHIN`] of the
//! request before it is that request's copy, not a new one.

use std::time::{Duration, Instant};

use tokio::signal::unix::{Signal, SignalKind, signal};

/// How close a stop signal must follow the last request to be its copy: far longer than the
/// microseconds between the copies a group signal delivers, far shorter than a person takes
/// to press Ctrl-C again.
pub(crate) const SAME_STOP_WITHIN: Duration = Duration::from_millis(250);

/// The process's stop signals, from the moment it is made.
pub(crate) struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    last: Option<Instant>,
}

impl StopSignals {
    /// Listens for SIGINT and SIGTERM (inside a tokio runtime).
    ///
    /// # Errors
    /// When the signal handlers cannot be installed.
    pub(crate) fn listen() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            last: None,
        })
    }

    /// The next stop request: the next SIGINT or SIGTERM that is not a copy of the last one.
    /// Cancel-safe: a request is recorded only when it is returned.
    pub(crate) async fn next(&mut self) {
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
            let now = Instant::now();
            if !is_copy(self.last, now) {
                self.last = Some(now);
                return;
            }
        }
    }
}

/// Whether a stop signal at `now` is a copy of the request made at `last`.
fn is_copy(last: Option<Instant>, now: Instant) -> bool {
    last.is_some_and(|at| now.saturating_duration_since(at) < SAME_STOP_WITHIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_soon_after_a_request_is_its_copy_and_later_a_new_request() {
        let first = Instant::now();
        assert!(!is_copy(None, first));
        assert!(is_copy(Some(first), first + Duration::from_millis(1)));
        assert!(is_copy(
            Some(first),
            first + SAME_STOP_WITHIN - Duration::from_millis(1)
        ));
        assert!(!is_copy(Some(first), first + SAME_STOP_WITHIN));
        assert!(!is_copy(Some(first), first + Duration::from_secs(2)));
    }
}
