//! `[project]`: the base branch and roadmap are named, allowed repositories are `owner/name`.

use super::{Problem, is_owner_name, problem};
use crate::config::Config;

/// `project.base_branch` and `project.roadmap`.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
    if config.project.base_branch.trim().is_empty() {
        problems.push(problem(&["project", "base_branch"], "must not be empty"));
    }
    if config.project.roadmap.as_os_str().is_empty() {
        problems.push(problem(&["project", "roadmap"], "must not be empty"));
    }
}

/// `project.allowed_repos` (checked after `[github]`, whose repo must be among them).
pub(super) fn check_allowed_repos(config: &Config, problems: &mut Vec<Problem>) {
    for (i, repo) in config.project.allowed_repos.iter().enumerate() {
        if !is_owner_name(repo) {
            problems.push(problem(
                &["project", "allowed_repos", &i.to_string()],
                format!("{repo:?} is not of the form \"owner/name\""),
            ));
        }
    }
}
