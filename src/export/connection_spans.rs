//! Spans of connections sidetrace relays without a model call of their
//! own: a CONNECT tunnel it could not (or was not asked to) see inside,
//! and a WebSocket connection (whose model turns get their own chat spans).
//! Both hang under the execution's root and say where the agent went.

use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use crate::record::{Api, CompletionStatus, Interaction};

use super::attrs::{Attrs, common};
use super::semconv::*;
use super::spans::{TraceRef, error_status, nanos, server_attrs, span, span_id};

/// The span of a tunnel or WebSocket connection record; None for others.
pub fn connection(trace: &TraceRef, it: &Interaction) -> Option<Span> {
    let api = Api::try_from(it.api).unwrap_or_default();
    let timing = it.timing.unwrap_or_default();
    let mut a = Attrs::default();
    let name = match api {
        Api::Tunnel => {
            let t = it.tunnel.as_ref()?;
            a.str(SERVER_ADDRESS, &t.host);
            a.int(SERVER_PORT, i64::from(t.port));
            a.int(
                SIDETRACE_CONNECTION_BYTES_TO_UPSTREAM,
                t.bytes_to_upstream as i64,
            );
            a.int(
                SIDETRACE_CONNECTION_BYTES_TO_CLIENT,
                t.bytes_to_client as i64,
            );
            a.bool(SIDETRACE_TUNNEL_INTERCEPTED, t.intercepted);
            format!("CONNECT {}:{}", t.host, t.port)
        }
        Api::Websocket => {
            let w = it.websocket.as_ref()?;
            if let Some(http) = &it.http {
                server_attrs(&mut a, http);
            }
            a.str(NETWORK_PROTOCOL_NAME, "websocket");
            a.int(
                SIDETRACE_CONNECTION_BYTES_TO_UPSTREAM,
                w.bytes_to_upstream as i64,
            );
            a.int(
                SIDETRACE_CONNECTION_BYTES_TO_CLIENT,
                w.bytes_to_client as i64,
            );
            a.int(
                SIDETRACE_WEBSOCKET_MESSAGES_TO_UPSTREAM,
                w.messages_to_upstream as i64,
            );
            a.int(
                SIDETRACE_WEBSOCKET_MESSAGES_TO_CLIENT,
                w.messages_to_client as i64,
            );
            a.int(SIDETRACE_WEBSOCKET_TURNS, i64::from(w.turns));
            if w.close_code != 0 {
                a.int(SIDETRACE_WEBSOCKET_CLOSE_CODE, i64::from(w.close_code));
            }
            let path = it.http.as_ref().map_or("", |h| h.path.as_str());
            format!("WebSocket {path}")
        }
        _ => return None,
    };
    let mut s = span(
        trace,
        span_id(&["connection", &it.id]),
        Some(trace.root_span_id),
        name,
        SpanKind::Client,
        nanos(&timing.start_time),
        nanos(&timing.end_time),
    );
    a.str(SIDETRACE_INTERACTION_ID, &it.id);
    common(
        &mut a,
        &it.execution_id,
        it.sponsor.as_ref(),
        it.correlation.as_ref(),
    );
    let completion = CompletionStatus::of(it);
    if completion != CompletionStatus::Complete {
        let kind = completion.short_name();
        a.str(ERROR_TYPE, &kind);
        let detail = it.completion.as_ref().map_or("", |c| c.detail.as_str());
        s.status = Some(error_status(detail, kind));
    }
    s.attributes = a.0;
    Some(s)
}
