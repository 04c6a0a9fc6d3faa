//! Pass-through is sacred: frames reach the agent as they leave the upstream,
//! bytes and headers are untouched (but for hop-by-hop and `Sidetrace-*`),
//! over HTTP/1.1 and h2 on both sides, and upstream TLS is verified.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use sidetrace::record::CompletionStatus;

use crate::common::mock::{Mock, Piece, Reply, split_events};
use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn each_frame_reaches_the_agent_before_the_next_is_sent() {
    let (mock, tx) = Mock::gated("only one request expected").await;
    let mut proxy = TestProxy::start(&[("/anthropic", &mock.url())], |_| {}).await;
    let request = fixture("anthropic/request_tools.json");
    let req = http::Request::post(proxy.url("/anthropic/v1/messages"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(request)))
        .unwrap();
    let resp = tokio::time::timeout(HANG, http_client(false).request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let mut body = resp.into_body();
    let events = split_events(&fixture("anthropic/stream_tool_use.sse"));
    let mut received = Vec::new();
    for event in &events {
        // The upstream sends one event and waits; if the proxy held frames
        // back, the agent would never see it and this would hang.
        tx.send(Piece::Bytes(event.clone())).await.unwrap();
        let mut got = Vec::new();
        while got.len() < event.len() {
            let frame = tokio::time::timeout(HANG, body.frame())
                .await
                .expect("the event was forwarded without waiting for more")
                .unwrap()
                .unwrap();
            got.extend_from_slice(&frame.into_data().unwrap());
        }
        assert_eq!(
            &got[..],
            &event[..],
            "the agent has this event, and nothing past it"
        );
        received.extend_from_slice(&got);
    }
    drop(tx);
    assert!(
        tokio::time::timeout(HANG, body.frame())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(received, fixture("anthropic/stream_tool_use.sse"));
    let it = only_interaction(&proxy.finish().await);
    assert_eq!(it.tool_calls[0].name, "run_shell");
    assert_eq!(
        it.completion.unwrap().status,
        CompletionStatus::Complete as i32
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_pass_untouched_except_hop_by_hop_and_ours() {
    let mock = fixture_mock(None).await;
    let mut proxy = TestProxy::start(&[("/openai", &format!("{}/base", mock.url()))], |_| {}).await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (status, headers, body) = post(
        &proxy.url("/openai/v1/chat/completions?api-version=2026-01-01"),
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer sk-live-secret"),
            ("accept-encoding", "zstd,gzip"),
            ("traceparent", traceparent),
            ("x-custom", "kept"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "dropped"),
            ("sidetrace-sponsor", "bob"),
            ("Sidetrace-Change-Id", "!9"),
        ],
        fixture("openai_chat/request_tools.json"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(headers.get("sidetrace-error").is_none());
    assert_eq!(body, fixture("openai_chat/stream_tool_calls.sse"));
    let seen = &mock.requests()[0];
    assert_eq!(
        seen.path,
        "/base/v1/chat/completions?api-version=2026-01-01"
    );
    let h = &seen.headers;
    assert_eq!(h["authorization"], "Bearer sk-live-secret");
    assert_eq!(h["accept-encoding"], "zstd,gzip");
    assert_eq!(h["traceparent"], traceparent);
    assert_eq!(h["x-custom"], "kept");
    assert!(h.get("x-hop").is_none());
    assert!(h.get("sidetrace-sponsor").is_none() && h.get("sidetrace-change-id").is_none());
    assert_eq!(
        seen.body,
        fixture("openai_chat/request_tools.json"),
        "request body untouched"
    );

    let it = only_interaction(&proxy.finish().await);
    assert_eq!(it.traceparent, traceparent);
    assert_eq!(it.sponsor.unwrap().id, "bob");
    assert_eq!(it.correlation.unwrap().change_id, "!9");
    let http = it.http.unwrap();
    assert_eq!(
        http.path,
        "/openai/v1/chat/completions?api-version=2026-01-01"
    );
    assert!(
        http.upstream_url
            .ends_with("/base/v1/chat/completions?api-version=2026-01-01")
    );
    let names: Vec<&str> = http
        .request_headers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert!(
        names.contains(&"traceparent") && !names.contains(&"authorization"),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn compressed_request_body_is_forwarded_as_sent_and_recorded_decoded() {
    let mock = fixture_mock(None).await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |_| {}).await;
    let packed = compress("zstd", &fixture("openai_responses/request_tools.json"));
    let (status, _, _) = post(
        &proxy.url("/openai/v1/responses"),
        &[
            ("content-type", "application/json"),
            ("content-encoding", "zstd"),
        ],
        packed.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(mock.requests()[0].body, packed);
    let it = only_interaction(&proxy.finish().await);
    assert_eq!(it.requested_model, "gpt-5");
    assert_eq!(it.input_messages.len(), 4);
    let body = it.http.unwrap().request_body.unwrap();
    assert_eq!(body.content_encoding, "zstd");
    assert_eq!(body.size, packed.len() as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_from_the_agent() {
    let mock = fixture_mock(None).await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |_| {}).await;
    let (status, _, body) = send(
        http_client(true),
        "POST",
        &proxy.url("/openai/v1/chat/completions"),
        &[("content-type", "application/json")],
        Bytes::from(fixture("openai_chat/request_tools.json")),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, fixture("openai_chat/stream_tool_calls.sse"));
    let it = only_interaction(&proxy.finish().await);
    let http = it.http.unwrap();
    assert_eq!(http.client_version, "HTTP/2");
    assert_eq!(http.upstream_version, "HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_tls_with_private_ca_negotiates_h2() {
    let pki = tls::pki(&[b"h2", b"http/1.1"]);
    let mock = Mock::start_tls(
        |_| Reply::sse(&fixture("anthropic/stream_text.sse")),
        pki.server_config.clone(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();

    let mut proxy = TestProxy::start(&[("/anthropic", &mock.url())], |o| {
        o.upstream_ca = Some(ca.clone())
    })
    .await;
    let (status, _, body) = post(
        &proxy.url("/anthropic/v1/messages"),
        &[],
        fixture("anthropic/request_tools.json"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, fixture("anthropic/stream_text.sse"));
    assert_eq!(
        mock.requests()[0].version,
        http::Version::HTTP_2,
        "ALPN chose h2"
    );
    let it = only_interaction(&proxy.finish().await);
    assert_eq!(it.http.unwrap().upstream_version, "HTTP/2");

    // Without the CA the upstream is not trusted: a clear 502, nothing sent.
    let before = mock.requests().len();
    let mut untrusting = TestProxy::start(&[("/anthropic", &mock.url())], |_| {}).await;
    let (status, _, body) = post(
        &untrusting.url("/anthropic/v1/messages"),
        &[],
        fixture("anthropic/request_tools.json"),
    )
    .await;
    assert_eq!(status, 502);
    let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["type"], "error");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("--upstream-ca") && message.to_lowercase().contains("certificate"),
        "{message}"
    );
    assert_eq!(mock.requests().len(), before);
    untrusting.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_streams_through_over_http1_and_h2c() {
    let mock = fixture_mock(None).await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |_| {}).await;
    let request = fixture_path("openai_chat/request_tools.json");
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        let out = tokio::process::Command::new("curl")
            .args([
                "-sS",
                "--no-buffer",
                "--fail-with-body",
                version,
                "-H",
                "content-type: application/json",
            ])
            .arg("--data-binary")
            .arg(format!("@{request}"))
            .arg(proxy.url("/openai/v1/chat/completions"))
            .kill_on_drop(true)
            .output()
            .await
            .expect("curl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.stdout,
            fixture("openai_chat/stream_tool_calls.sse"),
            "{version}"
        );
    }
    let views = proxy.finish().await;
    let versions: Vec<String> = views[0]
        .interactions
        .iter()
        .map(|i| i.http.as_ref().unwrap().client_version.clone())
        .collect();
    assert_eq!(versions, ["HTTP/1.1", "HTTP/2"]);
}
