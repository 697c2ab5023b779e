//! `[verify]`: each acceptance command has an argv, a name and a timeout.

use super::{Problem, problem};
use crate::config::Config;

/// The `[verify]` rules.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
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
}
