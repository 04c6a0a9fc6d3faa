//! The two byte relays of `sidetrace mcp`, and the single writer of the
//! agent's stdout.
//!
//! Bytes are passed on as soon as they are read, chunk by chunk, and only
//! then framed into lines for the record, so recording never delays a
//! message. The exception is write-ahead durability: there a client line
//! goes to the server only once its start record is fsynced, and if the
//! journal cannot take it, the client gets a JSON-RPC error instead.
//! sidetrace's own replies are written between the server's lines, never
//! inside one. Queues are bounded; a slow reader slows its writer.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::capture::mcp::message::{self, Parsed};
use crate::capture::mcp::pairing::{Arrival, Seen};
use crate::capture::mcp::recorder::SessionRecorder;
use crate::capture::mcp::{Origin, SIDETRACE_ERROR_CODE, SessionInfo, Side, interaction};
use crate::journal::Journal;
use crate::record::journal_entry::Payload;

use super::framer::{Framer, Line};

const READ_SIZE: usize = 64 * 1024;
/// sidetrace's own replies waiting for a line boundary in the server's output.
const MAX_HELD_REPLIES: usize = 1024;

/// What both relays record into.
pub struct Recording {
    pub recorder: SessionRecorder,
    pub origin: Arc<Origin>,
    pub info: SessionInfo,
    pub journal: Journal,
    pub cap: usize,
    pub redact: bool,
    pub write_ahead: bool,
}

impl Recording {
    async fn observe(&self, side: Side, line: Line, record_id: Option<String>) {
        self.recorder
            .observe(Arrival {
                side,
                at: SystemTime::now(),
                bytes: line.bytes,
                size: line.size,
                oversized: line.oversized,
                digest: line.digest,
                origin: self.origin.clone(),
                record_id,
            })
            .await;
    }

    /// Makes the start of a client message durable; returns its record id.
    async fn durable_start(&self, bytes: Bytes, size: u64) -> Result<String, String> {
        let seen = Seen {
            at: SystemTime::now(),
            size,
            origin: self.origin.clone(),
            batched: false,
            record_id: None,
            oversized: None,
        };
        let (info, redact) = (self.info.clone(), self.redact);
        let built = tokio::task::spawn_blocking(move || {
            interaction::request_start(&bytes, size, seen, &info, redact)
        })
        .await
        .map_err(|e| format!("building the record failed: {e}"))?;
        let id = built.0.id.clone();
        self.journal
            .append_durable(Payload::InteractionStart(built.0), built.1)
            .await
            .map_err(|e| e.0)?;
        Ok(id)
    }
}

enum Out {
    Server(Bytes),
    Local(Bytes),
}

/// The agent's stdout: the server's bytes, and sidetrace's own replies.
#[derive(Clone)]
pub struct AgentOut {
    tx: mpsc::Sender<Out>,
}

impl AgentOut {
    /// Starts the writer task; it ends when every handle is dropped.
    pub fn spawn(
        mut writer: impl AsyncWrite + Unpin + Send + 'static,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Out>(64);
        let task = tokio::spawn(async move {
            let mut at_boundary = true;
            let mut held: Vec<Bytes> = Vec::new();
            let mut broken = false;
            while let Some(out) = rx.recv().await {
                let mut write: Vec<Bytes> = Vec::new();
                match out {
                    Out::Server(b) => {
                        at_boundary = b.ends_with(b"\n");
                        write.push(b);
                    }
                    Out::Local(b) if held.len() < MAX_HELD_REPLIES => held.push(b),
                    Out::Local(_) => {
                        tracing::error!(
                            "too many of sidetrace's own replies wait for the server to finish a line; one was dropped"
                        );
                    }
                }
                if at_boundary {
                    write.append(&mut held);
                }
                if broken || write.is_empty() {
                    continue;
                }
                for b in write {
                    if let Err(e) = writer.write_all(&b).await {
                        tracing::debug!(error = %e, "the agent's end of stdout is closed");
                        broken = true;
                        break;
                    }
                }
                if !broken && writer.flush().await.is_err() {
                    broken = true;
                }
            }
        });
        (Self { tx }, task)
    }

    async fn server(&self, b: Bytes) -> bool {
        self.tx.send(Out::Server(b)).await.is_ok()
    }

    async fn local(&self, b: Bytes) {
        let _ = self.tx.send(Out::Local(b)).await;
    }
}

/// Server stdout → agent stdout. Returns when the server's stdout closes.
pub async fn server_to_agent(mut from: impl AsyncRead + Unpin, to: AgentOut, rec: Arc<Recording>) {
    let mut framer = Framer::new(rec.cap);
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let mut relaying = true;
    loop {
        buf.reserve(READ_SIZE);
        match from.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading the MCP server's stdout failed");
                break;
            }
        }
        let chunk = buf.split().freeze();
        // Relay first; record after. If the agent is gone, keep reading
        // (and recording) so the server is never blocked on a full pipe.
        if relaying {
            relaying = to.server(chunk.clone()).await;
        }
        for line in framer.feed(&chunk) {
            rec.observe(Side::Server, line, None).await;
        }
    }
    if let Some(line) = framer.flush() {
        rec.observe(Side::Server, line, None).await;
    }
}

/// Agent stdin → server stdin. Returns when the agent closes stdin (the
/// server's stdin is then closed too) or the server stops reading.
pub async fn agent_to_server(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    agent: AgentOut,
    rec: Arc<Recording>,
) {
    let mut framer = Framer::new(rec.cap);
    let mut wa = WriteAhead::default();
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    loop {
        buf.reserve(READ_SIZE);
        match from.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading the agent's stdin failed");
                break;
            }
        }
        let chunk = buf.split().freeze();
        let delivered = if rec.write_ahead {
            wa.chunk(&chunk, &mut framer, &mut to, &agent, &rec).await
        } else {
            let ok = write(&mut to, &chunk).await;
            for line in framer.feed(&chunk) {
                rec.observe(Side::Client, line, None).await;
            }
            ok
        };
        if !delivered {
            tracing::debug!("the MCP server closed its stdin; no longer relaying to it");
            break;
        }
    }
    if let Some(line) = framer.flush() {
        wa.last_line(line, &mut to, &agent, &rec).await;
    }
    let _ = to.shutdown().await;
}

async fn write(to: &mut (impl AsyncWrite + Unpin), b: &[u8]) -> bool {
    to.write_all(b).await.is_ok() && to.flush().await.is_ok()
}

/// Write-ahead relaying of client bytes: a line is held until its start
/// record is durable. A line longer than the capture cap cannot be held
/// whole: its prefix is made durable, then the rest streams through.
#[derive(Default)]
struct WriteAhead {
    held: BytesMut,
    /// Passing the rest of an oversized line through.
    streaming: bool,
    /// The start record of the oversized line being streamed.
    stream_id: Option<String>,
    /// Dropping the rest of a line the journal could not take.
    discarding: bool,
}

impl WriteAhead {
    /// The stream ended inside a line: finish it as its state says.
    async fn last_line(
        &mut self,
        line: Line,
        to: &mut (impl AsyncWrite + Unpin),
        agent: &AgentOut,
        rec: &Recording,
    ) {
        if !rec.write_ahead || self.streaming {
            // Already relayed (batched mode, or the rest of an oversized line).
            let id = self.stream_id.take();
            rec.observe(Side::Client, line, id).await;
        } else if self.discarding {
            // The journal refused this line; it was not sent, nor is it recorded.
        } else {
            match rec.durable_start(line.bytes.clone(), line.size).await {
                Ok(id) => {
                    let _ = write(to, &self.held.split().freeze()).await;
                    rec.observe(Side::Client, line, Some(id)).await;
                }
                Err(e) => refuse(agent, &line.bytes, &e).await,
            }
        }
    }

    async fn chunk(
        &mut self,
        chunk: &[u8],
        framer: &mut Framer,
        to: &mut (impl AsyncWrite + Unpin),
        agent: &AgentOut,
        rec: &Recording,
    ) -> bool {
        let mut rest = chunk;
        while !rest.is_empty() {
            let (seg, ends_line) = match rest.iter().position(|&b| b == b'\n') {
                Some(nl) => (&rest[..=nl], true),
                None => (rest, false),
            };
            rest = &rest[seg.len()..];
            let lines = framer.feed(seg);
            if self.discarding {
                self.discarding = !ends_line;
                continue;
            }
            if self.streaming {
                if !write(to, seg).await {
                    return false;
                }
                self.streaming = !ends_line;
                for line in lines {
                    rec.observe(Side::Client, line, self.stream_id.take()).await;
                }
                continue;
            }
            self.held.extend_from_slice(seg);
            if ends_line {
                let bytes = self.held.split().freeze();
                let Some(line) = lines.into_iter().next() else {
                    // A blank line: nothing to record.
                    if !write(to, &bytes).await {
                        return false;
                    }
                    continue;
                };
                match rec.durable_start(line.bytes.clone(), line.size).await {
                    Ok(id) => {
                        if !write(to, &bytes).await {
                            return false;
                        }
                        rec.observe(Side::Client, line, Some(id)).await;
                    }
                    Err(e) => refuse(agent, &line.bytes, &e).await,
                }
            } else if self.held.len() > rec.cap {
                let prefix = self.held.clone().freeze();
                match rec.durable_start(prefix, framer.partial()).await {
                    Ok(id) => {
                        let bytes = self.held.split().freeze();
                        if !write(to, &bytes).await {
                            return false;
                        }
                        self.streaming = true;
                        self.stream_id = Some(id);
                    }
                    Err(e) => {
                        let bytes = self.held.split().freeze();
                        refuse(agent, &bytes, &e).await;
                        self.discarding = true;
                    }
                }
            }
        }
        true
    }
}

/// Answers each request in `line` with a JSON-RPC error: the journal could
/// not record it, so in write-ahead mode it was not sent.
async fn refuse(agent: &AgentOut, line: &[u8], why: &str) {
    tracing::error!(error = %why, "write-ahead: an MCP message could not be recorded, so it was not sent to the server");
    let message = format!(
        "sidetrace could not record this request ({why}), and in write-ahead mode nothing is sent unrecorded. Check free disk space, journal.max_size and the journal path."
    );
    // Notifications get no answer; an unreadable or oversized line an id-less one.
    let ids = match message::parse(line) {
        Parsed::Malformed(_) => vec!["null".to_owned()],
        _ => message::request_ids(line),
    };
    for id in ids {
        let id: serde_json::Value = serde_json::from_str(&id).unwrap_or(serde_json::Value::Null);
        let reply = json!({"jsonrpc": "2.0", "id": id, "error": {"code": SIDETRACE_ERROR_CODE, "message": message}});
        let mut text = reply.to_string();
        text.push('\n');
        agent.local(Bytes::from(text)).await;
    }
}
