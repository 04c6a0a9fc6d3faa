//! What the three model APIs have in common once parsed, and which API a
//! request speaks.

use serde_json::{Map, Value};

use crate::record::{Api, Message, Provider, ToolCall, ToolDefinition, Usage};

use super::sse::SseEvent;
use super::{anthropic, openai_chat, openai_responses};

/// The protocol a route was configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteProtocol {
    Openai,
    Anthropic,
    Auto,
    /// Model Context Protocol over Streamable HTTP (or the older HTTP+SSE).
    Mcp,
}

impl std::str::FromStr for RouteProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "openai" => Ok(Self::Openai),
            "anthropic" => Ok(Self::Anthropic),
            "auto" => Ok(Self::Auto),
            "mcp" => Ok(Self::Mcp),
            other => Err(format!(
                "unknown protocol {other:?}; expected \"openai\", \"anthropic\", \"mcp\" or \"auto\""
            )),
        }
    }
}

/// Classifies a request by its route's protocol and its path (prefix already
/// stripped, no query).
pub fn detect(protocol: RouteProtocol, path: &str) -> (Provider, Api) {
    let path = path.trim_end_matches('/');
    let by_path = if path.ends_with("/chat/completions") {
        Some((Provider::Openai, Api::ChatCompletions))
    } else if path.ends_with("/responses") {
        Some((Provider::Openai, Api::Responses))
    } else if path.ends_with("/messages") {
        Some((Provider::Anthropic, Api::Messages))
    } else {
        None
    };
    match protocol {
        RouteProtocol::Mcp => (Provider::Unspecified, Api::Mcp),
        RouteProtocol::Auto => by_path.unwrap_or((Provider::Unspecified, Api::Other)),
        RouteProtocol::Openai => match by_path {
            Some((Provider::Openai, api)) => (Provider::Openai, api),
            _ => (Provider::Openai, Api::Other),
        },
        RouteProtocol::Anthropic => match by_path {
            Some((Provider::Anthropic, api)) => (Provider::Anthropic, api),
            _ => (Provider::Anthropic, Api::Other),
        },
    }
}

/// A model request, split into what is stored by digest and what is kept inline.
#[derive(Debug, Default)]
pub struct ParsedRequest {
    pub model: String,
    pub stream: bool,
    /// Provider-native system instructions (Anthropic `system`, Responses `instructions`).
    pub system: Option<Value>,
    /// Provider-native messages (Chat `messages`, Responses `input` items, Anthropic `messages`).
    pub messages: Vec<Value>,
    pub tools: Vec<Value>,
    /// Everything else in the request body.
    pub params: Map<String, Value>,
}

/// An error the provider reported, in its body or mid-stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProviderError {
    pub kind: String,
    pub message: String,
}

/// A model response, streamed or not, assembled.
#[derive(Debug, Default)]
pub struct ParsedResponse {
    pub id: String,
    pub model: String,
    /// Provider-native output messages / items, as the agent would send them back.
    pub output: Vec<Value>,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reasons: Vec<String>,
    pub usage: Option<Usage>,
    /// The response reached its end (a whole JSON body, or the stream's terminal event).
    pub complete: bool,
    pub error: Option<ProviderError>,
    /// Oddities that did not stop parsing.
    pub issues: Vec<String>,
}

/// Reassembles a streamed response from its events.
pub enum StreamAssembler {
    Chat(openai_chat::Assembler),
    Responses(openai_responses::Assembler),
    Messages(anthropic::Assembler),
}

impl StreamAssembler {
    pub fn new(api: Api) -> Option<Self> {
        match api {
            Api::ChatCompletions => Some(Self::Chat(Default::default())),
            Api::Responses => Some(Self::Responses(Default::default())),
            Api::Messages => Some(Self::Messages(Default::default())),
            Api::Other | Api::Unspecified | Api::Mcp | Api::Tunnel | Api::Websocket => None,
        }
    }

    pub fn on_event(&mut self, event: &SseEvent) {
        match self {
            Self::Chat(a) => a.on_event(event),
            Self::Responses(a) => a.on_event(event),
            Self::Messages(a) => a.on_event(event),
        }
    }

    pub fn finish(self) -> ParsedResponse {
        match self {
            Self::Chat(a) => a.finish(),
            Self::Responses(a) => a.finish(),
            Self::Messages(a) => a.finish(),
        }
    }
}

/// The JSON data of one stream event; when it is not JSON, says so in `issues`.
pub(crate) fn event_json(event: &SseEvent, number: u64, issues: &mut Vec<String>) -> Option<Value> {
    match serde_json::from_str(&event.data) {
        Ok(v) => Some(v),
        Err(e) => {
            issues.push(format!("stream event {number} is not JSON: {e}"));
            None
        }
    }
}

/// An event's type: its data's `type`, else the SSE event name.
pub(crate) fn event_type<'a>(event: &'a SseEvent, data: &'a Value) -> &'a str {
    match data.get("type").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => t,
        _ => event.event.as_str(),
    }
}

/// Splits a request body of a known API.
pub fn parse_request(api: Api, body: Value) -> Result<ParsedRequest, String> {
    let Value::Object(map) = body else {
        return Err("request body is JSON but not an object".into());
    };
    match api {
        Api::ChatCompletions => openai_chat::parse_request(map),
        Api::Responses => openai_responses::parse_request(map),
        Api::Messages => anthropic::parse_request(map),
        Api::Other | Api::Unspecified | Api::Mcp | Api::Tunnel | Api::Websocket => {
            Err("not a model API request".into())
        }
    }
}

/// Parses a whole (non-streamed) successful response body.
pub fn parse_response(api: Api, body: &Value) -> Result<ParsedResponse, String> {
    if !body.is_object() {
        return Err("response body is JSON but not an object".into());
    }
    Ok(match api {
        Api::ChatCompletions => openai_chat::parse_response(body),
        Api::Responses => openai_responses::parse_response(body),
        Api::Messages => anthropic::parse_response(body),
        Api::Other | Api::Unspecified | Api::Mcp | Api::Tunnel | Api::Websocket => {
            return Err("not a model API response".into());
        }
    })
}

pub fn normalize_message(api: Api, message: &Value) -> Message {
    match api {
        Api::ChatCompletions => openai_chat::normalize_message(message),
        Api::Responses => openai_responses::normalize_item(message),
        Api::Messages => anthropic::normalize_message(message),
        Api::Other | Api::Unspecified | Api::Mcp | Api::Tunnel | Api::Websocket => {
            Message::default()
        }
    }
}

/// The role of a provider-native message, without normalizing its content.
pub fn message_role(api: Api, message: &Value) -> String {
    let role = message.get("role").and_then(Value::as_str);
    match (api, role) {
        (_, Some(r)) => r.to_owned(),
        // Responses items without a role are calls (from the model) or their outputs.
        (Api::Responses, None) => openai_responses::item_role(message).to_owned(),
        (_, None) => String::new(),
    }
}

pub fn normalize_system(api: Api, system: &Value) -> Message {
    match api {
        Api::Messages => anthropic::normalize_system(system),
        _ => Message {
            role: "system".into(),
            parts: super::parts::text_parts(system),
            ..Default::default()
        },
    }
}

pub fn tool_definition(api: Api, tool: &Value) -> ToolDefinition {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let kind = text(&tool["type"]);
    let name = match api {
        // Chat Completions nests the name under the tool's type.
        Api::ChatCompletions => {
            let nested = if kind.is_empty() {
                "function"
            } else {
                kind.as_str()
            };
            text(&tool[nested]["name"])
        }
        _ => text(&tool["name"]),
    };
    ToolDefinition {
        name,
        r#type: if kind.is_empty() {
            "function".into()
        } else {
            kind
        },
        ..Default::default()
    }
}

/// The error in an error response body, for any provider's shape.
pub fn provider_error(body: &Value) -> Option<ProviderError> {
    let err = body.get("error")?;
    if let Some(message) = err.as_str() {
        return Some(ProviderError {
            kind: String::new(),
            message: message.to_owned(),
        });
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut kind = text(&err["type"]);
    if kind.is_empty() {
        kind = text(&err["code"]);
    }
    Some(ProviderError {
        kind,
        message: text(&err["message"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_by_path_and_protocol() {
        use RouteProtocol::*;
        assert_eq!(
            detect(Auto, "/v1/chat/completions"),
            (Provider::Openai, Api::ChatCompletions)
        );
        assert_eq!(
            detect(Auto, "/chat/completions"),
            (Provider::Openai, Api::ChatCompletions)
        );
        assert_eq!(
            detect(Auto, "/v1/responses"),
            (Provider::Openai, Api::Responses)
        );
        assert_eq!(
            detect(Auto, "/v1/messages"),
            (Provider::Anthropic, Api::Messages)
        );
        assert_eq!(
            detect(Auto, "/v1/messages/count_tokens"),
            (Provider::Unspecified, Api::Other)
        );
        assert_eq!(
            detect(Auto, "/v1/models"),
            (Provider::Unspecified, Api::Other)
        );
        assert_eq!(
            detect(Anthropic, "/v1/models"),
            (Provider::Anthropic, Api::Other)
        );
        assert_eq!(
            detect(Anthropic, "/v1/chat/completions"),
            (Provider::Anthropic, Api::Other)
        );
        assert_eq!(
            detect(Openai, "/openai/deployments/gpt/chat/completions"),
            (Provider::Openai, Api::ChatCompletions)
        );
    }

    #[test]
    fn error_shapes() {
        let openai = serde_json::json!({"error": {"message": "bad", "type": "invalid_request_error", "param": null, "code": null}});
        assert_eq!(
            provider_error(&openai),
            Some(ProviderError {
                kind: "invalid_request_error".into(),
                message: "bad".into()
            })
        );
        let anthropic = serde_json::json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
        assert_eq!(provider_error(&anthropic).unwrap().kind, "overloaded_error");
        assert!(provider_error(&serde_json::json!({"ok": true})).is_none());
    }
}
