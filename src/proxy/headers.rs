//! Header rules at the proxy boundary: hop-by-hop headers (RFC 9110 §7.6.1,
//! plus any named in `Connection`) and sidetrace's own `Sidetrace-*` headers
//! stop here; everything else passes untouched.

use http::HeaderMap;
use http::header::{self, HeaderName};

const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Legacy hop-by-hop headers that have no constant in `http`.
const HOP_BY_HOP_LEGACY: &[&str] = &["keep-alive", "proxy-connection"];

pub fn is_sidetrace_header(name: &HeaderName) -> bool {
    name.as_str()
        .get(..10)
        .is_some_and(|p| p.eq_ignore_ascii_case("sidetrace-"))
}

/// Removes what must not cross the proxy, in place.
pub fn strip(headers: &mut HeaderMap) {
    // Headers listed in `Connection` are hop-by-hop for this connection only.
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP) {
        headers.remove(name);
    }
    for name in HOP_BY_HOP_LEGACY {
        headers.remove(*name);
    }
    let ours: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_sidetrace_header(n))
        .cloned()
        .collect();
    for name in ours {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_sidetrace_only() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-trace-me".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-trace-me", "1".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("sidetrace-sponsor", "alice".parse().unwrap());
        h.insert("Sidetrace-Change-Id", "!1".parse().unwrap());
        h.insert("traceparent", "00-abc-def-01".parse().unwrap());
        h.insert("accept-encoding", "zstd,gzip".parse().unwrap());
        h.insert("authorization", "Bearer k".parse().unwrap());
        strip(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
        left.sort();
        assert_eq!(left, ["accept-encoding", "authorization", "traceparent"]);
    }
}
