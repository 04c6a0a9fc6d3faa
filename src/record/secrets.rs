//! Well-known secret shapes — cloud and platform keys, tokens, private key
//! blocks, JWTs, `password=`-style assignments — replaced by
//! `[REDACTED:<kind>:<first 8 hex of the secret's SHA-256>]` before content
//! is stored in the journal or exported. The digest prefix lets two records
//! be seen to hold the same secret without holding it. Scrubbing is
//! idempotent: a redaction marker never matches a pattern again.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};
use sha2::{Digest, Sha256};

/// (kind, pattern). A pattern with a capture group 2 redacts only that group
/// (the value of an assignment), keeping group 1 (the name).
const SHAPES: &[(&str, &str)] = &[
    (
        "private-key",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    ),
    ("anthropic-key", r"\bsk-ant-[A-Za-z0-9_\-]{20,}"),
    (
        "openai-key",
        r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}",
    ),
    ("aws-access-key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    (
        "aws-secret-key",
        r#"(?i)(aws_?secret_?access_?key["'\s:=]+)([A-Za-z0-9/+=]{40})"#,
    ),
    (
        "github-token",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",
    ),
    ("gitlab-token", r"\bglpat-[A-Za-z0-9_\-]{20,}"),
    ("slack-token", r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"),
    ("google-api-key", r"\bAIza[0-9A-Za-z_\-]{35}\b"),
    ("stripe-key", r"\b(?:sk|rk)_live_[A-Za-z0-9]{20,}"),
    (
        "jwt",
        r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    ),
    (
        "bearer-token",
        r"(?i)(\bauthorization:\s*bearer\s+)([A-Za-z0-9_\-\.=]{16,})",
    ),
    (
        "assignment",
        r#"(?i)((?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret)["']?\s*[:=]\s*["']?)([^\s"',;&\[\]\\]{6,})"#,
    ),
];

static PATTERNS: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    SHAPES
        .iter()
        .map(|(name, p)| {
            (
                *name,
                Regex::new(p).expect("built-in secret patterns are valid"),
            )
        })
        .collect()
});

/// No shape matches fewer bytes (the shortest: `pwd=` and a 6-character
/// value), so shorter text — most header values — is not searched at all.
const SHORTEST_SECRET: usize = 10;

/// Text with its secrets replaced, and the kind of each one found.
pub struct Scrubbed<'a> {
    pub text: Cow<'a, str>,
    pub found: Vec<&'static str>,
}

/// Replaces every well-known secret; borrows the text unchanged when there is none.
pub fn scrub_counted(text: &str) -> Scrubbed<'_> {
    let mut out: Cow<'_, str> = Cow::Borrowed(text);
    let mut found = Vec::new();
    if text.len() < SHORTEST_SECRET {
        return Scrubbed { text: out, found };
    }
    for (kind, re) in PATTERNS.iter() {
        if !re.is_match(&out) {
            continue;
        }
        let replaced = re
            .replace_all(&out, |c: &Captures<'_>| {
                found.push(*kind);
                match (c.get(1), c.get(2)) {
                    (Some(name), Some(value)) => {
                        format!("{}{}", name.as_str(), marker(kind, value.as_str()))
                    }
                    _ => marker(kind, &c[0]),
                }
            })
            .into_owned();
        out = Cow::Owned(replaced);
    }
    Scrubbed { text: out, found }
}

pub fn scrub(text: &str) -> Cow<'_, str> {
    scrub_counted(text).text
}

/// Whether any of `texts` may hold a secret: one search over them all
/// (joined by newlines, which every shape treats as a boundary) instead of
/// one per text, for many short texts such as header values.
pub fn any_may_hold_secret<'a>(texts: impl Iterator<Item = &'a str>) -> bool {
    let mut joined = String::new();
    for t in texts {
        joined.push_str(t);
        joined.push('\n');
    }
    joined.len() >= SHORTEST_SECRET && PATTERNS.iter().any(|(_, re)| re.is_match(&joined))
}

/// Cleans text for storage, counting what it replaced, when redaction is on.
#[derive(Debug, Default)]
pub struct Cleaner {
    redact: bool,
    counts: std::collections::HashMap<String, u32>,
}

impl Cleaner {
    pub fn new(redact: bool) -> Self {
        Self {
            redact,
            counts: Default::default(),
        }
    }

    pub fn clean(&mut self, text: &str) -> String {
        if !self.redact {
            return text.to_owned();
        }
        let s = scrub_counted(text);
        for kind in s.found {
            *self.counts.entry(kind.to_owned()).or_default() += 1;
        }
        s.text.into_owned()
    }

    /// JSON as it may be stored (secrets replaced inside string values).
    pub fn clean_json(&mut self, value: &serde_json::Value) -> Vec<u8> {
        let text = serde_json::to_string(value).unwrap_or_default();
        self.clean(&text).into_bytes()
    }

    /// Raw bytes as they may be stored: text is cleaned, binary kept.
    pub fn clean_bytes(&mut self, data: Vec<u8>) -> Vec<u8> {
        match String::from_utf8(data) {
            Ok(text) => self.clean(&text).into_bytes(),
            Err(e) => e.into_bytes(),
        }
    }

    /// Replacements made, by kind.
    pub fn into_counts(self) -> std::collections::HashMap<String, u32> {
        self.counts
    }
}

fn marker(kind: &str, secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    format!("[REDACTED:{kind}:{}]", hex::encode(&digest[..4]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_shape_matches_less_than_the_shortest_secret() {
        for (kind, pattern) in SHAPES {
            let hir = regex_syntax::parse(pattern).unwrap();
            let min = hir.properties().minimum_len().unwrap();
            assert!(min >= SHORTEST_SECRET, "{kind} can match {min} bytes");
        }
        assert_eq!(scrub_counted("pwd=secret").found, ["assignment"]);
    }

    #[test]
    fn many_short_texts_are_searched_at_once() {
        let plain = ["application/json", "oha/1.16.0", "gzip, br", "1060"];
        assert!(!any_may_hold_secret(plain.into_iter()));
        let with_token = [
            "application/json",
            "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB",
            "1060",
        ];
        assert!(any_may_hold_secret(with_token.into_iter()));
        assert!(!any_may_hold_secret(std::iter::empty()));
    }

    #[test]
    fn every_shape_is_found() {
        let examples = [
            (
                "private-key",
                "-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY-----",
            ),
            ("anthropic-key", "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv"),
            ("openai-key", "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx"),
            ("aws-access-key", "ASIAIOSFODNN7EXAMPLE"),
            (
                "aws-secret-key",
                "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            ),
            ("github-token", "github_pat_11ABCDEFG0123456789abcdef"),
            ("gitlab-token", "glpat-AbCdEfGhIjKlMnOpQrSt"),
            ("slack-token", "xoxb-123456789012-abcdef"),
            ("google-api-key", "AIzaSyA1234567890abcdefghijklmnopqrstuv"),
            ("stripe-key", "rk_live_AbCdEfGhIjKlMnOpQrStUv"),
            (
                "jwt",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
            ),
            ("bearer-token", "Authorization: Bearer abcdefghijklmnop0123"),
            ("assignment", "Client-Secret: \"s3cr3t-value\""),
        ];
        assert_eq!(examples.len(), SHAPES.len(), "an example for every shape");
        for (kind, text) in examples {
            let s = scrub_counted(text);
            assert!(
                s.found.contains(&kind),
                "{kind} not found in {text:?}: {:?}",
                s.found
            );
        }
    }

    #[test]
    fn known_shapes_are_scrubbed_and_plain_text_is_borrowed() {
        let text = "key sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123 and AKIAIOSFODNN7EXAMPLE and \
                    ghp_0123456789abcdefghijklmnopqrstuvwxyzAB and glpat-abcdefghij0123456789 and \
                    -----BEGIN RSA PRIVATE KEY-----\\nMIIE\\n-----END RSA PRIVATE KEY----- and \
                    eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N and \
                    DB_PASSWORD=hunter2hunter2 and \"api_key\": \"abc123def456\"";
        let s = scrub_counted(text);
        for secret in [
            "sk-ant-api03",
            "AKIAIOSFODNN7EXAMPLE",
            "ghp_0123",
            "glpat-",
            "MIIE",
            "eyJzdWIi",
            "hunter2",
            "abc123def456",
        ] {
            assert!(!s.text.contains(secret), "{secret} survived: {}", s.text);
        }
        let mut kinds = s.found.clone();
        kinds.sort_unstable();
        assert_eq!(
            kinds,
            [
                "anthropic-key",
                "assignment",
                "assignment",
                "aws-access-key",
                "github-token",
                "gitlab-token",
                "jwt",
                "private-key"
            ]
        );
        assert!(
            s.text.contains("DB_PASSWORD=[REDACTED:assignment:"),
            "{}",
            s.text
        );
        let marker = format!(
            "[REDACTED:aws-access-key:{}]",
            hex::encode(&Sha256::digest(b"AKIAIOSFODNN7EXAMPLE")[..4])
        );
        assert!(s.text.contains(&marker), "{}", s.text);
        // Idempotent: scrubbing again changes nothing.
        let again = scrub_counted(&s.text);
        assert!(again.found.is_empty(), "{:?}", again.found);
        assert!(matches!(
            scrub("fn main() { println!(\"hi\"); }"),
            Cow::Borrowed(_)
        ));
        assert_eq!(scrub("sk-short password: x"), "sk-short password: x");
    }
}
