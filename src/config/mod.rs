//! `oxi.toml`: what a user configures, how it is found, and every check that turns a bad file
//! into an error naming `file:line` and the key.
//!
//! Secrets never live here: the file holds only the *names* of environment variables.

mod duration;
mod size;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use duration::HumanDuration;
pub use size::HumanSize;

/// The file name `oxi` looks for, walking up from the current directory.
pub const CONFIG_FILE_NAME: &str = "oxi.toml";
/// The state directory beside `oxi.toml` (ledger, runs, worktrees, locks).
pub const STATE_DIR_NAME: &str = ".oxi";
/// Environment variable that overrides `run.mode`.
pub const RUN_MODE_ENV: &str = "OXI_RUN_MODE";

/// Errors from finding, reading, parsing and validating `oxi.toml`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No `oxi.toml` in the current directory or any parent. Not retryable: run `oxi init`.
    #[error(
        "no {CONFIG_FILE_NAME} found in {start} or any parent directory; run `oxi init` in your repository, or pass --config PATH"
    )]
    NotFound { start: PathBuf },
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Syntax, unknown key, wrong type, or a value that breaks a rule; `location` is `file:line:col`.
    #[error("{location}: {message}")]
    Invalid { location: String, message: String },
    /// `OXI_RUN_MODE` holds something other than `fast` or `release`.
    #[error(
        "{RUN_MODE_ENV}={value:?} is not a run mode; use \"fast\" or \"release\" (or unset it)"
    )]
    BadRunModeEnv { value: String },
}

/// `fast` never writes to GitHub; `release` pushes branches and opens draft pull requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    #[default]
    Fast,
    Release,
}

impl RunMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Fast => "fast",
            RunMode::Release => "release",
        }
    }
}

impl fmt::Display for RunMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The whole of `oxi.toml`. Every table is optional; defaults are the safe choice.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub project: ProjectConfig,
    pub run: RunConfig,
    pub caps: CapsConfig,
    /// When the table is absent: `claude` and `codex` workers. When present: exactly those listed.
    pub workers: BTreeMap<String, WorkerConfig>,
    pub routing: RoutingConfig,
    /// The built-in cards ([`default_rates`]) with the table's merged over them: a card here
    /// adds a model or replaces that model's card; built-in cards for other models stay.
    #[serde(deserialize_with = "rates_over_defaults")]
    pub rates: BTreeMap<String, RateCard>,
    pub verify: VerifyConfig,
    pub critic: CriticConfig,
    pub governance: GovernanceConfig,
    pub github: Option<GithubConfig>,
    pub kpi: KpiConfig,
}

/// Targets `oxi report` checks each KPI against (seed 000's gates).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KpiConfig {
    /// Merged / (merged + closed unmerged) pull requests.
    pub min_acceptance_rate: f64,
    /// Successful executor runs / finished executor runs.
    pub min_job_success_rate: f64,
    /// 95th percentile of the wait from a task's arrival to its first dispatch.
    pub max_queue_wait_p95: HumanDuration,
    /// Runs or days/months that ended above a cap.
    pub max_budget_breaches: u32,
    /// Pull requests whose first CI result was green.
    pub min_first_pass_ci_rate: f64,
    pub max_parse_failures_per_100_calls: f64,
    /// Operator actions per task worked on.
    pub max_human_intervention_rate: f64,
    pub max_governance_violations: u32,
}

impl Default for KpiConfig {
    fn default() -> Self {
        Self {
            min_acceptance_rate: 0.6,
            min_job_success_rate: 0.7,
            max_queue_wait_p95: HumanDuration::from_secs(24 * 3600),
            max_budget_breaches: 0,
            min_first_pass_ci_rate: 0.6,
            max_parse_failures_per_100_calls: 1.0,
            max_human_intervention_rate: 0.3,
            max_governance_violations: 0,
        }
    }
}

/// When the reviewer worker may be skipped, and when only tier0 runs before review.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CriticConfig {
    /// Skip the reviewer for small, green diffs with no risk trigger (seed 001's guardrails).
    pub auto_approve: bool,
    /// Largest diff (files) auto-approve accepts.
    pub max_files: u32,
    /// Largest diff (lines added + removed) auto-approve accepts.
    pub max_changed_lines: u32,
    /// tier0_fast: after this many consecutive green verifications, a small diff runs only
    /// tier0 before review. 0 turns it off.
    pub tier0_fast_after: u32,
}

impl Default for CriticConfig {
    fn default() -> Self {
        Self {
            auto_approve: true,
            max_files: 5,
            max_changed_lines: 300,
            tier0_fast_after: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectConfig {
    /// The repository root, relative to the directory holding `oxi.toml`.
    pub root: PathBuf,
    /// The roadmap, relative to the repository root.
    pub roadmap: PathBuf,
    /// Branch that task branches start from and pull requests target.
    pub base_branch: String,
    /// GitHub repositories (`owner/name`) oxi may act on. Empty means only `github.repo`.
    pub allowed_repos: Vec<String>,
    /// Priority tier for roadmap items whose id and headings name none.
    pub default_priority_tier: u8,
}

impl Default for ProjectConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("."),
            roadmap: PathBuf::from("roadmap.md"),
            base_branch: "main".to_owned(),
            allowed_repos: Vec::new(),
            default_priority_tier: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    pub mode: RunMode,
    pub max_parallel_jobs: u32,
    /// Fast mode: a task whose dependency is delivered but not merged starts from that
    /// dependency's branch instead of waiting for the merge (off by default).
    pub stack_on_delivered: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            mode: RunMode::Fast,
            max_parallel_jobs: 1,
            stack_on_delivered: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapsConfig {
    /// Wall-clock limit for one worker run.
    pub job_runtime: HumanDuration,
    /// A run that prints nothing for this long is stopped as `stalled`.
    pub stall_timeout: HumanDuration,
    pub job_usd: f64,
    pub daily_usd: f64,
    pub daily_soft_warn_usd: f64,
    pub monthly_usd: f64,
    /// Runs (attempts) per task before it fails with `attempts_exhausted`.
    pub max_attempts: u32,
    /// Worker invocations per task, all roles counted.
    pub max_worker_calls: u32,
    /// Between SIGTERM and SIGKILL when oxi stops a run's process group.
    pub kill_grace: HumanDuration,
    /// A run whose output passes this many bytes is stopped as `output_capped`.
    pub output_per_run: HumanSize,
    /// How much of a run's raw output is kept in `raw.jsonl` (the rest is counted, not kept).
    pub raw_log_per_run: HumanSize,
    /// The least a run is assumed to cost when admitting it (before there is history, the
    /// estimate is this floor; after, the p90 of past runs of that worker, at least this).
    pub estimate_floor_usd: f64,
    /// First backoff for a rate-limited or transient run; doubles per attempt.
    pub retry_backoff: HumanDuration,
    /// Longest backoff.
    pub retry_backoff_max: HumanDuration,
    /// Where `daily_usd` came from (not a key: `oxi saturate --max-cost-per-day` lowers the
    /// cap for its session, and refusals must name the limit a person would raise).
    #[serde(skip)]
    pub daily_source: DailyCapSource,
}

/// Which setting holds the day's cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DailyCapSource {
    /// `caps.daily_usd` in oxi.toml.
    #[default]
    Config,
    /// `oxi saturate --max-cost-per-day`, lower than `caps.daily_usd`.
    MaxCostPerDay,
}

impl Default for CapsConfig {
    fn default() -> Self {
        Self {
            job_runtime: HumanDuration::from_secs(45 * 60),
            stall_timeout: HumanDuration::from_secs(10 * 60),
            job_usd: 2.0,
            daily_usd: 20.0,
            daily_soft_warn_usd: 10.0,
            monthly_usd: 400.0,
            max_attempts: 3,
            max_worker_calls: 6,
            kill_grace: HumanDuration::from_secs(10),
            output_per_run: HumanSize::gib(1),
            raw_log_per_run: HumanSize::mib(64),
            estimate_floor_usd: 0.25,
            retry_backoff: HumanDuration::from_secs(120),
            retry_backoff_max: HumanDuration::from_secs(2 * 3600),
            daily_source: DailyCapSource::Config,
        }
    }
}

/// Which agent CLI a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerKind {
    Codex,
    Claude,
}

impl WorkerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerKind::Codex => "codex",
            WorkerKind::Claude => "claude",
        }
    }
}

impl fmt::Display for WorkerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    pub kind: WorkerKind,
    /// argv prefix: a path or a name on PATH, then fixed arguments.
    pub command: Vec<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// Extra arguments appended after oxi's own.
    #[serde(default)]
    pub args: Vec<String>,
    /// Names of variables passed through from oxi's environment. Their values are secrets to oxi.
    #[serde(default)]
    pub env: Vec<String>,
    /// Fixed variables set for the worker.
    #[serde(default)]
    pub set_env: BTreeMap<String, String>,
    /// Claude only: `--permission-mode`. `acceptEdits` (default) edits files without asking and
    /// works as root; `bypassPermissions` also runs commands (as root Claude then needs
    /// `IS_SANDBOX=1` in `set_env`).
    #[serde(default)]
    pub permission_mode: Option<String>,
    /// Claude only: `--max-turns`, the agent's own turn limit.
    #[serde(default)]
    pub max_turns: Option<u32>,
    /// Codex only: `--sandbox` (`read-only`, `workspace-write` (default),
    /// `danger-full-access`), or `bypass` for `--dangerously-bypass-approvals-and-sandbox`.
    #[serde(default)]
    pub sandbox: Option<String>,
}

/// Claude permission modes that run unattended (the others prompt, or refuse to edit).
pub const CLAUDE_PERMISSION_MODES: &[&str] = &["acceptEdits", "bypassPermissions"];
/// Codex sandbox policies, plus oxi's `bypass`.
pub const CODEX_SANDBOXES: &[&str] = &[
    "read-only",
    "workspace-write",
    "danger-full-access",
    "bypass",
];

impl WorkerConfig {
    /// The effective Claude permission mode.
    pub fn permission_mode(&self) -> &str {
        self.permission_mode.as_deref().unwrap_or("acceptEdits")
    }

    /// The effective Codex sandbox.
    pub fn sandbox(&self) -> &str {
        self.sandbox.as_deref().unwrap_or("workspace-write")
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            project: ProjectConfig::default(),
            run: RunConfig::default(),
            caps: CapsConfig::default(),
            workers: default_workers(),
            routing: RoutingConfig::default(),
            rates: default_rates(),
            verify: VerifyConfig::default(),
            critic: CriticConfig::default(),
            governance: GovernanceConfig::default(),
            kpi: KpiConfig::default(),
            github: None,
        }
    }
}

/// Published prices (USD per million tokens) of the default models; `[rates]` adds to them and
/// overrides them per model. Claude reports its own final cost; its card prices the running
/// estimate that lets a run be stopped at the per-job cap before the CLI's figure arrives.
fn default_rates() -> BTreeMap<String, RateCard> {
    BTreeMap::from([
        (
            "gpt-5.5".to_owned(),
            RateCard {
                input_per_mtok: 1.25,
                cached_input_per_mtok: Some(0.125),
                output_per_mtok: 10.0,
                reasoning_per_mtok: None,
            },
        ),
        (
            "claude-sonnet-4-5".to_owned(),
            RateCard {
                input_per_mtok: 3.0,
                cached_input_per_mtok: Some(0.3),
                output_per_mtok: 15.0,
                reasoning_per_mtok: None,
            },
        ),
    ])
}

/// `[rates]` merged over the built-in cards, the user's card winning per model: `oxi init`
/// writes a card for `gpt-5.5` only, and that must not leave the Claude default unpriced.
fn rates_over_defaults<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, RateCard>, D::Error> {
    let mut rates = default_rates();
    rates.extend(BTreeMap::<String, RateCard>::deserialize(deserializer)?);
    Ok(rates)
}

fn default_workers() -> BTreeMap<String, WorkerConfig> {
    let mut workers = BTreeMap::new();
    workers.insert(
        "claude".to_owned(),
        WorkerConfig {
            kind: WorkerKind::Claude,
            command: vec!["claude".to_owned()],
            model: Some("claude-sonnet-4-5".to_owned()),
            args: Vec::new(),
            env: vec!["ANTHROPIC_API_KEY".to_owned()],
            set_env: BTreeMap::new(),
            permission_mode: None,
            max_turns: None,
            sandbox: None,
        },
    );
    workers.insert(
        "codex".to_owned(),
        WorkerConfig {
            kind: WorkerKind::Codex,
            command: vec!["codex".to_owned()],
            model: Some("gpt-5.5".to_owned()),
            args: Vec::new(),
            env: vec!["OPENAI_API_KEY".to_owned(), "CODEX_HOME".to_owned()],
            set_env: BTreeMap::new(),
            permission_mode: None,
            max_turns: None,
            sandbox: None,
        },
    );
    workers
}

/// A list of worker names, first choice then fallbacks. A single string is accepted too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(from = "OneOrMany")]
pub struct WorkerChain(pub Vec<String>);

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl From<OneOrMany> for WorkerChain {
    fn from(value: OneOrMany) -> Self {
        match value {
            OneOrMany::One(name) => WorkerChain(vec![name]),
            OneOrMany::Many(names) => WorkerChain(names),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    pub planner: WorkerChain,
    pub executor: WorkerChain,
    pub reviewer: WorkerChain,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            planner: WorkerChain(Vec::new()),
            executor: WorkerChain(vec!["claude".to_owned(), "codex".to_owned()]),
            reviewer: WorkerChain(vec!["codex".to_owned()]),
        }
    }
}

/// USD per million tokens for one model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateCard {
    pub input_per_mtok: f64,
    /// Defaults to `input_per_mtok` when absent (no discount assumed: we never under-count).
    #[serde(default)]
    pub cached_input_per_mtok: Option<f64>,
    pub output_per_mtok: f64,
    /// Defaults to `output_per_mtok` when absent.
    #[serde(default)]
    pub reasoning_per_mtok: Option<f64>,
}

/// One acceptance command, argv-form.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptanceCommand {
    pub name: String,
    pub argv: Vec<String>,
    #[serde(default = "default_command_timeout")]
    pub timeout: HumanDuration,
}

fn default_command_timeout() -> HumanDuration {
    HumanDuration::from_secs(10 * 60)
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    /// Fast checks; always run.
    pub tier0: Vec<AcceptanceCommand>,
    /// Broader checks; run when configured and within `tier1_time_box`.
    pub tier1: Vec<AcceptanceCommand>,
    /// Slow checks; run at the end only.
    pub tier2: Vec<AcceptanceCommand>,
    /// tier1 is skipped when its commands' timeouts add up to more than this.
    pub tier1_time_box: Option<HumanDuration>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GovernanceConfig {
    /// Paths (relative to the repository root) a task may change. `"."` is the whole repository.
    pub allowed_roots: Vec<String>,
    /// Globs a task may never change; a change stops the task with `framework_fix_needed`.
    pub protected: Vec<String>,
    /// Globs whose change holds the task until `oxi approve`.
    pub needs_approval: Vec<String>,
    /// How a worker's writes are confined (see docs/safety.md).
    pub confine: ConfineMode,
}

/// `governance.confine`: whether workers run under Landlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfineMode {
    /// Landlock where the kernel offers it (writes only in the worktree, a temp dir and the
    /// CLI's state), else the post-run check alone.
    #[default]
    Auto,
    /// The post-run check alone (for a worker that needs to write elsewhere).
    Off,
}

/// Paths protected even when `governance.protected` is left out.
pub const DEFAULT_PROTECTED: &[&str] = &[
    ".github/workflows/**",
    "oxi.toml",
    ".oxi/**",
    "**/.env",
    "**/.env.*",
    "**/*.pem",
    "**/*.key",
    "**/id_rsa*",
    "**/id_ed25519*",
];

impl Default for GovernanceConfig {
    fn default() -> Self {
        Self {
            allowed_roots: vec![".".to_owned()],
            protected: DEFAULT_PROTECTED.iter().map(|s| (*s).to_owned()).collect(),
            needs_approval: Vec::new(),
            confine: ConfineMode::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// `owner/name`.
    pub repo: String,
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// Name of the variable holding the token (never the token itself).
    #[serde(default = "default_token_env")]
    pub token_env: String,
    /// The git remote branches are pushed to.
    #[serde(default = "default_remote")]
    pub remote: String,
    /// Labels put on every pull request oxi opens (plus `tier-N`).
    #[serde(default = "default_labels")]
    pub labels: Vec<String>,
    /// When oxi may merge: `never` (default; `oxi approve TASK --merge` merges) or
    /// `on_critic_approve` (needs `acknowledge_unattended_merge = true`).
    #[serde(default)]
    pub merge: MergePolicy,
    /// The operator's acknowledgement that `merge = "on_critic_approve"` merges without a human.
    #[serde(default)]
    pub acknowledge_unattended_merge: bool,
    /// What the PR-overlap gate does when GitHub cannot be asked: `defer` (default: fail
    /// closed) or `allow`.
    #[serde(default)]
    pub overlap_unknown: OverlapUnknown,
    /// Longest wait for a rate limit to reset (or a retry-after) before giving up this tick.
    #[serde(default = "default_rate_limit_wait")]
    pub max_rate_limit_wait: HumanDuration,
    /// First backoff for 5xx and network errors (doubling, 4 tries in all).
    #[serde(default = "default_github_backoff")]
    pub retry_backoff: HumanDuration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MergePolicy {
    #[default]
    Never,
    OnCriticApprove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OverlapUnknown {
    #[default]
    Defer,
    Allow,
}

fn default_labels() -> Vec<String> {
    vec!["oxi".to_owned()]
}

fn default_rate_limit_wait() -> HumanDuration {
    HumanDuration::from_secs(15 * 60)
}

fn default_github_backoff() -> HumanDuration {
    HumanDuration::from_secs(2)
}

fn default_api_url() -> String {
    "https://api.github.com".to_owned()
}

fn default_token_env() -> String {
    "GITHUB_TOKEN".to_owned()
}

fn default_remote() -> String {
    "origin".to_owned()
}

/// A parsed, validated configuration and where it lives.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// The `oxi.toml` that was read.
    pub path: PathBuf,
    /// The repository root (`project.root` resolved against the config's directory).
    pub repo_root: PathBuf,
    /// `.oxi/` beside `oxi.toml`.
    pub state_dir: PathBuf,
    /// Where the effective run mode came from (`oxi.toml` or `OXI_RUN_MODE`).
    pub mode_source: ModeSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeSource {
    File,
    Env,
}

/// Proof that the effective run mode is `release`. Only [`LoadedConfig::release_mode`] makes
/// one, and the GitHub writer cannot be built without it: fast mode never holds a writer.
#[derive(Debug)]
pub struct ReleaseMode {
    _private: (),
}

impl LoadedConfig {
    /// `Some` only in release mode.
    pub fn release_mode(&self) -> Option<ReleaseMode> {
        (self.config.run.mode == RunMode::Release).then_some(ReleaseMode { _private: () })
    }

    /// `run.stack_on_delivered`, which applies in fast mode only (release mode has pull
    /// requests to review one at a time).
    pub fn stacks_on_delivered(&self) -> bool {
        self.config.run.stack_on_delivered && self.config.run.mode == RunMode::Fast
    }

    pub fn roadmap_path(&self) -> PathBuf {
        self.repo_root.join(&self.config.project.roadmap)
    }

    pub fn ledger_path(&self) -> PathBuf {
        self.state_dir.join("ledger.db")
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.state_dir.join("runs")
    }

    /// The config path as the user should see it in messages.
    pub fn display_path(&self) -> String {
        display_path(&self.path)
    }
}

fn display_path(path: &Path) -> String {
    if let Ok(cwd) = std::env::current_dir()
        && let Ok(rel) = path.strip_prefix(&cwd)
    {
        return rel.display().to_string();
    }
    path.display().to_string()
}

/// Walks up from `start` to the nearest `oxi.toml`.
pub fn discover(start: &Path) -> Result<PathBuf, ConfigError> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let candidate = d.join(CONFIG_FILE_NAME);
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    Err(ConfigError::NotFound {
        start: start.to_path_buf(),
    })
}

/// Reads, parses and validates the config at `path`, applying `OXI_RUN_MODE` from `env_mode`.
pub fn load(path: &Path, env_mode: Option<&str>) -> Result<LoadedConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut config = parse(&text, &display_path(&path))?;
    let mut mode_source = ModeSource::File;
    if let Some(value) = env_mode.map(str::trim).filter(|v| !v.is_empty()) {
        config.run.mode = match value {
            "fast" => RunMode::Fast,
            "release" => RunMode::Release,
            _ => {
                return Err(ConfigError::BadRunModeEnv {
                    value: value.to_owned(),
                });
            }
        };
        mode_source = ModeSource::Env;
    }
    let config_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let repo_root = normalize(&config_dir.join(&config.project.root));
    Ok(LoadedConfig {
        config,
        state_dir: config_dir.join(STATE_DIR_NAME),
        path,
        repo_root,
        mode_source,
    })
}

/// Lexically removes `.` and resolves `..` so messages show clean paths.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Parses and validates config text; `file` names the file in error messages.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let config: Config = toml::from_str(text).map_err(|e| {
        let (line, col) = e
            .span()
            .map(|span| line_col(text, span.start))
            .unwrap_or((1, 1));
        ConfigError::Invalid {
            location: format!("{file}:{line}:{col}"),
            message: describe_toml_error(text, &e),
        }
    })?;
    let problems = validate(&config);
    if let Some(problem) = problems.into_iter().next() {
        let (line, col) = locate(text, &problem.key).unwrap_or((1, 1));
        return Err(ConfigError::Invalid {
            location: format!("{file}:{line}:{col}"),
            message: format!("{}: {}", problem.key.join("."), problem.message),
        });
    }
    Ok(config)
}

/// toml's message, with the key path prefixed when the error sits on a key we can name.
fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().to_owned();
    let Some(span) = error.span() else {
        return message;
    };
    match key_path_at(text, span.start) {
        Some(path) if !path.is_empty() && !message.contains(&path) => format!("{path}: {message}"),
        _ => message,
    }
}

/// The dotted key whose key or value covers byte `offset`, found by walking toml_edit's spans.
fn key_path_at(text: &str, offset: usize) -> Option<String> {
    let doc = toml_edit::Document::parse(text.to_owned()).ok()?;
    let mut path = Vec::new();
    walk_for_offset(doc.as_table(), offset, &mut path).then(|| path.join("."))
}

fn walk_for_offset(table: &toml_edit::Table, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, item) in table.iter() {
        let key_span = table.key(key).and_then(toml_edit::Key::span);
        let covers =
            |span: Option<std::ops::Range<usize>>| span.is_some_and(|s| s.contains(&offset));
        path.push(key.to_owned());
        if let Some(sub) = item.as_table() {
            if walk_for_offset(sub, offset, path) {
                return true;
            }
            if covers(sub.span()) {
                return true;
            }
        } else if let Some(inline) = item.as_inline_table() {
            if covers(key_span.clone()) || covers(inline.span()) {
                return true;
            }
        } else if covers(key_span) || covers(item.span()) {
            return true;
        }
        path.pop();
    }
    false
}

/// One broken rule, found after the file parsed.
#[derive(Debug, Clone)]
struct Problem {
    key: Vec<String>,
    message: String,
}

fn problem(key: &[&str], message: impl Into<String>) -> Problem {
    Problem {
        key: key.iter().map(|s| (*s).to_owned()).collect(),
        message: message.into(),
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Rules the type system cannot express. Returned in file order of importance, first one wins.
fn validate(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let caps = &config.caps;
    for (key, value) in [
        ("job_usd", caps.job_usd),
        ("daily_usd", caps.daily_usd),
        ("daily_soft_warn_usd", caps.daily_soft_warn_usd),
        ("monthly_usd", caps.monthly_usd),
    ] {
        if !value.is_finite() || value < 0.0 {
            problems.push(problem(
                &["caps", key],
                format!("must be a non-negative amount in USD, not {value}"),
            ));
        }
    }
    if caps.daily_usd > caps.monthly_usd {
        problems.push(problem(
            &["caps", "daily_usd"],
            format!(
                "daily cap {} USD is above the monthly cap {} USD; lower caps.daily_usd or raise caps.monthly_usd",
                caps.daily_usd, caps.monthly_usd
            ),
        ));
    }
    if caps.job_usd > caps.daily_usd {
        problems.push(problem(
            &["caps", "job_usd"],
            format!(
                "per-job cap {} USD is above the daily cap {} USD; no job could ever be admitted in full",
                caps.job_usd, caps.daily_usd
            ),
        ));
    }
    if caps.daily_soft_warn_usd > caps.daily_usd {
        problems.push(problem(
            &["caps", "daily_soft_warn_usd"],
            format!(
                "soft warning at {} USD is above the daily cap {} USD, so it could never fire",
                caps.daily_soft_warn_usd, caps.daily_usd
            ),
        ));
    }
    if caps.max_attempts == 0 {
        problems.push(problem(&["caps", "max_attempts"], "must be at least 1"));
    }
    if caps.max_worker_calls == 0 {
        problems.push(problem(&["caps", "max_worker_calls"], "must be at least 1"));
    }
    if caps.job_runtime.0.is_zero() {
        problems.push(problem(&["caps", "job_runtime"], "must be longer than 0s"));
    }
    if caps.stall_timeout.0.is_zero() {
        problems.push(problem(
            &["caps", "stall_timeout"],
            "must be longer than 0s",
        ));
    }
    if caps.stall_timeout > caps.job_runtime {
        problems.push(problem(
            &["caps", "stall_timeout"],
            format!(
                "stall timeout {} is longer than the job runtime cap {}, so it could never fire",
                caps.stall_timeout, caps.job_runtime
            ),
        ));
    }
    if !caps.estimate_floor_usd.is_finite() || caps.estimate_floor_usd < 0.0 {
        problems.push(problem(
            &["caps", "estimate_floor_usd"],
            "must be a non-negative amount",
        ));
    } else if caps.estimate_floor_usd > caps.job_usd {
        problems.push(problem(
            &["caps", "estimate_floor_usd"],
            format!(
                "{} is more than caps.job_usd ({}): every task would be held for a human",
                caps.estimate_floor_usd, caps.job_usd
            ),
        ));
    }
    if caps.retry_backoff > caps.retry_backoff_max {
        problems.push(problem(
            &["caps", "retry_backoff"],
            format!(
                "{} is longer than caps.retry_backoff_max ({})",
                caps.retry_backoff, caps.retry_backoff_max
            ),
        ));
    }
    if caps.kill_grace.as_duration().is_zero() {
        problems.push(problem(
            &["caps", "kill_grace"],
            "must be longer than 0s: workers need a moment to exit cleanly on SIGTERM",
        ));
    }
    if caps.output_per_run.bytes() < 64 * 1024 {
        problems.push(problem(
            &["caps", "output_per_run"],
            format!(
                "{} is too small for any real run; use at least 64 KiB (default 1 GiB)",
                caps.output_per_run
            ),
        ));
    }
    if caps.raw_log_per_run > caps.output_per_run {
        problems.push(problem(
            &["caps", "raw_log_per_run"],
            format!(
                "{} is more than caps.output_per_run ({}), so it could never be reached",
                caps.raw_log_per_run, caps.output_per_run
            ),
        ));
    }
    if config.run.max_parallel_jobs == 0 {
        problems.push(problem(&["run", "max_parallel_jobs"], "must be at least 1"));
    }
    if config.project.base_branch.trim().is_empty() {
        problems.push(problem(&["project", "base_branch"], "must not be empty"));
    }
    if config.project.roadmap.as_os_str().is_empty() {
        problems.push(problem(&["project", "roadmap"], "must not be empty"));
    }

    let token_env = config.github.as_ref().map(|g| g.token_env.as_str());
    for (name, worker) in &config.workers {
        if worker.command.is_empty() || worker.command[0].trim().is_empty() {
            problems.push(problem(
                &["workers", name, "command"],
                "argv must not be empty; name the binary, e.g. command = [\"claude\"]",
            ));
        }
        for var in &worker.env {
            if !is_env_name(var) {
                problems.push(problem(
                    &["workers", name, "env"],
                    format!("{var:?} is not an environment variable name"),
                ));
            }
            if token_env == Some(var.as_str()) || var == "GITHUB_TOKEN" || var == "GH_TOKEN" {
                problems.push(problem(
                    &["workers", name, "env"],
                    format!("{var} is a GitHub token; a worker never receives it"),
                ));
            }
        }
        for var in worker.set_env.keys() {
            if !is_env_name(var) {
                problems.push(problem(
                    &["workers", name, "set_env"],
                    format!("{var:?} is not an environment variable name"),
                ));
            }
            if token_env == Some(var.as_str()) || var == "GITHUB_TOKEN" || var == "GH_TOKEN" {
                problems.push(problem(
                    &["workers", name, "set_env"],
                    format!("{var} is a GitHub token; a worker never receives it"),
                ));
            }
        }
        let only = |key: &str, kind: WorkerKind| {
            problem(
                &["workers", name, key],
                format!(
                    "`{key}` applies only to {kind} workers; this worker's kind is {}",
                    worker.kind
                ),
            )
        };
        match worker.kind {
            WorkerKind::Claude => {
                if worker.sandbox.is_some() {
                    problems.push(only("sandbox", WorkerKind::Codex));
                }
                if let Some(mode) = &worker.permission_mode
                    && !CLAUDE_PERMISSION_MODES.contains(&mode.as_str())
                {
                    problems.push(problem(
                        &["workers", name, "permission_mode"],
                        format!(
                            "{mode:?} does not run unattended; use one of {}",
                            CLAUDE_PERMISSION_MODES.join(", ")
                        ),
                    ));
                }
                if worker.max_turns == Some(0) {
                    problems.push(problem(
                        &["workers", name, "max_turns"],
                        "must be at least 1",
                    ));
                }
            }
            WorkerKind::Codex => {
                if worker.permission_mode.is_some() {
                    problems.push(only("permission_mode", WorkerKind::Claude));
                }
                if worker.max_turns.is_some() {
                    problems.push(only("max_turns", WorkerKind::Claude));
                }
                if let Some(sandbox) = &worker.sandbox
                    && !CODEX_SANDBOXES.contains(&sandbox.as_str())
                {
                    problems.push(problem(
                        &["workers", name, "sandbox"],
                        format!(
                            "unknown sandbox {sandbox:?}; use one of {}",
                            CODEX_SANDBOXES.join(", ")
                        ),
                    ));
                }
            }
        }
    }

    for (role, chain) in [
        ("planner", &config.routing.planner),
        ("executor", &config.routing.executor),
        ("reviewer", &config.routing.reviewer),
    ] {
        for worker in &chain.0 {
            if !config.workers.contains_key(worker) {
                let known: Vec<&str> = config.workers.keys().map(String::as_str).collect();
                problems.push(problem(
                    &["routing", role],
                    format!(
                        "names worker {worker:?}, which has no [workers.{worker}] table (known: {})",
                        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                    ),
                ));
            }
        }
    }
    if config.routing.executor.0.is_empty() {
        problems.push(problem(
            &["routing", "executor"],
            "must name at least one worker",
        ));
    }

    // A worker without a CLI-reported cost must have a rate card, or its spend is unknowable.
    let routed: std::collections::BTreeSet<&String> = config
        .routing
        .planner
        .0
        .iter()
        .chain(&config.routing.executor.0)
        .chain(&config.routing.reviewer.0)
        .collect();
    for name in routed {
        if let Some(worker) = config.workers.get(name)
            && worker.kind == WorkerKind::Codex
        {
            match &worker.model {
                None => problems.push(problem(
                    &["workers", name, "model"],
                    "a codex worker needs a model, so its cost can be priced from [rates]",
                )),
                Some(model) if !config.rates.contains_key(model) => problems.push(problem(
                    &["workers", name, "model"],
                    format!(
                        "model {model:?} has no [rates.\"{model}\"] table; codex reports tokens but no cost, so oxi cannot enforce caps without a rate card"
                    ),
                )),
                Some(_) => {}
            }
        }
    }

    for (model, card) in &config.rates {
        let fields = [
            ("input_per_mtok", Some(card.input_per_mtok)),
            ("cached_input_per_mtok", card.cached_input_per_mtok),
            ("output_per_mtok", Some(card.output_per_mtok)),
            ("reasoning_per_mtok", card.reasoning_per_mtok),
        ];
        for (key, value) in fields {
            if let Some(v) = value
                && (!v.is_finite() || v < 0.0)
            {
                problems.push(problem(
                    &["rates", model, key],
                    format!("must be a non-negative price, not {v}"),
                ));
            }
        }
    }

    for (tier, commands) in [
        ("tier0", &config.verify.tier0),
        ("tier1", &config.verify.tier1),
        ("tier2", &config.verify.tier2),
    ] {
        for (i, command) in commands.iter().enumerate() {
            let index = i.to_string();
            if command.argv.is_empty() || command.argv[0].trim().is_empty() {
                problems.push(problem(
                    &["verify", tier, &index, "argv"],
                    format!(
                        "acceptance command {:?} has an empty argv; write it like argv = [\"cargo\", \"test\"]",
                        command.name
                    ),
                ));
            }
            if command.name.trim().is_empty() {
                problems.push(problem(
                    &["verify", tier, &index, "name"],
                    "must not be empty",
                ));
            }
            if command.timeout.0.is_zero() {
                problems.push(problem(
                    &["verify", tier, &index, "timeout"],
                    "must be longer than 0s",
                ));
            }
        }
    }

    let gov = &config.governance;
    for (i, root) in gov.allowed_roots.iter().enumerate() {
        let path = Path::new(root);
        if path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            problems.push(problem(
                &["governance", "allowed_roots", &i.to_string()],
                format!("{root:?} must be relative to the repository root and stay inside it"),
            ));
        }
    }
    for (key, globs) in [
        ("protected", &gov.protected),
        ("needs_approval", &gov.needs_approval),
    ] {
        for (i, glob) in globs.iter().enumerate() {
            if let Err(e) = globset::Glob::new(glob) {
                problems.push(problem(
                    &["governance", key, &i.to_string()],
                    format!("{glob:?} is not a valid glob: {e}"),
                ));
            }
        }
    }

    if let Some(github) = &config.github {
        if !is_owner_name(&github.repo) {
            problems.push(problem(
                &["github", "repo"],
                format!("{:?} is not of the form \"owner/name\"", github.repo),
            ));
        }
        if !(github.api_url.starts_with("https://") || github.api_url.starts_with("http://")) {
            problems.push(problem(
                &["github", "api_url"],
                format!("{:?} is not an http(s) URL", github.api_url),
            ));
        }
        if !is_env_name(&github.token_env) {
            problems.push(problem(
                &["github", "token_env"],
                format!(
                    "{:?} is not an environment variable name; put the variable's name here, never the token",
                    github.token_env
                ),
            ));
        }
        if github.merge == MergePolicy::OnCriticApprove && !github.acknowledge_unattended_merge {
            problems.push(problem(
                &["github", "merge"],
                "\"on_critic_approve\" merges pull requests with no human review; set github.acknowledge_unattended_merge = true to confirm (see docs/release.md)",
            ));
        }
        for label in &github.labels {
            if label.trim().is_empty() || label.len() > 50 {
                problems.push(problem(
                    &["github", "labels"],
                    format!("{label:?} is not a usable label (1 to 50 characters)"),
                ));
            }
        }
        let allowed = &config.project.allowed_repos;
        if !allowed.is_empty() && !allowed.iter().any(|r| r.eq_ignore_ascii_case(&github.repo)) {
            problems.push(problem(
                &["github", "repo"],
                format!(
                    "{:?} is not in project.allowed_repos ({})",
                    github.repo,
                    allowed.join(", ")
                ),
            ));
        }
    }
    for (i, repo) in config.project.allowed_repos.iter().enumerate() {
        if !is_owner_name(repo) {
            problems.push(problem(
                &["project", "allowed_repos", &i.to_string()],
                format!("{repo:?} is not of the form \"owner/name\""),
            ));
        }
    }
    problems
}

fn is_owner_name(repo: &str) -> bool {
    let mut parts = repo.split('/');
    let ok = |s: Option<&str>| {
        s.is_some_and(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Finds the line of a dotted key path (array indices as numbers) in the source; falls back to
/// the nearest ancestor that exists, so an error always points somewhere useful.
fn locate(text: &str, key: &[String]) -> Option<(usize, usize)> {
    enum Cursor<'a> {
        Table(&'a dyn toml_edit::TableLike),
        Array(&'a toml_edit::Array),
        Tables(&'a toml_edit::ArrayOfTables),
        Leaf,
    }
    fn cursor_of_item(item: &toml_edit::Item) -> Cursor<'_> {
        if let Some(t) = item.as_array_of_tables() {
            Cursor::Tables(t)
        } else if let Some(a) = item.as_array() {
            Cursor::Array(a)
        } else if let Some(t) = item.as_table_like() {
            Cursor::Table(t)
        } else {
            Cursor::Leaf
        }
    }
    fn cursor_of_value(value: &toml_edit::Value) -> Cursor<'_> {
        match value {
            toml_edit::Value::Array(a) => Cursor::Array(a),
            toml_edit::Value::InlineTable(t) => Cursor::Table(t),
            _ => Cursor::Leaf,
        }
    }

    let doc = toml_edit::Document::parse(text.to_owned()).ok()?;
    let mut cursor = Cursor::Table(doc.as_table());
    let mut best = None;
    for part in key {
        let (span, next) = match (cursor, part.parse::<usize>()) {
            (Cursor::Table(table), _) => match table.get_key_value(part) {
                Some((k, v)) => (k.span().or_else(|| v.span()), cursor_of_item(v)),
                None => break,
            },
            (Cursor::Array(array), Ok(index)) => match array.get(index) {
                Some(v) => (v.span(), cursor_of_value(v)),
                None => break,
            },
            (Cursor::Tables(tables), Ok(index)) => match tables.get(index) {
                Some(t) => (t.span(), Cursor::Table(t)),
                None => break,
            },
            _ => break,
        };
        if let Some(span) = span {
            best = Some(span.start);
        }
        cursor = next;
    }
    best.map(|offset| line_col(text, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_consistent() {
        assert!(validate(&Config::default()).is_empty());
    }

    #[test]
    fn empty_file_is_a_valid_config() {
        let config = parse("", "oxi.toml").unwrap();
        assert_eq!(config.run.mode, RunMode::Fast);
        assert_eq!(config.run.max_parallel_jobs, 1);
        assert_eq!(config.workers.len(), 2);
    }

    #[test]
    fn a_rates_table_is_merged_over_the_built_in_cards() {
        let config = parse(
            "[rates.\"gpt-5.5\"]\ninput_per_mtok = 2.0\noutput_per_mtok = 20.0\n\n[rates.\"other\"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n",
            "oxi.toml",
        )
        .unwrap();
        assert_eq!(config.rates["gpt-5.5"].input_per_mtok, 2.0, "the user wins");
        assert_eq!(config.rates["other"].output_per_mtok, 2.0);
        assert_eq!(
            config.rates.get("claude-sonnet-4-5"),
            default_rates().get("claude-sonnet-4-5"),
            "a built-in card no table overrides stays"
        );
    }

    #[test]
    fn a_bare_string_is_a_one_worker_chain() {
        let config = parse("[routing]\nexecutor = \"claude\"\n", "oxi.toml").unwrap();
        assert_eq!(config.routing.executor.0, vec!["claude".to_owned()]);
    }

    #[test]
    fn locates_nested_keys() {
        let text =
            "[caps]\njob_usd = 1.0\n\n[verify]\ntier0 = [\n  { name = \"a\", argv = [] },\n]\n";
        assert_eq!(
            locate(text, &["caps".into(), "job_usd".into()]),
            Some((2, 1))
        );
        assert_eq!(
            locate(
                text,
                &["verify".into(), "tier0".into(), "0".into(), "argv".into()]
            ),
            Some((6, 17))
        );
    }

    #[test]
    fn env_names() {
        assert!(is_env_name("ANTHROPIC_API_KEY"));
        assert!(is_env_name("_X1"));
        assert!(!is_env_name("1X"));
        assert!(!is_env_name("sk-abc"));
        assert!(!is_env_name(""));
    }
}
