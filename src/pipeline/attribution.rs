//! The post-run check: what changed in the main checkout and among the main repository's refs
//! while a run went, and which of it the worker did. The operator keeps working while oxi
//! runs (commits on the base branch, edits roadmap.md or oxi.toml), so a change is held
//! against a run only when evidence ties it to the worker:
//!
//! - a changed path of the main checkout that the worker's own recorded file events name, or
//!   that holds exactly what the worker wrote at the same path of its worktree;
//! - a ref moved to (or now containing) a commit the worker made in its worktree.
//!
//! Everything else is the operator's as far as oxi can tell: recorded with the run, never a
//! reason to stop it. Under Landlock (`crate::confine`) the worker cannot write the main
//! checkout or its refs at all, and this check finds only the operator's changes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use crate::git::{self, TreeSnapshot};

/// Refs oxi moves itself (each task's branch), never held against another run.
const OXI_BRANCHES: &str = "refs/heads/oxi/";

/// The main checkout and the repository's refs at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MainSnapshot {
    pub tree: TreeSnapshot,
    /// Every ref (`refs/…`) and the commit it names.
    pub refs: BTreeMap<String, String>,
}

impl MainSnapshot {
    /// A snapshot of the repository whose top is `repo`; `None` outside a git repository.
    pub fn take(repo: &Path) -> Option<Self> {
        let tree = TreeSnapshot::take_at(repo.to_path_buf())?;
        let listing = git::run_raw(
            repo,
            &["for-each-ref", "--format=%(refname)%00%(objectname)%00"],
        )
        .ok()?;
        let mut fields = listing
            .split(|b| *b == 0)
            .map(|f| String::from_utf8_lossy(f).trim().to_owned());
        let mut refs = BTreeMap::new();
        while let (Some(name), Some(oid)) = (fields.next(), fields.next()) {
            if !name.is_empty() {
                refs.insert(name, oid);
            }
        }
        Some(Self { tree, refs })
    }
}

/// What ties a change to the worker.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// The worktree the worker ran in.
    pub worktree: PathBuf,
    /// The run's own branch (`refs/heads/oxi/…`), which its commits move legitimately.
    pub own_ref: String,
    /// Paths the worker's file events name, as it wrote them (absolute or relative to the
    /// worktree).
    pub files_named: Vec<String>,
    /// Paths its worktree changed against the base.
    pub diff_paths: Vec<String>,
    /// Commits the worker made: reachable from the worktree's HEAD after the run, not before.
    pub commits: BTreeSet<String>,
    /// The kernel confined the worker (Landlock): it could not have written the main
    /// checkout, so equal content there is the operator's coincidence, not evidence.
    pub confined: bool,
}

impl Evidence {
    /// The commits made in `worktree` since `start` (its HEAD when the run began); none when
    /// that is unknown (every commit of its history would count, the operator's too).
    pub fn commits_since(worktree: &Path, start: Option<&str>) -> BTreeSet<String> {
        let Some(start) = start else {
            return BTreeSet::new();
        };
        git::run(worktree, &["rev-list", &format!("{start}..HEAD")])
            .map(|out| out.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

/// A worktree's git metadata as oxi made it: its `.git` file and, in its admin directory
/// (`.git/worktrees/<name>`), `commondir`, `gitdir`, `HEAD` and `config.worktree`. A confined
/// worker may write that directory (git needs it), so it could repoint them; oxi, running git
/// there unconfined after the run, would then commit onto another branch (`main`, say) or run
/// the hooks of a repository the worker made. Compared before oxi runs git there again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorktreeAnchor {
    files: Vec<(PathBuf, Option<Vec<u8>>)>,
}

impl WorktreeAnchor {
    /// Reads the files directly: running git there could already run what a worker planted.
    pub fn take(worktree: &Path) -> Self {
        let dot_git = worktree.join(".git");
        let content = std::fs::read(&dot_git).ok();
        let admin = content.as_deref().and_then(|text| {
            let text = String::from_utf8_lossy(text);
            let dir = text.strip_prefix("gitdir:")?.trim();
            Some(worktree.join(dir))
        });
        let mut files = vec![(dot_git, content)];
        if let Some(admin) = admin {
            for name in ["commondir", "gitdir", "HEAD", "config.worktree"] {
                let path = admin.join(name);
                let content = std::fs::read(&path).ok();
                files.push((path, content));
            }
        }
        Self { files }
    }

    /// The files that differ from when the anchor was taken.
    pub fn changed(&self) -> Vec<String> {
        self.files
            .iter()
            .filter(|(path, before)| std::fs::read(path).ok() != *before)
            .map(|(path, _)| path.display().to_string())
            .collect()
    }
}

/// The post-run check's finding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    /// The worker's changes, each with what to do about it: the run stops with a memo.
    pub worker: Vec<String>,
    /// Changes no evidence ties to the worker (the operator's, most likely): recorded only.
    pub unattributed: Vec<String>,
}

/// Sorts what changed between `before` and `after` (of the checkout at `repo`) into the
/// worker's and the rest.
pub fn attribute(
    repo: &Path,
    before: &MainSnapshot,
    after: &MainSnapshot,
    evidence: &Evidence,
) -> Attribution {
    let mut found = Attribution::default();
    let named = named_in_repo(repo, evidence);
    for path in before.tree.changed_paths(&after.tree) {
        if path.starts_with(".oxi/") {
            continue;
        }
        if named.contains(&path) || (!evidence.confined && same_as_worktree(repo, &path, evidence))
        {
            found.worker.push(format!("{path} (written by the worker)"));
        } else {
            found.unattributed.push(path);
        }
    }
    let names: BTreeSet<&String> = before.refs.keys().chain(after.refs.keys()).collect();
    for name in names {
        let (old, new) = (before.refs.get(name), after.refs.get(name));
        if old == new || *name == evidence.own_ref {
            continue;
        }
        match ref_move(repo, name, old, new, &evidence.commits) {
            Some(memo) => found.worker.push(memo),
            None if name.starts_with(OXI_BRANCHES) => {}
            None => found.unattributed.push(format!(
                "{name} moved from {} to {}",
                old.map_or("(none)", String::as_str),
                new.map_or("(deleted)", String::as_str)
            )),
        }
    }
    found
}

/// Repository-relative paths (outside the worktree) that the worker's file events name.
fn named_in_repo(repo: &Path, evidence: &Evidence) -> BTreeSet<String> {
    evidence
        .files_named
        .iter()
        .filter_map(|named| {
            let full = lexical(&evidence.worktree.join(named))?;
            if full.starts_with(&evidence.worktree) {
                return None;
            }
            let relative = full.strip_prefix(repo).ok()?;
            Some(relative.to_string_lossy().into_owned())
        })
        .collect()
}

/// `path` with `.` and `..` resolved without touching the file system (the file a worker
/// named may be gone, or a symlink the worker made).
fn lexical(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

/// True when the worker changed `path` in its worktree and the main checkout's `path` now holds
/// the same bytes: it wrote both (a worker confusing the two checkouts).
fn same_as_worktree(repo: &Path, path: &str, evidence: &Evidence) -> bool {
    if !evidence.diff_paths.iter().any(|p| p == path) {
        return false;
    }
    match (
        std::fs::read(repo.join(path)),
        std::fs::read(evidence.worktree.join(path)),
    ) {
        (Ok(main), Ok(worktree)) => main == worktree,
        _ => false,
    }
}

/// The memo for a ref the worker moved, `None` when nothing ties the move to it.
fn ref_move(
    repo: &Path,
    name: &str,
    old: Option<&String>,
    new: Option<&String>,
    commits: &BTreeSet<String>,
) -> Option<String> {
    let new = new?;
    if commits.is_empty() {
        return None;
    }
    if commits.contains(new) {
        // The ref names a commit of this run: putting it back undoes only the worker's move.
        let way_back = match old {
            Some(old) => format!("git update-ref {name} {old} {new}"),
            None => format!("git update-ref -d {name} {new}"),
        };
        return Some(format!(
            "{name} moved by the worker from {} to {new}, a commit of this run (put it back: {way_back})",
            old.map_or("(none)", String::as_str)
        ));
    }
    // Someone committed on top of the worker's move: name its commits, undo nothing else.
    let range = match old {
        Some(old) => format!("{old}..{new}"),
        None => new.clone(),
    };
    let theirs: Vec<String> = git::run(repo, &["rev-list", &range])
        .ok()?
        .lines()
        .filter(|c| commits.contains(*c))
        .map(str::to_owned)
        .collect();
    (!theirs.is_empty()).then(|| {
        format!(
            "{name} now contains commit(s) {} made by the worker (later commits are kept; revert these: git revert {})",
            theirs.join(", "),
            theirs.join(" ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git_in(dir: &Path, args: &[&str]) -> String {
        git::run_as_tester(dir, args)
    }

    #[test]
    fn a_repointed_worktree_head_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().canonicalize().unwrap();
        git_in(&repo, &["init", "-q", "-b", "main"]);
        git_in(&repo, &["commit", "-q", "--allow-empty", "-m", "init"]);
        let worktree = repo.join(".oxi/worktrees/t1");
        git_in(
            &repo,
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                "oxi/t1",
                worktree.to_str().unwrap(),
            ],
        );
        let anchor = WorktreeAnchor::take(&worktree);
        std::fs::write(worktree.join("work.txt"), "work").unwrap();
        git_in(&worktree, &["add", "-A"]);
        assert_eq!(
            anchor.changed(),
            Vec::<String>::new(),
            "git add changes none"
        );
        std::fs::write(
            repo.join(".git/worktrees/t1/HEAD"),
            "ref: refs/heads/main\n",
        )
        .unwrap();
        assert_eq!(
            anchor.changed(),
            [repo.join(".git/worktrees/t1/HEAD").display().to_string()]
        );
    }

    #[test]
    fn only_what_the_worker_did_is_held_against_it() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().canonicalize().unwrap();
        git_in(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join(".gitignore"), ".oxi/\n").unwrap();
        std::fs::write(repo.join("a.txt"), "a").unwrap();
        git_in(&repo, &["add", "-A"]);
        git_in(&repo, &["commit", "-q", "-m", "init"]);
        let worktree = repo.join(".oxi/worktrees/t1");
        git_in(
            &repo,
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                "oxi/t1",
                worktree.to_str().unwrap(),
            ],
        );
        let start = git_in(&worktree, &["rev-parse", "HEAD"]);
        let before = MainSnapshot::take(&repo).unwrap();

        // The operator: a commit on main and an edit.
        std::fs::write(repo.join("a.txt"), "operator").unwrap();
        git_in(&repo, &["commit", "-q", "-am", "operator"]);
        std::fs::write(repo.join("roadmap.md"), "# more\n").unwrap();
        // The worker: a write it named, a copy of its own file, a commit moved onto a branch.
        std::fs::write(repo.join("escaped.txt"), "x").unwrap();
        std::fs::write(worktree.join("same.txt"), "same").unwrap();
        std::fs::write(repo.join("same.txt"), "same").unwrap();
        git_in(
            &worktree,
            &["commit", "-q", "--allow-empty", "-m", "worker"],
        );
        let worker_commit = git_in(&worktree, &["rev-parse", "HEAD"]);
        git_in(&repo, &["branch", "release", &worker_commit]);

        let after = MainSnapshot::take(&repo).unwrap();
        let evidence = Evidence {
            worktree: worktree.clone(),
            own_ref: "refs/heads/oxi/t1".into(),
            files_named: vec!["../../../escaped.txt".into(), "same.txt".into()],
            diff_paths: vec!["same.txt".into()],
            commits: Evidence::commits_since(&worktree, Some(&start)),
            confined: false,
        };
        let found = attribute(&repo, &before, &after, &evidence);
        assert_eq!(found.worker.len(), 3, "{found:#?}");
        assert!(found.worker[0].starts_with("escaped.txt"), "{found:#?}");
        assert!(found.worker[1].starts_with("same.txt"), "{found:#?}");
        assert!(
            found.worker[2].contains(&format!(
                "git update-ref -d refs/heads/release {worker_commit}"
            )),
            "{found:#?}"
        );
        assert!(
            found.unattributed.contains(&"roadmap.md".to_owned()),
            "{found:#?}"
        );
        assert!(
            found
                .unattributed
                .iter()
                .any(|u| u.starts_with("refs/heads/main moved")),
            "{found:#?}"
        );
        assert!(
            !found.worker.iter().any(|w| w.contains("refs/heads/main")),
            "the operator's commit is never put back: {found:#?}"
        );
    }
}
