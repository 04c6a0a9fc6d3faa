//! The Responses API over WebSocket, driven by the official OpenAI SDK
//! (`client.responses.connect()`, the `websockets` library underneath) to a
//! `websockets` server that answers each `response.create` with the golden
//! stream's events: on a reverse route, and inside an intercepted tunnel to
//! the real host name (`HTTPS_PROXY`, `--resolve`). The SDK must get every
//! event; each turn must be recorded as a Responses interaction, as if it
//! had been a streamed POST, plus one record of the connection itself.

use sidetrace::journal::reader::ExecutionView;
use sidetrace::record::{Api, CompletionStatus, Interaction};

use crate::common::tls::pki_for;
use crate::common::*;

const FIXTURE: &str = "openai_responses/stream_function_call.sse";

fn turns_of(views: &[ExecutionView]) -> (Vec<&Interaction>, &Interaction) {
    let all: Vec<&Interaction> = views.iter().flat_map(|v| &v.interactions).collect();
    let turns: Vec<&Interaction> = all
        .iter()
        .copied()
        .filter(|i| i.api == Api::Responses as i32)
        .collect();
    let connections: Vec<&Interaction> = all
        .iter()
        .copied()
        .filter(|i| i.api == Api::Websocket as i32)
        .collect();
    assert_eq!(connections.len(), 1, "one connection record: {all:#?}");
    (turns, connections[0])
}

/// What both tests check of the SDK's view and of the record.
fn check(out: &serde_json::Value, views: &[ExecutionView], journal: &std::path::Path) {
    let sdk_turns = out["turns"].as_array().unwrap_or_else(|| panic!("{out}"));
    assert_eq!(sdk_turns.len(), 2, "{out}");
    let expected_events = std::fs::read_to_string(fixture_path(FIXTURE))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("event: "))
        .count();
    for t in sdk_turns {
        assert_eq!(
            t["events"].as_array().unwrap().len(),
            expected_events,
            "every event reached the SDK"
        );
        assert_eq!(t["status"], "completed");
        assert_eq!(t["tool_calls"][0]["name"], "run_shell");
    }

    let (turns, connection) = turns_of(views);
    assert_eq!(
        turns.len(),
        2,
        "one Responses interaction per response.create"
    );
    for it in &turns {
        assert_eq!(it.served_model, "gpt-5-2025-08-07");
        assert_eq!(it.tool_calls.len(), 1);
        assert_eq!(it.tool_calls[0].name, "run_shell");
        assert!(it.stream);
        assert_eq!(
            it.completion.as_ref().unwrap().status,
            CompletionStatus::Complete as i32
        );
        assert_eq!(
            it.websocket.as_ref().unwrap().connection_id,
            connection.id,
            "the turn points at its connection"
        );
    }
    assert!(
        !turns[0].tool_definitions.is_empty(),
        "the request was parsed as a POST /v1/responses body"
    );
    let ws = connection.websocket.as_ref().unwrap();
    assert_eq!(ws.turns, 2);
    assert_eq!(ws.messages_to_upstream, 2);
    assert_eq!(ws.messages_to_client as usize, 2 * expected_events);
    assert_eq!(ws.close_code, 1000, "the SDK closed normally");
    let http = connection.http.as_ref().unwrap();
    assert_eq!(http.status, 101);
    let transcript = blob(journal, &http.response_body.as_ref().unwrap().stored_digest);
    let lines: Vec<serde_json::Value> = transcript
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines[0]["to"], "upstream");
    assert!(
        lines[0]["text"]
            .as_str()
            .unwrap()
            .contains("response.create")
    );
}

/// Two turns over one socket with the official SDK, reaching `base`
/// (plus `extra` environment), as the SDK reports them.
async fn sdk_over_websocket(base: &str, extra: &[(&'static str, String)]) -> serde_json::Value {
    let mut env = vec![
        ("BASE_URL", base.to_owned()),
        (
            "EXTRA_HEADERS",
            r#"{"Sidetrace-Sponsor": "alice@example.com"}"#.to_owned(),
        ),
    ];
    env.extend(extra.iter().cloned());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let request = fixture_path("openai_responses/request_tools.json");
    run_client("openai_client.py", &["responses-ws", &request], &env).await
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_over_websocket_on_a_reverse_route() {
    let (_server, url) =
        start_script_server("responses_ws_server.py", &[&fixture_path(FIXTURE)], &[]).await;
    let upstream = url.replace("ws://", "http://");
    let receiver = crate::common::otlp::Receiver::http().await;
    let mut proxy = TestProxy::start(&[("/openai", &upstream)], |o| {
        o.export.endpoint = Some(receiver.url());
    })
    .await;
    let out = sdk_over_websocket(&proxy.url("/openai/v1"), &[]).await;
    let views = proxy.finish().await;
    check(&out, &views, &proxy.journal);
    let (turns, _) = turns_of(&views);
    assert_eq!(turns[0].sponsor.as_ref().unwrap().id, "alice@example.com");
    assert_eq!(turns[0].route, "/openai");

    // Spans: a chat span per turn, marked as carried over the connection,
    // and the connection's own span.
    let spans = receiver.spans();
    let attr = |s: &opentelemetry_proto::tonic::trace::v1::Span, key: &str| {
        s.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => {
                    Some(s.clone())
                }
                _ => None,
            })
    };
    let chats: Vec<_> = spans
        .iter()
        .filter(|s| s.name.starts_with("chat "))
        .collect();
    assert_eq!(
        chats.len(),
        2,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    for c in &chats {
        assert_eq!(
            attr(c, "network.protocol.name").as_deref(),
            Some("websocket")
        );
    }
    let connection = spans
        .iter()
        .find(|s| s.name == "WebSocket /openai/v1/responses")
        .expect("the connection's span");
    assert_eq!(
        attr(connection, "enduser.id").as_deref(),
        Some("alice@example.com")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_over_websocket_inside_an_intercepted_tunnel() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki_for(&[b"http/1.1"], &["api.openai.com"]);
    let pems = pki.write_pems(dir.path());
    let (_server, url) = start_script_server(
        "responses_ws_server.py",
        &[
            &fixture_path(FIXTURE),
            "--tls-cert",
            pems.cert.to_str().unwrap(),
            "--tls-key",
            pems.key.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let port = url.rsplit(':').next().unwrap().to_owned();
    let ca_dir = dir.path().join("ca");
    let (authority, _) = sidetrace::ca::Authority::load_or_create(&ca_dir).unwrap();
    let ca_for = ca_dir.clone();
    let mut proxy = TestProxy::start(&[], |o| {
        o.upstream_ca = Some(pems.ca);
        o.forward.ca_dir = Some(ca_for);
        o.forward.resolve = vec![format!("api.openai.com:443=127.0.0.1:{port}")];
    })
    .await;
    let out = sdk_over_websocket(
        "https://api.openai.com/v1",
        &[
            ("HTTPS_PROXY", proxy.url("")),
            ("SSL_CERT_FILE", authority.cert_path().display().to_string()),
        ],
    )
    .await;
    let views = proxy.finish().await;
    check(&out, &views, &proxy.journal);
    let (turns, connection) = turns_of(&views);
    assert_eq!(turns[0].route, "https://api.openai.com");
    assert_eq!(
        connection.http.as_ref().unwrap().upstream_url,
        "https://api.openai.com/v1/responses"
    );
}
