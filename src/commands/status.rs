//! `oxi status`: counts by state, spend against caps, the killswitch. Reads only indexed
//! aggregates (tasks by state, spend by day and month); it never scans the event trail.

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::cli::StatusArgs;
use crate::clock;
use crate::config::LoadedConfig;
use crate::ledger::{Killswitch, Ledger, TaskState};
use crate::money::{MicroUsd, format_usd, micro_to_usd, usd_to_micro};
use crate::output::{Format, Grid, json_string, write_stdout};

/// `oxi status --format json`. Field names are a documented interface.
#[derive(Debug, Serialize)]
pub struct Status {
    pub repo_root: String,
    pub mode: String,
    pub paused: bool,
    pub killswitch: Option<Killswitch>,
    pub tasks: std::collections::BTreeMap<String, u64>,
    pub tasks_total: u64,
    pub spend: SpendStatus,
    pub events: i64,
    pub ledger: String,
    pub schema_version: i64,
    /// The hosts that heartbeat into this ledger (only `--host`'s with the flag).
    pub(crate) hosts: Vec<HostStatus>,
    /// `--host`: the task counts are of the tasks whose latest run this host started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_filter: Option<String>,
    /// Pull requests whose merge GitHub refused (branch protection, a conflict, a merge method
    /// the repository does not allow), with GitHub's reason: they wait for a person.
    pub(crate) held_merges: Vec<HeldMerge>,
}

/// One host in `oxi status`.
#[derive(Debug, Serialize)]
pub(crate) struct HostStatus {
    pub(crate) name: String,
    pub(crate) live: bool,
    pub(crate) running_jobs: u32,
    pub(crate) last_heartbeat_ms: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct HeldMerge {
    task_id: String,
    pr_number: u64,
    reason: String,
    since: String,
}

/// The held merges, read only when some task is delivered (status stays an aggregate read).
fn held_merges(ledger: &Ledger, delivered: u64) -> Result<Vec<HeldMerge>> {
    if delivered == 0 {
        return Ok(Vec::new());
    }
    let mut held = Vec::new();
    for task in ledger.read().tasks()? {
        if let Some(hold) = crate::pipeline::deliver::current_merge_hold(ledger, &task)? {
            held.push(HeldMerge {
                pr_number: task.pr_number.unwrap_or_default(),
                task_id: task.spec.id,
                reason: hold.reason,
                since: clock::rfc3339(hold.at_ms),
            });
        }
    }
    Ok(held)
}

#[derive(Debug, Serialize)]
pub struct SpendStatus {
    pub day: String,
    pub month: String,
    pub day_spent_usd: f64,
    pub day_reserved_usd: f64,
    pub daily_cap_usd: f64,
    pub daily_soft_warn_usd: f64,
    pub soft_warn_reached: bool,
    pub month_spent_usd: f64,
    pub month_reserved_usd: f64,
    pub monthly_cap_usd: f64,
}

pub fn collect(
    config: &LoadedConfig,
    ledger: &Ledger,
    now_ms: i64,
    host: Option<&str>,
) -> Result<Status> {
    let q = ledger.read();
    let counts = match host {
        None => q.task_counts()?,
        Some(name) => {
            let hosts = q.task_hosts()?;
            let mut counts = std::collections::BTreeMap::new();
            for task in q.tasks()? {
                if hosts.get(&task.spec.id).is_some_and(|h| h == name) {
                    *counts.entry(task.state).or_insert(0) += 1;
                }
            }
            counts
        }
    };
    let hosts = q
        .hosts()?
        .into_iter()
        .filter(|h| host.is_none_or(|name| h.name == name))
        .map(|h| HostStatus {
            live: h.is_live(now_ms, crate::host::LIVE_WINDOW_MS),
            running_jobs: h.running_jobs,
            last_heartbeat_ms: h.last_heartbeat_ms,
            name: h.name,
        })
        .collect();
    let day = clock::day_of(now_ms);
    let month = clock::month_of(now_ms);
    let spend = q.spend_totals(&day, &month)?;
    let caps = &config.config.caps;
    let killswitch = q.killswitch()?;
    Ok(Status {
        repo_root: config.repo_root.display().to_string(),
        mode: config.config.run.mode.to_string(),
        paused: killswitch.as_ref().is_some_and(|k| k.paused),
        killswitch,
        tasks_total: counts.values().sum(),
        tasks: counts
            .iter()
            .map(|(state, n)| (state.as_str().to_owned(), *n))
            .collect(),
        spend: SpendStatus {
            soft_warn_reached: spend.day_spent + spend.day_reserved
                >= usd_to_micro(caps.daily_soft_warn_usd),
            day,
            month,
            day_spent_usd: micro_to_usd(spend.day_spent),
            day_reserved_usd: micro_to_usd(spend.day_reserved),
            daily_cap_usd: caps.daily_usd,
            daily_soft_warn_usd: caps.daily_soft_warn_usd,
            month_spent_usd: micro_to_usd(spend.month_spent),
            month_reserved_usd: micro_to_usd(spend.month_reserved),
            monthly_cap_usd: caps.monthly_usd,
        },
        events: q.event_count()?,
        ledger: ledger.path().display().to_string(),
        schema_version: q.schema_version()?,
        hosts,
        host_filter: host.map(str::to_owned),
        held_merges: held_merges(
            ledger,
            counts.get(&TaskState::Delivered).copied().unwrap_or(0),
        )?,
    })
}

pub fn run(ctx: &Context, args: &StatusArgs) -> Result<()> {
    let config = ctx.config()?;
    let ledger = Ledger::open_existing_at(&config.ledger_at())?;
    super::warn_if_roadmap_changed(&config, &ledger);
    let status = collect(&config, &ledger, clock::now_ms(), args.host.as_deref())?;
    let text = match ctx.global.format {
        Format::Json => json_string(&status)?,
        format => render(&status, format),
    };
    write_stdout(&text)?;
    Ok(())
}

fn usd(value: f64) -> MicroUsd {
    usd_to_micro(value)
}

pub fn render(status: &Status, format: Format) -> String {
    let mut grid = Grid::new(["", ""]);
    grid.row(["mode", status.mode.as_str()]);
    let killswitch = match &status.killswitch {
        Some(k) if k.paused => format!(
            "PAUSED by {} at {}{}",
            k.by,
            clock::rfc3339(k.at_ms),
            k.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        _ => "off (dispatch allowed)".to_owned(),
    };
    grid.row(["killswitch".to_owned(), killswitch]);
    let mut tasks: Vec<String> = TaskState::ALL
        .iter()
        .filter_map(|s| status.tasks.get(s.as_str()).map(|n| format!("{s} {n}")))
        .collect();
    if tasks.is_empty() {
        tasks.push(match &status.host_filter {
            Some(host) => format!("none has run on {host}"),
            None => "none (run `oxi ingest`)".to_owned(),
        });
    }
    grid.row([
        match &status.host_filter {
            Some(host) => format!("tasks on {host}"),
            None => "tasks".to_owned(),
        },
        format!("{} total: {}", status.tasks_total, tasks.join(", ")),
    ]);
    let s = &status.spend;
    let warn = if s.soft_warn_reached {
        " — soft warning reached"
    } else {
        ""
    };
    grid.row([
        format!("spend {}", s.day),
        format!(
            "{} spent + {} reserved of {} daily cap (warn at {}){warn}",
            format_usd(usd(s.day_spent_usd)),
            format_usd(usd(s.day_reserved_usd)),
            format_usd(usd(s.daily_cap_usd)),
            format_usd(usd(s.daily_soft_warn_usd)),
        ),
    ]);
    grid.row([
        format!("spend {}", s.month),
        format!(
            "{} spent + {} reserved of {} monthly cap",
            format_usd(usd(s.month_spent_usd)),
            format_usd(usd(s.month_reserved_usd)),
            format_usd(usd(s.monthly_cap_usd)),
        ),
    ]);
    if !status.hosts.is_empty() || status.host_filter.is_some() {
        let hosts: Vec<String> = status
            .hosts
            .iter()
            .map(|h| {
                format!(
                    "{} ({}, {} running)",
                    h.name,
                    if h.live { "live" } else { "not seen lately" },
                    h.running_jobs
                )
            })
            .collect();
        grid.row([
            "hosts".to_owned(),
            if hosts.is_empty() {
                "none by that name (`oxi hosts` lists them)".to_owned()
            } else {
                hosts.join(", ")
            },
        ]);
    }
    for held in &status.held_merges {
        grid.row([
            "merge held".to_owned(),
            format!(
                "{} #{} since {}: {} — fix it on GitHub, then `oxi approve {} --merge`",
                held.task_id, held.pr_number, held.since, held.reason, held.task_id
            ),
        ]);
    }
    grid.row(["events".to_owned(), status.events.to_string()]);
    grid.row(["ledger".to_owned(), status.ledger.clone()]);
    let mut text = grid.render(format);
    if format == Format::Table {
        // The header row of a key/value grid is empty: drop it.
        text = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    }
    text
}
