//! The inference gateway: direct, non-streaming chat completions against OpenAI-compatible
//! providers (a LiteLLM proxy, OpenRouter, xAI, OpenAI) for the roles that need a model's
//! answer but no agent (triage, screen, summary). Every call is a ledger row that reserves
//! money under the day's and month's caps and its role's daily cap before it is sent, and
//! settles at what the provider says it cost (or a rate card) after. A provider that cannot
//! be reached is switched off for `gateway.down_for`, recorded as `gateway_unavailable`, and
//! the features that call it skip their work instead of waiting: no tick ever blocks on it.

mod client;
mod cost;
mod embed;
mod health;
mod rates;

use std::time::Duration;

pub use client::{Answer, Message, ProviderClient, Usage};
pub use cost::{CostSource, resolve_cost};
pub use embed::{EmbedRequest, Embeddings};
pub use health::{OFFLINE_ENV, Probe, probe_all};
pub use rates::{builtin_models, card_for};

use crate::budget::{self, Caps, Refusal};
use crate::clock::{day_of, month_of, now_ms};
use crate::config::{Config, GatewayProviderKind};
use crate::ledger::events::{BudgetRefused, GatewayRestored, GatewayUnavailable};
use crate::ledger::{Event, GatewayCallEnd, Ledger, LedgerError, NewEvent, NewGatewayCall};
use crate::money::{MicroUsd, format_usd, usd_to_micro};

/// Who a gateway call is for; each has its own daily cap and may have its own LiteLLM key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum GatewayRole {
    /// Summarising why a run or task failed.
    Triage,
    /// Classifying a task's brief for prompt injection.
    Screen,
    /// Summaries for reports.
    Summary,
    /// `oxi gateway test`.
    Test,
    /// Auto-improve's embeddings and judge, under `improve.daily_usd`.
    Improve,
}

impl GatewayRole {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayRole::Triage => "triage",
            GatewayRole::Screen => "screen",
            GatewayRole::Summary => "summary",
            GatewayRole::Test => "test",
            GatewayRole::Improve => "improve",
        }
    }

    /// The role's daily cap and the key that sets it.
    fn daily_cap(self, config: &Config) -> (MicroUsd, &'static str) {
        let caps = &config.gateway.caps;
        let (usd, key) = match self {
            GatewayRole::Triage => (caps.triage_daily_usd, "gateway.caps.triage_daily_usd"),
            GatewayRole::Screen => (caps.screen_daily_usd, "gateway.caps.screen_daily_usd"),
            GatewayRole::Summary => (caps.summary_daily_usd, "gateway.caps.summary_daily_usd"),
            GatewayRole::Test => (caps.test_daily_usd, "gateway.caps.test_daily_usd"),
            GatewayRole::Improve => (
                config
                    .improve
                    .as_ref()
                    .map_or(crate::config::IMPROVE_DAILY_USD, |i| i.daily_usd),
                "improve.daily_usd",
            ),
        };
        (usd_to_micro(usd), key)
    }
}

impl std::fmt::Display for GatewayRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a gateway call did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The route names a provider `[gateway.providers]` lacks. Not retryable.
    #[error("no gateway provider {name:?} in [gateway.providers] (configured: {known})")]
    UnknownProvider { name: String, known: String },
    /// The key variable is unset or empty. Not retryable until the environment is fixed.
    #[error(
        "gateway provider {provider}: the variable {var} (its {key}) is not set; export it, or fix {key} in oxi.toml"
    )]
    MissingKey {
        provider: String,
        var: String,
        key: String,
    },
    /// The provider was found down recently; its features are off until the time named.
    #[error(
        "gateway provider {provider} is off until {until} after it failed: {reason}; `oxi gateway test {provider}` tries it now"
    )]
    Unavailable {
        provider: String,
        until: String,
        reason: String,
    },
    /// The day's or month's cap has no room for the call's reservation.
    #[error("gateway call refused: {}", refusal_text(.0))]
    Budget(#[source] Refusal),
    /// The role's own daily cap has no room.
    #[error(
        "gateway call refused: the {role} role's daily cap {cap} ({key}) would be crossed: spent or held today {spent}, this call holds {amount}; wait for the next UTC day or raise {key}"
    )]
    RoleCap {
        role: GatewayRole,
        key: &'static str,
        cap: String,
        spent: String,
        amount: String,
    },
    /// No answer within the timeout (on every attempt).
    #[error("gateway provider {provider}: no answer within {after:?}")]
    Timeout { provider: String, after: Duration },
    /// The connection failed (refused, reset, DNS).
    #[error("gateway provider {provider} cannot be reached: {detail}")]
    Unreachable { provider: String, detail: String },
    /// An HTTP error answer (after the retries, for 429 and 5xx).
    #[error("gateway provider {provider} answered HTTP {status}: {body}")]
    Status {
        provider: String,
        status: u16,
        body: String,
    },
    /// A `retry-after` longer than `max_retry_wait`.
    #[error(
        "gateway provider {provider} asked to retry after {wait:?}, longer than its max_retry_wait {max:?}"
    )]
    RetryAfterTooLong {
        provider: String,
        wait: Duration,
        max: Duration,
    },
    /// A 2xx answer that is not a chat completion.
    #[error(
        "gateway provider {provider} answered something that is not a chat completion: {detail}"
    )]
    Malformed { provider: String, detail: String },
    /// The HTTP client could not be built (TLS roots).
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl GatewayError {
    /// The provider is out of reach or overloaded (as opposed to refusing this request): the
    /// features that use it are switched off for a while.
    fn means_down(&self) -> bool {
        match self {
            GatewayError::Timeout { .. }
            | GatewayError::Unreachable { .. }
            | GatewayError::RetryAfterTooLong { .. } => true,
            GatewayError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    fn outcome(&self) -> &'static str {
        match self {
            GatewayError::Budget(_) | GatewayError::RoleCap { .. } => "refused",
            GatewayError::Unavailable { .. } => "unavailable",
            _ => "error",
        }
    }
}

/// One call to make.
#[derive(Debug, Clone)]
pub struct CallRequest<'a> {
    pub role: GatewayRole,
    pub provider: &'a str,
    pub model: &'a str,
    pub messages: &'a [Message],
    pub max_tokens: Option<u32>,
    pub task_id: Option<&'a str>,
}

/// What [`Gateway::complete_first`] asks of each gateway choice in a chain.
#[derive(Debug, Clone, Copy)]
pub struct ChainRequest<'a> {
    pub role: GatewayRole,
    pub messages: &'a [Message],
    pub max_tokens: Option<u32>,
    pub task_id: Option<&'a str>,
}

/// A call's answer and its accounting.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The ledger row (`gateway_calls.id`).
    pub call_id: i64,
    pub answer: Answer,
    pub cost_microusd: MicroUsd,
    pub cost_source: CostSource,
}

/// The gateway for one configuration and environment.
#[derive(Debug, Clone)]
pub struct Gateway<'a> {
    config: &'a Config,
    env: &'a [(String, String)],
    http: reqwest::Client,
    actor: &'a str,
}

impl<'a> Gateway<'a> {
    /// `env` is where key variables are read (the process environment, as a list).
    pub fn new(
        config: &'a Config,
        env: &'a [(String, String)],
        actor: &'a str,
    ) -> Result<Self, GatewayError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("oxi/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GatewayError::Client(e.to_string()))?;
        Ok(Self {
            config,
            env,
            http,
            actor,
        })
    }

    /// The client for `provider`, with the key `role` uses.
    pub fn provider(
        &self,
        provider: &str,
        role: GatewayRole,
    ) -> Result<ProviderClient, GatewayError> {
        let providers = &self.config.gateway.providers;
        let config = providers
            .get(provider)
            .ok_or_else(|| GatewayError::UnknownProvider {
                name: provider.to_owned(),
                known: if providers.is_empty() {
                    "none".to_owned()
                } else {
                    providers.keys().cloned().collect::<Vec<_>>().join(", ")
                },
            })?;
        let (var, key) = match config.role_key_env.get(role.as_str()) {
            Some(var) => (
                Some(var),
                format!(
                    "gateway.providers.{provider}.role_key_env.{}",
                    role.as_str()
                ),
            ),
            None => (
                config.key_env.as_ref(),
                format!("gateway.providers.{provider}.key_env"),
            ),
        };
        let secret = match var {
            None => None,
            Some(var) => Some(
                self.env
                    .iter()
                    .find(|(k, v)| k == var && !v.trim().is_empty())
                    .map(|(_, v)| v.trim().to_owned())
                    .ok_or_else(|| GatewayError::MissingKey {
                        provider: provider.to_owned(),
                        var: var.clone(),
                        key,
                    })?,
            ),
        };
        Ok(ProviderClient::new(
            self.http.clone(),
            provider,
            config,
            secret,
        ))
    }

    /// Walks a routed chain: the first gateway choice that answers gives the answer (other
    /// choice kinds are skipped). A cap refuses every provider alike, so it ends the walk; any
    /// other failure tries the next choice, and the last one is returned. `None` when the
    /// chain holds no gateway choice.
    pub async fn complete_first<'c>(
        &self,
        ledger: &mut Ledger,
        chain: &'c [crate::routing::RouteChoice],
        request: ChainRequest<'_>,
    ) -> Option<Result<(&'c crate::routing::RouteChoice, Completion), GatewayError>> {
        let mut last = None;
        for choice in chain {
            let crate::routing::RouteChoice::Gateway { provider, model } = choice else {
                continue;
            };
            let call = CallRequest {
                role: request.role,
                provider,
                model,
                messages: request.messages,
                max_tokens: request.max_tokens,
                task_id: request.task_id,
            };
            match self.complete(ledger, &call).await {
                Ok(done) => return Some(Ok((choice, done))),
                Err(e @ (GatewayError::Budget(_) | GatewayError::RoleCap { .. })) => {
                    return Some(Err(e));
                }
                Err(e) => last = Some(e),
            }
        }
        last.map(Err)
    }

    /// Makes one call under the caps and records it. A refused, unavailable or failed call
    /// is recorded too (with no money held once it ended).
    pub async fn complete(
        &self,
        ledger: &mut Ledger,
        request: &CallRequest<'_>,
    ) -> Result<Completion, GatewayError> {
        let now = now_ms();
        let (day, month) = (day_of(now), month_of(now));
        let reserve = usd_to_micro(self.config.gateway.caps.call_reserve_usd);
        let call = NewGatewayCall {
            role: request.role.as_str(),
            provider: request.provider,
            model: request.model,
            task_id: request.task_id,
            day: &day,
            month: &month,
            reserve_microusd: reserve,
            at_ms: now,
        };
        let prepared = self
            .provider(request.provider, request.role)
            .and_then(|client| {
                self.check_down(ledger, request, now)?;
                Ok(client)
            });
        let client = match prepared {
            Ok(client) => client,
            Err(error) => {
                let text = error.to_string();
                ledger.write(|q| q.record_unsent_gateway_call(&call, error.outcome(), &text))?;
                return Err(error);
            }
        };
        let call_id = self.reserve(ledger, &call, request.role)?;
        match client
            .chat(request.model, request.messages, request.max_tokens)
            .await
        {
            Ok(answer) => self.settle(ledger, call_id, request, answer, reserve),
            Err(failed) => Err(self.end_failed(ledger, call_id, request, failed)?),
        }
    }

    /// A provider found down recently is not called (its features stay off) until
    /// `gateway.down_for` passes; `oxi gateway test` always tries it.
    fn check_down(
        &self,
        ledger: &Ledger,
        request: &CallRequest<'_>,
        now: i64,
    ) -> Result<(), GatewayError> {
        if request.role == GatewayRole::Test {
            return Ok(());
        }
        match ledger.read().gateway_down_until(request.provider)? {
            Some(until) if until > now => Err(GatewayError::Unavailable {
                provider: request.provider.to_owned(),
                until: crate::clock::rfc3339(until),
                reason: last_down_reason(ledger, request.provider),
            }),
            _ => Ok(()),
        }
    }

    /// Checks the caps and holds `call`'s reservation in one transaction.
    fn reserve(
        &self,
        ledger: &mut Ledger,
        call: &NewGatewayCall<'_>,
        role: GatewayRole,
    ) -> Result<i64, GatewayError> {
        let caps = Caps::from_config(&self.config.caps);
        let (role_cap, role_key) = role.daily_cap(self.config);
        let actor = self.actor;
        ledger.write(|q| {
            let totals = q.admission_totals(call.day, call.month)?;
            let refusal = match budget::admit(&totals, call.reserve_microusd, &caps) {
                Err(refusal) => {
                    q.append_event(&NewEvent {
                        at_ms: call.at_ms,
                        task_id: call.task_id,
                        run_id: None,
                        actor,
                        event: Event::BudgetRefused(BudgetRefused {
                            worker: format!("gateway:{}", call.provider),
                            refusal: serde_json::to_value(refusal).unwrap_or_default(),
                        }),
                    })?;
                    Some(GatewayError::Budget(refusal))
                }
                Ok(()) => {
                    let spent = q.gateway_role_spend(call.role, call.day)?;
                    (spent.saturating_add(call.reserve_microusd) > role_cap).then(|| {
                        GatewayError::RoleCap {
                            role,
                            key: role_key,
                            cap: format_usd(role_cap),
                            spent: format_usd(spent),
                            amount: format_usd(call.reserve_microusd),
                        }
                    })
                }
            };
            match refusal {
                Some(error) => {
                    let text = error.to_string();
                    q.record_unsent_gateway_call(call, error.outcome(), &text)?;
                    Ok(Err(error))
                }
                None => Ok(Ok(q.begin_gateway_call(call)?)),
            }
        })?
    }

    fn settle(
        &self,
        ledger: &mut Ledger,
        call_id: i64,
        request: &CallRequest<'_>,
        answer: Answer,
        reserve: MicroUsd,
    ) -> Result<Completion, GatewayError> {
        let card = card_for(request.model, &self.config.rates);
        let (cost, source) = resolve_cost(&answer, card.as_ref(), reserve);
        let latency_ms = i64::try_from(answer.latency.as_millis()).unwrap_or(i64::MAX);
        let end = GatewayCallEnd {
            outcome: "ok",
            cost_microusd: cost,
            cost_source: source.as_str(),
            tokens_in: answer.usage.prompt,
            tokens_out: answer.usage.completion,
            attempts: answer.attempts,
            latency_ms: Some(latency_ms),
            error: None,
            at_ms: now_ms(),
        };
        let provider = request.provider;
        let actor = self.actor;
        ledger.write(|q| {
            q.end_gateway_call(call_id, &end)?;
            if q.gateway_down_until(provider)?.is_some() {
                q.clear_gateway_down(provider)?;
                q.append_event(&NewEvent {
                    at_ms: end.at_ms,
                    task_id: request.task_id,
                    run_id: None,
                    actor,
                    event: Event::GatewayRestored(GatewayRestored {
                        provider: provider.to_owned(),
                    }),
                })?;
            }
            Ok(())
        })?;
        Ok(Completion {
            call_id,
            answer,
            cost_microusd: cost,
            cost_source: source,
        })
    }

    /// Ends a call whose request failed: its row closed with nothing charged, and the
    /// provider switched off when the failure says it is down. Returns the call's error, or
    /// the ledger's when recording failed.
    pub(super) fn end_failed(
        &self,
        ledger: &mut Ledger,
        call_id: i64,
        request: &CallRequest<'_>,
        failed: client::Failed,
    ) -> Result<GatewayError, GatewayError> {
        let text = failed.error.to_string();
        let end = GatewayCallEnd {
            outcome: failed.error.outcome(),
            cost_microusd: 0,
            cost_source: CostSource::None.as_str(),
            tokens_in: 0,
            tokens_out: 0,
            attempts: failed.attempts,
            latency_ms: None,
            error: Some(&text),
            at_ms: now_ms(),
        };
        ledger.write(|q| q.end_gateway_call(call_id, &end))?;
        if failed.error.means_down() {
            self.mark_down(ledger, request, &text)?;
        }
        Ok(failed.error)
    }

    /// Switches `provider` off for `gateway.down_for` and records what that disables.
    fn mark_down(
        &self,
        ledger: &mut Ledger,
        request: &CallRequest<'_>,
        reason: &str,
    ) -> Result<(), GatewayError> {
        let now = now_ms();
        let until = now.saturating_add(
            i64::try_from(self.config.gateway.down_for.0.as_millis()).unwrap_or(i64::MAX),
        );
        let provider = request.provider;
        let mut disabled: Vec<String> = self
            .config
            .gateway
            .providers
            .get(provider)
            .map(|p| p.role_key_env.keys().cloned().collect())
            .unwrap_or_default();
        if request.role != GatewayRole::Test && !disabled.iter().any(|r| r == request.role.as_str())
        {
            disabled.push(request.role.as_str().to_owned());
        }
        disabled.retain(|r| r != GatewayRole::Test.as_str());
        disabled.sort();
        let actor = self.actor;
        ledger.write(|q| {
            q.set_gateway_down(provider, until, now)?;
            q.append_event(&NewEvent {
                at_ms: now,
                task_id: request.task_id,
                run_id: None,
                actor,
                event: Event::GatewayUnavailable(GatewayUnavailable {
                    provider: provider.to_owned(),
                    role: request.role.as_str().to_owned(),
                    disabled: disabled.clone(),
                    reason: reason.to_owned(),
                    until_ms: until,
                }),
            })?;
            Ok(())
        })?;
        tracing::warn!(
            provider,
            until = %crate::clock::rfc3339(until),
            "gateway provider is off after it failed: {reason}"
        );
        Ok(())
    }
}

/// A cap refusal in a gateway call's terms: what one call holds (`gateway.caps.call_reserve_usd`),
/// not what a worker run may cost.
fn refusal_text(refusal: &Refusal) -> String {
    let (period, cap, limit) = (
        refusal.period,
        format_usd(refusal.cap_microusd),
        refusal.limit,
    );
    let (spent, held) = (
        format_usd(refusal.spent_microusd),
        format_usd(refusal.held_microusd),
    );
    let amount = format_usd(refusal.amount_microusd);
    if refusal.waits_for_runs_in_flight() {
        return format!(
            "{period} spend cap {cap} ({limit}) has no room now: spent {spent}, held for runs and calls in flight {held}, this gateway call holds {amount} (gateway.caps.call_reserve_usd); it fits once those settle at what they spent"
        );
    }
    let next = if period == "daily" {
        "UTC day"
    } else {
        "UTC month"
    };
    format!(
        "{period} spend cap {cap} ({limit}) would be crossed: spent {spent}, held for runs and calls in flight {held}, this gateway call holds {amount} (gateway.caps.call_reserve_usd); wait for the next {next}, or raise {limit}"
    )
}

/// The reason recorded when `provider` was last switched off.
fn last_down_reason(ledger: &Ledger, provider: &str) -> String {
    ledger
        .read()
        .gateway_calls(20)
        .ok()
        .and_then(|rows| {
            rows.into_iter()
                .find(|r| r.provider == provider && r.outcome.as_deref() == Some("error"))
                .and_then(|r| r.error)
        })
        .unwrap_or_else(|| "it failed to answer".to_owned())
}

/// Whether a provider kind reports its own cost (so a missing figure is worth a warning).
pub fn reports_cost(kind: GatewayProviderKind) -> bool {
    matches!(
        kind,
        GatewayProviderKind::Litellm | GatewayProviderKind::Openrouter
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_refusal_speaks_of_the_call_not_of_a_run() {
        let refusal = Refusal {
            period: "daily",
            limit: budget::Limit::DailyUsd,
            cap_microusd: 1_000_000,
            spent_microusd: 990_000,
            held_microusd: 0,
            amount_microusd: 50_000,
        };
        let text = GatewayError::Budget(refusal).to_string();
        assert!(
            text.starts_with("gateway call refused: daily spend cap")
                && text.contains("this gateway call holds")
                && text.contains("(gateway.caps.call_reserve_usd)")
                && text.contains("raise caps.daily_usd"),
            "{text}"
        );
        assert!(!text.contains("this run may cost"), "{text}");
        let waiting = GatewayError::Budget(Refusal {
            held_microusd: 20_000,
            spent_microusd: 900_000,
            ..refusal
        })
        .to_string();
        assert!(waiting.contains("it fits once those settle"), "{waiting}");
    }
}
