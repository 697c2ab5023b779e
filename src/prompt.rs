//! Prompts, rendered from `templates/` (embedded in the binary): the executor's task brief with
//! the rules and, on a retry, the previous attempt's failure; the planner's read-only brief
//! that asks for an `OXI_PLAN` line; the reviewer's diff and verification. Lean by design,
//! since every token is paid for and a long prompt dilutes the task: no repository dump,
//! clipped failure output and diff, and once a planner has planned a task the executor gets
//! the goal, the steps and the expected files instead of the whole brief. Secrets are masked
//! before a prompt leaves oxi (by the runner).

use serde::Serialize;

const EXECUTOR: &str = include_str!("../templates/executor.md.j2");
const REVIEWER: &str = include_str!("../templates/reviewer.md.j2");
const PLANNER: &str = include_str!("../templates/planner.md.j2");
const RESUME: &str = include_str!("../templates/resume.md.j2");

/// Longest goal (the brief's first sentence) a planned executor prompt carries.
pub(crate) const GOAL_CLIP: usize = 300;

/// Longest previous-failure excerpt and diff put into a prompt.
pub const FAILURE_CLIP: usize = 6 * 1024;
pub const PATCH_CLIP: usize = 60 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("prompt template {name}: {source}")]
pub struct PromptError {
    name: &'static str,
    #[source]
    source: minijinja::Error,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExecutorPrompt<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub subtitle: Option<&'a str>,
    pub brief: &'a str,
    pub file_hints: &'a [String],
    /// Acceptance commands as a person would type them.
    pub acceptance: Vec<String>,
    pub worktree: String,
    pub protected: &'a [String],
    pub attempt: u32,
    pub max_attempts: u32,
    pub last_failure: Option<String>,
    /// The planner's plan: when set, the prompt carries the goal, the steps and the expected
    /// files instead of the brief and the hints.
    pub(crate) plan: Option<PlanBrief<'a>>,
}

/// What a planned executor prompt carries of the plan.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PlanBrief<'a> {
    /// The brief's first sentence (clipped): what the task is for.
    pub(crate) goal: String,
    pub(crate) steps: &'a [String],
    pub(crate) files_expected: &'a [String],
}

impl<'a> PlanBrief<'a> {
    /// The goal is the brief's first sentence: what the task is for, without the detail the
    /// planner already turned into steps.
    pub(crate) fn new(brief: &str, steps: &'a [String], files_expected: &'a [String]) -> Self {
        let text = brief.trim_start();
        let end = text
            .match_indices(['.', '!', '?', '\n'])
            .map(|(i, m)| i + m.len())
            .find(|end| text[*end..].starts_with(char::is_whitespace) || *end == text.len())
            .unwrap_or(text.len());
        Self {
            goal: clip_head(text[..end].trim(), GOAL_CLIP),
            steps,
            files_expected,
        }
    }
}

/// The planner's brief: the whole task, read-only, answered with one `OXI_PLAN` line.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PlannerPrompt<'a> {
    pub(crate) id: &'a str,
    pub(crate) title: &'a str,
    pub(crate) subtitle: Option<&'a str>,
    pub(crate) brief: &'a str,
    pub(crate) file_hints: &'a [String],
    pub(crate) acceptance: Vec<String>,
    pub(crate) protected: &'a [String],
    /// Why the previous answer's plan was refused, on the planner's one retry.
    pub(crate) previous_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReviewerPrompt<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub brief: &'a str,
    pub attempt: u32,
    pub max_attempts: u32,
    pub files: usize,
    pub lines_added: u64,
    pub lines_removed: u64,
    pub patch: String,
    pub verification: Vec<String>,
}

/// The tail of `text` when it is longer than `max` bytes (failures end with what matters).
pub fn clip_tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[… {start} bytes cut …]\n{}", &text[start..])
}

/// The head of `text` when it is longer than `max` bytes.
pub fn clip_head(text: &str, max: usize) -> String {
    crate::worker::event::clip(text, max)
}

fn render<T: Serialize>(
    name: &'static str,
    source: &'static str,
    ctx: &T,
) -> Result<String, PromptError> {
    let mut env = minijinja::Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|source| PromptError { name, source })?;
    env.set_syntax(syntax);
    env.add_template(name, source)
        .map_err(|source| PromptError { name, source })?;
    let mut text = env
        .get_template(name)
        .and_then(|t| t.render(minijinja::value::Serde(ctx)))
        .map_err(|source| PromptError { name, source })?;
    text.push('\n');
    Ok(text)
}

pub fn executor(ctx: &ExecutorPrompt<'_>) -> Result<String, PromptError> {
    render("executor.md.j2", EXECUTOR, ctx)
}

pub fn reviewer(ctx: &ReviewerPrompt<'_>) -> Result<String, PromptError> {
    render("reviewer.md.j2", REVIEWER, ctx)
}

pub(crate) fn planner(ctx: &PlannerPrompt<'_>) -> Result<String, PromptError> {
    render("planner.md.j2", PLANNER, ctx)
}

/// A retry's prompt when it continues the agent's session: the session holds the brief, so
/// only the attempt, the new directory and the failure are sent.
pub(crate) fn resume(ctx: &ExecutorPrompt<'_>) -> Result<String, PromptError> {
    render("resume.md.j2", RESUME, ctx)
}

/// The acceptance commands of every tier, as a person would type them.
pub(crate) fn acceptance(config: &crate::config::Config) -> Vec<String> {
    config
        .verify
        .tier0
        .iter()
        .chain(&config.verify.tier1)
        .chain(&config.verify.tier2)
        .map(|c| shell_words(&c.argv))
        .collect()
}

/// The executor's prompt for attempt `attempt` of `task` in `worktree`: the whole brief, or
/// with `plan` the goal, the steps and the expected files instead.
pub(crate) fn executor_for(
    config: &crate::config::Config,
    task: &crate::ledger::TaskRow,
    attempt: u32,
    worktree: &std::path::Path,
    plan: Option<PlanBrief<'_>>,
) -> Result<String, PromptError> {
    executor(&ExecutorPrompt {
        id: &task.spec.id,
        title: &task.spec.title,
        subtitle: task.spec.subtitle.as_deref(),
        brief: &task.spec.body,
        file_hints: &task.spec.file_hints,
        acceptance: acceptance(config),
        worktree: worktree.display().to_string(),
        protected: &config.governance.protected,
        attempt,
        max_attempts: config.caps.max_attempts,
        last_failure: task
            .last_failure
            .as_deref()
            .map(|f| clip_tail(f, FAILURE_CLIP)),
        plan,
    })
}

/// An argv as a person would type it (for prompts and summaries only; never executed).
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_attempts_are_lean_and_retries_carry_the_failure() {
        let hints = vec!["src/lib.rs".to_owned()];
        let protected = vec![".github/workflows/**".to_owned()];
        let mut ctx = ExecutorPrompt {
            id: "T0-1",
            title: "Add a greeting",
            subtitle: None,
            brief: "Say hi.",
            file_hints: &hints,
            acceptance: vec!["cargo test".into()],
            worktree: "/w".into(),
            protected: &protected,
            attempt: 1,
            max_attempts: 3,
            last_failure: None,
            plan: None,
        };
        let first = executor(&ctx).unwrap();
        assert!(first.contains("# T0-1: Add a greeting") && first.contains("`cargo test`"));
        assert!(!first.contains("previous attempt"), "{first}");
        ctx.attempt = 2;
        ctx.last_failure = Some("assertion failed".into());
        let retry = executor(&ctx).unwrap();
        assert!(retry.contains("attempt 2 of 3") && retry.contains("assertion failed"));
    }

    #[test]
    fn a_planned_prompt_carries_the_goal_steps_and_files_instead_of_the_brief() {
        let brief = format!(
            "Greet people.\n\n{}",
            "Background nobody needs. ".repeat(200)
        );
        let (hints, protected) = (Vec::new(), Vec::new());
        let steps = vec!["Write notes/hello.md".to_owned()];
        let files = vec!["notes/hello.md".to_owned()];
        let mut ctx = ExecutorPrompt {
            id: "T0-1",
            title: "Greet",
            subtitle: None,
            brief: &brief,
            file_hints: &hints,
            acceptance: Vec::new(),
            worktree: "/w".into(),
            protected: &protected,
            attempt: 1,
            max_attempts: 3,
            last_failure: None,
            plan: None,
        };
        let full = executor(&ctx).unwrap();
        ctx.plan = Some(PlanBrief::new(&brief, &steps, &files));
        let planned = executor(&ctx).unwrap();
        assert!(planned.len() < full.len() / 2, "{planned}");
        assert!(planned.contains("Goal: Greet people."), "{planned}");
        assert!(planned.contains("1. Write notes/hello.md"), "{planned}");
        assert!(
            planned.contains("Files likely involved: `notes/hello.md`"),
            "{planned}"
        );
        assert!(!planned.contains("Background nobody needs"), "{planned}");
    }

    #[test]
    fn the_planner_is_told_it_may_not_write_and_how_to_answer() {
        let (hints, protected) = (Vec::new(), Vec::new());
        let mut ctx = PlannerPrompt {
            id: "T0-1",
            title: "Greet",
            subtitle: None,
            brief: "Greet people.",
            file_hints: &hints,
            acceptance: vec!["cargo test".into()],
            protected: &protected,
            previous_error: None,
        };
        let text = planner(&ctx).unwrap();
        assert!(
            text.contains("OXI_PLAN {") && text.contains("read-only"),
            "{text}"
        );
        ctx.previous_error = Some("steps: must not be empty".into());
        let retry = planner(&ctx).unwrap();
        assert!(retry.contains("steps: must not be empty"), "{retry}");
    }

    #[test]
    fn shell_words_quote_what_needs_it() {
        assert_eq!(
            shell_words(&["grep".into(), "-q".into(), "hi there".into(), "it's".into()]),
            r"grep -q 'hi there' 'it'\''s'"
        );
    }
}
