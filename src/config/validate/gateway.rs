//! `[gateway]`: each provider's URL, key variable and limits are usable; a key pasted where
//! its variable's name belongs is caught before it is ever logged or sent.

use super::{Problem, is_env_name, problem};
use crate::config::{Config, GatewayProviderConfig, GatewayProviderKind};
use crate::gateway::GatewayRole;
use clap::ValueEnum;

/// The roles a gateway call is made for, as `role_key_env` spells them: every `GatewayRole`,
/// so a role added there may have its own key without a second list to remember.
fn roles() -> Vec<&'static str> {
    GatewayRole::value_variants()
        .iter()
        .map(|role| role.as_str())
        .collect()
}

/// The `[gateway]` rules.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
    let gateway = &config.gateway;
    for (name, provider) in &gateway.providers {
        check_provider(name, provider, problems);
    }
    let caps = &gateway.caps;
    for (key, value) in [
        ("call_reserve_usd", caps.call_reserve_usd),
        ("triage_daily_usd", caps.triage_daily_usd),
        ("screen_daily_usd", caps.screen_daily_usd),
        ("summary_daily_usd", caps.summary_daily_usd),
        ("test_daily_usd", caps.test_daily_usd),
    ] {
        if !value.is_finite() || value < 0.0 {
            problems.push(problem(
                &["gateway", "caps", key],
                format!("must be a non-negative amount in USD, not {value}"),
            ));
        }
    }
    if caps.call_reserve_usd > config.caps.daily_usd {
        problems.push(problem(
            &["gateway", "caps", "call_reserve_usd"],
            format!(
                "{} USD held per call is above caps.daily_usd ({} USD); no gateway call could ever be admitted",
                caps.call_reserve_usd, config.caps.daily_usd
            ),
        ));
    }
    if gateway.down_for.0.is_zero() {
        problems.push(problem(
            &["gateway", "down_for"],
            "must be longer than zero (how long a provider that failed stays off)",
        ));
    }
}

fn check_provider(name: &str, provider: &GatewayProviderConfig, problems: &mut Vec<Problem>) {
    let at = |key: &'static str| ["gateway", "providers", name, key];
    if name.is_empty() || name.contains(':') || name.contains(char::is_whitespace) {
        problems.push(problem(
            &["gateway", "providers", name],
            format!(
                "{name:?} cannot name a provider: routes spell a choice `provider:model`, so a name has no ':' or spaces"
            ),
        ));
    }
    match provider.base_url.as_deref() {
        Some(url) if !(url.starts_with("https://") || url.starts_with("http://")) => {
            problems.push(problem(
                &at("base_url"),
                format!("{url:?} is not an http(s) URL"),
            ));
        }
        Some(_) => {}
        None if provider.kind.default_base_url().is_none() => problems.push(problem(
            &at("kind"),
            format!(
                "kind = \"{}\" needs base_url (the proxy's root, e.g. \"http://127.0.0.1:4000\")",
                provider.kind.as_str()
            ),
        )),
        None => {}
    }
    match provider.key_env.as_deref() {
        Some(value) => check_env_name(&at("key_env"), value, problems),
        None if provider.kind != GatewayProviderKind::Litellm => problems.push(problem(
            &at("kind"),
            format!(
                "kind = \"{}\" needs key_env: the name of the variable holding its API key",
                provider.kind.as_str()
            ),
        )),
        None => {}
    }
    if !provider.role_key_env.is_empty() && provider.kind != GatewayProviderKind::Litellm {
        problems.push(problem(
            &at("role_key_env"),
            "per-role virtual keys are a LiteLLM feature; use key_env for this provider",
        ));
    }
    for (role, value) in &provider.role_key_env {
        let key = ["gateway", "providers", name, "role_key_env", role.as_str()];
        let roles = roles();
        if !roles.contains(&role.as_str()) {
            problems.push(problem(
                &key,
                format!(
                    "{role:?} is not a gateway role (one of {})",
                    roles.join(", ")
                ),
            ));
        }
        check_env_name(&key, value, problems);
    }
    if provider.timeout.0.is_zero() {
        problems.push(problem(&at("timeout"), "must be longer than zero"));
    }
    if provider.retries > 10 {
        problems.push(problem(
            &at("retries"),
            format!(
                "{} retries would hold a role for a long time on a failing provider; use 10 or fewer",
                provider.retries
            ),
        ));
    }
}

/// A variable's name, never a key: a value shaped like a key (`sk-…`, long mixed-case or
/// digit-laden strings) is refused without being repeated, so the error does not leak it.
fn check_env_name(key: &[&str], value: &str, problems: &mut Vec<Problem>) {
    if looks_like_a_key(value) {
        problems.push(problem(
            key,
            "this looks like an API key, not a variable's name; put the key in the environment (export NAME=...) and the NAME here, and rotate the key if this file was shared",
        ));
    } else if !is_env_name(value) {
        problems.push(problem(
            key,
            format!("{value:?} is not an environment variable name; put the variable's name here, never the key"),
        ));
    }
}

/// Secret-shaped: a known key prefix, or long with lower-case letters and digits mixed
/// (variable names are upper-case words).
fn looks_like_a_key(value: &str) -> bool {
    const PREFIXES: &[&str] = &["sk-", "sk_", "xai-", "or-", "Bearer "];
    let has_lower = value.chars().any(|c| c.is_ascii_lowercase());
    let digits = value.chars().filter(char::is_ascii_digit).count();
    PREFIXES.iter().any(|p| value.starts_with(p)) || (value.len() >= 24 && has_lower && digits >= 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gateway_role_may_have_its_own_key() {
        // Auto-improve's calls are role `improve`: its LiteLLM virtual key was refused while
        // this list was written out by hand.
        assert_eq!(roles(), ["triage", "screen", "summary", "test", "improve"]);
    }

    #[test]
    fn keys_and_names_are_told_apart() {
        assert!(looks_like_a_key("sk-or-v1-0123456789abcdef"));
        assert!(looks_like_a_key("xai-AbCdEf0123456789"));
        assert!(looks_like_a_key("a8f3k2j9d0s8f7g6h5j4k3l2m1n0"));
        assert!(!looks_like_a_key("OPENROUTER_API_KEY"));
        assert!(!looks_like_a_key("OXI_LITELLM_TRIAGE_KEY_2"));
    }
}
