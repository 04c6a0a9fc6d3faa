//! OpenAI Chat Completions (`POST /v1/chat/completions`): request splitting,
//! message normalization, and reassembly of `chat.completion.chunk` streams
//! (content, refusals, and `tool_calls` built up from indexed deltas).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::record::{Message, ToolCall, Usage};

use super::api::{ParsedRequest, ParsedResponse, ProviderError, event_json, provider_error};
use super::parts::{self, json_text, str_of, u64_of};
use super::sse::SseEvent;

pub fn parse_request(mut map: Map<String, Value>) -> Result<ParsedRequest, String> {
    let messages = match map.remove("messages") {
        Some(Value::Array(m)) => m,
        Some(_) => return Err("`messages` is not an array".into()),
        None => return Err("request has no `messages`".into()),
    };
    let mut tools = match map.remove("tools") {
        Some(Value::Array(t)) => t,
        _ => Vec::new(),
    };
    // Legacy `functions` are tool definitions too.
    if let Some(Value::Array(functions)) = map.remove("functions") {
        tools.extend(
            functions
                .into_iter()
                .map(|f| json!({"type": "function", "function": f})),
        );
    }
    Ok(ParsedRequest {
        model: str_of(&Value::Object(map.clone()), "model").to_owned(),
        stream: map.get("stream").and_then(Value::as_bool).unwrap_or(false),
        system: None,
        messages,
        tools,
        params: map,
    })
}

pub fn normalize_message(m: &Value) -> Message {
    let role = str_of(m, "role");
    let mut out = Message {
        role: role.to_owned(),
        name: str_of(m, "name").to_owned(),
        ..Default::default()
    };
    let content = m.get("content").unwrap_or(&Value::Null);
    match role {
        "tool" => out.parts.push(parts::tool_response(
            str_of(m, "tool_call_id"),
            parts::result_text(content),
            false,
        )),
        "function" => out.parts.push(parts::tool_response(
            str_of(m, "name"),
            parts::result_text(content),
            false,
        )),
        _ => {
            if let Some(r) = m.get("reasoning_content").and_then(Value::as_str) {
                out.parts.push(parts::reasoning(r.to_owned(), false));
            }
            content_parts(content, &mut out.parts);
            if let Some(r) = m.get("refusal").and_then(Value::as_str) {
                out.parts.push(parts::text(r));
            }
            for call in m
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let c = tool_call(call);
                out.parts
                    .push(parts::tool_call(&c.id, &c.name, c.arguments));
            }
            if let Some(f) = m.get("function_call").filter(|f| f.is_object()) {
                out.parts.push(parts::tool_call(
                    "",
                    str_of(f, "name"),
                    str_of(f, "arguments").to_owned(),
                ));
            }
        }
    }
    out
}

fn content_parts(content: &Value, out: &mut Vec<crate::record::Part>) {
    match content {
        Value::String(s) => out.push(parts::text(s.clone())),
        Value::Array(items) => {
            for item in items {
                let kind = str_of(item, "type");
                out.push(match kind {
                    "text" => parts::text(str_of(item, "text")),
                    "refusal" => parts::text(str_of(item, "refusal")),
                    "image_url" => {
                        let url = match &item["image_url"] {
                            Value::String(s) => s.as_str(),
                            v => str_of(v, "url"),
                        };
                        parts::url_or_data("image", url)
                    }
                    "input_audio" => {
                        let a = &item["input_audio"];
                        let mime = format!("audio/{}", str_of(a, "format"));
                        parts::base64_blob("audio", &mime, str_of(a, "data"))
                    }
                    "file" => {
                        let f = &item["file"];
                        match f.get("file_data").and_then(Value::as_str) {
                            Some(data) if data.starts_with("data:") => {
                                parts::url_or_data("document", data)
                            }
                            Some(data) => parts::base64_blob("document", "", data),
                            None => parts::uri("document", "", str_of(f, "file_id")),
                        }
                    }
                    _ => parts::other(kind, item),
                });
            }
        }
        _ => {}
    }
}

fn tool_call(call: &Value) -> ToolCall {
    let kind = match str_of(call, "type") {
        "" => "function",
        k => k,
    };
    let body = &call[kind];
    let arguments = match kind {
        "custom" => json_text(&body["input"]),
        _ => json_text(&body["arguments"]),
    };
    ToolCall {
        id: str_of(call, "id").to_owned(),
        name: str_of(body, "name").to_owned(),
        arguments,
        r#type: kind.to_owned(),
    }
}

pub fn parse_response(body: &Value) -> ParsedResponse {
    let mut r = ParsedResponse {
        id: str_of(body, "id").to_owned(),
        model: str_of(body, "model").to_owned(),
        complete: true,
        usage: body.get("usage").and_then(usage),
        ..Default::default()
    };
    for choice in body
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(m) = choice.get("message") {
            collect_tool_calls(m, &mut r.tool_calls);
            r.output.push(m.clone());
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            r.finish_reasons.push(f.to_owned());
        }
    }
    r
}

fn collect_tool_calls(message: &Value, out: &mut Vec<ToolCall>) {
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(tool_call(call));
    }
}

fn usage(u: &Value) -> Option<Usage> {
    if !u.is_object() {
        return None;
    }
    let prompt = u64_of(u, "prompt_tokens");
    Some(parts::usage(
        prompt,
        u64_of(u, "completion_tokens"),
        u64_of(&u["prompt_tokens_details"], "cached_tokens"),
        0,
        u64_of(&u["completion_tokens_details"], "reasoning_tokens"),
        prompt,
    ))
}

#[derive(Debug, Default)]
struct ChoiceState {
    role: Option<String>,
    content: Option<String>,
    refusal: Option<String>,
    reasoning: Option<String>,
    tool_calls: BTreeMap<u64, ToolCallState>,
    finish_reason: Option<String>,
}

#[derive(Debug, Default)]
struct ToolCallState {
    id: String,
    kind: String,
    name: String,
    arguments: String,
}

/// Builds the response from `chat.completion.chunk` events.
#[derive(Debug, Default)]
pub struct Assembler {
    id: String,
    model: String,
    choices: BTreeMap<u64, ChoiceState>,
    usage: Option<Usage>,
    done: bool,
    error: Option<ProviderError>,
    issues: Vec<String>,
    events: u64,
}

impl Assembler {
    pub fn on_event(&mut self, event: &SseEvent) {
        self.events += 1;
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return;
        }
        let Some(chunk) = event_json(event, self.events, &mut self.issues) else {
            return;
        };
        if let Some(err) = provider_error(&chunk) {
            self.error = Some(err);
            return;
        }
        if self.id.is_empty() {
            self.id = str_of(&chunk, "id").to_owned();
        }
        if let Some(m) = chunk
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
        {
            self.model = m.to_owned();
        }
        if let Some(u) = chunk.get("usage").and_then(usage) {
            self.usage = Some(u);
        }
        for choice in chunk
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let state = self.choices.entry(u64_of(choice, "index")).or_default();
            let delta = &choice["delta"];
            if let Some(r) = delta.get("role").and_then(Value::as_str) {
                state.role = Some(r.to_owned());
            }
            append(&mut state.content, delta.get("content"));
            append(&mut state.refusal, delta.get("refusal"));
            append(&mut state.reasoning, delta.get("reasoning_content"));
            for call in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let t = state.tool_calls.entry(u64_of(call, "index")).or_default();
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    t.id = id.to_owned();
                }
                if let Some(k) = call.get("type").and_then(Value::as_str) {
                    t.kind = k.to_owned();
                }
                let f = &call["function"];
                if let Some(n) = f.get("name").and_then(Value::as_str) {
                    t.name.push_str(n);
                }
                if let Some(a) = f.get("arguments").and_then(Value::as_str) {
                    t.arguments.push_str(a);
                }
            }
            if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
                state.finish_reason = Some(f.to_owned());
            }
        }
    }

    pub fn finish(self) -> ParsedResponse {
        let mut r = ParsedResponse {
            id: self.id,
            model: self.model,
            usage: self.usage,
            complete: self.done,
            error: self.error,
            issues: self.issues,
            ..Default::default()
        };
        for (_, c) in self.choices {
            let mut m = Map::new();
            m.insert(
                "role".into(),
                json!(c.role.as_deref().unwrap_or("assistant")),
            );
            m.insert(
                "content".into(),
                c.content.map(Value::String).unwrap_or(Value::Null),
            );
            if let Some(refusal) = c.refusal {
                m.insert("refusal".into(), Value::String(refusal));
            }
            if let Some(reasoning) = c.reasoning {
                m.insert("reasoning_content".into(), Value::String(reasoning));
            }
            if !c.tool_calls.is_empty() {
                let calls: Vec<Value> = c
                    .tool_calls
                    .into_values()
                    .map(|t| {
                        let kind = if t.kind.is_empty() { "function".to_owned() } else { t.kind };
                        r.tool_calls.push(ToolCall {
                            id: t.id.clone(),
                            name: t.name.clone(),
                            arguments: t.arguments.clone(),
                            r#type: kind.clone(),
                        });
                        json!({"id": t.id, "type": kind, "function": {"name": t.name, "arguments": t.arguments}})
                    })
                    .collect();
                m.insert("tool_calls".into(), Value::Array(calls));
            }
            r.output.push(Value::Object(m));
            if let Some(f) = c.finish_reason {
                r.finish_reasons.push(f);
            }
        }
        r
    }
}

fn append(target: &mut Option<String>, piece: Option<&Value>) {
    if let Some(s) = piece.and_then(Value::as_str) {
        target.get_or_insert_with(String::new).push_str(s);
    }
}
