//! What tokens cost: a model's rate card and the arithmetic.

use serde::{Deserialize, Serialize};

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
