//! How each sink kind sends one notification: an HTTP POST (webhook, Slack, ntfy) or a
//! command (argv-form, the JSON on stdin, its process group killed at the timeout).

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tokio::io::AsyncWriteExt;

use super::{Notification, SinkKind, Topic};
use crate::config::NotifySink;

/// A delivered attempt's answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Delivery {
    pub http_status: Option<u16>,
    pub exit_code: Option<i32>,
}

/// Why one attempt failed. Every variant is retried on a later pass (up to
/// `notify.max_attempts`), since a fixed variable or a sink back up makes it succeed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The variable `url_env` (or `token_env`) names is not set in oxi's environment.
    #[error("{var} (the sink's {key}) is not set in oxi's environment")]
    Unset { var: String, key: &'static str },
    /// The URL does not parse.
    #[error("the URL in {from} is not a usable http(s) URL")]
    BadUrl { from: String },
    /// The sink has nothing to send to (a config the validator lets through cannot get here).
    #[error("the sink has no {0}")]
    Missing(&'static str),
    /// The sink answered, but not with success.
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    /// No answer within the sink's timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connecting or talking to the sink failed.
    #[error("request failed: {0}")]
    Http(String),
    /// The command could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The command's program is not on oxi's PATH (nor an executable path).
    #[error("{0} is not found (not an executable path, nor on PATH)")]
    NotFound(String),
    /// The command exited unsuccessfully.
    #[error("the command exited with {code:?}: {stderr}")]
    Exit { code: Option<i32>, stderr: String },
    /// The command ran past the timeout; its process group was killed.
    #[error("the command ran past {0:?}; its process group was killed")]
    Killed(Duration),
}

impl SendError {
    pub fn http_status(&self) -> Option<u16> {
        match self {
            SendError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn exit_code(&self) -> Option<i32> {
        match self {
            SendError::Exit { code, .. } => *code,
            _ => None,
        }
    }
}

/// Where a sink sends: its URL (and bearer token) from the environment or the file, or its
/// command. `Err` when a variable it names is unset (what `oxi doctor` reports).
pub(super) enum Target {
    Http { url: String, token: Option<String> },
    Command(Vec<String>),
}

pub(super) fn target(
    sink: &NotifySink,
    parent_env: &[(String, String)],
) -> Result<Target, SendError> {
    let var = |name: &str, key: &'static str| {
        parent_env
            .iter()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
            .ok_or_else(|| SendError::Unset {
                var: name.to_owned(),
                key,
            })
    };
    if sink.kind == SinkKind::Command {
        let Some(program) = sink.argv.first() else {
            return Err(SendError::Missing("argv"));
        };
        let path = parent_env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str());
        if which::which_in(program, path, "/").is_err() {
            return Err(SendError::NotFound(program.clone()));
        }
        return Ok(Target::Command(sink.argv.clone()));
    }
    let url = match (&sink.url_env, &sink.url) {
        (Some(name), _) => var(name, "url_env")?,
        (None, Some(url)) => url.clone(),
        (None, None) => return Err(SendError::Missing("url_env")),
    };
    let token = match &sink.token_env {
        Some(name) => Some(var(name, "token_env")?),
        None => None,
    };
    Ok(Target::Http { url, token })
}

/// One attempt to send `notification` to `sink`.
pub async fn send(
    sink: &NotifySink,
    notification: &Notification,
    parent_env: &[(String, String)],
) -> Result<Delivery, SendError> {
    let timeout = sink.timeout.as_duration();
    match target(sink, parent_env)? {
        Target::Command(argv) => run_command(&argv, notification, parent_env, timeout).await,
        Target::Http { url, token } => {
            let from = sink
                .url_env
                .clone()
                .unwrap_or_else(|| "notify.sinks.url".to_owned());
            let request = request(sink, notification, &url, token.as_deref())
                .map_err(|()| SendError::BadUrl { from })?;
            post(request, timeout).await
        }
    }
}

/// The HTTP request for a sink kind: the JSON (webhook), `{"text"}` (Slack, as its incoming
/// webhooks document), or the text with ntfy's `Title`, `Priority` and `Tags` headers.
fn request(
    sink: &NotifySink,
    notification: &Notification,
    url: &str,
    token: Option<&str>,
) -> Result<hyper::Request<Full<Bytes>>, ()> {
    let uri: hyper::Uri = url.parse().map_err(|_| ())?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(());
    }
    let mut builder = hyper::Request::post(uri).header("user-agent", "oxi-notify");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let body = match sink.kind {
        SinkKind::Slack => {
            builder = builder.header("content-type", "application/json");
            serde_json::json!({ "text": slack_text(notification) }).to_string()
        }
        SinkKind::Ntfy => {
            builder = builder
                .header("content-type", "text/plain; charset=utf-8")
                .header("title", header_text(&notification.title))
                .header("priority", ntfy_priority(sink, notification))
                .header("tags", ntfy_tags(sink, notification));
            notification.text.clone()
        }
        SinkKind::Webhook | SinkKind::Command => {
            builder = builder.header("content-type", "application/json");
            serde_json::to_string(notification).unwrap_or_default()
        }
    };
    builder.body(Full::new(Bytes::from(body))).map_err(|_| ())
}

/// Slack's text: the title in bold (Slack's `*…*`), then the text.
pub(super) fn slack_text(notification: &Notification) -> String {
    format!("*{}*\n{}", notification.title, notification.text)
}

/// Header values are ASCII here: anything else becomes `?` (ntfy reads its title from it).
fn header_text(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// The sink's `priority`, else one by event: a person is needed → high; the digest → low.
pub(super) fn ntfy_priority(sink: &NotifySink, notification: &Notification) -> String {
    if let Some(priority) = &sink.priority {
        return priority.clone();
    }
    let high = [
        Topic::Held,
        Topic::Failed,
        Topic::FrameworkFixNeeded,
        Topic::Budget,
        Topic::Quarantined,
    ];
    if high.iter().any(|t| t.as_str() == notification.event) {
        "high".to_owned()
    } else if notification.event == Topic::Digest.as_str() {
        "low".to_owned()
    } else {
        "default".to_owned()
    }
}

/// `oxi`, the event's name, then the sink's own tags.
pub(super) fn ntfy_tags(sink: &NotifySink, notification: &Notification) -> String {
    let mut tags = vec!["oxi".to_owned(), notification.event.clone()];
    tags.extend(sink.tags.iter().cloned());
    header_text(&tags.join(","))
}

/// The one HTTP client: rustls with the system's roots (as oxi's GitHub client), HTTP/1.
fn client() -> Result<
    hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
    SendError,
> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(Arc::new(rustls::crypto::ring::default_provider()))
        .map_err(|e| SendError::Http(format!("TLS setup: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector),
    )
}

/// Longest answer body kept for the error message.
const BODY_KEPT: usize = 300;

async fn post(
    request: hyper::Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<Delivery, SendError> {
    let client = client()?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| SendError::Http(error_chain(&e)))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            Ok(Delivery {
                http_status: Some(status.as_u16()),
                exit_code: None,
            })
        } else {
            let text = String::from_utf8_lossy(&body);
            Err(SendError::Status {
                status: status.as_u16(),
                body: text
                    .chars()
                    .take(BODY_KEPT)
                    .collect::<String>()
                    .trim()
                    .to_owned(),
            })
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(SendError::Timeout(timeout)))
}

/// hyper's error and its causes on one line (its own message alone says only "client error").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The variables a notify command gets: enough to find programs and a home, nothing secret.
const COMMAND_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// Runs the command with the notification's JSON on stdin, in its own process group, its
/// environment cleared to [`COMMAND_ENV`]; past `timeout` the whole group is ended.
async fn run_command(
    argv: &[String],
    notification: &Notification,
    parent_env: &[(String, String)],
    timeout: Duration,
) -> Result<Delivery, SendError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(SendError::Missing("argv"));
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(
            parent_env
                .iter()
                .filter(|(k, _)| COMMAND_ENV.contains(&k.as_str()))
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .env("OXI_NOTIFY_EVENT", &notification.event)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| SendError::Spawn {
        program: program.clone(),
        source,
    })?;
    let pgid = child.id();
    let payload = serde_json::to_vec(notification).unwrap_or_default();
    let mut stdin = child.stdin.take();
    let run = async move {
        if let Some(stdin) = stdin.as_mut() {
            // A command that does not read its stdin is fine: a closed pipe is not an error.
            let _ = stdin.write_all(&payload).await;
        }
        drop(stdin);
        child.wait_with_output().await
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(output)) if output.status.success() => Ok(Delivery {
            http_status: None,
            exit_code: output.status.code(),
        }),
        Ok(Ok(output)) => Err(SendError::Exit {
            code: output.status.code(),
            stderr: String::from_utf8_lossy(&output.stderr)
                .chars()
                .take(BODY_KEPT)
                .collect::<String>()
                .trim()
                .to_owned(),
        }),
        Ok(Err(source)) => Err(SendError::Spawn {
            program: program.clone(),
            source,
        }),
        Err(_) => {
            if let Some(pgid) = pgid {
                crate::process::terminate_group(pgid, Duration::from_secs(2)).await;
            }
            Err(SendError::Killed(timeout))
        }
    }
}
