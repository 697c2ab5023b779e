//! The dedup layers a ranked candidate passes before it is judged or staged, in this order:
//!
//! 1. **identifier**: its URL is an earlier proposal's, or its title (case and spacing aside)
//!    is an earlier proposal's or a roadmap task's;
//! 2. **temporal**: a proposal from the same source kind and target (a repository, an X
//!    account) was made within `improve.temporal_window`. Newsletters are left out: their
//!    target is the whole site, whose articles are different items (they are deduped by URL,
//!    title and meaning);
//! 3. **semantic** (only with embeddings): its vector's cosine similarity to an open task's
//!    title, a task touched in the last 30 days, or a proposal staged earlier in this scan is
//!    at least `improve.similarity_threshold`.
//!
//! Proposals staged earlier in the same scan count for every layer.

use std::collections::HashMap;

use super::rank::cosine;
use crate::ledger::{CandidateRow, KnownProposal};

/// Which layer found a candidate known; its text is the ledger's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    Identifier,
    Semantic,
    Temporal,
}

impl Layer {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Identifier => "identifier",
            Layer::Semantic => "semantic",
            Layer::Temporal => "temporal",
        }
    }
}

/// What the layers compare a candidate with.
#[derive(Debug, Default)]
pub(super) struct Dedup {
    urls: HashMap<String, String>,
    titles: HashMap<String, String>,
    recent: HashMap<(String, String), String>,
    /// What the semantic layer compares with (a label, a vector); empty when it is off.
    references: Vec<(String, Vec<f32>)>,
    threshold: f64,
}

impl Dedup {
    /// `proposals`: every earlier proposal; `tasks`: roadmap tasks (id, title); proposals
    /// made at or after `recent_since_ms` count for the temporal layer.
    pub(super) fn new(
        proposals: &[KnownProposal],
        tasks: &[(String, String)],
        recent_since_ms: i64,
        threshold: f64,
    ) -> Self {
        let mut dedup = Self {
            threshold,
            ..Self::default()
        };
        for (id, title) in tasks {
            dedup
                .titles
                .entry(normalise(title))
                .or_insert_with(|| format!("task {id}"));
        }
        for p in proposals {
            let label = format!("proposal #{}", p.id);
            dedup.urls.entry(p.url.clone()).or_insert(label.clone());
            dedup
                .titles
                .entry(normalise(&p.title))
                .or_insert(label.clone());
            if p.created_at_ms >= recent_since_ms && has_temporal_target(&p.source_kind, &p.target)
            {
                dedup
                    .recent
                    .insert((p.source_kind.clone(), p.target.clone()), label);
            }
        }
        dedup
    }

    /// Turns the semantic layer on with these (label, vector) pairs.
    pub(super) fn with_references(mut self, references: Vec<(String, Vec<f32>)>) -> Self {
        self.references = references;
        self
    }

    /// The first layer that finds `candidate` known, and what it matched.
    pub(super) fn check(
        &self,
        candidate: &CandidateRow,
        vector: Option<&[f32]>,
    ) -> Option<(Layer, String)> {
        if let Some(label) = self.urls.get(&candidate.url) {
            return Some((Layer::Identifier, format!("the URL of {label}")));
        }
        if let Some(label) = self.titles.get(&normalise(&candidate.title)) {
            return Some((Layer::Identifier, format!("the title of {label}")));
        }
        let key = (candidate.source_kind.clone(), candidate.target.clone());
        if let Some(label) = self
            .recent
            .get(&key)
            .filter(|_| has_temporal_target(&candidate.source_kind, &candidate.target))
        {
            return Some((
                Layer::Temporal,
                format!(
                    "{label} has the same source kind and target ({} {})",
                    candidate.source_kind, candidate.target
                ),
            ));
        }
        let vector = vector.filter(|v| !v.is_empty())?;
        let (label, similarity) = self
            .references
            .iter()
            .map(|(label, reference)| (label, cosine(vector, reference)))
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        (similarity >= self.threshold).then(|| {
            (
                Layer::Semantic,
                format!("cosine {similarity:.3} to {label}"),
            )
        })
    }

    /// A proposal staged in this scan counts for every layer from now on.
    pub(super) fn note_staged(
        &mut self,
        proposal_id: i64,
        candidate: &CandidateRow,
        vector: Option<&[f32]>,
    ) {
        let label = format!("proposal #{proposal_id}");
        self.urls.insert(candidate.url.clone(), label.clone());
        self.titles
            .insert(normalise(&candidate.title), label.clone());
        if has_temporal_target(&candidate.source_kind, &candidate.target) {
            self.recent.insert(
                (candidate.source_kind.clone(), candidate.target.clone()),
                label.clone(),
            );
        }
        if let Some(v) = vector.filter(|v| !v.is_empty())
            && !self.references.is_empty()
        {
            self.references.push((label, v.to_vec()));
        }
    }
}

/// Whether the temporal layer applies to a candidate of this kind and target.
fn has_temporal_target(source_kind: &str, target: &str) -> bool {
    !target.is_empty() && source_kind != crate::config::ImproveSourceKind::Newsletter.as_str()
}

/// A title as the identifier layer compares it: lower case, single spaces.
fn normalise(title: &str) -> String {
    title
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(url: &str, title: &str, target: &str) -> CandidateRow {
        CandidateRow {
            id: 1,
            source_kind: "github_releases".into(),
            source_name: "s".into(),
            url: url.into(),
            title: title.into(),
            summary: String::new(),
            target: target.into(),
            published_at_ms: None,
            first_seen_ms: 0,
            last_seen_ms: 0,
        }
    }

    #[test]
    fn each_layer_names_what_it_matched() {
        let earlier = KnownProposal {
            id: 7,
            title: "Codex 0.1".into(),
            url: "https://a/1".into(),
            source_kind: "github_releases".into(),
            target: "openai/codex".into(),
            created_at_ms: 100,
        };
        let tasks = [("T0-1".to_owned(), "Budget  caps".to_owned())];
        let dedup = Dedup::new(std::slice::from_ref(&earlier), &tasks, 50, 0.85)
            .with_references(vec![("task T0-1".into(), vec![1.0, 0.0])]);
        let layer = |c: &CandidateRow, v: Option<&[f32]>| dedup.check(c, v).map(|(l, _)| l);
        assert_eq!(
            layer(&candidate("https://a/1", "x", ""), None),
            Some(Layer::Identifier)
        );
        assert_eq!(
            layer(&candidate("https://b", "budget caps", ""), None),
            Some(Layer::Identifier)
        );
        assert_eq!(
            layer(&candidate("https://b", "Codex 0.2", "openai/codex"), None),
            Some(Layer::Temporal)
        );
        let near = [0.95f32, 0.1];
        assert_eq!(
            layer(&candidate("https://c", "y", "z"), Some(&near)),
            Some(Layer::Semantic)
        );
        assert_eq!(
            layer(&candidate("https://c", "y", "z"), Some(&[0.0, 1.0])),
            None
        );
        // Outside the temporal window the same target passes.
        let old = Dedup::new(&[earlier], &[], 200, 0.85);
        assert_eq!(
            old.check(&candidate("https://b", "Codex 0.2", "openai/codex"), None),
            None
        );
    }
}
