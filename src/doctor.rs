//! `oxi doctor`: the preflight. Each check says ok / warn / fail and, for anything
//! not ok, the exact fix. `oxi tick` refuses to dispatch on the blocking subset
//! ([`crate::preflight::blocking_problems`]) with the same messages.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::Serialize;

use crate::config::{LoadedConfig, RunMode};
use crate::runner::contract::{self, Verdict};

mod issues;
mod login;

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
    /// A failure here makes `oxi tick` and `oxi saturate` refuse (or fail) before they
    /// dispatch; the final `dispatch` check names every such failure.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub blocks_dispatch: bool,
}

fn check(name: &str, status: Status, detail: impl Into<String>, fix: Option<String>) -> Check {
    Check {
        name: name.to_owned(),
        status,
        detail: detail.into(),
        fix,
        blocks_dispatch: false,
    }
}

/// Checks whose failure stops a tick before it dispatches: it cannot open the ledger
/// (exit 4), read the roadmap (exit 5) or, in release mode, use GitHub (blocked).
const BLOCKING_CHECKS: &[&str] = &["ledger", "roadmap", "github", "github token"];

/// Free bytes on the filesystem holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    Some(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}

/// The configured ledger if it exists and opens (the ledger check reports why not).
fn open_ledger(config: &LoadedConfig) -> Option<crate::ledger::Ledger> {
    let at = config.ledger_at();
    if let crate::ledger::LedgerAt::File(path) = &at
        && !path.exists()
    {
        return None;
    }
    crate::ledger::Ledger::open_existing_at(&at).ok()
}

/// A Postgres ledger (`[ledger] url`): the connection, the schema version and the guard
/// triggers, this host's name among the live hosts, and the clock against the database's (a
/// lease is a time: a host whose clock runs ahead reaps others' runs early).
fn shared_ledger_checks(config: &LoadedConfig, out: &mut Vec<Check>) {
    let at = config.ledger_at();
    let ledger = match crate::ledger::Ledger::open_existing_at(&at) {
        Ok(ledger) => ledger,
        Err(e) => {
            let fix = "check [ledger] url, its password (password_env or ~/.pgpass) and that the server is reachable";
            out.push(check(
                "ledger",
                Status::Fail,
                e.to_string(),
                Some(fix.into()),
            ));
            return;
        }
    };
    let version = ledger.read().schema_version().unwrap_or(0);
    out.push(match ledger.integrity_check() {
        Ok(problems) if problems.is_empty() => check(
            "ledger",
            Status::Ok,
            format!("{at} (PostgreSQL, schema v{version}, guard triggers and rollup ok)"),
            None,
        ),
        Ok(problems) => check("ledger", Status::Fail, problems.join("; "), None),
        Err(e) => check("ledger", Status::Fail, e.to_string(), None),
    });
    host_check(config, &ledger, out);
    out.push(match ledger.clock_skew_ms() {
        Ok(skew) if skew.abs() <= 1_000 => check(
            "clock",
            Status::Ok,
            format!("{skew} ms from the database's"),
            None,
        ),
        Ok(skew) => check(
            "clock",
            if skew.abs() <= 10_000 {
                Status::Warn
            } else {
                Status::Fail
            },
            format!("{skew} ms from the database's: leases are times, so hosts must agree on it"),
            Some("run an NTP client (chrony, systemd-timesyncd) on this host".into()),
        ),
        Err(e) => check("clock", Status::Fail, e.to_string(), None),
    });
}

fn ledger_checks(config: &LoadedConfig, out: &mut Vec<Check>) {
    if config.ledger_at().is_shared() {
        return shared_ledger_checks(config, out);
    }
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
            host_check(config, &ledger, out);
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

/// `[host] name` must tell this host apart: another live host with the same name on another
/// machine fails (their runs, heartbeats and label routing would mix). Shown once another
/// host has used the ledger; alone, there is nothing to compare.
fn host_check(config: &LoadedConfig, ledger: &crate::ledger::Ledger, out: &mut Vec<Check>) {
    let me = crate::host::Identity::of(config);
    let Ok(hosts) = ledger.read().hosts() else {
        return;
    };
    let others: Vec<_> = hosts
        .iter()
        .filter(|h| !(h.name == me.name && h.machine_id == me.machine_id))
        .collect();
    if others.is_empty() {
        return;
    }
    let now = crate::clock::now_ms();
    let clash = others
        .iter()
        .find(|h| h.name == me.name && h.is_live(now, crate::host::LIVE_WINDOW_MS));
    out.push(match clash {
        Some(other) => check(
            "host",
            Status::Fail,
            format!(
                "host name {:?} is also used by a live host on another machine (machine id {}, oxi pid {}, last heartbeat {})",
                me.name,
                other.machine_id,
                other.pid,
                crate::clock::rfc3339(other.last_heartbeat_ms)
            ),
            Some(format!(
                "give each host its own name: set [host] name in {}",
                config.display_path()
            )),
        ),
        None => check(
            "host",
            Status::Ok,
            format!(
                "{} (unique among {} other host(s) in the ledger)",
                me.name,
                others.len()
            ),
            None,
        ),
    });
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
    out.push(match crate::pipeline::worktree::resolve(repo, base) {
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
    let routed = config.config.routing.routed_workers();
    for (name, worker) in &config.config.workers {
        let env = crate::runner::env::worker_env(worker, parent_env.iter().cloned(), token_env);
        let report = contract::check(name, worker, &env.vars, &config.repo_root).await;
        let label = format!("worker {name}");
        let used = routed.contains(name.as_str());
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
        // A credential the CLI can also take from its own login is judged by the login
        // check; CODEX_HOME is optional (codex falls back to ~/.codex).
        let missing: Vec<&String> = env
            .missing
            .iter()
            .filter(|v| !worker.kind.adapter().login_vars().contains(&v.as_str()))
            .collect();
        if !missing.is_empty() {
            let names = missing
                .iter()
                .map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            out.push(check(
                &format!("worker {name} environment"),
                if used { Status::Fail } else { Status::Warn },
                format!("not set: {names}"),
                Some(format!(
                    "export {names} before oxi runs (cron and systemd start with an empty environment; use an EnvironmentFile)"
                )),
            ));
        }
    }
}

/// Each worker's live probe (src/worker/probe): re-run when the installed version changed; a
/// quarantined worker fails with the version to pin. A version that passed is no longer
/// warned about as untested.
async fn probe_checks(
    config: &LoadedConfig,
    parent_env: &[(String, String)],
    out: &mut Vec<Check>,
) {
    use crate::worker::probe::{self, Standing};
    let Some(mut ledger) = open_ledger(config) else {
        return; // the ledger check reports it
    };
    let token_env = config.config.github.as_ref().map(|g| g.token_env.as_str());
    for (name, worker) in &config.config.workers {
        let env = crate::runner::env::worker_env(worker, parent_env.iter().cloned(), token_env);
        let Ok(output) =
            contract::probe_version(&worker.command, &env.vars, &config.repo_root, None).await
        else {
            continue; // the worker check above reports it
        };
        let version = worker.kind.adapter().parse_version(&output);
        let label = format!("worker {name} probe");
        match probe::doctor_standing(
            name,
            worker,
            &env.vars,
            version,
            &config.state_dir,
            &mut ledger,
        )
        .await
        {
            Ok(None) => {}
            Ok(Some(Standing::ProbedGood { version, at_ms })) => {
                // Once a version was read, the contract check's only warning is that it is
                // untested; a version that passed the probe is no longer in doubt.
                let untested = format!("{version} is not a version oxi was tested with");
                if let Some(c) = out.iter_mut().find(|c| {
                    c.name == format!("worker {name}")
                        && c.status == Status::Warn
                        && c.fix.as_deref().is_some_and(|f| f.contains(&untested))
                }) {
                    c.status = Status::Ok;
                    c.fix = None;
                }
                let when = crate::clock::rfc3339(at_ms);
                out.push(check(
                    &label,
                    Status::Ok,
                    format!("{version} passed the live probe at {when}"),
                    None,
                ));
            }
            Ok(Some(Standing::Quarantined { detail, fix })) => {
                out.push(check(&label, Status::Fail, detail, Some(fix)));
            }
            Err(e) => out.push(check(
                &label,
                Status::Fail,
                format!("the live probe could not run: {e}"),
                Some("fix what it says, then run `oxi workers --probe`".to_owned()),
            )),
        }
    }
}

/// Every routed worker's model must have a price (a `[rates]` card, built in or configured):
/// without one the running cost is unknown until the CLI reports a final figure (Claude) or
/// never (Codex), so `caps.job_usd` cannot stop a run early. A failure, not a warning.
fn price_checks(config: &LoadedConfig, out: &mut Vec<Check>) {
    let routing = &config.config.routing;
    let routed = routing.routed_workers();
    let mut priced = std::collections::BTreeSet::new();
    let mut unpriced = Vec::new();
    for name in routed {
        let Some(worker) = config.config.workers.get(name) else {
            continue;
        };
        match worker.model.as_deref() {
            Some(model) => match config.config.rates.get(model) {
                Some(card) => {
                    priced.insert(format!(
                        "{model} (${:.2} in / ${:.2} out per Mtok)",
                        card.input_per_mtok, card.output_per_mtok
                    ));
                }
                None => unpriced.push((name, Some(model))),
            },
            None => unpriced.push((name, None)),
        }
    }
    if unpriced.is_empty() {
        let detail = priced.into_iter().collect::<Vec<_>>().join(", ");
        out.push(check("prices", Status::Ok, detail, None));
        return;
    }
    let detail = unpriced
        .iter()
        .map(|(name, model)| match model {
            Some(model) => format!("workers.{name}.model {model:?} has no [rates] card"),
            None => format!("workers.{name} names no model, so it cannot be priced"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let fix = unpriced
        .iter()
        .map(|(name, model)| match model {
            Some(model) => format!(
                "add [rates.\"{model}\"] with input_per_mtok and output_per_mtok (USD per million tokens) to {}",
                config.display_path()
            ),
            None => format!("set workers.{name}.model and give it a [rates] card"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    out.push(check(
        "prices",
        Status::Fail,
        format!("{detail}: caps.job_usd cannot stop its runs early"),
        Some(fix),
    ));
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
        plan: None,
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
        .filter(|(_, w)| w.kind.adapter().own_sandbox(w).is_some())
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

/// Every check, in order. The last one, `dispatch`, says "dispatch blocked" exactly when a
/// check above failed in a way that stops `oxi tick` and `oxi saturate` (the same words they
/// print), and names those failures. Blocks on workers whose checks now pass are cleared
/// (recorded as `worker_unblocked` by `actor`).
pub async fn run(
    config: &LoadedConfig,
    parent_env: &[(String, String)],
    actor: &str,
) -> Vec<Check> {
    let mut out = vec![check("config", Status::Ok, config.display_path(), None)];
    let blocking = crate::preflight::blocking_problems(config, parent_env);
    ledger_checks(config, &mut out);
    roadmap_check(config, &mut out);
    git_checks(config, &mut out);
    out.push(confinement_check(config));
    worker_checks(config, parent_env, &mut out).await;
    probe_checks(config, parent_env, &mut out).await;
    price_checks(config, &mut out);
    login::checks(config, parent_env, &mut out).await;
    reviewer_chain_check(config, parent_env, &mut out);
    worker_block_checks(config, actor, &mut out);
    github_checks(config, parent_env, &mut out).await;
    issues::check_issues(config, parent_env, &mut out).await;
    gateway_checks(config, parent_env, &mut out).await;
    command_checks(config, parent_env, &mut out);
    template_checks(&mut out);
    notify_checks(config, parent_env, &mut out);
    improve_check(config, &mut out);
    for c in &mut out {
        if BLOCKING_CHECKS.contains(&c.name.as_str()) {
            c.blocks_dispatch = true;
        }
    }
    out.push(dispatch_check(&out, blocking));
    out
}

/// With `[improve]`, a scan finished within `improve.stale_after` (a warning otherwise: the
/// schedule may be missing or failing).
fn improve_check(config: &LoadedConfig, out: &mut Vec<Check>) {
    let Some(improve) = &config.config.improve else {
        return;
    };
    let Ok(ledger) = crate::ledger::Ledger::open_existing(&config.ledger_path()) else {
        return;
    };
    let Ok(last) = ledger.read().last_improve_scan() else {
        return;
    };
    let last_ms = last.as_ref().and_then(|s| s.finished_at_ms);
    let now = crate::clock::now_ms();
    out.push(match crate::improve::staleness(improve, last_ms, now) {
        Some(warning) => check(
            "auto-improve",
            Status::Warn,
            warning,
            Some("`oxi init --schedule improve` prints a daily schedule; `oxi improve scan` runs one now".to_owned()),
        ),
        None => check(
            "auto-improve",
            Status::Ok,
            format!(
                "last scan finished {}",
                last_ms.map(crate::clock::rfc3339).unwrap_or_default()
            ),
            None,
        ),
    });
}

/// Each `[gateway.providers]` entry answers (docs/gateway.md); a failure disables only the
/// features routed to it, so it never blocks dispatch.
async fn gateway_checks(
    config: &LoadedConfig,
    parent_env: &[(String, String)],
    out: &mut Vec<Check>,
) {
    use crate::gateway::Probe;
    for (name, probe) in crate::gateway::probe_all(&config.config, parent_env).await {
        let name = format!("gateway {name}");
        out.push(match probe {
            Probe::Ok { detail } => check(&name, Status::Ok, detail, None),
            Probe::Skipped { detail } => check(&name, Status::Warn, detail, None),
            Probe::Failed { detail, fix } => check(&name, Status::Fail, detail, Some(fix)),
        });
    }
}

/// The verdict on dispatch: blocked by what the tick itself checks
/// ([`crate::preflight::blocking_problems`]) or by a failed check that stops a tick; otherwise
/// open, whatever else failed.
fn dispatch_check(checks: &[Check], mut blocking: Vec<String>) -> Check {
    blocking.extend(
        checks
            .iter()
            .filter(|c| c.status == Status::Fail && c.blocks_dispatch)
            .map(|c| format!("{}: {}", c.name, c.detail)),
    );
    if blocking.is_empty() {
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
            format!("dispatch blocked: {}", blocking.join("; ")),
            Some("oxi tick and oxi saturate refuse to dispatch until this is fixed".into()),
        )
    }
}

/// The roadmap parses (as the tick's ingest reads it); an error names file:line.
fn roadmap_check(config: &LoadedConfig, out: &mut Vec<Check>) {
    let path = config.roadmap_path();
    let parsed = crate::roadmap::ingest::RoadmapFile::read(&path, &config.repo_root)
        .and_then(|file| file.parse(config.config.project.default_priority_tier));
    out.push(match parsed {
        Ok(roadmap) => check(
            "roadmap",
            Status::Ok,
            format!("{}: {} items", path.display(), roadmap.items.len()),
            None,
        ),
        Err(e) => check(
            "roadmap",
            Status::Fail,
            e.to_string(),
            Some(
                "fix the line named (docs/roadmap-formats.md); `oxi ingest` shows the same error"
                    .into(),
            ),
        ),
    });
}

/// At least one worker of `routing.reviewer` can start; otherwise verified work waits for a
/// person (held: review). That does not stop a tick.
fn reviewer_chain_check(
    config: &LoadedConfig,
    parent_env: &[(String, String)],
    out: &mut Vec<Check>,
) {
    let chain = &config.config.routing.reviewer.0;
    if chain.is_empty() {
        return;
    }
    let path_var = parent_env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let failing: Vec<&str> = out
        .iter()
        .filter(|c| c.status == Status::Fail)
        .filter_map(|c| c.name.strip_prefix("worker "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    let usable = config.config.routing.reviewer.workers().find(|name| {
        !failing.contains(name)
            && config.config.workers.get(*name).is_some_and(|w| {
                w.command.first().is_some_and(|program| {
                    contract::resolve_binary(program, path_var, &config.repo_root).is_some()
                })
            })
    });
    out.push(match usable {
        Some(name) => check(
            "reviewer chain",
            Status::Ok,
            format!("{name} reviews ({})", chain.join(" → ")),
            None,
        ),
        None => check(
            "reviewer chain",
            Status::Fail,
            format!("no reviewer can run: {} (see the worker checks above)", chain.join(", ")),
            Some(format!(
                "fix those workers or routing.reviewer in {}; until then verified work is held for review (`oxi approve TASK`)",
                config.display_path()
            )),
        ),
    });
}

/// Workers blocked after a failed login: cleared when the worker's checks above pass, a
/// failure otherwise (one that stops dispatch when every executor is blocked).
fn worker_block_checks(config: &LoadedConfig, actor: &str, out: &mut Vec<Check>) {
    let Some(mut ledger) = open_ledger(config) else {
        return; // the ledger check reports it
    };
    let Ok(blocks) = ledger.read().worker_blocks() else {
        return;
    };
    let failing = |worker: &str| {
        out.iter().any(|c| {
            c.status == Status::Fail
                && (c.name == format!("worker {worker}")
                    || c.name.starts_with(&format!("worker {worker} ")))
        })
    };
    let mut results = Vec::new();
    let mut still_blocked = Vec::new();
    for block in blocks {
        let name = format!("worker {} block", block.worker);
        if failing(&block.worker) {
            still_blocked.push(block.worker.clone());
            results.push(check(
                &name,
                Status::Fail,
                block.reason(),
                Some(format!(
                    "fix what the worker {} checks above say, then run `oxi doctor` again",
                    block.worker
                )),
            ));
            continue;
        }
        let why = format!("oxi doctor: worker {}'s checks pass", block.worker);
        let now = crate::clock::now_ms();
        results.push(
            match ledger.write(|q| q.unblock_worker(&block.worker, actor, &why, now)) {
                Ok(_) => check(
                    &name,
                    Status::Ok,
                    format!("cleared (was: {} “{}”)", block.class, block.message),
                    None,
                ),
                Err(e) => check(
                    &name,
                    Status::Fail,
                    format!("could not clear the block: {e}"),
                    None,
                ),
            },
        );
    }
    let chain = &config.config.routing.executor;
    let all_blocked = !chain.0.is_empty()
        && chain
            .workers()
            .all(|w| still_blocked.iter().any(|b| b == w));
    for mut c in results {
        c.blocks_dispatch = all_blocked && c.status == Status::Fail;
        out.push(c);
    }
}

/// Each notification sink: its variables set (else it cannot send: a failure), and not
/// failing its last attempts (a warning with the last error). Never blocks dispatch.
fn notify_checks(config: &LoadedConfig, parent_env: &[(String, String)], out: &mut Vec<Check>) {
    use crate::notify::SinkHealth;
    let ledger = open_ledger(config);
    for (sink, health) in crate::notify::sink_problems(config, ledger.as_ref(), parent_env) {
        let name = format!("notify {sink}");
        out.push(match health {
            SinkHealth::Ok(detail) => check(&name, Status::Ok, detail, None),
            SinkHealth::Broken(why) => check(
                &name,
                Status::Fail,
                why,
                Some(format!(
                    "export the variable in the environment oxi runs in (cron, systemd), or fix [[notify.sinks]] in {}",
                    config.display_path()
                )),
            ),
            SinkHealth::Failing {
                attempts,
                last_error,
            } => check(
                &name,
                Status::Warn,
                format!("its last {attempts} attempts failed; the last: {last_error}"),
                Some(format!(
                    "`oxi notify status` lists the attempts; `oxi notify test --sink {sink}` tries it now"
                )),
            ),
        });
    }
}
