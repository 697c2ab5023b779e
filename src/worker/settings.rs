//! A `[workers.NAME]` table of `oxi.toml`: the keys every kind shares and the ones a kind
//! owns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::WorkerKind;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    pub kind: WorkerKind,
    /// argv prefix: a path or a name on PATH, then fixed arguments.
    pub command: Vec<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// Extra arguments appended after oxi's own.
    #[serde(default)]
    pub args: Vec<String>,
    /// Names of variables passed through from oxi's environment. Their values are secrets to oxi.
    #[serde(default)]
    pub env: Vec<String>,
    /// Fixed variables set for the worker.
    #[serde(default)]
    pub set_env: BTreeMap<String, String>,
    /// Claude only: `--permission-mode`. `acceptEdits` (default) edits files without asking and
    /// works as root; `bypassPermissions` also runs commands (as root Claude then needs
    /// `IS_SANDBOX=1` in `set_env`).
    #[serde(default)]
    pub permission_mode: Option<String>,
    /// Claude only: `--max-turns`, the agent's own turn limit.
    #[serde(default)]
    pub max_turns: Option<u32>,
    /// Codex only: `--sandbox` (`read-only`, `workspace-write` (default),
    /// `danger-full-access`), or `bypass` for `--dangerously-bypass-approvals-and-sandbox`.
    #[serde(default)]
    pub sandbox: Option<String>,
}

/// Claude permission modes that run unattended (the others prompt, or refuse to edit).
pub const CLAUDE_PERMISSION_MODES: &[&str] = &["acceptEdits", "bypassPermissions"];
/// Codex sandbox policies, plus oxi's `bypass`.
pub const CODEX_SANDBOXES: &[&str] = &[
    "read-only",
    "workspace-write",
    "danger-full-access",
    "bypass",
];

impl WorkerConfig {
    /// The effective Claude permission mode.
    pub fn permission_mode(&self) -> &str {
        self.permission_mode.as_deref().unwrap_or("acceptEdits")
    }

    /// The effective Codex sandbox.
    pub fn sandbox(&self) -> &str {
        self.sandbox.as_deref().unwrap_or("workspace-write")
    }
}
