//! The journal's recent tail, in memory: entries this process committed,
//! with the blobs they were written with, for a follower in the same
//! process (the exporter) that would otherwise read them straight back out
//! of SQLite — decoding each entry and looking up each blob by digest.
//!
//! It is a cache, never the record: only committed entries are put in it,
//! and a follower that finds the entry it needs missing (another process
//! appended it, or the tail overflowed while the follower was behind)
//! reads the journal instead. Bounded by entries and by bytes; past either
//! bound the oldest entries are dropped. Nothing is kept unless a follower
//! has asked for the tail, so a proxy without an exporter holds nothing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::record::{Blob, JournalEntry};

/// At most this many entries...
const MAX_ENTRIES: usize = 4096;
/// ...and this many bytes of blobs and entries.
const MAX_BYTES: usize = 32 * 1024 * 1024;

/// One committed entry, as it was written.
#[derive(Debug)]
pub struct Committed {
    pub seq: u64,
    pub recorded_at_us: i64,
    pub entry: JournalEntry,
    /// The blobs written with it (those it references that were new or
    /// re-offered; a blob it shares with earlier entries may be missing).
    pub blobs: Vec<Blob>,
    /// Approximate bytes held: the encoded entry plus blob data.
    pub size: usize,
}

#[derive(Default)]
struct Inner {
    entries: VecDeque<Arc<Committed>>,
    bytes: usize,
}

impl Inner {
    /// Takes the oldest entry out, for the caller to free once the lock is released.
    fn pop_oldest(&mut self) -> Option<Arc<Committed>> {
        let old = self.entries.pop_front()?;
        self.bytes -= old.size;
        Some(old)
    }
}

/// Shared between the writer (pushes after each commit) and one follower.
#[derive(Default)]
pub struct Tail {
    wanted: AtomicBool,
    inner: Mutex<Inner>,
}

impl Tail {
    /// From now on, keep committed entries for a follower.
    pub fn follow(&self) {
        self.wanted.store(true, Ordering::Release);
    }

    pub fn is_followed(&self) -> bool {
        self.wanted.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the entries of one commit (in seq order), dropping the oldest
    /// past the bounds.
    pub fn push(&self, committed: Vec<Committed>) {
        if !self.is_followed() || committed.is_empty() {
            return;
        }
        let mut dropped = Vec::new();
        let mut inner = self.lock();
        for c in committed {
            inner.bytes += c.size;
            inner.entries.push_back(Arc::new(c));
        }
        while inner.entries.len() > MAX_ENTRIES || inner.bytes > MAX_BYTES {
            match inner.pop_oldest() {
                Some(old) => dropped.push(old),
                None => break,
            }
        }
        drop(inner);
        // Freeing a record is not free (many allocations); not under the lock.
        drop(dropped);
    }

    /// The entries from `seq` on that are still held and contiguous with
    /// it (each the next seq), at most `limit`; entries before `seq` are
    /// forgotten. Empty if `seq` itself is not held.
    pub fn from(&self, seq: u64, limit: usize) -> Vec<Arc<Committed>> {
        let mut passed = Vec::new();
        let mut inner = self.lock();
        while inner.entries.front().is_some_and(|c| c.seq < seq) {
            passed.extend(inner.pop_oldest());
        }
        let held = (seq..)
            .zip(&inner.entries)
            .take_while(|(next, c)| c.seq == *next)
            .take(limit)
            .map(|(_, c)| c.clone())
            .collect();
        drop(inner);
        // The writer pushes under this lock after each commit: the records
        // passed are freed after it is released, not while it waits.
        drop(passed);
        held
    }

    /// The first seq held at or after `seq`, if any: where reading the
    /// journal for a gap can stop.
    pub fn first_from(&self, seq: u64) -> Option<u64> {
        self.lock()
            .entries
            .iter()
            .map(|c| c.seq)
            .find(|s| *s >= seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(seq: u64, size: usize) -> Committed {
        Committed {
            seq,
            recorded_at_us: 0,
            entry: JournalEntry {
                seq,
                ..Default::default()
            },
            blobs: Vec::new(),
            size,
        }
    }

    #[test]
    fn nothing_is_kept_until_followed() {
        let tail = Tail::default();
        tail.push(vec![committed(1, 10)]);
        assert!(tail.from(1, 10).is_empty());
        tail.follow();
        tail.push(vec![committed(2, 10)]);
        assert_eq!(tail.from(2, 10).len(), 1);
    }

    #[test]
    fn only_contiguous_entries_are_handed_out() {
        let tail = Tail::default();
        tail.follow();
        // 3 was appended by another process: not in this tail.
        tail.push(vec![committed(1, 1), committed(2, 1), committed(4, 1)]);
        let seqs = |v: Vec<Arc<Committed>>| v.iter().map(|c| c.seq).collect::<Vec<_>>();
        assert_eq!(seqs(tail.from(1, 10)), [1, 2]);
        assert_eq!(seqs(tail.from(1, 1)), [1]);
        assert!(
            tail.from(3, 10).is_empty(),
            "the gap is read from the journal"
        );
        assert_eq!(tail.first_from(3), Some(4));
        assert_eq!(seqs(tail.from(4, 10)), [4]);
        assert!(
            tail.from(1, 10).is_empty(),
            "entries before a request are forgotten"
        );
    }

    #[test]
    fn bounded_by_bytes_dropping_the_oldest() {
        let tail = Tail::default();
        tail.follow();
        tail.push(vec![
            committed(1, MAX_BYTES / 2),
            committed(2, MAX_BYTES / 2),
        ]);
        tail.push(vec![committed(3, 1)]);
        assert!(tail.from(1, 10).is_empty());
        assert_eq!(tail.from(2, 10).len(), 2);
    }
}
