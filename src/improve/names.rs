//! The hard fabrication filter: a proposal whose text names a file, a module or an `oxi`
//! command the repository lacks is rejected by oxi, whatever a judge says. Only text shaped
//! like a name counts, so ordinary words never trip it:
//!
//! - a **path**: segments joined by `/`, either inside backticks or, in plain text, with a file
//!   extension on its last segment (`src/gateway/client.rs`). A two-segment one counts only
//!   when its first segment is a top-level directory of the repository or a usual source
//!   directory (`src`, `tests`, `docs`, …), so `owner/name` repositories such as
//!   `vercel/next.js` and words such as `and/or` are not paths. URLs are not paths. It exists
//!   when it is a tracked file (`git ls-files`) or a directory holding one.
//! - a **command**: `` `oxi WORD …` `` inside backticks; WORD must be an `oxi` subcommand (and
//!   the next word one of its subcommands, when it has some and the word is not an argument).
//! - a **module**: a backticked identifier followed by the word "module" (`` `gateway`
//!   module ``), or a backticked Rust path `crate::X…` / `oxi::X…`; X must be a directory or
//!   file stem of a tracked file.

use std::collections::BTreeSet;
use std::path::Path;

/// Directories that name source wherever they appear, tracked or not.
const USUAL_DIRS: &[&str] = &[
    "src",
    "tests",
    "test",
    "docs",
    "doc",
    "lib",
    "crates",
    "benches",
    "examples",
    "scripts",
    "migrations",
    "templates",
    "fixtures",
    ".github",
    ".ci",
];

/// What the repository holds, to check names against.
#[derive(Debug, Clone, Default)]
pub struct RepoNames {
    files: BTreeSet<String>,
    dirs: BTreeSet<String>,
    top_dirs: BTreeSet<String>,
    modules: BTreeSet<String>,
    commands: Vec<(String, Vec<String>)>,
}

impl RepoNames {
    /// From `git ls-files` output (one path a line) and oxi's command tree.
    #[must_use]
    pub fn new(ls_files: &str) -> Self {
        let mut names = Self::default();
        for file in ls_files.lines().map(str::trim).filter(|f| !f.is_empty()) {
            names.files.insert(file.to_owned());
            let path = Path::new(file);
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                names.modules.insert(stem.to_ascii_lowercase());
            }
            let mut prefix = String::new();
            let parts: Vec<&str> = file.split('/').collect();
            for part in parts.iter().take(parts.len().saturating_sub(1)) {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                names.dirs.insert(prefix.clone());
                names.modules.insert(part.to_ascii_lowercase());
            }
            if parts.len() > 1
                && let Some(top) = parts.first()
            {
                names.top_dirs.insert((*top).to_owned());
            }
        }
        names.commands = command_tree();
        names
    }

    /// The repository's tracked files (`git ls-files` in `root`); none outside a repository.
    #[must_use]
    pub fn of_repo(root: &Path) -> Self {
        Self::new(&crate::git::run(root, &["ls-files"]).unwrap_or_default())
    }

    /// The names `text` gives that the repository lacks, once each, in the order written.
    #[must_use]
    pub fn unknown(&self, text: &str) -> Vec<String> {
        let mut unknown = Vec::new();
        let mut add = |name: String| {
            if !unknown.contains(&name) {
                unknown.push(name);
            }
        };
        let (spans, plain) = split_backticks(text);
        for (span, after) in &spans {
            if let Some(name) = self.unknown_in_span(span, after) {
                add(name);
            }
        }
        for token in plain.split_whitespace() {
            let token = trim_punctuation(token);
            if self.is_checked_path(token, false) && !self.path_exists(token) {
                add(token.to_owned());
            }
        }
        unknown
    }

    fn unknown_in_span(&self, span: &str, after: &str) -> Option<String> {
        let span = span.trim();
        let words: Vec<&str> = span.split_whitespace().collect();
        if words.first() == Some(&"oxi") && words.len() > 1 {
            return (!self.command_exists(&words[1..])).then(|| span.to_owned());
        }
        if let Some(rest) = span
            .strip_prefix("crate::")
            .or_else(|| span.strip_prefix("oxi::"))
        {
            let module = rest.split("::").next().unwrap_or_default();
            let known = module.is_empty() || self.modules.contains(&module.to_ascii_lowercase());
            return (!known).then(|| span.to_owned());
        }
        if self.is_checked_path(span, true) {
            return (!self.path_exists(span)).then(|| span.to_owned());
        }
        let identifier = !span.is_empty()
            && span
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let next = after.trim_start().to_ascii_lowercase();
        if identifier && (next.starts_with("module") || next.starts_with("crate")) {
            return (!self.modules.contains(&span.to_ascii_lowercase())).then(|| span.to_owned());
        }
        None
    }

    /// Whether `token` is shaped like a path this filter checks (see the module's doc).
    fn is_checked_path(&self, token: &str, backticked: bool) -> bool {
        if token.contains("://")
            || token.starts_with("www.")
            || token.contains(char::is_whitespace)
            || token.contains(['*', '?', '[', '{', '<', '@', '#', '='])
        {
            return false;
        }
        let path = token.trim_start_matches("./").trim_end_matches('/');
        let segments: Vec<&str> = path.split('/').collect();
        if segments.len() < 2
            || segments.iter().any(|s| {
                s.is_empty()
                    || !s
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            })
        {
            return false;
        }
        let first = segments[0];
        if first.contains('.') && !first.starts_with('.') {
            // A domain (`github.com/…`), not a directory.
            return false;
        }
        let extension = segments
            .last()
            .and_then(|s| s.rsplit_once('.'))
            .is_some_and(|(stem, ext)| {
                !stem.is_empty()
                    && (1..=8).contains(&ext.len())
                    && ext.starts_with(|c: char| c.is_ascii_alphabetic())
                    && ext.chars().all(|c| c.is_ascii_alphanumeric())
            });
        if !backticked && !extension {
            return false;
        }
        segments.len() >= 3 || USUAL_DIRS.contains(&first) || self.top_dirs.contains(first)
    }

    fn path_exists(&self, token: &str) -> bool {
        let path = token.trim_start_matches("./").trim_end_matches('/');
        self.files.contains(path) || self.dirs.contains(path)
    }

    /// `words` after `oxi`: the first must be a subcommand (or alias), the second one of its
    /// subcommands when it has some and the word is not a flag or a value.
    fn command_exists(&self, words: &[&str]) -> bool {
        let Some(first) = words.first() else {
            return true;
        };
        if first.starts_with('-') {
            return true;
        }
        let Some((_, subcommands)) = self.commands.iter().find(|(name, _)| name == first) else {
            return false;
        };
        match words.get(1) {
            Some(second)
                if !subcommands.is_empty()
                    && second.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                    && !second.starts_with('-') =>
            {
                subcommands.iter().any(|s| s == second)
            }
            _ => true,
        }
    }
}

/// `oxi`'s subcommands and aliases, each with its own subcommands, from clap's tree.
fn command_tree() -> Vec<(String, Vec<String>)> {
    let command = <crate::cli::Cli as clap::CommandFactory>::command();
    let names = |c: &clap::Command| -> Vec<String> {
        std::iter::once(c.get_name().to_owned())
            .chain(c.get_all_aliases().map(str::to_owned))
            .collect()
    };
    let mut tree = Vec::new();
    for sub in command.get_subcommands() {
        let children: Vec<String> = sub.get_subcommands().flat_map(names).collect();
        for name in names(sub) {
            tree.push((name, children.clone()));
        }
    }
    tree
}

/// The backticked spans of `text` (each with the text after it) and the text outside them.
fn split_backticks(text: &str) -> (Vec<(String, String)>, String) {
    let mut spans = Vec::new();
    let mut plain = String::new();
    let parts: Vec<&str> = text.split('`').collect();
    for (i, part) in parts.iter().enumerate() {
        // Odd parts sit between two backticks; a last odd part has no closing one.
        if i % 2 == 1 && i + 1 < parts.len() {
            let after = parts.get(i + 1).copied().unwrap_or_default();
            spans.push(((*part).to_owned(), after.to_owned()));
            plain.push(' ');
        } else {
            plain.push_str(part);
            plain.push(' ');
        }
    }
    (spans, plain)
}

/// A plain-text token without the punctuation prose puts around a name.
fn trim_punctuation(token: &str) -> &str {
    token
        .trim_start_matches(['(', '[', '{', '"', '\'', '<', '*', '_'])
        .trim_end_matches([
            ')', ']', '}', '"', '\'', '>', ',', ';', ':', '!', '?', '.', '*', '_',
        ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepoNames {
        RepoNames::new("src/gateway/client.rs\nsrc/improve/mod.rs\ndocs/improve.md\nREADME.md\n")
    }

    #[test]
    fn names_shaped_like_names_are_checked_and_words_are_not() {
        let r = repo();
        assert!(
            r.unknown("Improve `src/gateway/client.rs` and docs/improve.md, see src/gateway/")
                .is_empty()
        );
        assert!(
            r.unknown("Run `oxi improve scan` and `oxi status --format json`; `oxi --version`")
                .is_empty()
        );
        assert!(
            r.unknown("The `gateway` module and `crate::improve::scan`")
                .is_empty()
        );
        // Ordinary prose: and/or, owner/name repositories, URLs, versions, Node.js.
        assert!(
            r.unknown(
                "Use and/or TCP/IP with vercel/next.js from https://github.com/a/b/c.rs, \
                 v1.2/3.0, Node.js and the oxi binary that runs things"
            )
            .is_empty()
        );
        assert_eq!(
            r.unknown(
                "Add src/scheduler/quantum.rs, `oxi teleport`, `oxi improve dance`, the \
                 `warp` module, `crate::warp::drive`, `docs/nowhere/` and (tests/ghost.rs)."
            ),
            [
                "oxi teleport",
                "oxi improve dance",
                "warp",
                "crate::warp::drive",
                "docs/nowhere/",
                "src/scheduler/quantum.rs",
                "tests/ghost.rs"
            ]
        );
    }
}
