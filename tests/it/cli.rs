//! The real binary, as a user runs it: `sidetrace proxy` on port 0 with
//! flags, SIGTERM with a stream in flight, `sidetrace show` in both formats,
//! and `sidetrace check-config`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::path::Path;
use tokio::process::Command;

use crate::common::binary::{BIN, RunningProxy};
use crate::common::mock::{Mock, Piece, split_events};
use crate::common::*;

async fn sidetrace(args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        HANG,
        Command::new(BIN).args(args).kill_on_drop(true).output(),
    )
    .await
    .expect("sidetrace finishes")
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_records_and_show_reports_it() {
    let mock = fixture_mock(None).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("nested/journal.db");
    let route = format!("/openai={}", mock.url());
    let proxy = RunningProxy::start(&[
        "--route",
        &route,
        "--journal",
        path_str(&journal),
        "--sponsor",
        "alice@example.com",
        "--change-id",
        "!5",
    ])
    .await;
    let out = Command::new("curl")
        .args([
            "-sS",
            "--fail-with-body",
            "-H",
            "content-type: application/json",
            "-H",
            "authorization: Bearer sk-abc",
        ])
        .arg("--data-binary")
        .arg(format!(
            "@{}",
            fixture_path("openai_chat/request_tools.json")
        ))
        .arg(proxy.url("/openai/v1/chat/completions"))
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, fixture("openai_chat/stream_tool_calls.sse"));
    let (status, _, body) = send(
        http_client(false),
        "GET",
        &format!("http://{}/readyz", proxy.admin),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!((status, &body[..]), (200, &b"ready\n"[..]));

    proxy.terminate();
    let (code, log) = proxy.wait().await;
    assert_eq!(code, 0, "{log:#?}");
    assert!(log.iter().any(|l| l.contains("journal closed")), "{log:#?}");

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&journal).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the journal holds prompts: owner only");

    let (code, text, err) = sidetrace(&["show", "--journal", path_str(&journal)]).await;
    assert_eq!(code, 0, "{err}");
    for needle in [
        "sponsor   alice@example.com (set by operator)",
        "change !5",
        "gpt-4.1 -> gpt-4.1-2025-04-14",
        "2 tool calls",
        "tool call read_file {\"path\":\"Cargo.toml\"}",
        "tool call run_shell {\"command\":\"cargo test --all-targets\"}",
        "tool result [call_0YLieJv2C5N7DjmKPwP0TKs6]",
        "user: What does src/main.rs do?",
        "ended ",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }

    let (code, json_lines, _) =
        sidetrace(&["show", "--json", "--journal", path_str(&journal)]).await;
    assert_eq!(code, 0);
    let lines: Vec<serde_json::Value> = json_lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let exec = &lines[0]["execution"];
    assert_eq!(exec["sponsor"]["id"], "alice@example.com");
    assert_eq!(exec["sponsor"]["assurance"], "SPONSOR_ASSURANCE_STATIC");
    assert_eq!(exec["correlation"]["changeId"], "!5");
    assert_eq!(exec["endReason"], "proxy shutdown");
    let it = &lines[1]["interaction"];
    assert_eq!(it["executionId"], exec["id"]);
    assert_eq!(it["servedModel"], "gpt-4.1-2025-04-14");
    assert_eq!(it["api"], "API_CHAT_COMPLETIONS");
    assert_eq!(it["toolCalls"][0]["name"], "read_file");
    assert_eq!(
        it["usage"]["inputTokens"], "1359",
        "uint64 is a string in proto3 JSON"
    );
    assert_eq!(
        it["inputMessages"][1]["parts"][0]["text"]["content"],
        "What does src/main.rs do?"
    );
    assert!(it["timing"]["startTime"].as_str().unwrap().ends_with('Z'));
    assert!(
        !json_lines.contains("sk-abc"),
        "credentials never reach the record"
    );

    let (code, _, err) = sidetrace(&[
        "show",
        "--journal",
        path_str(&journal),
        "--execution",
        "nope",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("no execution \"nope\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_an_in_flight_stream_finish() {
    let (mock, tx) = Mock::gated("one request only").await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    let route = format!("/anthropic={}", mock.url());
    let proxy = RunningProxy::start(&[
        "--route",
        &route,
        "--journal",
        path_str(&journal),
        "--drain-timeout",
        "1m",
    ])
    .await;

    let req = http::Request::post(proxy.url("/anthropic/v1/messages"))
        .body(Full::new(Bytes::from(fixture(
            "anthropic/request_tools.json",
        ))))
        .unwrap();
    let resp = http_client(false).request(req).await.unwrap();
    let mut body = resp.into_body();
    let events = split_events(&fixture("anthropic/stream_tool_use.sse"));
    tx.send(Piece::Bytes(events[0].clone())).await.unwrap();
    let first = tokio::time::timeout(HANG, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut got = first.into_data().unwrap().to_vec();

    proxy.terminate();
    // While draining, it is no longer ready.
    let admin = proxy.admin.clone();
    eventually_not_ready(&admin).await;
    for e in &events[1..] {
        tx.send(Piece::Bytes(e.clone())).await.unwrap();
    }
    drop(tx);
    while let Some(frame) = tokio::time::timeout(HANG, body.frame()).await.unwrap() {
        got.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    assert_eq!(
        got,
        fixture("anthropic/stream_tool_use.sse"),
        "the stream finished whole"
    );
    let (code, log) = proxy.wait().await;
    assert_eq!(code, 0, "{log:#?}");
    let views = read_journal(&journal);
    let it = only_interaction(&views);
    assert_eq!(
        it.completion.unwrap().status,
        sidetrace::record::CompletionStatus::Complete as i32
    );
    assert_eq!(it.tool_calls[0].name, "run_shell");
}

async fn eventually_not_ready(admin: &str) {
    let url = format!("http://{admin}/readyz");
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let req = http::Request::get(&url)
            .body(Full::new(Bytes::new()))
            .unwrap();
        match http_client(false).request(req).await {
            Ok(r) if r.status() == 503 => return,
            Err(_) => return, // already closed
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz stayed ready while draining"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sidetrace.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:5000\"\n[[route]]\nprefix = \"/m\"\nupstream = \"${SIDETRACE_TEST_UPSTREAM}\"\nprotocol = \"anthropic\"\n[journal]\npath = \"/tmp/x.db\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config", path_str(&file)])
        .env("SIDETRACE_TEST_UPSTREAM", "https://api.anthropic.com")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("route            = /m -> https://api.anthropic.com/ (protocol Anthropic)"),
        "{text}"
    );
    assert!(text.contains("listen           = 127.0.0.1:5000"));

    let (code, _, err) = sidetrace(&[
        "check-config",
        "--listen",
        "localhost",
        "--route",
        "openai=https://api.openai.com",
        "--upstream-timeout",
        "soon",
        "--upstream-ca",
        "/nonexistent/ca.pem",
    ])
    .await;
    assert_eq!(code, 1);
    for needle in [
        "listen (--listen)",
        "must start with '/'",
        "upstream.timeout",
        "--upstream-ca",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    // The proxy refuses to start on the same problems, before binding anything.
    let (code, _, err) = sidetrace(&["proxy", "--listen", "localhost"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("invalid configuration"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn help_explains_the_commands() {
    let (code, text, _) = sidetrace(&["--help"]).await;
    assert_eq!(code, 0);
    for c in ["proxy", "show", "check-config"] {
        assert!(text.contains(c), "{text}");
    }
    let (_, text, _) = sidetrace(&["proxy", "--help"]).await;
    for flag in [
        "--listen",
        "--admin",
        "--route",
        "--config",
        "--upstream-ca",
        "--journal",
        "--drain-timeout",
        "SIDETRACE_ROUTE",
    ] {
        assert!(text.contains(flag), "missing {flag} in:\n{text}");
    }
    let (code, _, err) = sidetrace(&["show", "--journal", "/nonexistent/journal.db"]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains("no journal at /nonexistent/journal.db"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_cuts_streams_that_outlive_the_drain_timeout() {
    let (mock, tx) = Mock::gated("one request only").await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    let route = format!("/openai={}", mock.url());
    let proxy = RunningProxy::start(&[
        "--route",
        &route,
        "--journal",
        path_str(&journal),
        "--drain-timeout",
        "1s",
    ])
    .await;
    let req = http::Request::post(proxy.url("/openai/v1/chat/completions"))
        .body(Full::new(Bytes::from(fixture(
            "openai_chat/request_tools.json",
        ))))
        .unwrap();
    let resp = http_client(false).request(req).await.unwrap();
    let mut body = resp.into_body();
    let events = split_events(&fixture("openai_chat/stream_tool_calls.sse"));
    tx.send(Piece::Bytes(events[0].clone())).await.unwrap();
    tokio::time::timeout(HANG, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    let pid = proxy.child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    // The upstream never finishes; after the drain timeout the stream is cut.
    let end = tokio::time::timeout(HANG, async {
        loop {
            match body.frame().await {
                Some(Ok(_)) => continue,
                other => break other,
            }
        }
    })
    .await
    .unwrap();
    assert!(
        end.is_some(),
        "a cut stream must not look complete to the agent"
    );
    let (code, log) = proxy.wait().await;
    assert_eq!(code, 0, "{log:#?}");
    assert!(
        log.iter().any(|l| l.contains("drain timeout reached")),
        "{log:#?}"
    );
    drop(tx);
    let it = only_interaction(&read_journal(&journal));
    assert_ne!(
        it.completion.unwrap().status,
        sidetrace::record::CompletionStatus::Complete as i32
    );
    assert_eq!(
        it.served_model, "gpt-4.1-2025-04-14",
        "what was seen before the cut is kept"
    );
}
