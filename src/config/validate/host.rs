//! `[host]`: a name other hosts can tell apart, labels routing rules can name, and rules that
//! require only labels written the way `[host] labels` can hold them.

use super::{Problem, problem};
use crate::config::Config;

/// A name or label: letters, digits, `-`, `_`, `.` (it is printed in tables and matched as is).
fn is_word(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `host.name`, `host.labels` and each rule's `requires`.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
    if let Some(name) = &config.host.name
        && !is_word(name)
    {
        problems.push(problem(
            &["host", "name"],
            format!(
                "{name:?} is not a host name: use letters, digits, '-', '_' or '.' (or leave it out for the machine's hostname)"
            ),
        ));
    }
    for (i, label) in config.host.labels.iter().enumerate() {
        if !is_word(label) {
            problems.push(problem(
                &["host", "labels", &i.to_string()],
                format!("{label:?} is not a label: use letters, digits, '-', '_' or '.'"),
            ));
        }
    }
    for (r, rule) in config.routing.rules.iter().enumerate() {
        for (i, label) in rule.requires.iter().enumerate() {
            if !is_word(label) {
                problems.push(problem(
                    &[
                        "routing",
                        "rules",
                        &r.to_string(),
                        "requires",
                        &i.to_string(),
                    ],
                    format!("{label:?} is not a host label: use letters, digits, '-', '_' or '.'"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert!(is_word("mac-mini.local"));
        assert!(is_word("gpu_1"));
        assert!(!is_word(""));
        assert!(!is_word("two words"));
        assert!(!is_word("a/b"));
    }
}
