//! Notifications: telling a person when oxi needs one (a task held or failed for good, a
//! framework fix, a budget limit, a worker held back, saturate stopped, the daily digest).
//!
//! The ledger is the queue. After each tick (and each saturate round) [`run_pass`] reads the
//! events recorded since its cursor, queues a notification per sink that wants it
//! (`notify_outbox`, one row per sink and topic, so nothing is queued twice), then sends what
//! is due within `notify.pass_budget`, recording every attempt (`notifications`). A failed
//! attempt is retried on a later pass after a doubling backoff, up to `notify.max_attempts`,
//! then recorded as given up. Nothing here fails or blocks the pass that called it: errors are
//! logged and the queue keeps what was not sent.

mod message;
mod send;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::config::{LoadedConfig, NotifySink};
use crate::ledger::{Attempt, AttemptStatus, Ledger, LedgerError, OutboxRow};
use crate::redact::Redactor;

pub use message::Notification;
pub use send::{Delivery, SendError};

/// Where a sink sends, as written in `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// A JSON POST of the whole notification.
    Webhook,
    /// A Slack-compatible incoming webhook: `{"text": ...}`.
    Slack,
    /// An ntfy topic URL: the text as the body, `Title`, `Priority` and `Tags` headers.
    Ntfy,
    /// A program (argv-form) reading the notification's JSON on stdin.
    Command,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Webhook => "webhook",
            SinkKind::Slack => "slack",
            SinkKind::Ntfy => "ntfy",
            SinkKind::Command => "command",
        }
    }

    /// True for the kinds that send to a URL.
    pub fn is_http(self) -> bool {
        !matches!(self, SinkKind::Command)
    }
}

/// What a sink can ask to be told about, as written in `events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    /// A task was held for a human.
    Held,
    /// A task failed for good.
    Failed,
    /// Governance stopped a task: the framework (allowed roots, protected paths) needs a fix.
    FrameworkFixNeeded,
    /// The day's soft warning was passed, or a cap was crossed or reached.
    Budget,
    /// A worker's CLI failed the live probe and gets no new runs (`worker_quarantined`).
    Quarantined,
    /// `oxi saturate` stopped claiming (today: the day's cap reached).
    SaturateStopped,
    /// Yesterday's summary, once a day.
    Digest,
}

impl Topic {
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Held => "held",
            Topic::Failed => "failed",
            Topic::FrameworkFixNeeded => "framework_fix_needed",
            Topic::Budget => "budget",
            Topic::Quarantined => "quarantined",
            Topic::SaturateStopped => "saturate_stopped",
            Topic::Digest => "digest",
        }
    }
}

/// Why the notifier could not do its part of a pass (logged; never fails the pass).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Reading or writing the notifier's tables failed; the next pass tries again.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// `--sink NAME` names no configured sink.
    #[error("no sink named {0:?} in [notify] (oxi.toml); `oxi notify status` lists them")]
    NoSuchSink(String),
}

/// What one notifier pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassSummary {
    pub queued: usize,
    pub delivered: usize,
    pub failed: usize,
    pub gave_up: usize,
    /// Due notifications left for a later pass (out of time, or their sink failed this pass).
    pub left: usize,
}

/// Events read per pass at most; the rest are read by the next pass.
const EVENTS_PER_PASS: u32 = 2_000;
/// Due notifications looked at per pass at most.
const DUE_PER_PASS: u32 = 500;

/// The notifier's pass: queue what the new events call for, then send what is due. A no-op
/// without sinks (no write). `pass_started_ms`: when the calling pass began, so that on the
/// very first pass the events it recorded are still notified, and older history is not.
pub async fn run_pass(
    config: &LoadedConfig,
    ledger: &mut Ledger,
    parent_env: &[(String, String)],
    pass_started_ms: i64,
) -> PassSummary {
    let mut summary = PassSummary::default();
    if config.config.notify.sinks.is_empty() {
        return summary;
    }
    let redactor = redactor(config, parent_env);
    match message::queue_new(config, ledger, &redactor, pass_started_ms) {
        Ok(queued) => summary.queued = queued,
        Err(e) => tracing::warn!("notify: could not queue notifications: {e}"),
    }
    if let Err(e) = deliver_due(config, ledger, parent_env, &redactor, &mut summary).await {
        tracing::warn!("notify: could not record a delivery: {e}");
    }
    if summary.failed + summary.gave_up > 0 {
        tracing::warn!(
            "notify: {} attempt(s) failed, {} given up; `oxi notify status` shows why",
            summary.failed,
            summary.gave_up
        );
    }
    summary
}

/// Sends the due notifications, oldest first, until `notify.pass_budget` is spent. A sink that
/// fails is not tried again in this pass (a sink that is down does not eat the budget).
async fn deliver_due(
    config: &LoadedConfig,
    ledger: &mut Ledger,
    parent_env: &[(String, String)],
    redactor: &Redactor,
    summary: &mut PassSummary,
) -> Result<(), NotifyError> {
    let notify = &config.config.notify;
    let started = Instant::now();
    let due = ledger.read().due_notifications(now_ms(), DUE_PER_PASS)?;
    let mut failed_sinks: Vec<String> = Vec::new();
    for row in due {
        let Some(sink) = notify.sinks.iter().find(|s| s.name() == row.sink) else {
            // A sink since removed from oxi.toml: its rows wait in case it comes back.
            continue;
        };
        if started.elapsed() >= notify.pass_budget.as_duration() || failed_sinks.contains(&row.sink)
        {
            summary.left += 1;
            continue;
        }
        let Ok(notification) = serde_json::from_str::<Notification>(&row.payload) else {
            give_up_unreadable(ledger, &row)?;
            summary.gave_up += 1;
            continue;
        };
        let attempt = send_once(
            sink,
            &notification,
            parent_env,
            redactor,
            &row,
            notify.max_attempts,
        )
        .await;
        let next_at = now_ms() + backoff_ms(config, attempt.attempt);
        match attempt.status {
            AttemptStatus::Delivered => summary.delivered += 1,
            AttemptStatus::Failed => summary.failed += 1,
            AttemptStatus::GaveUp => summary.gave_up += 1,
        }
        if attempt.status != AttemptStatus::Delivered {
            failed_sinks.push(row.sink.clone());
        }
        ledger.write(|q| q.record_attempt(Some(row.id), &attempt, next_at))?;
    }
    Ok(())
}

/// One attempt at one queued notification, as the row to record.
async fn send_once(
    sink: &NotifySink,
    notification: &Notification,
    parent_env: &[(String, String)],
    redactor: &Redactor,
    row: &OutboxRow,
    max_attempts: u32,
) -> Attempt {
    let at_ms = now_ms();
    let t = Instant::now();
    let result = send::send(sink, notification, parent_env).await;
    let number = row.attempts + 1;
    let tried = Tried {
        sink: sink.name(),
        topic: &row.topic,
        event_id: row.event_id,
        number,
        at_ms,
        took: t.elapsed(),
        last: number >= max_attempts,
    };
    attempt_from(tried, result, redactor)
}

/// What one attempt was: which sink and notification, its number, when and how long.
struct Tried<'a> {
    sink: &'a str,
    topic: &'a str,
    event_id: Option<i64>,
    number: u32,
    at_ms: i64,
    took: Duration,
    /// The last attempt allowed: a failure gives up.
    last: bool,
}

/// The attempt as recorded: its status and, on failure, the masked error.
fn attempt_from(
    tried: Tried<'_>,
    result: Result<Delivery, SendError>,
    redactor: &Redactor,
) -> Attempt {
    let (status, http_status, exit_code, error) = match result {
        Ok(delivery) => (
            AttemptStatus::Delivered,
            delivery.http_status,
            delivery.exit_code,
            None,
        ),
        Err(e) => (
            if tried.last {
                AttemptStatus::GaveUp
            } else {
                AttemptStatus::Failed
            },
            e.http_status(),
            e.exit_code(),
            Some(redactor.redact(&e.to_string()).into_owned()),
        ),
    };
    Attempt {
        sink: tried.sink.to_owned(),
        topic: tried.topic.to_owned(),
        event_id: tried.event_id,
        attempt: tried.number,
        status,
        http_status,
        exit_code,
        error,
        ms: tried.took.as_millis() as u64,
        at_ms: tried.at_ms,
    }
}

/// A row whose payload no longer reads (hand-edited): given up at once, with the reason.
fn give_up_unreadable(ledger: &mut Ledger, row: &OutboxRow) -> Result<(), NotifyError> {
    let attempt = Attempt {
        sink: row.sink.clone(),
        topic: row.topic.clone(),
        event_id: row.event_id,
        attempt: row.attempts + 1,
        status: AttemptStatus::GaveUp,
        http_status: None,
        exit_code: None,
        error: Some("the queued payload is not a notification (edited by hand?)".to_owned()),
        ms: 0,
        at_ms: now_ms(),
    };
    ledger.write(|q| q.record_attempt(Some(row.id), &attempt, now_ms()))?;
    Ok(())
}

/// The wait after failed attempt number `attempt`: `retry_backoff` doubled per earlier
/// failure, at most `retry_backoff_max`.
fn backoff_ms(config: &LoadedConfig, attempt: u32) -> i64 {
    let notify = &config.config.notify;
    let first = notify.retry_backoff.as_duration().as_millis() as i64;
    let max = notify.retry_backoff_max.as_duration().as_millis() as i64;
    first
        .saturating_mul(1_i64 << attempt.saturating_sub(1).min(30))
        .min(max)
}

/// Masks every secret oxi holds (the workers' and GitHub's) and the sinks' own URLs and
/// tokens, in what is queued and in recorded errors.
fn redactor(config: &LoadedConfig, parent_env: &[(String, String)]) -> Redactor {
    let names: Vec<&str> = config
        .config
        .notify
        .sinks
        .iter()
        .flat_map(|s| [s.url_env.as_deref(), s.token_env.as_deref()])
        .flatten()
        .chain(
            config
                .config
                .workers
                .values()
                .flat_map(|w| w.env.iter().map(String::as_str)),
        )
        .chain(config.config.github.as_ref().map(|g| g.token_env.as_str()))
        .collect();
    Redactor::new(
        parent_env
            .iter()
            .filter(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, v)| v.as_str()),
    )
}

/// One sink's answer to `oxi notify test`.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub sink: String,
    pub kind: SinkKind,
    pub ok: bool,
    pub http_status: Option<u16>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub ms: u64,
}

/// `oxi notify test`: a sample notification to each sink (or the one named), each attempt
/// recorded (topic `test:<ms>`), each result returned.
pub async fn send_test(
    config: &LoadedConfig,
    ledger: &mut Ledger,
    parent_env: &[(String, String)],
    only: Option<&str>,
) -> Result<Vec<TestResult>, NotifyError> {
    let sinks: Vec<&NotifySink> = config
        .config
        .notify
        .sinks
        .iter()
        .filter(|s| only.is_none_or(|name| s.name() == name))
        .collect();
    if let Some(name) = only
        && sinks.is_empty()
    {
        return Err(NotifyError::NoSuchSink(name.to_owned()));
    }
    let redactor = redactor(config, parent_env);
    let notification = message::sample(config);
    let topic = format!("test:{}", now_ms());
    let mut results = Vec::new();
    for sink in sinks {
        let at_ms = now_ms();
        let t = Instant::now();
        let result = send::send(sink, &notification, parent_env).await;
        let tried = Tried {
            sink: sink.name(),
            topic: &topic,
            event_id: None,
            number: 1,
            at_ms,
            took: t.elapsed(),
            last: false,
        };
        let attempt = attempt_from(tried, result, &redactor);
        ledger.write(|q| q.record_attempt(None, &attempt, at_ms))?;
        results.push(TestResult {
            sink: attempt.sink,
            kind: sink.kind,
            ok: attempt.status == AttemptStatus::Delivered,
            http_status: attempt.http_status,
            exit_code: attempt.exit_code,
            error: attempt.error,
            ms: attempt.ms,
        });
    }
    Ok(results)
}

/// Each sink's health for `oxi doctor`: broken when it cannot send at all (a variable it
/// names unset, its program missing), failing when its last attempts all failed.
pub fn sink_problems(
    config: &LoadedConfig,
    ledger: Option<&Ledger>,
    parent_env: &[(String, String)],
) -> Vec<(String, SinkHealth)> {
    config
        .config
        .notify
        .sinks
        .iter()
        .map(|sink| (sink.name().to_owned(), health(sink, ledger, parent_env)))
        .collect()
}

/// A sink's health, as `oxi doctor` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkHealth {
    Ok(String),
    /// Its last attempts all failed (the last error).
    Failing {
        attempts: usize,
        last_error: String,
    },
    /// It cannot send: the message says what to set.
    Broken(String),
}

/// How many failed attempts in a row make `oxi doctor` warn.
pub const FAILING_AFTER: usize = 3;

fn health(
    sink: &NotifySink,
    ledger: Option<&Ledger>,
    parent_env: &[(String, String)],
) -> SinkHealth {
    if let Err(e) = send::target(sink, parent_env) {
        return SinkHealth::Broken(e.to_string());
    }
    let recent = ledger
        .and_then(|l| {
            l.read()
                .notification_attempts(Some(sink.name()), FAILING_AFTER as u32)
                .ok()
        })
        .unwrap_or_default();
    if recent.len() == FAILING_AFTER && recent.iter().all(|a| a.status != AttemptStatus::Delivered)
    {
        return SinkHealth::Failing {
            attempts: recent.len(),
            last_error: recent
                .first()
                .and_then(|a| a.error.clone())
                .unwrap_or_default(),
        };
    }
    SinkHealth::Ok(format!(
        "{} sink for {}",
        sink.kind.as_str(),
        sink.events
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}
