//! `oxi init`: writes oxi.toml and .oxi/ (ledger, runs/) in the current directory, nothing else.

use anyhow::{Context as _, Result, bail};

use super::Context;
use crate::cli::InitArgs;
use crate::config::{self, CONFIG_FILE_NAME, STATE_DIR_NAME};
use crate::git;
use crate::ledger::Ledger;
use crate::output::{Format, json_string, write_stdout};

/// The starter config `oxi init` renders.
const CONFIG_TEMPLATE: &str = include_str!("../../templates/oxi.toml");

/// Renders the starter config for a repository at `dir`.
pub fn render_config(
    roadmap: &str,
    base_branch: &str,
    github_repo: Option<&str>,
) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_template("oxi.toml", CONFIG_TEMPLATE)?;
    let text = env.get_template("oxi.toml")?.render(minijinja::context! {
        roadmap => roadmap.replace('\\', "\\\\").replace('"', "\\\""),
        base_branch => base_branch,
        github_repo => github_repo,
    })?;
    // minijinja drops the template's final newline; files end with one.
    Ok(format!("{}\n", text.trim_end()))
}

/// Where a scheduler should look for programs: the directory of each configured worker's CLI
/// and of `git` as found now (cron, launchd and systemd start with a bare PATH that has none
/// of them), then the usual directories, Homebrew's included.
fn schedule_path(config: Option<&config::LoadedConfig>, repo: &std::path::Path) -> String {
    let path_var = std::env::var("PATH").ok();
    let mut programs: Vec<String> = config
        .map(|c| {
            c.config
                .workers
                .values()
                .filter_map(|w| w.command.first().cloned())
                .collect()
        })
        .unwrap_or_default();
    programs.push("git".to_owned());
    let mut dirs: Vec<String> = Vec::new();
    let found = programs.iter().filter_map(|program| {
        crate::runner::contract::resolve_binary(program, path_var.as_deref(), repo)
            .and_then(|bin| bin.parent().map(|d| d.display().to_string()))
    });
    let usual = ["/opt/homebrew/bin", "/usr/local/bin", "/usr/bin", "/bin"]
        .into_iter()
        .map(str::to_owned);
    for dir in found.chain(usual) {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs.join(":")
}

/// Creates the scheduler's environment file when it is missing: comments only, mode 0600,
/// naming the variables the workers list, so the printed recipes run as they are.
fn ensure_env_file(path: &std::path::Path, config: Option<&config::LoadedConfig>) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut names: Vec<String> = config
        .map(|c| {
            c.config
                .workers
                .values()
                .flat_map(|w| w.env.clone())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.dedup();
    let mut text = String::from(
        "# Environment for `oxi tick` / `oxi saturate` run by cron, systemd or launchd.\n\
         # KEY=value lines (no `export`); keep this file mode 0600. The variables your\n\
         # workers list in oxi.toml `env`:\n",
    );
    for name in &names {
        text.push_str(&format!("# {name}=\n"));
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(
        "created {} (mode 0600, comments only): put the workers' KEY=value lines there",
        path.display()
    );
    Ok(())
}

/// `text` with XML's special characters escaped, for values inside the plist.
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The scheduling files for `oxi init --schedule`, rendered for this repository; creates the
/// environment file they read when it is missing.
pub fn schedule(
    kind: crate::cli::ScheduleKind,
    repo: &std::path::Path,
    config: Option<&config::LoadedConfig>,
) -> Result<String> {
    use crate::cli::ScheduleKind;
    let files: &[(&str, &str)] = match kind {
        ScheduleKind::Cron => &[(
            "crontab line",
            include_str!("../../templates/schedule/cron"),
        )],
        ScheduleKind::Systemd => &[
            (
                "oxi-tick.service",
                include_str!("../../templates/schedule/oxi-tick.service"),
            ),
            (
                "oxi-tick.timer",
                include_str!("../../templates/schedule/oxi-tick.timer"),
            ),
            (
                "oxi-saturate.service (instead of the timer)",
                include_str!("../../templates/schedule/oxi-saturate.service"),
            ),
        ],
        ScheduleKind::Tmux => &[("tmux", include_str!("../../templates/schedule/tmux.md"))],
        ScheduleKind::Launchd => &[(
            "dev.oxi.tick.plist",
            include_str!("../../templates/schedule/launchd.plist"),
        )],
        ScheduleKind::Improve => &[
            (
                "crontab line (auto-improve, daily)",
                include_str!("../../templates/schedule/improve.cron"),
            ),
            (
                "oxi-improve.service",
                include_str!("../../templates/schedule/oxi-improve.service"),
            ),
            (
                "oxi-improve.timer",
                include_str!("../../templates/schedule/oxi-improve.timer"),
            ),
            (
                "dev.oxi.improve.plist",
                include_str!("../../templates/schedule/improve.plist"),
            ),
            (
                ".github/workflows/oxi-improve.yml",
                include_str!("../../templates/schedule/improve-workflow.yml"),
            ),
        ],
    };
    let oxi = std::env::current_exe()?.display().to_string();
    let home = std::env::var("HOME").unwrap_or_else(|_| "~".to_owned());
    let env_file = format!("{home}/.config/oxi/env");
    if matches!(
        kind,
        ScheduleKind::Cron | ScheduleKind::Systemd | ScheduleKind::Improve
    ) {
        ensure_env_file(std::path::Path::new(&env_file), config)?;
    }
    let path = schedule_path(config, repo);
    let repo_text = repo.display().to_string();
    // A crontab reads `%` as a newline unless it is escaped.
    let sh = |text: &str| crate::prompt::shell_words(&[text.to_owned()]).replace('%', "\\%");
    let xml = xml_escape;
    let mut out = String::new();
    for (name, source) in files {
        let mut env = minijinja::Environment::new();
        env.add_template(name, source)?;
        let text = env.get_template(name)?.render(minijinja::context! {
            repo => repo_text.clone(),
            oxi => oxi.clone(),
            env_file => env_file.clone(),
            path => path.clone(),
            repo_sh => sh(&repo_text),
            oxi_sh => sh(&oxi),
            env_file_sh => sh(&env_file),
            path_sh => sh(&path),
            repo_xml => xml(&repo_text),
            oxi_xml => xml(&oxi),
            path_xml => xml(&path),
        })?;
        out.push_str(&format!("# ---- {name}\n{}\n", text.trim_end()));
    }
    Ok(out)
}

pub fn run(ctx: &Context, args: &InitArgs) -> Result<()> {
    let dir = &ctx.cwd;
    if let Some(kind) = args.schedule {
        let root = git::toplevel(dir).map_or_else(|| dir.clone(), std::path::PathBuf::from);
        // The workers' directories go on the recipes' PATH; without a config, the usual ones.
        let config = ctx.config().ok();
        write_stdout(&schedule(kind, &root, config.as_ref())?)?;
        return Ok(());
    }
    let config_path = dir.join(CONFIG_FILE_NAME);
    let existed = config_path.exists();
    if existed && !args.force {
        tracing::info!("{CONFIG_FILE_NAME} already exists; keeping it (use --force to overwrite)");
    } else {
        let in_git = git::toplevel(dir).is_some();
        if !in_git {
            tracing::warn!(
                "{} is not inside a git repository; oxi needs one to create worktrees (`git init` first)",
                dir.display()
            );
        }
        let base_branch = git::default_branch(dir).unwrap_or_else(|| "main".to_owned());
        let roadmap = args
            .roadmap
            .as_ref()
            .map_or_else(|| "roadmap.md".to_owned(), |p| p.display().to_string());
        let github_repo = git::github_repo(dir);
        let text = render_config(&roadmap, &base_branch, github_repo.as_deref())?;
        // The rendered file must load; a template bug must not leave a broken config behind.
        config::parse(&text, CONFIG_FILE_NAME).context("the generated oxi.toml does not load")?;
        std::fs::write(&config_path, text)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
    }

    let state_dir = dir.join(STATE_DIR_NAME);
    if state_dir.exists() && !state_dir.is_dir() {
        bail!("{} exists and is not a directory", state_dir.display());
    }
    std::fs::create_dir_all(state_dir.join("runs"))
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    // Keep oxi's state out of the user's commits without touching their .gitignore.
    std::fs::write(state_dir.join(".gitignore"), "*\n")?;
    let ledger = Ledger::open(&state_dir.join("ledger.db"))?;
    let version = ledger.read().schema_version()?;

    let roadmap_exists = config::load(&config_path, None)
        .map(|c| c.roadmap_path().exists())
        .unwrap_or(false);
    let text = match ctx.global.format {
        Format::Json => json_string(&serde_json::json!({
            "config": config_path.display().to_string(),
            "config_written": !existed || args.force,
            "state_dir": state_dir.display().to_string(),
            "ledger_schema_version": version,
        }))?,
        _ => {
            let mut out = String::new();
            if existed && !args.force {
                out.push_str(&format!("kept     {CONFIG_FILE_NAME}\n"));
            } else {
                out.push_str(&format!("wrote    {CONFIG_FILE_NAME}\n"));
            }
            out.push_str(&format!(
                "created  {STATE_DIR_NAME}/ (ledger schema v{version}, runs/)\n"
            ));
            out.push_str("next:    ");
            if roadmap_exists {
                out.push_str("oxi ingest && oxi plan --dry-run\n");
            } else {
                out.push_str(
                    "write roadmap.md (see docs/roadmap-formats.md), then oxi ingest && oxi plan --dry-run\n",
                );
            }
            out
        }
    };
    write_stdout(&text)?;
    Ok(())
}
