//! OpenTelemetry export of a recorded tool-using session to an in-process
//! OTLP receiver, over HTTP and gRPC, in each content mode: span names,
//! kinds, parentage and attributes; the agent's traceparent honoured;
//! errors marked; and nothing lost through a collector outage and a
//! sidetrace restart.

use std::collections::{HashMap, HashSet};

use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::Value;

use crate::common::mock::{Mock, Reply};
use crate::common::otlp::{Receiver, attr};
use crate::common::*;
use crate::linking::{run_session, session_mock};

const SPONSOR: [(&str, &str); 3] = [
    ("sidetrace-sponsor", "alice@example.com"),
    ("sidetrace-change-id", "!1234"),
    ("sidetrace-execution-id", "exec-export-1"),
];

fn by_name<'a>(spans: &'a [Span], prefix: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.name.starts_with(prefix))
        .collect()
}

fn json_attr(span: &Span, key: &str) -> Value {
    serde_json::from_str(&attr(span, key).unwrap_or_else(|| panic!("{} has no {key}", span.name)))
        .unwrap()
}

async fn export_session(protocol: &str, content: &str) -> (Vec<Span>, Receiver) {
    let receiver = if protocol == "grpc" {
        Receiver::grpc().await
    } else {
        Receiver::http().await
    };
    let mock = session_mock().await;
    let mut proxy = TestProxy::start(&[("/anthropic", &mock.url())], |o| {
        o.export.endpoint = Some(receiver.url());
        o.export.protocol = Some(protocol.into());
        o.export.content = Some(content.into());
    })
    .await;
    run_session(&proxy, &SPONSOR, "Explain src/main.rs").await;
    proxy.stop().await; // the execution ends: its root span goes out too
    (receiver.spans(), receiver)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_becomes_one_trace_over_http_and_grpc_in_every_content_mode() {
    for protocol in ["http/protobuf", "grpc"] {
        for content in ["full", "delta", "none"] {
            let case = format!("{protocol}/{content}");
            let (spans, receiver) = export_session(protocol, content).await;
            let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(spans.len(), 6, "{case}: {names:?}");
            let roots = by_name(&spans, "invoke_agent");
            let chats = by_name(&spans, "chat claude-sonnet-4-5");
            let tools = by_name(&spans, "execute_tool");
            assert_eq!(
                (roots.len(), chats.len(), tools.len()),
                (1, 3, 2),
                "{case}: {names:?}"
            );
            let root = roots[0];

            // One trace; the root at the top, everything else under it.
            assert!(spans.iter().all(|s| s.trace_id == root.trace_id), "{case}");
            assert!(root.parent_span_id.is_empty());
            assert!(
                chats
                    .iter()
                    .chain(&tools)
                    .all(|s| s.parent_span_id == root.span_id),
                "{case}"
            );
            assert_eq!(root.kind, SpanKind::Internal as i32);
            assert!(chats.iter().all(|s| s.kind == SpanKind::Client as i32));
            let unique: HashSet<&Vec<u8>> = spans.iter().map(|s| &s.span_id).collect();
            assert_eq!(unique.len(), 6);

            // Sponsor and correlation on every span.
            for s in &spans {
                assert_eq!(
                    attr(s, "enduser.id").as_deref(),
                    Some("alice@example.com"),
                    "{case} {}",
                    s.name
                );
                assert_eq!(
                    attr(s, "vcs.change.id").as_deref(),
                    Some("!1234"),
                    "{case} {}",
                    s.name
                );
                assert_eq!(
                    attr(s, "sidetrace.execution.id").as_deref(),
                    Some("exec-export-1")
                );
                assert_eq!(
                    attr(s, "sidetrace.sponsor.assurance").as_deref(),
                    Some("header")
                );
            }

            // The model calls.
            let mut chats = chats;
            chats.sort_by_key(|s| s.start_time_unix_nano);
            for (turn, c) in chats.iter().enumerate() {
                assert_eq!(attr(c, "gen_ai.operation.name").as_deref(), Some("chat"));
                assert_eq!(
                    attr(c, "gen_ai.provider.name").as_deref(),
                    Some("anthropic")
                );
                assert_eq!(
                    attr(c, "gen_ai.request.model").as_deref(),
                    Some("claude-sonnet-4-5")
                );
                assert_eq!(
                    attr(c, "gen_ai.response.model").as_deref(),
                    Some("claude-sonnet-4-5-20250929")
                );
                assert_eq!(attr(c, "gen_ai.response.id"), Some(format!("msg_{turn}")));
                assert_eq!(attr(c, "gen_ai.usage.input_tokens").as_deref(), Some("100"));
                assert_eq!(attr(c, "gen_ai.usage.output_tokens").as_deref(), Some("20"));
                assert_eq!(attr(c, "server.address").as_deref(), Some("127.0.0.1"));
                assert!(attr(c, "server.port").is_some());
                assert_eq!(
                    attr(c, "sidetrace.conversation.turn"),
                    Some((turn + 1).to_string())
                );
                assert!(attr(c, "gen_ai.conversation.id").is_some());
                assert!(
                    attr(c, "sidetrace.input.digest")
                        .unwrap()
                        .starts_with("sha256:")
                );
                assert!(c.end_time_unix_nano >= c.start_time_unix_nano);
            }
            let finish: Vec<String> = chats
                .iter()
                .map(|c| attr(c, "gen_ai.response.finish_reasons").unwrap())
                .collect();
            assert_eq!(finish, ["tool_use", "tool_use", "end_turn"]);

            // Content per mode.
            match content {
                "full" => {
                    let inputs = json_attr(chats[2], "gen_ai.input.messages");
                    assert_eq!(
                        inputs.as_array().unwrap().len(),
                        5,
                        "full: the whole conversation"
                    );
                    assert!(attr(chats[2], "gen_ai.tool.definitions").is_some());
                }
                "delta" => {
                    let first = json_attr(chats[0], "gen_ai.input.messages");
                    assert_eq!(first[0]["parts"][0]["content"], "Explain src/main.rs");
                    let second = json_attr(chats[1], "gen_ai.input.messages");
                    assert_eq!(
                        second.as_array().unwrap().len(),
                        1,
                        "delta: only the new tool result"
                    );
                    assert_eq!(second[0]["parts"][0]["type"], "tool_call_response");
                    assert_eq!(second[0]["parts"][0]["response"], "fn main() { serve(); }");
                    assert!(attr(chats[0], "gen_ai.tool.definitions").is_some());
                    assert!(
                        attr(chats[1], "gen_ai.tool.definitions").is_none(),
                        "definitions once per conversation"
                    );
                    let output = json_attr(chats[0], "gen_ai.output.messages");
                    assert_eq!(output[0]["parts"][0]["type"], "tool_call");
                    assert_eq!(
                        output[0]["parts"][0]["arguments"]["file_path"],
                        "/repo/src/main.rs"
                    );
                    assert_eq!(output[0]["finish_reason"], "tool_use");
                }
                _ => {
                    for c in &chats {
                        for key in [
                            "gen_ai.input.messages",
                            "gen_ai.output.messages",
                            "gen_ai.system_instructions",
                            "gen_ai.tool.definitions",
                        ] {
                            assert!(attr(c, key).is_none(), "none: {key} exported");
                        }
                    }
                }
            }

            // Tool calls, from the model's request to the result coming back.
            let read = tools
                .iter()
                .find(|t| t.name == "execute_tool Read")
                .expect("Read span");
            assert_eq!(
                attr(read, "gen_ai.tool.call.id").as_deref(),
                Some("toolu_read_1")
            );
            assert_eq!(attr(read, "gen_ai.tool.name").as_deref(), Some("Read"));
            assert_eq!(
                read.start_time_unix_nano, chats[0].end_time_unix_nano,
                "starts when the call was made"
            );
            assert_eq!(
                read.end_time_unix_nano, chats[1].start_time_unix_nano,
                "ends when the result came back"
            );
            assert!(
                attr(read, "sidetrace.tool.call.result.digest")
                    .unwrap()
                    .starts_with("sha256:")
            );
            if content == "none" {
                assert!(
                    attr(read, "gen_ai.tool.call.arguments").is_none()
                        && attr(read, "gen_ai.tool.call.result").is_none()
                );
            } else {
                assert_eq!(
                    json_attr(read, "gen_ai.tool.call.arguments")["file_path"],
                    "/repo/src/main.rs"
                );
                assert_eq!(
                    attr(read, "gen_ai.tool.call.result").as_deref(),
                    Some("fn main() { serve(); }")
                );
            }

            // What the agent retrieved, as events on the call that showed it.
            let events: Vec<(String, String)> = chats[1]
                .events
                .iter()
                .map(|e| {
                    let get = |k: &str| {
                        e.attributes
                            .iter()
                            .find(|a| a.key == k)
                            .map(|a| crate::common::otlp::text(a.value.as_ref().unwrap()))
                            .unwrap_or_default()
                    };
                    (get("sidetrace.context.kind"), get("sidetrace.context.uri"))
                })
                .collect();
            assert_eq!(
                events,
                [("file".to_owned(), "/repo/src/main.rs".to_owned())],
                "{case}"
            );

            assert_eq!(
                attr(root, "gen_ai.operation.name").as_deref(),
                Some("invoke_agent")
            );
            assert_eq!(
                attr(root, "sidetrace.execution.end_reason").as_deref(),
                Some("proxy shutdown")
            );
            let resource = receiver.requests()[0].resource_spans[0]
                .resource
                .clone()
                .unwrap();
            let service = resource
                .attributes
                .iter()
                .find(|a| a.key == "service.name")
                .unwrap();
            assert_eq!(
                crate::common::otlp::text(service.value.as_ref().unwrap()),
                "sidetrace"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agents_traceparent_makes_its_trace_ours() {
    let receiver = Receiver::http().await;
    let mock = session_mock().await;
    let mut proxy = TestProxy::start(&[("/anthropic", &mock.url())], |o| {
        o.export.endpoint = Some(receiver.url())
    })
    .await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    run_session(&proxy, &[("traceparent", tp)], "Explain src/main.rs").await;
    proxy.stop().await;
    let spans = receiver.spans();
    assert_eq!(spans.len(), 6);
    assert!(
        spans
            .iter()
            .all(|s| hex::encode(&s.trace_id) == "4bf92f3577b34da6a3ce929d0e0e4736")
    );
    let root = by_name(&spans, "invoke_agent")[0];
    assert_eq!(hex::encode(&root.parent_span_id), "00f067aa0ba902b7");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_calls_are_marked_as_errors() {
    let receiver = Receiver::http().await;
    let mock = Mock::start(|_| Reply::json(529, fixture("anthropic/error_overloaded.json"))).await;
    let mut proxy = TestProxy::start(&[("/anthropic", &mock.url())], |o| {
        o.export.endpoint = Some(receiver.url())
    })
    .await;
    let (status, _, _) = post(
        &proxy.url("/anthropic/v1/messages"),
        &[],
        fixture("anthropic/request_tools.json"),
    )
    .await;
    assert_eq!(status, 529);
    proxy.stop().await;
    let spans = receiver.spans();
    let chat = by_name(&spans, "chat")[0];
    assert_eq!(
        attr(chat, "error.type").as_deref(),
        Some("overloaded_error")
    );
    assert_eq!(
        attr(chat, "http.response.status_code").as_deref(),
        Some("529")
    );
    let status = chat.status.clone().unwrap();
    assert_eq!(
        status.code,
        opentelemetry_proto::tonic::trace::v1::status::StatusCode::Error as i32
    );
    assert_eq!(status.message, "Overloaded");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_and_a_restart_lose_nothing_and_send_nothing_twice() {
    // A collector address with nothing listening yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let endpoint = format!("http://{addr}");
    let mock = session_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    let start = |exec: &'static str| {
        let (endpoint, journal, url) = (endpoint.clone(), journal.clone(), mock.url());
        async move {
            TestProxy::start(&[("/anthropic", &url)], move |o| {
                o.export.endpoint = Some(endpoint);
                o.export.shutdown_timeout = Some("1s".into());
                o.journal = Some(journal);
                o.execution_id = Some(exec.into());
            })
            .await
        }
    };

    let mut first = start("exec-before-restart").await;
    run_session(&first, &[], "Explain src/main.rs").await;
    first.stop().await; // the collector is down: spans stay in the journal
    let mut second = start("exec-after-restart").await;
    run_session(&second, &[], "Explain src/main.rs").await;
    let metrics = send(
        http_client(false),
        "GET",
        &format!("http://{}/metrics", second.admin),
        &[],
        bytes::Bytes::new(),
    )
    .await
    .2;
    let metrics = String::from_utf8_lossy(&metrics).into_owned();
    assert!(
        metrics.contains("sidetrace_export_lag_entries"),
        "{metrics}"
    );

    // The collector comes up, busy at first.
    let receiver = Receiver::http_on(addr).await;
    receiver.refuse(2);
    eventually("the backlog arrives", || receiver.spans().len() >= 11).await;
    second.stop().await;
    eventually("the second root span arrives", || {
        receiver.spans().len() >= 12
    })
    .await;

    let spans = receiver.spans();
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    for s in &spans {
        *seen.entry(s.span_id.clone()).or_default() += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "a span arrived twice");
    assert_eq!(spans.len(), 12, "two sessions of 6 spans each");
    let executions: HashSet<String> = spans
        .iter()
        .filter_map(|s| attr(s, "sidetrace.execution.id"))
        .collect();
    assert_eq!(
        executions,
        HashSet::from([
            "exec-before-restart".to_owned(),
            "exec-after-restart".to_owned()
        ])
    );
    assert!(receiver.refused() >= 2, "retried through the refusals");
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_leave_and_long_values_are_cut() {
    let receiver = Receiver::grpc().await;
    let mock = fixture_mock(None).await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |o| {
        o.export.endpoint = Some(receiver.url());
        o.export.protocol = Some("grpc".into());
        o.export.content = Some("full".into());
    })
    .await;
    let mut req: Value =
        serde_json::from_slice(&fixture("openai_chat/request_tools.json")).unwrap();
    req["messages"][4]["content"] = format!(
        "deploy with AKIAIOSFODNN7EXAMPLE and then {}",
        "lorem ipsum ".repeat(10_000)
    )
    .into();
    let (status, _, _) = post(
        &proxy.url("/openai/v1/chat/completions"),
        &[],
        serde_json::to_vec(&req).unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    proxy.stop().await;
    let spans = receiver.spans();
    let chat = by_name(&spans, "chat")[0];
    let inputs = attr(chat, "gen_ai.input.messages").unwrap();
    assert!(
        !inputs.contains("AKIAIOSFODNN7EXAMPLE"),
        "the key was exported"
    );
    assert!(inputs.contains("[REDACTED:aws-access-key:"));
    assert!(
        inputs.len() <= 64 * 1024 + 64,
        "cut to the attribute limit: {}",
        inputs.len()
    );
    let truncated = attr(chat, "sidetrace.truncated.gen_ai.input.messages")
        .expect("the digest of the whole is kept");
    assert!(truncated.starts_with("sha256:"), "{truncated}");
    // The journal never held it either; the redaction is counted.
    let views = read_journal(&proxy.journal);
    let it = &views[0].interactions[0];
    assert!(!format!("{:?}", it.input_messages[4]).contains("AKIAIOSFODNN7EXAMPLE"));
    assert_eq!(it.redactions.get("aws-access-key"), Some(&1));
}
