//! The official OpenAI Python SDK through sidetrace: Chat Completions and
//! Responses, streamed and not, with what the journal keeps checked field by
//! field and the streamed bytes compared one for one.

use base64::Engine as _;
use serde_json::json;
use sidetrace::record::{Api, CompletionStatus, Provider, SponsorAssurance, part::Kind};

use crate::common::*;

fn sponsor_headers() -> String {
    json!({
        "Sidetrace-Execution-Id": "exec-openai-1",
        "Sidetrace-Sponsor": "alice@example.com",
        "Sidetrace-Change-Id": "!42",
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_completions_stream_with_tool_calls() {
    let mock = fixture_mock(None).await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |_| {}).await;
    let base = proxy.url("/openai/v1");
    let headers = sponsor_headers();
    let out = run_client(
        "openai_client.py",
        &[
            "chat-stream",
            &fixture_path("openai_chat/request_tools.json"),
        ],
        &[("BASE_URL", &base), ("EXTRA_HEADERS", &headers)],
    )
    .await;
    assert_eq!(out["model"], "gpt-4.1-2025-04-14");
    assert_eq!(out["finish"], json!(["tool_calls"]));
    assert_eq!(out["tool_calls"][0]["name"], "read_file");
    assert_eq!(
        out["tool_calls"][1]["arguments"],
        r#"{"command":"cargo test --all-targets"}"#
    );
    assert_eq!(out["usage"]["prompt_tokens"], 1359);

    // What reached the upstream: the path without the prefix, the agent's
    // credentials, none of sidetrace's own headers.
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert!(
        seen[0].headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Bearer sk-test")
    );
    assert!(
        seen[0]
            .headers
            .keys()
            .all(|k| !k.as_str().starts_with("sidetrace-"))
    );
    assert_eq!(seen[0].headers["host"], mock.addr.to_string().as_str());

    let views = proxy.finish().await;
    assert_eq!(views.len(), 1);
    let exec = &views[0].execution;
    assert_eq!(exec.id, "exec-openai-1");
    let sponsor = exec.sponsor.as_ref().unwrap();
    assert_eq!(sponsor.id, "alice@example.com");
    assert_eq!(sponsor.assurance, SponsorAssurance::Header as i32);
    assert_eq!(exec.correlation.as_ref().unwrap().change_id, "!42");

    let it = only_interaction(&views);
    assert_eq!(it.provider, Provider::Openai as i32);
    assert_eq!(it.api, Api::ChatCompletions as i32);
    assert_eq!(it.requested_model, "gpt-4.1");
    assert_eq!(it.served_model, "gpt-4.1-2025-04-14");
    assert!(it.stream);
    assert_eq!(
        it.completion.as_ref().unwrap().status,
        CompletionStatus::Complete as i32
    );
    let roles: Vec<&str> = it.input_messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "user"]);
    let Some(Kind::ToolCallResponse(result)) = &it.input_messages[3].parts[0].kind else {
        panic!("{:?}", it.input_messages[3])
    };
    assert_eq!(result.id, "call_0YLieJv2C5N7DjmKPwP0TKs6");
    let tools: Vec<&str> = it
        .tool_definitions
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(tools, ["read_file", "run_shell"]);
    assert!(
        it.tool_definitions
            .iter()
            .all(|t| t.digest.starts_with("sha256:"))
    );
    let calls: Vec<(&str, &str)> = it
        .tool_calls
        .iter()
        .map(|c| (c.name.as_str(), c.arguments.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            ("read_file", r#"{"path":"Cargo.toml"}"#),
            ("run_shell", r#"{"command":"cargo test --all-targets"}"#)
        ]
    );
    let usage = it.usage.as_ref().unwrap();
    assert_eq!(
        (
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_input_tokens
        ),
        (1359, 49, 1280)
    );
    assert_eq!(it.finish_reasons, ["tool_calls"]);
    let timing = it.timing.as_ref().unwrap();
    assert!(timing.time_to_first_chunk.is_some() && timing.end_time.is_some());
    let http = it.http.as_ref().unwrap();
    assert_eq!(http.status, 200);
    assert!(
        http.request_headers
            .iter()
            .all(|h| h.name != "authorization"),
        "credentials never recorded"
    );
    assert!(!it.agent.as_ref().unwrap().credential_fingerprint.is_empty());
    assert!(
        it.agent
            .as_ref()
            .unwrap()
            .user_agent
            .starts_with("OpenAI/Python")
    );
    // The response body is kept verbatim.
    let body = http.response_body.as_ref().unwrap();
    assert_eq!(
        blob(&proxy.journal, &body.stored_digest),
        fixture("openai_chat/stream_tool_calls.sse")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_completions_not_streamed() {
    let mock = fixture_mock(None).await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |o| {
        o.identity.sponsor = Some("ops-bot-owner".into());
        o.identity.change_id = Some("MR-7".into());
    })
    .await;
    let out = run_client(
        "openai_client.py",
        &["chat", &fixture_path("openai_chat/request_tools.json")],
        &[("BASE_URL", &proxy.url("/openai/v1"))],
    )
    .await;
    assert_eq!(out["tool_calls"][0]["id"], "call_0YLieJv2C5N7DjmKPwP0TKs6");
    let views = proxy.finish().await;
    assert_eq!(
        views[0].execution.id, proxy.execution_id,
        "no header: the run's own execution"
    );
    assert_eq!(
        views[0].execution.sponsor.as_ref().unwrap().assurance,
        SponsorAssurance::Static as i32
    );
    let it = only_interaction(&views);
    assert!(!it.stream);
    assert_eq!(it.sponsor.as_ref().unwrap().id, "ops-bot-owner");
    assert_eq!(it.correlation.as_ref().unwrap().change_id, "MR-7");
    assert_eq!(it.tool_calls[0].arguments, r#"{"path":"src/main.rs"}"#);
    assert_eq!(it.served_model, "gpt-4.1-2025-04-14");
    assert!(
        !views[0].execution.end_reason.is_empty(),
        "the run's execution is closed at shutdown"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_stream_with_reasoning_and_function_call() {
    let mock = fixture_mock(None).await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |_| {}).await;
    let out = run_client(
        "openai_client.py",
        &[
            "responses-stream",
            &fixture_path("openai_responses/request_tools.json"),
        ],
        &[("BASE_URL", &proxy.url("/openai/v1"))],
    )
    .await;
    assert_eq!(out["status"], "completed");
    assert_eq!(out["tool_calls"][0]["name"], "run_shell");
    assert!(
        out["events"]
            .as_array()
            .unwrap()
            .contains(&json!("response.function_call_arguments.delta"))
    );

    let it = only_interaction(&proxy.finish().await);
    assert_eq!(it.api, Api::Responses as i32);
    assert_eq!(it.requested_model, "gpt-5");
    assert_eq!(it.served_model, "gpt-5-2025-08-07");
    let system = it
        .system_instructions
        .as_ref()
        .expect("instructions recorded");
    assert!(matches!(&system.parts[0].kind, Some(Kind::Text(t)) if !t.content.is_empty()));
    assert_eq!(it.input_messages.len(), 4);
    assert_eq!(it.output_messages.len(), 2);
    assert_eq!(it.tool_calls[0].id, "call_PJ4GrHH3kbRjFKP4n2Vn3yp1");
    assert_eq!(it.usage.as_ref().unwrap().reasoning_tokens, 128);
    assert_eq!(it.finish_reasons, ["completed"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_not_streamed() {
    let mock = fixture_mock(None).await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |_| {}).await;
    let out = run_client(
        "openai_client.py",
        &[
            "responses",
            &fixture_path("openai_responses/request_tools.json"),
        ],
        &[("BASE_URL", &proxy.url("/openai/v1"))],
    )
    .await;
    assert_eq!(out["tool_calls"][0]["id"], "call_g1ND2CEDT8bsJ9Mu55zW9Feq");
    let it = only_interaction(&proxy.finish().await);
    assert_eq!(it.tool_calls[0].name, "read_file");
    assert!(it.usage.is_some());
}

/// Real clients ask for compressed bodies and real providers send them:
/// every encoding is forwarded as sent and decoded only for the record.
#[tokio::test(flavor = "multi_thread")]
async fn compressed_streams_reach_the_sdk_byte_for_byte() {
    for encoding in ["gzip", "br", "zstd", "deflate"] {
        let mock = fixture_mock(Some(encoding)).await;
        let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |_| {}).await;
        let out = run_client(
            "openai_client.py",
            &["raw-chat", &fixture_path("openai_chat/request_tools.json")],
            &[("BASE_URL", &proxy.url("/openai/v1"))],
        )
        .await;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(out["raw_b64"].as_str().unwrap())
            .unwrap();
        assert_eq!(out["content_encoding"], encoding);
        let expected = compress(encoding, &fixture("openai_chat/stream_tool_calls.sse"));
        assert_eq!(
            raw, expected,
            "{encoding}: the SDK got exactly the upstream's bytes"
        );
        let it = only_interaction(&proxy.finish().await);
        assert_eq!(it.tool_calls.len(), 2, "{encoding}: decoded for capture");
        assert!(
            it.capture_issues.is_empty(),
            "{encoding}: {:?}",
            it.capture_issues
        );
        let body = it.http.as_ref().unwrap().response_body.clone().unwrap();
        assert_eq!(body.content_encoding, encoding);
        assert_eq!(body.size, expected.len() as u64);
        assert_eq!(body.digest, sidetrace::record::digest_of(&expected));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_stream_bytes_are_identical() {
    let mock = fixture_mock(None).await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |_| {}).await;
    for (mode, request, expected) in [
        (
            "raw-chat",
            "openai_chat/request_tools.json",
            "openai_chat/stream_tool_calls.sse",
        ),
        (
            "raw-responses",
            "openai_responses/request_tools.json",
            "openai_responses/stream_function_call.sse",
        ),
    ] {
        let out = run_client(
            "openai_client.py",
            &[mode, &fixture_path(request)],
            &[("BASE_URL", &proxy.url("/openai/v1"))],
        )
        .await;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(out["raw_b64"].as_str().unwrap())
            .unwrap();
        assert_eq!(raw, fixture(expected), "{mode}");
    }
    proxy.stop().await;
}
