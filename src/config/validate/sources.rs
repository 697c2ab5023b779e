//! `[sources.github_issues]`: needs `[github]` (the repository and token it reads with), at
//! least one usable label, a login-shaped assignee and a brief limit that leaves room for text.

use super::{Problem, problem};
use crate::config::Config;

/// Smallest `max_body` accepted: a brief shorter than this is no brief.
const MIN_BODY: u64 = 1024;
/// Largest `max_body` accepted: a brief is sent to a worker in every prompt.
const MAX_BODY: u64 = 1024 * 1024;

/// The `[sources]` rules.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
    let Some(issues) = &config.sources.github_issues else {
        return;
    };
    let key = |k: &'static str| ["sources", "github_issues", k];
    if config.github.is_none() {
        problems.push(problem(
            &key("labels"),
            "GitHub issues are read from github.repo with github.token_env: add a [github] table (see docs/sources.md)",
        ));
    }
    if issues.labels.is_empty() {
        problems.push(problem(
            &key("labels"),
            "name at least one label (e.g. [\"oxi\"]): without one every open issue would become a task",
        ));
    }
    for label in &issues.labels {
        if label.trim().is_empty() || label.len() > 50 || label.contains(',') {
            problems.push(problem(
                &key("labels"),
                format!("{label:?} is not a usable label (1 to 50 characters, no comma)"),
            ));
        }
    }
    if let Some(assignee) = &issues.assignee
        && (assignee.is_empty()
            || assignee.len() > 39
            || !assignee
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        problems.push(problem(
            &key("assignee"),
            format!("{assignee:?} is not a GitHub login (letters, digits and '-', up to 39)"),
        ));
    }
    if issues.milestone == Some(0) {
        problems.push(problem(
            &key("milestone"),
            "milestone numbers start at 1 (the number in the milestone's URL)",
        ));
    }
    let bytes = issues.max_body.bytes();
    if !(MIN_BODY..=MAX_BODY).contains(&bytes) {
        problems.push(problem(
            &key("max_body"),
            format!("{} is outside 1 KiB to 1 MiB", issues.max_body),
        ));
    }
}
