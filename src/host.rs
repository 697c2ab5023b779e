//! This oxi host among those sharing a ledger: who it is (`[host]`), its heartbeat, which
//! hosts are alive, and whether a host can take a task whose routing rule requires labels.

use std::collections::BTreeMap;

use crate::clock::now_ms;
use crate::config::LoadedConfig;
use crate::ledger::{HostBeat, HostRow, Ledger, LedgerError};

/// A host whose last heartbeat is older than this, and which has no run with a live lease,
/// is not counted as alive. A tick started by cron every few minutes heartbeats at its start
/// and end; saturate every [`SATURATE_BEAT_EVERY`].
pub(crate) const LIVE_WINDOW_MS: i64 = 15 * 60 * 1000;

/// How often `oxi saturate` heartbeats (each heartbeat is one small synced write).
pub(crate) const SATURATE_BEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Who this process is, resolved once from `[host]` and the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) name: String,
    pub(crate) labels: Vec<String>,
    pub(crate) machine_id: String,
}

impl Identity {
    pub(crate) fn of(config: &LoadedConfig) -> Self {
        let name = config.config.host.resolved_name();
        Self {
            machine_id: machine_id().unwrap_or_else(|| format!("hostname:{}", hostname())),
            labels: config.config.host.normalized_labels(),
            name,
        }
    }

    /// True when this host has every label in `required`.
    pub(crate) fn can_take(&self, required: &[String]) -> bool {
        has_labels(&self.labels, required)
    }
}

fn has_labels(labels: &[String], required: &[String]) -> bool {
    required
        .iter()
        .all(|r| labels.iter().any(|l| l.eq_ignore_ascii_case(r)))
}

/// `/etc/machine-id` (systemd) or `/var/lib/dbus/machine-id`: what tells two machines with the
/// same hostname apart. `None` on systems without one (macOS).
fn machine_id() -> Option<String> {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// Records this host's heartbeat: its labels, pid, oxi version and the CLI versions its runs
/// last reported.
/// [`heartbeat`], unless this host (same machine, labels and oxi) beat less than `fresh` ago:
/// a tick every few seconds then pays one read, not a synced write (the live window is
/// [`LIVE_WINDOW_MS`], so a beat `fresh` old still says everything a new one would).
pub(crate) fn heartbeat_unless_fresh(
    ledger: &mut Ledger,
    me: &Identity,
    fresh: std::time::Duration,
) -> Result<(), LedgerError> {
    let now = now_ms();
    let fresh_ms = i64::try_from(fresh.as_millis()).unwrap_or(i64::MAX);
    let recent = ledger.read().hosts()?.into_iter().any(|h| {
        h.name == me.name
            && h.machine_id == me.machine_id
            && h.labels == me.labels
            && h.oxi_version == env!("CARGO_PKG_VERSION")
            && now.saturating_sub(h.last_heartbeat_ms) < fresh_ms
    });
    if recent {
        return Ok(());
    }
    heartbeat(ledger, me)
}

pub(crate) fn heartbeat(ledger: &mut Ledger, me: &Identity) -> Result<(), LedgerError> {
    let cli_versions: BTreeMap<String, String> = ledger.read().host_cli_versions(&me.name)?;
    let at_ms = now_ms();
    ledger.write(|q| {
        q.host_heartbeat(&HostBeat {
            name: &me.name,
            machine_id: &me.machine_id,
            labels: &me.labels,
            pid: std::process::id(),
            oxi_version: env!("CARGO_PKG_VERSION"),
            cli_versions: &cli_versions,
            at_ms,
        })
    })
}

/// Hosts alive now (see [`LIVE_WINDOW_MS`]).
pub(crate) fn live_hosts(ledger: &Ledger) -> Result<Vec<HostRow>, LedgerError> {
    let now = now_ms();
    Ok(ledger
        .read()
        .hosts()?
        .into_iter()
        .filter(|h| h.is_live(now, LIVE_WINDOW_MS))
        .collect())
}

/// Whether a task whose rule requires `required` can run here, and if not, whether it waits
/// for another live host or for none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Placement {
    Here,
    /// A live host with the labels exists; this host leaves the task to it.
    Elsewhere(String),
    /// No live host has the labels; the task waits with this reason.
    Nowhere(String),
}

/// Where a task whose rule `rule` requires `required` may run.
pub(crate) fn place(me: &Identity, live: &[HostRow], rule: &str, required: &[String]) -> Placement {
    if me.can_take(required) {
        return Placement::Here;
    }
    match live.iter().find(|h| has_labels(&h.labels, required)) {
        Some(host) => Placement::Elsewhere(host.name.clone()),
        None => Placement::Nowhere(format!(
            "no live host has the labels {} that routing rule {rule:?} requires (this host {:?} has [{}]); start oxi on such a host, or add the labels to its [host] labels",
            required.join(", "),
            me.name,
            me.labels.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, labels: &[&str]) -> HostRow {
        HostRow {
            name: name.to_owned(),
            machine_id: "m".to_owned(),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            pid: 1,
            oxi_version: "0".to_owned(),
            cli_versions: BTreeMap::new(),
            first_seen_ms: 0,
            last_heartbeat_ms: 0,
            running_jobs: 0,
            lease_until_ms: None,
        }
    }

    #[test]
    fn placement() {
        let me = Identity {
            name: "a".to_owned(),
            labels: vec!["linux".to_owned()],
            machine_id: "m".to_owned(),
        };
        let gpu = vec!["gpu".to_owned()];
        assert_eq!(place(&me, &[], "r", &[]), Placement::Here);
        assert_eq!(
            place(&me, &[host("b", &["gpu", "linux"])], "r", &gpu),
            Placement::Elsewhere("b".to_owned())
        );
        assert!(matches!(
            place(&me, &[host("b", &["macos"])], "r", &gpu),
            Placement::Nowhere(reason) if reason.contains("gpu") && reason.contains("\"r\"")
        ));
    }

    #[test]
    fn liveness() {
        let mut h = host("a", &[]);
        h.last_heartbeat_ms = 1_000;
        assert!(h.is_live(1_000 + LIVE_WINDOW_MS, LIVE_WINDOW_MS));
        assert!(!h.is_live(1_001 + LIVE_WINDOW_MS, LIVE_WINDOW_MS));
        h.lease_until_ms = Some(10 * LIVE_WINDOW_MS);
        assert!(h.is_live(2 * LIVE_WINDOW_MS, LIVE_WINDOW_MS));
    }
}
