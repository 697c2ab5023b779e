//! `oxi run`: one worker run outside the queue, in a directory, as the tick would run it:
//! same argv, environment allow-list, caps, artifacts and ledger records. How an operator
//! tries a worker configuration before trusting it to cron.

use std::io::{IsTerminal, Read};

use anyhow::{Context as _, Result};

use super::{Context, parent_env, watch_signals};
use crate::cli::RunArgs;
use crate::output::{Format, Grid, json_string, write_stdout};
use crate::runner::{self, RunReport, RunRequest};
use crate::worker::Classification;
use crate::{ExitWith, exit};

fn read_prompt(args: &RunArgs) -> Result<String> {
    let prompt = match (&args.prompt, &args.prompt_file) {
        (Some(prompt), _) => prompt.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the prompt from stdin")?;
            text
        }
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the prompt from {}", path.display()))?,
        (None, None) => String::new(),
    };
    if prompt.trim().is_empty() {
        anyhow::bail!("the prompt is empty; say what the worker should do");
    }
    Ok(prompt)
}

fn summary_table(report: &RunReport) -> String {
    let mut grid = Grid::new(["field", "value"]);
    let tokens = &report.tokens;
    let rows: Vec<(&str, String)> = vec![
        ("run", report.run_id.clone()),
        (
            "worker",
            format!(
                "{} ({}{})",
                report.worker,
                report.worker_kind,
                report
                    .model
                    .as_deref()
                    .map(|m| format!(", {m}"))
                    .unwrap_or_default()
            ),
        ),
        ("classification", report.classification.as_str().to_owned()),
        (
            "exit",
            match (report.exit_code, report.signal) {
                (Some(code), _) => code.to_string(),
                (None, Some(signal)) => format!("signal {signal}"),
                (None, None) => "-".to_owned(),
            },
        ),
        (
            "cost",
            format!(
                "{} ({})",
                crate::money::format_usd(report.cost_microusd),
                report.cost_source
            ),
        ),
        (
            "tokens",
            format!(
                "in {} (cached {}) · out {} (reasoning {})",
                tokens.input, tokens.cached_input, tokens.output, tokens.reasoning
            ),
        ),
        (
            "time",
            humantime::format_duration(std::time::Duration::from_millis(
                report.elapsed_ms / 100 * 100,
            ))
            .to_string(),
        ),
        (
            "files changed",
            if report.files_changed.is_empty() {
                "none".to_owned()
            } else {
                report.files_changed.join(", ")
            },
        ),
        ("run dir", report.run_dir.display().to_string()),
    ];
    for (field, value) in rows {
        grid.row([field.to_owned(), value]);
    }
    if let Some(detail) = &report.detail {
        grid.row(["detail".to_owned(), detail.clone()]);
    }
    if report.parse_failures > 0 {
        grid.row([
            "parse failures".to_owned(),
            format!("{} (see events.jsonl)", report.parse_failures),
        ]);
    }
    grid.render(Format::Table)
}

pub fn run(ctx: &Context, args: &RunArgs) -> Result<()> {
    let config = ctx.config()?;
    let prompt = read_prompt(args)?;
    // Without --worker: the default executor chain's first choice, with the model it names.
    let (worker_name, model) = match &args.worker {
        Some(name) => (name.clone(), None),
        None => match config.config.routing.executor.0.first().and_then(|text| {
            crate::routing::RouteChoice::parse(text, crate::routing::ChoiceKind::Worker)
        }) {
            Some(choice) => (choice.name().to_owned(), choice.model().map(str::to_owned)),
            None => anyhow::bail!("no --worker given and routing.executor is empty"),
        },
    };
    let cwd = match &args.cwd {
        Some(dir) => ctx.cwd.join(dir),
        None => ctx.cwd.clone(),
    };
    let cwd = cwd
        .canonicalize()
        .map_err(|_| runner::RunnerError::BadCwd(cwd.clone()))?;
    let mut ledger = ctx.ledger(&config)?;
    let actor = ctx.operator();
    // The transcript goes to stderr as the run goes, unless -q asked for quiet.
    let live: Option<Box<dyn std::io::Write + Send>> = (ctx.global.quiet == 0)
        .then(|| Box::new(anstream::stderr()) as Box<dyn std::io::Write + Send>);
    let request = RunRequest {
        model: model.as_deref(),
        route: None,
        worker_name: &worker_name,
        prompt: &prompt,
        cwd: &cwd,
        role: crate::worker::WorkerRole::Adhoc,
        task_id: None,
        attempt: 0,
        worktree: None,
        branch: None,
        actor: &actor,
        parent_env: parent_env(),
        live,
        track_files: true,
        run_id: None,
    };
    let prepared = runner::prepare(&config, request)?;
    for name in &prepared.env.missing {
        tracing::warn!(
            "workers.{worker_name}.env lists {name}, which is not set in oxi's environment"
        );
    }
    if let Some(warning) = prepared.unpriced_warning() {
        tracing::warn!("{warning}");
    }
    prepared.admit(&mut ledger, prepared.caps.job)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let shutdown = watch_signals();
        prepared.run(&mut ledger, shutdown).await
    })?;

    let text = match ctx.global.format {
        Format::Json => json_string(&report)?,
        _ => summary_table(&report),
    };
    write_stdout(&text)?;
    if !std::io::stderr().is_terminal() {
        tracing::debug!(run = %report.run_id, "run finished");
    }
    match report.classification {
        Classification::Success => Ok(()),
        Classification::Killed => Err(ExitWith(exit::INTERRUPTED).into()),
        _ => Err(ExitWith(exit::FAILURE).into()),
    }
}
