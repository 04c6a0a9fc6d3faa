//! One request through the proxy: route it, open its capture, forward it
//! with its body teed, and hand the upstream's response back through the tee.
//! Anything sidetrace must answer itself (no route, unreachable, timeout, a
//! bad `Sidetrace-*` header) is answered in the provider's error shape and
//! still recorded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use tokio_util::task::TaskTracker;

use crate::capture::api::{self, RouteProtocol};
use crate::capture::body::BodyRecorder;
use crate::capture::exchange::RequestMeta;
use crate::capture::session::{self, CaptureHandle, UpstreamEvent};
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::record::CompletionStatus;
use crate::record::execution::{ExecutionRegistry, RequestContext};
use crate::record::redact::recorded_headers;

use super::body::ProxyBody;
use super::routes::RouteTable;
use super::tee::{RequestBody, TeeBody};
use super::upstream::UpstreamClient;
use super::{errors, headers};

/// Everything requests share.
pub struct ProxyState {
    pub routes: RouteTable,
    pub client: UpstreamClient,
    pub journal: Journal,
    pub metrics: Arc<Metrics>,
    pub executions: ExecutionRegistry,
    pub captures: TaskTracker,
    pub capture_max_body: usize,
    pub upstream_timeout: Duration,
    /// The address agents reach us on, for error messages.
    pub listen: SocketAddr,
}

/// Counts a request in flight and its final status, even if the agent goes
/// away mid-request (then the status is 499, as nginx reports it).
struct RequestGuard<'a> {
    metrics: &'a Metrics,
    route: String,
    status: Option<u16>,
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

pub async fn handle(
    state: Arc<ProxyState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = SystemTime::now();
    let start_instant = Instant::now();
    let mut guard = RequestGuard::new(&state.metrics);
    let (parts, body) = req.into_parts();

    let resolved = state.routes.resolve(&parts.uri);
    let (provider, api, route_prefix) = match &resolved {
        Some(r) => {
            let (p, a) = api::detect(r.route.protocol, r.rest);
            (p, a, r.route.prefix.clone())
        }
        None => {
            // No route: guess the provider from the path, for the error's shape.
            let (p, a) = api::detect(RouteProtocol::Auto, parts.uri.path());
            (p, a, String::new())
        }
    };
    guard.route = route_prefix.clone();

    let (context, refusal) = match state.executions.resolve(&parts.headers, start) {
        Ok((ctx, opened)) => {
            if let Some(execution) = opened {
                state.journal.append_execution(execution).await;
            }
            (ctx, None)
        }
        Err(e) => (
            fallback_context(&state.executions, &parts.headers, start, &state.journal).await,
            Some(e.0),
        ),
    };

    let header_text = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    };
    let meta = RequestMeta {
        interaction_id: uuid::Uuid::now_v7().to_string(),
        context,
        provider,
        api,
        route: route_prefix.clone(),
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        upstream_url: resolved
            .as_ref()
            .map(|r| r.upstream_uri.to_string())
            .unwrap_or_default(),
        client_version: version_name(parts.version).to_owned(),
        client_address: peer.to_string(),
        headers: recorded_headers(&parts.headers),
        content_type: header_text(header::CONTENT_TYPE),
        content_encoding: header_text(header::CONTENT_ENCODING),
        traceparent: parts
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        start,
        start_instant,
        cap: state.capture_max_body,
    };

    let refuse = |capture: &mut CaptureHandle,
                  status: CompletionStatus,
                  http: StatusCode,
                  code: &str,
                  message: String| {
        capture.report(UpstreamEvent::Failed {
            status,
            http_status: http.as_u16(),
            message: message.clone(),
        });
        errors::respond(provider, http, code, &message)
    };

    let Some(resolved) = resolved else {
        let mut capture = session::start(
            meta,
            None,
            state.journal.clone(),
            state.metrics.clone(),
            &state.captures,
        );
        let message = no_route_message(&state, parts.uri.path());
        guard.status = Some(404);
        return Ok(refuse(
            &mut capture,
            CompletionStatus::NoRoute,
            StatusCode::NOT_FOUND,
            "route_not_found",
            message,
        ));
    };
    if let Some(message) = refusal {
        let mut capture = session::start(
            meta,
            None,
            state.journal.clone(),
            state.metrics.clone(),
            &state.captures,
        );
        guard.status = Some(400);
        return Ok(refuse(
            &mut capture,
            CompletionStatus::Refused,
            StatusCode::BAD_REQUEST,
            "invalid_sidetrace_header",
            message,
        ));
    }

    let upstream_uri = resolved.upstream_uri.clone();
    let (recorder, request_capture) = BodyRecorder::new(state.capture_max_body);
    let mut capture = session::start(
        meta,
        Some(request_capture),
        state.journal.clone(),
        state.metrics.clone(),
        &state.captures,
    );

    let mut out_headers = parts.headers;
    headers::strip(&mut out_headers);
    out_headers.remove(header::HOST);
    let mut upstream_req = Request::new(RequestBody::new(body, recorder));
    *upstream_req.method_mut() = parts.method;
    *upstream_req.uri_mut() = upstream_uri.clone();
    *upstream_req.headers_mut() = out_headers;

    let sent =
        tokio::time::timeout(state.upstream_timeout, state.client.request(upstream_req)).await;
    let route = &resolved.route.prefix;
    match sent {
        Ok(Ok(resp)) => {
            state
                .metrics
                .upstream_latency(route, start_instant.elapsed());
            let (mut rparts, rbody) = resp.into_parts();
            let status = rparts.status.as_u16();
            let upstream_version = version_name(rparts.version).to_owned();
            headers::strip(&mut rparts.headers);
            let text = |h: &HeaderMap, name: header::HeaderName| {
                h.get(name)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_default()
            };
            let (recorder, response_capture) = BodyRecorder::new(state.capture_max_body);
            capture.report(UpstreamEvent::Response {
                status,
                version: upstream_version,
                headers: recorded_headers(&rparts.headers),
                content_type: text(&rparts.headers, header::CONTENT_TYPE),
                content_encoding: text(&rparts.headers, header::CONTENT_ENCODING),
                at: Instant::now(),
                body: response_capture,
            });
            // The agent's connection decides its own HTTP version.
            rparts.version = Version::HTTP_11;
            guard.status = Some(status);
            Ok(Response::from_parts(
                rparts,
                ProxyBody::upstream(TeeBody::new(rbody, recorder)),
            ))
        }
        Ok(Err(e)) => {
            let message = format!(
                "sidetrace could not reach the upstream {} (route {route}): {}. Check the route's upstream URL, DNS, TLS trust (--upstream-ca) and that the host is reachable from where sidetrace runs.",
                origin(&upstream_uri),
                error_chain(&e)
            );
            tracing::warn!(route = %route, upstream = %origin(&upstream_uri), error = %error_chain(&e), "upstream unreachable");
            guard.status = Some(502);
            Ok(refuse(
                &mut capture,
                CompletionStatus::UpstreamUnreachable,
                StatusCode::BAD_GATEWAY,
                "upstream_unreachable",
                message,
            ))
        }
        Err(_) => {
            let message = format!(
                "the upstream {} sent no response within {} (route {route}). The provider may be overloaded or the request very long; raise --upstream-timeout if such requests are expected.",
                origin(&upstream_uri),
                humantime::format_duration(state.upstream_timeout)
            );
            tracing::warn!(route = %route, upstream = %origin(&upstream_uri), "upstream timeout");
            guard.status = Some(504);
            Ok(refuse(
                &mut capture,
                CompletionStatus::UpstreamTimeout,
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                message,
            ))
        }
    }
}

/// The context of a request whose `Sidetrace-*` headers were refused: the
/// run's own execution, so the refusal is still on record somewhere.
async fn fallback_context(
    executions: &ExecutionRegistry,
    headers: &HeaderMap,
    now: SystemTime,
    journal: &Journal,
) -> RequestContext {
    let mut clean = headers.clone();
    let ours: Vec<_> = clean
        .keys()
        .filter(|n| headers::is_sidetrace_header(n))
        .cloned()
        .collect();
    for n in ours {
        clean.remove(n);
    }
    let (ctx, opened) = executions
        .resolve(&clean, now)
        .expect("a request without Sidetrace-* headers always resolves");
    if let Some(execution) = opened {
        journal.append_execution(execution).await;
    }
    ctx
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

fn origin(uri: &http::Uri) -> String {
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
