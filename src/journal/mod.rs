//! The journal: the system of record, an embedded SQLite file.
//!
//! Writers hand records to a bounded queue (backpressure, never loss) drained
//! by one writer thread that commits in batches. Message contents and bodies
//! go to a content-addressed blob table, so a conversation resent on every
//! turn costs storage for its new content only. On a write failure the lost
//! records are counted in metrics and logged; a crash loses at most the batch
//! being committed.

pub mod reader;
pub mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::record::journal_entry::Payload;
use crate::record::{Blob, Execution, ExecutionEnd, Interaction};

use writer::{Command, Writer};

/// Records waiting for the writer, at most.
const QUEUE_DEPTH: usize = 4096;

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

/// A handle for appending to an open journal. Cheap to clone.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Command>,
    metrics: Arc<Metrics>,
    fingerprint_key: [u8; 32],
    path: Arc<PathBuf>,
}

/// Waits for the writer thread to finish.
pub struct WriterThread(std::thread::JoinHandle<()>);

impl Journal {
    /// Opens (or creates) the journal and starts its writer thread.
    pub fn open(path: &Path, metrics: Arc<Metrics>) -> Result<(Self, WriterThread), JournalError> {
        let conn = schema::open_for_writing(path)?;
        let key_hex = schema::get_meta(&conn, "fingerprint_key")
            .map_err(|e| JournalError::sqlite(path, e))?
            .unwrap_or_default();
        let mut fingerprint_key = [0u8; 32];
        hex::decode_to_slice(&key_hex, &mut fingerprint_key).map_err(|e| {
            JournalError::Incompatible(format!("{}: bad fingerprint key: {e}", path.display()))
        })?;
        let writer =
            Writer::new(conn, metrics.clone()).map_err(|e| JournalError::sqlite(path, e))?;
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| JournalError::Io(path.display().to_string(), e))?;
        Ok((
            Self {
                tx,
                metrics,
                fingerprint_key,
                path: Arc::new(path.to_owned()),
            },
            WriterThread(handle),
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The per-journal key for credential fingerprints.
    pub fn fingerprint_key(&self) -> [u8; 32] {
        self.fingerprint_key
    }

    pub async fn append_execution(&self, execution: Execution) {
        self.append(Payload::Execution(execution), Vec::new()).await;
    }

    pub async fn append_execution_end(&self, end: ExecutionEnd) {
        self.append(Payload::ExecutionEnd(end), Vec::new()).await;
    }

    pub async fn append_interaction(&self, interaction: Interaction, blobs: Vec<Blob>) {
        self.append(Payload::Interaction(interaction), blobs).await;
    }

    async fn append(&self, payload: Payload, blobs: Vec<Blob>) {
        if self
            .tx
            .send(Command::Append {
                payload: Box::new(payload),
                blobs,
            })
            .await
            .is_err()
        {
            self.metrics.journal_lost(1);
            tracing::error!(
                "JOURNAL CLOSED: a record arrived after the journal was closed and was not recorded"
            );
        }
    }

    /// Waits until everything appended so far is committed.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Command::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Commits everything queued and stops the writer.
    pub async fn close(self, thread: WriterThread) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Command::Close(ack)).await.is_ok() {
            let _ = done.await;
        }
        drop(self);
        let _ = tokio::task::spawn_blocking(move || thread.0.join()).await;
    }
}
