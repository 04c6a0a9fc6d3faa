//! OpenAI Responses (`POST /v1/responses`): `input` items and `instructions`,
//! item normalization, and reassembly of the `response.*` event stream. The
//! terminal event (`response.completed` / `.failed` / `.incomplete`) carries the
//! whole response and wins; without it the items are rebuilt from
//! `output_item` events and text/argument deltas.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::record::{Message, ToolCall, Usage};

use super::api::{ParsedRequest, ParsedResponse, ProviderError, event_json, event_type};
use super::parts::{self, json_text, str_of, u64_of};
use super::sse::SseEvent;

pub fn parse_request(mut map: Map<String, Value>) -> Result<ParsedRequest, String> {
    let messages = match map.remove("input") {
        Some(Value::Array(items)) => items,
        // A string input is shorthand for one user message.
        Some(Value::String(s)) => vec![json!({"type": "message", "role": "user", "content": s})],
        Some(_) => return Err("`input` is neither a string nor an array".into()),
        None => Vec::new(),
    };
    let system = map.remove("instructions").filter(|v| !v.is_null());
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

fn item_kind(item: &Value) -> &str {
    match str_of(item, "type") {
        "" if item.get("role").is_some() => "message",
        k => k,
    }
}

/// Who an item speaks for: messages say so; calls and reasoning are the
/// model's; outputs are the tools'.
pub fn item_role(item: &Value) -> &str {
    match item_kind(item) {
        "message" => str_of(item, "role"),
        k if k.ends_with("_output") => "tool",
        _ => "assistant",
    }
}

/// Normalizes one input or output item.
pub fn normalize_item(item: &Value) -> Message {
    let kind = item_kind(item);
    let mut m = Message {
        role: item_role(item).to_owned(),
        ..Default::default()
    };
    match kind {
        "message" => match &item["content"] {
            Value::String(s) => m.parts.push(parts::text(s.clone())),
            Value::Array(content) => {
                for c in content {
                    m.parts.push(content_part(c));
                }
            }
            _ => {}
        },
        "function_call" | "custom_tool_call" => {
            let args = if kind == "function_call" {
                json_text(&item["arguments"])
            } else {
                json_text(&item["input"])
            };
            m.parts.push(parts::tool_call(
                str_of(item, "call_id"),
                str_of(item, "name"),
                args,
            ));
        }
        "function_call_output" | "custom_tool_call_output" => {
            m.parts.push(parts::tool_response(
                str_of(item, "call_id"),
                parts::result_text(&item["output"]),
                false,
            ));
        }
        "reasoning" => {
            let mut text: Vec<&str> = Vec::new();
            for key in ["summary", "content"] {
                for s in item
                    .get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(t) = s.get("text").and_then(Value::as_str) {
                        text.push(t);
                    }
                }
            }
            let redacted = text.is_empty() && item.get("encrypted_content").is_some();
            m.parts.push(parts::reasoning(text.join("\n"), redacted));
        }
        other => {
            m.role = if other.ends_with("_output") {
                "tool"
            } else {
                "assistant"
            }
            .into();
            m.parts.push(parts::other(other, item));
        }
    }
    m
}

fn content_part(c: &Value) -> crate::record::Part {
    let kind = str_of(c, "type");
    match kind {
        "input_text" | "output_text" | "text" => parts::text(str_of(c, "text")),
        "refusal" => parts::text(str_of(c, "refusal")),
        "input_image" => match c.get("image_url").and_then(Value::as_str) {
            Some(url) => parts::url_or_data("image", url),
            None => parts::uri("image", "", str_of(c, "file_id")),
        },
        "input_file" => match c.get("file_data").and_then(Value::as_str) {
            Some(data) if data.starts_with("data:") => parts::url_or_data("document", data),
            Some(data) => parts::base64_blob("document", "", data),
            None => {
                let uri = c
                    .get("file_url")
                    .or_else(|| c.get("file_id"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                parts::uri("document", "", uri)
            }
        },
        "input_audio" => {
            let a = &c["input_audio"];
            let mime = format!("audio/{}", str_of(a, "format"));
            parts::base64_blob("audio", &mime, str_of(a, "data"))
        }
        _ => parts::other(kind, c),
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
    if let Some(items) = body.get("output").and_then(Value::as_array) {
        r.output = items.clone();
    }
    r.tool_calls = tool_calls(&r.output);
    let status = str_of(body, "status");
    let reason = str_of(&body["incomplete_details"], "reason");
    if !reason.is_empty() {
        r.finish_reasons.push(reason.to_owned());
    } else if !status.is_empty() {
        r.finish_reasons.push(status.to_owned());
    }
    if let Some(e) = body.get("error").filter(|e| e.is_object()) {
        r.error = Some(ProviderError {
            kind: json_text(&e["code"]),
            message: json_text(&e["message"]),
        });
    }
    r
}

fn tool_calls(output: &[Value]) -> Vec<ToolCall> {
    output
        .iter()
        .filter_map(|item| {
            let kind = str_of(item, "type");
            let arguments = match kind {
                "function_call" => json_text(&item["arguments"]),
                "custom_tool_call" => json_text(&item["input"]),
                _ => return None,
            };
            Some(ToolCall {
                id: str_of(item, "call_id").to_owned(),
                name: str_of(item, "name").to_owned(),
                arguments,
                r#type: if kind == "function_call" {
                    "function"
                } else {
                    "custom"
                }
                .into(),
            })
        })
        .collect()
}

fn usage(u: &Value) -> Option<Usage> {
    if !u.is_object() {
        return None;
    }
    let input = u64_of(u, "input_tokens");
    Some(parts::usage(
        input,
        u64_of(u, "output_tokens"),
        u64_of(&u["input_tokens_details"], "cached_tokens"),
        u64_of(&u["input_tokens_details"], "cache_write_tokens"),
        u64_of(&u["output_tokens_details"], "reasoning_tokens"),
        input,
    ))
}

/// Builds the response from `response.*` events.
#[derive(Debug, Default)]
pub struct Assembler {
    response: Option<Value>,
    terminal: bool,
    items: BTreeMap<u64, Value>,
    text: BTreeMap<(u64, u64), String>,
    arguments: BTreeMap<u64, String>,
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
        let index = u64_of(&data, "output_index");
        match kind {
            "response.created" | "response.in_progress" | "response.queued" => {
                self.response = data.get("response").cloned();
            }
            "response.completed" | "response.failed" | "response.incomplete" => {
                self.response = data.get("response").cloned();
                self.terminal = true;
            }
            "response.output_item.added" | "response.output_item.done" => {
                if let Some(item) = data.get("item") {
                    self.items.insert(index, item.clone());
                }
            }
            "response.output_text.delta" => {
                let key = (index, u64_of(&data, "content_index"));
                self.text
                    .entry(key)
                    .or_default()
                    .push_str(str_of(&data, "delta"));
            }
            "response.function_call_arguments.delta" | "response.custom_tool_call_input.delta" => {
                self.arguments
                    .entry(index)
                    .or_default()
                    .push_str(str_of(&data, "delta"));
            }
            "error" => {
                let e = data.get("error").unwrap_or(&data);
                self.error = Some(ProviderError {
                    kind: json_text(
                        e.get("code")
                            .or_else(|| e.get("type"))
                            .unwrap_or(&Value::Null),
                    ),
                    message: json_text(&e["message"]),
                });
            }
            _ => {}
        }
    }

    pub fn finish(mut self) -> ParsedResponse {
        let final_output_present = self
            .response
            .as_ref()
            .and_then(|r| r.get("output"))
            .and_then(Value::as_array)
            .is_some_and(|o| !o.is_empty());
        let mut r = match &self.response {
            Some(resp) => parse_response(resp),
            None => ParsedResponse::default(),
        };
        if !(self.terminal && final_output_present) {
            // Rebuild what the agent saw from the item events and deltas.
            for (index, item) in self.items.iter_mut() {
                fill_from_deltas(*index, item, &self.text, &self.arguments);
            }
            r.output = self.items.into_values().collect();
            r.tool_calls = tool_calls(&r.output);
        }
        r.complete = self.terminal;
        if !self.terminal {
            r.finish_reasons.clear();
        }
        if self.error.is_some() {
            r.error = self.error;
        }
        r.issues = self.issues;
        r
    }
}

/// Fills text and arguments that only arrived as deltas (item not yet `done`).
fn fill_from_deltas(
    index: u64,
    item: &mut Value,
    text: &BTreeMap<(u64, u64), String>,
    arguments: &BTreeMap<u64, String>,
) {
    match str_of(item, "type") {
        "message" => {
            let content = item
                .as_object_mut()
                .map(|o| o.entry("content").or_insert_with(|| json!([])));
            if let Some(Value::Array(content)) = content {
                for ((i, ci), t) in text.range((index, 0)..=(index, u64::MAX)) {
                    debug_assert_eq!(*i, index);
                    let ci = *ci as usize;
                    while content.len() <= ci {
                        content.push(json!({"type": "output_text", "text": ""}));
                    }
                    if str_of(&content[ci], "text").is_empty() {
                        content[ci]["text"] = Value::String(t.clone());
                    }
                }
            }
        }
        "function_call" | "custom_tool_call" => {
            let key = if str_of(item, "type") == "function_call" {
                "arguments"
            } else {
                "input"
            };
            if let Some(args) = arguments.get(&index)
                && str_of(item, key).is_empty()
            {
                item[key] = Value::String(args.clone());
            }
        }
        _ => {}
    }
}
