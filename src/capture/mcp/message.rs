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
    let text = bytes.trim_ascii();
    match serde_json::from_slice::<Value>(text) {
        Ok(Value::Array(items)) if items.is_empty() => {
            Parsed::Single(Rpc::Invalid("an empty JSON-RPC batch".into()))
        }
        Ok(Value::Array(items)) => Parsed::Batch(items.into_iter().map(classify).collect()),
        Ok(v) => Parsed::Single(classify(v)),
        Err(e) => Parsed::Malformed(format!("not JSON: {e}")),
    }
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

/// The ids of the requests in a transport message (one, or a batch's).
pub fn request_ids(bytes: &[u8]) -> Vec<String> {
    let requests = |rpc: Rpc| match rpc {
        Rpc::Request { id, .. } => Some(id),
        _ => None,
    };
    match parse(bytes) {
        Parsed::Single(rpc) => requests(rpc).into_iter().collect(),
        Parsed::Batch(items) => items.into_iter().filter_map(requests).collect(),
        Parsed::Malformed(_) => Vec::new(),
    }
}

/// What the start of a message too large to keep whole says it is: its
/// `id` and `method` when they come before the (large) params or result,
/// as every SDK writes them. Params and result are not read.
pub fn sniff(prefix: &[u8]) -> Option<Rpc> {
    let mut s = Scanner { b: prefix, i: 0 };
    s.ws();
    s.eat(b'{')?;
    let (mut id, mut method) = (None, None);
    loop {
        s.ws();
        let key = s.string()?;
        s.ws();
        s.eat(b':')?;
        s.ws();
        match key.as_str() {
            "jsonrpc" => {
                s.string()?;
            }
            "id" => id = Some(s.scalar()?),
            "method" => method = Some(s.string()?),
            "params" => {
                return Some(match (id, method) {
                    (Some(id), Some(method)) => Rpc::Request {
                        id,
                        method,
                        params: None,
                    },
                    (None, Some(method)) => Rpc::Notification {
                        method,
                        params: None,
                    },
                    _ => return None,
                });
            }
            "result" | "error" => {
                return Some(Rpc::Response {
                    id: id?,
                    outcome: Ok(Value::Null),
                });
            }
            _ => return None,
        }
        s.ws();
        s.eat(b',')?;
    }
}

/// Just enough of a JSON reader for `sniff`: strings and scalar ids.
struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn ws(&mut self) {
        while self.b.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    /// A JSON string, decoded.
    fn string(&mut self) -> Option<String> {
        let start = self.i;
        self.eat(b'"')?;
        loop {
            match self.b.get(self.i)? {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return serde_json::from_slice(&self.b[start..self.i]).ok();
                }
                _ => self.i += 1,
            }
        }
    }

    /// A string or number, as JSON text (how ids are keyed).
    fn scalar(&mut self) -> Option<String> {
        let start = self.i;
        if self.b.get(self.i) == Some(&b'"') {
            self.string()?;
        } else {
            while self
                .b
                .get(self.i)
                .is_some_and(|c| c.is_ascii_digit() || b"-+.eE".contains(c))
            {
                self.i += 1;
            }
        }
        let text = std::str::from_utf8(&self.b[start..self.i]).ok()?;
        let v: Value = serde_json::from_str(text).ok()?;
        valid_id(&v).then(|| v.to_string())
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
    fn large_messages_are_known_by_their_start() {
        let req = br#"{"jsonrpc":"2.0","id":"a\"b","method":"tools/call","params":{"name":"x","arguments":{"p":"xxxx"#;
        assert_eq!(
            sniff(req),
            Some(Rpc::Request {
                id: r#""a\"b""#.into(),
                method: "tools/call".into(),
                params: None
            })
        );
        let resp = br#" { "jsonrpc" : "2.0", "id" : 12, "result" : {"content":[{"type":"text","text":"yyy"#;
        assert!(matches!(sniff(resp), Some(Rpc::Response { id, .. }) if id == "12"));
        assert!(matches!(
            sniff(br#"{"method":"notifications/progress","params":{"#),
            Some(Rpc::Notification { .. })
        ));
        // Params before the id: not knowable from the start.
        assert_eq!(sniff(br#"{"params":{"a":1},"id":1,"method":"m"}"#), None);
        assert_eq!(sniff(b"not json at all"), None);
        assert_eq!(
            request_ids(br#"[{"id":1,"method":"a"},{"method":"n"},{"id":"x","method":"b"}]"#),
            ["1", "\"x\""]
        );
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
