//! Command-line surface. Parsing only; the work lives in `commands`.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::ledger::TaskState;
use crate::output::{ColorChoice, Format};

/// oxi turns a repository's roadmap.md into reviewed pull requests by running coding-agent CLIs
/// unattended, under hard caps on time and money.
#[derive(Debug, Parser)]
#[command(name = "oxi", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// oxi.toml to use [default: the nearest oxi.toml walking up from the current directory]
    #[arg(long, global = true, env = "OXI_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Output format for commands that print data
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// More log detail on stderr (-v debug, -vv trace)
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Less log detail on stderr (-q warnings only, -qq errors only)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub quiet: u8,
    /// Colour in output; `auto` honours NO_COLOR and terminals
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write oxi.toml and .oxi/ (ledger, runs/) in the current directory
    Init(InitArgs),
    /// Read the roadmap into the ledger (idempotent)
    Ingest(IngestArgs),
    /// Show the queue in dispatch order, with the reason each held task waits
    Plan(PlanArgs),
    /// Task counts by state, spend today and this month against the caps, and the killswitch
    Status(StatusArgs),
    /// Every task: state, attempts, worker, branch, cost, and why it waits or stopped
    Tasks(TasksArgs),
    /// Engage the killswitch: no new dispatch until `oxi resume` (running work finishes)
    Pause(PauseArgs),
    /// Release the killswitch
    Resume,
    /// Run one worker outside the queue, in a directory, under every cap; stream its transcript
    Run(RunArgs),
    /// Check each configured worker: binary found, version tested, recorded output still parses
    /// (with --probe, also run each CLI for real against oxi's own model server)
    Workers(WorkersArgs),
    /// One bounded pass: reap, ingest, plan, claim, dispatch, verify, critic, deliver; then exit
    Tick,
    /// Keep N slots busy continuously (under tmux or a service): refill a slot as soon as it
    /// frees up, under the same caps
    Saturate(SaturateArgs),
    /// Approve a held task (deliver work held for approval, or run a task held over its
    /// estimate), or with --merge a delivered task's pull request
    Approve(ApproveArgs),
    /// Give a failed, stopped or held task a fresh set of attempts
    Retry(TaskActionArgs),
    /// Cancel a task (its running worker, if any, is stopped)
    Cancel(TaskActionArgs),
    /// Mark a task done: its work landed by other means (a squash or rebase merge, a commit of
    /// your own); tasks that depend on it may start
    Done(DoneArgs),
    /// The whole loop on a throwaway sample repository: offline worker, real git, real
    /// acceptance command, no network, no API key
    Demo(DemoArgs),
    /// The preflight: config, ledger, git, disk, workers, GitHub, acceptance commands; each
    /// check ok / warn / fail with the fix
    Doctor,
    /// KPIs and gates from the ledger: acceptance, success, queue wait, spend, CI, retries,
    /// interventions, governance, failure taxonomy; table, markdown, json or html
    Report(ReportArgs),
    /// One task: its runs (classification, cost, timings), verification, critic decision,
    /// governance memos, and the path of every artifact
    Show(ShowArgs),
    /// Which [[routing.rules]] rule a task matches and why (each clause and the value it
    /// matched), and the chain each role routes to
    Route(RouteArgs),
    /// The readable transcript of a run (or a task's latest run); --follow tails a live one
    Logs(LogsArgs),
    /// Shell completions (bash, zsh, fish, elvish, powershell) on stdout
    Completions(CompletionsArgs),
    /// The manual page (roff) on stdout, or with --dir every page (oxi.1, oxi-COMMAND.1)
    Man(ManArgs),
    /// Roadmap maintenance
    #[command(subcommand)]
    Roadmap(RoadmapCommand),
    /// Notifications (the sinks of the notify table): send a test to each sink, or show what
    /// was sent and what failed
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// The inference gateway: try a provider, list the calls it made
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// The hosts working this ledger: live or not, last heartbeat, running jobs, labels, oxi
    /// and CLI versions
    Hosts,
    /// Write a consistent copy of the ledger (safe while oxi runs)
    Backup(BackupArgs),
    /// Replace the ledger with a backup: checked first, refused while runs are live, the
    /// replaced ledger kept aside
    Restore(RestoreArgs),
    /// The ledger itself: copy it to the other backend (the sqlite file into postgres, and back)
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Auto-improve: scan outside sources for changes relevant to this repository, rank them,
    /// and stage proposals a human accepts into the roadmap or rejects
    #[command(subcommand)]
    Improve(ImproveCommand),
    /// Run an eval suite (docs/eval.md): each case in a fresh repository through the tick
    /// pipeline in fast mode; success, calls and time per task, variance over repeats
    Eval(EvalArgs),
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write it (must not exist) [default: .oxi/backups/ledger-YYYYMMDDTHHMMSSZ.db]
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A file `oxi backup` wrote
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Copy every row of this ledger into an empty one, losslessly, and check the copy table
    /// by table: `--to postgres://USER@HOST/DB` or `--to sqlite:PATH`
    Migrate(LedgerMigrateArgs),
}

#[derive(Debug, Args)]
pub struct LedgerMigrateArgs {
    /// Where to: a `postgres://` URL (no password in it) or `sqlite:PATH` (a new file)
    #[arg(long, value_name = "TARGET")]
    pub to: String,
    /// The environment variable holding the database's password, if the server asks for one
    #[arg(long, value_name = "NAME")]
    pub password_env: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this host: its tasks (those whose latest run it started) and its runs
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ImproveCommand {
    /// Read every [[improve.sources]] (each failing alone), rank what they found against the
    /// project's context and stage the best as proposals; once per UTC day
    Scan(ImproveScanArgs),
    /// On or paused, the last scan (and its failed sources), proposals by status
    Status,
    /// The proposals waiting for a decision (with --all, every proposal)
    Proposals(ImproveProposalsArgs),
    /// Append proposals to the roadmap as new items (`oxi ingest` reads them in)
    Accept(ImproveDecideArgs),
    /// Reject proposals (they count against the acceptance ratio)
    Reject(ImproveDecideArgs),
    /// Resume auto-improve after it paused itself
    Unpause,
}

#[derive(Debug, Args)]
pub struct ImproveScanArgs {
    /// Scan even if today's scan already ran
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ImproveProposalsArgs {
    /// Also list accepted and rejected proposals
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ImproveDecideArgs {
    /// Proposal ids, as `oxi improve proposals` shows them
    #[arg(value_name = "ID", required = true)]
    pub ids: Vec<i64>,
    /// Why, recorded with the decision
    #[arg(long)]
    pub why: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a sample notification to each sink (or one) and print each result; exits 1 if any
    /// failed
    Test(NotifyTestArgs),
    /// Each sink's queue (pending, delivered, given up) and the latest attempts with their
    /// errors
    Status(NotifyStatusArgs),
}

#[derive(Debug, Args)]
pub struct NotifyTestArgs {
    /// Only this sink (its `name`, or its kind when it has none)
    #[arg(long, value_name = "NAME")]
    pub sink: Option<String>,
}

#[derive(Debug, Args)]
pub struct NotifyStatusArgs {
    /// How many of the latest attempts to list
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Send one prompt to a provider and print the answer, tokens, cost (and where that
    /// figure came from), attempts and latency; the call is recorded and counts against caps
    Test(GatewayTestArgs),
    /// The latest gateway calls in the ledger: role, provider, model, tokens, cost, outcome
    Calls(GatewayCallsArgs),
}

#[derive(Debug, Args)]
pub struct GatewayTestArgs {
    /// A provider in [gateway.providers] (default: the only one configured)
    pub provider: Option<String>,
    /// The model to ask, as the provider spells it (e.g. grok-4-fast)
    #[arg(long)]
    pub model: String,
    /// What to ask
    #[arg(long, default_value = "Reply with the single word: ok")]
    pub prompt: String,
    /// Longest answer, in tokens
    #[arg(long, default_value_t = 64)]
    pub max_tokens: u32,
    /// Call as this role: its LiteLLM virtual key, its daily cap, and (except `test`) the
    /// provider's down-time, exactly as that feature would
    #[arg(long, value_enum, default_value = "test")]
    pub role: crate::gateway::GatewayRole,
}

#[derive(Debug, Args)]
pub struct GatewayCallsArgs {
    /// How many calls, newest first
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

#[derive(Debug, Subcommand)]
pub enum RoadmapCommand {
    /// Remove items whose task is done (merged) from the roadmap: prints the diff; --write
    /// applies it
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Write the pruned roadmap (default: only show the diff)
    #[arg(long)]
    pub write: bool,
}

#[derive(Debug, Args)]
pub struct SaturateArgs {
    /// Slots: a number, or `auto` = min(run.max_parallel_jobs, memory, cores - load)
    #[arg(long, default_value = "auto")]
    pub concurrency: String,
    /// Lower today's cap for this session (USD); caps.daily_usd still applies
    #[arg(long, value_name = "USD")]
    pub max_cost_per_day: Option<f64>,
    /// Exit once nothing is eligible and no run is in flight
    #[arg(long)]
    pub until_empty: bool,
    /// After SIGTERM/SIGINT, how long in-flight runs may finish before they are stopped
    #[arg(long, default_value = "10m")]
    pub grace: humantime::Duration,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Window: 24h, 7d, 30d (any duration) or all
    #[arg(long, default_value = "7d")]
    pub since: String,
    /// Write the report to this file instead of stdout
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Only this host in the per-host section (runs, success, spend); the KPIs stay fleet-wide
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The task id, as `oxi tasks` shows it (any case)
    #[arg(value_name = "TASK")]
    pub task: String,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The suite: a directory of cases (each a directory with a case.toml) and its oxi.toml
    /// (`--config FILE` runs the cases with another config)
    #[arg(value_name = "SUITE")]
    pub suite: PathBuf,
    /// Route the executor role to this worker of the config
    #[arg(long, value_name = "W")]
    pub worker: Option<String>,
    /// Run every case this many times (the variance figures need at least 2)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
}

#[derive(Debug, Args)]
pub struct RouteArgs {
    /// The task id, as `oxi tasks` shows it (any case)
    #[arg(value_name = "TASK")]
    pub task: String,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// A run id, or a task id in any case (its latest run)
    #[arg(value_name = "RUN|TASK")]
    pub target: String,
    /// Keep printing as the run writes, until it ends
    #[arg(long, short = 'f')]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write oxi.1 and a page per command (oxi-tick.1, …) into this directory, e.g.
    /// /usr/local/share/man/man1, and list them
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Build the sample repository here and keep it (default: a temporary directory, removed
    /// at the end)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the temporary sample repository and print its path and commands to try in it
    #[arg(long, conflicts_with = "dir")]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub task: TaskActionArgs,
    /// Approve merging the task's pull request: the next release tick marks it ready and
    /// squash-merges it once its checks pass (and deletes the branch)
    #[arg(long)]
    pub merge: bool,
}

#[derive(Debug, Args)]
pub struct TaskActionArgs {
    /// The task id, as `oxi tasks` shows it (any case)
    #[arg(value_name = "TASK")]
    pub task: String,
    /// Why, recorded with the operator action
    #[arg(long)]
    pub note: Option<String>,
}

#[derive(Debug, Args)]
pub struct DoneArgs {
    /// The task id, as `oxi tasks` shows it (any case)
    #[arg(value_name = "TASK")]
    pub task: String,
    /// How it landed, recorded with the operator action
    #[arg(long, alias = "note", value_name = "TEXT")]
    pub why: Option<String>,
}

#[derive(Debug, Args)]
pub struct TasksArgs {
    /// Only tasks in this state (repeat for several): queued, held, retry_wait, dispatched,
    /// verifying, reviewing, deliver_pending, delivered, merged, done, failed,
    /// framework_fix_needed, rejected, cancelled, abandoned
    #[arg(long = "state", value_name = "STATE", value_parser = parse_state)]
    pub states: Vec<TaskState>,
    /// Only tasks whose latest run this host started
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
}

fn parse_state(text: &str) -> Result<TaskState, String> {
    text.to_ascii_lowercase()
        .replace('-', "_")
        .parse()
        .map_err(|_| {
            let names: Vec<&str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
            format!("not a task state; use one of {}", names.join(", "))
        })
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Worker to run (a [workers.NAME] table) [default: the first routing.executor]
    #[arg(long, short = 'w', value_name = "NAME")]
    pub worker: Option<String>,
    /// Directory the worker works in [default: the current directory]
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Read the prompt from this file (`-` for stdin) instead of the command line
    #[arg(long, value_name = "PATH", conflicts_with = "prompt")]
    pub prompt_file: Option<PathBuf>,
    /// What to ask the worker to do
    #[arg(value_name = "PROMPT", required_unless_present = "prompt_file")]
    pub prompt: Option<String>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Overwrite an existing oxi.toml
    #[arg(long)]
    pub force: bool,
    /// Roadmap path to write into oxi.toml, relative to the repository root
    #[arg(long, value_name = "PATH")]
    pub roadmap: Option<PathBuf>,
    /// A ledger database several hosts share (`postgres://USER@HOST/DB`, no password in it),
    /// written as `[ledger] url`; its schema is created, or the queue joined, now
    #[arg(long, value_name = "URL")]
    pub ledger_url: Option<String>,
    /// The environment variable holding that database's password, written as
    /// `[ledger] password_env` (else ~/.pgpass or a service file, as for psql)
    #[arg(long, value_name = "NAME")]
    pub password_env: Option<String>,
    /// Print the files that run `oxi tick` on a schedule for this repository (nothing else is
    /// done)
    #[arg(long, value_enum, value_name = "KIND")]
    pub schedule: Option<ScheduleKind>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ScheduleKind {
    Cron,
    Systemd,
    Launchd,
    /// `oxi saturate` in a tmux session
    Tmux,
    /// `oxi improve scan` once a day: cron, systemd, launchd and a GitHub Actions workflow
    Improve,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Read this roadmap instead of project.roadmap
    #[arg(long, value_name = "PATH")]
    pub roadmap: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WorkersArgs {
    /// Run each configured CLI for real against oxi's own loopback model server (a scripted
    /// edit, shell command and usage, in a throwaway repository), check its output still maps
    /// to oxi's events, and record the verdict; a failing version is quarantined
    #[arg(long)]
    pub probe: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Only show the plan (oxi plan never changes the ledger; the flag is accepted for scripts
    /// that want to say so)
    #[arg(long)]
    pub dry_run: bool,
    /// Include only tasks that are eligible now
    #[arg(long)]
    pub eligible: bool,
    /// The plan as this host sees it: tasks whose routing rule requires labels it lacks wait
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Instead of the queue: p50 and p90 cost and time to finish the open roadmap, from the
    /// ledger's finished tasks per rule and worker, at the caps and concurrency, and the date
    /// the daily cap allows
    #[arg(long, conflicts_with = "eligible")]
    pub forecast: bool,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Why, recorded in the ledger and shown by `oxi status`
    #[arg(long)]
    pub reason: Option<String>,
}
