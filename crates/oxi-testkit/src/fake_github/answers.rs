//! The answers GitHub gives when things do not go to plan, on cue: a merge method the
//! repository does not allow (405), drafts a plan lacks (422), a repository renamed (301 to
//! `/repositories/{id}`), secondary rate limits, writes that happened but whose answer was lost,
//! renamed files, and GitHub Enterprise Server's layout (REST under `/api/v3`, GraphQL at
//! `/api/graphql`). Messages are GitHub's own wording.

use std::collections::HashMap;

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::{FakeGithub, Fault, Inner, Pull, error, json_response, unix_now_secs};

/// A repository's merge settings (the `allow_*` fields of `GET /repos/{owner}/{repo}`) and
/// whether its plan has draft pull requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSettings {
    pub allow_squash_merge: bool,
    pub allow_merge_commit: bool,
    pub allow_rebase_merge: bool,
    pub drafts: bool,
}

impl Default for RepoSettings {
    fn default() -> Self {
        Self {
            allow_squash_merge: true,
            allow_merge_commit: true,
            allow_rebase_merge: true,
            drafts: true,
        }
    }
}

/// What this module keeps in the fake's state.
#[derive(Debug, Default)]
pub(super) struct More {
    pub(super) settings: RepoSettings,
    /// The last id handed out (check runs, statuses).
    pub(super) next_id: u64,
    /// (pull request, merge method) of every merge.
    pub(super) merges: Vec<(u64, String)>,
    /// Commit statuses by sha or branch, oldest first.
    pub(super) statuses: HashMap<String, Vec<Value>>,
    /// Faults answered after the request took effect.
    pub(super) late_faults: Vec<Fault>,
    /// The repository's name before a rename: requests to it answer 301.
    pub(super) moved_from: Option<String>,
    /// GitHub Enterprise Server's layout.
    pub(super) enterprise: bool,
}

/// Where GitHub Enterprise Server serves REST.
const ENTERPRISE_REST: &str = "/api/v3";

impl FakeGithub {
    /// Serves like GitHub Enterprise Server: REST under `/api/v3`, GraphQL only at `/api/graphql`.
    pub async fn start_enterprise(
        repo: &str,
        token: &str,
        bare: std::path::PathBuf,
    ) -> std::io::Result<Self> {
        let fake = Self::start(repo, token, bare).await?;
        fake.with(|i| i.more.enterprise = true);
        Ok(fake)
    }

    pub fn set_repo_settings(&self, settings: RepoSettings) {
        self.with(|i| i.more.settings = settings);
    }

    /// (pull request, merge method) of every merge, in order.
    pub fn merge_methods(&self) -> Vec<(u64, String)> {
        self.with(|i| i.more.merges.clone())
    }

    /// A fault answered *after* the request took effect: the write happened on GitHub, but its
    /// answer was lost (a 502 from a proxy, a dropped connection).
    pub fn add_fault_after_applying(&self, fault: Fault) {
        self.with(|i| i.more.late_faults.push(fault));
    }

    /// The repository is renamed (or moved) to `new`: the old name answers 301 Moved
    /// Permanently to `/repositories/1…`, which serves the repository under its new name.
    pub fn rename_repo(&self, new: &str) {
        self.with(|i| {
            let old = std::mem::replace(&mut i.repo, new.to_owned());
            i.more.moved_from = Some(old);
        });
    }

    /// A pull request someone else opened from `head` (a branch already in the bare
    /// repository). Returns its number.
    pub fn open_pull(&self, head: &str, base: &str, title: &str, labels: &[&str]) -> u64 {
        self.with(|i| {
            let number = i.pulls.len() as u64 + 1;
            i.pulls.push(Pull {
                number,
                title: title.to_owned(),
                body: String::new(),
                head: head.to_owned(),
                base: base.to_owned(),
                draft: false,
                state: "open".into(),
                merged: false,
                labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            });
            number
        })
    }

    /// A commit status (`error`, `failure`, `pending`, `success`) for a commit, by sha or by
    /// the branch whose head it is; a later one for the same context replaces it.
    pub fn set_commit_status(
        &self,
        sha_or_branch: &str,
        context: &str,
        state: &str,
        description: &str,
    ) {
        self.with(|i| {
            i.more.next_id += 1;
            let status = json!({
                "id": i.more.next_id, "node_id": format!("SC_fake{}", i.more.next_id),
                "state": state, "context": context, "description": description,
                "target_url": format!("https://ci.example.com/{context}"),
                "avatar_url": null, "url": "https://api.github.com/statuses/0",
                "created_at": "2026-11-21T12:00:00Z", "updated_at": "2026-11-21T12:00:00Z",
            });
            i.more
                .statuses
                .entry(sha_or_branch.to_owned())
                .or_default()
                .push(status);
        });
    }
}

impl Fault {
    /// A secondary rate limit: 403 with GitHub's message, `x-ratelimit-remaining` above zero
    /// (the primary limit is fine) and its reset an hour away; `retry-after` only when given.
    pub fn secondary_rate_limited(
        method: Option<&str>,
        path_contains: &str,
        retry_after: Option<u64>,
        times: u32,
    ) -> Self {
        let mut headers = vec![
            ("x-ratelimit-remaining".to_owned(), "4990".to_owned()),
            (
                "x-ratelimit-reset".to_owned(),
                (unix_now_secs() + 3600).to_string(),
            ),
        ];
        if let Some(secs) = retry_after {
            headers.push(("retry-after".to_owned(), secs.to_string()));
        }
        Self {
            method: method.map(str::to_owned),
            path_contains: path_contains.to_owned(),
            status: 403,
            headers,
            body: json!({
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID ABCD:1234.",
                "documentation_url": "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
            }),
            times,
        }
    }

    /// GitHub's error answer: `status` with `message`.
    pub fn refused(
        method: Option<&str>,
        path_contains: &str,
        status: u16,
        message: &str,
        times: u32,
    ) -> Self {
        Self {
            method: method.map(str::to_owned),
            path_contains: path_contains.to_owned(),
            status,
            headers: Vec::new(),
            body: json!({ "message": message, "documentation_url": "https://docs.github.com/rest" }),
            times,
        }
    }
}

/// The REST prefix the fake serves under.
pub(super) fn prefix(more: &More) -> &'static str {
    if more.enterprise { ENTERPRISE_REST } else { "" }
}

/// Splits a request path into the API prefix and the endpoint path; GraphQL is `/graphql`.
/// `None` outside GitHub Enterprise Server's layout (GraphQL under `/api/v3` included): a 404.
pub(super) fn rest_path(state: &Inner, path: &str) -> Option<(String, String)> {
    if !state.more.enterprise {
        return Some((String::new(), path.to_owned()));
    }
    if path == "/api/graphql" {
        return Some((ENTERPRISE_REST.to_owned(), "/graphql".to_owned()));
    }
    match path.strip_prefix(ENTERPRISE_REST) {
        Some(rest) if rest != "/graphql" && (rest.is_empty() || rest.starts_with('/')) => {
            Some((ENTERPRISE_REST.to_owned(), rest.to_owned()))
        }
        _ => None,
    }
}

/// The old name of a renamed repository answers 301 with the new location, as GitHub does.
pub(super) fn moved(state: &Inner, base_url: &str, path: &str) -> Option<Response> {
    let old = state.more.moved_from.as_deref()?;
    let rest = path.strip_prefix(&format!("/repos/{old}"))?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let location = format!("{base_url}/repositories/1{rest}");
    let mut response = json_response(
        StatusCode::MOVED_PERMANENTLY,
        json!({
            "message": "Moved Permanently",
            "url": location,
            "documentation_url": "https://docs.github.com/rest/guides/best-practices-for-using-the-rest-api#follow-redirects"
        }),
    );
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert("location", value);
    }
    Some(response)
}

/// `/repositories/1…` is the repository by id: its current name.
pub(super) fn unmoved(state: &Inner, path: &str) -> String {
    match path.strip_prefix("/repositories/1") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            format!("/repos/{}{rest}", state.repo)
        }
        _ => path.to_owned(),
    }
}

/// The `allow_*` merge settings GitHub returns to a token with push access.
pub(super) fn merge_settings(state: &Inner, repository: &mut Value) {
    let s = &state.more.settings;
    repository["allow_squash_merge"] = Value::Bool(s.allow_squash_merge);
    repository["allow_merge_commit"] = Value::Bool(s.allow_merge_commit);
    repository["allow_rebase_merge"] = Value::Bool(s.allow_rebase_merge);
}

/// A draft asked of a repository whose plan has none.
pub(super) fn draft_refused(state: &Inner, body: &Value) -> Option<Response> {
    (body["draft"].as_bool() == Some(true) && !state.more.settings.drafts).then(|| {
        json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({
                "message": "Draft pull requests are not supported in this repository.",
                "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"
            }),
        )
    })
}

/// A merge method the repository does not allow: 405 with GitHub's wording.
pub(super) fn merge_refused(more: &More, method: &str) -> Option<Response> {
    let s = &more.settings;
    let refusal = match method {
        "squash" if !s.allow_squash_merge => "Squash merges are not allowed on this repository.",
        "merge" if !s.allow_merge_commit => "Merge commits are not allowed on this repository.",
        "rebase" if !s.allow_rebase_merge => "Rebase merges are not allowed on this repository.",
        "squash" | "merge" | "rebase" => return None,
        _ => {
            return Some(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid request.\n\nmerge_method is not a valid value.",
            ));
        }
    };
    Some(error(StatusCode::METHOD_NOT_ALLOWED, refusal))
}

/// `git diff --name-status -M` lines as GitHub lists a pull request's files (renames with
/// their `previous_filename`).
pub(super) fn pull_files(listing: &str) -> Vec<Value> {
    listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let status = fields.next()?;
            let first = fields.next()?;
            Some(match (status.chars().next(), fields.next()) {
                (Some('R'), Some(renamed)) => json!({
                    "filename": renamed, "previous_filename": first, "status": "renamed",
                    "additions": 0, "deletions": 0, "changes": 0,
                }),
                (Some('A'), _) => json!({ "filename": first, "status": "added", "additions": 1, "deletions": 0, "changes": 1 }),
                (Some('D'), _) => json!({ "filename": first, "status": "removed", "additions": 0, "deletions": 1, "changes": 1 }),
                _ => json!({ "filename": first, "status": "modified", "additions": 1, "deletions": 0, "changes": 1 }),
            })
        })
        .collect()
}

/// The answer of a late fault matching this request, if one is due (the request already took
/// effect).
pub(super) fn after_applying(state: &mut Inner, method: &Method, path: &str) -> Option<Response> {
    let fault = state.more.late_faults.iter_mut().find(|f| {
        f.times > 0
            && f.method.as_deref().is_none_or(|m| m == method.as_str())
            && path.contains(&f.path_contains)
    })?;
    fault.times -= 1;
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::BAD_GATEWAY);
    Some(json_response(status, fault.body.clone()))
}
