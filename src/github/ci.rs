//! CI on a commit, as GitHub reports it: check runs (every page, the latest run of each check)
//! and commit statuses (the statuses API, where many CI services report instead of checks).

use std::collections::BTreeMap;

use super::model::{CheckRun, CheckRuns, CombinedStatus};
use super::{GithubClient, GithubError};

/// One check (or status context) on a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiEntry {
    /// The check run's name, or the status's context.
    pub name: String,
    /// Finished: a check run `completed`, a status no longer `pending`.
    pub done: bool,
    pub failed: bool,
    /// The check run's conclusion, or the status's state.
    pub conclusion: Option<String>,
    /// What a follow-up quotes: the check's output, or the status's description and link.
    pub report: String,
}

/// Check-run conclusions that fail CI.
const FAILED: [&str; 5] = [
    "failure",
    "timed_out",
    "cancelled",
    "action_required",
    "startup_failure",
];

impl GithubClient {
    /// Every check and status on `sha`: the latest run of each check (a re-run replaces the
    /// run before it), then the latest status of each context.
    pub async fn ci(&self, sha: &str) -> Result<Vec<CiEntry>, GithubError> {
        let runs = self
            .get_all_wrapped(
                &self.repo_path(&format!("/commits/{sha}/check-runs?per_page=100")),
                |page: CheckRuns| page.check_runs,
            )
            .await?;
        let statuses = self
            .get_all_wrapped(
                &self.repo_path(&format!("/commits/{sha}/status?per_page=100")),
                |page: CombinedStatus| page.statuses,
            )
            .await?;
        let mut latest: BTreeMap<String, CheckRun> = BTreeMap::new();
        for run in runs {
            let newer = latest.get(&run.name).is_none_or(|seen| {
                (run.started_at.as_deref(), run.id) >= (seen.started_at.as_deref(), seen.id)
            });
            if newer {
                latest.insert(run.name.clone(), run);
            }
        }
        let mut entries: Vec<CiEntry> = latest.into_values().map(check_entry).collect();
        for status in statuses {
            if entries.iter().any(|e| e.name == status.context) {
                continue;
            }
            entries.push(CiEntry {
                done: status.state != "pending",
                failed: matches!(status.state.as_str(), "error" | "failure"),
                report: [status.description, status.target_url]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("\n"),
                name: status.context,
                conclusion: Some(status.state),
            });
        }
        Ok(entries)
    }
}

fn check_entry(run: CheckRun) -> CiEntry {
    let out = run.output.unwrap_or_default();
    CiEntry {
        done: run.status == "completed",
        failed: run
            .conclusion
            .as_deref()
            .is_some_and(|c| FAILED.contains(&c)),
        report: format!(
            "{}\n{}",
            out.summary.unwrap_or_default(),
            out.text.unwrap_or_default()
        ),
        name: run.name,
        conclusion: run.conclusion,
    }
}
