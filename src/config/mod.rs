//! Configuration: built-in defaults, then the TOML file (`--config`), then
//! flags (each also readable from a `SIDETRACE_*` variable). Everything is
//! validated before any port is bound, and every problem is reported at once,
//! each naming its key and how to fix it.

pub mod file;
pub mod units;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;

use crate::capture::api::RouteProtocol;
use crate::record::execution::ExecutionDefaults;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4480";
pub const DEFAULT_ADMIN: &str = "127.0.0.1:4481";
pub const DEFAULT_UPSTREAM_TIMEOUT: &str = "10m";
pub const DEFAULT_CONNECT_TIMEOUT: &str = "10s";
pub const DEFAULT_DRAIN_TIMEOUT: &str = "30s";
pub const DEFAULT_CAPTURE_MAX_BODY: &str = "32MiB";

/// The routes used when none are configured.
pub const DEFAULT_ROUTES: &[(&str, &str)] = &[
    ("/openai", "https://api.openai.com"),
    ("/anthropic", "https://api.anthropic.com"),
];

/// Values given on the command line (or through `SIDETRACE_*` variables).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub admin: Option<String>,
    pub routes: Vec<String>,
    pub upstream_ca: Option<PathBuf>,
    pub upstream_timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub journal: Option<PathBuf>,
    pub capture_max_body: Option<String>,
    pub execution_id: Option<String>,
    pub sponsor: Option<String>,
    pub change_id: Option<String>,
    pub drain_timeout: Option<String>,
}

/// One reverse route: requests under `prefix` go to `upstream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Normalized: starts with `/`, no trailing `/` (except the root route `/`).
    pub prefix: String,
    pub upstream: Uri,
    pub protocol: RouteProtocol,
}

/// The validated, effective configuration of `sidetrace proxy`.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub routes: Vec<Route>,
    pub upstream_ca: Option<PathBuf>,
    pub upstream_timeout: Duration,
    pub connect_timeout: Duration,
    pub journal_path: PathBuf,
    pub capture_max_body: usize,
    pub execution: ExecutionDefaults,
    pub drain_timeout: Duration,
}

/// Every problem found in the configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<String>);

impl ProxyConfig {
    pub fn load(config_file: Option<&Path>, o: Overrides) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        let f = match config_file {
            Some(p) => file::read(p, &mut errors).unwrap_or_default(),
            None => file::FileConfig::default(),
        };

        let listen = addr(
            "listen (--listen)",
            o.listen.or(f.listen).as_deref().unwrap_or(DEFAULT_LISTEN),
            &mut errors,
        );
        let admin = addr(
            "admin (--admin)",
            o.admin.or(f.admin).as_deref().unwrap_or(DEFAULT_ADMIN),
            &mut errors,
        );
        if let (Some(l), Some(a)) = (listen, admin)
            && l == a
            && l.port() != 0
        {
            errors.push(format!(
                "listen and admin are both {l}; give the admin endpoints their own port"
            ));
        }

        let mut routes = Vec::new();
        // Flags replace the file's routes rather than mixing with them.
        if !o.routes.is_empty() {
            for spec in &o.routes {
                match spec.split_once('=') {
                    Some((prefix, upstream)) => {
                        let key = format!("--route {spec:?}");
                        if let Some(r) = route(&key, prefix, upstream, RouteProtocol::Auto, &mut errors) {
                            routes.push(r);
                        }
                    }
                    None => errors.push(format!(
                        "--route {spec:?}: expected PREFIX=UPSTREAM_URL, e.g. /openai=https://api.openai.com"
                    )),
                }
            }
        } else if !f.route.is_empty() {
            for (i, r) in f.route.iter().enumerate() {
                let key = format!("route[{i}]");
                if let Some(r) = route(&key, &r.prefix, &r.upstream, r.protocol, &mut errors) {
                    routes.push(r);
                }
            }
        } else {
            for (prefix, upstream) in DEFAULT_ROUTES {
                routes.extend(route(
                    "default route",
                    prefix,
                    upstream,
                    RouteProtocol::Auto,
                    &mut errors,
                ));
            }
        }
        for (i, a) in routes.iter().enumerate() {
            if routes[..i].iter().any(|b| b.prefix == a.prefix) {
                errors.push(format!("route prefix {:?} is configured twice", a.prefix));
            }
        }

        let upstream_ca = o.upstream_ca.or(f.upstream.ca_file);
        if let Some(ca) = &upstream_ca {
            check_ca_file(ca, &mut errors);
        }
        let upstream_timeout = duration(
            "upstream.timeout (--upstream-timeout)",
            o.upstream_timeout.or(f.upstream.timeout),
            DEFAULT_UPSTREAM_TIMEOUT,
            &mut errors,
        );
        let connect_timeout = duration(
            "upstream.connect_timeout (--connect-timeout)",
            o.connect_timeout.or(f.upstream.connect_timeout),
            DEFAULT_CONNECT_TIMEOUT,
            &mut errors,
        );
        let drain_timeout = duration(
            "drain_timeout (--drain-timeout)",
            o.drain_timeout.or(f.drain_timeout),
            DEFAULT_DRAIN_TIMEOUT,
            &mut errors,
        );
        let max_body = match (o.capture_max_body, f.capture.max_body) {
            (Some(s), _) | (None, Some(file::SizeValue::Text(s))) => units::parse_size(&s),
            (None, Some(file::SizeValue::Bytes(n))) => Ok(n as usize),
            (None, None) => units::parse_size(DEFAULT_CAPTURE_MAX_BODY),
        };
        let capture_max_body = match max_body {
            Ok(0) => {
                errors.push("capture.max_body (--capture-max-body) must be more than 0".into());
                0
            }
            Ok(n) => n,
            Err(e) => {
                errors.push(format!("capture.max_body (--capture-max-body): {e}"));
                0
            }
        };

        let journal_path = o
            .journal
            .or(f.journal.path)
            .unwrap_or_else(crate::journal::default_path);
        if journal_path.is_dir() {
            errors.push(format!(
                "journal.path (--journal) {} is a directory; give a file path such as {}/journal.db",
                journal_path.display(),
                journal_path.display()
            ));
        }

        let execution = ExecutionDefaults {
            execution_id: non_empty(o.execution_id.or(f.execution.id)),
            sponsor: non_empty(o.sponsor.or(f.execution.sponsor)),
            change_id: non_empty(o.change_id.or(f.execution.change_id)),
        };
        if let Some(id) = &execution.execution_id
            && !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:/@+-".contains(&b))
        {
            errors.push(format!(
                "execution.id (--execution-id) {id:?} may contain only letters, digits and . _ : / @ + -"
            ));
        }

        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Self {
            listen: listen.expect("checked"),
            admin: admin.expect("checked"),
            routes,
            upstream_ca,
            upstream_timeout,
            connect_timeout,
            journal_path,
            capture_max_body,
            execution,
            drain_timeout,
        })
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn addr(key: &str, value: &str, errors: &mut Vec<String>) -> Option<SocketAddr> {
    match value.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            errors.push(format!(
                "{key}: {value:?} is not an address; write IP:PORT, e.g. 127.0.0.1:4480"
            ));
            None
        }
    }
}

fn duration(key: &str, value: Option<String>, default: &str, errors: &mut Vec<String>) -> Duration {
    match units::parse_duration(value.as_deref().unwrap_or(default)) {
        Ok(d) if d.is_zero() => {
            errors.push(format!("{key}: must be longer than zero"));
            Duration::ZERO
        }
        Ok(d) => d,
        Err(e) => {
            errors.push(format!("{key}: {e}"));
            Duration::ZERO
        }
    }
}

fn route(
    key: &str,
    prefix: &str,
    upstream: &str,
    protocol: RouteProtocol,
    errors: &mut Vec<String>,
) -> Option<Route> {
    let mut ok = true;
    let prefix = prefix.trim();
    if !prefix.starts_with('/') {
        errors.push(format!(
            "{key}: prefix {prefix:?} must start with '/', e.g. /openai"
        ));
        ok = false;
    }
    let prefix = match prefix.trim_end_matches('/') {
        "" => "/".to_owned(),
        p => p.to_owned(),
    };
    let uri = match upstream.trim().parse::<Uri>() {
        Ok(u) => {
            let scheme_ok = matches!(u.scheme_str(), Some("http") | Some("https"));
            if !scheme_ok || u.authority().is_none() {
                errors.push(format!(
                    "{key}: upstream {upstream:?} must be an http:// or https:// URL with a host, e.g. https://api.openai.com"
                ));
                ok = false;
            }
            if u.query().is_some() {
                errors.push(format!(
                    "{key}: upstream {upstream:?} must not have a query string; the agent's query is forwarded as is"
                ));
                ok = false;
            }
            Some(u)
        }
        Err(e) => {
            errors.push(format!("{key}: upstream {upstream:?} is not a URL ({e})"));
            ok = false;
            None
        }
    };
    if ok {
        uri.map(|upstream| Route {
            prefix,
            upstream,
            protocol,
        })
    } else {
        None
    }
}

fn check_ca_file(path: &Path, errors: &mut Vec<String>) {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    match CertificateDer::pem_file_iter(path) {
        Ok(iter) => {
            let certs: Result<Vec<_>, _> = iter.collect();
            match certs {
                Ok(c) if c.is_empty() => errors.push(format!(
                    "upstream.ca_file (--upstream-ca) {}: no PEM certificates in it",
                    path.display()
                )),
                Ok(_) => {}
                Err(e) => errors.push(format!(
                    "upstream.ca_file (--upstream-ca) {}: not valid PEM ({e})",
                    path.display()
                )),
            }
        }
        Err(e) => errors.push(format!(
            "upstream.ca_file (--upstream-ca) {}: {e}",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_without_routes() {
        let c = ProxyConfig::load(None, Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[0].prefix, "/openai");
        assert_eq!(c.capture_max_body, 32 << 20);
    }

    #[test]
    fn every_error_is_listed_at_once() {
        let o = Overrides {
            listen: Some("nope".into()),
            routes: vec![
                "openai=https://x".into(),
                "/a=ftp://x".into(),
                "noequals".into(),
            ],
            upstream_timeout: Some("soon".into()),
            capture_max_body: Some("huge".into()),
            ..Default::default()
        };
        let err = ProxyConfig::load(None, o).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 6, "{text}");
        for needle in [
            "listen",
            "must start with '/'",
            "http:// or https://",
            "PREFIX=UPSTREAM_URL",
            "upstream.timeout",
            "capture.max_body",
        ] {
            assert!(text.contains(needle), "missing {needle}: {text}");
        }
    }

    #[test]
    fn file_routes_and_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("sidetrace-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "[[route]]\nprefix = \"/m/\"\nupstream = \"http://127.0.0.1:9/base\"\nprotocol = \"anthropic\"\n[capture]\nmax_body = 1024\n",
        )
        .unwrap();
        let c = ProxyConfig::load(Some(&good), Overrides::default()).unwrap();
        assert_eq!(c.routes[0].prefix, "/m");
        assert_eq!(c.routes[0].protocol, RouteProtocol::Anthropic);
        assert_eq!(c.capture_max_body, 1024);
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[[route]]\nprefix = \"/m\"\nupstrem = \"x\"\n").unwrap();
        let err = ProxyConfig::load(Some(&bad), Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("upstrem"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
