//! oxi: a supervisor that turns a repository's `roadmap.md` into reviewed pull requests by
//! running coding-agent CLIs unattended, under hard caps on runtime, iterations and money.
//!
//! The binary is a thin wrapper around [`run`]; every stage of the pipeline is a module here.

pub mod budget;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod confine;
mod digest;
mod doctor;
pub mod eval;
pub mod gateway;
mod git;
mod github;
mod host;
pub mod improve;
pub mod ledger;
mod money;
pub mod notify;
pub mod output;
mod pipeline;
mod preflight;
pub mod process;
mod prompt;
mod redact;
pub mod report;
pub mod roadmap;
pub mod routing;
pub mod runner;
pub mod scheduler;
mod stop_signals;
pub mod worker;

use tracing_subscriber::EnvFilter;

/// Exit codes, documented in docs/cli.md. Scripts rely on them.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// A failure not covered below.
    pub const FAILURE: i32 = 1;
    /// Bad command line: clap's, an unknown `--worker`, a missing `--cwd`, an argument that
    /// names no task or run, an unreadable flag value.
    pub const USAGE: i32 = 2;
    /// oxi.toml missing or invalid, or a bad `OXI_RUN_MODE`.
    pub const CONFIG: i32 = 3;
    /// The ledger cannot be opened, is locked, or was written by a newer oxi.
    pub const LEDGER: i32 = 4;
    /// The roadmap cannot be read or parsed.
    pub const ROADMAP: i32 = 5;
    /// A spend cap refused the work (nothing was started).
    pub const BUDGET: i32 = 6;
    /// `oxi tick`: a task ended in a terminal failure this pass (failed, framework_fix_needed).
    pub const TASK_FAILURES: i32 = 7;
    /// `oxi tick`: a doctor-level problem blocks dispatch (see the message).
    pub const BLOCKED: i32 = 8;
    /// oxi was stopped by SIGINT/SIGTERM and ended its runs (128 + SIGINT, as shells report it).
    pub const INTERRUPTED: i32 = 130;
}

/// Ends the process with `code` after the command has already printed what happened (a run
/// that did not succeed is reported, not raised as an error).
#[derive(Debug, thiserror::Error)]
#[error("exit status {0}")]
pub struct ExitWith(pub i32);

/// An argument that names nothing (no such task or run) or a flag value that cannot be read:
/// a bad command line, exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Maps an error to its exit code by its type (docs/cli.md, "Exit codes").
pub fn exit_code(error: &anyhow::Error) -> i32 {
    error.chain().find_map(code_for).unwrap_or(exit::FAILURE)
}

/// The exit code one error in a chain stands for, if any. Wrappers declared
/// `#[error(transparent)]` hide the error they wrap from `source()`, so they are opened here.
fn code_for(cause: &(dyn std::error::Error + 'static)) -> Option<i32> {
    use ledger::LedgerError;
    use runner::RunnerError;
    if let Some(ExitWith(code)) = cause.downcast_ref::<ExitWith>() {
        return Some(*code);
    }
    if let Some(e) = cause.downcast_ref::<scheduler::saturate::SaturateError>() {
        return match e {
            scheduler::saturate::SaturateError::Scheduler(t) => code_for(t),
            scheduler::saturate::SaturateError::Ledger(l) => code_for(l),
            _ => None,
        };
    }
    if let Some(e) = cause.downcast_ref::<scheduler::SchedulerError>() {
        return match e {
            scheduler::SchedulerError::Ledger(l) => code_for(l),
            scheduler::SchedulerError::Runner(r) => code_for(r),
            scheduler::SchedulerError::Roadmap(_) => Some(exit::ROADMAP),
            scheduler::SchedulerError::Routing(_) => Some(exit::CONFIG),
            scheduler::SchedulerError::Prompt(_)
            | scheduler::SchedulerError::Github(_)
            | scheduler::SchedulerError::ReleaseBlocked(_) => None,
        };
    }
    if let Some(e) = cause.downcast_ref::<RunnerError>() {
        return match e {
            RunnerError::UnknownWorker { .. } | RunnerError::BadCwd(_) => Some(exit::USAGE),
            RunnerError::Budget(_) => Some(exit::BUDGET),
            RunnerError::Ledger(l) => code_for(l),
            _ => None,
        };
    }
    if cause.downcast_ref::<routing::RouteError>().is_some() {
        return Some(exit::CONFIG);
    }
    if let Some(e) = cause.downcast_ref::<gateway::GatewayError>() {
        return match e {
            gateway::GatewayError::Budget(_) | gateway::GatewayError::RoleCap { .. } => {
                Some(exit::BUDGET)
            }
            gateway::GatewayError::Ledger(l) => code_for(l),
            _ => None,
        };
    }
    if let Some(e) = cause.downcast_ref::<report::ReportError>() {
        return match e {
            report::ReportError::Since(_) => Some(exit::USAGE),
            report::ReportError::Ledger(l) => code_for(l),
        };
    }
    if let Some(e) = cause.downcast_ref::<LedgerError>() {
        return Some(match e {
            LedgerError::NoSuchTask(_) => exit::USAGE,
            _ => exit::LEDGER,
        });
    }
    if cause.is::<UsageError>() {
        return Some(exit::USAGE);
    }
    if cause.is::<budget::Refusal>() {
        return Some(exit::BUDGET);
    }
    if cause.is::<config::ConfigError>() {
        return Some(exit::CONFIG);
    }
    if cause.is::<roadmap::RoadmapError>() {
        return Some(exit::ROADMAP);
    }
    None
}

/// An error and its causes on one line, as `error: …` prints them: each cause after a `: `,
/// except a cause whose text the message already holds (thiserror variants often say
/// `"…: {source}"` and also mark it `#[source]`), which would otherwise appear twice.
pub fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Sets up stderr logging from `-v`/`-q` and `OXI_LOG`.
pub fn init_logging(global: &cli::GlobalArgs) {
    let level = match (global.verbose, global.quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    let filter = EnvFilter::try_from_env("OXI_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(global.color.stderr_has_color())
        .with_target(false)
        .without_time()
        .try_init();
}

/// Runs a parsed command line.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    cli.global.color.apply();
    init_logging(&cli.global);
    let ctx = commands::Context::new(cli.global)?;
    commands::dispatch(&ctx, &cli.command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_the_message_already_holds_is_not_repeated() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let error = anyhow::Error::new(roadmap::RoadmapError::Read {
            path: "r.md".into(),
            source: io,
        });
        let line = error_line(&error);
        assert_eq!(line.matches("not found").count(), 1, "{line}");
        let wrapped = anyhow::Error::new(std::io::Error::other("inner")).context("outer");
        assert_eq!(error_line(&wrapped), "outer: inner");
    }

    #[test]
    fn transparent_wrappers_keep_their_exit_code() {
        let error = anyhow::Error::new(scheduler::SchedulerError::Roadmap(
            roadmap::RoadmapError::NulByte {
                path: "r.md".into(),
                line: 1,
            },
        ));
        assert_eq!(exit_code(&error), exit::ROADMAP);
        let error = anyhow::Error::new(ledger::LedgerError::NoSuchTask("T9".into()));
        assert_eq!(exit_code(&error), exit::USAGE);
    }
}
