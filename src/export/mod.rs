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

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::capture::pool::RecordPool;
use crate::journal::tail::Tail;
use crate::journal::{Journal, JournalError};
use crate::metrics::Metrics;

use config::ExportConfig;
use otlp::{Failure, Transport};
use source::Source;
use spans::Policy;
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

/// The running exporter.
pub struct Exporter {
    task: tokio::task::JoinHandle<()>,
    /// Set to a deadline to finish: export what is left, then stop.
    drain: watch::Sender<Option<Instant>>,
}

impl Exporter {
    /// Starts exporting `journal` if a collector is configured.
    pub fn start(
        config: &ExportConfig,
        redact: bool,
        journal: &Journal,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Self>, ExportError> {
        let Some(otlp) = &config.otlp else {
            return Ok(None);
        };
        let transport = Transport::new(otlp)?;
        let source = Source::open(journal.path())?;
        let (drain, drain_rx) = watch::channel(None);
        journal.tail().follow();
        let run = Run {
            source: Arc::new(Mutex::new(source)),
            tail: journal.tail().clone(),
            pool: RecordPool::new("sidetrace-export", 1).map_err(ExportError::Thread)?,
            transport,
            policy: Policy {
                content: config.content,
                max_attribute_size: config.max_attribute_size,
                redact,
            },
            resource: Arc::new(resource(config, journal.journal_id())),
            metrics,
            commits: journal.commits(),
            drain: drain_rx,
        };
        tracing::info!(endpoint = %otlp.endpoint, protocol = ?otlp.protocol, content = ?config.content, "exporting spans over OTLP");
        Ok(Some(Self {
            task: tokio::spawn(run.run()),
            drain,
        }))
    }

    /// Exports what is left (until caught up, or `timeout`), then stops.
    pub async fn finish(self, timeout: Duration) {
        let _ = self.drain.send(Some(Instant::now() + timeout));
        let mut task = self.task;
        if tokio::time::timeout(timeout + Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            task.abort();
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
    source: Arc<Mutex<Source>>,
    /// What this process committed lately, so export need not read it back.
    tail: Arc<Tail>,
    /// Builds and cursor saves run here, below forwarding's priority.
    pool: RecordPool,
    transport: Transport,
    policy: Policy,
    resource: Arc<Resource>,
    metrics: Arc<Metrics>,
    commits: watch::Receiver<u64>,
    drain: watch::Receiver<Option<Instant>>,
}

impl Run {
    async fn run(mut self) {
        self.export_until_stopped().await;
        self.save_cursor(true).await;
    }

    /// Saves the cursor if it moved (`now`), or if it moved and its last
    /// save is old enough; off the runtime (a write transaction).
    async fn save_cursor(&self, now: bool) {
        if !now
            && !self
                .source
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .save_due()
        {
            return;
        }
        let source = self.source.clone();
        let saved = self
            .pool
            .run(move || {
                source
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .save_cursor()
            })
            .await;
        if let Ok(Err(e)) = saved {
            tracing::error!(error = %e, "could not save the export cursor; spans may be sent again (same ids)");
        }
    }

    async fn export_until_stopped(&mut self) {
        let mut failures = 0u32;
        loop {
            let built = {
                let (source, tail, policy) = (self.source.clone(), self.tail.clone(), self.policy);
                let resource = self.resource.clone();
                self.pool
                    .run(move || {
                        let src = source.lock().unwrap_or_else(|p| p.into_inner());
                        batch::build(&src, &tail, &policy).map(|b| b.encode(&resource))
                    })
                    .await
            };
            let batch = match built {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "export cannot read the journal; retrying");
                    if !self.pause(Duration::from_secs(5)).await {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "export failed building spans");
                    return;
                }
            };
            self.metrics
                .export_lag(batch.lag_entries, batch.lag_seconds);
            let cursor = self.cursor();
            if batch.last_seq == cursor {
                if self.draining().is_some() {
                    return; // caught up
                }
                // Idle: the cursor is saved within a second or two.
                self.save_cursor(false).await;
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
            self.source
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .set_cursor(batch.last_seq);
            self.save_cursor(false).await;
        }
    }

    fn cursor(&self) -> u64 {
        self.source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cursor()
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
