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
pub mod critic;
pub mod digest;
pub mod doctor;
pub mod git;
pub mod github;
pub mod guard;
pub mod ledger;
pub mod mock_model;
pub mod money;
pub mod output;
pub mod plan;
pub mod process;
pub mod prompt;
pub mod redact;
pub mod release;
pub mod report;
pub mod roadmap;
pub mod runner;
pub mod saturate;
pub mod tick;
pub mod verify;
pub mod worker;
pub mod worktree;

use tracing_subscriber::EnvFilter;

/// Exit codes, documented in docs/cli.md. Scripts rely on them.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// A failure not covered below.
    pub const FAILURE: i32 = 1;
    /// Bad command line (clap).
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

/// Maps an error to its exit code by its type.
pub fn exit_code(error: &anyhow::Error) -> i32 {
    for cause in error.chain() {
        if let Some(ExitWith(code)) = cause.downcast_ref::<ExitWith>() {
            return *code;
        }
        if let Some(runner::RunnerError::UnknownWorker { .. } | runner::RunnerError::BadCwd(_)) =
            cause.downcast_ref::<runner::RunnerError>()
        {
            return exit::USAGE;
        }
        if cause.is::<budget::Refusal>()
            || matches!(
                cause.downcast_ref::<runner::RunnerError>(),
                Some(runner::RunnerError::Budget(_))
            )
        {
            return exit::BUDGET;
        }
        if cause.is::<config::ConfigError>() {
            return exit::CONFIG;
        }
        if cause.is::<ledger::LedgerError>() {
            return exit::LEDGER;
        }
        if cause.is::<roadmap::RoadmapError>() {
            return exit::ROADMAP;
        }
    }
    exit::FAILURE
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
