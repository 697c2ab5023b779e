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

/// Runs `git -C dir args…` and returns trimmed stdout.
pub fn run(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(GitError::Spawn)?;
    if !output.status.success() {
        return Err(GitError::Failed {
            args: args.join(" "),
            dir: dir.display().to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Runs `git -C dir args…` and returns stdout untouched (for `-z` output).
pub fn run_raw(dir: &Path, args: &[&str]) -> Result<Vec<u8>, GitError> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
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

impl TreeSnapshot {
    /// Takes a snapshot of the work tree containing `dir`; `None` outside a git repository.
    pub fn take(dir: &Path) -> Option<Self> {
        let toplevel = std::path::PathBuf::from(toplevel(dir)?);
        let status = run_raw(
            &toplevel,
            &["status", "--porcelain=v1", "-z", "--untracked-files=all"],
        )
        .ok()?;
        let mut paths = std::collections::BTreeMap::new();
        let mut entries = status.split(|b| *b == 0).filter(|e| !e.is_empty());
        while let Some(entry) = entries.next() {
            if entry.len() < 4 {
                continue;
            }
            let code = String::from_utf8_lossy(&entry[..2]).into_owned();
            let path = String::from_utf8_lossy(&entry[3..]).into_owned();
            if code.starts_with('R') || code.starts_with('C') {
                // The original path follows as its own entry.
                entries.next();
            }
            let fingerprint = match std::fs::read(toplevel.join(&path)) {
                Ok(bytes) => format!("{code}:{}", crate::digest::sha256_hex(&bytes, 32)),
                Err(_) => format!("{code}:absent"),
            };
            paths.insert(path, fingerprint);
        }
        let head = run(&toplevel, &["rev-parse", "--verify", "--quiet", "HEAD"]).ok();
        Some(Self {
            toplevel,
            head,
            paths,
        })
    }

    /// Paths whose state differs between `self` (before) and `after`, sorted.
    pub fn changed_since(&self, after: &TreeSnapshot) -> Vec<String> {
        let mut changed: Vec<String> = after
            .paths
            .iter()
            .filter(|(path, print)| self.paths.get(*path) != Some(print))
            .map(|(path, _)| path.clone())
            .collect();
        // Dirty before, clean after: the run reverted (or committed) it.
        changed.extend(
            self.paths
                .keys()
                .filter(|path| !after.paths.contains_key(*path))
                .cloned(),
        );
        if let (Some(before), Some(now)) = (&self.head, &after.head)
            && before != now
            && let Ok(names) = run_raw(
                &after.toplevel,
                &["diff", "--name-only", "-z", before.as_str(), now.as_str()],
            )
        {
            changed.extend(
                names
                    .split(|b| *b == 0)
                    .filter(|n| !n.is_empty())
                    .map(|n| String::from_utf8_lossy(n).into_owned()),
            );
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
}
