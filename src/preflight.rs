//! Checks before dispatch, shared by the scheduler (which refuses to claim while one fails) and
//! `oxi doctor` (which reports them): is the repository usable, can an executor and the
//! acceptance commands start, is every executor blocked, can GitHub be used for release mode.

use crate::config::LoadedConfig;
use crate::ledger::{Ledger, LedgerError};
use crate::runner;

/// Problems that make dispatch pointless; the tick refuses to claim while any is present.
pub fn blocking_problems(config: &LoadedConfig, parent_env: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let repo = &config.repo_root;
    if !repo.join(".git").exists() && crate::git::toplevel(repo).is_none() {
        problems.push(format!(
            "{} is not a git repository; oxi works in git worktrees (git init, or fix project.root)",
            repo.display()
        ));
        return problems;
    }
    let base = &config.config.project.base_branch;
    if crate::pipeline::worktree::resolve(repo, base).is_none() {
        problems.push(format!(
            "base branch {base:?} does not exist; create it or set project.base_branch in {}",
            config.display_path()
        ));
    }
    let path_var = parent_env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let executors = &config.config.routing.executor.0;
    let found = config.config.routing.executor.workers().any(|name| {
        config.config.workers.get(name).is_some_and(|w| {
            w.command.first().is_some_and(|program| {
                runner::contract::resolve_binary(program, path_var, repo).is_some()
            })
        })
    });
    if !found {
        problems.push(format!(
            "no executor worker can start: none of {} has its command on PATH; install the CLI or fix workers.<name>.command (`oxi workers` shows each)",
            executors.join(", ")
        ));
    }
    for (tier, commands) in [
        ("tier0", &config.config.verify.tier0),
        ("tier1", &config.config.verify.tier1),
        ("tier2", &config.config.verify.tier2),
    ] {
        for command in commands {
            if let Some(program) = command.argv.first()
                && runner::contract::resolve_binary(program, path_var, repo).is_none()
            {
                problems.push(format!(
                    "acceptance command {:?} (verify.{tier}) cannot run: {program:?} is not found",
                    command.name
                ));
            }
        }
    }
    problems
}

/// The hold reasons when every executor in `routing.executor` is blocked (its CLI could not
/// authenticate; see [`crate::ledger::WorkerBlock`]); empty while any executor can run.
pub fn blocked_executors(
    config: &LoadedConfig,
    ledger: &Ledger,
) -> Result<Vec<String>, LedgerError> {
    let blocks = ledger.read().worker_blocks()?;
    let chain: Vec<&str> = config.config.routing.executor.workers().collect();
    let all_blocked =
        !chain.is_empty() && chain.iter().all(|w| blocks.iter().any(|b| b.worker == *w));
    Ok(if all_blocked {
        blocks
            .iter()
            .filter(|b| chain.contains(&b.worker.as_str()))
            .map(crate::ledger::WorkerBlock::reason)
            .collect()
    } else {
        Vec::new()
    })
}

/// The GitHub client for a release tick, after checking the token and push rights.
pub async fn github_preflight(
    config: &LoadedConfig,
    parent_env: &[(String, String)],
) -> Result<(crate::github::GithubClient, String), crate::github::GithubError> {
    let Some(github) = &config.config.github else {
        return Err(crate::github::GithubError::Client(format!(
            "release mode needs a [github] table in {} (repo, api_url, token_env)",
            config.display_path()
        )));
    };
    let token = crate::github::resolve_token(github, parent_env)?;
    let client = crate::github::GithubClient::new(github, &token)?;
    let repository = client.repository().await?;
    if !repository.permissions.is_some_and(|p| p.push) {
        return Err(crate::github::GithubError::Forbidden {
            endpoint: format!("GET /repos/{}", github.repo),
            message: "the token has no push access".to_owned(),
            repo: github.repo.clone(),
        });
    }
    Ok((client, token))
}
