//! The execution record: generated types, content addressing, and the pieces
//! that decide which execution, sponsor and agent a request belongs to.

pub mod conversation;
pub mod execution;
pub mod inputs;
pub mod proto;
pub mod redact;
pub mod secrets;
mod timestamp;

use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

pub use proto::*;
pub use timestamp::Timestamp;

/// The prefix of every content digest in the record.
pub const DIGEST_PREFIX: &str = "sha256:";

/// Content stored once by digest in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:<hex>` of `data`.
    pub digest: String,
    pub data: Vec<u8>,
}

impl Blob {
    pub fn new(data: Vec<u8>) -> Self {
        Self {
            digest: digest_of(&data),
            data,
        }
    }
}

/// `sha256:<hex>` of some bytes.
pub fn digest_of(data: &[u8]) -> String {
    format_digest(&Sha256::digest(data).into())
}

pub fn format_digest(raw: &[u8; 32]) -> String {
    let mut s = String::with_capacity(DIGEST_PREFIX.len() + 64);
    s.push_str(DIGEST_PREFIX);
    s.push_str(&hex::encode(raw));
    s
}

pub fn timestamp(t: SystemTime) -> Timestamp {
    Timestamp::from(t)
}

pub fn duration(d: Duration) -> pbjson_types::Duration {
    pbjson_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// Converts a timestamp back to `SystemTime` (clamped at the epoch).
pub fn system_time(ts: &Timestamp) -> SystemTime {
    ts.system_time()
}

pub fn as_duration(d: &pbjson_types::Duration) -> Duration {
    Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32)
}

/// Converts a JSON object into a protobuf `Struct`.
pub fn json_to_struct(map: serde_json::Map<String, serde_json::Value>) -> pbjson_types::Struct {
    pbjson_types::Struct {
        fields: map
            .into_iter()
            .map(|(k, v)| (k, json_to_value(v)))
            .collect(),
    }
}

fn json_to_value(v: serde_json::Value) -> pbjson_types::Value {
    use pbjson_types::value::Kind;
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(a) => Kind::ListValue(pbjson_types::ListValue {
            values: a.into_iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(o) => Kind::StructValue(json_to_struct(o)),
    };
    pbjson_types::Value { kind: Some(kind) }
}

impl Provider {
    /// The `gen_ai.provider.name` value.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Unspecified => "unknown",
        }
    }
}

impl CompletionStatus {
    /// `upstream_incomplete`, `client_disconnected`, ...
    pub fn short_name(self) -> String {
        self.as_str_name()
            .trim_start_matches("COMPLETION_STATUS_")
            .to_ascii_lowercase()
    }

    /// How an interaction ended (unspecified when it does not say).
    pub fn of(it: &Interaction) -> Self {
        Self::try_from(it.completion.as_ref().map_or(0, |c| c.status)).unwrap_or_default()
    }
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat_completions",
            Api::Responses => "responses",
            Api::Messages => "messages",
            Api::Other => "other",
            Api::Mcp => "mcp",
            Api::Tunnel => "tunnel",
            Api::Websocket => "websocket",
            Api::Unspecified => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(
            digest_of(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn struct_roundtrips_to_canonical_json() {
        let v = serde_json::json!({"temperature": 0.5, "stop": ["a"], "meta": {"x": null}});
        let s = json_to_struct(v.as_object().unwrap().clone());
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(back, v);
    }
}
