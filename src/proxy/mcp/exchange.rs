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
        let mut joined = match (&self.session_id, &response_session) {
            (Some(id), _) => {
                self.sessions
                    .join_or_start(&Key::session_id(&route, id), id)
                    .await
            }
            (None, Some(id)) => {
                let own = self.sessions.own(id);
                self.sessions.start(Key::session_id(&route, id), own).await
            }
            (None, None) => match self
                .sessions
                .join(&Key::endpoint(&route, &self.rest_and_query))
            {
                Some(j) => j,
                None => self.sessions.own(""),
            },
        };
        let recorder = joined.recorder.clone();
        let origin = Arc::new(self.origin(&request, &outcome));
        let sent = (request.total > 0).then(|| {
            let (data, cut) = decoded(&self.meta.content_encoding, &request, self.meta.cap);
            let mut a = arrival(Side::Client, &request, data, cut, self.meta.start, &origin);
            a.record_id = self.record_id.clone();
            a
        });
        if let Some(a) = &sent {
            recorder.observe(a.clone()).await;
        }
        let sent = sent.map(|a| a.bytes);
        let event = |data: String, size: u64, at| Arrival {
            side: Side::Server,
            at,
            oversized: size > data.len() as u64,
            bytes: Bytes::from(data),
            size,
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
                let (data, cut) = decoded(&head.content_encoding, &body, self.meta.cap);
                if head.content_type.starts_with("text/event-stream") {
                    // A compressed stream, decoded whole.
                    let (events, _) = sse::decode_all(&data);
                    for e in events.into_iter().filter(|e| !e.data.trim().is_empty()) {
                        let id = e.id.filter(|_| e.own_id);
                        recorder
                            .observe_event(event(e.data, e.data_size, at), id)
                            .await;
                    }
                } else if !data.iter().all(u8::is_ascii_whitespace) && head.status != 202 {
                    recorder
                        .observe(arrival(Side::Server, &body, data, cut, at, &origin))
                        .await;
                }
                if head.status >= 400 {
                    let why = format!("the server answered HTTP {}", head.status);
                    if let Some(bytes) = &sent {
                        recorder
                            .abandon(Side::Client, bytes.clone(), why.clone())
                            .await;
                    }
                    // GET and DELETE are recorded with their status anyway.
                    if sent.is_none() && !matches!(self.meta.method.as_str(), "GET" | "DELETE") {
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
                            recorder
                                .observe_event(event(data, size, at), event_id)
                                .await
                        }
                        TapEvent::Endpoint(endpoint) => {
                            recorder.set_session_id(endpoint_session(&endpoint)).await;
                            let key = Key::endpoint(&route, &endpoint);
                            joined = self.sessions.start(key.clone(), joined).await;
                            announced = Some(key);
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
        let own = joined.is_own();
        drop(joined);
        if let Some(key) = announced {
            // The HTTP+SSE transport's session lives as long as its stream.
            self.sessions.close(&key, "the SSE stream closed").await;
        } else if own {
            recorder
                .close("the HTTP exchange ended without an answer (no session to resume it in)")
                .await;
        }
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
        Origin::new(
            &m.context,
            &m.route,
            Some(HttpExchange {
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
        )
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

/// The session id of an HTTP+SSE endpoint: its `session_id` (or
/// `sessionId`) query parameter, else the endpoint itself.
fn endpoint_session(endpoint: &str) -> String {
    endpoint
        .split_once('?')
        .and_then(|(_, q)| {
            q.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                matches!(k, "session_id" | "sessionId").then(|| v.to_owned())
            })
        })
        .unwrap_or_else(|| endpoint.to_owned())
}

/// The body's bytes after content decoding (raw if decoding fails), and
/// whether they were cut at the capture cap.
fn decoded(encoding: &str, body: &BodyCapture, cap: usize) -> (Vec<u8>, bool) {
    let raw = body.contiguous();
    if !decode::is_encoded(encoding) {
        return (raw, body.truncated);
    }
    match decode::decode(encoding, &raw, cap) {
        Ok(d) => (d.data, body.truncated || d.limit_hit),
        Err(e) => {
            tracing::debug!(error = %e, "could not decode an MCP body for the record");
            (raw, body.truncated)
        }
    }
}

/// A message body as the recorder takes it (whole, or cut at the cap).
fn arrival(
    side: Side,
    body: &BodyCapture,
    data: Vec<u8>,
    cut: bool,
    at: SystemTime,
    origin: &Arc<Origin>,
) -> Arrival {
    Arrival {
        side,
        at,
        size: if cut { body.total } else { data.len() as u64 },
        bytes: Bytes::from(data),
        oversized: cut,
        digest: cut.then(|| body.digest()),
        origin: origin.clone(),
        record_id: None,
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
