//! sidetrace as `HTTPS_PROXY`: curl and the official OpenAI and Anthropic
//! SDKs talk to the real provider host names through it, trusting
//! sidetrace's CA; `--resolve` sends the upstream connections to a local TLS
//! mock. Responses must be byte-identical (streams too) and recorded like a
//! reverse route's; other hosts are tunnelled blind and recorded as
//! metadata; and every way it can go wrong is answered and recorded while
//! the proxy stays healthy.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sidetrace::record::{Api, CompletionStatus, Interaction};

use crate::common::mock::Mock;
use crate::common::tls::pki_for;
use crate::common::*;

const HOSTS: &[&str] = &["api.openai.com", "api.anthropic.com", "tunnel.example.test"];

struct Setup {
    mock: Mock,
    proxy: TestProxy,
    /// sidetrace's CA certificate (what agents must trust).
    ca_cert: PathBuf,
    /// The mock's CA (what a tunnelled client must trust).
    mock_ca: PathBuf,
    _dir: tempfile::TempDir,
}

async fn setup(tweak: impl FnOnce(&mut sidetrace::config::Overrides)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki_for(&[b"h2", b"http/1.1"], HOSTS);
    let mock_ca = dir.path().join("mock-ca.pem");
    std::fs::write(&mock_ca, &pki.ca_pem).unwrap();
    let mock = fixture_mock_tls(pki.server_config).await;
    let ca_dir = dir.path().join("ca");
    let (authority, _) = sidetrace::ca::Authority::load_or_create(&ca_dir).unwrap();
    let ca_cert = authority.cert_path();
    let port = mock.addr.port();
    let proxy = TestProxy::start(&[], |o| {
        o.upstream_ca = Some(mock_ca.clone());
        o.forward.ca_dir = Some(ca_dir.clone());
        o.forward.resolve = HOSTS
            .iter()
            .map(|h| format!("{h}:443=127.0.0.1:{port}"))
            .collect();
        o.forward.intercept_hosts = vec!["api.openai.com".into(), "api.anthropic.com".into()];
        tweak(o);
    })
    .await;
    Setup {
        mock,
        proxy,
        ca_cert,
        mock_ca,
        _dir: dir,
    }
}

async fn curl(args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = tokio::time::timeout(
        HANG,
        tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "50"])
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("curl finishes")
    .expect("curl runs");
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn records(views: &[sidetrace::journal::reader::ExecutionView]) -> Vec<Interaction> {
    views.iter().flat_map(|v| v.interactions.clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_reaches_the_real_host_name_through_the_proxy_byte_for_byte() {
    let mut s = setup(|_| {}).await;
    let proxy = s.proxy.url("");
    let body = std::fs::read_to_string(fixture_path("anthropic/request_tools.json")).unwrap();
    let streamed = body.replacen('{', r#"{"stream": true,"#, 1);
    let (code, out, err) = curl(&[
        "--proxy",
        &proxy,
        "--cacert",
        path(&s.ca_cert),
        "https://api.anthropic.com/v1/messages",
        "-H",
        "content-type: application/json",
        "-H",
        "x-api-key: sk-ant-test-key",
        "-H",
        "Sidetrace-Sponsor: alice@example.com",
        "--data-binary",
        &streamed,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        fixture("anthropic/stream_tool_use.sse"),
        "the stream, unchanged"
    );
    // The upstream saw the real host name, and none of sidetrace's headers.
    let seen = s.mock.requests();
    assert_eq!(seen[0].path, "/v1/messages");
    assert_eq!(seen[0].authority, "api.anthropic.com");
    assert!(
        seen[0]
            .headers
            .keys()
            .all(|k| !k.as_str().starts_with("sidetrace-"))
    );

    let views = s.proxy.finish().await;
    let its = records(&views);
    assert_eq!(its.len(), 1, "{its:#?}");
    let it = &its[0];
    assert_eq!(it.api, Api::Messages as i32);
    assert_eq!(it.route, "https://api.anthropic.com");
    assert_eq!(
        it.http.as_ref().unwrap().upstream_url,
        "https://api.anthropic.com/v1/messages"
    );
    assert_eq!(it.sponsor.as_ref().unwrap().id, "alice@example.com");
    assert_eq!(
        it.tool_calls[0].name, "run_shell",
        "parsed like any model call"
    );
    assert_eq!(
        it.completion.as_ref().unwrap().status,
        CompletionStatus::Complete as i32
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_sdks_through_https_proxy() {
    let mut s = setup(|_| {}).await;
    let proxy = s.proxy.url("");
    let env = |base: &'static str| {
        vec![
            ("BASE_URL", base.to_owned()),
            ("HTTPS_PROXY", proxy.clone()),
            ("SSL_CERT_FILE", path(&s.ca_cert).to_owned()),
            (
                "EXTRA_HEADERS",
                r#"{"Sidetrace-Sponsor": "bob@example.com"}"#.to_owned(),
            ),
        ]
    };
    let openai_env = env("https://api.openai.com/v1");
    let openai_env: Vec<(&str, &str)> = openai_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let chat = run_client(
        "openai_client.py",
        &[
            "chat-stream",
            &fixture_path("openai_chat/request_tools.json"),
        ],
        &openai_env,
    )
    .await;
    assert_eq!(chat["model"], "gpt-4.1-2025-04-14", "{chat}");
    assert_eq!(chat["tool_calls"][0]["name"], "read_file");
    let responses = run_client(
        "openai_client.py",
        &[
            "responses-stream",
            &fixture_path("openai_responses/request_tools.json"),
        ],
        &openai_env,
    )
    .await;
    assert!(responses.get("error").is_none(), "{responses}");

    let anthropic_env = env("https://api.anthropic.com");
    let anthropic_env: Vec<(&str, &str)> = anthropic_env
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    let messages = run_client(
        "anthropic_client.py",
        &[
            "messages-stream",
            &fixture_path("anthropic/request_tools.json"),
        ],
        &anthropic_env,
    )
    .await;
    assert!(messages.get("error").is_none(), "{messages}");

    let views = s.proxy.finish().await;
    let its = records(&views);
    let apis: Vec<(i32, &str)> = its.iter().map(|i| (i.api, i.route.as_str())).collect();
    assert_eq!(
        apis,
        [
            (Api::ChatCompletions as i32, "https://api.openai.com"),
            (Api::Responses as i32, "https://api.openai.com"),
            (Api::Messages as i32, "https://api.anthropic.com"),
        ]
    );
    for it in &its {
        assert!(it.stream);
        assert_eq!(it.sponsor.as_ref().unwrap().id, "bob@example.com");
        assert_eq!(
            it.completion.as_ref().unwrap().status,
            CompletionStatus::Complete as i32,
            "{it:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn other_hosts_are_tunnelled_blind_and_recorded_as_metadata() {
    let receiver = crate::common::otlp::Receiver::http().await;
    let endpoint = receiver.url();
    let mut s = setup(|o| o.export.endpoint = Some(endpoint)).await;
    let proxy = s.proxy.url("");
    // End-to-end TLS to the mock, which sidetrace cannot see into.
    let (code, out, err) = curl(&[
        "--proxy",
        &proxy,
        "--cacert",
        path(&s.mock_ca),
        "https://tunnel.example.test/v1/chat/completions",
        "-H",
        "content-type: application/json",
        "--data-binary",
        r#"{"model":"gpt-4.1","messages":[]}"#,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, fixture("openai_chat/response_tool_calls.json"));
    let views = s.proxy.finish().await;
    let its = records(&views);
    assert_eq!(its.len(), 1, "{its:#?}");
    let t = its[0].tunnel.as_ref().expect("a tunnel record");
    assert_eq!(its[0].api, Api::Tunnel as i32);
    assert_eq!(
        (t.host.as_str(), t.port, t.intercepted),
        ("tunnel.example.test", 443, false)
    );
    assert!(
        t.bytes_to_upstream > 100 && t.bytes_to_client > 1000,
        "{t:?}"
    );
    assert!(t.error.is_empty(), "{t:?}");
    assert!(its[0].input_messages.is_empty(), "metadata only");
    // Exported as where the agent went, not as a model call.
    let spans = receiver.spans();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"CONNECT tunnel.example.test:443"),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.starts_with("chat")), "{names:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_and_failures_are_answered_recorded_and_survived() {
    let refusing = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut s = setup(move |o| {
        o.forward
            .resolve
            .push(format!("closed.example.test:443=127.0.0.1:{refusing}"));
    })
    .await;
    let proxy = s.proxy.url("");

    // A CONNECT to a port that refuses: the client is told, the attempt recorded.
    let (code, _, err) = curl(&["--proxy", &proxy, "https://closed.example.test/"]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("502") || err.to_lowercase().contains("connect"),
        "{err}"
    );

    // A client that does not trust sidetrace's CA: its handshake fails.
    let (code, _, err) = curl(&["--proxy", &proxy, "https://api.openai.com/v1/models"]).await;
    assert_eq!(code, 60, "curl: certificate not trusted: {err}");

    // An upstream whose certificate nothing trusts: refused with a clear error.
    let mut strict = setup(|o| o.upstream_ca = None).await;
    let (code, out, err) = curl(&[
        "--proxy",
        &strict.proxy.url(""),
        "--cacert",
        path(&strict.ca_cert),
        "https://api.openai.com/v1/chat/completions",
        "-H",
        "content-type: application/json",
        "--data-binary",
        r#"{"model":"gpt-4.1","messages":[]}"#,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let answer: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(answer["error"]["code"], "upstream_unreachable", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--upstream-ca")
    );
    let strict_views = strict.proxy.finish().await;
    assert_eq!(
        records(&strict_views)[0]
            .completion
            .as_ref()
            .unwrap()
            .status,
        CompletionStatus::UpstreamUnreachable as i32
    );

    // Still healthy: the next request goes through.
    let (code, _, err) = curl(&[
        "--proxy",
        &proxy,
        "--cacert",
        path(&s.ca_cert),
        "https://api.openai.com/v1/chat/completions",
        "-H",
        "content-type: application/json",
        "--data-binary",
        r#"{"model":"gpt-4.1","messages":[]}"#,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let (status, _, _) = send(
        http_client(false),
        "GET",
        &format!("http://{}/healthz", s.proxy.admin),
        &[],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(status, 200);

    let views = s.proxy.finish().await;
    let its = records(&views);
    let refused = its
        .iter()
        .find(|i| {
            i.tunnel
                .as_ref()
                .is_some_and(|t| t.host == "closed.example.test")
        })
        .expect("the refused CONNECT is recorded");
    assert_eq!(
        refused.completion.as_ref().unwrap().status,
        CompletionStatus::UpstreamUnreachable as i32
    );
    assert_eq!(refused.http.as_ref().unwrap().status, 502);
    let untrusted = its
        .iter()
        .find(|i| i.tunnel.as_ref().is_some_and(|t| t.intercepted))
        .expect("the failed interception is recorded");
    assert!(
        untrusted
            .tunnel
            .as_ref()
            .unwrap()
            .error
            .contains("trust sidetrace's CA"),
        "{untrusted:?}"
    );
    assert!(its.iter().any(|i| i.api == Api::ChatCompletions as i32));
}

#[tokio::test(flavor = "multi_thread")]
async fn absolute_form_requests_and_proxy_credentials() {
    let mock = fixture_mock(None).await;
    let port = mock.addr.port();
    let mut proxy = TestProxy::start(&[], |o| {
        o.forward.resolve = vec![format!("plain.example.test:80=127.0.0.1:{port}")];
        o.forward.proxy_auth = vec!["agent:s3cret".into()];
    })
    .await;
    let url = "http://plain.example.test/v1/chat/completions";
    let body = r#"{"model":"gpt-4.1","messages":[]}"#;
    let (code, out, _) = curl(&["--proxy", &proxy.url(""), "-i", url, "--data-binary", body]).await;
    assert_eq!(code, 0);
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 407"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let (code, out, err) = curl(&[
        "--proxy",
        &proxy.url(""),
        "--proxy-user",
        "agent:s3cret",
        url,
        "-H",
        "content-type: application/json",
        "--data-binary",
        body,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, fixture("openai_chat/response_tool_calls.json"));
    let seen = mock.requests();
    assert!(
        seen[0].headers.get("proxy-authorization").is_none(),
        "not forwarded"
    );
    let views = proxy.finish().await;
    let its = records(&views);
    assert_eq!(its.len(), 1);
    assert_eq!(its[0].route, "http://plain.example.test");
    assert_eq!(its[0].api, Api::ChatCompletions as i32);
    let headers = &its[0].http.as_ref().unwrap().request_headers;
    assert!(
        headers.iter().all(|h| h.name != "proxy-authorization"),
        "never recorded"
    );
}
