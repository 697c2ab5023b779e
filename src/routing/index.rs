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
//! A task's candidates start as its tier's rules and are narrowed one kind at a time, cheapest
//! text first (title, section, file hints, labels, body): a kind's text is searched only while
//! a candidate rule still has a clause of that kind to rule out, so a brief is not read at all
//! once no rule with a body or label clause can match. Only the rules left run their own
//! regexes and globs, in order. A task's answers live in fixed-size bit sets: routing a task
//! allocates nothing for up to 256 rules or literals.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use globset::Glob;
use regex::Regex;

use super::Rule;
use super::literals::{self, Spellings};
use super::when::{When, label_words};
use crate::ledger::TaskSpec;

/// Members held inline: the first 256 (a config's rules, a kind's literals) need no heap.
const INLINE: usize = 4;

/// A set of small numbers (rule or literal indexes): the first 256 in a fixed array, the rest
/// (a config with more rules) in `spill`. A plain array rather than a small-vector: the set
/// operations run for every task and rule kind, and stay a few word operations each.
#[derive(Debug, Clone, Default)]
struct Bits {
    inline: [u64; INLINE],
    spill: Vec<u64>,
}

impl Bits {
    fn new(size: usize) -> Self {
        Self {
            inline: [0; INLINE],
            spill: vec![0; size.div_ceil(64).saturating_sub(INLINE)],
        }
    }

    fn word_mut(&mut self, word: usize) -> Option<&mut u64> {
        match word.checked_sub(INLINE) {
            None => self.inline.get_mut(word),
            Some(w) => self.spill.get_mut(w),
        }
    }

    fn set(&mut self, i: usize) {
        if let Some(word) = self.word_mut(i / 64) {
            *word |= 1 << (i % 64);
        }
    }

    fn get(&self, i: usize) -> bool {
        let word = match (i / 64).checked_sub(INLINE) {
            None => self.inline.get(i / 64),
            Some(w) => self.spill.get(w),
        };
        word.is_some_and(|w| (w >> (i % 64)) & 1 == 1)
    }

    /// Each word pair of `self` and `other`.
    fn pairs<'s>(&'s mut self, other: &'s Bits) -> impl Iterator<Item = (&'s mut u64, &'s u64)> {
        self.inline
            .iter_mut()
            .zip(&other.inline)
            .chain(self.spill.iter_mut().zip(&other.spill))
    }

    fn union(&mut self, other: &Bits) {
        for (a, b) in self.pairs(other) {
            *a |= b;
        }
    }

    fn intersect(&mut self, other: &Bits) {
        for (a, b) in self.pairs(other) {
            *a &= b;
        }
    }

    fn is_empty(&self) -> bool {
        self.inline == [0; INLINE] && self.spill.iter().all(|w| *w == 0)
    }

    fn intersects(&self, other: &Bits) -> bool {
        let [a0, a1, a2, a3] = self.inline;
        let [b0, b1, b2, b3] = other.inline;
        (a0 & b0) | (a1 & b1) | (a2 & b2) | (a3 & b3) != 0
            || self.spill.iter().zip(&other.spill).any(|(a, b)| a & b != 0)
    }

    /// The numbers below `size` that are not members.
    fn complement(&self, size: usize) -> Bits {
        let mut out = Bits::new(size);
        for i in 0..size {
            if !self.get(i) {
                out.set(i);
            }
        }
        out
    }

    /// The members, smallest first.
    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.inline
            .iter()
            .chain(&self.spill)
            .enumerate()
            .flat_map(|(w, &word)| {
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
    /// Every literal's spellings. `None` when no rule's clause needs a literal.
    search: Option<AhoCorasick>,
    /// Per spelling (the automaton's pattern id): the rules whose clause needs its literal.
    rules_of: Vec<Bits>,
    /// The rules whose clause of this kind needs a literal: the ones a search can rule out.
    gated: Bits,
    /// The rules a search cannot rule out (the complement of `gated`).
    ungated: Bits,
}

impl LiteralKind {
    /// `patterns(rule)`: the regexes of the rule's clause of this kind (any of which may
    /// match); a rule needs a literal only when each of its patterns needs the same one.
    fn build(rules: &[Rule], patterns: impl Fn(&When) -> Vec<String>) -> Self {
        let mut needing: HashMap<Spellings, Bits> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            let wanted: Vec<Option<Spellings>> = patterns(&rule.when)
                .iter()
                .map(|p| literals::best(p))
                .collect();
            let literal = match wanted.as_slice() {
                [Some(only)] => only.clone(),
                // Several patterns (a rule's globs): their literals joined as spellings of
                // one, so a hit on any of them makes the rule possible.
                many if !many.is_empty() && many.iter().all(Option::is_some) => {
                    many.iter().flatten().flatten().cloned().collect()
                }
                _ => continue,
            };
            needing
                .entry(literal)
                .or_insert_with(|| Bits::new(rules.len()))
                .set(i);
        }
        let mut spellings = Vec::new();
        let mut rules_of = Vec::new();
        for (literal, rules) in &needing {
            for spelling in literal {
                spellings.push(spelling.as_slice());
                rules_of.push(rules.clone());
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
        let mut gated = Bits::new(rules.len());
        if search.is_some() {
            for rules in &rules_of {
                gated.union(rules);
            }
        } else {
            rules_of.clear();
        }
        Self {
            search,
            rules_of,
            ungated: gated.complement(rules.len()),
            gated,
        }
    }

    /// The rules whose clause of this kind can match given `texts`: those needing no literal,
    /// and those whose literal one of the texts holds.
    fn possible<'t>(&self, texts: impl Iterator<Item = &'t str>) -> Bits {
        let mut possible = self.ungated.clone();
        if let Some(search) = &self.search {
            for text in texts {
                for hit in search.find_overlapping_iter(text) {
                    if let Some(rules) = self.rules_of.get(hit.pattern().as_usize()) {
                        possible.union(rules);
                    }
                }
            }
        }
        possible
    }
}

/// The rules' labels: each (lower-cased) label and the rules that name it.
#[derive(Debug, Clone)]
struct LabelKind {
    rules: HashMap<String, Bits>,
    count: usize,
    /// The rules with a labels clause.
    labelled: Bits,
    /// The rules without one.
    unlabelled: Bits,
}

impl LabelKind {
    fn build(rules: &[Rule]) -> Self {
        let mut by_label: HashMap<String, Bits> = HashMap::new();
        let mut labelled = Bits::new(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            for label in rule.when.labels() {
                by_label
                    .entry(label.clone())
                    .or_insert_with(|| Bits::new(rules.len()))
                    .set(i);
                labelled.set(i);
            }
        }
        Self {
            rules: by_label,
            count: rules.len(),
            unlabelled: labelled.complement(rules.len()),
            labelled,
        }
    }

    /// Narrows `candidates` to the rules without a labels clause and those whose label the
    /// task carries (`hits`).
    fn narrow(&self, candidates: &mut Bits, hits: &Bits) {
        let mut possible = self.unlabelled.clone();
        possible.union(hits);
        candidates.intersect(&possible);
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
        let mut candidates = self.by_tier.get(usize::from(task.priority_tier))?.clone();
        // The short texts, each only while a candidate can still be ruled out by it; then the
        // brief's labels. The brief itself is searched only when a rule with a body clause is
        // reached in the walk below with every other clause matched.
        for kind in [Kind::Title, Kind::Section, Kind::Files, Kind::Labels] {
            if candidates.is_empty() {
                return None;
            }
            facts.narrow(kind, &mut candidates);
        }
        candidates
            .iter()
            .find(|&i| rules.get(i).is_some_and(|r| r.when.matches(i, &facts)))
    }
}

/// The clause kinds a task's candidates are narrowed by before the walk.
#[derive(Clone, Copy)]
enum Kind {
    Title,
    Section,
    Files,
    Labels,
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

    fn label_hits(&self) -> &Bits {
        self.labels
            .get_or_init(|| self.index.labels.hits(&self.spec.body))
    }

    /// The rules whose title clause the title's literals leave possible.
    fn title_possible(&self) -> &Bits {
        let text = self.spec.title.as_str();
        self.title
            .get_or_init(|| self.index.title.possible(std::iter::once(text)))
    }

    fn body_possible(&self) -> &Bits {
        let text = self.spec.body.as_str();
        self.body
            .get_or_init(|| self.index.body.possible(std::iter::once(text)))
    }

    fn section_possible(&self) -> &Bits {
        self.section
            .get_or_init(|| self.index.section.possible(self.section_texts()))
    }

    fn files_possible(&self) -> &Bits {
        let hints = &self.spec.file_hints;
        self.files
            .get_or_init(|| self.index.files.possible(hints.iter().map(String::as_str)))
    }

    /// Drops from `candidates` the rules `kind`'s search rules out, searching the task's text
    /// only when some candidate has a clause of that kind the search can rule out.
    fn narrow(&self, kind: Kind, candidates: &mut Bits) {
        let index = self.index;
        match kind {
            Kind::Labels if candidates.intersects(&index.labels.labelled) => {
                index.labels.narrow(candidates, self.label_hits());
            }
            Kind::Title if candidates.intersects(&index.title.gated) => {
                candidates.intersect(self.title_possible());
            }
            Kind::Section if candidates.intersects(&index.section.gated) => {
                candidates.intersect(self.section_possible());
            }
            Kind::Files if candidates.intersects(&index.files.gated) => {
                candidates.intersect(self.files_possible());
            }
            Kind::Title | Kind::Section | Kind::Files | Kind::Labels => {}
        }
    }

    /// Whether the task carries one of `rule`'s labels.
    pub(crate) fn labels(&self, rule: usize) -> bool {
        self.label_hits().get(rule)
    }

    pub(crate) fn title(&self, rule: usize, re: &Regex) -> bool {
        self.title_possible().get(rule) && re.is_match(&self.spec.title)
    }

    pub(crate) fn body(&self, rule: usize, re: &Regex) -> bool {
        self.body_possible().get(rule) && re.is_match(&self.spec.body)
    }

    pub(crate) fn section(&self, rule: usize, re: &Regex) -> bool {
        self.section_possible().get(rule) && self.section_texts().any(|t| re.is_match(t))
    }

    /// Whether one of the task's file hints matches one of `rule`'s globs (`set`).
    pub(crate) fn files(&self, rule: usize, set: &globset::GlobSet) -> bool {
        self.files_possible().get(rule)
            && self
                .spec
                .file_hints
                .iter()
                .any(|h| set.is_match(h.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Router;
    use super::Bits;

    /// Past 256 members (a config with more rules) the set spills to the heap and still
    /// answers the same.
    #[test]
    fn a_set_past_the_inline_words_keeps_every_member() {
        let size = 300;
        let mut odd = Bits::new(size);
        let mut high = Bits::new(size);
        for i in (1..size).step_by(2) {
            odd.set(i);
        }
        for i in [3, 255, 256, 299] {
            high.set(i);
        }
        assert!(odd.get(299) && !odd.get(256) && !odd.get(300));
        assert!(odd.intersects(&high));
        let mut both = odd.clone();
        both.intersect(&high);
        assert_eq!(both.iter().collect::<Vec<_>>(), [3, 255, 299]);
        let even = odd.complement(size);
        assert_eq!(even.iter().count(), 150);
        assert!(!even.intersects(&both) && even.get(256));
        let mut all = even;
        all.union(&odd);
        assert_eq!(all.iter().count(), size);
        both.intersect(&Bits::new(size));
        assert!(both.is_empty());
    }
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
