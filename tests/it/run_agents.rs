//! `sidetrace run` with other agents and tools than Claude Code: Codex over
//! a WebSocket to api.openai.com, and an MCP server wrapped with
//! `sidetrace mcp` that joins the run's execution through the environment.

use sidetrace::record::Api;

use crate::agent::agent_binary;
use crate::common::tls::pki_for;
use crate::common::*;
use crate::run::{execution, sidetrace_run};

/// Codex CLI prefers the Responses API over WebSocket with a provider that
/// supports it; under `sidetrace run` it reaches `api.openai.com` through
/// the forward proxy, and each turn over the socket is recorded as a
/// Responses interaction with its tool call.
#[tokio::test(flavor = "multi_thread")]
async fn codex_over_websocket_under_sidetrace_run() {
    let codex = agent_binary(
        "SIDETRACE_TEST_CODEX",
        "@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex",
    );
    const MODEL: &str = "gpt-5.1-codex-2026-01-15";
    let dir = tempfile::tempdir().unwrap();
    let pki = pki_for(&[b"http/1.1"], &["api.openai.com"]);
    let pems = pki.write_pems(dir.path());
    let (cert, key) = (
        pems.cert.display().to_string(),
        pems.key.display().to_string(),
    );
    let (_server, url) = start_script_server(
        "responses_ws_server.py",
        &["--agent", MODEL, "--tls-cert", &cert, "--tls-key", &key],
        &[],
    )
    .await;
    let port = url.rsplit(':').next().unwrap().to_owned();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("notes.txt"),
        "The launch code is 4242-ALPHA.\n",
    )
    .unwrap();
    let codex_home = tempfile::tempdir().unwrap();
    std::fs::write(
        codex_home.path().join("config.toml"),
        "model = \"gpt-5.1-codex\"\nmodel_provider = \"openai-ws\"\n\
         [model_providers.openai-ws]\nname = \"OpenAI over WebSocket\"\nbase_url = \"https://api.openai.com/v1\"\n\
         wire_api = \"responses\"\nenv_key = \"RECORDED_API_KEY\"\nsupports_websockets = true\n",
    )
    .unwrap();
    let journal = dir.path().join("journal.db");
    let mut args: Vec<String> = vec![
        "--journal".into(),
        journal.display().to_string(),
        "--ca-dir".into(),
        dir.path().join("ca").display().to_string(),
        "--resolve".into(),
        format!("api.openai.com:443=127.0.0.1:{port}"),
        "--upstream-ca".into(),
        pems.ca.display().to_string(),
        "--sponsor".into(),
        "bob@example.com".into(),
        "--".into(),
    ];
    args.push(codex.display().to_string());
    args.extend(
        [
            "exec",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
            "--ephemeral",
            "Run cat notes.txt and tell me what it prints",
        ]
        .map(String::from),
    );
    let home = work.path().display().to_string();
    let codex_home_dir = codex_home.path().display().to_string();
    let out = sidetrace_run(
        work.path(),
        &args,
        &[
            ("HOME", &home),
            ("CODEX_HOME", &codex_home_dir),
            ("RECORDED_API_KEY", "sk-test-codex-key"),
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "codex under sidetrace run failed: {stdout}\n{stderr}"
    );
    assert!(stdout.contains("4242-ALPHA"), "{stdout}\n{stderr}");

    let v = execution(&journal);
    let turns: Vec<_> = v
        .interactions
        .iter()
        .filter(|i| i.api == Api::Responses as i32 && !i.input_messages.is_empty())
        .collect();
    let connections: Vec<_> = v
        .interactions
        .iter()
        .filter(|i| i.api == Api::Websocket as i32)
        .collect();
    assert!(!connections.is_empty(), "{:#?}", v.interactions);
    let call = turns
        .iter()
        .flat_map(|t| &t.tool_calls)
        .find(|c| c.name == "exec_command")
        .unwrap_or_else(|| panic!("the tool call: {turns:#?}"));
    assert_eq!(call.arguments, r#"{"cmd":"cat notes.txt"}"#);
    assert!(turns.iter().all(|t| t.served_model == MODEL));
    assert!(
        turns.iter().all(|t| t.websocket.is_some()),
        "carried over the WebSocket"
    );
    // The answer turn carries the command's output, joined to the call.
    let caller = turns
        .iter()
        .find(|t| t.tool_calls.iter().any(|c| c.name == "exec_command"))
        .unwrap();
    let answer = turns
        .iter()
        .find(|t| !t.tool_results.is_empty())
        .expect("the turn sending the tool result back");
    assert_eq!(answer.tool_results[0].call_interaction_id, caller.id);
    assert_eq!(answer.tool_results[0].call_id, "call_WsScriptedCat0001");
    let ws = connections[0].websocket.as_ref().unwrap();
    assert_eq!(ws.turns as usize, turns.len());
    assert_eq!(
        connections[0].completion.as_ref().unwrap().status,
        sidetrace::record::CompletionStatus::Complete as i32,
        "an agent that hangs up without a close frame still ended the connection: {:?}",
        connections[0].completion
    );
}

/// An MCP server the agent starts through `sidetrace mcp --` joins the
/// run's execution and journal from the environment `run` sets, with no
/// flags of its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrapped_mcp_server_joins_the_run_through_the_environment() {
    use crate::common::mcp::{client_script, server_command};
    let work = tempfile::tempdir().unwrap();
    let journal = work.path().join("journal.db");
    let mut args: Vec<String> = vec![
        "--journal".into(),
        journal.display().to_string(),
        "--ca-dir".into(),
        work.path().join("ca").display().to_string(),
        "--sponsor".into(),
        "carol@example.com".into(),
        "--".into(),
        python().display().to_string(),
        client_script("mcp_client.py").display().to_string(),
        "stdio".into(),
        "--".into(),
        env!("CARGO_BIN_EXE_sidetrace").into(),
        "mcp".into(),
        "--name".into(),
        "files".into(),
        "--".into(),
    ];
    args.extend(server_command());
    let out = sidetrace_run(work.path(), &args, &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(report["ok"], true, "{report}");

    let v = execution(&journal);
    let mcp: Vec<_> = v
        .interactions
        .iter()
        .filter_map(|i| i.mcp.as_ref())
        .collect();
    assert!(
        mcp.iter()
            .any(|m| m.method == "tools/call" && m.tool_name == "read_file"),
        "the wrapper's records are in the run's execution: {mcp:#?}"
    );
    assert!(
        v.interactions
            .iter()
            .all(|i| i.sponsor.as_ref().unwrap().id == "carol@example.com")
    );
    assert!(stderr.contains("MCP"), "the summary counts them: {stderr}");
}
