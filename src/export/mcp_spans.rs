//! MCP spans, per the MCP semantic conventions: one CLIENT span per request
//! or notification, seen from the side that sent it, named
//! `{mcp.method.name} {target}` (the tool or prompt). A `tools/call` that
//! served a model's tool call hangs under that call's `execute_tool` span
//! (the model asked → this server ran it), and carries the call's id.
//! Transport events (GET streams, DELETEs) are in the journal, not spans.

use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::Value;

use crate::capture::mcp::link::McpLink;
use crate::record::{CompletionStatus, Interaction, McpExchange, digest_of};

use super::attrs::{Attrs, common};
use super::config::ContentMode;
use super::semconv::*;
use super::spans::{
    Policy, TraceRef, context_events, error_status, nanos, server_attrs, span, span_id,
};

/// The span of one MCP record, or None for records that are not a message.
pub fn mcp(
    trace: &TraceRef,
    it: &Interaction,
    m: &McpExchange,
    link: Option<&McpLink>,
    policy: &Policy,
    load: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
) -> Option<Span> {
    if !m.transport_event.is_empty() {
        return None;
    }
    let timing = it.timing.unwrap_or_default();
    let target = [&m.tool_name, &m.prompt_name]
        .into_iter()
        .find(|t| !t.is_empty());
    let name = match (m.method.as_str(), target) {
        ("", _) => SPAN_MCP_INVALID.to_owned(),
        (method, Some(t)) => format!("{method} {t}"),
        (method, None) => method.to_owned(),
    };
    let parent = match link {
        Some(l) => span_id(&["execute_tool", &it.execution_id, &l.call_id]),
        None => trace.root_span_id,
    };
    let mut s = span(
        trace,
        span_id(&["mcp", &it.id]),
        Some(parent),
        name,
        SpanKind::Client,
        nanos(&timing.start_time),
        nanos(&timing.end_time),
    );
    let mut a = Attrs::default();
    a.str(MCP_METHOD_NAME, &m.method);
    if m.method == "tools/call" {
        a.str(GEN_AI_OPERATION_NAME, OP_EXECUTE_TOOL);
    }
    a.str(GEN_AI_TOOL_NAME, &m.tool_name);
    a.str(GEN_AI_PROMPT_NAME, &m.prompt_name);
    a.str(MCP_RESOURCE_URI, &m.resource_uri);
    a.str(JSONRPC_REQUEST_ID, json_id(&m.request_id).as_str());
    a.str(MCP_PROTOCOL_VERSION, &m.protocol_version);
    let http = m.transport == crate::capture::mcp::TRANSPORT_TCP;
    if http && m.protocol_version != MCP_SESSIONLESS_VERSION {
        a.str(MCP_SESSION_ID, &m.session_id);
    } else {
        a.str(SIDETRACE_MCP_SESSION_ID, &m.session_id);
    }
    a.str(NETWORK_TRANSPORT, &m.transport);
    if http {
        a.str(NETWORK_PROTOCOL_NAME, "http");
    }
    if let Some(h) = &it.http {
        server_attrs(&mut a, h);
    }
    a.str(SIDETRACE_MCP_SERVER_NAME, &m.server_name);
    a.str(SIDETRACE_MCP_INITIATOR, &m.initiator);
    a.str(
        SIDETRACE_MCP_RELATED_REQUEST_ID,
        json_id(&m.related_request_id).as_str(),
    );
    if m.progress_notifications > 0 {
        a.int(
            SIDETRACE_MCP_PROGRESS_NOTIFICATIONS,
            i64::from(m.progress_notifications),
        );
    }
    a.str(SIDETRACE_INTERACTION_ID, &it.id);
    if let Some(l) = link {
        a.str(GEN_AI_TOOL_CALL_ID, &l.call_id);
    }
    common(
        &mut a,
        &it.execution_id,
        it.sponsor.as_ref(),
        it.correlation.as_ref(),
    );
    tool_content(&mut a, m, policy, load);
    let error = if let Some(e) = &m.error {
        a.str(RPC_RESPONSE_STATUS_CODE, &e.code.to_string());
        Some(e.code.to_string())
    } else if m.tool_is_error {
        Some("tool_error".to_owned())
    } else if !m.unanswered.is_empty() {
        a.str(SIDETRACE_MCP_UNANSWERED, &m.unanswered);
        Some(CompletionStatus::of(it).short_name())
    } else if m.malformed || m.oversized {
        Some(
            if m.malformed {
                "malformed"
            } else {
                "oversized"
            }
            .to_owned(),
        )
    } else if m.orphan_response {
        Some("orphan_response".to_owned())
    } else {
        None
    };
    s.events = context_events(it, policy);
    if let Some(e) = error {
        a.str(ERROR_TYPE, &e);
        let message = if !m.unanswered.is_empty() {
            m.unanswered.as_str()
        } else {
            it.error_message.as_str()
        };
        s.status = Some(error_status(message, e));
    }
    s.attributes = a.0;
    Some(s)
}

/// `"abc"` → `abc`: the id as the conventions show it.
fn json_id(id: &str) -> String {
    match serde_json::from_str::<Value>(id) {
        Ok(Value::String(s)) => s,
        _ => id.to_owned(),
    }
}

/// Tool arguments and result, as the content mode allows.
fn tool_content(
    a: &mut Attrs,
    m: &McpExchange,
    policy: &Policy,
    load: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
) {
    if m.method != "tools/call" {
        return;
    }
    a.str(SIDETRACE_MCP_RESULT_DIGEST, &m.result_digest);
    if policy.content == ContentMode::None {
        if !m.tool_arguments.is_empty() {
            a.str(
                SIDETRACE_TOOL_CALL_ARGUMENTS_DIGEST,
                &digest_of(m.tool_arguments.as_bytes()),
            );
        }
        return;
    }
    a.content(GEN_AI_TOOL_CALL_ARGUMENTS, &m.tool_arguments, policy);
    if m.result_digest.is_empty() {
        return;
    }
    if let Some(result) = load(&m.result_digest) {
        a.content(
            GEN_AI_TOOL_CALL_RESULT,
            &String::from_utf8_lossy(&result),
            policy,
        );
    }
}
