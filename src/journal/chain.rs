//! The hash chain and its signed checkpoints: what links one entry to the
//! next, what exactly a checkpoint signs, and how pruned entries are bound.
//! Writer, pruner and verifier all use these definitions, so they cannot
//! drift apart.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::record::{Checkpoint, Timestamp};

pub type Hash = [u8; 32];

/// The `prev_hash` of a journal's first entry: binds the chain to the journal's id.
pub fn genesis(journal_id: &str) -> Hash {
    Sha256::digest(format!("sidetrace-journal:{journal_id}")).into()
}

/// An entry's hash: SHA-256 of its canonical (protobuf) bytes.
pub fn entry_hash(canonical: &[u8]) -> Hash {
    Sha256::digest(canonical).into()
}

/// The exact bytes a checkpoint's signature covers.
pub fn checkpoint_message(
    journal_id: &str,
    covered_seq: u64,
    head: &[u8],
    time: &Timestamp,
) -> Vec<u8> {
    format!(
        "sidetrace-checkpoint/v1\njournal {journal_id}\nseq {covered_seq}\nhead {}\ntime {}\n",
        hex::encode(head),
        time.to_rfc3339()
    )
    .into_bytes()
}

/// A signed checkpoint over the chain up to `covered_seq`, whose hash is `head`.
pub fn sign_checkpoint(
    key: &SigningKey,
    journal_id: &str,
    covered_seq: u64,
    head: Hash,
    time: Timestamp,
    reason: &str,
) -> Checkpoint {
    let message = checkpoint_message(journal_id, covered_seq, &head, &time);
    Checkpoint {
        journal_id: journal_id.to_owned(),
        covered_seq,
        head: head.to_vec(),
        time: Some(time),
        public_key: key.verifying_key().to_bytes().to_vec(),
        signature: key.sign(&message).to_bytes().to_vec(),
        reason: reason.to_owned(),
    }
}

/// Checks a checkpoint's signature against its embedded public key.
pub fn verify_checkpoint_signature(c: &Checkpoint) -> Result<VerifyingKey, String> {
    let key_bytes: [u8; 32] = c
        .public_key
        .as_slice()
        .try_into()
        .map_err(|_| "its public key is not 32 bytes".to_owned())?;
    let key = VerifyingKey::from_bytes(&key_bytes)
        .map_err(|e| format!("its public key is invalid ({e})"))?;
    let sig_bytes: [u8; 64] = c
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| "its signature is not 64 bytes".to_owned())?;
    let time = c.time.unwrap_or_default();
    let message = checkpoint_message(&c.journal_id, c.covered_seq, &c.head, &time);
    key.verify(&message, &Signature::from_bytes(&sig_bytes))
        .map_err(|_| "bad signature: it does not verify under its key".to_owned())?;
    Ok(key)
}

/// Accumulates the digest that binds a prune to the entries it removed.
#[derive(Default)]
pub struct PrunedDigest(Sha256);

impl PrunedDigest {
    pub fn add(&mut self, seq: u64, hash: &[u8]) {
        self.0.update(seq.to_be_bytes());
        self.0.update(hash);
    }

    pub fn finish(self) -> Vec<u8> {
        self.0.finalize().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_signs_and_detects_changes() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let time = Timestamp {
            seconds: 1_800_000_000,
            nanos: 0,
        };
        let c = sign_checkpoint(&key, "j1", 41, [7; 32], time, "test");
        assert_eq!(
            verify_checkpoint_signature(&c).unwrap(),
            key.verifying_key()
        );
        let mut moved = c.clone();
        moved.covered_seq = 40;
        assert!(verify_checkpoint_signature(&moved).is_err());
        let mut other = c.clone();
        other.public_key = SigningKey::from_bytes(&[8; 32])
            .verifying_key()
            .to_bytes()
            .to_vec();
        assert!(
            verify_checkpoint_signature(&other)
                .unwrap_err()
                .contains("bad signature")
        );
        assert_ne!(genesis("a"), genesis("b"));
    }
}
