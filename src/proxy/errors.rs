//! Errors sidetrace itself returns, shaped like the provider's own so the
//! agent's SDK surfaces the message: OpenAI's `{"error": {...}}` or
//! Anthropic's `{"type": "error", "error": {...}}`. Each message says what
//! happened and what to check; a `Sidetrace-Error` header names the cause.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use crate::record::{Api, Provider};

use super::body::ProxyBody;

/// Whose error format an answer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    OpenAi,
    Anthropic,
    /// MCP routes: a JSON-RPC error response (id null: the request was not read).
    JsonRpc,
}

impl Shape {
    pub fn of(provider: Provider, api: Api) -> Self {
        match (provider, api) {
            (_, Api::Mcp) => Self::JsonRpc,
            (Provider::Anthropic, _) => Self::Anthropic,
            _ => Self::OpenAi,
        }
    }
}

pub fn respond(shape: Shape, status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
    let body = match shape {
        Shape::Anthropic => json!({
            "type": "error",
            "error": {"type": anthropic_type(status), "message": message},
        }),
        Shape::JsonRpc => json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": crate::capture::mcp::SIDETRACE_ERROR_CODE, "message": message, "data": {"sidetrace_error": code}},
        }),
        _ => json!({
            "error": {
                "message": message,
                "type": if status.is_server_error() { "server_error" } else { "invalid_request_error" },
                "param": null,
                "code": code,
            }
        }),
    };
    let mut resp = Response::new(ProxyBody::local(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(code) {
        h.insert("sidetrace-error", v);
    }
    resp
}

fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        403 => "permission_error",
        404 => "not_found_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}
