//! Fills an interaction from captured bodies: parses what it can, stores
//! messages, tool definitions and bodies once by digest, keeps what it cannot
//! parse raw (and says why), and — unless disabled — replaces secrets in
//! everything it stores, counting them.

use serde_json::Value;

use crate::record::{
    Api, Blob, Body, CaptureIssue, HttpExchange, Interaction, Message, json_to_struct, secrets,
};
use secrets::Cleaner;

use super::api::{self, ParsedRequest, ParsedResponse, StreamAssembler};
use super::body::BodyCapture;
use super::decode;
use super::exchange::RequestMeta;
use super::sse::SseDecoder;

pub(super) struct Builder<'a> {
    blobs: Vec<Blob>,
    issues: Vec<CaptureIssue>,
    cleaner: Cleaner,
    meta: &'a RequestMeta,
}

impl<'a> Builder<'a> {
    pub(super) fn new(meta: &'a RequestMeta) -> Self {
        Self {
            blobs: Vec::new(),
            issues: Vec::new(),
            cleaner: Cleaner::new(meta.redact),
            meta,
        }
    }

    /// Records the issues and redactions on `it`; returns the blobs to store.
    pub(super) fn finish(self, it: &mut Interaction) -> Vec<Blob> {
        it.capture_issues.extend(self.issues);
        it.redactions.extend(self.cleaner.into_counts());
        if let Some(http) = it.http.as_mut()
            && secrets::any_may_hold_secret(http.request_headers.iter().map(|h| h.value.as_str()))
        {
            for h in &mut http.request_headers {
                if let std::borrow::Cow::Owned(clean) = secrets::scrub(&h.value) {
                    h.value = clean;
                }
            }
        }
        self.blobs
    }

    /// Text as it may be stored: secrets replaced (and counted) unless disabled.
    /// Forgets the blobs `refs` does not name.
    pub(super) fn keep_blobs(&mut self, refs: &[&str]) {
        self.blobs.retain(|b| refs.contains(&b.digest.as_str()));
    }

    pub(super) fn clean(&mut self, text: &str) -> String {
        self.cleaner.clean(text)
    }

    fn clean_json(&mut self, value: &Value) -> Vec<u8> {
        self.cleaner.clean_json(value)
    }

    fn clean_bytes(&mut self, data: Vec<u8>) -> Vec<u8> {
        self.cleaner.clean_bytes(data)
    }

    pub(super) fn issue(&mut self, kind: &str, detail: impl Into<String>) {
        self.issues.push(CaptureIssue {
            kind: kind.to_owned(),
            detail: detail.into(),
        });
    }

    /// Stores `data` once by digest and returns the digest.
    fn store(&mut self, data: Vec<u8>) -> String {
        crate::priority::yield_point();
        let blob = Blob::new(data);
        let digest = blob.digest.clone();
        if !self.blobs.iter().any(|b| b.digest == digest) {
            self.blobs.push(blob);
        }
        digest
    }

    /// A message stored by digest; the record keeps only its role and digest.
    fn message_ref(&mut self, api: Api, value: &Value) -> Message {
        let bytes = self.clean_json(value);
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

    pub(super) fn request(
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
                        let clean = self.clean_json(t);
                        def.digest = self.store(clean);
                        def
                    })
                    .collect();
                let params = self.clean_json(&Value::Object(p.params.clone()));
                if let Ok(Value::Object(clean)) = serde_json::from_slice(&params) {
                    it.request_params = Some(json_to_struct(clean));
                }
            }
            // Unparsed (or not a model call): keep what was captured, raw.
            None => {
                let data = decoded.unwrap_or_else(|| body.contiguous());
                if !data.is_empty() {
                    let data = self.clean_bytes(data);
                    record.stored_digest = self.store(data);
                }
            }
        }
        http.request_body = Some(record);
        parsed
    }

    pub(super) fn response(
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
            decoder.feed(&data, &mut |e| {
                assembler.on_event(&e);
                crate::priority::yield_point();
            });
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
            let data = self.clean_bytes(data);
            record.stored_digest = self.store(data);
        }
        http.response_body = Some(record);
        parsed
    }

    pub(super) fn apply_response(&mut self, mut p: ParsedResponse, it: &mut Interaction) {
        let api = self.meta.api;
        it.response_id = p.id;
        it.served_model = p.model;
        it.output_messages = p.output.iter().map(|m| self.message_ref(api, m)).collect();
        it.tool_calls = p.tool_calls;
        for c in &mut it.tool_calls {
            c.arguments = self.clean(&c.arguments);
        }
        it.finish_reasons = p.finish_reasons;
        it.usage = p.usage;
        if let Some(e) = p.error {
            it.error_type = e.kind;
            it.error_message = self.clean(&e.message);
        }
        for issue in p.issues.drain(..) {
            self.issue("response_parse", issue);
        }
    }
}
