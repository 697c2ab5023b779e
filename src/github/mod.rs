//! GitHub, through octocrab's HTTP client (auth, TLS, timeouts) with oxi's own handling of
//! what GitHub answers: rate limits waited out in GitHub's documented order (`retry-after`;
//! else, with `x-ratelimit-remaining: 0`, until `x-ratelimit-reset`; else at least a minute,
//! longer on repeats), 5xx and network errors retried with backoff (writes that must not
//! happen twice read back first), 401/403 turned into errors that say what to fix, a moved
//! repository (301) named with its new name, error answers reported with their status and
//! message, and malformed answers named by endpoint.
//!
//! Reads go through [`GithubClient`]. Writes go through [`GithubWriter`], which can only be built
//! from a [`ReleaseMode`] proof: fast mode never holds one.

mod ci;
#[cfg(test)]
mod contract;
mod discover;
pub mod issues;
pub mod model;

#[cfg(test)]
mod live_tests;

use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{GithubConfig, ReleaseMode};
use model::{MergeMethod, PullFile, PullRequest, Repository, Review};

pub use ci::CiEntry;

/// Tries for a 5xx or network error (the first and three retries).
const TRIES: u32 = 4;
/// Longest list oxi pages through (pull requests, files).
const MAX_PAGES: u32 = 30;

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("no GitHub token: set ${token_env} (github.token_env) or log in with `gh auth login`")]
    NoToken { token_env: String },
    #[error(
        "GitHub rejected the token (401 on {endpoint}: {message}); put a valid token in ${token_env} or run `gh auth login`"
    )]
    Unauthorized {
        endpoint: String,
        message: String,
        token_env: String,
    },
    #[error(
        "GitHub refused {endpoint} (403: {message}); the token needs contents and pull-request write access to {repo}"
    )]
    Forbidden {
        endpoint: String,
        message: String,
        repo: String,
    },
    #[error(
        "GitHub {} on {endpoint}: GitHub asks to wait {wait_secs}s, longer than github.max_rate_limit_wait; the next tick resumes",
        if *secondary { "secondary rate limit" } else { "rate limit" }
    )]
    RateLimited {
        endpoint: String,
        wait_secs: u64,
        /// A secondary limit (too many requests too fast), not the hourly budget.
        secondary: bool,
    },
    #[error(
        "GitHub says {repo} has moved (301 on {endpoint}){}",
        match new_name {
            Some(name) => format!(": it is now {name}; set github.repo = \"{name}\" in oxi.toml"),
            None => format!(" to {location}; set github.repo to its new name in oxi.toml"),
        }
    )]
    Moved {
        endpoint: String,
        repo: String,
        new_name: Option<String>,
        location: String,
    },
    #[error("GitHub answered {status} to {endpoint} {tries} times: {message}")]
    Server {
        endpoint: String,
        status: u16,
        tries: u32,
        message: String,
    },
    #[error("cannot reach GitHub at {base} ({endpoint}) after {tries} tries: {message}")]
    Network {
        base: String,
        endpoint: String,
        tries: u32,
        message: String,
    },
    #[error("GitHub's answer to {endpoint} is not what oxi expected: {message}")]
    Malformed { endpoint: String, message: String },
    #[error("GitHub answered {status} to {endpoint}: {message}")]
    Rejected {
        endpoint: String,
        status: u16,
        message: String,
    },
    #[error("GitHub client: {0}")]
    Client(String),
}

impl GithubError {
    /// Worth trying again on a later tick (nothing is wrong with the request itself).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GithubError::RateLimited { .. }
                | GithubError::Server { .. }
                | GithubError::Network { .. }
        )
    }
}

/// The token: `$token_env`, else `gh auth token` when `gh` is installed.
pub fn resolve_token(
    config: &GithubConfig,
    parent_env: &[(String, String)],
) -> Result<String, GithubError> {
    if let Some((_, value)) = parent_env
        .iter()
        .find(|(k, v)| *k == config.token_env && !v.trim().is_empty())
    {
        return Ok(value.trim().to_owned());
    }
    let path_var = parent_env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone());
    if let Ok(gh) = which::which_in("gh", path_var, ".")
        && let Ok(out) = std::process::Command::new(gh)
            .args(["auth", "token"])
            .stdin(std::process::Stdio::null())
            .output()
        && out.status.success()
    {
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    Err(GithubError::NoToken {
        token_env: config.token_env.clone(),
    })
}

/// One answer.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

/// Read access to one repository.
pub struct GithubClient {
    octo: octocrab::Octocrab,
    graphql: octocrab::Octocrab,
    base: String,
    pub repo: String,
    token_env: String,
    max_wait: Duration,
    backoff: Duration,
}

/// GitHub's `message`, with the `errors[].message` details a validation failure carries.
fn message_of(body: &str) -> String {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return crate::worker::event::clip(body.trim(), 200);
    };
    let Some(message) = value.get("message").and_then(Value::as_str) else {
        return crate::worker::event::clip(body.trim(), 200);
    };
    let details: Vec<&str> = value
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("message").and_then(Value::as_str))
        .collect();
    if details.is_empty() {
        message.to_owned()
    } else {
        format!("{message}: {}", details.join("; "))
    }
}

/// Whether a request may be sent again after a 5xx or a network error without reading first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// Reads and idempotent writes.
    Yes,
    /// Writes that must not happen twice (opening a pull request, merging): one try; the
    /// caller reads whether it happened before sending again.
    No,
}

/// Where a request goes: the REST base, or GraphQL (`/graphql` on github.com, `/api/graphql`
/// on GitHub Enterprise Server, whose REST base is `/api/v3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Rest,
    Graphql,
}

/// The base GraphQL's `/graphql` hangs off, for a REST base: GitHub Enterprise Server's
/// `…/api/v3` becomes `…/api` (so `…/api/graphql`), as octokit does; github.com's REST root is
/// also its GraphQL root.
fn graphql_base(api_url: &str) -> String {
    let base = api_url.trim_end_matches('/');
    match base.strip_suffix("/api/v3") {
        Some(root) => format!("{root}/api"),
        None => base.to_owned(),
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The `rel="next"` URL of a Link header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, rel) = part.split_once(';')?;
        rel.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
    })
}

impl GithubClient {
    pub fn new(config: &GithubConfig, token: &str) -> Result<Self, GithubError> {
        // octocrab sends the token only to its base URI's host (so a redirect can never carry
        // it elsewhere), and joins every path below to the base's own path.
        let build = |base: &str| {
            octocrab::Octocrab::builder()
                .base_uri(base)
                .map_err(|e| GithubError::Client(format!("github.api_url: {e}")))?
                .personal_token(token.to_owned())
                .set_connect_timeout(Some(Duration::from_secs(15)))
                .set_read_timeout(Some(Duration::from_secs(60)))
                .build()
                .map_err(|e| GithubError::Client(e.to_string()))
        };
        Ok(Self {
            octo: build(config.api_url.trim_end_matches('/'))?,
            graphql: build(&graphql_base(&config.api_url))?,
            base: config.api_url.trim_end_matches('/').to_owned(),
            repo: config.repo.clone(),
            token_env: config.token_env.clone(),
            max_wait: config.max_rate_limit_wait.as_duration(),
            backoff: config.retry_backoff.as_duration(),
        })
    }

    /// The relative form of `path` (a `Link` header's absolute URL becomes its path and query).
    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.parse::<http::Uri>()
                .ok()
                .and_then(|u| u.path_and_query().map(|pq| pq.as_str().to_owned()))
                .unwrap_or_else(|| path.to_owned())
        } else {
            path.to_owned()
        }
    }

    async fn send_once(
        &self,
        api: Api,
        method: &Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let octo = match api {
            Api::Rest => &self.octo,
            Api::Graphql => &self.graphql,
        };
        let response = match *method {
            Method::GET => octo._get(url).await,
            Method::POST => octo._post(url, body).await,
            Method::PATCH => octo._patch(url, body).await,
            Method::PUT => octo._put(url, body).await,
            Method::DELETE => octo._delete(url, body).await,
            _ => return Err(format!("unsupported method {method}")),
        }
        .map_err(|e| e.to_string())?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = octo
            .body_to_string(response)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Sends with the retry policy; returns the first 2xx (or the 404/409/422 the caller
    /// handles) answer.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, GithubError> {
        self.send_to(Api::Rest, Resend::Yes, method, path, body)
            .await
    }

    async fn send_to(
        &self,
        api: Api,
        resend: Resend,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, GithubError> {
        let url = self.url(path);
        let endpoint = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let tries_allowed = if resend == Resend::Yes { TRIES } else { 1 };
        let mut tries = 0;
        let mut waited = Duration::ZERO;
        let mut secondary_hits = 0;
        loop {
            tries += 1;
            let answer = match self.send_once(api, &method, &url, body).await {
                Ok(answer) => answer,
                Err(message) if tries < tries_allowed => {
                    tracing::warn!("GitHub {endpoint}: {message}; retrying");
                    tokio::time::sleep(self.backoff * 2u32.pow(tries - 1)).await;
                    continue;
                }
                Err(message) => {
                    return Err(GithubError::Network {
                        base: self.base.clone(),
                        endpoint,
                        tries,
                        message,
                    });
                }
            };
            let status = answer.status;
            if status.is_success() || matches!(status.as_u16(), 404 | 409 | 422) {
                return Ok(answer);
            }
            if status.is_redirection() {
                return Err(self.moved(endpoint, &answer).await);
            }
            let message = message_of(&answer.body);
            if let Some(limit) = rate_limit(status, &answer.headers, &message, secondary_hits) {
                secondary_hits += u32::from(limit.secondary);
                if waited + limit.wait > self.max_wait {
                    return Err(GithubError::RateLimited {
                        endpoint,
                        wait_secs: limit.wait.as_secs(),
                        secondary: limit.secondary,
                    });
                }
                tracing::warn!(
                    "GitHub rate limit on {endpoint}; waiting {}s",
                    limit.wait.as_secs()
                );
                tokio::time::sleep(limit.wait).await;
                waited += limit.wait;
                tries -= 1;
                continue;
            }
            match status.as_u16() {
                401 => {
                    return Err(GithubError::Unauthorized {
                        endpoint,
                        message,
                        token_env: self.token_env.clone(),
                    });
                }
                403 => {
                    return Err(GithubError::Forbidden {
                        endpoint,
                        message,
                        repo: self.repo.clone(),
                    });
                }
                s if s >= 500 && tries < tries_allowed => {
                    tracing::warn!("GitHub {endpoint}: {status}; retrying");
                    tokio::time::sleep(self.backoff * 2u32.pow(tries - 1)).await;
                }
                s if s >= 500 => {
                    return Err(GithubError::Server {
                        endpoint,
                        status: s,
                        tries,
                        message,
                    });
                }
                s => {
                    return Err(GithubError::Rejected {
                        endpoint,
                        status: s,
                        message,
                    });
                }
            }
        }
    }

    /// A redirect: GitHub answers 301 (or 302/307) for a repository that was renamed or moved,
    /// pointing at `/repositories/{id}`; the repository's own answer there names it now.
    async fn moved(&self, endpoint: String, answer: &Answer) -> GithubError {
        let location = answer
            .headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                serde_json::from_str::<Value>(&answer.body)
                    .ok()?
                    .get("url")?
                    .as_str()
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let by_id = self.url(&location);
        let by_id = by_id.find("/repositories/").map(|at| {
            let rest = &by_id[at + "/repositories/".len()..];
            let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
            format!("{}/repositories/{id}", &by_id[..at])
        });
        let mut new_name = None;
        if let Some(path) = by_id
            && let Ok(answer) = self.send_once(Api::Rest, &Method::GET, &path, None).await
            && answer.status.is_success()
            && let Ok(repository) = serde_json::from_str::<Repository>(&answer.body)
        {
            new_name = Some(repository.full_name);
        }
        GithubError::Moved {
            endpoint,
            repo: self.repo.clone(),
            new_name,
            location,
        }
    }

    fn parse<T: DeserializeOwned>(endpoint: &str, body: &str) -> Result<T, GithubError> {
        serde_json::from_str(body).map_err(|e| GithubError::Malformed {
            endpoint: endpoint.to_owned(),
            message: e.to_string(),
        })
    }

    /// An error answer (404, 409, 422: what `send` hands back) as the error it is.
    fn ok_answer(path: &str, answer: Answer) -> Result<Answer, GithubError> {
        if answer.status.is_success() {
            return Ok(answer);
        }
        Err(GithubError::Rejected {
            endpoint: format!("GET {}", path.split('?').next().unwrap_or(path)),
            status: answer.status.as_u16(),
            message: message_of(&answer.body),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, GithubError> {
        let answer = Self::ok_answer(path, self.send(Method::GET, path, None).await?)?;
        Self::parse(&format!("GET {path}"), &answer.body)
    }

    /// Every page of a list endpoint (following `Link: rel="next"`), up to `MAX_PAGES`.
    async fn get_all<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, GithubError> {
        let mut items = Vec::new();
        let mut next = Some(path.to_owned());
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            let answer = Self::ok_answer(path, self.send(Method::GET, &url, None).await?)?;
            let page: Vec<T> = Self::parse(&format!("GET {path}"), &answer.body)?;
            items.extend(page);
            if pages < MAX_PAGES {
                next = next_link(&answer.headers);
            }
        }
        Ok(items)
    }

    fn repo_path(&self, rest: &str) -> String {
        format!("/repos/{}{rest}", self.repo)
    }

    pub async fn repository(&self) -> Result<Repository, GithubError> {
        self.get(&self.repo_path("")).await
    }

    /// Pull requests by state (`open`, `closed`, `all`), optionally for one head branch.
    pub async fn pulls(
        &self,
        state: &str,
        head: Option<&str>,
    ) -> Result<Vec<PullRequest>, GithubError> {
        let owner = self.repo.split('/').next().unwrap_or("");
        let head = head
            .map(|h| format!("&head={owner}:{h}"))
            .unwrap_or_default();
        self.get_all(&self.repo_path(&format!("/pulls?state={state}&per_page=100{head}")))
            .await
    }

    pub async fn pull(&self, number: u64) -> Result<PullRequest, GithubError> {
        self.get(&self.repo_path(&format!("/pulls/{number}"))).await
    }

    pub async fn pull_files(&self, number: u64) -> Result<Vec<PullFile>, GithubError> {
        self.get_all(&self.repo_path(&format!("/pulls/{number}/files?per_page=100")))
            .await
    }

    pub async fn reviews(&self, number: u64) -> Result<Vec<Review>, GithubError> {
        self.get_all(&self.repo_path(&format!("/pulls/{number}/reviews?per_page=100")))
            .await
    }

    /// Every page of a list GitHub wraps in an object (`{"total_count": …, "check_runs": […]}`),
    /// each page's items taken out by `items`.
    async fn get_all_wrapped<P: DeserializeOwned, T>(
        &self,
        path: &str,
        items: impl Fn(P) -> Vec<T>,
    ) -> Result<Vec<T>, GithubError> {
        let mut all = Vec::new();
        let mut next = Some(path.to_owned());
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            let answer = Self::ok_answer(path, self.send(Method::GET, &url, None).await?)?;
            let page: P = Self::parse(&format!("GET {path}"), &answer.body)?;
            all.extend(items(page));
            if pages < MAX_PAGES {
                next = next_link(&answer.headers);
            }
        }
        Ok(all)
    }
}

/// A rate limit's wait, in GitHub's documented order: `retry-after`; else, when
/// `x-ratelimit-remaining` is 0, until `x-ratelimit-reset`; else (a secondary limit with no
/// hint) at least a minute, doubling on each repeat. `None` when the answer is no rate limit.
struct Limit {
    wait: Duration,
    secondary: bool,
}

fn rate_limit(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    secondary_hits: u32,
) -> Option<Limit> {
    let remaining = header_u64(headers, "x-ratelimit-remaining");
    let retry_after = header_u64(headers, "retry-after");
    let says_so = message.to_lowercase().contains("rate limit");
    let limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN
            && (remaining == Some(0) || retry_after.is_some() || says_so));
    if !limited {
        return None;
    }
    let secondary = remaining != Some(0);
    let wait = match (
        retry_after,
        remaining,
        header_u64(headers, "x-ratelimit-reset"),
    ) {
        (Some(secs), _, _) => Duration::from_secs(secs),
        (None, Some(0), Some(reset)) => {
            let now = crate::clock::now_ms() / 1000;
            Duration::from_secs((reset as i64 - now).max(1) as u64)
        }
        _ => Duration::from_secs(60 * 2u64.pow(secondary_hits.min(6))),
    };
    Some(Limit { wait, secondary })
}

/// Write access. Built only from a [`ReleaseMode`] proof.
pub struct GithubWriter<'a> {
    client: &'a GithubClient,
}

impl<'a> GithubWriter<'a> {
    pub fn new(client: &'a GithubClient, _release: ReleaseMode) -> Self {
        Self { client }
    }

    async fn write<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<T, GithubError> {
        self.write_to(Api::Rest, Resend::Yes, method, path, body)
            .await
    }

    /// One try of a write that must not happen twice.
    async fn write_once<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<T, GithubError> {
        self.write_to(Api::Rest, Resend::No, method, path, body)
            .await
    }

    async fn write_to<T: DeserializeOwned>(
        &self,
        api: Api,
        resend: Resend,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<T, GithubError> {
        let answer = self
            .client
            .send_to(api, resend, method.clone(), path, Some(body))
            .await?;
        if !answer.status.is_success() {
            return Err(GithubError::Rejected {
                endpoint: format!("{method} {path}"),
                status: answer.status.as_u16(),
                message: message_of(&answer.body),
            });
        }
        if answer.body.trim().is_empty() {
            return GithubClient::parse(&format!("{method} {path}"), "null");
        }
        GithubClient::parse(&format!("{method} {path}"), &answer.body)
    }

    /// Opens a draft pull request — a ready one when the repository's plan has no drafts
    /// (GitHub answers 422; the returned pull request's `draft` says which). A try whose answer
    /// was lost is read back (an open pull request for `head`) before the next.
    pub async fn create_pull(
        &self,
        title: &str,
        body: &str,
        head: &str,
        base: &str,
    ) -> Result<PullRequest, GithubError> {
        let path = self.client.repo_path("/pulls");
        let mut draft = true;
        let mut tries = 0;
        loop {
            tries += 1;
            let request = serde_json::json!({
                "title": title, "body": body, "head": head, "base": base, "draft": draft,
            });
            match self.write_once(Method::POST, &path, &request).await {
                Ok(pull) => return Ok(pull),
                Err(GithubError::Rejected {
                    status: 422,
                    message,
                    ..
                }) if draft
                    && message
                        .to_lowercase()
                        .contains("draft pull requests are not supported") =>
                {
                    tracing::warn!("{message}; opening a ready pull request instead");
                    draft = false;
                    tries -= 1;
                }
                Err(e) if resendable(&e) && tries < TRIES => {
                    tracing::warn!("{e}; reading whether the pull request was opened");
                    tokio::time::sleep(self.client.backoff * 2u32.pow(tries - 1)).await;
                    let open = self.client.pulls("open", Some(head)).await?;
                    if let Some(pull) = open.into_iter().find(|p| p.head.name == head) {
                        return Ok(pull);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub async fn update_pull(
        &self,
        number: u64,
        title: &str,
        body: &str,
    ) -> Result<PullRequest, GithubError> {
        self.write(
            Method::PATCH,
            &self.client.repo_path(&format!("/pulls/{number}")),
            &serde_json::json!({ "title": title, "body": body }),
        )
        .await
    }

    pub async fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), GithubError> {
        let _: Value = self
            .write(
                Method::POST,
                &self.client.repo_path(&format!("/issues/{number}/labels")),
                &serde_json::json!({ "labels": labels }),
            )
            .await?;
        Ok(())
    }

    /// Merges a pull request with `method` (its head must still be `sha`). A try whose answer
    /// was lost is read back (is the pull request merged?) before the next.
    pub async fn merge_pull(
        &self,
        number: u64,
        sha: &str,
        title: &str,
        method: MergeMethod,
    ) -> Result<(), GithubError> {
        let path = self.client.repo_path(&format!("/pulls/{number}/merge"));
        let request = serde_json::json!({
            "merge_method": method.as_str(), "sha": sha, "commit_title": title,
        });
        let mut tries = 0;
        loop {
            tries += 1;
            match self.write_once::<Value>(Method::PUT, &path, &request).await {
                Ok(_) => return Ok(()),
                Err(e) if resendable(&e) && tries < TRIES => {
                    tracing::warn!("{e}; reading whether pull request #{number} merged");
                    tokio::time::sleep(self.client.backoff * 2u32.pow(tries - 1)).await;
                    if self.client.pull(number).await?.is_merged() {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Marks a draft ready for review (GraphQL: REST cannot un-draft a pull request).
    pub async fn mark_ready(&self, node_id: &str) -> Result<(), GithubError> {
        // On the GraphQL base: `/graphql` on github.com, `/api/graphql` on GitHub Enterprise
        // Server (never under its `/api/v3`). The mutation is idempotent.
        let answer: Value = self
            .write_to(
                Api::Graphql,
                Resend::Yes,
                Method::POST,
                "/graphql",
                &serde_json::json!({
                    "query": "mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) { pullRequest { isDraft } } }",
                    "variables": { "id": node_id },
                }),
            )
            .await?;
        match answer.get("errors").and_then(Value::as_array) {
            Some(errors) if !errors.is_empty() => Err(GithubError::Rejected {
                endpoint: "POST /graphql markPullRequestReadyForReview".to_owned(),
                status: 200,
                message: errors[0]["message"].as_str().unwrap_or("error").to_owned(),
            }),
            _ => Ok(()),
        }
    }

    pub async fn delete_branch(&self, branch: &str) -> Result<(), GithubError> {
        let answer = self
            .client
            .send(
                Method::DELETE,
                &self.client.repo_path(&format!("/git/refs/heads/{branch}")),
                None,
            )
            .await?;
        // Already gone (GitHub may delete head branches on merge) is fine; GitHub says so with
        // 422 "Reference does not exist". Any other 422 (a protected branch) is a refusal.
        let message = message_of(&answer.body);
        let gone = match answer.status.as_u16() {
            404 => true,
            422 => message.to_lowercase().contains("reference does not exist"),
            _ => false,
        };
        if answer.status.is_success() || gone {
            Ok(())
        } else {
            Err(GithubError::Rejected {
                endpoint: format!("DELETE refs/heads/{branch}"),
                status: answer.status.as_u16(),
                message,
            })
        }
    }
}

/// A failure after which the write may or may not have happened (a 5xx, a lost connection).
fn resendable(e: &GithubError) -> bool {
    matches!(e, GithubError::Server { .. } | GithubError::Network { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn graphql_lives_at_api_graphql_on_enterprise_server() {
        assert_eq!(
            graphql_base("https://api.github.com"),
            "https://api.github.com"
        );
        assert_eq!(
            graphql_base("https://ghe.example.com/api/v3/"),
            "https://ghe.example.com/api"
        );
        assert_eq!(
            graphql_base("http://127.0.0.1:9/api/v3"),
            "http://127.0.0.1:9/api"
        );
    }

    #[test]
    fn rate_limits_are_waited_in_githubs_documented_order() {
        let reset = (crate::clock::now_ms() / 1000 + 3600).to_string();
        let forbidden = StatusCode::FORBIDDEN;
        // retry-after first.
        let h = headers(&[
            ("retry-after", "7".into()),
            ("x-ratelimit-remaining", "0".into()),
            ("x-ratelimit-reset", reset.clone()),
        ]);
        assert_eq!(
            rate_limit(forbidden, &h, "", 0).unwrap().wait,
            Duration::from_secs(7)
        );
        // Else remaining 0: until the reset.
        let h = headers(&[
            ("x-ratelimit-remaining", "0".into()),
            ("x-ratelimit-reset", reset.clone()),
        ]);
        let limit = rate_limit(forbidden, &h, "API rate limit exceeded", 0).unwrap();
        assert!(limit.wait > Duration::from_secs(3500) && !limit.secondary);
        // Else at least a minute, doubling on repeats; never the primary reset.
        let h = headers(&[
            ("x-ratelimit-remaining", "4000".into()),
            ("x-ratelimit-reset", reset),
        ]);
        let msg = "You have exceeded a secondary rate limit";
        let limit = rate_limit(forbidden, &h, msg, 0).unwrap();
        assert_eq!(
            (limit.wait, limit.secondary),
            (Duration::from_secs(60), true)
        );
        assert_eq!(
            rate_limit(forbidden, &h, msg, 1).unwrap().wait,
            Duration::from_secs(120)
        );
        // A 403 that is no rate limit is not waited.
        assert!(rate_limit(forbidden, &h, "Resource not accessible by integration", 0).is_none());
    }

    #[test]
    fn validation_details_are_kept_in_the_message() {
        let body = r#"{"message":"Validation Failed","errors":[{"message":"A pull request already exists for acme:x."}]}"#;
        assert_eq!(
            message_of(body),
            "Validation Failed: A pull request already exists for acme:x."
        );
        assert_eq!(
            message_of("<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
    }

    #[test]
    fn the_merge_method_is_one_the_repository_allows() {
        let mut repo: Repository = serde_json::from_str(r#"{"full_name":"a/b"}"#).unwrap();
        assert_eq!(repo.merge_method(), Some(MergeMethod::Squash));
        repo.allow_squash_merge = Some(false);
        assert_eq!(repo.merge_method(), Some(MergeMethod::Merge));
        repo.allow_merge_commit = Some(false);
        assert_eq!(repo.merge_method(), Some(MergeMethod::Rebase));
        repo.allow_rebase_merge = Some(false);
        assert_eq!(repo.merge_method(), None);
    }
}
