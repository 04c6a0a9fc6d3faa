//! Tests of the writer: its caches (known blobs, the in-memory tail) and
//! when it lets records gather before a commit.

use std::sync::Arc;
use std::time::Duration;

use crate::journal::{Journal, JournalOptions, keys, prune};
use crate::metrics::Metrics;
use crate::record::journal_entry::Payload;
use crate::record::{Blob, Execution, Interaction};

fn interaction(id: &str, execution: &str, blob: &Blob) -> Interaction {
    Interaction {
        id: id.into(),
        execution_id: execution.into(),
        system_instructions: Some(crate::record::Message {
            role: "system".into(),
            digest: blob.digest.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn blob_stored(path: &std::path::Path, digest: &str) -> bool {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(
        "SELECT COUNT(*) FROM blobs WHERE digest = ?1",
        [digest],
        |r| r.get::<_, i64>(0),
    )
    .unwrap()
        == 1
}

#[tokio::test]
async fn a_blob_another_process_pruned_is_stored_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let options = JournalOptions::at(&path);
    let (journal, thread) = Journal::open(&options, Arc::new(Metrics::new())).unwrap();
    let prompt = Blob::new(b"You are a careful coding agent.".to_vec());
    let old = Execution {
        id: "old".into(),
        ..Default::default()
    };
    journal.append_execution(old).await.unwrap();
    journal
        .append_interaction(interaction("i1", "old", &prompt), vec![prompt.clone()])
        .await;
    journal.flush().await;
    assert!(blob_stored(&path, &prompt.digest));

    // `sidetrace journal prune` in another process: the only record using
    // the prompt goes, and with it the prompt.
    std::thread::sleep(Duration::from_millis(5));
    let key = keys::load_or_create(&options.signing_key).unwrap();
    let report = prune::prune(&path, &key, Duration::ZERO, "0s", false).unwrap();
    assert_eq!((report.entries, report.blobs), (2, 1));
    assert!(!blob_stored(&path, &prompt.digest));

    // The writer still remembers having stored it; it must not trust that.
    journal
        .append_interaction(interaction("i2", "new", &prompt), vec![prompt.clone()])
        .await;
    journal.flush().await;
    assert!(blob_stored(&path, &prompt.digest), "stored again");
    journal.close(thread).await;
}

#[tokio::test]
async fn a_follower_gets_committed_entries_with_their_blobs_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let (journal, thread) =
        Journal::open(&JournalOptions::at(&path), Arc::new(Metrics::new())).unwrap();
    let tail = journal.tail().clone();
    let prompt = Blob::new(b"prompt".to_vec());
    journal
        .append_interaction(interaction("before", "e", &prompt), vec![prompt.clone()])
        .await;
    journal.flush().await;
    assert!(
        tail.from(1, 10).is_empty(),
        "nothing kept before anyone follows"
    );

    tail.follow();
    for id in ["a", "b"] {
        journal
            .append_interaction(interaction(id, "e", &prompt), vec![prompt.clone()])
            .await;
    }
    journal.flush().await;
    let held = tail.from(2, 10);
    let ids: Vec<(u64, &str)> = held
        .iter()
        .map(|c| match c.entry.payload.as_ref() {
            Some(Payload::Interaction(i)) => (c.seq, i.id.as_str()),
            _ => (c.seq, "?"),
        })
        .collect();
    assert_eq!(ids, [(2, "a"), (3, "b")]);
    // The second one did not store the prompt again, but still carries it.
    assert_eq!(held[1].blobs, [prompt]);
    assert_eq!(held[0].entry.seq, 2);
    journal.close(thread).await;
}

#[test]
fn only_records_nobody_waits_for_linger_before_their_commit() {
    use super::{BEHIND, Command, lingers};
    use crate::journal::schema::Durability;
    let append = |ack| Command::Append {
        payload: Box::new(Payload::Execution(Execution::default())),
        blobs: Vec::new(),
        ack,
    };
    assert!(lingers(Durability::Batched, &append(None), 0));
    assert!(lingers(Durability::Batched, &append(None), BEHIND - 1));
    // Records already piling up are committed at once.
    assert!(!lingers(Durability::Batched, &append(None), BEHIND));
    // A request waits for this commit.
    assert!(!lingers(Durability::WriteAhead, &append(None), 0));
    let (ack, _done) = tokio::sync::oneshot::channel();
    assert!(!lingers(Durability::Batched, &append(Some(ack)), 0));
    // Somebody waits for a flush, a checkpoint or the close.
    let (flush, _flushed) = tokio::sync::oneshot::channel();
    assert!(!lingers(Durability::Batched, &Command::Flush(flush), 0));
    assert!(!lingers(
        Durability::Batched,
        &Command::Checkpoint("interval".into()),
        0
    ));
}
