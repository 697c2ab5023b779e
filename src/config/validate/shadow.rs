//! `[shadow]`: the shadow worker exists and its model is priced, the sample is a share, the
//! daily cap is an amount within the day's cap, and the rules named are routing rules.

use super::{Problem, problem};
use crate::config::Config;
use crate::routing::DEFAULT_ROUTE;

/// The `[shadow]` rules.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
    let shadow = &config.shadow;
    if !shadow.sample.is_finite() || !(0.0..=1.0).contains(&shadow.sample) {
        problems.push(problem(
            &["shadow", "sample"],
            format!(
                "must be a share between 0 and 1 (0.2 shadows one executor run in five), not {}",
                shadow.sample
            ),
        ));
    }
    if !shadow.daily_usd.is_finite() || shadow.daily_usd < 0.0 {
        problems.push(problem(
            &["shadow", "daily_usd"],
            format!(
                "must be a non-negative amount in USD, not {}",
                shadow.daily_usd
            ),
        ));
    } else if shadow.enabled_worker().is_some() && shadow.daily_usd > config.caps.daily_usd {
        // (Only when shadows are on: the default must not trouble a config with a small day.)
        problems.push(problem(
            &["shadow", "daily_usd"],
            format!(
                "{} USD is above caps.daily_usd ({} USD); shadow runs spend within the day's cap, so lower it",
                shadow.daily_usd, config.caps.daily_usd
            ),
        ));
    }
    check_worker(config, problems);
    let known: Vec<&str> = config
        .routing
        .rules
        .iter()
        .map(|r| r.name.as_str())
        .chain([DEFAULT_ROUTE])
        .collect();
    for (key, names) in [("rules", &shadow.rules), ("skip_rules", &shadow.skip_rules)] {
        for name in names {
            if !known.contains(&name.as_str()) {
                problems.push(problem(
                    &["shadow", key],
                    format!(
                        "names no routing rule {name:?}; known: {} (`default` is the default chain)",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    if shadow.sample > 0.0 && shadow.worker.is_none() {
        problems.push(problem(
            &["shadow", "sample"],
            "is set but shadow.worker is not; name the worker shadow runs use (worker = \"codex\")",
        ));
    }
}

/// The worker is configured, and its model (the one given, else the worker's) has a rate card,
/// so the shadow's cost, and its cap, are known.
fn check_worker(config: &Config, problems: &mut Vec<Problem>) {
    let shadow = &config.shadow;
    let Some(name) = &shadow.worker else {
        if shadow.model.is_some() {
            problems.push(problem(
                &["shadow", "model"],
                "is set but shadow.worker is not; name the worker that runs this model",
            ));
        }
        return;
    };
    let Some(worker) = config.workers.get(name) else {
        problems.push(problem(
            &["shadow", "worker"],
            format!(
                "names no worker {name:?}; known: {}",
                config
                    .workers
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
        return;
    };
    let model = shadow.model.as_ref().or(worker.model.as_ref());
    if let Some(model) = model
        && !config.rates.contains_key(model)
    {
        let key = if shadow.model.is_some() {
            "model"
        } else {
            "worker"
        };
        problems.push(problem(
            &["shadow", key],
            format!(
                "model {model:?} has no rate card, so the shadow's cost could not be capped; add [rates.\"{model}\"] or pick a priced model"
            ),
        ));
    }
}
