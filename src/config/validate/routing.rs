//! `[routing]`: every chain names configured workers (models with a rate card) or gateway
//! providers, every rule's regexes and globs compile, and someone executes.

use super::{Problem, problem};
use crate::config::{Config, WorkerChain};
use crate::routing::{RouteRole, Router};

/// The `[routing]` rules.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
    for error in Router::check(config) {
        let key: Vec<&str> = error
            .key()
            .unwrap_or_default()
            .iter()
            .map(String::as_str)
            .collect();
        problems.push(problem(&key, error.to_string()));
    }
    for (i, rule) in config.routing.rules.iter().enumerate() {
        let index = i.to_string();
        let written: Vec<(RouteRole, &WorkerChain)> = RouteRole::ALL
            .into_iter()
            .filter_map(|role| role.written_in(rule).map(|chain| (role, chain)))
            .collect();
        // A rule may only switch the explore phase (`explore = false`) and route nothing.
        if written.is_empty() && rule.explore.is_none() {
            problems.push(problem(
                &["routing", "rules", &index, "name"],
                format!(
                    "rule {:?} names no role's chain; give it one (executor = [\"codex:MODEL\"], say) or remove it",
                    rule.name
                ),
            ));
        }
        for (role, chain) in written {
            if chain.0.is_empty() {
                problems.push(problem(
                    &["routing", "rules", &index, role.as_str()],
                    "is empty; leave the key out to keep the default chain",
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
}
