//! `[sources.github_issues]`: can the token read the repository's issues? A token that can push
//! may still lack the issues permission (fine-grained tokens grant it separately), and then every
//! issue sync fails; doctor makes the sync's own list call and names the permission.

use super::{Check, Status, check};
use crate::config::{LoadedConfig, RunMode};
use crate::github::issues::IssueFilter;
use crate::github::{GithubClient, GithubError, resolve_token};

const NAME: &str = "github issues";

/// One `github issues` check when the issue source is configured.
pub(super) async fn check_issues(
    config: &LoadedConfig,
    parent_env: &[(String, String)],
    out: &mut Vec<Check>,
) {
    let (Some(source), Some(github)) =
        (&config.config.sources.github_issues, &config.config.github)
    else {
        return;
    };
    let listed = async {
        let client = GithubClient::new(github, &resolve_token(github, parent_env)?)?;
        client
            .open_issues(&IssueFilter {
                labels: &source.labels,
                milestone: source.milestone,
                assignee: source.assignee.as_deref(),
            })
            .await
    }
    .await;
    let release = config.config.run.mode == RunMode::Release;
    // Release mode also comments on the issues it works on.
    let access = if release { "Read and write" } else { "Read" };
    out.push(match listed {
        Ok(list) => check(
            NAME,
            Status::Ok,
            format!(
                "{} open issue(s) with labels {} in {}{}",
                list.issues.len(),
                source.labels.join(", "),
                github.repo,
                if release {
                    " (oxi comments on them: the token needs issue write access too)"
                } else {
                    ""
                }
            ),
            None,
        ),
        Err(e) => {
            let fix = match &e {
                GithubError::Forbidden { .. }
                | GithubError::Rejected {
                    status: 403 | 404, ..
                } => Some(format!(
                    "give the token access to the issues of {}: a fine-grained token needs the \
                     repository permission \"Issues: {access}\"; a classic token needs the `repo` \
                     scope (`public_repo` for a public repository)",
                    github.repo
                )),
                _ => None,
            };
            check(
                NAME,
                Status::Fail,
                format!("cannot list the issues of {}: {e}", github.repo),
                fix,
            )
        }
    });
}
