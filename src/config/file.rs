//! The TOML config file, as written by people: every key optional, unknown
//! keys rejected (a typo must not silently fall back to a default), and
//! `${VAR}` / `${VAR:-default}` replaced from the environment before parsing.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::capture::api::RouteProtocol;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub admin: Option<String>,
    pub drain_timeout: Option<String>,
    #[serde(default)]
    pub route: Vec<FileRoute>,
    #[serde(default)]
    pub upstream: UpstreamSection,
    #[serde(default)]
    pub capture: CaptureSection,
    #[serde(default)]
    pub journal: JournalSection,
    #[serde(default)]
    pub execution: ExecutionSection,
    #[serde(default)]
    pub sessions: SessionsSection,
    #[serde(default)]
    pub context: ContextSection,
    #[serde(default)]
    pub export: super::export::ExportSection,
    #[serde(default)]
    pub sponsor: super::identity::SponsorSection,
    #[serde(default)]
    pub redact: RedactSection,
    #[serde(default)]
    pub intercept: super::forward::InterceptSection,
    #[serde(default)]
    pub forward_proxy: super::forward::ForwardProxySection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactSection {
    /// Replace well-known secret shapes in stored and exported content (default true).
    pub secrets: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    pub prefix: String,
    pub upstream: String,
    #[serde(default = "auto")]
    pub protocol: RouteProtocol,
}

fn auto() -> RouteProtocol {
    RouteProtocol::Auto
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    pub ca_file: Option<PathBuf>,
    pub timeout: Option<String>,
    pub connect_timeout: Option<String>,
    /// `HOST:PORT=ADDR` address overrides, as curl's `--resolve`.
    #[serde(default)]
    pub resolve: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSection {
    pub max_body: Option<SizeValue>,
}

/// A size written as a number of bytes or as text with a unit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSection {
    pub path: Option<PathBuf>,
    /// "batched" or "write-ahead".
    pub durability: Option<String>,
    pub signing_key: Option<PathBuf>,
    pub checkpoint_every: Option<u64>,
    pub checkpoint_interval: Option<String>,
    pub max_size: Option<SizeValue>,
    pub retention: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsSection {
    /// Headers agents send their session id in, in order of preference.
    pub headers: Option<Vec<String>>,
    pub idle_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextSection {
    /// Whether the built-in rules follow the configured ones (default true).
    pub builtin: Option<bool>,
    #[serde(default)]
    pub tool: Vec<crate::capture::context::ContextRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionSection {
    pub id: Option<String>,
    pub sponsor: Option<String>,
    pub change_id: Option<String>,
    pub repository: Option<String>,
    pub branch: Option<String>,
    pub revision: Option<String>,
    pub pipeline_run_id: Option<String>,
    pub pipeline_url: Option<String>,
    pub job_id: Option<String>,
}

/// Reads and parses a config file; every problem found goes into `errors`.
pub fn read(path: &Path, errors: &mut Vec<String>) -> Option<FileConfig> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            errors.push(format!("config file {}: {e}", path.display()));
            return None;
        }
    };
    let text = interpolate(&text, &|name| std::env::var(name).ok(), errors, path);
    match toml::from_str::<FileConfig>(&text) {
        Ok(c) => Some(c),
        Err(e) => {
            errors.push(format!(
                "config file {}: {}",
                path.display(),
                e.to_string().trim_end()
            ));
            None
        }
    }
}

/// Replaces `${NAME}` and `${NAME:-default}`; `$${` stays a literal `${`.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
    path: &Path,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(lit) = after.strip_prefix("${") {
            out.push_str("${");
            rest = lit;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body.find('}') else {
            out.push('$');
            rest = after;
            continue;
        };
        let expr = &body[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        match lookup(name).filter(|v| !v.is_empty()).or(default.map(str::to_owned)) {
            Some(v) => out.push_str(&v),
            None => errors.push(format!(
                "config file {}: ${{{name}}} is not set in the environment (set it, or write ${{{name}:-default}})",
                path.display()
            )),
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation() {
        let lookup = |n: &str| (n == "HOST").then(|| "api.example.com".to_owned());
        let mut errors = Vec::new();
        let p = Path::new("x.toml");
        assert_eq!(
            interpolate(
                "u = \"https://${HOST}\" # $${LIT} ${MISSING:-d} $5",
                &lookup,
                &mut errors,
                p
            ),
            "u = \"https://api.example.com\" # ${LIT} d $5"
        );
        assert!(errors.is_empty());
        interpolate("${NOPE}", &lookup, &mut errors, p);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("NOPE"));
    }
}
