//! One finished MCP exchange (or notification, orphan response, malformed
//! message) as an `Interaction`. Params and results are stored by digest
//! with secrets replaced; what auditors ask about first is lifted into
//! fields: the tool and its arguments, `isError`, resource URIs and content
//! digests (as context references), tool definitions, the peers.

use std::time::SystemTime;

use base64::Engine as _;
use serde_json::Value;

use crate::record::secrets::Cleaner;
use crate::record::{
    Api, Blob, CaptureIssue, Completion, CompletionStatus, ContextRef, Interaction, McpError,
    McpExchange, McpPeer, Timing, ToolDefinition, duration, timestamp,
};

use super::message::RpcError;
use super::pairing::{Finished, Oversized, Request, Seen};
use super::{Origin, Peer, SessionInfo, is_known_method};

/// Longest error text lifted from a tool result into `error_message`.
const MAX_ERROR_TEXT: usize = 1024;

/// Builds the record of `f`; returns it with the blobs it refers to.
pub fn build(f: Finished, redact: bool) -> (Interaction, Vec<Blob>) {
    let mut b = Builder::new(redact);
    match f {
        Finished::Exchange {
            initiator,
            request,
            response,
            unanswered,
            session,
        } => {
            b.start(&request.seen, &session);
            b.mcp.initiator = initiator.name().into();
            b.request(&request);
            match response {
                Some((seen, outcome)) => {
                    // A client's answer to a server request may carry the
                    // write-ahead record id (its message was the one sent).
                    if request.seen.record_id.is_none()
                        && let Some(id) = &seen.record_id
                    {
                        b.it.id = id.clone();
                    }
                    b.mcp.response_size = seen.size;
                    b.end(seen.at, CompletionStatus::Complete, "");
                    match &seen.oversized {
                        Some(o) => {
                            let (raw, digest) = b.oversized(o, "response", seen.size);
                            b.mcp.response_raw_digest = raw;
                            b.mcp.response_message_digest = digest;
                        }
                        None => b.outcome(&request, outcome),
                    }
                }
                None => {
                    let why = unanswered.unwrap_or_else(|| "no response".into());
                    b.end(
                        SystemTime::now(),
                        CompletionStatus::UpstreamIncomplete,
                        &why,
                    );
                    b.mcp.unanswered = why;
                }
            }
        }
        Finished::Notification {
            from,
            method,
            params,
            seen,
            related,
            session,
        } => {
            b.start(&seen, &session);
            b.mcp.initiator = from.name().into();
            b.mcp.notification = true;
            b.mcp.unknown_method = !is_known_method(&method);
            b.mcp.method = method;
            b.mcp.request_size = seen.size;
            b.mcp.batched = seen.batched;
            b.mcp.related_request_id = related.unwrap_or_default();
            if let Some(p) = &params {
                b.mcp.params_digest = b.store_json(p);
            }
            if let Some(o) = &seen.oversized {
                (b.mcp.raw_digest, b.mcp.message_digest) =
                    b.oversized(o, "notification", seen.size);
            }
            b.end(seen.at, CompletionStatus::Complete, "");
        }
        Finished::Orphan {
            from,
            id,
            outcome,
            seen,
            session,
        } => {
            b.start(&seen, &session);
            // The request it answers was sent by the other side.
            b.mcp.initiator = from.other().name().into();
            b.mcp.request_id = id;
            b.mcp.orphan_response = true;
            b.mcp.response_size = seen.size;
            b.mcp.batched = seen.batched;
            match (&seen.oversized, outcome) {
                (Some(o), _) => {
                    (b.mcp.response_raw_digest, b.mcp.response_message_digest) =
                        b.oversized(o, "response", seen.size);
                }
                (None, Ok(result)) => b.mcp.result_digest = b.store_json(&result),
                (None, Err(e)) => b.error(e),
            }
            b.issue(
                "mcp_orphan_response",
                "a response with no request to pair it with",
            );
            b.end(seen.at, CompletionStatus::Complete, "");
        }
        Finished::Malformed {
            from,
            reason,
            raw,
            digest,
            oversized,
            seen,
            session,
        } => {
            b.start(&seen, &session);
            b.mcp.initiator = from.name().into();
            b.mcp.malformed = !oversized;
            b.mcp.oversized = oversized;
            b.mcp.request_size = seen.size;
            // An oversized message without a digest was cut before it could be hashed whole.
            b.mcp.message_digest = match digest {
                Some(d) => d,
                None if oversized => String::new(),
                None => crate::record::digest_of(&raw),
            };
            let clean = b.cleaner.clean_bytes(raw.to_vec());
            b.mcp.raw_digest = b.store(clean);
            let kind = if oversized {
                "mcp_oversized"
            } else {
                "mcp_malformed"
            };
            b.issue(kind, &reason);
            b.end(seen.at, CompletionStatus::Complete, "");
        }
    }
    b.finish()
}

/// The record of an HTTP transport event (no JSON-RPC message of its own).
pub fn transport(e: super::TransportEvent, session: &SessionInfo) -> (Interaction, Vec<Blob>) {
    let mut b = Builder::new(false);
    let seen = Seen {
        at: e.start,
        size: 0,
        origin: e.origin,
        batched: false,
        record_id: e.record_id,
        oversized: None,
    };
    b.start(&seen, session);
    b.mcp.transport_event = e.event.into();
    b.end(e.end, e.status, &e.detail);
    b.finish()
}

/// The write-ahead record of a message the client is about to send: its
/// bytes and, when it is a request, method and id. The full record (same
/// id) follows when the exchange finishes.
pub fn request_start(
    bytes: &[u8],
    size: u64,
    seen: Seen,
    session: &SessionInfo,
    redact: bool,
) -> (Interaction, Vec<Blob>) {
    let mut b = Builder::new(redact);
    b.start(&seen, session);
    b.mcp.initiator = super::Side::Client.name().into();
    b.mcp.request_size = size;
    let first = match super::message::parse(bytes) {
        super::message::Parsed::Single(r) => Some(r),
        super::message::Parsed::Batch(mut items) if !items.is_empty() => {
            b.mcp.batched = true;
            Some(items.swap_remove(0))
        }
        _ => None,
    };
    match first {
        Some(super::message::Rpc::Request { id, method, .. }) => {
            b.mcp.request_id = id;
            b.mcp.method = method;
        }
        Some(super::message::Rpc::Notification { method, .. }) => {
            b.mcp.notification = true;
            b.mcp.method = method;
        }
        _ => {}
    }
    let clean = b.cleaner.clean_bytes(bytes.to_vec());
    b.mcp.raw_digest = b.store(clean);
    b.finish()
}

struct Builder {
    cleaner: Cleaner,
    blobs: Vec<Blob>,
    it: Interaction,
    mcp: McpExchange,
}

impl Builder {
    fn new(redact: bool) -> Self {
        Builder {
            cleaner: Cleaner::new(redact),
            blobs: Vec::new(),
            it: Interaction {
                id: uuid::Uuid::now_v7().to_string(),
                api: Api::Mcp as i32,
                ..Default::default()
            },
            mcp: McpExchange::default(),
        }
    }

    fn start(&mut self, seen: &Seen, session: &SessionInfo) {
        if let Some(id) = &seen.record_id {
            self.it.id = id.clone();
        }
        let o: &Origin = &seen.origin;
        self.it.execution_id = o.execution_id.clone();
        self.it.sponsor = Some(o.sponsor.clone());
        self.it.correlation = Some(o.correlation.clone());
        self.it.agent = Some(o.agent.clone());
        self.it.route = o.route.clone();
        self.it.http = o.http.clone();
        self.it.timing = Some(Timing {
            start_time: Some(timestamp(seen.at)),
            ..Default::default()
        });
        self.mcp.session_id = session.session_id.clone();
        self.mcp.protocol_version = session.protocol_version.clone();
        self.mcp.transport = session.transport.into();
        self.mcp.server_name = match (&session.server_name, &session.server) {
            (n, _) if !n.is_empty() => n.clone(),
            (_, Some(p)) => p.name.clone(),
            _ => String::new(),
        };
        self.mcp.client_info = session.client.as_ref().map(peer);
        self.mcp.server_info = session.server.as_ref().map(peer);
    }

    fn end(&mut self, at: SystemTime, status: CompletionStatus, detail: &str) {
        if let Some(t) = self.it.timing.as_mut() {
            let start = t.start_time.as_ref().map(crate::record::system_time);
            t.end_time = Some(timestamp(at));
            t.response_time = t.end_time;
            if let Some(d) = start.and_then(|s| at.duration_since(s).ok()) {
                t.duration = Some(duration(d));
            }
        }
        self.it.completion = Some(Completion {
            status: status as i32,
            detail: detail.to_owned(),
        });
    }

    fn request(&mut self, r: &Request) {
        self.mcp.method = r.method.clone();
        self.mcp.unknown_method = !is_known_method(&r.method);
        self.mcp.request_id = r.id.clone();
        self.mcp.request_size = r.seen.size;
        self.mcp.batched = r.seen.batched;
        self.mcp.progress_notifications = r.progress;
        if let Some(o) = &r.seen.oversized {
            (self.mcp.raw_digest, self.mcp.message_digest) =
                self.oversized(o, "request", r.seen.size);
        }
        let Some(params) = &r.params else { return };
        self.mcp.params_digest = self.store_json(params);
        if let Some(tp) = params
            .get("_meta")
            .and_then(|m| m.get("traceparent"))
            .and_then(Value::as_str)
        {
            self.it.traceparent = tp.to_owned();
        }
        let text = |k: &str| params.get(k).and_then(Value::as_str).map(str::to_owned);
        match r.method.as_str() {
            "tools/call" => {
                self.mcp.tool_name = text("name").unwrap_or_default();
                if let Some(args) = params.get("arguments") {
                    let json = serde_json::to_string(args).unwrap_or_default();
                    self.mcp.tool_arguments = self.cleaner.clean(&json);
                }
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                self.mcp.resource_uri = text("uri").unwrap_or_default();
            }
            "prompts/get" => self.mcp.prompt_name = text("name").unwrap_or_default(),
            _ => {}
        }
    }

    fn outcome(&mut self, r: &Request, outcome: Result<Value, RpcError>) {
        let result = match outcome {
            Ok(v) => v,
            Err(e) => return self.error(e),
        };
        self.mcp.result_digest = self.store_json(&result);
        match r.method.as_str() {
            "initialize" | "server/discover" => {
                if let Some(c) = result.get("capabilities") {
                    self.mcp.capabilities_digest = self.store_json(c);
                }
            }
            "tools/list" => {
                for tool in result
                    .get("tools")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
                    let def = ToolDefinition {
                        name: name.to_owned(),
                        r#type: "mcp".into(),
                        digest: self.store_json(tool),
                    };
                    self.it.tool_definitions.push(def);
                }
            }
            "tools/call" => {
                let content = result.get("content").and_then(Value::as_array);
                self.mcp.tool_is_error =
                    result.get("isError").and_then(Value::as_bool) == Some(true);
                if self.mcp.tool_is_error {
                    self.it.error_type = "tool_error".into();
                    let text = content
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("\n");
                    self.it.error_message = truncate(&self.cleaner.clean(&text), MAX_ERROR_TEXT);
                }
                // Resources a tool returned are context the model will see.
                for item in content.into_iter().flatten() {
                    match item.get("type").and_then(Value::as_str) {
                        Some("resource") => {
                            if let Some(res) = item.get("resource") {
                                self.resource_ref(res, &r.method);
                            }
                        }
                        Some("resource_link") => self.resource_link(item),
                        _ => {}
                    }
                }
            }
            "resources/read" => {
                for res in result
                    .get("contents")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    self.resource_ref(res, &r.method);
                }
            }
            _ => {}
        }
    }

    /// Stores the kept start of an oversized message; returns its blob
    /// digest and the digest of the whole.
    fn oversized(&mut self, o: &Oversized, what: &str, size: u64) -> (String, String) {
        self.mcp.oversized = true;
        self.issue(
            "mcp_oversized",
            &format!(
                "{what} of {size} bytes is larger than the capture cap: kept its first {} bytes and its digest",
                o.prefix.len()
            ),
        );
        let clean = self.cleaner.clean_bytes(o.prefix.to_vec());
        (self.store(clean), o.digest.clone().unwrap_or_default())
    }

    fn error(&mut self, e: RpcError) {
        self.it.error_type = e.code.to_string();
        self.it.error_message = self.cleaner.clean(&e.message);
        self.mcp.error = Some(McpError {
            code: e.code,
            message: self.it.error_message.clone(),
        });
    }

    /// A resource's contents (`text` or base64 `blob`) as a context reference.
    fn resource_ref(&mut self, res: &Value, via: &str) {
        let uri = res.get("uri").and_then(Value::as_str).unwrap_or_default();
        let mime = res
            .get("mimeType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let data = if let Some(text) = res.get("text").and_then(Value::as_str) {
            self.cleaner.clean(text).into_bytes()
        } else if let Some(b64) = res.get("blob").and_then(Value::as_str) {
            match base64::engine::general_purpose::STANDARD.decode(b64) {
                Ok(bytes) => bytes,
                Err(e) => {
                    self.issue(
                        "mcp_resource",
                        &format!("resource {uri:?}: blob is not base64: {e}"),
                    );
                    b64.as_bytes().to_vec()
                }
            }
        } else {
            Vec::new()
        };
        let size = data.len() as u64;
        let digest = self.store(data);
        self.it.context_refs.push(ContextRef {
            kind: "mcp_resource".into(),
            uri: uri.to_owned(),
            digest,
            size,
            tool_name: if via == "tools/call" {
                self.mcp.tool_name.clone()
            } else {
                String::new()
            },
            mime_type: mime.to_owned(),
            ..Default::default()
        });
    }

    /// A link to a resource the model was pointed at but not shown.
    fn resource_link(&mut self, item: &Value) {
        let uri = item.get("uri").and_then(Value::as_str).unwrap_or_default();
        self.it.context_refs.push(ContextRef {
            kind: "mcp_resource".into(),
            uri: uri.to_owned(),
            tool_name: self.mcp.tool_name.clone(),
            mime_type: item
                .get("mimeType")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            ..Default::default()
        });
    }

    fn store_json(&mut self, v: &Value) -> String {
        let bytes = self.cleaner.clean_json(v);
        self.store(bytes)
    }

    fn store(&mut self, data: Vec<u8>) -> String {
        let blob = Blob::new(data);
        let digest = blob.digest.clone();
        if !self.blobs.iter().any(|b| b.digest == digest) {
            self.blobs.push(blob);
        }
        digest
    }

    fn issue(&mut self, kind: &str, detail: &str) {
        self.it.capture_issues.push(CaptureIssue {
            kind: kind.to_owned(),
            detail: detail.to_owned(),
        });
    }

    fn finish(mut self) -> (Interaction, Vec<Blob>) {
        self.it.mcp = Some(self.mcp);
        self.it.redactions.extend(self.cleaner.into_counts());
        (self.it, self.blobs)
    }
}

fn peer(p: &Peer) -> McpPeer {
    McpPeer {
        name: p.name.clone(),
        version: p.version.clone(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
#[path = "interaction_tests.rs"]
mod tests;
