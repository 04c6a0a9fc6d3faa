//! Builders for normalized message parts, shared by the API modules.

use base64::Engine as _;
use serde_json::Value;

use crate::record::{
    BlobPart, OtherPart, Part, ReasoningPart, TextPart, ToolCallPart, ToolCallResponsePart,
    UriPart, Usage, digest_of, part::Kind,
};

pub fn text(content: impl Into<String>) -> Part {
    part(Kind::Text(TextPart {
        content: content.into(),
    }))
}

pub fn tool_call(id: &str, name: &str, arguments: String) -> Part {
    part(Kind::ToolCall(ToolCallPart {
        id: id.to_owned(),
        name: name.to_owned(),
        arguments,
    }))
}

pub fn tool_response(id: &str, response: String, is_error: bool) -> Part {
    part(Kind::ToolCallResponse(ToolCallResponsePart {
        id: id.to_owned(),
        response,
        is_error,
    }))
}

pub fn reasoning(content: String, redacted: bool) -> Part {
    part(Kind::Reasoning(ReasoningPart { content, redacted }))
}

pub fn uri(modality: &str, mime_type: &str, uri: &str) -> Part {
    part(Kind::Uri(UriPart {
        modality: modality.to_owned(),
        mime_type: mime_type.to_owned(),
        uri: uri.to_owned(),
    }))
}

/// Base64 content becomes a blob part named by the digest of the decoded bytes.
pub fn base64_blob(modality: &str, mime_type: &str, data: &str) -> Part {
    let (digest, size) = match base64::engine::general_purpose::STANDARD.decode(data.trim()) {
        Ok(bytes) => (digest_of(&bytes), bytes.len() as u64),
        // Not valid base64: still name it, by the text itself.
        Err(_) => (digest_of(data.as_bytes()), data.len() as u64),
    };
    part(Kind::Blob(BlobPart {
        modality: modality.to_owned(),
        mime_type: mime_type.to_owned(),
        digest,
        size,
    }))
}

/// An image/file reference that may be a `data:` URL (inline content) or a real URL.
pub fn url_or_data(modality: &str, url: &str) -> Part {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((meta, data)) = rest.split_once(',')
    {
        let mime = meta.split(';').next().unwrap_or_default();
        if meta.ends_with(";base64") {
            return base64_blob(modality, mime, data);
        }
        return part(Kind::Blob(BlobPart {
            modality: modality.to_owned(),
            mime_type: mime.to_owned(),
            digest: digest_of(data.as_bytes()),
            size: data.len() as u64,
        }));
    }
    uri(modality, "", url)
}

pub fn other(kind: &str, value: &Value) -> Part {
    part(Kind::Other(OtherPart {
        r#type: kind.to_owned(),
        json: value.to_string(),
    }))
}

fn part(kind: Kind) -> Part {
    Part { kind: Some(kind) }
}

/// A string field, or "".
pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

pub fn u64_of(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or_default()
}

/// JSON text of a value; strings stay as they are.
pub fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Text parts of a content value that is a string or a list of `{type, text}` blocks.
pub fn text_parts(v: &Value) -> Vec<Part> {
    match v {
        Value::String(s) => vec![text(s.clone())],
        Value::Array(items) => items
            .iter()
            .map(|item| match item.get("text").and_then(Value::as_str) {
                Some(t) => text(t),
                None => other(str_of(item, "type"), item),
            })
            .collect(),
        Value::Null => Vec::new(),
        other_value => vec![text(other_value.to_string())],
    }
}

/// The text of a tool result whose content is a string or a list of blocks:
/// text blocks are joined; anything else makes the whole thing JSON text.
pub fn result_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items)
            if items
                .iter()
                .all(|i| i.get("text").and_then(Value::as_str).is_some()) =>
        {
            items
                .iter()
                .filter_map(|i| i.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        }
        other_value => json_text(other_value),
    }
}

/// Total input per the GenAI conventions, given the provider's parts.
pub fn usage(
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: u64,
    reasoning: u64,
    total_input: u64,
) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cache_read_input_tokens: cache_read,
        cache_write_input_tokens: cache_write,
        reasoning_tokens: reasoning,
        total_input_tokens: total_input,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_url_becomes_blob_by_decoded_digest() {
        let p = url_or_data("image", "data:image/png;base64,aGVsbG8=");
        let Some(Kind::Blob(b)) = p.kind else {
            panic!()
        };
        assert_eq!(b.mime_type, "image/png");
        assert_eq!(b.digest, digest_of(b"hello"));
        assert_eq!(b.size, 5);
        let p = url_or_data("image", "https://example.com/a.png");
        assert!(matches!(p.kind, Some(Kind::Uri(_))));
    }

    #[test]
    fn result_text_joins_text_blocks() {
        let v = serde_json::json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]);
        assert_eq!(result_text(&v), "a\nb");
        let v = serde_json::json!([{"type": "image", "source": {}}]);
        assert!(result_text(&v).starts_with('['));
    }
}
