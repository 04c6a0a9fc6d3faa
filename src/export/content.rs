//! Message content as the GenAI conventions shape it on spans (JSON strings:
//! `[{role, parts: [{type, ...}]}]`), bounded: secrets scrubbed, values past
//! the size limit cut with the digest of the whole kept beside them.

use serde_json::{Value, json};

use crate::record::{Api, Message, digest_of, part::Kind, secrets};

/// A message in the conventions' shape.
pub fn message(m: &Message, finish_reason: Option<&str>) -> Value {
    let mut v = json!({"role": m.role, "parts": parts(m)});
    if !m.name.is_empty() {
        v["name"] = json!(m.name);
    }
    if let Some(f) = finish_reason {
        v["finish_reason"] = json!(f);
    }
    v
}

/// System instructions: a list of parts.
pub fn system(m: &Message) -> Value {
    Value::Array(parts(m))
}

fn parts(m: &Message) -> Vec<Value> {
    m.parts
        .iter()
        .filter_map(|p| {
            Some(match p.kind.as_ref()? {
                Kind::Text(t) => json!({"type": "text", "content": t.content}),
                Kind::ToolCall(c) => json!({"type": "tool_call", "id": c.id, "name": c.name, "arguments": arguments(&c.arguments)}),
                Kind::ToolCallResponse(r) => json!({"type": "tool_call_response", "id": r.id, "response": r.response}),
                Kind::Reasoning(r) if r.redacted => json!({"type": "reasoning", "content": "", "redacted": true}),
                Kind::Reasoning(r) => json!({"type": "reasoning", "content": r.content}),
                // Inline content is named by digest, never shipped.
                Kind::Blob(b) => json!({"type": "blob_ref", "modality": b.modality, "mime_type": b.mime_type, "digest": b.digest, "size": b.size}),
                Kind::Uri(u) => json!({"type": "uri", "modality": u.modality, "mime_type": u.mime_type, "uri": u.uri}),
                Kind::Other(o) => json!({"type": o.r#type}),
            })
        })
        .collect()
}

/// Arguments as JSON when they are JSON, else as the text they are.
pub fn arguments(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// A tool definition in the conventions' shape, from the provider's JSON.
pub fn tool_definition(api: Api, provider: &Value) -> Value {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    match api {
        Api::ChatCompletions => {
            let kind = provider["type"].as_str().unwrap_or("function");
            let f = &provider[kind];
            json!({"type": kind, "name": text(&f["name"]), "description": text(&f["description"]), "parameters": f["parameters"]})
        }
        Api::Messages => json!({
            "type": provider["type"].as_str().unwrap_or("function"),
            "name": text(&provider["name"]),
            "description": text(&provider["description"]),
            "parameters": provider["input_schema"],
        }),
        _ => json!({
            "type": provider["type"].as_str().unwrap_or("function"),
            "name": text(&provider["name"]),
            "description": text(&provider["description"]),
            "parameters": provider["parameters"],
        }),
    }
}

/// A content value ready for an attribute.
#[derive(Debug, PartialEq, Eq)]
pub struct Bounded {
    pub value: String,
    /// When cut: the digest and size of the whole (scrubbed) value.
    pub truncated: Option<(String, usize)>,
}

/// Scrubs secrets (when `redact`), then cuts to `max` bytes on a character boundary.
pub fn bounded(value: &str, max: usize, redact: bool) -> Bounded {
    let clean = if redact {
        secrets::scrub(value)
    } else {
        std::borrow::Cow::Borrowed(value)
    };
    if clean.len() <= max {
        return Bounded {
            value: clean.into_owned(),
            truncated: None,
        };
    }
    let mut cut = max;
    while !clean.is_char_boundary(cut) {
        cut -= 1;
    }
    Bounded {
        value: format!("{}…[truncated]", &clean[..cut]),
        truncated: Some((digest_of(clean.as_bytes()), clean.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::parts;

    #[test]
    fn messages_follow_the_conventions_shape() {
        let m = Message {
            role: "assistant".into(),
            parts: vec![
                parts::text("Reading it."),
                parts::tool_call("call_1", "read_file", r#"{"path":"a.rs"}"#.into()),
                parts::reasoning("because".into(), false),
            ],
            ..Default::default()
        };
        let v = message(&m, Some("tool_calls"));
        assert_eq!(
            v,
            json!({"role": "assistant", "finish_reason": "tool_calls", "parts": [
                {"type": "text", "content": "Reading it."},
                {"type": "tool_call", "id": "call_1", "name": "read_file", "arguments": {"path": "a.rs"}},
                {"type": "reasoning", "content": "because"},
            ]})
        );
    }

    #[test]
    fn bounded_scrubs_and_cuts_keeping_the_digest() {
        let b = bounded("token AKIAIOSFODNN7EXAMPLE here", 1000, true);
        assert!(
            b.value.starts_with("token [REDACTED:aws-access-key:"),
            "{}",
            b.value
        );
        assert_eq!(
            bounded("token AKIAIOSFODNN7EXAMPLE here", 1000, false).value,
            "token AKIAIOSFODNN7EXAMPLE here"
        );
        assert!(b.truncated.is_none());
        let long = "é".repeat(100);
        let b = bounded(&long, 11, true);
        assert!(b.value.starts_with("ééééé") && b.value.ends_with("…[truncated]"));
        assert_eq!(b.truncated, Some((digest_of(long.as_bytes()), 200)));
    }
}
