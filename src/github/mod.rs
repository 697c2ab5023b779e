//! GitHub, through octocrab's HTTP client (auth, TLS, timeouts) with oxi's own handling of
//! what GitHub answers: rate limits waited out (primary: until `x-ratelimit-reset`; secondary
//! and 429: `retry-after`), 5xx and network errors retried with backoff, 401/403 turned into
//! errors that say what to fix, and malformed answers named by endpoint.
//!
//! Reads go through [`GithubClient`]. Writes go through [`GithubWriter`], which can only be built
//! from a [`ReleaseMode`] proof: fast mode never holds one.

#[cfg(test)]
mod contract;
pub mod model;

use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{GithubConfig, ReleaseMode};
use model::{CheckRun, CheckRuns, PullFile, PullRequest, Repository, Review};

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
        "GitHub rate limit on {endpoint}; it resets in {wait_secs}s, longer than github.max_rate_limit_wait; the next tick resumes"
    )]
    RateLimited { endpoint: String, wait_secs: u64 },
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
    base: String,
    pub repo: String,
    token_env: String,
    max_wait: Duration,
    backoff: Duration,
}

fn message_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| crate::worker::event::clip(body.trim(), 200))
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
        // octocrab sends the token only to its base URI, and only for relative paths (so a
        // redirect can never carry it elsewhere); every path below is relative.
        let octo = octocrab::Octocrab::builder()
            .base_uri(config.api_url.trim_end_matches('/'))
            .map_err(|e| GithubError::Client(format!("github.api_url: {e}")))?
            .personal_token(token.to_owned())
            .set_connect_timeout(Some(Duration::from_secs(15)))
            .set_read_timeout(Some(Duration::from_secs(60)))
            .build()
            .map_err(|e| GithubError::Client(e.to_string()))?;
        Ok(Self {
            octo,
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
        method: &Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let response = match *method {
            Method::GET => self.octo._get(url).await,
            Method::POST => self.octo._post(url, body).await,
            Method::PATCH => self.octo._patch(url, body).await,
            Method::PUT => self.octo._put(url, body).await,
            Method::DELETE => self.octo._delete(url, body).await,
            _ => return Err(format!("unsupported method {method}")),
        }
        .map_err(|e| e.to_string())?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = self
            .octo
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
        let url = self.url(path);
        let endpoint = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let mut tries = 0;
        let mut waited = Duration::ZERO;
        loop {
            tries += 1;
            let answer = match self.send_once(&method, &url, body).await {
                Ok(answer) => answer,
                Err(message) if tries < TRIES => {
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
            let message = message_of(&answer.body);
            let remaining = header_u64(&answer.headers, "x-ratelimit-remaining");
            let retry_after = header_u64(&answer.headers, "retry-after");
            let rate_limited = status == StatusCode::TOO_MANY_REQUESTS
                || (status == StatusCode::FORBIDDEN
                    && (remaining == Some(0)
                        || retry_after.is_some()
                        || message.to_lowercase().contains("rate limit")));
            if rate_limited {
                let wait = match (
                    retry_after,
                    header_u64(&answer.headers, "x-ratelimit-reset"),
                ) {
                    (Some(secs), _) => Duration::from_secs(secs),
                    (None, Some(reset)) => {
                        let now = crate::clock::now_ms() / 1000;
                        Duration::from_secs((reset as i64 - now).max(1) as u64)
                    }
                    // Secondary limit with no hint: GitHub asks for at least a minute.
                    (None, None) => Duration::from_secs(60),
                };
                if waited + wait > self.max_wait {
                    return Err(GithubError::RateLimited {
                        endpoint,
                        wait_secs: wait.as_secs(),
                    });
                }
                tracing::warn!(
                    "GitHub rate limit on {endpoint}; waiting {}s",
                    wait.as_secs()
                );
                tokio::time::sleep(wait).await;
                waited += wait;
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
                s if s >= 500 && tries < TRIES => {
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

    fn parse<T: DeserializeOwned>(endpoint: &str, body: &str) -> Result<T, GithubError> {
        serde_json::from_str(body).map_err(|e| GithubError::Malformed {
            endpoint: endpoint.to_owned(),
            message: e.to_string(),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, GithubError> {
        let answer = self.send(Method::GET, path, None).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Err(GithubError::Rejected {
                endpoint: format!("GET {path}"),
                status: 404,
                message: message_of(&answer.body),
            });
        }
        Self::parse(&format!("GET {path}"), &answer.body)
    }

    /// Every page of a list endpoint (following `Link: rel="next"`), up to `MAX_PAGES`.
    async fn get_all<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, GithubError> {
        let mut items = Vec::new();
        let mut next = Some(path.to_owned());
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            let answer = self.send(Method::GET, &url, None).await?;
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

    pub async fn check_runs(&self, sha: &str) -> Result<Vec<CheckRun>, GithubError> {
        let runs: CheckRuns = self
            .get(&self.repo_path(&format!("/commits/{sha}/check-runs?per_page=100")))
            .await?;
        Ok(runs.check_runs)
    }
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
        let answer = self.client.send(method.clone(), path, Some(body)).await?;
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

    /// Opens a draft pull request.
    pub async fn create_pull(
        &self,
        title: &str,
        body: &str,
        head: &str,
        base: &str,
    ) -> Result<PullRequest, GithubError> {
        self.write(
            Method::POST,
            &self.client.repo_path("/pulls"),
            &serde_json::json!({
                "title": title, "body": body, "head": head, "base": base, "draft": true,
            }),
        )
        .await
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

    /// Squash-merges a pull request (its head must still be `sha`).
    pub async fn merge_pull(&self, number: u64, sha: &str, title: &str) -> Result<(), GithubError> {
        let _: Value = self
            .write(
                Method::PUT,
                &self.client.repo_path(&format!("/pulls/{number}/merge")),
                &serde_json::json!({ "merge_method": "squash", "sha": sha, "commit_title": title }),
            )
            .await?;
        Ok(())
    }

    /// Marks a draft ready for review (GraphQL: REST cannot un-draft a pull request).
    pub async fn mark_ready(&self, node_id: &str) -> Result<(), GithubError> {
        // Relative, so octocrab authenticates it; on GitHub Enterprise (an `/api/v3` base) this
        // resolves under the base path, as octocrab's own `graphql` does.
        let url = "/graphql";
        let answer: Value = self
            .write(
                Method::POST,
                url,
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
        // Already gone (GitHub may delete head branches on merge) is fine.
        if answer.status.is_success() || matches!(answer.status.as_u16(), 404 | 422) {
            Ok(())
        } else {
            Err(GithubError::Rejected {
                endpoint: format!("DELETE refs/heads/{branch}"),
                status: answer.status.as_u16(),
                message: message_of(&answer.body),
            })
        }
    }
}
