//! `[notify]`: each sink has where to send (a URL from a variable, a credential-free literal
//! URL, or a command), a unique name, events to send, and timers that can fire.

use super::{Problem, is_env_name, problem};
use crate::config::{Config, NotifySink};
use crate::notify::SinkKind;

/// ntfy's priorities, by name or number (docs.ntfy.sh, "Message priority").
const NTFY_PRIORITIES: &[&str] = &[
    "1", "2", "3", "4", "5", "min", "low", "default", "high", "max", "urgent",
];

/// The `[notify]` rules.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
    let notify = &config.notify;
    if notify.max_attempts == 0 {
        problems.push(problem(&["notify", "max_attempts"], "must be at least 1"));
    }
    if notify.retry_backoff > notify.retry_backoff_max {
        problems.push(problem(
            &["notify", "retry_backoff"],
            format!(
                "{} is longer than notify.retry_backoff_max ({})",
                notify.retry_backoff, notify.retry_backoff_max
            ),
        ));
    }
    if notify.pass_budget.as_duration().is_zero() {
        problems.push(problem(
            &["notify", "pass_budget"],
            "must be longer than 0s, or nothing would ever be sent",
        ));
    }
    for (i, sink) in notify.sinks.iter().enumerate() {
        let index = i.to_string();
        let key = |k: &'static str| ["notify", "sinks", index.as_str(), k].map(str::to_owned);
        let mut push = |k: &'static str, message: String| {
            problems.push(Problem {
                key: key(k).to_vec(),
                message,
            });
        };
        if notify.sinks[..i].iter().any(|s| s.name() == sink.name()) {
            push(
                "name",
                format!(
                    "two sinks are named {:?}; give each its own `name`",
                    sink.name()
                ),
            );
        }
        if sink.events.is_empty() {
            push(
                "events",
                "lists no event, so the sink would never be sent anything".to_owned(),
            );
        }
        if sink.timeout.as_duration().is_zero() {
            push("timeout", "must be longer than 0s".to_owned());
        }
        check_target(sink, &mut push);
        if let Some(priority) = &sink.priority
            && !NTFY_PRIORITIES.contains(&priority.as_str())
        {
            push(
                "priority",
                format!(
                    "{priority:?} is not an ntfy priority (1-5, min, low, default, high, max, urgent)"
                ),
            );
        }
    }
}

/// Where the sink sends: one of `url_env` / `url` for the HTTP kinds, `argv` for a command,
/// variable names that are names, and no credential written in the file.
fn check_target(sink: &NotifySink, push: &mut impl FnMut(&'static str, String)) {
    for (key, name) in [("url_env", &sink.url_env), ("token_env", &sink.token_env)] {
        if let Some(name) = name
            && !is_env_name(name)
        {
            push(
                key,
                format!(
                    "{name:?} is not an environment variable name; put the variable's name here, never the URL or token itself"
                ),
            );
        }
    }
    if !sink.kind.is_http() {
        if sink.argv.is_empty() {
            push(
                "argv",
                "a command sink needs argv = [\"program\", \"arg\", ...]".to_owned(),
            );
        }
        for (key, set) in [
            ("url_env", sink.url_env.is_some()),
            ("url", sink.url.is_some()),
            ("token_env", sink.token_env.is_some()),
        ] {
            if set {
                push(key, "a command sink has no URL; remove this key".to_owned());
            }
        }
        return;
    }
    if !sink.argv.is_empty() {
        push(
            "argv",
            format!(
                "only a command sink has argv; a {} sink sends to url_env",
                sink.kind.as_str()
            ),
        );
    }
    if sink.kind == SinkKind::Slack && sink.token_env.is_some() {
        push(
            "token_env",
            "a Slack incoming webhook carries its secret in its URL; use url_env only".to_owned(),
        );
    }
    match (&sink.url_env, &sink.url) {
        (Some(_), Some(_)) => push("url", "set url_env or url, not both".to_owned()),
        (None, None) => push(
            "url_env",
            "missing: name the environment variable that holds the sink's URL (url_env = \"OXI_WEBHOOK_URL\")".to_owned(),
        ),
        (None, Some(url)) => {
            if let Some(why) = literal_url_problem(sink.kind, url) {
                push("url", why);
            }
        }
        (Some(_), None) => {}
    }
}

/// Why a literal `url` may not stay in oxi.toml: not http(s), or it carries a credential
/// (user:password, a query, a Slack webhook's secret path, a token-shaped string).
fn literal_url_problem(kind: SinkKind, url: &str) -> Option<String> {
    let move_it = "move it to an environment variable and name that variable in url_env";
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        return Some(format!("{url:?} is not a URL"));
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Some(format!("{url:?} is not an http(s) URL"));
    }
    let credential = if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        Some("credentials (user:password@)")
    } else if uri.query().is_some() {
        Some("a query string (where tokens go)")
    } else if kind == SinkKind::Slack {
        Some("a Slack webhook's secret path")
    } else if crate::redact::Redactor::default().contains_secret(url) {
        Some("a token")
    } else {
        None
    };
    credential.map(|what| format!("a literal URL with {what} is a secret in oxi.toml; {move_it}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_literal_url_is_refused_only_when_it_carries_a_credential() {
        assert_eq!(
            literal_url_problem(SinkKind::Ntfy, "https://ntfy.sh/oxi-alerts"),
            None
        );
        assert_eq!(
            literal_url_problem(SinkKind::Webhook, "http://127.0.0.1:9/hook"),
            None
        );
        for (kind, url) in [
            (SinkKind::Webhook, "https://user:pw@example.com/hook"),
            (SinkKind::Webhook, "https://example.com/hook?token=x"),
            (SinkKind::Slack, "https://hooks.slack.com/services/T/B/X"),
            (
                SinkKind::Webhook,
                "https://example.com/ghp_0123456789abcdefghijklmnopqrstuvwxyz",
            ),
            (SinkKind::Webhook, "ftp://example.com/hook"),
            (SinkKind::Webhook, "not a url"),
        ] {
            assert!(literal_url_problem(kind, url).is_some(), "{url}");
        }
    }
}
