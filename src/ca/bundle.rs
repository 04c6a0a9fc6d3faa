//! One PEM file holding the system's trusted roots plus sidetrace's CA, for
//! tools that take a single bundle (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`,
//! `CURL_CA_BUNDLE`): with it they trust intercepted hosts and, for what
//! sidetrace tunnels without intercepting, everything they trusted before.
//!
//! The system roots come from rustls-native-certs (which honours
//! `SSL_CERT_FILE` / `SSL_CERT_DIR`). If none can be loaded this is an error,
//! not a bundle holding only our CA: such a bundle would make every TLS
//! connection that is not intercepted fail. (The compiled-in webpki roots
//! that `crate::tls` falls back to are trust anchors without their
//! certificates, so they cannot be written as PEM.) Duplicates, including a
//! copy of our own CA already in the system store, are written once.

use std::collections::HashSet;

use base64::Engine as _;
use rustls_pki_types::CertificateDer;

use super::CaError;

/// A bundle, ready to write.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub pem: String,
    /// How many system roots it holds (besides sidetrace's CA).
    pub system_roots: usize,
    /// System certificate files or entries that could not be read (skipped).
    pub unreadable: Vec<String>,
}

impl Bundle {
    /// Writes the bundle to `path`: mode 0644, atomically replacing any
    /// existing file (a reader never sees half a bundle).
    pub fn write_to(&self, path: &std::path::Path) -> Result<(), CaError> {
        super::store::replace(path, self.pem.as_bytes(), 0o644)
    }
}

pub(super) fn build(ca_der: &CertificateDer<'_>, ca_fingerprint: &str) -> Result<Bundle, CaError> {
    let native = rustls_native_certs::load_native_certs();
    let unreadable = native.errors.iter().map(|e| e.to_string()).collect();
    assemble(&native.certs, unreadable, ca_der, ca_fingerprint)
}

fn assemble(
    system: &[CertificateDer<'_>],
    unreadable: Vec<String>,
    ca_der: &CertificateDer<'_>,
    ca_fingerprint: &str,
) -> Result<Bundle, CaError> {
    let mut seen: HashSet<&[u8]> = HashSet::new();
    seen.insert(ca_der.as_ref());
    let mut roots = String::new();
    let mut system_roots = 0;
    for cert in system {
        if seen.insert(cert.as_ref()) {
            roots.push_str(&encode_certificate(cert));
            system_roots += 1;
        }
    }
    if system_roots == 0 {
        let why = if unreadable.is_empty() {
            "none were found".to_owned()
        } else {
            unreadable.join("; ")
        };
        return Err(CaError::NoSystemRoots(why));
    }
    let mut pem = format!(
        "# CA bundle written by `sidetrace ca bundle`: {system_roots} system roots, then sidetrace's CA.\n"
    );
    pem.push_str(&roots);
    pem.push_str(&format!(
        "# sidetrace local CA (SHA-256 {ca_fingerprint})\n"
    ));
    pem.push_str(&encode_certificate(ca_der));
    Ok(Bundle {
        pem,
        system_roots,
        unreadable,
    })
}

/// A DER certificate as PEM: base64 in 64-column lines, LF line endings.
pub(super) fn encode_certificate(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject as _;

    #[test]
    fn system_roots_then_our_ca_each_once() {
        let der = |b: &[u8]| CertificateDer::from(b.to_vec());
        let ca = der(b"our ca");
        let system = [
            der(b"root one"),
            der(b"our ca"),
            der(b"root two"),
            der(b"root one"),
        ];
        let bundle = assemble(&system, vec![], &ca, "AB:CD").unwrap();
        assert_eq!(bundle.system_roots, 2);
        let certs: Vec<_> = CertificateDer::pem_slice_iter(bundle.pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        let bodies: Vec<&[u8]> = certs.iter().map(|c| c.as_ref()).collect();
        assert_eq!(bodies, [&b"root one"[..], b"root two", b"our ca"]);
        assert!(bundle.pem.contains("# sidetrace local CA (SHA-256 AB:CD)"));
    }

    #[test]
    fn no_system_roots_is_an_error_not_a_ca_only_bundle() {
        let ca = CertificateDer::from(b"our ca".to_vec());
        let err = assemble(
            std::slice::from_ref(&ca),
            vec!["/etc/ssl: gone".into()],
            &ca,
            "AB",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/etc/ssl: gone") && err.contains("SSL_CERT_FILE"),
            "{err}"
        );
    }

    #[test]
    fn pem_encoding_round_trips() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let pem = encode_certificate(&der);
        assert!(pem.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
        let back = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(back.as_ref(), der.as_slice());
    }
}
