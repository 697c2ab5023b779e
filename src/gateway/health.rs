//! `oxi doctor`'s look at each provider: reachable, the key accepted, the models listed.
//! Skipped when `OXI_INFERENCE_OFFLINE=1` (CI and machines with no network).

use super::{Gateway, GatewayError, GatewayRole};
use crate::config::Config;

/// Set to `1` to skip every provider probe.
pub const OFFLINE_ENV: &str = "OXI_INFERENCE_OFFLINE";

/// One provider's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Ok {
        detail: String,
    },
    /// Not checked (offline).
    Skipped {
        detail: String,
    },
    Failed {
        detail: String,
        fix: String,
    },
}

/// Probes every configured provider, in name order, as `(provider, verdict)`.
pub async fn probe_all(config: &Config, env: &[(String, String)]) -> Vec<(String, Probe)> {
    let providers = &config.gateway.providers;
    let offline = env.iter().any(|(k, v)| k == OFFLINE_ENV && v.trim() == "1");
    let mut out = Vec::new();
    if offline {
        for name in providers.keys() {
            out.push((
                name.clone(),
                Probe::Skipped {
                    detail: format!("not checked: {OFFLINE_ENV}=1"),
                },
            ));
        }
        return out;
    }
    let gateway = match Gateway::new(config, env, "oxi") {
        Ok(gateway) => gateway,
        Err(e) => {
            for name in providers.keys() {
                out.push((name.clone(), failed(name, &e)));
            }
            return out;
        }
    };
    for name in providers.keys() {
        let probe = match gateway.provider(name, GatewayRole::Test) {
            Err(e) => failed(name, &e),
            Ok(client) => match client.probe().await {
                Ok(summary) => Probe::Ok {
                    detail: format!(
                        "{} at {}: {summary}",
                        client.kind().as_str(),
                        client.chat_url()
                    ),
                },
                Err(e) => failed(name, &e),
            },
        };
        out.push((name.clone(), probe));
    }
    out
}

fn failed(name: &str, error: &GatewayError) -> Probe {
    let fix = match error {
        GatewayError::MissingKey { var, .. } => format!("export {var}=<the key> where oxi runs"),
        GatewayError::Status {
            status: 401 | 403, ..
        } => format!(
            "the key was refused: check or rotate it (docs/gateway.md), or fix gateway.providers.{name}.key_env"
        ),
        GatewayError::Unreachable { .. } | GatewayError::Timeout { .. } => format!(
            "start the provider or fix gateway.providers.{name}.base_url; until it answers, the features routed to it are off (set {OFFLINE_ENV}=1 to skip this check)"
        ),
        _ => format!(
            "see docs/gateway.md; `oxi gateway test {name} --model M` shows the whole answer"
        ),
    };
    Probe::Failed {
        detail: error.to_string(),
        fix,
    }
}
