//! A conversation spread over requests, linked: which messages are new each
//! turn, each tool call joined to the result the agent sent back (with the
//! time it took), context references from those results and from
//! attachments, and parallel agent sessions kept apart.

use serde_json::{Value, json};
use sidetrace::record::{Interaction, digest_of};

use crate::common::mock::{Mock, Reply};
use crate::common::*;

const MODEL: &str = "claude-sonnet-4-5-20250929";
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

/// Answers turn by turn: read a file, then fetch a URL, then answer.
fn scripted(request: &Value) -> Value {
    let turn = request["messages"].as_array().map_or(0, |m| m.len() / 2);
    let content = match turn {
        0 => {
            json!([{"type": "tool_use", "id": "toolu_read_1", "name": "Read", "input": {"file_path": "/repo/src/main.rs"}}])
        }
        1 => json!([{"type": "text", "text": "Let me check the docs."},
                    {"type": "tool_use", "id": "toolu_fetch_2", "name": "WebFetch", "input": {"url": "https://docs.example.com/api", "prompt": "summarise"}}]),
        _ => json!([{"type": "text", "text": "main() starts the server; the docs agree."}]),
    };
    let stop = if turn < 2 { "tool_use" } else { "end_turn" };
    json!({"id": format!("msg_{turn}"), "type": "message", "role": "assistant", "model": MODEL,
           "content": content, "stop_reason": stop, "stop_sequence": null,
           "usage": {"input_tokens": 100, "output_tokens": 20}})
}

fn tool_result(id: &str, text: &str) -> Value {
    json!({"type": "tool_result", "tool_use_id": id, "content": text})
}

/// Runs the three-turn session the way an agent does: resending the whole
/// conversation, echoing the model's turns, adding its tool results.
pub async fn run_session(
    proxy: &TestProxy,
    headers: &[(&str, &str)],
    first_prompt: &str,
) -> Vec<Value> {
    let mut messages = vec![json!({"role": "user", "content": first_prompt})];
    let mut replies = Vec::new();
    for turn in 0..3 {
        let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 1024,
            "tools": [{"name": "Read", "input_schema": {"type": "object"}}, {"name": "WebFetch", "input_schema": {"type": "object"}}],
            "messages": messages});
        let (status, _, reply) = post(
            &proxy.url("/anthropic/v1/messages"),
            headers,
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        let reply: Value = serde_json::from_slice(&reply).unwrap();
        messages.push(json!({"role": "assistant", "content": reply["content"]}));
        match turn {
            0 => messages.push(json!({"role": "user", "content": [tool_result("toolu_read_1", "fn main() { serve(); }")]})),
            1 => messages.push(json!({"role": "user", "content": [
                tool_result("toolu_fetch_2", "The API serves on port 4480."),
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
            ]})),
            _ => {}
        }
        replies.push(reply);
    }
    replies
}

/// The interaction records as written, in journal order, unresolved.
fn stored_interactions(journal: &std::path::Path) -> Vec<Interaction> {
    use prost::Message as _;
    use sidetrace::record::{JournalEntry, journal_entry::Payload};
    let db = rusqlite::Connection::open(journal).unwrap();
    let mut stmt = db
        .prepare("SELECT entry FROM entries WHERE kind = 'interaction' ORDER BY seq")
        .unwrap();
    let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap();
    rows.filter_map(
        |b| match JournalEntry::decode(b.unwrap().as_slice()).unwrap().payload {
            Some(Payload::Interaction(i)) => Some(i),
            _ => None,
        },
    )
    .collect()
}

pub async fn session_mock() -> Mock {
    Mock::start(|r| Reply::json(200, scripted(&r.json()).to_string())).await
}

async fn session_proxy() -> (Mock, TestProxy) {
    let mock = Mock::start(|r| Reply::json(200, scripted(&r.json()).to_string())).await;
    let proxy = TestProxy::start(&[("/anthropic", &mock.url())], |_| {}).await;
    (mock, proxy)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_using_session_is_linked_turn_by_turn() {
    let (_mock, mut proxy) = session_proxy().await;
    run_session(&proxy, &[], "Explain src/main.rs").await;
    let views = proxy.finish().await;
    let its: &Vec<Interaction> = &views[0].interactions;
    assert_eq!(its.len(), 3);

    // One conversation, in order.
    let conversation = &its[0].conversation_id;
    assert!(its.iter().all(|i| &i.conversation_id == conversation));
    let turns: Vec<u32> = its.iter().map(|i| i.turn).collect();
    assert_eq!(turns, [1, 2, 3]);
    assert_eq!(its[1].previous_interaction_id, its[0].id);
    assert_eq!(its[2].previous_interaction_id, its[1].id);
    // Each turn's new messages: the prompt, then only the tool results (the
    // echoed assistant turns are the model's outputs, already on record).
    assert_eq!(its[0].new_input_indexes, [0]);
    assert_eq!(its[1].new_input_indexes, [2]);
    assert_eq!(its[2].new_input_indexes, [4]);
    assert_eq!(
        its[1].input_messages[1].digest, its[0].output_messages[0].digest,
        "stored once"
    );
    // Read back, every turn has its whole history; on disk, each record
    // holds only what followed the history it shares with the turn before.
    let whole: Vec<usize> = its.iter().map(|i| i.input_messages.len()).collect();
    assert_eq!(whole, [1, 3, 5]);
    for it in its {
        assert_eq!(
            it.inputs_digest,
            sidetrace::record::inputs::messages_digest(&it.input_messages)
        );
    }
    let stored: Vec<(u32, usize)> = stored_interactions(&proxy.journal)
        .iter()
        .map(|i| (i.inherited_input_count, i.input_messages.len()))
        .collect();
    assert_eq!(stored, [(0, 1), (1, 2), (3, 2)]);

    // Tool calls joined to their results.
    let read = &its[1].tool_results[0];
    assert_eq!(read.call_id, "toolu_read_1");
    assert_eq!(read.tool_name, "Read");
    assert_eq!(read.call_interaction_id, its[0].id);
    assert_eq!(read.result_digest, digest_of(b"fn main() { serve(); }"));
    assert_eq!(read.result_size, 22);
    let took = read.duration.expect("the agent's time is known");
    assert!(took.seconds >= 0 && took.nanos >= 0);
    assert_eq!(read.call_time, its[0].timing.unwrap().end_time);
    assert_eq!(read.result_time, its[1].timing.unwrap().start_time);
    let fetch = &its[2].tool_results[0];
    assert_eq!(
        (fetch.call_id.as_str(), fetch.call_interaction_id.as_str()),
        ("toolu_fetch_2", its[1].id.as_str())
    );

    // What the model was shown.
    let refs1: Vec<(&str, &str, &str)> = its[1]
        .context_refs
        .iter()
        .map(|r| (r.kind.as_str(), r.uri.as_str(), r.digest.as_str()))
        .collect();
    assert_eq!(
        refs1,
        [("file", "/repo/src/main.rs", read.result_digest.as_str())]
    );
    assert_eq!(its[1].context_refs[0].tool_call_id, "toolu_read_1");
    let refs2: Vec<(&str, &str)> = its[2]
        .context_refs
        .iter()
        .map(|r| (r.kind.as_str(), r.uri.as_str()))
        .collect();
    assert_eq!(
        refs2,
        [("url", "https://docs.example.com/api"), ("attachment", "")]
    );
    let image = &its[2].context_refs[1];
    assert_eq!(image.mime_type, "image/png");
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD
        .decode(PNG_B64)
        .unwrap();
    assert_eq!(
        (image.digest.clone(), image.size),
        (digest_of(&png), png.len() as u64)
    );

    // `sidetrace show` tells the same story.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sidetrace"))
        .args(["show", "--journal"])
        .arg(&proxy.journal)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "tool calls",
        "#1 Read {\"file_path\":\"/repo/src/main.rs\"}  [toolu_read_1]  result in #2 after",
        &format!("{} (22 bytes)", read.result_digest),
        "#2 WebFetch",
        "context",
        &format!(
            "#2 file /repo/src/main.rs  {} (22 bytes)  (Read [toolu_read_1])",
            read.result_digest
        ),
        "#3 url https://docs.example.com/api",
        "#3 attachment image/png",
        "turn 3",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_sessions_through_one_proxy_stay_apart() {
    let (_mock, mut proxy) = session_proxy().await;
    // Two agents, same first prompt, interleaved.
    let a = run_session(
        &proxy,
        &[("x-claude-code-session-id", "5a1f-session-a")],
        "Explain src/main.rs",
    );
    let b = run_session(
        &proxy,
        &[("x-claude-code-session-id", "9c2e-session-b")],
        "Explain src/main.rs",
    );
    let (ra, rb) = tokio::join!(a, b);
    assert_eq!((ra.len(), rb.len()), (3, 3));
    run_session(&proxy, &[], "Explain src/main.rs").await; // an agent without a session id
    let views = proxy.finish().await;
    let mut ids: Vec<&str> = views.iter().map(|v| v.execution.id.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids.len(),
        3,
        "each session its own execution, plus the run's own: {ids:?}"
    );
    assert!(ids.contains(&"5a1f-session-a") && ids.contains(&"9c2e-session-b"));
    for v in &views {
        assert_eq!(v.interactions.len(), 3, "{}", v.execution.id);
        let convs: std::collections::HashSet<&str> = v
            .interactions
            .iter()
            .map(|i| i.conversation_id.as_str())
            .collect();
        assert_eq!(convs.len(), 1);
        if v.execution.id.starts_with("5a1f") {
            assert!(
                convs.contains("5a1f-session-a"),
                "the session id is the conversation id"
            );
            assert_eq!(v.interactions[0].session_source, "x-claude-code-session-id");
        }
        let turns: Vec<u32> = v.interactions.iter().map(|i| i.turn).collect();
        assert_eq!(turns, [1, 2, 3], "{}", v.execution.id);
        assert_eq!(
            v.interactions[1].tool_results[0].call_interaction_id,
            v.interactions[0].id
        );
        assert!(
            v.execution.end_time.is_some(),
            "session executions are closed at shutdown"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_tool_results_link_too() {
    // Chat Completions: the model's tool_calls, then a `tool` message.
    let mock = fixture_mock(None).await;
    let mut proxy = TestProxy::start(&[("/openai", &mock.url())], |_| {}).await;
    let mut req: Value =
        serde_json::from_slice(&fixture("openai_chat/request_tools.json")).unwrap();
    let first = json!({"model": req["model"], "messages": req["messages"].as_array().unwrap()[..2].to_vec(), "tools": req["tools"]});
    let (status, _, reply) = post(
        &proxy.url("/openai/v1/chat/completions"),
        &[],
        serde_json::to_vec(&first).unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let reply: Value = serde_json::from_slice(&reply).unwrap();
    // The agent echoes the model's message as it came back, then its tool result.
    req["messages"][2] = reply["choices"][0]["message"].clone();
    req["stream"] = json!(false);
    let (status, _, _) = post(
        &proxy.url("/openai/v1/chat/completions"),
        &[],
        serde_json::to_vec(&req).unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let views = proxy.finish().await;
    let its = &views[0].interactions;
    assert_eq!(its[1].turn, 2);
    assert_eq!(
        its[1].new_input_indexes,
        [3, 4],
        "the tool result and the next question"
    );
    let r = &its[1].tool_results[0];
    assert_eq!(
        (r.call_id.as_str(), r.tool_name.as_str()),
        ("call_0YLieJv2C5N7DjmKPwP0TKs6", "read_file")
    );
    assert_eq!(r.call_interaction_id, its[0].id);
    assert_eq!(its[1].context_refs[0].kind, "file");
    assert_eq!(its[1].context_refs[0].uri, "src/main.rs");
}
