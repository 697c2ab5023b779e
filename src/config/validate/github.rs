//! `[github]`: the repository, URL and token variable are well-formed; unattended merge is
//! acknowledged.

use super::{Problem, is_env_name, is_owner_name, problem};
use crate::config::{Config, MergePolicy};

/// The `[github]` rules.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
    if let Some(github) = &config.github {
        if !is_owner_name(&github.repo) {
            problems.push(problem(
                &["github", "repo"],
                format!("{:?} is not of the form \"owner/name\"", github.repo),
            ));
        }
        if !(github.api_url.starts_with("https://") || github.api_url.starts_with("http://")) {
            problems.push(problem(
                &["github", "api_url"],
                format!("{:?} is not an http(s) URL", github.api_url),
            ));
        }
        if !is_env_name(&github.token_env) {
            problems.push(problem(
                &["github", "token_env"],
                format!(
                    "{:?} is not an environment variable name; put the variable's name here, never the token",
                    github.token_env
                ),
            ));
        }
        if github.merge == MergePolicy::OnCriticApprove && !github.acknowledge_unattended_merge {
            problems.push(problem(
                &["github", "merge"],
                "\"on_critic_approve\" merges pull requests with no human review; set github.acknowledge_unattended_merge = true to confirm (see docs/release.md)",
            ));
        }
        for label in &github.labels {
            if label.trim().is_empty() || label.len() > 50 {
                problems.push(problem(
                    &["github", "labels"],
                    format!("{label:?} is not a usable label (1 to 50 characters)"),
                ));
            }
        }
        let allowed = &config.project.allowed_repos;
        if !allowed.is_empty() && !allowed.iter().any(|r| r.eq_ignore_ascii_case(&github.repo)) {
            problems.push(problem(
                &["github", "repo"],
                format!(
                    "{:?} is not in project.allowed_repos ({})",
                    github.repo,
                    allowed.join(", ")
                ),
            ));
        }
    }
}
