//! Parser tests over the golden provider fixtures in `tests/fixtures/`:
//! the assembled result is checked field by field, and must not change when
//! the stream is cut at any byte, re-terminated with `\r\n`, or interleaved
//! with comments and keep-alives.

use serde_json::Value;

use crate::record::{Api, part::Kind};

use super::api::{self, ParsedResponse, StreamAssembler};
use super::sse::SseDecoder;

fn fixture(path: &str) -> Vec<u8> {
    let full = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/").to_owned() + path;
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// Feeds `body` in pieces of the given sizes (cycled).
fn assemble_in_pieces(api: Api, body: &[u8], sizes: &[usize]) -> ParsedResponse {
    let mut a = StreamAssembler::new(api).unwrap();
    let mut d = SseDecoder::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        d.feed(&rest[..n], &mut |e| a.on_event(&e));
        rest = &rest[n..];
        i += 1;
    }
    assert!(!d.finish(), "fixture ends mid-event");
    a.finish()
}

fn assemble(api: Api, body: &[u8]) -> ParsedResponse {
    assemble_in_pieces(api, body, &[usize::MAX])
}

/// The same events however the bytes are cut or terminated.
fn assert_split_invariant(api: Api, body: &[u8]) {
    let whole = format!("{:?}", assemble(api, body));
    for split in (0..body.len()).step_by(7) {
        let mut a = StreamAssembler::new(api).unwrap();
        let mut d = SseDecoder::new();
        d.feed(&body[..split], &mut |e| a.on_event(&e));
        d.feed(&body[split..], &mut |e| a.on_event(&e));
        assert_eq!(format!("{:?}", a.finish()), whole, "split at {split}");
    }
    for sizes in [&[1][..], &[3, 1, 17], &[64, 5]] {
        assert_eq!(format!("{:?}", assemble_in_pieces(api, body, sizes)), whole);
    }
    let text = String::from_utf8(body.to_vec()).unwrap();
    let crlf = text.replace('\n', "\r\n");
    assert_eq!(
        format!("{:?}", assemble(api, crlf.as_bytes())),
        whole,
        "CRLF"
    );
    let pinged = text.replace("\n\n", "\n\n: keep-alive\n\n:\n");
    assert_eq!(
        format!("{:?}", assemble(api, pinged.as_bytes())),
        whole,
        "comments"
    );
}

fn text_of(v: &Value) -> String {
    v.to_string()
}

#[test]
fn chat_stream_text() {
    let body = fixture("openai_chat/stream_text.sse");
    assert_split_invariant(Api::ChatCompletions, &body);
    let r = assemble(Api::ChatCompletions, &body);
    assert!(r.complete);
    assert_eq!(r.model, "gpt-4.1-2025-04-14");
    assert!(r.id.starts_with("chatcmpl-"));
    assert_eq!(r.finish_reasons, ["stop"]);
    let content = r.output[0]["content"].as_str().unwrap();
    assert!(content.starts_with("`src/main.rs` is just the entry point"));
    assert_eq!(content.chars().count(), 194);
    let u = r.usage.unwrap();
    assert!(u.input_tokens > 0 && u.output_tokens > 0);
    assert_eq!(u.total_input_tokens, u.input_tokens);
}

#[test]
fn chat_stream_parallel_tool_calls() {
    let body = fixture("openai_chat/stream_tool_calls.sse");
    assert_split_invariant(Api::ChatCompletions, &body);
    let r = assemble(Api::ChatCompletions, &body);
    assert!(r.complete);
    assert_eq!(r.finish_reasons, ["tool_calls"]);
    let calls: Vec<(&str, &str, &str)> = r
        .tool_calls
        .iter()
        .map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            (
                "call_k9vWK3hK1VRT0IUrHdVmfHZw",
                "read_file",
                r#"{"path":"Cargo.toml"}"#
            ),
            (
                "call_EDC24yuuxNzflrUJibkF0RQc",
                "run_shell",
                r#"{"command":"cargo test --all-targets"}"#
            ),
        ]
    );
    let u = r.usage.unwrap();
    assert_eq!(
        (u.input_tokens, u.output_tokens, u.cache_read_input_tokens),
        (1359, 49, 1280)
    );
    // The assembled message is the shape the agent sends back next turn.
    assert!(r.output[0]["content"].is_null());
    assert_eq!(
        r.output[0]["tool_calls"][1]["function"]["name"],
        "run_shell"
    );
}

#[test]
fn chat_stream_cut_short_is_incomplete() {
    let body = fixture("openai_chat/stream_tool_calls.sse");
    let cut = &body[..body.len() / 2];
    let mut a = StreamAssembler::new(Api::ChatCompletions).unwrap();
    let mut d = SseDecoder::new();
    d.feed(cut, &mut |e| a.on_event(&e));
    let r = a.finish();
    assert!(!r.complete);
    assert_eq!(r.tool_calls[0].name, "read_file");
}

#[test]
fn chat_non_streamed() {
    let v: Value =
        serde_json::from_slice(&fixture("openai_chat/response_tool_calls.json")).unwrap();
    let r = api::parse_response(Api::ChatCompletions, &v).unwrap();
    assert_eq!(r.finish_reasons, ["tool_calls"]);
    assert_eq!(r.tool_calls[0].id, "call_0YLieJv2C5N7DjmKPwP0TKs6");
    assert_eq!(r.tool_calls[0].arguments, r#"{"path":"src/main.rs"}"#);
    let v: Value = serde_json::from_slice(&fixture("openai_chat/response_text.json")).unwrap();
    let r = api::parse_response(Api::ChatCompletions, &v).unwrap();
    assert_eq!(r.model, "gpt-4.1-2025-04-14");
    assert!(r.usage.is_some());
    let e: Value =
        serde_json::from_slice(&fixture("openai_chat/error_invalid_request.json")).unwrap();
    assert_eq!(
        api::provider_error(&e).unwrap().kind,
        "invalid_request_error"
    );
}

#[test]
fn chat_request_links_call_and_result() {
    let v: Value = serde_json::from_slice(&fixture("openai_chat/request_tools.json")).unwrap();
    let req = api::parse_request(Api::ChatCompletions, v).unwrap();
    assert_eq!(req.model, "gpt-4.1");
    assert!(req.stream);
    assert_eq!(req.messages.len(), 5);
    assert_eq!(req.tools.len(), 2);
    assert_eq!(
        api::tool_definition(Api::ChatCompletions, &req.tools[1]).name,
        "run_shell"
    );
    assert!(req.params.contains_key("stream_options"));
    let roles: Vec<String> = req
        .messages
        .iter()
        .map(|m| api::normalize_message(Api::ChatCompletions, m).role)
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "user"]);
    let call = api::normalize_message(Api::ChatCompletions, &req.messages[2]);
    let Some(Kind::ToolCall(c)) = &call.parts.last().unwrap().kind else {
        panic!("{call:?}")
    };
    let result = api::normalize_message(Api::ChatCompletions, &req.messages[3]);
    let Some(Kind::ToolCallResponse(r)) = &result.parts[0].kind else {
        panic!("{result:?}")
    };
    assert_eq!(c.id, r.id);
    assert_eq!(c.name, "read_file");
    assert!(!r.response.is_empty());
}

#[test]
fn responses_stream_text() {
    let body = fixture("openai_responses/stream_text.sse");
    assert_split_invariant(Api::Responses, &body);
    let r = assemble(Api::Responses, &body);
    assert!(r.complete);
    assert_eq!(r.model, "gpt-4.1-2025-04-14");
    assert!(r.id.starts_with("resp_"));
    assert_eq!(r.finish_reasons, ["completed"]);
    let text = r.output[0]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("Bonjour à toute l'équipe sidetrace"),
        "{text}"
    );
    let u = r.usage.unwrap();
    assert_eq!((u.input_tokens, u.output_tokens), (37, 20));
}

#[test]
fn responses_stream_reasoning_and_function_call() {
    let body = fixture("openai_responses/stream_function_call.sse");
    assert_split_invariant(Api::Responses, &body);
    let r = assemble(Api::Responses, &body);
    assert!(r.complete);
    assert_eq!(r.model, "gpt-5-2025-08-07");
    assert_eq!(r.tool_calls.len(), 1);
    assert_eq!(r.tool_calls[0].id, "call_PJ4GrHH3kbRjFKP4n2Vn3yp1");
    assert_eq!(r.tool_calls[0].name, "run_shell");
    assert_eq!(
        r.tool_calls[0].arguments,
        r#"{"command":"cargo test --all-targets"}"#
    );
    let u = r.usage.unwrap();
    assert_eq!(
        (
            u.input_tokens,
            u.cache_read_input_tokens,
            u.reasoning_tokens
        ),
        (1356, 1152, 128)
    );
    let reasoning = api::normalize_message(Api::Responses, &r.output[0]);
    assert!(matches!(&reasoning.parts[0].kind, Some(Kind::Reasoning(x)) if !x.content.is_empty()));
}

#[test]
fn responses_stream_without_terminal_event_rebuilds_from_deltas() {
    let body = String::from_utf8(fixture("openai_responses/stream_function_call.sse")).unwrap();
    let cut = &body[..body
        .find("event: response.function_call_arguments.done")
        .unwrap()];
    let mut a = StreamAssembler::new(Api::Responses).unwrap();
    let mut d = SseDecoder::new();
    d.feed(cut.as_bytes(), &mut |e| a.on_event(&e));
    let r = a.finish();
    assert!(!r.complete);
    assert!(r.finish_reasons.is_empty());
    assert_eq!(r.tool_calls[0].name, "run_shell");
    assert_eq!(
        r.tool_calls[0].arguments,
        r#"{"command":"cargo test --all-targets"}"#
    );
}

#[test]
fn responses_request_and_non_streamed() {
    let v: Value = serde_json::from_slice(&fixture("openai_responses/request_tools.json")).unwrap();
    let req = api::parse_request(Api::Responses, v).unwrap();
    assert!(req.system.is_some(), "instructions");
    assert_eq!(req.messages.len(), 4);
    let call = api::normalize_message(Api::Responses, &req.messages[1]);
    let output = api::normalize_message(Api::Responses, &req.messages[2]);
    assert_eq!(call.role, "assistant");
    assert_eq!(output.role, "tool");
    let (Some(Kind::ToolCall(c)), Some(Kind::ToolCallResponse(o))) =
        (&call.parts[0].kind, &output.parts[0].kind)
    else {
        panic!()
    };
    assert_eq!(c.id, "call_g1ND2CEDT8bsJ9Mu55zW9Feq");
    assert_eq!(c.id, o.id);
    assert_eq!(
        api::tool_definition(Api::Responses, &req.tools[0]).name,
        "read_file"
    );

    let v: Value =
        serde_json::from_slice(&fixture("openai_responses/response_function_call.json")).unwrap();
    let r = api::parse_response(Api::Responses, &v).unwrap();
    assert_eq!(r.tool_calls[0].id, "call_g1ND2CEDT8bsJ9Mu55zW9Feq");
    let v: Value = serde_json::from_slice(&fixture("openai_responses/response_text.json")).unwrap();
    assert!(
        api::parse_response(Api::Responses, &v)
            .unwrap()
            .usage
            .is_some()
    );

    let short = api::parse_request(
        Api::Responses,
        serde_json::json!({"model": "m", "input": "hi"}),
    )
    .unwrap();
    let m = api::normalize_message(Api::Responses, &short.messages[0]);
    assert_eq!(m.role, "user");
}

#[test]
fn anthropic_stream_text() {
    let body = fixture("anthropic/stream_text.sse");
    assert_split_invariant(Api::Messages, &body);
    let r = assemble(Api::Messages, &body);
    assert!(r.complete);
    assert_eq!(r.model, "claude-sonnet-4-5-20250929");
    assert!(r.id.starts_with("msg_"));
    assert_eq!(r.finish_reasons, ["end_turn"]);
    let u = r.usage.unwrap();
    assert_eq!(
        u.total_input_tokens,
        u.input_tokens + u.cache_read_input_tokens + u.cache_write_input_tokens
    );
    let v: Value = serde_json::from_slice(&fixture("anthropic/response_text.json")).unwrap();
    let whole = api::parse_response(Api::Messages, &v).unwrap();
    assert_eq!(
        r.output[0]["content"][0]["text"], whole.output[0]["content"][0]["text"],
        "streamed and non-streamed text agree"
    );
}

#[test]
fn anthropic_stream_thinking_text_and_tool_use() {
    let body = fixture("anthropic/stream_tool_use.sse");
    assert_split_invariant(Api::Messages, &body);
    let r = assemble(Api::Messages, &body);
    assert!(r.complete);
    assert_eq!(r.finish_reasons, ["tool_use"]);
    assert_eq!(r.tool_calls.len(), 1);
    assert_eq!(r.tool_calls[0].id, "toolu_016RAmSEAvsAzkhZ6TS6G919");
    assert_eq!(r.tool_calls[0].name, "run_shell");
    let args: Value = serde_json::from_str(&r.tool_calls[0].arguments).unwrap();
    assert_eq!(
        args,
        serde_json::json!({"command": "cargo test --all-targets"})
    );
    let u = r.usage.unwrap();
    assert_eq!(
        (u.input_tokens, u.cache_read_input_tokens, u.output_tokens),
        (452, 1621, 141)
    );
    assert_eq!(u.total_input_tokens, 452 + 1621);
    let content = r.output[0]["content"].as_array().unwrap();
    assert_eq!(content[0]["type"], "thinking");
    assert!(!content[0]["signature"].as_str().unwrap().is_empty());
    let m = api::normalize_message(Api::Messages, &r.output[0]);
    assert!(matches!(&m.parts[0].kind, Some(Kind::Reasoning(_))));
    assert!(matches!(&m.parts[2].kind, Some(Kind::ToolCall(_))));
}

#[test]
fn anthropic_stream_error_event() {
    let body = fixture("anthropic/stream_error.sse");
    assert_split_invariant(Api::Messages, &body);
    let r = assemble(Api::Messages, &body);
    assert!(!r.complete);
    let e = r.error.unwrap();
    assert_eq!(
        (e.kind.as_str(), e.message.as_str()),
        ("overloaded_error", "Overloaded")
    );
    let v: Value = serde_json::from_slice(&fixture("anthropic/error_overloaded.json")).unwrap();
    assert_eq!(api::provider_error(&v).unwrap().kind, "overloaded_error");
}

#[test]
fn anthropic_request_and_echoed_turn() {
    let v: Value = serde_json::from_slice(&fixture("anthropic/request_tools.json")).unwrap();
    let req = api::parse_request(Api::Messages, v).unwrap();
    let system = api::normalize_system(Api::Messages, req.system.as_ref().unwrap());
    assert_eq!(system.parts.len(), 2);
    assert_eq!(req.messages.len(), 3);
    assert!(req.params.contains_key("thinking"));
    let assistant = api::normalize_message(Api::Messages, &req.messages[1]);
    let user = api::normalize_message(Api::Messages, &req.messages[2]);
    let Some(Kind::ToolCall(c)) = &assistant.parts[2].kind else {
        panic!("{assistant:?}")
    };
    let Some(Kind::ToolCallResponse(r)) = &user.parts[0].kind else {
        panic!("{user:?}")
    };
    assert_eq!(c.id, r.id);
    assert_eq!(c.arguments, r#"{"path":"src/main.rs"}"#);
    // The earlier turn's response is echoed unchanged as the assistant message.
    let v: Value = serde_json::from_slice(&fixture("anthropic/response_tool_use.json")).unwrap();
    let earlier = api::parse_response(Api::Messages, &v).unwrap();
    assert_eq!(
        text_of(&earlier.output[0]["content"]),
        text_of(&req.messages[1]["content"])
    );
}
