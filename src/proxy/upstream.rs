//! The client side: one pooled HTTP client for all upstreams, speaking
//! HTTP/1.1 or h2 (chosen by ALPN) over rustls with the `ring` provider,
//! trusting the system roots, the webpki roots, and any `--upstream-ca`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::tee::RequestBody;

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, RequestBody>;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    #[error("upstream CA file {0}: {1}")]
    Ca(String, String),
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
}

pub fn client(
    extra_ca: Option<&Path>,
    connect_timeout: Duration,
) -> Result<UpstreamClient, UpstreamSetupError> {
    let tls = tls_config(extra_ca)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .build(https))
}

fn tls_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, UpstreamSetupError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "some system CA certificates could not be read");
    }
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(system_roots = added, "loaded system CA certificates");
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let ca_err = |e: String| UpstreamSetupError::Ca(path.display().to_string(), e);
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| ca_err(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| ca_err(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_err("no PEM certificates in it".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
