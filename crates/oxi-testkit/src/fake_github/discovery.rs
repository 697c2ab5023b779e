//! What auto-improve reads from GitHub, in the shape of GitHub's REST description: another
//! repository's releases (`GET /repos/{owner}/{repo}/releases`, newest first, `per_page`) and
//! repository search (`GET /search/repositories?q=topic:T+pushed:>=DATE`, with `total_count`,
//! `incomplete_results` and `items`). A test gives the fake its releases and repositories; a
//! repository it was given no releases for is a 404, as GitHub answers for a private or
//! missing one.

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::{FakeGithub, Inner, error, json_response, query_param, repository_json, user_json};

/// One release a test adds.
#[derive(Debug, Clone)]
pub struct FakeRelease {
    pub tag: String,
    pub name: String,
    pub body: String,
    pub published_at: String,
    pub draft: bool,
}

/// One repository search can find.
#[derive(Debug, Clone)]
pub struct FakeRepository {
    pub full_name: String,
    pub description: String,
    pub stars: u64,
    pub created_at: String,
    pub pushed_at: String,
    pub topics: Vec<String>,
}

/// The releases and searchable repositories the fake holds.
#[derive(Debug, Default)]
pub(super) struct Discovery {
    releases: BTreeMap<String, Vec<FakeRelease>>,
    repositories: Vec<FakeRepository>,
}

impl FakeGithub {
    /// A release of `repo` (`owner/name`); the latest added is listed first.
    pub fn add_release(&self, repo: &str, release: FakeRelease) {
        self.with(|i| {
            i.discovery
                .releases
                .entry(repo.to_owned())
                .or_default()
                .insert(0, release)
        });
    }

    /// A repository that topic searches can find.
    pub fn add_repository(&self, repository: FakeRepository) {
        self.with(|i| i.discovery.repositories.push(repository));
    }
}

/// The discovery endpoints; `None` for any other request.
pub(super) fn route(state: &Inner, method: &Method, path: &str, query: &str) -> Option<Response> {
    if method != Method::GET {
        return None;
    }
    if path == "/search/repositories" {
        return Some(search(state, query));
    }
    let repo = path.strip_prefix("/repos/")?.strip_suffix("/releases")?;
    if repo == state.repo && !state.discovery.releases.contains_key(repo) {
        return None;
    }
    let Some(releases) = state.discovery.releases.get(repo) else {
        return Some(error(StatusCode::NOT_FOUND, "Not Found"));
    };
    let per_page = query_param(query, "per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30);
    let list: Vec<Value> = releases
        .iter()
        .take(per_page)
        .enumerate()
        .map(|(i, r)| release_json(repo, i, r))
        .collect();
    Some(json_response(StatusCode::OK, Value::Array(list)))
}

fn release_json(repo: &str, i: usize, r: &FakeRelease) -> Value {
    json!({
        "url": format!("https://api.github.com/repos/{repo}/releases/{}", i + 1),
        "html_url": format!("https://github.com/{repo}/releases/tag/{}", r.tag),
        "id": i + 1,
        "node_id": format!("RE_fake{}", i + 1),
        "tag_name": r.tag,
        "target_commitish": "main",
        "name": r.name,
        "body": r.body,
        "draft": r.draft,
        "prerelease": false,
        "created_at": r.published_at,
        "published_at": if r.draft { Value::Null } else { Value::from(r.published_at.clone()) },
        "author": user_json("releaser", 2),
        "assets": [],
        "assets_url": format!("https://api.github.com/repos/{repo}/releases/{}/assets", i + 1),
        "upload_url": format!("https://uploads.github.com/repos/{repo}/releases/{}/assets{{?name,label}}", i + 1),
        "tarball_url": format!("https://api.github.com/repos/{repo}/tarball/{}", r.tag),
        "zipball_url": format!("https://api.github.com/repos/{repo}/zipball/{}", r.tag),
    })
}

/// `q` holds `topic:T` and `pushed:>=YYYY-MM-DD` qualifiers (`+` or spaces between them, `>`
/// percent-encoded or not); results are sorted by stars, most first.
fn search(state: &Inner, query: &str) -> Response {
    let q = query_param(query, "q").unwrap_or("");
    let q = q
        .replace("%3E", ">")
        .replace("%3e", ">")
        .replace("%3D", "=")
        .replace("%3d", "=")
        .replace("%3A", ":");
    let mut topic = None;
    let mut pushed_since = None;
    for part in q.split(['+', ' ']) {
        if let Some(t) = part.strip_prefix("topic:") {
            topic = Some(t.to_owned());
        } else if let Some(d) = part.strip_prefix("pushed:>=") {
            pushed_since = Some(d.to_owned());
        }
    }
    let Some(topic) = topic else {
        return json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "message": "Validation Failed", "errors": [{ "resource": "Search", "field": "q", "code": "missing" }], "documentation_url": "https://docs.github.com/v3/search" }),
        );
    };
    let mut found: Vec<&FakeRepository> = state
        .discovery
        .repositories
        .iter()
        .filter(|r| r.topics.contains(&topic))
        .filter(|r| {
            pushed_since
                .as_deref()
                .is_none_or(|d| r.pushed_at.as_str() >= d)
        })
        .collect();
    found.sort_by(|a, b| b.stars.cmp(&a.stars).then(a.full_name.cmp(&b.full_name)));
    let per_page = query_param(query, "per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30);
    let items: Vec<Value> = found
        .iter()
        .take(per_page)
        .enumerate()
        .map(|(i, r)| {
            // A whole `repo-search-result-item`: every field GitHub's description requires,
            // then what this repository says.
            let mut item = repository_json(&r.full_name, false);
            let found = json!({
                "id": 100 + i, "node_id": format!("R_fake{i}"),
                "private": false, "visibility": "public",
                "description": r.description,
                "created_at": r.created_at, "updated_at": r.pushed_at, "pushed_at": r.pushed_at,
                "stargazers_count": r.stars, "watchers_count": r.stars, "watchers": r.stars,
                "language": "Rust", "topics": r.topics, "score": 1.0,
            });
            if let (Some(item), Value::Object(found)) = (item.as_object_mut(), found) {
                item.extend(found);
            }
            item
        })
        .collect();
    json_response(
        StatusCode::OK,
        json!({ "total_count": found.len(), "incomplete_results": false, "items": items }),
    )
}
