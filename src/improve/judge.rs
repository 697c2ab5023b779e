//! The judge: one gateway chat call per candidate that survived ranking, dedup and the
//! fabrication filter (`improve.judge`, role `improve`, under `improve.daily_usd`), asking for
//! a strict JSON verdict. An answer that is not exactly that verdict, with every number in
//! range, is a recorded failure: oxi never guesses a verdict.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::config::ImproveConfig;
use crate::gateway::{CallRequest, Gateway, GatewayError, GatewayRole, Message};
use crate::ledger::{CandidateRow, Ledger, LedgerError};
use crate::routing::{ChoiceKind, RouteChoice};

/// The longest rationale kept; a longer one is cut (it is a note, not a verdict).
const MAX_RATIONALE: usize = 600;
/// The candidate's summary as the judge sees it.
const MAX_SUMMARY: usize = 1_500;
const MAX_TOKENS: u32 = 400;

const INSTRUCTIONS: &str = "You judge whether an item found outside a software repository \
(a release, a repository, an article, a post) should become a roadmap item of that repository. \
You are given the project's open roadmap items and module names, then the item. Answer with \
one JSON object and nothing else, with exactly these keys:\n\
{\"relevance\": 1-5, \"concreteness\": 1-5, \"tier\": 0-2, \"duplicate\": true|false, \
\"fabricated_module\": true|false, \"rationale\": \"one or two sentences\"}\n\
relevance: how much the item matters to this project (5: directly). concreteness: how clearly \
it turns into work on this project (5: a precise change). tier: 0 urgent, 1 soon, 2 later. \
duplicate: the roadmap already covers it. fabricated_module: the item assumes files, modules or \
commands this project does not have. The rationale names only files, modules and commands \
from the lists given.";

/// The verdict the judge must answer, and nothing more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    pub relevance: u8,
    pub concreteness: u8,
    pub tier: u8,
    pub duplicate: bool,
    pub fabricated_module: bool,
    pub rationale: String,
}

impl Verdict {
    /// Whether the verdict stages the candidate under `improve`'s thresholds.
    #[must_use]
    pub fn accepts(&self, improve: &ImproveConfig) -> bool {
        self.relevance >= improve.min_relevance
            && self.concreteness >= improve.min_concreteness
            && !self.duplicate
            && !self.fabricated_module
    }

    /// Why a verdict declines, in the digest's words.
    #[must_use]
    pub fn why_declined(&self, improve: &ImproveConfig) -> String {
        let mut why = Vec::new();
        if self.relevance < improve.min_relevance {
            why.push(format!(
                "relevance {} < {}",
                self.relevance, improve.min_relevance
            ));
        }
        if self.concreteness < improve.min_concreteness {
            why.push(format!(
                "concreteness {} < {}",
                self.concreteness, improve.min_concreteness
            ));
        }
        if self.duplicate {
            why.push("a duplicate of the roadmap".to_owned());
        }
        if self.fabricated_module {
            why.push("assumes modules the project lacks".to_owned());
        }
        why.join(", ")
    }
}

/// Why the judge gave no verdict.
#[derive(Debug, thiserror::Error)]
pub(super) enum JudgeError {
    /// A cap refused the call: judging stops for the day.
    #[error("{0}")]
    Capped(GatewayError),
    /// The call failed (provider down, HTTP error, a hang): this candidate goes unjudged.
    #[error("{0}")]
    Call(GatewayError),
    /// An answer that is not the verdict.
    #[error("the answer is not the verdict ({detail}): {answer:?}")]
    Unparseable {
        detail: String,
        answer: String,
        call_id: i64,
    },
    /// The ledger failed: that ends the scan.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl JudgeError {
    /// The `gateway_calls` row of a call that answered.
    pub(super) fn call_id(&self) -> Option<i64> {
        match self {
            JudgeError::Unparseable { call_id, .. } => Some(*call_id),
            _ => None,
        }
    }
}

/// The judge of one scan: its model and what it is told about the project.
pub(super) struct Judge<'a> {
    gateway: Gateway<'a>,
    pub(super) choice: String,
    provider: String,
    model: String,
    project: String,
}

impl<'a> Judge<'a> {
    /// `None` when `choice` is not `provider:model` (config validation refuses it first).
    pub(super) fn new(
        gateway: Gateway<'a>,
        choice: &str,
        tasks: &[(String, String)],
        modules: &[String],
    ) -> Option<Self> {
        let Some(RouteChoice::Gateway { provider, model }) =
            RouteChoice::parse(choice, ChoiceKind::Gateway)
        else {
            return None;
        };
        let mut project = String::from("Open roadmap items:\n");
        for (id, title) in tasks.iter().take(40) {
            let _ = writeln!(project, "- {id}: {title}");
        }
        if tasks.is_empty() {
            project.push_str("(none)\n");
        }
        let modules: Vec<&str> = modules.iter().map(String::as_str).take(120).collect();
        let _ = writeln!(project, "Modules: {}", modules.join(", "));
        Some(Self {
            gateway,
            choice: format!("{provider}:{model}"),
            provider,
            model,
            project,
        })
    }

    /// One call for `candidate`; its verdict, and the call's ledger row.
    pub(super) async fn judge(
        &self,
        ledger: &mut Ledger,
        candidate: &CandidateRow,
    ) -> Result<(Verdict, i64), JudgeError> {
        let item = format!(
            "<<<ITEM\nTitle: {}\nSource: {} ({})\nURL: {}\n{}\nITEM>>>",
            candidate.title,
            candidate.source_name,
            candidate.source_kind,
            candidate.url,
            crate::worker::event::clip(candidate.summary.trim(), MAX_SUMMARY)
        );
        let messages = [
            Message::system(INSTRUCTIONS),
            Message::user(format!("{}\n{item}", self.project)),
        ];
        let request = CallRequest {
            role: GatewayRole::Improve,
            provider: &self.provider,
            model: &self.model,
            messages: &messages,
            max_tokens: Some(MAX_TOKENS),
            task_id: None,
        };
        let done = match self.gateway.complete(ledger, &request).await {
            Ok(done) => done,
            Err(GatewayError::Ledger(e)) => return Err(JudgeError::Ledger(e)),
            Err(e @ (GatewayError::Budget(_) | GatewayError::RoleCap { .. })) => {
                return Err(JudgeError::Capped(e));
            }
            Err(e) => return Err(JudgeError::Call(e)),
        };
        parse(&done.answer.text)
            .map(|v| (v, done.call_id))
            .map_err(|detail| JudgeError::Unparseable {
                detail,
                answer: crate::worker::event::clip(done.answer.text.trim(), 200),
                call_id: done.call_id,
            })
    }
}

/// The verdict in an answer: one JSON object with exactly the verdict's keys, every number in
/// range and a rationale (a code fence around it is tolerated; prose is not).
pub(super) fn parse(answer: &str) -> Result<Verdict, String> {
    let text = answer.trim();
    let text = text
        .strip_prefix("```json")
        .or_else(|| text.strip_prefix("```"))
        .and_then(|t| t.trim_end().strip_suffix("```"))
        .map_or(text, str::trim);
    let mut verdict: Verdict = serde_json::from_str(text).map_err(|e| e.to_string())?;
    for (key, value, range) in [
        ("relevance", verdict.relevance, 1..=5),
        ("concreteness", verdict.concreteness, 1..=5),
        ("tier", verdict.tier, 0..=2),
    ] {
        if !range.contains(&value) {
            return Err(format!(
                "{key} {value} is outside {}-{}",
                range.start(),
                range.end()
            ));
        }
    }
    if verdict.rationale.trim().is_empty() {
        return Err("an empty rationale".to_owned());
    }
    verdict.rationale = crate::worker::event::clip(
        &verdict
            .rationale
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        MAX_RATIONALE,
    );
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_strict_verdict_in_range_parses() {
        let good = "{\"relevance\": 4, \"concreteness\": 3, \"tier\": 1, \"duplicate\": false, \
                    \"fabricated_module\": false, \"rationale\": \"Adds  resume.\"}";
        let v = parse(good).unwrap();
        assert_eq!((v.relevance, v.concreteness, v.tier), (4, 3, 1));
        assert_eq!(v.rationale, "Adds resume.");
        assert!(parse(&format!("```json\n{good}\n```")).is_ok());
        let improve = ImproveConfig::default();
        assert!(v.accepts(&improve));
        for bad in [
            format!("Sure! {good}"),
            good.replace("\"tier\": 1", "\"tier\": 3"),
            good.replace("\"relevance\": 4", "\"relevance\": 0"),
            good.replace("\"relevance\": 4", "\"relevance\": 4.5"),
            good.replace("\"concreteness\": 3", "\"concreteness\": 6"),
            good.replace("\"duplicate\": false", "\"duplicate\": \"no\""),
            good.replace(", \"duplicate\": false", ""),
            good.replace("\"tier\": 1", "\"tier\": 1, \"score\": 2"),
            good.replace("Adds  resume.", " "),
            String::new(),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
        let low = parse(&good.replace("\"concreteness\": 3", "\"concreteness\": 2")).unwrap();
        assert!(!low.accepts(&improve));
        assert_eq!(low.why_declined(&improve), "concreteness 2 < 3");
    }
}
