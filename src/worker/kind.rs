//! Which agent CLI a worker runs: the one enum a new CLI adds an arm to.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Adapter;

/// Which agent CLI a worker runs. Its text (`kind = "codex"` in oxi.toml, `runs.worker_kind`
/// in the ledger) is [`as_str`](Self::as_str); serde's lowercase names are the same words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerKind {
    Codex,
    Claude,
}

impl WorkerKind {
    /// Every kind, for checks that ask all adapters (which kind owns a key).
    pub const ALL: &'static [WorkerKind] = &[WorkerKind::Codex, WorkerKind::Claude];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkerKind::Codex => "codex",
            WorkerKind::Claude => "claude",
        }
    }

    /// The kind stored as `text` (`runs.worker_kind`), if oxi knows it.
    pub fn from_stored(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == text)
    }

    /// This kind's adapter: everything oxi knows about its CLI.
    pub fn adapter(self) -> &'static dyn Adapter {
        match self {
            WorkerKind::Codex => &super::codex::CodexAdapter,
            WorkerKind::Claude => &super::claude::ClaudeAdapter,
        }
    }
}

impl fmt::Display for WorkerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_one_text_and_its_own_adapter() {
        for kind in WorkerKind::ALL {
            let serde_text = serde_json::to_value(kind).unwrap();
            assert_eq!(serde_text, kind.as_str(), "serde and as_str agree");
            assert_eq!(WorkerKind::from_stored(kind.as_str()), Some(*kind));
            assert_eq!(kind.adapter().kind(), *kind);
        }
        assert_eq!(WorkerKind::from_stored("gemini"), None);
    }

    #[test]
    fn all_lists_every_kind() {
        // Exhaustive, so a new kind does not compile until it has a place here; its place is
        // its index in ALL.
        let index = |kind: WorkerKind| match kind {
            WorkerKind::Codex => 0,
            WorkerKind::Claude => 1,
        };
        for (i, kind) in WorkerKind::ALL.iter().enumerate() {
            assert_eq!(index(*kind), i);
        }
        assert_eq!(WorkerKind::ALL.len(), 2);
    }
}
