//! One file per subcommand: glue between the CLI, the config, the ledger and the output.

mod backup;
mod demo;
mod doctor;
mod eval;
mod gateway;
mod hosts;
mod improve;
mod ingest;
mod init;
mod ledger;
mod man;
mod notify;
mod pause;
mod plan;
mod plan_forecast;
mod prune;
mod report;
mod route;
mod run;
mod saturate;
mod show;
mod status;
mod task;
mod tasks;
mod tick;
mod workers;

use std::path::PathBuf;

use anyhow::Result;

use crate::cli::{Command, GlobalArgs};
use crate::config::{self, LoadedConfig};
use crate::ledger::Ledger;

/// What every command gets: the global flags and a way to reach the config and ledger.
pub struct Context {
    pub global: GlobalArgs,
    pub cwd: PathBuf,
}

impl Context {
    pub fn new(global: GlobalArgs) -> Result<Self> {
        let cwd = std::env::current_dir()?;
        Ok(Self { global, cwd })
    }

    /// Loads `--config` or the nearest `oxi.toml`, with `OXI_RUN_MODE` applied.
    pub fn config(&self) -> Result<LoadedConfig, config::ConfigError> {
        let path = match &self.global.config {
            Some(path) => path.clone(),
            None => config::discover(&self.cwd)?,
        };
        let env_mode = std::env::var(config::RUN_MODE_ENV).ok();
        config::load(&path, env_mode.as_deref())
    }

    /// Opens (creating if needed) the ledger beside the config.
    pub fn ledger(&self, config: &LoadedConfig) -> Result<Ledger, crate::ledger::LedgerError> {
        Ledger::open_at(&config.ledger_at())
    }

    /// Who is at the keyboard, for events that record an operator action: `USER`, else
    /// `LOGNAME`, else the uid's name in the password database (cron and `env -i` set
    /// neither), else `uid:N`.
    pub fn operator(&self) -> String {
        format!("operator:{}", user_name())
    }
}

fn user_name() -> String {
    let from_env = ["USER", "LOGNAME"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|v| !v.trim().is_empty());
    if let Some(name) = from_env {
        return name;
    }
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => format!("uid:{uid}"),
    }
}

/// Runs one parsed command.
pub fn dispatch(ctx: &Context, command: &Command) -> Result<()> {
    match command {
        Command::Init(args) => init::run(ctx, args),
        Command::Ingest(args) => ingest::run(ctx, args),
        Command::Plan(args) => plan::run(ctx, args),
        Command::Status(args) => status::run(ctx, args),
        Command::Tasks(args) => tasks::run(ctx, args),
        Command::Pause(args) => pause::pause(ctx, args),
        Command::Resume => pause::resume(ctx),
        Command::Run(args) => run::run(ctx, args),
        Command::Workers(args) => workers::run(ctx, args),
        Command::Tick => tick::run(ctx),
        Command::Saturate(args) => saturate::run(ctx, args),
        Command::Doctor => doctor::run(ctx),
        Command::Completions(args) => {
            // Rendered into memory first: a closed pipe (`| head`) is then a quiet exit,
            // not a panic inside the generator.
            let mut command = <crate::cli::Cli as clap::CommandFactory>::command();
            let mut buffer = Vec::new();
            clap_complete::generate(args.shell, &mut command, "oxi", &mut buffer);
            crate::output::write_stdout(&String::from_utf8_lossy(&buffer))?;
            Ok(())
        }
        Command::Man(args) => man::run(ctx, args),
        Command::Show(args) => show::show(ctx, args),
        Command::Route(args) => route::run(ctx, args),
        Command::Report(args) => report::run(ctx, args),
        Command::Logs(args) => show::logs(ctx, args),
        Command::Demo(args) => demo::run(ctx, args),
        Command::Approve(args) => task::approve(ctx, args),
        Command::Retry(args) => task::retry(ctx, args),
        Command::Cancel(args) => task::cancel(ctx, args),
        Command::Done(args) => task::done(ctx, args),
        Command::Roadmap(crate::cli::RoadmapCommand::Prune(args)) => prune::run(ctx, args),
        Command::Notify(command) => notify::run(ctx, command),
        Command::Gateway(command) => gateway::run(ctx, command),
        Command::Hosts => hosts::run(ctx),
        Command::Backup(args) => backup::backup(ctx, args),
        Command::Restore(args) => backup::restore(ctx, args),
        Command::Ledger(crate::cli::LedgerCommand::Migrate(args)) => ledger::migrate(ctx, args),
        Command::Improve(command) => improve::run(ctx, command),
        Command::Eval(args) => eval::run(ctx, args),
    }
}

/// The starter `oxi.toml` that `oxi init` writes (exposed for tests).
#[doc(hidden)]
pub fn render_config_for_tests(
    roadmap: &str,
    base_branch: &str,
    github_repo: Option<&str>,
) -> String {
    init::render_config(roadmap, base_branch, github_repo, None).unwrap_or_default()
}

/// `oxi status`'s data, for the benchmark (the command itself adds only printing).
#[doc(hidden)]
pub fn status_for_bench(config: &LoadedConfig, ledger: &Ledger, now_ms: i64) -> usize {
    status::collect(config, ledger, now_ms, None).map_or(0, |s| s.tasks.len())
}

/// oxi's environment as UTF-8 pairs (a variable that is not UTF-8 is not passed on).
/// Read commands show the ledger, which holds the roadmap as of the last ingest. When
/// roadmap.md changed since (an operator just edited it), say so on stderr, or a new item
/// would seem to be missing and an edited one unchanged. Reading the file is the whole cost;
/// an unreadable roadmap says nothing here (the next tick reports it with its path).
pub(crate) fn warn_if_roadmap_changed(config: &LoadedConfig, ledger: &Ledger) {
    let path = config.roadmap_path();
    let Ok(file) = crate::roadmap::ingest::RoadmapFile::read(&path, &config.repo_root) else {
        return;
    };
    let ingested = ledger
        .read()
        .kv_get(crate::roadmap::ingest::ROADMAP_HASH_KEY)
        .ok()
        .flatten();
    if ingested.is_some_and(|hash| hash != file.sha256) {
        tracing::warn!(
            "{} changed since the last ingest: this shows the ledger as of that ingest (`oxi ingest` or the next tick reads the change)",
            file.label
        );
    }
}

pub(crate) fn parent_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Sends `true` on the first SIGINT/SIGTERM so the run is stopped cleanly (TERM, grace, KILL
/// of its whole group) and recorded as `killed`; a second stop request exits at once (a copy
/// of the first, as `timeout` sends, is not one: [`crate::stop_signals`]).
pub(crate) fn watch_signals() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let Ok(mut stops) = crate::stop_signals::StopSignals::listen() else {
            return;
        };
        stops.next().await;
        tracing::warn!("stopping the run (signal); a second signal exits at once");
        let _ = tx.send(true);
        stops.next().await;
        std::process::exit(crate::exit::INTERRUPTED);
    });
    rx
}
