//! `[run]`.

use super::{Problem, problem};
use crate::config::Config;

/// The `[run]` rules.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
    if config.run.max_parallel_jobs == 0 {
        problems.push(problem(&["run", "max_parallel_jobs"], "must be at least 1"));
    }
}
