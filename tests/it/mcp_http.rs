//! MCP over HTTP through a `protocol = "mcp"` route, with the official MCP
//! SDK on both ends: Streamable HTTP with SSE and with JSON answers, a
//! session and its DELETE, the sessionless 2026-07-28 protocol, the older
//! HTTP+SSE transport, and a stream resumed with `Last-Event-ID`. The
//! client must get what it gets without sidetrace; the journal must pair
//! every method within its session.

use serde_json::Value;
use sidetrace::record::{CompletionStatus, Interaction, McpExchange};

use crate::common::mcp::*;
use crate::common::otlp::{Receiver, attr};
use crate::common::*;

async fn client(url: &str, transport: &str, mode: &str) -> Value {
    client_with(url, transport, mode, &[]).await
}

async fn client_with(url: &str, transport: &str, mode: &str, flags: &[&str]) -> Value {
    let mut args = vec!["--mode", mode];
    args.extend_from_slice(flags);
    args.extend([transport, url]);
    run_client(
        &client_script("mcp_client.py").display().to_string(),
        &args,
        &[],
    )
    .await
}

async fn proxy_to(route: &str, upstream: &str, receiver: Option<&Receiver>) -> TestProxy {
    proxy_with(route, upstream, receiver, "batched").await
}

async fn proxy_with(
    route: &str,
    upstream: &str,
    receiver: Option<&Receiver>,
    durability: &str,
) -> TestProxy {
    let spec = format!("{route}={upstream}");
    TestProxy::start(&[("/anthropic", "https://api.anthropic.com")], |o| {
        o.mcp_routes = vec![spec];
        o.durability = Some(durability.into());
        if let Some(r) = receiver {
            o.export.endpoint = Some(r.url());
        }
    })
    .await
}

/// Every exchange answered, every record on the route.
fn all_answered(records: &[(Interaction, McpExchange)], route: &str) {
    assert!(!records.is_empty());
    for (it, m) in records {
        assert_eq!(it.route, route);
        assert_eq!(m.transport, "tcp");
        assert!(m.unanswered.is_empty(), "unanswered: {m:#?}");
        assert!(!m.orphan_response && !m.malformed, "{m:#?}");
    }
}

/// What the SDK client's script does, found in the record.
fn script_recorded(records: &[(Interaction, McpExchange)], journal: &std::path::Path) {
    let (list, _) = exchange(records, "tools/list", |_| true);
    assert_eq!(list.tool_definitions.len(), 3);
    let (_, read) = exchange(records, "tools/call", |m| {
        m.tool_arguments.contains("notes.txt")
    });
    let result: Value = serde_json::from_slice(&blob(journal, &read.result_digest)).unwrap();
    assert_eq!(result["content"][0]["text"], NOTES_TEXT);
    let (missing, _) = exchange(records, "tools/call", |m| {
        m.tool_arguments.contains("missing")
    });
    assert_eq!(missing.error_type, "tool_error");
    let (res, _) = exchange(records, "resources/read", |_| true);
    assert_eq!(
        res.context_refs[0].digest,
        sidetrace::record::digest_of(NOTES_TEXT.as_bytes())
    );
    exchange(records, "prompts/get", |m| m.prompt_name == "review");
}

#[tokio::test(flavor = "multi_thread")]
async fn streamable_http_with_a_session_sse_answers_and_spans() {
    let server = HttpServer::start(&["http"], &[]).await;
    let receiver = Receiver::http().await;
    let mut proxy = proxy_to("/tools", &server.url, Some(&receiver)).await;
    let direct = client_with(&server.url, "http", "legacy", &["--confirm"]).await;
    let out = client_with(&proxy.url("/tools"), "http", "legacy", &["--confirm"]).await;
    assert_eq!(served(&out), served(&direct));
    assert_eq!(out["confirm"], direct["confirm"]);
    assert_eq!(out["slow_count"]["progress"].as_array().unwrap().len(), 3);
    assert_eq!(out["delete_sent"], true);
    let session = out["session_id"].as_str().unwrap().to_owned();
    let views = proxy.finish().await;

    let records = mcp_records(&views);
    let messages: Vec<_> = records
        .iter()
        .filter(|(_, m)| m.transport_event.is_empty())
        .cloned()
        .collect();
    all_answered(&messages, "/tools");
    assert!(
        messages.iter().all(|(_, m)| m.session_id == session),
        "one session"
    );
    script_recorded(&messages, &proxy.journal);
    let (_, count) = exchange(&messages, "tools/call", |m| m.tool_name == "slow_count");
    assert_eq!(count.progress_notifications, 3);
    // Asked on the tools/call's SSE stream, answered in a POST of its own.
    server_request_recorded(&messages, &proxy.journal);
    let (init, m) = exchange(&messages, "initialize", |_| true);
    assert_eq!(
        m.server_info.as_ref().unwrap().name,
        "sidetrace-test-server"
    );
    let http = init.http.as_ref().unwrap();
    assert_eq!((http.method.as_str(), http.status), ("POST", 200));
    assert!(http.upstream_url.starts_with(&server.url));
    let events: Vec<&str> = records
        .iter()
        .map(|(_, m)| m.transport_event.as_str())
        .filter(|e| !e.is_empty())
        .collect();
    assert!(events.contains(&"stream"), "the GET stream: {events:?}");
    assert!(events.contains(&"session_end"), "the DELETE: {events:?}");

    let spans = receiver.spans();
    let call = spans
        .iter()
        .find(|s| {
            s.name == "tools/call read_file"
                && attr(s, "gen_ai.tool.call.arguments").is_some_and(|a| a.contains("notes.txt"))
        })
        .expect("the read_file span");
    let port = server
        .url
        .parse::<http::Uri>()
        .unwrap()
        .port_u16()
        .unwrap()
        .to_string();
    for (key, value) in [
        ("mcp.session.id", session.as_str()),
        ("network.transport", "tcp"),
        ("network.protocol.name", "http"),
        ("server.address", "127.0.0.1"),
        ("server.port", port.as_str()),
        ("jsonrpc.request.id", "3"),
    ] {
        assert_eq!(attr(call, key).as_deref(), Some(value), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn streamable_http_with_json_answers_in_write_ahead_mode() {
    let server = HttpServer::start(&["http", "--json-response"], &[]).await;
    let mut proxy = proxy_with("/tools", &server.url, None, "write-ahead").await;
    let direct = client(&server.url, "http", "legacy").await;
    let out = client(&proxy.url("/tools"), "http", "legacy").await;
    assert_eq!(served(&out), served(&direct));
    assert!(
        out["http"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["content_type"] == "application/json"),
        "{out}"
    );
    let views = proxy.finish().await;
    let records: Vec<_> = mcp_records(&views)
        .into_iter()
        .filter(|(_, m)| m.transport_event.is_empty())
        .collect();
    all_answered(&records, "/tools");
    script_recorded(&records, &proxy.journal);
    // Each request's durable start record was completed by its full record.
    for (it, m) in &records {
        assert_ne!(
            it.completion.as_ref().unwrap().status,
            CompletionStatus::NotRecorded as i32,
            "{m:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sessionless_2026_protocol() {
    let server = HttpServer::start(&["http", "--stateless"], &[]).await;
    let mut proxy = proxy_to("/tools", &server.url, None).await;
    let out = client(&proxy.url("/tools"), "http", "auto").await;
    assert_eq!(out["handshake"], "discover");
    assert_eq!(out["initialize"]["protocol_version"], "2026-07-28");
    let views = proxy.finish().await;
    let records: Vec<_> = mcp_records(&views)
        .into_iter()
        .filter(|(_, m)| m.transport_event.is_empty())
        .collect();
    all_answered(&records, "/tools");
    script_recorded(&records, &proxy.journal);
    let (_, discover) = exchange(&records, "server/discover", |_| true);
    assert_eq!(discover.protocol_version, "2026-07-28");
    for (_, m) in &records {
        assert!(m.session_id.is_empty(), "no session in 2026-07-28: {m:?}");
        if !m.notification {
            assert_eq!(m.protocol_version, "2026-07-28", "{m:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_older_http_sse_transport() {
    let server = HttpServer::start(&["sse"], &[]).await;
    let mut proxy = proxy_to("/legacy", &server.origin(), None).await;
    let direct = client_with(&server.url, "sse", "legacy", &["--confirm"]).await;
    let out = client_with(&proxy.url("/legacy/sse"), "sse", "legacy", &["--confirm"]).await;
    assert_eq!(served(&out), served(&direct));
    assert_eq!(out["confirm"], direct["confirm"]);
    // The endpoint the client was told to POST to is under the route.
    let posts: Vec<&Value> = out["http"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["method"] == "POST")
        .collect();
    assert!(!posts.is_empty());
    assert!(
        posts.iter().all(|x| x["path"] == "/legacy/messages/"),
        "{posts:?}"
    );
    let views = proxy.finish().await;
    let records: Vec<_> = mcp_records(&views)
        .into_iter()
        .filter(|(_, m)| m.transport_event.is_empty())
        .collect();
    all_answered(&records, "/legacy");
    script_recorded(&records, &proxy.journal);
    let session = out["session_id"]
        .as_str()
        .expect("the client names its session");
    assert!(
        records.iter().all(|(_, m)| m.session_id == session),
        "one session, named by its endpoint"
    );
    let (_, count) = exchange(&records, "tools/call", |m| m.tool_name == "slow_count");
    assert_eq!(count.progress_notifications, 3);
    server_request_recorded(&records, &proxy.journal);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_resumed_with_last_event_id_is_recorded_once() {
    let server = HttpServer::start(
        &["http", "--event-store"],
        &[("MCP_TEST_MISBEHAVE", "drop-sse")],
    )
    .await;
    let mut proxy = proxy_to("/tools", &server.url, None).await;
    let out = client(&proxy.url("/tools"), "http", "legacy").await;
    assert_eq!(out["slow_count"]["text"], "counted 3");
    let gets = out["http"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["method"] == "GET")
        .count();
    assert!(gets >= 2, "the client resumed on a new GET: {out}");
    let views = proxy.finish().await;
    let records: Vec<_> = mcp_records(&views)
        .into_iter()
        .filter(|(_, m)| m.transport_event.is_empty())
        .collect();
    all_answered(&records, "/tools");
    let (_, count) = exchange(&records, "tools/call", |m| m.tool_name == "slow_count");
    assert_eq!(count.progress_notifications, 3);
    let progress = records
        .iter()
        .filter(|(_, m)| m.method == "notifications/progress")
        .count();
    assert_eq!(progress, 3, "replayed events are not recorded twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_gets_a_json_rpc_error_and_a_record() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut proxy = proxy_to("/tools", &format!("http://{closed}/mcp"), None).await;
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}"#;
    let (status, headers, body) = post(
        &proxy.url("/tools"),
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ],
        init,
    )
    .await;
    assert_eq!(status, 502);
    assert_eq!(headers["sidetrace-error"], "upstream_unreachable");
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["jsonrpc"], "2.0");
    assert_eq!(error["error"]["code"], -32001);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not reach")
    );
    let views = proxy.finish().await;
    let records = mcp_records(&views);
    let (it, m) = exchange(&records, "initialize", |_| true);
    assert!(m.unanswered.contains("could not reach"), "{m:?}");
    assert_eq!(
        it.completion.as_ref().unwrap().status,
        CompletionStatus::UpstreamIncomplete as i32
    );
    assert_eq!(it.http.as_ref().unwrap().status, 502);
}

/// A server's GET stream stays open for the whole session; at shutdown the
/// proxy ends it (the client may resume elsewhere) instead of waiting out
/// the drain timeout, and records it.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_ends_open_server_streams() {
    use http_body_util::{BodyExt, Full};
    let server = HttpServer::start(&["http"], &[]).await;
    let journal = tempfile::tempdir().unwrap();
    let journal_path = journal.path().join("journal.db");
    let proxy = crate::common::binary::RunningProxy::start(&[
        "--mcp-route",
        &format!("/tools={}", server.url),
        "--journal",
        journal_path.to_str().unwrap(),
        "--drain-timeout",
        "10m",
    ])
    .await;
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
    let accept = ("accept", "application/json, text/event-stream");
    let (status, headers, _) = post(
        &proxy.url("/tools"),
        &[("content-type", "application/json"), accept],
        init,
    )
    .await;
    assert_eq!(status, 200);
    let session = headers["mcp-session-id"].to_str().unwrap().to_owned();
    let req = http::Request::get(proxy.url("/tools"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(HANG, http_client(false).request(req))
        .await
        .expect("the stream opens")
        .unwrap();
    assert_eq!(resp.status(), 200);
    proxy.terminate();
    // The stream ends (cleanly) long before the 10m drain timeout.
    let body = tokio::time::timeout(HANG, resp.into_body().collect()).await;
    assert!(body.expect("the stream ended at shutdown").is_ok());
    let (code, _) = proxy.wait().await;
    assert_eq!(code, 0);
    let records = mcp_records(&read_journal(&journal_path));
    let stream = records
        .iter()
        .find(|(_, m)| m.transport_event == "stream")
        .expect("the GET stream is recorded");
    assert_eq!(stream.1.session_id, session);
    exchange(&records, "initialize", |m| m.session_id == session);
}
