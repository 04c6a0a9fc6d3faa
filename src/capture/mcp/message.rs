//! Reading one MCP transport message as JSON-RPC 2.0: a request, a
//! notification, a response, or a batch of those. Anything else is kept as
//! malformed with the reason, never dropped.

use serde_json::{Map, Value};

/// Who sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The agent (MCP client).
    Client,
    /// The MCP server.
    Server,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

/// One JSON-RPC message, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Rpc {
    Request {
        /// The id as JSON text: `7` and `"7"` are different ids.
        id: String,
        method: String,
        params: Option<Value>,
    },
    Notification {
        method: String,
        params: Option<Value>,
    },
    Response {
        id: String,
        outcome: Result<Value, RpcError>,
    },
    /// Valid JSON, but not a JSON-RPC message.
    Invalid(String),
}

/// A transport message, read.
#[derive(Debug)]
pub enum Parsed {
    Single(Rpc),
    /// A JSON-RPC batch (an array), element by element.
    Batch(Vec<Rpc>),
    /// Not JSON at all.
    Malformed(String),
}

pub fn parse(bytes: &[u8]) -> Parsed {
    let text = trim_ascii(bytes);
    match serde_json::from_slice::<Value>(text) {
        Ok(Value::Array(items)) if items.is_empty() => {
            Parsed::Single(Rpc::Invalid("an empty JSON-RPC batch".into()))
        }
        Ok(Value::Array(items)) => Parsed::Batch(items.into_iter().map(classify).collect()),
        Ok(v) => Parsed::Single(classify(v)),
        Err(e) => Parsed::Malformed(format!("not JSON: {e}")),
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &b[start..end]
}

/// Classifies one JSON value as a JSON-RPC message.
pub fn classify(v: Value) -> Rpc {
    let Value::Object(mut map) = v else {
        return Rpc::Invalid("a JSON-RPC message must be an object".into());
    };
    let id = map.remove("id");
    if let Some(method) = map.get("method") {
        let Some(method) = method.as_str().map(str::to_owned) else {
            return Rpc::Invalid("\"method\" is not a string".into());
        };
        let params = map.remove("params");
        return match id {
            None => Rpc::Notification { method, params },
            Some(id) if valid_id(&id) => Rpc::Request {
                id: id.to_string(),
                method,
                params,
            },
            Some(id) => Rpc::Invalid(format!("request id {id} is not a string or number")),
        };
    }
    let id = match id {
        Some(id) if valid_id(&id) || id.is_null() => id.to_string(),
        Some(id) => return Rpc::Invalid(format!("response id {id} is not a string or number")),
        None => {
            return Rpc::Invalid(
                "neither a request (no \"method\") nor a response (no \"id\")".into(),
            );
        }
    };
    if let Some(result) = map.remove("result") {
        return Rpc::Response {
            id,
            outcome: Ok(result),
        };
    }
    match map.remove("error") {
        Some(Value::Object(e)) => Rpc::Response {
            id,
            outcome: Err(error_of(&e)),
        },
        Some(_) => Rpc::Invalid("\"error\" is not an object".into()),
        None => Rpc::Invalid("a response with neither \"result\" nor \"error\"".into()),
    }
}

fn valid_id(id: &Value) -> bool {
    id.is_string() || id.is_number()
}

fn error_of(e: &Map<String, Value>) -> RpcError {
    RpcError {
        code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
        message: e
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> Rpc {
        match parse(text.as_bytes()) {
            Parsed::Single(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn classifies_the_four_shapes() {
        assert_eq!(
            one(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
            Rpc::Request {
                id: "1".into(),
                method: "tools/list".into(),
                params: None
            }
        );
        assert_eq!(
            one(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Rpc::Notification {
                method: "notifications/initialized".into(),
                params: None
            }
        );
        assert_eq!(
            one(r#"{"jsonrpc":"2.0","id":"a","result":{"x":1}}"#),
            Rpc::Response {
                id: "\"a\"".into(),
                outcome: Ok(json!({"x":1}))
            }
        );
        assert_eq!(
            one(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#),
            Rpc::Response {
                id: "null".into(),
                outcome: Err(RpcError {
                    code: -32700,
                    message: "Parse error".into()
                })
            }
        );
    }

    #[test]
    fn ids_keep_their_type() {
        let Rpc::Request { id: a, .. } = one(r#"{"id":7,"method":"m"}"#) else {
            panic!()
        };
        let Rpc::Request { id: b, .. } = one(r#"{"id":"7","method":"m"}"#) else {
            panic!()
        };
        assert_ne!(a, b);
    }

    #[test]
    fn batches_and_garbage() {
        let Parsed::Batch(items) = parse(br#"[{"id":1,"method":"a"},{"method":"b"},3]"#) else {
            panic!()
        };
        assert_eq!(items.len(), 3);
        assert!(matches!(items[2], Rpc::Invalid(_)));
        assert!(matches!(parse(b"hello\n"), Parsed::Malformed(_)));
        assert!(matches!(parse(b"[]"), Parsed::Single(Rpc::Invalid(_))));
        assert!(matches!(
            one(r#"{"id":{"x":1},"method":"m"}"#),
            Rpc::Invalid(_)
        ));
    }
}
