//! `oxi.toml`: what a user configures, how it is found, and every check that turns a bad file
//! into an error naming `file:line` and the key.
//!
//! Secrets never live here: the file holds only the *names* of environment variables.

mod duration;
mod load;
mod schema;
mod size;
mod validate;

use std::path::PathBuf;

pub use duration::HumanDuration;
pub use load::{LoadedConfig, ModeSource, ReleaseMode, discover, load, parse};
pub use schema::*;
pub use size::HumanSize;
// The `[workers.*]` and `[rates.*]` tables are the worker module's; named here too, where the
// rest of the schema is.
pub use crate::worker::{RateCard, WorkerConfig, WorkerKind};

/// The file name `oxi` looks for, walking up from the current directory.
pub const CONFIG_FILE_NAME: &str = "oxi.toml";
/// The state directory beside `oxi.toml` (ledger, runs, worktrees, locks).
pub const STATE_DIR_NAME: &str = ".oxi";
/// Environment variable that overrides `run.mode`.
pub const RUN_MODE_ENV: &str = "OXI_RUN_MODE";

/// Errors from finding, reading, parsing and validating `oxi.toml`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No `oxi.toml` in the current directory or any parent. Not retryable: run `oxi init`.
    #[error(
        "no {CONFIG_FILE_NAME} found in {start} or any parent directory; run `oxi init` in your repository, or pass --config PATH"
    )]
    NotFound { start: PathBuf },
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Syntax, unknown key, wrong type, or a value that breaks a rule; `location` is `file:line:col`.
    #[error("{location}: {message}")]
    Invalid { location: String, message: String },
    /// `OXI_RUN_MODE` holds something other than `fast` or `release`.
    #[error(
        "{RUN_MODE_ENV}={value:?} is not a run mode; use \"fast\" or \"release\" (or unset it)"
    )]
    BadRunModeEnv { value: String },
}
