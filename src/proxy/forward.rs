//! One request through the proxy: route it, open its capture, forward it
//! with its body teed, and hand the upstream's response back through the tee.
//! Anything sidetrace must answer itself (no route, unreachable, timeout, a
//! bad `Sidetrace-*` header) is answered in the provider's error shape and
//! still recorded.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::oneshot;

use crate::capture::api::{self, RouteProtocol};
use crate::capture::body::{BodyCapture, BodyRecorder};
use crate::capture::exchange::{self, RequestMeta, ResponseHead};
use crate::capture::session::{self, CaptureHandle, Recorder, UpstreamEvent};
use crate::identity::Identity;
use crate::journal::{Durability, Journal, Unavailable};
use crate::metrics::Metrics;
use crate::record::CompletionStatus;
use crate::record::execution::ExecutionRegistry;
use crate::record::journal_entry::Payload;
use crate::record::redact::recorded_headers;

use super::body::ProxyBody;
use super::routes::{Resolved, RouteTable};
use super::scope::{self, Arrival, RequestHead, Scope};
use super::tee::{RequestBody, TeeBody};
use super::upstream::UpstreamClient;
use super::{errors, headers};

/// Everything requests share.
pub struct ProxyState {
    pub routes: RouteTable,
    pub identity: Identity,
    pub client: UpstreamClient,
    pub recorder: Recorder,
    pub executions: ExecutionRegistry,
    pub capture_max_body: usize,
    pub redact_secrets: bool,
    pub upstream_timeout: Duration,
    /// The address agents reach us on, for error messages.
    pub listen: SocketAddr,
    /// MCP sessions being recorded on `protocol = "mcp"` routes.
    pub mcp_sessions: Arc<super::mcp::sessions::Sessions>,
    /// Forward proxying: interception list, CA, address overrides, proxy auth.
    pub forward: super::connect::ForwardState,
    /// CONNECT tunnels and WebSocket relays, tracked for shutdown.
    pub tunnels: super::connect::Tunnels,
    /// Upstream TLS for WebSocket upgrades: HTTP/1.1 only.
    pub ws_tls: Arc<rustls::ClientConfig>,
    /// Cancelled when shutdown begins: Streamable HTTP servers' GET streams
    /// end then (their clients resume them elsewhere).
    pub mcp_streams: tokio_util::sync::CancellationToken,
    /// Cancelled a little later: HTTP+SSE streams, which also carry the
    /// answers to calls still in flight.
    pub mcp_legacy_streams: tokio_util::sync::CancellationToken,
}

impl ProxyState {
    pub(super) fn start_capture(
        &self,
        meta: RequestMeta,
        request_body: Option<oneshot::Receiver<BodyCapture>>,
    ) -> CaptureHandle {
        session::start(&self.recorder, meta, request_body)
    }

    pub(super) fn journal(&self) -> &Journal {
        &self.recorder.journal
    }

    pub(super) fn write_ahead(&self) -> bool {
        self.journal().durability() == Durability::WriteAhead
    }
}

/// Counts a request in flight and its final status, even if the agent goes
/// away mid-request (then the status is 499, as nginx reports it).
pub(super) struct RequestGuard<'a> {
    metrics: &'a Metrics,
    route: String,
    pub(super) status: Option<u16>,
}

impl<'a> RequestGuard<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.in_flight().inc();
        Self {
            metrics,
            route: String::new(),
            status: None,
        }
    }
}

impl Drop for RequestGuard<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight().dec();
        self.metrics
            .request_done(&self.route, self.status.unwrap_or(499));
    }
}

/// An answer sidetrace gives itself instead of the upstream's.
pub(super) struct LocalAnswer {
    pub(super) status: CompletionStatus,
    pub(super) http: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
}

impl LocalAnswer {
    /// Records the answer and returns it in the provider's error shape.
    pub(super) fn send(
        self,
        shape: errors::Shape,
        mut capture: CaptureHandle,
        guard: &mut RequestGuard,
    ) -> Response<ProxyBody> {
        guard.status = Some(self.http.as_u16());
        capture.report(UpstreamEvent::Failed {
            status: self.status,
            http_status: self.http.as_u16(),
            message: self.message.clone(),
        });
        errors::respond(shape, self.http, self.code, &self.message)
    }
}

/// How a request reached the proxy.
#[derive(Clone)]
pub enum Via {
    /// On the listener: a reverse route, or forward-proxy absolute form.
    Listener,
    /// Inside an intercepted CONNECT tunnel to this origin.
    Tunnel(Arc<super::connect::Intercepted>),
}

pub async fn handle(
    state: Arc<ProxyState>,
    peer: SocketAddr,
    req: Request<Incoming>,
    via: Via,
) -> Result<Response<ProxyBody>, Infallible> {
    if req.method() == Method::CONNECT {
        return Ok(super::connect::handle(state, peer, req).await);
    }
    let start = SystemTime::now();
    let start_instant = Instant::now();
    // Waits only when recording has fallen MAX_BACKLOG exchanges behind.
    let admission = state.recorder.backlog.admit().await.map(Arc::new);
    let mut guard = RequestGuard::new(&state.recorder.metrics);
    let (mut parts, body) = req.into_parts();

    // Cheap (shared bytes); lets the resolved route borrow it while `parts` moves on.
    let uri = parts.uri.clone();
    let resolved = match &via {
        Via::Tunnel(t) => {
            t.tag(&mut parts.headers);
            t.resolve(&uri)
        }
        // Absolute form: sidetrace is the agent's HTTP_PROXY. Only HTTP/1 says so by
        // its request target; every HTTP/2 request carries an authority, and an h2
        // client reaches a forward proxy with CONNECT.
        Via::Listener if uri.authority().is_some() && parts.version < http::Version::HTTP_2 => {
            if let Some(denied) = super::connect::check_proxy_auth(&state, &parts.headers) {
                return Ok(denied);
            }
            super::connect::execution_from_credentials(&state, &mut parts.headers);
            super::connect::absolute_form(&state, &uri)
        }
        Via::Listener => state.routes.resolve(&uri),
    };
    let (provider, api) = match &resolved {
        Some(r) => api::detect(r.route.protocol, r.rest),
        // No route: guess the provider from the path, for the error's shape.
        None => api::detect(RouteProtocol::Auto, parts.uri.path()),
    };
    let shape = errors::Shape::of(provider, api);
    guard.route = resolved
        .as_ref()
        .map(|r| r.route.prefix.clone())
        .unwrap_or_default();

    let arrival = Arrival {
        start,
        start_instant,
        peer,
        provider,
        api,
        route: guard.route.clone(),
        admission,
    };
    if let Some(r) = &resolved
        && r.route.protocol != RouteProtocol::Mcp
        && !super::websocket::is_upgrade(&parts)
        && !scope::may_hold_back(&state, &parts.headers)
    {
        return Ok(forward_first(&state, &mut guard, arrival, parts, body, r).await);
    }

    let Scope {
        context,
        unsponsored,
        refusal,
        journal_down,
    } = scope::scope(&state, &parts.headers, start).await;
    let meta = scope::request_meta(
        &state,
        arrival,
        context,
        &RequestHead::of(&parts),
        resolved.as_ref(),
    );

    let Some(resolved) = resolved else {
        let answer = LocalAnswer {
            status: CompletionStatus::NoRoute,
            http: StatusCode::NOT_FOUND,
            code: "route_not_found",
            message: no_route_message(&state, parts.uri.path()),
        };
        return Ok(answer.send(shape, state.start_capture(meta, None), &mut guard));
    };
    if let Some(message) = refusal {
        let answer = LocalAnswer {
            status: CompletionStatus::Refused,
            http: StatusCode::BAD_REQUEST,
            code: "invalid_sidetrace_header",
            message,
        };
        return Ok(answer.send(shape, state.start_capture(meta, None), &mut guard));
    }
    if let Some(message) = unsponsored {
        let answer = LocalAnswer {
            status: CompletionStatus::Refused,
            http: StatusCode::FORBIDDEN,
            code: "sponsor_required",
            message,
        };
        return Ok(answer.send(shape, state.start_capture(meta, None), &mut guard));
    }
    if let Some(e) = journal_down {
        let answer = journal_unavailable(&e);
        return Ok(answer.send(shape, state.start_capture(meta, None), &mut guard));
    }
    if super::websocket::is_upgrade(&parts) {
        return Ok(super::websocket::forward(&state, &mut guard, meta, parts, &resolved).await);
    }
    if resolved.route.protocol == RouteProtocol::Mcp {
        return Ok(super::mcp::forward(&state, &mut guard, meta, parts, body, &resolved).await);
    }
    Ok(forward(&state, &mut guard, meta, parts, body, &resolved).await)
}

async fn forward(
    state: &ProxyState,
    guard: &mut RequestGuard<'_>,
    meta: RequestMeta,
    parts: Parts,
    body: Incoming,
    resolved: &Resolved<'_>,
) -> Response<ProxyBody> {
    let shape = errors::Shape::of(meta.provider, meta.api);
    let start = meta.start_instant;
    let (recorder, request_capture) = BodyRecorder::new(state.capture_max_body);
    let request_body = if state.write_ahead() {
        let start_meta = meta.clone();
        let start_record =
            move |snapshot: BodyCapture| exchange::request_start(&start_meta, &snapshot);
        match write_ahead(
            state,
            body,
            recorder,
            start_record,
            exchange::Built::minimal(&meta),
        )
        .await
        {
            Ok((b, _)) => b,
            Err(answer) => {
                let capture = state.start_capture(meta, Some(request_capture));
                return answer.send(shape, capture, guard);
            }
        }
    } else {
        RequestBody::new(body, recorder)
    };
    let capture = state.start_capture(meta, Some(request_capture));
    match send_upstream(state, parts, request_body, resolved, start).await {
        Ok(resp) => respond(state, guard, capture, resp),
        Err(answer) => answer.send(shape, capture, guard),
    }
}

/// The common case: nothing could refuse the request, so it goes upstream
/// first, and its scope and record are worked out while the upstream
/// answers (see `scope`).
async fn forward_first(
    state: &ProxyState,
    guard: &mut RequestGuard<'_>,
    arrival: Arrival,
    parts: Parts,
    body: Incoming,
    resolved: &Resolved<'_>,
) -> Response<ProxyBody> {
    let shape = errors::Shape::of(arrival.provider, arrival.api);
    let start = arrival.start_instant;
    // The record keeps the request as it arrived; forwarding strips headers.
    let (method, uri, version, arrived_headers) = (
        parts.method.clone(),
        parts.uri.clone(),
        parts.version,
        parts.headers.clone(),
    );
    let (recorder, request_capture) = BodyRecorder::new(state.capture_max_body);
    let request_body = RequestBody::new(body, recorder);
    let mut sending = std::pin::pin!(send_upstream(state, parts, request_body, resolved, start));
    // Polled once, the request is handed to its upstream connection's task,
    // which writes it out before this task resumes from the yield.
    let early = std::future::poll_fn(|cx| Poll::Ready(sending.as_mut().poll(cx))).await;
    if early.is_pending() {
        tokio::task::yield_now().await;
    }
    let Scope {
        context,
        unsponsored,
        refusal,
        journal_down,
    } = scope::scope(state, &arrived_headers, arrival.start).await;
    if unsponsored.is_some() || refusal.is_some() || journal_down.is_some() {
        // `scope::may_hold_back` said nothing could stop this request.
        tracing::error!(
            ?unsponsored,
            ?refusal,
            "a request forwarded before its scope was resolved would have been refused"
        );
    }
    let head = RequestHead {
        method: &method,
        uri: &uri,
        version,
        headers: &arrived_headers,
    };
    let meta = scope::request_meta(state, arrival, context, &head, Some(resolved));
    let capture = state.start_capture(meta, Some(request_capture));
    let sent = match early {
        Poll::Ready(sent) => sent,
        Poll::Pending => sending.await,
    };
    match sent {
        Ok(resp) => respond(state, guard, capture, resp),
        Err(answer) => answer.send(shape, capture, guard),
    }
}

/// Hands the upstream's response back through the tee, reporting its head.
fn respond(
    state: &ProxyState,
    guard: &mut RequestGuard<'_>,
    mut capture: CaptureHandle,
    resp: Response<Incoming>,
) -> Response<ProxyBody> {
    let (mut rparts, rbody) = resp.into_parts();
    headers::strip(&mut rparts.headers);
    let (recorder, response_capture) = BodyRecorder::new(state.capture_max_body);
    let recorder = recorder.notify_end(capture.response_ended());
    capture.report(UpstreamEvent::Response {
        head: response_head(&rparts),
        body: response_capture,
    });
    guard.status = Some(rparts.status.as_u16());
    // The agent's connection decides its own HTTP version.
    rparts.version = Version::HTTP_11;
    Response::from_parts(rparts, ProxyBody::upstream(TeeBody::new(rbody, recorder)))
}

/// The upstream's response head as capture records it.
pub(super) fn response_head(rparts: &http::response::Parts) -> ResponseHead {
    ResponseHead {
        status: rparts.status.as_u16(),
        version: version_name(rparts.version).to_owned(),
        headers: recorded_headers(&rparts.headers),
        content_type: header_text(&rparts.headers, header::CONTENT_TYPE),
        content_encoding: header_text(&rparts.headers, header::CONTENT_ENCODING),
        at: Instant::now(),
    }
}

/// Sends the request upstream (headers cleaned, prefix stripped) and waits
/// for the response head, or answers why it could not.
pub(super) async fn send_upstream(
    state: &ProxyState,
    parts: Parts,
    body: RequestBody,
    resolved: &Resolved<'_>,
    start: Instant,
) -> Result<Response<Incoming>, LocalAnswer> {
    let mut out_headers = parts.headers;
    headers::strip(&mut out_headers);
    out_headers.remove(header::HOST);
    let mut upstream_req = Request::new(body);
    *upstream_req.method_mut() = parts.method;
    *upstream_req.uri_mut() = resolved.upstream_uri.clone();
    *upstream_req.headers_mut() = out_headers;

    let route = &resolved.route.prefix;
    let upstream = origin(&resolved.upstream_uri);
    let sent =
        tokio::time::timeout(state.upstream_timeout, state.client.request(upstream_req)).await;
    match sent {
        Ok(Ok(resp)) => {
            state
                .recorder
                .metrics
                .upstream_latency(route, start.elapsed());
            Ok(resp)
        }
        Ok(Err(e)) => {
            let cause = error_chain(&e);
            tracing::warn!(route = %route, upstream = %upstream, error = %cause, "upstream unreachable");
            Err(LocalAnswer {
                status: CompletionStatus::UpstreamUnreachable,
                http: StatusCode::BAD_GATEWAY,
                code: "upstream_unreachable",
                message: format!(
                    "sidetrace could not reach the upstream {upstream} (route {route}): {cause}. Check the route's upstream URL, DNS, TLS trust (--upstream-ca) and that the host is reachable from where sidetrace runs."
                ),
            })
        }
        Err(_) => {
            tracing::warn!(route = %route, upstream = %upstream, "upstream timeout");
            Err(LocalAnswer {
                status: CompletionStatus::UpstreamTimeout,
                http: StatusCode::GATEWAY_TIMEOUT,
                code: "upstream_timeout",
                message: format!(
                    "the upstream {upstream} sent no response within {} (route {route}). The provider may be overloaded or the request very long; raise --upstream-timeout if such requests are expected.",
                    humantime::format_duration(state.upstream_timeout)
                ),
            })
        }
    }
}

/// Write-ahead mode: reads the request body (up to the capture cap),
/// records the request durably, and only then lets it go upstream. The
/// bytes read are replayed ahead of the rest.
pub(super) async fn write_ahead(
    state: &ProxyState,
    body: Incoming,
    recorder: BodyRecorder,
    start_record: impl FnOnce(BodyCapture) -> exchange::Built + Send + 'static,
    fallback: exchange::Built,
) -> Result<(RequestBody, String), LocalAnswer> {
    let mut tee = TeeBody::new(body, recorder);
    let mut prefix = VecDeque::new();
    let mut read = 0usize;
    let mut complete = tee.is_end_stream();
    while !complete && read < state.capture_max_body {
        match tee.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    read += data.len();
                    prefix.push_back(data);
                }
                complete = tee.is_end_stream();
            }
            Some(Err(e)) => {
                return Err(LocalAnswer {
                    status: CompletionStatus::Refused,
                    http: StatusCode::BAD_REQUEST,
                    code: "request_body_failed",
                    message: format!("sidetrace could not read the request body: {e}"),
                });
            }
            None => complete = true,
        }
    }
    let snapshot = BodyCapture::snapshot(prefix.iter().cloned().collect(), complete);
    let built = tokio::task::spawn_blocking(move || start_record(snapshot))
        .await
        .unwrap_or(fallback);
    let id = built.interaction.id.clone();
    state
        .journal()
        .append_durable(Payload::InteractionStart(built.interaction), built.blobs)
        .await
        .map_err(|e| journal_unavailable(&e))?;
    Ok((RequestBody::with_prefix(prefix, tee), id))
}

fn journal_unavailable(e: &Unavailable) -> LocalAnswer {
    LocalAnswer {
        status: CompletionStatus::JournalUnavailable,
        http: StatusCode::SERVICE_UNAVAILABLE,
        code: "journal_unavailable",
        message: format!(
            "sidetrace cannot write its journal ({}), and in write-ahead mode no request is forwarded unrecorded. Check free disk space, journal.max_size and the journal path; /readyz reports unready until a write succeeds again.",
            e.0
        ),
    }
}

fn no_route_message(state: &ProxyState, path: &str) -> String {
    let prefixes: Vec<&str> = state
        .routes
        .routes()
        .iter()
        .map(|r| r.prefix.as_str())
        .collect();
    let example = prefixes.first().copied().unwrap_or("/openai");
    format!(
        "sidetrace has no route for {path:?}. Configured route prefixes: {}. Point the agent's base URL at http://{}{example} (for example), or add a route with --route PREFIX=UPSTREAM_URL.",
        prefixes.join(", "),
        state.listen
    )
}

pub(super) fn header_text(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

fn origin(uri: &Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map_or("", |a| a.as_str())
    )
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

pub fn version_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/?",
    }
}
