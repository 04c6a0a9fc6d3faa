//! Keeps secrets out of the record: credential headers are dropped, and the
//! credential an agent used becomes a short keyed fingerprint, so records can
//! tell agents apart without ever holding a key.

use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use sha2::Sha256;

use super::Header;

/// Header-name fragments that mark a header as carrying a secret.
const SECRET_NAME_FRAGMENTS: &[&str] = &[
    "authorization",
    "api-key",
    "apikey",
    "token",
    "secret",
    "password",
    "cookie",
    "session-key",
];

/// Headers that carry the agent's credential for the upstream, in order of preference.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "x-api-key", "api-key", "x-goog-api-key"];

pub fn is_secret_header(name: &str) -> bool {
    // Called for every header of every request and response: compared in
    // place, not lowercased into a new string first.
    let name = name.as_bytes();
    SECRET_NAME_FRAGMENTS.iter().any(|f| {
        name.windows(f.len())
            .any(|w| w.eq_ignore_ascii_case(f.as_bytes()))
    })
}

/// The headers worth keeping in the record, secrets removed.
pub fn recorded_headers(headers: &HeaderMap) -> Vec<Header> {
    headers
        .iter()
        .filter(|(name, _)| !is_secret_header(name.as_str()))
        .map(|(name, value)| Header {
            name: name.as_str().to_owned(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        })
        .collect()
}

/// Keyed fingerprints of credentials. The key is per journal, so fingerprints
/// are comparable within one journal and useless for guessing keys elsewhere.
#[derive(Clone)]
pub struct Fingerprinter {
    key: [u8; 32],
}

impl std::fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprinter(..)")
    }
}

impl Fingerprinter {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// The fingerprint of the credential in `headers`, or "" when there is none.
    pub fn credential(&self, headers: &HeaderMap) -> String {
        for name in CREDENTIAL_HEADERS {
            if let Some(value) = headers.get(*name) {
                let raw = value.as_bytes();
                let secret = raw
                    .strip_prefix(b"Bearer ")
                    .or_else(|| raw.strip_prefix(b"bearer "))
                    .unwrap_or(raw);
                if secret.is_empty() {
                    continue;
                }
                return self.fingerprint(secret);
            }
        }
        String::new()
    }

    pub fn fingerprint(&self, secret: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC accepts keys of any length");
        mac.update(secret);
        let out = mac.finalize().into_bytes();
        format!("hmac-sha256:{}", hex::encode(&out[..8]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_header_names_match_in_any_case_and_position() {
        for name in [
            "Authorization",
            "PROXY-AUTHORIZATION",
            "X-Api-Key",
            "x-goog-apikey",
            "X-Auth-Token",
            "client-SECRET",
            "Set-Cookie",
            "x-password",
            "anthropic-session-key",
        ] {
            assert!(is_secret_header(name), "{name} is a secret header");
        }
        for name in [
            "",
            "tok",
            "content-type",
            "anthropic-version",
            "x-request-id",
            "api-version",
        ] {
            assert!(!is_secret_header(name), "{name:?} is not a secret header");
        }
    }

    #[test]
    fn secrets_never_recorded() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer sk-live-123".parse().unwrap());
        h.insert("x-api-key", "sk-ant-123".parse().unwrap());
        h.insert("cookie", "a=b".parse().unwrap());
        h.insert("sidetrace-sponsor-token", "eyJ".parse().unwrap());
        h.insert("anthropic-version", "2023-06-01".parse().unwrap());
        let kept = recorded_headers(&h);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].name, "anthropic-version");
    }

    #[test]
    fn fingerprint_is_keyed_and_stable() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer sk-live-123".parse().unwrap());
        let a = Fingerprinter::new([1; 32]);
        let b = Fingerprinter::new([2; 32]);
        assert_eq!(a.credential(&h), a.credential(&h));
        assert_ne!(a.credential(&h), b.credential(&h));
        assert!(!a.credential(&h).contains("sk-live"));
        let mut x = HeaderMap::new();
        x.insert("x-api-key", "sk-live-123".parse().unwrap());
        assert_eq!(
            a.credential(&h),
            a.credential(&x),
            "same key, same fingerprint"
        );
        assert_eq!(a.credential(&HeaderMap::new()), "");
    }
}
