//! Can a worker's CLI authenticate? Each adapter answers for its own CLI (`oxi doctor` asks
//! before a tick does: a run that cannot authenticate is `auth_failed` and blocks its worker);
//! what they share is here.

use std::path::{Path, PathBuf};

use super::env_value;

/// How sure the login check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginStatus {
    /// A credential the CLI will use was found.
    Ok,
    /// None was found, but the CLI may have one oxi cannot see (a keychain).
    Warn,
    /// The CLI says it is not logged in, or a credential it needs is missing.
    Fail,
}

/// The verdict of one login check. `fix` may say `workers.NAME`; the caller puts the name in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub status: LoginStatus,
    pub detail: String,
    pub fix: Option<String>,
}

impl Login {
    pub(crate) fn new(status: LoginStatus, detail: impl Into<String>, fix: Option<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            fix,
        }
    }
}

/// What shows a CLI is logged in without asking it: one of its key variables, or its stored
/// login `file` in its state directory (`home.0` when set, else `$HOME/<home.1>`).
pub(crate) fn stored_login(
    env: &[(String, String)],
    keys: &[&str],
    home: (&str, &str),
    file: &str,
) -> Option<String> {
    if let Some(name) = keys.iter().find(|name| env_value(env, name).is_some()) {
        return Some(format!("{name} is set"));
    }
    let dir = env_value(env, home.0)
        .map(PathBuf::from)
        .or_else(|| env_value(env, "HOME").map(|h| Path::new(h).join(home.1)))?;
    let file = dir.join(file);
    file.is_file()
        .then(|| format!("a stored login in {}", file.display()))
}
