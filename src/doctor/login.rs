//! Can each routed worker's CLI authenticate? A run that cannot is `auth_failed` and blocks
//! its worker, so doctor asks before a tick does.
//!
//! Claude Code (2.1.328) answers `claude auth status --json` offline with `{"loggedIn": …,
//! "authMethod": …}`, counting `ANTHROPIC_API_KEY`, `CLAUDE_CODE_OAUTH_TOKEN` and a stored
//! login (`~/.claude/.credentials.json` on Linux, or `$CLAUDE_CONFIG_DIR`; the Keychain on
//! macOS). Codex (0.169.0) reads `OPENAI_API_KEY`, its provider's `env_key`, or the login that
//! `codex login` stores in `$CODEX_HOME/auth.json` (`~/.codex` when `CODEX_HOME` is unset);
//! its `codex login status` ignores the keys, so doctor looks itself.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::{Check, Status, check};
use crate::config::{LoadedConfig, WorkerKind};

/// How long `claude auth status` may take (it answers in well under a second, offline).
const STATUS_TIMEOUT: Duration = Duration::from_secs(15);

/// A variable in `workers.NAME.env` whose absence the login check judges instead of the
/// environment check: a credential the CLI can also get from its own login, or a directory
/// with a default.
pub(super) fn replaceable_var(kind: WorkerKind, name: &str) -> bool {
    match kind {
        WorkerKind::Claude => matches!(name, "ANTHROPIC_API_KEY" | "CLAUDE_CODE_OAUTH_TOKEN"),
        WorkerKind::Codex => matches!(name, "OPENAI_API_KEY" | "CODEX_API_KEY" | "CODEX_HOME"),
    }
}

/// One `worker NAME login` check per routed worker.
pub(super) async fn checks(
    config: &LoadedConfig,
    parent_env: &[(String, String)],
    out: &mut Vec<Check>,
) {
    let routing = &config.config.routing;
    let token_env = config.config.github.as_ref().map(|g| g.token_env.as_str());
    let mut seen = Vec::new();
    for name in routing
        .executor
        .0
        .iter()
        .chain(&routing.reviewer.0)
        .chain(&routing.planner.0)
    {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let Some(worker) = config.config.workers.get(name) else {
            continue;
        };
        let env =
            crate::runner::env::worker_env(worker, parent_env.iter().cloned(), token_env).vars;
        let label = format!("worker {name} login");
        let (status, detail, fix) = match worker.kind {
            WorkerKind::Claude => claude(&worker.command, &env).await,
            WorkerKind::Codex => codex(&worker.args, &env),
        };
        out.push(check(
            &label,
            status,
            detail,
            fix.map(|f| f.replace("NAME", name)),
        ));
    }
}

type Verdict = (Status, String, Option<String>);

fn var<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .find(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

async fn claude(command: &[String], env: &[(String, String)]) -> Verdict {
    match claude_auth_status(command, env).await {
        Some((true, method)) => (Status::Ok, format!("logged in ({method}; `claude auth status`)"), None),
        Some((false, _)) => (
            Status::Fail,
            "not logged in (`claude auth status` with the worker's environment)".to_owned(),
            Some("log in as the user oxi runs as (`claude auth login`, or `claude setup-token` and CLAUDE_CODE_OAUTH_TOKEN), or list ANTHROPIC_API_KEY in workers.NAME.env and export it".to_owned()),
        ),
        None => claude_by_files(env),
    }
}

/// `claude auth status --json`: `(loggedIn, authMethod)`, or `None` when the CLI gives no such
/// answer (another version, a stand-in). Run in a scratch directory so nothing lands in the
/// repository.
async fn claude_auth_status(
    command: &[String],
    env: &[(String, String)],
) -> Option<(bool, String)> {
    let (program, prefix) = command.split_first()?;
    let scratch = tempfile::tempdir().ok()?;
    let child = tokio::process::Command::new(program)
        .args(prefix)
        .args(["auth", "status", "--json"])
        .current_dir(scratch.path())
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(STATUS_TIMEOUT, child)
        .await
        .ok()?
        .ok()?;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let logged_in = json.get("loggedIn")?.as_bool()?;
    let method = json
        .get("authMethod")
        .and_then(|m| m.as_str())
        .unwrap_or("unknown")
        .to_owned();
    Some((logged_in, method))
}

/// What shows a CLI is logged in without asking it: one of its key variables, or its stored
/// login `file` in its state directory (`home.0` when set, else `$HOME/<home.1>`).
fn stored_login(
    env: &[(String, String)],
    keys: &[&str],
    home: (&str, &str),
    file: &str,
) -> Option<String> {
    if let Some(name) = keys.iter().find(|name| var(env, name).is_some()) {
        return Some(format!("{name} is set"));
    }
    let dir = var(env, home.0)
        .map(PathBuf::from)
        .or_else(|| var(env, "HOME").map(|h| Path::new(h).join(home.1)))?;
    let file = dir.join(file);
    file.is_file()
        .then(|| format!("a stored login in {}", file.display()))
}

fn claude_by_files(env: &[(String, String)]) -> Verdict {
    if let Some(found) = stored_login(
        env,
        &[
            "ANTHROPIC_API_KEY",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "ANTHROPIC_AUTH_TOKEN",
        ],
        ("CLAUDE_CONFIG_DIR", ".claude"),
        ".credentials.json",
    ) {
        return (Status::Ok, found, None);
    }
    (
        Status::Warn,
        "could not confirm a login: no ANTHROPIC_API_KEY, no CLAUDE_CODE_OAUTH_TOKEN and no ~/.claude/.credentials.json (macOS keeps the login in the Keychain)".to_owned(),
        Some("if runs end auth_failed, log in as the user oxi runs as (`claude auth login`) or export ANTHROPIC_API_KEY".to_owned()),
    )
}

/// The `env_key` of a model provider set in the worker's args (`-c 'model_providers.x={…,
/// env_key="NAME"}'`).
fn provider_env_key(args: &[String]) -> Option<String> {
    let text = args.join(" ");
    let at = text.find("env_key")?;
    let rest = text[at + "env_key".len()..]
        .trim_start()
        .strip_prefix('=')?;
    let rest = rest.trim_start().trim_start_matches(['"', '\'']);
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

fn codex(args: &[String], env: &[(String, String)]) -> Verdict {
    if let Some(key) = provider_env_key(args) {
        return match var(env, &key) {
            Some(_) => (
                Status::Ok,
                format!("{key} is set (its provider's env_key)"),
                None,
            ),
            None => (
                Status::Fail,
                format!("{key} is not set (the env_key of the provider in workers.NAME.args)"),
                Some(format!(
                    "list {key} in workers.NAME.env and export it before oxi runs"
                )),
            ),
        };
    }
    if let Some(found) = stored_login(
        env,
        &["OPENAI_API_KEY", "CODEX_API_KEY"],
        ("CODEX_HOME", ".codex"),
        "auth.json",
    ) {
        return (Status::Ok, found, None);
    }
    (
        Status::Warn,
        "could not confirm a login: no OPENAI_API_KEY and no auth.json in CODEX_HOME or ~/.codex".to_owned(),
        Some("run `codex login` as the user oxi runs as, or list OPENAI_API_KEY in workers.NAME.env and export it".to_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_providers_env_key() {
        let args = vec![
            "-c".to_owned(),
            r#"model_providers.mock={name="mock", env_key="MOCK_API_KEY", wire_api="responses"}"#
                .to_owned(),
        ];
        assert_eq!(provider_env_key(&args).as_deref(), Some("MOCK_API_KEY"));
        assert_eq!(provider_env_key(&[]), None);
    }
}
