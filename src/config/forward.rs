//! Forward-proxy settings: which CONNECT targets are intercepted (and as
//! which protocol), where the CA lives, upstream address overrides
//! (`--resolve`), and the credentials a shared proxy may require.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

use crate::capture::api::RouteProtocol;

/// Model API hosts intercepted by default.
pub const DEFAULT_INTERCEPT_HOSTS: &[&str] = &[
    "api.openai.com",
    "*.openai.azure.com",
    "*.cognitiveservices.azure.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com",
    "api.mistral.ai",
    "api.groq.com",
    "api.deepseek.com",
    "api.x.ai",
    "api.together.xyz",
    "api.fireworks.ai",
    "openrouter.ai",
    "api.cohere.com",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterceptSection {
    /// Hosts whose TLS is terminated and whose requests are recorded like a
    /// reverse route (replaces the default list).
    pub hosts: Option<Vec<String>>,
    /// Hosts intercepted as MCP servers (added to `hosts`).
    #[serde(default)]
    pub mcp_hosts: Vec<String>,
    /// Where sidetrace's CA key and certificate live.
    pub ca_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardProxySection {
    /// `USER:PASSWORD` pairs accepted in `Proxy-Authorization` (none: no auth).
    #[serde(default)]
    pub auth: Vec<String>,
}

/// Flag values (each also a `SIDETRACE_*` variable).
#[derive(Debug, Default, Clone)]
pub struct ForwardFlags {
    pub resolve: Vec<String>,
    pub intercept_hosts: Vec<String>,
    pub ca_dir: Option<PathBuf>,
    pub proxy_auth: Vec<String>,
}

/// A host name pattern: exact, or `*.example.com` for any subdomain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern(String);

impl HostPattern {
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self.0.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            None => host == self.0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ForwardConfig {
    pub intercept: Vec<HostPattern>,
    pub intercept_mcp: Vec<HostPattern>,
    pub ca_dir: PathBuf,
    /// `(host, port)` → the address to connect to instead.
    pub resolve: HashMap<(String, u16), SocketAddr>,
    /// Accepted `Proxy-Authorization` credentials; empty means none needed.
    pub proxy_auth: Vec<(String, String)>,
}

impl ForwardConfig {
    /// How a CONNECT target is handled: intercepted as this protocol, or tunnelled (None).
    pub fn intercepts(&self, host: &str) -> Option<RouteProtocol> {
        if self.intercept_mcp.iter().any(|p| p.matches(host)) {
            Some(RouteProtocol::Mcp)
        } else if self.intercept.iter().any(|p| p.matches(host)) {
            Some(RouteProtocol::Auto)
        } else {
            None
        }
    }

    /// Where to connect for `host:port`.
    pub fn address_for(&self, host: &str, port: u16) -> Option<SocketAddr> {
        self.resolve
            .get(&(host.to_ascii_lowercase(), port))
            .copied()
    }
}

pub fn section(
    intercept: InterceptSection,
    proxy: ForwardProxySection,
    file_resolve: Vec<String>,
    flags: ForwardFlags,
    errors: &mut Vec<String>,
) -> ForwardConfig {
    let mut hosts: Vec<String> = match (flags.intercept_hosts.is_empty(), intercept.hosts) {
        (false, _) => flags.intercept_hosts.clone(),
        (true, Some(h)) => h,
        (true, None) => DEFAULT_INTERCEPT_HOSTS
            .iter()
            .map(|h| (*h).to_owned())
            .collect(),
    };
    hosts.retain(|h| !h.trim().is_empty());
    let intercept_hosts = patterns("intercept.hosts (--intercept-host)", &hosts, errors);
    let intercept_mcp = patterns("intercept.mcp_hosts", &intercept.mcp_hosts, errors);
    let rules = if flags.resolve.is_empty() {
        file_resolve
    } else {
        flags.resolve
    };
    let mut resolve = HashMap::new();
    for rule in &rules {
        match parse_resolve(rule) {
            Ok((key, addr)) => {
                resolve.insert(key, addr);
            }
            Err(e) => errors.push(format!("upstream.resolve (--resolve) {rule:?}: {e}")),
        }
    }
    let auth_specs = if flags.proxy_auth.is_empty() {
        proxy.auth
    } else {
        flags.proxy_auth
    };
    let mut proxy_auth = Vec::new();
    for spec in &auth_specs {
        match spec.split_once(':') {
            Some((user, pass)) if !user.is_empty() && !pass.is_empty() => {
                proxy_auth.push((user.to_owned(), pass.to_owned()))
            }
            _ => errors.push(
                "forward_proxy.auth (--proxy-auth): expected USER:PASSWORD, both non-empty".into(),
            ),
        }
    }
    ForwardConfig {
        intercept: intercept_hosts,
        intercept_mcp,
        ca_dir: flags
            .ca_dir
            .or(intercept.ca_dir)
            .unwrap_or_else(crate::ca::Authority::default_dir),
        resolve,
        proxy_auth,
    }
}

fn patterns(key: &str, hosts: &[String], errors: &mut Vec<String>) -> Vec<HostPattern> {
    let mut out = Vec::new();
    for h in hosts {
        let h = h.trim().trim_end_matches('.').to_ascii_lowercase();
        let bare = h.strip_prefix("*.").unwrap_or(&h);
        let ok = !bare.is_empty()
            && !bare.contains('*')
            && bare
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
        if ok {
            out.push(HostPattern(h));
        } else {
            errors.push(format!(
                "{key}: {h:?} is not a host name or a *.domain wildcard"
            ));
        }
    }
    out
}

/// `HOST:PORT=ADDR`, ADDR an IP (same port) or IP:PORT (`[v6]:PORT`).
fn parse_resolve(rule: &str) -> Result<((String, u16), SocketAddr), String> {
    let (target, addr) = rule
        .split_once('=')
        .ok_or("expected HOST:PORT=ADDR, e.g. api.openai.com:443=127.0.0.1:8443")?;
    let (host, port) = target
        .rsplit_once(':')
        .ok_or("the target needs a port: HOST:PORT")?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("the target has no host".into());
    }
    let addr = match addr.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => match addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) => {
                return Err(format!(
                    "{addr:?} is not an IP address or IP:PORT (names are not resolved here)"
                ));
            }
        },
    };
    Ok(((host.to_ascii_lowercase(), port), addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_hosts_and_subdomains() {
        let p = HostPattern("*.openai.azure.com".into());
        assert!(p.matches("myco.openai.azure.com"));
        assert!(p.matches("A.B.openai.azure.com."));
        assert!(!p.matches("openai.azure.com"));
        assert!(!p.matches("evilopenai.azure.com"));
        let exact = HostPattern("api.openai.com".into());
        assert!(exact.matches("API.openai.com"));
        assert!(!exact.matches("x.api.openai.com"));
    }

    #[test]
    fn resolve_rules() {
        let ((h, p), a) = parse_resolve("api.openai.com:443=127.0.0.1:8443").unwrap();
        assert_eq!(
            (h.as_str(), p, a.to_string().as_str()),
            ("api.openai.com", 443, "127.0.0.1:8443")
        );
        let (_, a) = parse_resolve("API.anthropic.com:443=::1").unwrap();
        assert_eq!(a.to_string(), "[::1]:443");
        assert!(parse_resolve("api.openai.com=1.2.3.4").is_err());
        assert!(parse_resolve("api.openai.com:443=localhost").is_err());
    }

    #[test]
    fn every_problem_is_listed() {
        let mut errors = Vec::new();
        let c = section(
            InterceptSection {
                hosts: Some(vec!["good.example.com".into(), "bad host".into()]),
                mcp_hosts: vec!["mcp.example.com".into()],
                ca_dir: None,
            },
            ForwardProxySection {
                auth: vec!["nopass".into()],
            },
            vec!["x=1".into()],
            ForwardFlags::default(),
            &mut errors,
        );
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert_eq!(c.intercepts("good.example.com"), Some(RouteProtocol::Auto));
        assert_eq!(c.intercepts("mcp.example.com"), Some(RouteProtocol::Mcp));
        assert_eq!(c.intercepts("elsewhere.example.com"), None);
    }
}
