//! A scripted stand-in for the model APIs, so the real agent CLIs (`claude`, `codex`) can run
//! offline in tests: an HTTP server on `127.0.0.1` that speaks the Anthropic Messages API
//! (Claude Code) and the OpenAI Responses API (Codex) exactly as the recorded captures in
//! `fixtures/captures/` show, answering each model request with the next [`Step`] of a
//! [`Script`] and recording every request it gets.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use oxi_testkit::mock_model::{MockModelServer, Script, Step};
//! let server = MockModelServer::start(
//!     Script::new()
//!         .then(Step::write_file("hello.txt", "hi"))
//!         .then(Step::text("OXI_RESULT {\"status\":\"done\"}")),
//! )
//! .await?;
//! // claude: ANTHROPIC_BASE_URL={server.base_url()}
//! // codex:  model_providers.mock.base_url={server.openai_base_url()}
//! # Ok(()) }
//! ```

mod anthropic;
mod chat;
mod embeddings;
mod openai;
pub mod sse;

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use chat::ChatCost;
pub use embeddings::{EmbedStep, vector as embedding_vector};
pub use openai::add_file_patch;
use sse::SseEvent;

/// Request bodies grow with the conversation; a long agent session can exceed axum's 2 MB
/// default, which would make the mock, not the CLI, fail.
const MAX_REQUEST_BYTES: usize = 512 * 1024 * 1024;

/// How long [`MockModelServer::shutdown`] waits for open connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Token counts reported with every answer. The default is what the captures' mock reported,
/// so cost and usage parsing can be checked against the recorded CLI output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Uncached input (Anthropic `input_tokens`; OpenAI `input_tokens`).
    pub input_tokens: u64,
    /// Anthropic `cache_read_input_tokens`; OpenAI `input_tokens_details.cached_tokens`.
    pub cached_input_tokens: u64,
    /// Anthropic `cache_creation_input_tokens` (the Responses API has no such field).
    pub cache_creation_input_tokens: u64,
    /// `output_tokens` in both APIs.
    pub output_tokens: u64,
    /// OpenAI `output_tokens_details.reasoning_tokens` (Anthropic has no such field).
    pub reasoning_output_tokens: u64,
}

impl Default for Usage {
    fn default() -> Self {
        Self {
            input_tokens: 1200,
            cached_input_tokens: 200,
            cache_creation_input_tokens: 100,
            output_tokens: 50,
            reasoning_output_tokens: 20,
        }
    }
}

/// How the server answers one model request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The captures' mock: after a tool result, the text `done`; otherwise, when an edit tool
    /// is offered (Claude `Write`, Codex `apply_patch`), create `hello.txt` containing `hi`;
    /// otherwise the text `ok`.
    Auto,
    /// A final assistant message with this text.
    Text(String),
    /// A tool call that creates or overwrites `path` with `content`: Claude `Write` (a
    /// relative path is made absolute with the working directory Claude states in its
    /// prompt), Codex `apply_patch` with an `Add File` hunk (which also replaces an existing
    /// file, and always ends it with a newline).
    WriteFile { path: String, content: String },
    /// A shell command: Claude `Bash`; Codex `exec_command` (`shell_command`/`shell` if that
    /// is what the request offers).
    Shell { command: String },
    /// An HTTP error with the API's error JSON (or `body` verbatim), and `retry-after` if
    /// given. Codex does not retry a 429 without `retry-after`.
    Status {
        code: u16,
        retry_after_secs: Option<u64>,
        body: Option<String>,
    },
    /// Accept the request and never answer (until the server shuts down).
    Hang,
    /// Answer 200 and start the stream (`message_start` / `response.created`), then go
    /// silent: a model that stalls mid-stream.
    Stall,
    /// A final text answer of exactly `bytes` bytes, streamed in 16 KiB deltas.
    Huge { bytes: usize },
}

impl Step {
    /// [`Step::Text`].
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }

    /// [`Step::WriteFile`].
    pub fn write_file(path: impl Into<String>, content: impl Into<String>) -> Self {
        Self::WriteFile {
            path: path.into(),
            content: content.into(),
        }
    }

    /// [`Step::Shell`].
    pub fn shell(command: impl Into<String>) -> Self {
        Self::Shell {
            command: command.into(),
        }
    }

    /// [`Step::Status`] with the API's own error body.
    pub fn status(code: u16, retry_after_secs: Option<u64>) -> Self {
        Self::Status {
            code,
            retry_after_secs,
            body: None,
        }
    }

    /// A short label for [`RecordedRequest::reply`].
    fn describe(&self) -> String {
        match self {
            Step::Auto => "auto".into(),
            Step::Text(text) => format!("text ({} bytes)", text.len()),
            Step::WriteFile { path, .. } => format!("write_file {path}"),
            Step::Shell { command } => format!("shell {command}"),
            Step::Status { code, .. } => format!("status {code}"),
            Step::Hang => "hang".into(),
            Step::Stall => "stall".into(),
            Step::Huge { bytes } => format!("huge ({bytes} bytes)"),
        }
    }
}

/// The answers to give, in order, one per model request (both APIs share the queue), then
/// `fallback` for every request after that.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    steps: VecDeque<(Step, Option<Usage>)>,
    fallback: Step,
    usage: Usage,
    chat_cost: ChatCost,
    embed_steps: VecDeque<EmbedStep>,
    embed_fallback: EmbedStep,
    embed_dimensions: usize,
}

/// The width of the mock's embeddings unless [`Script::embed_dimensions`] says otherwise.
pub const EMBED_DIMENSIONS: usize = 64;

impl Default for Script {
    fn default() -> Self {
        Self::new()
    }
}

impl Script {
    /// No scripted steps: every request gets [`Step::Auto`], with the default [`Usage`].
    pub fn new() -> Self {
        Self {
            steps: VecDeque::new(),
            fallback: Step::Auto,
            usage: Usage::default(),
            chat_cost: ChatCost::None,
            embed_steps: VecDeque::new(),
            embed_fallback: EmbedStep::Auto,
            embed_dimensions: EMBED_DIMENSIONS,
        }
    }

    /// These steps in order, then [`Step::Auto`].
    pub fn steps(steps: impl IntoIterator<Item = Step>) -> Self {
        steps.into_iter().fold(Self::new(), Self::then)
    }

    /// Appends a step.
    #[must_use]
    pub fn then(mut self, step: Step) -> Self {
        self.steps.push_back((step, None));
        self
    }

    /// Appends a step that reports `usage` instead of the script's.
    #[must_use]
    pub fn then_with_usage(mut self, step: Step, usage: Usage) -> Self {
        self.steps.push_back((step, Some(usage)));
        self
    }

    /// What to answer once the steps are used up (default [`Step::Auto`]).
    #[must_use]
    pub fn fallback(mut self, step: Step) -> Self {
        self.fallback = step;
        self
    }

    /// The usage every answer reports unless its step overrides it.
    #[must_use]
    pub fn usage(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }

    /// Where chat-completion answers report their cost (default: nowhere).
    #[must_use]
    pub fn chat_cost(mut self, cost: ChatCost) -> Self {
        self.chat_cost = cost;
        self
    }

    /// Appends an answer to the embeddings queue (separate from the model steps).
    #[must_use]
    pub fn then_embed(mut self, step: EmbedStep) -> Self {
        self.embed_steps.push_back(step);
        self
    }

    /// What embeddings requests get once their queue is used up (default [`EmbedStep::Auto`]).
    #[must_use]
    pub fn embed_fallback(mut self, step: EmbedStep) -> Self {
        self.embed_fallback = step;
        self
    }

    /// The width of [`EmbedStep::Auto`] vectors (default [`EMBED_DIMENSIONS`]).
    #[must_use]
    pub fn embed_dimensions(mut self, dimensions: usize) -> Self {
        self.embed_dimensions = dimensions;
        self
    }

    fn next_embed(&mut self) -> (EmbedStep, usize) {
        let step = self
            .embed_steps
            .pop_front()
            .unwrap_or_else(|| self.embed_fallback.clone());
        (step, self.embed_dimensions)
    }

    fn next(&mut self) -> (Step, Usage) {
        match self.steps.pop_front() {
            Some((step, usage)) => (step, usage.unwrap_or(self.usage)),
            None => (self.fallback.clone(), self.usage),
        }
    }
}

/// Which API a request was addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Anthropic Messages API (`/v1/messages`), used by Claude Code.
    Anthropic,
    /// OpenAI Responses API (`/v1/responses`), used by Codex.
    OpenAi,
    /// OpenAI chat completions (`…/chat/completions`), non-streaming: oxi's inference
    /// gateway, as LiteLLM, OpenRouter and xAI serve it.
    ChatCompletions,
}

/// One request the server received, as tests inspect it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// When it arrived, from server start.
    pub at: Duration,
    pub method: String,
    /// Path and query, e.g. `/v1/messages?beta=true`.
    pub path: String,
    /// Lower-case names in arrival order; credentials are replaced by `<redacted>`.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Null` if empty or not JSON).
    pub body: Value,
    /// Set for model requests and for API-specific endpoints.
    pub api: Option<Api>,
    /// The status answered; `None` while a [`Step::Hang`] holds the request.
    pub status: Option<u16>,
    /// What the server did, e.g. `write_file hello.txt` or `auto: text (4 bytes)`.
    pub reply: String,
}

/// A tool's output as the client sent it back to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResult {
    /// Anthropic `tool_use_id`, OpenAI `call_id`.
    pub call_id: String,
    /// The output text (content blocks joined by newlines).
    pub output: String,
    /// Anthropic's `is_error` flag (always false for OpenAI, which has none).
    pub is_error: bool,
}

impl RecordedRequest {
    /// A header's value by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Whether this asked the model for an answer (and so consumed a script step).
    pub fn is_model_request(&self) -> bool {
        self.method == "POST"
            && (self.route_path().ends_with("/messages")
                || self.route_path().ends_with("/responses")
                || self.route_path().ends_with("/chat/completions"))
    }

    fn route_path(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }

    /// Every tool result in the request's history, oldest first.
    pub fn tool_results(&self) -> Vec<ToolResult> {
        match self.api {
            Some(Api::Anthropic) => anthropic::tool_results(&self.body),
            Some(Api::OpenAi) => openai::tool_results(&self.body),
            Some(Api::ChatCompletions) | None => Vec::new(),
        }
    }

    /// Whether the newest turn in the history is a tool result.
    pub fn latest_is_tool_result(&self) -> bool {
        match self.api {
            Some(Api::Anthropic) => anthropic::latest_is_tool_result(&self.body),
            Some(Api::OpenAi) => openai::latest_is_tool_result(&self.body),
            Some(Api::ChatCompletions) | None => false,
        }
    }

    /// The names of the tools the request offers the model.
    pub fn tool_names(&self) -> Vec<String> {
        self.body
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|tool| {
                tool.get("name")
                    .or_else(|| tool.get("type"))
                    .and_then(Value::as_str)
            })
            .map(str::to_owned)
            .collect()
    }
}

/// Errors of the mock server itself.
#[derive(Debug, thiserror::Error)]
pub enum MockModelError {
    #[error("mock model server failed while serving")]
    Serve(#[source] std::io::Error),
    #[error("mock model server task ended abnormally: {0}")]
    Task(String),
    #[error("mock model server did not stop within {0:?}; aborted it")]
    ShutdownTimeout(Duration),
}

/// Unique-enough ids in the APIs' style (`msg_…`, `toolu_…`, `call_…`): a per-server seed and
/// a counter, so two servers in one test run never reuse an id.
#[derive(Debug)]
pub(crate) struct Ids {
    seed: u64,
    counter: AtomicU64,
}

impl Ids {
    fn new() -> Self {
        static SERVERS: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = nanos
            ^ (u64::from(std::process::id()) << 32)
            ^ SERVERS
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Self {
            seed,
            counter: AtomicU64::new(0),
        }
    }

    pub(crate) fn next(&self, prefix: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}_{:016x}{:08x}", self.seed, n)
    }
}

/// What the API renderers need to build one answer.
pub(crate) struct ReplyContext {
    pub(crate) ids: Arc<Ids>,
    pub(crate) model: String,
    pub(crate) usage: Usage,
    /// Anthropic message id or OpenAI response id.
    pub(crate) message_id: String,
    pub(crate) created_at: u64,
}

/// Deterministic ASCII filler of exactly `bytes` bytes, in lines, for [`Step::Huge`].
pub(crate) fn filler_text(bytes: usize) -> String {
    const LINE: &str = "oxi mock filler: the quick brown fox jumps over the lazy dog 0123456789\n";
    LINE.repeat(bytes / LINE.len() + 1)
        .get(..bytes)
        .unwrap_or_default()
        .to_owned()
}

/// State shared by the handlers and the [`MockModelServer`] handle.
struct Shared {
    script: Mutex<Script>,
    requests: Mutex<Vec<RecordedRequest>>,
    ids: Arc<Ids>,
    started: Instant,
    shutdown: watch::Receiver<bool>,
}

/// A poisoned lock only means a handler panicked; the data is still usable for a test.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn record(&self, request: RecordedRequest) {
        lock(&self.requests).push(request);
    }

    async fn until_shutdown(&self) {
        let mut signal = self.shutdown.clone();
        let _ = signal.wait_for(|stop| *stop).await;
    }
}

/// The running server. Dropping it stops the server in the background; [`Self::shutdown`]
/// waits for that.
#[derive(Debug)]
pub struct MockModelServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("requests", &lock(&self.requests).len())
            .finish_non_exhaustive()
    }
}

impl MockModelServer {
    /// Binds `127.0.0.1` on a free port and serves `script` on the current tokio runtime.
    pub async fn start(script: Script) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, shutdown) = watch::channel(false);
        let shared = Arc::new(Shared {
            script: Mutex::new(script),
            requests: Mutex::new(Vec::new()),
            ids: Arc::new(Ids::new()),
            started: Instant::now(),
            shutdown: shutdown.clone(),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared))
            .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES));
        let mut signal = shutdown;
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = signal.wait_for(|stop| *stop).await;
                })
                .await
        });
        Ok(Self {
            addr,
            shared,
            stop,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`: Claude Code's `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1`: a Codex model provider's `base_url` (Codex appends
    /// `/responses` to it).
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.base_url())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The requests that asked the model for an answer.
    pub fn model_requests(&self) -> Vec<RecordedRequest> {
        let requests = lock(&self.shared.requests);
        requests
            .iter()
            .filter(|r| r.is_model_request())
            .cloned()
            .collect()
    }

    /// The embeddings requests so far.
    pub fn embeddings_requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.method == "POST" && r.route_path().ends_with("/embeddings"))
            .cloned()
            .collect()
    }

    /// Appends an answer to the running script's embeddings queue.
    pub fn push_embed_step(&self, step: EmbedStep) {
        lock(&self.shared.script).embed_steps.push_back(step);
    }

    /// Appends a step to the running script.
    pub fn push_step(&self, step: Step) {
        lock(&self.shared.script).steps.push_back((step, None));
    }

    /// Waits until at least `count` model requests have arrived; false on timeout. Lets a
    /// test know the client is waiting on a [`Step::Hang`] before it checks for silence.
    pub async fn wait_for_model_requests(&self, count: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.model_requests().len() >= count {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops accepting, releases hanging and stalled requests, and waits for the server to
    /// finish (at most five seconds, then it is aborted).
    pub async fn shutdown(mut self) -> Result<(), MockModelError> {
        self.stop.send_replace(true);
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        let abort = task.abort_handle();
        match tokio::time::timeout(SHUTDOWN_GRACE, task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(error))) => Err(MockModelError::Serve(error)),
            Ok(Err(join)) => Err(MockModelError::Task(join.to_string())),
            Err(_) => {
                abort.abort();
                Err(MockModelError::ShutdownTimeout(SHUTDOWN_GRACE))
            }
        }
    }
}

impl Drop for MockModelServer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// What a request is for.
enum Route {
    /// A model answer: consumes a script step.
    Model(Api),
    CountTokens,
    Models(Api),
    /// OpenAI embeddings: consumes an embeddings step, not a model step.
    Embeddings,
    /// LiteLLM's `/health/readiness` and `/health/liveliness`.
    Health,
    Root,
    NotFound(Api),
}

impl Route {
    fn of(method: &Method, path: &str, headers: &HeaderMap) -> Self {
        let path = path.trim_end_matches('/');
        let anthropic_headers =
            headers.contains_key("anthropic-version") || headers.contains_key("x-api-key");
        let guess = if anthropic_headers || path.contains("/messages") {
            Api::Anthropic
        } else {
            Api::OpenAi
        };
        if *method == Method::POST && path.ends_with("/messages/count_tokens") {
            Route::CountTokens
        } else if *method == Method::POST && path.ends_with("/messages") {
            Route::Model(Api::Anthropic)
        } else if *method == Method::POST && path.ends_with("/responses") {
            Route::Model(Api::OpenAi)
        } else if *method == Method::POST && path.ends_with("/chat/completions") {
            Route::Model(Api::ChatCompletions)
        } else if *method == Method::POST && path.ends_with("/embeddings") {
            Route::Embeddings
        } else if *method == Method::GET && path.starts_with("/health/") {
            Route::Health
        } else if *method == Method::GET && (path.ends_with("/models") || path.contains("/models/"))
        {
            Route::Models(guess)
        } else if (*method == Method::GET || *method == Method::HEAD)
            && (path.is_empty() || path == "/health")
        {
            Route::Root
        } else {
            Route::NotFound(guess)
        }
    }
}

const REDACTED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "cookie",
];

fn recorded_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = if REDACTED_HEADERS.contains(&name.as_str()) {
                "<redacted>".to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_owned(), value)
        })
        .collect()
}

/// The one handler: the mock must also answer paths it does not know (with a 404 the CLI
/// understands), so routing is done here rather than by axum.
async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let route = Route::of(&method, uri.path(), &headers);
    let mut record = RecordedRequest {
        at: shared.started.elapsed(),
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        headers: recorded_headers(&headers),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        api: None,
        status: Some(200),
        reply: String::new(),
    };
    match route {
        Route::Model(api) => {
            record.api = Some(api);
            model_reply(&shared, api, record).await
        }
        Route::CountTokens => {
            let usage = lock(&shared.script).usage;
            record.api = Some(Api::Anthropic);
            record.reply = "count_tokens".into();
            shared.record(record);
            json_response(StatusCode::OK, &json!({"input_tokens": usage.input_tokens}))
        }
        Route::Models(api) => {
            record.api = Some(api);
            record.reply = "models".into();
            shared.record(record);
            let list = match api {
                Api::Anthropic => anthropic::models(),
                Api::OpenAi | Api::ChatCompletions => openai::models(),
            };
            json_response(StatusCode::OK, &list)
        }
        Route::Embeddings => {
            record.api = Some(Api::ChatCompletions);
            embeddings_reply(&shared, record).await
        }
        Route::Health => {
            record.reply = "health".into();
            shared.record(record);
            json_response(StatusCode::OK, &chat::readiness())
        }
        Route::Root => {
            record.reply = "ok".into();
            shared.record(record);
            (StatusCode::OK, "ok\n").into_response()
        }
        Route::NotFound(api) => {
            record.status = Some(404);
            record.reply = "not found".into();
            shared.record(record);
            let request_id = shared.ids.next("req");
            error_response(api, 404, None, None, &request_id)
        }
    }
}

async fn model_reply(shared: &Arc<Shared>, api: Api, mut record: RecordedRequest) -> Response {
    let (scripted, usage, chat_cost) = {
        let mut script = lock(&shared.script);
        let (step, usage) = script.next();
        (step, usage, script.chat_cost.clone())
    };
    let step = match &scripted {
        Step::Auto => match api {
            Api::Anthropic => anthropic::auto(&record.body),
            Api::OpenAi => openai::auto(&record.body),
            Api::ChatCompletions => Step::Auto,
        },
        other => other.clone(),
    };
    record.reply = match scripted {
        Step::Auto => format!("auto: {}", step.describe()),
        _ => step.describe(),
    };
    let streaming = record.body.get("stream").and_then(Value::as_bool) == Some(true);
    let (default_model, id_prefix) = match api {
        Api::Anthropic => ("claude-opus-5-5", "msg"),
        Api::OpenAi => ("gpt-5.5", "resp"),
        Api::ChatCompletions => ("gpt-5.5", "chat"),
    };
    let ctx = ReplyContext {
        ids: Arc::clone(&shared.ids),
        model: record
            .body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(default_model)
            .to_owned(),
        usage,
        message_id: shared.ids.next(id_prefix),
        created_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let request_id = shared.ids.next("req");

    if api == Api::ChatCompletions {
        return chat_reply(shared, &step, streaming, &ctx, &chat_cost, record).await;
    }
    let response = match &step {
        Step::Status {
            code,
            retry_after_secs,
            body,
        } => {
            record.status = Some(*code);
            error_response(api, *code, *retry_after_secs, body.as_deref(), &request_id)
        }
        Step::Hang => return hang(shared, record).await,
        Step::Stall if !streaming => return hang(shared, record).await,
        Step::Stall => {
            let prefix = match api {
                Api::Anthropic => anthropic::stall_prefix(&ctx),
                // Chat completions were answered above (chat_reply).
                Api::OpenAi | Api::ChatCompletions => openai::stall_prefix(&ctx),
            };
            sse_response(shared, prefix, true, &request_id)
        }
        _ if streaming => {
            let events = match api {
                Api::Anthropic => anthropic::stream(&step, &record.body, &ctx),
                Api::OpenAi | Api::ChatCompletions => openai::stream(&step, &record.body, &ctx),
            };
            sse_response(shared, events.unwrap_or_default(), false, &request_id)
        }
        _ => {
            let whole = match api {
                Api::Anthropic => anthropic::message(&step, &record.body, &ctx),
                Api::OpenAi | Api::ChatCompletions => {
                    openai::response_json(&step, &record.body, &ctx)
                }
            };
            let mut response = json_response(StatusCode::OK, &whole.unwrap_or(Value::Null));
            add_request_id(response.headers_mut(), &request_id);
            response
        }
    };
    shared.record(record);
    response
}

/// A chat completion: whole answers only (a request that asks to stream is refused with
/// 400), with the scripted provider's cost header or `usage.cost`.
async fn chat_reply(
    shared: &Arc<Shared>,
    step: &Step,
    streaming: bool,
    ctx: &ReplyContext,
    cost: &ChatCost,
    mut record: RecordedRequest,
) -> Response {
    let request_id = shared.ids.next("req");
    if streaming {
        record.status = Some(400);
        record.reply = "refused: stream true".into();
        shared.record(record);
        return json_response(StatusCode::BAD_REQUEST, &chat::streaming_refused());
    }
    let response = match step {
        Step::Status {
            code,
            retry_after_secs,
            body,
        } => {
            record.status = Some(*code);
            error_response(
                Api::ChatCompletions,
                *code,
                *retry_after_secs,
                body.as_deref(),
                &request_id,
            )
        }
        Step::Hang | Step::Stall => return hang(shared, record).await,
        _ => match chat::completion(step, ctx, cost) {
            Some(whole) => {
                let mut response = json_response(StatusCode::OK, &whole);
                add_request_id(response.headers_mut(), &request_id);
                if let ChatCost::LitellmHeader(usd) = cost
                    && let Ok(value) = HeaderValue::from_str(usd)
                {
                    response
                        .headers_mut()
                        .insert(HeaderName::from_static("x-litellm-response-cost"), value);
                }
                response
            }
            None => {
                record.status = Some(400);
                error_response(
                    Api::ChatCompletions,
                    400,
                    None,
                    Some(
                        r#"{"error":{"message":"oxi mock: this step has no chat-completion form","type":"invalid_request_error"}}"#,
                    ),
                    &request_id,
                )
            }
        },
    };
    shared.record(record);
    response
}

/// An embeddings answer for the next [`EmbedStep`].
async fn embeddings_reply(shared: &Arc<Shared>, mut record: RecordedRequest) -> Response {
    let (step, dimensions) = lock(&shared.script).next_embed();
    record.reply = step.describe();
    let model = record
        .body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("text-embedding-3-small")
        .to_owned();
    let request_id = shared.ids.next("req");
    let Some(inputs) = embeddings::inputs(&record.body) else {
        record.status = Some(400);
        shared.record(record);
        return json_response(StatusCode::BAD_REQUEST, &embeddings::bad_input());
    };
    let response = match &step {
        EmbedStep::Hang => return hang(shared, record).await,
        EmbedStep::Status(code) => {
            record.status = Some(*code);
            error_response(Api::ChatCompletions, *code, None, None, &request_id)
        }
        EmbedStep::Raw(body) => {
            let mut response = (StatusCode::OK, body.clone()).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        EmbedStep::Auto | EmbedStep::Dimensions(_) | EmbedStep::MissingOne => {
            let width = match step {
                EmbedStep::Dimensions(n) => n,
                _ => dimensions,
            };
            let body = embeddings::answer(&inputs, &model, width, step == EmbedStep::MissingOne);
            let mut response = json_response(StatusCode::OK, &body);
            add_request_id(response.headers_mut(), &request_id);
            response
        }
    };
    shared.record(record);
    response
}

/// Holds the request until shutdown, recorded with no status; then answers 503 so the
/// connection can close and shutdown can finish.
async fn hang(shared: &Arc<Shared>, mut record: RecordedRequest) -> Response {
    record.status = None;
    shared.record(record);
    shared.until_shutdown().await;
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "mock model server shut down\n",
    )
        .into_response()
}

/// Both APIs name the request in a header that the CLIs print in their errors.
fn add_request_id(headers: &mut HeaderMap, request_id: &str) {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(HeaderName::from_static("request-id"), value.clone());
        headers.insert(HeaderName::from_static("x-request-id"), value);
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An error answer in the API's shape (or `body` verbatim), with `retry-after` if given.
fn error_response(
    api: Api,
    code: u16,
    retry_after_secs: Option<u64>,
    body: Option<&str>,
    request_id: &str,
) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match body {
        Some(body) => body.to_owned(),
        None => match api {
            Api::Anthropic => anthropic::error_body(code, request_id),
            Api::OpenAi | Api::ChatCompletions => openai::error_body(code),
        }
        .to_string(),
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    add_request_id(headers, request_id);
    if let Some(secs) = retry_after_secs {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// A `text/event-stream` answer fed frame by frame from a task, so a huge answer is not
/// buffered twice and a stalled one can stay open until the client leaves or the server
/// stops.
fn sse_response(
    shared: &Arc<Shared>,
    events: Vec<SseEvent>,
    stall: bool,
    request_id: &str,
) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let mut shutdown = shared.shutdown.clone();
    tokio::spawn(async move {
        for event in events {
            tokio::select! {
                sent = tx.send(Bytes::from(event.encode())) => if sent.is_err() { return },
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
        if stall {
            tokio::select! {
                () = tx.closed() => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|frame| (Ok::<_, std::convert::Infallible>(frame), rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    add_request_id(headers, request_id);
    response
}

#[cfg(test)]
mod tests;
