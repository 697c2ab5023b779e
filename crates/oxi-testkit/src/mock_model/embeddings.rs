//! The OpenAI embeddings API (`POST …/embeddings`), as LiteLLM and OpenAI serve it: `input` is
//! a string or an array of strings, the answer is `{"object": "list", "data": [{"object":
//! "embedding", "index": i, "embedding": [...]}], "model", "usage": {"prompt_tokens",
//! "total_tokens"}}`. Vectors are deterministic: a hashed bag of words, L2-normalised, so
//! texts that share words are near and the same text always gives the same vector. Faults are
//! scripted in their own queue ([`EmbedStep`]), so they never consume a chat step.

use serde_json::{Value, json};

/// How the server answers one embeddings request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedStep {
    /// One hashed-bag-of-words vector per input, of the script's dimension.
    Auto,
    /// Vectors of this many dimensions instead (a model that changed under the same name).
    Dimensions(usize),
    /// One vector fewer than the inputs asked for.
    MissingOne,
    /// An HTTP error with OpenAI's error body.
    Status(u16),
    /// 200 with this body verbatim.
    Raw(String),
    /// Accept the request and never answer (until the server shuts down).
    Hang,
}

impl EmbedStep {
    pub(crate) fn describe(&self) -> String {
        match self {
            EmbedStep::Auto => "embeddings".into(),
            EmbedStep::Dimensions(n) => format!("embeddings of {n} dimensions"),
            EmbedStep::MissingOne => "embeddings, one missing".into(),
            EmbedStep::Status(code) => format!("status {code}"),
            EmbedStep::Raw(body) => format!("raw ({} bytes)", body.len()),
            EmbedStep::Hang => "hang".into(),
        }
    }
}

/// The request's inputs: `input` as a string or an array of strings; `None` for anything
/// else (OpenAI also takes token arrays, which the gateway never sends).
pub(crate) fn inputs(body: &Value) -> Option<Vec<String>> {
    match body.get("input")? {
        Value::String(text) => Some(vec![text.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

/// The words of `text`: lower-case runs of letters and digits.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// FNV-1a, so a word lands on the same dimension in every run and on every machine.
fn fnv(word: &str) -> u64 {
    word.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The hashed bag of words of `text` in `dimensions`, L2-normalised (a text with no words is
/// the first unit vector).
pub fn vector(text: &str, dimensions: usize) -> Vec<f32> {
    let dimensions = dimensions.max(1);
    let mut v = vec![0.0f32; dimensions];
    for word in words(text) {
        let h = fnv(&word);
        let slot = (h % dimensions as u64) as usize;
        v[slot] += if h >> 63 == 0 { 1.0 } else { -1.0 };
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        v[0] = 1.0;
    } else {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// The `list` answer for `inputs`, `dimensions` wide, one vector fewer when `drop_one`.
pub(crate) fn answer(inputs: &[String], model: &str, dimensions: usize, drop_one: bool) -> Value {
    let count = if drop_one {
        inputs.len().saturating_sub(1)
    } else {
        inputs.len()
    };
    let data: Vec<Value> = inputs
        .iter()
        .take(count)
        .enumerate()
        .map(|(i, text)| json!({"object": "embedding", "index": i, "embedding": vector(text, dimensions)}))
        .collect();
    let tokens: usize = inputs.iter().map(|t| words(t).count()).sum();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })
}

/// OpenAI's error body for an `input` the mock cannot read.
pub(crate) fn bad_input() -> Value {
    json!({"error": {
        "message": "oxi mock: `input` must be a string or an array of strings",
        "type": "invalid_request_error",
        "param": "input",
        "code": null,
    }})
}
