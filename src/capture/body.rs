//! What the tee keeps of one body: the frames themselves up to the capture
//! cap, the total size, and — past the cap — a running SHA-256 so the record
//! still names the whole body. The recorder hands everything over exactly
//! once: when the body ends, fails, or is dropped unfinished.
//!
//! Large frames are kept as they are (reference-counted `Bytes`, no copy).
//! Small ones are copied into one buffer: a frame is a slice of the
//! connection's read buffer, and holding it would keep that whole buffer
//! (often 8–64 KB) alive until the record is built — for a 100-byte SSE
//! event, or a 1 KB request waiting in the recording backlog.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use sha2::{Digest as _, Sha256};
use tokio::sync::oneshot;

use crate::record::format_digest;

/// Frames smaller than this are copied (see the module comment).
const COPY_BELOW: usize = 4096;

/// How a body stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyEnd {
    /// The last frame was delivered.
    Complete,
    /// The body errored (e.g. the upstream reset the connection).
    Failed(String),
    /// The body was dropped before its end: the reader (agent or upstream
    /// connection) went away.
    Dropped,
}

/// A finished body as capture sees it.
#[derive(Debug)]
pub struct BodyCapture {
    pub chunks: Vec<Bytes>,
    /// Bytes kept in `chunks`.
    pub captured: usize,
    /// Bytes that crossed the proxy.
    pub total: u64,
    pub truncated: bool,
    pub first_frame: Option<Instant>,
    pub ended: Instant,
    pub end: BodyEnd,
    /// Set once the cap was passed: the digest of every byte.
    overflow_hasher: Option<Sha256>,
}

impl BodyCapture {
    /// `sha256:<hex>` of the whole body as it crossed the wire.
    pub fn digest(&self) -> String {
        let hasher = match &self.overflow_hasher {
            Some(h) => h.clone(),
            None => {
                let mut h = Sha256::new();
                for c in &self.chunks {
                    h.update(c);
                }
                h
            }
        };
        format_digest(&hasher.finalize().into())
    }

    /// The captured bytes as one contiguous buffer.
    pub fn contiguous(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.captured);
        for c in &self.chunks {
            out.extend_from_slice(c);
        }
        out
    }

    /// What has been read of a body so far (write-ahead mode records the
    /// request before forwarding it). `complete` says whether that is all of it.
    pub fn snapshot(chunks: Vec<Bytes>, complete: bool) -> Self {
        let captured = chunks.iter().map(Bytes::len).sum();
        Self {
            chunks,
            captured,
            total: captured as u64,
            truncated: !complete,
            first_frame: None,
            ended: Instant::now(),
            end: if complete {
                BodyEnd::Complete
            } else {
                BodyEnd::Dropped
            },
            overflow_hasher: None,
        }
    }

    /// A capture of a body that was never sent (a refused request, say).
    pub fn empty(end: BodyEnd) -> Self {
        Self {
            chunks: Vec::new(),
            captured: 0,
            total: 0,
            truncated: false,
            first_frame: None,
            ended: Instant::now(),
            end,
            overflow_hasher: None,
        }
    }
}

/// Lives inside the tee; records frames as they pass.
#[derive(Debug)]
pub struct BodyRecorder {
    cap: usize,
    tx: Option<oneshot::Sender<BodyCapture>>,
    chunks: Vec<Bytes>,
    /// Small frames, copied, not yet moved to `chunks`.
    small: BytesMut,
    captured: usize,
    total: u64,
    first_frame: Option<Instant>,
    overflow_hasher: Option<Sha256>,
    /// Set when the body ends, however it ends.
    on_end: Option<Arc<AtomicBool>>,
}

impl BodyRecorder {
    /// Also sets `flag` when the body ends (before the capture task hears of it).
    pub fn notify_end(mut self, flag: Arc<AtomicBool>) -> Self {
        self.on_end = Some(flag);
        self
    }

    pub fn new(cap: usize) -> (Self, oneshot::Receiver<BodyCapture>) {
        let (tx, rx) = oneshot::channel();
        (
            Self {
                cap,
                tx: Some(tx),
                chunks: Vec::new(),
                small: BytesMut::new(),
                captured: 0,
                total: 0,
                first_frame: None,
                overflow_hasher: None,
                on_end: None,
            },
            rx,
        )
    }

    pub fn on_data(&mut self, data: &Bytes) {
        if self.tx.is_none() || data.is_empty() {
            return;
        }
        if self.first_frame.is_none() {
            self.first_frame = Some(Instant::now());
        }
        self.total += data.len() as u64;
        if let Some(h) = &mut self.overflow_hasher {
            h.update(data);
            return;
        }
        let room = self.cap - self.captured;
        if data.len() <= room {
            self.captured += data.len();
            if data.len() < COPY_BELOW {
                self.small.extend_from_slice(data);
            } else {
                self.flush_small();
                self.chunks.push(data.clone());
            }
            return;
        }
        // Crossing the cap: keep what fits, and from here on hash instead.
        self.flush_small();
        let mut h = Sha256::new();
        for c in &self.chunks {
            h.update(c);
        }
        h.update(data);
        if room > 0 {
            self.chunks.push(data.slice(..room));
            self.captured += room;
        }
        self.overflow_hasher = Some(h);
    }

    fn flush_small(&mut self) {
        if !self.small.is_empty() {
            self.chunks.push(self.small.split().freeze());
        }
    }

    /// A recorder with no one to report to (its report was already given).
    pub fn finished() -> Self {
        Self {
            cap: 0,
            tx: None,
            chunks: Vec::new(),
            small: BytesMut::new(),
            captured: 0,
            total: 0,
            first_frame: None,
            overflow_hasher: None,
            on_end: None,
        }
    }

    /// Hands the capture over. Later calls (and the drop) do nothing.
    pub fn finish(&mut self, end: BodyEnd) {
        if let Some(flag) = self.on_end.take() {
            flag.store(true, Ordering::Release);
        }
        if let Some(tx) = self.tx.take() {
            self.flush_small();
            let capture = BodyCapture {
                chunks: std::mem::take(&mut self.chunks),
                captured: self.captured,
                total: self.total,
                truncated: self.overflow_hasher.is_some(),
                first_frame: self.first_frame,
                ended: Instant::now(),
                end,
                overflow_hasher: self.overflow_hasher.take(),
            };
            // The capture task may be gone (shutdown); then there is no one to tell.
            let _ = tx.send(capture);
        }
    }

    pub fn is_finished(&self) -> bool {
        self.tx.is_none()
    }
}

impl Drop for BodyRecorder {
    fn drop(&mut self) {
        self.finish(BodyEnd::Dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::digest_of;

    #[test]
    fn under_cap_keeps_everything() {
        let (mut r, mut rx) = BodyRecorder::new(100);
        r.on_data(&Bytes::from_static(b"hello "));
        r.on_data(&Bytes::from_static(b"world"));
        r.finish(BodyEnd::Complete);
        let c = rx.try_recv().unwrap();
        assert_eq!(c.contiguous(), b"hello world");
        assert!(!c.truncated);
        assert_eq!(c.digest(), digest_of(b"hello world"));
        assert_eq!(c.end, BodyEnd::Complete);
    }

    #[test]
    fn over_cap_keeps_prefix_and_digest_of_whole() {
        let (mut r, mut rx) = BodyRecorder::new(8);
        for part in [&b"0123"[..], b"4567", b"89ab", b"cdef"] {
            r.on_data(&Bytes::copy_from_slice(part));
        }
        drop(r);
        let c = rx.try_recv().unwrap();
        assert!(c.truncated);
        assert_eq!(c.contiguous(), b"01234567");
        assert_eq!(c.total, 16);
        assert_eq!(c.digest(), digest_of(b"0123456789abcdef"));
        assert_eq!(c.end, BodyEnd::Dropped);
    }

    #[test]
    fn cap_crossed_mid_frame() {
        let (mut r, mut rx) = BodyRecorder::new(5);
        r.on_data(&Bytes::from_static(b"0123"));
        r.on_data(&Bytes::from_static(b"4567"));
        r.finish(BodyEnd::Complete);
        let c = rx.try_recv().unwrap();
        assert_eq!(c.contiguous(), b"01234");
        assert_eq!(c.digest(), digest_of(b"01234567"));
    }

    #[test]
    fn small_frames_are_copied_large_ones_shared() {
        let buffer = Bytes::from(vec![7u8; 65536]);
        let inside = |b: &Bytes| buffer.as_ptr_range().contains(&b.as_ptr());
        let (mut r, mut rx) = BodyRecorder::new(1 << 20);
        r.on_data(&buffer.slice(100..200));
        r.on_data(&buffer.slice(200..300));
        r.on_data(&buffer.slice(300..10_300));
        r.on_data(&buffer.slice(10_300..10_350));
        r.finish(BodyEnd::Complete);
        let c = rx.try_recv().unwrap();
        let shared: Vec<bool> = c.chunks.iter().map(inside).collect();
        assert_eq!(shared, [false, true, false], "copied, shared, copied");
        assert_eq!(c.contiguous(), &buffer[100..10_350]);
        assert_eq!(c.captured, 10_250);
    }
}
