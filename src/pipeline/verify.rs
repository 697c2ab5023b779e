//! Verify a run's work: the diff against the base, governance (allowed roots, protected and
//! needs-approval globs, escaping symlinks, the untouched main checkout), secrets in the diff,
//! and the acceptance commands by tier, each with its own timeout, log and time.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Serialize;

use super::attribution::{self, Evidence, MainSnapshot};
use super::ending::{Ending, Outcome, Stop};
use super::execute::Executed;
use super::worktree::Worktree;
use super::{ChangeSummary, Job, elapsed_ms, review};
use crate::clock::now_ms;
use crate::config::{AcceptanceCommand, GovernanceConfig};
use crate::git::{self, GitError};
use crate::ledger::events::{self, Change, GovernanceMemo};
use crate::ledger::{Event, FailureClass, TaskState, TransitionFields, VerifyRecord};
use crate::process::{self, Control, Limits, LineSink, Spawn, StopReason, Stream};
use crate::redact::Redactor;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("governance.{key}: bad glob {glob:?}: {message}")]
    Glob {
        key: &'static str,
        glob: String,
        message: String,
    },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedFile {
    pub path: String,
    /// `A`dded, `M`odified, `D`eleted, `T`ype changed.
    pub status: char,
    pub added: u64,
    pub removed: u64,
}

/// The work of a task branch against its base.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Diff {
    pub files: Vec<ChangedFile>,
    pub lines_added: u64,
    pub lines_removed: u64,
    /// `-U0` patch text (for the secret scan and the reviewer), not serialized.
    #[serde(skip)]
    pub patch: String,
}

impl Diff {
    pub fn changed_lines(&self) -> u64 {
        self.lines_added + self.lines_removed
    }

    pub fn paths(&self) -> Vec<String> {
        self.files.iter().map(|f| f.path.clone()).collect()
    }
}

/// Stages everything in the worktree and diffs it (commits included) against `base`.
pub fn diff(worktree: &Path, base: &str) -> Result<Diff, VerifyError> {
    git::run(worktree, &["add", "-A"])?;
    // One call for both: `--raw` records (":<modes> <shas> <status>\0<path>\0") then
    // `--numstat` records ("<added>\t<removed>\t<path>\0").
    let listing = git::run_raw(
        worktree,
        &[
            "diff",
            "--cached",
            "--no-renames",
            "--raw",
            "--numstat",
            "-z",
            base,
        ],
    )?;
    let mut statuses = std::collections::HashMap::new();
    let mut diff = Diff::default();
    let mut tokens = listing.split(|b| *b == 0).filter(|p| !p.is_empty());
    while let Some(token) = tokens.next() {
        if token.first() == Some(&b':') {
            let status = token
                .rsplit(|b| *b == b' ')
                .next()
                .and_then(|s| s.first())
                .map_or('M', |c| *c as char);
            if let Some(path) = tokens.next() {
                statuses.insert(String::from_utf8_lossy(path).into_owned(), status);
            }
            continue;
        }
        let text = String::from_utf8_lossy(token);
        let mut fields = text.splitn(3, '\t');
        let (Some(added), Some(removed), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        // Binary files show "-".
        let added = added.parse().unwrap_or(0);
        let removed = removed.parse().unwrap_or(0);
        diff.lines_added += added;
        diff.lines_removed += removed;
        diff.files.push(ChangedFile {
            status: statuses.get(path).copied().unwrap_or('M'),
            path: path.to_owned(),
            added,
            removed,
        });
    }
    let patch = git::run_raw(
        worktree,
        &[
            "diff",
            "--cached",
            "--no-renames",
            "-U0",
            "--no-color",
            base,
        ],
    )?;
    diff.patch = String::from_utf8_lossy(&patch).into_owned();
    Ok(diff)
}

/// Where a secret was found in a diff: the file and line, never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretHit {
    pub path: String,
    pub line: u64,
}

/// Added lines of `patch` that contain a secret oxi holds or a token-shaped string.
pub fn secrets_in_patch(patch: &str, redactor: &Redactor) -> Vec<SecretHit> {
    let mut hits = Vec::new();
    let mut path = String::new();
    let mut line_no = 0u64;
    for line in patch.lines() {
        if let Some(rest) = line.strip_prefix("+++ ") {
            path = patch_path(rest);
        } else if let Some(rest) = line.strip_prefix("@@ ") {
            // @@ -a,b +c,d @@
            line_no = rest
                .split_whitespace()
                .find_map(|p| p.strip_prefix('+'))
                .and_then(|p| p.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if let Some(added) = line.strip_prefix('+') {
            if redactor.contains_secret(added) {
                hits.push(SecretHit {
                    path: path.clone(),
                    line: line_no,
                });
            }
            line_no += 1;
        }
    }
    hits
}

/// The path of a patch's `+++ b/<path>` header as the diff's file list names it. Git ends a
/// name holding a space with a tab, and writes one holding a quote, a backslash, a control or
/// (with `core.quotePath`, the default) a non-ASCII byte C-quoted: `"b/caf\303\251.rs"`
/// (undone by gitoxide's `gix-quote`).
fn patch_path(header: &str) -> String {
    let header = header.strip_suffix('\t').unwrap_or(header);
    let name = match gix_quote::ansi_c::undo(header.as_bytes().into()) {
        Ok((name, _)) => String::from_utf8_lossy(&name).into_owned(),
        Err(_) => header.to_owned(),
    };
    match name.strip_prefix("b/") {
        Some(path) => path.to_owned(),
        None => name,
    }
}

/// What governance found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GovernanceReport {
    /// Paths outside the allowed roots (or escaping the worktree through `..` or a symlink).
    pub outside: Vec<String>,
    /// Paths matching a protected glob.
    pub protected: Vec<String>,
    /// Paths matching a needs-approval glob.
    pub needs_approval: Vec<String>,
    /// What the worker changed in the main checkout or among its refs
    /// (`crate::pipeline::attribution`), each with the way back.
    pub main_checkout: Vec<String>,
}

impl GovernanceReport {
    /// Stops the task (`framework_fix_needed`).
    pub fn is_violation(&self) -> bool {
        !self.outside.is_empty() || !self.protected.is_empty() || !self.main_checkout.is_empty()
    }

    /// The memo a person reads: which paths, which trigger.
    pub fn memo(&self) -> String {
        let mut parts = Vec::new();
        for (trigger, paths) in [
            ("outside governance.allowed_roots", &self.outside),
            ("protected (governance.protected)", &self.protected),
            (
                "the worker changed the main checkout or its refs",
                &self.main_checkout,
            ),
            (
                "needs approval (governance.needs_approval)",
                &self.needs_approval,
            ),
        ] {
            if !paths.is_empty() {
                parts.push(format!("{trigger}: {}", paths.join(", ")));
            }
        }
        parts.join("; ")
    }
}

fn globset(key: &'static str, globs: &[String]) -> Result<GlobSet, VerifyError> {
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        builder.add(Glob::new(glob).map_err(|e| VerifyError::Glob {
            key,
            glob: glob.clone(),
            message: e.to_string(),
        })?);
    }
    builder.build().map_err(|e| VerifyError::Glob {
        key,
        glob: globs.join(", "),
        message: e.to_string(),
    })
}

/// Lexically normalizes a repository-relative path; `None` when it climbs out with `..` or is
/// absolute.
fn normalize(path: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// True when `path` (in `worktree`) is a symlink whose target leaves the worktree.
fn symlink_escapes(worktree: &Path, path: &str) -> bool {
    let full = worktree.join(path);
    let Ok(meta) = std::fs::symlink_metadata(&full) else {
        return false;
    };
    if !meta.file_type().is_symlink() {
        return false;
    }
    let Ok(target) = std::fs::read_link(&full) else {
        return true;
    };
    if target.is_absolute() {
        return !target.starts_with(worktree);
    }
    let parent = Path::new(path).parent().unwrap_or(Path::new(""));
    normalize(&parent.join(&target).display().to_string()).is_none()
}

/// Checks every changed path against the governance config.
pub fn governance(
    worktree: &Path,
    diff: &Diff,
    config: &GovernanceConfig,
    main_checkout_changes: Vec<String>,
) -> Result<GovernanceReport, VerifyError> {
    let protected = globset("protected", &config.protected)?;
    let approval = globset("needs_approval", &config.needs_approval)?;
    let roots: Vec<PathBuf> = config
        .allowed_roots
        .iter()
        .filter_map(|r| normalize(r))
        .collect();
    let mut report = GovernanceReport {
        main_checkout: main_checkout_changes,
        ..GovernanceReport::default()
    };
    for file in &diff.files {
        let inside = match normalize(&file.path) {
            None => false,
            Some(p) => {
                roots
                    .iter()
                    .any(|r| r.as_os_str().is_empty() || p.starts_with(r))
                    && !symlink_escapes(worktree, &file.path)
            }
        };
        if !inside {
            report.outside.push(file.path.clone());
        }
        if protected.is_match(&file.path) {
            report.protected.push(file.path.clone());
        }
        if approval.is_match(&file.path) {
            report.needs_approval.push(file.path.clone());
        }
    }
    Ok(report)
}

/// One acceptance command's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CommandResult {
    pub tier: String,
    pub name: String,
    /// `passed`, `failed`, `timed_out` or `error`.
    pub status: &'static str,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub log_path: PathBuf,
    /// The last lines of its output, for the next attempt's prompt.
    #[serde(skip)]
    pub tail: String,
}

impl CommandResult {
    pub fn passed(&self) -> bool {
        self.status == "passed"
    }

    /// A tier whose commands could not be run at all (its log could not be written).
    fn could_not_run(tier: &str, error: &VerifyError) -> Self {
        Self {
            tier: tier.into(),
            name: format!("({tier})"),
            status: "error",
            exit_code: None,
            duration_ms: 0,
            log_path: PathBuf::new(),
            tail: error.to_string(),
        }
    }
}

/// Writes a command's output to its log (capped) and keeps its last lines.
struct LogSink {
    file: Option<std::io::BufWriter<std::fs::File>>,
    written: u64,
    cap: u64,
    tail: VecDeque<String>,
    redactor: Redactor,
}

const LOG_CAP: u64 = 8 << 20;
const TAIL_LINES: usize = 40;

impl LineSink for LogSink {
    fn spawned(&mut self, _pid: u32) -> Result<(), String> {
        Ok(())
    }

    fn line(&mut self, _stream: Stream, line: &[u8], _truncated: bool) -> Control {
        let masked = self.redactor.redact_bytes(line);
        if self.written < self.cap
            && let Some(file) = &mut self.file
        {
            let _ = file.write_all(&masked).and_then(|()| file.write_all(b"\n"));
            self.written += masked.len() as u64 + 1;
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(crate::worker::clip_bytes(&masked, 400));
        Control::Continue
    }
}

/// Where and how acceptance commands run: the same for every tier of a job.
pub struct CommandRun<'a> {
    pub cwd: &'a Path,
    pub env: &'a [(String, String)],
    /// Logs go to `log_dir/verify-<tier>-<n>-<name>.log`.
    pub log_dir: &'a Path,
    /// How long a command gets between its stop signal and its kill.
    pub grace: Duration,
    pub redactor: &'a Redactor,
    pub shutdown: &'a tokio::sync::watch::Receiver<bool>,
}

/// Runs acceptance commands in order (stopping at the first failure), argv-form, each under
/// its timeout.
pub async fn run_commands(
    tier: &str,
    commands: &[AcceptanceCommand],
    run: &CommandRun<'_>,
) -> Result<Vec<CommandResult>, VerifyError> {
    let CommandRun {
        cwd,
        env,
        log_dir,
        grace,
        redactor,
        shutdown,
    } = *run;
    let mut results = Vec::new();
    for (i, command) in commands.iter().enumerate() {
        let log_path = log_dir.join(format!(
            "verify-{tier}-{i}-{}.log",
            crate::pipeline::worktree::slug(&command.name, 30)
        ));
        let file = std::fs::File::create(&log_path).map_err(|source| VerifyError::Io {
            path: log_path.clone(),
            source,
        })?;
        let mut sink = LogSink {
            file: Some(std::io::BufWriter::new(file)),
            written: 0,
            cap: LOG_CAP,
            tail: VecDeque::new(),
            redactor: redactor.clone(),
        };
        let spawn = Spawn {
            argv: command.argv.clone(),
            cwd: cwd.to_path_buf(),
            env: env.to_vec(),
            guard: crate::process::guard::program(),
            // Acceptance commands are the operator's, not the worker's.
            confine: None,
        };
        let timeout = command.timeout.as_duration();
        let limits = Limits {
            wall: timeout,
            stall: timeout,
            grace,
            line_cap: 64 * 1024,
            drain: Duration::from_secs(2),
        };
        let started = Instant::now();
        let outcome = process::supervise(&spawn, &limits, &mut sink, shutdown.clone()).await;
        if let Some(file) = &mut sink.file {
            let _ = file.flush();
        }
        let duration_ms = started.elapsed().as_millis() as u64;
        let (status, exit_code) = match &outcome {
            Ok(f)
                if f.stop == Some(StopReason::WallClock) || f.stop == Some(StopReason::Stalled) =>
            {
                ("timed_out", f.exit_code)
            }
            Ok(f) if f.exit_code == Some(0) => ("passed", Some(0)),
            Ok(f) => ("failed", f.exit_code),
            Err(_) => ("error", None),
        };
        let mut tail: Vec<String> = sink.tail.into_iter().collect();
        if let Err(e) = &outcome {
            tail.push(format!("cannot run {:?}: {e}", command.argv));
        }
        if status == "timed_out" {
            tail.push(format!(
                "(stopped after its timeout of {})",
                command.timeout
            ));
        }
        let result = CommandResult {
            tier: tier.to_owned(),
            name: command.name.clone(),
            status,
            exit_code,
            duration_ms,
            log_path,
            tail: tail.join("\n"),
        };
        let passed = result.passed();
        results.push(result);
        if !passed {
            break;
        }
    }
    Ok(results)
}

/// The environment acceptance commands get: oxi's own, minus GitHub tokens and every
/// variable a worker receives as a secret (model API keys).
pub fn command_env(parent: &[(String, String)], withheld: &[String]) -> Vec<(String, String)> {
    parent
        .iter()
        .filter(|(k, _)| {
            !crate::runner::env::NEVER_PASSED.contains(&k.as_str()) && !withheld.contains(k)
        })
        .cloned()
        .collect()
}

/// What verification found, for the commit and the review.
pub(super) struct Verified {
    pub(super) diff: Diff,
    pub(super) governance: GovernanceReport,
    /// Every acceptance command run (tiers 0 and 1), all passed.
    pub(super) results: Vec<CommandResult>,
    /// Why tier 0 alone sufficed, when it did (see `review::tier0_fast`).
    pub(super) tier0_fast: Option<String>,
}

/// The verify stage: the branch's diff against the base, governance, secrets, then acceptance
/// tiers 0 and 1. Anything short of green ends the job.
pub(super) async fn stage(
    job: &mut Job<'_>,
    tree: &Worktree,
    executed: &Executed,
) -> Result<Verified, Stop> {
    let spec = job.spec;
    job.move_to(
        TaskState::Verifying,
        TransitionFields::default(),
        "worker finished",
        None,
    )?;
    let started = Instant::now();
    let diff = diff(&spec.worktree, &tree.base_commit).map_err(|e| {
        Ending::retry(
            FailureClass::VerifyError,
            format!("could not diff the work: {e}"),
            false,
        )
        .salvage("oxi: salvage (diff failed)")
    })?;
    job.result.delivery = Some(ChangeSummary::from(&diff));
    job.credit(&tree.start_commit);
    if diff.files.is_empty() {
        return Err(Ending::retry(
            FailureClass::NoChanges,
            "The previous attempt said it was done but changed no file. Make the change the task asks for.",
            false,
        )
        .salvage("oxi: nothing to salvage")
        .into());
    }
    let (governance, unattributed) = gates(job, &diff, executed)?;
    let (results, tier0_fast, tier1_skip) = acceptance_tiers(job, &diff).await?;
    let green = results.iter().all(CommandResult::passed);
    let run_id = job.result.run_id.clone();
    job.event(
        Some(&run_id),
        Event::Verified(events::Verified {
            green,
            results: serde_json::to_value(&results).unwrap_or_default(),
            tier1_skipped: tier1_skip,
            // This run's own change; `delivery` is what the branch holds against the base.
            files: job.result.files_changed as u64,
            lines_added: job.result.lines_added,
            lines_removed: job.result.lines_removed,
            paths: job.result.paths.clone(),
            delivery: job.result.delivery.as_ref().map(|d| Change {
                files: d.files as u64,
                lines_added: d.lines_added,
                lines_removed: d.lines_removed,
                paths: d.paths.clone(),
            }),
            protection: serde_json::to_value(&executed.report.protection).unwrap_or_default(),
            main_checkout_unattributed: unattributed,
        }),
    );
    if !green {
        return Err(
            Ending::retry(FailureClass::VerifyFailed, failure_text(&results), false)
                .salvage(format!(
                    "oxi: attempt {} (verification failed; not delivered)",
                    spec.attempt
                ))
                .into(),
        );
    }
    job.result.phases_ms.verify = elapsed_ms(started);
    Ok(Verified {
        diff,
        governance,
        results,
        tier0_fast,
    })
}

/// Governance and the secret scan: a violation stops the task for a person
/// (`framework_fix_needed`), a secret in the diff fails it without committing. Returns the
/// report (its needs-approval paths hold the task after the commit) and the changes to the
/// main checkout not held against the worker.
fn gates(
    job: &mut Job<'_>,
    diff: &Diff,
    executed: &Executed,
) -> Result<(GovernanceReport, Vec<String>), Stop> {
    let config = job.ctx.config;
    let spec = job.spec;
    let repo = &config.repo_root;
    let report = &executed.report;
    let attribution = match (&job.ctx.main_before, MainSnapshot::take(repo)) {
        (Some(before), Some(after)) => {
            let evidence = Evidence {
                worktree: spec.worktree.clone(),
                own_ref: format!("refs/heads/{}", spec.branch),
                files_named: report.files_changed.clone(),
                diff_paths: diff.paths(),
                commits: Evidence::commits_since(&spec.worktree, executed.start_head.as_deref()),
                confined: report
                    .protection
                    .as_ref()
                    .is_some_and(crate::confine::Protection::is_landlock),
            };
            attribution::attribute(repo, before, &after, &evidence)
        }
        _ => attribution::Attribution::default(),
    };
    if !attribution.unattributed.is_empty() {
        tracing::info!(
            "task {}: the main checkout changed during the run, not by the worker (kept, not held against it): {}",
            job.id(),
            attribution.unattributed.join(", ")
        );
    }
    let governance = governance(
        &spec.worktree,
        diff,
        &config.config.governance,
        attribution.worker,
    )
    .map_err(|e| {
        Ending::retry(FailureClass::VerifyError, e.to_string(), false)
            .salvage("oxi: salvage (governance check failed)")
    })?;
    if governance.is_violation() {
        let memo = governance.memo();
        return Err(Ending::new(Outcome::Fail {
            to: TaskState::FrameworkFixNeeded,
            class: FailureClass::Governance,
            detail: memo.clone(),
            why: memo.clone(),
            failure: None,
        })
        .memo(GovernanceMemo::Governance {
            memo: memo.clone(),
            outside: governance.outside.clone(),
            protected: governance.protected.clone(),
            main_checkout: governance.main_checkout.clone(),
        })
        .salvage("oxi: governance stop (not delivered; see the memo)")
        .into());
    }
    let hits = secrets_in_patch(&diff.patch, &job.redactor);
    if !hits.is_empty() {
        let places: Vec<String> = hits
            .iter()
            .map(|h| format!("{}:{}", h.path, h.line))
            .collect();
        let memo = format!(
            "the diff adds a secret or token-shaped string at {}; nothing was committed and the worktree {} is left for a person to inspect",
            places.join(", "),
            spec.worktree.display()
        );
        return Err(Ending::new(Outcome::Fail {
            to: TaskState::Failed,
            class: FailureClass::SecretInDiff,
            detail: memo.clone(),
            why: memo.clone(),
            failure: None,
        })
        .memo(GovernanceMemo::SecretInDiff {
            memo: memo.clone(),
            places,
        })
        .into());
    }
    Ok((governance, attribution.unattributed))
}

/// Acceptance tiers 0 and 1: tier 1 runs when tier 0 passed and it is not skipped (tier 0
/// sufficed, or its timeouts exceed `verify.tier1_time_box`). Returns the results, why tier 0
/// sufficed and why tier 1 was skipped. A tier 0 that cannot run ends the job; a tier 1 that
/// cannot run is a failed result.
async fn acceptance_tiers(
    job: &mut Job<'_>,
    diff: &Diff,
) -> Result<(Vec<CommandResult>, Option<String>, Option<String>), Stop> {
    let config = job.ctx.config;
    let recent_green = job
        .ledger
        .read()
        .last_runs_green(config.config.critic.tier0_fast_after)
        .unwrap_or(false);
    let mut results = acceptance(job, "tier0", &config.config.verify.tier0)
        .await
        .map_err(|e| {
            Ending::retry(FailureClass::VerifyError, e.to_string(), false)
                .salvage("oxi: salvage (verification could not run)")
        })?;
    let tier0_fast = review::tier0_fast(&config.config.critic, recent_green, diff);
    let tier1_skip = match (&tier0_fast, config.config.verify.tier1_time_box) {
        (Some(reason), _) => Some(reason.clone()),
        (None, Some(time_box)) => {
            let total: Duration = config
                .config
                .verify
                .tier1
                .iter()
                .map(|c| c.timeout.as_duration())
                .sum();
            (total > time_box.as_duration()).then(|| {
                format!(
                    "tier1 skipped: its timeouts add up to {} > verify.tier1_time_box ({time_box})",
                    humantime::format_duration(total)
                )
            })
        }
        (None, None) => None,
    };
    if results.iter().all(CommandResult::passed) && tier1_skip.is_none() {
        match acceptance(job, "tier1", &config.config.verify.tier1).await {
            Ok(more) => results.extend(more),
            Err(e) => results.push(CommandResult::could_not_run("tier1", &e)),
        }
    }
    Ok((results, tier0_fast, tier1_skip))
}

/// Tier 2, at the end only (after the review approved): a failure ends the job.
pub(super) async fn tier2(job: &mut Job<'_>) -> Result<(), Stop> {
    let commands = &job.ctx.config.config.verify.tier2;
    if commands.is_empty() {
        return Ok(());
    }
    let tier2 = acceptance(job, "tier2", commands)
        .await
        .unwrap_or_else(|e| vec![CommandResult::could_not_run("tier2", &e)]);
    if !tier2.iter().all(CommandResult::passed) {
        return Err(
            Ending::retry(FailureClass::VerifyFailed, failure_text(&tier2), false)
                .salvage("oxi: salvage")
                .into(),
        );
    }
    Ok(())
}

/// Runs one tier's commands in the worktree, without the workers' secrets and GitHub's token,
/// and records each result.
async fn acceptance(
    job: &mut Job<'_>,
    tier: &str,
    commands: &[AcceptanceCommand],
) -> Result<Vec<CommandResult>, VerifyError> {
    if commands.is_empty() {
        return Ok(Vec::new());
    }
    let config = &job.ctx.config.config;
    let started = Instant::now();
    let withheld: Vec<String> = config
        .workers
        .values()
        .flat_map(|w| w.env.iter().cloned())
        .chain(config.github.as_ref().map(|g| g.token_env.clone()))
        .collect();
    let env = command_env(&job.ctx.parent_env, &withheld);
    let results = run_commands(
        tier,
        commands,
        &CommandRun {
            cwd: &job.spec.worktree,
            env: &env,
            log_dir: &job.result.run_dir,
            grace: config.caps.kill_grace.as_duration(),
            redactor: &job.redactor,
            shutdown: &job.shutdown,
        },
    )
    .await?;
    let ms = elapsed_ms(started);
    job.result.verification.extend(results.iter().map(|r| {
        format!(
            "{} `{}`: {} in {:.1}s",
            r.tier,
            r.name,
            r.status.replace('_', " "),
            r.duration_ms as f64 / 1000.0
        )
    }));
    job.result
        .phases_ms
        .verify_by_tier
        .insert(tier.to_owned(), ms);
    let id = job.id().to_owned();
    let run_id = job.result.run_id.clone();
    let now = now_ms();
    let write = job.ledger.write(|q| {
        for r in &results {
            let log = r.log_path.display().to_string();
            q.insert_verify_result(&VerifyRecord {
                run_id: &run_id,
                task_id: Some(&id),
                tier: &r.tier,
                name: &r.name,
                status: r.status,
                exit_code: r.exit_code,
                duration_ms: r.duration_ms,
                log_path: Some(&log),
                at_ms: now,
            })?;
        }
        Ok(())
    });
    if let Err(e) = write {
        tracing::warn!("task {id}: could not record verification: {e}");
    }
    Ok(results)
}

/// What the next attempt's prompt says about the commands that failed.
fn failure_text(results: &[CommandResult]) -> String {
    results
        .iter()
        .filter(|r| !r.passed())
        .map(|r| {
            format!(
                "Acceptance command {:?} ({}) {} (exit {}):\n{}",
                r.name,
                r.tier,
                r.status.replace('_', " "),
                r.exit_code.map_or("-".to_owned(), |c| c.to_string()),
                r.tail
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_of_outside_protected_and_main_checkout_is_a_violation_alone() {
        let clean = GovernanceReport::default();
        assert!(!clean.is_violation());
        // Needing approval holds the task for a person; it is not a violation.
        let approval = GovernanceReport {
            needs_approval: vec!["migrations/0001.sql".into()],
            ..GovernanceReport::default()
        };
        assert!(!approval.is_violation());
        for report in [
            GovernanceReport {
                outside: vec!["../etc/passwd".into()],
                ..GovernanceReport::default()
            },
            GovernanceReport {
                protected: vec![".github/workflows/ci.yml".into()],
                ..GovernanceReport::default()
            },
            GovernanceReport {
                main_checkout: vec!["README.md changed in the main checkout".into()],
                ..GovernanceReport::default()
            },
        ] {
            assert!(report.is_violation(), "{report:?}");
        }
    }

    #[test]
    fn a_diff_counts_added_and_removed_lines_and_lists_its_paths_in_order() {
        let file = |path: &str| ChangedFile {
            path: path.into(),
            status: 'M',
            added: 0,
            removed: 0,
        };
        let d = Diff {
            files: vec![file("src/b.rs"), file("docs/a.md")],
            lines_added: 7,
            lines_removed: 3,
            patch: String::new(),
        };
        assert_eq!(d.changed_lines(), 10);
        assert_eq!(d.paths(), ["src/b.rs", "docs/a.md"]);
    }

    #[test]
    fn secret_hits_name_file_and_line_only() {
        let patch = "diff --git a/src/x.rs b/src/x.rs\n--- a/src/x.rs\n+++ b/src/x.rs\n@@ -3,0 +4,2 @@\n+let a = 1;\n+let key = \"my-honeytoken-value\";\n";
        let r = Redactor::new(["my-honeytoken-value"]);
        assert_eq!(
            secrets_in_patch(patch, &r),
            vec![SecretHit {
                path: "src/x.rs".into(),
                line: 5
            }]
        );
    }

    #[test]
    fn secret_hits_name_paths_with_spaces_quotes_and_non_ascii_as_the_file_list_does() {
        let patch = "+++ b/new file.rs\t\n@@ -0,0 +1 @@\n+k = \"my-honeytoken-value\"\n\
                     +++ \"b/caf\\303\\251 \\\"q\\\".rs\"\n@@ -0,0 +7 @@\n+my-honeytoken-value\n\
                     +++ /dev/null\n";
        let r = Redactor::new(["my-honeytoken-value"]);
        let paths: Vec<(String, u64)> = secrets_in_patch(patch, &r)
            .into_iter()
            .map(|h| (h.path, h.line))
            .collect();
        assert_eq!(
            paths,
            [
                ("new file.rs".to_owned(), 1),
                ("caf\u{e9} \"q\".rs".to_owned(), 7)
            ]
        );
        assert_eq!(
            patch_path("\"b/a\\tb\\nc\\\\d\\re\\007\""),
            "a\tb\nc\\d\re\u{7}"
        );
    }

    #[test]
    fn parent_dirs_that_climb_out_are_outside() {
        assert_eq!(normalize("a/../b"), Some(PathBuf::from("b")));
        assert_eq!(normalize("../b"), None);
        assert_eq!(normalize("/etc/passwd"), None);
    }

    #[test]
    fn a_symlink_escapes_when_its_target_leaves_the_worktree() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let wt = dir.path();
        std::fs::create_dir_all(wt.join("src/deep")).unwrap();
        std::fs::write(wt.join("src/a.rs"), "a").unwrap();
        symlink("a.rs", wt.join("src/rel_in")).unwrap();
        symlink("../../README.md", wt.join("src/deep/rel_up_in")).unwrap();
        symlink("../../x", wt.join("src/rel_out")).unwrap();
        symlink(wt.join("src/a.rs"), wt.join("src/abs_in")).unwrap();
        symlink(outside.path().join("x"), wt.join("src/abs_out")).unwrap();
        symlink("/etc/passwd", wt.join("src/etc")).unwrap();
        for (path, escapes) in [
            ("src/a.rs", false),
            ("src/missing.rs", false),
            ("src/rel_in", false),
            ("src/deep/rel_up_in", false),
            ("src/abs_in", false),
            ("src/rel_out", true),
            ("src/abs_out", true),
            ("src/etc", true),
        ] {
            assert_eq!(symlink_escapes(wt, path), escapes, "{path}");
        }
    }

    fn changed(paths: &[&str]) -> Diff {
        Diff {
            files: paths
                .iter()
                .map(|p| ChangedFile {
                    path: (*p).into(),
                    status: 'M',
                    added: 1,
                    removed: 0,
                })
                .collect(),
            lines_added: paths.len() as u64,
            lines_removed: 0,
            patch: String::new(),
        }
    }

    fn rules(roots: &[&str], protected: &[&str], approval: &[&str]) -> GovernanceConfig {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        GovernanceConfig {
            allowed_roots: owned(roots),
            protected: owned(protected),
            needs_approval: owned(approval),
            ..GovernanceConfig::default()
        }
    }

    #[test]
    fn governance_sorts_each_path_into_outside_protected_and_needs_approval() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("src/link")).unwrap();
        let diff = changed(&[
            "src/a.rs",
            "src/../docs/b.md",
            "../escape.rs",
            "src/link",
            "src/ci/deploy.yml",
            "src/db/migrations/0001.sql",
        ]);
        let config = rules(
            &["src/", "./tests"],
            &["src/ci/**"],
            &["src/db/migrations/**"],
        );
        let report = governance(dir.path(), &diff, &config, Vec::new()).unwrap();
        assert_eq!(
            report.outside,
            ["src/../docs/b.md", "../escape.rs", "src/link"]
        );
        assert_eq!(report.protected, ["src/ci/deploy.yml"]);
        assert_eq!(report.needs_approval, ["src/db/migrations/0001.sql"]);
        assert!(report.main_checkout.is_empty());
        assert!(report.is_violation());
    }

    #[test]
    fn the_whole_repository_as_root_lets_every_relative_path_in_and_main_checkout_changes_through()
    {
        let dir = tempfile::tempdir().unwrap();
        let diff = changed(&["src/a.rs", "README.md", "/etc/passwd"]);
        let report = governance(dir.path(), &diff, &rules(&["."], &[], &[]), Vec::new()).unwrap();
        assert_eq!(report.outside, ["/etc/passwd"]);
        let clean = changed(&["src/a.rs", "README.md"]);
        let report = governance(dir.path(), &clean, &rules(&["."], &[], &[]), Vec::new()).unwrap();
        assert!(!report.is_violation(), "{report:?}");
        let moved = vec!["main moved: git update-ref refs/heads/main abc".to_owned()];
        let report =
            governance(dir.path(), &clean, &rules(&["."], &[], &[]), moved.clone()).unwrap();
        assert_eq!(report.main_checkout, moved);
        assert!(report.is_violation());
    }

    #[test]
    fn the_diff_stages_everything_and_reads_status_counts_and_patch_against_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let git = |args: &[&str]| git::run_as_tester(&root, args);
        git(&["init", "-q", "-b", "main"]);
        std::fs::write(root.join("kept.txt"), "one\ntwo\nthree\n").unwrap();
        std::fs::write(root.join("gone.txt"), "a\nb\n").unwrap();
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "base"]);
        let base = git(&["rev-parse", "HEAD"]).trim().to_owned();
        // A committed change, then a deletion, a file never added and a binary file.
        std::fs::write(root.join("kept.txt"), "one\n2\nthree\nfour\n").unwrap();
        git(&["commit", "-q", "-am", "work"]);
        std::fs::remove_file(root.join("gone.txt")).unwrap();
        std::fs::write(
            root.join("new file.rs"),
            "fn a() {}\nfn b() {}\nfn c() {}\n",
        )
        .unwrap();
        std::fs::write(root.join("blob.bin"), [0u8, 1, 2, 0, 255]).unwrap();
        std::fs::write(root.join("caf\u{e9}.rs"), "my-honeytoken-value\n").unwrap();

        let d = diff(&root, &base).unwrap();
        let files: Vec<(&str, char, u64, u64)> = d
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.status, f.added, f.removed))
            .collect();
        assert_eq!(
            files,
            [
                ("blob.bin", 'A', 0, 0),
                ("caf\u{e9}.rs", 'A', 1, 0),
                ("gone.txt", 'D', 0, 2),
                ("kept.txt", 'M', 2, 1),
                ("new file.rs", 'A', 3, 0),
            ]
        );
        assert_eq!((d.lines_added, d.lines_removed), (6, 3));
        // The secret scan names the file as the file list does, though git quotes it.
        let hits = secrets_in_patch(&d.patch, &Redactor::new(["my-honeytoken-value"]));
        assert_eq!(
            hits,
            [SecretHit {
                path: "caf\u{e9}.rs".into(),
                line: 1
            }]
        );
        assert!(
            d.patch
                .contains("+++ b/new file.rs\t\n@@ -0,0 +1,3 @@\n+fn a() {}\n"),
            "{}",
            d.patch
        );
        assert!(
            d.patch
                .contains("@@ -2 +2 @@ one\n-two\n+2\n@@ -3,0 +4 @@ three\n+four\n"),
            "no context lines: {}",
            d.patch
        );
        assert!(diff(&root, "no-such-base").is_err());
    }

    #[test]
    fn the_memo_names_each_trigger_with_its_paths_in_a_fixed_order() {
        assert_eq!(GovernanceReport::default().memo(), "");
        let every = GovernanceReport {
            outside: vec!["../x".into(), "/etc/y".into()],
            protected: vec![".github/ci.yml".into()],
            needs_approval: vec!["db/1.sql".into()],
            main_checkout: vec!["README.md changed".into()],
        };
        assert_eq!(
            every.memo(),
            "outside governance.allowed_roots: ../x, /etc/y; \
             protected (governance.protected): .github/ci.yml; \
             the worker changed the main checkout or its refs: README.md changed; \
             needs approval (governance.needs_approval): db/1.sql"
        );
        let approval = GovernanceReport {
            needs_approval: vec!["db/1.sql".into()],
            ..GovernanceReport::default()
        };
        assert_eq!(
            approval.memo(),
            "needs approval (governance.needs_approval): db/1.sql"
        );
    }

    #[test]
    fn acceptance_commands_never_get_githubs_tokens_or_the_workers_secrets() {
        let parent: Vec<(String, String)> = [
            ("PATH", "/bin"),
            ("GITHUB_TOKEN", "g"),
            ("GH_TOKEN", "h"),
            ("GH_ENTERPRISE_TOKEN", "e"),
            ("ANTHROPIC_API_KEY", "k"),
            ("MY_GITHUB_PAT", "p"),
            ("HOME", "/h"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let withheld = ["ANTHROPIC_API_KEY".to_owned(), "MY_GITHUB_PAT".to_owned()];
        let env = command_env(&parent, &withheld);
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["PATH", "HOME"]);
        assert_eq!(env[0].1, "/bin");
    }

    fn result(tier: &str, name: &str, status: &'static str, code: Option<i32>) -> CommandResult {
        CommandResult {
            tier: tier.into(),
            name: name.into(),
            status,
            exit_code: code,
            duration_ms: 5,
            log_path: PathBuf::from("run/verify.log"),
            tail: format!("{name} said why"),
        }
    }

    #[test]
    fn the_next_attempt_reads_each_failed_command_with_its_tier_status_exit_and_tail() {
        let results = [
            result("tier0", "fmt", "passed", Some(0)),
            result("tier0", "test", "failed", Some(101)),
            result("tier1", "slow", "timed_out", None),
        ];
        assert!(results[0].passed());
        assert!(!results[1].passed() && !results[2].passed());
        assert_eq!(
            failure_text(&results),
            "Acceptance command \"test\" (tier0) failed (exit 101):\ntest said why\n\n\
             Acceptance command \"slow\" (tier1) timed out (exit -):\nslow said why"
        );
        assert_eq!(failure_text(&results[..1]), "");
    }

    #[test]
    fn a_tier_that_could_not_run_is_an_error_result_saying_why() {
        let error = VerifyError::Io {
            path: PathBuf::from("/run/verify-tier1-0-x.log"),
            source: std::io::Error::other("disk full"),
        };
        let r = CommandResult::could_not_run("tier1", &error);
        assert_eq!(
            (r.tier.as_str(), r.name.as_str(), r.status, r.exit_code),
            ("tier1", "(tier1)", "error", None)
        );
        assert_eq!(
            (r.duration_ms, r.log_path.as_os_str().is_empty()),
            (0, true)
        );
        assert_eq!(r.tail, "cannot write /run/verify-tier1-0-x.log: disk full");
        assert!(!r.passed());
    }

    #[test]
    fn a_commands_log_is_masked_and_capped_and_its_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("verify.log");
        let first = "key s3cret-value";
        // The cap falls exactly after the first two lines: a line starts only below it.
        let cap = ("key [REDACTED]\n".len() + "line 1\n".len()) as u64;
        let mut sink = LogSink {
            file: Some(std::io::BufWriter::new(
                std::fs::File::create(&path).unwrap(),
            )),
            written: 0,
            cap,
            tail: VecDeque::new(),
            redactor: Redactor::new(["s3cret-value"]),
        };
        assert_eq!(sink.spawned(7), Ok(()));
        assert!(matches!(
            sink.line(Stream::Stdout, first.as_bytes(), false),
            Control::Continue
        ));
        for i in 1..45 {
            let line = format!("line {i}");
            assert!(matches!(
                sink.line(Stream::Stderr, line.as_bytes(), false),
                Control::Continue
            ));
        }
        assert_eq!(sink.written, cap);
        drop(sink.file.take());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "key [REDACTED]\nline 1\n"
        );
        let tail: Vec<String> = sink.tail.into_iter().collect();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail[0], "line 5");
        assert_eq!(tail[TAIL_LINES - 1], "line 44");
    }

    fn sh(name: &str, script: &str, timeout: Duration) -> AcceptanceCommand {
        AcceptanceCommand {
            name: name.into(),
            argv: vec!["sh".into(), "-c".into(), script.into()],
            timeout: crate::config::HumanDuration(timeout),
        }
    }

    /// Runs `commands` as tier0 in `dir`, logs in `dir/logs`, with `GREETING` set.
    async fn run_in(
        dir: &Path,
        commands: &[AcceptanceCommand],
    ) -> Result<Vec<CommandResult>, VerifyError> {
        let env = vec![
            ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
            ("GREETING".to_owned(), "hello".to_owned()),
        ];
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let redactor = Redactor::new(["s3cret-value"]);
        let run = CommandRun {
            cwd: dir,
            env: &env,
            log_dir: &dir.join("logs"),
            grace: Duration::from_millis(200),
            redactor: &redactor,
            shutdown: &shutdown,
        };
        run_commands("tier0", commands, &run).await
    }

    #[tokio::test]
    async fn commands_run_in_order_until_the_first_failure_each_with_its_log_status_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("logs")).unwrap();
        let minute = Duration::from_secs(60);
        let results = run_in(
            &root,
            &[
                sh(
                    "say hi",
                    "echo $GREETING from $(pwd); echo s3cret-value; printf '%02000d\\n' 0",
                    minute,
                ),
                sh("fail/fast", "echo broke >&2; exit 3", minute),
                sh("never", "touch never-ran", minute),
            ],
        )
        .await
        .unwrap();
        let seen: Vec<(&str, &str, &str, Option<i32>)> = results
            .iter()
            .map(|r| (r.tier.as_str(), r.name.as_str(), r.status, r.exit_code))
            .collect();
        assert_eq!(
            seen,
            [
                ("tier0", "say hi", "passed", Some(0)),
                ("tier0", "fail/fast", "failed", Some(3)),
            ]
        );
        assert!(!root.join("never-ran").exists());
        assert_eq!(
            results[0].log_path,
            root.join("logs/verify-tier0-0-say-hi.log")
        );
        assert_eq!(
            std::fs::read_to_string(&results[0].log_path).unwrap(),
            // A long line (a stack trace, a minified file) reaches the log whole.
            format!(
                "hello from {}\n[REDACTED]\n{}\n",
                root.display(),
                "0".repeat(2000)
            )
        );
        assert_eq!(
            results[1].log_path,
            root.join("logs/verify-tier0-1-fail-fast.log")
        );
        assert_eq!(results[1].tail, "broke");
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_stopped_and_one_that_cannot_start_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("logs")).unwrap();
        let hung = run_in(
            &root,
            &[sh(
                "hang",
                "echo started; exec sleep 30",
                Duration::from_secs(1),
            )],
        )
        .await
        .unwrap();
        assert_eq!((hung[0].status, hung[0].exit_code), ("timed_out", None));
        assert_eq!(hung[0].tail, "started\n(stopped after its timeout of 1s)");
        assert!(hung[0].duration_ms < 30_000, "{}", hung[0].duration_ms);

        let missing = AcceptanceCommand {
            name: "missing".into(),
            argv: vec!["/no/such/program".into()],
            timeout: crate::config::HumanDuration(Duration::from_secs(60)),
        };
        let error = run_in(
            &root,
            &[
                missing.clone(),
                sh("after", "true", Duration::from_secs(60)),
            ],
        )
        .await
        .unwrap();
        assert_eq!(error.len(), 1, "the first error stops the tier");
        assert_eq!((error[0].status, error[0].exit_code), ("error", None));
        assert!(
            error[0]
                .tail
                .starts_with("cannot run [\"/no/such/program\"]: "),
            "{}",
            error[0].tail
        );

        let unwritable = run_in(&root.join("nowhere"), &[missing]).await.unwrap_err();
        assert!(
            unwritable.to_string().starts_with(&format!(
                "cannot write {}",
                root.join("nowhere/logs/verify-tier0-0-missing.log")
                    .display()
            )),
            "{unwritable}"
        );
    }

    #[test]
    fn a_bad_governance_glob_is_an_error_naming_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let err = governance(
            dir.path(),
            &changed(&["a"]),
            &rules(&["."], &["src/[a"], &[]),
            Vec::new(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("governance.protected: bad glob \"src/[a\""),
            "{err}"
        );
    }
}
