//! The `git` CLI, argv-form. oxi never links libgit2: the user's git, hooks and config are the
//! ones that apply, exactly as when they run git themselves.

use std::path::Path;
use std::process::Command;

/// Errors from running git.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// git is not installed or not on PATH.
    #[error("cannot run git: {0}; install git or put it on PATH")]
    Spawn(std::io::Error),
    /// git ran and failed; `stderr` is what it said.
    #[error("git {args} failed in {dir}: {stderr}")]
    Failed {
        args: String,
        dir: String,
        stderr: String,
    },
}

/// The git binary, found on PATH once per process (a tick runs git dozens of times; searching
/// a long PATH for each costs more than the git command itself).
fn git_binary() -> &'static std::ffi::OsStr {
    static GIT: std::sync::OnceLock<std::ffi::OsString> = std::sync::OnceLock::new();
    GIT.get_or_init(|| {
        which::which("git")
            .map(std::path::PathBuf::into_os_string)
            .unwrap_or_else(|_| "git".into())
    })
}

/// Runs `git -C dir args…` and returns stdout untouched (for `-z` output).
pub fn run_raw(dir: &Path, args: &[&str]) -> Result<Vec<u8>, GitError> {
    run_with_env(dir, args, &[])
}

/// `run_raw` with extra environment variables (how credentials reach git: the environment is
/// not visible in a process listing, argv is).
pub fn run_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Vec<u8>, GitError> {
    let output = Command::new(git_binary())
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .envs(env.iter().copied())
        .output()
        .map_err(GitError::Spawn)?;
    if !output.status.success() {
        return Err(GitError::Failed {
            args: args.join(" "),
            dir: dir.display().to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output.stdout)
}

/// Runs `git -C dir args…` and returns trimmed stdout.
pub fn run(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    let stdout = run_raw(dir, args)?;
    Ok(String::from_utf8_lossy(&stdout).trim().to_owned())
}

/// Whether `commit` is reachable from `tip` (`git merge-base --is-ancestor`): how fast mode
/// sees that a delivered branch was merged. An unknown commit is an error, not a "no".
pub fn is_ancestor(dir: &Path, commit: &str, tip: &str) -> Result<bool, GitError> {
    let args = ["merge-base", "--is-ancestor", commit, tip];
    let output = Command::new(git_binary())
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(GitError::Spawn)?;
    match output.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(GitError::Failed {
            args: args.join(" "),
            dir: dir.display().to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        }),
    }
}

/// The state of every changed or untracked path in a work tree (relative to its top), each with
/// a fingerprint of its content, so two snapshots tell which paths a run touched even when
/// they were already dirty before it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeSnapshot {
    pub toplevel: std::path::PathBuf,
    /// The commit checked out, so commits made by the run are seen too.
    pub head: Option<String>,
    pub paths: std::collections::BTreeMap<String, String>,
}

/// oxi's state directories (`.oxi/` at any depth) are not part of a checkout's state, and
/// their files must never be opened here: SQLite's locks are POSIX record locks, which this
/// process would lose on the ledger (and its `-shm`/`-wal`) by closing any descriptor of those
/// files. Another oxi process would then take itself for the ledger's only user, reset the
/// shared memory this one has mapped (SIGBUS) or delete its WAL.
const STATE_DIR_EXCLUDE: &str = ":(exclude,glob)**/.oxi/**";

impl TreeSnapshot {
    /// Takes a snapshot of the work tree containing `dir`; `None` outside a git repository.
    pub fn take(dir: &Path) -> Option<Self> {
        Self::take_at(std::path::PathBuf::from(toplevel(dir)?))
    }

    /// `take` for a directory known to be the top of its work tree (one git call fewer).
    pub fn take_at(toplevel: std::path::PathBuf) -> Option<Self> {
        // Porcelain v2 with --branch gives the HEAD commit and the paths in one call.
        let status = run_raw(
            &toplevel,
            &[
                "status",
                "--porcelain=v2",
                "--branch",
                "-z",
                "--untracked-files=all",
                "--",
                ".",
                STATE_DIR_EXCLUDE,
            ],
        )
        .ok()?;
        let mut head = None;
        let mut paths = std::collections::BTreeMap::new();
        let mut entries = status.split(|b| *b == 0).filter(|e| !e.is_empty());
        while let Some(entry) = entries.next() {
            let text = String::from_utf8_lossy(entry);
            let (code, path) = if let Some(oid) = text.strip_prefix("# branch.oid ") {
                if oid != "(initial)" {
                    head = Some(oid.to_owned());
                }
                continue;
            } else if text.starts_with('#') {
                continue;
            } else if let Some(path) = text.strip_prefix("? ") {
                ("??".to_owned(), path.to_owned())
            } else if let Some(path) = text.strip_prefix("! ") {
                ("!!".to_owned(), path.to_owned())
            } else {
                // "1 XY sub mH mI mW hH hI path", "2 XY sub mH mI mW hH hI Xscore path\0orig",
                // "u XY sub m1 m2 m3 mW h1 h2 h3 path".
                let fields = match text.chars().next() {
                    Some('1') => 9,
                    Some('2') => 10,
                    Some('u') => 11,
                    _ => continue,
                };
                let mut parts = text.splitn(fields, ' ');
                let code = parts.nth(1).unwrap_or("..").to_owned();
                let Some(path) = parts.nth(fields - 3) else {
                    continue;
                };
                if text.starts_with('2') {
                    // The original path follows as its own entry.
                    entries.next();
                }
                (code, path.to_owned())
            };
            let fingerprint = match std::fs::read(toplevel.join(&path)) {
                Ok(bytes) => format!("{code}:{}", crate::digest::sha256_hex(&bytes, 32)),
                Err(_) => format!("{code}:absent"),
            };
            paths.insert(path, fingerprint);
        }
        Some(Self {
            toplevel,
            head,
            paths,
        })
    }

    /// Paths of the work tree whose state differs between `self` (before) and `after`,
    /// sorted; a moved HEAD alone adds none.
    pub fn changed_paths(&self, after: &TreeSnapshot) -> Vec<String> {
        let mut changed: Vec<String> = after
            .paths
            .iter()
            .filter(|(path, print)| self.paths.get(*path) != Some(print))
            .map(|(path, _)| path.clone())
            .collect();
        // Dirty before, clean after: reverted (or committed).
        changed.extend(
            self.paths
                .keys()
                .filter(|path| !after.paths.contains_key(*path))
                .cloned(),
        );
        changed.sort();
        changed
    }

    /// Paths whose state differs between `self` (before) and `after`, sorted, with a moved
    /// HEAD and the paths its new commits changed.
    pub fn changed_since(&self, after: &TreeSnapshot) -> Vec<String> {
        let mut changed = self.changed_paths(after);
        if let (Some(before), Some(now)) = (&self.head, &after.head)
            && before != now
        {
            // The checked-out branch moved (a commit, or `git update-ref` from a worktree): said
            // even when the new commit changes no file, with the way back.
            changed.push(format!(
                "HEAD moved from {before} to {now} (put it back: git update-ref HEAD {before} {now})"
            ));
            if let Ok(names) = run_raw(
                &after.toplevel,
                &["diff", "--name-only", "-z", before.as_str(), now.as_str()],
            ) {
                changed.extend(
                    names
                        .split(|b| *b == 0)
                        .filter(|n| !n.is_empty())
                        .map(|n| String::from_utf8_lossy(n).into_owned()),
                );
            }
        }
        changed.sort();
        changed.dedup();
        changed
    }
}

/// The top of the work tree containing `dir`, if any.
pub fn toplevel(dir: &Path) -> Option<String> {
    run(dir, &["rev-parse", "--show-toplevel"]).ok()
}

/// The branch new work should start from: the remote's default branch if known, else the
/// current branch.
pub fn default_branch(dir: &Path) -> Option<String> {
    if let Ok(remote_head) = run(
        dir,
        &[
            "symbolic-ref",
            "--quiet",
            "--short",
            "refs/remotes/origin/HEAD",
        ],
    ) && let Some((_, branch)) = remote_head.split_once('/')
    {
        return Some(branch.to_owned());
    }
    run(dir, &["symbolic-ref", "--quiet", "--short", "HEAD"]).ok()
}

/// `owner/name` when `origin` points at GitHub (https or ssh form).
pub fn github_repo(dir: &Path) -> Option<String> {
    let url = run(dir, &["remote", "get-url", "origin"]).ok()?;
    parse_github_url(&url)
}

fn parse_github_url(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("git@github.com:")
        .or_else(|| url.strip_prefix("ssh://git@github.com/"))
        .or_else(|| url.strip_prefix("https://github.com/"))
        .or_else(|| url.strip_prefix("http://github.com/"))?;
    let rest = rest.trim_end_matches('/').trim_end_matches(".git");
    let (owner, name) = rest.split_once('/')?;
    (!owner.is_empty() && !name.is_empty() && !name.contains('/'))
        .then(|| format!("{owner}/{name}"))
}

/// Runs git in `dir` as a throwaway identity (tests' commits need one), panicking on failure.
#[cfg(test)]
pub(crate) fn run_as_tester(dir: &Path, args: &[&str]) -> String {
    #[allow(clippy::unwrap_used)] // A test's setup.
    run(
        dir,
        &[&["-c", "user.name=t", "-c", "user.email=t@t"], args].concat(),
    )
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_urls() {
        for url in [
            "git@github.com:acme/widgets.git",
            "https://github.com/acme/widgets",
            "https://github.com/acme/widgets.git/",
            "ssh://git@github.com/acme/widgets.git",
        ] {
            assert_eq!(
                parse_github_url(url).as_deref(),
                Some("acme/widgets"),
                "{url}"
            );
        }
        assert_eq!(parse_github_url("https://gitlab.com/acme/widgets"), None);
        assert_eq!(parse_github_url("/srv/git/widgets.git"), None);
    }

    #[test]
    fn snapshots_see_new_modified_deleted_renamed_and_committed_paths() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let git = |args: &[&str]| {
            run(
                &root,
                &[&["-c", "user.name=t", "-c", "user.email=t@t"], args].concat(),
            )
            .unwrap()
        };
        git(&["init", "-q", "-b", "main"]);
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::write(root.join("b.txt"), "b").unwrap();
        std::fs::write(root.join("c.txt"), "c").unwrap();
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "init"]);
        std::fs::write(root.join("dirty.txt"), "already dirty").unwrap();
        let before = TreeSnapshot::take(&root).unwrap();
        assert!(before.head.is_some());
        std::fs::write(root.join("a.txt"), "changed").unwrap();
        std::fs::remove_file(root.join("b.txt")).unwrap();
        std::fs::write(root.join("dirty.txt"), "dirtier").unwrap();
        std::fs::write(root.join("new dir file.txt"), "new").unwrap();
        git(&["mv", "c.txt", "c2.txt"]);
        let after = TreeSnapshot::take_at(root.clone()).unwrap();
        assert_eq!(
            before.changed_since(&after),
            ["a.txt", "b.txt", "c2.txt", "dirty.txt", "new dir file.txt"]
        );
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "more"]);
        let committed = TreeSnapshot::take(&root).unwrap();
        assert!(
            before
                .changed_since(&committed)
                .contains(&"a.txt".to_owned())
        );
    }

    #[test]
    fn snapshots_never_list_or_open_oxis_state_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        run(&root, &["init", "-q", "-b", "main"]).unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        let ledger = crate::ledger::Ledger::open(&root.join(".oxi/ledger.db")).unwrap();
        std::fs::create_dir_all(root.join("sub/.oxi/runs")).unwrap();
        std::fs::write(root.join("sub/.oxi/runs/raw.jsonl"), "{}").unwrap();
        std::fs::write(root.join("sub/kept.txt"), "k").unwrap();
        let snapshot = TreeSnapshot::take(&root).unwrap();
        let paths: Vec<&String> = snapshot.paths.keys().collect();
        assert_eq!(paths, ["a.txt", "sub/kept.txt"]);
        drop(ledger);
    }
}
