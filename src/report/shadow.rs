//! The report's shadow section: how often the shadow choice's work had the primary's shape,
//! what it would have saved, per rule and model, and the last pairs (docs/shadow.md).

use std::collections::BTreeMap;

use serde::Serialize;

use super::ratio;
use crate::ledger::events::ShadowSide;
use crate::ledger::{Queries, ShadowPairRow};
use crate::money::micro_to_usd;

/// How many pairs the report lists one by one.
const LAST: usize = 50;

/// The shadow section.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShadowReport {
    /// Pairs recorded in the window.
    pub pairs: usize,
    /// Pairs whose shadow ran (not stopped by its cap, the day's caps or its setup).
    pub compared: usize,
    /// `shape_match` pairs / compared pairs.
    pub agreement_rate: Option<f64>,
    pub primary_green_rate: Option<f64>,
    pub shadow_green_rate: Option<f64>,
    /// Over compared pairs.
    pub primary_cost_usd: f64,
    pub shadow_cost_usd: f64,
    /// Shadow minus primary, over compared pairs: negative is what the shadow would save.
    pub cost_delta_usd: f64,
    /// Per rule and shadow choice, most pairs first.
    pub by_route: Vec<ShadowGroup>,
    /// The last pairs, newest first (at most 50).
    pub last: Vec<ShadowPairLine>,
}

/// One rule and shadow choice.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowGroup {
    pub rule: String,
    /// `worker:model` of the primary runs (the most frequent) and of the shadow.
    pub primary: String,
    pub shadow: String,
    pub pairs: usize,
    pub compared: usize,
    pub agreement_rate: Option<f64>,
    pub shadow_green_rate: Option<f64>,
    pub cost_delta_usd: f64,
}

/// One pair as the report lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowPairLine {
    pub at: String,
    pub task_id: String,
    pub attempt: u32,
    pub rule: String,
    pub primary: String,
    pub shadow: String,
    pub primary_outcome: String,
    pub shadow_outcome: String,
    pub primary_green: bool,
    pub shadow_green: bool,
    pub primary_files: usize,
    pub shadow_files: usize,
    pub overlap_files: usize,
    pub primary_lines: u64,
    pub shadow_lines: u64,
    pub primary_tokens: u64,
    pub shadow_tokens: u64,
    pub shape_match: bool,
    pub cost_delta_usd: f64,
    pub duration_delta_seconds: f64,
}

fn choice(side: &ShadowSide) -> String {
    match &side.model {
        Some(model) => format!("{}:{model}", side.worker),
        None => side.worker.clone(),
    }
}

/// Sums over a set of pairs.
#[derive(Default)]
struct Tally {
    pairs: usize,
    compared: usize,
    matched: usize,
    primary_green: usize,
    shadow_green: usize,
    primary_cost: i64,
    shadow_cost: i64,
    primaries: BTreeMap<String, usize>,
}

impl Tally {
    fn add(&mut self, row: &ShadowPairRow) {
        let pair = &row.pair;
        self.pairs += 1;
        *self.primaries.entry(choice(&pair.primary)).or_default() += 1;
        if pair.shadow.run_id.is_none() {
            return;
        }
        self.compared += 1;
        self.matched += usize::from(pair.shape_match);
        self.primary_green += usize::from(pair.primary.green);
        self.shadow_green += usize::from(pair.shadow.green);
        self.primary_cost += pair.primary.cost_microusd;
        self.shadow_cost += pair.shadow.cost_microusd;
    }

    fn delta(&self) -> f64 {
        micro_to_usd(self.shadow_cost) - micro_to_usd(self.primary_cost)
    }
}

/// The section for pairs recorded since `from`.
pub(super) fn build(
    q: &Queries<'_>,
    from: i64,
) -> Result<ShadowReport, crate::ledger::LedgerError> {
    let rows = q.shadow_pairs(from)?;
    let mut all = Tally::default();
    let mut groups: BTreeMap<(String, String), Tally> = BTreeMap::new();
    for row in &rows {
        all.add(row);
        groups
            .entry((row.pair.rule.clone(), choice(&row.pair.shadow)))
            .or_default()
            .add(row);
    }
    let mut by_route: Vec<ShadowGroup> = groups
        .into_iter()
        .map(|((rule, shadow), t)| ShadowGroup {
            primary: t
                .primaries
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(c, _)| c.clone())
                .unwrap_or_default(),
            rule,
            shadow,
            pairs: t.pairs,
            compared: t.compared,
            agreement_rate: ratio(t.matched, t.compared),
            shadow_green_rate: ratio(t.shadow_green, t.compared),
            cost_delta_usd: t.delta(),
        })
        .collect();
    by_route.sort_by_key(|g| std::cmp::Reverse(g.pairs));
    Ok(ShadowReport {
        pairs: all.pairs,
        compared: all.compared,
        agreement_rate: ratio(all.matched, all.compared),
        primary_green_rate: ratio(all.primary_green, all.compared),
        shadow_green_rate: ratio(all.shadow_green, all.compared),
        primary_cost_usd: micro_to_usd(all.primary_cost),
        shadow_cost_usd: micro_to_usd(all.shadow_cost),
        cost_delta_usd: all.delta(),
        by_route,
        last: rows.iter().take(LAST).map(line).collect(),
    })
}

fn line(row: &ShadowPairRow) -> ShadowPairLine {
    let pair = &row.pair;
    ShadowPairLine {
        at: crate::clock::rfc3339(row.at_ms),
        task_id: row.task_id.clone(),
        attempt: row.attempt,
        rule: pair.rule.clone(),
        primary: choice(&pair.primary),
        shadow: choice(&pair.shadow),
        primary_outcome: pair.primary.outcome.clone(),
        shadow_outcome: pair.shadow.outcome.clone(),
        primary_green: pair.primary.green,
        shadow_green: pair.shadow.green,
        primary_files: pair.primary.files.len(),
        shadow_files: pair.shadow.files.len(),
        overlap_files: pair.overlap.len(),
        primary_lines: pair.primary.lines_changed,
        shadow_lines: pair.shadow.lines_changed,
        primary_tokens: pair.primary.tokens,
        shadow_tokens: pair.shadow.tokens,
        shape_match: pair.shape_match,
        cost_delta_usd: micro_to_usd(pair.cost_delta_microusd),
        // Milliseconds to seconds: exact for any duration a run can take.
        #[allow(clippy::cast_precision_loss)]
        duration_delta_seconds: pair.duration_delta_ms as f64 / 1000.0,
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |v| format!("{:.0}%", v * 100.0))
}

fn signed_usd(v: f64) -> String {
    if v < 0.0 {
        format!("-${:.4}", -v)
    } else {
        format!("+${v:.4}")
    }
}

fn green(v: bool) -> &'static str {
    if v { "green" } else { "not green" }
}

/// The section's rows for the table and Markdown forms (and the HTML page's table).
pub(super) fn rows(s: &ShadowReport) -> Vec<(String, String, String)> {
    let mut rows = vec![(
        "shadow".to_owned(),
        "pairs (compared)".to_owned(),
        format!("{} ({})", s.pairs, s.compared),
    )];
    if s.pairs == 0 {
        return rows;
    }
    rows.push((
        "shadow".into(),
        "agreement (shape match)".into(),
        pct(s.agreement_rate),
    ));
    rows.push((
        "shadow".into(),
        "green: primary / shadow".into(),
        format!(
            "{} / {}",
            pct(s.primary_green_rate),
            pct(s.shadow_green_rate)
        ),
    ));
    rows.push((
        "shadow".into(),
        "cost: primary / shadow (delta)".into(),
        format!(
            "${:.4} / ${:.4} ({})",
            s.primary_cost_usd,
            s.shadow_cost_usd,
            signed_usd(s.cost_delta_usd)
        ),
    ));
    for g in &s.by_route {
        rows.push((
            "shadow by rule".into(),
            format!("{} · {} → {}", g.rule, g.primary, g.shadow),
            format!(
                "{} pairs, {} compared, agreement {}, shadow green {}, cost {}",
                g.pairs,
                g.compared,
                pct(g.agreement_rate),
                pct(g.shadow_green_rate),
                signed_usd(g.cost_delta_usd)
            ),
        ));
    }
    for p in &s.last {
        rows.push((
            "shadow pairs".into(),
            format!("{} a{} ({})", p.task_id, p.attempt, p.rule),
            format!(
                "{} · {} {} {} {} files · {} {} {} {} files · {} shared · cost {} · time {:+.1}s",
                if p.shape_match { "match" } else { "differs" },
                p.primary,
                p.primary_outcome,
                green(p.primary_green),
                p.primary_files,
                p.shadow,
                p.shadow_outcome,
                green(p.shadow_green),
                p.shadow_files,
                p.overlap_files,
                signed_usd(p.cost_delta_usd),
                p.duration_delta_seconds
            ),
        ));
    }
    rows
}

/// The HTML chart's bars: agreement per rule and shadow choice, in percent.
pub(super) fn agreement_bars(s: &ShadowReport) -> Vec<(String, f64)> {
    s.by_route
        .iter()
        .filter(|g| g.compared > 0)
        .map(|g| {
            (
                format!("{} → {} ({})", g.rule, g.shadow, g.compared),
                g.agreement_rate.unwrap_or(0.0) * 100.0,
            )
        })
        .collect()
}
