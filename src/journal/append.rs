//! Appending to the chain inside one transaction. The head (last seq and its
//! hash) is read from the table in the same write transaction, so any
//! process that appends — the proxy's writer, `journal prune` — extends the
//! same chain without coordination beyond SQLite's write lock.

use ed25519_dalek::SigningKey;
use prost::Message as _;
use rusqlite::{OptionalExtension, Transaction, params};

use crate::record::{Blob, Interaction, JournalEntry, Timestamp, journal_entry::Payload};

use super::chain::{self, Hash};

pub struct Appender<'t> {
    tx: &'t Transaction<'t>,
    journal_id: String,
    last_seq: u64,
    head: Hash,
    now: Timestamp,
    now_us: i64,
}

impl<'t> Appender<'t> {
    pub fn begin(tx: &'t Transaction<'t>, journal_id: &str) -> rusqlite::Result<Self> {
        let last: Option<(i64, Vec<u8>)> = tx
            .prepare_cached("SELECT seq, entry_hash FROM entries ORDER BY seq DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let (last_seq, head) = match last {
            Some((seq, hash)) => (seq as u64, hash.as_slice().try_into().unwrap_or([0; 32])),
            None => (0, chain::genesis(journal_id)),
        };
        let now = std::time::SystemTime::now();
        Ok(Self {
            tx,
            journal_id: journal_id.to_owned(),
            last_seq,
            head,
            now: Timestamp::from(now),
            now_us: now
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros() as i64,
        })
    }

    /// The last seq in the journal: when the transaction began, then as appended.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// `recorded_at` of the entries this transaction appends, in microseconds.
    pub fn recorded_at_us(&self) -> i64 {
        self.now_us
    }

    /// Appends one entry (and the blobs it refers to); returns its seq.
    pub fn append(&mut self, payload: Payload, blobs: &[Blob]) -> rusqlite::Result<u64> {
        self.append_entry(payload, blobs, |_| true)
            .map(|(e, _)| e.seq)
    }

    /// Appends one entry, storing the blobs `store` picks (the caller knows
    /// the others are stored already); returns the entry as written and its
    /// encoded size.
    pub fn append_entry(
        &mut self,
        payload: Payload,
        blobs: &[Blob],
        mut store: impl FnMut(&Blob) -> bool,
    ) -> rusqlite::Result<(JournalEntry, usize)> {
        if !blobs.is_empty() {
            let mut put_blob = self.tx.prepare_cached(
                "INSERT OR IGNORE INTO blobs (digest, size, data) VALUES (?1, ?2, ?3)",
            )?;
            for b in blobs.iter().filter(|b| store(b)) {
                put_blob.execute(params![b.digest, b.data.len() as i64, b.data])?;
            }
        }
        let seq = self.last_seq + 1;
        let (kind, execution_id, interaction_id) = describe(&payload);
        let entry = JournalEntry {
            seq,
            recorded_at: Some(self.now),
            prev_hash: self.head.to_vec(),
            payload: Some(payload),
        };
        let bytes = entry.encode_to_vec();
        let hash = chain::entry_hash(&bytes);
        self.tx
            .prepare_cached(
                "INSERT INTO entries (seq, kind, execution_id, interaction_id, recorded_at_us, entry, prev_hash, entry_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                seq as i64,
                kind,
                execution_id,
                interaction_id,
                self.now_us,
                bytes,
                self.head.as_slice(),
                hash.as_slice()
            ])?;
        self.last_seq = seq;
        self.head = hash;
        Ok((entry, bytes.len()))
    }

    /// Appends a checkpoint signing everything up to the current head.
    pub fn checkpoint(
        &mut self,
        key: &SigningKey,
        reason: &str,
    ) -> rusqlite::Result<(JournalEntry, usize)> {
        let c = chain::sign_checkpoint(
            key,
            &self.journal_id,
            self.last_seq,
            self.head,
            self.now,
            reason,
        );
        self.append_entry(Payload::Checkpoint(c), &[], |_| false)
    }
}

/// The indexed columns of an entry: kind, execution, interaction.
pub fn describe(payload: &Payload) -> (&'static str, Option<String>, Option<String>) {
    match payload {
        Payload::Execution(e) => ("execution", Some(e.id.clone()), None),
        Payload::ExecutionEnd(e) => ("execution_end", Some(e.execution_id.clone()), None),
        Payload::Interaction(i) => (
            "interaction",
            Some(i.execution_id.clone()),
            Some(i.id.clone()),
        ),
        Payload::InteractionStart(i) => (
            "interaction_start",
            Some(i.execution_id.clone()),
            Some(i.id.clone()),
        ),
        Payload::Checkpoint(_) => ("checkpoint", None, None),
        Payload::ChainBreak(_) => ("chain_break", None, None),
        Payload::Gap(_) => ("gap", None, None),
        Payload::Prune(_) => ("prune", None, None),
    }
}

/// Digests of the blobs an entry refers to (message contents, tool
/// definitions, stored bodies, MCP params, results and resource contents).
pub fn blob_refs(payload: &Payload) -> Vec<&str> {
    match payload {
        Payload::Interaction(i) | Payload::InteractionStart(i) => interaction_blob_refs(i),
        _ => Vec::new(),
    }
}

/// Digests of the blobs an interaction record refers to.
pub fn interaction_blob_refs(it: &Interaction) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    if let Some(s) = &it.system_instructions {
        out.push(&s.digest);
    }
    out.extend(it.input_messages.iter().map(|m| m.digest.as_str()));
    out.extend(it.output_messages.iter().map(|m| m.digest.as_str()));
    out.extend(it.tool_definitions.iter().map(|t| t.digest.as_str()));
    if let Some(http) = &it.http {
        for body in [&http.request_body, &http.response_body]
            .into_iter()
            .flatten()
        {
            out.push(&body.stored_digest);
        }
    }
    if let Some(m) = &it.mcp {
        out.extend([
            m.params_digest.as_str(),
            m.result_digest.as_str(),
            m.capabilities_digest.as_str(),
            m.raw_digest.as_str(),
            m.response_raw_digest.as_str(),
        ]);
        // MCP resource contents are stored; a model's context refs point
        // into its messages instead.
        out.extend(it.context_refs.iter().map(|r| r.digest.as_str()));
    }
    out.retain(|d| !d.is_empty());
    out
}
