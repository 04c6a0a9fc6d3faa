//! The journal's single writer: a dedicated thread that drains a bounded
//! queue and commits whatever has accumulated as one transaction (group
//! commit), so the proxy never waits on the disk and many records share one
//! commit. It assigns sequence numbers, so entries are gap-free and ordered
//! as committed. A failed batch is counted as lost and logged loudly; the
//! next batch is tried afresh.

use std::time::{Instant, SystemTime};

use prost::Message as _;
use rusqlite::{Connection, params};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::record::{Blob, JournalEntry, journal_entry::Payload, timestamp};

/// At most this many commands go into one transaction.
const MAX_BATCH: usize = 512;

pub enum Command {
    Append {
        payload: Box<Payload>,
        blobs: Vec<Blob>,
    },
    /// Acknowledged once everything queued before it is committed.
    Flush(oneshot::Sender<()>),
    /// Commit what is queued and stop.
    Close(oneshot::Sender<()>),
}

pub struct Writer {
    conn: Connection,
    next_seq: u64,
    metrics: std::sync::Arc<Metrics>,
}

impl Writer {
    pub fn new(conn: Connection, metrics: std::sync::Arc<Metrics>) -> rusqlite::Result<Self> {
        let last: Option<i64> = conn.query_row("SELECT MAX(seq) FROM entries", [], |r| r.get(0))?;
        Ok(Self {
            conn,
            next_seq: last.unwrap_or(0) as u64 + 1,
            metrics,
        })
    }

    /// Runs until a `Close` command arrives or every sender is gone.
    pub fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            let mut acks = Vec::new();
            let mut closing = false;
            let mut appends = Vec::with_capacity(batch.len());
            for c in batch {
                match c {
                    Command::Append { payload, blobs } => appends.push((*payload, blobs)),
                    Command::Flush(ack) => acks.push(ack),
                    Command::Close(ack) => {
                        acks.push(ack);
                        closing = true;
                    }
                }
            }
            if !appends.is_empty() {
                self.commit(appends);
            }
            for ack in acks {
                let _ = ack.send(());
            }
            if closing {
                break;
            }
        }
        if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
            tracing::warn!(error = %e, "journal checkpoint on close failed");
        }
    }

    fn commit(&mut self, appends: Vec<(Payload, Vec<Blob>)>) {
        let started = Instant::now();
        let count = appends.len() as u64;
        let first_seq = self.next_seq;
        match self.try_commit(appends) {
            Ok(()) => {
                self.metrics.journal_written(count, started.elapsed());
            }
            Err(e) => {
                self.next_seq = first_seq;
                self.metrics.journal_lost(count);
                tracing::error!(
                    error = %e,
                    records = count,
                    "JOURNAL WRITE FAILED: {count} records were not recorded"
                );
            }
        }
    }

    fn try_commit(&mut self, appends: Vec<(Payload, Vec<Blob>)>) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut put_blob = tx.prepare_cached(
                "INSERT OR IGNORE INTO blobs (digest, size, data) VALUES (?1, ?2, ?3)",
            )?;
            let mut put_entry = tx.prepare_cached(
                "INSERT INTO entries (seq, kind, execution_id, interaction_id, recorded_at_us, entry)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let now = SystemTime::now();
            let recorded_at_us = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros() as i64;
            for (payload, blobs) in appends {
                for b in &blobs {
                    put_blob.execute(params![b.digest, b.data.len() as i64, b.data])?;
                }
                let (kind, execution_id, interaction_id) = describe(&payload);
                let entry = JournalEntry {
                    seq: self.next_seq,
                    recorded_at: Some(timestamp(now)),
                    prev_hash: Vec::new(),
                    payload: Some(payload),
                };
                put_entry.execute(params![
                    self.next_seq as i64,
                    kind,
                    execution_id,
                    interaction_id,
                    recorded_at_us,
                    entry.encode_to_vec()
                ])?;
                self.next_seq += 1;
            }
        }
        tx.commit()
    }
}

/// The indexed columns of an entry.
fn describe(payload: &Payload) -> (&'static str, String, Option<String>) {
    match payload {
        Payload::Execution(e) => ("execution", e.id.clone(), None),
        Payload::ExecutionEnd(e) => ("execution_end", e.execution_id.clone(), None),
        Payload::Interaction(i) => ("interaction", i.execution_id.clone(), Some(i.id.clone())),
    }
}
