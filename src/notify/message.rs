//! What is said: which ledger events call for which topic, and the notification for each
//! (title, text, the event's own data), built once when queued and masked then.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{NotifyError, Topic};
use crate::clock::{day_of, now_ms, rfc3339};
use crate::config::LoadedConfig;
use crate::ledger::events::{BudgetBreach, Event};
use crate::ledger::{Ledger, NewOutbox, TaskState, TrailEvent};
use crate::money::{format_usd, usd_to_micro};
use crate::redact::Redactor;

/// One notification: what every sink kind renders from. The webhook and command sinks get it
/// whole, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Always `oxi`.
    pub source: String,
    /// The topic (`held`, `failed`, ...; `test` for `oxi notify test`).
    pub event: String,
    pub title: String,
    pub text: String,
    /// The repository's directory name, to tell several oxi setups apart.
    pub repo: String,
    pub task_id: Option<String>,
    /// The ledger event it is about (none for the digest and the soft budget warning).
    pub event_id: Option<i64>,
    /// That event's kind in the ledger (`task_state_changed`, ...).
    pub ledger_kind: Option<String>,
    /// When it happened (RFC 3339, UTC).
    pub at: String,
    /// The event's own data, or the digest's figures.
    pub details: Value,
    /// `failed`: the `[triage]` summary of why, when one was recorded before it was queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triage: Option<String>,
}

/// A notification to queue for one sink: about a ledger event, or a daily one (`event_id`
/// None).
struct Queued {
    sink: String,
    topic: Topic,
    event_id: Option<i64>,
    notification: Notification,
}

/// The topics a ledger event calls for (most call for none).
pub(super) fn topics_of(event: &Event) -> Vec<Topic> {
    match event {
        Event::TaskStateChanged(change) => match change.to {
            TaskState::Held => vec![Topic::Held],
            TaskState::Failed => vec![Topic::Failed],
            TaskState::FrameworkFixNeeded => vec![Topic::FrameworkFixNeeded],
            _ => Vec::new(),
        },
        Event::BudgetBreach(_) => vec![Topic::Budget],
        Event::DailyBudgetReached(_) => vec![Topic::Budget, Topic::SaturateStopped],
        Event::WorkerQuarantined(_) => vec![Topic::Quarantined],
        _ => Vec::new(),
    }
}

/// Reads the events after the cursor and queues a notification for every sink that wants
/// one, then the once-a-day ones (digest, soft budget warning); all in one write, so the cursor
/// moves only with what it queued. Returns how many were queued.
pub(super) fn queue_new(
    config: &LoadedConfig,
    ledger: &mut Ledger,
    redactor: &Redactor,
    pass_started_ms: i64,
) -> Result<usize, NotifyError> {
    let now = now_ms();
    let stored = ledger.read().notify_cursor()?;
    let cursor = match stored {
        Some(cursor) => cursor,
        None => ledger.read().last_event_before(pass_started_ms)?,
    };
    let events = ledger.read().events_after(cursor, super::EVENTS_PER_PASS)?;
    let mut queue: Vec<Queued> = Vec::new();
    for row in &events {
        let Some(event) = Event::parse(&row.kind, &row.data) else {
            continue;
        };
        let topics = topics_of(&event);
        if topics.is_empty() {
            continue;
        }
        let title = row
            .task_id
            .as_deref()
            .and_then(|id| ledger.read().task(id).ok().flatten())
            .map(|t| t.spec.title);
        let mut notification = for_event(config, row, &event, title.as_deref());
        if topics.contains(&Topic::Failed)
            && let Some(task) = row.task_id.as_deref()
        {
            notification.triage = ledger.read().triage_after(task, row.id)?;
            if let Some(why) = &notification.triage {
                notification.text = format!("{} Triage: {why}", notification.text);
            }
        }
        queue.extend(wanting(config, &topics).into_iter().map(|(sink, topic)| {
            let mut n = notification.clone();
            n.event = topic.as_str().to_owned();
            Queued {
                sink,
                topic,
                event_id: Some(row.id),
                notification: n,
            }
        }));
    }
    queue.extend(daily(config, ledger, now)?);
    let last = events.last().map_or(cursor, |e| e.id);
    if queue.is_empty() && stored == Some(last) {
        // Nothing new: no write (saturate calls this every round).
        return Ok(0);
    }
    let rows: Vec<(String, Topic, Option<i64>, String, String)> = queue
        .into_iter()
        .map(|mut q| {
            let key = match q.event_id {
                Some(id) => format!("event:{id}"),
                None => format!("{}:{}", q.topic.as_str(), day_key(&q.notification)),
            };
            mask(&mut q.notification, redactor);
            let payload = serde_json::to_string(&q.notification).unwrap_or_default();
            (q.sink, q.topic, q.event_id, key, payload)
        })
        .collect();
    ledger
        .write(|q| {
            let mut queued = 0;
            for (sink, topic, event_id, key, payload) in &rows {
                queued += usize::from(q.queue_notification(&NewOutbox {
                    sink,
                    topic: key,
                    event_id: *event_id,
                    what: topic.as_str(),
                    payload,
                    now_ms: now,
                })?);
            }
            q.set_notify_cursor(last, now)?;
            Ok(queued)
        })
        .map_err(NotifyError::from)
}

/// The day a daily notification is about (its `details.day`).
fn day_key(notification: &Notification) -> String {
    notification.details["day"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn mask(notification: &mut Notification, redactor: &Redactor) {
    for text in [&mut notification.title, &mut notification.text] {
        *text = redactor.redact(text).into_owned();
    }
    redactor.redact_json(&mut notification.details);
}

/// Each sink that wants one of `topics`, with the first of them it wants (one notification
/// per sink and event, even when an event calls for two topics it wants).
fn wanting(config: &LoadedConfig, topics: &[Topic]) -> Vec<(String, Topic)> {
    config
        .config
        .notify
        .sinks
        .iter()
        .filter_map(|sink| {
            topics
                .iter()
                .find(|t| sink.events.contains(t))
                .map(|t| (sink.name().to_owned(), *t))
        })
        .collect()
}

fn repo_name(config: &LoadedConfig) -> String {
    config
        .repo_root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn base(config: &LoadedConfig, topic: &str, title: String, text: String) -> Notification {
    Notification {
        source: "oxi".to_owned(),
        event: topic.to_owned(),
        title,
        text,
        repo: repo_name(config),
        task_id: None,
        event_id: None,
        ledger_kind: None,
        at: rfc3339(now_ms()),
        details: Value::Null,
        triage: None,
    }
}

/// The notification for one ledger event.
fn for_event(
    config: &LoadedConfig,
    row: &TrailEvent,
    event: &Event,
    task_title: Option<&str>,
) -> Notification {
    let task = row.task_id.as_deref().unwrap_or("-");
    let named = match task_title {
        Some(title) => format!("{task} ({title})"),
        None => task.to_owned(),
    };
    let (title, text) = match event {
        Event::TaskStateChanged(change) => match change.to {
            TaskState::Held => (
                format!("{task} is held for a human"),
                format!(
                    "{named}: {}. `oxi show {task}` for details; `oxi approve {task}` when it may go on.",
                    change.held_reason.as_deref().unwrap_or(&change.reason)
                ),
            ),
            TaskState::Failed => (
                format!("{task} failed"),
                format!(
                    "{named}: {}{}. `oxi show {task}`; `oxi retry {task}` gives it fresh attempts.",
                    change.reason,
                    change
                        .failure_class
                        .as_ref()
                        .map(|c| format!(" [{c}]"))
                        .unwrap_or_default()
                ),
            ),
            _ => (
                format!("{task} needs a framework fix"),
                format!(
                    "{named}: {}. Governance stopped it; see its memo with `oxi show {task}`.",
                    change.reason
                ),
            ),
        },
        Event::BudgetBreach(BudgetBreach::Period {
            scope,
            period,
            spent_microusd,
            cap_microusd,
        }) => (
            format!("Spend for {period} is over the {scope}'s cap"),
            format!(
                "{} spent of a {} cap ({scope} {period}); no new run is admitted until the period ends or the cap is raised.",
                format_usd(*spent_microusd),
                format_usd(*cap_microusd)
            ),
        ),
        Event::BudgetBreach(BudgetBreach::Job {
            cost_microusd,
            cap_microusd,
            ..
        }) => (
            format!("A run of {task} cost more than the per-job cap"),
            format!(
                "{named}: the run cost {} against caps.job_usd {}.",
                format_usd(*cost_microusd),
                format_usd(*cap_microusd)
            ),
        ),
        Event::DailyBudgetReached(reached) => (
            "oxi saturate stopped claiming: the day's cap is reached".to_owned(),
            format!(
                "{}; {} run(s) were still in flight. Claims resume tomorrow (UTC) or when caps.daily_usd is raised.",
                reached.refusal, reached.in_flight
            ),
        ),
        Event::WorkerBlocked(block) => (
            format!("Worker {} is held back from new runs", block.worker),
            block.reason(),
        ),
        Event::WorkerQuarantined(q) => (
            format!("Worker {} is quarantined", q.worker),
            format!(
                "its CLI {} failed the live probe: {}. Routing skips it; `oxi doctor` names the version to pin.",
                q.version.as_deref().unwrap_or("(version unknown)"),
                q.mismatch
            ),
        ),
        _ => (row.kind.clone(), String::new()),
    };
    let mut notification = base(config, "", title, text);
    notification.task_id = row.task_id.clone();
    notification.event_id = Some(row.id);
    notification.ledger_kind = Some(row.kind.clone());
    notification.at = rfc3339(row.at_ms);
    notification.details = row.data.clone();
    notification
}

/// The once-a-day notifications not queued yet: yesterday's digest, and today's soft budget
/// warning once the day's spend passed `caps.daily_soft_warn_usd`.
fn daily(config: &LoadedConfig, ledger: &Ledger, now: i64) -> Result<Vec<Queued>, NotifyError> {
    let mut out = Vec::new();
    const DAY_MS: i64 = 24 * 3600 * 1000;
    let today_start = now - now.rem_euclid(DAY_MS);
    let yesterday = day_of(today_start - DAY_MS);
    let digest_sinks = sinks_lacking(config, ledger, Topic::Digest, &yesterday)?;
    if !digest_sinks.is_empty() {
        let digest = digest(
            config,
            ledger,
            today_start - DAY_MS,
            today_start,
            &yesterday,
        )?;
        out.extend(digest_sinks.into_iter().map(|sink| Queued {
            sink,
            topic: Topic::Digest,
            event_id: None,
            notification: digest.clone(),
        }));
    }
    let caps = &config.config.caps;
    let today = day_of(now);
    let budget_sinks = sinks_lacking(config, ledger, Topic::Budget, &today)?;
    if !budget_sinks.is_empty() && caps.daily_soft_warn_usd > 0.0 {
        let totals = ledger
            .read()
            .spend_totals(&today, &crate::clock::month_of(now))?;
        let warn = usd_to_micro(caps.daily_soft_warn_usd);
        if totals.day_spent >= warn {
            let mut n = base(
                config,
                Topic::Budget.as_str(),
                format!("Spend today passed the soft warning ({})", format_usd(warn)),
                format!(
                    "{} spent today of a {} daily cap (warning at {}).",
                    format_usd(totals.day_spent),
                    format_usd(usd_to_micro(caps.daily_usd)),
                    format_usd(warn)
                ),
            );
            n.details = json!({
                "day": today,
                "limit": "soft",
                "spent_microusd": totals.day_spent,
                "warn_microusd": warn,
                "cap_microusd": usd_to_micro(caps.daily_usd),
            });
            out.extend(budget_sinks.into_iter().map(|sink| Queued {
                sink,
                topic: Topic::Budget,
                event_id: None,
                notification: n.clone(),
            }));
        }
    }
    Ok(out)
}

/// Sinks that want `topic` and have not queued it for `day` yet.
fn sinks_lacking(
    config: &LoadedConfig,
    ledger: &Ledger,
    topic: Topic,
    day: &str,
) -> Result<Vec<String>, NotifyError> {
    let key = format!("{}:{day}", topic.as_str());
    let mut out = Vec::new();
    for sink in &config.config.notify.sinks {
        if sink.events.contains(&topic) && !ledger.read().notification_queued(sink.name(), &key)? {
            out.push(sink.name().to_owned());
        }
    }
    Ok(out)
}

/// A day's summary: what moved where, spend, and what waits for a person now.
fn digest(
    config: &LoadedConfig,
    ledger: &Ledger,
    from_ms: i64,
    to_ms: i64,
    day: &str,
) -> Result<Notification, NotifyError> {
    let read = ledger.read();
    let to = read.transitions_to_counts(from_ms, to_ms)?;
    let kinds = read.event_kind_counts(from_ms, to_ms)?;
    let spent = read
        .spend_totals(day, &crate::clock::month_of(from_ms))?
        .day_spent;
    let waiting = read.task_counts()?;
    let n = |map: &std::collections::BTreeMap<String, u64>, key: &str| {
        map.get(key).copied().unwrap_or(0)
    };
    let now_in = |state: TaskState| waiting.get(&state).copied().unwrap_or(0);
    let figures = json!({
        "day": day,
        "runs": n(&kinds, "run_finished"),
        "delivered": n(&to, "delivered"),
        "merged": n(&to, "merged"),
        "done": n(&to, "done"),
        "failed": n(&to, "failed"),
        "held": n(&to, "held"),
        "framework_fix_needed": n(&to, "framework_fix_needed"),
        "spent_microusd": spent,
        "now_held": now_in(TaskState::Held),
        "now_failed": now_in(TaskState::Failed),
        "now_queued": now_in(TaskState::Queued),
    });
    let text = format!(
        "{day}: {} run(s), {} delivered, {} merged, {} done, {} failed, {} held; {} spent. Now {} held, {} failed, {} queued.",
        figures["runs"],
        figures["delivered"],
        figures["merged"],
        figures["done"],
        figures["failed"],
        figures["held"],
        format_usd(spent),
        figures["now_held"],
        figures["now_failed"],
        figures["now_queued"],
    );
    let mut notification = base(
        config,
        Topic::Digest.as_str(),
        format!("oxi daily digest for {day}"),
        text,
    );
    notification.details = figures;
    Ok(notification)
}

/// `oxi notify test`'s sample.
pub(super) fn sample(config: &LoadedConfig) -> Notification {
    let mut n = base(
        config,
        "test",
        "oxi test notification".to_owned(),
        "This is a test from `oxi notify test`: this sink is set up.".to_owned(),
    );
    n.details = json!({});
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::events::{DailyBudgetReached, TaskStateChanged};

    fn change(to: TaskState) -> Event {
        Event::TaskStateChanged(TaskStateChanged {
            from: TaskState::Verifying,
            to,
            reason: String::new(),
            held_reason: None,
            failure_class: None,
        })
    }

    #[test]
    fn each_topic_comes_from_its_events_and_others_from_none() {
        assert_eq!(topics_of(&change(TaskState::Held)), [Topic::Held]);
        assert_eq!(topics_of(&change(TaskState::Failed)), [Topic::Failed]);
        assert_eq!(
            topics_of(&change(TaskState::FrameworkFixNeeded)),
            [Topic::FrameworkFixNeeded]
        );
        assert!(topics_of(&change(TaskState::Delivered)).is_empty());
        assert_eq!(
            topics_of(&Event::DailyBudgetReached(DailyBudgetReached::default())),
            [Topic::Budget, Topic::SaturateStopped]
        );
    }
}
