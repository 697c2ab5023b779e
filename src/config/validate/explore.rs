//! `[explore]` and the rules' `explore` keys: a task that is to be explored needs a planner to
//! run, and the labels `auto` looks for must be words a roadmap can carry.

use super::{Problem, problem};
use crate::config::{Config, ExploreMode};

/// The `[explore]` rules.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
    let explore = &config.explore;
    let default_planner = !config.routing.planner.0.is_empty();
    if explore.mode == ExploreMode::Always && !default_planner {
        problems.push(problem(
            &["explore", "mode"],
            "is \"always\" but routing.planner is empty; name a planner (planner = [\"claude\"], say) or use \"auto\"",
        ));
    }
    for (i, label) in explore.labels.iter().enumerate() {
        if label.trim().is_empty() || label.contains(',') {
            problems.push(problem(
                &["explore", "labels", &i.to_string()],
                format!("{label:?} is not a label; write one word such as \"greenfield\""),
            ));
        }
    }
    for (i, rule) in config.routing.rules.iter().enumerate() {
        let has_planner = rule
            .planner
            .as_ref()
            .map_or(default_planner, |c| !c.0.is_empty());
        if rule.explore == Some(true) && !has_planner {
            problems.push(problem(
                &["routing", "rules", &i.to_string(), "explore"],
                format!(
                    "rule {:?} turns explore on but has no planner: set planner in the rule or routing.planner",
                    rule.name
                ),
            ));
        }
    }
}
