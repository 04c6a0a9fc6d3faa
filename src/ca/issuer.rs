//! What goes into the certificates, built with rcgen: the CA's own
//! self-signed certificate and the short-lived leaf certificates it issues for
//! intercepted hosts, plus the check that a loaded CA can actually issue
//! leaves a client would accept. Pure functions: no files, no caches.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use time::{Duration, OffsetDateTime};

use super::CaError;

/// Certificates start a day in the past, so a client whose clock is a little
/// behind still accepts them.
pub(super) const BACKDATE: Duration = Duration::days(1);
/// The CA certificate's lifetime.
pub(super) const CA_VALIDITY: Duration = Duration::days(3650);
/// A leaf certificate's lifetime: short, and far inside the CA's.
pub(super) const LEAF_VALIDITY: Duration = Duration::days(30);

/// The name a leaf certificate is issued for: a DNS name (lowercase, no
/// trailing dot) or an IP address. `as_str` is the leaf cache's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LeafName {
    Dns(String),
    Ip(IpAddr),
}

impl LeafName {
    /// Accepts what a CONNECT line or an SNI extension carries: `host`,
    /// `HOST.`, `1.2.3.4`, `::1` or `[::1]` (no port).
    pub(super) fn parse(host: &str) -> Result<Self, CaError> {
        let invalid = |reason: &str| CaError::InvalidHost {
            host: host.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = host.trim();
        let unbracketed = trimmed
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(trimmed);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        let name = unbracketed
            .strip_suffix('.')
            .unwrap_or(unbracketed)
            .to_ascii_lowercase();
        match ServerName::try_from(name.as_str()) {
            Ok(ServerName::DnsName(_)) => Ok(Self::Dns(name)),
            _ => Err(invalid(
                "not a DNS name or IP address (pass the host without its port)",
            )),
        }
    }

    pub(super) fn as_string(&self) -> String {
        match self {
            Self::Dns(name) => name.clone(),
            Self::Ip(ip) => ip.to_string(),
        }
    }
}

/// A fresh ECDSA P-256 key pair (for the CA and for every leaf).
pub(super) fn new_key() -> Result<KeyPair, CaError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::Generate)
}

/// The CA certificate's parameters: CA with path length 0 (it signs leaves
/// only), keyCertSign + cRLSign, valid from yesterday for ten years.
pub(super) fn ca_params(now: OffsetDateTime) -> CertificateParams {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, ca_common_name());
    name.push(DnType::OrganizationName, "sidetrace");
    let mut params = CertificateParams::default();
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    params.serial_number = Some(random_serial());
    params
}

/// Issues a leaf for `name`, signed by `issuer`: SAN = the name, EKU
/// serverAuth, valid from `now - BACKDATE` to `now + LEAF_VALIDITY`.
/// Returns the certificate and its (new) key.
pub(super) fn issue_leaf(
    issuer: &Issuer<'_, KeyPair>,
    name: &LeafName,
    now: OffsetDateTime,
) -> Result<(CertificateDer<'static>, KeyPair), CaError> {
    let mut params = CertificateParams::default();
    let text = name.as_string();
    let mut dn = DistinguishedName::new();
    // X.509 caps a common name at 64 characters; the SAN is what clients check.
    if text.len() <= 64 {
        dn.push(DnType::CommonName, text.as_str());
    }
    params.distinguished_name = dn;
    params.subject_alt_names = vec![match name {
        LeafName::Ip(ip) => SanType::IpAddress(*ip),
        LeafName::Dns(dns) => {
            SanType::DnsName(dns.as_str().try_into().map_err(|e| CaError::InvalidHost {
                host: dns.clone(),
                reason: format!("{e}"),
            })?)
        }
    }];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = now + LEAF_VALIDITY;
    params.serial_number = Some(random_serial());
    let key = new_key()?;
    let cert = params.signed_by(&key, issuer).map_err(CaError::Generate)?;
    Ok((cert.der().clone(), key))
}

/// Issues a throwaway leaf and verifies it as a TLS client trusting only
/// `ca` would, now (an error says why it fails: expired, not a CA, ...) and
/// in a month (a warning, returned, says the CA expires soon).
pub(super) fn check_issues_trusted_leaves(
    issuer: &Issuer<'_, KeyPair>,
    ca: &CertificateDer<'static>,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<String>, String> {
    const PROBE: &str = "ca-check.sidetrace.invalid";
    let now = OffsetDateTime::now_utc();
    let name = LeafName::Dns(PROBE.to_owned());
    let (leaf, _key) = issue_leaf(issuer, &name, now).map_err(|e| e.to_string())?;
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|e| format!("not usable as a trust anchor: {e}"))?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(PROBE).map_err(|e| e.to_string())?;
    let verify_at = |t: OffsetDateTime| {
        let secs = u64::try_from(t.unix_timestamp()).unwrap_or(0);
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
        verifier.verify_server_cert(&leaf, &[], &server_name, &[], at)
    };
    verify_at(now).map_err(|e| format!("a certificate it issues does not verify: {e}"))?;
    let soon = LEAF_VALIDITY - Duration::days(1);
    Ok(verify_at(now + soon).err().map(|e| {
        format!(
            "certificates it issues stop verifying within {} days ({e})",
            soon.whole_days()
        )
    }))
}

/// A positive 128-bit random serial number.
fn random_serial() -> SerialNumber {
    let mut bytes = rand::random::<[u8; 16]>();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // never zero, never shortened
    SerialNumber::from_slice(&bytes)
}

/// "sidetrace local CA (host)", so several machines' CAs can be told apart
/// in a trust store; plain "sidetrace local CA" if the host name is unknown.
fn ca_common_name() -> String {
    const BASE: &str = "sidetrace local CA";
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                .take(64 - BASE.len() - 3)
                .collect::<String>()
        })
        .unwrap_or_default();
    if host.is_empty() {
        BASE.to_owned()
    } else {
        format!("{BASE} ({host})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_names_are_normalized() {
        assert_eq!(
            LeafName::parse("API.OpenAI.com.").unwrap(),
            LeafName::Dns("api.openai.com".into())
        );
        assert_eq!(
            LeafName::parse("[::1]").unwrap(),
            LeafName::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            LeafName::parse("127.0.0.1").unwrap().as_string(),
            "127.0.0.1"
        );
        for bad in ["", "api.openai.com:443", "a b", "[::1]:443"] {
            let err = LeafName::parse(bad).unwrap_err().to_string();
            assert!(err.contains("not a DNS name"), "{bad}: {err}");
        }
    }

    #[test]
    fn ca_name_fits_a_common_name() {
        let cn = ca_common_name();
        assert!(
            cn.starts_with("sidetrace local CA") && cn.len() <= 64,
            "{cn}"
        );
    }

    #[test]
    fn serials_are_positive_and_full_length() {
        let s = random_serial().to_bytes();
        assert_eq!(s.len(), 16);
        assert!(s[0] & 0x80 == 0 && s[0] != 0);
    }
}
