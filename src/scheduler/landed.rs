//! Fast mode's last step: a delivered branch that an operator merged into the base branch. Its
//! delivered commit is then an ancestor of the base branch's tip, so the task moves on to
//! `merged` and `done` (as release mode does when a pull request merges) and the tasks that
//! depend on it may start. A squash or rebase merge leaves no such ancestry: `oxi done TASK`
//! closes those by hand.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::config::LoadedConfig;
use crate::ledger::events::BranchMerged;
use crate::ledger::{Event, Ledger, LedgerError, NewEvent, TaskRow, TaskState, Transition};

/// A delivered task found merged into the base branch.
#[derive(Debug, Clone, Serialize)]
pub struct Landed {
    pub task_id: String,
    pub branch: Option<String>,
    /// The delivered commit the base branch now contains.
    pub commit: String,
    pub base_branch: String,
}

/// The commit a delivery put on the task's branch: the one its `delivered` event names, else
/// (a delivery after an approval records none) the branch's tip.
fn delivered_commit(
    config: &LoadedConfig,
    ledger: &Ledger,
    task: &TaskRow,
) -> Result<Option<String>, LedgerError> {
    if let Some(commit) = ledger.read().delivered_commit(&task.spec.id)? {
        return Ok(Some(commit));
    }
    Ok(task.branch.as_deref().and_then(|branch| {
        crate::pipeline::worktree::resolve(&config.repo_root, &format!("refs/heads/{branch}"))
    }))
}

/// The base branch's tip that delivered commits were last checked against, and the ones found
/// not merged. A commit that is not on the base branch can only get there when the tip moves,
/// so while it stays put a delivered commit is checked once, not on every tick: with 1,800
/// delivered, unmerged branches, one ancestry check each made every tick take ~8 s.
#[derive(Debug, Default, Serialize, Deserialize)]
struct NotMerged {
    tip: String,
    /// `TASK@COMMIT` of the delivered commits found not to be on `tip`.
    commits: BTreeSet<String>,
}

impl NotMerged {
    fn path(config: &LoadedConfig) -> PathBuf {
        config.state_dir.join("not-merged.json")
    }

    /// What the last settle recorded for `tip`; nothing when the tip moved or the file is gone
    /// or unreadable (then every delivered commit is checked again, as if for the first time).
    fn load(config: &LoadedConfig, tip: &str) -> Option<Self> {
        let text = std::fs::read(Self::path(config)).ok()?;
        serde_json::from_slice::<NotMerged>(&text)
            .ok()
            .filter(|known| known.tip == tip)
    }

    /// Keeps the record for the next settle. Losing it (a full disk) costs only a recheck.
    fn store(&self, config: &LoadedConfig) {
        let Ok(text) = serde_json::to_vec(self) else {
            return;
        };
        if let Err(e) = crate::runner::artifacts::write_atomic(&Self::path(config), &text) {
            tracing::debug!("cannot keep {}: {e}", Self::path(config).display());
        }
    }
}

/// Moves every delivered task without a pull request whose delivered commit is on the base
/// branch to `merged`, then `done`. Cheap when nothing is delivered (no git call), and while
/// the base branch does not move (one git call, see [`NotMerged`]).
pub fn settle(config: &LoadedConfig, ledger: &mut Ledger) -> Result<Vec<Landed>, LedgerError> {
    let delivered: Vec<TaskRow> = ledger
        .read()
        .tasks()?
        .into_iter()
        .filter(|t| t.state == TaskState::Delivered && t.pr_number.is_none())
        .collect();
    if delivered.is_empty() {
        return Ok(Vec::new());
    }
    let repo = &config.repo_root;
    let base = &config.config.project.base_branch;
    let Some(tip) = crate::pipeline::worktree::resolve(repo, base) else {
        return Ok(Vec::new());
    };
    let known = NotMerged::load(config, &tip);
    let known_commits = known.as_ref().map(|k| &k.commits);
    let mut not_merged = NotMerged {
        tip: tip.clone(),
        commits: BTreeSet::new(),
    };
    let mut landed = Vec::new();
    for task in delivered {
        let Some(commit) = delivered_commit(config, ledger, &task)? else {
            continue;
        };
        let key = format!("{}@{commit}", task.spec.id);
        if known_commits.is_some_and(|c| c.contains(&key)) {
            not_merged.commits.insert(key);
            continue;
        }
        match crate::git::is_ancestor(repo, &commit, &tip) {
            Ok(true) => {}
            Ok(false) => {
                not_merged.commits.insert(key);
                continue;
            }
            Err(e) => {
                tracing::debug!("task {}: cannot tell whether it merged: {e}", task.spec.id);
                continue;
            }
        }
        let entry = Landed {
            task_id: task.spec.id.clone(),
            branch: task.branch.clone(),
            commit,
            base_branch: base.clone(),
        };
        match record(ledger, &entry) {
            Ok(()) => landed.push(entry),
            // Someone (an operator) moved it meanwhile: theirs stands.
            Err(LedgerError::StateConflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    if known_commits != Some(&not_merged.commits) {
        not_merged.store(config);
    }
    Ok(landed)
}

/// `delivered → merged → done` and a `branch_merged` event, in one transaction.
fn record(ledger: &mut Ledger, landed: &Landed) -> Result<(), LedgerError> {
    let now = now_ms();
    let id = landed.task_id.as_str();
    let reason = format!("branch merged into {}", landed.base_branch);
    ledger.write(|q| {
        q.transition_task(
            id,
            &Transition::by_oxi(TaskState::Delivered, TaskState::Merged, &reason),
            now,
        )?;
        q.transition_task(
            id,
            &Transition::by_oxi(TaskState::Merged, TaskState::Done, "merged"),
            now,
        )?;
        q.append_event(&NewEvent {
            at_ms: now,
            task_id: Some(id),
            run_id: None,
            actor: "oxi",
            event: Event::BranchMerged(BranchMerged {
                branch: landed.branch.clone(),
                commit: landed.commit.clone(),
                base_branch: landed.base_branch.clone(),
            }),
        })?;
        Ok(())
    })
}
