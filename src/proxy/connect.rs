//! sidetrace as the agent's `HTTPS_PROXY` / `HTTP_PROXY`: absolute-form
//! requests, and `CONNECT host:port` tunnels. A tunnel to a host on the
//! interception list is terminated with a certificate for that host from
//! sidetrace's own CA, and the requests inside it are handled exactly like
//! a reverse route to `https://host:port` (capture, journal, spans). Any
//! other tunnel is relayed blind, and recorded as where the agent went and
//! how much it said.
//!
//! Tunnels run as tasks of their own (the listener's connection is
//! upgraded away); they are tracked so shutdown drains them like any
//! connection, and cut at the drain timeout. A failed tunnel — the target
//! refuses, the client does not trust the CA — is recorded and answered;
//! the proxy itself is unaffected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::capture::api::RouteProtocol;
use crate::record::execution::HEADER_EXECUTION_ID;
use crate::record::redact::recorded_headers;
use crate::record::{
    Api, Completion, CompletionStatus, HttpExchange, Interaction, Timing, Tunnel, duration,
    timestamp,
};

use super::body::ProxyBody;
use super::forward::{self, ProxyState, Via};
use super::routes::{Resolved, origin_route};
use super::upstream;

/// The origin of an intercepted tunnel, for the requests inside it.
#[derive(Debug)]
pub struct Intercepted {
    pub host: String,
    pub port: u16,
    pub protocol: RouteProtocol,
    origin: Uri,
    /// The execution the CONNECT named, for the requests inside.
    execution: Option<HeaderValue>,
}

impl Intercepted {
    pub fn resolve<'a>(&self, uri: &'a Uri) -> Option<Resolved<'a>> {
        origin_route(self.origin.clone(), self.protocol, uri)
    }

    /// Gives a request inside the tunnel the execution its CONNECT named.
    pub fn tag(&self, headers: &mut HeaderMap) {
        if let Some(id) = &self.execution
            && !headers.contains_key(HEADER_EXECUTION_ID)
        {
            headers.insert(HEADER_EXECUTION_ID, id.clone());
        }
    }
}

/// The connections that outlive their listener request: tunnels. Shutdown
/// asks them to finish (`draining`), waits, then cuts them (`hard_stop`).
#[derive(Clone, Default)]
pub struct Tunnels {
    pub tracker: TaskTracker,
    pub draining: CancellationToken,
    pub hard_stop: CancellationToken,
}

/// An absolute-form request (`GET http://host/path`): routed to its origin.
pub fn absolute_form<'a>(state: &ProxyState, uri: &'a Uri) -> Option<Resolved<'a>> {
    let host = uri.host()?;
    let protocol = state
        .forward
        .config
        .intercepts(host)
        .unwrap_or(RouteProtocol::Auto);
    let origin: Uri = format!("{}://{}", uri.scheme_str()?, uri.authority()?)
        .parse()
        .ok()?;
    origin_route(origin, protocol, uri)
}

/// The user name that makes forward-proxy credentials name an execution:
/// `HTTPS_PROXY=http://sidetrace-execution:ID@host:port` (what `sidetrace run
/// --proxy` gives its command) records that command's traffic into `ID`, as
/// the `Sidetrace-Execution-Id` header does on a reverse route.
pub const EXECUTION_PROXY_USER: &str = "sidetrace-execution";

/// `user:password` of a Basic `Proxy-Authorization` header.
fn proxy_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let raw = headers
        .get(header::PROXY_AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, b64) = raw.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let (user, password) = String::from_utf8(decoded)
        .ok()?
        .split_once(':')
        .map(|(u, p)| (u.to_owned(), p.to_owned()))?;
    Some((user, password))
}

/// Copies an execution named by the proxy credentials into the
/// `Sidetrace-Execution-Id` header (stripped before forwarding), and marks
/// it as owned by whoever named it: this proxy neither opens nor closes it.
pub fn execution_from_credentials(state: &ProxyState, headers: &mut HeaderMap) {
    let Some((user, id)) = proxy_credentials(headers) else {
        return;
    };
    if user != EXECUTION_PROXY_USER || headers.contains_key(HEADER_EXECUTION_ID) {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        state.executions.adopt(&id);
        headers.insert(HEADER_EXECUTION_ID, value);
    }
}

/// A 407 when forward-proxy credentials are required and not given.
pub fn check_proxy_auth(state: &ProxyState, headers: &HeaderMap) -> Option<Response<ProxyBody>> {
    let accepted = &state.forward.config.proxy_auth;
    if accepted.is_empty() {
        return None;
    }
    let ok = proxy_credentials(headers)
        .is_some_and(|(u, p)| accepted.iter().any(|(au, ap)| *au == u && *ap == p));
    if ok {
        return None;
    }
    let mut resp = plain(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        "sidetrace requires proxy credentials: put them in the proxy URL, e.g. HTTPS_PROXY=http://USER:PASSWORD@host:port\n",
    );
    resp.headers_mut().insert(
        header::PROXY_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"sidetrace\""),
    );
    Some(resp)
}

/// Answers a CONNECT and starts its tunnel. Boxed: the requests inside an
/// intercepted tunnel go back through `forward::handle`, which calls this.
pub fn handle(
    state: Arc<ProxyState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<ProxyBody>> + Send>> {
    Box::pin(connect(state, peer, req))
}

async fn connect(
    state: Arc<ProxyState>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let start = SystemTime::now();
    let started = Instant::now();
    let Some((host, port)) = target(req.uri()) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "CONNECT needs a host:port target, e.g. CONNECT api.openai.com:443\n",
        );
    };
    if let Some(denied) = check_proxy_auth(&state, req.headers()) {
        return denied;
    }
    execution_from_credentials(&state, req.headers_mut());
    let execution = req.headers().get(HEADER_EXECUTION_ID).cloned();
    let scope = super::scope::scope(&state, req.headers(), start).await;
    let record = TunnelRecord {
        state: state.clone(),
        context: scope.context,
        headers: recorded_headers(req.headers()),
        client_version: forward::version_name(req.version()).to_owned(),
        peer,
        host: host.clone(),
        port,
        start,
        started,
    };
    match state.forward.config.intercepts(&host) {
        Some(protocol) => intercept(state, req, record, protocol, execution).await,
        None => tunnel(state, req, record).await,
    }
}

/// `host:port` of a CONNECT request (port 443 when absent).
fn target(uri: &Uri) -> Option<(String, u16)> {
    let authority = uri.authority()?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    (!host.is_empty()).then(|| (host, authority.port_u16().unwrap_or(443)))
}

async fn intercept(
    state: Arc<ProxyState>,
    req: Request<Incoming>,
    record: TunnelRecord,
    protocol: RouteProtocol,
    execution: Option<HeaderValue>,
) -> Response<ProxyBody> {
    let tls = match state.forward.tls_for(&record.host).await {
        Ok(c) => c,
        Err(e) => {
            let message = format!("sidetrace cannot intercept {}: {e}", record.host);
            tracing::error!(host = %record.host, error = %e, "TLS interception unavailable");
            record
                .finish(true, 502, CompletionStatus::Refused, &message, (0, 0))
                .await;
            return plain(StatusCode::BAD_GATEWAY, &format!("{message}\n"));
        }
    };
    // The default port stays implicit, as the agent would have written the URL.
    let origin = match record.port {
        443 => format!(
            "https://{}",
            authority(&record.host, 443).trim_end_matches(":443")
        ),
        port => format!("https://{}", authority(&record.host, port)),
    };
    let origin: Uri = match origin.parse() {
        Ok(o) => o,
        Err(_) => {
            return plain(
                StatusCode::BAD_REQUEST,
                "CONNECT target is not a valid host\n",
            );
        }
    };
    let target = Arc::new(Intercepted {
        host: record.host.clone(),
        port: record.port,
        protocol,
        origin,
        execution,
    });
    let tunnels = state.tunnels.clone();
    tunnels.tracker.spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "CONNECT upgrade failed");
                return;
            }
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let stream = match acceptor.accept(TokioIo::new(upgraded)).await {
            Ok(s) => s,
            Err(e) => {
                let message = format!(
                    "TLS handshake with the agent failed: {e}. Does the agent trust sidetrace's CA? (`sidetrace ca bundle`, NODE_EXTRA_CA_CERTS, SSL_CERT_FILE)"
                );
                tracing::warn!(host = %record.host, error = %e, "intercepted TLS handshake failed");
                record
                    .finish(true, 200, CompletionStatus::ClientDisconnected, &message, (0, 0))
                    .await;
                return;
            }
        };
        serve_intercepted(state, record.peer, stream, target).await;
    });
    established()
}

/// Serves the requests inside an intercepted tunnel, as the listener does.
async fn serve_intercepted<S>(
    state: Arc<ProxyState>,
    peer: SocketAddr,
    stream: S,
    target: Arc<Intercepted>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let tunnels = state.tunnels.clone();
    let via = Via::Tunnel(target);
    let svc = hyper::service::service_fn(move |req| {
        forward::handle(state.clone(), peer, req, via.clone())
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "intercepted connection ended with an error");
                }
                return;
            }
            _ = tunnels.draining.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tunnels.hard_stop.cancelled() => return,
        }
    }
}

async fn tunnel(
    state: Arc<ProxyState>,
    req: Request<Incoming>,
    record: TunnelRecord,
) -> Response<ProxyBody> {
    let upstream = match upstream::connect_tcp(
        &state.forward.overrides,
        &record.host,
        record.port,
        state.forward.connect_timeout,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            let message = format!(
                "sidetrace could not reach {}: {e}",
                authority(&record.host, record.port)
            );
            tracing::warn!(host = %record.host, port = record.port, error = %e, "CONNECT target unreachable");
            record
                .finish(
                    false,
                    502,
                    CompletionStatus::UpstreamUnreachable,
                    &message,
                    (0, 0),
                )
                .await;
            return plain(StatusCode::BAD_GATEWAY, &format!("{message}\n"));
        }
    };
    let tunnels = state.tunnels.clone();
    tunnels.tracker.spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "CONNECT upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(upgraded);
        let mut upstream = upstream;
        let copied = tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => r,
            _ = tunnels.hard_stop.cancelled() => Err(std::io::Error::other("cut at shutdown")),
        };
        let _ = upstream.shutdown().await;
        match copied {
            Ok(bytes) => {
                record
                    .finish(false, 200, CompletionStatus::Complete, "", bytes)
                    .await
            }
            Err(e) => {
                record
                    .finish(
                        false,
                        200,
                        CompletionStatus::UpstreamIncomplete,
                        &e.to_string(),
                        (0, 0),
                    )
                    .await
            }
        }
    });
    established()
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn established() -> Response<ProxyBody> {
    Response::new(ProxyBody::local(Bytes::new()))
}

fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::local(Bytes::from(text.to_owned())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// What the record of a tunnel needs, gathered when the CONNECT came in.
struct TunnelRecord {
    state: Arc<ProxyState>,
    context: crate::record::execution::RequestContext,
    headers: Vec<crate::record::Header>,
    client_version: String,
    peer: SocketAddr,
    host: String,
    port: u16,
    start: SystemTime,
    started: Instant,
}

impl TunnelRecord {
    /// Journals the tunnel: where it went, how it ended, bytes each way.
    async fn finish(
        self,
        intercepted: bool,
        status: u16,
        completion: CompletionStatus,
        error: &str,
        (up, down): (u64, u64),
    ) {
        let c = &self.context;
        let it = Interaction {
            id: uuid::Uuid::now_v7().to_string(),
            execution_id: c.execution_id.clone(),
            api: Api::Tunnel as i32,
            route: "CONNECT".into(),
            http: Some(HttpExchange {
                method: "CONNECT".into(),
                path: authority(&self.host, self.port),
                client_version: self.client_version,
                status: u32::from(status),
                request_headers: self.headers,
                client_address: self.peer.to_string(),
                ..Default::default()
            }),
            timing: Some(Timing {
                start_time: Some(timestamp(self.start)),
                end_time: Some(timestamp(SystemTime::now())),
                duration: Some(duration(self.started.elapsed())),
                ..Default::default()
            }),
            completion: Some(Completion {
                status: completion as i32,
                detail: error.to_owned(),
            }),
            sponsor: Some(c.sponsor.clone()),
            correlation: Some(c.correlation.clone()),
            agent: Some(c.agent.clone()),
            tunnel: Some(Tunnel {
                host: self.host,
                port: u32::from(self.port),
                intercepted,
                bytes_to_upstream: up,
                bytes_to_client: down,
                error: error.to_owned(),
            }),
            ..Default::default()
        };
        let metrics = &self.state.recorder.metrics;
        metrics.interaction_captured(&it);
        metrics.request_done("CONNECT", status);
        self.state
            .recorder
            .journal
            .append_interaction(it, Vec::new())
            .await;
    }
}

/// Forward-proxy settings and the CA, created on first interception.
pub struct ForwardState {
    pub config: crate::config::forward::ForwardConfig,
    pub overrides: upstream::Overrides,
    pub connect_timeout: std::time::Duration,
    authority: tokio::sync::OnceCell<Arc<crate::ca::Authority>>,
}

impl ForwardState {
    pub fn new(
        config: crate::config::forward::ForwardConfig,
        connect_timeout: std::time::Duration,
    ) -> Self {
        Self {
            overrides: Arc::new(config.resolve.clone()),
            config,
            connect_timeout,
            authority: tokio::sync::OnceCell::new(),
        }
    }

    /// The CA, loaded or — the first time anything is intercepted — created.
    pub async fn authority(&self) -> Result<Arc<crate::ca::Authority>, String> {
        let dir = self.config.ca_dir.clone();
        self.authority
            .get_or_try_init(|| async move {
                let loaded = tokio::task::spawn_blocking(move || {
                    crate::ca::Authority::load_or_create(&dir).map(|(a, created)| (a, created, dir))
                })
                .await
                .map_err(|e| e.to_string())?;
                let (authority, created, dir) = loaded.map_err(|e| e.to_string())?;
                if created {
                    tracing::warn!(dir = %dir.display(), "created sidetrace's CA for TLS interception; agents must trust its certificate (`sidetrace ca cert`, or `sidetrace ca bundle` for one-file trust stores)");
                } else {
                    tracing::info!(dir = %dir.display(), "TLS interception uses sidetrace's CA");
                }
                Ok(Arc::new(authority))
            })
            .await
            .cloned()
    }

    /// A server config presenting a certificate for `host`.
    pub async fn tls_for(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, String> {
        let authority = self.authority().await?;
        authority.server_config_for(host).map_err(|e| e.to_string())
    }
}
