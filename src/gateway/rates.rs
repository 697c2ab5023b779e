//! Built-in rate cards for the models the gateway is meant to route to, used only when the
//! provider reports no cost (LiteLLM's header and OpenRouter's `usage.cost` come first).
//! Prices are USD per million tokens as the vendors published them in 2026; they change,
//! so check them (docs/gateway.md) and override any with `[rates."<model>"]` in oxi.toml.

use std::collections::BTreeMap;

use crate::worker::RateCard;

const fn card(input: f64, cached: Option<f64>, output: f64) -> RateCard {
    RateCard {
        input_per_mtok: input,
        cached_input_per_mtok: cached,
        output_per_mtok: output,
        reasoning_per_mtok: None,
    }
}

/// `(model ids, card)`: xAI's Grok models (ids as xAI spells them, with their aliases) and
/// the OpenRouter models (ids as OpenRouter spells them).
const CARDS: &[(&[&str], RateCard)] = &[
    (
        &["grok-2", "grok-2-1212", "grok-2-latest"],
        card(2.0, None, 10.0),
    ),
    (
        &[
            "grok-4-fast",
            "grok-4-fast-reasoning",
            "grok-4-fast-non-reasoning",
        ],
        card(0.20, Some(0.05), 0.50),
    ),
    (
        &["grok-code-fast-1", "grok-code-fast"],
        card(0.20, Some(0.02), 1.50),
    ),
    // OpenRouter's free preview anchor: no charge while it is `:free`.
    (&["qwen/qwen3.6-plus:free"], card(0.0, None, 0.0)),
    (
        &["meta-llama/llama-3.3-70b-instruct"],
        card(0.10, None, 0.32),
    ),
    (
        &["deepseek/deepseek-chat-v3-0324", "deepseek/deepseek-chat"],
        card(0.27, None, 1.10),
    ),
    (&["mistralai/mistral-large"], card(2.0, None, 6.0)),
    // OpenAI's embedding models (auto-improve's vector rerank): input tokens only.
    (&["text-embedding-3-small"], card(0.02, None, 0.0)),
    (&["text-embedding-3-large"], card(0.13, None, 0.0)),
];

/// Prefixes LiteLLM and OpenRouter put before a vendor's own model id.
const ROUTER_PREFIXES: &[&str] = &["openrouter/", "xai/", "x-ai/"];

/// The card for `model`: `[rates]` first (the user's cards and oxi's defaults), then the
/// built-in gateway cards; a router prefix (`openrouter/…`, `xai/…`) is tried without it.
pub fn card_for(model: &str, rates: &BTreeMap<String, RateCard>) -> Option<RateCard> {
    let lookup = |id: &str| {
        rates.get(id).copied().or_else(|| {
            CARDS
                .iter()
                .find(|(ids, _)| ids.contains(&id))
                .map(|(_, card)| *card)
        })
    };
    lookup(model).or_else(|| {
        ROUTER_PREFIXES
            .iter()
            .find_map(|prefix| model.strip_prefix(prefix))
            .and_then(lookup)
    })
}

/// Every built-in gateway model id, for docs and tests.
pub fn builtin_models() -> impl Iterator<Item = &'static str> {
    CARDS.iter().flat_map(|(ids, _)| ids.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_cards_win_and_router_prefixes_are_seen_through() {
        let mut rates = BTreeMap::new();
        assert_eq!(
            card_for("xai/grok-4-fast", &rates).map(|c| c.output_per_mtok),
            Some(0.5)
        );
        assert_eq!(
            card_for("openrouter/meta-llama/llama-3.3-70b-instruct", &rates)
                .map(|c| c.input_per_mtok),
            Some(0.10)
        );
        rates.insert("grok-4-fast".to_owned(), card(1.0, None, 1.0));
        assert_eq!(
            card_for("grok-4-fast", &rates).map(|c| c.output_per_mtok),
            Some(1.0)
        );
        assert_eq!(card_for("no-such-model", &rates), None);
        assert!(builtin_models().count() >= 7);
    }
}
