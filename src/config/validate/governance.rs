//! `[governance]`: allowed roots stay inside the repository, globs parse.

use std::path::Path;

use super::{Problem, problem};
use crate::config::Config;

/// The `[governance]` rules.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
    let gov = &config.governance;
    for (i, root) in gov.allowed_roots.iter().enumerate() {
        let path = Path::new(root);
        if path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            problems.push(problem(
                &["governance", "allowed_roots", &i.to_string()],
                format!("{root:?} must be relative to the repository root and stay inside it"),
            ));
        }
    }
    for (key, globs) in [
        ("protected", &gov.protected),
        ("needs_approval", &gov.needs_approval),
    ] {
        for (i, glob) in globs.iter().enumerate() {
            if let Err(e) = globset::Glob::new(glob) {
                problems.push(problem(
                    &["governance", key, &i.to_string()],
                    format!("{glob:?} is not a valid glob: {e}"),
                ));
            }
        }
    }
}
