//! What the project is, as documents to rank candidates against: the roadmap and the
//! changelog (a document per paragraph), what landed in the last 90 days (a document per
//! commit on the current branch, first parent only: a merge or a squashed pull request each),
//! and the module names (every directory and file stem under the repository's tracked source).

use std::collections::BTreeSet;
use std::path::Path;

use super::ImproveError;

/// How far back landed work counts as the project's present.
const RECENT_DAYS: i64 = 90;
const CHANGELOGS: &[&str] = &["CHANGELOG.md", "CHANGES.md", "HISTORY.md"];

/// The project's context, one string per document.
pub(super) fn collect(
    root: &Path,
    roadmap: &Path,
    now_ms: i64,
) -> Result<Vec<String>, ImproveError> {
    let mut documents = Vec::new();
    match std::fs::read_to_string(roadmap) {
        Ok(text) => documents.extend(paragraphs(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ImproveError::Context {
                what: roadmap.display().to_string(),
                detail: e.to_string(),
            });
        }
    }
    for name in CHANGELOGS {
        if let Ok(text) = std::fs::read_to_string(root.join(name)) {
            documents.extend(paragraphs(&text));
        }
    }
    let since = crate::clock::day_of(now_ms - RECENT_DAYS * 24 * 3600 * 1000);
    // A directory that is not a git repository (or has no commits) has no landed work to
    // read; the roadmap alone is still a context.
    if let Ok(log) = crate::git::run(
        root,
        &[
            "log",
            "--first-parent",
            &format!("--since={since}"),
            "--format=%s%n%b%x1e",
        ],
    ) {
        documents.extend(
            log.split('\u{1e}')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
        );
    }
    if let Ok(files) = crate::git::run(root, &["ls-files"]) {
        let modules = module_names(&files);
        if !modules.is_empty() {
            documents.push(modules.into_iter().collect::<Vec<_>>().join(" "));
        }
    }
    Ok(documents)
}

/// Blank-line separated paragraphs with some text.
fn paragraphs(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split("\n\n")
        .map(str::trim)
        .filter(|p| p.chars().any(char::is_alphanumeric))
        .map(str::to_owned)
}

/// Directory names and file stems of tracked source files (`src/gateway/client.rs` gives
/// `gateway` and `client`), without the generic ones every project has.
pub(super) fn module_names(files: &str) -> BTreeSet<String> {
    const GENERIC: &[&str] = &[
        "src", "lib", "mod", "main", "index", "tests", "test", "docs",
    ];
    let mut names = BTreeSet::new();
    for file in files.lines() {
        let path = Path::new(file.trim());
        let is_source = path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
            matches!(
                e,
                "rs" | "py" | "ts" | "js" | "go" | "java" | "rb" | "c" | "cpp" | "h"
            )
        });
        if !is_source {
            continue;
        }
        let stem = path.file_stem().and_then(|s| s.to_str());
        let dirs = path
            .parent()
            .into_iter()
            .flat_map(|p| p.iter())
            .filter_map(|s| s.to_str());
        for name in dirs.chain(stem) {
            let name = name.to_ascii_lowercase();
            if name.len() > 2 && !GENERIC.contains(&name.as_str()) && !name.starts_with('.') {
                names.insert(name);
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_dirs_and_stems_of_source_files() {
        let names = module_names("src/gateway/client.rs\nsrc/lib.rs\nREADME.md\ntests/all.rs\n");
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["all", "client", "gateway"]
        );
    }
}
