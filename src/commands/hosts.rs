//! `oxi hosts`: every host that heartbeat into this ledger — alive or not, its last
//! heartbeat, its running jobs, labels, oxi and CLI versions.

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::host::{Identity, LIVE_WINDOW_MS};
use crate::ledger::{HostRow, Ledger};
use crate::output::{Format, Grid, json_string, write_stdout};

/// One row of `oxi hosts --format json`. Field names are a documented interface.
#[derive(Debug, Serialize)]
struct HostLine<'a> {
    name: &'a str,
    /// A heartbeat within the live window, or a run with an unexpired lease.
    live: bool,
    /// This is the host running the command (same name and machine).
    this_host: bool,
    last_heartbeat: String,
    last_heartbeat_ms: i64,
    running_jobs: u32,
    labels: &'a [String],
    oxi_version: &'a str,
    cli_versions: &'a std::collections::BTreeMap<String, String>,
    pid: u32,
    machine_id: &'a str,
}

fn ago(now_ms: i64, at_ms: i64) -> String {
    let secs = u64::try_from((now_ms - at_ms) / 1000).unwrap_or(0);
    let rounded = if secs >= 3600 { secs - secs % 60 } else { secs };
    format!(
        "{} ago",
        humantime::format_duration(std::time::Duration::from_secs(rounded))
    )
}

fn render(lines: &[HostLine<'_>], format: Format, now_ms: i64) -> String {
    if lines.is_empty() {
        return "no host has heartbeat yet (`oxi tick` or `oxi saturate` records this one)\n"
            .to_owned();
    }
    let mut grid = Grid::new([
        "HOST",
        "LIVE",
        "LAST HEARTBEAT",
        "RUNNING",
        "LABELS",
        "OXI",
        "CLIS",
    ]);
    for line in lines {
        let name = if line.this_host {
            format!("{} (this host)", line.name)
        } else {
            line.name.to_owned()
        };
        let clis: Vec<String> = line
            .cli_versions
            .iter()
            .map(|(worker, version)| format!("{worker} {version}"))
            .collect();
        grid.row([
            name,
            if line.live { "yes" } else { "no" }.to_owned(),
            ago(now_ms, line.last_heartbeat_ms),
            line.running_jobs.to_string(),
            if line.labels.is_empty() {
                "-".to_owned()
            } else {
                line.labels.join(", ")
            },
            line.oxi_version.to_owned(),
            if clis.is_empty() {
                "-".to_owned()
            } else {
                clis.join(", ")
            },
        ]);
    }
    let live = lines.iter().filter(|l| l.live).count();
    format!(
        "{}\n{} host(s), {live} live\n",
        grid.render(format).trim_end(),
        lines.len()
    )
}

pub(crate) fn run(ctx: &Context) -> Result<()> {
    let config = ctx.config()?;
    let ledger = Ledger::open_existing_at(&config.ledger_at())?;
    let me = Identity::of(&config);
    let hosts: Vec<HostRow> = ledger.read().hosts()?;
    let now = crate::clock::now_ms();
    let lines: Vec<HostLine<'_>> = hosts
        .iter()
        .map(|h| HostLine {
            name: &h.name,
            live: h.is_live(now, LIVE_WINDOW_MS),
            this_host: h.name == me.name && h.machine_id == me.machine_id,
            last_heartbeat: crate::clock::rfc3339(h.last_heartbeat_ms),
            last_heartbeat_ms: h.last_heartbeat_ms,
            running_jobs: h.running_jobs,
            labels: &h.labels,
            oxi_version: &h.oxi_version,
            cli_versions: &h.cli_versions,
            pid: h.pid,
            machine_id: &h.machine_id,
        })
        .collect();
    let text = match ctx.global.format {
        Format::Json => json_string(&lines)?,
        format => render(&lines, format, now),
    };
    write_stdout(&text)?;
    Ok(())
}
