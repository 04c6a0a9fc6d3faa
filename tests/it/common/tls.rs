//! A throwaway CA and a server certificate for 127.0.0.1/localhost, for
//! testing upstream TLS with `--upstream-ca`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct TestPki {
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
    /// The server's certificate and key, for servers outside this process.
    pub cert_pem: String,
    pub key_pem: String,
}

/// A `TestPki` written out for a server or client in another process.
pub struct PemFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl TestPki {
    /// Writes the server's certificate and key and the CA into `dir`.
    pub fn write_pems(&self, dir: &Path) -> PemFiles {
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        PemFiles {
            cert: write("server.pem", &self.cert_pem),
            key: write("server-key.pem", &self.key_pem),
            ca: write("mock-ca.pem", &self.ca_pem),
        }
    }
}

pub fn pki(alpn: &[&[u8]]) -> TestPki {
    pki_for(alpn, &[])
}

/// Like `pki`, the certificate also naming `hosts` (real provider names,
/// reached through `--resolve`).
pub fn pki_for(alpn: &[&[u8]], hosts: &[&str]) -> TestPki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sidetrace test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let mut names = vec!["localhost".to_owned()];
    names.extend(hosts.iter().map(|h| (*h).to_owned()));
    let mut leaf = CertificateParams::new(names).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let leaf_key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&leaf_key, &ca).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TestPki {
        ca_pem: ca.pem(),
        server_config: Arc::new(config),
        cert_pem: cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}
