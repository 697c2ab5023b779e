//! What a call cost, and where that figure came from: the provider's own figure first (it
//! knows its discounts and markups), a rate card only when there is none.

use serde::Serialize;

use super::Answer;
use crate::money::{MicroUsd, usd_to_micro};
use crate::worker::{RateCard, Tokens, price};

/// Where a call's cost came from, as the ledger spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CostSource {
    /// LiteLLM's `x-litellm-response-cost` header.
    Header,
    /// OpenRouter's `usage.cost` in the body.
    Body,
    /// The model's rate card times the reported tokens.
    Card,
    /// No figure and no card: the call is charged what it held (never under-counted).
    Reserve,
    /// The call ended without an answer.
    None,
}

impl CostSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CostSource::Header => "header",
            CostSource::Body => "body",
            CostSource::Card => "card",
            CostSource::Reserve => "reserve",
            CostSource::None => "none",
        }
    }
}

impl std::fmt::Display for CostSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cost of `answer`: the LiteLLM header, else OpenRouter's `usage.cost`, else the card,
/// else `reserve`.
pub fn resolve_cost(
    answer: &Answer,
    card: Option<&RateCard>,
    reserve: MicroUsd,
) -> (MicroUsd, CostSource) {
    if let Some(usd) = answer.header_cost_usd {
        return (usd_to_micro(usd), CostSource::Header);
    }
    if let Some(usd) = answer.body_cost_usd {
        return (usd_to_micro(usd), CostSource::Body);
    }
    match card {
        Some(card) => {
            let tokens = Tokens {
                input: answer.usage.prompt,
                cached_input: answer.usage.cached,
                cache_write_input: 0,
                output: answer.usage.completion,
                reasoning: answer.usage.reasoning,
            };
            (price(&tokens, card), CostSource::Card)
        }
        None => (reserve, CostSource::Reserve),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::gateway::Usage;

    fn answer(header: Option<f64>, body: Option<f64>) -> Answer {
        Answer {
            text: "ok".into(),
            model: None,
            usage: Usage {
                prompt: 1_000_000,
                cached: 0,
                completion: 100_000,
                reasoning: 0,
            },
            header_cost_usd: header,
            body_cost_usd: body,
            attempts: 1,
            latency: Duration::ZERO,
        }
    }

    #[test]
    fn header_then_body_then_card_then_the_reservation() {
        let card = RateCard {
            input_per_mtok: 0.2,
            cached_input_per_mtok: None,
            output_per_mtok: 0.5,
            reasoning_per_mtok: None,
        };
        assert_eq!(
            resolve_cost(&answer(Some(0.0012), Some(9.0)), Some(&card), 7),
            (1_200, CostSource::Header)
        );
        assert_eq!(
            resolve_cost(&answer(None, Some(0.0042)), Some(&card), 7),
            (4_200, CostSource::Body)
        );
        assert_eq!(
            resolve_cost(&answer(None, None), Some(&card), 7),
            (250_000, CostSource::Card)
        );
        assert_eq!(
            resolve_cost(&answer(None, None), None, 7),
            (7, CostSource::Reserve)
        );
    }
}
