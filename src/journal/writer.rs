//! The journal's single writer: a dedicated thread that drains a bounded
//! queue and commits whatever has accumulated as one transaction (group
//! commit: in write-ahead mode many requests share one fsync; in batched
//! mode, where nobody waits, records gather for `LINGER` first). Every commit
//! extends the hash chain; checkpoints are signed every N entries, on
//! request (interval, execution end) and at close.
//!
//! Failure: a batch that cannot be committed (disk full, journal too big,
//! file removed) is rolled back; its records are counted as lost, callers
//! waiting for durability are told, health turns bad, and the next batch
//! that commits starts with a `gap` entry saying what was lost. If the file
//! was removed or replaced, a new journal is started at the path whose first
//! entry is a `chain_break` saying so.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use ed25519_dalek::SigningKey;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::record::{Blob, ChainBreak, Gap, Timestamp, journal_entry::Payload};

use super::append::Appender;
use super::known_blobs::KnownBlobs;
use super::schema::{self, Durability};
use super::tail::{Committed, Tail};
use super::wal_checkpointer::WalCheckpointer;
use super::writers;
use super::{JournalError, JournalHealth};

/// At most this many commands go into one transaction.
const MAX_BATCH: usize = 512;
/// A batch this large means records are queueing: commit it without
/// yielding to forwarding (`priority::yield_point`).
const BEHIND: usize = 64;

/// In batched mode, how long the writer lets records gather before it
/// commits the first of them. Every commit rewrites the index and table
/// pages it touches, so a commit per record or two (what a 500–2,000 req/s
/// agent fleet produced) wrote, checksummed and copied back several pages
/// per record; gathering for 5 ms cut the journal's CPU per record by
/// about a third at those rates. Nothing waits for a batched commit, and a
/// crash loses at most these few milliseconds more.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// Whether to wait `LINGER` before committing, given the first command
/// and how many are queued behind it: only for records nobody waits for
/// (batched, no ack), and only when records are not already piling up.
fn lingers(durability: Durability, first: &Command, queued: usize) -> bool {
    durability == Durability::Batched
        && matches!(first, Command::Append { ack: None, .. })
        && queued < BEHIND
}

pub type Ack = oneshot::Sender<Result<u64, String>>;

pub enum Command {
    Append {
        payload: Box<Payload>,
        blobs: Vec<Blob>,
        /// Told once the entry is committed (or could not be).
        ack: Option<Ack>,
    },
    /// Sign a checkpoint if anything is unsigned.
    Checkpoint(String),
    /// Acknowledged once everything queued before it is committed.
    Flush(oneshot::Sender<()>),
    /// Commit what is queued, sign a final checkpoint, mark the journal closed, stop.
    Close(oneshot::Sender<()>),
}

pub struct WriterSetup {
    pub path: PathBuf,
    pub durability: Durability,
    pub max_size: Option<u64>,
    pub key: SigningKey,
    pub checkpoint_every: u64,
}

pub struct Writer {
    setup: WriterSetup,
    conn: Option<Connection>,
    /// (device, inode) of the file `conn` has open.
    identity: Option<(u64, u64)>,
    journal_id: String,
    since_checkpoint: u64,
    pending_break: Option<ChainBreak>,
    pending_gap: Option<Gap>,
    metrics: Arc<Metrics>,
    health: Arc<JournalHealth>,
    /// The last committed seq, for readers that follow the journal (export).
    committed: tokio::sync::watch::Sender<u64>,
    /// This process's entry among the journal's writers.
    registration: Option<String>,
    /// Blobs known to be stored (see `known_blobs`).
    known: KnownBlobs,
    /// The last seq this writer appended: another value at the head of the
    /// chain means another process appended since.
    last_own_seq: u64,
    /// Committed entries for a follower in this process (the exporter).
    tail: Arc<Tail>,
    /// Copies the WAL back into the file, off this thread (see `wal_checkpointer`).
    wal: Option<WalCheckpointer>,
}

impl Writer {
    /// Opens the journal; records a chain break if the last writer did not close it.
    pub fn open(
        setup: WriterSetup,
        metrics: Arc<Metrics>,
        health: Arc<JournalHealth>,
        tail: Arc<Tail>,
    ) -> Result<Self, JournalError> {
        let mut w = Self {
            setup,
            conn: None,
            identity: None,
            journal_id: String::new(),
            since_checkpoint: 0,
            pending_break: None,
            pending_gap: None,
            metrics,
            health,
            committed: tokio::sync::watch::Sender::new(0),
            registration: None,
            known: KnownBlobs::default(),
            last_own_seq: 0,
            tail,
            wal: None,
        };
        w.open_file()?;
        if w.pending_break.is_some() {
            // Say so at once, not only when the next record arrives.
            w.commit(Vec::new(), None).map_err(|e| {
                JournalError::Incompatible(format!("cannot record the chain break: {e}"))
            })?;
        }
        Ok(w)
    }

    pub fn journal_id(&self) -> &str {
        &self.journal_id
    }

    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed.subscribe()
    }

    fn open_file(&mut self) -> Result<(), JournalError> {
        // The old file's copier finishes before the new one starts.
        self.wal = None;
        let path = &self.setup.path;
        let mut conn = schema::open_for_writing(path, self.setup.durability, self.setup.max_size)?;
        let sq = |e| JournalError::sqlite(path, e);
        let journal_id = schema::get_meta(&conn, "journal_id")
            .map_err(sq)?
            .unwrap_or_default();
        let (registration, dead) = writers::register(&mut conn).map_err(sq)?;
        if !dead.is_empty() && self.pending_break.is_none() {
            let last_seq: i64 = conn
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM entries", [], |r| {
                    r.get(0)
                })
                .map_err(sq)?;
            let last_checkpoint: i64 = conn
                .query_row(
                    "SELECT COALESCE(MAX(seq), 0) FROM entries WHERE kind = 'checkpoint'",
                    [],
                    |r| r.get(0),
                )
                .map_err(sq)?;
            let pids: Vec<String> = dead
                .iter()
                .filter(|d| d.pid != 0)
                .map(|d| d.pid.to_string())
                .collect();
            tracing::warn!(
                last_seq,
                writers = %pids.join(","),
                "the journal was not closed cleanly (sidetrace was killed or crashed); recording a chain break"
            );
            let who = if pids.is_empty() {
                "sidetrace".to_owned()
            } else {
                format!("sidetrace (pid {})", pids.join(", "))
            };
            self.pending_break = Some(ChainBreak {
                reason: format!(
                    "{who} did not shut down cleanly (killed or crashed): records that were in flight or not yet committed at that moment are missing"
                ),
                last_seq: last_seq as u64,
                last_checkpoint_seq: last_checkpoint as u64,
            });
        }
        self.registration = Some(registration);
        let public = hex::encode(self.setup.key.verifying_key().as_bytes());
        schema::set_meta(&conn, "public_key", &public).map_err(sq)?;
        self.identity = file_identity(path);
        self.journal_id = journal_id;
        self.wal = Some(WalCheckpointer::attach(&mut conn, path));
        self.conn = Some(conn);
        self.known.clear();
        Ok(())
    }

    /// Makes sure the connection writes to the file at the path; reopens
    /// (starting a new journal) if the file was removed or replaced.
    fn ensure_file(&mut self) -> Result<(), String> {
        if self.conn.is_some() && file_identity(&self.setup.path) == self.identity {
            return Ok(());
        }
        if self.conn.take().is_some() {
            tracing::error!(path = %self.setup.path.display(), "THE JOURNAL FILE WAS REMOVED OR REPLACED while sidetrace was running; starting a new journal there");
            for suffix in ["-wal", "-shm"] {
                let mut p = self.setup.path.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(p));
            }
            self.pending_break = Some(ChainBreak {
                reason: format!(
                    "the journal file {} was removed or replaced while sidetrace was running; earlier records are not in this journal",
                    self.setup.path.display()
                ),
                last_seq: 0,
                last_checkpoint_seq: 0,
            });
        }
        self.open_file().map_err(|e| e.to_string())
    }

    /// Runs until `Close` arrives or every sender is gone.
    pub fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        // In batched mode no request waits for a commit: background work.
        // In write-ahead mode requests do, so it keeps forwarding's priority.
        if self.setup.durability == Durability::Batched {
            crate::priority::lower_this_thread();
        }
        while let Some(first) = rx.blocking_recv() {
            if lingers(self.setup.durability, &first, rx.len()) {
                std::thread::sleep(LINGER);
            }
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            crate::priority::set_behind(batch.len() >= BEHIND);
            let mut appends = Vec::with_capacity(batch.len());
            let mut checkpoint: Option<String> = None;
            let mut flushes = Vec::new();
            let mut close = None;
            for c in batch {
                match c {
                    Command::Append {
                        payload,
                        blobs,
                        ack,
                    } => {
                        if matches!(*payload, Payload::ExecutionEnd(_)) {
                            checkpoint = Some("execution end".into());
                        }
                        appends.push((*payload, blobs, ack));
                    }
                    Command::Checkpoint(reason) => {
                        checkpoint.get_or_insert(reason);
                    }
                    Command::Flush(ack) => flushes.push(ack),
                    Command::Close(ack) => close = Some(ack),
                }
            }
            if close.is_some() {
                checkpoint = Some("shutdown".into());
            }
            if !appends.is_empty() || checkpoint.is_some() {
                self.write(appends, checkpoint);
            }
            for ack in flushes {
                let _ = ack.send(());
            }
            if let Some(ack) = close {
                self.close();
                let _ = ack.send(());
                return;
            }
        }
        self.close();
    }

    fn write(
        &mut self,
        appends: Vec<(Payload, Vec<Blob>, Option<Ack>)>,
        checkpoint: Option<String>,
    ) {
        let started = Instant::now();
        let count = appends.len() as u64;
        // In write-ahead mode only a durable append proves a request can be
        // recorded again; a small background record fitting is not enough.
        let proves_health = self.setup.durability == Durability::Batched
            || appends.iter().any(|(_, _, ack)| ack.is_some());
        let mut acks = Vec::with_capacity(appends.len());
        let mut records = Vec::with_capacity(appends.len());
        for (payload, blobs, ack) in appends {
            records.push((payload, blobs));
            acks.push(ack);
        }
        match self.commit(records, checkpoint.as_deref()) {
            Ok(seqs) => {
                self.metrics.journal_written(count, started.elapsed());
                if proves_health {
                    self.health.set_ok();
                }
                for (ack, seq) in acks.into_iter().zip(seqs) {
                    if let Some(ack) = ack {
                        let _ = ack.send(Ok(seq));
                    }
                }
            }
            Err(e) => {
                self.health.set_failed(&e);
                if count > 0 {
                    self.metrics.journal_lost(count);
                    let now = Timestamp::from(SystemTime::now());
                    let gap = self.pending_gap.get_or_insert_with(|| Gap {
                        first_lost: Some(now),
                        reason: e.clone(),
                        ..Default::default()
                    });
                    gap.lost_records += count;
                    gap.last_lost = Some(now);
                    tracing::error!(error = %e, records = count, "JOURNAL WRITE FAILED: {count} records were not recorded");
                } else {
                    tracing::error!(error = %e, "JOURNAL WRITE FAILED: could not sign a checkpoint");
                }
                for ack in acks.into_iter().flatten() {
                    let _ = ack.send(Err(e.clone()));
                }
            }
        }
    }

    /// One transaction: any pending break and gap, the records, and a
    /// checkpoint when due. Returns the records' seqs.
    fn commit(
        &mut self,
        records: Vec<(Payload, Vec<Blob>)>,
        checkpoint: Option<&str>,
    ) -> Result<Vec<u64>, String> {
        self.ensure_file()?;
        let key = &self.setup.key;
        let every = self.setup.checkpoint_every;
        let follow = self.tail.is_followed();
        let known = &mut self.known;
        let conn = self.conn.as_mut().expect("ensure_file opened it");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| e.to_string())?;
        let mut seqs = Vec::with_capacity(records.len());
        let mut committed = Vec::with_capacity(if follow { records.len() } else { 0 });
        let mut stored = Vec::new();
        let mut since = self.since_checkpoint;
        let last;
        {
            let mut a = Appender::begin(&tx, &self.journal_id).map_err(|e| e.to_string())?;
            if a.last_seq() != self.last_own_seq {
                // Someone else appended (prune deletes blobs): trust the table again.
                known.clear();
            }
            let recorded_at_us = a.recorded_at_us();
            let mut keep = |entry: crate::record::JournalEntry, size: usize, blobs: Vec<Blob>| {
                if follow {
                    let size = size + blobs.iter().map(|b| b.data.len()).sum::<usize>();
                    committed.push(Committed {
                        seq: entry.seq,
                        recorded_at_us,
                        entry,
                        blobs,
                        size,
                    });
                }
            };
            let err = |e: rusqlite::Error| e.to_string();
            if let Some(b) = &self.pending_break {
                let (entry, size) = a
                    .append_entry(Payload::ChainBreak(b.clone()), &[], |_| false)
                    .map_err(err)?;
                keep(entry, size, Vec::new());
                since += 1;
            }
            if let Some(g) = &self.pending_gap {
                let (entry, size) = a
                    .append_entry(Payload::Gap(g.clone()), &[], |_| false)
                    .map_err(err)?;
                keep(entry, size, Vec::new());
                since += 1;
            }
            for (payload, blobs) in records {
                crate::priority::yield_point();
                let (entry, size) = a
                    .append_entry(payload, &blobs, |b| {
                        let new = !known.contains(&b.digest);
                        if new {
                            stored.push(b.digest.clone());
                        }
                        new
                    })
                    .map_err(err)?;
                seqs.push(entry.seq);
                keep(entry, size, blobs);
                since += 1;
            }
            let reason = if since >= every {
                Some(format!("every {every} entries"))
            } else {
                checkpoint.filter(|_| since > 0).map(str::to_owned)
            };
            if let Some(reason) = reason {
                let (entry, size) = a.checkpoint(key, &reason).map_err(err)?;
                keep(entry, size, Vec::new());
                since = 0;
            }
            last = a.last_seq();
        }
        tx.commit().map_err(|e| e.to_string())?;
        if let Some(wal) = &mut self.wal {
            wal.after_commit(conn);
        }
        for d in &stored {
            self.known.insert(d);
        }
        self.last_own_seq = last;
        self.tail.push(committed);
        match seqs.last() {
            Some(&seq) => {
                self.committed.send_replace(seq);
            }
            None => self.committed.send_modify(|_| {}),
        }
        self.since_checkpoint = since;
        self.pending_break = None;
        self.pending_gap = None;
        Ok(seqs)
    }

    fn close(&mut self) {
        if self.since_checkpoint > 0 || self.pending_gap.is_some() {
            self.write(Vec::new(), Some("shutdown".into()));
        }
        if let Some(conn) = &self.conn {
            if let Some(me) = &self.registration
                && let Err(e) = writers::unregister(conn, me)
            {
                tracing::warn!(error = %e, "could not mark the journal closed; the next start will record a chain break");
            }
            // Stop the copier first: a copy it is running would make this one busy.
            self.wal = None;
            if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
                tracing::warn!(error = %e, "journal WAL checkpoint on close failed");
            }
        }
    }
}

fn file_identity(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
