//! Helpers shared by the WebSocket decoder tests: frame encoding, a sender's
//! deflate context, decoding in pieces.

use flate2::{Compress, Compression, FlushCompress};

use super::*;

pub(super) const C2S: Direction = Direction::ClientToServer;
pub(super) const S2C: Direction = Direction::ServerToClient;

/// Encodes one frame; `form` forces the 16-bit (126) or 64-bit (127)
/// length form, otherwise the shortest is used.
pub(super) fn encode(
    fin: bool,
    rsv1: bool,
    op: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
    form: Option<u8>,
) -> Vec<u8> {
    let mut out = vec![u8::from(fin) << 7 | u8::from(rsv1) << 6 | op];
    let m = if mask.is_some() { 0x80 } else { 0 };
    let n = payload.len();
    match form {
        None if n < 126 => out.push(m | n as u8),
        Some(126) | None if n < 65536 => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let start = out.len() + mask.map_or(0, |_| 4);
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    out.extend_from_slice(payload);
    unmask(&mut out[start..], mask, 0);
    out
}

pub(super) fn frame(fin: bool, op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    encode(fin, false, op, payload, mask, None)
}

/// A sender's permessage-deflate context.
pub(super) struct Deflater(Compress);

impl Deflater {
    pub(super) fn new() -> Self {
        Self(Compress::new(Compression::default(), false))
    }

    /// Compresses one message: sync flush, the 00 00 ff ff tail removed.
    pub(super) fn message(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 64);
        let mut input = data;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(64));
            }
            let before = self.0.total_in();
            self.0
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .unwrap();
            input = &input[(self.0.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        assert!(out.ends_with(&DEFLATE_TAIL), "sync flush tail");
        out.truncate(out.len() - 4);
        out
    }
}

pub(super) fn assert_bounded(d: &Decoder) {
    assert!(d.header_len <= MAX_HEADER);
    assert!(d.control.capacity() as u64 <= MAX_CONTROL);
    if let Some(m) = &d.message {
        assert!(m.payload.capacity() <= d.max_message);
    }
}

/// Feeds `wire` in pieces of the given sizes (cycled).
pub(super) fn decode_in_pieces(
    direction: Direction,
    deflate: Option<Deflate>,
    max: usize,
    wire: &[u8],
    sizes: &[usize],
) -> (Vec<Message>, Decoder) {
    let mut d = Decoder::new(direction, deflate, max);
    let mut out = Vec::new();
    let mut rest = wire;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        d.feed(&rest[..n], &mut |m| out.push(m));
        assert_bounded(&d);
        rest = &rest[n..];
        i += 1;
    }
    (out, d)
}

pub(super) fn decode(direction: Direction, deflate: Option<Deflate>, wire: &[u8]) -> Vec<Message> {
    let (out, mut d) = decode_in_pieces(direction, deflate, 1 << 20, wire, &[usize::MAX]);
    assert_eq!(d.failed(), None);
    assert!(!d.finish(), "stream ends mid-frame");
    out
}

pub(super) fn msg(opcode: Opcode, payload: &[u8]) -> Message {
    Message {
        opcode,
        payload: payload.to_vec(),
        size: payload.len() as u64,
        truncated: false,
        compressed: false,
        inflate_failed: false,
    }
}

pub(super) fn compressed(opcode: Opcode, payload: &[u8]) -> Message {
    Message {
        compressed: true,
        ..msg(opcode, payload)
    }
}

pub(super) const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
