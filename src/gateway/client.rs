//! One provider over HTTP: non-streaming chat completions with a timeout and bounded retries
//! on 429 and 5xx (honouring `retry-after`), and the model list / health probes `oxi doctor`
//! uses. Nothing here touches the ledger; [`super::Gateway`] wraps each call in a reservation.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::{Deserialize, Serialize, Serializer};

use super::GatewayError;
use crate::config::{GatewayProviderConfig, GatewayProviderKind};
use crate::redact::Redactor;

/// LiteLLM's per-call cost in USD, a decimal string.
pub(super) const LITELLM_COST_HEADER: &str = "x-litellm-response-cost";

/// The first wait after a 429 or 5xx that names no `retry-after`; doubled per attempt.
const BACKOFF_BASE: Duration = Duration::from_millis(250);

/// How much of an error body an error message quotes.
const ERROR_EXCERPT: usize = 300;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: &'static str,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: "system",
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user",
            content: content.into(),
        }
    }
}

/// `"stream": false`, as a type: the gateway reads whole answers only (the cost header and
/// `usage` arrive with a whole answer), so no request body can be built that streams.
#[derive(Debug, Clone, Copy)]
struct NotStreaming;

impl Serialize for NotStreaming {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bool(false)
    }
}

/// The request body (OpenAI chat completions).
#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    stream: NotStreaming,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct ChatResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

/// `usage` as OpenAI spells it; OpenRouter adds `cost` (USD, its credits).
#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
    #[serde(default)]
    cost: Option<f64>,
}

#[derive(Deserialize, Default)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize, Default)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}

/// Token counts of one answer. `prompt` includes `cached`; `completion` includes `reasoning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Usage {
    pub prompt: u64,
    pub cached: u64,
    pub completion: u64,
    pub reasoning: u64,
}

/// A whole answer and what the provider said it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub text: String,
    /// The model the provider says answered (may differ from the one asked for).
    pub model: Option<String>,
    pub usage: Usage,
    /// `x-litellm-response-cost`, USD.
    pub header_cost_usd: Option<f64>,
    /// `usage.cost`, USD.
    pub body_cost_usd: Option<f64>,
    /// Requests sent, retries included.
    pub attempts: u32,
    pub latency: Duration,
}

/// A failed call and how many requests it took.
#[derive(Debug)]
pub struct Failed {
    pub error: GatewayError,
    pub attempts: u32,
}

/// A configured provider, ready to call.
#[derive(Debug, Clone)]
pub struct ProviderClient {
    http: reqwest::Client,
    name: String,
    kind: GatewayProviderKind,
    /// The root oxi appends API paths to (LiteLLM: `…/v1`).
    api: String,
    /// The proxy's root, for LiteLLM's `/health/readiness`.
    root: String,
    key: Option<String>,
    /// Masks the key (and token-shaped strings) in error text a provider echoes, before it
    /// reaches the ledger or a terminal.
    redactor: Redactor,
    timeout: Duration,
    retries: u32,
    max_retry_wait: Duration,
}

impl ProviderClient {
    /// `key` is the secret itself (already read from the variable `key_env` names).
    pub fn new(
        http: reqwest::Client,
        name: &str,
        config: &GatewayProviderConfig,
        key: Option<String>,
    ) -> Self {
        let base = config
            .base_url
            .as_deref()
            .or(config.kind.default_base_url())
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned();
        let (api, root) = match config.kind {
            GatewayProviderKind::Litellm => {
                let root = base.trim_end_matches("/v1").to_owned();
                (format!("{root}/v1"), root)
            }
            _ => (base.clone(), base),
        };
        Self {
            http,
            name: name.to_owned(),
            kind: config.kind,
            api,
            root,
            redactor: Redactor::new(key.iter()),
            key,
            timeout: config.timeout.0,
            retries: config.retries,
            max_retry_wait: config.max_retry_wait.0,
        }
    }

    /// The start of an answer's body for an error message, with the key masked.
    pub(super) fn excerpt(&self, bytes: &[u8]) -> String {
        self.redactor.redact(&clip(bytes)).into_owned()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> GatewayProviderKind {
        self.kind
    }

    /// The URL embeddings are posted to.
    #[must_use]
    pub fn embeddings_url(&self) -> String {
        format!("{}/embeddings", self.api)
    }

    /// The URL chat completions are posted to.
    pub fn chat_url(&self) -> String {
        format!("{}/chat/completions", self.api)
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// One non-streaming chat completion, retried on 429, 5xx, timeouts and connection
    /// errors up to `retries` more times.
    pub async fn chat(
        &self,
        model: &str,
        messages: &[Message],
        max_tokens: Option<u32>,
    ) -> Result<Answer, Failed> {
        let body = ChatRequest {
            model,
            messages,
            stream: NotStreaming,
            max_tokens,
        };
        let body = serde_json::to_vec(&body).map_err(|e| Failed {
            error: GatewayError::Malformed {
                provider: self.name.clone(),
                detail: format!("request body: {e}"),
            },
            attempts: 0,
        })?;
        let (headers, bytes, attempts, latency) =
            self.post_retried(&self.chat_url(), &body).await?;
        self.parse_answer(&headers, &bytes, attempts, latency)
            .map_err(|error| Failed { error, attempts })
    }

    /// Posts `body` to `url`, retried on 429, 5xx, timeouts and connection errors up to
    /// `retries` more times; the 2xx answer's headers and body, the requests sent and the
    /// time it took.
    pub(super) async fn post_retried(
        &self,
        url: &str,
        body: &[u8],
    ) -> Result<(HeaderMap, Vec<u8>, u32, Duration), Failed> {
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let outcome = self.attempt(url, body).await;
            let retry_wait = match outcome {
                Ok((headers, bytes)) => return Ok((headers, bytes, attempts, started.elapsed())),
                Err(Attempt::Fatal(error)) => return Err(Failed { error, attempts }),
                Err(Attempt::Retryable { error, retry_after }) => {
                    if attempts > self.retries {
                        return Err(Failed { error, attempts });
                    }
                    match retry_after {
                        Some(wait) if wait > self.max_retry_wait => {
                            return Err(Failed {
                                error: GatewayError::RetryAfterTooLong {
                                    provider: self.name.clone(),
                                    wait,
                                    max: self.max_retry_wait,
                                },
                                attempts,
                            });
                        }
                        Some(wait) => wait,
                        None => BACKOFF_BASE * 2u32.saturating_pow(attempts - 1),
                    }
                }
            };
            tracing::debug!(provider = %self.name, attempts, ?retry_wait, "gateway call retried");
            tokio::time::sleep(retry_wait).await;
        }
    }

    async fn attempt(&self, url: &str, body: &[u8]) -> Result<(HeaderMap, Vec<u8>), Attempt> {
        let request = self
            .authorized(self.http.post(url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(self.timeout)
            .body(body.to_vec());
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport(e))?
            .to_vec();
        if status.is_success() {
            return Ok((headers, bytes));
        }
        let error = GatewayError::Status {
            provider: self.name.clone(),
            status: status.as_u16(),
            body: self.excerpt(&bytes),
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Err(Attempt::Retryable {
                error,
                retry_after: retry_after(&headers, jiff::Timestamp::now()),
            })
        } else {
            Err(Attempt::Fatal(error))
        }
    }

    fn transport(&self, error: reqwest::Error) -> Attempt {
        let error = if error.is_timeout() {
            GatewayError::Timeout {
                provider: self.name.clone(),
                after: self.timeout,
            }
        } else {
            GatewayError::Unreachable {
                provider: self.name.clone(),
                detail: error_chain(&error),
            }
        };
        Attempt::Retryable {
            error,
            retry_after: None,
        }
    }

    fn parse_answer(
        &self,
        headers: &HeaderMap,
        bytes: &[u8],
        attempts: u32,
        latency: Duration,
    ) -> Result<Answer, GatewayError> {
        let response: ChatResponse =
            serde_json::from_slice(bytes).map_err(|e| GatewayError::Malformed {
                provider: self.name.clone(),
                detail: format!("{e}: {}", self.excerpt(bytes)),
            })?;
        let text = response
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .ok_or_else(|| GatewayError::Malformed {
                provider: self.name.clone(),
                detail: format!("no choices[0].message.content: {}", self.excerpt(bytes)),
            })?;
        let wire = response.usage.unwrap_or_default();
        Ok(Answer {
            text,
            model: response.model,
            usage: Usage {
                prompt: wire.prompt_tokens,
                cached: wire.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
                completion: wire.completion_tokens,
                reasoning: wire
                    .completion_tokens_details
                    .map_or(0, |d| d.reasoning_tokens),
            },
            header_cost_usd: headers
                .get(LITELLM_COST_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|c| c.is_finite() && *c >= 0.0),
            body_cost_usd: wire.cost.filter(|c| c.is_finite() && *c >= 0.0),
            attempts,
            latency,
        })
    }

    /// What `oxi doctor` reports: LiteLLM's `/health/readiness` (no model is called, so it
    /// costs nothing) and then, for every kind, the model list with the key, which proves the
    /// key is accepted. Returns a one-line summary.
    pub async fn probe(&self) -> Result<String, GatewayError> {
        let mut summary = Vec::new();
        if self.kind == GatewayProviderKind::Litellm {
            let url = format!("{}/health/readiness", self.root);
            let bytes = self.get(&url, false).await?;
            let status = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned))
                .unwrap_or_else(|| "ready".to_owned());
            summary.push(format!("proxy {status}"));
        }
        let bytes = self.get(&format!("{}/models", self.api), true).await?;
        let count = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("data").and_then(|d| d.as_array()).map(Vec::len))
            .ok_or_else(|| GatewayError::Malformed {
                provider: self.name.clone(),
                detail: format!("models list without `data`: {}", self.excerpt(&bytes)),
            })?;
        summary.push(format!("{count} models listed"));
        Ok(summary.join(", "))
    }

    async fn get(&self, url: &str, authorized: bool) -> Result<Vec<u8>, GatewayError> {
        let mut request = self.http.get(url).timeout(self.timeout);
        if authorized {
            request = self.authorized(request);
        }
        let unreachable = |e: reqwest::Error| match self.transport(e) {
            Attempt::Retryable { error, .. } | Attempt::Fatal(error) => error,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?.to_vec();
        if !status.is_success() {
            return Err(GatewayError::Status {
                provider: self.name.clone(),
                status: status.as_u16(),
                body: format!("GET {url}: {}", self.excerpt(&bytes)),
            });
        }
        Ok(bytes)
    }
}

enum Attempt {
    Fatal(GatewayError),
    Retryable {
        error: GatewayError,
        retry_after: Option<Duration>,
    },
}

/// `retry-after` as seconds or as an HTTP date (RFC 9110 §10.2.3); a date in the past is
/// no wait.
fn retry_after(headers: &HeaderMap, now: jiff::Timestamp) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = at.as_millisecond().saturating_sub(now.as_millisecond());
    Some(Duration::from_millis(wait.max(0) as u64))
}

fn clip(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(ERROR_EXCERPT) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A reqwest error with its causes ("error sending request: connection refused").
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now: jiff::Timestamp = "2026-11-29T12:00:00Z".parse().unwrap();
        assert_eq!(
            retry_after(&headers("3"), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(&headers("Sun, 29 Nov 2026 12:00:07 GMT"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers("Sun, 29 Nov 2026 11:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn every_body_says_stream_false() {
        let messages = [Message::user("hi")];
        let body = serde_json::to_value(ChatRequest {
            model: "m",
            messages: &messages,
            stream: NotStreaming,
            max_tokens: None,
        })
        .unwrap();
        assert_eq!(body["stream"], serde_json::Value::Bool(false));
    }
}
