//! The explore stage: before the executor, a `planner`-role run that may read the worktree but
//! write nothing (the CLI's own read-only mode, and oxi's confinement: Landlock lets it write
//! only its temp directory), and answers with one `OXI_PLAN {json}` line. The plan is validated,
//! stored, and used: the executor's prompt carries the goal, the steps and the expected files
//! instead of the whole brief; the overlap gate reads the expected files as file hints; the
//! critic sends a diff that strays outside them to the reviewer.
//!
//! Which tasks are explored: a rule's `explore = true|false` decides for the tasks it matches;
//! otherwise `[explore] mode` (`auto`: tasks with no file hints, or labelled or sectioned as one
//! of `[explore] labels`). Only a task whose route has a planner chain is explored.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ending::{Ending, Outcome, Stop};
use super::{Job, attribution, worktree};
use crate::clock::now_ms;
use crate::config::{Config, ExploreMode, LoadedConfig};
use crate::ledger::events::{GovernanceMemo, PlanInvalid, PlanRecorded};
use crate::ledger::{Event, FailureClass, Ledger, TaskSpec, TaskState};
use crate::money::usd_to_micro;
use crate::prompt::{self, PlanBrief, PlannerPrompt};
use crate::routing::{Assignment, RouteRole, Router, labels};
use crate::runner::{self, PreparedRun, RunReport, RunRequest, RunnerError};
use crate::worker::{Classification, WorkerRole};

/// Most entries a plan's list may hold, and longest entry: a plan is a short brief, and every
/// byte of it goes into the executor's prompt.
const MAX_ITEMS: usize = 50;
const MAX_ITEM_BYTES: usize = 1000;

/// The planner's `OXI_PLAN` block, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Plan {
    pub info_needs: Vec<String>,
    pub assumptions: Vec<String>,
    /// Repository-relative paths the work will create or change (at least one).
    pub files_expected: Vec<String>,
    /// The steps, in order (at least one).
    pub steps: Vec<String>,
    pub risks: Vec<String>,
}

/// What is wrong with a planner's answer. Each is one retry of the planner, then the task's
/// `plan_invalid` failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PlanError {
    #[error("the answer has no `OXI_PLAN {{json}}` line")]
    Missing,
    #[error("the OXI_PLAN line is not JSON: {0}")]
    NotJson(String),
    #[error("the OXI_PLAN value is not a JSON object")]
    NotObject,
    #[error("{field}: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
}

impl Plan {
    /// The fields, in the order the planner is asked for them.
    const FIELDS: [&'static str; 5] = [
        "info_needs",
        "assumptions",
        "files_expected",
        "steps",
        "risks",
    ];

    /// Validates what followed an `OXI_PLAN` marker; errors name the field.
    pub(crate) fn parse(line: Option<&str>) -> Result<Self, PlanError> {
        let line = line.map(str::trim).ok_or(PlanError::Missing)?;
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| PlanError::NotJson(e.to_string()))?;
        let object = value.as_object().ok_or(PlanError::NotObject)?;
        let mut lists = Self::FIELDS.map(|_| Vec::new());
        for (field, list) in Self::FIELDS.into_iter().zip(lists.iter_mut()) {
            *list = strings(field, object.get(field))?;
        }
        let [info_needs, assumptions, files_expected, steps, risks] = lists;
        let plan = Self {
            info_needs,
            assumptions,
            files_expected: files_expected
                .iter()
                .map(|p| relative_path(p))
                .collect::<Result<Vec<_>, _>>()?,
            steps,
            risks,
        };
        for (field, list) in [
            ("files_expected", &plan.files_expected),
            ("steps", &plan.steps),
        ] {
            if list.is_empty() {
                return Err(PlanError::Field {
                    field,
                    problem: "must name at least one".to_owned(),
                });
            }
        }
        Ok(plan)
    }

    /// Every text of the plan through `f` (secrets masked before it is stored).
    fn map(self, f: impl Fn(&str) -> String) -> Self {
        let all = |v: Vec<String>| v.iter().map(|s| f(s)).collect();
        Self {
            info_needs: all(self.info_needs),
            assumptions: all(self.assumptions),
            files_expected: all(self.files_expected),
            steps: all(self.steps),
            risks: all(self.risks),
        }
    }
}

/// `field`'s list of strings, checked.
fn strings(
    field: &'static str,
    value: Option<&serde_json::Value>,
) -> Result<Vec<String>, PlanError> {
    let bad = |problem: String| PlanError::Field { field, problem };
    let items = value
        .ok_or_else(|| bad("missing (write [] when there is nothing to say)".to_owned()))?
        .as_array()
        .ok_or_else(|| bad("must be a list of strings".to_owned()))?;
    if items.len() > MAX_ITEMS {
        return Err(bad(format!("{} entries; at most {MAX_ITEMS}", items.len())));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let text = item
                .as_str()
                .ok_or_else(|| bad(format!("entry {i} is not a string")))?
                .trim();
            if text.is_empty() {
                return Err(bad(format!("entry {i} is empty")));
            }
            if text.len() > MAX_ITEM_BYTES {
                return Err(bad(format!(
                    "entry {i} is {} bytes; at most {MAX_ITEM_BYTES}",
                    text.len()
                )));
            }
            Ok(text.to_owned())
        })
        .collect()
}

/// A `files_expected` entry as a clean repository-relative path.
fn relative_path(path: &str) -> Result<String, PlanError> {
    let bad = |problem: String| PlanError::Field {
        field: "files_expected",
        problem,
    };
    let clean = path.trim_start_matches("./");
    let escapes = clean.split('/').any(|part| part == ".." || part == ".git");
    if clean.starts_with('/') || clean.contains('\0') || escapes || clean.is_empty() {
        return Err(bad(format!(
            "{path:?} is not a path inside the repository (relative, no `..`, not in .git)"
        )));
    }
    Ok(clean.to_owned())
}

/// Whether a task is explored, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Decision {
    /// The planner the task's route names (`None`: not explored).
    pub planner: Option<Assignment>,
    pub why: String,
}

/// Whether `task` gets a planner run before its executor.
pub(crate) fn decide(config: &Config, router: &Router, task: &TaskSpec) -> Decision {
    let route = router.route(task);
    let pick = route.pick(RouteRole::Planner);
    let rule = config.routing.rules.iter().find(|r| r.name == route.name());
    let (on, why) = match rule.and_then(|r| r.explore) {
        Some(on) => (on, format!("rule {:?} says explore = {on}", route.name())),
        None => by_mode(config, task),
    };
    let planner = match pick.chain.first() {
        Some(choice) if on => Some(Assignment::resolve(&pick, choice, config)),
        _ => None,
    };
    let why = if on && planner.is_none() {
        format!("{why}, but no planner is routed (routing.planner is empty)")
    } else {
        why
    };
    Decision { planner, why }
}

/// `[explore] mode`'s answer for `task`.
fn by_mode(config: &Config, task: &TaskSpec) -> (bool, String) {
    let explore = &config.explore;
    match explore.mode {
        ExploreMode::Always => (true, "explore.mode = \"always\"".to_owned()),
        ExploreMode::Never => (false, "explore.mode = \"never\"".to_owned()),
        ExploreMode::Auto => {
            let wanted: Vec<String> = explore.labels.iter().map(|l| l.to_lowercase()).collect();
            if let Some(label) = labels(&task.body).into_iter().find(|l| wanted.contains(l)) {
                return (true, format!("labelled {label}"));
            }
            let places = [task.section.as_deref(), task.milestone.as_deref()];
            for place in places.into_iter().flatten() {
                let lower = place.to_lowercase();
                if let Some(label) = wanted.iter().find(|l| lower.contains(l.as_str())) {
                    return (true, format!("in section {place:?} ({label})"));
                }
            }
            if task.file_hints.is_empty() {
                (true, "the task names no files".to_owned())
            } else {
                (false, "an incremental task (it names its files)".to_owned())
            }
        }
    }
}

/// The files a task's latest plan expects, for the overlap gate (empty without a plan).
pub(crate) fn planned_files(ledger: &Ledger, task_id: &str) -> Vec<String> {
    ledger
        .read()
        .latest_plan(task_id)
        .ok()
        .flatten()
        .and_then(|row| serde_json::from_value::<Plan>(row.plan).ok())
        .map(|plan| plan.files_expected)
        .unwrap_or_default()
}

/// The critic's reason to call the reviewer when the diff changes files the plan did not
/// expect.
pub(super) fn strays(paths: &[String], plan: &Plan) -> Option<String> {
    let outside: Vec<&str> = paths
        .iter()
        .map(String::as_str)
        .filter(|p| !super::review::within_hints(p, &plan.files_expected))
        .collect();
    (!outside.is_empty()).then(|| {
        format!(
            "the diff strays outside the plan's files_expected ({}): {}",
            plan.files_expected.join(", "),
            outside.join(", ")
        )
    })
}

/// The explored task's plan, and the executor prompt it makes.
pub(super) struct Explored {
    pub(super) plan: Plan,
    pub(super) prompt: String,
}

/// Explores the task when it is to be: its plan (a fresh one, or an earlier attempt's), and the
/// executor's trimmed prompt. A stop here abandons the executor's admitted run.
pub(super) async fn stage(
    job: &mut Job<'_>,
    executor: &PreparedRun<'_>,
) -> Result<Option<Explored>, Stop> {
    let outcome = explore(job).await;
    if let Err(Stop::End(_)) = &outcome {
        executor.withdraw(&mut job.ledger, "the explore phase stopped the job")?;
    }
    let Some((plan, fresh)) = outcome? else {
        return Ok(None);
    };
    let spec = job.spec;
    let brief = PlanBrief::new(&spec.task.spec.body, &plan.steps, &plan.files_expected);
    let text = prompt::executor_for(
        &job.ctx.config.config,
        &spec.task,
        spec.attempt,
        &spec.worktree,
        Some(brief),
    )
    .map_err(|e| Stop::Runner(RunnerError::Prompt(e.to_string())))?;
    let event = PlanRecorded {
        files_expected: plan.files_expected.clone(),
        steps: plan.steps.len(),
        full_prompt_bytes: spec.prompt.len() as u64,
        prompt_bytes: text.len() as u64,
        fresh,
    };
    let run_id = job.result.run_id.clone();
    job.event(Some(&run_id), Event::PlanRecorded(event));
    Ok(Some(Explored { plan, prompt: text }))
}

/// The executor's run, prepared again with the trimmed prompt (same run id, admitted by the
/// claim); its recorded prompt size follows.
pub(super) fn reprepare<'p>(
    config: &LoadedConfig,
    ledger: &mut Ledger,
    executor: PreparedRun<'p>,
    prompt: &'p str,
) -> Result<PreparedRun<'p>, Stop> {
    let run_id = executor.run_id.clone();
    let request = RunRequest {
        prompt,
        run_id: Some(run_id.clone()),
        ..executor.request
    };
    let prepared = runner::prepare(config, request)?;
    ledger.write(|q| q.record_prompt_bytes(&run_id, prompt.len()))?;
    Ok(prepared)
}

/// The plan to use, and whether a planner made it now: `None` when the task is not explored.
async fn explore(job: &mut Job<'_>) -> Result<Option<(Plan, bool)>, Stop> {
    let config = job.ctx.config;
    let spec = job.spec;
    let router = match Router::new(&config.config) {
        Ok(router) => router,
        Err(e) => {
            // A loaded config's routing compiled when it was validated.
            tracing::warn!("task {}: explore skipped: {e}", spec.task.spec.id);
            return Ok(None);
        }
    };
    let decision = decide(&config.config, &router, &spec.task.spec);
    let Some(planner) = decision.planner else {
        tracing::debug!("task {}: not explored: {}", spec.task.spec.id, decision.why);
        return Ok(None);
    };
    if let Some(row) = job.ledger.read().latest_plan(&spec.task.spec.id)?
        && let Ok(plan) = serde_json::from_value::<Plan>(row.plan)
    {
        return Ok(Some((plan, false)));
    }
    let mut previous_error = None;
    for round in 0..2 {
        let report = run_planner(job, &planner, previous_error.clone()).await?;
        let error = match Plan::parse(report.plan_line.as_deref()) {
            Ok(plan) => {
                let plan = plan.map(|s| job.redactor.redact(s).into_owned());
                let value = serde_json::to_value(&plan).unwrap_or_default();
                let (id, attempt, at) = (spec.task.spec.id.as_str(), spec.attempt, now_ms());
                job.ledger
                    .write(|q| q.record_plan(id, &report.run_id, attempt, &value, at))?;
                return Ok(Some((plan, true)));
            }
            Err(e) => e,
        };
        let retry = round == 0;
        job.event(
            Some(&report.run_id),
            Event::PlanInvalid(PlanInvalid {
                error: error.to_string(),
                retry,
            }),
        );
        if !retry {
            return Err(Ending::retry(
                FailureClass::PlanInvalid,
                format!("The planner's answer was not a valid plan twice: {error}"),
                false,
            )
            .into());
        }
        previous_error = Some(format!("The plan was refused: {error}."));
    }
    Ok(None)
}

/// One planner run, admitted against the caps, with its writes found and undone. A run that
/// did not succeed ends the job.
async fn run_planner(
    job: &mut Job<'_>,
    planner: &Assignment,
    previous_error: Option<String>,
) -> Result<RunReport, Stop> {
    let config = job.ctx.config;
    let spec = job.spec;
    let text = prompt::planner(&PlannerPrompt {
        id: &spec.task.spec.id,
        title: &spec.task.spec.title,
        subtitle: spec.task.spec.subtitle.as_deref(),
        brief: &spec.task.spec.body,
        file_hints: &spec.task.spec.file_hints,
        acceptance: prompt::acceptance(&config.config),
        protected: &config.config.governance.protected,
        previous_error,
    })
    .map_err(|e| Stop::Runner(RunnerError::Prompt(e.to_string())))?;
    let worktree = spec.worktree.display().to_string();
    let request = RunRequest {
        worker_name: &planner.worker,
        model: planner.model.as_deref(),
        route: Some(&planner.route),
        prompt: &text,
        cwd: &spec.worktree,
        role: WorkerRole::Planner,
        task_id: Some(&spec.task.spec.id),
        attempt: spec.attempt,
        worktree: Some(&worktree),
        branch: Some(&spec.branch),
        actor: job.ctx.actor,
        parent_env: job.ctx.parent_env.clone(),
        live: None,
        track_files: false,
        run_id: None,
    };
    let prepared = runner::prepare(config, request)?;
    admit(job, &prepared, &planner.worker)?;
    let anchor = attribution::WorktreeAnchor::take(&spec.worktree);
    let report = prepared.run(&mut job.ledger, job.shutdown.clone()).await?;
    job.note_cost(&report);
    worktree::untouched(job, &anchor, "planner", TaskState::FrameworkFixNeeded)?;
    undo_writes(job, &report);
    if report.classification != Classification::Success {
        let class = report.classification.as_str();
        let detail = report.detail.clone().unwrap_or_else(|| class.to_owned());
        return Err(Ending::new(Outcome::Retry {
            class: report.classification.into(),
            failure: format!("the planner's run ended {class}: {detail}"),
            retryable: report.classification.is_retryable(),
            retry_after_ms: report.retry_after_ms,
        })
        .into());
    }
    Ok(report)
}

/// Admits the planner's run against the day's and month's caps (its p90 cost, or the floor),
/// counting it as one of the task's worker calls.
fn admit(job: &mut Job<'_>, prepared: &PreparedRun<'_>, worker: &str) -> Result<(), Stop> {
    let caps = &job.ctx.config.config.caps;
    let floor = usd_to_micro(caps.estimate_floor_usd);
    let estimate = job
        .ledger
        .read()
        .cost_p90(
            worker,
            WorkerRole::Planner.as_str(),
            usd_to_micro(caps.job_usd),
        )?
        .unwrap_or(floor)
        .max(floor);
    let id = job.id().to_owned();
    let now = now_ms();
    match prepared.admit_with(&mut job.ledger, estimate, |q| q.count_worker_call(&id, now)) {
        Ok(()) => Ok(()),
        Err(RunnerError::Budget(refusal)) => Err(Ending::new(Outcome::RetryAt {
            class: FailureClass::BudgetRefused,
            at_ms: now + 3_600_000,
            why: format!("the planner's run was refused: {refusal}"),
        })
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// Finds what the read-only planner wrote or tried to write (the worktree's own changes, the
/// writes its CLI announced, and the edit-tool calls its model made, refused or not), records them as a governance violation with
/// the paths, and discards them.
fn undo_writes(job: &mut Job<'_>, report: &RunReport) {
    let tree = &job.spec.worktree;
    let changed = changed_paths(tree);
    let mut detectors = Vec::new();
    if !changed.is_empty() {
        detectors.push("worktree_diff".to_owned());
    }
    if !report.files_changed.is_empty() || !report.write_attempts.is_empty() {
        detectors.push("write_events".to_owned());
    }
    let paths: BTreeSet<String> = changed
        .into_iter()
        .chain(report.files_changed.iter().cloned())
        .chain(report.write_attempts.iter().cloned())
        .collect();
    if paths.is_empty() {
        return;
    }
    let paths: Vec<String> = paths.into_iter().collect();
    if let Err(e) = worktree::discard_changes(tree) {
        tracing::warn!(
            "task {}: could not discard the planner's writes: {e}",
            job.id()
        );
    }
    let memo = format!(
        "the read-only planner wrote or tried to write {}; discarded",
        paths.join(", ")
    );
    tracing::warn!("task {}: {memo}", job.id());
    job.event(
        Some(&report.run_id),
        Event::GovernanceMemo(GovernanceMemo::ReadOnlyWrite {
            memo,
            paths,
            detectors,
        }),
    );
}

/// The worktree's changed and untracked paths (empty when git cannot say).
fn changed_paths(tree: &Path) -> Vec<String> {
    let Ok(status) = crate::git::run(
        tree,
        &[
            "status",
            "--porcelain",
            "--untracked-files=all",
            "--no-renames",
        ],
    ) else {
        return Vec::new();
    };
    status
        .lines()
        .filter_map(|line| line.get(3..))
        .map(|p| p.trim_matches('"').to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Plan, PlanError> {
        Plan::parse(Some(json))
    }

    #[test]
    fn a_plan_is_five_lists_of_strings_with_files_and_steps() {
        let plan = parse(r#"{"info_needs":[],"assumptions":["English"],"files_expected":["./notes/a.md"],"steps":["write it"],"risks":[]}"#).unwrap();
        assert_eq!(plan.files_expected, ["notes/a.md"]);
        assert_eq!(Plan::parse(None), Err(PlanError::Missing));
        assert!(matches!(parse("{not json"), Err(PlanError::NotJson(_))));
        assert_eq!(parse("[1]"), Err(PlanError::NotObject));
    }

    #[test]
    fn each_bad_field_is_named() {
        let field = |json: &str| match parse(json) {
            Err(PlanError::Field { field, problem }) => format!("{field}: {problem}"),
            other => panic!("{other:?}"),
        };
        let base = r#""info_needs":[],"assumptions":[],"risks":[]"#;
        assert!(
            field(&format!(r#"{{{base},"files_expected":["a"]}}"#)).starts_with("steps: missing")
        );
        assert!(
            field(&format!(r#"{{{base},"files_expected":[],"steps":["x"]}}"#))
                .starts_with("files_expected: must name")
        );
        assert!(
            field(&format!(
                r#"{{{base},"files_expected":["../x"],"steps":["x"]}}"#
            ))
            .starts_with("files_expected: \"../x\" is not a path")
        );
        assert!(
            field(&format!(
                r#"{{{base},"files_expected":["a"],"steps":"do it"}}"#
            ))
            .starts_with("steps: must be a list")
        );
        assert!(
            field(&format!(r#"{{{base},"files_expected":["a"],"steps":[1]}}"#))
                .starts_with("steps: entry 0 is not a string")
        );
    }

    #[test]
    fn a_diff_outside_the_expected_files_strays() {
        let plan = Plan {
            info_needs: Vec::new(),
            assumptions: Vec::new(),
            files_expected: vec!["notes/".to_owned(), "src/*.rs".to_owned()],
            steps: vec!["x".to_owned()],
            risks: Vec::new(),
        };
        assert_eq!(
            strays(&["notes/a.md".to_owned(), "src/lib.rs".to_owned()], &plan),
            None
        );
        let why = strays(&["README.md".to_owned()], &plan).unwrap();
        assert!(why.ends_with(": README.md"), "{why}");
    }
}
