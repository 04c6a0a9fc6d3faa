//! Durability: write-ahead mode makes each request durable before it goes
//! upstream and refuses traffic it cannot record; batched mode keeps
//! forwarding and records the gap; a journal removed underneath is replaced
//! with a chain break; and a SIGKILL in the middle of concurrent streams
//! leaves a journal that opens, verifies and holds every completed request.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rusqlite::Connection;
use serde_json::json;
use sidetrace::record::{CompletionStatus, part::Kind};

use crate::common::binary::RunningProxy;
use crate::common::mock::{Mock, Reply};
use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_sidetrace");

fn count(journal: &Path, kind: &str) -> i64 {
    let conn =
        Connection::open_with_flags(journal, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.query_row(
        "SELECT COUNT(*) FROM entries WHERE kind = ?1",
        [kind],
        |r| r.get(0),
    )
    .unwrap()
}

fn chat_request(marker: &str) -> Vec<u8> {
    let mut req: serde_json::Value =
        serde_json::from_slice(&fixture("openai_chat/request_tools.json")).unwrap();
    req["messages"][4]["content"] = json!(format!("request {marker}"));
    serde_json::to_vec(&req).unwrap()
}

async fn readyz(proxy: &TestProxy) -> (u16, String) {
    let (status, _, body) = send(
        http_client(false),
        "GET",
        &format!("http://{}/readyz", proxy.admin),
        &[],
        Bytes::new(),
    )
    .await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn metric(proxy: &TestProxy, name: &str) -> f64 {
    let (_, _, body) = send(
        http_client(false),
        "GET",
        &format!("http://{}/metrics", proxy.admin),
        &[],
        Bytes::new(),
    )
    .await;
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn write_ahead_records_each_request_before_it_goes_upstream() {
    // The upstream looks into the journal when the request reaches it.
    let journal: Arc<Mutex<Option<PathBuf>>> = Arc::default();
    let seen = journal.clone();
    let mock = Mock::start(move |_| {
        let path = seen.lock().unwrap().clone().unwrap();
        let starts = count(&path, "interaction_start");
        let mut body: serde_json::Value =
            serde_json::from_slice(&fixture("openai_chat/response_text.json")).unwrap();
        body["starts_on_disk"] = json!(starts);
        Reply::json(200, body.to_string())
    })
    .await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |o| {
        o.durability = Some("write-ahead".into())
    })
    .await;
    *journal.lock().unwrap() = Some(proxy.journal.clone());
    for n in 1..=3 {
        let (status, _, body) = post(
            &proxy.url("/openai/v1/chat/completions"),
            &[],
            chat_request(&n.to_string()),
        )
        .await;
        assert_eq!(status, 200);
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body["starts_on_disk"], n,
            "request {n} was durable before the upstream saw it"
        );
    }
    let views = proxy.finish().await;
    let its = &views[0].interactions;
    assert_eq!(
        its.len(),
        3,
        "start and full record merge into one interaction"
    );
    assert!(
        its.iter()
            .all(|i| i.completion.as_ref().unwrap().status == CompletionStatus::Complete as i32)
    );
    assert_eq!(count(&proxy.journal, "interaction"), 3);
    let (code, text) = verify_cli(&proxy.journal);
    assert_eq!(code, 0, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn write_ahead_refuses_what_it_cannot_record_and_recovers() {
    let mock = fixture_mock(None).await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |o| {
        o.durability = Some("write-ahead".into());
        o.journal_max_size = Some("200KiB".into());
    })
    .await;
    let mut refused = None;
    for n in 0..500 {
        let (status, headers, body) = post(
            &proxy.url("/openai/v1/chat/completions"),
            &[],
            chat_request(&format!("fill {n} {}", "x".repeat(4000))),
        )
        .await;
        if status != 200 {
            refused = Some((status, headers, body));
            break;
        }
    }
    let (status, headers, body) = refused.expect("the journal filled up");
    assert_eq!(status, 503);
    assert_eq!(headers["sidetrace-error"], "journal_unavailable");
    let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("write-ahead") && message.contains("full"),
        "{message}"
    );
    let (ready, why) = readyz(&proxy).await;
    assert_eq!(ready, 503);
    assert!(why.contains("the journal cannot be written"), "{why}");
    let upstream_before = mock.requests().len();
    let big = chat_request(&format!("refused {}", "y".repeat(8000)));
    let (status, _, _) = post(&proxy.url("/openai/v1/chat/completions"), &[], big).await;
    assert_eq!(status, 503);
    assert_eq!(
        mock.requests().len(),
        upstream_before,
        "nothing unrecorded went upstream"
    );
    assert!(metric(&proxy, "sidetrace_journal_records_lost_total").await >= 1.0);

    // The operator moves the full journal away: a new one starts, traffic resumes.
    let archived = proxy.journal.with_extension("full.db");
    std::fs::rename(&proxy.journal, &archived).unwrap();
    let (status, _, _) = post(
        &proxy.url("/openai/v1/chat/completions"),
        &[],
        chat_request("after"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(readyz(&proxy).await.0, 200);
    proxy.stop().await;
    let first: String = Connection::open(&proxy.journal)
        .unwrap()
        .query_row("SELECT kind FROM entries WHERE seq = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(first, "chain_break");
    let (code, text) = verify_cli(&proxy.journal);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("removed or replaced") && text.contains("could not be written"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn batched_mode_keeps_forwarding_and_records_the_gap() {
    let mock = fixture_mock(None).await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |o| {
        o.journal_max_size = Some("200KiB".into())
    })
    .await;
    let mut n = 0;
    while metric(&proxy, "sidetrace_journal_records_lost_total").await < 1.0 {
        let (status, _, _) = post(
            &proxy.url("/openai/v1/chat/completions"),
            &[],
            chat_request(&format!("fill {n} {}", "x".repeat(4000))),
        )
        .await;
        assert_eq!(status, 200, "batched mode never refuses traffic");
        n += 1;
        assert!(n < 500, "the journal never filled");
    }
    assert_eq!(readyz(&proxy).await.0, 200, "still ready: traffic flows");
    std::fs::rename(&proxy.journal, proxy.journal.with_extension("full.db")).unwrap();
    let (status, _, _) = post(
        &proxy.url("/openai/v1/chat/completions"),
        &[],
        chat_request("after"),
    )
    .await;
    assert_eq!(status, 200);
    proxy.stop().await;
    assert_eq!(count(&proxy.journal, "gap"), 1, "the loss is on record");
    let (code, text) = verify_cli(&proxy.journal);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("records could not be written"), "{text}");
}

fn verify_cli(journal: &Path) -> (i32, String) {
    let out = std::process::Command::new(BIN)
        .args(["journal", "verify", "--journal"])
        .arg(journal)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Starts the binary; returns it and its listen address.
async fn start_binary(args: &[&str]) -> (tokio::process::Child, String) {
    let proxy = RunningProxy::start(args).await;
    (proxy.child, proxy.addr)
}

async fn sigkill_mid_stream(durability: &str) {
    let mock = Mock::start(|_| {
        Reply::sse_paced(
            &fixture("anthropic/stream_tool_use.sse"),
            Duration::from_millis(3),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    let route = format!("/anthropic={}", mock.url());
    let args = [
        "--route",
        &route,
        "--journal",
        journal.to_str().unwrap(),
        "--durability",
        durability,
    ];
    let (mut child, addr) = start_binary(&args).await;

    // Eight agents stream requests in a loop, each request marked.
    let completed: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut agents = Vec::new();
    for a in 0..8 {
        let completed = completed.clone();
        let url = format!("http://{addr}/anthropic/v1/messages");
        agents.push(tokio::spawn(async move {
            for n in 0.. {
                let marker = format!("agent-{a}-request-{n}");
                let mut req: serde_json::Value =
                    serde_json::from_slice(&fixture("anthropic/request_tools.json")).unwrap();
                req["messages"][2]["content"][1]["text"] = json!(marker);
                let body = Bytes::from(serde_json::to_vec(&req).unwrap());
                let request = http::Request::post(&url)
                    .body(http_body_util::Full::new(body))
                    .unwrap();
                let Ok(resp) = http_client(false).request(request).await else {
                    return;
                };
                let Ok(all) = http_body_util::BodyExt::collect(resp.into_body()).await else {
                    return;
                };
                if all.to_bytes() == fixture("anthropic/stream_tool_use.sse") {
                    completed.lock().unwrap().push(marker);
                } else {
                    return;
                }
            }
        }));
    }
    eventually("requests complete under load", || {
        completed.lock().unwrap().len() >= 40
    })
    .await;
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    for a in agents {
        a.await.unwrap();
    }
    let completed = completed.lock().unwrap().clone();

    // Restart on the same journal, then stop cleanly.
    let restarted = RunningProxy::start(&args).await;
    restarted.terminate();
    let (code, log) = restarted.wait().await;
    assert_eq!(code, 0, "{log:#?}");

    let (code, text) = verify_cli(&journal);
    assert_eq!(code, 0, "{durability}: {text}");
    assert!(
        text.contains("chain break") && text.contains("did not shut down cleanly"),
        "{text}"
    );

    let views = read_journal(&journal);
    let mut ids = std::collections::HashSet::new();
    let mut markers: std::collections::HashMap<String, usize> = Default::default();
    for it in views.iter().flat_map(|v| &v.interactions) {
        assert!(
            ids.insert(it.id.clone()),
            "{durability}: interaction {} recorded twice",
            it.id
        );
        for part in it.input_messages.iter().flat_map(|m| &m.parts) {
            if let Some(Kind::Text(t)) = &part.kind
                && t.content.starts_with("agent-")
            {
                *markers.entry(t.content.clone()).or_default() += 1;
            }
        }
    }
    assert!(
        markers.values().all(|&n| n == 1),
        "{durability}: a request recorded twice: {markers:?}"
    );
    for table in ["interaction", "interaction_start"] {
        let conn = Connection::open(&journal).unwrap();
        let dupes: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM (SELECT interaction_id FROM entries WHERE kind = ?1 GROUP BY interaction_id HAVING COUNT(*) > 1)",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(dupes, 0, "{durability}: duplicated {table} entries");
    }
    if durability == "write-ahead" {
        let missing: Vec<&String> = completed
            .iter()
            .filter(|m| !markers.contains_key(*m))
            .collect();
        assert!(
            missing.is_empty(),
            "completed requests missing from the journal: {missing:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_under_load_write_ahead() {
    sigkill_mid_stream("write-ahead").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_under_load_batched() {
    sigkill_mid_stream("batched").await;
}
