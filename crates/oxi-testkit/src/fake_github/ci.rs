//! CI as GitHub reports it for a commit: check runs (`GET …/commits/{ref}/check-runs`, paged,
//! every run the fake was given — re-runs included, as runs of different check suites are) and
//! commit statuses (`GET …/commits/{ref}/status`, the combined state and the latest status per
//! context, paged).

use std::collections::HashMap;

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::{Inner, complete_check_run, git, json_response, query_param, repository_json};

/// The CI endpoints; `None` for any other request.
pub(super) fn route(
    state: &Inner,
    method: &Method,
    parts: &[&str],
    base_url: &str,
    path: &str,
    query: &str,
) -> Option<Response> {
    let (sha, what) = match (method.as_str(), parts) {
        ("GET", ["commits", sha, what]) => (*sha, *what),
        _ => return None,
    };
    let cap = state.page_size_cap;
    match what {
        "check-runs" => {
            let mut runs = for_commit(state, &state.check_runs, sha);
            for run in &mut runs {
                complete_check_run(&state.repo, sha, run);
            }
            let total = runs.len();
            let (page, next) = page_of(query, runs, cap);
            Some(with_next(
                json_response(
                    StatusCode::OK,
                    json!({ "total_count": total, "check_runs": page }),
                ),
                base_url,
                path,
                query,
                next,
            ))
        }
        "status" => {
            let mut latest: Vec<Value> = Vec::new();
            for status in for_commit(state, &state.more.statuses, sha) {
                latest.retain(|s| s["context"] != status["context"]);
                latest.push(status);
            }
            let combined = combined_state(&latest);
            let total = latest.len();
            let (page, next) = page_of(query, latest, cap);
            Some(with_next(
                json_response(
                    StatusCode::OK,
                    json!({
                        "state": combined, "sha": sha, "total_count": total, "statuses": page,
                        "commit_url": format!("https://api.github.com/repos/{}/commits/{sha}", state.repo),
                        "url": format!("https://api.github.com/repos/{}/commits/{sha}/status", state.repo),
                        "repository": repository_json(&state.repo, true),
                    }),
                ),
                base_url,
                path,
                query,
                next,
            ))
        }
        _ => None,
    }
}

/// What is recorded for `sha`, directly or under a branch whose head it is.
fn for_commit(state: &Inner, map: &HashMap<String, Vec<Value>>, sha: &str) -> Vec<Value> {
    let mut found = map.get(sha).cloned().unwrap_or_default();
    for (key, values) in map {
        let head = git(
            &state.bare,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{key}"),
            ],
        );
        if head.as_deref() == Some(sha) {
            found.extend(values.iter().cloned());
        }
    }
    found.sort_by_key(|v| v["id"].as_u64().unwrap_or(0));
    found
}

/// GitHub's combined state: `failure` if any context reports `error` or `failure`, `pending`
/// if there are none or one is pending, else `success`.
fn combined_state(statuses: &[Value]) -> &'static str {
    let states: Vec<&str> = statuses
        .iter()
        .filter_map(|s| s["state"].as_str())
        .collect();
    if states.iter().any(|s| matches!(*s, "error" | "failure")) {
        "failure"
    } else if states.is_empty() || states.contains(&"pending") {
        "pending"
    } else {
        "success"
    }
}

/// One page of `items` and the number of the next page, if any.
fn page_of(query: &str, items: Vec<Value>, cap: usize) -> (Vec<Value>, Option<usize>) {
    let per_page = query_param(query, "per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .min(cap)
        .max(1);
    let page = query_param(query, "page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let start = (page - 1) * per_page;
    let next = (start + per_page < items.len()).then_some(page + 1);
    (items.into_iter().skip(start).take(per_page).collect(), next)
}

fn with_next(
    mut response: Response,
    base_url: &str,
    path: &str,
    query: &str,
    next: Option<usize>,
) -> Response {
    if let Some(page) = next {
        let others: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.starts_with("page=") && !kv.is_empty())
            .collect();
        let url = format!("{base_url}{path}?{}&page={page}", others.join("&"));
        if let Ok(v) = HeaderValue::from_str(&format!("<{url}>; rel=\"next\"")) {
            response.headers_mut().insert("link", v);
        }
    }
    response
}
