//! Embeddings through the gateway (`OpenAI`'s `POST …/embeddings`, which `LiteLLM` and `OpenAI`
//! serve): one call per batch of texts, recorded, reserved under the caps and the role's daily
//! cap like a chat call, and settled at `LiteLLM`'s cost header or the model's rate card times
//! the input tokens (an embedding has no output tokens). An answer that does not hold exactly
//! one finite vector per input, all of one width (the width asked for, when the caller knows
//! it), is a failed call: a vector of the wrong shape would silently rank nonsense.

use serde::{Deserialize, Serialize};

use super::client::{Failed, LITELLM_COST_HEADER};
use super::{CallRequest, CostSource, Gateway, GatewayError, GatewayRole, card_for};
use crate::clock::{day_of, month_of, now_ms};
use crate::ledger::{GatewayCallEnd, Ledger, NewGatewayCall};
use crate::money::{MicroUsd, usd_to_micro};
use crate::worker::{Tokens, price};

/// One embeddings call to make.
#[derive(Debug, Clone, Copy)]
pub struct EmbedRequest<'a> {
    pub role: GatewayRole,
    pub provider: &'a str,
    pub model: &'a str,
    pub inputs: &'a [String],
    /// The width the vectors must have (known from vectors cached for this model).
    pub dimensions: Option<usize>,
}

/// A call's vectors (in the order of the inputs) and its accounting.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// The ledger row (`gateway_calls.id`).
    pub call_id: i64,
    pub vectors: Vec<Vec<f32>>,
    pub tokens: u64,
    pub cost_microusd: MicroUsd,
    pub cost_source: CostSource,
}

/// A 2xx answer's headers, its vectors, the input tokens, the requests sent and the time.
type Sent = (
    reqwest::header::HeaderMap,
    Vec<Vec<f32>>,
    u64,
    u32,
    std::time::Duration,
);

#[derive(Serialize)]
struct EmbedBody<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
}

#[derive(Deserialize)]
struct EmbedAnswer {
    data: Vec<EmbedItem>,
    #[serde(default)]
    usage: Option<EmbedUsage>,
}

#[derive(Deserialize)]
struct EmbedItem {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct EmbedUsage {
    #[serde(default)]
    prompt_tokens: u64,
}

/// The vectors of `bytes`, one per input in input order, or what is wrong with them.
fn vectors(
    bytes: &[u8],
    inputs: usize,
    dimensions: Option<usize>,
) -> Result<(Vec<Vec<f32>>, u64), String> {
    let answer: EmbedAnswer = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if answer.data.len() != inputs {
        return Err(format!("{} vectors for {inputs} inputs", answer.data.len()));
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; inputs];
    for item in answer.data {
        let slot = slots
            .get_mut(item.index)
            .ok_or_else(|| format!("index {} out of range for {inputs} inputs", item.index))?;
        if slot.replace(item.embedding).is_some() {
            return Err(format!("index {} answered twice", item.index));
        }
    }
    let vectors: Vec<Vec<f32>> = slots.into_iter().flatten().collect();
    let width = dimensions
        .or_else(|| vectors.first().map(Vec::len))
        .unwrap_or(0);
    if width == 0 {
        return Err("empty vectors".to_owned());
    }
    if let Some((i, v)) = vectors.iter().enumerate().find(|(_, v)| v.len() != width) {
        return Err(format!(
            "vector {i} has {} dimensions where {width} were expected",
            v.len()
        ));
    }
    if vectors.iter().flatten().any(|x| !x.is_finite()) {
        return Err("a vector holds a value that is not a finite number".to_owned());
    }
    Ok((vectors, answer.usage.map_or(0, |u| u.prompt_tokens)))
}

impl Gateway<'_> {
    /// Embeds `request.inputs` in one call under the caps and records it. A refused,
    /// unavailable or failed call is recorded too, and a provider out of reach is switched off
    /// like for a chat call.
    ///
    /// # Errors
    ///
    /// The provider is unknown, keyless, switched off or failed; a cap refused the call; the
    /// answer is not one vector per input of one width; or the ledger failed.
    pub async fn embed(
        &self,
        ledger: &mut Ledger,
        request: &EmbedRequest<'_>,
    ) -> Result<Embeddings, GatewayError> {
        let now = now_ms();
        let (day, month) = (day_of(now), month_of(now));
        let reserve = usd_to_micro(self.config.gateway.caps.call_reserve_usd);
        let call = NewGatewayCall {
            role: request.role.as_str(),
            provider: request.provider,
            model: request.model,
            task_id: None,
            day: &day,
            month: &month,
            reserve_microusd: reserve,
            at_ms: now,
        };
        // The down-switch and its event speak of a call; an embeddings call has no messages.
        let as_call = CallRequest {
            role: request.role,
            provider: request.provider,
            model: request.model,
            messages: &[],
            max_tokens: None,
            task_id: None,
        };
        let prepared = self
            .provider(request.provider, request.role)
            .and_then(|client| {
                self.check_down(ledger, &as_call, now)?;
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
        match Self::send(&client, request).await {
            Ok((headers, vectors, tokens, attempts, latency)) => {
                let (cost, source) = self.embed_cost(request.model, &headers, tokens, reserve);
                let end = GatewayCallEnd {
                    outcome: "ok",
                    cost_microusd: cost,
                    cost_source: source.as_str(),
                    tokens_in: tokens,
                    tokens_out: 0,
                    attempts,
                    latency_ms: Some(i64::try_from(latency.as_millis()).unwrap_or(i64::MAX)),
                    error: None,
                    at_ms: now_ms(),
                };
                ledger.write(|q| {
                    q.end_gateway_call(call_id, &end)?;
                    if q.gateway_down_until(request.provider)?.is_some() {
                        q.clear_gateway_down(request.provider)?;
                    }
                    Ok(())
                })?;
                Ok(Embeddings {
                    call_id,
                    vectors,
                    tokens,
                    cost_microusd: cost,
                    cost_source: source,
                })
            }
            Err(failed) => Err(self.end_failed(ledger, call_id, &as_call, failed)?),
        }
    }

    /// Posts the request and reads its vectors (headers, vectors, input tokens, requests
    /// sent, time taken).
    async fn send(
        client: &super::ProviderClient,
        request: &EmbedRequest<'_>,
    ) -> Result<Sent, Failed> {
        let body = serde_json::to_vec(&EmbedBody {
            model: request.model,
            input: request.inputs,
            encoding_format: "float",
        })
        .map_err(|e| GatewayError::Malformed {
            provider: request.provider.to_owned(),
            detail: format!("request body: {e}"),
        });
        let (headers, bytes, attempts, latency) = match body {
            Ok(body) => client.post_retried(&client.embeddings_url(), &body).await?,
            Err(error) => return Err(Failed { error, attempts: 0 }),
        };
        let (vectors, tokens) =
            vectors(&bytes, request.inputs.len(), request.dimensions).map_err(|detail| Failed {
                error: GatewayError::Malformed {
                    provider: request.provider.to_owned(),
                    detail: format!(
                        "not the embeddings asked for: {detail}: {}",
                        client.excerpt(&bytes)
                    ),
                },
                attempts,
            })?;
        Ok((headers, vectors, tokens, attempts, latency))
    }

    /// `LiteLLM`'s cost header, else the model's card times the input tokens, else what the
    /// call held (never under-counted).
    fn embed_cost(
        &self,
        model: &str,
        headers: &reqwest::header::HeaderMap,
        tokens: u64,
        reserve: MicroUsd,
    ) -> (MicroUsd, CostSource) {
        let header = headers
            .get(LITELLM_COST_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|c| c.is_finite() && *c >= 0.0);
        if let Some(usd) = header {
            return (usd_to_micro(usd), CostSource::Header);
        }
        match card_for(model, &self.config.rates) {
            Some(card) => {
                let used = Tokens {
                    input: tokens,
                    cached_input: 0,
                    cache_write_input: 0,
                    output: 0,
                    reasoning: 0,
                };
                (price(&used, &card), CostSource::Card)
            }
            None => (reserve, CostSource::Reserve),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_must_hold_one_vector_per_input_of_one_width() {
        let ok = br#"{"data":[{"index":1,"embedding":[0.0,1.0]},{"index":0,"embedding":[1.0,0.0]}],"usage":{"prompt_tokens":4}}"#;
        let (v, tokens) = vectors(ok, 2, None).unwrap();
        assert_eq!((v[0].clone(), tokens), (vec![1.0, 0.0], 4));
        assert!(
            vectors(ok, 3, None)
                .unwrap_err()
                .contains("2 vectors for 3 inputs")
        );
        assert!(
            vectors(ok, 2, Some(3))
                .unwrap_err()
                .contains("2 dimensions where 3")
        );
        let ragged =
            br#"{"data":[{"index":0,"embedding":[1.0]},{"index":1,"embedding":[1.0,0.0]}]}"#;
        assert!(vectors(ragged, 2, None).is_err());
        let twice = br#"{"data":[{"index":0,"embedding":[1.0]},{"index":0,"embedding":[1.0]}]}"#;
        assert!(vectors(twice, 2, None).unwrap_err().contains("twice"));
        assert!(vectors(b"{}", 1, None).is_err());
        assert!(vectors(b"<html>", 1, None).is_err());
    }
}
