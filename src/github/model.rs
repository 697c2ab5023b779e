//! The parts of GitHub's REST answers oxi reads: typed, forgiving (unknown fields ignored,
//! optional ones defaulted), so a GitHub that adds fields never breaks oxi.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Permissions {
    #[serde(default)]
    pub push: bool,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Repository {
    pub full_name: String,
    #[serde(default)]
    pub default_branch: Option<String>,
    #[serde(default)]
    pub permissions: Option<Permissions>,
    /// The merge methods the repository allows (GitHub sends them to tokens with push
    /// access; absent means GitHub's default, allowed).
    #[serde(default)]
    pub allow_squash_merge: Option<bool>,
    #[serde(default)]
    pub allow_merge_commit: Option<bool>,
    #[serde(default)]
    pub allow_rebase_merge: Option<bool>,
}

/// How a pull request is merged (`merge_method` of `PUT …/pulls/{n}/merge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeMethod {
    Squash,
    Merge,
    Rebase,
}

impl MergeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMethod::Squash => "squash",
            MergeMethod::Merge => "merge",
            MergeMethod::Rebase => "rebase",
        }
    }
}

impl Repository {
    /// The method oxi merges with: squash (one commit per task) when the repository allows
    /// it, else a merge commit, else rebase; `None` when it allows none.
    pub fn merge_method(&self) -> Option<MergeMethod> {
        [
            (self.allow_squash_merge, MergeMethod::Squash),
            (self.allow_merge_commit, MergeMethod::Merge),
            (self.allow_rebase_merge, MergeMethod::Rebase),
        ]
        .into_iter()
        .find(|(allowed, _)| allowed.unwrap_or(true))
        .map(|(_, method)| method)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Ref {
    #[serde(rename = "ref")]
    pub name: String,
    pub sha: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Label {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PullRequest {
    pub number: u64,
    #[serde(default)]
    pub node_id: Option<String>,
    pub state: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub draft: bool,
    #[serde(default)]
    pub merged: Option<bool>,
    #[serde(default)]
    pub merged_at: Option<String>,
    pub head: Ref,
    pub base: Ref,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub labels: Vec<Label>,
}

impl PullRequest {
    pub fn is_merged(&self) -> bool {
        self.merged == Some(true) || self.merged_at.is_some()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PullFile {
    pub filename: String,
    #[serde(default)]
    pub status: String,
    /// The old path of a renamed file.
    #[serde(default)]
    pub previous_filename: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Review {
    pub state: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub submitted_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CheckRun {
    #[serde(default)]
    pub id: u64,
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub output: Option<CheckOutput>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct CheckOutput {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CheckRuns {
    #[serde(default)]
    pub total_count: u64,
    #[serde(default)]
    pub check_runs: Vec<CheckRun>,
}

/// One commit status (the statuses API: CI services that do not use checks report here).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CommitStatus {
    /// `error`, `failure`, `pending` or `success`.
    pub state: String,
    #[serde(default)]
    pub context: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub target_url: Option<String>,
}

/// `GET …/commits/{ref}/status`: the latest status of each context.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CombinedStatus {
    #[serde(default)]
    pub total_count: u64,
    #[serde(default)]
    pub statuses: Vec<CommitStatus>,
}
