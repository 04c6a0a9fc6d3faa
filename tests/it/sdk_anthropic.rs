//! The official Anthropic Python SDK through sidetrace: streamed and plain
//! Messages calls with thinking and tool use, provider errors before and
//! during a stream, and the bytes the SDK received.

use base64::Engine as _;
use serde_json::json;
use sidetrace::record::{Api, CompletionStatus, Provider, part::Kind};

use crate::common::mock::{Mock, Reply};
use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn messages_stream_with_thinking_and_tool_use() {
    let mock = fixture_mock(None).await;
    let mut proxy = TestProxy::start(&[("/anthropic", &mock.url())], |_| {}).await;
    let out = run_client(
        "anthropic_client.py",
        &[
            "messages-stream",
            &fixture_path("anthropic/request_tools.json"),
        ],
        &[("BASE_URL", &proxy.url("/anthropic"))],
    )
    .await;
    assert_eq!(out["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(out["stop_reason"], "tool_use");
    let types: Vec<&str> = out["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["thinking", "text", "tool_use"]);
    assert_eq!(
        out["content"][2]["input"],
        json!({"command": "cargo test --all-targets"})
    );

    let seen = mock.requests();
    assert_eq!(seen[0].path, "/v1/messages");
    assert!(
        seen[0].headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Bearer sk-ant-test"),
        "the credential passes through"
    );
    assert!(seen[0].headers.contains_key("anthropic-version"));

    let it = only_interaction(&proxy.finish().await);
    assert_eq!(it.provider, Provider::Anthropic as i32);
    assert_eq!(it.api, Api::Messages as i32);
    assert_eq!(it.requested_model, "claude-sonnet-4-5");
    assert_eq!(it.served_model, "claude-sonnet-4-5-20250929");
    assert!(it.response_id.starts_with("msg_"));
    let system = it.system_instructions.as_ref().unwrap();
    assert_eq!(system.parts.len(), 2);
    assert_eq!(it.input_messages.len(), 3);
    let Some(Kind::ToolCallResponse(result)) = &it.input_messages[2].parts[0].kind else {
        panic!("{:?}", it.input_messages[2])
    };
    let Some(Kind::ToolCall(earlier_call)) = &it.input_messages[1].parts[2].kind else {
        panic!("{:?}", it.input_messages[1])
    };
    assert_eq!(
        result.id, earlier_call.id,
        "the tool result the agent sent back"
    );
    assert_eq!(earlier_call.arguments, r#"{"path":"src/main.rs"}"#);
    assert_eq!(it.tool_calls.len(), 1);
    assert_eq!(it.tool_calls[0].name, "run_shell");
    assert_eq!(it.tool_calls[0].r#type, "tool_use");
    let out_parts = &it.output_messages[0].parts;
    assert!(
        matches!(&out_parts[0].kind, Some(Kind::Reasoning(r)) if !r.content.is_empty()),
        "thinking kept as reasoning"
    );
    let u = it.usage.as_ref().unwrap();
    assert_eq!(
        (u.input_tokens, u.cache_read_input_tokens, u.output_tokens),
        (452, 1621, 141)
    );
    assert_eq!(u.total_input_tokens, 452 + 1621);
    assert_eq!(it.finish_reasons, ["tool_use"]);
    assert!(
        it.request_params
            .as_ref()
            .unwrap()
            .fields
            .contains_key("max_tokens")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_not_streamed() {
    let mock = fixture_mock(None).await;
    let mut proxy = TestProxy::start(&[("/anthropic", &mock.url())], |_| {}).await;
    let out = run_client(
        "anthropic_client.py",
        &["messages", &fixture_path("anthropic/request_tools.json")],
        &[("BASE_URL", &proxy.url("/anthropic"))],
    )
    .await;
    assert_eq!(out["stop_reason"], "tool_use");
    let it = only_interaction(&proxy.finish().await);
    assert!(!it.stream);
    assert_eq!(it.tool_calls[0].name, "read_file");
    assert_eq!(it.tool_calls[0].arguments, r#"{"path":"src/main.rs"}"#);
    // The model's turn as the agent will send it back: its digest matches
    // the assistant message of the next request, so it is stored once.
    let next: serde_json::Value =
        serde_json::from_slice(&fixture("anthropic/request_tools.json")).unwrap();
    let echoed = serde_json::to_vec(&next["messages"][1]).unwrap();
    assert_eq!(
        it.output_messages[0].digest,
        sidetrace::record::digest_of(&echoed)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn overloaded_error_reaches_the_sdk_and_the_record() {
    let mock = Mock::start(|_| Reply::json(529, fixture("anthropic/error_overloaded.json"))).await;
    let mut proxy = TestProxy::start(&[("/anthropic", &mock.url())], |_| {}).await;
    let out = run_client(
        "anthropic_client.py",
        &["messages", &fixture_path("anthropic/request_tools.json")],
        &[("BASE_URL", &proxy.url("/anthropic"))],
    )
    .await;
    assert_eq!(out["error"]["status"], 529);
    assert_eq!(out["error"]["body"]["error"]["type"], "overloaded_error");
    let it = only_interaction(&proxy.finish().await);
    assert_eq!(it.http.as_ref().unwrap().status, 529);
    assert_eq!(it.error_type, "overloaded_error");
    assert_eq!(it.error_message, "Overloaded");
    assert_eq!(
        it.completion.as_ref().unwrap().status,
        CompletionStatus::Complete as i32
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn error_event_mid_stream_is_recorded_with_what_came_before() {
    let mock = Mock::start(|_| Reply::sse(&fixture("anthropic/stream_error.sse"))).await;
    let mut proxy = TestProxy::start(&[("/anthropic", &mock.url())], |_| {}).await;
    let out = run_client(
        "anthropic_client.py",
        &[
            "messages-stream",
            &fixture_path("anthropic/request_tools.json"),
        ],
        &[("BASE_URL", &proxy.url("/anthropic"))],
    )
    .await;
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Overloaded"),
        "{out}"
    );
    let it = only_interaction(&proxy.finish().await);
    assert_eq!(it.error_type, "overloaded_error");
    assert!(it.served_model.starts_with("claude-"));
    let text = match &it.output_messages[0].parts[0].kind {
        Some(Kind::Text(t)) => t.content.clone(),
        other => panic!("{other:?}"),
    };
    assert!(!text.is_empty(), "the text seen before the error is kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn compressed_stream_reaches_the_sdk_byte_for_byte() {
    let mock = fixture_mock(Some("gzip")).await;
    let mut proxy = TestProxy::start(&[("/anthropic", &mock.url())], |_| {}).await;
    let out = run_client(
        "anthropic_client.py",
        &["raw", &fixture_path("anthropic/request_tools.json")],
        &[("BASE_URL", &proxy.url("/anthropic"))],
    )
    .await;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(out["raw_b64"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        raw,
        compress("gzip", &fixture("anthropic/stream_tool_use.sse"))
    );
    let it = only_interaction(&proxy.finish().await);
    assert_eq!(it.tool_calls[0].name, "run_shell");
}
