//! A fake of the GitHub REST endpoints oxi uses, on 127.0.0.1, for tests: answers shaped like
//! GitHub's documented ones (status codes, `Link` pagination, rate-limit headers, error bodies),
//! pull-request files computed from the real bare `origin` repository, and faults on cue
//! (401, 403 rate limits, 500s). It records every request so a test can prove fast mode never
//! writes. The unhappy answers GitHub really gives (merge refusals, drafts a plan lacks,
//! secondary rate limits, renamed repositories, commit statuses, renamed files, GitHub
//! Enterprise's GraphQL path) are in `answers.rs` and `ci.rs`.

mod answers;
mod ci;
mod discovery;

pub use answers::RepoSettings;
pub use discovery::{FakeRelease, FakeRepository};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub query: String,
}

impl SeenRequest {
    pub fn is_write(&self) -> bool {
        self.method != "GET" && self.method != "HEAD"
    }
}

/// An answer given instead of the real one, `times` times, to requests whose method matches
/// (any when `None`) and whose path contains `path_contains`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: Option<String>,
    pub path_contains: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub times: u32,
}

impl Fault {
    /// A primary rate limit: 403, `x-ratelimit-remaining: 0`, reset `reset_in_secs` from now.
    pub fn rate_limited(
        method: Option<&str>,
        path_contains: &str,
        reset_in_secs: i64,
        times: u32,
    ) -> Self {
        let reset = unix_now_secs() + reset_in_secs;
        Self {
            method: method.map(str::to_owned),
            path_contains: path_contains.to_owned(),
            status: 403,
            headers: vec![
                ("x-ratelimit-remaining".into(), "0".into()),
                ("x-ratelimit-reset".into(), reset.to_string()),
            ],
            body: json!({
                "message": "API rate limit exceeded for user ID 1.",
                "documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"
            }),
            times,
        }
    }

    pub fn status(method: Option<&str>, path_contains: &str, status: u16, times: u32) -> Self {
        Self {
            method: method.map(str::to_owned),
            path_contains: path_contains.to_owned(),
            status,
            headers: Vec::new(),
            body: json!({ "message": if status >= 500 { "Server Error" } else { "Fault" } }),
            times,
        }
    }
}

#[derive(Debug, Clone)]
struct Pull {
    number: u64,
    title: String,
    body: String,
    head: String,
    base: String,
    draft: bool,
    state: String,
    merged: bool,
    labels: Vec<String>,
}

struct Inner {
    token: String,
    repo: String,
    bare: PathBuf,
    pulls: Vec<Pull>,
    check_runs: HashMap<String, Vec<Value>>,
    reviews: HashMap<u64, Vec<Value>>,
    faults: Vec<Fault>,
    requests: Vec<SeenRequest>,
    page_size_cap: usize,
    push_permission: bool,
    /// What [`answers`] and [`ci`] keep.
    more: answers::More,
    issues: crate::fake_github_issues::FakeIssues,
    discovery: discovery::Discovery,
}

type Shared = Arc<Mutex<Inner>>;

/// The running fake.
pub struct FakeGithub {
    addr: SocketAddr,
    inner: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// `git -C bare args…`, trimmed stdout; `None` when git fails (the fake answers 404 or an
/// empty list, as GitHub would for what it cannot find).
fn git(bare: &std::path::Path, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(bare)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Seconds since the Unix epoch, as GitHub's `x-ratelimit-reset` counts them.
fn unix_now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl FakeGithub {
    /// Serves `repo` (`owner/name`) backed by the bare repository `bare`, accepting `token`.
    pub async fn start(repo: &str, token: &str, bare: PathBuf) -> std::io::Result<Self> {
        let inner = Arc::new(Mutex::new(Inner {
            token: token.to_owned(),
            repo: repo.to_owned(),
            bare,
            pulls: Vec::new(),
            check_runs: HashMap::new(),
            reviews: HashMap::new(),
            faults: Vec::new(),
            requests: Vec::new(),
            page_size_cap: 100,
            push_permission: true,
            more: answers::More::default(),
            issues: Default::default(),
            discovery: Default::default(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            inner,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The API base to configure (`github.api_url`): the root, or GitHub Enterprise's `/api/v3`.
    pub fn url(&self) -> String {
        let prefix = self.with(|i| answers::prefix(&i.more));
        format!("http://{}{prefix}", self.addr)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut inner)
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.with(|i| i.requests.clone())
    }

    pub fn writes(&self) -> Vec<SeenRequest> {
        self.with(|i| {
            i.requests
                .iter()
                .filter(|r| r.is_write())
                .cloned()
                .collect()
        })
    }

    pub fn add_fault(&self, fault: Fault) {
        self.with(|i| i.faults.push(fault));
    }

    /// Lists return at most `n` items per page (to exercise pagination).
    pub fn set_page_size(&self, n: usize) {
        self.with(|i| i.page_size_cap = n.max(1));
    }

    /// The repository's issues (see `fake_github_issues`).
    pub fn issues(&self) -> crate::fake_github_issues::FakeIssues {
        self.with(|i| i.issues.clone())
    }

    pub fn set_push_permission(&self, push: bool) {
        self.with(|i| i.push_permission = push);
    }

    /// Check runs for a commit (by sha or by the branch whose head it is).
    pub fn set_check_run(&self, sha_or_branch: &str, name: &str, conclusion: &str, summary: &str) {
        self.add_check_run(sha_or_branch, name, "completed", Some(conclusion), summary);
    }

    /// A check run in any state (`queued`, `in_progress`, `completed` with a conclusion); each
    /// gets the next id, as GitHub's grow.
    pub fn add_check_run(
        &self,
        sha_or_branch: &str,
        name: &str,
        status: &str,
        conclusion: Option<&str>,
        summary: &str,
    ) {
        self.with(|i| {
            i.more.next_id += 1;
            let run = json!({
                "id": i.more.next_id, "name": name, "status": status, "conclusion": conclusion,
                "started_at": "2026-11-21T12:00:00Z",
                "output": { "title": format!("{name}: {}", conclusion.unwrap_or(status)), "summary": summary, "text": summary },
            });
            i.check_runs
                .entry(sha_or_branch.to_owned())
                .or_default()
                .push(run)
        });
    }

    pub fn add_review(&self, number: u64, state: &str, body: &str) {
        self.with(|i| {
            i.reviews.entry(number).or_default().push(json!({
                "id": 1, "state": state, "body": body, "user": { "login": "maintainer" },
                "submitted_at": "2026-11-21T12:00:00Z",
            }))
        });
    }

    /// A maintainer merges or closes a pull request on GitHub.
    pub fn set_pull_state(&self, number: u64, merged: bool) {
        self.with(|i| {
            if let Some(p) = i.pulls.iter_mut().find(|p| p.number == number) {
                p.state = "closed".into();
                p.merged = merged;
            }
        });
    }

    /// (number, title, body, head, draft, state, merged, labels) of every pull request.
    pub fn pulls(&self) -> Vec<Value> {
        self.with(|i| {
            let repo = i.repo.clone();
            i.pulls.iter().map(|p| pull_json(&repo, p, None)).collect()
        })
    }

    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

fn pull_json(repo: &str, p: &Pull, bare: Option<&std::path::Path>) -> Value {
    let sha = |branch: &str| {
        bare.and_then(|b| git(b, &["rev-parse", &format!("refs/heads/{branch}")]))
            .unwrap_or_else(|| "0".repeat(40))
    };
    let mut pull = json!({
        "url": format!("https://api.github.com/repos/{repo}/pulls/{}", p.number),
        "html_url": format!("https://github.com/{repo}/pull/{}", p.number),
        "id": p.number * 1000,
        "node_id": format!("PR_fake{}", p.number),
        "number": p.number,
        "state": p.state,
        "locked": false,
        "title": p.title,
        "body": p.body,
        "draft": p.draft,
        "merged": p.merged,
        "merged_at": if p.merged { Value::from("2026-11-21T12:00:00Z") } else { Value::Null },
        "user": { "login": "oxi-bot", "id": 1 },
        "labels": p.labels.iter().map(|l| json!({ "name": l, "color": "ededed" })).collect::<Vec<_>>(),
        "head": { "ref": p.head, "sha": sha(&p.head), "label": format!("{}:{}", repo.split('/').next().unwrap_or(""), p.head) },
        "base": { "ref": p.base, "sha": sha(&p.base) },
    });
    complete_pull(repo, &mut pull);
    pull
}

pub(crate) fn json_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    let reset = unix_now_secs() + 3600;
    let headers = response.headers_mut();
    for (k, v) in [
        ("x-ratelimit-limit", "5000".to_owned()),
        ("x-ratelimit-remaining", "4999".to_owned()),
        ("x-ratelimit-reset", reset.to_string()),
        ("x-ratelimit-used", "1".to_owned()),
        ("x-ratelimit-resource", "core".to_owned()),
        ("x-github-api-version-selected", "2022-11-28".to_owned()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&v) {
            headers.insert(k, value);
        }
    }
    response
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        json!({ "message": message, "documentation_url": "https://docs.github.com/rest", "status": status.as_u16().to_string() }),
    )
}

pub(crate) fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// One page of `items`, with a `Link` header when more follow.
pub(crate) fn paginate(
    base_url: &str,
    path: &str,
    query: &str,
    items: Vec<Value>,
    cap: usize,
) -> Response {
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
    let slice: Vec<Value> = items.iter().skip(start).take(per_page).cloned().collect();
    let mut response = json_response(StatusCode::OK, Value::Array(slice));
    if start + per_page < items.len() {
        let others: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.starts_with("page=") && !kv.is_empty())
            .collect();
        let next = format!("{base_url}{path}?{}&page={}", others.join("&"), page + 1);
        if let Ok(v) = HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")) {
            response.headers_mut().insert("link", v);
        }
    }
    response
}

async fn handle(
    State(inner): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let response = answer(&inner, &method, &uri, &headers, &body);
    let mut state = inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    answers::after_applying(&mut state, &method, uri.path()).unwrap_or(response)
}

/// The fake's answer to one request (faults first, then the endpoint).
fn answer(
    inner: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let method = method.clone();
    let query = uri.query().unwrap_or("").to_owned();
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let mut state = inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    state.requests.push(SeenRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: query.clone(),
    });
    // GitHub Enterprise serves REST under /api/v3 (and GraphQL at /api/graphql).
    let Some((base_url, path)) = answers::rest_path(&state, uri.path()) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let base_url = format!("http://{host}{base_url}");
    if let Some(fault) = state.faults.iter_mut().find(|f| {
        f.times > 0
            && f.method.as_deref().is_none_or(|m| m == method.as_str())
            && path.contains(&f.path_contains)
    }) {
        fault.times -= 1;
        let status =
            StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = json_response(status, fault.body.clone());
        for (k, v) in &fault.headers {
            if let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        return response;
    }
    let auth = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("token "))
        .unwrap_or("");
    if token != state.token {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let repo = state.repo.clone();
    let bare = state.bare.clone();
    let cap = state.page_size_cap;
    let prefix = format!("/repos/{repo}");
    if path == "/user" && method == Method::GET {
        return json_response(
            StatusCode::OK,
            json!({ "login": "oxi-bot", "id": 1, "type": "User" }),
        );
    }
    if let Some(response) = discovery::route(&state, &method, &path, &query) {
        return response;
    }
    if let Some(response) = answers::moved(&state, &base_url, &path) {
        return response;
    }
    let path = answers::unmoved(&state, &path);
    if path == "/graphql" && method == Method::POST {
        let query = body["query"].as_str().unwrap_or("");
        let id = body["variables"]["id"].as_str().unwrap_or("");
        if query.contains("markPullRequestReadyForReview") {
            let number: u64 = id.trim_start_matches("PR_fake").parse().unwrap_or(0);
            if let Some(p) = state.pulls.iter_mut().find(|p| p.number == number) {
                p.draft = false;
                return json_response(
                    StatusCode::OK,
                    json!({ "data": { "markPullRequestReadyForReview": { "pullRequest": { "id": id, "isDraft": false } } } }),
                );
            }
            return json_response(
                StatusCode::OK,
                json!({ "data": null, "errors": [{ "type": "NOT_FOUND", "message": format!("Could not resolve to a node with the global id of '{id}'") }] }),
            );
        }
        return error(StatusCode::BAD_REQUEST, "Unsupported query");
    }
    let Some(rest) = path.strip_prefix(&prefix) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    if let Some(response) = ci::route(&state, &method, &parts, &base_url, &path, &query) {
        return response;
    }
    let request = crate::fake_github_issues::IssueRequest {
        method: method.as_str(),
        parts: &parts,
        query: &query,
        body: &body,
        repo: &repo,
        base_url: &base_url,
        cap,
    };
    if let Some(response) = state.issues.route(&request) {
        return response;
    }
    match (method.as_str(), parts.as_slice()) {
        ("GET", []) => {
            let mut repository = repository_json(&repo, state.push_permission);
            answers::merge_settings(&state, &mut repository);
            json_response(StatusCode::OK, repository)
        }
        ("GET", ["pulls"]) => {
            let wanted = query_param(&query, "state").unwrap_or("open").to_owned();
            let head = query_param(&query, "head").map(|h| {
                let decoded = h.replace("%3A", ":");
                decoded
                    .split_once(':')
                    .map_or(decoded.clone(), |(_, b)| b.to_owned())
            });
            let items: Vec<Value> = state
                .pulls
                .iter()
                .filter(|p| wanted == "all" || p.state == wanted)
                .filter(|p| head.as_deref().is_none_or(|h| p.head == h))
                .map(|p| pull_json(&repo, p, Some(&bare)))
                .collect();
            paginate(&base_url, &path, &query, items, cap)
        }
        ("POST", ["pulls"]) => {
            let head = body["head"].as_str().unwrap_or("").to_owned();
            let base = body["base"].as_str().unwrap_or("main").to_owned();
            if git(
                &bare,
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("refs/heads/{head}"),
                ],
            )
            .is_none()
            {
                return json_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({ "message": "Validation Failed", "errors": [{ "resource": "PullRequest", "field": "head", "code": "invalid" }], "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request" }),
                );
            }
            if state
                .pulls
                .iter()
                .any(|p| p.head == head && p.state == "open")
            {
                return json_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({ "message": "Validation Failed", "errors": [{ "resource": "PullRequest", "code": "custom", "message": format!("A pull request already exists for {}:{head}.", repo.split('/').next().unwrap_or("")) }] }),
                );
            }
            if let Some(refusal) = answers::draft_refused(&state, &body) {
                return refusal;
            }
            let number = state.pulls.len() as u64 + 1;
            let pull = Pull {
                number,
                title: body["title"].as_str().unwrap_or("").to_owned(),
                body: body["body"].as_str().unwrap_or("").to_owned(),
                head,
                base,
                draft: body["draft"].as_bool().unwrap_or(false),
                state: "open".into(),
                merged: false,
                labels: Vec::new(),
            };
            let json = pull_json(&repo, &pull, Some(&bare));
            state.pulls.push(pull);
            json_response(StatusCode::CREATED, json)
        }
        (m, ["pulls", number, rest @ ..]) => {
            let Ok(number) = number.parse::<u64>() else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            let reviews = state.reviews.get(&number).cloned().unwrap_or_default();
            let Some(pull) = state.pulls.iter_mut().find(|p| p.number == number) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            match (m, rest) {
                ("GET", []) => json_response(StatusCode::OK, pull_json(&repo, pull, Some(&bare))),
                ("PATCH", []) => {
                    if let Some(title) = body["title"].as_str() {
                        pull.title = title.to_owned();
                    }
                    if let Some(text) = body["body"].as_str() {
                        pull.body = text.to_owned();
                    }
                    json_response(StatusCode::OK, pull_json(&repo, pull, Some(&bare)))
                }
                ("GET", ["files"]) => {
                    let range = format!("refs/heads/{}...refs/heads/{}", pull.base, pull.head);
                    let head_sha = git(&bare, &["rev-parse", &format!("refs/heads/{}", pull.head)])
                        .unwrap_or_default();
                    let listing =
                        git(&bare, &["diff", "--name-status", "-M", &range]).unwrap_or_default();
                    let mut files = answers::pull_files(&listing);
                    for file in &mut files {
                        let name = file["filename"].as_str().unwrap_or("").to_owned();
                        let status = file["status"].as_str().unwrap_or("modified").to_owned();
                        add_missing(file, diff_entry(&repo, &head_sha, &name, &status));
                    }
                    paginate(&base_url, &path, &query, files, cap)
                }
                ("GET", ["reviews"]) => {
                    let mut reviews = reviews;
                    for review in &mut reviews {
                        complete_review(&repo, number, review);
                    }
                    paginate(&base_url, &path, &query, reviews, cap)
                }
                ("PUT", ["merge"]) => {
                    let method = body["merge_method"].as_str().unwrap_or("merge").to_owned();
                    if let Some(refusal) = answers::merge_refused(&state.more, &method) {
                        return refusal;
                    }
                    let Some(pull) = state.pulls.iter_mut().find(|p| p.number == number) else {
                        return error(StatusCode::NOT_FOUND, "Not Found");
                    };
                    if pull.draft {
                        return error(
                            StatusCode::METHOD_NOT_ALLOWED,
                            "Pull Request is still a draft",
                        );
                    }
                    if pull.state != "open" {
                        return error(
                            StatusCode::METHOD_NOT_ALLOWED,
                            "Pull Request is not mergeable",
                        );
                    }
                    let head_sha = git(&bare, &["rev-parse", &format!("refs/heads/{}", pull.head)]);
                    if let Some(sha) = body["sha"].as_str()
                        && head_sha.as_deref() != Some(sha)
                    {
                        return error(
                            StatusCode::CONFLICT,
                            "Head branch was modified. Review and try the merge again.",
                        );
                    }
                    pull.state = "closed".into();
                    pull.merged = true;
                    state.more.merges.push((number, method));
                    json_response(
                        StatusCode::OK,
                        json!({ "sha": head_sha, "merged": true, "message": "Pull Request successfully merged" }),
                    )
                }
                _ => error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        ("POST", ["issues", number, "labels"]) => {
            let Ok(number) = number.parse::<u64>() else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            let Some(pull) = state.pulls.iter_mut().find(|p| p.number == number) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            for label in body["labels"].as_array().into_iter().flatten() {
                if let Some(name) = label.as_str()
                    && !pull.labels.iter().any(|l| l == name)
                {
                    pull.labels.push(name.to_owned());
                }
            }
            let labels: Vec<Value> = pull.labels.iter().map(|l| label_json(&repo, l)).collect();
            json_response(StatusCode::OK, Value::Array(labels))
        }
        ("DELETE", ["git", "refs", "heads", branch @ ..]) => {
            let branch = branch.join("/");
            if git(
                &bare,
                &["update-ref", "-d", &format!("refs/heads/{branch}")],
            )
            .is_some()
            {
                StatusCode::NO_CONTENT.into_response()
            } else {
                error(StatusCode::UNPROCESSABLE_ENTITY, "Reference does not exist")
            }
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

// GitHub's answers carry many fields oxi never reads. The REST description requires them, and
// the contract tests (`src/github/contract.rs` in oxi) hold the fake's answers to it, so the
// helpers below complete each answer with the documented required fields.

const FAKE_TIME: &str = "2026-11-21T12:00:00Z";

/// Adds to the object `target` each field of `fields` it does not have yet.
fn add_missing(target: &mut Value, fields: Value) {
    if let (Some(target), Value::Object(fields)) = (target.as_object_mut(), fields) {
        for (key, value) in fields {
            target.entry(key).or_insert(value);
        }
    }
}

pub(crate) fn user_json(login: &str, id: u64) -> Value {
    let url = format!("https://api.github.com/users/{login}");
    json!({
        "login": login, "id": id, "node_id": format!("U_fake{id}"), "type": "User",
        "site_admin": false, "gravatar_id": "",
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}"),
        "url": url, "html_url": format!("https://github.com/{login}"),
        "events_url": format!("{url}/events{{/privacy}}"),
        "followers_url": format!("{url}/followers"),
        "following_url": format!("{url}/following{{/other_user}}"),
        "gists_url": format!("{url}/gists{{/gist_id}}"),
        "organizations_url": format!("{url}/orgs"),
        "received_events_url": format!("{url}/received_events"),
        "repos_url": format!("{url}/repos"),
        "starred_url": format!("{url}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{url}/subscriptions"),
    })
}

/// A `full-repository` (what `GET /repos/{owner}/{repo}` answers; also a valid `repository`,
/// what a pull request's head and base carry).
pub(super) fn repository_json(repo: &str, push: bool) -> Value {
    let (owner, name) = repo.split_once('/').unwrap_or((repo, repo));
    let api = format!("https://api.github.com/repos/{repo}");
    let mut value = json!({
        "id": 1, "node_id": "R_fake1", "name": name, "full_name": repo,
        "owner": user_json(owner, 2), "private": true, "visibility": "private",
        "description": Value::Null, "fork": false, "homepage": Value::Null,
        "language": Value::Null, "mirror_url": Value::Null, "license": Value::Null,
        "permissions": { "admin": false, "maintain": false, "push": push, "triage": true, "pull": true },
    });
    add_missing(
        &mut value,
        json!({
            "html_url": format!("https://github.com/{repo}"),
            "clone_url": format!("https://github.com/{repo}.git"),
            "git_url": format!("git://github.com/{repo}.git"),
            "ssh_url": format!("git@github.com:{repo}.git"),
            "svn_url": format!("https://github.com/{repo}"),
            "default_branch": "main", "archived": false, "disabled": false,
            "has_issues": true, "has_projects": true, "has_wiki": true, "has_pages": false,
            "has_downloads": true, "has_discussions": false,
            "forks": 0, "forks_count": 0, "open_issues": 0, "open_issues_count": 0, "size": 0,
            "stargazers_count": 0, "watchers": 0, "watchers_count": 0, "network_count": 0,
            "subscribers_count": 0,
            "pushed_at": FAKE_TIME, "created_at": FAKE_TIME, "updated_at": FAKE_TIME,
        }),
    );
    for (key, rest) in [
        ("url", ""),
        ("archive_url", "/{archive_format}{/ref}"),
        ("assignees_url", "/assignees{/user}"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("branches_url", "/branches{/branch}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("comments_url", "/comments{/number}"),
        ("commits_url", "/commits{/sha}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("contents_url", "/contents/{+path}"),
        ("contributors_url", "/contributors"),
        ("deployments_url", "/deployments"),
        ("downloads_url", "/downloads"),
        ("events_url", "/events"),
        ("forks_url", "/forks"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("hooks_url", "/hooks"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("issue_events_url", "/issues/events{/number}"),
        ("issues_url", "/issues{/number}"),
        ("keys_url", "/keys{/key_id}"),
        ("labels_url", "/labels{/name}"),
        ("languages_url", "/languages"),
        ("merges_url", "/merges"),
        ("milestones_url", "/milestones{/number}"),
        (
            "notifications_url",
            "/notifications{?since,all,participating}",
        ),
        ("pulls_url", "/pulls{/number}"),
        ("releases_url", "/releases{/id}"),
        ("stargazers_url", "/stargazers"),
        ("statuses_url", "/statuses/{sha}"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("tags_url", "/tags"),
        ("teams_url", "/teams"),
        ("trees_url", "/git/trees{/sha}"),
    ] {
        value[key] = Value::from(format!("{api}{rest}"));
    }
    value
}

fn label_json(repo: &str, name: &str) -> Value {
    json!({
        "id": 1, "node_id": format!("LA_fake_{name}"), "name": name, "color": "ededed",
        "description": Value::Null, "default": false,
        "url": format!("https://api.github.com/repos/{repo}/labels/{name}"),
    })
}

/// The fields of a `pull-request` the fake does not track, added to `pull`.
fn complete_pull(repo: &str, pull: &mut Value) {
    let number = pull["number"].as_u64().unwrap_or(0);
    let api = format!("https://api.github.com/repos/{repo}");
    let html = format!("https://github.com/{repo}/pull/{number}");
    let fields = json!({
        "diff_url": format!("{html}.diff"), "patch_url": format!("{html}.patch"),
        "issue_url": format!("{api}/issues/{number}"),
        "commits_url": format!("{api}/pulls/{number}/commits"),
        "review_comments_url": format!("{api}/pulls/{number}/comments"),
        "review_comment_url": format!("{api}/pulls/comments{{/number}}"),
        "comments_url": format!("{api}/issues/{number}/comments"),
        "statuses_url": format!("{api}/statuses/{}", pull["head"]["sha"].as_str().unwrap_or("")),
        "_links": {
            "self": { "href": format!("{api}/pulls/{number}") },
            "html": { "href": html },
            "issue": { "href": format!("{api}/issues/{number}") },
            "comments": { "href": format!("{api}/issues/{number}/comments") },
            "review_comments": { "href": format!("{api}/pulls/{number}/comments") },
            "review_comment": { "href": format!("{api}/pulls/comments{{/number}}") },
            "commits": { "href": format!("{api}/pulls/{number}/commits") },
            "statuses": { "href": format!("{api}/statuses/{}", pull["head"]["sha"].as_str().unwrap_or("")) },
        },
    });
    add_missing(pull, fields);
    pull["user"] = user_json("oxi-bot", 1);
    let fields = json!({
        "assignee": Value::Null, "assignees": [], "requested_reviewers": [], "requested_teams": [],
        "milestone": Value::Null, "auto_merge": Value::Null, "active_lock_reason": Value::Null,
        "author_association": "OWNER",
        "created_at": FAKE_TIME, "updated_at": FAKE_TIME,
        "closed_at": if pull["state"] == "closed" { Value::from(FAKE_TIME) } else { Value::Null },
        "merge_commit_sha": Value::Null, "merged_by": Value::Null,
        "mergeable": Value::Null, "rebaseable": Value::Null, "mergeable_state": "unknown",
        "maintainer_can_modify": false,
        "comments": 0, "review_comments": 0, "commits": 1, "additions": 1, "deletions": 0,
        "changed_files": 1,
    });
    add_missing(pull, fields);
    let owner = repo.split('/').next().unwrap_or("");
    for side in ["head", "base"] {
        let branch = pull[side]["ref"].as_str().unwrap_or("").to_owned();
        pull[side]["label"] = Value::from(format!("{owner}:{branch}"));
        pull[side]["user"] = user_json(owner, 2);
        pull[side]["repo"] = repository_json(repo, true);
    }
    if let Some(labels) = pull["labels"].as_array_mut() {
        for label in labels {
            let name = label["name"].as_str().unwrap_or("").to_owned();
            *label = label_json(repo, &name);
        }
    }
}

/// A `diff-entry` of a pull request's files.
fn diff_entry(repo: &str, head_sha: &str, name: &str, status: &str) -> Value {
    json!({
        "sha": "0".repeat(40), "filename": name, "status": status,
        "additions": 1, "deletions": 0, "changes": 1,
        "blob_url": format!("https://github.com/{repo}/blob/{head_sha}/{name}"),
        "raw_url": format!("https://github.com/{repo}/raw/{head_sha}/{name}"),
        "contents_url": format!("https://api.github.com/repos/{repo}/contents/{name}?ref={head_sha}"),
    })
}

/// The fields of a `pull-request-review` the fake does not track, added to `review`.
fn complete_review(repo: &str, number: u64, review: &mut Value) {
    let html = format!("https://github.com/{repo}/pull/{number}");
    let fields = json!({
        "node_id": "PRR_fake1", "commit_id": "0".repeat(40),
        "html_url": format!("{html}#pullrequestreview-1"),
        "pull_request_url": format!("https://api.github.com/repos/{repo}/pulls/{number}"),
        "_links": {
            "html": { "href": format!("{html}#pullrequestreview-1") },
            "pull_request": { "href": format!("https://api.github.com/repos/{repo}/pulls/{number}") },
        },
        "author_association": "COLLABORATOR",
    });
    add_missing(review, fields);
    let login = review["user"]["login"]
        .as_str()
        .unwrap_or("maintainer")
        .to_owned();
    review["user"] = user_json(&login, 3);
}

/// The fields of a `check-run` the fake does not track, added to `run`.
pub(super) fn complete_check_run(repo: &str, sha: &str, run: &mut Value) {
    let fields = json!({
        "node_id": "CR_fake1", "head_sha": sha, "external_id": "",
        "url": format!("https://api.github.com/repos/{repo}/check-runs/1"),
        "html_url": format!("https://github.com/{repo}/runs/1"),
        "details_url": format!("https://github.com/{repo}/runs/1"),
        "started_at": FAKE_TIME, "completed_at": FAKE_TIME,
        "check_suite": { "id": 1 }, "app": Value::Null, "pull_requests": [],
    });
    add_missing(run, fields);
    if let Some(output) = run["output"].as_object_mut() {
        output.entry("annotations_count").or_insert(Value::from(0));
        output
            .entry("annotations_url")
            .or_insert(Value::from(format!(
                "https://api.github.com/repos/{repo}/check-runs/1/annotations"
            )));
    }
}
