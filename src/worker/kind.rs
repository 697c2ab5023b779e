//! Which agent CLI a worker runs: the one enum a new CLI adds an arm to.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which agent CLI a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerKind {
    Codex,
    Claude,
}

impl WorkerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerKind::Codex => "codex",
            WorkerKind::Claude => "claude",
        }
    }
}

impl fmt::Display for WorkerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
