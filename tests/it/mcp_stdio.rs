//! `sidetrace mcp`: the official MCP SDK's client and server with the
//! wrapper between them, and servers and clients that misbehave. The client
//! must get exactly what the server sent; the journal must hold every
//! message, paired; the wrapper must exit with the server, never hang.

use serde_json::{Value, json};
use sidetrace::record::{Api, CompletionStatus, ExecutionIdSource, digest_of};

use crate::common::mcp::*;
use crate::common::*;

fn journal_in(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("journal.db")
}

async fn verify(journal: &std::path::Path) {
    let out = tokio::process::Command::new(crate::common::binary::BIN)
        .args(["journal", "verify", "--journal"])
        .arg(journal)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "journal verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_client_and_server_through_the_wrapper() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal_in(&dir);
    let script = client_script("mcp_client.py").display().to_string();

    let mut direct_args = vec!["--confirm".to_owned(), "stdio".to_owned(), "--".to_owned()];
    direct_args.extend(server_command());
    let direct_args: Vec<&str> = direct_args.iter().map(String::as_str).collect();
    let direct = run_client(&script, &direct_args, &[]).await;

    let mut args = vec!["--confirm".to_owned(), "stdio".to_owned(), "--".to_owned()];
    args.extend(wrapper_command(&journal, &["--name", "files"]));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let wrapped = run_client(
        &script,
        &args,
        &[
            ("SIDETRACE_SPONSOR", "alice@example.com"),
            ("SIDETRACE_CHANGE_ID", "!77"),
        ],
    )
    .await;
    assert_eq!(wrapped["ok"], true, "{wrapped}");
    assert_eq!(
        served(&wrapped),
        served(&direct),
        "the client saw the same server"
    );
    assert_eq!(wrapped["slow_count"]["progress"], json!([1.0, 2.0, 3.0]));
    assert_eq!(wrapped["confirm"]["result"], "confirmed: yes");
    assert_eq!(wrapped["confirm"], direct["confirm"]);

    let views = read_journal(&journal);
    assert_eq!(views.len(), 1);
    let exec = &views[0].execution;
    assert_eq!(exec.id_source, ExecutionIdSource::Generated as i32);
    assert_eq!(exec.end_reason, "the server exited with status 0");
    let records = mcp_records(&views);
    for (it, m) in &records {
        assert_eq!(it.api, Api::Mcp as i32);
        assert_eq!(it.execution_id, exec.id);
        assert_eq!(it.sponsor.as_ref().unwrap().id, "alice@example.com");
        assert_eq!(it.correlation.as_ref().unwrap().change_id, "!77");
        assert_eq!(
            (m.transport.as_str(), m.server_name.as_str()),
            ("pipe", "files")
        );
        assert!(!m.session_id.is_empty());
        assert!(m.unanswered.is_empty(), "{m:?}");
    }

    let (_, init) = exchange(&records, "initialize", |_| true);
    assert_eq!(init.protocol_version, "2025-11-25");
    assert_eq!(
        init.server_info.as_ref().unwrap().name,
        "sidetrace-test-server"
    );
    assert_eq!(init.client_info.as_ref().unwrap().name, "mcp");
    assert!(!init.capabilities_digest.is_empty());
    assert!(
        records
            .iter()
            .any(|(_, m)| m.method == "notifications/initialized"
                && m.notification
                && m.initiator == "client")
    );

    let (list, _) = exchange(&records, "tools/list", |_| true);
    let names: Vec<&str> = list
        .tool_definitions
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(names, ["read_file", "slow_count", "confirm"]);
    let def: Value =
        serde_json::from_slice(&blob(&journal, &list.tool_definitions[0].digest)).unwrap();
    assert_eq!(def["name"], "read_file");

    let (_, read) = exchange(&records, "tools/call", |m| {
        m.tool_arguments.contains("notes.txt")
    });
    assert_eq!(read.tool_name, "read_file");
    assert_eq!(read.tool_arguments, r#"{"path":"notes.txt"}"#);
    assert!(!read.tool_is_error);
    let result: Value = serde_json::from_slice(&blob(&journal, &read.result_digest)).unwrap();
    assert_eq!(result["content"][0]["text"], NOTES_TEXT);

    let (missing_it, missing) = exchange(&records, "tools/call", |m| {
        m.tool_arguments.contains("missing")
    });
    assert!(missing.tool_is_error);
    assert_eq!(missing_it.error_type, "tool_error");
    assert!(
        missing_it
            .error_message
            .contains("file not found: missing.txt")
    );

    let (_, count) = exchange(&records, "tools/call", |m| m.tool_name == "slow_count");
    assert_eq!(count.progress_notifications, 3);
    let progress: Vec<_> = records
        .iter()
        .filter(|(_, m)| m.method == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3);
    assert!(
        progress
            .iter()
            .all(|(_, m)| m.related_request_id == count.request_id && m.initiator == "server")
    );

    let (res_it, res) = exchange(&records, "resources/read", |_| true);
    assert_eq!(res.resource_uri, "file:///notes.txt");
    let r = &res_it.context_refs[0];
    assert_eq!(
        (r.kind.as_str(), r.uri.as_str()),
        ("mcp_resource", "file:///notes.txt")
    );
    assert_eq!(r.digest, digest_of(NOTES_TEXT.as_bytes()));
    assert_eq!(r.size, NOTES_TEXT.len() as u64);

    let (_, prompt) = exchange(&records, "prompts/get", |_| true);
    assert_eq!(prompt.prompt_name, "review");
    server_request_recorded(&records, &journal);

    verify(&journal).await;
    let text = crate::agent::show(&journal).await;
    for needle in [
        "mcp files  tools/call",
        "read_file {\"path\":\"notes.txt\"}",
        "-> tool error",
        "(3 progress)",
        "mcp_resource file:///notes.txt",
        "mcp tool calls",
    ] {
        assert!(
            text.contains(needle),
            "`sidetrace show` lacks {needle:?}:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_on_stdout_is_relayed_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal_in(&dir);
    let mut w = Wrapped::start(
        &wrapper_command(&journal, &[]),
        &[("MCP_TEST_MISBEHAVE", "garbage")],
    );
    w.send(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}))
        .await;
    assert_eq!(w.recv().await, "this is not json-rpc");
    let init: Value = serde_json::from_str(&w.recv().await).unwrap();
    assert_eq!(init["id"], 0);
    w.close_stdin();
    assert_eq!(w.exit_code().await, 0);

    let records = mcp_records(&read_journal(&journal));
    let (it, bad) = records
        .iter()
        .find(|(_, m)| m.malformed)
        .expect("a malformed record");
    assert_eq!(bad.initiator, "server");
    assert_eq!(blob(&journal, &bad.raw_digest), b"this is not json-rpc");
    assert_eq!(it.capture_issues[0].kind, "mcp_malformed");
    exchange(&records, "initialize", |m| m.server_info.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_dies_mid_call_ends_the_wrapper_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal_in(&dir);
    let mut w = Wrapped::start(
        &wrapper_command(&journal, &[]),
        &[("MCP_TEST_MISBEHAVE", "die")],
    );
    w.initialize().await;
    w.send(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "read_file", "arguments": {"path": "die"}}}))
        .await;
    // stdin stays open: the wrapper must still exit when the server does.
    assert_eq!(w.exit_code().await, 3);
    assert!(w.rest().await.is_empty(), "no answer was invented");

    let views = read_journal(&journal);
    let records = mcp_records(&views);
    let (it, call) = exchange(&records, "tools/call", |_| true);
    assert_eq!(call.unanswered, "the server exited with status 3");
    assert_eq!(
        it.completion.as_ref().unwrap().status,
        CompletionStatus::UpstreamIncomplete as i32
    );
    assert_eq!(
        views[0].execution.end_reason,
        "the server exited with status 3"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_reach_a_server_that_never_answers() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal_in(&dir);
    let mut w = Wrapped::start(
        &wrapper_command(&journal, &[]),
        &[("MCP_TEST_MISBEHAVE", "hang")],
    );
    w.initialize().await;
    w.send(&json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "read_file", "arguments": {"path": "hang"}}}))
        .await;
    // The server handles requests concurrently: once a later ping is
    // answered, the hanging call has reached it.
    let pong = w.request(5, "ping", json!({})).await;
    assert_eq!(pong["id"], 5);
    w.signal("-TERM");
    assert_eq!(
        w.exit_code().await,
        128 + 15,
        "killed by the forwarded SIGTERM"
    );

    let records = mcp_records(&read_journal(&journal));
    let (_, call) = exchange(&records, "tools/call", |_| true);
    assert_eq!(call.unanswered, "the server was killed by signal 15");
}

/// A batch and a 10 MB line: the wrapper relays exactly what a direct
/// connection would, and records both.
#[tokio::test(flavor = "multi_thread")]
async fn batches_and_huge_lines_behave_as_a_direct_connection_would() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal_in(&dir);
    let huge_path = "x".repeat(10 * 1024 * 1024);
    let mut input = Vec::new();
    for m in [
        json!([
            {"jsonrpc": "2.0", "id": 1, "method": "ping"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        ]),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "read_file", "arguments": {"path": huge_path}}}),
        json!({"jsonrpc": "2.0", "id": 4, "method": "ping"}),
    ] {
        input.extend_from_slice(m.to_string().as_bytes());
        input.push(b'\n');
    }
    let mut outputs = Vec::new();
    for command in [server_command(), wrapper_command(&journal, &[])] {
        let mut w = Wrapped::start(&command, &[]);
        w.initialize().await;
        w.send_raw(&input).await;
        // The ping after the huge line is answered last: read up to it.
        let mut lines = Vec::new();
        loop {
            let line = w.recv().await;
            let v: Value = serde_json::from_str(&line).unwrap();
            lines.push(line);
            if v["id"] == 4 {
                break;
            }
        }
        w.close_stdin();
        assert_eq!(w.exit_code().await, 0);
        outputs.push(lines);
    }
    assert_eq!(
        outputs[0], outputs[1],
        "the wrapper changed what the client got"
    );
    assert!(
        outputs[1].iter().any(|l| l.len() > 10 * 1024 * 1024),
        "the huge answer came back"
    );

    let records = mcp_records(&read_journal(&journal));
    let batched: Vec<_> = records.iter().filter(|(_, m)| m.batched).collect();
    assert_eq!(batched.len(), 2, "both requests of the batch: {records:#?}");
    for (_, m) in &batched {
        // The server ignored the batch, exactly as without the wrapper.
        assert_eq!(m.unanswered, "the server exited with status 0");
    }
    let (_, huge) = exchange(&records, "tools/call", |_| true);
    assert!(huge.tool_is_error);
    assert_eq!(huge.request_size, (bytes_len_of_huge(&huge_path)) as u64);
    assert!(huge.response_size > 10 * 1024 * 1024);
    exchange(&records, "ping", |m| m.request_id == "4");
}

fn bytes_len_of_huge(path: &str) -> usize {
    json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "read_file", "arguments": {"path": path}}})
        .to_string()
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn lines_past_the_capture_cap_are_kept_by_prefix_and_digest() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal_in(&dir);
    let mut w = Wrapped::start(
        &wrapper_command(&journal, &["--capture-max-body", "64KiB"]),
        &[],
    );
    w.initialize().await;
    let big = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "read_file", "arguments": {"path": "y".repeat(200_000)}}}).to_string();
    w.send_raw(format!("{big}\n").as_bytes()).await;
    let answer = w.recv().await;
    assert!(answer.contains("file not found"));
    w.close_stdin();
    assert_eq!(w.exit_code().await, 0);

    let records = mcp_records(&read_journal(&journal));
    // Known by their start, the two still pair: one exchange, both sides
    // kept by prefix and digest.
    let (it, call) = exchange(&records, "tools/call", |_| true);
    assert!(call.oversized && call.unanswered.is_empty(), "{call:?}");
    assert_eq!(
        (call.request_id.as_str(), call.request_size),
        ("7", big.len() as u64)
    );
    assert_eq!(call.message_digest, digest_of(big.as_bytes()));
    assert_eq!(
        blob(&journal, &call.raw_digest),
        &big.as_bytes()[..64 * 1024]
    );
    assert_eq!(call.response_size, answer.len() as u64);
    assert_eq!(call.response_message_digest, digest_of(answer.as_bytes()));
    assert_eq!(
        blob(&journal, &call.response_raw_digest),
        &answer.as_bytes()[..64 * 1024]
    );
    assert_eq!(
        it.capture_issues
            .iter()
            .filter(|i| i.kind == "mcp_oversized")
            .count(),
        2
    );
    verify(&journal).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn write_ahead_refuses_what_it_cannot_record() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal_in(&dir);
    let mut w = Wrapped::start(
        &wrapper_command(
            &journal,
            &["--durability", "write-ahead", "--journal-max-size", "2MiB"],
        ),
        &[],
    );
    w.initialize().await;
    let answer = w.request(1, "ping", json!({})).await;
    assert_eq!(answer["result"], json!({}));
    // A 4 MB request cannot be made durable in a journal capped at 2 MiB:
    // the client gets an error for its id, and the server never sees it.
    let big = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "read_file", "arguments": {"path": "z".repeat(4 << 20)}}});
    w.send(&big).await;
    let refused: Value = serde_json::from_str(&w.recv().await).unwrap();
    assert_eq!(refused["id"], 2);
    assert_eq!(refused["error"]["code"], -32001);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("write-ahead")
    );
    let after = w.request(3, "ping", json!({})).await;
    assert_eq!(
        after["id"], 3,
        "the server is still fine and got nothing for id 2"
    );
    w.close_stdin();
    assert_eq!(w.exit_code().await, 0);

    let views = read_journal(&journal);
    let records = mcp_records(&views);
    // Every recorded request has its full record (the start and the end share an id).
    for (it, m) in &records {
        assert_ne!(
            it.completion.as_ref().unwrap().status,
            CompletionStatus::NotRecorded as i32,
            "{m:?}"
        );
    }
    exchange(&records, "ping", |m| m.request_id == "1");
    exchange(&records, "ping", |m| m.request_id == "3");
    assert!(records.iter().all(|(_, m)| m.request_id != "2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_sponsor_no_server_and_unknown_commands() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal_in(&dir);
    let marker = dir.path().join("started");
    let out = tokio::process::Command::new(crate::common::binary::BIN)
        .args(["mcp", "--journal"])
        .arg(&journal)
        .args(["--", "sh", "-c"])
        .arg(format!("touch {}", marker.display()))
        .env_remove("SIDETRACE_SPONSOR")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sponsor"), "{stderr}");
    assert!(
        stderr.contains("the MCP server was not started"),
        "{stderr}"
    );
    assert!(!marker.exists());

    let out = tokio::process::Command::new(crate::common::binary::BIN)
        .args(["mcp", "--journal"])
        .arg(&journal)
        .args(["--", "/nonexistent/mcp-server"])
        .env("SIDETRACE_SPONSOR", "alice@example.com")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot start the MCP server"));
}
