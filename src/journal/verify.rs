//! `journal verify`: walks every entry in order and checks that the chain
//! holds — each entry is where it says it is, its bytes match its hash, it
//! links to the one before, every blob it refers to is present and
//! unchanged, every checkpoint is correctly signed (by a trusted key, when
//! keys are given), and every pruned entry is accounted for by a prune
//! record. It stops at the first problem and names the entry.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use prost::Message as _;
use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::record::{JournalEntry, journal_entry::Payload};

use super::chain::{self, Hash, PrunedDigest};
use super::{JournalError, append::blob_refs, keys, schema};

/// What a successful verification covered.
#[derive(Debug, Default)]
pub struct Report {
    pub journal_id: String,
    pub entries: u64,
    pub pruned_entries: u64,
    pub checkpoints: u64,
    pub last_checkpoint_seq: u64,
    /// Entries after the last checkpoint: chained, not yet signed.
    pub unsigned_tail: u64,
    pub chain_breaks: Vec<(u64, String)>,
    pub gaps: Vec<(u64, u64)>,
    pub prunes: u64,
    pub blobs_checked: u64,
    /// Key ids that signed checkpoints.
    pub signers: Vec<String>,
    /// Checkpoints were checked against keys the caller supplied.
    pub anchored: bool,
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub seq: u64,
    pub problem: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "entry {}: {}", self.seq, self.problem)
    }
}

pub fn verify(
    path: &Path,
    trusted: &[VerifyingKey],
) -> Result<Result<Report, Failure>, JournalError> {
    let conn = schema::open_for_reading(path)?;
    let sq = |e| JournalError::sqlite(path, e);
    let journal_id = schema::get_meta(&conn, "journal_id")
        .map_err(sq)?
        .unwrap_or_default();
    let mut v = Verifier {
        conn: &conn,
        trusted,
        report: Report {
            journal_id: journal_id.clone(),
            anchored: !trusted.is_empty(),
            ..Default::default()
        },
        blobs: HashMap::new(),
        unclaimed: BTreeMap::new(),
    };
    let mut stmt = conn
        .prepare("SELECT seq, entry, entry_hash FROM entries ORDER BY seq")
        .map_err(sq)?;
    let mut rows = stmt.query([]).map_err(sq)?;
    let mut expected_seq = 1u64;
    let mut prev: Hash = chain::genesis(&journal_id);
    while let Some(row) = rows.next().map_err(sq)? {
        let seq = row.get::<_, i64>(0).map_err(sq)? as u64;
        let entry: Option<Vec<u8>> = row.get(1).map_err(sq)?;
        let stored_hash: Vec<u8> = row.get(2).map_err(sq)?;
        if seq != expected_seq {
            return Ok(Err(Failure {
                seq: expected_seq,
                problem: format!(
                    "is missing: the journal goes from entry {} to entry {seq} (entries were deleted)",
                    expected_seq - 1
                ),
            }));
        }
        match v.entry(seq, entry.as_deref(), &stored_hash, &prev)? {
            Ok(hash) => prev = hash,
            Err(problem) => return Ok(Err(Failure { seq, problem })),
        }
        expected_seq += 1;
    }
    if let Some((&seq, _)) = v.unclaimed.iter().next() {
        return Ok(Err(Failure {
            seq,
            problem: "was emptied, but no prune record accounts for it (its content was deleted)"
                .into(),
        }));
    }
    v.report.unsigned_tail = (expected_seq - 1).saturating_sub(v.report.last_checkpoint_seq);
    Ok(Ok(v.report))
}

struct Verifier<'a> {
    conn: &'a Connection,
    trusted: &'a [VerifyingKey],
    report: Report,
    /// Blob digest → whether it is present and intact.
    blobs: HashMap<String, Result<(), String>>,
    /// Pruned entries not yet accounted for by a prune record.
    unclaimed: BTreeMap<u64, Vec<u8>>,
}

impl Verifier<'_> {
    /// Checks one entry; returns its hash, or what is wrong with it.
    fn entry(
        &mut self,
        seq: u64,
        bytes: Option<&[u8]>,
        stored_hash: &[u8],
        prev: &Hash,
    ) -> Result<Result<Hash, String>, JournalError> {
        let Some(bytes) = bytes else {
            // Pruned: only its hash remains; a later prune record must bind it.
            let Ok(hash) = <Hash>::try_from(stored_hash) else {
                return Ok(Err("was emptied and its hash is damaged".into()));
            };
            self.unclaimed.insert(seq, stored_hash.to_vec());
            self.report.pruned_entries += 1;
            return Ok(Ok(hash));
        };
        let hash = chain::entry_hash(bytes);
        if stored_hash != hash {
            return Ok(Err(
                "was edited: its content no longer matches the hash recorded for it".into(),
            ));
        }
        let entry = match JournalEntry::decode(bytes) {
            Ok(e) => e,
            Err(e) => return Ok(Err(format!("was edited: it no longer decodes ({e})"))),
        };
        if entry.seq != seq {
            return Ok(Err(format!(
                "holds entry {} (entries were reordered or moved)",
                entry.seq
            )));
        }
        if entry.prev_hash != prev {
            let what = if seq == 1 {
                "does not start this journal's chain (the journal id was changed or entries were replaced)".to_owned()
            } else {
                format!(
                    "does not link to entry {}: entry {} was edited or replaced",
                    seq - 1,
                    seq - 1
                )
            };
            return Ok(Err(what));
        }
        self.report.entries += 1;
        let Some(payload) = &entry.payload else {
            return Ok(Ok(hash));
        };
        for digest in blob_refs(payload) {
            if let Err(problem) = self.blob(digest)? {
                return Ok(Err(problem));
            }
        }
        let problem = match payload {
            Payload::Checkpoint(c) => self.checkpoint(seq, c, prev),
            Payload::Prune(p) => self.prune(seq, p),
            Payload::ChainBreak(b) => {
                self.report.chain_breaks.push((seq, b.reason.clone()));
                None
            }
            Payload::Gap(g) => {
                self.report.gaps.push((seq, g.lost_records));
                None
            }
            _ => None,
        };
        Ok(match problem {
            Some(p) => Err(p),
            None => Ok(hash),
        })
    }

    fn blob(&mut self, digest: &str) -> Result<Result<(), String>, JournalError> {
        if let Some(r) = self.blobs.get(digest) {
            return Ok(r.clone());
        }
        let data: Option<Vec<u8>> = rusqlite::OptionalExtension::optional(self.conn.query_row(
            "SELECT data FROM blobs WHERE digest = ?1",
            [digest],
            |r| r.get(0),
        ))
        .map_err(|e| JournalError::sqlite(Path::new("journal"), e))?;
        let result = match data {
            None => Err(format!("refers to blob {digest}, which is missing")),
            Some(d) => {
                let actual = crate::record::format_digest(&Sha256::digest(&d).into());
                if actual == digest {
                    Ok(())
                } else {
                    Err(format!(
                        "refers to blob {digest}, whose content was edited (it now hashes to {actual})"
                    ))
                }
            }
        };
        self.report.blobs_checked += 1;
        self.blobs.insert(digest.to_owned(), result.clone());
        Ok(result)
    }

    fn checkpoint(
        &mut self,
        seq: u64,
        c: &crate::record::Checkpoint,
        prev: &Hash,
    ) -> Option<String> {
        if c.journal_id != self.report.journal_id {
            return Some(format!(
                "is a checkpoint of another journal ({})",
                c.journal_id
            ));
        }
        if c.covered_seq != seq - 1 || c.head != prev {
            return Some("is a checkpoint that does not match the chain before it".into());
        }
        let key = match chain::verify_checkpoint_signature(c) {
            Ok(k) => k,
            Err(e) => return Some(format!("is a checkpoint with a {e}")),
        };
        if !self.trusted.is_empty() && !self.trusted.contains(&key) {
            return Some(format!(
                "is a checkpoint signed by key {}, which is not among the trusted public keys (bad signature)",
                keys::key_id(&key)
            ));
        }
        let id = keys::key_id(&key);
        if !self.report.signers.contains(&id) {
            self.report.signers.push(id);
        }
        self.report.checkpoints += 1;
        self.report.last_checkpoint_seq = seq;
        None
    }

    fn prune(&mut self, seq: u64, p: &crate::record::Prune) -> Option<String> {
        let mut digest = PrunedDigest::default();
        for s in &p.pruned_seqs {
            match self.unclaimed.get(s) {
                Some(hash) if *s < seq => digest.add(*s, hash),
                _ => {
                    return Some(format!(
                        "is a prune record listing entry {s}, which is not an emptied entry before it"
                    ));
                }
            }
        }
        if p.pruned_seqs.len() as u64 != p.entries || digest.finish() != p.pruned_digest {
            return Some(
                "is a prune record whose digest does not match the entries it lists".into(),
            );
        }
        for s in &p.pruned_seqs {
            self.unclaimed.remove(s);
        }
        self.report.prunes += 1;
        None
    }
}
