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

impl WorkerConfig {
    /// The keys of this table that belong to one kind of CLI and are set here, in the order
    /// of the table's fields. A key a new CLI owns is added here and to its adapter's
    /// [`own_keys`](super::Adapter::own_keys).
    pub(crate) fn kind_keys_set(&self) -> Vec<&'static str> {
        [
            ("permission_mode", self.permission_mode.is_some()),
            ("max_turns", self.max_turns.is_some()),
            ("sandbox", self.sandbox.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }
}

/// One broken rule in a `[workers.NAME]` table, found by the worker's adapter; the config
/// validator adds the file, line and table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProblem {
    /// The key under `workers.NAME`.
    pub key: &'static str,
    pub message: String,
}
