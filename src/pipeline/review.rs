//! The critic (seed 001: reviewer auto-approve with guardrails): skip the reviewer worker only
//! for a green, small diff with no risk trigger; otherwise ask the reviewer role for a verdict
//! block and act on it.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::config::CriticConfig;
use crate::pipeline::verify::Diff;

/// Dependency manifests and lockfiles: a change to them is a risk trigger.
const MANIFESTS: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "package.json",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "go.mod",
    "go.sum",
    "pyproject.toml",
    "poetry.lock",
    "uv.lock",
    "Pipfile.lock",
    "Gemfile",
    "Gemfile.lock",
    "pom.xml",
    "build.gradle",
];

/// Removed lines that look like a test: a drop in test count is a risk trigger.
#[allow(clippy::expect_used)] // A constant pattern.
static TEST_MARKER: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"#\[(tokio::)?test\b|\bdef test_|\bfunc Test[A-Z_]|@Test\b|\b(it|test|describe)\s*\(",
    )
    .expect("constant regex")
});

/// Why the reviewer cannot be skipped, if anything.
pub fn risk_triggers(diff: &Diff, file_hints: &[String]) -> Vec<String> {
    let mut triggers = Vec::new();
    let deleted: Vec<&str> = diff
        .files
        .iter()
        .filter(|f| f.status == 'D')
        .map(|f| f.path.as_str())
        .collect();
    if !deleted.is_empty() {
        triggers.push(format!("deletes {}", deleted.join(", ")));
    }
    let manifests: Vec<&str> = diff
        .files
        .iter()
        .map(|f| f.path.as_str())
        .filter(|p| {
            let name = p.rsplit('/').next().unwrap_or(p);
            MANIFESTS.contains(&name) || name.starts_with("requirements")
        })
        .collect();
    if !manifests.is_empty() {
        triggers.push(format!("changes dependencies: {}", manifests.join(", ")));
    }
    let removed_tests = diff
        .patch
        .lines()
        .filter(|l| l.starts_with('-') && !l.starts_with("---"))
        .filter(|l| TEST_MARKER.is_match(l))
        .count();
    if removed_tests > 0 {
        triggers.push(format!("removes {removed_tests} test line(s)"));
    }
    if !file_hints.is_empty() {
        let outside: Vec<&str> = diff
            .files
            .iter()
            .filter(|f| f.status == 'A')
            .map(|f| f.path.as_str())
            .filter(|p| !within_hints(p, file_hints))
            .collect();
        if !outside.is_empty() {
            triggers.push(format!(
                "new files outside the task's file hints: {}",
                outside.join(", ")
            ));
        }
    }
    triggers
}

/// A path is within the hints when it equals one, sits under one (a directory), or matches one
/// as a glob.
pub fn within_hints(path: &str, hints: &[String]) -> bool {
    hints.iter().any(|hint| {
        let hint = hint.trim_end_matches('/');
        path == hint
            || path.starts_with(&format!("{hint}/"))
            || globset::Glob::new(hint).is_ok_and(|g| g.compile_matcher().is_match(path))
    })
}

/// The critic's decision before any reviewer runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Gate {
    /// Skip the reviewer; `review_skipped_reason` says why that is safe.
    AutoApprove { review_skipped_reason: String },
    /// Run the reviewer; `reasons` say why it cannot be skipped.
    Review { reasons: Vec<String> },
}

pub fn gate(config: &CriticConfig, diff: &Diff, verify_green: bool, file_hints: &[String]) -> Gate {
    let mut reasons = Vec::new();
    if !config.auto_approve {
        reasons.push("critic.auto_approve is off".to_owned());
    }
    if !verify_green {
        reasons.push("verification is not green".to_owned());
    }
    if diff.files.len() as u64 > u64::from(config.max_files) {
        reasons.push(format!(
            "{} files changed (critic.max_files = {})",
            diff.files.len(),
            config.max_files
        ));
    }
    if diff.changed_lines() > u64::from(config.max_changed_lines) {
        reasons.push(format!(
            "{} lines changed (critic.max_changed_lines = {})",
            diff.changed_lines(),
            config.max_changed_lines
        ));
    }
    reasons.extend(risk_triggers(diff, file_hints));
    if reasons.is_empty() {
        Gate::AutoApprove {
            review_skipped_reason: format!(
                "auto-approved: verification green, {} file(s) and {} line(s) within critic limits ({} / {}), no risk trigger",
                diff.files.len(),
                diff.changed_lines(),
                config.max_files,
                config.max_changed_lines
            ),
        }
    } else {
        Gate::Review { reasons }
    }
}

/// tier0_fast (seed 001): only tier0 before review when the recent runs were green and the diff
/// is small. Returns the reason when it applies.
pub fn tier0_fast(config: &CriticConfig, recent_green: bool, diff: &Diff) -> Option<String> {
    (config.tier0_fast_after > 0
        && recent_green
        && diff.files.len() as u64 <= u64::from(config.max_files)
        && diff.changed_lines() <= u64::from(config.max_changed_lines))
    .then(|| {
        format!(
            "tier0_fast: the last {} verifications were green and the diff is small ({} files, {} lines); tier1 skipped",
            config.tier0_fast_after,
            diff.files.len(),
            diff.changed_lines()
        )
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    RequestChanges,
    Reject,
}

/// The reviewer's `OXI_REVIEW {json}` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub verdict: Verdict,
    #[serde(default)]
    pub comments: Vec<String>,
    #[serde(default)]
    pub confidence: Option<f64>,
}

#[allow(clippy::expect_used)] // A constant pattern.
static REVIEW_BLOCK: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"(?m)^\s*OXI_REVIEW\s+(\{.*\})\s*$").expect("constant regex")
});

/// The last well-formed review block in `text`.
pub fn parse_review(text: &str) -> Option<Review> {
    REVIEW_BLOCK
        .captures_iter(text)
        .filter_map(|c| serde_json::from_str(&c[1]).ok())
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::verify::ChangedFile;

    fn diff(files: &[(&str, char, u64, u64)], patch: &str) -> Diff {
        Diff {
            files: files
                .iter()
                .map(|(p, s, a, r)| ChangedFile {
                    path: (*p).into(),
                    status: *s,
                    added: *a,
                    removed: *r,
                })
                .collect(),
            lines_added: files.iter().map(|f| f.2).sum(),
            lines_removed: files.iter().map(|f| f.3).sum(),
            patch: patch.into(),
        }
    }

    #[test]
    fn small_green_diffs_inside_hints_are_auto_approved() {
        let config = CriticConfig::default();
        let d = diff(&[("src/a.rs", 'M', 10, 2)], "");
        assert!(matches!(
            gate(&config, &d, true, &["src/".into()]),
            Gate::AutoApprove { .. }
        ));
        assert!(matches!(gate(&config, &d, false, &[]), Gate::Review { .. }));
    }

    #[test]
    fn risk_triggers_force_a_review() {
        let d = diff(
            &[
                ("Cargo.toml", 'M', 1, 0),
                ("old.rs", 'D', 0, 5),
                ("x/new.rs", 'A', 3, 0),
            ],
            "-#[test]\n-fn it_works() {}\n",
        );
        let triggers = risk_triggers(&d, &["src/**".into()]);
        assert_eq!(triggers.len(), 4, "{triggers:?}");
    }

    #[test]
    fn the_last_review_block_wins() {
        let text = "looks fine\nOXI_REVIEW {\"verdict\":\"request_changes\",\"comments\":[\"x\"]}\nOXI_REVIEW {\"verdict\":\"approve\"}";
        assert_eq!(parse_review(text).unwrap().verdict, Verdict::Approve);
        assert_eq!(parse_review("OXI_REVIEW {\"verdict\":\"maybe\"}"), None);
    }
}
