//! Rules the type system cannot express, one validator per table.

mod caps;
mod explore;
mod gateway;
mod github;
mod governance;
mod host;
mod improve;
mod inference;
mod kpi;
mod ledger;
mod notify;
mod project;
mod rates;
mod routing;
mod run;
mod shadow;
mod sources;
mod verify;
mod workers;

use super::Config;

/// One broken rule, found after the file parsed.
#[derive(Debug, Clone)]
pub(super) struct Problem {
    pub(super) key: Vec<String>,
    pub(super) message: String,
}

pub(super) fn problem(key: &[&str], message: impl Into<String>) -> Problem {
    Problem {
        key: key.iter().map(|s| (*s).to_owned()).collect(),
        message: message.into(),
    }
}

pub(super) fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Rules the type system cannot express. Returned in file order of importance, first one wins;
/// the order of the tables below is that order, so it is kept as it is.
pub(super) fn validate(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    caps::check(config, &mut problems);
    run::check(config, &mut problems);
    project::check(config, &mut problems);
    workers::check(config, &mut problems);
    routing::check(config, &mut problems);
    workers::check_priced(config, &mut problems);
    rates::check(config, &mut problems);
    verify::check(config, &mut problems);
    governance::check(config, &mut problems);
    github::check(config, &mut problems);
    project::check_allowed_repos(config, &mut problems);
    sources::check(config, &mut problems);
    notify::check(config, &mut problems);
    gateway::check(config, &mut problems);
    host::check(config, &mut problems);
    explore::check(config, &mut problems);
    shadow::check(config, &mut problems);
    inference::check(config, &mut problems);
    improve::check(config, &mut problems);
    kpi::check(config, &mut problems);
    ledger::check(config, &mut problems);
    problems
}

pub(super) fn is_owner_name(repo: &str) -> bool {
    let mut parts = repo.split('/');
    let ok = |s: Option<&str>| {
        s.is_some_and(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_consistent() {
        assert!(validate(&Config::default()).is_empty());
    }

    #[test]
    fn env_names() {
        assert!(is_env_name("ANTHROPIC_API_KEY"));
        assert!(is_env_name("_X1"));
        assert!(!is_env_name("1X"));
        assert!(!is_env_name("sk-abc"));
        assert!(!is_env_name(""));
    }
}
