//! OpenTelemetry export, driven by a cursor over the journal — not by an
//! in-memory queue that could drop. The exporter reads what was recorded
//! after its cursor, builds spans (deterministic ids, so a re-sent batch
//! produces the same spans), sends batches under the collectors' 4 MiB
//! limit, and advances the cursor (kept in the journal) only once the
//! collector has accepted them. Retryable failures are retried with
//! exponential backoff and jitter, honouring `Retry-After`, for as long as
//! it takes; a restart resumes at the cursor. Permanent rejections and
//! partial successes are counted and logged, not retried.

mod attrs;
mod batch;
pub mod config;
mod connection_spans;
pub mod content;
mod mcp_spans;
pub mod otlp;
pub mod semconv;
pub mod source;
pub mod spans;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::journal::tail::Tail;
use crate::journal::{Journal, JournalError};
use crate::metrics::Metrics;

use config::ExportConfig;
use otlp::{Failure, Transport};
use source::Source;
use spans::Policy;
/// Entries not yet exported past which export works without yielding to
/// forwarding (`priority::yield_point`).
const LAGGING: u64 = 1024;
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Transport(#[from] otlp::TransportError),
    #[error("cannot start the export thread: {0}")]
    Thread(std::io::Error),
}

/// The running exporter: one thread below forwarding's priority, with a
/// runtime of its own, so neither building spans nor talking to the
/// collector ever runs on the threads that forward agents' traffic.
pub struct Exporter {
    /// Told once the export loop has ended.
    done: oneshot::Receiver<()>,
    /// Set to a deadline to finish: export what is left, then stop.
    drain: watch::Sender<Option<Instant>>,
    /// Stops at once, whatever is in flight.
    abort: Option<oneshot::Sender<()>>,
}

impl Exporter {
    /// Starts exporting `journal` if a collector is configured.
    pub fn start(
        config: &ExportConfig,
        redact: bool,
        journal: &Journal,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Self>, ExportError> {
        let Some(otlp) = config.otlp.clone() else {
            return Ok(None);
        };
        let (drain, drain_rx) = watch::channel(None);
        let (done_tx, done) = oneshot::channel();
        let (abort, abort_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let path = journal.path().to_owned();
        let tail = journal.tail().clone();
        let commits = journal.commits();
        let policy = Policy {
            content: config.content,
            max_attribute_size: config.max_attribute_size,
            redact,
        };
        let resource = resource(config, journal.journal_id());
        let content = config.content;
        std::thread::Builder::new()
            .name("sidetrace-export".into())
            .spawn(move || {
                crate::priority::lower_this_thread();
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(ExportError::Thread(e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    // Made here: the transport's connections live on this runtime.
                    let opened = Transport::new(&otlp)
                        .map_err(ExportError::from)
                        .and_then(|t| Ok((t, Source::open(&path)?)));
                    let (transport, source) = match opened {
                        Ok(o) => o,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    tail.follow();
                    let _ = ready_tx.send(Ok(()));
                    tracing::info!(endpoint = %otlp.endpoint, protocol = ?otlp.protocol, content = ?content, "exporting spans over OTLP");
                    let run = Run {
                        source,
                        tail,
                        transport,
                        policy,
                        resource,
                        metrics,
                        commits,
                        drain: drain_rx,
                    };
                    tokio::select! {
                        () = run.run() => {}
                        _ = abort_rx => {}
                    }
                    let _ = done_tx.send(());
                });
            })
            .map_err(ExportError::Thread)?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Some(Self {
                done,
                drain,
                abort: Some(abort),
            })),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ExportError::Thread(std::io::Error::other(
                "the export thread ended before it started",
            ))),
        }
    }

    /// Exports what is left (until caught up, or `timeout`), then stops.
    pub async fn finish(mut self, timeout: Duration) {
        let _ = self.drain.send(Some(Instant::now() + timeout));
        let grace = timeout + Duration::from_secs(1);
        if tokio::time::timeout(grace, &mut self.done).await.is_err() {
            if let Some(abort) = self.abort.take() {
                let _ = abort.send(());
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), self.done).await;
        }
    }
}

fn resource(config: &ExportConfig, journal_id: &str) -> Resource {
    let kv = |k: &str, v: &str| KeyValue {
        key: k.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_owned())),
        }),
        ..Default::default()
    };
    let mut attrs = vec![
        kv(semconv::SERVICE_NAME, "sidetrace"),
        kv(semconv::SERVICE_VERSION, env!("CARGO_PKG_VERSION")),
        kv(semconv::SERVICE_INSTANCE_ID, journal_id),
    ];
    for (k, v) in &config.resource {
        attrs.retain(|a| &a.key != k);
        attrs.push(kv(k, v));
    }
    Resource {
        attributes: attrs,
        ..Default::default()
    }
}

struct Run {
    source: Source,
    /// What this process committed lately, so export need not read it back.
    tail: Arc<Tail>,
    transport: Transport,
    policy: Policy,
    resource: Resource,
    metrics: Arc<Metrics>,
    commits: watch::Receiver<u64>,
    drain: watch::Receiver<Option<Instant>>,
}

impl Run {
    async fn run(mut self) {
        self.export_until_stopped().await;
        self.save_cursor(true);
    }

    /// Saves the cursor if it moved (`now`), or if it moved and its last
    /// save is old enough (a write transaction: not after every batch).
    fn save_cursor(&self, now: bool) {
        if !now && !self.source.save_due() {
            return;
        }
        if let Err(e) = self.source.save_cursor() {
            tracing::error!(error = %e, "could not save the export cursor; spans may be sent again (same ids)");
        }
    }

    async fn export_until_stopped(&mut self) {
        let mut failures = 0u32;
        loop {
            // A bug in span building must not take the process down.
            let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                batch::build(&self.source, &self.tail, &self.policy)
                    .map(|b| b.encode(&self.resource))
            }));
            let batch = match built {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "export cannot read the journal; retrying");
                    if !self.pause(Duration::from_secs(5)).await {
                        return;
                    }
                    continue;
                }
                Err(_) => {
                    tracing::error!(
                        "export failed building spans (a bug); export stops, the journal keeps everything"
                    );
                    return;
                }
            };
            self.metrics
                .export_lag(batch.lag_entries, batch.lag_seconds);
            crate::priority::set_behind(batch.lag_entries >= LAGGING);
            let cursor = self.cursor();
            if batch.last_seq == cursor {
                if self.draining().is_some() {
                    return; // caught up
                }
                // Idle: the cursor is saved within a second or two.
                self.save_cursor(false);
                self.wait_for_commits().await;
                continue;
            }
            if let Some(request) = &batch.request {
                let count = batch.spans;
                loop {
                    match self.transport.send(request).await {
                        Ok(accepted) => {
                            if failures > 0 {
                                tracing::info!(
                                    after_failures = failures,
                                    "the collector accepts spans again"
                                );
                            }
                            failures = 0;
                            self.metrics.exported(count);
                            if accepted.rejected_spans > 0 || !accepted.message.is_empty() {
                                self.metrics
                                    .export_rejected(accepted.rejected_spans.max(0) as u64);
                                tracing::warn!(rejected = accepted.rejected_spans, message = %accepted.message, "the collector rejected part of a batch (partial success; not retried)");
                            }
                            break;
                        }
                        Err(Failure::Permanent(reason)) => {
                            self.metrics.export_rejected(count);
                            tracing::error!(spans = count, %reason, "the collector rejected a batch; it will not be retried");
                            break;
                        }
                        Err(Failure::Retryable { after, reason }) => {
                            failures += 1;
                            self.metrics.export_retried();
                            if failures == 1 || failures.is_multiple_of(10) {
                                tracing::warn!(attempt = failures, %reason, "export failed; retrying (nothing is lost: export resumes from the journal)");
                            }
                            let delay = after.unwrap_or_else(|| backoff(failures));
                            if !self.pause(delay).await {
                                return;
                            }
                        }
                    }
                }
            }
            self.source.set_cursor(batch.last_seq);
            self.save_cursor(false);
        }
    }

    fn cursor(&self) -> u64 {
        self.source.cursor()
    }

    fn draining(&self) -> Option<Instant> {
        *self.drain.borrow()
    }

    /// Sleeps `delay`; false when the drain deadline passes first.
    async fn pause(&mut self, delay: Duration) -> bool {
        let wake = Instant::now() + delay;
        loop {
            let deadline = self.draining();
            if let Some(d) = deadline
                && d <= Instant::now()
            {
                return false;
            }
            let until = deadline.map_or(wake, |d| d.min(wake));
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {
                    if Instant::now() >= wake {
                        return true;
                    }
                }
                changed = self.drain.changed() => {
                    if changed.is_err() {
                        return false;
                    }
                }
            }
        }
    }

    async fn wait_for_commits(&mut self) {
        tokio::select! {
            _ = self.commits.changed() => {}
            _ = self.drain.changed() => {}
            // Also notice entries written by other processes (journal prune).
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

fn backoff(failures: u32) -> Duration {
    let exp = BACKOFF_START
        .saturating_mul(1 << failures.min(16))
        .min(BACKOFF_MAX);
    exp.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}
