//! `[rates]`: prices are non-negative numbers.

use super::{Problem, problem};
use crate::config::Config;

/// The `[rates]` rules.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
    for (model, card) in &config.rates {
        let fields = [
            ("input_per_mtok", Some(card.input_per_mtok)),
            ("cached_input_per_mtok", card.cached_input_per_mtok),
            ("output_per_mtok", Some(card.output_per_mtok)),
            ("reasoning_per_mtok", card.reasoning_per_mtok),
        ];
        for (key, value) in fields {
            if let Some(v) = value
                && (!v.is_finite() || v < 0.0)
            {
                problems.push(problem(
                    &["rates", model, key],
                    format!("must be a non-negative price, not {v}"),
                ));
            }
        }
    }
}
