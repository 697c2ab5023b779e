//! Every rule's clauses looked up together, so that routing a task costs a few short passes
//! over its text, not one regex or glob search per rule:
//! - the rules a task's priority tier admits are one bit set per tier, so the rest are never
//!   looked at;
//! - regex clauses (title, body, section) and file globs: each rule's rarest literal (see
//!   [`literals`](super::literals); a glob is read as its regex) in one Aho–Corasick automaton
//!   per kind; one pass over the task's text (or file hints) tells which rules could match, and
//!   only those rules' regexes or globs run;
//! - labels: each configured label maps to the rules that name it.
//!
//! Each kind is looked up the first time a rule needs it, and a task's answers live in
//! fixed-size bit sets: routing a task allocates nothing for up to 256 rules or literals.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use globset::Glob;
use regex::Regex;
use smallvec::{SmallVec, smallvec};

use super::Rule;
use super::literals::{self, Spellings};
use super::when::{When, label_words};
use crate::ledger::TaskSpec;

/// A set of small numbers (rule or literal indexes), inline up to 256.
#[derive(Debug, Clone, Default)]
struct Bits(SmallVec<[u64; 4]>);

impl Bits {
    fn new(size: usize) -> Self {
        Self(smallvec![0; size.div_ceil(64)])
    }

    fn set(&mut self, i: usize) {
        if let Some(word) = self.0.get_mut(i / 64) {
            *word |= 1 << (i % 64);
        }
    }

    fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| (w >> (i % 64)) & 1 == 1)
    }

    fn union(&mut self, other: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }

    /// The members, smallest first.
    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                Some(w * 64 + bit)
            })
        })
    }
}

/// One clause kind's literals across the rules.
#[derive(Debug, Clone)]
struct LiteralKind {
    /// Every literal's spellings; a match of spelling `i` is a hit for literal
    /// `literal_of[i]`. `None` when no rule's clause needs a literal.
    search: Option<AhoCorasick>,
    literal_of: Vec<usize>,
    literals: usize,
    /// Per rule: the literal its clause needs (`None`: the clause is always tried).
    needs: Vec<Option<usize>>,
}

impl LiteralKind {
    /// `patterns(rule)`: the regexes of the rule's clause of this kind (any of which may
    /// match); a rule needs a literal only when each of its patterns needs the same one.
    fn build(rules: &[Rule], patterns: impl Fn(&When) -> Vec<String>) -> Self {
        let mut ids: HashMap<Spellings, usize> = HashMap::new();
        let needs = rules
            .iter()
            .map(|rule| {
                let wanted: Vec<Option<Spellings>> = patterns(&rule.when)
                    .iter()
                    .map(|p| literals::best(p))
                    .collect();
                let literal = match wanted.as_slice() {
                    [Some(only)] => only.clone(),
                    // Several patterns (a rule's globs): their literals joined as spellings
                    // of one, so a hit on any of them makes the rule possible.
                    many if !many.is_empty() && many.iter().all(Option::is_some) => {
                        many.iter().flatten().flatten().cloned().collect()
                    }
                    _ => return None,
                };
                let next = ids.len();
                Some(*ids.entry(literal).or_insert(next))
            })
            .collect();
        let mut spellings = Vec::new();
        let mut literal_of = Vec::new();
        for (literal, id) in &ids {
            for spelling in literal {
                spellings.push(spelling.as_slice());
                literal_of.push(*id);
            }
        }
        // A DFA is the fastest to search and small for a few hundred short literals; a build
        // that fails (too large) leaves every clause to run, which gives the same answers.
        let search = (!spellings.is_empty())
            .then(|| {
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&spellings)
                    .or_else(|_| {
                        AhoCorasick::builder()
                            .ascii_case_insensitive(true)
                            .build(&spellings)
                    })
                    .ok()
            })
            .flatten();
        match search {
            Some(search) => Self {
                search: Some(search),
                literal_of,
                literals: ids.len(),
                needs,
            },
            None => Self {
                search: None,
                literal_of: Vec::new(),
                literals: 0,
                needs: vec![None; rules.len()],
            },
        }
    }

    /// The literals found in any of `texts`.
    fn found<'t>(&self, texts: impl Iterator<Item = &'t str>) -> Bits {
        let mut found = Bits::new(self.literals);
        if let Some(search) = &self.search {
            for text in texts {
                for hit in search.find_overlapping_iter(text) {
                    if let Some(literal) = self.literal_of.get(hit.pattern().as_usize()) {
                        found.set(*literal);
                    }
                }
            }
        }
        found
    }

    /// Whether `rule`'s clause can match, given the literals `found`.
    fn possible(&self, rule: usize, found: &Bits) -> bool {
        match self.needs.get(rule) {
            Some(Some(literal)) => found.get(*literal),
            _ => true,
        }
    }
}

/// The rules' labels: each (lower-cased) label and the rules that name it.
#[derive(Debug, Clone)]
struct LabelKind {
    rules: HashMap<String, Bits>,
    count: usize,
}

impl LabelKind {
    fn build(rules: &[Rule]) -> Self {
        let mut by_label: HashMap<String, Bits> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            for label in rule.when.labels() {
                by_label
                    .entry(label.clone())
                    .or_insert_with(|| Bits::new(rules.len()))
                    .set(i);
            }
        }
        Self {
            rules: by_label,
            count: rules.len(),
        }
    }

    /// The rules one of whose labels the task's brief carries.
    fn hits(&self, body: &str) -> Bits {
        let mut hits = Bits::new(self.count);
        if self.rules.is_empty() {
            return hits;
        }
        for word in label_words(body) {
            // Lower-casing allocates only for a label that is not lower-case ASCII already.
            let label = if word
                .bytes()
                .any(|b| !b.is_ascii() || b.is_ascii_uppercase())
            {
                Cow::Owned(word.to_lowercase())
            } else {
                Cow::Borrowed(word)
            };
            if let Some(rules) = self.rules.get(label.as_ref()) {
                hits.union(rules);
            }
        }
        hits
    }
}

/// The rules' clauses by kind, built with the router.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    /// Per priority tier (0–255): the rules whose tier clause admits it (or that have none).
    by_tier: Vec<Bits>,
    title: LiteralKind,
    body: LiteralKind,
    section: LiteralKind,
    files: LiteralKind,
    labels: LabelKind,
}

/// A clause's regex as its kind's literals are drawn from.
fn regex_of(clause: Option<&Regex>) -> Vec<String> {
    clause
        .map(|re| re.as_str().to_owned())
        .into_iter()
        .collect()
}

impl Index {
    pub(super) fn build(rules: &[Rule]) -> Self {
        let by_tier = (0..=u8::MAX)
            .map(|tier| {
                let mut admitted = Bits::new(rules.len());
                for (i, rule) in rules.iter().enumerate() {
                    if rule.when.admits_tier(tier) {
                        admitted.set(i);
                    }
                }
                admitted
            })
            .collect();
        Self {
            by_tier,
            title: LiteralKind::build(rules, |w| regex_of(w.title())),
            body: LiteralKind::build(rules, |w| regex_of(w.body())),
            section: LiteralKind::build(rules, |w| regex_of(w.section())),
            // Each glob as the regex globset matches it by; a pattern that does not compile
            // (none: its rule did) counts as needing no literal.
            files: LiteralKind::build(rules, |w| {
                w.file_patterns()
                    .iter()
                    .map(|p| Glob::new(p).map_or_else(|_| String::new(), |g| g.regex().to_owned()))
                    .collect()
            }),
            labels: LabelKind::build(rules),
        }
    }

    /// The first of `rules` that `task` matches.
    pub(super) fn first_match(&self, rules: &[Rule], task: &TaskSpec) -> Option<usize> {
        let facts = Facts::of(task, self);
        self.by_tier
            .get(usize::from(task.priority_tier))?
            .iter()
            .find(|&i| rules.get(i).is_some_and(|r| r.when.matches(i, &facts)))
    }
}

/// What the rules match on for one task, each kind looked up the first time a rule needs it.
pub(crate) struct Facts<'a> {
    spec: &'a TaskSpec,
    index: &'a Index,
    labels: OnceCell<Bits>,
    title: OnceCell<Bits>,
    body: OnceCell<Bits>,
    section: OnceCell<Bits>,
    files: OnceCell<Bits>,
}

impl<'a> Facts<'a> {
    fn of(spec: &'a TaskSpec, index: &'a Index) -> Self {
        Self {
            spec,
            index,
            labels: OnceCell::new(),
            title: OnceCell::new(),
            body: OnceCell::new(),
            section: OnceCell::new(),
            files: OnceCell::new(),
        }
    }

    /// The section clause searches the roadmap section and the milestone.
    fn section_texts(&self) -> impl Iterator<Item = &'a str> + Clone {
        let spec = self.spec;
        [spec.section.as_deref(), spec.milestone.as_deref()]
            .into_iter()
            .flatten()
    }

    /// Whether the task carries one of `rule`'s labels.
    pub(crate) fn labels(&self, rule: usize) -> bool {
        self.labels
            .get_or_init(|| self.index.labels.hits(&self.spec.body))
            .get(rule)
    }

    pub(crate) fn title(&self, rule: usize, re: &Regex) -> bool {
        let kind = &self.index.title;
        let text = self.spec.title.as_str();
        let found = self.title.get_or_init(|| kind.found(std::iter::once(text)));
        kind.possible(rule, found) && re.is_match(text)
    }

    pub(crate) fn body(&self, rule: usize, re: &Regex) -> bool {
        let kind = &self.index.body;
        let text = self.spec.body.as_str();
        let found = self.body.get_or_init(|| kind.found(std::iter::once(text)));
        kind.possible(rule, found) && re.is_match(text)
    }

    pub(crate) fn section(&self, rule: usize, re: &Regex) -> bool {
        let kind = &self.index.section;
        let found = self
            .section
            .get_or_init(|| kind.found(self.section_texts()));
        kind.possible(rule, found) && self.section_texts().any(|t| re.is_match(t))
    }

    /// Whether one of the task's file hints matches one of `rule`'s globs (`set`).
    pub(crate) fn files(&self, rule: usize, set: &globset::GlobSet) -> bool {
        let kind = &self.index.files;
        let hints = &self.spec.file_hints;
        let found = self
            .files
            .get_or_init(|| kind.found(hints.iter().map(String::as_str)));
        kind.possible(rule, found) && hints.iter().any(|h| set.is_match(h.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Router;
    use crate::ledger::TaskSpec;

    const RULES: &str = r#"
[[routing.rules]]
name = "kit"
when = { priority_tier = 2, title = "(?i)\\bkit\\b" }
executor = ["claude"]

[[routing.rules]]
name = "parser versions"
when = { title = "(?i)parser.*\\bv1[0-9]\\b" }
executor = ["claude"]

[[routing.rules]]
name = "flaky"
when = { body = "(?i)\\bflaky\\b" }
executor = ["claude"]

[[routing.rules]]
name = "docs label"
when = { labels = ["Docs"] }
executor = ["claude"]

[[routing.rules]]
name = "milestone"
when = { section = "(?i)milestone m3" }
executor = ["claude"]

[[routing.rules]]
name = "rust files"
when = { files = ["src/**/*.rs"], title = "(?i)fix" }
executor = ["claude"]

[[routing.rules]]
name = "capitalised"
when = { title = "^[A-Z]" , priority_tier = 1 }
executor = ["claude"]

[[routing.rules]]
name = "accents"
when = { body = "é+|(?i)straße" }
executor = ["claude"]

[[routing.rules]]
name = "ci docs"
when = { priority_tier = 0, title = "(?i)doc", labels = ["ci"] }
executor = ["claude"]
"#;

    fn task(n: usize, title: &str, body: &str, section: &str, hint: &str) -> TaskSpec {
        TaskSpec {
            id: format!("T{}-{n}", n % 3),
            priority_tier: (n % 3) as u8,
            title: title.to_owned(),
            subtitle: None,
            body: body.to_owned(),
            section: (!section.is_empty()).then(|| section.to_owned()),
            milestone: n.is_multiple_of(4).then(|| "Milestone M3".to_owned()),
            format: "oxi".to_owned(),
            depends_on: Vec::new(),
            file_hints: (!hint.is_empty())
                .then(|| hint.to_owned())
                .into_iter()
                .collect(),
            source_line: 0,
            roadmap_order: 0,
            content_hash: String::new(),
            roadmap_done: false,
        }
    }

    /// The index (literals, label and glob lookups) must pick what trying each rule's own
    /// clauses in order picks (`explain`), on texts made to probe case folding and literals.
    #[test]
    fn the_index_routes_as_each_rule_alone_would() {
        let config = crate::config::parse(RULES, "rules.toml").unwrap();
        let router = Router::new(&config).unwrap();
        let titles = [
            "fix the KIT",
            "fix the \u{212A}it",
            "kite flying",
            "the Parser v12",
            "the PARſER ready for v12",
            "parser v120",
            "Documentation",
            "lower-case docs",
        ];
        let bodies = [
            "",
            "Tests are FLAKY here.",
            "unflaky",
            "Labels: DOCS, small",
            "- labels: `CI`",
            "café and STRASSE and Straẞe",
            "caf\u{0065}\u{0301}",
        ];
        let sections = [
            "",
            "Tier 1 › Milestone m3",
            "milestone M30",
            "Tier 2 › Milestone M2",
        ];
        let hints = ["", "src/lib.rs", "docs/a.md", "src/deep/mod.rs"];
        let mut n = 0;
        let mut routed = std::collections::BTreeSet::new();
        for title in titles {
            for body in bodies {
                for section in sections {
                    for hint in hints {
                        n += 1;
                        let spec = task(n, title, body, section, hint);
                        let by_index = router.route(&spec).name();
                        let (_, explained) = router.explain(&spec);
                        assert_eq!(by_index, explained.rule, "{spec:?}");
                        routed.insert(by_index.to_owned());
                    }
                }
            }
        }
        // Every rule was the answer for some task: the texts reach each clause kind.
        assert_eq!(routed.len(), 10, "{routed:?}");
    }
}
