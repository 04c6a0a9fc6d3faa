//! The recorder of one MCP session: a task that takes the messages a
//! transport relayed, in the order it relayed them, pairs them and writes
//! each finished exchange to the journal.
//!
//! The queue in front of it is bounded (`QUEUE`); a transport that outruns
//! the recorder waits for room after it has relayed the message, so the
//! agent's traffic is never held back by recording under normal load and
//! nothing is dropped under overload. Parsing runs on the blocking pool.
//! The session ends when `close` is called (its pending requests are then
//! recorded as unanswered, with the reason) or, failing that, when every
//! handle is gone.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::record::{Blob, Interaction};

use super::SessionInfo;
use super::interaction;
use super::pairing::{Arrival, Finished, Pairing};

const QUEUE: usize = 256;

enum Command {
    Observe(Arrival),
    SessionId(String),
    Close(String, oneshot::Sender<()>),
}

/// Where finished records go.
#[derive(Clone)]
pub struct Sink {
    pub journal: Journal,
    pub metrics: Arc<Metrics>,
    pub redact: bool,
}

impl Sink {
    async fn write(&self, records: Vec<(Interaction, Vec<Blob>)>) {
        for (it, blobs) in records {
            self.metrics.interaction_captured(&it);
            for issue in &it.capture_issues {
                self.metrics.capture_error(&issue.kind);
            }
            self.journal.append_interaction(it, blobs).await;
        }
    }
}

/// A handle on a session's recorder. Clones feed the same session.
#[derive(Clone)]
pub struct SessionRecorder {
    tx: mpsc::Sender<Command>,
}

impl SessionRecorder {
    /// Starts recording a session. `tolerate_reorder` when its messages
    /// travel on more than one connection (HTTP).
    pub fn start(
        info: SessionInfo,
        tolerate_reorder: bool,
        sink: Sink,
        tasks: &TaskTracker,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tasks.spawn(run(Pairing::new(info, tolerate_reorder), rx, sink));
        Self { tx }
    }

    /// Hands over a message; waits only when the recorder is `QUEUE` behind.
    pub async fn observe(&self, arrival: Arrival) {
        if self.tx.send(Command::Observe(arrival)).await.is_err() {
            tracing::error!("MCP session recorder is gone; a message was not recorded");
        }
    }

    /// Names the session once the server has (the `Mcp-Session-Id` of the
    /// initialize response).
    pub async fn set_session_id(&self, id: String) {
        let _ = self.tx.send(Command::SessionId(id)).await;
    }

    /// Ends the session: requests still waiting are recorded as unanswered
    /// with `reason`. Returns once everything is handed to the journal.
    pub async fn close(&self, reason: impl Into<String>) {
        let (done, wait) = oneshot::channel();
        if self
            .tx
            .send(Command::Close(reason.into(), done))
            .await
            .is_ok()
        {
            let _ = wait.await;
        }
    }
}

async fn run(pairing: Pairing, mut rx: mpsc::Receiver<Command>, sink: Sink) {
    let mut pairing = Some(Box::new(pairing));
    let redact = sink.redact;
    while let Some(cmd) = rx.recv().await {
        let (arrival, close) = match cmd {
            Command::Observe(a) => (Some(a), None),
            Command::SessionId(id) => {
                if let Some(p) = pairing.as_mut() {
                    p.info.session_id = id;
                }
                continue;
            }
            Command::Close(reason, done) => (None, Some((reason, done))),
        };
        let mut p = pairing.take().unwrap_or_default();
        let reason = close.as_ref().map(|(r, _)| r.clone());
        let work = tokio::task::spawn_blocking(move || {
            let finished: Vec<Finished> = match (arrival, reason) {
                (Some(a), _) => p.observe(a),
                (None, Some(r)) => p.close(&r),
                (None, None) => Vec::new(),
            };
            let built = finished
                .into_iter()
                .map(|f| interaction::build(f, redact))
                .collect();
            (p, built)
        })
        .await;
        match work {
            Ok((p, built)) => {
                pairing = Some(p);
                sink.write(built).await;
            }
            Err(e) => {
                // A bug in parsing must not end the session's recording.
                tracing::error!(error = %e, "MCP capture failed on a message; its pairing state was reset");
                sink.metrics.capture_error("internal");
            }
        }
        if let Some((_, done)) = close {
            let _ = done.send(());
            return;
        }
    }
    // Every handle is gone without a close: record what was left waiting.
    if let Some(mut p) = pairing {
        let left = p.close("the session's transport went away");
        let built = left
            .into_iter()
            .map(|f| interaction::build(f, redact))
            .collect();
        sink.write(built).await;
    }
}
