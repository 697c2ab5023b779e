//! `[improve]`: amounts and thresholds in range, each source carrying the keys its kind reads
//! (and none of another kind's), and GitHub sources only with a `[github]` table to reach
//! GitHub through.

use super::{Problem, is_owner_name, problem};
use crate::config::{Config, ImproveConfig, ImproveSource, ImproveSourceKind};

/// The `[improve]` rules; nothing when the table is absent.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
    let Some(improve) = &config.improve else {
        return;
    };
    check_numbers(improve, problems);
    if let Some(choice) = &improve.embeddings {
        check_gateway_choice(config, "embeddings", choice, problems);
    }
    for (i, source) in improve.sources.iter().enumerate() {
        check_source(config, i, source, problems);
    }
}

fn check_numbers(improve: &ImproveConfig, problems: &mut Vec<Problem>) {
    let ratio = improve.acceptance_ratio_threshold;
    if !(0.0..=1.0).contains(&ratio) {
        problems.push(problem(
            &["improve", "acceptance_ratio_threshold"],
            format!("must be between 0 and 1 (accepted ÷ emitted proposals), not {ratio}"),
        ));
    }
    if !improve.min_stars_per_day.is_finite() || improve.min_stars_per_day < 0.0 {
        problems.push(problem(
            &["improve", "min_stars_per_day"],
            format!("must be 0 or more, not {}", improve.min_stars_per_day),
        ));
    }
    if improve.top == 0 || improve.top > 100 {
        problems.push(problem(
            &["improve", "top"],
            format!(
                "must be between 1 and 100 (proposals per scan), not {}",
                improve.top
            ),
        ));
    }
    if !improve.daily_usd.is_finite() || improve.daily_usd <= 0.0 {
        problems.push(problem(
            &["improve", "daily_usd"],
            format!(
                "must be more than 0 (USD per UTC day), not {}",
                improve.daily_usd
            ),
        ));
    }
    for (key, zero) in [
        ("source_timeout", improve.source_timeout.0.is_zero()),
        ("max_commit_age", improve.max_commit_age.0.is_zero()),
        ("max_page_size", improve.max_page_size.0.as_u64() == 0),
    ] {
        if zero {
            problems.push(problem(&["improve", key], "must be more than zero"));
        }
    }
}

fn check_source(config: &Config, i: usize, source: &ImproveSource, problems: &mut Vec<Problem>) {
    let index = i.to_string();
    let index = index.as_str();
    let at = move |key: &'static str| ["improve", "sources", index, key];
    let kind = source.kind.as_str();
    // Keys another kind reads are refused: a misplaced key would otherwise be ignored silently.
    let used: [(&'static str, bool, bool); 4] = [
        (
            "repos",
            !source.repos.is_empty(),
            source.kind == ImproveSourceKind::GithubReleases,
        ),
        (
            "topics",
            !source.topics.is_empty(),
            source.kind == ImproveSourceKind::GithubSearch,
        ),
        (
            "url",
            source.url.is_some(),
            source.kind == ImproveSourceKind::Newsletter,
        ),
        (
            "command",
            !source.command.is_empty() || !source.accounts.is_empty(),
            source.kind == ImproveSourceKind::X,
        ),
    ];
    for (key, present, belongs) in used {
        if present && !belongs {
            problems.push(problem(
                &at(key),
                format!(
                    "a {kind} source does not read {key}; docs/improve.md lists each kind's keys"
                ),
            ));
        }
    }
    match source.kind {
        ImproveSourceKind::GithubReleases | ImproveSourceKind::GithubSearch => {
            check_github_source(config, &at, source, problems);
        }
        ImproveSourceKind::Newsletter => match source.url.as_deref() {
            None => problems.push(problem(
                &at("url"),
                "a newsletter source needs url (its archive page)",
            )),
            Some(url) if !(url.starts_with("https://") || url.starts_with("http://")) => {
                problems.push(problem(
                    &at("url"),
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
            Some(_) => {}
        },
        ImproveSourceKind::X => {
            if source.command.first().is_none_or(|p| p.trim().is_empty()) {
                problems.push(problem(
                    &at("command"),
                    "an x source needs command: the program and its arguments, e.g. [\"x-skill\", \"--json\"]",
                ));
            }
            if source.accounts.is_empty() {
                problems.push(problem(
                    &at("accounts"),
                    "an x source needs accounts to read",
                ));
            }
        }
    }
}

fn check_github_source<'a>(
    config: &Config,
    at: &dyn Fn(&'static str) -> [&'a str; 4],
    source: &ImproveSource,
    problems: &mut Vec<Problem>,
) {
    if config.github.is_none() {
        problems.push(problem(
            &at("kind"),
            format!(
                "a {} source reads GitHub through [github] (api_url, token_env); add that table",
                source.kind.as_str()
            ),
        ));
    }
    if source.kind == ImproveSourceKind::GithubReleases {
        if source.repos.is_empty() {
            problems.push(problem(
                &at("repos"),
                "a github_releases source needs repos = [\"owner/name\", …]",
            ));
        }
        for repo in source.repos.iter().filter(|r| !is_owner_name(r)) {
            problems.push(problem(&at("repos"), format!("{repo:?} is not owner/name")));
        }
    } else {
        if source.topics.is_empty() {
            problems.push(problem(
                &at("topics"),
                "a github_search source needs topics = [\"…\"]",
            ));
        }
        for topic in &source.topics {
            let ok = !topic.is_empty()
                && topic
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                problems.push(problem(
                    &at("topics"),
                    format!("{topic:?} is not a GitHub topic (lower-case letters, digits and '-')"),
                ));
            }
        }
    }
}

/// `improve.<key>` names a gateway model as `provider:model`, the provider configured.
fn check_gateway_choice(
    config: &Config,
    key: &'static str,
    choice: &str,
    problems: &mut Vec<Problem>,
) {
    let at = ["improve", key];
    let Some(crate::routing::RouteChoice::Gateway { provider, .. }) =
        crate::routing::RouteChoice::parse(choice, crate::routing::ChoiceKind::Gateway)
    else {
        problems.push(problem(
            &at,
            format!(
                "{choice:?} is not provider:model (a [gateway.providers] entry and its model id)"
            ),
        ));
        return;
    };
    if !config.gateway.providers.contains_key(&provider) {
        let known = config.gateway.providers.keys().cloned().collect::<Vec<_>>();
        problems.push(problem(
            &at,
            format!(
                "no gateway provider {provider:?} in [gateway.providers] (configured: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        ));
    }
}
