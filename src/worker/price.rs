//! What tokens cost: a model's rate card and the arithmetic.

use serde::{Deserialize, Serialize};

use super::Tokens;
use crate::money::MicroUsd;

/// USD per million tokens for one model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateCard {
    pub input_per_mtok: f64,
    /// Defaults to `input_per_mtok` when absent (no discount assumed: we never under-count).
    #[serde(default)]
    pub cached_input_per_mtok: Option<f64>,
    pub output_per_mtok: f64,
    /// Defaults to `output_per_mtok` when absent.
    #[serde(default)]
    pub reasoning_per_mtok: Option<f64>,
}

/// Prices tokens with a rate card (USD per million tokens), rounding up to the micro-dollar.
pub fn price(tokens: &Tokens, card: &RateCard) -> MicroUsd {
    let cached_rate = card.cached_input_per_mtok.unwrap_or(card.input_per_mtok);
    let reasoning_rate = card.reasoning_per_mtok.unwrap_or(card.output_per_mtok);
    let write_rate = card.input_per_mtok * 1.25;
    let plain_input = tokens
        .input
        .saturating_sub(tokens.cached_input)
        .saturating_sub(tokens.cache_write_input);
    let plain_output = tokens.output.saturating_sub(tokens.reasoning);
    let usd_per_mtok = plain_input as f64 * card.input_per_mtok
        + tokens.cached_input as f64 * cached_rate
        + tokens.cache_write_input as f64 * write_rate
        + plain_output as f64 * card.output_per_mtok
        + tokens.reasoning as f64 * reasoning_rate;
    // usd = tokens * rate / 1e6; micro-usd = usd * 1e6 = tokens * rate.
    usd_per_mtok.ceil() as MicroUsd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_like_the_cli_does() {
        // The capture's usage on claude-sonnet-4-5 cost 0.00957 USD (Claude's own figure).
        let card = RateCard {
            input_per_mtok: 3.0,
            cached_input_per_mtok: Some(0.3),
            output_per_mtok: 15.0,
            reasoning_per_mtok: None,
        };
        let tokens = Tokens {
            input: 2400 + 200 + 400,
            cached_input: 400,
            cache_write_input: 200,
            output: 100,
            reasoning: 0,
        };
        assert_eq!(price(&tokens, &card), 9_570);
    }
}
