//! `oxi eval`: runs a suite of cases (docs/eval.md), each in a fresh repository with its own
//! ledger, through the same passes `oxi tick` makes in fast mode, and reports success, worker
//! calls and time per task, verification time per tier, parse failures, retries and — over
//! repeats — how much the plans and the test outcomes vary.

mod case;
mod report;
mod run;
mod setup;

use std::path::{Path, PathBuf};

pub use report::{SuiteReport, markdown};

/// What can stop a suite from running (a case that misses its expectation is a result, not an
/// error).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{file}:{line}: {key}: {message}", file = file.display())]
    Case {
        file: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    #[error("cannot read {path}: {source}", path = path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}", path = path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds no case (a case is a directory with a case.toml)", .0.display())]
    EmptySuite(PathBuf),
    #[error(
        "{} has no oxi.toml: a suite brings the config its cases run with, or pass --config FILE",
        .0.display()
    )]
    NoSuiteConfig(PathBuf),
    #[error("{path}: {message}", path = path.display())]
    SuiteConfig { path: PathBuf, message: String },
    #[error("{case}: the suite config with this case merged in is invalid: {source}", case = case.display())]
    CaseConfig {
        case: PathBuf,
        #[source]
        source: crate::config::ConfigError,
    },
    #[error(
        "the offline worker {} is missing; it is built and installed with oxi (cargo build / cargo install installs both)",
        .0.display()
    )]
    NoFakeWorker(PathBuf),
    #[error("setting up the case: {0}")]
    Setup(String),
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error(transparent)]
    Scheduler(#[from] crate::scheduler::SchedulerError),
}

/// What `oxi eval` was asked to do.
pub struct Options<'a> {
    pub suite: &'a Path,
    /// How the report names the suite (the path as the user wrote it).
    pub label: &'a str,
    /// A config to run with instead of the suite's `oxi.toml`.
    pub config: Option<&'a Path>,
    /// Routes the executor role to this worker.
    pub worker: Option<&'a str>,
    pub repeat: u32,
    /// Told after each repeat (`case`, repeat number, met its expectation).
    pub progress: &'a dyn Fn(&str, u32, bool),
}

/// The offline worker installed beside this oxi.
fn fake_worker() -> Result<PathBuf, EvalError> {
    let exe = std::env::current_exe().map_err(|source| EvalError::Read {
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    Ok(exe.with_file_name(setup::FAKE_WORKER))
}

/// Runs every case `repeat` times and reports.
///
/// # Errors
/// A case file or the suite config that cannot be read or is invalid, a case whose world
/// cannot be set up, or a ledger or scheduler failure. A case that misses its expectation is
/// in the report, not an error.
pub fn run_suite(options: &Options<'_>) -> Result<SuiteReport, EvalError> {
    let files = case::discover(options.suite)?;
    let cases = files
        .iter()
        .map(|f| case::load(f))
        .collect::<Result<Vec<_>, _>>()?;
    let config_path = match options.config {
        Some(path) => path.to_path_buf(),
        None => options.suite.join("oxi.toml"),
    };
    if !config_path.is_file() {
        return Err(EvalError::NoSuiteConfig(options.suite.to_path_buf()));
    }
    let config_text = std::fs::read_to_string(&config_path).map_err(|source| EvalError::Read {
        path: config_path.clone(),
        source,
    })?;
    let base = setup::Base {
        config_path: &config_path,
        config_text: &config_text,
        worker: options.worker,
    };
    let fake = fake_worker()?;
    if config_text.contains(setup::FAKE_WORKER) && !fake.is_file() {
        return Err(EvalError::NoFakeWorker(fake));
    }
    let mut results = Vec::new();
    for case in &cases {
        let mut repeats = Vec::new();
        for n in 1..=options.repeat.max(1) {
            let repeat = run::run(case, &base, &fake)?;
            (options.progress)(&case.name, n, repeat.misses.is_empty());
            repeats.push(repeat);
        }
        results.push((case, repeats));
    }
    Ok(report::build(
        options.label,
        options.worker,
        options.repeat.max(1),
        &results,
    ))
}
