//! One entry of a routing chain: a worker (optionally with a model) or a gateway model.

use std::fmt;

use serde::Serialize;

/// Who does a role's work: an agent CLI (`worker` or `worker:model`, the model overriding the
/// worker's own) or a model behind the inference gateway (`provider:model`). [`fmt::Display`]
/// writes it back as the config spells it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RouteChoice {
    Worker {
        name: String,
        /// `None`: the worker's own `model`.
        model: Option<String>,
    },
    Gateway {
        provider: String,
        model: String,
    },
}

/// What a chain entry may be, by the role it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChoiceKind {
    /// An agent CLI: `worker` or `worker:model`.
    Worker,
    /// A gateway model: `provider:model`.
    Gateway,
}

impl RouteChoice {
    /// Parses a chain entry for a role of `kind`. A model id may itself hold `:` (OpenRouter's
    /// `…:free`), so only the first `:` separates; a worker or provider name never has one.
    /// `None` when the text lacks a part `kind` needs.
    pub fn parse(text: &str, kind: ChoiceKind) -> Option<Self> {
        let text = text.trim();
        let (name, model) = match text.split_once(':') {
            Some((name, model)) => (name.trim(), Some(model.trim())),
            None => (text, None),
        };
        if name.is_empty() || model.is_some_and(str::is_empty) {
            return None;
        }
        match kind {
            ChoiceKind::Worker => Some(RouteChoice::Worker {
                name: name.to_owned(),
                model: model.map(str::to_owned),
            }),
            ChoiceKind::Gateway => Some(RouteChoice::Gateway {
                provider: name.to_owned(),
                model: model?.to_owned(),
            }),
        }
    }

    /// The worker or provider named.
    pub fn name(&self) -> &str {
        match self {
            RouteChoice::Worker { name, .. } => name,
            RouteChoice::Gateway { provider, .. } => provider,
        }
    }

    /// The model named, if the choice names one.
    pub fn model(&self) -> Option<&str> {
        match self {
            RouteChoice::Worker { model, .. } => model.as_deref(),
            RouteChoice::Gateway { model, .. } => Some(model),
        }
    }
}

impl fmt::Display for RouteChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.model() {
            Some(model) => write!(f, "{}:{model}", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_writes_back() {
        for (text, kind) in [
            ("claude", ChoiceKind::Worker),
            ("codex:gpt-5.5-mini", ChoiceKind::Worker),
            ("litellm:claude-haiku-4-5", ChoiceKind::Gateway),
            ("openrouter:qwen/qwen3.6-plus:free", ChoiceKind::Gateway),
        ] {
            let choice = RouteChoice::parse(text, kind).unwrap();
            assert_eq!(choice.to_string(), text);
        }
        assert_eq!(
            RouteChoice::parse("openrouter:qwen/q:free", ChoiceKind::Gateway)
                .unwrap()
                .model(),
            Some("qwen/q:free")
        );
        assert_eq!(RouteChoice::parse("litellm", ChoiceKind::Gateway), None);
        assert_eq!(RouteChoice::parse("codex:", ChoiceKind::Worker), None);
        assert_eq!(RouteChoice::parse(":m", ChoiceKind::Worker), None);
    }
}
