//! The client side: one pooled HTTP client for all upstreams, speaking
//! HTTP/1.1 or h2 (chosen by ALPN) over rustls (see `crate::tls`), trusting
//! the system roots, the webpki roots, and any `--upstream-ca`.

use std::path::Path;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::tee::RequestBody;

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, RequestBody>;

pub use crate::tls::TlsSetupError as UpstreamSetupError;

pub fn client(
    extra_ca: Option<&Path>,
    connect_timeout: Duration,
) -> Result<UpstreamClient, UpstreamSetupError> {
    let tls = crate::tls::client_config(extra_ca, None)?;
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
