//! Tamper evidence, as an auditor checks it with `sidetrace journal verify`:
//! an untouched journal verifies; editing, deleting or reordering entries,
//! editing or deleting blobs, and re-signing with a key that is not trusted
//! each fail, naming the entry.

use std::path::{Path, PathBuf};

use prost::Message as _;
use rusqlite::{Connection, params};
use sha2::{Digest, Sha256};
use sidetrace::journal::keys;
use sidetrace::record::{JournalEntry, journal_entry::Payload};

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_sidetrace");

/// A journal with three executions' worth of real traffic, closed cleanly.
struct Recorded {
    _proxy: TestProxy,
    journal: PathBuf,
    dir: tempfile::TempDir,
}

async fn recorded() -> Recorded {
    let mock = fixture_mock(None).await;
    let mut proxy = TestProxy::start(
        &[("/openai", &mock.url()), ("/anthropic", &mock.url())],
        |_| {},
    )
    .await;
    for (i, (path, body)) in [
        (
            "/openai/v1/chat/completions",
            "openai_chat/request_tools.json",
        ),
        (
            "/openai/v1/responses",
            "openai_responses/request_tools.json",
        ),
        ("/anthropic/v1/messages", "anthropic/request_tools.json"),
    ]
    .into_iter()
    .enumerate()
    {
        let exec = format!("exec-{i}");
        let (status, _, _) = post(
            &proxy.url(path),
            &[("sidetrace-execution-id", &exec)],
            fixture(body),
        )
        .await;
        assert_eq!(status, 200);
    }
    proxy.stop().await;
    let journal = proxy.journal.clone();
    Recorded {
        _proxy: proxy,
        journal,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Recorded {
    /// A private copy to tamper with, with the original's signing key beside it.
    fn copy(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let to = dir.join("journal.db");
        std::fs::copy(&self.journal, &to).unwrap();
        to
    }

    fn public_key(&self) -> PathBuf {
        let out = std::process::Command::new(BIN)
            .args(["journal", "export-key", "--journal"])
            .arg(&self.journal)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pem = String::from_utf8(out.stdout).unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
        let path = self.dir.path().join("trusted.pem");
        std::fs::write(&path, pem).unwrap();
        path
    }
}

fn verify(journal: &Path, public_key: Option<&Path>) -> (i32, String) {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["journal", "verify", "--journal"]).arg(journal);
    if let Some(k) = public_key {
        cmd.arg("--public-key").arg(k);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn db(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

fn entry(conn: &Connection, seq: u64) -> JournalEntry {
    let bytes: Vec<u8> = conn
        .query_row(
            "SELECT entry FROM entries WHERE seq = ?1",
            [seq as i64],
            |r| r.get(0),
        )
        .unwrap();
    JournalEntry::decode(bytes.as_slice()).unwrap()
}

fn seq_of_kind(conn: &Connection, kind: &str) -> u64 {
    conn.query_row(
        "SELECT MIN(seq) FROM entries WHERE kind = ?1",
        [kind],
        |r| r.get::<_, i64>(0),
    )
    .unwrap() as u64
}

/// Rewrites entries from `from` onwards so every link holds again, as an
/// attacker without the signing key would.
fn rechain_from(conn: &Connection, from: u64) {
    let mut prev: Vec<u8> = conn
        .query_row(
            "SELECT entry_hash FROM entries WHERE seq = ?1",
            [from as i64 - 1],
            |r| r.get(0),
        )
        .unwrap();
    let last: i64 = conn
        .query_row("SELECT MAX(seq) FROM entries", [], |r| r.get(0))
        .unwrap();
    for seq in from..=last as u64 {
        let mut e = entry(conn, seq);
        e.prev_hash = prev.clone();
        let bytes = e.encode_to_vec();
        let hash = Sha256::digest(&bytes).to_vec();
        conn.execute(
            "UPDATE entries SET entry = ?1, prev_hash = ?2, entry_hash = ?3 WHERE seq = ?4",
            params![bytes, prev, hash, seq as i64],
        )
        .unwrap();
        prev = hash;
    }
}

fn first_interaction(conn: &Connection) -> (u64, sidetrace::record::Interaction) {
    let seq = seq_of_kind(conn, "interaction");
    match entry(conn, seq).payload {
        Some(Payload::Interaction(i)) => (seq, i),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untouched_journal_verifies() {
    let r = recorded().await;
    let (code, text) = verify(&r.journal, None);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("verified") && text.contains("checkpoints"),
        "{text}"
    );
    assert!(text.contains("not anchored"), "{text}");
    let key = r.public_key();
    let (code, text) = verify(&r.journal, Some(&key));
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("checked against the given --public-key"),
        "{text}"
    );
    // Every entry is chained and the last one is a signed checkpoint.
    let conn = db(&r.journal);
    let last_kind: String = conn
        .query_row(
            "SELECT kind FROM entries ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(last_kind, "checkpoint");
    let key_mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(keys::default_path(&r.journal))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(key_mode, 0o600);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_kind_of_tampering_is_caught_at_the_right_entry() {
    let r = recorded().await;
    let key = r.public_key();

    // Edited content, hash column left alone.
    let path = r.copy("edited");
    let conn = db(&path);
    let (seq, _) = first_interaction(&conn);
    let mut bytes: Vec<u8> = conn
        .query_row(
            "SELECT entry FROM entries WHERE seq = ?1",
            [seq as i64],
            |r| r.get(0),
        )
        .unwrap();
    let i = bytes
        .windows(7)
        .position(|w| w == b"gpt-4.1")
        .expect("the model name is in the entry");
    bytes[i + 4] = b'5';
    conn.execute(
        "UPDATE entries SET entry = ?1 WHERE seq = ?2",
        params![bytes, seq as i64],
    )
    .unwrap();
    let (code, text) = verify(&path, Some(&key));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(&format!("entry {seq}: was edited")), "{text}");

    // Edited content with its hash recomputed: the next entry's link breaks.
    let path = r.copy("edited-rehashed");
    let conn = db(&path);
    let (seq, mut it) = first_interaction(&conn);
    it.served_model = "gpt-9-not-what-answered".into();
    let mut e = entry(&conn, seq);
    e.payload = Some(Payload::Interaction(it));
    let bytes = e.encode_to_vec();
    conn.execute(
        "UPDATE entries SET entry = ?1, entry_hash = ?2 WHERE seq = ?3",
        params![bytes, Sha256::digest(&bytes).to_vec(), seq as i64],
    )
    .unwrap();
    let (code, text) = verify(&path, Some(&key));
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "entry {}: does not link to entry {seq}: entry {seq} was edited",
            seq + 1
        )),
        "{text}"
    );

    // A deleted entry.
    let path = r.copy("deleted");
    let conn = db(&path);
    let (seq, _) = first_interaction(&conn);
    conn.execute("DELETE FROM entries WHERE seq = ?1", [seq as i64])
        .unwrap();
    let (code, text) = verify(&path, Some(&key));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(&format!("entry {seq}: is missing")), "{text}");

    // Two entries swapped.
    let path = r.copy("reordered");
    let conn = db(&path);
    let (seq, _) = first_interaction(&conn);
    let row = |s: u64| -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        conn.query_row(
            "SELECT entry, prev_hash, entry_hash FROM entries WHERE seq = ?1",
            [s as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    };
    let (a, b) = (row(seq), row(seq + 1));
    for (s, (entry, prev, hash)) in [(seq, b), (seq + 1, a)] {
        conn.execute(
            "UPDATE entries SET entry = ?1, prev_hash = ?2, entry_hash = ?3 WHERE seq = ?4",
            params![entry, prev, hash, s as i64],
        )
        .unwrap();
    }
    let (code, text) = verify(&path, Some(&key));
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("entry {seq}: holds entry {}", seq + 1)),
        "{text}"
    );

    // A blob edited, and a blob deleted.
    let path = r.copy("blob-edited");
    let conn = db(&path);
    let (seq, it) = first_interaction(&conn);
    let digest = it.input_messages[1].digest.clone();
    conn.execute(
        "UPDATE blobs SET data = ?1 WHERE digest = ?2",
        params![
            b"{\"role\":\"user\",\"content\":\"something else\"}".to_vec(),
            digest
        ],
    )
    .unwrap();
    let (code, text) = verify(&path, Some(&key));
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "entry {seq}: refers to blob {digest}, whose content was edited"
        )),
        "{text}"
    );

    let path = r.copy("blob-deleted");
    let conn = db(&path);
    conn.execute("DELETE FROM blobs WHERE digest = ?1", [&digest])
        .unwrap();
    let (code, text) = verify(&path, Some(&key));
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "entry {seq}: refers to blob {digest}, which is missing"
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rewritten_chain_needs_the_signing_key() {
    let r = recorded().await;
    let key = r.public_key();

    // An attacker edits a record and rewrites every link after it: the
    // checkpoints no longer match the chain.
    let path = r.copy("rechained");
    let conn = db(&path);
    let (seq, mut it) = first_interaction(&conn);
    it.tool_calls.clear();
    let mut e = entry(&conn, seq);
    e.payload = Some(Payload::Interaction(it));
    let bytes = e.encode_to_vec();
    conn.execute(
        "UPDATE entries SET entry = ?1 WHERE seq = ?2",
        params![bytes, seq as i64],
    )
    .unwrap();
    rechain_from(&conn, seq);
    let checkpoint = conn
        .query_row(
            "SELECT MIN(seq) FROM entries WHERE kind = 'checkpoint' AND seq > ?1",
            [seq as i64],
            |r| r.get::<_, i64>(0),
        )
        .unwrap();
    let (code, text) = verify(&path, None);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("entry {checkpoint}: is a checkpoint")),
        "{text}"
    );

    // ... and re-signs those checkpoints with a key of their own: only an
    // auditor holding the real public key can tell.
    let forger = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let last: i64 = conn
        .query_row("SELECT MAX(seq) FROM entries", [], |r| r.get(0))
        .unwrap();
    for s in seq..=last as u64 {
        let mut e = entry(&conn, s);
        if let Some(Payload::Checkpoint(c)) = &e.payload {
            let prev_hash: Vec<u8> = conn
                .query_row(
                    "SELECT entry_hash FROM entries WHERE seq = ?1",
                    [s as i64 - 1],
                    |r| r.get(0),
                )
                .unwrap();
            let head: [u8; 32] = prev_hash.try_into().unwrap();
            let forged = sidetrace::journal::chain::sign_checkpoint(
                &forger,
                &c.journal_id,
                s - 1,
                head,
                c.time.unwrap(),
                &c.reason,
            );
            e.payload = Some(Payload::Checkpoint(forged));
            conn.execute(
                "UPDATE entries SET entry = ?1 WHERE seq = ?2",
                params![e.encode_to_vec(), s as i64],
            )
            .unwrap();
        }
        rechain_from(&conn, s);
    }
    let (code, text) = verify(&path, None);
    assert_eq!(code, 0, "self-consistent without an anchor: {text}");
    assert!(text.contains("not anchored"));
    let (code, text) = verify(&path, Some(&key));
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("which is not among the trusted public keys (bad signature)"),
        "{text}"
    );

    // A checkpoint whose signature bytes were altered.
    let path = r.copy("bad-signature");
    let conn = db(&path);
    let seq = seq_of_kind(&conn, "checkpoint");
    let mut e = entry(&conn, seq);
    if let Some(Payload::Checkpoint(c)) = &mut e.payload {
        c.signature[0] ^= 0xff;
    }
    conn.execute(
        "UPDATE entries SET entry = ?1 WHERE seq = ?2",
        params![e.encode_to_vec(), seq as i64],
    )
    .unwrap();
    rechain_from(&conn, seq);
    let (code, text) = verify(&path, Some(&key));
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "entry {seq}: is a checkpoint with a bad signature"
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pruning_keeps_the_chain_verifiable() {
    let r = recorded().await;
    let key = r.public_key();
    let path = r.copy("pruned");
    let conn = db(&path);
    // Age one execution by 500 days (when it was recorded is not part of the chain's content checks).
    let old_us = (std::time::SystemTime::now() - std::time::Duration::from_secs(500 * 86_400))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    conn.execute(
        "UPDATE entries SET recorded_at_us = ?1 WHERE execution_id = 'exec-0'",
        [old_us],
    )
    .unwrap();
    let blobs_before: i64 = conn
        .query_row("SELECT COUNT(*) FROM blobs", [], |r| r.get(0))
        .unwrap();
    drop(conn);
    std::fs::copy(keys::default_path(&r.journal), keys::default_path(&path)).unwrap();

    let out = std::process::Command::new(BIN)
        .args(["journal", "prune", "--retention", "400d", "--journal"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("removed 1 executions") && text.contains("exec-0"),
        "{text}"
    );

    let (code, text) = verify(&path, Some(&key));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("pruned       1 times"), "{text}");
    let conn = db(&path);
    let blobs_after: i64 = conn
        .query_row("SELECT COUNT(*) FROM blobs", [], |r| r.get(0))
        .unwrap();
    assert!(
        blobs_after < blobs_before,
        "blobs only exec-0 used are gone"
    );
    let views = read_journal(&path);
    let ids: Vec<&str> = views.iter().map(|v| v.execution.id.as_str()).collect();
    assert!(
        !ids.contains(&"exec-0") && ids.contains(&"exec-1") && ids.contains(&"exec-2"),
        "{ids:?}"
    );
    // Every remaining interaction still resolves its messages.
    assert!(
        views
            .iter()
            .flat_map(|v| &v.interactions)
            .all(|i| i.input_messages.iter().all(|m| !m.parts.is_empty()))
    );

    // Emptying an entry without a prune record is caught.
    let seq = seq_of_kind(&conn, "interaction");
    let live: u64 = conn
        .query_row(
            "SELECT MIN(seq) FROM entries WHERE kind = 'interaction' AND entry IS NOT NULL",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap() as u64;
    assert!(live >= seq);
    conn.execute(
        "UPDATE entries SET entry = NULL WHERE seq = ?1",
        [live as i64],
    )
    .unwrap();
    let (code, text) = verify(&path, Some(&key));
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "entry {live}: was emptied, but no prune record accounts for it"
        )),
        "{text}"
    );

    let out = std::process::Command::new(BIN)
        .args(["journal", "prune", "--journal"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "no retention configured is an error"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_applies_retention_itself() {
    let r = recorded().await;
    let key = r.public_key();
    let path = r.copy("retained");
    std::fs::copy(keys::default_path(&r.journal), keys::default_path(&path)).unwrap();
    let old_us = (std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 86_400))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    db(&path)
        .execute(
            "UPDATE entries SET recorded_at_us = ?1 WHERE execution_id = 'exec-1'",
            [old_us],
        )
        .unwrap();
    let mut proxy = TestProxy::start(&[("/openai", "http://127.0.0.1:9")], |o| {
        o.journal = Some(path.clone());
        o.retention = Some("7d".into());
    })
    .await;
    let pruned = || {
        let conn =
            Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        conn.query_row(
            "SELECT COUNT(*) FROM entries WHERE kind = 'prune'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
            == 1
    };
    eventually("the proxy prunes at start", pruned).await;
    proxy.stop().await;
    let (code, text) = verify(&path, Some(&key));
    assert_eq!(code, 0, "{text}");
    let ids: Vec<String> = read_journal(&path)
        .into_iter()
        .map(|v| v.execution.id)
        .collect();
    assert!(
        !ids.contains(&"exec-1".to_owned()) && ids.contains(&"exec-0".to_owned()),
        "{ids:?}"
    );
}
