//! A rule's `when`: compiled once, matched against a task's facts, and explained clause by
//! clause for `oxi route`.

use globset::{Glob, GlobSet, GlobSetBuilder};
use regex::Regex;
use serde::Serialize;

use super::RouteError;
use super::index::Facts;
use crate::config::RuleWhen;
use crate::ledger::TaskSpec;

/// A task's labels: the comma-separated words of a `Labels:` line in its brief (roadmap items
/// carry no other place for them), lower-cased.
pub fn labels(body: &str) -> Vec<String> {
    label_words(body).map(str::to_lowercase).collect()
}

/// The labels of a brief's `Labels:` lines as written (not lower-cased), none empty.
pub(crate) fn label_words(body: &str) -> impl Iterator<Item = &str> {
    body.lines()
        .filter_map(|line| {
            let line = line.trim().trim_start_matches(['-', '*', ' ']);
            // Most lines are prose: only one that starts with the word is split.
            if !line
                .get(..6)
                .is_some_and(|head| head.eq_ignore_ascii_case("labels"))
            {
                return None;
            }
            let (head, rest) = line.split_once(':')?;
            head.trim().eq_ignore_ascii_case("labels").then_some(rest)
        })
        .flat_map(|rest| rest.split(','))
        .map(|l| l.trim().trim_matches('`'))
        .filter(|l| !l.is_empty())
}

/// One clause of a rule and what it matched (or, for a rule that did not match, the first
/// clause that failed and the task's value there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Clause {
    /// `priority_tier`, `title`, `body`, `section`, `labels` or `files`.
    pub clause: &'static str,
    /// The clause as configured.
    pub wanted: String,
    /// The task's value that matched (the matched text for a regex), or that did not.
    pub found: String,
}

/// The compiled `when`.
#[derive(Debug, Clone)]
pub(crate) struct When {
    tiers: Option<Vec<u8>>,
    title: Option<Regex>,
    body: Option<Regex>,
    section: Option<Regex>,
    labels: Vec<String>,
    files: Option<(GlobSet, Vec<String>)>,
}

impl When {
    /// Compiles the regexes and globs; `key` is the rule's key path (for errors).
    pub(crate) fn compile(when: &RuleWhen, key: &[String]) -> Result<Self, Vec<RouteError>> {
        let mut errors = Vec::new();
        let mut regex = |clause: &str, pattern: &Option<String>| -> Option<Regex> {
            let pattern = pattern.as_ref()?;
            Regex::new(pattern)
                .map_err(|e| {
                    errors.push(RouteError::BadRegex {
                        key: clause_key(key, clause),
                        pattern: pattern.clone(),
                        reason: regex_reason(&e),
                    });
                })
                .ok()
        };
        let title = regex("title", &when.title);
        let body = regex("body", &when.body);
        let section = regex("section", &when.section);
        let files = if when.files.is_empty() {
            None
        } else {
            let mut builder = GlobSetBuilder::new();
            for (i, pattern) in when.files.iter().enumerate() {
                match Glob::new(pattern) {
                    Ok(glob) => {
                        builder.add(glob);
                    }
                    Err(e) => errors.push(RouteError::BadGlob {
                        key: {
                            let mut k = clause_key(key, "files");
                            k.push(i.to_string());
                            k
                        },
                        pattern: pattern.clone(),
                        source: e,
                    }),
                }
            }
            builder.build().ok().map(|set| (set, when.files.clone()))
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            tiers: when.priority_tier.as_ref().map(|t| t.0.clone()),
            title,
            body,
            section,
            labels: when.labels.iter().map(|l| l.to_lowercase()).collect(),
            files,
        })
    }

    pub(crate) fn title(&self) -> Option<&Regex> {
        self.title.as_ref()
    }

    pub(crate) fn body(&self) -> Option<&Regex> {
        self.body.as_ref()
    }

    pub(crate) fn section(&self) -> Option<&Regex> {
        self.section.as_ref()
    }

    /// The labels it wants, lower-cased.
    pub(crate) fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The `files` globs as configured.
    pub(crate) fn file_patterns(&self) -> &[String] {
        self.files.as_ref().map_or(&[], |(_, patterns)| patterns)
    }

    /// Whether the tier clause admits `tier` (a rule without one admits every tier).
    pub(crate) fn admits_tier(&self, tier: u8) -> bool {
        self.tiers.as_ref().is_none_or(|t| t.contains(&tier))
    }

    /// True when every clause but the tier's (which the index has checked) matches; the
    /// cheap clauses are tried first. `rule` is this rule's index, by which `facts` answers
    /// for the clause kinds looked up together.
    pub(crate) fn matches(&self, rule: usize, facts: &Facts<'_>) -> bool {
        (self.labels.is_empty() || facts.labels(rule))
            && self
                .files
                .as_ref()
                .is_none_or(|(set, _)| facts.files(rule, set))
            && self
                .section
                .as_ref()
                .is_none_or(|re| facts.section(rule, re))
            && self.title.as_ref().is_none_or(|re| facts.title(rule, re))
            && self.body.as_ref().is_none_or(|re| facts.body(rule, re))
    }

    /// Every clause and what it matched (`Ok`), or the first clause that did not (`Err`).
    pub(crate) fn explain(&self, spec: &TaskSpec) -> Result<Vec<Clause>, Clause> {
        let mut matched = Vec::new();
        if let Some(tiers) = &self.tiers {
            let wanted = tiers
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            check(
                &mut matched,
                "priority_tier",
                wanted,
                tiers.contains(&spec.priority_tier),
                spec.priority_tier.to_string(),
            )?;
        }
        if !self.labels.is_empty() {
            let task_labels = labels(&spec.body);
            let hit = self.labels.iter().find(|l| task_labels.contains(l));
            let found = hit
                .cloned()
                .unwrap_or_else(|| none_if_empty(task_labels.join(", ")));
            check(
                &mut matched,
                "labels",
                self.labels.join(", "),
                hit.is_some(),
                found,
            )?;
        }
        if let Some((set, patterns)) = &self.files {
            let hit = spec.file_hints.iter().find(|f| set.is_match(f.as_str()));
            let found = hit
                .cloned()
                .unwrap_or_else(|| none_if_empty(spec.file_hints.join(", ")));
            check(
                &mut matched,
                "files",
                patterns.join(", "),
                hit.is_some(),
                found,
            )?;
        }
        if let Some(re) = &self.section {
            let texts: Vec<&String> = [&spec.section, &spec.milestone]
                .into_iter()
                .flatten()
                .collect();
            let hit = texts.iter().find_map(|s| re.find(s));
            let found = hit.map_or_else(
                || {
                    none_if_empty(
                        texts
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(" | "),
                    )
                },
                |m| m.as_str().to_owned(),
            );
            check(
                &mut matched,
                "section",
                re.to_string(),
                hit.is_some(),
                found,
            )?;
        }
        for (clause, re, text) in [
            ("title", &self.title, &spec.title),
            ("body", &self.body, &spec.body),
        ] {
            if let Some(re) = re {
                let hit = re.find(text);
                let found = hit.map_or_else(|| clip(text), |m| m.as_str().to_owned());
                check(&mut matched, clause, re.to_string(), hit.is_some(), found)?;
            }
        }
        Ok(matched)
    }
}

/// The regex crate's error in one line: a syntax error's text is a drawing of the pattern
/// with a caret, then `error: WHY`; the config error keeps the why.
fn regex_reason(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().trim_start_matches("error: ").to_owned())
        .unwrap_or(text)
}

fn check(
    matched: &mut Vec<Clause>,
    clause: &'static str,
    wanted: String,
    hit: bool,
    found: String,
) -> Result<(), Clause> {
    let c = Clause {
        clause,
        wanted,
        found,
    };
    if hit {
        matched.push(c);
        Ok(())
    } else {
        Err(c)
    }
}

fn none_if_empty(text: String) -> String {
    if text.is_empty() {
        "(none)".to_owned()
    } else {
        text
    }
}

/// A task's text as shown when a regex did not match it: the first line, at most 60 chars.
fn clip(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut out: String = line.chars().take(60).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    none_if_empty(out)
}

fn clause_key(rule_key: &[String], clause: &str) -> Vec<String> {
    let mut key = rule_key.to_vec();
    key.push("when".to_owned());
    key.push(clause.to_owned());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_a_labels_line() {
        assert_eq!(
            labels("Fix it.\nLabels: Docs, `ci`\n- labels: small"),
            ["docs", "ci", "small"]
        );
        assert!(labels("No labels here: none").is_empty());
    }
}
