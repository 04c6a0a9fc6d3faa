//! Reading the journal back: executions with their interactions in order,
//! and blobs by digest. Used by `sidetrace show` and by tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use prost::Message as _;
use rusqlite::{Connection, OptionalExtension};

use crate::record::{
    Completion, CompletionStatus, Execution, Interaction, JournalEntry, journal_entry::Payload,
};

use super::{JournalError, schema};

/// One execution as recorded: its opening record (merged with its end, if
/// recorded) and its interactions in journal order.
#[derive(Debug, Clone)]
pub struct ExecutionView {
    pub execution: Execution,
    pub interactions: Vec<Interaction>,
}

pub struct JournalReader {
    conn: Connection,
    path: PathBuf,
}

impl JournalReader {
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        Ok(Self {
            conn: schema::open_for_reading(path)?,
            path: path.to_owned(),
        })
    }

    fn sq(&self) -> impl Fn(rusqlite::Error) -> JournalError + '_ {
        |e| JournalError::sqlite(&self.path, e)
    }

    /// Every execution (or just one), in the order they first appear.
    pub fn executions(&self, only: Option<&str>) -> Result<Vec<ExecutionView>, JournalError> {
        let (sql, arg) = match only {
            Some(id) => (
                "SELECT seq, entry FROM entries WHERE execution_id = ?1 AND entry IS NOT NULL ORDER BY seq",
                Some(id),
            ),
            None => (
                "SELECT seq, entry FROM entries WHERE execution_id IS NOT NULL AND entry IS NOT NULL ORDER BY seq",
                None,
            ),
        };
        let mut stmt = self.conn.prepare(sql).map_err(self.sq())?;
        let mut rows = match arg {
            Some(id) => stmt.query([id]),
            None => stmt.query([]),
        }
        .map_err(self.sq())?;

        let mut order: Vec<String> = Vec::new();
        let mut views: HashMap<String, ExecutionView> = HashMap::new();
        while let Some(row) = rows.next().map_err(self.sq())? {
            let seq: i64 = row.get(0).map_err(self.sq())?;
            let bytes: Vec<u8> = row.get(1).map_err(self.sq())?;
            let entry = JournalEntry::decode(bytes.as_slice()).map_err(|e| {
                JournalError::Corrupt(self.path.display().to_string(), seq as u64, e.to_string())
            })?;
            let Some(payload) = entry.payload else {
                continue;
            };
            let execution_id = match &payload {
                Payload::Execution(e) => e.id.clone(),
                Payload::ExecutionEnd(e) => e.execution_id.clone(),
                Payload::Interaction(i) | Payload::InteractionStart(i) => i.execution_id.clone(),
                _ => continue,
            };
            let view = views.entry(execution_id.clone()).or_insert_with(|| {
                order.push(execution_id.clone());
                ExecutionView {
                    execution: Execution {
                        id: execution_id.clone(),
                        ..Default::default()
                    },
                    interactions: Vec::new(),
                }
            });
            match payload {
                Payload::Execution(e) => merge_start(&mut view.execution, e),
                Payload::ExecutionEnd(end) => {
                    view.execution.end_time = end.end_time;
                    view.execution.end_reason = end.reason;
                    view.execution.exit_status = end.exit_status;
                    if end.repository_after.is_some() {
                        view.execution.repository_after = end.repository_after;
                    }
                }
                Payload::InteractionStart(mut i) => {
                    // Only the request half is known until the full record arrives.
                    i.completion = Some(Completion {
                        status: CompletionStatus::NotRecorded as i32,
                        detail: "only the request was recorded: sidetrace stopped before the exchange ended".into(),
                    });
                    note_start(&mut view.execution, &i);
                    view.interactions.push(i);
                }
                Payload::Interaction(i) => {
                    note_start(&mut view.execution, &i);
                    match view.interactions.iter_mut().find(|x| x.id == i.id) {
                        Some(slot) => *slot = i,
                        None => view.interactions.push(i),
                    }
                }
                _ => {}
            }
        }
        let mut out: Vec<ExecutionView> = order
            .into_iter()
            .filter_map(|id| views.remove(&id))
            .collect();
        // Records are written as exchanges finish; read them in the order they began.
        for v in &mut out {
            v.interactions.sort_by_key(|i| {
                i.timing
                    .and_then(|t| t.start_time)
                    .map(|t| (t.seconds, t.nanos))
            });
            crate::record::inputs::expand_all(&mut v.interactions);
        }
        Ok(out)
    }

    /// The content of a blob, if the journal has it.
    pub fn blob(&self, digest: &str) -> Result<Option<Vec<u8>>, JournalError> {
        self.conn
            .query_row("SELECT data FROM blobs WHERE digest = ?1", [digest], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.sq())
    }

    /// Number of entries and total bytes of blobs, for tests and diagnostics.
    pub fn stats(&self) -> Result<(u64, u64), JournalError> {
        let entries: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))
            .map_err(self.sq())?;
        let blob_bytes: i64 = self
            .conn
            .query_row("SELECT COALESCE(SUM(size), 0) FROM blobs", [], |r| r.get(0))
            .map_err(self.sq())?;
        Ok((entries as u64, blob_bytes as u64))
    }
}

fn note_start(execution: &mut Execution, i: &Interaction) {
    if execution.start_time.is_none() {
        execution.start_time = i.timing.as_ref().and_then(|t| t.start_time);
    }
    // An execution known only from its records (another process opened
    // it, or its opening was pruned) still says whose work it was.
    if execution.sponsor.is_none() {
        execution.sponsor = i.sponsor.clone();
    }
    if execution.correlation.is_none() {
        execution.correlation = i.correlation.clone();
    }
}

/// The first opening record wins; a later run re-opening the same execution
/// only fills what the first left empty.
fn merge_start(into: &mut Execution, e: Execution) {
    if into.start_time.is_none() || into.recorder_version.is_empty() {
        let end_time = into.end_time.take();
        let end_reason = std::mem::take(&mut into.end_reason);
        let exit_status = into.exit_status.take();
        let earliest = match (into.start_time, e.start_time) {
            (Some(a), Some(b)) if (a.seconds, a.nanos) < (b.seconds, b.nanos) => Some(a),
            (_, b) => b,
        };
        *into = e;
        into.start_time = earliest;
        into.end_time = end_time;
        into.end_reason = end_reason;
        into.exit_status = exit_status;
    }
}
