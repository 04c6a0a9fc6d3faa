//! The recorder of one MCP session: a task that takes the messages a
//! transport relayed, in the order it relayed them, pairs them and writes
//! each finished exchange to the journal.
//!
//! The queue in front of it is bounded (`QUEUE`); a transport that outruns
//! the recorder waits for room after it has relayed the message, so the
//! agent's traffic is never held back by recording under normal load and
//! nothing is dropped under overload. Parsing runs on the blocking pool.
//! `close` records the session's pending requests as unanswered, with the
//! reason; the task itself ends when every handle is gone (after recording,
//! the same way, anything left waiting).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::record::{Blob, Interaction};

use bytes::Bytes;

use super::interaction;
use super::pairing::{Arrival, Pairing};
use super::{SessionInfo, Side, TransportEvent};

const QUEUE: usize = 256;

enum Command {
    /// A message, with its SSE event id when it came in one.
    Observe(Arrival, Option<String>),
    /// Requests in these bytes (sent by this side) will get no answer.
    Abandon(Side, Bytes, String),
    Transport(TransportEvent),
    SessionId(String),
    Close(String, oneshot::Sender<()>),
}

/// SSE event ids remembered per session, to skip events a resumed stream
/// (`Last-Event-ID`) sends again.
const MAX_EVENT_IDS: usize = 4096;

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
        self.send(Command::Observe(arrival, None)).await;
    }

    /// A message that came as an SSE event; one with an id already seen in
    /// this session (a replay after `Last-Event-ID`) is not recorded twice.
    pub async fn observe_event(&self, arrival: Arrival, event_id: Option<String>) {
        self.send(Command::Observe(arrival, event_id)).await;
    }

    /// The requests `side` sent in `bytes` will get no answer: `reason`.
    pub async fn abandon(&self, side: Side, bytes: Bytes, reason: String) {
        self.send(Command::Abandon(side, bytes, reason)).await;
    }

    pub async fn transport(&self, event: TransportEvent) {
        self.send(Command::Transport(event)).await;
    }

    async fn send(&self, cmd: Command) {
        if self.tx.send(cmd).await.is_err() {
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
    let tolerate_reorder = pairing.tolerates_reorder();
    let mut pairing = Some(Box::new(pairing));
    let mut event_ids = EventIds::default();
    let redact = sink.redact;
    while let Some(cmd) = rx.recv().await {
        let close = match &cmd {
            Command::Close(..) => true,
            Command::Observe(_, Some(id)) if !event_ids.first_time(id) => continue,
            Command::SessionId(id) => {
                if let Some(p) = pairing.as_mut() {
                    p.info.session_id = id.clone();
                }
                continue;
            }
            _ => false,
        };
        let mut p = pairing.take().unwrap_or_default();
        let info = p.info.clone();
        let (work_cmd, done) = match cmd {
            Command::Close(reason, done) => (Work::Close(reason), Some(done)),
            Command::Observe(a, _) => (Work::Observe(a), None),
            Command::Abandon(side, bytes, reason) => (Work::Abandon(side, bytes, reason), None),
            Command::Transport(e) => (Work::Transport(e), None),
            Command::SessionId(_) => unreachable!("handled above"),
        };
        let work = tokio::task::spawn_blocking(move || {
            let built = work_cmd.apply(&mut p, redact);
            (p, built)
        })
        .await;
        match work {
            Ok((p, built)) => {
                pairing = Some(p);
                sink.write(built).await;
            }
            Err(e) => {
                // A bug in parsing must not end the session's recording; the
                // requests it was waiting on are lost to pairing (their
                // answers will be recorded as orphans).
                tracing::error!(error = %e, "MCP capture failed on a message; its pairing state was reset");
                sink.metrics.capture_error("internal");
                pairing = Some(Box::new(Pairing::new(info, tolerate_reorder)));
            }
        }
        // After a close, the session's other exchanges (a GET stream the
        // DELETE has not ended yet) may still report; the task ends when
        // the last handle is gone.
        if close && let Some(done) = done {
            let _ = done.send(());
        }
    }
    // Every handle is gone without a close: record what was left waiting.
    if let Some(mut p) = pairing {
        let built = Work::Close("the session's transport went away".into()).apply(&mut p, redact);
        sink.write(built).await;
    }
}

enum Work {
    Observe(Arrival),
    Abandon(Side, Bytes, String),
    Transport(TransportEvent),
    Close(String),
}

impl Work {
    fn apply(self, p: &mut Pairing, redact: bool) -> Vec<(Interaction, Vec<Blob>)> {
        let finished = match self {
            Work::Observe(a) => p.observe(a),
            Work::Abandon(side, bytes, reason) => p.abandon(side, &bytes, &reason),
            Work::Close(reason) => p.close(&reason),
            Work::Transport(e) => return vec![interaction::transport(e, &p.info)],
        };
        finished
            .into_iter()
            .map(|f| interaction::build(f, redact))
            .collect()
    }
}

#[derive(Default)]
struct EventIds {
    seen: std::collections::HashSet<String>,
    order: std::collections::VecDeque<String>,
}

impl EventIds {
    fn first_time(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        self.seen.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        if self.order.len() > MAX_EVENT_IDS
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }
}
