//! The schema of `oxi.toml`: one struct per table, each with the safe defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{HumanDuration, HumanSize};
use crate::worker::{RateCard, WorkerConfig, WorkerKind, WorkerRole};

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
    /// The built-in cards (`default_rates`) with the table's merged over them: a card here
    /// adds a model or replaces that model's card; built-in cards for other models stay.
    #[serde(deserialize_with = "rates_over_defaults")]
    pub rates: BTreeMap<String, RateCard>,
    pub verify: VerifyConfig,
    pub critic: CriticConfig,
    pub governance: GovernanceConfig,
    pub github: Option<GithubConfig>,
    pub kpi: KpiConfig,
    /// Task sources besides the roadmap file.
    pub sources: SourcesConfig,
    pub notify: NotifyConfig,
    /// OpenAI-compatible inference providers for the gateway roles (docs/gateway.md).
    pub gateway: GatewayConfig,
    /// This oxi host: its name in the ledger and the labels routing rules may require.
    pub host: HostConfig,
    /// The read-only planning run before the executor (docs/explore.md).
    pub explore: ExploreConfig,
    /// Shadow runs: a sampled share of executor runs also run on a cheaper choice, never
    /// delivered, to measure whether it would do (docs/shadow.md).
    pub shadow: ShadowConfig,
    /// A gateway summary of why a run was reaped or a task failed for good.
    pub triage: TriageConfig,
    /// A gateway prompt-injection screen of briefs before they reach a worker.
    pub screen: ScreenConfig,
    /// `[improve]`: oxi proposes its own roadmap items from outside sources (docs/improve.md).
    /// Absent: nothing runs and nothing is fetched.
    pub improve: Option<ImproveConfig>,
    /// `[ledger]`: where the ledger is. Absent: `.oxi/ledger.db` beside the config.
    pub ledger: LedgerConfig,
}

/// Targets `oxi report` checks each KPI against: below them, unattended runs are not yet
/// worth trusting.
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
    /// External-value tasks (see `external_labels`) / tasks worked in the window.
    pub min_external_value_share: f64,
    /// A task is external when its brief's `labels:` line, its section or its milestone names
    /// one of these (case-insensitive).
    pub external_labels: Vec<String>,
    /// Median and 90th percentile of the time from a task's first dispatch to its delivery.
    pub max_time_per_task_median: HumanDuration,
    pub max_time_per_task_p90: HumanDuration,
    /// Median and 90th percentile of the worker calls (all roles) per task worked.
    pub max_worker_calls_per_task_median: f64,
    pub max_worker_calls_per_task_p90: f64,
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
            min_external_value_share: 0.8,
            external_labels: vec!["external".to_owned()],
            max_time_per_task_median: HumanDuration::from_secs(3 * 60),
            max_time_per_task_p90: HumanDuration::from_secs(6 * 60),
            max_worker_calls_per_task_median: 2.0,
            max_worker_calls_per_task_p90: 4.0,
        }
    }
}

/// When the reviewer worker may be skipped, and when only tier0 runs before review.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CriticConfig {
    /// Skip the reviewer for small, green diffs with no risk trigger (a reviewer run costs
    /// more than such a diff risks).
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
    /// A retry after a stop that kept the work continues the agent's session (claude
    /// `--resume`, codex `exec resume`) with the failure appended (on by default).
    pub resume_sessions: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            mode: RunMode::Fast,
            max_parallel_jobs: 1,
            stack_on_delivered: false,
            resume_sessions: true,
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
            sources: SourcesConfig::default(),
            notify: NotifyConfig::default(),
            gateway: GatewayConfig::default(),
            host: HostConfig::default(),
            explore: ExploreConfig::default(),
            shadow: ShadowConfig::default(),
            triage: TriageConfig::default(),
            screen: ScreenConfig::default(),
            improve: None,
            ledger: LedgerConfig::default(),
        }
    }
}

/// Published prices (USD per million tokens) of the default models; `[rates]` adds to them and
/// overrides them per model. Claude reports its own final cost; its card prices the running
/// estimate that lets a run be stopped at the per-job cap before the CLI's figure arrives.
pub(super) fn default_rates() -> BTreeMap<String, RateCard> {
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

/// One role's chain as written, first choice then fallbacks: `worker` or `worker:model` for the
/// agent roles, `provider:model` for the gateway roles. A single string is accepted too. The
/// text is parsed into [`crate::routing::RouteChoice`]s by the router (and checked at load).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(from = "OneOrMany")]
pub struct WorkerChain(pub Vec<String>);

impl WorkerChain {
    /// The worker (or provider) each choice names, without its `:model`.
    pub fn workers(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|choice| {
            choice
                .split_once(':')
                .map_or(choice.as_str(), |(name, _)| name)
        })
    }
}

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

/// `[routing]`: a chain per role (the default), and `[[routing.rules]]` that pick another chain
/// for the tasks they match, first match first (see docs/routing.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    pub planner: WorkerChain,
    pub executor: WorkerChain,
    pub reviewer: WorkerChain,
    /// Gateway roles (`provider:model`): summarising a failure, screening a brief for prompt
    /// injection, summarising a run.
    pub triage: WorkerChain,
    pub screen: WorkerChain,
    pub summary: WorkerChain,
    pub rules: Vec<RoutingRule>,
}

/// `[[routing.rules]]`: when a task matches `when` (every clause given), the roles this rule
/// names route to its chains; the others keep the default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRule {
    pub name: String,
    #[serde(default)]
    pub when: RuleWhen,
    pub planner: Option<WorkerChain>,
    pub executor: Option<WorkerChain>,
    pub reviewer: Option<WorkerChain>,
    pub triage: Option<WorkerChain>,
    pub screen: Option<WorkerChain>,
    pub summary: Option<WorkerChain>,
    /// Host labels (`[host] labels`) a host must have, all of them, to run the tasks this rule
    /// matches; a task no live host can take waits with that reason.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Whether the tasks this rule matches get a read-only planner run before the executor
    /// (over `[explore] mode`); needs a planner chain.
    pub explore: Option<bool>,
}

/// A rule's clauses; a task matches when every clause given matches (none given: every task).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RuleWhen {
    /// One tier or a list of tiers.
    pub priority_tier: Option<Tiers>,
    /// Regex searched in the title.
    pub title: Option<String>,
    /// Regex searched in the brief.
    pub body: Option<String>,
    /// Regex searched in the roadmap section (`A › B`) and the milestone.
    pub section: Option<String>,
    /// Any of these labels (a task's `Labels:` line).
    pub labels: Vec<String>,
    /// Globs; any file hint matching any of them.
    pub files: Vec<String>,
}

/// `priority_tier = 2` or `priority_tier = [0, 1]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "OneOrManyTiers")]
pub struct Tiers(pub Vec<u8>);

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrManyTiers {
    One(u8),
    Many(Vec<u8>),
}

impl From<OneOrManyTiers> for Tiers {
    fn from(value: OneOrManyTiers) -> Self {
        match value {
            OneOrManyTiers::One(tier) => Tiers(vec![tier]),
            OneOrManyTiers::Many(tiers) => Tiers(tiers),
        }
    }
}

impl RoutingConfig {
    /// The chain `[routing]` names for `role`; `None` for `adhoc` (`oxi run` names its worker).
    pub fn chain(&self, role: WorkerRole) -> Option<&WorkerChain> {
        match role {
            WorkerRole::Planner => Some(&self.planner),
            WorkerRole::Executor => Some(&self.executor),
            WorkerRole::Reviewer => Some(&self.reviewer),
            WorkerRole::Adhoc | WorkerRole::Shadow => None,
        }
    }

    /// Every worker an agent role may route to, by the default chains or any rule.
    pub fn routed_workers(&self) -> std::collections::BTreeSet<&str> {
        let chains = [&self.executor, &self.reviewer, &self.planner]
            .into_iter()
            .chain(
                self.rules
                    .iter()
                    .flat_map(|r| [&r.executor, &r.reviewer, &r.planner].into_iter().flatten()),
            );
        chains.flat_map(WorkerChain::workers).collect()
    }
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            planner: WorkerChain(Vec::new()),
            executor: WorkerChain(vec!["claude".to_owned(), "codex".to_owned()]),
            reviewer: WorkerChain(vec!["codex".to_owned()]),
            triage: WorkerChain(Vec::new()),
            screen: WorkerChain(Vec::new()),
            summary: WorkerChain(Vec::new()),
            rules: Vec::new(),
        }
    }
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
    /// Which open pull requests the PR-overlap gate weighs: `all` (default) or only `oxi`'s.
    #[serde(default)]
    pub overlap_scope: OverlapScope,
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

/// The open pull requests the PR-overlap gate weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OverlapScope {
    /// Every open pull request in the repository: a person's on the same file conflicts too.
    #[default]
    All,
    /// Only pull requests oxi opened (its labels or the `oxi/` branch prefix).
    Oxi,
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

/// `[sources]`: where tasks come from besides `project.roadmap` (which is always read).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    /// Open GitHub issues of `github.repo` that carry the labels become tasks `GH-<number>`.
    pub github_issues: Option<GithubIssuesConfig>,
}

/// `[sources.github_issues]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubIssuesConfig {
    /// An issue becomes a task when it is open and carries every one of these labels.
    pub labels: Vec<String>,
    /// Only issues in this milestone (its number, as GitHub's list filter takes it).
    #[serde(default)]
    pub milestone: Option<u64>,
    /// Only issues assigned to this login.
    #[serde(default)]
    pub assignee: Option<String>,
    /// Longest brief taken from an issue body; a longer body is cut there with a note.
    #[serde(default = "default_issue_brief_limit")]
    pub max_body: HumanSize,
}

fn default_issue_brief_limit() -> HumanSize {
    HumanSize(bytesize::ByteSize::kib(64))
}

/// `[notify]`: where oxi says that a human is needed (docs/notifications.md). No sink, no
/// notification: the table is off by default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// `[[notify.sinks]]`: each a place to send to and the events it wants.
    pub sinks: Vec<NotifySink>,
    /// Attempts per notification and sink before it is recorded as given up.
    pub max_attempts: u32,
    /// The wait after a failed attempt; it doubles after each failure, up to `retry_backoff_max`.
    pub retry_backoff: HumanDuration,
    pub retry_backoff_max: HumanDuration,
    /// The longest one pass (the end of a tick, a saturate round) spends sending; what is not
    /// sent in time stays queued for the next pass.
    pub pass_budget: HumanDuration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            sinks: Vec::new(),
            max_attempts: 5,
            retry_backoff: HumanDuration::from_secs(60),
            retry_backoff_max: HumanDuration::from_secs(3600),
            pass_budget: HumanDuration::from_secs(15),
        }
    }
}

/// `[gateway]`: the inference providers oxi calls directly (non-streaming chat completions)
/// for the roles that need a model answer but no agent: triage, screen, summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// `[gateway.providers.<name>]`, by the name routes use (`name:model`).
    pub providers: BTreeMap<String, GatewayProviderConfig>,
    /// `[gateway.caps]`.
    pub caps: GatewayCapsConfig,
    /// How long a provider that could not be reached stays off (its features disabled)
    /// before oxi tries it again.
    pub down_for: HumanDuration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            providers: BTreeMap::new(),
            caps: GatewayCapsConfig::default(),
            down_for: HumanDuration::from_secs(10 * 60),
        }
    }
}

/// One `[[notify.sinks]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySink {
    /// Names the sink in the ledger, `oxi notify` and `--sink` (default: its kind).
    #[serde(default)]
    pub name: Option<String>,
    pub kind: crate::notify::SinkKind,
    /// The events it wants.
    pub events: Vec<crate::notify::Topic>,
    /// The name of the variable holding the URL (webhook URLs carry their secret).
    #[serde(default)]
    pub url_env: Option<String>,
    /// A literal URL, only for one without credentials (no user:password, no query, not Slack).
    #[serde(default)]
    pub url: Option<String>,
    /// webhook, ntfy: the name of a variable holding a bearer token (`Authorization` header).
    #[serde(default)]
    pub token_env: Option<String>,
    /// command: the program and its arguments (argv-form, no shell).
    #[serde(default)]
    pub argv: Vec<String>,
    /// One attempt's limit (the request, or the command until its group is killed).
    #[serde(default = "default_notify_timeout")]
    pub timeout: HumanDuration,
    /// ntfy: the `Priority` header (1-5, min, low, default, high, max, urgent); by event when unset.
    #[serde(default)]
    pub priority: Option<String>,
    /// ntfy: tags added to the `Tags` header beside the event's name.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl NotifySink {
    /// The sink's name: `name`, else its kind.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.kind.as_str())
    }
}

fn default_notify_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}

/// What a provider speaks beyond the OpenAI chat-completions wire format: where it reports
/// cost, and how its health is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GatewayProviderKind {
    /// A LiteLLM proxy: cost in the `x-litellm-response-cost` header, `/health/readiness`.
    Litellm,
    /// OpenRouter: cost in the body's `usage.cost`.
    Openrouter,
    /// xAI's API (Grok).
    Xai,
    /// OpenAI's API, or any other OpenAI-compatible server.
    Openai,
}

impl GatewayProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayProviderKind::Litellm => "litellm",
            GatewayProviderKind::Openrouter => "openrouter",
            GatewayProviderKind::Xai => "xai",
            GatewayProviderKind::Openai => "openai",
        }
    }

    /// The API root when `base_url` is left out; a LiteLLM proxy has none (it is the user's).
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            GatewayProviderKind::Litellm => None,
            GatewayProviderKind::Openrouter => Some("https://openrouter.ai/api/v1"),
            GatewayProviderKind::Xai => Some("https://api.x.ai/v1"),
            GatewayProviderKind::Openai => Some("https://api.openai.com/v1"),
        }
    }
}

/// `[gateway.providers.<name>]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayProviderConfig {
    pub kind: GatewayProviderKind,
    /// The API root: `/chat/completions` and `/models` are appended to it. For LiteLLM, the
    /// proxy's root (`http://127.0.0.1:4000`; oxi adds `/v1/...` and `/health/readiness`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// The name of the variable holding the API key (never the key itself).
    #[serde(default)]
    pub key_env: Option<String>,
    /// LiteLLM only: a virtual key per role (`triage = "OXI_LITELLM_TRIAGE_KEY"`), each the
    /// name of a variable; a role without one uses `key_env`.
    #[serde(default)]
    pub role_key_env: BTreeMap<String, String>,
    /// Longest wait for one answer (each attempt).
    #[serde(default = "default_gateway_timeout")]
    pub timeout: HumanDuration,
    /// Further attempts after a 429, a 5xx or a network error.
    #[serde(default = "default_gateway_retries")]
    pub retries: u32,
    /// Longest `retry-after` oxi honours; a longer one fails the call instead of waiting.
    #[serde(default = "default_gateway_max_retry_wait")]
    pub max_retry_wait: HumanDuration,
}

fn default_gateway_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}

fn default_gateway_retries() -> u32 {
    2
}

fn default_gateway_max_retry_wait() -> HumanDuration {
    HumanDuration::from_secs(60)
}

/// `[gateway.caps]`: what gateway calls may spend. Every call also counts against
/// `caps.daily_usd` and `caps.monthly_usd`, reserved like a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayCapsConfig {
    /// Held for each call until it settles at what it cost (a call that costs more is
    /// recorded at its cost).
    pub call_reserve_usd: f64,
    /// Per role, per UTC day.
    pub triage_daily_usd: f64,
    pub screen_daily_usd: f64,
    pub summary_daily_usd: f64,
    /// `oxi gateway test`.
    pub test_daily_usd: f64,
}

impl Default for GatewayCapsConfig {
    fn default() -> Self {
        Self {
            call_reserve_usd: 0.05,
            triage_daily_usd: 1.0,
            screen_daily_usd: 1.0,
            summary_daily_usd: 1.0,
            test_daily_usd: 0.5,
        }
    }
}

/// `[host]`: who this oxi is among the hosts sharing a ledger.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Unique among the hosts sharing the ledger (default: the machine's hostname).
    pub name: Option<String>,
    /// What this host offers (`macos`, `gpu`, `codex`); `requires` in a routing rule names them.
    pub labels: Vec<String>,
}

impl HostConfig {
    /// `name`, else the machine's hostname, else `localhost`.
    #[must_use]
    pub fn resolved_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".to_owned())
        })
    }

    /// The labels lower-cased, as routing compares them.
    #[must_use]
    pub fn normalized_labels(&self) -> Vec<String> {
        let mut labels: Vec<String> = self
            .labels
            .iter()
            .map(|l| l.trim().to_lowercase())
            .collect();
        labels.sort();
        labels.dedup();
        labels
    }
}

/// `[explore] mode`: when a task gets a read-only planner run before its executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExploreMode {
    /// Tasks with no file hints, or labelled or sectioned as one of `[explore] labels`.
    #[default]
    Auto,
    /// Every task (that has a planner route).
    Always,
    /// No task, unless a routing rule says `explore = true`.
    Never,
}

impl ExploreMode {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ExploreMode::Auto => "auto",
            ExploreMode::Always => "always",
            ExploreMode::Never => "never",
        }
    }
}

/// `[explore]`: the planner run before the executor (docs/explore.md). A task is explored only
/// when its route has a planner chain (`routing.planner` or its rule's).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExploreConfig {
    pub mode: ExploreMode,
    /// `auto` explores a task with one of these labels (its `Labels:` line), or whose roadmap
    /// section or milestone names one of them (case-insensitive).
    pub labels: Vec<String>,
}

impl Default for ExploreConfig {
    fn default() -> Self {
        Self {
            mode: ExploreMode::Auto,
            labels: vec!["greenfield".to_owned(), "ambiguous".to_owned()],
        }
    }
}
/// `[shadow]`: which executor runs also run on the shadow choice, and its own daily cap. Off
/// unless `worker` is set and `sample` is above 0.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShadowConfig {
    /// The worker (a `[workers]` name) the shadow runs on.
    pub worker: Option<String>,
    /// The model it runs with (`None`: the worker's own).
    pub model: Option<String>,
    /// The share of executor runs shadowed, 0 to 1; chosen by task id and attempt, so the same
    /// attempt is always sampled the same way.
    pub sample: f64,
    /// What shadow runs may spend per UTC day, on top of (and within) `[caps]`.
    pub daily_usd: f64,
    /// Only runs routed by these rules (`default` for the default chain); empty: every rule.
    pub rules: Vec<String>,
    /// Never runs routed by these rules.
    pub skip_rules: Vec<String>,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        Self {
            worker: None,
            model: None,
            sample: 0.0,
            daily_usd: 1.0,
            rules: Vec::new(),
            skip_rules: Vec::new(),
        }
    }
}

impl ShadowConfig {
    /// The shadow worker, when shadow runs are on.
    #[must_use]
    pub fn enabled_worker(&self) -> Option<&str> {
        self.worker.as_deref().filter(|_| self.sample > 0.0)
    }
}

/// `[triage]`: when the reaper ends a stuck run or a task fails for good, one gateway call
/// (routing role `triage`) summarises why from the run's transcript tail, stderr and failing
/// verification log. Off by default: it spends money.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TriageConfig {
    pub enabled: bool,
    /// At most this much of the run's text (after masking) is sent, split over its parts.
    pub max_input: HumanSize,
    /// The answer's `max_tokens`.
    pub max_tokens: u32,
}

impl Default for TriageConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_input: HumanSize(bytesize::ByteSize::kb(16)),
            max_tokens: 300,
        }
    }
}

/// Which briefs `[screen]` classifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScreenScope {
    /// Only outside text (GitHub issue bodies): the repository's roadmap is the operator's.
    Outside,
    /// Every task's brief.
    All,
}

/// What `[screen]` does with a task when the gateway gives no verdict (down, refused by a
/// cap, or an answer that is not the verdict asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScreenOnError {
    /// Fail closed: hold the task for `oxi approve`.
    Hold,
    /// Fail open: let the brief go to the worker unscreened.
    Pass,
}

/// `[screen]`: before a task's brief reaches a worker, one gateway call (routing role
/// `screen`) classifies it for prompt injection; a flagged brief is held for `oxi approve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScreenConfig {
    pub enabled: bool,
    pub scope: ScreenScope,
    /// Unset: hold outside text, pass the roadmap's own (see docs/gateway.md).
    pub on_error: Option<ScreenOnError>,
    /// The verdict's `max_tokens`.
    pub max_tokens: u32,
    /// Briefs longer than this are cut (the cut is said in the request).
    pub max_input: HumanSize,
}

impl Default for ScreenConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            scope: ScreenScope::Outside,
            on_error: None,
            max_tokens: 200,
            max_input: HumanSize(bytesize::ByteSize::kb(32)),
        }
    }
}

/// `[improve]`: where oxi looks for changes relevant to this repository, how it ranks them and
/// how many it proposes (docs/improve.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImproveConfig {
    /// Accepted ÷ emitted proposals below this in each of the last two 7-day windows: the
    /// next scan pauses auto-improve instead of running.
    pub acceptance_ratio_threshold: f64,
    /// How many ranked candidates a scan proposes.
    pub top: usize,
    /// GitHub prefilter: repositories with fewer stars per day of age (over at most 30
    /// days) are dropped.
    pub min_stars_per_day: f64,
    /// GitHub prefilter: repositories without a push this recent are dropped.
    pub max_commit_age: HumanDuration,
    /// One source's time limit (a request, or the X command until it is killed).
    pub source_timeout: HumanDuration,
    /// The largest page or answer a source may send.
    pub max_page_size: HumanSize,
    /// `[[improve.sources]]`.
    pub sources: Vec<ImproveSource>,
    /// The day's cap on auto-improve's gateway calls (embeddings and judge), inside the
    /// global caps.
    pub daily_usd: f64,
    /// `provider:model` of a gateway embeddings model: BM25's candidates are reranked by
    /// cosine similarity to the project's context and the two ranks fused. Unset: BM25 alone.
    pub embeddings: Option<String>,
    /// `provider:model` of a gateway chat model that judges the best-ranked candidates (one
    /// call each, a strict JSON verdict); only those it accepts are staged. Unset: the ranking
    /// alone stages proposals.
    pub judge: Option<String>,
    /// How many candidates (after dedup and the fabrication filter) the judge sees per scan.
    pub judge_top: usize,
    /// The judge's relevance (1–5) a candidate needs to be staged.
    pub min_relevance: u8,
    /// The judge's concreteness (1–5) a candidate needs to be staged.
    pub min_concreteness: u8,
    /// Semantic dedup: a candidate this similar (cosine of embeddings) to an open task or one
    /// touched in the last 30 days is skipped. Needs `embeddings`.
    pub similarity_threshold: f64,
    /// Temporal dedup: a candidate of the same source kind and target as a proposal made this
    /// recently is skipped.
    pub temporal_window: HumanDuration,
    /// `oxi doctor` and `oxi report` warn when no scan finished for this long.
    pub stale_after: HumanDuration,
}

/// `improve.daily_usd` when unset (and the improve role's cap without `[improve]`).
pub const IMPROVE_DAILY_USD: f64 = 5.0;

impl Default for ImproveConfig {
    fn default() -> Self {
        Self {
            acceptance_ratio_threshold: 0.15,
            top: 15,
            min_stars_per_day: 1.0,
            max_commit_age: HumanDuration::from_secs(14 * 24 * 3600),
            source_timeout: HumanDuration::from_secs(30),
            max_page_size: HumanSize::mib(2),
            sources: Vec::new(),
            daily_usd: IMPROVE_DAILY_USD,
            embeddings: None,
            judge: None,
            judge_top: 30,
            min_relevance: 3,
            min_concreteness: 3,
            similarity_threshold: 0.85,
            temporal_window: HumanDuration::from_secs(14 * 24 * 3600),
            stale_after: HumanDuration::from_secs(36 * 3600),
        }
    }
}

/// What an `[[improve.sources]]` entry reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImproveSourceKind {
    /// The latest releases of pinned repositories.
    GithubReleases,
    /// Repositories by topic, through GitHub's search.
    GithubSearch,
    /// A newsletter's archive page over HTTP(S).
    Newsletter,
    /// Posts from X, through an operator-configured command.
    X,
}

impl ImproveSourceKind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ImproveSourceKind::GithubReleases => "github_releases",
            ImproveSourceKind::GithubSearch => "github_search",
            ImproveSourceKind::Newsletter => "newsletter",
            ImproveSourceKind::X => "x",
        }
    }
}

/// How a newsletter page is read: `links` (every article link with its title) or a known
/// archive's own layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NewsletterParser {
    #[default]
    Links,
    /// A Substack archive (`/archive`): `a.post-preview-title` links.
    Substack,
    /// A Buttondown archive: `.email-list a` items with their `h2`/`h3` title.
    Buttondown,
}

impl NewsletterParser {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            NewsletterParser::Links => "links",
            NewsletterParser::Substack => "substack",
            NewsletterParser::Buttondown => "buttondown",
        }
    }
}

/// One `[[improve.sources]]` entry; which keys apply depends on `kind`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImproveSource {
    pub kind: ImproveSourceKind,
    /// Names the source in events and the digest (default: derived from kind and target).
    #[serde(default)]
    pub name: Option<String>,
    /// `github_releases`: `owner/name` of each pinned repository.
    #[serde(default)]
    pub repos: Vec<String>,
    /// `github_search`: GitHub topics (`topic:NAME` searches).
    #[serde(default)]
    pub topics: Vec<String>,
    /// newsletter: the archive page's URL.
    #[serde(default)]
    pub url: Option<String>,
    /// newsletter: how the page is read.
    #[serde(default)]
    pub parser: NewsletterParser,
    /// x: the program and its arguments (argv-form, no shell); oxi appends
    /// `--since <RFC 3339>` and each account.
    #[serde(default)]
    pub command: Vec<String>,
    /// x: the accounts to read.
    #[serde(default)]
    pub accounts: Vec<String>,
}

impl ImproveSource {
    /// The source's name: `name`, else its kind and target.
    #[must_use]
    pub fn name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let target = match self.kind {
            ImproveSourceKind::GithubReleases => self.repos.join(","),
            ImproveSourceKind::GithubSearch => self.topics.join(","),
            ImproveSourceKind::Newsletter => self.url.clone().unwrap_or_default(),
            ImproveSourceKind::X => self.accounts.join(","),
        };
        format!("{}:{target}", self.kind.as_str())
    }
}

/// `[ledger]`: a Postgres database several hosts share, instead of the sqlite file
/// `.oxi/ledger.db` (docs/postgres.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// `postgres://USER@HOST/DB` (or `postgres://USER@/DB?host=/run/postgresql` for a Unix
    /// socket); never with a password in it. Unset: the sqlite ledger.
    pub url: Option<String>,
    /// The NAME of the environment variable holding the password, when the server asks for one.
    pub password_env: Option<String>,
}
