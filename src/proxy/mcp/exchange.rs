//! The capture task of one HTTP exchange on an MCP route. It finds the
//! session the exchange belongs to, hands the session's recorder the
//! client's message(s) and then the server's, as they come, and records
//! what the transport did: the GET stream's life, a DELETE, an HTTP error.
//!
//! Each input resolves exactly once, by completion or by drop, so the task
//! always ends. Requests that can no longer be answered (the upstream was
//! unreachable, answered with an HTTP error, or — without a session to
//! resume in — the exchange ended) are recorded as unanswered with why.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::capture::body::{BodyCapture, BodyEnd};
use crate::capture::decode;
use crate::capture::exchange::{RequestMeta, ResponseHead};
use crate::capture::mcp::pairing::Arrival;
use crate::capture::mcp::{Origin, Side, TransportEvent};
use crate::capture::sse;
use crate::record::{Body, CompletionStatus, HttpExchange};

use super::sessions::{Key, Sessions};
use super::tap::TapEvent;

pub const SESSION_HEADER: &str = "mcp-session-id";

/// How the server's answer is captured.
pub enum ResponseBody {
    /// Bodies that are not an SSE stream, whole (up to the cap).
    Whole(oneshot::Receiver<BodyCapture>),
    /// An SSE stream, event by event.
    Events(mpsc::Receiver<TapEvent>),
}

pub enum Outcome {
    Response {
        head: ResponseHead,
        /// The `Mcp-Session-Id` the server answered with.
        session_id: Option<String>,
        body: ResponseBody,
    },
    Failed {
        status: CompletionStatus,
        http_status: u16,
        message: String,
    },
}

pub struct Exchange {
    pub sessions: Arc<Sessions>,
    pub meta: RequestMeta,
    /// The path after the route prefix, with the query (legacy endpoint key).
    pub rest_and_query: String,
    /// The `Mcp-Session-Id` the agent sent.
    pub session_id: Option<String>,
    /// Set when write-ahead mode already recorded the request's start.
    pub record_id: Option<String>,
}

impl Exchange {
    pub async fn run(
        self,
        request: oneshot::Receiver<BodyCapture>,
        outcome: oneshot::Receiver<Outcome>,
    ) {
        let outcome = outcome.await.unwrap_or_else(|_| Outcome::Failed {
            status: CompletionStatus::ClientDisconnected,
            http_status: 499,
            message: "the agent went away before the server answered".into(),
        });
        let request = request
            .await
            .unwrap_or_else(|_| BodyCapture::empty(BodyEnd::Dropped));
        let route = self.meta.route.clone();
        let response_session = match &outcome {
            Outcome::Response { session_id, .. } => session_id.clone(),
            Outcome::Failed { .. } => None,
        };
        let endpoint_key = Key::endpoint(&route, &self.rest_and_query);
        let (recorder, mut transient) = match (&self.session_id, &response_session) {
            (Some(id), _) => (
                self.sessions
                    .get_or_start(&Key::session_id(&route, id), id)
                    .await,
                false,
            ),
            (None, Some(id)) => {
                let r = self.sessions.transient(id);
                self.sessions
                    .insert(Key::session_id(&route, id), r.clone())
                    .await;
                (r, false)
            }
            (None, None) => match self.sessions.get(&endpoint_key) {
                Some(r) => (r, false),
                None => (self.sessions.transient(""), true),
            },
        };
        let origin = Arc::new(self.origin(&request, &outcome));
        let sent = self.request_bytes(&request);
        if let Some(bytes) = &sent {
            recorder
                .observe(Arrival {
                    side: Side::Client,
                    at: self.meta.start,
                    bytes: bytes.clone(),
                    size: request.total,
                    oversized: request.truncated,
                    digest: request.truncated.then(|| request.digest()),
                    origin: origin.clone(),
                    record_id: self.record_id.clone(),
                })
                .await;
        }
        let answer = |side_bytes: Bytes, size: u64, at| Arrival {
            side: Side::Server,
            at,
            bytes: side_bytes,
            size,
            oversized: false,
            digest: None,
            origin: origin.clone(),
            record_id: None,
        };
        let mut announced = None;
        let (end_status, detail) = match outcome {
            Outcome::Failed {
                status, message, ..
            } => {
                if let Some(bytes) = &sent {
                    recorder
                        .abandon(Side::Client, bytes.clone(), message.clone())
                        .await;
                }
                (status, message)
            }
            Outcome::Response {
                head,
                body: ResponseBody::Whole(rx),
                ..
            } => {
                let body = rx
                    .await
                    .unwrap_or_else(|_| BodyCapture::empty(BodyEnd::Dropped));
                let at = SystemTime::now();
                let data = decoded(&head.content_encoding, &body, self.meta.cap);
                if head.content_type.starts_with("text/event-stream") {
                    let (events, _) = sse::decode_all(&data);
                    for e in events.into_iter().filter(|e| !e.data.trim().is_empty()) {
                        let size = e.data_size;
                        recorder
                            .observe_event(answer(Bytes::from(e.data), size, at), e.id)
                            .await;
                    }
                } else if !data.iter().all(u8::is_ascii_whitespace) && head.status != 202 {
                    let size = data.len() as u64;
                    recorder.observe(answer(Bytes::from(data), size, at)).await;
                }
                if head.status >= 400 {
                    let why = format!("the server answered HTTP {}", head.status);
                    if let Some(bytes) = &sent {
                        recorder
                            .abandon(Side::Client, bytes.clone(), why.clone())
                            .await;
                    }
                    if sent.is_none() {
                        recorder
                            .transport(self.event(
                                false,
                                "http_error",
                                &origin,
                                CompletionStatus::Complete,
                                &why,
                            ))
                            .await;
                    }
                }
                body_status(&body.end)
            }
            Outcome::Response {
                body: ResponseBody::Events(mut rx),
                ..
            } => {
                let mut end = BodyEnd::Dropped;
                while let Some(ev) = rx.recv().await {
                    match ev {
                        TapEvent::Message {
                            data,
                            size,
                            event_id,
                            at,
                        } => {
                            let mut a = answer(data, size, at);
                            a.oversized = size > a.bytes.len() as u64;
                            recorder.observe_event(a, event_id).await;
                        }
                        TapEvent::Endpoint(key) => {
                            let key = Key::endpoint(&route, &key);
                            self.sessions.insert(key.clone(), recorder.clone()).await;
                            announced = Some(key);
                            transient = false;
                        }
                        TapEvent::End(e) => {
                            end = e;
                            break;
                        }
                    }
                }
                body_status(&end)
            }
        };
        let method = self.meta.method.as_str();
        if method == "GET" {
            recorder
                .transport(self.event(sent.is_some(), "stream", &origin, end_status, &detail))
                .await;
        }
        if method == "DELETE" {
            recorder
                .transport(self.event(sent.is_some(), "session_end", &origin, end_status, &detail))
                .await;
            let ok = origin
                .http
                .as_ref()
                .is_some_and(|h| (200..300).contains(&h.status));
            if let (Some(id), true) = (&self.session_id, ok) {
                self.sessions
                    .close(
                        &Key::session_id(&route, id),
                        "the client ended the session (DELETE)",
                    )
                    .await;
            }
        }
        if let Some(key) = announced {
            // The HTTP+SSE transport's session lives as long as its stream.
            self.sessions.close(&key, "the SSE stream closed").await;
        } else if transient {
            recorder
                .close("the HTTP exchange ended without an answer (no session to resume it in)")
                .await;
        }
    }

    /// The client's message bytes, decoded, if it sent any.
    fn request_bytes(&self, request: &BodyCapture) -> Option<Bytes> {
        if request.total == 0 {
            return None;
        }
        let data = decoded(&self.meta.content_encoding, request, self.meta.cap);
        Some(Bytes::from(data))
    }

    fn origin(&self, request: &BodyCapture, outcome: &Outcome) -> Origin {
        let m = &self.meta;
        let (status, version, response_headers) = match outcome {
            Outcome::Response { head, .. } => (
                u32::from(head.status),
                head.version.clone(),
                head.headers.clone(),
            ),
            Outcome::Failed { http_status, .. } => {
                (u32::from(*http_status), String::new(), Vec::new())
            }
        };
        Origin {
            execution_id: m.context.execution_id.clone(),
            sponsor: m.context.sponsor.clone(),
            correlation: m.context.correlation.clone(),
            agent: m.context.agent.clone(),
            route: m.route.clone(),
            http: Some(HttpExchange {
                method: m.method.clone(),
                path: m.path.clone(),
                upstream_url: m.upstream_url.clone(),
                client_version: m.client_version.clone(),
                upstream_version: version,
                status,
                request_headers: m.headers.clone(),
                response_headers,
                request_body: (request.total > 0).then(|| Body {
                    digest: request.digest(),
                    size: request.total,
                    content_type: m.content_type.clone(),
                    content_encoding: m.content_encoding.clone(),
                    truncated: request.truncated,
                    captured_size: request.captured as u64,
                    ..Default::default()
                }),
                response_body: None,
                client_address: m.client_address.clone(),
            }),
        }
    }

    fn event(
        &self,
        request_had_body: bool,
        event: &'static str,
        origin: &Arc<Origin>,
        status: CompletionStatus,
        detail: &str,
    ) -> TransportEvent {
        TransportEvent {
            event,
            origin: origin.clone(),
            start: self.meta.start,
            end: SystemTime::now(),
            status,
            detail: detail.to_owned(),
            // A request without a message: its write-ahead start record
            // becomes this event's record.
            record_id: if request_had_body {
                None
            } else {
                self.record_id.clone()
            },
        }
    }
}

/// The body's bytes after content decoding (raw if decoding fails).
fn decoded(encoding: &str, body: &BodyCapture, cap: usize) -> Vec<u8> {
    let raw = body.contiguous();
    if !decode::is_encoded(encoding) {
        return raw;
    }
    match decode::decode(encoding, &raw, cap) {
        Ok(d) => d.data,
        Err(e) => {
            tracing::debug!(error = %e, "could not decode an MCP body for the record");
            raw
        }
    }
}

fn body_status(end: &BodyEnd) -> (CompletionStatus, String) {
    match end {
        BodyEnd::Complete => (CompletionStatus::Complete, String::new()),
        BodyEnd::Failed(e) => (
            CompletionStatus::UpstreamIncomplete,
            format!("the server's stream failed: {e}"),
        ),
        BodyEnd::Dropped => (
            CompletionStatus::ClientDisconnected,
            "the agent closed the stream".into(),
        ),
    }
}
