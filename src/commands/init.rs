//! `oxi init`: writes oxi.toml and .oxi/ (ledger, runs/) in the current directory, nothing else.

use anyhow::{Context as _, Result, bail};

use super::Context;
use crate::cli::InitArgs;
use crate::config::{self, CONFIG_FILE_NAME, STATE_DIR_NAME};
use crate::git;
use crate::ledger::{Ledger, LedgerAt};
use crate::output::{Format, json_string, write_stdout};

/// The starter config `oxi init` renders.
const CONFIG_TEMPLATE: &str = include_str!("../../templates/oxi.toml");

/// The `[ledger]` table `oxi init --ledger-url` writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SharedLedger<'a> {
    pub(crate) url: &'a str,
    pub(crate) password_env: Option<&'a str>,
}

/// Renders the starter config for a repository at `dir`.
pub(crate) fn render_config(
    roadmap: &str,
    base_branch: &str,
    github_repo: Option<&str>,
    ledger: Option<SharedLedger<'_>>,
) -> Result<String> {
    let toml_string = |text: &str| text.replace('\\', "\\\\").replace('"', "\\\"");
    let mut env = minijinja::Environment::new();
    env.add_template("oxi.toml", CONFIG_TEMPLATE)?;
    let text = env.get_template("oxi.toml")?.render(minijinja::context! {
        roadmap => toml_string(roadmap),
        base_branch => base_branch,
        github_repo => github_repo,
        ledger_url => ledger.map(|l| toml_string(l.url)),
        password_env => ledger.and_then(|l| l.password_env).map(toml_string),
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
    let (written, opened) = match write_config(dir, &config_path, args)? {
        ConfigFile::Kept => (false, None),
        ConfigFile::Written { shared_ledger } => (true, shared_ledger),
    };

    let state_dir = dir.join(STATE_DIR_NAME);
    if state_dir.exists() && !state_dir.is_dir() {
        bail!("{} exists and is not a directory", state_dir.display());
    }
    std::fs::create_dir_all(state_dir.join("runs"))
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    // Keep oxi's state out of the user's commits without touching their .gitignore.
    std::fs::write(state_dir.join(".gitignore"), "*\n")?;
    // The ledger the config names: a shared one is created (its schema) or joined here, so a
    // wrong URL or password shows now rather than at the first tick.
    let loaded = match config::load(&config_path, None) {
        Ok(loaded) => Some(loaded),
        Err(e) => {
            tracing::warn!(
                "{CONFIG_FILE_NAME} does not load, so the SQLite ledger is set up: {e:#} (`oxi doctor` checks it)"
            );
            None
        }
    };
    let at = loaded.as_ref().map_or_else(
        || LedgerAt::File(state_dir.join("ledger.db")),
        config::LoadedConfig::ledger_at,
    );
    // The shared ledger `--ledger-url` named is already open (and its schema current).
    let ledger = match opened {
        Some(ledger) => ledger,
        None => Ledger::open_at(&at)?,
    };
    let set_up = SetUp {
        config_written: written,
        schema_version: ledger.read().schema_version()?,
        shared_tasks: if at.is_shared() {
            Some(ledger.read().tasks()?.len())
        } else {
            None
        },
        roadmap_exists: loaded.is_some_and(|c| c.roadmap_path().exists()),
        at,
    };
    let text = match ctx.global.format {
        Format::Json => json_string(&serde_json::json!({
            "config": config_path.display().to_string(),
            "config_written": written,
            "state_dir": state_dir.display().to_string(),
            "ledger": set_up.at.to_string(),
            "ledger_schema_version": set_up.schema_version,
        }))?,
        _ => set_up.text(),
    };
    write_stdout(&text)?;
    Ok(())
}

/// What became of oxi.toml.
enum ConfigFile {
    /// It existed and `--force` was not given.
    Kept,
    /// Written; with `--ledger-url`, the shared ledger it names, opened before the write.
    Written { shared_ledger: Option<Ledger> },
}

/// Writes oxi.toml unless it exists (and `--force` is not given). A shared ledger named by
/// `--ledger-url` is opened first, so a wrong URL or a missing password leaves no oxi.toml
/// behind and the next attempt needs no `--force`.
fn write_config(
    dir: &std::path::Path,
    config_path: &std::path::Path,
    args: &InitArgs,
) -> Result<ConfigFile> {
    let shared = args.ledger_url.as_deref().map(|url| SharedLedger {
        url,
        password_env: args.password_env.as_deref(),
    });
    if args.password_env.is_some() && shared.is_none() {
        bail!("--password-env is for a PostgreSQL ledger: give --ledger-url too");
    }
    if config_path.exists() && !args.force {
        if shared.is_some() {
            bail!(
                "{CONFIG_FILE_NAME} already exists and --ledger-url would change it: add [ledger] url to it yourself (oxi.toml.example documents it), or use --force to overwrite it"
            );
        }
        tracing::info!("{CONFIG_FILE_NAME} already exists; keeping it (use --force to overwrite)");
        return Ok(ConfigFile::Kept);
    }
    if git::toplevel(dir).is_none() {
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
    let text = render_config(&roadmap, &base_branch, github_repo.as_deref(), shared)?;
    // The rendered file must load; a template bug must not leave a broken config behind.
    config::parse(&text, CONFIG_FILE_NAME).context("the generated oxi.toml does not load")?;
    let shared_ledger = shared
        .map(|shared| {
            Ledger::open_at(&LedgerAt::Postgres {
                url: shared.url.to_owned(),
                password_env: shared.password_env.map(str::to_owned),
            })
        })
        .transpose()?;
    std::fs::write(config_path, text)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    Ok(ConfigFile::Written { shared_ledger })
}

/// What `oxi init` set up, for its text summary.
struct SetUp {
    config_written: bool,
    at: LedgerAt,
    schema_version: i64,
    /// The tasks already in a shared ledger; `None` for the file ledger.
    shared_tasks: Option<usize>,
    roadmap_exists: bool,
}

impl SetUp {
    fn text(&self) -> String {
        let config = if self.config_written {
            "wrote"
        } else {
            "kept "
        };
        let version = self.schema_version;
        let ledger = match self.shared_tasks {
            None => format!("created  {STATE_DIR_NAME}/ (ledger schema v{version}, runs/)"),
            Some(tasks) => format!(
                "created  {STATE_DIR_NAME}/ (runs/)\nledger   {} (schema v{version}, shared; {tasks} tasks in it)",
                self.at
            ),
        };
        let next = if self.roadmap_exists {
            "oxi ingest && oxi plan --dry-run"
        } else {
            "write roadmap.md (see docs/roadmap-formats.md), then oxi ingest && oxi plan --dry-run"
        };
        format!("{config}    {CONFIG_FILE_NAME}\n{ledger}\nnext:    {next}\n")
    }
}
