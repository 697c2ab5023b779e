//! Every rule's clauses of one kind searched together: one `RegexSet` for the titles, one for
//! the bodies, one for the sections, one `GlobSet` for the file hints. Routing a task then
//! costs one search per clause kind it reaches (each done lazily, at the first rule that
//! needs it) instead of one regex search per rule and clause: a task no rule matches used to
//! run ~50 searches.

use std::cell::OnceCell;

use globset::{Glob, GlobSet, GlobSetBuilder};
use regex::{Regex, RegexSet, RegexSetBuilder};

use super::Rule;
use super::when::{When, labels};
use crate::ledger::TaskSpec;

/// The combined programs may be larger than one rule's; a set that still does not fit falls
/// back to each rule's own regex (same answers, slower).
const SET_SIZE_LIMIT: usize = 64 << 20;

/// One regex clause kind across the rules.
#[derive(Debug, Clone)]
struct RegexKind {
    /// `None` when the set would not compile (size): each rule's own regex is used.
    set: Option<RegexSet>,
    /// Per rule: its pattern's index in `set`.
    slot: Vec<Option<usize>>,
}

impl RegexKind {
    fn build(rules: &[Rule], clause: fn(&When) -> Option<&Regex>) -> Self {
        let mut patterns = Vec::new();
        let slot = rules
            .iter()
            .map(|rule| {
                clause(&rule.when).map(|re| {
                    patterns.push(re.as_str());
                    patterns.len() - 1
                })
            })
            .collect();
        let set = RegexSetBuilder::new(&patterns)
            .size_limit(SET_SIZE_LIMIT)
            .build()
            .ok();
        Self { set, slot }
    }

    /// Per rule: whether its clause matches any of `texts` (false for a rule without one).
    fn hits(
        &self,
        rules: &[Rule],
        clause: fn(&When) -> Option<&Regex>,
        texts: &[&str],
    ) -> Vec<bool> {
        match &self.set {
            Some(set) => {
                let mut found = vec![false; set.len()];
                for text in texts {
                    for i in &set.matches(text) {
                        if let Some(f) = found.get_mut(i) {
                            *f = true;
                        }
                    }
                }
                self.slot
                    .iter()
                    .map(|s| s.and_then(|i| found.get(i).copied()).unwrap_or(false))
                    .collect()
            }
            None => rules
                .iter()
                .map(|rule| {
                    clause(&rule.when).is_some_and(|re| texts.iter().any(|t| re.is_match(t)))
                })
                .collect(),
        }
    }
}

/// The rules' file globs in one set.
#[derive(Debug, Clone)]
struct FileKind {
    set: GlobSet,
    /// Per glob of `set`: the rule it belongs to.
    rule_of: Vec<usize>,
}

impl FileKind {
    fn build(rules: &[Rule]) -> Self {
        let mut builder = GlobSetBuilder::new();
        let mut rule_of = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            for pattern in rule.when.file_patterns() {
                // Each pattern compiled once already when its rule did.
                if let Ok(glob) = Glob::new(pattern) {
                    builder.add(glob);
                    rule_of.push(i);
                }
            }
        }
        Self {
            set: builder.build().unwrap_or_else(|_| GlobSet::empty()),
            rule_of,
        }
    }

    fn hits(&self, rules: usize, hints: &[String]) -> Vec<bool> {
        let mut found = vec![false; rules];
        let mut matched = Vec::new();
        for hint in hints {
            self.set.matches_into(hint.as_str(), &mut matched);
            for glob in &matched {
                if let Some(rule) = self.rule_of.get(*glob)
                    && let Some(f) = found.get_mut(*rule)
                {
                    *f = true;
                }
            }
        }
        found
    }
}

/// The rules' clauses by kind, built with the router.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    title: RegexKind,
    body: RegexKind,
    section: RegexKind,
    files: FileKind,
}

impl Index {
    pub(super) fn build(rules: &[Rule]) -> Self {
        Self {
            title: RegexKind::build(rules, When::title),
            body: RegexKind::build(rules, When::body),
            section: RegexKind::build(rules, When::section),
            files: FileKind::build(rules),
        }
    }
}

/// What the rules match on for one task, each kind searched the first time a rule needs it.
pub(crate) struct Facts<'a> {
    pub(crate) spec: &'a TaskSpec,
    rules: &'a [Rule],
    index: &'a Index,
    labels: OnceCell<Vec<String>>,
    title: OnceCell<Vec<bool>>,
    body: OnceCell<Vec<bool>>,
    section: OnceCell<Vec<bool>>,
    files: OnceCell<Vec<bool>>,
}

impl<'a> Facts<'a> {
    pub(crate) fn of(spec: &'a TaskSpec, rules: &'a [Rule], index: &'a Index) -> Self {
        Self {
            spec,
            rules,
            index,
            labels: OnceCell::new(),
            title: OnceCell::new(),
            body: OnceCell::new(),
            section: OnceCell::new(),
            files: OnceCell::new(),
        }
    }

    /// The task's labels, lower-cased.
    pub(crate) fn labels(&self) -> &[String] {
        self.labels.get_or_init(|| labels(&self.spec.body))
    }

    pub(crate) fn title(&self, rule: usize) -> bool {
        let hits = self.title.get_or_init(|| {
            self.index
                .title
                .hits(self.rules, When::title, &[&self.spec.title])
        });
        hits.get(rule).copied().unwrap_or(false)
    }

    pub(crate) fn body(&self, rule: usize) -> bool {
        let hits = self.body.get_or_init(|| {
            self.index
                .body
                .hits(self.rules, When::body, &[&self.spec.body])
        });
        hits.get(rule).copied().unwrap_or(false)
    }

    /// The section clause searches the roadmap section and the milestone.
    pub(crate) fn section(&self, rule: usize) -> bool {
        let hits = self.section.get_or_init(|| {
            let texts: Vec<&str> = [&self.spec.section, &self.spec.milestone]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect();
            self.index.section.hits(self.rules, When::section, &texts)
        });
        hits.get(rule).copied().unwrap_or(false)
    }

    pub(crate) fn files(&self, rule: usize) -> bool {
        let hits = self.files.get_or_init(|| {
            self.index
                .files
                .hits(self.rules.len(), &self.spec.file_hints)
        });
        hits.get(rule).copied().unwrap_or(false)
    }
}
