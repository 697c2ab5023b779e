//! `[routing]`: every chain names configured workers, and someone executes.

use super::{Problem, problem};
use crate::config::Config;
use crate::worker::WorkerRole;

/// The `[routing]` rules.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
    for role in WorkerRole::ROUTED {
        let Some(chain) = config.routing.chain(role) else {
            continue;
        };
        let role_key = role.as_str();
        for worker in &chain.0 {
            if !config.workers.contains_key(worker) {
                let known: Vec<&str> = config.workers.keys().map(String::as_str).collect();
                problems.push(problem(
                    &["routing", role_key],
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
}
