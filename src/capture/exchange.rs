//! Turns one captured exchange (request head and body, response head and
//! body, or the failure) into an `Interaction` record plus the blobs it
//! references. Pure and synchronous: it runs on the blocking pool, never on
//! the proxy's I/O threads, and it never fails — whatever cannot be parsed is
//! kept raw and named in `capture_issues`.

use std::time::{Instant, SystemTime};

use serde_json::Value;

use crate::record::execution::RequestContext;
use crate::record::{
    Api, Blob, Body, CaptureIssue, Completion, CompletionStatus, Header, HttpExchange, Interaction,
    Message, Provider, Timing, duration, json_to_struct, timestamp,
};

use super::api::{self, ParsedRequest, ParsedResponse, StreamAssembler};
use super::body::{BodyCapture, BodyEnd};
use super::decode;
use super::linking::{self, Linking};
use super::sse::SseDecoder;

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
}

impl Built {
    /// The least record of an exchange: who, where, when.
    pub fn minimal(meta: &RequestMeta) -> Self {
        Self {
            interaction: base(meta).0,
            blobs: Vec::new(),
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
    let mut b = Builder {
        blobs: Vec::new(),
        issues: Vec::new(),
        meta,
    };
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
    it.capture_issues = b.issues;
    Built {
        interaction: it,
        blobs: b.blobs,
    }
}

pub fn build(meta: RequestMeta, request: BodyCapture, outcome: Outcome, linking: Linking) -> Built {
    let mut b = Builder {
        blobs: Vec::new(),
        issues: Vec::new(),
        meta: &meta,
    };
    let (mut it, mut http) = base(&meta);

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
    if let Some(parsed) = &request_parsed {
        let session = meta.context.session.as_ref().map(|s| s.id.as_str());
        linking::link(
            linking,
            &mut it,
            meta.api,
            &parsed.messages,
            session,
            meta.start,
            wall(end),
        );
    }
    it.http = Some(http);
    it.capture_issues = b.issues;
    Built {
        interaction: it,
        blobs: b.blobs,
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

struct Builder<'a> {
    blobs: Vec<Blob>,
    issues: Vec<CaptureIssue>,
    meta: &'a RequestMeta,
}

impl Builder<'_> {
    fn issue(&mut self, kind: &str, detail: impl Into<String>) {
        self.issues.push(CaptureIssue {
            kind: kind.to_owned(),
            detail: detail.into(),
        });
    }

    /// Stores `data` once by digest and returns the digest.
    fn store(&mut self, data: Vec<u8>) -> String {
        let blob = Blob::new(data);
        let digest = blob.digest.clone();
        if !self.blobs.iter().any(|b| b.digest == digest) {
            self.blobs.push(blob);
        }
        digest
    }

    /// A message stored by digest; the record keeps only its role and digest.
    fn message_ref(&mut self, api: Api, value: &Value) -> Message {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        let size = bytes.len() as u64;
        let role = api::message_role(api, value);
        Message {
            role,
            digest: self.store(bytes),
            size,
            ..Default::default()
        }
    }

    /// Decodes a captured body; returns None (and notes why) when it cannot be.
    fn decoded(&mut self, which: &str, encoding: &str, body: &BodyCapture) -> Option<Vec<u8>> {
        let raw = body.contiguous();
        if !decode::is_encoded(encoding) {
            return Some(raw);
        }
        if body.truncated {
            return None;
        }
        match decode::decode(encoding, &raw, self.meta.cap) {
            Ok(d) => {
                if d.limit_hit {
                    self.issue(
                        &format!("{which}_truncated"),
                        format!(
                            "decoded {which} body exceeds the capture cap of {} bytes",
                            self.meta.cap
                        ),
                    );
                }
                Some(d.data)
            }
            Err(e) => {
                self.issue("decode", format!("{which} body: {e}"));
                None
            }
        }
    }

    fn body_record(&self, content_type: &str, encoding: &str, body: &BodyCapture) -> Body {
        Body {
            digest: body.digest(),
            size: body.total,
            content_type: content_type.to_owned(),
            content_encoding: encoding.to_owned(),
            truncated: body.truncated,
            captured_size: body.captured as u64,
            ..Default::default()
        }
    }

    fn request(
        &mut self,
        body: &BodyCapture,
        http: &mut HttpExchange,
        it: &mut Interaction,
    ) -> Option<ParsedRequest> {
        let meta = self.meta;
        let mut record = self.body_record(&meta.content_type, &meta.content_encoding, body);
        let api = meta.api;
        let known = !matches!(api, Api::Other | Api::Unspecified);
        let mut parsed = None;
        if body.truncated {
            self.issue(
                "request_truncated",
                format!(
                    "request body of {} bytes exceeds the capture cap of {} bytes; kept the first {} bytes and the digest of the whole",
                    body.total, meta.cap, body.captured
                ),
            );
        }
        let decoded = self.decoded("request", &meta.content_encoding, body);
        if let Some(data) = &decoded {
            record.decoded_size = data.len() as u64;
        }
        if known
            && !body.truncated
            && let Some(data) = &decoded
        {
            match serde_json::from_slice::<Value>(data)
                .map_err(|e| format!("request body is not JSON: {e}"))
                .and_then(|v| api::parse_request(api, v))
            {
                Ok(p) => parsed = Some(p),
                Err(e) => self.issue("request_parse", e),
            }
        }
        match &parsed {
            Some(p) => {
                it.requested_model = p.model.clone();
                it.stream = p.stream;
                if let Some(system) = &p.system {
                    let mut m = self.message_ref(api, system);
                    m.role = "system".into();
                    it.system_instructions = Some(m);
                }
                it.input_messages = p
                    .messages
                    .iter()
                    .map(|m| self.message_ref(api, m))
                    .collect();
                it.tool_definitions = p
                    .tools
                    .iter()
                    .map(|t| {
                        let mut def = api::tool_definition(api, t);
                        def.digest = self.store(serde_json::to_vec(t).unwrap_or_default());
                        def
                    })
                    .collect();
                it.request_params = Some(json_to_struct(p.params.clone()));
            }
            // Unparsed (or not a model call): keep what was captured, raw.
            None => {
                let data = decoded.unwrap_or_else(|| body.contiguous());
                if !data.is_empty() {
                    record.stored_digest = self.store(data);
                }
            }
        }
        http.request_body = Some(record);
        parsed
    }

    fn response(
        &mut self,
        status: u16,
        content_type: &str,
        encoding: &str,
        stream: bool,
        body: &BodyCapture,
        http: &mut HttpExchange,
    ) -> Option<ParsedResponse> {
        let api = self.meta.api;
        let mut record = self.body_record(content_type, encoding, body);
        if body.truncated {
            self.issue(
                "response_truncated",
                format!(
                    "response body of {} bytes exceeds the capture cap of {} bytes; kept the first {} bytes and the digest of the whole",
                    body.total, self.meta.cap, body.captured
                ),
            );
        }
        let decoded = self.decoded("response", encoding, body);
        let data = decoded.unwrap_or_default();
        record.decoded_size = data.len() as u64;
        let is_sse = content_type.starts_with("text/event-stream");
        let known = !matches!(api, Api::Other | Api::Unspecified);

        let parsed = if !known || data.is_empty() {
            None
        } else if is_sse {
            // Error statuses also come back as streams sometimes; parse either way.
            let mut assembler = StreamAssembler::new(api)?;
            let mut decoder = SseDecoder::new();
            decoder.feed(&data, &mut |e| assembler.on_event(&e));
            let cut = decoder.finish();
            let mut p = assembler.finish();
            if cut && !body.truncated {
                p.issues
                    .push("the stream ended in the middle of an event".into());
            }
            Some(p)
        } else {
            match serde_json::from_slice::<Value>(&data) {
                Ok(v) if status >= 400 => Some(ParsedResponse {
                    error: api::provider_error(&v),
                    complete: true,
                    ..Default::default()
                }),
                Ok(v) => match api::parse_response(api, &v) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        self.issue("response_parse", e);
                        None
                    }
                },
                Err(e) if !body.truncated => {
                    self.issue("response_parse", format!("response body is not JSON: {e}"));
                    None
                }
                Err(_) => None,
            }
        };
        if stream && !is_sse && status < 400 && parsed.is_none() && known {
            self.issue(
                "response_parse",
                format!("expected an event stream, got {content_type:?}"),
            );
        }
        if !data.is_empty() {
            record.stored_digest = self.store(data);
        }
        http.response_body = Some(record);
        parsed
    }

    fn apply_response(&mut self, mut p: ParsedResponse, it: &mut Interaction) {
        let api = self.meta.api;
        it.response_id = p.id;
        it.served_model = p.model;
        it.output_messages = p.output.iter().map(|m| self.message_ref(api, m)).collect();
        it.tool_calls = p.tool_calls;
        it.finish_reasons = p.finish_reasons;
        it.usage = p.usage;
        if let Some(e) = p.error {
            it.error_type = e.kind;
            it.error_message = e.message;
        }
        for issue in p.issues.drain(..) {
            self.issue("response_parse", issue);
        }
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
