//! `[workers.NAME]`: the keys every kind shares are checked here; a kind's own keys are
//! checked by its adapter (src/worker/), and refused on workers of another kind.

use super::{Problem, is_env_name, problem};
use crate::config::{Config, WorkerConfig, WorkerKind};

/// Every `[workers.NAME]` table.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
    let token_env = config.github.as_ref().map(|g| g.token_env.as_str());
    for (name, worker) in &config.workers {
        if worker.command.is_empty() || worker.command[0].trim().is_empty() {
            problems.push(problem(
                &["workers", name, "command"],
                "argv must not be empty; name the binary, e.g. command = [\"claude\"]",
            ));
        }
        check_env(name, worker, token_env, problems);
        check_kind_keys(name, worker, problems);
    }
}

/// `env` and `set_env` name variables, and never a GitHub token.
fn check_env(
    name: &str,
    worker: &WorkerConfig,
    token_env: Option<&str>,
    problems: &mut Vec<Problem>,
) {
    for (key, vars) in [
        ("env", worker.env.iter().collect::<Vec<_>>()),
        ("set_env", worker.set_env.keys().collect()),
    ] {
        for var in vars {
            if !is_env_name(var) {
                problems.push(problem(
                    &["workers", name, key],
                    format!("{var:?} is not an environment variable name"),
                ));
            }
            if token_env == Some(var.as_str()) || var == "GITHUB_TOKEN" || var == "GH_TOKEN" {
                problems.push(problem(
                    &["workers", name, key],
                    format!("{var} is a GitHub token; a worker never receives it"),
                ));
            }
        }
    }
}

/// A key another kind owns is refused; this kind's own keys are checked by its adapter.
fn check_kind_keys(name: &str, worker: &WorkerConfig, problems: &mut Vec<Problem>) {
    let adapter = worker.kind.adapter();
    for key in worker.kind_keys_set() {
        if adapter.own_keys().contains(&key) {
            continue;
        }
        let owner = WorkerKind::ALL
            .iter()
            .find(|kind| kind.adapter().own_keys().contains(&key));
        let owner = owner.map_or_else(|| "other".to_owned(), |kind| kind.to_string());
        problems.push(problem(
            &["workers", name, key],
            format!(
                "`{key}` applies only to {owner} workers; this worker's kind is {}",
                worker.kind
            ),
        ));
    }
    for found in adapter.check_keys(worker) {
        problems.push(problem(&["workers", name, found.key], found.message));
    }
}

/// A routed worker whose CLI reports no cost must have a model with a rate card, or its spend
/// is unknowable.
pub(super) fn check_priced(config: &Config, problems: &mut Vec<Problem>) {
    let routed = config.routing.routed_workers();
    for name in routed {
        let Some(worker) = config.workers.get(name) else {
            continue;
        };
        if worker.kind.adapter().reports_cost() {
            continue;
        }
        let kind = worker.kind;
        match &worker.model {
            None => problems.push(problem(
                &["workers", name, "model"],
                format!("a {kind} worker needs a model, so its cost can be priced from [rates]"),
            )),
            Some(model) if !config.rates.contains_key(model) => problems.push(problem(
                &["workers", name, "model"],
                format!(
                    "model {model:?} has no [rates.\"{model}\"] table; {kind} reports tokens but no cost, so oxi cannot enforce caps without a rate card"
                ),
            )),
            Some(_) => {}
        }
    }
}
