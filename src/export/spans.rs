//! From journal records to OTLP spans. One trace per execution (or the
//! agent's own trace, when its first request carried a `traceparent`): a
//! root `invoke_agent` span per execution segment, a `chat {model}` CLIENT
//! span per model call (context references as its events), and an
//! `execute_tool {name}` span per tool call whose result came back. Ids are
//! derived from the records, so re-sending produces the same spans.

use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::{Span, Status, status};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::capture::exchange::resolve_message;
use crate::record::{
    Api, CompletionStatus, Execution, ExecutionEnd, Interaction, Message, Provider, Timestamp,
    ToolCall, ToolResult, digest_of, inputs, part::Kind,
};

use super::attrs::{Attrs, common};
use super::config::ContentMode;
use super::content;
use super::semconv::*;

/// What decides how much content goes on spans.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub content: ContentMode,
    pub max_attribute_size: usize,
    /// Replace secrets in content (they are normally gone from the journal already).
    pub redact: bool,
}

/// Where an execution segment's spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRef {
    pub trace_id: [u8; 16],
    pub root_span_id: [u8; 8],
    /// The agent's span the root hangs under, if it sent a traceparent.
    pub root_parent: Option<[u8; 8]>,
}

fn hash(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

pub(super) fn span_id(parts: &[&str]) -> [u8; 8] {
    let h = hash(parts);
    let mut id = [0u8; 8];
    id.copy_from_slice(&h[..8]);
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

/// `00-<trace>-<span>-<flags>` → (trace id, span id).
pub fn parse_traceparent(tp: &str) -> Option<([u8; 16], [u8; 8])> {
    let mut it = tp.trim().split('-');
    let (version, trace, span) = (it.next()?, it.next()?, it.next()?);
    if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    let mut t = [0u8; 16];
    let mut s = [0u8; 8];
    hex::decode_to_slice(trace, &mut t).ok()?;
    hex::decode_to_slice(span, &mut s).ok()?;
    (t != [0; 16] && s != [0; 8]).then_some((t, s))
}

/// The trace of the execution segment opened by `execution` at `segment_seq`.
pub fn trace_of(execution: &Execution, segment_seq: u64) -> TraceRef {
    let parent = parse_traceparent(&execution.traceparent);
    let trace_id = parent.map_or_else(
        || {
            let h = hash(&["sidetrace-trace", &execution.id]);
            let mut t = [0u8; 16];
            t.copy_from_slice(&h[..16]);
            t
        },
        |(t, _)| t,
    );
    TraceRef {
        trace_id,
        root_span_id: span_id(&["invoke_agent", &execution.id, &segment_seq.to_string()]),
        root_parent: parent.map(|(_, s)| s),
    }
}

pub(super) fn nanos(t: &Option<Timestamp>) -> u64 {
    t.map_or(0, |t| {
        (t.seconds.max(0) as u64) * 1_000_000_000 + t.nanos.max(0) as u64
    })
}

/// The agent's name from its user agent: `claude-cli/2.1 (...)` → `claude-cli`.
fn agent_name(user_agent: &str) -> &str {
    let name = user_agent.split(['/', ' ']).next().unwrap_or_default();
    if name.is_empty() { "agent" } else { name }
}

pub(super) fn span(
    trace: &TraceRef,
    id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: String,
    kind: SpanKind,
    start: u64,
    end: u64,
) -> Span {
    Span {
        trace_id: trace.trace_id.to_vec(),
        span_id: id.to_vec(),
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        name,
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end.max(start),
        ..Default::default()
    }
}

/// The `invoke_agent` span of an execution segment, once it has ended.
pub fn root(trace: &TraceRef, execution: &Execution, end: &ExecutionEnd) -> Span {
    let user_agent = execution
        .agent
        .as_ref()
        .map_or("", |a| a.user_agent.as_str());
    let name = agent_name(user_agent);
    let mut s = span(
        trace,
        trace.root_span_id,
        trace.root_parent,
        format!("{OP_INVOKE_AGENT} {name}"),
        SpanKind::Internal,
        nanos(&execution.start_time),
        nanos(&end.end_time),
    );
    let mut a = Attrs::default();
    a.str(GEN_AI_OPERATION_NAME, OP_INVOKE_AGENT);
    a.str(GEN_AI_AGENT_NAME, name);
    common(
        &mut a,
        &execution.id,
        execution.sponsor.as_ref(),
        execution.correlation.as_ref(),
    );
    a.str(SIDETRACE_EXECUTION_END_REASON, &end.reason);
    if let Some(agent) = &execution.agent {
        a.str(SIDETRACE_AGENT_USER_AGENT, &agent.user_agent);
        a.str(SIDETRACE_AGENT_CREDENTIAL, &agent.credential_fingerprint);
    }
    s.attributes = a.0;
    s
}

/// A `chat {model}` span for one model call. `it` is in stored form;
/// message contents are loaded as the content mode needs them.
pub fn chat(
    trace: &TraceRef,
    it: &Interaction,
    policy: &Policy,
    load: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
) -> Span {
    let api = Api::try_from(it.api).unwrap_or_default();
    let provider = Provider::try_from(it.provider).unwrap_or_default();
    let timing = it.timing.unwrap_or_default();
    let model = if it.requested_model.is_empty() {
        &it.served_model
    } else {
        &it.requested_model
    };
    let name = match model.as_str() {
        "" => OP_CHAT.to_owned(),
        m => format!("{OP_CHAT} {m}"),
    };
    let mut s = span(
        trace,
        span_id(&["chat", &it.id]),
        Some(trace.root_span_id),
        name,
        SpanKind::Client,
        nanos(&timing.start_time),
        nanos(&timing.end_time),
    );
    let mut a = Attrs::default();
    a.str(GEN_AI_OPERATION_NAME, OP_CHAT);
    a.str(GEN_AI_PROVIDER_NAME, provider.name());
    if provider == Provider::Openai && matches!(api, Api::ChatCompletions | Api::Responses) {
        a.str(OPENAI_API_TYPE, api.name());
    }
    a.str(GEN_AI_REQUEST_MODEL, &it.requested_model);
    a.str(GEN_AI_RESPONSE_MODEL, &it.served_model);
    a.str(GEN_AI_RESPONSE_ID, &it.response_id);
    a.strs(GEN_AI_RESPONSE_FINISH_REASONS, &it.finish_reasons);
    a.bool(GEN_AI_REQUEST_STREAM, it.stream);
    if let Some(t) = timing.time_to_first_chunk {
        a.double(
            GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
            t.seconds as f64 + t.nanos as f64 / 1e9,
        );
    }
    if let Some(params) = &it.request_params {
        use pbjson_types::value::Kind as V;
        for (field, attr) in [
            ("max_tokens", GEN_AI_REQUEST_MAX_TOKENS),
            ("max_output_tokens", GEN_AI_REQUEST_MAX_TOKENS),
            ("max_completion_tokens", GEN_AI_REQUEST_MAX_TOKENS),
        ] {
            if let Some(V::NumberValue(n)) = params.fields.get(field).and_then(|v| v.kind.as_ref())
            {
                a.int(attr, *n as i64);
            }
        }
        if let Some(V::NumberValue(n)) = params
            .fields
            .get("temperature")
            .and_then(|v| v.kind.as_ref())
        {
            a.double(GEN_AI_REQUEST_TEMPERATURE, *n);
        }
    }
    if let Some(u) = &it.usage {
        a.int(GEN_AI_USAGE_INPUT_TOKENS, u.total_input_tokens as i64);
        a.int(GEN_AI_USAGE_OUTPUT_TOKENS, u.output_tokens as i64);
        a.int(
            GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
            u.cache_read_input_tokens as i64,
        );
        a.int(
            GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
            u.cache_write_input_tokens as i64,
        );
    }
    a.str(GEN_AI_CONVERSATION_ID, &it.conversation_id);
    if it.turn > 0 {
        a.int(SIDETRACE_TURN, i64::from(it.turn));
    }
    a.str(SIDETRACE_INTERACTION_ID, &it.id);
    if let Some(http) = &it.http {
        server_attrs(&mut a, http);
    }
    if let Some(ws) = &it.websocket {
        a.str(NETWORK_PROTOCOL_NAME, "websocket");
        a.str(SIDETRACE_WEBSOCKET_CONNECTION_ID, &ws.connection_id);
    }
    common(
        &mut a,
        &it.execution_id,
        it.sponsor.as_ref(),
        it.correlation.as_ref(),
    );
    if let Some(agent) = &it.agent {
        a.str(SIDETRACE_AGENT_USER_AGENT, &agent.user_agent);
    }
    let completion = CompletionStatus::of(it);
    if completion != CompletionStatus::Complete {
        a.str(SIDETRACE_COMPLETION, &completion.short_name());
    }
    let error = error_type(it, completion);
    if let Some(e) = &error {
        a.str(ERROR_TYPE, e);
    }
    chat_content(&mut a, it, api, policy, load);
    s.attributes = a.0;
    s.events = context_events(it, policy);
    // The agent's own span for this request, when it is in another trace.
    if let Some((t, sp)) = parse_traceparent(&it.traceparent)
        && t != trace.trace_id
    {
        s.links.push(Link {
            trace_id: t.to_vec(),
            span_id: sp.to_vec(),
            ..Default::default()
        });
    }
    if let Some(e) = error {
        let detail = it
            .completion
            .as_ref()
            .map(|c| c.detail.as_str())
            .unwrap_or_default();
        let message = if it.error_message.is_empty() {
            detail
        } else {
            it.error_message.as_str()
        };
        s.status = Some(error_status(message, e));
    }
    s
}

/// `server.address`/`server.port` of the real upstream, and the HTTP status.
pub(super) fn server_attrs(a: &mut Attrs, http: &crate::record::HttpExchange) {
    if let Ok(uri) = http.upstream_url.parse::<http::Uri>() {
        a.str(SERVER_ADDRESS, uri.host().unwrap_or_default());
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        a.int(SERVER_PORT, i64::from(port));
    }
    if http.status > 0 {
        a.int(HTTP_RESPONSE_STATUS_CODE, i64::from(http.status));
    }
}

/// An ERROR status with the message, else the error type.
pub(super) fn error_status(message: &str, error_type: String) -> Status {
    Status {
        code: status::StatusCode::Error as i32,
        message: if message.is_empty() {
            error_type
        } else {
            message.to_owned()
        },
    }
}

/// The context an interaction retrieved, as span events.
pub(super) fn context_events(it: &Interaction, policy: &Policy) -> Vec<Event> {
    let timing = it.timing.unwrap_or_default();
    it.context_refs
        .iter()
        .map(|r| {
            let mut e = Attrs::default();
            e.str(SIDETRACE_CONTEXT_KIND, &r.kind);
            e.str(
                SIDETRACE_CONTEXT_URI,
                &content::bounded(&r.uri, policy.max_attribute_size, policy.redact).value,
            );
            e.str(SIDETRACE_CONTEXT_DIGEST, &r.digest);
            e.int(SIDETRACE_CONTEXT_SIZE, r.size as i64);
            e.str(SIDETRACE_CONTEXT_MIME_TYPE, &r.mime_type);
            e.str(GEN_AI_TOOL_CALL_ID, &r.tool_call_id);
            e.str(GEN_AI_TOOL_NAME, &r.tool_name);
            Event {
                time_unix_nano: nanos(&timing.start_time),
                name: EVENT_CONTEXT_REFERENCE.into(),
                attributes: e.0,
                dropped_attributes_count: 0,
            }
        })
        .collect()
}

/// `error.type`: the provider's error type, else the HTTP status, else how the exchange ended.
fn error_type(it: &Interaction, completion: CompletionStatus) -> Option<String> {
    let status = it.http.as_ref().map_or(0, |h| h.status);
    if !it.error_type.is_empty() {
        Some(it.error_type.clone())
    } else if status >= 400 {
        Some(status.to_string())
    } else if completion != CompletionStatus::Complete
        && completion != CompletionStatus::Unspecified
    {
        Some(completion.short_name())
    } else {
        None
    }
}

fn chat_content(
    a: &mut Attrs,
    it: &Interaction,
    api: Api,
    policy: &Policy,
    load: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
) {
    a.str(SIDETRACE_INPUT_DIGEST, &inputs::inputs_digest(it));
    a.str(
        SIDETRACE_OUTPUT_DIGEST,
        &inputs::messages_digest(&it.output_messages),
    );
    if let Some(sys) = &it.system_instructions {
        a.str(SIDETRACE_SYSTEM_INSTRUCTIONS_DIGEST, &sys.digest);
    }
    if !it.tool_definitions.is_empty() {
        let digests: Vec<&str> = it
            .tool_definitions
            .iter()
            .map(|t| t.digest.as_str())
            .collect();
        a.str(
            SIDETRACE_TOOL_DEFINITIONS_DIGEST,
            &digest_of(digests.join("\n").as_bytes()),
        );
    }
    if policy.content == ContentMode::None {
        return;
    }
    let first_turn = it.turn <= 1;
    let full = policy.content == ContentMode::Full;
    // Instructions and tool definitions repeat every turn: in delta mode, once per conversation.
    if full || first_turn {
        if let Some(sys) = &it.system_instructions {
            let mut sys = sys.clone();
            resolve_message(api, &mut sys, true, load);
            a.json(GEN_AI_SYSTEM_INSTRUCTIONS, &content::system(&sys), policy);
        }
        if !it.tool_definitions.is_empty() {
            let defs: Vec<Value> = it
                .tool_definitions
                .iter()
                .filter_map(|t| {
                    load(&t.digest).and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                })
                .map(|v| content::tool_definition(api, &v))
                .collect();
            a.json(GEN_AI_TOOL_DEFINITIONS, &Value::Array(defs), policy);
        }
    }
    // Full mode gets the whole list from the exporter (inherited inputs
    // resolved); delta mode only the new messages, always stored here.
    let shown: Vec<&Message> = if full || it.turn == 0 {
        it.input_messages.iter().collect()
    } else {
        it.new_input_indexes
            .iter()
            .filter_map(|&i| inputs::input_at(it, i))
            .collect()
    };
    let inputs: Vec<Value> = shown
        .into_iter()
        .map(|m| {
            let mut m = m.clone();
            resolve_message(api, &mut m, false, load);
            content::message(&m, None)
        })
        .collect();
    a.json(GEN_AI_INPUT_MESSAGES, &Value::Array(inputs), policy);
    let finish = it.finish_reasons.first().map(String::as_str);
    let outputs: Vec<Value> = it
        .output_messages
        .iter()
        .map(|m| {
            let mut m = m.clone();
            resolve_message(api, &mut m, false, load);
            content::message(&m, finish)
        })
        .collect();
    a.json(GEN_AI_OUTPUT_MESSAGES, &Value::Array(outputs), policy);
}

/// An `execute_tool` span: from the model's call to the result coming back.
/// `call` is the call as the model made it (from the interaction that made
/// it), when known; `result_text` the result as the agent sent it.
pub fn tool(
    trace: &TraceRef,
    it: &Interaction,
    result: &ToolResult,
    call: Option<&ToolCall>,
    result_text: Option<&str>,
    policy: &Policy,
) -> Span {
    let name = if result.tool_name.is_empty() {
        "tool"
    } else {
        result.tool_name.as_str()
    };
    let end = nanos(&result.result_time);
    let start = if result.call_time.is_some() {
        nanos(&result.call_time)
    } else {
        end
    };
    let mut s = span(
        trace,
        span_id(&["execute_tool", &it.execution_id, &result.call_id]),
        Some(trace.root_span_id),
        format!("{OP_EXECUTE_TOOL} {name}"),
        SpanKind::Internal,
        start,
        end,
    );
    let mut a = Attrs::default();
    a.str(GEN_AI_OPERATION_NAME, OP_EXECUTE_TOOL);
    a.str(GEN_AI_TOOL_NAME, &result.tool_name);
    a.str(GEN_AI_TOOL_CALL_ID, &result.call_id);
    a.str(
        GEN_AI_TOOL_TYPE,
        call.map_or("function", |c| {
            if c.r#type == "tool_use" || c.r#type.is_empty() {
                "function"
            } else {
                c.r#type.as_str()
            }
        }),
    );
    a.str(GEN_AI_CONVERSATION_ID, &it.conversation_id);
    a.str(SIDETRACE_TOOL_CALL_RESULT_DIGEST, &result.result_digest);
    a.int(SIDETRACE_TOOL_CALL_RESULT_SIZE, result.result_size as i64);
    if let Some(c) = call {
        a.str(
            SIDETRACE_TOOL_CALL_ARGUMENTS_DIGEST,
            &digest_of(c.arguments.as_bytes()),
        );
        if policy.content != ContentMode::None {
            a.content(GEN_AI_TOOL_CALL_ARGUMENTS, &c.arguments, policy);
        }
    }
    if let Some(text) = result_text
        && policy.content != ContentMode::None
    {
        a.content(GEN_AI_TOOL_CALL_RESULT, text, policy);
    }
    common(
        &mut a,
        &it.execution_id,
        it.sponsor.as_ref(),
        it.correlation.as_ref(),
    );
    if result.is_error {
        a.str(ERROR_TYPE, "tool_error");
        s.status = Some(Status {
            code: status::StatusCode::Error as i32,
            message: "the tool reported an error".into(),
        });
    }
    s.attributes = a.0;
    s
}

/// The text of the tool result `call_id` among the interaction's input messages.
pub fn result_text(
    it: &Interaction,
    call_id: &str,
    load: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
) -> Option<String> {
    let api = Api::try_from(it.api).unwrap_or_default();
    it.new_input_indexes
        .iter()
        .filter_map(|&i| inputs::input_at(it, i))
        .find_map(|m| {
            let mut m = m.clone();
            resolve_message(api, &mut m, false, load);
            m.parts.into_iter().find_map(|p| match p.kind {
                Some(Kind::ToolCallResponse(r)) if r.id == call_id => Some(r.response),
                _ => None,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_follow_traceparent() {
        let mut e = Execution {
            id: "exec-1".into(),
            ..Default::default()
        };
        assert_eq!(trace_of(&e, 3), trace_of(&e, 3));
        assert_ne!(trace_of(&e, 3).root_span_id, trace_of(&e, 9).root_span_id);
        assert!(trace_of(&e, 3).root_parent.is_none());
        e.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into();
        let t = trace_of(&e, 3);
        assert_eq!(hex::encode(t.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(t.root_parent.unwrap()), "00f067aa0ba902b7");
        assert!(
            parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none()
        );
        assert!(parse_traceparent("garbage").is_none());
        assert_eq!(
            agent_name("claude-cli/2.1.332 (external, cli)"),
            "claude-cli"
        );
        assert_eq!(agent_name(""), "agent");
    }
}
