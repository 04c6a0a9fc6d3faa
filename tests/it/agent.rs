//! Real coding agents through sidetrace: Claude Code (Anthropic Messages) and
//! Codex CLI (OpenAI Responses), installed from npm by the test command, each
//! completing a multi-turn tool-using task against a scripted upstream. The
//! record must then show the prompt, each tool call with its arguments, the
//! result the agent sent back, and the served model version.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::json;
use sidetrace::record::{Interaction, part::Kind};

use crate::common::mock::{Mock, Reply};
use crate::common::scripted::*;
use crate::common::*;

const SECRET: &str = "The launch code is 4242-ALPHA.";
const CLAUDE_MODEL: &str = "claude-sonnet-4-5-20250929";
const CODEX_MODEL: &str = "gpt-5.1-codex-2026-01-15";

fn agents_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-env/agents/node_modules")
}

pub(crate) fn agent_binary(env: &str, relative: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let p = agents_dir().join(relative);
    assert!(
        p.exists(),
        "{} is missing: run ./scripts/test.sh (the README's test command), which installs the agent CLIs",
        p.display()
    );
    p
}

fn texts(it: &Interaction) -> Vec<String> {
    it.input_messages
        .iter()
        .flat_map(|m| &m.parts)
        .filter_map(|p| match &p.kind {
            Some(Kind::Text(t)) => Some(t.content.clone()),
            _ => None,
        })
        .collect()
}

fn tool_results(it: &Interaction) -> Vec<(String, String)> {
    it.input_messages
        .iter()
        .flat_map(|m| &m.parts)
        .filter_map(|p| match &p.kind {
            Some(Kind::ToolCallResponse(r)) => Some((r.id.clone(), r.response.clone())),
            _ => None,
        })
        .collect()
}

pub(crate) async fn show(journal: &Path) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sidetrace"))
        .args(["show", "--journal"])
        .arg(journal)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_reads_a_file_through_sidetrace() {
    let claude = agent_binary(
        "SIDETRACE_TEST_CLAUDE",
        "@anthropic-ai/claude-code-linux-x64/claude",
    );
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let notes = work.path().join("notes.txt");
    std::fs::write(&notes, format!("{SECRET}\n")).unwrap();
    let notes_path = notes.display().to_string();

    let mock = Mock::start(move |r| {
        let req = r.json();
        let turn = req["messages"].as_array().map_or(0, Vec::len);
        let id = format!("msg_01Scripted{turn:04}");
        let has_read = req["tools"].as_array().is_some_and(|t| t.iter().any(|t| t["name"] == "Read"));
        let body = match anthropic_has_tool_result(&req) {
            Some(result) => anthropic_stream(
                &id,
                CLAUDE_MODEL,
                &[json!({"type": "text", "text": format!("The file says: {}", result.lines().find(|l| l.contains("4242")).unwrap_or(&result))})],
                "end_turn",
            ),
            None if has_read => anthropic_stream(
                &id,
                CLAUDE_MODEL,
                &[
                    json!({"type": "text", "text": "I'll read the notes."}),
                    json!({"type": "tool_use", "id": "toolu_01ReadNotes0001", "name": "Read", "input": {"file_path": notes_path}}),
                ],
                "tool_use",
            ),
            // Side requests (titles, summaries) get a plain answer.
            None => anthropic_stream(&id, CLAUDE_MODEL, &[json!({"type": "text", "text": "{\"title\": \"Read notes\"}"})], "end_turn"),
        };
        Reply::sse(body.as_bytes())
    })
    .await;
    let mut proxy = TestProxy::start(&[("/anthropic", &mock.url())], |_| {}).await;

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
            "Sidetrace-Sponsor: alice@example.com\nSidetrace-Change-Id: !314",
        )
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("CLAUDE_CODE_MAX_RETRIES", "1")
        .env("IS_SANDBOX", "1")
        .args([
            "-p",
            "Read notes.txt and tell me what it says",
            "--output-format",
            "json",
            "--max-turns",
            "5",
        ])
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
        "{result}"
    );

    let views = proxy.finish().await;
    let main: Vec<&Interaction> = views
        .iter()
        .flat_map(|v| &v.interactions)
        .filter(|i| !i.tool_definitions.is_empty())
        .collect();
    assert_eq!(main.len(), 2, "a tool call turn and an answer turn");
    let (first, second) = (main[0], main[1]);
    assert!(
        texts(first)
            .iter()
            .any(|t| t.contains("Read notes.txt and tell me what it says")),
        "the prompt"
    );
    assert_eq!(first.tool_calls.len(), 1);
    assert_eq!(first.tool_calls[0].name, "Read");
    let args: serde_json::Value = serde_json::from_str(&first.tool_calls[0].arguments).unwrap();
    assert_eq!(args["file_path"], notes.display().to_string());
    assert_eq!(first.served_model, CLAUDE_MODEL);
    let results = tool_results(second);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].0, "toolu_01ReadNotes0001");
    assert!(
        results[0].1.contains(SECRET),
        "the tool result the agent sent back: {:?}",
        results[0].1
    );
    assert_eq!(second.finish_reasons, ["end_turn"]);
    // Linked: Claude Code's session is the execution and the conversation,
    // the Read result is joined to its call, and the file is a context reference.
    let session = first
        .http
        .as_ref()
        .unwrap()
        .request_headers
        .iter()
        .find(|h| h.name == "x-claude-code-session-id")
        .unwrap()
        .value
        .clone();
    assert_eq!(first.execution_id, session);
    assert_eq!(first.conversation_id, session);
    assert_eq!(second.previous_interaction_id, first.id);
    let linked = &second.tool_results[0];
    assert_eq!(
        (linked.call_id.as_str(), linked.tool_name.as_str()),
        ("toolu_01ReadNotes0001", "Read")
    );
    assert_eq!(linked.call_interaction_id, first.id);
    assert_eq!(
        linked.result_digest,
        sidetrace::record::digest_of(results[0].1.as_bytes())
    );
    let file = &second.context_refs[0];
    assert_eq!(
        (file.kind.as_str(), file.uri.as_str()),
        ("file", notes.display().to_string().as_str())
    );
    assert_eq!(file.digest, linked.result_digest);
    for it in &main {
        assert_eq!(it.sponsor.as_ref().unwrap().id, "alice@example.com");
        assert_eq!(it.correlation.as_ref().unwrap().change_id, "!314");
        assert!(
            it.agent
                .as_ref()
                .unwrap()
                .user_agent
                .starts_with("claude-cli/")
        );
        let headers = &it.http.as_ref().unwrap().request_headers;
        assert!(headers.iter().any(|h| h.name == "x-claude-code-session-id"));
        assert!(headers.iter().all(|h| h.name != "x-api-key"));
    }

    let text = show(&proxy.journal).await;
    for needle in [
        "user: Read notes.txt and tell me what it says",
        "tool call Read {\"file_path\":",
        "tool result [toolu_01ReadNotes0001]",
        "4242-ALPHA",
        "context",
        &format!("file {}", notes.display()),
        &format!("served {CLAUDE_MODEL}"),
        "alice@example.com",
    ] {
        assert!(
            text.contains(needle),
            "`sidetrace show` lacks {needle:?}:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_runs_a_command_through_sidetrace() {
    let codex = agent_binary(
        "SIDETRACE_TEST_CODEX",
        "@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex",
    );
    let work = tempfile::tempdir().unwrap();
    let codex_home = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("notes.txt"), format!("{SECRET}\n")).unwrap();

    let mock = Mock::start(|r| {
        if r.method != "POST" {
            return Reply::json(404, r#"{"error":{"message":"not here","type":"invalid_request_error"}}"#);
        }
        let req = r.json();
        let turn = req["input"].as_array().map_or(0, Vec::len);
        let id = format!("resp_scripted{turn:04}");
        let item = match responses_tool_output(&req) {
            Some(output) => json!({"id": format!("msg_scripted{turn:04}"), "type": "message", "role": "assistant",
                "content": [{"type": "output_text", "annotations": [], "text": format!("The command printed: {}", output.lines().find(|l| l.contains("4242")).unwrap_or("nothing"))}]}),
            None => json!({"id": format!("fc_scripted{turn:04}"), "type": "function_call", "call_id": "call_ScriptedCat0001",
                "name": "exec_command", "arguments": json!({"cmd": "cat notes.txt"}).to_string()}),
        };
        Reply::sse(responses_stream(&id, CODEX_MODEL, &item).as_bytes())
    })
    .await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |o| {
        o.execution_id = Some("codex-run-1".into());
        o.identity.sponsor = Some("bob@example.com".into());
    })
    .await;
    std::fs::write(
        codex_home.path().join("config.toml"),
        format!(
            "model = \"gpt-5.1-codex\"\nmodel_provider = \"recorded\"\n[model_providers.recorded]\nname = \"Recorded\"\nbase_url = \"{}\"\nwire_api = \"responses\"\nenv_key = \"RECORDED_API_KEY\"\n",
            proxy.url("/openai/v1")
        ),
    )
    .unwrap();

    let out = tokio::process::Command::new(&codex)
        .current_dir(work.path())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", work.path())
        .env("CODEX_HOME", codex_home.path())
        .env("RECORDED_API_KEY", "sk-test-codex-key")
        .args([
            "exec",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
            "--ephemeral",
        ])
        .arg("Run cat notes.txt and tell me what it prints")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(HANG, out)
        .await
        .expect("codex finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "codex failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("4242-ALPHA"), "{stdout}");

    let views = proxy.finish().await;
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].execution.id, "codex-run-1");
    let its = &views[0].interactions;
    assert_eq!(its.len(), 2, "{its:#?}");
    assert!(
        texts(&its[0])
            .iter()
            .any(|t| t.contains("Run cat notes.txt")),
        "the prompt"
    );
    assert_eq!(its[0].tool_calls[0].name, "exec_command");
    assert_eq!(its[0].tool_calls[0].arguments, r#"{"cmd":"cat notes.txt"}"#);
    assert_eq!(its[0].served_model, CODEX_MODEL);
    let results = tool_results(&its[1]);
    assert_eq!(results[0].0, "call_ScriptedCat0001");
    assert!(results[0].1.contains(SECRET));
    assert_eq!(its[1].tool_results[0].call_interaction_id, its[0].id);
    let cmd = &its[1].context_refs[0];
    assert_eq!(
        (cmd.kind.as_str(), cmd.uri.as_str()),
        ("command_output", "cat notes.txt")
    );
    assert_eq!(
        cmd.digest,
        sidetrace::record::digest_of(results[0].1.as_bytes())
    );
    assert_eq!(its[0].session_source, "session-id");
    assert_eq!(its[1].conversation_id, its[0].conversation_id);
    assert!(
        its[1]
            .http
            .as_ref()
            .unwrap()
            .request_headers
            .iter()
            .any(|h| h.name == "session-id")
    );

    let text = show(&proxy.journal).await;
    for needle in [
        "tool call exec_command {\"cmd\":\"cat notes.txt\"}",
        "tool result [call_ScriptedCat0001]",
        &format!("served {CODEX_MODEL}"),
        "bob@example.com",
    ] {
        assert!(
            text.contains(needle),
            "`sidetrace show` lacks {needle:?}:\n{text}"
        );
    }
}
