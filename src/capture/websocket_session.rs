//! Recording one WebSocket connection the proxy passes through.
//!
//! The relay hands copies of the bytes each way to this task through a
//! bounded queue (a slow recorder slows the connection, it never grows a
//! buffer); the task decodes them into messages (`super::websocket`) and
//! keeps a capped JSON-lines transcript. On a Responses API route each
//! `response.create` the client sends, with the server events that answer
//! it up to `response.completed` (or failed, incomplete, error), becomes a
//! Responses interaction exactly as if it had been a streamed
//! `POST /v1/responses`: the message is the request body, the events are
//! the SSE stream. When the connection ends, one record of the connection
//! itself follows, with its counts, close code and transcript.
//!
//! Guarantees: every turn that started is recorded (an unfinished one as
//! incomplete) and the connection record is written however the
//! connection ends. A decoding error stops message capture for the rest of
//! the connection (the bytes are still counted and relayed).

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::record::{
    Api, Blob, Body, Completion, CompletionStatus, HttpExchange, WebSocketConnection, digest_of,
    timestamp,
};

use super::body::{BodyCapture, BodyEnd};
use super::exchange::{self, RequestMeta, ResponseHead};
use super::session::{self, CaptureHandle, Recorder, UpstreamEvent};
use super::websocket::{Decoder, Deflate, Direction, Message, Opcode};

/// Bytes of one direction, or the end of the connection.
pub enum Chunk {
    ToUpstream(Bytes),
    ToClient(Bytes),
    End { error: Option<String> },
}

/// What the 101 response said.
pub struct Handshake {
    pub status: u16,
    pub response_headers: Vec<crate::record::Header>,
    pub extensions: String,
    pub subprotocol: String,
}

/// Server events that end a Responses turn.
const TURN_ENDS: &[&str] = &[
    "response.completed",
    "response.failed",
    "response.incomplete",
    "error",
];

/// Starts the recording task; the relay sends its chunks to the returned queue.
pub fn start(recorder: Recorder, meta: RequestMeta, handshake: Handshake) -> mpsc::Sender<Chunk> {
    let (tx, rx) = mpsc::channel(64);
    let tasks = recorder.tasks.clone();
    tasks.spawn(run(recorder, meta, handshake, rx));
    tx
}

struct Turn {
    capture: CaptureHandle,
    response: Option<oneshot::Sender<BodyCapture>>,
    sse: Vec<Bytes>,
    first_event: Option<Instant>,
}

struct Connection {
    recorder: Recorder,
    meta: RequestMeta,
    responses: bool,
    turn: Option<Turn>,
    stats: WebSocketConnection,
    transcript: Vec<u8>,
    transcript_total: u64,
    transcript_truncated: bool,
}

async fn run(
    recorder: Recorder,
    meta: RequestMeta,
    handshake: Handshake,
    mut rx: mpsc::Receiver<Chunk>,
) {
    let deflate = Deflate::negotiated(&handshake.extensions);
    let cap = meta.cap;
    let mut up = Decoder::new(Direction::ClientToServer, deflate, cap);
    let mut down = Decoder::new(Direction::ServerToClient, deflate, cap);
    let mut conn = Connection {
        responses: meta.api == Api::Responses,
        recorder,
        meta,
        turn: None,
        stats: WebSocketConnection {
            subprotocol: handshake.subprotocol.clone(),
            extensions: handshake.extensions.clone(),
            ..Default::default()
        },
        transcript: Vec::new(),
        transcript_total: 0,
        transcript_truncated: false,
    };
    let mut error = None;
    while let Some(chunk) = rx.recv().await {
        let mut messages = Vec::new();
        match chunk {
            Chunk::ToUpstream(b) => {
                conn.stats.bytes_to_upstream += b.len() as u64;
                up.feed(&b, &mut |m| messages.push((Direction::ClientToServer, m)));
            }
            Chunk::ToClient(b) => {
                conn.stats.bytes_to_client += b.len() as u64;
                down.feed(&b, &mut |m| messages.push((Direction::ServerToClient, m)));
            }
            Chunk::End { error: e } => {
                error = e;
                break;
            }
        }
        for (direction, m) in messages {
            conn.message(direction, m).await;
        }
    }
    if let Some(why) = up.failed().or(down.failed()) {
        conn.stats.capture_error = why.to_owned();
    }
    conn.finish(handshake, error).await;
}

impl Connection {
    async fn message(&mut self, direction: Direction, m: Message) {
        let to_upstream = direction == Direction::ClientToServer;
        if matches!(m.opcode, Opcode::Text | Opcode::Binary) {
            if to_upstream {
                self.stats.messages_to_upstream += 1;
            } else {
                self.stats.messages_to_client += 1;
            }
        }
        if let Some((code, reason)) = m.close()
            && self.stats.close_code == 0
        {
            self.stats.close_code = u32::from(code);
            self.stats.close_reason = String::from_utf8_lossy(reason).into_owned();
        }
        self.transcribe(to_upstream, &m);
        if !self.responses || m.opcode != Opcode::Text || m.truncated {
            return;
        }
        let Ok(event) = serde_json::from_slice::<Value>(&m.payload) else {
            return;
        };
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if to_upstream {
            if kind == "response.create" {
                self.end_turn(BodyEnd::Dropped);
                self.start_turn(event);
            }
        } else if let Some(turn) = &mut self.turn {
            turn.first_event.get_or_insert_with(Instant::now);
            let mut frame = Vec::with_capacity(m.payload.len() + kind.len() + 16);
            frame.extend_from_slice(b"event: ");
            frame.extend_from_slice(kind.as_bytes());
            frame.extend_from_slice(b"\ndata: ");
            frame.extend_from_slice(&m.payload);
            frame.extend_from_slice(b"\n\n");
            turn.sse.push(Bytes::from(frame));
            if TURN_ENDS.contains(&kind) {
                self.end_turn(BodyEnd::Complete);
            }
        }
    }

    /// A `response.create`: its fields are those of a `POST /v1/responses`
    /// body, so that is how the turn's request is recorded.
    fn start_turn(&mut self, mut event: Value) {
        if let Some(obj) = event.as_object_mut() {
            obj.remove("type");
            obj.entry("stream").or_insert(Value::Bool(true));
        }
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let mut meta = self.meta.clone();
        meta.interaction_id = uuid::Uuid::now_v7().to_string();
        meta.start = SystemTime::now();
        meta.start_instant = Instant::now();
        meta.content_type = "application/json".into();
        meta.content_encoding = String::new();
        let (request_tx, request_rx) = oneshot::channel();
        let _ = request_tx.send(BodyCapture::snapshot(vec![Bytes::from(body)], true));
        let mut capture = session::start_turn(
            &self.recorder,
            meta,
            Some(request_rx),
            WebSocketConnection {
                connection_id: self.meta.interaction_id.clone(),
                ..Default::default()
            },
        );
        let (response_tx, response_rx) = oneshot::channel();
        capture.report(UpstreamEvent::Response {
            head: ResponseHead {
                status: 101,
                version: "HTTP/1.1".into(),
                headers: Vec::new(),
                content_type: "text/event-stream".into(),
                content_encoding: String::new(),
                at: Instant::now(),
            },
            body: response_rx,
        });
        self.stats.turns += 1;
        self.turn = Some(Turn {
            capture,
            response: Some(response_tx),
            sse: Vec::new(),
            first_event: None,
        });
    }

    fn end_turn(&mut self, end: BodyEnd) {
        let Some(mut turn) = self.turn.take() else {
            return;
        };
        let mut body = BodyCapture::snapshot(std::mem::take(&mut turn.sse), true);
        body.end = end;
        body.first_frame = turn.first_event;
        turn.capture.response_ended().store(true, Ordering::Release);
        if let Some(tx) = turn.response.take() {
            let _ = tx.send(body);
        }
    }

    /// One line per message: direction, kind, size, and the text (or, for
    /// binary messages, only their digest).
    fn transcribe(&mut self, to_upstream: bool, m: &Message) {
        let mut line = serde_json::json!({
            "to": if to_upstream { "upstream" } else { "client" },
            "type": m.opcode.as_str(),
            "size": m.size,
        });
        match m.opcode {
            Opcode::Text => {
                line["text"] = Value::String(String::from_utf8_lossy(&m.payload).into_owned());
                if m.truncated {
                    line["truncated"] = Value::Bool(true);
                }
            }
            Opcode::Binary => line["digest"] = Value::String(digest_of(&m.payload)),
            _ => {}
        }
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        self.transcript_total += bytes.len() as u64;
        if self.transcript.len() + bytes.len() <= self.meta.cap {
            self.transcript.extend_from_slice(&bytes);
        } else {
            self.transcript_truncated = true;
        }
    }

    async fn finish(mut self, handshake: Handshake, error: Option<String>) {
        self.end_turn(BodyEnd::Dropped);
        let mut built = exchange::Built::minimal(&self.meta);
        let it = &mut built.interaction;
        it.api = Api::Websocket as i32;
        let end = SystemTime::now();
        if let Some(t) = &mut it.timing {
            t.end_time = Some(timestamp(end));
            t.duration = end
                .duration_since(self.meta.start)
                .ok()
                .map(crate::record::duration);
        }
        let transcript = Blob::new(std::mem::take(&mut self.transcript));
        it.http = Some(HttpExchange {
            method: self.meta.method.clone(),
            path: self.meta.path.clone(),
            upstream_url: self.meta.upstream_url.clone(),
            client_version: self.meta.client_version.clone(),
            client_address: self.meta.client_address.clone(),
            request_headers: self.meta.headers.clone(),
            status: u32::from(handshake.status),
            upstream_version: "HTTP/1.1".into(),
            response_headers: handshake.response_headers,
            response_body: Some(Body {
                digest: transcript.digest.clone(),
                size: self.transcript_total,
                content_type: "application/x-ndjson".into(),
                truncated: self.transcript_truncated,
                captured_size: transcript.data.len() as u64,
                stored_digest: transcript.digest.clone(),
                decoded_size: transcript.data.len() as u64,
                ..Default::default()
            }),
            ..Default::default()
        });
        let (status, detail) = match &error {
            Some(e) => (CompletionStatus::UpstreamIncomplete, e.clone()),
            None => (CompletionStatus::Complete, String::new()),
        };
        it.completion = Some(Completion {
            status: status as i32,
            detail,
        });
        it.websocket = Some(self.stats);
        built.blobs.push(transcript);
        self.recorder
            .metrics
            .interaction_captured(&built.interaction);
        self.recorder
            .journal
            .append_interaction(built.interaction, built.blobs)
            .await;
    }
}
