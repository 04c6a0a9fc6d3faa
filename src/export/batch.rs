//! One export batch: the entries after the cursor turned into spans, and
//! the OTLP request that carries them, encoded once (a retry re-sends the
//! same bytes).
//!
//! Entries come from the journal's in-memory tail when it holds the next
//! one (this process wrote it moments ago: no decoding, blobs at hand) and
//! from the journal file otherwise — entries other processes appended, or
//! ones the tail dropped while export was behind. Either way they are taken
//! strictly in seq order from the cursor, so what is exported is what the
//! journal holds, in its order.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;

use crate::capture::mcp::link::link_tool_calls;
use crate::journal::JournalError;
use crate::journal::tail::Tail;
use crate::record::{Blob, Execution, JournalEntry, journal_entry::Payload};

use super::source::Source;
use super::spans::{self, Policy};
use super::{config, connection_spans, mcp_spans};

/// Stay well under the collectors' default 4 MiB request limit.
const MAX_BATCH_BYTES: usize = 3 * 1024 * 1024;
const MAX_BATCH_SPANS: usize = 512;
const ROWS_PER_READ: usize = 256;
/// How far back an MCP tools/call looks for the model call it served.
const LINK_WINDOW: usize = 500;

/// What one pass over the journal produced.
pub(super) struct Batch {
    pub spans: Vec<Span>,
    /// The cursor after this batch is accepted.
    pub last_seq: u64,
    pub lag_entries: u64,
    pub lag_seconds: f64,
}

/// An entry to export, from wherever it was found.
struct Pending<'a> {
    seq: u64,
    recorded_at_us: i64,
    entry: Option<&'a JournalEntry>,
    /// Blobs written with the entry (tail entries only).
    blobs: &'a [Blob],
    /// Recorded by this process, so scrubbed under the same settings.
    own: bool,
}

/// Reads the entries after the cursor and turns them into one batch of spans.
pub(super) fn build(src: &Source, tail: &Tail, policy: &Policy) -> Result<Batch, JournalError> {
    let cursor = src.cursor();
    let held = tail.from(cursor + 1, ROWS_PER_READ);
    let read;
    let pending: Vec<Pending<'_>> = if held.is_empty() {
        // Not in memory: from the file, up to where the tail takes over.
        let _snapshot = src.snapshot()?;
        let upto = tail.first_from(cursor + 1);
        read = src.after(cursor, ROWS_PER_READ)?;
        read.iter()
            .take_while(|r| upto.is_none_or(|u| r.seq < u))
            .map(|r| Pending {
                seq: r.seq,
                recorded_at_us: r.recorded_at_us,
                entry: r.entry.as_ref(),
                blobs: &[],
                own: false,
            })
            .collect()
    } else {
        held.iter()
            .map(|c| Pending {
                seq: c.seq,
                recorded_at_us: c.recorded_at_us,
                entry: Some(&c.entry),
                blobs: &c.blobs,
                own: true,
            })
            .collect()
    };
    let last = src
        .last_seq()?
        .max(pending.last().map_or(cursor, |p| p.seq));
    let mut batch = Batch {
        spans: Vec::new(),
        last_seq: cursor,
        lag_entries: last.saturating_sub(cursor),
        lag_seconds: pending
            .first()
            .map_or(0.0, |p| age_seconds(p.recorded_at_us)),
    };
    let mut bytes = 0usize;
    for p in &pending {
        crate::priority::yield_point();
        let spans = spans_for(src, p, policy)?;
        let size: usize = spans.iter().map(|s| s.encoded_len() + 16).sum();
        if !batch.spans.is_empty()
            && (bytes + size > MAX_BATCH_BYTES || batch.spans.len() + spans.len() > MAX_BATCH_SPANS)
        {
            break;
        }
        bytes += size;
        batch.spans.extend(spans);
        batch.last_seq = p.seq;
    }
    Ok(batch)
}

/// A batch ready to send.
pub(super) struct Encoded {
    /// The OTLP request, if there are spans to send.
    pub request: Option<Bytes>,
    pub spans: u64,
    pub last_seq: u64,
    pub lag_entries: u64,
    pub lag_seconds: f64,
}

impl Batch {
    pub fn encode(self, resource: &Resource) -> Encoded {
        let spans = self.spans.len() as u64;
        Encoded {
            request: (spans > 0).then(|| encode(resource, self.spans)),
            spans,
            last_seq: self.last_seq,
            lag_entries: self.lag_entries,
            lag_seconds: self.lag_seconds,
        }
    }
}

fn age_seconds(recorded_at_us: i64) -> f64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64;
    ((now - recorded_at_us).max(0) as f64) / 1e6
}

/// The OTLP request for a batch's spans, encoded.
fn encode(resource: &Resource, spans: Vec<Span>) -> Bytes {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "sidetrace".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    Bytes::from(request.encode_to_vec())
}

/// The spans one journal entry gives rise to.
fn spans_for(src: &Source, p: &Pending<'_>, policy: &Policy) -> Result<Vec<Span>, JournalError> {
    let Some(payload) = p.entry.and_then(|e| e.payload.as_ref()) else {
        return Ok(Vec::new());
    };
    let seq = p.seq;
    let segment = |execution_id: &str| -> Result<(u64, Arc<Execution>), JournalError> {
        Ok(src.execution_at(execution_id, seq)?.unwrap_or_else(|| {
            (
                0,
                Arc::new(Execution {
                    id: execution_id.to_owned(),
                    ..Default::default()
                }),
            )
        }))
    };
    let mut load = |d: &str| match p.blobs.iter().find(|b| b.digest == d) {
        Some(b) => Some(b.data.clone()),
        None => src.blob(d),
    };
    // What this process recorded was scrubbed then, under the same setting.
    let own_policy = Policy {
        redact: policy.redact && !p.own,
        ..*policy
    };
    Ok(match payload {
        Payload::Execution(e) => {
            src.saw_execution(seq, e);
            Vec::new()
        }
        Payload::Interaction(it) if it.mcp.is_some() => {
            let (segment_seq, execution) = segment(&it.execution_id)?;
            let trace = spans::trace_of(&execution, segment_seq);
            let m = it.mcp.as_ref().expect("matched");
            let link = if m.method == "tools/call" {
                let recent = src.interactions_before(&it.execution_id, seq, LINK_WINDOW)?;
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
            let (segment_seq, execution) = segment(&it.execution_id)?;
            let trace = spans::trace_of(&execution, segment_seq);
            connection_spans::connection(&trace, it)
                .into_iter()
                .collect()
        }
        Payload::Interaction(it) => {
            let (segment_seq, execution) = segment(&it.execution_id)?;
            let trace = spans::trace_of(&execution, segment_seq);
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
            let mut out = vec![spans::chat(&trace, it, &own_policy, &mut load)];
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
                    &own_policy,
                ));
            }
            out
        }
        Payload::ExecutionEnd(end) => {
            let (segment_seq, execution) = segment(&end.execution_id)?;
            vec![spans::root(
                &spans::trace_of(&execution, segment_seq),
                &execution,
                end,
            )]
        }
        _ => Vec::new(),
    })
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
