//! `oxi doctor` (seed 001): the preflight. Each check says ok / warn / fail and, for anything
//! not ok, the exact fix. `oxi tick` refuses to dispatch on the blocking subset
//! ([`crate::tick::blocking_problems`]) with the same messages.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::Serialize;

use crate::config::{LoadedConfig, RunMode};
use crate::runner::contract::{self, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// What to do, when not ok.
    pub fix: Option<String>,
}

fn check(name: &str, status: Status, detail: impl Into<String>, fix: Option<String>) -> Check {
    Check {
        name: name.to_owned(),
        status,
        detail: detail.into(),
        fix,
    }
}

/// Free bytes on the filesystem holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    Some(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}

fn ledger_checks(config: &LoadedConfig, out: &mut Vec<Check>) {
    let path = config.ledger_path();
    if !path.exists() {
        out.push(check(
            "ledger",
            Status::Warn,
            format!("no ledger at {} yet", path.display()),
            Some("run `oxi init` (or `oxi ingest`) to create it".into()),
        ));
        return;
    }
    match crate::ledger::Ledger::open_existing(&path) {
        Err(e) => out.push(check(
            "ledger",
            Status::Fail,
            e.to_string(),
            Some("see docs/ledger.md; restore a backup if it is corrupt".into()),
        )),
        Ok(ledger) => {
            match ledger.integrity_check() {
                Ok(problems) if problems.is_empty() => {
                    let version = ledger.read().schema_version().unwrap_or(0);
                    out.push(check(
                        "ledger",
                        Status::Ok,
                        format!("{} (schema v{version}, integrity ok)", path.display()),
                        None,
                    ));
                }
                Ok(problems) => out.push(check(
                    "ledger",
                    Status::Fail,
                    format!("integrity check: {}", problems.join("; ")),
                    Some("stop oxi, restore .oxi/ledger.db from a backup".into()),
                )),
                Err(e) => out.push(check("ledger", Status::Fail, e.to_string(), None)),
            }
            let mode = std::fs::metadata(&path)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0);
            out.push(if mode & 0o077 == 0 {
                check("ledger file mode", Status::Ok, format!("{mode:o}"), None)
            } else {
                check(
                    "ledger file mode",
                    Status::Fail,
                    format!("{mode:o}: readable by others (it records costs, prompts' paths and operator names)"),
                    Some(format!("chmod 600 {}", path.display())),
                )
            });
        }
    }
}

fn git_checks(config: &LoadedConfig, out: &mut Vec<Check>) {
    let repo = &config.repo_root;
    if crate::git::toplevel(repo).is_none() {
        out.push(check(
            "git repository",
            Status::Fail,
            format!("{} is not a git repository", repo.display()),
            Some("git init (or fix project.root in oxi.toml)".into()),
        ));
        return;
    }
    out.push(check(
        "git repository",
        Status::Ok,
        repo.display().to_string(),
        None,
    ));
    let base = &config.config.project.base_branch;
    out.push(match crate::worktree::resolve(repo, base) {
        Some(sha) => check(
            "base branch",
            Status::Ok,
            format!("{base} at {}", &sha[..sha.len().min(12)]),
            None,
        ),
        None => check(
            "base branch",
            Status::Fail,
            format!("base branch {base:?} does not exist"),
            Some(format!(
                "create it, or set project.base_branch in {}",
                config.display_path()
            )),
        ),
    });
    let dirty: Vec<String> = crate::git::TreeSnapshot::take(repo)
        .map(|s| {
            s.paths
                .keys()
                .filter(|p| !p.starts_with(".oxi/"))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    out.push(if dirty.is_empty() {
        check("main checkout clean", Status::Ok, "no uncommitted changes", None)
    } else {
        check(
            "main checkout clean",
            Status::Warn,
            format!("uncommitted: {}", dirty.iter().take(5).cloned().collect::<Vec<_>>().join(", ")),
            Some("commit them if tasks need them: worktrees start from the base branch's last commit (edits made while runs go never stop them)".into()),
        )
    });
    match free_bytes(&config.state_dir).or_else(|| free_bytes(repo)) {
        Some(free) if free < 200 << 20 => out.push(check(
            "space for worktrees",
            Status::Fail,
            format!("{} MiB free", free >> 20),
            Some(
                "free disk space: each task gets a worktree (a checkout of the repository)".into(),
            ),
        )),
        Some(free) if free < 2 << 30 => out.push(check(
            "space for worktrees",
            Status::Warn,
            format!("{} MiB free", free >> 20),
            Some("keep a few GiB free for worktrees and run logs".into()),
        )),
        Some(free) => out.push(check(
            "space for worktrees",
            Status::Ok,
            format!("{} GiB free", free >> 30),
            None,
        )),
        None => {}
    }
}

async fn worker_checks(
    config: &LoadedConfig,
    parent_env: &[(String, String)],
    out: &mut Vec<Check>,
) {
    let token_env = config.config.github.as_ref().map(|g| g.token_env.as_str());
    let routed: Vec<&String> = config
        .config
        .routing
        .executor
        .0
        .iter()
        .chain(&config.config.routing.reviewer.0)
        .chain(&config.config.routing.planner.0)
        .collect();
    for (name, worker) in &config.config.workers {
        let env = crate::runner::env::worker_env(worker, parent_env.iter().cloned(), token_env);
        let report = contract::check(name, worker, &env.vars, &config.repo_root).await;
        let label = format!("worker {name}");
        let used = routed.contains(&name);
        let status = match (report.verdict, used) {
            (Verdict::Ok, _) => Status::Ok,
            (Verdict::Warn, _) | (Verdict::Fail, false) => Status::Warn,
            (Verdict::Fail, true) => Status::Fail,
        };
        let detail = match (&report.binary, &report.version) {
            (Some(bin), Some(v)) => format!(
                "{} {v} (tested: {}); recorded transcript parses: {}",
                bin.display(),
                report.tested_versions.join(", "),
                report.fixture.ok
            ),
            (Some(bin), None) => format!("{} (version unknown)", bin.display()),
            (None, _) => "binary not found".to_owned(),
        };
        out.push(check(
            &label,
            status,
            detail,
            (!report.problems.is_empty()).then(|| report.problems.join("; ")),
        ));
        if !env.missing.is_empty() {
            out.push(check(
                &format!("worker {name} environment"),
                if used { Status::Fail } else { Status::Warn },
                format!("not set: {}", env.missing.join(", ")),
                Some(format!(
                    "export {} before oxi runs (cron and systemd start with an empty environment; use an EnvironmentFile)",
                    env.missing.join(", ")
                )),
            ));
        }
    }
}

async fn github_checks(
    config: &LoadedConfig,
    parent_env: &[(String, String)],
    out: &mut Vec<Check>,
) {
    if config.config.run.mode != RunMode::Release {
        out.push(check(
            "github",
            Status::Ok,
            "fast mode: GitHub is never written to",
            None,
        ));
        return;
    }
    let Some(github) = &config.config.github else {
        out.push(check(
            "github",
            Status::Fail,
            "release mode but no [github] table",
            Some("add [github] with repo (see oxi.toml.example) or set run.mode = \"fast\"".into()),
        ));
        return;
    };
    let token = match crate::github::resolve_token(github, parent_env) {
        Ok(token) => token,
        Err(e) => {
            out.push(check("github token", Status::Fail, e.to_string(), None));
            return;
        }
    };
    let result = async {
        let client = crate::github::GithubClient::new(github, &token)?;
        client.repository().await
    }
    .await;
    out.push(match result {
        Ok(repo) if repo.permissions.as_ref().is_some_and(|p| p.push) => check(
            "github token",
            Status::Ok,
            format!("push access to {}", repo.full_name),
            None,
        ),
        Ok(repo) => check(
            "github token",
            Status::Fail,
            format!("no push access to {}", repo.full_name),
            Some("use a token with contents and pull-request write access".into()),
        ),
        Err(e) => check("github token", Status::Fail, e.to_string(), None),
    });
    let remote = crate::git::run(&config.repo_root, &["ls-remote", "--heads", &github.remote]);
    out.push(match remote {
        Ok(_) => check(
            "git remote",
            Status::Ok,
            format!("{} reachable", github.remote),
            None,
        ),
        Err(e) => check(
            "git remote",
            Status::Fail,
            e.to_string(),
            Some(format!(
                "check `git remote -v` and the credentials for {}",
                github.remote
            )),
        ),
    });
}

fn command_checks(config: &LoadedConfig, parent_env: &[(String, String)], out: &mut Vec<Check>) {
    let caps = &config.config.caps;
    out.push(check(
        "caps",
        Status::Ok,
        format!(
            "job ${:.2} / {}, daily ${:.2}, monthly ${:.2}, {} attempts",
            caps.job_usd, caps.job_runtime, caps.daily_usd, caps.monthly_usd, caps.max_attempts
        ),
        None,
    ));
    let path_var = parent_env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let mut any = false;
    for (tier, commands) in [
        ("tier0", &config.config.verify.tier0),
        ("tier1", &config.config.verify.tier1),
        ("tier2", &config.config.verify.tier2),
    ] {
        for command in commands {
            any = true;
            let program = command.argv.first().map(String::as_str).unwrap_or("");
            out.push(
                match contract::resolve_binary(program, path_var, &config.repo_root) {
                    Some(bin) => check(
                        &format!("verify.{tier} {}", command.name),
                        Status::Ok,
                        bin.display().to_string(),
                        None,
                    ),
                    None => check(
                        &format!("verify.{tier} {}", command.name),
                        Status::Fail,
                        format!("{program:?} is not found"),
                        Some(format!(
                            "install it or fix verify.{tier} in {}",
                            config.display_path()
                        )),
                    ),
                },
            );
        }
    }
    if !any {
        out.push(check(
            "acceptance commands",
            Status::Warn,
            "none configured: tasks are verified by governance only",
            Some("add verify.tier0 = [{ name = \"unit\", argv = [...] }]".into()),
        ));
    }
}

fn template_checks(out: &mut Vec<Check>) {
    let hints = vec!["src/lib.rs".to_owned()];
    let protected = vec![".github/workflows/**".to_owned()];
    let executor = crate::prompt::executor(&crate::prompt::ExecutorPrompt {
        id: "T0-1",
        title: "doctor",
        subtitle: None,
        brief: "check",
        file_hints: &hints,
        acceptance: vec!["true".into()],
        worktree: "/tmp".into(),
        protected: &protected,
        attempt: 2,
        max_attempts: 3,
        last_failure: Some("x".into()),
    });
    let reviewer = crate::prompt::reviewer(&crate::prompt::ReviewerPrompt {
        id: "T0-1",
        title: "doctor",
        brief: "check",
        attempt: 1,
        max_attempts: 3,
        files: 1,
        lines_added: 1,
        lines_removed: 0,
        patch: String::new(),
        verification: Vec::new(),
    });
    out.push(match (executor, reviewer) {
        (Ok(_), Ok(_)) => check(
            "templates",
            Status::Ok,
            "executor and reviewer prompts render",
            None,
        ),
        (Err(e), _) | (_, Err(e)) => check(
            "templates",
            Status::Fail,
            e.to_string(),
            Some("this is an oxi bug; report it".into()),
        ),
    });
}

/// Which protection guards the main checkout while workers run (docs/safety.md).
fn confinement_check(config: &LoadedConfig) -> Check {
    use crate::confine::Protection;
    const NAME: &str = "worker confinement";
    let codex_sandboxed: Vec<&str> = config
        .config
        .workers
        .iter()
        .filter(|(_, w)| {
            w.kind == crate::config::WorkerKind::Codex && w.sandbox() != "danger-full-access"
        })
        .map(|(name, _)| name.as_str())
        .collect();
    let codex_note = if codex_sandboxed.is_empty() {
        String::new()
    } else {
        format!(
            "; codex worker(s) {} confine themselves with codex's sandbox instead",
            codex_sandboxed.join(", ")
        )
    };
    match (config.config.governance.confine, Protection::available()) {
        (crate::config::ConfineMode::Off, _) => check(
            NAME,
            Status::Ok,
            "post-run check only (governance.confine = \"off\")",
            None,
        ),
        (crate::config::ConfineMode::Auto, Protection::Landlock { abi }) => check(
            NAME,
            Status::Ok,
            format!(
                "Landlock ABI {abi}: workers write only in their worktree, a temp dir and their CLI's state{codex_note}"
            ),
            None,
        ),
        (crate::config::ConfineMode::Auto, _) if cfg!(target_os = "linux") => check(
            NAME,
            Status::Warn,
            format!("post-run check only: {}", crate::confine::unavailable_reason()),
            Some("boot a kernel with Landlock ABI 2+ (5.19+, `landlock` in lsm=) so workers cannot write outside their worktree; until then the post-run check names only what it can tie to a worker (docs/safety.md)".into()),
        ),
        (crate::config::ConfineMode::Auto, _) => check(
            NAME,
            Status::Ok,
            format!("post-run check only: {}", crate::confine::unavailable_reason()),
            None,
        ),
    }
}

/// Every check, in order. The last one repeats, word for word, what `oxi tick` and
/// `oxi saturate` would refuse to dispatch on.
pub async fn run(config: &LoadedConfig, parent_env: &[(String, String)]) -> Vec<Check> {
    let mut out = vec![check("config", Status::Ok, config.display_path(), None)];
    let blocking = crate::tick::blocking_problems(config, parent_env);
    ledger_checks(config, &mut out);
    git_checks(config, &mut out);
    out.push(confinement_check(config));
    worker_checks(config, parent_env, &mut out).await;
    github_checks(config, parent_env, &mut out).await;
    command_checks(config, parent_env, &mut out);
    template_checks(&mut out);
    out.push(if blocking.is_empty() {
        check(
            "dispatch",
            Status::Ok,
            "oxi tick and oxi saturate may dispatch",
            None,
        )
    } else {
        check(
            "dispatch",
            Status::Fail,
            blocking.join("; "),
            Some("oxi tick and oxi saturate refuse to dispatch until this is fixed".into()),
        )
    });
    out
}
