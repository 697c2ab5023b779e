//! The environment a worker sees: nothing inherited except an allow-list.

use std::collections::BTreeMap;

use crate::config::WorkerConfig;

/// Variables every worker gets from oxi's environment when set: enough for a CLI to find its
/// runtime, home directory, locale and temp dir, and nothing that carries a credential.
pub const BASE_ALLOW_LIST: &[&str] = &["PATH", "HOME", "USER", "LANG", "TMPDIR", "TERM"];

/// Names that are never passed, whatever the config says (config validation refuses them too).
pub const NEVER_PASSED: &[&str] = &["GITHUB_TOKEN", "GH_TOKEN", "GH_ENTERPRISE_TOKEN"];

/// What a worker receives, and which of it is secret.
#[derive(Debug, Clone, Default)]
pub struct WorkerEnv {
    /// The complete environment, sorted by name.
    pub vars: Vec<(String, String)>,
    /// Values of the variables the worker's `env` list passed through: secrets to oxi.
    pub secrets: Vec<String>,
    /// Names listed in the worker's `env` but unset in oxi's environment.
    pub missing: Vec<String>,
}

impl WorkerEnv {
    /// The names passed, for meta.json (never the values).
    pub fn names(&self) -> Vec<&str> {
        self.vars.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// Builds a worker's environment from `parent` (oxi's own environment). `github_token_env` is
/// the configured token variable, which is withheld even if a worker lists it.
pub fn worker_env<I>(worker: &WorkerConfig, parent: I, github_token_env: Option<&str>) -> WorkerEnv
where
    I: IntoIterator<Item = (String, String)>,
{
    let parent: BTreeMap<String, String> = parent.into_iter().collect();
    let withheld = |name: &str| NEVER_PASSED.contains(&name) || github_token_env == Some(name);
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parent {
        let base = BASE_ALLOW_LIST.contains(&name.as_str()) || name.starts_with("LC_");
        if base && !withheld(name) {
            vars.insert(name.clone(), value.clone());
        }
    }
    let mut secrets = Vec::new();
    let mut missing = Vec::new();
    for name in &worker.env {
        if withheld(name) {
            continue;
        }
        match parent.get(name) {
            Some(value) => {
                vars.insert(name.clone(), value.clone());
                secrets.push(value.clone());
            }
            None => missing.push(name.clone()),
        }
    }
    // `git push` from a worker goes nowhere: every push URL is rewritten to a transport git
    // does not have, so it fails at once, offline, whatever remote or credential helper the
    // repository has. oxi pushes itself, in release mode only, with its own environment. A
    // worker's `set_env` can still override this on purpose.
    vars.insert("GIT_CONFIG_COUNT".to_owned(), "1".to_owned());
    vars.insert(
        "GIT_CONFIG_KEY_0".to_owned(),
        "url.oxi-worker-push-disabled://.pushInsteadOf".to_owned(),
    );
    vars.insert("GIT_CONFIG_VALUE_0".to_owned(), String::new());
    for (name, value) in &worker.set_env {
        if !withheld(name) {
            vars.insert(name.clone(), value.clone());
        }
    }
    WorkerEnv {
        vars: vars.into_iter().collect(),
        secrets,
        missing,
    }
}

/// A redactor for every secret oxi holds: the values of every variable any worker receives
/// through `env`, and the GitHub token (whichever variable holds it).
pub fn redactor_for(
    config: &crate::config::LoadedConfig,
    parent_env: &[(String, String)],
) -> crate::redact::Redactor {
    let token_env = config.config.github.as_ref().map(|g| g.token_env.as_str());
    let names: Vec<&str> = config
        .config
        .workers
        .values()
        .flat_map(|w| w.env.iter().map(String::as_str))
        .chain(NEVER_PASSED.iter().copied())
        .chain(token_env)
        .collect();
    crate::redact::Redactor::new(
        parent_env
            .iter()
            .filter(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, v)| v.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WorkerKind;

    fn worker(env: &[&str], set: &[(&str, &str)]) -> WorkerConfig {
        WorkerConfig {
            kind: WorkerKind::Claude,
            command: vec!["claude".into()],
            model: None,
            args: Vec::new(),
            env: env.iter().map(|s| (*s).to_owned()).collect(),
            set_env: set
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            permission_mode: None,
            max_turns: None,
            sandbox: None,
        }
    }

    fn parent() -> Vec<(String, String)> {
        [
            ("PATH", "/usr/bin"),
            ("HOME", "/home/me"),
            ("LC_ALL", "C.UTF-8"),
            ("ANTHROPIC_API_KEY", "sk-ant-secret-value"),
            ("GITHUB_TOKEN", "ghp_never"),
            ("MY_GH", "ghp_custom_never"),
            ("AWS_SECRET_ACCESS_KEY", "aws-never"),
            ("OXI_CONFIG", "/x/oxi.toml"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    #[test]
    fn passes_only_the_allow_list_and_marks_passed_values_secret() {
        let env = worker_env(
            &worker(&["ANTHROPIC_API_KEY", "CODEX_HOME"], &[("IS_SANDBOX", "1")]),
            parent(),
            Some("MY_GH"),
        );
        assert_eq!(
            env.names(),
            [
                "ANTHROPIC_API_KEY",
                "GIT_CONFIG_COUNT",
                "GIT_CONFIG_KEY_0",
                "GIT_CONFIG_VALUE_0",
                "HOME",
                "IS_SANDBOX",
                "LC_ALL",
                "PATH"
            ]
        );
        assert_eq!(env.secrets, ["sk-ant-secret-value"]);
        assert_eq!(env.missing, ["CODEX_HOME"]);
    }

    #[test]
    fn a_github_token_never_passes_even_when_listed() {
        let env = worker_env(
            &worker(&["GITHUB_TOKEN", "MY_GH"], &[("GH_TOKEN", "x")]),
            parent(),
            Some("MY_GH"),
        );
        for (name, value) in &env.vars {
            assert!(!name.contains("GH") && !value.contains("ghp_"), "{name}");
        }
    }
}
