//! Digests the writer knows are already in the blobs table, so a blob that
//! every request resends (a system prompt, tool definitions, the earlier
//! turns of a conversation) costs a hash lookup instead of an `INSERT OR
//! IGNORE`, which is a B-tree search keyed by a random digest — on a large
//! journal, a page read for every blob of every request.
//!
//! Guarantees: a digest is only added after the transaction that wrote it
//! committed, so the cache never names a blob that is not in the file. It is
//! cleared whenever the writer finds an entry it did not write at the head
//! of the chain (another process appended: `journal prune`, which deletes
//! blobs, always does), and when the file is reopened. Bounded: two
//! generations of at most `GENERATION` digests; when the newer fills, the
//! older is dropped, so recently used digests stay.

use std::collections::HashSet;

const GENERATION: usize = 32 * 1024;

/// The digest's hex, as it is: decoding it would cost more than the lookup.
type Key = [u8; 64];

#[derive(Default)]
pub struct KnownBlobs {
    current: HashSet<Key>,
    previous: HashSet<Key>,
}

fn key(digest: &str) -> Option<Key> {
    digest.strip_prefix("sha256:")?.as_bytes().try_into().ok()
}

impl KnownBlobs {
    /// Whether the blob is known to be stored (and keeps it known).
    pub fn contains(&mut self, digest: &str) -> bool {
        let Some(k) = key(digest) else {
            return false;
        };
        if self.current.contains(&k) {
            return true;
        }
        if self.previous.contains(&k) {
            self.insert_key(k);
            return true;
        }
        false
    }

    /// Notes blobs that a committed transaction stored.
    pub fn insert(&mut self, digest: &str) {
        if let Some(k) = key(digest) {
            self.insert_key(k);
        }
    }

    fn insert_key(&mut self, k: Key) {
        if self.current.len() >= GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(k);
    }

    pub fn clear(&mut self) {
        self.current.clear();
        self.previous.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::digest_of;

    #[test]
    fn remembers_recent_digests_within_its_bound() {
        let mut known = KnownBlobs::default();
        let first = digest_of(b"system prompt");
        assert!(!known.contains(&first));
        known.insert(&first);
        assert!(known.contains(&first));
        // Two generations' worth of other digests push it out, unless used.
        for i in 0..GENERATION * 2 {
            known.insert(&digest_of(i.to_string().as_bytes()));
        }
        assert!(!known.contains(&first));
        assert!(known.current.len() + known.previous.len() <= 2 * GENERATION);
        known.insert(&first);
        known.clear();
        assert!(!known.contains(&first));
        assert!(!known.contains("not a digest"));
    }
}
