//! Batches from the in-memory tail and from the file, mixed.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::any_value;

use super::*;
use crate::export::config::ContentMode;
use crate::export::semconv::SIDETRACE_INTERACTION_ID;
use crate::journal::{Journal, JournalOptions};
use crate::metrics::Metrics;
use crate::record::{Interaction, Message};

fn interaction(id: &str, prompt: &Blob) -> Interaction {
    Interaction {
        id: id.into(),
        execution_id: "e".into(),
        api: crate::record::Api::ChatCompletions as i32,
        requested_model: "m".into(),
        turn: 1,
        system_instructions: Some(Message {
            role: "system".into(),
            digest: prompt.digest.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn interaction_ids(spans: &[Span]) -> Vec<String> {
    spans
        .iter()
        .filter_map(|s| {
            s.attributes
                .iter()
                .find(|a| a.key == SIDETRACE_INTERACTION_ID)
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(v) => Some(v.clone()),
                    _ => None,
                })
        })
        .collect()
}

#[tokio::test]
async fn entries_of_other_writers_are_read_from_the_file_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let options = JournalOptions::at(&path);
    let (ours, ours_thread) = Journal::open(&options, Arc::new(Metrics::new())).unwrap();
    ours.tail().follow();
    // Another process writing the same journal (`sidetrace mcp`, say).
    let (theirs, theirs_thread) = Journal::open(&options, Arc::new(Metrics::new())).unwrap();
    let prompt = Blob::new(br#"{"role":"system","content":"Be careful."}"#.to_vec());
    for (journal, id) in [(&ours, "a"), (&theirs, "b"), (&ours, "c"), (&ours, "d")] {
        journal
            .append_interaction(interaction(id, &prompt), vec![prompt.clone()])
            .await;
        journal.flush().await;
    }

    let src = Source::open(&path).unwrap();
    let policy = Policy {
        content: ContentMode::Full,
        max_attribute_size: 4096,
        redact: true,
    };
    let tail = ours.tail();
    let mut exported = Vec::new();
    let mut batches = 0;
    loop {
        let batch = build(&src, tail, &policy).unwrap();
        if batch.last_seq == src.cursor() {
            break;
        }
        exported.extend(interaction_ids(&batch.spans));
        // Content came along whichever way the entry was found.
        assert!(
            batch.spans.iter().all(|s| s
                .attributes
                .iter()
                .any(|a| a.key == "gen_ai.system_instructions")),
            "system instructions on every span"
        );
        src.set_cursor(batch.last_seq);
        batches += 1;
        assert!(batches < 10, "export makes progress");
    }
    assert_eq!(exported, ["a", "b", "c", "d"]);
    assert!(batches >= 2, "the other writer's entry split the tail");
    ours.close(ours_thread).await;
    theirs.close(theirs_thread).await;
}
