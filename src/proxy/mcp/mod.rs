//! MCP routes (`protocol = "mcp"`): Streamable HTTP and the older HTTP+SSE
//! transport. Requests are forwarded like any other — every header passes
//! (`Mcp-Session-Id`, `MCP-Protocol-Version`, `Last-Event-ID`, ...), bodies
//! stream through — but capture works per JSON-RPC message and per MCP
//! session rather than per HTTP exchange ([`exchange`], [`sessions`]), and
//! SSE responses are recorded event by event as they pass ([`tap`]).

pub mod exchange;
pub mod sessions;
pub mod tap;

use http::request::Parts;
use http::{Method, Response, Version, header};
use hyper::body::Incoming;
use tokio::sync::oneshot;

use crate::capture::body::{BodyCapture, BodyRecorder};
use crate::capture::exchange::{Built, RequestMeta};
use crate::capture::mcp::interaction;
use crate::capture::mcp::pairing::Seen;
use crate::capture::mcp::{Origin, SessionInfo, TRANSPORT_TCP};

use super::body::ProxyBody;
use super::errors::{self, Shape};
use super::forward::{ProxyState, RequestGuard, response_head, send_upstream, write_ahead};
use super::routes::Resolved;
use super::tee::{RequestBody, TeeBody};
use exchange::{Exchange, Outcome, ResponseBody, SESSION_HEADER};
use tap::{EndpointRewrite, McpTap};

/// Forwards one request on an MCP route and starts its capture.
pub(super) async fn forward(
    state: &ProxyState,
    guard: &mut RequestGuard<'_>,
    meta: RequestMeta,
    parts: Parts,
    body: Incoming,
    resolved: &Resolved<'_>,
) -> Response<ProxyBody> {
    let start = meta.start_instant;
    let session_id = parts
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (recorder, request_capture) = BodyRecorder::new(state.capture_max_body);
    let (request_body, record_id) = if state.write_ahead() {
        let (start_record, fallback) = start_record(&meta);
        match write_ahead(state, body, recorder, start_record, fallback).await {
            Ok((b, id)) => (b, Some(id)),
            Err(answer) => {
                guard.status = Some(answer.http.as_u16());
                return errors::respond(Shape::JsonRpc, answer.http, answer.code, &answer.message);
            }
        }
    } else {
        (RequestBody::new(body, recorder), None)
    };
    let rest_and_query = match parts.uri.query() {
        Some(q) => format!("{}?{q}", resolved.rest),
        None => resolved.rest.to_owned(),
    };
    // A GET without a session opens an HTTP+SSE transport stream, whose
    // `endpoint` event must point back through this route.
    let method = parts.method.clone();
    let rewrite = (parts.method == Method::GET && session_id.is_none()).then(|| EndpointRewrite {
        route_prefix: resolved.route.prefix.clone(),
        upstream_base: resolved
            .route
            .upstream
            .path()
            .trim_end_matches('/')
            .to_owned(),
        upstream_authority: resolved
            .route
            .upstream
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default(),
        stream_rest: resolved.rest.to_owned(),
    });
    let (outcome_tx, outcome_rx) = oneshot::channel();
    let capture = Exchange {
        sessions: state.mcp_sessions.clone(),
        meta,
        rest_and_query,
        session_id,
        record_id,
    };
    state
        .recorder
        .tasks
        .spawn(capture.run(request_capture, outcome_rx));

    let resp = match send_upstream(state, parts, request_body, resolved, start).await {
        Ok(resp) => resp,
        Err(answer) => {
            let _ = outcome_tx.send(Outcome::Failed {
                status: answer.status,
                http_status: answer.http.as_u16(),
                message: answer.message.clone(),
            });
            guard.status = Some(answer.http.as_u16());
            return errors::respond(Shape::JsonRpc, answer.http, answer.code, &answer.message);
        }
    };
    let (mut rparts, rbody) = resp.into_parts();
    super::headers::strip(&mut rparts.headers);
    let head = response_head(&rparts);
    let response_session = rparts
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let stream = head.content_type.starts_with("text/event-stream")
        && !crate::capture::decode::is_encoded(&head.content_encoding);
    let (body, capture_body) = if stream {
        let rewrite = rewrite.filter(|_| rparts.status.is_success());
        // A GET opens a stream the server keeps open: end it at shutdown.
        let stop = (method == Method::GET).then(|| match rewrite {
            Some(_) => state.mcp_legacy_streams.clone(),
            None => state.mcp_streams.clone(),
        });
        let (tap, events) = McpTap::new(rbody, state.capture_max_body, rewrite, stop);
        (ProxyBody::mcp(tap), ResponseBody::Events(events))
    } else {
        let (recorder, whole) = BodyRecorder::new(state.capture_max_body);
        (
            ProxyBody::upstream(TeeBody::new(rbody, recorder)),
            ResponseBody::Whole(whole),
        )
    };
    let _ = outcome_tx.send(Outcome::Response {
        head,
        session_id: response_session,
        body: capture_body,
    });
    guard.status = Some(rparts.status.as_u16());
    rparts.version = Version::HTTP_11;
    // The rewritten endpoint event changes the length of a stream that
    // had none anyway; never let a stale one through.
    if matches!(body, ProxyBody::Mcp { .. }) {
        rparts.headers.remove(header::CONTENT_LENGTH);
    }
    Response::from_parts(rparts, body)
}

/// Write-ahead mode's start record: the request's JSON-RPC message(s).
fn start_record(meta: &RequestMeta) -> (impl FnOnce(BodyCapture) -> Built + Send + 'static, Built) {
    let origin = std::sync::Arc::new(Origin::new(&meta.context, &meta.route, None));
    let (at, redact) = (meta.start, meta.redact);
    let build = move |snapshot: BodyCapture| {
        let bytes = snapshot.contiguous();
        let seen = Seen {
            at,
            size: snapshot.total,
            origin,
            batched: false,
            record_id: None,
            oversized: None,
        };
        let info = SessionInfo {
            transport: TRANSPORT_TCP,
            ..Default::default()
        };
        let (interaction, blobs) =
            interaction::request_start(&bytes, snapshot.total, seen, &info, redact);
        Built {
            interaction,
            blobs,
            linked: None,
        }
    };
    (build, Built::minimal(meta))
}
