//! Retention: removes whole executions whose last record is older than the
//! limit, and the blobs nothing else refers to. Removed entries keep their
//! seq and hash (their content is emptied) and a signed `prune` entry binds
//! them, so `journal verify` still passes afterwards. Safe to run while the
//! proxy writes: everything happens in one write transaction that appends
//! to the chain's current head.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use prost::Message as _;
use rusqlite::{TransactionBehavior, params};

use crate::record::{JournalEntry, Prune, Timestamp, journal_entry::Payload};

use super::append::{Appender, blob_refs};
use super::chain::PrunedDigest;
use super::{JournalError, schema};

#[derive(Debug, Default)]
pub struct PruneReport {
    pub cutoff: Option<SystemTime>,
    pub executions: Vec<String>,
    pub entries: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
}

pub fn prune(
    path: &Path,
    key: &SigningKey,
    retention: Duration,
    retention_text: &str,
    dry_run: bool,
) -> Result<PruneReport, JournalError> {
    let mut conn = schema::open_existing(path)?;
    let sq = |e| JournalError::sqlite(path, e);
    let journal_id = schema::get_meta(&conn, "journal_id")
        .map_err(sq)?
        .unwrap_or_default();
    let cutoff = SystemTime::now()
        .checked_sub(retention)
        .unwrap_or(UNIX_EPOCH);
    let cutoff_us = cutoff
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64;
    let mut report = PruneReport {
        cutoff: Some(cutoff),
        ..Default::default()
    };

    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sq)?;
    {
        let mut stmt = tx
            .prepare(
                "SELECT execution_id FROM entries
                 WHERE execution_id IS NOT NULL AND entry IS NOT NULL
                 GROUP BY execution_id HAVING MAX(recorded_at_us) < ?1
                 ORDER BY MIN(seq)",
            )
            .map_err(sq)?;
        report.executions = stmt
            .query_map([cutoff_us], |r| r.get(0))
            .map_err(sq)?
            .collect::<Result<_, _>>()
            .map_err(sq)?;
    }
    if report.executions.is_empty() {
        return Ok(report);
    }
    let old: HashSet<&str> = report.executions.iter().map(String::as_str).collect();

    // Which entries go, and which blobs the rest still need.
    let mut digest = PrunedDigest::default();
    let mut doomed = Vec::new();
    let mut keep_blobs: HashSet<String> = HashSet::new();
    {
        let mut stmt = tx
            .prepare("SELECT seq, execution_id, entry, entry_hash FROM entries WHERE entry IS NOT NULL ORDER BY seq")
            .map_err(sq)?;
        let mut rows = stmt.query([]).map_err(sq)?;
        while let Some(row) = rows.next().map_err(sq)? {
            let seq = row.get::<_, i64>(0).map_err(sq)? as u64;
            let execution: Option<String> = row.get(1).map_err(sq)?;
            if execution.as_deref().is_some_and(|e| old.contains(e)) {
                let hash: Vec<u8> = row.get(3).map_err(sq)?;
                digest.add(seq, &hash);
                doomed.push(seq);
                continue;
            }
            let bytes: Vec<u8> = row.get(2).map_err(sq)?;
            let entry = JournalEntry::decode(bytes.as_slice()).map_err(|e| {
                JournalError::Corrupt(path.display().to_string(), seq, e.to_string())
            })?;
            if let Some(p) = &entry.payload {
                keep_blobs.extend(blob_refs(p).into_iter().map(str::to_owned));
            }
        }
    }
    let mut unreferenced = Vec::new();
    {
        let mut stmt = tx.prepare("SELECT digest, size FROM blobs").map_err(sq)?;
        let mut rows = stmt.query([]).map_err(sq)?;
        while let Some(row) = rows.next().map_err(sq)? {
            let d: String = row.get(0).map_err(sq)?;
            if !keep_blobs.contains(&d) {
                report.blob_bytes += row.get::<_, i64>(1).map_err(sq)? as u64;
                unreferenced.push(d);
            }
        }
    }
    report.entries = doomed.len() as u64;
    report.blobs = unreferenced.len() as u64;
    if dry_run {
        return Ok(report);
    }
    for seq in &doomed {
        tx.execute(
            "UPDATE entries SET entry = NULL WHERE seq = ?1",
            params![*seq as i64],
        )
        .map_err(sq)?;
    }
    for d in &unreferenced {
        tx.execute("DELETE FROM blobs WHERE digest = ?1", [d])
            .map_err(sq)?;
    }
    {
        let mut a = Appender::begin(&tx, &journal_id).map_err(sq)?;
        a.append(
            Payload::Prune(Prune {
                cutoff: Some(Timestamp::from(cutoff)),
                execution_ids: report.executions.clone(),
                entries: report.entries,
                blobs: report.blobs,
                pruned_digest: digest.finish(),
                retention: retention_text.to_owned(),
                pruned_seqs: doomed.clone(),
            }),
            &[],
        )
        .map_err(sq)?;
        a.checkpoint(key, "prune").map_err(sq)?;
    }
    tx.commit().map_err(sq)?;
    Ok(report)
}
