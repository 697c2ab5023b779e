//! The OpenAI chat-completions API (`POST …/chat/completions`), non-streaming only, as the
//! inference gateway's providers speak it: the whole answer as one JSON object with `usage`
//! (`prompt_tokens` counting cached ones, `completion_tokens` counting reasoning ones), plus
//! the cost each provider adds when scripted: LiteLLM's `x-litellm-response-cost` header,
//! OpenRouter's `usage.cost`.

use serde_json::{Value, json};

use super::{ReplyContext, Step, filler_text};

/// Where (and whether) the mock reports a chat answer's cost, as a provider would.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ChatCost {
    /// No cost anywhere (xAI, OpenAI): the client must price the tokens itself.
    #[default]
    None,
    /// LiteLLM: `x-litellm-response-cost: <USD>` on the answer (the text verbatim).
    LitellmHeader(String),
    /// OpenRouter: `usage.cost` (USD) in the body.
    OpenRouterBody(f64),
}

/// The answer's text for a step; `None` for steps that are not a text answer here.
fn text(step: &Step) -> Option<String> {
    match step {
        Step::Auto => Some("ok".to_owned()),
        Step::Text(text) => Some(text.clone()),
        Step::Huge { bytes } => Some(filler_text(*bytes)),
        // A chat completion has no tools here: the request offers none.
        Step::WriteFile { .. } | Step::Shell { .. } => None,
        Step::Status { .. } | Step::Hang | Step::Stall => None,
    }
}

/// The `chat.completion` object for `step`.
pub(crate) fn completion(step: &Step, ctx: &ReplyContext, cost: &ChatCost) -> Option<Value> {
    let content = text(step)?;
    let u = &ctx.usage;
    let prompt = u.input_tokens + u.cached_input_tokens;
    let mut usage = json!({
        "prompt_tokens": prompt,
        "completion_tokens": u.output_tokens,
        "total_tokens": prompt + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_output_tokens},
    });
    if let (ChatCost::OpenRouterBody(usd), Some(map)) = (cost, usage.as_object_mut()) {
        map.insert("cost".to_owned(), json!(usd));
    }
    Some(json!({
        "id": format!("chatcmpl-{}", ctx.message_id),
        "object": "chat.completion",
        "created": ctx.created_at,
        "model": ctx.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": usage,
        "system_fingerprint": null,
    }))
}

/// The error body for a request that asked to stream: the gateway must never do that, so
/// the mock refuses loudly rather than serve it.
pub(crate) fn streaming_refused() -> Value {
    json!({"error": {
        "message": "oxi mock: streaming chat completions are not served; the gateway must send \"stream\": false",
        "type": "invalid_request_error",
        "param": "stream",
        "code": "stream_not_supported",
    }})
}

/// LiteLLM's `/health/readiness` answer.
pub(crate) fn readiness() -> Value {
    json!({"status": "healthy", "db": "connected", "cache": null, "litellm_version": "mock", "success_callbacks": []})
}
