//! The per-exchange capture task. The proxy hands it receivers for the
//! request body, the upstream outcome and the response body; each is resolved
//! exactly once, by completion or by drop, so the task always ends and always
//! produces a record. Parsing runs on the recording pool (lower priority,
//! bounded queue); the result goes to the journal, whose bounded queue is the
//! other place this task can wait. The exchange's admission to the backlog is
//! released once its record is queued.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::record::CompletionStatus;

use super::body::{BodyCapture, BodyEnd};
use super::context::ContextRule;
use super::exchange::{self, Outcome, RequestMeta, ResponseHead};
use super::linking::Linking;
use super::pool::{Backlog, RecordPool};
use crate::record::conversation::ConversationTracker;

/// What the proxy reports about the upstream side.
pub enum UpstreamEvent {
    Response {
        head: ResponseHead,
        body: oneshot::Receiver<BodyCapture>,
    },
    Failed {
        status: CompletionStatus,
        http_status: u16,
        message: String,
    },
}

/// The proxy's end of a capture: report the outcome once. If it is dropped
/// without a report, the agent went away first.
pub struct CaptureHandle {
    tx: Option<oneshot::Sender<(UpstreamEvent, Instant)>>,
    /// Set by the response body's recorder when the body ends.
    response_ended: Arc<AtomicBool>,
}

impl CaptureHandle {
    /// For the response body's recorder: set when the agent has (or could
    /// have) the whole answer, so later requests link after this exchange.
    pub fn response_ended(&self) -> Arc<AtomicBool> {
        self.response_ended.clone()
    }

    pub fn report(&mut self, event: UpstreamEvent) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send((event, Instant::now()));
        }
    }
}

/// What every capture task shares.
#[derive(Clone)]
pub struct Recorder {
    pub journal: Journal,
    pub metrics: Arc<Metrics>,
    pub conversations: Arc<ConversationTracker>,
    pub context_rules: Arc<[ContextRule]>,
    pub tasks: tokio_util::task::TaskTracker,
    pub pool: Arc<RecordPool>,
    pub backlog: Backlog,
}

/// Starts the capture task for one exchange.
pub fn start(
    recorder: &Recorder,
    meta: RequestMeta,
    request_body: Option<oneshot::Receiver<BodyCapture>>,
) -> CaptureHandle {
    spawn(recorder, meta, request_body, None)
}

/// Starts the capture task for a model turn carried over a WebSocket
/// connection (`websocket` names it).
pub fn start_turn(
    recorder: &Recorder,
    meta: RequestMeta,
    request_body: Option<oneshot::Receiver<BodyCapture>>,
    websocket: crate::record::WebSocketConnection,
) -> CaptureHandle {
    spawn(recorder, meta, request_body, Some(websocket))
}

fn spawn(
    recorder: &Recorder,
    mut meta: RequestMeta,
    request_body: Option<oneshot::Receiver<BodyCapture>>,
    websocket: Option<crate::record::WebSocketConnection>,
) -> CaptureHandle {
    let (tx, rx) = oneshot::channel();
    let pending = recorder.conversations.arrive(&meta.context.execution_id);
    let response_ended = pending.response_ended();
    let linking = Linking {
        tracker: recorder.conversations.clone(),
        rules: recorder.context_rules.clone(),
        pending: Some(pending),
    };
    let journal = recorder.journal.clone();
    let metrics = recorder.metrics.clone();
    let pool = recorder.pool.clone();
    let admission = meta.admission.take();
    recorder.tasks.spawn(async move {
        let outcome = match rx.await {
            Ok((UpstreamEvent::Response { head, body }, _)) => {
                let body = body
                    .await
                    .unwrap_or_else(|_| BodyCapture::empty(BodyEnd::Dropped));
                Outcome::Response {
                    head,
                    body: Box::new(body),
                }
            }
            Ok((
                UpstreamEvent::Failed {
                    status,
                    http_status,
                    message,
                },
                at,
            )) => Outcome::Failed {
                status,
                http_status,
                message,
                at,
            },
            Err(_) => Outcome::ClientGone { at: Instant::now() },
        };
        let request = match request_body {
            Some(rx) => rx
                .await
                .unwrap_or_else(|_| BodyCapture::empty(BodyEnd::Dropped)),
            None => BodyCapture::empty(BodyEnd::Complete),
        };
        if let Some(pending) = &linking.pending {
            linking.tracker.predecessors_settled(pending, super::linking::CALL_WAIT).await;
        }
        // Shared with the job, so a minimal record can still be made if it fails.
        let meta = Arc::new(meta);
        let job_meta = meta.clone();
        let built = match pool.run(move || Box::new(exchange::build(&job_meta, request, outcome, linking))).await {
            Ok(mut b) => {
                b.interaction.websocket = websocket;
                b
            }
            Err(e) => {
                // A bug in parsing must not take the recorder down or lose the
                // fact that the exchange happened.
                tracing::error!(error = %e, "capture failed to build a full record; keeping a minimal one");
                let mut b = Box::new(exchange::Built::minimal(&meta));
                b.interaction.capture_issues.push(crate::record::CaptureIssue {
                    kind: "internal".into(),
                    detail: format!("capture failed: {e}"),
                });
                b
            }
        };
        metrics.interaction_captured(&built.interaction);
        if let Some(http) = &built.interaction.http {
            let size = |b: &Option<crate::record::Body>| b.as_ref().map_or(0, |b| b.size);
            metrics.bytes(&built.interaction.route, size(&http.request_body), size(&http.response_body));
        }
        for issue in &built.interaction.capture_issues {
            metrics.capture_error(&issue.kind);
        }
        let exchange::Built {
            interaction,
            blobs,
            linked,
        } = *built;
        journal.append_interaction(interaction, blobs).await;
        drop(linked);
        drop(admission);
    });
    CaptureHandle {
        tx: Some(tx),
        response_ended,
    }
}
