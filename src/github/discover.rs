//! Reads for auto-improve: another repository's releases, and repository search by topic, as
//! GitHub's REST description spells them (`GET /repos/{owner}/{repo}/releases`,
//! `GET /search/repositories`). One page each: a scan wants the latest few, not history.

use serde::Deserialize;

use super::{GithubClient, GithubError};

/// One release (the fields auto-improve reads).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Release {
    pub(crate) html_url: String,
    pub(crate) tag_name: String,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) body: Option<String>,
    #[serde(default)]
    pub(crate) published_at: Option<String>,
    #[serde(default)]
    pub(crate) draft: bool,
}

/// One repository a search found.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct FoundRepository {
    pub(crate) full_name: String,
    pub(crate) html_url: String,
    #[serde(default)]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) stargazers_count: u64,
    pub(crate) created_at: String,
    #[serde(default)]
    pub(crate) pushed_at: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct SearchPage {
    items: Vec<FoundRepository>,
}

/// What a URL path segment may hold unescaped: an `owner/name` was validated to be exactly
/// that, and topics to lower-case letters, digits and '-', so nothing here needs escaping.
fn plain(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

impl GithubClient {
    /// The latest `per_page` releases of `repo` (`owner/name`), newest first.
    pub(crate) async fn releases_of(
        &self,
        repo: &str,
        per_page: u32,
    ) -> Result<Vec<Release>, GithubError> {
        if !plain(repo) {
            return Err(GithubError::Client(format!("{repo:?} is not owner/name")));
        }
        self.get(&format!("/repos/{repo}/releases?per_page={per_page}"))
            .await
    }

    /// Repositories tagged `topic`, most stars first, pushed since `pushed_since`
    /// (`YYYY-MM-DD`).
    pub(crate) async fn search_topic(
        &self,
        topic: &str,
        pushed_since: &str,
        per_page: u32,
    ) -> Result<Vec<FoundRepository>, GithubError> {
        if !plain(topic) || !plain(pushed_since) {
            return Err(GithubError::Client(format!("{topic:?} is not a topic")));
        }
        let page: SearchPage = self
            .get(&format!(
                "/search/repositories?q=topic:{topic}+pushed:%3E%3D{pushed_since}&sort=stars&order=desc&per_page={per_page}"
            ))
            .await?;
        Ok(page.items)
    }
}
