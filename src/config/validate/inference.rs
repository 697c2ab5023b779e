//! `[triage]` and `[screen]`: a feature switched on has a gateway route for its role (in the
//! default chain, so every task has one) and limits that leave room for an answer.

use super::{Problem, problem};
use crate::config::{Config, HumanSize};
use crate::routing::{RouteError, RouteRole};

/// The `[triage]` and `[screen]` rules.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
    feature(
        config,
        "triage",
        config.triage.enabled,
        RouteRole::Triage,
        (config.triage.max_tokens, config.triage.max_input),
        problems,
    );
    feature(
        config,
        "screen",
        config.screen.enabled,
        RouteRole::Screen,
        (config.screen.max_tokens, config.screen.max_input),
        problems,
    );
}

fn feature(
    config: &Config,
    table: &str,
    enabled: bool,
    role: RouteRole,
    (max_tokens, max_input): (u32, HumanSize),
    problems: &mut Vec<Problem>,
) {
    if max_tokens == 0 {
        problems.push(problem(
            &[table, "max_tokens"],
            "must be at least 1 (the answer's token limit)",
        ));
    }
    if max_input.bytes() < 256 {
        problems.push(problem(
            &[table, "max_input"],
            format!(
                "{} leaves no room for the text to judge; give it at least 1KB",
                max_input.0
            ),
        ));
    }
    if enabled && role.default_chain(&config.routing).0.is_empty() {
        let error = RouteError::NoRoute {
            role,
            form: "\"provider:model\"",
        };
        problems.push(problem(&[table, "enabled"], error.to_string()));
    }
}
