//! Claude Code with an MCP server configured the way the README says —
//! `"command": "sidetrace", "args": ["mcp", "--", ...]` — and its model
//! behind the proxy: the model asks for the MCP tool, Claude Code runs it
//! through the wrapper, and the record links the model's call to the MCP
//! server's run of it.

use std::process::Stdio;

use serde_json::json;

use crate::agent::{agent_binary, show};
use crate::common::mcp::*;
use crate::common::mock::{Mock, Reply};
use crate::common::scripted::*;
use crate::common::*;

const MODEL: &str = "claude-sonnet-4-5-20250929";
const EXECUTION: &str = "exec-claude-mcp";

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_calls_an_mcp_tool_through_the_wrapper() {
    let claude = agent_binary(
        "SIDETRACE_TEST_CLAUDE",
        "@anthropic-ai/claude-code-linux-x64/claude",
    );
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();

    let mock = Mock::start(move |r| {
        let req = r.json();
        let turn = req["messages"].as_array().map_or(0, Vec::len);
        let id = format!("msg_01McpScripted{turn:04}");
        let has_tool = req["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "mcp__files__read_file"));
        let body = match anthropic_has_tool_result(&req) {
            Some(result) => anthropic_stream(
                &id,
                MODEL,
                &[json!({"type": "text", "text": format!("The MCP server says: {result}")})],
                "end_turn",
            ),
            None if has_tool => anthropic_stream(
                &id,
                MODEL,
                &[json!({"type": "tool_use", "id": "toolu_01McpNotes0001", "name": "mcp__files__read_file", "input": {"path": "notes.txt"}})],
                "tool_use",
            ),
            None => anthropic_stream(&id, MODEL, &[json!({"type": "text", "text": "{\"title\": \"Notes\"}"})], "end_turn"),
        };
        Reply::sse(body.as_bytes())
    })
    .await;
    let mut proxy = TestProxy::start(&[("/anthropic", &mock.url())], |o| {
        o.execution_id = Some(EXECUTION.into());
    })
    .await;

    let wrapper = wrapper_command(&proxy.journal, &["--name", "files"]);
    let (command, args) = (wrapper[0].clone(), wrapper[1..].to_vec());
    let config = json!({"mcpServers": {"files": {
        "command": command,
        "args": args,
        "env": {"SIDETRACE_EXECUTION_ID": EXECUTION, "SIDETRACE_SPONSOR": "alice@example.com"},
    }}});
    let out = tokio::process::Command::new(&claude)
        .current_dir(work.path())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home.path())
        .env("LANG", "C.UTF-8")
        .env("ANTHROPIC_BASE_URL", proxy.url("/anthropic"))
        .env("ANTHROPIC_API_KEY", "sk-ant-test-key-for-sidetrace")
        .env(
            "ANTHROPIC_CUSTOM_HEADERS",
            "Sidetrace-Sponsor: alice@example.com",
        )
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("CLAUDE_CODE_MAX_RETRIES", "1")
        .env("IS_SANDBOX", "1")
        // MCP tools are offered to the model up front, not behind ToolSearch.
        .env("ENABLE_TOOL_SEARCH", "false")
        .args([
            "-p",
            "Use the files server to read notes.txt",
            "--output-format",
            "json",
            "--max-turns",
            "5",
        ])
        .arg("--mcp-config")
        .arg(config.to_string())
        .arg("--strict-mcp-config")
        .arg("--dangerously-skip-permissions")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(HANG, out)
        .await
        .expect("claude finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "claude failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        result["result"].as_str().unwrap().contains("4242-ALPHA"),
        "the tool's answer reached the model and back: {result}"
    );

    let views = proxy.finish().await;
    assert_eq!(
        views.len(),
        1,
        "the agent's model calls and its MCP server share the execution"
    );
    let records = mcp_records(&views);
    // Claude Code speaks the sessionless 2026-07-28 protocol: no
    // initialize, but server/discover, and who it is in every request.
    let (list_it, list) = exchange(&records, "tools/list", |_| true);
    assert_eq!(list.server_name, "files");
    assert_eq!(list.protocol_version, "2026-07-28");
    assert!(
        list.client_info.as_ref().unwrap().name.contains("claude"),
        "{list:?}"
    );
    assert_eq!(list_it.sponsor.as_ref().unwrap().id, "alice@example.com");
    let names: Vec<&str> = list_it
        .tool_definitions
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(names, ["read_file", "slow_count", "confirm"]);
    assert!(
        records
            .iter()
            .any(|(_, m)| m.method == "server/discover" && m.server_info.is_some())
    );
    for (_, m) in &records {
        assert!(!m.unknown_method, "{m:?}");
        // Only the long-lived subscription stays open until the agent stops the server.
        if m.method != "subscriptions/listen" {
            assert!(m.unanswered.is_empty(), "{m:?}");
        }
    }
    let (call, m) = exchange(&records, "tools/call", |_| true);
    assert_eq!(
        (m.tool_name.as_str(), m.tool_arguments.as_str()),
        ("read_file", r#"{"path":"notes.txt"}"#)
    );
    let links = sidetrace::capture::mcp::link::link_tool_calls(&views[0].interactions);
    assert_eq!(links.len(), 1, "{links:#?}");
    assert_eq!(
        (
            links[0].call_id.as_str(),
            links[0].mcp_interaction_id.as_str()
        ),
        ("toolu_01McpNotes0001", call.id.as_str())
    );

    let text = show(&proxy.journal).await;
    for needle in [
        "tool call mcp__files__read_file {\"path\":\"notes.txt\"}",
        "ran by MCP files read_file",
        "<- model call mcp__files__read_file [toolu_01McpNotes0001]",
        "4242-ALPHA",
    ] {
        assert!(
            text.contains(needle),
            "`sidetrace show` lacks {needle:?}:\n{text}"
        );
    }
}
