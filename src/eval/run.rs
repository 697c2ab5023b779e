//! One repeat of one case: its world, the same passes `oxi tick` makes until nothing is left
//! to do, then what its ledger and repository say, checked against the expectation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::EvalError;
use super::case::{Case, Ending};
use super::setup::{self, Base};
use crate::ledger::{Ledger, TaskState};

/// Passes before a case is called stuck (a retry waits out its backoff between passes).
const MAX_PASSES: u32 = 40;

/// What one task did in one repeat.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TaskOutcome {
    pub(crate) id: String,
    pub(crate) state: String,
    pub(crate) failure_class: Option<String>,
    pub(crate) worker_calls: u64,
    pub(crate) time_ms: u64,
    pub(crate) retries: u64,
    /// The explore plan's `files_expected`, sorted (`None`: not explored).
    pub(crate) planned_files: Option<Vec<String>>,
    /// Each verification's `tier/name=status`, in order.
    pub(crate) test_outcome: Vec<String>,
}

/// One repeat of one case.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Repeat {
    pub(crate) tasks: Vec<TaskOutcome>,
    pub(crate) worker_calls: u64,
    pub(crate) parse_failures: u64,
    /// Milliseconds of each verification, per tier.
    pub(crate) tier_ms: BTreeMap<String, Vec<u64>>,
    pub(crate) wall_ms: u64,
    /// What missed the expectation (empty: met).
    pub(crate) misses: Vec<String>,
}

/// Runs one repeat in a fresh temporary directory (removed afterwards).
pub(crate) fn run(case: &Case, base: &Base<'_>, fake: &Path) -> Result<Repeat, EvalError> {
    let temp = tempfile::Builder::new()
        .prefix("oxi-eval-")
        .tempdir()
        .map_err(|source| EvalError::Write {
            path: std::env::temp_dir(),
            source,
        })?;
    let root = temp
        .path()
        .canonicalize()
        .unwrap_or_else(|_| temp.path().to_path_buf())
        .join("repo");
    setup::make_repo(case, base, &root, fake)?;
    let started = Instant::now();
    let config = crate::config::load(&root.join("oxi.toml"), Some("fast")).map_err(|e| {
        EvalError::CaseConfig {
            case: case.file.clone(),
            source: e,
        }
    })?;
    let mut ledger = Ledger::open(&config.ledger_path())?;
    let mut env = crate::commands::parent_env();
    env.extend(case.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    passes(&config, &mut ledger, &env)?;
    let wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut repeat = measure(&mut ledger, wall_ms)?;
    repeat.misses = check(case, &repeat, &root, &mut ledger)?;
    Ok(repeat)
}

fn passes(
    config: &crate::config::LoadedConfig,
    ledger: &mut Ledger,
    env: &[(String, String)],
) -> Result<(), EvalError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(EvalError::Runtime)?;
    let (_tx, shutdown) = tokio::sync::watch::channel(false);
    for _ in 0..MAX_PASSES {
        let report = runtime.block_on(crate::scheduler::pass(
            config,
            ledger,
            env.to_vec(),
            "oxi-eval",
            shutdown.clone(),
        ))?;
        if !report.jobs.is_empty() {
            continue;
        }
        // Nothing ran: done, unless a retry is waiting out its backoff.
        let waiting = ledger
            .read()
            .tasks()?
            .iter()
            .filter_map(|t| (t.state == TaskState::RetryWait).then_some(t.retry_at_ms))
            .flatten()
            .min();
        let Some(at) = waiting else {
            return Ok(());
        };
        let wait = (at - crate::clock::now_ms()).clamp(50, 5_000);
        std::thread::sleep(std::time::Duration::from_millis(
            u64::try_from(wait).unwrap_or(50),
        ));
    }
    Ok(())
}

fn measure(ledger: &mut Ledger, wall_ms: u64) -> Result<Repeat, EvalError> {
    let tasks = ledger.read().tasks()?;
    let conn = ledger.raw_connection();
    let mut outcomes = Vec::new();
    for task in &tasks {
        let id = task.spec.id.clone();
        let (calls, executors): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(role = 'executor'), 0) FROM runs WHERE task_id = ?1",
                [&id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(crate::ledger::LedgerError::from)?;
        let planned_files = planned_files(conn, &id)?;
        outcomes.push(TaskOutcome {
            state: task.state.as_str().to_owned(),
            failure_class: task.failure_class.as_ref().map(|c| c.as_str().to_owned()),
            worker_calls: u64::try_from(calls).unwrap_or(0),
            // From ingest to its last change of state: runs, verification, review, delivery.
            time_ms: u64::try_from(task.updated_at_ms - task.created_at_ms).unwrap_or(0),
            retries: u64::try_from(executors - 1).unwrap_or(0),
            planned_files,
            test_outcome: Vec::new(),
            id,
        });
    }
    let mut tier_ms: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let verified = verifications(conn)?;
    for (task_id, data) in verified {
        let mut per_tier: BTreeMap<String, u64> = BTreeMap::new();
        let mut signature = Vec::new();
        for result in data["results"].as_array().into_iter().flatten() {
            let tier = result["tier"].as_str().unwrap_or("?").to_owned();
            *per_tier.entry(tier.clone()).or_default() +=
                result["duration_ms"].as_u64().unwrap_or(0);
            signature.push(format!(
                "{tier}/{}={}",
                result["name"].as_str().unwrap_or("?"),
                result["status"].as_str().unwrap_or("?")
            ));
        }
        for (tier, ms) in per_tier {
            tier_ms.entry(tier).or_default().push(ms);
        }
        if let Some(task) = outcomes.iter_mut().find(|t| t.id == task_id) {
            task.test_outcome.extend(signature);
        }
    }
    let (calls, parse_failures): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), COALESCE(SUM(parse_failures), 0) FROM runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(crate::ledger::LedgerError::from)?;
    Ok(Repeat {
        tasks: outcomes,
        worker_calls: u64::try_from(calls).unwrap_or(0),
        parse_failures: u64::try_from(parse_failures).unwrap_or(0),
        tier_ms,
        wall_ms,
        misses: Vec::new(),
    })
}

fn planned_files(
    conn: &rusqlite::Connection,
    task: &str,
) -> Result<Option<Vec<String>>, EvalError> {
    let plan: Option<String> = conn
        .query_row(
            "SELECT plan FROM plans WHERE task_id = ?1 ORDER BY id DESC LIMIT 1",
            [task],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(crate::ledger::LedgerError::from(e)),
        })?;
    Ok(plan.map(|p| {
        let value: serde_json::Value = serde_json::from_str(&p).unwrap_or_default();
        let mut files: Vec<String> = value["files_expected"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_owned))
            .collect();
        files.sort();
        files
    }))
}

/// `(task, data)` of every `verified` event, in order.
fn verifications(
    conn: &rusqlite::Connection,
) -> Result<Vec<(String, serde_json::Value)>, EvalError> {
    let mut stmt = conn
        .prepare(
            "SELECT COALESCE(task_id, ''), data FROM events WHERE kind = 'verified' ORDER BY id",
        )
        .map_err(crate::ledger::LedgerError::from)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(crate::ledger::LedgerError::from)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(crate::ledger::LedgerError::from)?;
    Ok(rows
        .into_iter()
        .map(|(task, data)| (task, serde_json::from_str(&data).unwrap_or_default()))
        .collect())
}

/// What missed the case's expectation, one line each.
fn check(
    case: &Case,
    repeat: &Repeat,
    root: &Path,
    ledger: &mut Ledger,
) -> Result<Vec<String>, EvalError> {
    let expect = &case.expect;
    let mut misses = Vec::new();
    let allowed: Vec<&str> = expect.endings.iter().map(|e| e.as_str()).collect();
    for task in &repeat.tasks {
        if !allowed.contains(&task.state.as_str()) {
            misses.push(format!(
                "{} ended {} ({}), expected {}",
                task.id,
                task.state,
                task.failure_class.as_deref().unwrap_or("no failure class"),
                allowed.join(" or ")
            ));
        }
        if let Some(class) = &expect.failure_class
            && task.state != Ending::Delivered.as_str()
            && task.failure_class.as_ref() != Some(class)
        {
            misses.push(format!(
                "{} failure class {}, expected {class}",
                task.id,
                task.failure_class.as_deref().unwrap_or("none")
            ));
        }
        if let Some(calls) = expect.worker_calls
            && task.worker_calls != u64::from(calls)
        {
            misses.push(format!(
                "{} made {} worker calls, expected {calls}",
                task.id, task.worker_calls
            ));
        }
        if expect.planned && task.planned_files.is_none() {
            misses.push(format!("{} was not explored (no plan stored)", task.id));
        }
    }
    let branches: Vec<String> = ledger
        .read()
        .tasks()?
        .into_iter()
        .filter(|t| t.state == TaskState::Delivered)
        .filter_map(|t| t.branch)
        .collect();
    for file in &expect.files {
        let found = branches
            .iter()
            .any(|b| crate::git::run(root, &["cat-file", "-e", &format!("{b}:{file}")]).is_ok());
        if !found {
            misses.push(format!("no delivered branch holds {file}"));
        }
    }
    for file in &expect.absent {
        if root.join(file).exists() || root.parent().is_some_and(|p| p.join(file).exists()) {
            misses.push(format!("{file} exists outside the worktree"));
        }
    }
    for kind in &expect.events {
        let count: i64 = ledger
            .raw_connection()
            .query_row("SELECT COUNT(*) FROM events WHERE kind = ?1", [kind], |r| {
                r.get(0)
            })
            .map_err(crate::ledger::LedgerError::from)?;
        if count == 0 {
            misses.push(format!("no {kind} event was recorded"));
        }
    }
    for secret in &expect.never_contains {
        for file in leaks(&root.join(".oxi"), secret) {
            misses.push(format!("{} holds a planted secret", file.display()));
        }
    }
    Ok(misses)
}

/// Files under `dir` holding `needle`, worktrees left aside (a worker's own file is left there
/// for a person on purpose; what matters is the ledger, the run directories and the logs).
fn leaks(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if entry.file_name() != "worktrees" {
                found.extend(leaks(&path, needle));
            }
        } else if std::fs::read(&path)
            .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        {
            found.push(path);
        }
    }
    found
}
