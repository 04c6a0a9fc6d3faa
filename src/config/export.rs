//! The `[export]` section, with the standard `OTEL_*` variables as the
//! fallback for anything the file does not set.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::export::config::{ExportConfig, OtlpConfig, Protocol};
use crate::export::semconv;

use super::file::SizeValue;
use super::{checks, units};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSection {
    /// "full", "delta" (default) or "none".
    pub content: Option<String>,
    pub max_attribute_size: Option<SizeValue>,
    pub shutdown_timeout: Option<String>,
    #[serde(default)]
    pub otlp: OtlpSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpSection {
    pub endpoint: Option<String>,
    /// "grpc" or "http/protobuf".
    pub protocol: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    /// "gzip" or "none".
    pub compression: Option<String>,
    pub timeout: Option<String>,
    #[serde(default)]
    pub tls: OtlpTlsSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpTlsSection {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// Export settings given as flags; they beat the file, which beats `OTEL_*`.
#[derive(Debug, Default, Clone)]
pub struct ExportFlags {
    pub content: Option<String>,
    pub endpoint: Option<String>,
    pub protocol: Option<String>,
    pub shutdown_timeout: Option<String>,
}

/// Builds the export settings; `env` looks up environment variables.
pub fn section(
    mut f: ExportSection,
    flags: ExportFlags,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> ExportConfig {
    if flags.endpoint.is_some() {
        f.otlp.endpoint = flags.endpoint;
    }
    if flags.protocol.is_some() {
        f.otlp.protocol = flags.protocol;
    }
    if flags.shutdown_timeout.is_some() {
        f.shutdown_timeout = flags.shutdown_timeout;
    }
    let content_flag = flags.content;
    let defaults = ExportConfig::default();
    let content = match content_flag.or(f.content) {
        None => defaults.content,
        Some(c) => c.parse().unwrap_or_else(|e| {
            errors.push(format!("export.content (--export-content): {e}"));
            defaults.content
        }),
    };
    let max_attribute_size = checks::size(
        "export.max_attribute_size",
        None,
        f.max_attribute_size,
        None,
        errors,
    )
    .map_or(defaults.max_attribute_size, |n| n as usize);
    let shutdown_timeout =
        checks::duration("export.shutdown_timeout", f.shutdown_timeout, "10s", errors);
    let otlp = otlp(f.otlp, env, errors);
    let mut resource = k8s_resource(env);
    if let Some(attrs) = env("OTEL_RESOURCE_ATTRIBUTES") {
        resource.extend(parse_pairs(&attrs));
    }
    if let Some(name) = env("OTEL_SERVICE_NAME") {
        resource.push((semconv::SERVICE_NAME.into(), name));
    }
    ExportConfig {
        otlp,
        content,
        max_attribute_size,
        shutdown_timeout,
        resource,
    }
}

fn otlp(
    f: OtlpSection,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> Option<OtlpConfig> {
    // Signal-specific variables win over the generic ones.
    let var = |name: &str| {
        env(&format!("OTEL_EXPORTER_OTLP_TRACES_{name}"))
            .or_else(|| env(&format!("OTEL_EXPORTER_OTLP_{name}")))
    };
    let protocol = match f.protocol.or_else(|| var("PROTOCOL")).as_deref() {
        None | Some("http/protobuf") => Protocol::HttpProtobuf,
        Some("grpc") => Protocol::Grpc,
        Some(other) => {
            errors.push(format!(
                "export.otlp.protocol (OTEL_EXPORTER_OTLP_PROTOCOL): {other:?} is not supported; use \"grpc\" or \"http/protobuf\""
            ));
            Protocol::HttpProtobuf
        }
    };
    // The traces variable is the full URL; the generic one is a base URL.
    let endpoint = match (
        f.endpoint,
        env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        env("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(e), _, _) | (None, None, Some(e)) => match protocol {
            Protocol::HttpProtobuf => traces_url(&e),
            Protocol::Grpc => e,
        },
        (None, Some(e), _) => e,
        (None, None, None) => return None,
    };
    match endpoint.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some() => {}
        _ => errors.push(format!(
            "export.otlp.endpoint (OTEL_EXPORTER_OTLP_ENDPOINT): {endpoint:?} must be an http:// or https:// URL, e.g. http://localhost:4318"
        )),
    }
    let mut headers: Vec<(String, String)> =
        var("HEADERS").map(|h| parse_pairs(&h)).unwrap_or_default();
    for (k, v) in f.headers.unwrap_or_default() {
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case(&k));
        headers.push((k, v));
    }
    for (k, v) in &headers {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err()
            || http::HeaderValue::from_str(v).is_err()
        {
            errors.push(format!("export.otlp.headers: {k:?} is not a valid header"));
        }
    }
    let gzip = match f.compression.or_else(|| var("COMPRESSION")).as_deref() {
        None | Some("none") => false,
        Some("gzip") => true,
        Some(other) => {
            errors.push(format!(
                "export.otlp.compression: {other:?}; use \"gzip\" or \"none\""
            ));
            false
        }
    };
    let timeout = match f.timeout {
        Some(t) => units::parse_duration(&t).unwrap_or_else(|e| {
            errors.push(format!("export.otlp.timeout: {e}"));
            std::time::Duration::from_secs(10)
        }),
        // The variable is in milliseconds.
        None => var("TIMEOUT")
            .and_then(|ms| ms.trim().parse::<u64>().ok())
            .map_or(
                std::time::Duration::from_secs(10),
                std::time::Duration::from_millis,
            ),
    };
    let ca_file = f
        .tls
        .ca_file
        .or_else(|| var("CERTIFICATE").map(PathBuf::from));
    if let Some(ca) = &ca_file {
        checks::check_ca_file(ca, errors);
    }
    let client_cert = f
        .tls
        .cert_file
        .or_else(|| var("CLIENT_CERTIFICATE").map(PathBuf::from));
    let client_key = f
        .tls
        .key_file
        .or_else(|| var("CLIENT_KEY").map(PathBuf::from));
    if client_cert.is_some() != client_key.is_some() {
        errors.push("export.otlp.tls: cert_file and key_file go together".into());
    }
    Some(OtlpConfig {
        endpoint,
        protocol,
        headers,
        gzip,
        timeout,
        ca_file,
        client_cert,
        client_key,
    })
}

/// `http://host:4318` → `http://host:4318/v1/traces`, as the OTLP spec asks.
fn traces_url(base: &str) -> String {
    let trimmed = base.trim_end_matches('/');
    if trimmed.ends_with("/v1/traces") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v1/traces")
    }
}

/// `k1=v1,k2=v2` with percent-encoded values (the OTEL_* list format).
fn parse_pairs(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.trim().to_owned(), percent_decode(v.trim())))
        })
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The Kubernetes downward-API variables the usual manifests set.
fn k8s_resource(env: &dyn Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    let pick = |names: &[&str]| names.iter().find_map(|n| env(n)).filter(|v| !v.is_empty());
    let mut out = Vec::new();
    for (attr, names) in [
        (semconv::K8S_POD_NAME, &["K8S_POD_NAME", "POD_NAME"][..]),
        (
            semconv::K8S_NAMESPACE_NAME,
            &["K8S_NAMESPACE_NAME", "K8S_NAMESPACE", "POD_NAMESPACE"][..],
        ),
        (semconv::K8S_NODE_NAME, &["K8S_NODE_NAME", "NODE_NAME"][..]),
    ] {
        if let Some(v) = pick(names) {
            out.push((attr.to_owned(), v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::config::ContentMode;

    fn env_of(vars: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn nothing_configured_means_no_export() {
        let mut errors = Vec::new();
        let c = section(
            ExportSection::default(),
            ExportFlags::default(),
            &env_of(&[]),
            &mut errors,
        );
        assert!(c.otlp.is_none());
        assert_eq!(c.content, ContentMode::Delta);
        assert!(errors.is_empty());
    }

    #[test]
    fn standard_variables_configure_the_exporter() {
        let mut errors = Vec::new();
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-tenant=a%20b,authorization=Bearer t",
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("POD_NAME", "agent-7"),
            ("POD_NAMESPACE", "ci"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod"),
        ]);
        let c = section(
            ExportSection::default(),
            ExportFlags::default(),
            &env,
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        let o = c.otlp.unwrap();
        assert_eq!(o.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(o.protocol, Protocol::HttpProtobuf);
        assert_eq!(o.headers[0], ("x-tenant".into(), "a b".into()));
        assert!(o.gzip);
        assert_eq!(o.timeout, std::time::Duration::from_millis(2500));
        assert!(
            c.resource
                .contains(&("k8s.pod.name".into(), "agent-7".into()))
        );
        assert!(
            c.resource
                .contains(&("deployment.environment".into(), "prod".into()))
        );

        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://x/custom"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        let o = section(
            ExportSection::default(),
            ExportFlags::default(),
            &env,
            &mut errors,
        )
        .otlp
        .unwrap();
        assert_eq!(
            (o.endpoint.as_str(), o.protocol),
            ("https://x/custom", Protocol::Grpc)
        );
    }

    #[test]
    fn file_beats_environment_and_errors_are_listed() {
        let mut errors = Vec::new();
        let f = ExportSection {
            content: Some("everything".into()),
            otlp: OtlpSection {
                endpoint: Some("collector:4317".into()),
                protocol: Some("http/json".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        section(
            f,
            ExportFlags::default(),
            &env_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318")]),
            &mut errors,
        );
        assert_eq!(errors.len(), 3, "{errors:?}");
    }
}
