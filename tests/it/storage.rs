//! Agents resend the whole conversation every turn; the journal must grow
//! with each turn's new content, not with the whole history.

use serde_json::{Value, json};
use sidetrace::journal::reader::JournalReader;

use crate::common::mock::{Mock, Reply};
use crate::common::*;

fn tool_use_reply(turn: usize) -> Value {
    json!({
        "id": format!("msg_{turn:04}"),
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "tool_use", "id": format!("toolu_{turn:04}"), "name": "read_file", "input": {"path": format!("src/file{turn}.rs")}}],
        "stop_reason": "tool_use",
        "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5}
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_conversation_costs_its_new_content_only() {
    const TURNS: usize = 100;
    const NEW_CONTENT: usize = 2_000;
    let mock = Mock::start(|r| {
        let turn = r.json()["messages"].as_array().map_or(0, |m| m.len() / 2);
        Reply::json(200, tool_use_reply(turn).to_string())
    })
    .await;
    let mut proxy = TestProxy::start(&[("/anthropic", &mock.url())], |_| {}).await;

    let mut messages =
        vec![json!({"role": "user", "content": "Read every file and summarise the crate."})];
    let mut sent_total = 0usize;
    let mut last_request = 0usize;
    let mut responses = 0usize;
    for turn in 0..TURNS {
        let request = serde_json::to_vec(&json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": "You are a careful coding agent.",
            "tools": [{"name": "read_file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}],
            "messages": messages,
        }))
        .unwrap();
        sent_total += request.len();
        last_request = request.len();
        let (status, _, body) = post(&proxy.url("/anthropic/v1/messages"), &[], request).await;
        assert_eq!(status, 200);
        responses += body.len();
        let reply: Value = serde_json::from_slice(&body).unwrap();
        messages.push(json!({"role": "assistant", "content": reply["content"]}));
        let file_content = format!("// file {turn}\n{}", "fn f() {}\n".repeat(NEW_CONTENT / 10));
        messages.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": format!("toolu_{turn:04}"), "content": file_content}]}));
    }
    proxy.stop().await;

    let (_, blob_bytes) = JournalReader::open(&proxy.journal)
        .unwrap()
        .stats()
        .unwrap();
    // Every distinct message once (about the last request), plus each raw response.
    let linear_bound = 2 * (last_request + responses);
    assert!(
        (blob_bytes as usize) < linear_bound,
        "blobs hold {blob_bytes} bytes for {TURNS} turns; linear growth would stay under {linear_bound} (the agent sent {sent_total})"
    );
    assert!(
        sent_total > 10 * blob_bytes as usize,
        "the conversation was resent: {sent_total} bytes on the wire"
    );
    let db_size = std::fs::metadata(&proxy.journal).unwrap().len() as usize;
    assert!(
        db_size < 3 * linear_bound,
        "journal file is {db_size} bytes"
    );

    // Every turn's messages are still all there, in order.
    let views = read_journal(&proxy.journal);
    assert_eq!(views[0].interactions.len(), TURNS, "one record per turn");
    let last = views[0].interactions.last().unwrap();
    assert_eq!(last.input_messages.len(), 2 * TURNS - 1);
    assert!(last.input_messages.iter().all(|m| !m.parts.is_empty()));
}
