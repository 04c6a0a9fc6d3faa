//! Turns one captured exchange (request head and body, response head and
//! body, or the failure) into an `Interaction` record plus the blobs it
//! references. Pure and synchronous: it runs on the blocking pool, never on
//! the proxy's I/O threads, and it never fails — whatever cannot be parsed is
//! kept raw and named in `capture_issues`.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::pool::Admission;

use serde_json::Value;

use crate::record::conversation::PendingLink;
use crate::record::execution::RequestContext;
use crate::record::{
    Api, Blob, Completion, CompletionStatus, Header, HttpExchange, Interaction, Message, Provider,
    Timing, duration, timestamp,
};

use super::api::{self, ParsedResponse};
use super::body::{BodyCapture, BodyEnd};
use super::linking::{self, Linking};
use super::record_builder::Builder;

/// What the proxy knew when the request arrived.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub interaction_id: String,
    pub context: RequestContext,
    pub provider: Provider,
    pub api: Api,
    pub route: String,
    pub method: String,
    pub path: String,
    pub upstream_url: String,
    pub client_version: String,
    pub client_address: String,
    pub headers: Vec<Header>,
    pub content_type: String,
    pub content_encoding: String,
    pub traceparent: String,
    pub start: SystemTime,
    pub start_instant: Instant,
    /// Capture cap for bodies (and for decoded bodies).
    pub cap: usize,
    /// Replace secrets in what is stored (`redact.secrets`).
    pub redact: bool,
    /// This exchange's place in the recording backlog (see `pool`), held
    /// until its record is queued for the journal.
    pub admission: Option<Arc<Admission>>,
}

/// The upstream's response head, as the proxy saw it.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    pub version: String,
    /// Redacted.
    pub headers: Vec<Header>,
    pub content_type: String,
    pub content_encoding: String,
    pub at: Instant,
}

/// How the upstream side ended.
#[derive(Debug)]
pub enum Outcome {
    Response {
        head: ResponseHead,
        body: Box<BodyCapture>,
    },
    /// sidetrace answered itself (no route, upstream unreachable, timeout, refused).
    Failed {
        status: CompletionStatus,
        http_status: u16,
        message: String,
        at: Instant,
    },
    /// The agent went away before the upstream answered.
    ClientGone { at: Instant },
}

/// The record of one exchange, ready for the journal.
#[derive(Debug)]
pub struct Built {
    pub interaction: Interaction,
    pub blobs: Vec<Blob>,
    /// Held until the record is queued for the journal: a later turn, which
    /// inherits this one's input messages, is queued after it.
    pub linked: Option<PendingLink>,
}

impl Built {
    /// The least record of an exchange: who, where, when.
    pub fn minimal(meta: &RequestMeta) -> Self {
        Self {
            interaction: base(meta).0,
            blobs: Vec::new(),
            linked: None,
        }
    }
}

/// The interaction and HTTP record as far as the request head tells.
fn base(meta: &RequestMeta) -> (Interaction, HttpExchange) {
    let it = Interaction {
        id: meta.interaction_id.clone(),
        execution_id: meta.context.execution_id.clone(),
        provider: meta.provider as i32,
        api: meta.api as i32,
        route: meta.route.clone(),
        sponsor: Some(meta.context.sponsor.clone()),
        correlation: Some(meta.context.correlation.clone()),
        agent: Some(meta.context.agent.clone()),
        traceparent: meta.traceparent.clone(),
        session_source: meta
            .context
            .session
            .as_ref()
            .map(|s| s.header.clone())
            .unwrap_or_default(),
        timing: Some(Timing {
            start_time: Some(timestamp(meta.start)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let http = HttpExchange {
        method: meta.method.clone(),
        path: meta.path.clone(),
        upstream_url: meta.upstream_url.clone(),
        client_version: meta.client_version.clone(),
        client_address: meta.client_address.clone(),
        request_headers: meta.headers.clone(),
        ..Default::default()
    };
    (it, http)
}

/// The request half of an exchange, recorded before it is forwarded
/// (write-ahead mode). `body` is what has been read of the request body.
pub fn request_start(meta: &RequestMeta, body: &BodyCapture) -> Built {
    let mut b = Builder::new(meta);
    let (mut it, mut http) = base(meta);
    b.request(body, &mut http, &mut it);
    if body.truncated
        && let Some(rb) = http.request_body.as_mut()
    {
        // Only a prefix was read before forwarding; the full record has the digest.
        rb.digest.clear();
        rb.size = 0;
    }
    it.http = Some(http);
    let blobs = b.finish(&mut it);
    Built {
        interaction: it,
        blobs,
        linked: None,
    }
}

pub fn build(
    meta: &RequestMeta,
    request: BodyCapture,
    outcome: Outcome,
    linking: Linking,
) -> Built {
    let mut b = Builder::new(meta);
    let (mut it, mut http) = base(meta);

    let request_parsed = b.request(&request, &mut http, &mut it);
    let wall = |i: Instant| meta.start + i.saturating_duration_since(meta.start_instant);
    let mut timing = it.timing.take().unwrap_or_default();
    let mut end = request.ended;

    match outcome {
        Outcome::Response { head, body } => {
            let ResponseHead {
                status,
                version,
                headers,
                content_type,
                content_encoding,
                at,
            } = head;
            http.status = status as u32;
            http.upstream_version = version;
            http.response_headers = headers;
            timing.response_time = Some(timestamp(wall(at)));
            if let Some(first) = body.first_frame {
                timing.first_chunk_time = Some(timestamp(wall(first)));
                timing.time_to_first_chunk = Some(duration(
                    first.saturating_duration_since(meta.start_instant),
                ));
            }
            end = end.max(body.ended);
            let stream = request_parsed.as_ref().is_some_and(|r| r.stream)
                || content_type.starts_with("text/event-stream");
            let parsed = b.response(
                status,
                &content_type,
                &content_encoding,
                stream,
                &body,
                &mut http,
            );
            it.completion = Some(completion(&body.end, stream, parsed.as_ref()));
            if let Some(p) = parsed {
                b.apply_response(p, &mut it);
            }
        }
        Outcome::Failed {
            status,
            http_status,
            message,
            at,
        } => {
            http.status = http_status as u32;
            end = end.max(at);
            it.error_message = message.clone();
            it.error_type = error_type(status).to_owned();
            it.completion = Some(Completion {
                status: status as i32,
                detail: message,
            });
        }
        Outcome::ClientGone { at } => {
            end = end.max(at);
            it.completion = Some(Completion {
                status: CompletionStatus::ClientDisconnected as i32,
                detail: "the agent disconnected before the upstream answered".into(),
            });
        }
    }
    timing.end_time = Some(timestamp(wall(end)));
    timing.duration = Some(duration(end.saturating_duration_since(meta.start_instant)));
    it.timing = Some(timing);
    let mut linked = None;
    if let Some(parsed) = &request_parsed {
        let session = meta.context.session.as_ref().map(|s| s.id.as_str());
        linked = linking::link(
            linking,
            &mut it,
            meta.api,
            &parsed.messages,
            session,
            linking::ExchangeTimes {
                request_start: meta.start,
                response_end: wall(end),
                started: meta.start_instant,
                ended: end,
            },
        );
    }
    it.http = Some(http);
    // Inherited input messages are the previous record's blobs already.
    b.keep_blobs(&crate::journal::interaction_blob_refs(&it));
    let blobs = b.finish(&mut it);
    Built {
        interaction: it,
        blobs,
        linked,
    }
}

fn error_type(status: CompletionStatus) -> &'static str {
    match status {
        CompletionStatus::UpstreamUnreachable => "upstream_unreachable",
        CompletionStatus::UpstreamTimeout => "upstream_timeout",
        CompletionStatus::NoRoute => "route_not_found",
        CompletionStatus::Refused => "refused",
        _ => "",
    }
}

fn completion(end: &BodyEnd, stream: bool, parsed: Option<&ParsedResponse>) -> Completion {
    match end {
        BodyEnd::Dropped => Completion {
            status: CompletionStatus::ClientDisconnected as i32,
            detail: "the agent disconnected before the response ended".into(),
        },
        BodyEnd::Failed(e) => Completion {
            status: CompletionStatus::UpstreamIncomplete as i32,
            detail: format!("the upstream response broke off: {e}"),
        },
        BodyEnd::Complete => match parsed {
            Some(p) if stream && !p.complete && p.error.is_none() => Completion {
                status: CompletionStatus::UpstreamIncomplete as i32,
                detail: "the stream ended without its terminal event".into(),
            },
            _ => Completion {
                status: CompletionStatus::Complete as i32,
                detail: String::new(),
            },
        },
    }
}

/// Fills the parts of one stored-form message from its blob.
pub fn resolve_message(
    api: Api,
    m: &mut Message,
    system: bool,
    load: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
) {
    if m.digest.is_empty() || !m.parts.is_empty() {
        return;
    }
    let Some(value) = load(&m.digest).and_then(|d| serde_json::from_slice::<Value>(&d).ok()) else {
        return;
    };
    let full = if system {
        api::normalize_system(api, &value)
    } else {
        api::normalize_message(api, &value)
    };
    m.parts = full.parts;
    if m.name.is_empty() {
        m.name = full.name;
    }
}

/// Fills the parts of all stored-form messages from their blobs, for readers.
pub fn resolve_messages(it: &mut Interaction, load: &mut dyn FnMut(&str) -> Option<Vec<u8>>) {
    let api = Api::try_from(it.api).unwrap_or(Api::Unspecified);
    if let Some(s) = it.system_instructions.as_mut() {
        resolve_message(api, s, true, load);
    }
    for m in it
        .input_messages
        .iter_mut()
        .chain(it.output_messages.iter_mut())
    {
        resolve_message(api, m, false, load);
    }
}
