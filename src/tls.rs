//! Client-side TLS, shared by the upstream client and the OTLP exporter:
//! rustls with the `ring` provider, trusting the system roots, the webpki
//! roots and any extra CA file, optionally presenting a client certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("CA file {0}: {1}")]
    Ca(String, String),
    #[error("client certificate {0}: {1}")]
    ClientCert(String, String),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A client certificate and its key, both PEM files.
#[derive(Debug, Clone, Copy)]
pub struct ClientIdentity<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
}

pub fn client_config(
    extra_ca: Option<&Path>,
    identity: Option<ClientIdentity<'_>>,
) -> Result<rustls::ClientConfig, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "some system CA certificates could not be read");
    }
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(system_roots = added, "loaded system CA certificates");
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let ca_err = |e: String| TlsSetupError::Ca(path.display().to_string(), e);
        let certs = read_certs(path).map_err(ca_err)?;
        for cert in certs {
            roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let err = |e: String| TlsSetupError::ClientCert(id.cert.display().to_string(), e);
            let chain = read_certs(id.cert).map_err(err)?;
            let key = PrivateKeyDer::from_pem_file(id.key)
                .map_err(|e| err(format!("key {}: {e}", id.key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| err(e.to_string()))?
        }
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificates in it".into());
    }
    Ok(certs)
}
