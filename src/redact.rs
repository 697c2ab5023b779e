//! Secret masking. Everything oxi writes (raw output, canonical events, transcripts, meta,
//! prompts, PR bodies) goes through a `Redactor` first.
//!
//! Two kinds of secret: the *values* oxi itself holds (every variable it passes to a worker
//! through `env`, the GitHub token), matched literally with Aho-Corasick; and token-shaped
//! strings (well-known key prefixes, private-key blocks), matched by one regex.

use std::borrow::Cow;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use regex::Regex;

/// What a masked secret is replaced with.
pub const MASK: &str = "[REDACTED]";

/// Values shorter than this are not treated as secrets (masking "1" or "en_US" would shred
/// every transcript); real keys are far longer.
pub const MIN_SECRET_LEN: usize = 8;

#[allow(clippy::expect_used)] // A constant pattern; `token_pattern_compiles` tests it.
static TOKEN_SHAPES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"sk-ant-[A-Za-z0-9_\-]{16,}",
        r"|sk-(?:proj-|svcacct-)?[A-Za-z0-9_\-]{20,}",
        r"|gh[pousr]_[A-Za-z0-9]{30,}",
        r"|github_pat_[A-Za-z0-9_]{30,}",
        r"|AKIA[0-9A-Z]{16}",
        r"|xox[abprs]-[A-Za-z0-9\-]{10,}",
        r"|AIza[0-9A-Za-z_\-]{35}",
        r"|-----BEGIN [A-Z ]*PRIVATE KEY-----(?:.|\n)*?-----END [A-Z ]*PRIVATE KEY-----",
        r"|-----BEGIN [A-Z ]*PRIVATE KEY-----",
    ))
    .expect("constant regex")
});

/// Masks known secret values and token-shaped strings.
#[derive(Clone, Default)]
pub struct Redactor {
    literal: Option<AhoCorasick>,
    count: usize,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secrets themselves.
        f.debug_struct("Redactor")
            .field("secrets", &self.count)
            .finish()
    }
}

impl Redactor {
    /// A redactor for these secret values (short or empty values are ignored).
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut values: Vec<String> = secrets
            .into_iter()
            .map(|s| s.as_ref().to_owned())
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        values.sort();
        values.dedup();
        // JSON-escaped forms too, so a secret inside a JSON string is still found.
        let escaped: Vec<String> = values
            .iter()
            .filter_map(|v| {
                let json = serde_json::to_string(v).ok()?;
                let inner = json.get(1..json.len() - 1)?.to_owned();
                (inner != *v).then_some(inner)
            })
            .collect();
        values.extend(escaped);
        let count = values.len();
        let literal = if values.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                .build(&values)
                .ok()
        };
        Self { literal, count }
    }

    /// Masks secrets in `text`; borrows when there is nothing to mask.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out: Cow<'a, str> = Cow::Borrowed(text);
        if let Some(ac) = &self.literal
            && ac.is_match(out.as_ref())
        {
            out = Cow::Owned(ac.replace_all(out.as_ref(), &vec![MASK; self.count]));
        }
        if TOKEN_SHAPES.is_match(out.as_ref()) {
            out = Cow::Owned(TOKEN_SHAPES.replace_all(out.as_ref(), MASK).into_owned());
        }
        out
    }

    /// Masks secrets in bytes that may not be UTF-8 (raw worker output).
    pub fn redact_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        match std::str::from_utf8(bytes) {
            Ok(text) => match self.redact(text) {
                Cow::Borrowed(_) => Cow::Borrowed(bytes),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            },
            Err(_) => {
                let lossy = String::from_utf8_lossy(bytes);
                Cow::Owned(self.redact(&lossy).into_owned().into_bytes())
            }
        }
    }

    /// Masks every string inside a JSON value.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => {
                if let Cow::Owned(masked) = self.redact(s) {
                    *s = masked;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.redact_json(v)),
            _ => {}
        }
    }

    /// True when `text` contains a secret value or a token-shaped string.
    pub fn contains_secret(&self, text: &str) -> bool {
        self.literal.as_ref().is_some_and(|ac| ac.is_match(text)) || TOKEN_SHAPES.is_match(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_pattern_compiles() {
        LazyLock::force(&TOKEN_SHAPES);
    }

    #[test]
    fn masks_values_and_token_shapes() {
        let r = Redactor::new(["hunter2-secret-value", "short"]);
        assert_eq!(r.redact("pw=hunter2-secret-value!"), "pw=[REDACTED]!");
        assert_eq!(r.redact("short stays"), "short stays");
        assert_eq!(
            r.redact("key sk-ant-api03-abcdefghijklmnopqrstuvwxyz"),
            "key [REDACTED]"
        );
        assert_eq!(
            r.redact("ghp_0123456789abcdefghijklmnopqrstuvwxyzAB ok"),
            "[REDACTED] ok"
        );
        assert_eq!(r.redact("AKIAABCDEFGHIJKLMNOP"), "[REDACTED]");
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----";
        assert_eq!(r.redact(pem), "[REDACTED]");
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn bytes_are_masked_whether_or_not_they_are_utf8_and_borrowed_when_clean() {
        let r = Redactor::new(["hunter2-secret-value"]);
        assert_eq!(
            r.redact_bytes(b"pw=hunter2-secret-value!").as_ref(),
            b"pw=[REDACTED]!"
        );
        // Raw worker output need not be UTF-8: the secret is still masked, the bad byte kept
        // as U+FFFD.
        assert_eq!(
            r.redact_bytes(b"\xff pw=hunter2-secret-value").as_ref(),
            "\u{fffd} pw=[REDACTED]".as_bytes()
        );
        let clean = b"nothing here";
        assert!(matches!(r.redact_bytes(clean), Cow::Borrowed(b) if b == clean));
    }

    #[test]
    fn debug_output_counts_the_secrets_and_never_prints_them() {
        let r = Redactor::new(["hunter2-secret-value", "another-secret-value"]);
        let debug = format!("{r:?}");
        assert_eq!(debug, "Redactor { secrets: 2 }");
    }

    #[test]
    fn masks_json_escaped_secrets_and_json_values() {
        let r = Redactor::new(["quote\"d-secret"]);
        let line = serde_json::json!({ "text": "x quote\"d-secret y" }).to_string();
        assert!(!r.redact(&line).contains("d-secret"));
        let mut v = serde_json::json!({ "a": ["quote\"d-secret"], "b": 1 });
        r.redact_json(&mut v);
        assert_eq!(v, serde_json::json!({ "a": ["[REDACTED]"], "b": 1 }));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let r = Redactor::new(["super-secret-value"]);
        assert!(!format!("{r:?}").contains("super-secret"));
    }
}
