//! Configuration: built-in defaults, then the TOML file (`--config`), then
//! flags (each also readable from a `SIDETRACE_*` variable). Everything is
//! validated before any port is bound, and every problem is reported at once,
//! each naming its key and how to fix it.

mod checks;
pub mod export;
pub mod file;
pub mod forward;
pub mod identity;
pub mod units;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;

use crate::capture::api::RouteProtocol;
use crate::capture::context::{self, ContextRule};
use crate::journal::{Durability, JournalOptions, keys};
use crate::record::execution::ExecutionDefaults;

use checks::{addr, check_ca_file, duration, route};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4480";
pub const DEFAULT_ADMIN: &str = "127.0.0.1:4481";
pub const DEFAULT_UPSTREAM_TIMEOUT: &str = "10m";
pub const DEFAULT_CONNECT_TIMEOUT: &str = "10s";
pub const DEFAULT_DRAIN_TIMEOUT: &str = "30s";
pub const DEFAULT_CAPTURE_MAX_BODY: &str = "32MiB";
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1000;
pub const DEFAULT_CHECKPOINT_INTERVAL: &str = "60s";
pub const DEFAULT_SESSION_IDLE_TIMEOUT: &str = "30m";

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
    /// `--mcp-route PREFIX=URL`: MCP routes, added to the model routes.
    pub mcp_routes: Vec<String>,
    pub upstream_ca: Option<PathBuf>,
    pub upstream_timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub journal: Option<PathBuf>,
    pub capture_max_body: Option<String>,
    pub execution_id: Option<String>,
    pub drain_timeout: Option<String>,
    pub durability: Option<String>,
    pub signing_key: Option<PathBuf>,
    pub retention: Option<String>,
    pub journal_max_size: Option<String>,
    pub export: export::ExportFlags,
    pub identity: identity::IdentityFlags,
    pub forward: forward::ForwardFlags,
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
    pub journal: JournalOptions,
    /// How long executions are kept (`journal prune`), if limited.
    pub retention: Option<Retention>,
    pub capture_max_body: usize,
    pub execution: ExecutionDefaults,
    /// Who may sponsor requests, trusted issuers, correlation defaults.
    pub identity: identity::IdentityConfig,
    /// Session executions unused this long are closed.
    pub session_idle_timeout: Duration,
    /// How tool calls map to context references; tried in order.
    pub context_rules: Vec<ContextRule>,
    /// Replace secrets in stored and exported content.
    pub redact_secrets: bool,
    pub export: crate::export::config::ExportConfig,
    pub drain_timeout: Duration,
    /// Forward proxying: interception, the CA, address overrides, proxy auth.
    pub forward: forward::ForwardConfig,
}

/// A retention limit, as written and as a duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub text: String,
    pub duration: Duration,
}

/// Every problem found in the configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<String>);

impl ProxyConfig {
    pub fn load(config_file: Option<&Path>, o: Overrides) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        let mut f = match config_file {
            Some(p) => file::read(p, &mut errors).unwrap_or_default(),
            None => file::FileConfig::default(),
        };
        let (journal, retention) = journal_section(&o, f.journal, &mut errors);

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
        for spec in &o.mcp_routes {
            match spec.split_once('=') {
                Some((prefix, upstream)) => {
                    let key = format!("--mcp-route {spec:?}");
                    routes.extend(route(&key, prefix, upstream, RouteProtocol::Mcp, &mut errors));
                }
                None => errors.push(format!(
                    "--mcp-route {spec:?}: expected PREFIX=UPSTREAM_URL, e.g. /github=https://api.githubcopilot.com/mcp"
                )),
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
        let capture_max_body = checks::size(
            "capture.max_body (--capture-max-body)",
            o.capture_max_body.clone(),
            f.capture.max_body,
            Some(DEFAULT_CAPTURE_MAX_BODY),
            &mut errors,
        )
        .unwrap_or(0) as usize;

        let mut execution = ExecutionDefaults {
            execution_id: non_empty(o.execution_id.or(f.execution.id)),
            ..Default::default()
        };
        let identity = identity::section(
            f.sponsor,
            identity::CorrelationKeys {
                sponsor: f.execution.sponsor,
                change_id: f.execution.change_id,
                repository: f.execution.repository,
                branch: f.execution.branch,
                revision: f.execution.revision,
                pipeline_run_id: f.execution.pipeline_run_id,
                pipeline_url: f.execution.pipeline_url,
                job_id: f.execution.job_id,
            },
            o.identity.clone(),
            &|name| std::env::var(name).ok(),
            &mut errors,
        );
        if let Some(headers) = f.sessions.headers {
            for h in &headers {
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    errors.push(format!("sessions.headers: {h:?} is not a header name"));
                }
            }
            execution.session_headers = headers
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect();
        }
        let session_idle_timeout = duration(
            "sessions.idle_timeout",
            f.sessions.idle_timeout,
            DEFAULT_SESSION_IDLE_TIMEOUT,
            &mut errors,
        );
        let mut context_rules = f.context.tool;
        for (i, r) in context_rules.iter().enumerate() {
            if r.name.is_empty() || r.kind.is_empty() || r.argument.is_empty() {
                errors.push(format!(
                    "context.tool[{i}]: name, kind and argument must all be set"
                ));
            }
        }
        if f.context.builtin.unwrap_or(true) {
            context_rules.extend(context::default_rules());
        }
        let export = export::section(
            f.export,
            o.export.clone(),
            &|name| std::env::var(name).ok(),
            &mut errors,
        );
        let forward = forward::section(
            f.intercept,
            f.forward_proxy,
            std::mem::take(&mut f.upstream.resolve),
            o.forward.clone(),
            &mut errors,
        );
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
            journal,
            retention,
            capture_max_body,
            execution,
            identity,
            session_idle_timeout,
            context_rules,
            redact_secrets: f.redact.secrets.unwrap_or(true),
            export,
            drain_timeout,
            forward,
        })
    }
}

/// The `[journal]` section with its flags.
fn journal_section(
    o: &Overrides,
    f: file::JournalSection,
    errors: &mut Vec<String>,
) -> (JournalOptions, Option<Retention>) {
    let path = o
        .journal
        .clone()
        .or(f.path)
        .unwrap_or_else(crate::journal::default_path);
    if path.is_dir() {
        errors.push(format!(
            "journal.path (--journal) {} is a directory; give a file path such as {}/journal.db",
            path.display(),
            path.display()
        ));
    }
    let durability = match o.durability.clone().or(f.durability) {
        None => Durability::Batched,
        Some(d) => d.parse().unwrap_or_else(|e| {
            errors.push(format!("journal.durability (--durability): {e}"));
            Durability::Batched
        }),
    };
    let signing_key = o
        .signing_key
        .clone()
        .or(f.signing_key)
        .unwrap_or_else(|| keys::default_path(&path));
    if signing_key.is_dir() {
        errors.push(format!(
            "journal.signing_key (--signing-key) {} is a directory; give the key file's path",
            signing_key.display()
        ));
    }
    let checkpoint_every = f.checkpoint_every.unwrap_or(DEFAULT_CHECKPOINT_EVERY);
    if checkpoint_every == 0 {
        errors.push("journal.checkpoint_every must be at least 1".into());
    }
    let checkpoint_interval = duration(
        "journal.checkpoint_interval",
        f.checkpoint_interval,
        DEFAULT_CHECKPOINT_INTERVAL,
        errors,
    );
    let max_size = checks::size(
        "journal.max_size (--journal-max-size)",
        o.journal_max_size.clone(),
        f.max_size,
        None,
        errors,
    );
    let retention =
        o.retention
            .clone()
            .or(f.retention)
            .and_then(|text| match units::parse_duration(&text) {
                Ok(d) if !d.is_zero() => Some(Retention { text, duration: d }),
                Ok(_) => {
                    errors.push("journal.retention (--retention) must be longer than zero".into());
                    None
                }
                Err(e) => {
                    errors.push(format!("journal.retention (--retention): {e}"));
                    None
                }
            });
    (
        JournalOptions {
            path,
            durability,
            signing_key,
            checkpoint_every,
            checkpoint_interval,
            max_size,
        },
        retention,
    )
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
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
        assert_eq!(c.journal.durability, Durability::Batched);
        assert!(c.context_rules.len() > 10, "built-in context rules");
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
