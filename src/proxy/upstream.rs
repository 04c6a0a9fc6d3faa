//! The client side: one pooled HTTP client for all upstreams, speaking
//! HTTP/1.1 or h2 (chosen by ALPN) over rustls (see `crate::tls`), trusting
//! the system roots, the webpki roots, and any `--upstream-ca`. Address
//! overrides (`--resolve HOST:PORT=ADDR`) change where the TCP connection
//! goes, never the name TLS checks.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tower_service::Service;

use super::tee::RequestBody;

pub type UpstreamClient = Client<HttpsConnector<Connector>, RequestBody>;

pub use crate::tls::TlsSetupError as UpstreamSetupError;

/// `(host, port)` → the address to connect to instead.
pub type Overrides = Arc<HashMap<(String, u16), SocketAddr>>;

pub fn client(
    extra_ca: Option<&Path>,
    connect_timeout: Duration,
    overrides: Overrides,
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
        .wrap_connector(Connector {
            inner: http,
            overrides,
        });
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .build(https))
}

/// The TCP connector, with address overrides applied.
#[derive(Clone)]
pub struct Connector {
    inner: HttpConnector,
    overrides: Overrides,
}

impl Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = <HttpConnector as Service<Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let target = override_for(&self.overrides, &uri)
            .and_then(|addr| format!("http://{addr}").parse::<Uri>().ok())
            .unwrap_or(uri);
        Box::pin(self.inner.call(target))
    }
}

fn default_port(uri: &Uri) -> u16 {
    uri.port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        })
}

fn override_for(overrides: &Overrides, uri: &Uri) -> Option<SocketAddr> {
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    overrides
        .get(&(host.to_ascii_lowercase(), default_port(uri)))
        .copied()
}

/// A plain TCP connection to `host:port` (for blind CONNECT tunnels), with
/// the overrides applied.
pub async fn connect_tcp(
    overrides: &Overrides,
    host: &str,
    port: u16,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let addr = overrides.get(&(host.to_ascii_lowercase(), port)).copied();
    let connecting = async {
        match addr {
            Some(a) => TcpStream::connect(a).await,
            None => TcpStream::connect((host, port)).await,
        }
    };
    let stream = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no connection within {}",
                    humantime::format_duration(timeout)
                ),
            )
        })??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
