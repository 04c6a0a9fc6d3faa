//! Errors sidetrace itself returns, shaped like the provider's own so the
//! agent's SDK surfaces the message: OpenAI's `{"error": {...}}` or
//! Anthropic's `{"type": "error", "error": {...}}`. Each message says what
//! happened and what to check; a `Sidetrace-Error` header names the cause.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use crate::record::Provider;

use super::body::ProxyBody;

pub fn respond(
    provider: Provider,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response<ProxyBody> {
    let body = match provider {
        Provider::Anthropic => json!({
            "type": "error",
            "error": {"type": anthropic_type(status), "message": message},
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
