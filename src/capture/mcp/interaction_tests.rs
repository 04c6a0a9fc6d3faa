//! Tests of `interaction.rs`.

use super::super::message::Side;
use super::super::pairing::{Arrival, Pairing};
use super::*;
use bytes::Bytes;
use std::sync::Arc;

fn run(lines: &[(Side, &str)]) -> Vec<(Interaction, Vec<Blob>)> {
    let mut p = Pairing::new(
        SessionInfo {
            server_name: "files".into(),
            transport: super::super::TRANSPORT_PIPE,
            ..Default::default()
        },
        false,
    );
    let mut out = Vec::new();
    for (side, text) in lines {
        for f in p.observe(Arrival {
            side: *side,
            at: SystemTime::now(),
            bytes: Bytes::copy_from_slice(text.as_bytes()),
            size: text.len() as u64,
            oversized: false,
            digest: None,
            origin: Arc::new(Origin {
                execution_id: "exec-1".into(),
                route: "stdio".into(),
                ..Default::default()
            }),
            record_id: None,
        }) {
            out.push(build(f, true));
        }
    }
    out
}

fn blob<'a>(blobs: &'a [Blob], digest: &str) -> &'a [u8] {
    &blobs
        .iter()
        .find(|b| b.digest == digest)
        .expect("blob stored")
        .data
}

#[test]
fn tool_call_with_error_result() {
    let out = run(&[
        (
            Side::Client,
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"x.txt"}}}"#,
        ),
        (
            Side::Server,
            r#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"file not found: x.txt"}],"isError":true}}"#,
        ),
    ]);
    let (it, blobs) = &out[0];
    let m = it.mcp.as_ref().unwrap();
    assert_eq!(
        (
            m.method.as_str(),
            m.request_id.as_str(),
            m.tool_name.as_str()
        ),
        ("tools/call", "3", "read_file")
    );
    assert_eq!(m.tool_arguments, r#"{"path":"x.txt"}"#);
    assert!(m.tool_is_error);
    assert_eq!(it.error_type, "tool_error");
    assert_eq!(it.error_message, "file not found: x.txt");
    assert_eq!(
        (
            m.server_name.as_str(),
            m.transport.as_str(),
            m.initiator.as_str()
        ),
        ("files", "pipe", "client")
    );
    assert!(blob(blobs, &m.result_digest).starts_with(b"{\"content\""));
    assert_eq!(it.execution_id, "exec-1");
    assert_eq!(
        it.completion.as_ref().unwrap().status,
        CompletionStatus::Complete as i32
    );
}

#[test]
fn resources_become_context_refs_and_tools_definitions() {
    let out = run(&[
        (
            Side::Client,
            r#"{"id":1,"method":"resources/read","params":{"uri":"file:///notes.txt"}}"#,
        ),
        (
            Side::Server,
            r#"{"id":1,"result":{"contents":[{"uri":"file:///notes.txt","mimeType":"text/plain","text":"hello"}]}}"#,
        ),
        (Side::Client, r#"{"id":2,"method":"tools/list"}"#),
        (
            Side::Server,
            r#"{"id":2,"result":{"tools":[{"name":"a","inputSchema":{}},{"name":"b","inputSchema":{}}]}}"#,
        ),
    ]);
    let (read, blobs) = &out[0];
    assert_eq!(read.mcp.as_ref().unwrap().resource_uri, "file:///notes.txt");
    let r = &read.context_refs[0];
    assert_eq!(
        (r.kind.as_str(), r.uri.as_str(), r.size),
        ("mcp_resource", "file:///notes.txt", 5)
    );
    assert_eq!(r.digest, crate::record::digest_of(b"hello"));
    assert_eq!(blob(blobs, &r.digest), b"hello");
    let (list, _) = &out[1];
    let names: Vec<&str> = list
        .tool_definitions
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn secrets_in_arguments_are_replaced() {
    let out = run(&[
        (
            Side::Client,
            r#"{"id":1,"method":"tools/call","params":{"name":"http","arguments":{"auth":"Bearer sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}}"#,
        ),
        (
            Side::Server,
            r#"{"id":1,"error":{"code":-32602,"message":"bad"}}"#,
        ),
    ]);
    let (it, blobs) = &out[0];
    let m = it.mcp.as_ref().unwrap();
    assert!(
        !m.tool_arguments.contains("sk-ant-api03"),
        "{}",
        m.tool_arguments
    );
    assert!(!String::from_utf8_lossy(blob(blobs, &m.params_digest)).contains("sk-ant-api03"));
    assert!(!it.redactions.is_empty());
    assert_eq!(it.error_type, "-32602");
    assert_eq!(m.error.as_ref().unwrap().code, -32602);
}

#[test]
fn malformed_lines_keep_their_bytes() {
    let out = run(&[(Side::Server, "Listening on stdio\n")]);
    let (it, blobs) = &out[0];
    let m = it.mcp.as_ref().unwrap();
    assert!(m.malformed);
    assert_eq!(blob(blobs, &m.raw_digest), b"Listening on stdio\n");
    assert_eq!(it.capture_issues[0].kind, "mcp_malformed");
}
