//! A model's tool call served by an MCP server: the model (through the
//! proxy) asks for `mcp__files__read_file`, the official MCP SDK client runs
//! it through `sidetrace mcp` into the same journal and execution, and the
//! result goes back to the model. `sidetrace show` must link the three, and
//! the exported trace must hang the MCP span under the tool call's span.

use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{Value, json};

use crate::common::mcp::*;
use crate::common::mock::{Mock, Reply};
use crate::common::otlp::{Receiver, attr};
use crate::common::*;

const MODEL: &str = "claude-sonnet-4-5-20250929";
const CALL_ID: &str = "toolu_01McpReadNotes";
const EXECUTION: &str = "exec-mcp-link";

fn model_mock_reply(request: &Value) -> Value {
    let last = &request["messages"].as_array().unwrap().last().unwrap()["content"];
    let answered = last
        .as_array()
        .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"));
    let (content, stop) = if answered {
        (
            json!([{"type": "text", "text": "The notes hold the launch code."}]),
            "end_turn",
        )
    } else {
        (
            json!([{"type": "tool_use", "id": CALL_ID, "name": "mcp__files__read_file", "input": {"path": "notes.txt"}}]),
            "tool_use",
        )
    };
    json!({"id": "msg_01Link", "type": "message", "role": "assistant", "model": MODEL,
        "content": content, "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": 100, "output_tokens": 20}})
}

async fn ask_model(proxy: &TestProxy, messages: &Value) -> Value {
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 512, "messages": messages,
        "tools": [{"name": "mcp__files__read_file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]});
    let (status, _, reply) = post(
        &proxy.url("/anthropic/v1/messages"),
        &[("sidetrace-sponsor", "alice@example.com")],
        serde_json::to_vec(&body).unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    serde_json::from_slice(&reply).unwrap()
}

fn one<'a>(spans: &'a [Span], what: &str, pick: impl Fn(&Span) -> bool) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| pick(s)).collect();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(found.len(), 1, "one {what} span expected among {names:?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_tool_call_served_over_mcp_is_linked() {
    let receiver = Receiver::http().await;
    let mock = Mock::start(|r| Reply::json(200, model_mock_reply(&r.json()).to_string())).await;
    let mut proxy = TestProxy::start(&[("/anthropic", &mock.url())], |o| {
        o.execution_id = Some(EXECUTION.into());
        o.export.endpoint = Some(receiver.url());
        o.export.content = Some("full".into());
    })
    .await;

    // 1. The model asks for the tool.
    let mut messages = json!([{"role": "user", "content": "What do my notes say?"}]);
    let first = ask_model(&proxy, &messages).await;
    assert_eq!(first["content"][0]["id"], CALL_ID);

    // 2. The agent runs it on its MCP server, through the wrapper, into the
    //    proxy's journal and execution.
    let mut args = vec!["stdio".to_owned(), "--".to_owned()];
    args.extend(wrapper_command(&proxy.journal, &["--name", "files"]));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_client(
        &client_script("mcp_client.py").display().to_string(),
        &args,
        &[
            ("SIDETRACE_EXECUTION_ID", EXECUTION),
            ("SIDETRACE_SPONSOR", "alice@example.com"),
        ],
    )
    .await;
    assert_eq!(out["read_file"]["text"], NOTES_TEXT);

    // 3. The result goes back to the model.
    messages.as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": first["content"]}),
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": CALL_ID, "content": NOTES_TEXT}]}),
    ]);
    let second = ask_model(&proxy, &messages).await;
    assert_eq!(second["stop_reason"], "end_turn");
    let views = proxy.finish().await;

    assert_eq!(views.len(), 1, "one execution holds both sides");
    let records = mcp_records(&views);
    let (served, _) = exchange(&records, "tools/call", |m| {
        m.tool_arguments == r#"{"path":"notes.txt"}"#
    });
    let links = sidetrace::capture::mcp::link::link_tool_calls(&views[0].interactions);
    assert_eq!(links.len(), 1, "{links:#?}");
    assert_eq!(links[0].call_id, CALL_ID);
    assert_eq!(links[0].mcp_interaction_id, served.id);

    let text = crate::agent::show(&proxy.journal).await;
    for needle in [
        "ran by MCP files read_file",
        &format!("<- model call mcp__files__read_file [{CALL_ID}]"),
        "result in #",
    ] {
        assert!(
            text.contains(needle),
            "`sidetrace show` lacks {needle:?}:\n{text}"
        );
    }

    // The trace: the MCP call under the model's tool call; unrelated MCP
    // calls under the execution's root.
    let spans = receiver.spans();
    let tool = one(&spans, "execute_tool", |s| {
        s.name == "execute_tool mcp__files__read_file"
    });
    let mcp_call = one(&spans, "linked tools/call", |s| {
        s.name == "tools/call read_file"
            && attr(s, "gen_ai.tool.call.id").as_deref() == Some(CALL_ID)
    });
    assert_eq!(mcp_call.parent_span_id, tool.span_id);
    assert_eq!(mcp_call.trace_id, tool.trace_id);
    for (key, value) in [
        ("mcp.method.name", "tools/call"),
        ("gen_ai.operation.name", "execute_tool"),
        ("gen_ai.tool.name", "read_file"),
        ("network.transport", "pipe"),
        ("mcp.protocol.version", "2025-11-25"),
        ("enduser.id", "alice@example.com"),
        ("sidetrace.execution.id", EXECUTION),
        ("sidetrace.mcp.server.name", "files"),
    ] {
        assert_eq!(attr(mcp_call, key).as_deref(), Some(value), "{key}");
    }
    assert!(
        attr(mcp_call, "gen_ai.tool.call.result")
            .expect("the tool result is on the MCP span")
            .contains("4242-ALPHA")
    );
    assert!(
        attr(mcp_call, "mcp.session.id").is_none(),
        "stdio has no Mcp-Session-Id"
    );
    let missing = one(&spans, "tool error", |s| {
        attr(s, "gen_ai.tool.call.arguments").as_deref() == Some(r#"{"path":"missing.txt"}"#)
    });
    assert_eq!(attr(missing, "error.type").as_deref(), Some("tool_error"));
    assert_eq!(missing.status.as_ref().unwrap().code, 2, "ERROR");
    let root = one(&spans, "root", |s| s.name.starts_with("invoke_agent"));
    assert_eq!(missing.parent_span_id, root.span_id);
    let count = one(&spans, "slow_count", |s| s.name == "tools/call slow_count");
    assert_eq!(
        attr(count, "sidetrace.mcp.progress_notifications").as_deref(),
        Some("3")
    );
    assert_eq!(
        spans
            .iter()
            .filter(|s| s.name == "notifications/progress")
            .count(),
        3
    );
    let read = one(&spans, "resources/read", |s| s.name == "resources/read");
    assert_eq!(
        attr(read, "mcp.resource.uri").as_deref(),
        Some("file:///notes.txt")
    );
    assert_eq!(read.events.len(), 1, "the resource as a context reference");
    one(&spans, "prompts/get", |s| s.name == "prompts/get review");
}
