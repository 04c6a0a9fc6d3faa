//! Splits a relayed byte stream into newline-delimited messages for the
//! record. It only observes: the relay has already passed the bytes on.
//!
//! Bounded by the capture cap: a line longer than the cap keeps its first
//! `cap` bytes and from there on only feeds a running SHA-256, so even a
//! gigabyte line costs `cap` bytes of memory and still has an exact digest.

use bytes::{Bytes, BytesMut};
use sha2::{Digest as _, Sha256};

use crate::record::format_digest;

/// One message (a line, without its newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The line, or its first `cap` bytes when oversized.
    pub bytes: Bytes,
    /// Bytes in the whole line.
    pub size: u64,
    pub oversized: bool,
    /// `sha256:<hex>` of the whole line, when oversized.
    pub digest: Option<String>,
}

pub struct Framer {
    cap: usize,
    buf: BytesMut,
    size: u64,
    /// Set once the current line passed the cap.
    hasher: Option<Sha256>,
}

impl Framer {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            buf: BytesMut::new(),
            size: 0,
            hasher: None,
        }
    }

    /// Feeds relayed bytes; returns the lines they completed.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        while let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
            self.take(&chunk[..nl]);
            if let Some(line) = self.finish_line() {
                out.push(line);
            }
            chunk = &chunk[nl + 1..];
        }
        self.take(chunk);
        out
    }

    /// The last line, if the stream ended without a newline.
    pub fn flush(&mut self) -> Option<Line> {
        self.finish_line()
    }

    /// Bytes of the line in progress.
    pub fn partial(&self) -> u64 {
        self.size
    }

    fn take(&mut self, part: &[u8]) {
        if part.is_empty() {
            return;
        }
        self.size += part.len() as u64;
        if let Some(h) = &mut self.hasher {
            h.update(part);
            return;
        }
        let room = self.cap.saturating_sub(self.buf.len());
        if part.len() <= room {
            self.buf.extend_from_slice(part);
            return;
        }
        let mut h = Sha256::new();
        h.update(&self.buf);
        h.update(part);
        self.buf.extend_from_slice(&part[..room]);
        self.hasher = Some(h);
    }

    fn finish_line(&mut self) -> Option<Line> {
        if self.size == 0 {
            return None;
        }
        let mut bytes = self.buf.split().freeze();
        // CRLF-terminated lines are the same message.
        if self.hasher.is_none() && bytes.ends_with(b"\r") {
            bytes.truncate(bytes.len() - 1);
        }
        let line = Line {
            oversized: self.hasher.is_some(),
            digest: self
                .hasher
                .take()
                .map(|h| format_digest(&h.finalize().into())),
            size: if bytes.is_empty() { 0 } else { self.size },
            bytes,
        };
        self.size = 0;
        // Blank lines carry no message.
        (line.size > 0 && !line.bytes.iter().all(u8::is_ascii_whitespace)).then_some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::digest_of;

    #[test]
    fn lines_across_chunks() {
        let mut f = Framer::new(1024);
        assert!(f.feed(b"{\"a\":").is_empty());
        let lines = f.feed(b"1}\n{\"b\":2}\r\n\n{\"c\"");
        let texts: Vec<&[u8]> = lines.iter().map(|l| &l.bytes[..]).collect();
        assert_eq!(texts, [&b"{\"a\":1}"[..], b"{\"b\":2}"]);
        assert_eq!(f.flush().unwrap().bytes, Bytes::from_static(b"{\"c\""));
        assert!(f.flush().is_none());
    }

    #[test]
    fn oversized_lines_keep_prefix_and_exact_digest() {
        let mut f = Framer::new(4);
        assert!(f.feed(b"0123").is_empty());
        assert!(f.feed(b"4567").is_empty());
        let lines = f.feed(b"89\nok\n");
        assert_eq!(lines.len(), 2);
        let big = &lines[0];
        assert!(big.oversized);
        assert_eq!((&big.bytes[..], big.size), (&b"0123"[..], 10));
        assert_eq!(
            big.digest.as_deref(),
            Some(digest_of(b"0123456789").as_str())
        );
        assert_eq!(
            (&lines[1].bytes[..], lines[1].oversized),
            (&b"ok"[..], false)
        );
    }
}
