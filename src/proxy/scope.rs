//! Who and what a request belongs to — sponsor, correlation, execution —
//! and what sidetrace knows of it for the record (`RequestMeta`), and
//! whether any of that could make sidetrace refuse it. A request nothing
//! could refuse goes upstream first and has this worked out while the
//! upstream answers: resolving it touches a lot of state, which on a core
//! that was idle or busy recording costs far more than its instructions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::capture::pool::Admission;
use http::{HeaderMap, Method, Uri, Version, header};

use crate::capture::exchange::RequestMeta;
use crate::identity;
use crate::journal::Unavailable;
use crate::record::execution::{ExecutionRegistry, RequestContext};
use crate::record::redact::recorded_headers;
use crate::record::{Api, Provider};

use super::forward::{ProxyState, header_text, version_name};
use super::headers;
use super::routes::Resolved;

/// Who and what a request belongs to, and what stands in its way.
pub(super) struct Scope {
    pub context: RequestContext,
    /// Below the sponsor policy: why.
    pub unsponsored: Option<String>,
    /// Unacceptable `Sidetrace-*` headers: why.
    pub refusal: Option<String>,
    /// Write-ahead mode could not record the execution.
    pub journal_down: Option<Unavailable>,
}

/// Resolves a request's sponsor (may verify a token) and execution, and
/// journals the execution the first time it is seen (durably before its
/// first request goes out, in write-ahead mode).
pub(super) async fn scope(state: &ProxyState, headers: &HeaderMap, start: SystemTime) -> Scope {
    let (identity, unsponsored) = match state.identity.resolve(headers).await {
        Ok(r) => (r, None),
        Err(refusal) => (refusal.known, Some(refusal.message)),
    };
    let (context, opened, refusal) =
        match state.executions.resolve(headers, start, identity.clone()) {
            Ok((ctx, opened)) => (ctx, opened, None),
            Err(e) => {
                let (ctx, opened) = fallback_context(&state.executions, headers, start, identity);
                (ctx, opened, Some(e.0))
            }
        };
    let journal_down = match opened {
        Some(execution) => state.journal().append_execution(execution).await.err(),
        None => None,
    };
    Scope {
        context,
        unsponsored,
        refusal,
        journal_down,
    }
}

/// Whether `scope` could refuse this request or must record before it goes
/// out: any `Sidetrace-*` header (the execution and sponsor headers are
/// validated), a sponsor policy that may find no sponsor, write-ahead mode.
/// When not, the request can be forwarded before its scope is resolved.
pub(super) fn may_hold_back(state: &ProxyState, headers: &HeaderMap) -> bool {
    state.write_ahead()
        || state.identity.may_refuse()
        || headers.keys().any(headers::is_sidetrace_header)
}

/// The context of a request whose `Sidetrace-*` headers were refused: as if
/// it had sent none, so the refusal is still on record somewhere.
fn fallback_context(
    executions: &ExecutionRegistry,
    headers: &HeaderMap,
    now: SystemTime,
    identity: identity::Resolved,
) -> (RequestContext, Option<crate::record::Execution>) {
    let mut clean = headers.clone();
    headers::strip(&mut clean);
    executions
        .resolve(&clean, now, identity)
        .expect("a request without Sidetrace-* headers always resolves")
}

/// What is known of a request when it arrives, before any of it is resolved.
pub(super) struct Arrival {
    pub start: SystemTime,
    pub start_instant: Instant,
    pub peer: SocketAddr,
    pub provider: Provider,
    pub api: Api,
    pub route: String,
    /// Its place in the recording backlog.
    pub admission: Option<Arc<Admission>>,
}

/// The request line and headers, as they arrived.
pub(super) struct RequestHead<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub version: Version,
    pub headers: &'a HeaderMap,
}

impl<'a> RequestHead<'a> {
    pub fn of(parts: &'a http::request::Parts) -> Self {
        Self {
            method: &parts.method,
            uri: &parts.uri,
            version: parts.version,
            headers: &parts.headers,
        }
    }
}

/// What the record keeps of the request's arrival.
pub(super) fn request_meta(
    state: &ProxyState,
    arrival: Arrival,
    context: RequestContext,
    head: &RequestHead<'_>,
    resolved: Option<&Resolved<'_>>,
) -> RequestMeta {
    let uri = head.uri;
    RequestMeta {
        interaction_id: uuid::Uuid::now_v7().to_string(),
        context,
        provider: arrival.provider,
        api: arrival.api,
        route: arrival.route,
        method: head.method.to_string(),
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        upstream_url: resolved
            .map(|r| r.upstream_uri.to_string())
            .unwrap_or_default(),
        client_version: version_name(head.version).to_owned(),
        client_address: arrival.peer.to_string(),
        headers: recorded_headers(head.headers),
        content_type: header_text(head.headers, header::CONTENT_TYPE),
        content_encoding: header_text(head.headers, header::CONTENT_ENCODING),
        traceparent: header_text(head.headers, header::HeaderName::from_static("traceparent")),
        start: arrival.start,
        start_instant: arrival.start_instant,
        cap: state.capture_max_body,
        redact: state.redact_secrets,
        admission: arrival.admission,
    }
}
