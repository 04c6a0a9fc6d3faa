//! The exporter's view of the journal: entries after its cursor, the
//! records a span needs from elsewhere in the journal, and the cursor
//! itself (in the journal's meta table, so it survives restarts).
//!
//! The cursor is kept in memory and saved at most once per
//! `CURSOR_SAVE_EVERY` (and when the exporter stops): a write transaction
//! per batch cost more than building the batch. After a crash, at most that
//! much is sent again, with the same span ids, which collectors deduplicate
//! or store twice — never lose.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use rusqlite::{Connection, OptionalExtension, params};

use crate::journal::{JournalError, schema};
use crate::record::inputs::InputResolver;
use crate::record::{Execution, Interaction, JournalEntry, Message, journal_entry::Payload};

const CURSOR_KEY: &str = "export_cursor";
const CURSOR_SAVE_EVERY: Duration = Duration::from_secs(1);
/// Execution records kept for the spans of their interactions, at most.
const EXECUTIONS_KEPT: usize = 1024;

/// One journal row; `entry` is None for a pruned entry.
pub struct Row {
    pub seq: u64,
    pub recorded_at_us: i64,
    pub entry: Option<JournalEntry>,
}

pub struct Source {
    read: Connection,
    write: Connection,
    path: PathBuf,
    inputs: RefCell<InputResolver>,
    /// Execution id → the latest opening record seen (its seq): every span
    /// of an execution needs it, and export meets them in seq order.
    executions: RefCell<HashMap<String, (u64, Arc<Execution>)>>,
    /// (in memory, as saved, when saved)
    cursor: Cell<u64>,
    saved: Cell<(u64, Instant)>,
}

impl Source {
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let read = schema::open_for_reading(path)?;
        let cursor = schema::get_meta(&read, CURSOR_KEY)
            .map_err(|e| JournalError::sqlite(path, e))?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(Self {
            read,
            write: schema::open_existing(path)?,
            path: path.to_owned(),
            inputs: RefCell::default(),
            executions: RefCell::default(),
            cursor: Cell::new(cursor),
            saved: Cell::new((cursor, Instant::now())),
        })
    }

    fn sq(&self) -> impl Fn(rusqlite::Error) -> JournalError + '_ {
        |e| JournalError::sqlite(&self.path, e)
    }

    /// One read transaction for the reads that follow until it is dropped:
    /// a consistent view, and one WAL snapshot instead of one per query.
    pub fn snapshot(&self) -> Result<rusqlite::Transaction<'_>, JournalError> {
        self.read.unchecked_transaction().map_err(self.sq())
    }

    /// Up to `limit` entries after `seq`, in order.
    pub fn after(&self, seq: u64, limit: usize) -> Result<Vec<Row>, JournalError> {
        let mut stmt = self
            .read
            .prepare_cached("SELECT seq, recorded_at_us, entry FROM entries WHERE seq > ?1 ORDER BY seq LIMIT ?2")
            .map_err(self.sq())?;
        let rows = stmt
            .query_map(params![seq as i64, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<Vec<u8>>>(2)?,
                ))
            })
            .map_err(self.sq())?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, at, bytes) = row.map_err(self.sq())?;
            let entry = match bytes {
                Some(b) => Some(JournalEntry::decode(b.as_slice()).map_err(|e| {
                    JournalError::Corrupt(
                        self.path.display().to_string(),
                        seq as u64,
                        e.to_string(),
                    )
                })?),
                None => None,
            };
            out.push(Row {
                seq: seq as u64,
                recorded_at_us: at,
                entry,
            });
        }
        Ok(out)
    }

    pub fn last_seq(&self) -> Result<u64, JournalError> {
        self.read
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM entries")
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
            .map(|s| s as u64)
            .map_err(self.sq())
    }

    /// The opening record of the execution segment `seq` belongs to.
    pub fn execution_at(
        &self,
        execution_id: &str,
        seq: u64,
    ) -> Result<Option<(u64, Arc<Execution>)>, JournalError> {
        // Export passes every entry in order (`saw_execution`), so a record
        // remembered from at or before `seq` is still the latest one.
        if let Some((at, e)) = self.executions.borrow().get(execution_id)
            && *at <= seq
        {
            return Ok(Some((*at, e.clone())));
        }
        let found = self.read_execution_at(execution_id, seq)?;
        if let Some((at, e)) = &found {
            self.remember_execution(*at, e.clone());
        }
        Ok(found)
    }

    /// Export passed the opening record of an execution segment.
    pub fn saw_execution(&self, seq: u64, execution: &Execution) {
        self.remember_execution(seq, Arc::new(execution.clone()));
    }

    fn remember_execution(&self, seq: u64, execution: Arc<Execution>) {
        let mut kept = self.executions.borrow_mut();
        if kept.len() >= EXECUTIONS_KEPT && !kept.contains_key(&execution.id) {
            kept.clear();
        }
        match kept.get(&execution.id) {
            Some((at, _)) if *at > seq => {}
            _ => {
                kept.insert(execution.id.clone(), (seq, execution));
            }
        }
    }

    fn read_execution_at(
        &self,
        execution_id: &str,
        seq: u64,
    ) -> Result<Option<(u64, Arc<Execution>)>, JournalError> {
        let row: Option<(i64, Vec<u8>)> = self
            .read
            .prepare_cached(
                "SELECT seq, entry FROM entries WHERE execution_id = ?1 AND kind = 'execution'
                 AND seq <= ?2 AND entry IS NOT NULL ORDER BY seq DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![execution_id, seq as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
            })
            .optional()
            .map_err(self.sq())?;
        Ok(row.and_then(
            |(s, b)| match JournalEntry::decode(b.as_slice()).ok()?.payload? {
                Payload::Execution(e) => Some((s as u64, Arc::new(e))),
                _ => None,
            },
        ))
    }

    /// The full record of an interaction, if written.
    pub fn interaction(&self, id: &str) -> Result<Option<Interaction>, JournalError> {
        let bytes: Option<Vec<u8>> = self
            .read
            .prepare_cached(
                "SELECT entry FROM entries WHERE interaction_id = ?1 AND kind = 'interaction' AND entry IS NOT NULL LIMIT 1",
            )
            .and_then(|mut s| s.query_row([id], |r| r.get(0)))
            .optional()
            .map_err(self.sq())?;
        Ok(bytes.and_then(
            |b| match JournalEntry::decode(b.as_slice()).ok()?.payload? {
                Payload::Interaction(i) => Some(i),
                _ => None,
            },
        ))
    }

    /// `it`'s whole input list, inherited messages included; `None` when a
    /// record it inherits from is not in the journal.
    pub fn whole_inputs(&self, it: &Interaction) -> Option<Arc<Vec<Message>>> {
        let mut load = |id: &str| self.interaction(id).ok().flatten();
        self.inputs.borrow_mut().whole(it, &mut load)
    }

    /// The latest `limit` interaction records of an execution up to `seq`,
    /// oldest first.
    pub fn interactions_before(
        &self,
        execution_id: &str,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<Interaction>, JournalError> {
        let mut stmt = self
            .read
            .prepare_cached(
                "SELECT entry FROM entries WHERE execution_id = ?1 AND kind = 'interaction'
                 AND seq <= ?2 AND entry IS NOT NULL ORDER BY seq DESC LIMIT ?3",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map(params![execution_id, seq as i64, limit as i64], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .map_err(self.sq())?;
        let mut out = Vec::new();
        for row in rows {
            let bytes = row.map_err(self.sq())?;
            if let Ok(JournalEntry {
                payload: Some(Payload::Interaction(i)),
                ..
            }) = JournalEntry::decode(bytes.as_slice())
            {
                out.push(i);
            }
        }
        out.reverse();
        Ok(out)
    }

    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        self.read
            .prepare_cached("SELECT data FROM blobs WHERE digest = ?1")
            .and_then(|mut s| s.query_row([digest], |r| r.get(0)))
            .optional()
            .ok()
            .flatten()
    }

    /// The last seq whose spans the collector has accepted.
    pub fn cursor(&self) -> u64 {
        self.cursor.get()
    }

    /// Moves the cursor (in memory: see `save_cursor`).
    pub fn set_cursor(&self, seq: u64) {
        self.cursor.set(seq);
    }

    /// Whether the cursor moved and its last save is older than `CURSOR_SAVE_EVERY`.
    pub fn save_due(&self) -> bool {
        let (seq, at) = self.saved.get();
        seq != self.cursor.get() && at.elapsed() >= CURSOR_SAVE_EVERY
    }

    /// Saves the cursor now, if it moved since the last save.
    pub fn save_cursor(&self) -> Result<(), JournalError> {
        let seq = self.cursor.get();
        if self.saved.get().0 != seq {
            schema::set_meta(&self.write, CURSOR_KEY, &seq.to_string()).map_err(self.sq())?;
        }
        self.saved.set((seq, Instant::now()));
        Ok(())
    }
}
