//! Anthropic Messages (`POST /v1/messages`): `system`, content blocks, and
//! reassembly of the event stream (`message_start`, `content_block_*`,
//! `message_delta`, `message_stop`, `ping`, `error`), with `tool_use` input
//! built from `input_json_delta` fragments and `thinking` kept as reasoning.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::record::{Message, ToolCall, Usage};

use super::api::{ParsedRequest, ParsedResponse, ProviderError, event_json, event_type};
use super::parts::{self, json_text, str_of, u64_of};
use super::sse::SseEvent;

pub fn parse_request(mut map: Map<String, Value>) -> Result<ParsedRequest, String> {
    let messages = match map.remove("messages") {
        Some(Value::Array(m)) => m,
        Some(_) => return Err("`messages` is not an array".into()),
        None => return Err("request has no `messages`".into()),
    };
    let system = map.remove("system").filter(|v| !v.is_null());
    let tools = match map.remove("tools") {
        Some(Value::Array(t)) => t,
        _ => Vec::new(),
    };
    Ok(ParsedRequest {
        model: map
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        stream: map.get("stream").and_then(Value::as_bool).unwrap_or(false),
        system,
        messages,
        tools,
        params: map,
    })
}

pub fn normalize_system(system: &Value) -> Message {
    Message {
        role: "system".into(),
        parts: parts::text_parts(system),
        ..Default::default()
    }
}

pub fn normalize_message(m: &Value) -> Message {
    let mut out = Message {
        role: str_of(m, "role").to_owned(),
        ..Default::default()
    };
    match &m["content"] {
        Value::String(s) => out.parts.push(parts::text(s.clone())),
        Value::Array(blocks) => {
            for b in blocks {
                out.parts.push(block_part(b));
            }
        }
        _ => {}
    }
    out
}

fn block_part(b: &Value) -> crate::record::Part {
    let kind = str_of(b, "type");
    match kind {
        "text" => parts::text(str_of(b, "text")),
        "image" | "document" => {
            let modality = if kind == "image" { "image" } else { "document" };
            let source = &b["source"];
            match str_of(source, "type") {
                "base64" => parts::base64_blob(
                    modality,
                    str_of(source, "media_type"),
                    str_of(source, "data"),
                ),
                "url" => parts::uri(modality, "", str_of(source, "url")),
                "file" => parts::uri(modality, "", str_of(source, "file_id")),
                _ => parts::other(kind, b),
            }
        }
        "tool_use" | "server_tool_use" | "mcp_tool_use" => {
            parts::tool_call(str_of(b, "id"), str_of(b, "name"), json_text(&b["input"]))
        }
        "tool_result" | "mcp_tool_result" => parts::tool_response(
            str_of(b, "tool_use_id"),
            parts::result_text(&b["content"]),
            b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
        ),
        "thinking" => parts::reasoning(str_of(b, "thinking").to_owned(), false),
        "redacted_thinking" => parts::reasoning(String::new(), true),
        _ => parts::other(kind, b),
    }
}

pub fn parse_response(body: &Value) -> ParsedResponse {
    let content = body.get("content").cloned().unwrap_or_else(|| json!([]));
    let mut r = ParsedResponse {
        id: str_of(body, "id").to_owned(),
        model: str_of(body, "model").to_owned(),
        complete: true,
        usage: body.get("usage").and_then(usage),
        ..Default::default()
    };
    if let Some(reason) = body.get("stop_reason").and_then(Value::as_str) {
        r.finish_reasons.push(reason.to_owned());
    }
    r.tool_calls = tool_calls(&content);
    // Kept in the shape the agent sends it back in, so the next turn's copy dedupes.
    let role = match str_of(body, "role") {
        "" => "assistant",
        role => role,
    };
    r.output.push(json!({"role": role, "content": content}));
    r
}

fn tool_calls(content: &Value) -> Vec<ToolCall> {
    content
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| {
            matches!(
                str_of(b, "type"),
                "tool_use" | "server_tool_use" | "mcp_tool_use"
            )
        })
        .map(|b| ToolCall {
            id: str_of(b, "id").to_owned(),
            name: str_of(b, "name").to_owned(),
            arguments: json_text(&b["input"]),
            r#type: str_of(b, "type").to_owned(),
        })
        .collect()
}

fn usage(u: &Value) -> Option<Usage> {
    if !u.is_object() {
        return None;
    }
    let input = u64_of(u, "input_tokens");
    let cache_read = u64_of(u, "cache_read_input_tokens");
    let cache_write = u64_of(u, "cache_creation_input_tokens");
    Some(parts::usage(
        input,
        u64_of(u, "output_tokens"),
        cache_read,
        cache_write,
        0,
        input + cache_read + cache_write,
    ))
}

#[derive(Debug, Default)]
struct BlockState {
    block: Map<String, Value>,
    text: String,
    partial_json: String,
    saw_json_delta: bool,
    thinking: String,
    signature: String,
}

/// Builds the message from the event stream.
#[derive(Debug, Default)]
pub struct Assembler {
    message: Map<String, Value>,
    blocks: BTreeMap<u64, BlockState>,
    usage: Map<String, Value>,
    stopped: bool,
    error: Option<ProviderError>,
    issues: Vec<String>,
    events: u64,
}

impl Assembler {
    pub fn on_event(&mut self, event: &SseEvent) {
        self.events += 1;
        let Some(data) = event_json(event, self.events, &mut self.issues) else {
            return;
        };
        let kind = event_type(event, &data);
        match kind {
            "message_start" => {
                if let Some(Value::Object(m)) = data.get("message") {
                    self.message = m.clone();
                    if let Some(Value::Object(u)) = m.get("usage") {
                        self.usage.extend(u.clone());
                    }
                }
            }
            "content_block_start" => {
                if let Some(Value::Object(b)) = data.get("content_block") {
                    let state = self.blocks.entry(u64_of(&data, "index")).or_default();
                    state.block = b.clone();
                }
            }
            "content_block_delta" => {
                let state = self.blocks.entry(u64_of(&data, "index")).or_default();
                let d = &data["delta"];
                match str_of(d, "type") {
                    "text_delta" => state.text.push_str(str_of(d, "text")),
                    "input_json_delta" => {
                        state.saw_json_delta = true;
                        state.partial_json.push_str(str_of(d, "partial_json"));
                    }
                    "thinking_delta" => state.thinking.push_str(str_of(d, "thinking")),
                    "signature_delta" => state.signature.push_str(str_of(d, "signature")),
                    "citations_delta" => {
                        if let Some(c) = d.get("citation") {
                            let list = state.block.entry("citations").or_insert_with(|| json!([]));
                            if !list.is_array() {
                                *list = json!([]);
                            }
                            if let Value::Array(l) = list {
                                l.push(c.clone());
                            }
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Value::Object(d) = &data["delta"] {
                    for (k, v) in d {
                        self.message.insert(k.clone(), v.clone());
                    }
                }
                if let Some(Value::Object(u)) = data.get("usage") {
                    for (k, v) in u {
                        if !v.is_null() {
                            self.usage.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            "message_stop" => self.stopped = true,
            "error" => {
                let e = &data["error"];
                self.error = Some(ProviderError {
                    kind: str_of(e, "type").to_owned(),
                    message: str_of(e, "message").to_owned(),
                });
            }
            _ => {} // ping, content_block_stop, and events added later
        }
    }

    pub fn finish(mut self) -> ParsedResponse {
        let mut content = Vec::with_capacity(self.blocks.len());
        for (index, state) in std::mem::take(&mut self.blocks) {
            content.push(self.finish_block(index, state));
        }
        self.message.insert("content".into(), Value::Array(content));
        self.message.insert(
            "usage".into(),
            Value::Object(std::mem::take(&mut self.usage)),
        );
        let mut r = parse_response(&Value::Object(self.message));
        r.complete = self.stopped;
        r.error = self.error;
        r.issues.append(&mut self.issues);
        r
    }

    fn finish_block(&mut self, index: u64, mut state: BlockState) -> Value {
        let kind = state
            .block
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let b = &mut state.block;
        match kind.as_str() {
            "text" => {
                let mut text = b
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                text.push_str(&state.text);
                b.insert("text".into(), Value::String(text));
            }
            "thinking" => {
                let mut t = b
                    .get("thinking")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                t.push_str(&state.thinking);
                b.insert("thinking".into(), Value::String(t));
                if !state.signature.is_empty() {
                    b.insert("signature".into(), Value::String(state.signature));
                }
            }
            _ if state.saw_json_delta => {
                let input = if state.partial_json.trim().is_empty() {
                    json!({})
                } else {
                    match serde_json::from_str::<Value>(&state.partial_json) {
                        Ok(v) => v,
                        Err(e) => {
                            self.issues.push(format!(
                                "content block {index} ({kind}): streamed input is not complete JSON ({e}); kept as text"
                            ));
                            Value::String(state.partial_json)
                        }
                    }
                };
                b.insert("input".into(), input);
            }
            _ => {}
        }
        Value::Object(state.block)
    }
}
