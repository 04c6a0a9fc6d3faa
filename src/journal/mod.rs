//! The journal: the system of record, an embedded SQLite file whose entries
//! form a hash chain with signed checkpoints.
//!
//! Writers hand records to a bounded queue (backpressure on capture tasks,
//! never on proxied traffic) drained by one writer thread that commits in
//! batches. Message contents and bodies go to a content-addressed blob
//! table, so a conversation resent on every turn costs storage for its new
//! content only. In write-ahead mode a caller can wait until its record is
//! fsynced; if the journal cannot be written, health turns bad (and
//! write-ahead callers are refused) until a write succeeds again.

mod append;
pub mod chain;
pub mod keys;
mod known_blobs;
pub mod prune;
pub mod reader;
pub mod schema;
pub mod tail;
pub mod verify;
mod wal_checkpointer;
mod writer;
mod writers;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::record::journal_entry::Payload;
use crate::record::{Blob, Execution, ExecutionEnd, Interaction};

pub use append::{blob_refs, interaction_blob_refs};
pub use schema::Durability;
use writer::{Command, Writer, WriterSetup};

/// Records waiting for the writer, at most: two full commit batches.
/// Behind it, capture tasks wait (each holding a backlog place), and behind
/// those, new requests (`capture::pool::MAX_BACKLOG`).
const QUEUE_DEPTH: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {0}: {1}")]
    Io(String, std::io::Error),
    #[error("journal {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("no journal at {0} (has sidetrace recorded anything there yet?)")]
    Missing(String),
    #[error("{0}")]
    Incompatible(String),
    #[error("journal {0}: entry {1} is corrupt: {2}")]
    Corrupt(String, u64, String),
    #[error(transparent)]
    Key(#[from] keys::KeyError),
}

impl JournalError {
    pub fn sqlite(path: &Path, source: rusqlite::Error) -> Self {
        Self::Sqlite {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The default journal location: `$XDG_DATA_HOME/sidetrace/journal.db`.
pub fn default_path() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("sidetrace")
        .join("journal.db")
}

/// How a journal is opened for writing.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    pub path: PathBuf,
    pub durability: Durability,
    pub signing_key: PathBuf,
    /// Sign a checkpoint after this many entries...
    pub checkpoint_every: u64,
    /// ...and at least this often while anything is unsigned.
    pub checkpoint_interval: Duration,
    pub max_size: Option<u64>,
}

impl JournalOptions {
    /// Defaults for a journal at `path` (key beside it).
    pub fn at(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            durability: Durability::Batched,
            signing_key: keys::default_path(path),
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(60),
            max_size: None,
        }
    }
}

/// Whether the last write succeeded, for `/readyz` and error messages.
#[derive(Debug)]
pub struct JournalHealth {
    ok: AtomicBool,
    last_error: Mutex<String>,
}

impl Default for JournalHealth {
    fn default() -> Self {
        Self {
            ok: AtomicBool::new(true),
            last_error: Mutex::new(String::new()),
        }
    }
}

impl JournalHealth {
    pub fn is_ok(&self) -> bool {
        self.ok.load(Ordering::SeqCst)
    }

    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    fn set_ok(&self) {
        self.ok.store(true, Ordering::SeqCst);
    }

    fn set_failed(&self, error: &str) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = error.to_owned();
        }
        self.ok.store(false, Ordering::SeqCst);
    }
}

/// A record could not be made durable.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the journal cannot be written: {0}")]
pub struct Unavailable(pub String);

/// A handle for appending to an open journal. Cheap to clone.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Command>,
    metrics: Arc<Metrics>,
    health: Arc<JournalHealth>,
    durability: Durability,
    fingerprint_key: [u8; 32],
    journal_id: Arc<str>,
    path: Arc<PathBuf>,
    commits: tokio::sync::watch::Receiver<u64>,
    tail: Arc<tail::Tail>,
}

/// Waits for the writer thread to finish.
pub struct WriterThread(std::thread::JoinHandle<()>);

impl Journal {
    /// Opens (or creates) the journal and its signing key, records a chain
    /// break if the last run did not close it, and starts the writer thread
    /// (and, inside a runtime, the checkpoint timer).
    pub fn open(
        options: &JournalOptions,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, WriterThread), JournalError> {
        let key = keys::load_or_create(&options.signing_key)?;
        let health = Arc::new(JournalHealth::default());
        let tail = Arc::new(tail::Tail::default());
        let writer = Writer::open(
            WriterSetup {
                path: options.path.clone(),
                durability: options.durability,
                max_size: options.max_size,
                key,
                checkpoint_every: options.checkpoint_every.max(1),
            },
            metrics.clone(),
            health.clone(),
            tail.clone(),
        )?;
        let journal_id: Arc<str> = writer.journal_id().into();
        let commits = writer.commits();
        let fingerprint_key = {
            let conn = schema::open_for_reading(&options.path)?;
            let key_hex = schema::get_meta(&conn, "fingerprint_key")
                .map_err(|e| JournalError::sqlite(&options.path, e))?
                .unwrap_or_default();
            let mut key = [0u8; 32];
            hex::decode_to_slice(&key_hex, &mut key).map_err(|e| {
                JournalError::Incompatible(format!(
                    "{}: bad fingerprint key: {e}",
                    options.path.display()
                ))
            })?;
            key
        };
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| JournalError::Io(options.path.display().to_string(), e))?;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let ticker = tx.clone();
            let interval = options.checkpoint_interval;
            runtime.spawn(async move {
                let mut tick =
                    tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
                loop {
                    tick.tick().await;
                    if ticker
                        .send(Command::Checkpoint("interval".into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
        Ok((
            Self {
                tx,
                metrics,
                health,
                durability: options.durability,
                fingerprint_key,
                journal_id,
                path: Arc::new(options.path.clone()),
                commits,
                tail,
            },
            WriterThread(handle),
        ))
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    pub fn health(&self) -> &Arc<JournalHealth> {
        &self.health
    }

    pub fn journal_id(&self) -> &str {
        &self.journal_id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Changes whenever a batch is committed (to the last seq written).
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.clone()
    }

    /// What this process committed lately, for a follower (`tail`).
    pub fn tail(&self) -> &Arc<tail::Tail> {
        &self.tail
    }

    /// The per-journal key for credential fingerprints.
    pub fn fingerprint_key(&self) -> [u8; 32] {
        self.fingerprint_key
    }

    /// Opens an execution: in write-ahead mode, durably, before its first request goes upstream.
    pub async fn append_execution(&self, execution: Execution) -> Result<(), Unavailable> {
        match self.durability {
            Durability::WriteAhead => self
                .append_durable(Payload::Execution(execution), Vec::new())
                .await
                .map(drop),
            Durability::Batched => {
                self.append(Box::new(Payload::Execution(execution)), Vec::new())
                    .await;
                Ok(())
            }
        }
    }

    /// Closes an execution (and signs a checkpoint); in write-ahead mode,
    /// waits until it and everything before it is durable.
    pub async fn append_execution_end(&self, end: ExecutionEnd) {
        match self.durability {
            Durability::WriteAhead => {
                if let Err(e) = self
                    .append_durable(Payload::ExecutionEnd(end), Vec::new())
                    .await
                {
                    tracing::error!(error = %e, "could not record the end of an execution");
                }
            }
            Durability::Batched => {
                self.append(Box::new(Payload::ExecutionEnd(end)), Vec::new())
                    .await
            }
        }
    }

    /// Not an `async fn`: the record is boxed before the future exists, so
    /// a task awaiting it does not carry the record inline (3 KB) while the
    /// queue is full.
    pub fn append_interaction(
        &self,
        interaction: Interaction,
        blobs: Vec<Blob>,
    ) -> impl std::future::Future<Output = ()> + '_ {
        self.append(Box::new(Payload::Interaction(interaction)), blobs)
    }

    /// Appends and waits until the entry is committed (fsynced in write-ahead mode).
    pub async fn append_durable(
        &self,
        payload: Payload,
        blobs: Vec<Blob>,
    ) -> Result<u64, Unavailable> {
        let (ack, done) = oneshot::channel();
        let cmd = Command::Append {
            payload: Box::new(payload),
            blobs,
            ack: Some(ack),
        };
        if self.tx.send(cmd).await.is_err() {
            self.metrics.journal_lost(1);
            return Err(Unavailable("the journal is closed".into()));
        }
        match done.await {
            Ok(r) => r.map_err(Unavailable),
            Err(_) => Err(Unavailable("the journal writer stopped".into())),
        }
    }

    async fn append(&self, payload: Box<Payload>, blobs: Vec<Blob>) {
        let cmd = Command::Append {
            payload,
            blobs,
            ack: None,
        };
        if self.tx.send(cmd).await.is_err() {
            self.metrics.journal_lost(1);
            tracing::error!(
                "JOURNAL CLOSED: a record arrived after the journal was closed and was not recorded"
            );
        }
    }

    /// Signs a checkpoint now if anything is unsigned.
    pub async fn checkpoint(&self, reason: &str) {
        let _ = self.tx.send(Command::Checkpoint(reason.to_owned())).await;
        self.flush().await;
    }

    /// Waits until everything appended so far is committed.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Command::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Commits everything queued, signs a final checkpoint, marks the
    /// journal cleanly closed and stops the writer.
    pub async fn close(self, thread: WriterThread) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Command::Close(ack)).await.is_ok() {
            let _ = done.await;
        }
        drop(self);
        let _ = tokio::task::spawn_blocking(move || thread.0.join()).await;
    }
}
