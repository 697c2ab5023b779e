//! `oxi notify test` (a sample to each sink, each result printed) and `oxi notify status`
//! (each sink's queue and the latest attempts, to see that notifications are failing and why).

use anyhow::Result;
use serde::Serialize;

use super::{Context, parent_env};
use crate::cli::{NotifyCommand, NotifyStatusArgs, NotifyTestArgs};
use crate::clock::rfc3339;
use crate::ledger::{Attempt, SinkCounts};
use crate::output::{Format, Grid, json_string, write_stdout};
use crate::{ExitWith, exit};

pub fn run(ctx: &Context, command: &NotifyCommand) -> Result<()> {
    match command {
        NotifyCommand::Test(args) => test(ctx, args),
        NotifyCommand::Status(args) => status(ctx, args),
    }
}

const NO_SINKS: &str =
    "no [[notify.sinks]] in oxi.toml; docs/notifications.md shows how to add one\n";

fn test(ctx: &Context, args: &NotifyTestArgs) -> Result<()> {
    let config = ctx.config()?;
    if config.config.notify.sinks.is_empty() {
        write_stdout(NO_SINKS)?;
        return Err(ExitWith(exit::FAILURE).into());
    }
    let mut ledger = ctx.ledger(&config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = runtime.block_on(crate::notify::send_test(
        &config,
        &mut ledger,
        &parent_env(),
        args.sink.as_deref(),
    ))?;
    let text = match ctx.global.format {
        Format::Json => json_string(&results)?,
        _ => {
            let mut text = String::new();
            for r in &results {
                let answer = match (r.http_status, r.exit_code) {
                    (Some(status), _) => format!("HTTP {status}"),
                    (None, Some(code)) => format!("exit {code}"),
                    (None, None) => "no answer".to_owned(),
                };
                if r.ok {
                    text.push_str(&format!(
                        "{} ({}): delivered ({answer}) in {} ms\n",
                        r.sink,
                        r.kind.as_str(),
                        r.ms
                    ));
                } else {
                    text.push_str(&format!(
                        "{} ({}): FAILED: {}\n",
                        r.sink,
                        r.kind.as_str(),
                        r.error.as_deref().unwrap_or("unknown error")
                    ));
                }
            }
            text
        }
    };
    write_stdout(&text)?;
    if results.iter().any(|r| !r.ok) {
        return Err(ExitWith(exit::FAILURE).into());
    }
    Ok(())
}

/// One sink in `oxi notify status`.
#[derive(Debug, Serialize)]
struct SinkStatus {
    sink: String,
    kind: &'static str,
    events: Vec<&'static str>,
    #[serde(flatten)]
    counts: SinkCounts,
}

#[derive(Debug, Serialize)]
struct StatusReport {
    sinks: Vec<SinkStatus>,
    attempts: Vec<Attempt>,
}

fn status(ctx: &Context, args: &NotifyStatusArgs) -> Result<()> {
    let config = ctx.config()?;
    let ledger = crate::ledger::Ledger::open_existing_at(&config.ledger_at())?;
    let read = ledger.read();
    let mut sinks = Vec::new();
    for sink in &config.config.notify.sinks {
        sinks.push(SinkStatus {
            sink: sink.name().to_owned(),
            kind: sink.kind.as_str(),
            events: sink.events.iter().map(|t| t.as_str()).collect(),
            counts: read.notification_counts(sink.name())?,
        });
    }
    let report = StatusReport {
        sinks,
        attempts: read.notification_attempts(None, args.limit)?,
    };
    let text = match ctx.global.format {
        Format::Json => json_string(&report)?,
        // An empty table says nothing: say what is missing instead (attempts outlive a
        // removed sink, so they are still listed).
        _ if report.sinks.is_empty() && report.attempts.is_empty() => NO_SINKS.to_owned(),
        format if report.sinks.is_empty() => format!("{NO_SINKS}\n{}", render(&report, format)),
        format => render(&report, format),
    };
    write_stdout(&text)?;
    Ok(())
}

fn render(report: &StatusReport, format: Format) -> String {
    let mut grid = Grid::new(["sink", "kind", "events", "pending", "delivered", "gave up"]);
    for s in &report.sinks {
        grid.row([
            s.sink.clone(),
            s.kind.to_owned(),
            s.events.join(", "),
            s.counts.pending.to_string(),
            s.counts.delivered.to_string(),
            s.counts.gave_up.to_string(),
        ]);
    }
    let mut text = grid.render(format);
    if report.attempts.is_empty() {
        text.push_str("\nno attempts yet\n");
        return text;
    }
    let mut grid = Grid::new([
        "at", "sink", "about", "attempt", "status", "answer", "error",
    ]);
    for a in &report.attempts {
        grid.row([
            rfc3339(a.at_ms),
            a.sink.clone(),
            a.topic.clone(),
            a.attempt.to_string(),
            a.status.as_str().to_owned(),
            match (a.http_status, a.exit_code) {
                (Some(status), _) => format!("HTTP {status}"),
                (None, Some(code)) => format!("exit {code}"),
                (None, None) => "-".to_owned(),
            },
            a.error.clone().unwrap_or_default(),
        ]);
    }
    text.push('\n');
    text.push_str(&grid.render(format));
    text
}
