//! Well-known secret shapes, scrubbed from content before it leaves the
//! journal (OTLP export). The journal itself never holds credential
//! headers; this catches keys pasted into prompts, files and tool output.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// (name, pattern): the name appears in the replacement, e.g. `[REDACTED:aws-access-key]`.
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
        r#"(?i)aws_?secret_?access_?key["'\s:=]+[A-Za-z0-9/+=]{40}"#,
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
        r"(?i)\bauthorization:\s*bearer\s+[A-Za-z0-9_\-\.=]{16,}",
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

/// The text with every well-known secret replaced by `[REDACTED:<kind>]`;
/// borrowed unchanged when there is none.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let mut out: Cow<'_, str> = Cow::Borrowed(text);
    for (name, re) in PATTERNS.iter() {
        if re.is_match(&out) {
            let replaced = re
                .replace_all(&out, format!("[REDACTED:{name}]").as_str())
                .into_owned();
            out = Cow::Owned(replaced);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_shapes_are_scrubbed_and_plain_text_is_borrowed() {
        let text = "key sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123 and AKIAIOSFODNN7EXAMPLE and \
                    ghp_0123456789abcdefghijklmnopqrstuvwxyzAB and \
                    -----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- and \
                    eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N";
        let s = scrub(text);
        for secret in [
            "sk-ant-api03",
            "AKIAIOSFODNN7EXAMPLE",
            "ghp_0123",
            "MIIE",
            "eyJzdWIi",
        ] {
            assert!(!s.contains(secret), "{secret} survived: {s}");
        }
        for kind in [
            "anthropic-key",
            "aws-access-key",
            "github-token",
            "private-key",
            "jwt",
        ] {
            assert!(s.contains(&format!("[REDACTED:{kind}]")), "{s}");
        }
        assert!(matches!(
            scrub("fn main() { println!(\"hi\"); }"),
            Cow::Borrowed(_)
        ));
        assert_eq!(scrub("sk-short"), "sk-short");
    }
}
