//! Bad input and broken peers: each forwards or fails the way a direct
//! connection would, is recorded, and leaves the proxy healthy.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use sidetrace::record::{CompletionStatus, digest_of, part::Kind};

use crate::common::mock::{Mock, Piece, Reply, split_events};
use crate::common::*;

fn status_of(it: &sidetrace::record::Interaction) -> CompletionStatus {
    CompletionStatus::try_from(it.completion.as_ref().unwrap().status).unwrap()
}

async fn assert_healthy(proxy: &TestProxy, mock_url_prefix: &str) {
    let (status, _, body) = send(
        http_client(false),
        "GET",
        &format!("http://{}/readyz", proxy.admin),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!((status, &body[..]), (200, &b"ready\n"[..]));
    let (status, _, _) = post(
        &proxy.url(&format!("{mock_url_prefix}/v1/chat/completions")),
        &[("content-type", "application/json")],
        fixture("openai_chat/request_tools.json"),
    )
    .await;
    assert_eq!(status, 200, "a normal request still works");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_route_is_a_404_in_the_callers_shape() {
    let mock = fixture_mock(None).await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |_| {}).await;
    let (status, headers, body) = post(&proxy.url("/nope/v1/chat/completions"), &[], "{}").await;
    assert_eq!(status, 404);
    assert_eq!(headers["sidetrace-error"], "route_not_found");
    let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("/openai") && message.contains("--route"),
        "{message}"
    );
    assert_eq!(err["error"]["code"], "route_not_found");

    let (status, _, body) = post(&proxy.url("/claude/v1/messages"), &[], "{}").await;
    assert_eq!(status, 404);
    let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (err["type"].as_str(), err["error"]["type"].as_str()),
        (Some("error"), Some("not_found_error"))
    );

    assert_healthy(&proxy, "/openai").await;
    let views = proxy.finish().await;
    let statuses: Vec<CompletionStatus> = views[0].interactions.iter().map(status_of).collect();
    assert_eq!(
        statuses[..2],
        [CompletionStatus::NoRoute, CompletionStatus::NoRoute]
    );
    assert!(
        mock.requests().len() == 1,
        "nothing unrouted reached an upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_upstream_is_a_502_the_sdk_understands() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut proxy = TestProxy::start(&[("/openai", &format!("http://{closed}"))], |_| {}).await;
    let out = run_client(
        "openai_client.py",
        &["chat", &fixture_path("openai_chat/request_tools.json")],
        &[("BASE_URL", &proxy.url("/openai/v1"))],
    )
    .await;
    assert_eq!(out["error"]["status"], 502, "{out}");
    let message = out["error"]["body"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("could not reach") && message.contains(&closed.to_string()),
        "{out}"
    );
    let it = only_interaction(&proxy.finish().await);
    assert_eq!(status_of(&it), CompletionStatus::UpstreamUnreachable);
    assert_eq!(it.http.unwrap().status, 502);
    assert_eq!(
        it.requested_model, "gpt-4.1",
        "the request is recorded even though it went nowhere"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_upstream_is_a_504() {
    let mock = Mock::start(|_| Reply::Hang).await;
    let mut proxy = TestProxy::start(&[("/anthropic", &mock.url())], |o| {
        o.upstream_timeout = Some("1s".into())
    })
    .await;
    let out = run_client(
        "anthropic_client.py",
        &["messages", &fixture_path("anthropic/request_tools.json")],
        &[("BASE_URL", &proxy.url("/anthropic"))],
    )
    .await;
    assert_eq!(out["error"]["status"], 504, "{out}");
    assert_eq!(out["error"]["body"]["error"]["type"], "timeout_error");
    assert!(
        out["error"]["body"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--upstream-timeout")
    );
    let it = only_interaction(&proxy.finish().await);
    assert_eq!(status_of(&it), CompletionStatus::UpstreamTimeout);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_closing_mid_stream_fails_like_a_direct_connection() {
    let (mock, tx) = Mock::gated(fixture("openai_chat/response_tool_calls.json")).await;
    let mut proxy = TestProxy::start(
        &[("/anthropic", &mock.url()), ("/openai", &mock.url())],
        |_| {},
    )
    .await;
    let events = split_events(&fixture("anthropic/stream_tool_use.sse"));
    let half = &events[..events.len() / 2];
    let expected: Vec<u8> = half.concat();

    let req = http::Request::post(proxy.url("/anthropic/v1/messages"))
        .body(Full::new(Bytes::from(fixture(
            "anthropic/request_tools.json",
        ))))
        .unwrap();
    let resp = http_client(false).request(req).await.unwrap();
    let mut body = resp.into_body();
    let mut got = Vec::new();
    for e in half {
        tx.send(Piece::Bytes(e.clone())).await.unwrap();
    }
    while got.len() < expected.len() {
        let f = tokio::time::timeout(HANG, body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.extend_from_slice(&f.into_data().unwrap());
    }
    // Only now, with everything so far delivered, the upstream drops the connection.
    tx.send(Piece::Abort).await.unwrap();
    let end = tokio::time::timeout(HANG, body.frame()).await.unwrap();
    assert!(
        matches!(end, Some(Err(_))),
        "the agent sees the stream break, as it would directly"
    );
    assert_eq!(
        got, expected,
        "everything sent before the break was forwarded"
    );

    assert_healthy(&proxy, "/openai").await;
    let views = proxy.finish().await;
    let it = &views[0].interactions[0];
    assert_eq!(status_of(it), CompletionStatus::UpstreamIncomplete);
    assert!(it.completion.as_ref().unwrap().detail.contains("broke off"));
    assert_eq!(
        it.served_model, "claude-sonnet-4-5-20250929",
        "what was seen is kept"
    );
    assert_eq!(
        it.http
            .as_ref()
            .unwrap()
            .response_body
            .as_ref()
            .unwrap()
            .size,
        expected.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_hanging_up_mid_stream_is_recorded() {
    let (mock, tx) = Mock::gated(fixture("openai_chat/response_tool_calls.json")).await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |_| {}).await;
    let events = split_events(&fixture("openai_chat/stream_tool_calls.sse"));

    let req = http::Request::post(proxy.url("/openai/v1/chat/completions"))
        .body(Full::new(Bytes::from(fixture(
            "openai_chat/request_tools.json",
        ))))
        .unwrap();
    let resp = http_client(false).request(req).await.unwrap();
    let mut body = resp.into_body();
    tx.send(Piece::Bytes(events[0].clone())).await.unwrap();
    let first = tokio::time::timeout(HANG, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!first.into_data().unwrap().is_empty());
    drop(body); // the agent goes away
    // The upstream side notices: its stream is dropped by the proxy.
    eventually("the proxy lets go of the upstream stream", || {
        tx.is_closed()
    })
    .await;

    assert_healthy(&proxy, "/openai").await;
    let views = proxy.finish().await;
    let it = &views[0].interactions[0];
    assert_eq!(status_of(it), CompletionStatus::ClientDisconnected);
    assert_eq!(it.served_model, "gpt-4.1-2025-04-14");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_is_forwarded_and_kept_raw() {
    let mock =
        Mock::start(|_| Reply::json(400, fixture("openai_chat/error_invalid_request.json"))).await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |_| {}).await;
    let (status, _, body) = post(
        &proxy.url("/openai/v1/chat/completions"),
        &[("content-type", "application/json")],
        "{\"model\": \"gpt-4.1\", messages: oops",
    )
    .await;
    assert_eq!(status, 400, "the upstream's answer, not ours");
    assert_eq!(body, fixture("openai_chat/error_invalid_request.json"));
    assert_eq!(
        &mock.requests()[0].body[..],
        b"{\"model\": \"gpt-4.1\", messages: oops"
    );
    let it = only_interaction(&proxy.finish().await);
    assert!(
        it.capture_issues.iter().any(|i| i.kind == "request_parse"),
        "{:?}",
        it.capture_issues
    );
    let stored = it
        .http
        .as_ref()
        .unwrap()
        .request_body
        .as_ref()
        .unwrap()
        .stored_digest
        .clone();
    assert_eq!(
        blob(&proxy.journal, &stored),
        b"{\"model\": \"gpt-4.1\", messages: oops"
    );
    assert_eq!(it.error_type, "invalid_request_error");
    assert!(!it.error_message.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_past_the_capture_cap_are_forwarded_whole_and_recorded_by_digest() {
    let mock = fixture_mock(None).await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |o| {
        o.capture_max_body = Some("1KiB".into())
    })
    .await;
    let mut request: serde_json::Value =
        serde_json::from_slice(&fixture("openai_chat/request_tools.json")).unwrap();
    request["messages"][1]["content"] = "x".repeat(20_000).into();
    let request = serde_json::to_vec(&request).unwrap();
    let (status, _, body) = post(
        &proxy.url("/openai/v1/chat/completions"),
        &[],
        request.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        fixture("openai_chat/stream_tool_calls.sse"),
        "the response is whole too"
    );
    assert_eq!(
        mock.requests()[0].body,
        request,
        "the request reached the upstream whole"
    );
    let it = only_interaction(&proxy.finish().await);
    let http = it.http.as_ref().unwrap();
    let req_body = http.request_body.as_ref().unwrap();
    assert!(req_body.truncated);
    assert_eq!(req_body.size, request.len() as u64);
    assert_eq!(req_body.captured_size, 1024);
    assert_eq!(req_body.digest, digest_of(&request));
    let resp_body = http.response_body.as_ref().unwrap();
    assert!(resp_body.truncated);
    assert_eq!(
        resp_body.digest,
        digest_of(&fixture("openai_chat/stream_tool_calls.sse"))
    );
    let kinds: Vec<&str> = it.capture_issues.iter().map(|i| i.kind.as_str()).collect();
    assert!(
        kinds.contains(&"request_truncated") && kinds.contains(&"response_truncated"),
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_ending_without_its_terminal_event_is_incomplete() {
    let body = String::from_utf8(fixture("openai_chat/stream_text.sse")).unwrap();
    let cut = body[..body.find("data: [DONE]").unwrap()].to_owned();
    let mock = Mock::start(move |_| Reply::sse(cut.as_bytes())).await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |_| {}).await;
    let (status, _, _) = post(
        &proxy.url("/openai/v1/chat/completions"),
        &[],
        fixture("openai_chat/request_tools.json"),
    )
    .await;
    assert_eq!(status, 200);
    let it = only_interaction(&proxy.finish().await);
    assert_eq!(status_of(&it), CompletionStatus::UpstreamIncomplete);
    let text = match &it.output_messages[0].parts[0].kind {
        Some(Kind::Text(t)) => t.content.clone(),
        other => panic!("{other:?}"),
    };
    assert!(text.starts_with("`src/main.rs`"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_sidetrace_header_is_refused_and_recorded() {
    let mock = fixture_mock(None).await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |_| {}).await;
    let (status, _, body) = post(
        &proxy.url("/openai/v1/chat/completions"),
        &[("sidetrace-execution-id", "has spaces in it")],
        fixture("openai_chat/request_tools.json"),
    )
    .await;
    assert_eq!(status, 400);
    let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sidetrace-execution-id")
    );
    assert!(mock.requests().is_empty());
    let it = only_interaction(&proxy.finish().await);
    assert_eq!(status_of(&it), CompletionStatus::Refused);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_bytes_and_captures() {
    let mock = fixture_mock(None).await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |_| {}).await;
    for _ in 0..3 {
        post(
            &proxy.url("/openai/v1/chat/completions"),
            &[],
            fixture("openai_chat/request_tools.json"),
        )
        .await;
    }
    post(&proxy.url("/missing"), &[], "{}").await;
    let metrics_url = format!("http://{}/metrics", proxy.admin);
    let text = {
        let mut text = String::new();
        eventually_async_metrics(&metrics_url, &mut text).await;
        text
    };
    for needle in [
        "sidetrace_requests_total{route=\"/openai\",status=\"200\"} 3",
        "sidetrace_requests_total{route=\"\",status=\"404\"} 1",
        "sidetrace_upstream_latency_seconds_count{route=\"/openai\"} 3",
        "sidetrace_interactions_captured_total{provider=\"openai\",api=\"chat_completions\"} 3",
        "sidetrace_journal_write_seconds_count",
        "sidetrace_requests_in_flight 0",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let response_bytes = format!(
        "sidetrace_response_bytes_total{{route=\"/openai\"}} {}",
        3 * fixture("openai_chat/stream_tool_calls.sse").len()
    );
    assert!(
        text.contains(&response_bytes),
        "missing {response_bytes:?} in\n{text}"
    );
    let (status, _, _) = send(
        http_client(false),
        "GET",
        &format!("http://{}/healthz", proxy.admin),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(status, 200);
    proxy.stop().await;
}

/// Metrics settle once capture tasks finish; wait until all three are in.
async fn eventually_async_metrics(url: &str, text: &mut String) {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let (_, _, body) = send(http_client(false), "GET", url, &[], Bytes::new()).await;
        *text = String::from_utf8(body.to_vec()).unwrap();
        if text.contains("api=\"chat_completions\"} 3")
            && text.contains("sidetrace_journal_entries_written_total")
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never settled:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
