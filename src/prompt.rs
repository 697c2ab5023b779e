//! Prompts, rendered from `templates/` (embedded in the binary): the executor's task brief with
//! the rules and, on a retry, the previous attempt's failure; the reviewer's diff and
//! verification. Lean by design, since every token is paid for and a long prompt dilutes the
//! task: no repository dump, clipped failure output and diff. Secrets are masked before a prompt leaves oxi (by the runner).

use serde::Serialize;

const EXECUTOR: &str = include_str!("../templates/executor.md.j2");
const REVIEWER: &str = include_str!("../templates/reviewer.md.j2");

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
    fn shell_words_quote_what_needs_it() {
        assert_eq!(
            shell_words(&["grep".into(), "-q".into(), "hi there".into(), "it's".into()]),
            r"grep -q 'hi there' 'it'\''s'"
        );
    }
}
