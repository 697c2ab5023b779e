//! Rules the type system cannot express, one validator per table.

use std::path::Path;

use super::{CLAUDE_PERMISSION_MODES, CODEX_SANDBOXES, Config, MergePolicy, WorkerKind};

/// One broken rule, found after the file parsed.
#[derive(Debug, Clone)]
pub(super) struct Problem {
    pub(super) key: Vec<String>,
    pub(super) message: String,
}

fn problem(key: &[&str], message: impl Into<String>) -> Problem {
    Problem {
        key: key.iter().map(|s| (*s).to_owned()).collect(),
        message: message.into(),
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Rules the type system cannot express. Returned in file order of importance, first one wins.
pub(super) fn validate(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let caps = &config.caps;
    for (key, value) in [
        ("job_usd", caps.job_usd),
        ("daily_usd", caps.daily_usd),
        ("daily_soft_warn_usd", caps.daily_soft_warn_usd),
        ("monthly_usd", caps.monthly_usd),
    ] {
        if !value.is_finite() || value < 0.0 {
            problems.push(problem(
                &["caps", key],
                format!("must be a non-negative amount in USD, not {value}"),
            ));
        }
    }
    if caps.daily_usd > caps.monthly_usd {
        problems.push(problem(
            &["caps", "daily_usd"],
            format!(
                "daily cap {} USD is above the monthly cap {} USD; lower caps.daily_usd or raise caps.monthly_usd",
                caps.daily_usd, caps.monthly_usd
            ),
        ));
    }
    if caps.job_usd > caps.daily_usd {
        problems.push(problem(
            &["caps", "job_usd"],
            format!(
                "per-job cap {} USD is above the daily cap {} USD; no job could ever be admitted in full",
                caps.job_usd, caps.daily_usd
            ),
        ));
    }
    if caps.daily_soft_warn_usd > caps.daily_usd {
        problems.push(problem(
            &["caps", "daily_soft_warn_usd"],
            format!(
                "soft warning at {} USD is above the daily cap {} USD, so it could never fire",
                caps.daily_soft_warn_usd, caps.daily_usd
            ),
        ));
    }
    if caps.max_attempts == 0 {
        problems.push(problem(&["caps", "max_attempts"], "must be at least 1"));
    }
    if caps.max_worker_calls == 0 {
        problems.push(problem(&["caps", "max_worker_calls"], "must be at least 1"));
    }
    if caps.job_runtime.0.is_zero() {
        problems.push(problem(&["caps", "job_runtime"], "must be longer than 0s"));
    }
    if caps.stall_timeout.0.is_zero() {
        problems.push(problem(
            &["caps", "stall_timeout"],
            "must be longer than 0s",
        ));
    }
    if caps.stall_timeout > caps.job_runtime {
        problems.push(problem(
            &["caps", "stall_timeout"],
            format!(
                "stall timeout {} is longer than the job runtime cap {}, so it could never fire",
                caps.stall_timeout, caps.job_runtime
            ),
        ));
    }
    if !caps.estimate_floor_usd.is_finite() || caps.estimate_floor_usd < 0.0 {
        problems.push(problem(
            &["caps", "estimate_floor_usd"],
            "must be a non-negative amount",
        ));
    } else if caps.estimate_floor_usd > caps.job_usd {
        problems.push(problem(
            &["caps", "estimate_floor_usd"],
            format!(
                "{} is more than caps.job_usd ({}): every task would be held for a human",
                caps.estimate_floor_usd, caps.job_usd
            ),
        ));
    }
    if caps.retry_backoff > caps.retry_backoff_max {
        problems.push(problem(
            &["caps", "retry_backoff"],
            format!(
                "{} is longer than caps.retry_backoff_max ({})",
                caps.retry_backoff, caps.retry_backoff_max
            ),
        ));
    }
    if caps.kill_grace.as_duration().is_zero() {
        problems.push(problem(
            &["caps", "kill_grace"],
            "must be longer than 0s: workers need a moment to exit cleanly on SIGTERM",
        ));
    }
    if caps.output_per_run.bytes() < 64 * 1024 {
        problems.push(problem(
            &["caps", "output_per_run"],
            format!(
                "{} is too small for any real run; use at least 64 KiB (default 1 GiB)",
                caps.output_per_run
            ),
        ));
    }
    if caps.raw_log_per_run > caps.output_per_run {
        problems.push(problem(
            &["caps", "raw_log_per_run"],
            format!(
                "{} is more than caps.output_per_run ({}), so it could never be reached",
                caps.raw_log_per_run, caps.output_per_run
            ),
        ));
    }
    if config.run.max_parallel_jobs == 0 {
        problems.push(problem(&["run", "max_parallel_jobs"], "must be at least 1"));
    }
    if config.project.base_branch.trim().is_empty() {
        problems.push(problem(&["project", "base_branch"], "must not be empty"));
    }
    if config.project.roadmap.as_os_str().is_empty() {
        problems.push(problem(&["project", "roadmap"], "must not be empty"));
    }

    let token_env = config.github.as_ref().map(|g| g.token_env.as_str());
    for (name, worker) in &config.workers {
        if worker.command.is_empty() || worker.command[0].trim().is_empty() {
            problems.push(problem(
                &["workers", name, "command"],
                "argv must not be empty; name the binary, e.g. command = [\"claude\"]",
            ));
        }
        for var in &worker.env {
            if !is_env_name(var) {
                problems.push(problem(
                    &["workers", name, "env"],
                    format!("{var:?} is not an environment variable name"),
                ));
            }
            if token_env == Some(var.as_str()) || var == "GITHUB_TOKEN" || var == "GH_TOKEN" {
                problems.push(problem(
                    &["workers", name, "env"],
                    format!("{var} is a GitHub token; a worker never receives it"),
                ));
            }
        }
        for var in worker.set_env.keys() {
            if !is_env_name(var) {
                problems.push(problem(
                    &["workers", name, "set_env"],
                    format!("{var:?} is not an environment variable name"),
                ));
            }
            if token_env == Some(var.as_str()) || var == "GITHUB_TOKEN" || var == "GH_TOKEN" {
                problems.push(problem(
                    &["workers", name, "set_env"],
                    format!("{var} is a GitHub token; a worker never receives it"),
                ));
            }
        }
        let only = |key: &str, kind: WorkerKind| {
            problem(
                &["workers", name, key],
                format!(
                    "`{key}` applies only to {kind} workers; this worker's kind is {}",
                    worker.kind
                ),
            )
        };
        match worker.kind {
            WorkerKind::Claude => {
                if worker.sandbox.is_some() {
                    problems.push(only("sandbox", WorkerKind::Codex));
                }
                if let Some(mode) = &worker.permission_mode
                    && !CLAUDE_PERMISSION_MODES.contains(&mode.as_str())
                {
                    problems.push(problem(
                        &["workers", name, "permission_mode"],
                        format!(
                            "{mode:?} does not run unattended; use one of {}",
                            CLAUDE_PERMISSION_MODES.join(", ")
                        ),
                    ));
                }
                if worker.max_turns == Some(0) {
                    problems.push(problem(
                        &["workers", name, "max_turns"],
                        "must be at least 1",
                    ));
                }
            }
            WorkerKind::Codex => {
                if worker.permission_mode.is_some() {
                    problems.push(only("permission_mode", WorkerKind::Claude));
                }
                if worker.max_turns.is_some() {
                    problems.push(only("max_turns", WorkerKind::Claude));
                }
                if let Some(sandbox) = &worker.sandbox
                    && !CODEX_SANDBOXES.contains(&sandbox.as_str())
                {
                    problems.push(problem(
                        &["workers", name, "sandbox"],
                        format!(
                            "unknown sandbox {sandbox:?}; use one of {}",
                            CODEX_SANDBOXES.join(", ")
                        ),
                    ));
                }
            }
        }
    }

    for (role, chain) in [
        ("planner", &config.routing.planner),
        ("executor", &config.routing.executor),
        ("reviewer", &config.routing.reviewer),
    ] {
        for worker in &chain.0 {
            if !config.workers.contains_key(worker) {
                let known: Vec<&str> = config.workers.keys().map(String::as_str).collect();
                problems.push(problem(
                    &["routing", role],
                    format!(
                        "names worker {worker:?}, which has no [workers.{worker}] table (known: {})",
                        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                    ),
                ));
            }
        }
    }
    if config.routing.executor.0.is_empty() {
        problems.push(problem(
            &["routing", "executor"],
            "must name at least one worker",
        ));
    }

    // A worker without a CLI-reported cost must have a rate card, or its spend is unknowable.
    let routed: std::collections::BTreeSet<&String> = config
        .routing
        .planner
        .0
        .iter()
        .chain(&config.routing.executor.0)
        .chain(&config.routing.reviewer.0)
        .collect();
    for name in routed {
        if let Some(worker) = config.workers.get(name)
            && worker.kind == WorkerKind::Codex
        {
            match &worker.model {
                None => problems.push(problem(
                    &["workers", name, "model"],
                    "a codex worker needs a model, so its cost can be priced from [rates]",
                )),
                Some(model) if !config.rates.contains_key(model) => problems.push(problem(
                    &["workers", name, "model"],
                    format!(
                        "model {model:?} has no [rates.\"{model}\"] table; codex reports tokens but no cost, so oxi cannot enforce caps without a rate card"
                    ),
                )),
                Some(_) => {}
            }
        }
    }

    for (model, card) in &config.rates {
        let fields = [
            ("input_per_mtok", Some(card.input_per_mtok)),
            ("cached_input_per_mtok", card.cached_input_per_mtok),
            ("output_per_mtok", Some(card.output_per_mtok)),
            ("reasoning_per_mtok", card.reasoning_per_mtok),
        ];
        for (key, value) in fields {
            if let Some(v) = value
                && (!v.is_finite() || v < 0.0)
            {
                problems.push(problem(
                    &["rates", model, key],
                    format!("must be a non-negative price, not {v}"),
                ));
            }
        }
    }

    for (tier, commands) in [
        ("tier0", &config.verify.tier0),
        ("tier1", &config.verify.tier1),
        ("tier2", &config.verify.tier2),
    ] {
        for (i, command) in commands.iter().enumerate() {
            let index = i.to_string();
            if command.argv.is_empty() || command.argv[0].trim().is_empty() {
                problems.push(problem(
                    &["verify", tier, &index, "argv"],
                    format!(
                        "acceptance command {:?} has an empty argv; write it like argv = [\"cargo\", \"test\"]",
                        command.name
                    ),
                ));
            }
            if command.name.trim().is_empty() {
                problems.push(problem(
                    &["verify", tier, &index, "name"],
                    "must not be empty",
                ));
            }
            if command.timeout.0.is_zero() {
                problems.push(problem(
                    &["verify", tier, &index, "timeout"],
                    "must be longer than 0s",
                ));
            }
        }
    }

    let gov = &config.governance;
    for (i, root) in gov.allowed_roots.iter().enumerate() {
        let path = Path::new(root);
        if path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            problems.push(problem(
                &["governance", "allowed_roots", &i.to_string()],
                format!("{root:?} must be relative to the repository root and stay inside it"),
            ));
        }
    }
    for (key, globs) in [
        ("protected", &gov.protected),
        ("needs_approval", &gov.needs_approval),
    ] {
        for (i, glob) in globs.iter().enumerate() {
            if let Err(e) = globset::Glob::new(glob) {
                problems.push(problem(
                    &["governance", key, &i.to_string()],
                    format!("{glob:?} is not a valid glob: {e}"),
                ));
            }
        }
    }

    if let Some(github) = &config.github {
        if !is_owner_name(&github.repo) {
            problems.push(problem(
                &["github", "repo"],
                format!("{:?} is not of the form \"owner/name\"", github.repo),
            ));
        }
        if !(github.api_url.starts_with("https://") || github.api_url.starts_with("http://")) {
            problems.push(problem(
                &["github", "api_url"],
                format!("{:?} is not an http(s) URL", github.api_url),
            ));
        }
        if !is_env_name(&github.token_env) {
            problems.push(problem(
                &["github", "token_env"],
                format!(
                    "{:?} is not an environment variable name; put the variable's name here, never the token",
                    github.token_env
                ),
            ));
        }
        if github.merge == MergePolicy::OnCriticApprove && !github.acknowledge_unattended_merge {
            problems.push(problem(
                &["github", "merge"],
                "\"on_critic_approve\" merges pull requests with no human review; set github.acknowledge_unattended_merge = true to confirm (see docs/release.md)",
            ));
        }
        for label in &github.labels {
            if label.trim().is_empty() || label.len() > 50 {
                problems.push(problem(
                    &["github", "labels"],
                    format!("{label:?} is not a usable label (1 to 50 characters)"),
                ));
            }
        }
        let allowed = &config.project.allowed_repos;
        if !allowed.is_empty() && !allowed.iter().any(|r| r.eq_ignore_ascii_case(&github.repo)) {
            problems.push(problem(
                &["github", "repo"],
                format!(
                    "{:?} is not in project.allowed_repos ({})",
                    github.repo,
                    allowed.join(", ")
                ),
            ));
        }
    }
    for (i, repo) in config.project.allowed_repos.iter().enumerate() {
        if !is_owner_name(repo) {
            problems.push(problem(
                &["project", "allowed_repos", &i.to_string()],
                format!("{repo:?} is not of the form \"owner/name\""),
            ));
        }
    }
    problems
}

fn is_owner_name(repo: &str) -> bool {
    let mut parts = repo.split('/');
    let ok = |s: Option<&str>| {
        s.is_some_and(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_consistent() {
        assert!(validate(&Config::default()).is_empty());
    }

    #[test]
    fn env_names() {
        assert!(is_env_name("ANTHROPIC_API_KEY"));
        assert!(is_env_name("_X1"));
        assert!(!is_env_name("1X"));
        assert!(!is_env_name("sk-abc"));
        assert!(!is_env_name(""));
    }
}
