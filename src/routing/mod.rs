//! Which worker (or gateway model) does each role's work for a task: `[routing]`'s chain per
//! role is the default; `[[routing.rules]]` pick other chains for the tasks they match, first
//! match first. Compiled once per command or claim round ([`Router::new`]), then pure.

mod choice;
mod index;
mod literals;
mod when;

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use choice::{ChoiceKind, RouteChoice};
use index::Index;
use when::When;
pub use when::{Clause, labels};

use crate::config::{Config, RoutingConfig, RoutingRule, WorkerChain};
use crate::ledger::TaskSpec;
use crate::worker::WorkerRole;

/// The name a route has when no rule matched.
pub const DEFAULT_ROUTE: &str = "default";

/// A role `[routing]` routes. [`as_str`](Self::as_str) is the one place that names it (the
/// config key and what `oxi route` prints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteRole {
    Executor,
    Reviewer,
    Planner,
    /// Summarises why a run failed (gateway).
    Triage,
    /// Classifies a brief for prompt injection (gateway).
    Screen,
    /// Summarises a run (gateway).
    Summary,
}

impl RouteRole {
    /// Every role, in the order `oxi route` prints them.
    pub const ALL: [RouteRole; 6] = [
        RouteRole::Executor,
        RouteRole::Reviewer,
        RouteRole::Planner,
        RouteRole::Triage,
        RouteRole::Screen,
        RouteRole::Summary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteRole::Executor => "executor",
            RouteRole::Reviewer => "reviewer",
            RouteRole::Planner => "planner",
            RouteRole::Triage => "triage",
            RouteRole::Screen => "screen",
            RouteRole::Summary => "summary",
        }
    }

    /// What this role's chain entries name.
    pub fn kind(self) -> ChoiceKind {
        match self {
            RouteRole::Executor | RouteRole::Reviewer | RouteRole::Planner => ChoiceKind::Worker,
            RouteRole::Triage | RouteRole::Screen | RouteRole::Summary => ChoiceKind::Gateway,
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The role's default chain as `[routing]` writes it.
    pub(crate) fn default_chain(self, routing: &RoutingConfig) -> &WorkerChain {
        match self {
            RouteRole::Executor => &routing.executor,
            RouteRole::Reviewer => &routing.reviewer,
            RouteRole::Planner => &routing.planner,
            RouteRole::Triage => &routing.triage,
            RouteRole::Screen => &routing.screen,
            RouteRole::Summary => &routing.summary,
        }
    }

    /// The role's chain as a rule writes it, if the rule names one.
    pub(crate) fn written_in(self, rule: &RoutingRule) -> Option<&WorkerChain> {
        match self {
            RouteRole::Executor => rule.executor.as_ref(),
            RouteRole::Reviewer => rule.reviewer.as_ref(),
            RouteRole::Planner => rule.planner.as_ref(),
            RouteRole::Triage => rule.triage.as_ref(),
            RouteRole::Screen => rule.screen.as_ref(),
            RouteRole::Summary => rule.summary.as_ref(),
        }
    }
}

impl RouteRole {
    /// The routed role of a worker run (`None` for `oxi run`'s, which names its worker).
    pub fn of(role: WorkerRole) -> Option<Self> {
        match role {
            WorkerRole::Executor => Some(RouteRole::Executor),
            WorkerRole::Reviewer => Some(RouteRole::Reviewer),
            WorkerRole::Planner => Some(RouteRole::Planner),
            WorkerRole::Adhoc | WorkerRole::Shadow => None,
        }
    }
}

impl fmt::Display for RouteRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is wrong with `[routing]`. Every variant but [`RouteError::NoRoute`] carries the key
/// path it is about; the config's validation turns those into `file:line: key: message`. None
/// is retryable: the config must change.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// A `when` regex does not compile.
    #[error("{pattern:?} is not a valid regex: {reason}")]
    BadRegex {
        key: Vec<String>,
        pattern: String,
        reason: String,
    },
    /// A `when.files` glob does not compile.
    #[error("{pattern:?} is not a valid glob: {source}")]
    BadGlob {
        key: Vec<String>,
        pattern: String,
        #[source]
        source: globset::Error,
    },
    /// An agent role's choice names a worker with no `[workers.NAME]` table.
    #[error("names worker {worker:?}, which has no [workers.{worker}] table (known: {known})")]
    UnknownWorker {
        key: Vec<String>,
        worker: String,
        known: String,
    },
    /// A `worker:model` choice names a model oxi has no `[rates]` card for: a typo would only
    /// show when the CLI refuses it, and its cost could not be counted against the caps.
    #[error(
        "names model {model:?} for worker {worker:?}, but [rates] has no card for {model:?}; add [rates.\"{model}\"] with its prices (that is how oxi knows a model and counts its cost)"
    )]
    UnknownModel {
        key: Vec<String>,
        worker: String,
        model: String,
    },
    /// A gateway role's choice names a provider with no `[gateway.providers.NAME]` table.
    #[error(
        "names provider {provider:?}, which has no [gateway.providers.{provider}] table (known: {known})"
    )]
    UnknownProvider {
        key: Vec<String>,
        provider: String,
        known: String,
    },
    /// A choice is not `worker`, `worker:model` or (gateway roles) `provider:model`.
    #[error("{choice:?} is not a {role} choice; write {form}")]
    BadChoice {
        key: Vec<String>,
        role: RouteRole,
        choice: String,
        form: &'static str,
    },
    /// Two rules share a name (what is recorded on runs could not tell them apart).
    #[error("rule name {name:?} is used by an earlier rule too; names must be unique")]
    DuplicateRule { key: Vec<String>, name: String },
    /// A feature needs a role that has no route.
    #[error("no route for the {role} role: set routing.{role} in oxi.toml (a chain of {form})")]
    NoRoute { role: RouteRole, form: &'static str },
}

impl RouteError {
    /// The config key the error is about (`None` for a missing route, which names its role).
    pub fn key(&self) -> Option<&[String]> {
        match self {
            RouteError::BadRegex { key, .. }
            | RouteError::BadGlob { key, .. }
            | RouteError::UnknownWorker { key, .. }
            | RouteError::UnknownModel { key, .. }
            | RouteError::UnknownProvider { key, .. }
            | RouteError::BadChoice { key, .. }
            | RouteError::DuplicateRule { key, .. } => Some(key),
            RouteError::NoRoute { .. } => None,
        }
    }
}

fn form(kind: ChoiceKind) -> &'static str {
    match kind {
        ChoiceKind::Worker => "\"worker\" or \"worker:model\"",
        ChoiceKind::Gateway => "\"provider:model\"",
    }
}

/// The gateway's provider names (`[gateway.providers.NAME]`), which gateway choices must name.
fn known_providers(config: &Config) -> BTreeSet<String> {
    config.gateway.providers.keys().cloned().collect()
}

/// One role's chain per role, indexed by [`RouteRole::index`].
type Chains = [Vec<RouteChoice>; 6];
type RuleChains = [Option<Vec<RouteChoice>>; 6];

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    when: When,
    chains: RuleChains,
    /// Host labels a host needs to run the tasks the rule matches (`requires`).
    requires: Vec<String>,
}

/// `[routing]` compiled: the rules' regexes and globs, every chain parsed.
#[derive(Debug, Clone)]
pub struct Router {
    rules: Vec<Rule>,
    default: Chains,
    index: Index,
}

/// The chain one role routes to for a task, and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick<'r> {
    /// The rule's name, or [`DEFAULT_ROUTE`].
    pub route: &'r str,
    pub chain: &'r [RouteChoice],
}

/// Which rule a task matched (if any).
#[derive(Debug, Clone, Copy)]
pub struct Route<'r> {
    router: &'r Router,
    rule: Option<usize>,
}

impl<'r> Route<'r> {
    /// The matching rule's name, or [`DEFAULT_ROUTE`].
    pub fn name(&self) -> &'r str {
        self.rule
            .and_then(|i| self.router.rules.get(i))
            .map_or(DEFAULT_ROUTE, |r| r.name.as_str())
    }

    /// The host labels the matching rule requires (none without a rule).
    #[must_use]
    pub fn requires(&self) -> &'r [String] {
        self.rule
            .and_then(|i| self.router.rules.get(i))
            .map_or(&[][..], |r| r.requires.as_slice())
    }

    /// `role`'s chain: the rule's when it names one, else the default.
    pub fn pick(&self, role: RouteRole) -> Pick<'r> {
        let rule = self.rule.and_then(|i| self.router.rules.get(i));
        if let Some(rule) = rule
            && let Some(Some(chain)) = rule.chains.get(role.index())
        {
            return Pick {
                route: &rule.name,
                chain,
            };
        }
        Pick {
            route: DEFAULT_ROUTE,
            chain: self
                .router
                .default
                .get(role.index())
                .map_or(&[][..], Vec::as_slice),
        }
    }

    /// `role`'s chain, or [`RouteError::NoRoute`] when it is empty (for a feature that needs
    /// the role).
    pub fn require(&self, role: RouteRole) -> Result<Pick<'r>, RouteError> {
        let pick = self.pick(role);
        if pick.chain.is_empty() {
            return Err(RouteError::NoRoute {
                role,
                form: form(role.kind()),
            });
        }
        Ok(pick)
    }
}

/// The worker (and model) a route chose for one run, and the route's name: recorded on the
/// run, in `state.json`, the pull request body and `oxi show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The rule's name, or [`DEFAULT_ROUTE`].
    pub route: String,
    pub worker: String,
    /// The model the choice names (`None`: the worker's own).
    pub model: Option<String>,
}

impl Assignment {
    /// `choice` from the route `pick`, its model resolved: the one it names, else its worker's.
    pub fn resolve(pick: &Pick<'_>, choice: &RouteChoice, config: &Config) -> Self {
        let worker = choice.name().to_owned();
        let model = choice
            .model()
            .map(str::to_owned)
            .or_else(|| config.workers.get(&worker).and_then(|w| w.model.clone()));
        Self {
            route: pick.route.to_owned(),
            worker,
            model,
        }
    }
}

impl fmt::Display for Assignment {
    /// `` `rule` → worker (model) ``, as the pull request body and `oxi show` print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` → {}", self.route, self.worker)?;
        match &self.model {
            Some(model) => write!(f, " ({model})"),
            None => Ok(()),
        }
    }
}

/// The entries of `chain` whose worker is not held back (blocked after a failed login, or
/// quarantined after a failed probe), in chain order: routing falls to the next of them.
#[must_use]
pub fn runnable<'a>(chain: &'a [RouteChoice], held_back: &[String]) -> Vec<&'a RouteChoice> {
    chain
        .iter()
        .filter(|c| !held_back.iter().any(|h| h == c.name()))
        .collect()
}

/// An [`Assignment`] as `state.json` stores it, written as its `Display` does; `None` for a
/// `state.json` from before routes were recorded.
pub fn describe_assignment(stored: &serde_json::Value) -> Option<String> {
    serde_json::from_value::<Assignment>(stored.clone())
        .ok()
        .map(|a| a.to_string())
}

/// What a claim routed a task's job to: its executor, and the reviewer its review will run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRoutes {
    pub executor: Assignment,
    /// `None` when the task's reviewer chain is empty.
    pub reviewer: Option<Assignment>,
}

/// Why a task routes as it does, for `oxi route`.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The matching rule's name, or [`DEFAULT_ROUTE`].
    pub rule: String,
    /// The matching rule's clauses and what each matched (empty for the default).
    pub matched: Vec<Clause>,
    /// Each earlier rule and the first clause that did not match.
    pub skipped: Vec<Skipped>,
}

/// A rule tried before the one that matched.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub rule: String,
    pub failed: Clause,
}

impl Router {
    /// Compiles `[routing]`; the first problem found when it is broken (a loaded config has
    /// been validated with [`Router::check`], so that is a config nobody loaded).
    pub fn new(config: &Config) -> Result<Self, RouteError> {
        Self::compile(config).map_err(|mut errors| errors.swap_remove(0))
    }

    /// Every problem of `[routing]`, for the config's validation.
    pub fn check(config: &Config) -> Vec<RouteError> {
        Self::compile(config).err().unwrap_or_default()
    }

    fn compile(config: &Config) -> Result<Self, Vec<RouteError>> {
        let providers = known_providers(config);
        let parser = ChainParser { config, providers };
        let mut errors = Vec::new();
        let default: Chains = RouteRole::ALL.map(|role| {
            let key = ["routing".to_owned(), role.as_str().to_owned()];
            parser.parse(role, role.default_chain(&config.routing), &key, &mut errors)
        });
        let mut rules = Vec::new();
        let mut names = BTreeSet::new();
        for (i, rule) in config.routing.rules.iter().enumerate() {
            let key = vec!["routing".to_owned(), "rules".to_owned(), i.to_string()];
            if !names.insert(rule.name.as_str()) {
                let mut name_key = key.clone();
                name_key.push("name".to_owned());
                errors.push(RouteError::DuplicateRule {
                    key: name_key,
                    name: rule.name.clone(),
                });
            }
            let chains: RuleChains = RouteRole::ALL.map(|role| {
                role.written_in(rule).map(|chain| {
                    let mut chain_key = key.clone();
                    chain_key.push(role.as_str().to_owned());
                    parser.parse(role, chain, &chain_key, &mut errors)
                })
            });
            match When::compile(&rule.when, &key) {
                Ok(when) => rules.push(Rule {
                    name: rule.name.clone(),
                    when,
                    chains,
                    requires: rule.requires.iter().map(|l| l.to_lowercase()).collect(),
                }),
                Err(mut found) => errors.append(&mut found),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            index: Index::build(&rules),
            rules,
            default,
        })
    }

    /// The first rule `task` matches, else the default.
    pub fn route(&self, task: &TaskSpec) -> Route<'_> {
        Route {
            router: self,
            rule: self.index.first_match(&self.rules, task),
        }
    }

    /// [`route`](Self::route), with the clauses that decided it.
    pub fn explain(&self, task: &TaskSpec) -> (Route<'_>, Explanation) {
        let mut skipped = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            match rule.when.explain(task) {
                Ok(matched) => {
                    let route = Route {
                        router: self,
                        rule: Some(i),
                    };
                    let rule = rule.name.clone();
                    return (
                        route,
                        Explanation {
                            rule,
                            matched,
                            skipped,
                        },
                    );
                }
                Err(failed) => skipped.push(Skipped {
                    rule: rule.name.clone(),
                    failed,
                }),
            }
        }
        let route = Route {
            router: self,
            rule: None,
        };
        let explanation = Explanation {
            rule: DEFAULT_ROUTE.to_owned(),
            matched: Vec::new(),
            skipped,
        };
        (route, explanation)
    }
}

/// Parses chain entries and checks what they name against the config.
struct ChainParser<'c> {
    config: &'c Config,
    providers: BTreeSet<String>,
}

impl ChainParser<'_> {
    fn parse(
        &self,
        role: RouteRole,
        chain: &WorkerChain,
        key: &[String],
        errors: &mut Vec<RouteError>,
    ) -> Vec<RouteChoice> {
        let mut choices = Vec::new();
        for (i, text) in chain.0.iter().enumerate() {
            let mut entry_key = key.to_vec();
            entry_key.push(i.to_string());
            let Some(choice) = RouteChoice::parse(text, role.kind()) else {
                errors.push(RouteError::BadChoice {
                    key: entry_key,
                    role,
                    choice: text.clone(),
                    form: form(role.kind()),
                });
                continue;
            };
            if let Some(error) = self.unknown(&choice, entry_key) {
                errors.push(error);
                continue;
            }
            choices.push(choice);
        }
        choices
    }

    /// What `choice` names that the config does not have.
    fn unknown(&self, choice: &RouteChoice, key: Vec<String>) -> Option<RouteError> {
        let known = |names: Vec<&str>| {
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        };
        match choice {
            RouteChoice::Worker { name, model } => {
                if !self.config.workers.contains_key(name) {
                    return Some(RouteError::UnknownWorker {
                        key,
                        worker: name.clone(),
                        known: known(self.config.workers.keys().map(String::as_str).collect()),
                    });
                }
                let model = model.as_ref()?;
                (!self.config.rates.contains_key(model)).then(|| RouteError::UnknownModel {
                    key,
                    worker: name.clone(),
                    model: model.clone(),
                })
            }
            RouteChoice::Gateway { provider, .. } => {
                (!self.providers.contains(provider)).then(|| RouteError::UnknownProvider {
                    key,
                    provider: provider.clone(),
                    known: known(self.providers.iter().map(String::as_str).collect()),
                })
            }
        }
    }
}
