//! The environment `sidetrace run` gives the command it runs: every common
//! HTTP stack pointed at the recorder as its proxy and told to trust
//! sidetrace's CA, and the `SIDETRACE_*` settings a `sidetrace mcp` wrapper
//! started by the agent needs to record into the same journal and execution.

use std::path::Path;

/// Hosts the command reaches directly: its own loopback services (and the
/// recorder itself) are not worth intercepting.
pub const NO_PROXY: &str = "localhost,127.0.0.1";

/// Where the command finds the recorder and the CA.
pub struct Wiring<'a> {
    /// `http://[user:password@]host:port` of the recorder.
    pub proxy_url: &'a str,
    /// sidetrace's CA certificate alone (for stacks that add to their roots).
    pub ca_cert: &'a Path,
    /// The system roots plus sidetrace's CA (for stacks that replace theirs).
    pub ca_bundle: &'a Path,
}

/// The variables to set, as (name, value) pairs.
pub fn proxy_variables(w: &Wiring<'_>) -> Vec<(String, String)> {
    let cert = w.ca_cert.display().to_string();
    let bundle = w.ca_bundle.display().to_string();
    let mut vars = Vec::new();
    // Both spellings: curl reads only the lowercase http_proxy, others the
    // uppercase one, and a stale value of either would bypass the recorder.
    for name in ["HTTPS_PROXY", "HTTP_PROXY"] {
        vars.push((name.to_owned(), w.proxy_url.to_owned()));
        vars.push((name.to_ascii_lowercase(), w.proxy_url.to_owned()));
    }
    vars.push(("NO_PROXY".into(), NO_PROXY.into()));
    vars.push(("no_proxy".into(), NO_PROXY.into()));
    // Node.js: extra roots; and (Node 24+) let built-in fetch use the proxy.
    vars.push(("NODE_EXTRA_CA_CERTS".into(), cert));
    vars.push(("NODE_USE_ENV_PROXY".into(), "1".into()));
    // OpenSSL, Python (ssl, httpx, requests), curl, git.
    for name in [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
    ] {
        vars.push((name.into(), bundle.clone()));
    }
    vars
}

/// `http://user:password@host:port` from `http://host:port`: credentials in
/// the URL are sent as `Proxy-Authorization` by every common client.
pub fn with_credentials(url: &str, user: &str, password: &str) -> Result<String, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a URL (expected http://host:port)"))?;
    if scheme != "http" {
        return Err(format!(
            "{url:?}: the recorder is reached over plain http:// (TLS is inside the tunnel)"
        ));
    }
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        return Err(format!("{url:?}: expected http://host:port"));
    }
    Ok(format!(
        "{scheme}://{}:{}@{rest}",
        percent_encode(user),
        percent_encode(password)
    ))
}

/// Userinfo escaping (RFC 3986 unreserved characters pass).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stack_is_pointed_at_the_recorder() {
        let vars = proxy_variables(&Wiring {
            proxy_url: "http://127.0.0.1:9",
            ca_cert: Path::new("/ca/ca-cert.pem"),
            ca_bundle: Path::new("/run/bundle.pem"),
        });
        let get = |n: &str| {
            vars.iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("{n} is not set"))
        };
        assert_eq!(get("HTTPS_PROXY"), "http://127.0.0.1:9");
        assert_eq!(get("http_proxy"), "http://127.0.0.1:9");
        assert_eq!(get("NO_PROXY"), "localhost,127.0.0.1");
        assert_eq!(get("NODE_EXTRA_CA_CERTS"), "/ca/ca-cert.pem");
        for n in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"] {
            assert_eq!(get(n), "/run/bundle.pem");
        }
    }

    #[test]
    fn credentials_go_into_the_proxy_url() {
        assert_eq!(
            with_credentials("http://10.0.0.1:4480/", "sidetrace-execution", "run 7/a").unwrap(),
            "http://sidetrace-execution:run%207%2Fa@10.0.0.1:4480"
        );
        assert_eq!(
            with_credentials("http://old:pw@proxy:1", "u", "p").unwrap(),
            "http://u:p@proxy:1"
        );
        assert!(with_credentials("https://proxy:1", "u", "p").is_err());
        assert!(with_credentials("proxy:1", "u", "p").is_err());
        assert!(with_credentials("http://proxy:1/path", "u", "p").is_err());
    }
}
