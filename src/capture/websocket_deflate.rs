//! permessage-deflate (RFC 7692) for the WebSocket decoder: the parameters
//! the server accepted, read from its 101 response, and the raw-deflate
//! context that carries over from one message to the next. Bounded: the
//! context is about 50 KiB (the 32 KiB window, tables, an 8 KiB buffer).

use flate2::{Decompress, FlushDecompress, Status};

use super::{Direction, SCRATCH};

/// The permessage-deflate parameters the server accepted (RFC 7692 §7.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deflate {
    /// The server starts every message with an empty compression context.
    pub server_no_context_takeover: bool,
    /// The client starts every message with an empty compression context.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window, as a power of two (8..=15).
    pub server_max_window_bits: Option<u8>,
    /// The client's LZ77 window (8..=15). `Some(15)` when the parameter came
    /// without a value (legal only in an offer, but some servers echo it).
    pub client_max_window_bits: Option<u8>,
}

impl Deflate {
    /// Reads the server's `Sec-WebSocket-Extensions` value from the 101
    /// response (join several header lines with `,`). `None` when
    /// permessage-deflate was not accepted, in which case compressed frames
    /// are a protocol error.
    ///
    /// Parsing is lenient: names are case-insensitive, values may be quoted,
    /// unknown parameters and window sizes outside 8..=15 are ignored (an
    /// endpoint would refuse them, but if it carried on anyway we still want
    /// to read what it sent), and only the first permessage-deflate counts.
    ///
    /// Window sizes do not change decoding: flate2's pure-Rust backend (the one
    /// this crate builds) inflates with a 15-bit window only, and a larger
    /// window than the compressor used is always safe, since no back-reference
    /// can reach further than the compressor's own window.
    pub fn negotiated(sec_websocket_extensions_response_header: &str) -> Option<Deflate> {
        split_outside_quotes(sec_websocket_extensions_response_header, b',')
            .into_iter()
            .find_map(|extension| {
                let mut parts = split_outside_quotes(extension, b';').into_iter();
                let name = parts.next()?.trim();
                if !name.eq_ignore_ascii_case("permessage-deflate") {
                    return None;
                }
                let mut deflate = Deflate::default();
                for param in parts {
                    let (key, value) = match param.split_once('=') {
                        Some((k, v)) => (k.trim(), Some(unquote(v.trim()))),
                        None => (param.trim(), None),
                    };
                    let bits = value
                        .and_then(|v| v.parse::<u8>().ok())
                        .filter(|b| (8..=15).contains(b));
                    if key.eq_ignore_ascii_case("server_no_context_takeover") {
                        deflate.server_no_context_takeover = true;
                    } else if key.eq_ignore_ascii_case("client_no_context_takeover") {
                        deflate.client_no_context_takeover = true;
                    } else if key.eq_ignore_ascii_case("server_max_window_bits") {
                        deflate.server_max_window_bits = bits;
                    } else if key.eq_ignore_ascii_case("client_max_window_bits") {
                        deflate.client_max_window_bits =
                            if value.is_none() { Some(15) } else { bits };
                    }
                }
                Some(deflate)
            })
    }

    /// Whether the sender in `direction` starts each message afresh.
    pub(super) fn no_context_takeover(&self, direction: Direction) -> bool {
        match direction {
            Direction::ClientToServer => self.client_no_context_takeover,
            Direction::ServerToClient => self.server_no_context_takeover,
        }
    }
}

/// Splits on `sep` except inside double quotes (with `\` escapes).
fn split_outside_quotes(s: &str, sep: u8) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// A raw-deflate decompression context that may outlive a message.
pub(super) struct Inflater {
    inner: Decompress,
    /// The sender ended a deflate stream (BFINAL): nothing more can be inflated
    /// until a reset, which happens at the end of the message.
    pub(super) ended: bool,
    scratch: Box<[u8; SCRATCH]>,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("total_in", &self.inner.total_in())
            .field("total_out", &self.inner.total_out())
            .field("ended", &self.ended)
            .finish()
    }
}

impl Inflater {
    pub(super) fn new() -> Self {
        Self {
            inner: Decompress::new(false),
            ended: false,
            scratch: Box::new([0; SCRATCH]),
        }
    }

    pub(super) fn reset(&mut self) {
        self.inner.reset(false);
        self.ended = false;
    }

    /// Inflates `input`, passing the output on in pieces.
    pub(super) fn inflate(
        &mut self,
        mut input: &[u8],
        flush: FlushDecompress,
        out: &mut impl FnMut(&[u8]),
    ) -> Result<(), String> {
        while !self.ended {
            let (in_before, out_before) = (self.inner.total_in(), self.inner.total_out());
            let status = self
                .inner
                .decompress(input, &mut self.scratch[..], flush)
                .map_err(|e| format!("corrupt deflate data ({e})"))?;
            let consumed = usize::try_from(self.inner.total_in().saturating_sub(in_before))
                .unwrap_or(usize::MAX);
            let produced = usize::try_from(self.inner.total_out().saturating_sub(out_before))
                .unwrap_or(usize::MAX);
            let produced = produced.min(SCRATCH);
            out(&self.scratch[..produced]);
            input = input.get(consumed..).unwrap_or_default();
            if status == Status::StreamEnd {
                // Whatever follows a final block in this message is ignored.
                self.ended = true;
            } else if (consumed == 0 && produced == 0) || (input.is_empty() && produced < SCRATCH) {
                break;
            }
        }
        Ok(())
    }
}
