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
pub mod config;
mod connection_spans;
pub mod content;
mod mcp_spans;
pub mod otlp;
pub mod semconv;
pub mod source;
pub mod spans;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::capture::mcp::link::link_tool_calls;
use crate::capture::pool::RecordPool;
use crate::journal::{Journal, JournalError};
use crate::metrics::Metrics;
use crate::record::{Execution, journal_entry::Payload};

use config::ExportConfig;
use otlp::{Failure, Transport};
use source::{Row, Source};
use spans::Policy;

/// Stay well under the collectors' default 4 MiB request limit.
const MAX_BATCH_BYTES: usize = 3 * 1024 * 1024;
const MAX_BATCH_SPANS: usize = 512;
const ROWS_PER_READ: usize = 256;
/// How far back an MCP tools/call looks for the model call it served.
const LINK_WINDOW: usize = 500;
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
        let run = Run {
            source: Arc::new(Mutex::new(source)),
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
    /// Builds and cursor saves run here, below forwarding's priority.
    pool: RecordPool,
    transport: Transport,
    policy: Policy,
    resource: Arc<Resource>,
    metrics: Arc<Metrics>,
    commits: watch::Receiver<u64>,
    drain: watch::Receiver<Option<Instant>>,
}

/// What one pass over the journal produced.
struct Batch {
    spans: Vec<Span>,
    /// The cursor after this batch is accepted.
    last_seq: u64,
    lag_entries: u64,
    lag_seconds: f64,
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
                let (source, policy) = (self.source.clone(), self.policy);
                self.pool
                    .run(move || {
                        let src = source.lock().unwrap_or_else(|p| p.into_inner());
                        build(&src, &policy)
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
            if !batch.spans.is_empty() {
                let count = batch.spans.len() as u64;
                let request = ExportTraceServiceRequest {
                    resource_spans: vec![ResourceSpans {
                        resource: Some((*self.resource).clone()),
                        scope_spans: vec![ScopeSpans {
                            scope: Some(InstrumentationScope {
                                name: "sidetrace".into(),
                                version: env!("CARGO_PKG_VERSION").into(),
                                ..Default::default()
                            }),
                            spans: batch.spans,
                            schema_url: String::new(),
                        }],
                        schema_url: String::new(),
                    }],
                };
                loop {
                    match self.transport.send(request.clone()).await {
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

/// Reads entries after the cursor and turns them into one batch of spans.
fn build(src: &Source, policy: &Policy) -> Result<Batch, JournalError> {
    let _snapshot = src.snapshot()?;
    let cursor = src.cursor();
    let last = src.last_seq()?;
    let mut batch = Batch {
        spans: Vec::new(),
        last_seq: cursor,
        lag_entries: last.saturating_sub(cursor),
        lag_seconds: match src.recorded_at_us(cursor + 1)? {
            Some(us) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_micros() as i64;
                ((now - us).max(0) as f64) / 1e6
            }
            None => 0.0,
        },
    };
    let mut bytes = 0usize;
    for row in src.after(cursor, ROWS_PER_READ)? {
        let spans = spans_for(src, &row, policy)?;
        let size: usize = spans.iter().map(|s| s.encoded_len() + 16).sum();
        if !batch.spans.is_empty()
            && (bytes + size > MAX_BATCH_BYTES || batch.spans.len() + spans.len() > MAX_BATCH_SPANS)
        {
            break;
        }
        bytes += size;
        batch.spans.extend(spans);
        batch.last_seq = row.seq;
    }
    Ok(batch)
}

/// The spans one journal entry gives rise to.
fn spans_for(src: &Source, row: &Row, policy: &Policy) -> Result<Vec<Span>, JournalError> {
    let Some(payload) = row.entry.as_ref().and_then(|e| e.payload.as_ref()) else {
        return Ok(Vec::new());
    };
    let segment = |execution_id: &str| -> Result<(u64, Execution), JournalError> {
        Ok(src.execution_at(execution_id, row.seq)?.unwrap_or_else(|| {
            (
                0,
                Execution {
                    id: execution_id.to_owned(),
                    ..Default::default()
                },
            )
        }))
    };
    let mut load = |d: &str| src.blob(d);
    Ok(match payload {
        Payload::Interaction(it) if it.mcp.is_some() => {
            let (seq, execution) = segment(&it.execution_id)?;
            let trace = spans::trace_of(&execution, seq);
            let m = it.mcp.as_ref().expect("matched");
            let link = if m.method == "tools/call" {
                let recent = src.interactions_before(&it.execution_id, row.seq, LINK_WINDOW)?;
                link_tool_calls(&recent)
                    .into_iter()
                    .find(|l| l.mcp_interaction_id == it.id)
            } else {
                None
            };
            mcp_spans::mcp(&trace, it, m, link.as_ref(), policy, &mut load)
                .into_iter()
                .collect()
        }
        Payload::Interaction(it)
            if it.api == crate::record::Api::Tunnel as i32
                || it.api == crate::record::Api::Websocket as i32 =>
        {
            let (seq, execution) = segment(&it.execution_id)?;
            let trace = spans::trace_of(&execution, seq);
            connection_spans::connection(&trace, it)
                .into_iter()
                .collect()
        }
        Payload::Interaction(it) => {
            let (seq, execution) = segment(&it.execution_id)?;
            let trace = spans::trace_of(&execution, seq);
            let whole;
            let it = if policy.content == config::ContentMode::Full
                && it.inherited_input_count > 0
                && let Some(inputs) = src.whole_inputs(it)
            {
                let mut resolved = it.clone();
                resolved.input_messages = inputs.as_ref().clone();
                resolved.inherited_input_count = 0;
                whole = resolved;
                &whole
            } else {
                it
            };
            let mut out = vec![spans::chat(&trace, it, policy, &mut load)];
            for result in &it.tool_results {
                let call = match src.interaction(&result.call_interaction_id)? {
                    Some(caller) => caller
                        .tool_calls
                        .into_iter()
                        .find(|c| c.id == result.call_id),
                    None => None,
                };
                let text = spans::result_text(it, &result.call_id, &mut load);
                out.push(spans::tool(
                    &trace,
                    it,
                    result,
                    call.as_ref(),
                    text.as_deref(),
                    policy,
                ));
            }
            out
        }
        Payload::ExecutionEnd(end) => {
            let (seq, execution) = segment(&end.execution_id)?;
            vec![spans::root(
                &spans::trace_of(&execution, seq),
                &execution,
                end,
            )]
        }
        _ => Vec::new(),
    })
}
