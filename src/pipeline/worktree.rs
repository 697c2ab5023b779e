//! Git worktrees for task runs: one per attempt under `.oxi/worktrees/`, on the task's branch
//! `oxi/<task-id>-<slug>`, started from the base branch. A retry continues on the branch, so the
//! previous attempt's work is never thrown away; clean-up commits anything uncommitted before
//! removing a worktree, so no work that is not on a branch is ever deleted.
//!
//! What an attempt left without delivering (salvage commits, a worker's own commits) is folded
//! into the one commit oxi makes on delivery ([`commit_delivery`]): the delivered branch is the
//! base (or the last commit oxi verified) plus oxi's commit with its trailers, and each run is
//! credited with its own change, the worktree against [`Worktree::start_commit`].

use std::path::{Path, PathBuf};

use std::time::Instant;

use super::ending::{Ending, Outcome, Stop};
use super::{Job, attribution, elapsed_ms};
use crate::git::{self, GitError};
use crate::ledger::events::GovernanceMemo;
use crate::ledger::{FailureClass, Ledger, LedgerError, TaskRow, TaskState};
use crate::runner::PreparedRun;

/// Longest slug taken from a title.
const SLUG_MAX: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum WorktreeError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("base branch {branch:?} does not exist in {repo}; set project.base_branch in oxi.toml")]
    NoBase { branch: String, repo: String },
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Lower-case ASCII letters, digits and single dashes: nothing git, a shell or a URL treats
/// specially, whatever the roadmap says.
pub fn slug(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= max {
            break;
        }
    }
    out.trim_matches('-').to_owned()
}

/// The branch for a task: `oxi/<id>-<slug of title>`, bounded in length.
pub fn branch_name(task_id: &str, title: &str) -> String {
    let id = slug(task_id, 24);
    let id = if id.is_empty() { "task".to_owned() } else { id };
    let title = slug(title, SLUG_MAX);
    if title.is_empty() {
        format!("oxi/{id}")
    } else {
        format!("oxi/{id}-{title}")
    }
}

/// A worktree ready for a run.
#[derive(Debug, Clone)]
pub struct Worktree {
    pub branch: String,
    /// The base-branch commit the task branch started from (its diff base).
    pub base_commit: String,
    /// The branch head this attempt started from: `base_commit` for a first attempt, the
    /// earlier attempts' work for a retry. This run's own change is the diff against it.
    pub start_commit: String,
}

fn path_str(path: &Path) -> String {
    path.display().to_string()
}

/// The commit `rev` names, if any.
pub fn resolve(repo: &Path, rev: &str) -> Option<String> {
    git::run(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
    )
    .ok()
    .filter(|s| !s.is_empty())
}

/// Serializes changes to the repository's worktree list within this process: concurrent
/// `git worktree add/remove` in one repository race on git's own lock files.
static REPO_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn repo_lock() -> std::sync::MutexGuard<'static, ()> {
    REPO_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Creates the worktree for one attempt. An existing directory at `path` (left by a crash) is
/// retired first, its uncommitted work committed onto its branch. A new branch starts from
/// `start_from` (a delivered dependency's commit, when stacking) or the base branch, and the
/// diff base is taken from the same place.
pub fn prepare(
    repo: &Path,
    path: &Path,
    branch: &str,
    base_branch: &str,
    start_from: Option<&str>,
) -> Result<Worktree, WorktreeError> {
    let start = start_from.unwrap_or(base_branch);
    let base_head = resolve(repo, start).ok_or_else(|| WorktreeError::NoBase {
        branch: start.to_owned(),
        repo: path_str(repo),
    })?;
    if path.exists() {
        retire(repo, path, "oxi: salvage work left by an interrupted run")?;
    }
    // (`retire` takes the lock itself; it is not re-entrant.)
    let _guard = repo_lock();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| WorktreeError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let existing = resolve(repo, &format!("refs/heads/{branch}"));
    // A worktree directory deleted by hand leaves a stale registration that blocks `add`, and
    // another process may hold one of git's locks for a moment: prune, wait, try once more.
    let add = |args: &[&str]| -> Result<(), GitError> {
        git::run(repo, args).map(|_| ()).or_else(|_| {
            git::run(repo, &["worktree", "prune"])?;
            std::thread::sleep(std::time::Duration::from_millis(200));
            git::run(repo, args).map(|_| ())
        })
    };
    let (base_commit, start_commit) = match existing {
        Some(head) => {
            add(&["worktree", "add", &path_str(path), branch])?;
            let base = git::run(repo, &["merge-base", &base_head, branch])?;
            (base, head)
        }
        None => {
            add(&["worktree", "add", "-b", branch, &path_str(path), &base_head])?;
            (base_head.clone(), base_head)
        }
    };
    Ok(Worktree {
        branch: branch.to_owned(),
        base_commit,
        start_commit,
    })
}

/// git arguments that supply an identity only when the user has none configured, so oxi's
/// commits work on a fresh machine and otherwise carry the user's identity.
fn identity_args(dir: &Path) -> Vec<String> {
    let configured =
        git::run(dir, &["config", "--get-regexp", r"^user\.(name|email)$"]).unwrap_or_default();
    let mut args = Vec::new();
    if !configured.lines().any(|l| l.starts_with("user.name ")) {
        args.extend(["-c".to_owned(), "user.name=oxi".to_owned()]);
    }
    if !configured.lines().any(|l| l.starts_with("user.email ")) {
        args.extend(["-c".to_owned(), "user.email=oxi@localhost".to_owned()]);
    }
    args
}

/// True when the worktree has changes not committed (tracked or untracked).
pub fn is_dirty(dir: &Path) -> Result<bool, GitError> {
    Ok(!git::run(dir, &["status", "--porcelain", "--untracked-files=all"])?.is_empty())
}

/// Stages everything and commits with `message`; returns the new HEAD, or `None` when there
/// was nothing to commit.
pub fn commit_all(dir: &Path, message: &str) -> Result<Option<String>, GitError> {
    git::run(dir, &["add", "-A"])?;
    if git::run(dir, &["diff", "--cached", "--quiet"]).is_ok() {
        return Ok(None);
    }
    commit_staged(dir, &[], message).map(Some)
}

/// Commits what is staged and returns the new head. `extra` goes before `-m` (such as
/// `--allow-empty`).
fn commit_staged(dir: &Path, extra: &[&str], message: &str) -> Result<String, GitError> {
    let mut args = vec!["commit", "-q"];
    args.extend_from_slice(extra);
    args.extend(["-m", message]);
    if git::run(dir, &args).is_err() {
        // Most often a machine with no identity configured: supply oxi's and try again (a
        // second failure, e.g. a hook refusing, is reported as is).
        let mut with_identity = identity_args(dir);
        with_identity.extend(args.iter().map(|a| (*a).to_owned()));
        let refs: Vec<&str> = with_identity.iter().map(String::as_str).collect();
        git::run(dir, &refs)?;
    }
    git::run(dir, &["rev-parse", "HEAD"])
}

/// The trailer every commit oxi delivers carries (with `Oxi-Task`, `Oxi-Attempt`, `Oxi-Worker`).
pub const RUN_TRAILER: &str = "Oxi-Run";

/// The newest commit on the branch, above `base`, that oxi made for verified work (it carries
/// an `Oxi-Run` trailer): already delivered, or held for approval, and possibly pushed, so it
/// is never rewritten. `base` when there is none.
fn last_oxi_commit(dir: &Path, base: &str) -> Result<String, GitError> {
    let format = format!("--format=%H %(trailers:key={RUN_TRAILER},valueonly,separator=%x2c)");
    let log = git::run(
        dir,
        &["log", "--first-parent", &format, &format!("{base}..HEAD")],
    )?;
    Ok(log
        .lines()
        .find_map(|line| {
            let (sha, runs) = line.split_once(' ')?;
            (!runs.trim().is_empty()).then(|| sha.to_owned())
        })
        .unwrap_or_else(|| base.to_owned()))
}

/// Commits the verified work for delivery and returns the commit. Everything since the last
/// commit oxi made for verified work (or since `base`) that was never delivered — salvage
/// commits of failed attempts, commits a worker made itself — is folded into this one commit
/// with `message` (its trailers), so what is delivered is always oxi's commit, also when this
/// attempt changed nothing on top of an earlier one's work. The index must hold the work
/// (`verify::diff` staged it).
pub fn commit_delivery(dir: &Path, base: &str, message: &str) -> Result<String, GitError> {
    let keep = last_oxi_commit(dir, base)?;
    // `--soft`: the index (the verified tree) and the files stay as they are; only the branch
    // moves back, past commits that were never delivered.
    git::run(dir, &["reset", "-q", "--soft", &keep])?;
    commit_staged(dir, &["--allow-empty"], message)
}

/// Removes a worktree, committing any uncommitted work onto its branch first (`message`).
/// The branch is kept.
pub fn retire(repo: &Path, path: &Path, message: &str) -> Result<(), WorktreeError> {
    let _guard = repo_lock();
    if path.join(".git").exists() && is_dirty(path).unwrap_or(false) {
        commit_all(path, message)?;
    }
    if git::run(repo, &["worktree", "remove", "--force", &path_str(path)]).is_err() {
        // Not a registered worktree (a stray directory): only remove it when it holds nothing.
        if path.exists() && std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none()) {
            let _ = std::fs::remove_dir(path);
        }
        let _ = git::run(repo, &["worktree", "prune"]);
    }
    Ok(())
}

/// Adds a worktree at `path` with `commit` checked out and no branch (a shadow run's sibling:
/// nothing it does can reach a branch). A directory left there by a crash is discarded first.
pub(crate) fn add_detached(repo: &Path, path: &Path, commit: &str) -> Result<(), WorktreeError> {
    if path.exists() {
        discard(repo, path);
    }
    let _guard = repo_lock();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| WorktreeError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    git::run(
        repo,
        &["worktree", "add", "--detach", &path_str(path), commit],
    )?;
    Ok(())
}

/// Removes a detached worktree and everything in it, unsaved: its work is never delivered.
pub(crate) fn discard(repo: &Path, path: &Path) {
    let _guard = repo_lock();
    if git::run(repo, &["worktree", "remove", "--force", &path_str(path)]).is_err() {
        let _ = std::fs::remove_dir_all(path);
        let _ = git::run(repo, &["worktree", "prune"]);
    }
}

/// Removes a worktree whose work is all committed (no dirtiness check needed).
pub fn remove_clean(repo: &Path, path: &Path) -> Result<(), GitError> {
    let _guard = repo_lock();
    git::run(repo, &["worktree", "remove", &path_str(path)]).map(|_| ())
}

/// Discards uncommitted changes (used after a read-only reviewer run that edited anyway).
pub fn discard_changes(dir: &Path) -> Result<(), GitError> {
    git::run(dir, &["reset", "-q", "--hard"])?;
    git::run(dir, &["clean", "-q", "-fd"])?;
    Ok(())
}

/// The worktree path for an attempt.
pub fn worktree_path(state_dir: &Path, task_id: &str, attempt: u32) -> PathBuf {
    let id = slug(task_id, 24);
    state_dir.join("worktrees").join(format!("{id}-a{attempt}"))
}

/// The commit a task stacked on `dep` starts from: the dependency's delivered commit, else its
/// branch's tip.
pub(crate) fn stacked_start(
    ledger: &Ledger,
    by_id: &std::collections::HashMap<&str, &TaskRow>,
    dep: &str,
) -> Result<Option<String>, LedgerError> {
    if let Some(commit) = ledger.read().delivered_commit(dep)? {
        return Ok(Some(commit));
    }
    Ok(by_id
        .get(dep)
        .and_then(|d| d.branch.clone())
        .map(|branch| format!("refs/heads/{branch}")))
}

/// The worktree stage: the attempt's worktree on the task branch, recorded on the task. A
/// worktree that cannot be made closes the admitted run unstarted and fails the attempt.
pub(super) fn stage(job: &mut Job<'_>, prepared: &PreparedRun<'_>) -> Result<Worktree, Stop> {
    let config = job.ctx.config;
    let spec = job.spec;
    let started = Instant::now();
    let tree = match prepare(
        &config.repo_root,
        &spec.worktree,
        &spec.branch,
        &config.config.project.base_branch,
        spec.start_from.as_deref(),
    ) {
        Ok(tree) => tree,
        Err(e) => {
            let detail = format!("could not create the worktree: {e}");
            prepared.abandon(&mut job.ledger, &detail)?;
            job.result.classification = Some("worker_error".to_owned());
            return Err(Ending::retry(FailureClass::WorktreeFailed, detail, false).into());
        }
    };
    job.result.phases_ms.worktree = elapsed_ms(started);
    let (id, branch, base) = (
        job.id().to_owned(),
        tree.branch.clone(),
        tree.base_commit.clone(),
    );
    job.ledger
        .write(|q| q.set_task_branch(&id, &branch, &base))?;
    Ok(tree)
}

/// Stops the task (to `to`) when a run changed its worktree's git metadata. No git may run in
/// that worktree then (not even to salvage it): it could commit onto another branch or run
/// hooks the worker planted.
pub(super) fn untouched(
    job: &Job<'_>,
    anchor: &attribution::WorktreeAnchor,
    who: &str,
    to: TaskState,
) -> Result<(), Stop> {
    let tampered = anchor.changed();
    if tampered.is_empty() {
        return Ok(());
    }
    let memo = format!(
        "the {who} changed its worktree's git metadata ({}); oxi ran no git there and left {} for a person to inspect",
        tampered.join(", "),
        job.spec.worktree.display()
    );
    let data = GovernanceMemo::WorktreeMetadata {
        memo: memo.clone(),
        paths: tampered,
    };
    Err(Ending::new(Outcome::Fail {
        to,
        class: FailureClass::Governance,
        detail: memo.clone(),
        why: memo.clone(),
        failure: Some(memo),
    })
    .memo(data)
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_folds_undelivered_commits_and_never_rewrites_a_verified_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let git = |args: &[&str]| git::run(root, args).unwrap();
        git(&["init", "-q", "-b", "main"]);
        git(&["config", "user.name", "t"]);
        git(&["config", "user.email", "t@t"]);
        let commit = |file: &str, message: &str| {
            std::fs::write(root.join(file), file).unwrap();
            git(&["add", "-A"]);
            git(&["commit", "-q", "-m", message]);
            git(&["rev-parse", "HEAD"])
        };
        let base = commit("base.txt", "base");
        let verified = commit("a.txt", "T-1: first\n\nOxi-Task: T-1\nOxi-Run: r1\n");
        commit("b.txt", "oxi: attempt 2 ended transient (not delivered)");
        commit("c.txt", "a commit the worker made");
        std::fs::write(root.join("d.txt"), "d").unwrap();
        git(&["add", "-A"]);
        let delivered =
            commit_delivery(root, &base, "T-1: first\n\nOxi-Task: T-1\nOxi-Run: r3\n").unwrap();
        // One commit of oxi's on the verified one, holding everything since it.
        assert_eq!(git(&["rev-parse", &format!("{delivered}^")]), verified);
        assert_eq!(
            git(&["diff", "--name-only", &verified, &delivered]),
            "b.txt\nc.txt\nd.txt"
        );
        assert_eq!(last_oxi_commit(root, &base).unwrap(), delivered);
        // Nothing new on top of a verified commit: still a commit of oxi's (empty).
        let again = commit_delivery(root, &base, "T-1: first\n\nOxi-Run: r4\n").unwrap();
        assert_eq!(git(&["rev-parse", &format!("{again}^")]), delivered);
        // With no verified commit, everything since the base is folded.
        git(&["checkout", "-q", "-b", "other", &base]);
        commit("e.txt", "oxi: salvage");
        let folded = commit_delivery(root, &base, "T-2: x\n\nOxi-Run: r5\n").unwrap();
        assert_eq!(git(&["rev-parse", &format!("{folded}^")]), base);
    }

    #[test]
    fn branch_names_are_safe_and_bounded() {
        assert_eq!(
            branch_name("T0-104", "PR-overlap gate: don't ship conflicts!"),
            "oxi/t0-104-pr-overlap-gate-don-t-ship-conflicts"
        );
        assert_eq!(
            branch_name("T1-1", "$(rm -rf /); `echo` ~/.. @{u} ^HEAD: *?[x]"),
            "oxi/t1-1-rm-rf-echo-u-head-x"
        );
        assert_eq!(branch_name("C-abc", "日本語だけ"), "oxi/c-abc");
        let long = branch_name("T2-9", &"word ".repeat(50));
        assert!(long.len() <= 4 + 24 + 1 + SLUG_MAX, "{long}");
        assert!(!long.ends_with('-'));
    }
}
