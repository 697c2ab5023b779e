//! `oxi demo`: the README's first command. A throwaway sample repository (a roadmap of three
//! items and a real acceptance command), and the whole loop in fast mode with the offline
//! worker (`oxi-fake-worker`, which speaks Claude Code's wire format): no network, no API key.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use super::Context;
use super::parent_env;
use crate::cli::DemoArgs;
use crate::config::LoadedConfig;
use crate::ledger::Ledger;
use crate::output::write_stdout;
use crate::pipeline::JobResult;

const ROADMAP: &str = "# Sample roadmap\n\n## Tier 0\n\n**T0-1 · Write the greeting note**\nCreate `notes/greeting.md` that welcomes new contributors.\n\n**T0-2 · Write the farewell note**\nCreate `notes/farewell.md` for contributors who move on.\n\n## Tier 1\n\n**T1-1 · Write the changelog**\nCreate `notes/changelog.md` summarising what changed.\n";

const CHECK: &str = "# The sample's acceptance test: every note starts with a '# ' title.\nfor f in notes/*.md; do\n  head -n 1 \"$f\" | grep -q '^# ' || { echo \"$f: the first line must be a '# ' title\"; exit 1; }\ndone\n";

fn fake_worker() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the oxi binary")?;
    let fake = exe.with_file_name("oxi-fake-worker");
    if !fake.is_file() {
        bail!(
            "the offline worker {} is missing; it is built and installed with oxi (cargo build / cargo install installs both)",
            fake.display()
        );
    }
    Ok(fake)
}

fn git(dir: &Path, args: &[&str]) -> Result<()> {
    crate::git::run(
        dir,
        &[
            "-c",
            "user.name=oxi demo",
            "-c",
            "user.email=demo@oxi.invalid",
        ]
        .iter()
        .chain(args)
        .copied()
        .collect::<Vec<_>>(),
    )?;
    Ok(())
}

fn say(text: &str) -> Result<()> {
    write_stdout(&format!("{text}\n"))?;
    Ok(())
}

/// How to call oxi in the hint: `oxi` when that is this binary on PATH, else its full path.
fn oxi_command() -> String {
    let me = std::env::current_exe().and_then(|p| p.canonicalize()).ok();
    let on_path = which::which("oxi").ok().and_then(|p| p.canonicalize().ok());
    match me {
        Some(me) if on_path.as_ref() != Some(&me) => me.display().to_string(),
        _ => "oxi".to_owned(),
    }
}

/// Where the kept sample repository is and what to look at there.
fn explore_hint(root: &Path) -> String {
    let oxi = oxi_command();
    let tries = [
        (
            format!("{oxi} status"),
            "counts by state, spend against the caps",
        ),
        (
            format!("{oxi} show T1-1"),
            "the retried task: runs, history, artifacts",
        ),
        (format!("{oxi} logs T1-1"), "its last run's transcript"),
        (format!("{oxi} report"), "every KPI"),
        (
            "git log --all --oneline --graph".to_owned(),
            "the delivered branches oxi/*",
        ),
        (
            "ls .oxi/runs/*/".to_owned(),
            "each run's prompt, transcript, events, meta.json",
        ),
    ];
    let width = tries.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    let mut text = format!(
        "\nkept the sample repository in {root}:\n  cd {root}\n",
        root = root.display()
    );
    for (command, what) in &tries {
        text.push_str(&format!("  {command:<width$}  # {what}\n"));
    }
    text.push_str(&format!(
        "  (roadmap.md and oxi.toml are yours to edit; `{oxi} tick` runs another pass)"
    ));
    text
}

pub fn run(_ctx: &Context, args: &DemoArgs) -> Result<()> {
    let started = Instant::now();
    let sample = SampleDir::make(args)?;
    let root = &sample.root;
    let fake = fake_worker()?;
    say(&format!("oxi demo in {}", root.display()))?;
    write_sample(root, &fake)?;
    say(
        "created a git repository with roadmap.md (3 items), check.sh (the acceptance test) and oxi.toml",
    )?;

    let config = crate::config::load(&root.join("oxi.toml"), None)?;
    let mut ledger = crate::ledger::Ledger::open(&config.ledger_path())?;
    run_passes(&config, &mut ledger)?;
    let tally = show_result(&config, &ledger, started)?;
    if args.dir.is_some() || args.keep {
        say(&explore_hint(root))?;
    } else {
        say("\n(the sample repository is removed; `oxi demo --keep` keeps it to explore)")?;
    }
    if tally.delivered != tally.tasks {
        bail!(
            "the demo delivered {} of {} tasks",
            tally.delivered,
            tally.tasks
        );
    }
    Ok(())
}

/// Where the sample repository lives: the directory asked for, or a temporary one that is
/// removed when this is dropped (unless `--keep`).
struct SampleDir {
    root: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl SampleDir {
    fn make(args: &DemoArgs) -> Result<Self> {
        let Some(dir) = &args.dir else {
            let temp = tempfile::Builder::new()
                .prefix("oxi-demo-")
                .disable_cleanup(args.keep)
                .tempdir()?;
            return Ok(Self {
                root: temp.path().canonicalize()?,
                _temp: Some(temp),
            });
        };
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty; give oxi demo an empty or new directory",
                dir.display()
            );
        }
        Ok(Self {
            root: dir.canonicalize()?,
            _temp: None,
        })
    }
}

/// The sample repository: notes, the acceptance test, the roadmap and an `oxi.toml` that runs
/// the offline worker `fake`, committed on `main`.
fn write_sample(root: &Path, fake: &Path) -> Result<()> {
    git(root, &["init", "-q", "-b", "main"])?;
    std::fs::create_dir_all(root.join("notes"))?;
    std::fs::write(
        root.join("notes/README.md"),
        "# Notes\n\nOne file per note.\n",
    )?;
    std::fs::write(root.join("check.sh"), CHECK)?;
    std::fs::write(root.join("roadmap.md"), ROADMAP)?;
    std::fs::write(root.join(".gitignore"), ".oxi/\n")?;
    std::fs::write(
        root.join("oxi.toml"),
        format!(
            "# The demo's configuration: an offline worker, a real acceptance command.\n[run]\nmode = \"fast\"\nmax_parallel_jobs = 2\n\n[workers.offline]\nkind = \"claude\"\ncommand = [{:?}]\nmodel = \"claude-sonnet-4-5\"\nset_env = {{ OXI_FAKE_SCENARIO = \"demo\" }}\n\n[routing]\nexecutor = [\"offline\"]\nreviewer = [\"offline\"]\n\n[verify]\ntier0 = [{{ name = \"notes have titles\", argv = [\"sh\", \"check.sh\"], timeout = \"30s\" }}]\n",
            fake.display().to_string()
        ),
    )?;
    git(root, &["add", "-A"])?;
    git(root, &["commit", "-q", "-m", "sample repository"])?;
    Ok(())
}

/// Up to eight passes of the loop, each one's jobs told as they ended, until nothing is left.
fn run_passes(config: &LoadedConfig, ledger: &mut Ledger) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (_tx, shutdown) = tokio::sync::watch::channel(false);
    for pass in 1..=8 {
        let report = runtime.block_on(crate::scheduler::pass(
            config,
            ledger,
            parent_env(),
            "oxi-demo",
            shutdown.clone(),
        ))?;
        if let Some(ingest) = &report.ingest {
            say(&format!(
                "tick {pass}: ingest: {} tasks added",
                ingest.added.len()
            ))?;
        }
        if report.jobs.is_empty() {
            say(&format!("tick {pass}: nothing left to do"))?;
            break;
        }
        for job in &report.jobs {
            say_job(pass, job)?;
        }
    }
    Ok(())
}

/// One job's ending; a failure with the first lines of what went wrong.
fn say_job(pass: u32, job: &JobResult) -> Result<()> {
    let outcome = match (&job.failure_class, &job.review) {
        (Some(class), _) => format!(
            "{} -> {} (next attempt gets the failure output)",
            class, job.state
        ),
        (None, Some(review)) => {
            format!("verified, {review} -> {} on {}", job.state, job.branch)
        }
        (None, None) => job.state.to_string(),
    };
    say(&format!(
        "tick {pass}: {} attempt {} by {}: {outcome}",
        job.task_id, job.attempt, job.worker
    ))?;
    if let Some(detail) = &job.detail
        && job.failure_class.is_some()
    {
        for line in detail.lines().take(2) {
            say(&format!("         {line}"))?;
        }
    }
    Ok(())
}

/// How many tasks the demo delivered, of how many.
struct Tally {
    delivered: usize,
    tasks: usize,
}

/// Each task's ending, the run's cost and time, and an excerpt of `oxi report`.
fn show_result(config: &LoadedConfig, ledger: &Ledger, started: Instant) -> Result<Tally> {
    let tasks = ledger.read().tasks()?;
    say("\nresult:")?;
    for task in &tasks {
        say(&format!(
            "  {:<5} {:<28} {:<10} {} attempt(s)  {}",
            task.spec.id,
            task.spec.title,
            task.state.as_str(),
            task.attempts,
            task.branch.as_deref().unwrap_or("")
        ))?;
    }
    let report = crate::report::build(config, ledger, "all", crate::clock::now_ms())?;
    say(&format!(
        "  {} worker runs, ${:.2} (offline worker: the figures are its scripted usage), {:.1}s",
        report.worker_calls,
        report.spend_usd,
        started.elapsed().as_secs_f64()
    ))?;
    let mut grid = crate::output::Grid::new(["", "kpi", "value"]);
    for (section, metric, value) in crate::report::rows(&report)
        .into_iter()
        .filter(|(s, _, _)| {
            matches!(
                s.as_str(),
                "tasks" | "runs" | "money" | "outcomes" | "review"
            )
        })
    {
        grid.row([section, metric, value]);
    }
    say(&format!(
        "\noxi report (excerpt; `oxi report` in the repository has all of it):\n{}",
        grid.render(crate::output::Format::Table).trim_end()
    ))?;
    let delivered = tasks
        .iter()
        .filter(|t| t.state == crate::ledger::TaskState::Delivered)
        .count();
    Ok(Tally {
        delivered,
        tasks: tasks.len(),
    })
}
