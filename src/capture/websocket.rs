//! Passive, incremental WebSocket (RFC 6455) decoder with permessage-deflate
//! (RFC 7692), for recording a connection the proxy passes through untouched.
//!
//! One [`Decoder`] per direction reads a copy of the bytes that crossed the
//! proxy after the `101 Switching Protocols` response, in whatever pieces they
//! arrive, and hands over whole messages: fragments reassembled, client frames
//! unmasked, compressed messages inflated. Control frames (close, ping, pong)
//! are delivered as they come, even between the fragments of a data message.
//!
//! It never answers anything and never panics. Memory is bounded: at most one
//! partial frame header (14 bytes), one control frame payload (125 bytes) and
//! `max_message` bytes of the current data message are kept, plus, once a
//! compressed message was seen, the inflate state (about 50 KiB: the 32 KiB
//! window, tables and an 8 KiB output buffer). Past `max_message` a message is
//! only counted. A compressed one is still inflated to its end, into the
//! scratch buffer, because the sender's compression context carries over to
//! the next message: stopping early would lose the window every later message
//! refers to (and the count gives the exact inflated size). Inflating costs at
//! most about 1 KiB of output per byte on the wire (DEFLATE's limit).
//!
//! On a protocol error it gives up for good and keeps the reason
//! ([`Decoder::failed`]); the proxied connection is not affected.
//! Lenient where leniency costs nothing: non-minimal length encodings, close
//! codes, invalid UTF-8 in text messages and frames after a close are passed
//! on as they are. Strict where the framing would otherwise be guessed:
//! reserved opcodes, RSV bits no negotiated extension explains, wrong masking
//! for the direction, fragmented or oversized control frames, 64-bit lengths
//! with the top bit set, continuation frames out of place, and compressed data
//! that does not inflate.
//!
//! permessage-deflate notes:
//! - flate2's pure-Rust backend inflates with a 15-bit window only; smaller
//!   negotiated windows are read with it, which is always safe (a compressor
//!   never refers further back than its own window).
//! - The same backend does not notice a back-reference to data it never saw
//!   (it reads zeros instead). That only happens when the decoder was given
//!   the wrong parameters (say, `server_no_context_takeover` when the server
//!   keeps its context), so build [`Deflate`] from the real 101 response.
//! - A sender that ends a message with a final block (BFINAL) starts a new
//!   stream: the context is reset after that message.
//!
//! Wiring it up: the client's bytes after its upgrade request and the
//! server's bytes after the 101 response's header block go to a
//! `ClientToServer` and a `ServerToClient` decoder; both get
//! `Deflate::negotiated` of the 101's `Sec-WebSocket-Extensions` (the
//! response, not the client's offer). Nothing is decoded when the upgrade was
//! refused. With HTTP/2 (RFC 8441) the DATA payloads of the CONNECT stream are
//! the same bytes.

use flate2::FlushDecompress;

#[path = "websocket_deflate.rs"]
mod deflate;

pub use deflate::Deflate;
use deflate::Inflater;

/// Which way frames travel (client frames are masked, server frames are not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

impl Direction {
    fn describe(self) -> &'static str {
        match self {
            Direction::ClientToServer => "client→server",
            Direction::ServerToClient => "server→client",
        }
    }
}

/// The kind of a delivered message (continuation frames are folded into the
/// message they continue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    /// Lower-case name, for records.
    pub fn as_str(self) -> &'static str {
        match self {
            Opcode::Text => "text",
            Opcode::Binary => "binary",
            Opcode::Close => "close",
            Opcode::Ping => "ping",
            Opcode::Pong => "pong",
        }
    }

    fn from_wire(op: u8) -> Option<Opcode> {
        Some(match op {
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// One complete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub opcode: Opcode,
    /// Unmasked and inflated; at most `max_message` bytes of it.
    pub payload: Vec<u8>,
    /// The whole payload's size after inflating (or on the wire when it was
    /// not compressed, or when inflating failed).
    pub size: u64,
    /// `payload` holds less than the whole message.
    pub truncated: bool,
    /// The message was sent compressed (RSV1 on its first frame).
    pub compressed: bool,
    /// The compressed data was corrupt: `payload` is what inflated before the
    /// error (maybe nothing), `size` the compressed size on the wire, and the
    /// decoder has failed right after delivering this message (the receiving
    /// endpoint fails the connection on such data, and with a shared
    /// compression context nothing after it could be inflated either).
    pub inflate_failed: bool,
}

impl Message {
    /// A close frame's status code and reason bytes (UTF-8 by the RFC, not
    /// checked), when it carries a code.
    pub fn close(&self) -> Option<(u16, &[u8])> {
        match (self.opcode, self.payload.as_slice()) {
            (Opcode::Close, [hi, lo, reason @ ..]) => {
                Some((u16::from_be_bytes([*hi, *lo]), reason))
            }
            _ => None,
        }
    }
}

/// Largest frame header: 2 bytes, 8 of extended length, 4 of masking key.
const MAX_HEADER: usize = 14;
/// Control frames carry at most this much (RFC 6455 §5.5).
const MAX_CONTROL: u64 = 125;
/// The tail a sender strips from each compressed message (RFC 7692 §7.2.1)
/// and a receiver puts back before inflating (§7.2.2).
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Unmasking/inflating works through buffers of this size.
const SCRATCH: usize = 8192;

/// A frame whose header was read and whose payload is being read.
#[derive(Debug)]
struct Frame {
    fin: bool,
    /// `None` for a continuation frame.
    opcode: Option<Opcode>,
    mask: Option<[u8; 4]>,
    len: u64,
    /// Payload bytes read so far.
    read: u64,
}

/// The data message being reassembled.
#[derive(Debug)]
struct Partial {
    opcode: Opcode,
    compressed: bool,
    payload: Vec<u8>,
    /// Bytes of payload the message has (inflated when compressed).
    size: u64,
    /// Bytes of payload on the wire.
    wire: u64,
    inflate_error: Option<String>,
}

/// Decodes one direction of a WebSocket connection.
#[derive(Debug)]
pub struct Decoder {
    direction: Direction,
    deflate: Option<Deflate>,
    max_message: usize,
    header: [u8; MAX_HEADER],
    header_len: usize,
    frame: Option<Frame>,
    message: Option<Partial>,
    /// Payload of the control frame being read.
    control: Vec<u8>,
    /// Created with the first compressed message.
    inflater: Option<Inflater>,
    /// Bytes fed so far, and where the current frame began (for reasons).
    fed: u64,
    frame_start: u64,
    failed: Option<String>,
}

impl Decoder {
    /// `deflate` is what [`Deflate::negotiated`] made of the 101 response;
    /// `max_message` bounds the payload kept per message.
    pub fn new(direction: Direction, deflate: Option<Deflate>, max_message: usize) -> Self {
        Self {
            direction,
            deflate,
            max_message,
            header: [0; MAX_HEADER],
            header_len: 0,
            frame: None,
            message: None,
            control: Vec::new(),
            inflater: None,
            fed: 0,
            frame_start: 0,
            failed: None,
        }
    }

    /// Feed bytes as they passed, in any chunking; calls `on_message` for each
    /// complete message (fragmented messages reassembled; control frames
    /// delivered as they come, even in the middle of a fragmented message).
    pub fn feed(&mut self, chunk: &[u8], on_message: &mut impl FnMut(Message)) {
        let mut input = chunk;
        while self.failed.is_none() {
            let Some(frame) = &self.frame else {
                if input.is_empty() {
                    break;
                }
                let used = self.read_header(input).min(input.len());
                input = &input[used..];
                self.fed = self.fed.saturating_add(used as u64);
                continue;
            };
            let remaining = frame.len - frame.read;
            if remaining > 0 {
                if input.is_empty() {
                    break;
                }
                let n = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                self.read_payload(&input[..n]);
                input = &input[n..];
                self.fed = self.fed.saturating_add(n as u64);
            } else {
                self.end_frame(on_message);
            }
        }
    }

    /// True once the decoder gave up (a protocol error); it then ignores
    /// further input. The reason is kept.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Ends the stream. Returns true when it stopped inside a frame or a
    /// fragmented message (the record should say it was cut); false after a
    /// failure, which has its own reason.
    pub fn finish(&mut self) -> bool {
        let cut = self.failed.is_none()
            && (self.header_len > 0 || self.frame.is_some() || self.message.is_some());
        self.header_len = 0;
        self.frame = None;
        self.message = None;
        self.control = Vec::new();
        cut
    }

    fn fail(&mut self, reason: impl std::fmt::Display) {
        self.failed = Some(format!(
            "{} WebSocket frame at byte {}: {reason}",
            self.direction.describe(),
            self.frame_start
        ));
        self.header_len = 0;
        self.frame = None;
        self.message = None;
        self.control = Vec::new();
        self.inflater = None;
    }

    /// Header bytes needed, as far as the bytes read so far tell.
    fn header_needed(&self) -> usize {
        if self.header_len < 2 {
            return 2;
        }
        let extended = match self.header[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        2 + extended + mask
    }

    /// Takes header bytes from `input`; returns how many it used.
    fn read_header(&mut self, input: &[u8]) -> usize {
        if self.header_len == 0 {
            self.frame_start = self.fed;
        }
        let mut used = 0;
        loop {
            let needed = self.header_needed();
            if self.header_len >= needed {
                break;
            }
            let take = (needed - self.header_len).min(input.len() - used);
            if take == 0 {
                return used;
            }
            self.header[self.header_len..self.header_len + take]
                .copy_from_slice(&input[used..used + take]);
            self.header_len += take;
            used += take;
            if self.header_len == 2
                && let Err(reason) = self.check_first_bytes()
            {
                self.fail(reason);
                return used;
            }
        }
        self.start_frame();
        used
    }

    /// Checks what the first two header bytes say, so garbage fails early.
    fn check_first_bytes(&self) -> Result<(), String> {
        let (b0, b1) = (self.header[0], self.header[1]);
        let (fin, rsv1) = (b0 & 0x80 != 0, b0 & 0x40 != 0);
        let (op, masked, len7) = (b0 & 0x0f, b1 & 0x80 != 0, u64::from(b1 & 0x7f));
        if b0 & 0x30 != 0 {
            return Err("RSV2/RSV3 set, but no extension using them can be negotiated".into());
        }
        match (op, Opcode::from_wire(op)) {
            (0, _) => {
                if self.message.is_none() {
                    return Err("continuation frame with no fragmented message to continue".into());
                }
                if rsv1 {
                    return Err("RSV1 set on a continuation frame".into());
                }
            }
            (_, Some(opcode)) if opcode.is_control() => {
                if !fin {
                    return Err(format!("fragmented {} frame", opcode.as_str()));
                }
                if len7 > MAX_CONTROL {
                    return Err(format!("{} frame longer than 125 bytes", opcode.as_str()));
                }
                if rsv1 {
                    return Err(format!("RSV1 set on a {} frame", opcode.as_str()));
                }
            }
            (_, Some(_)) => {
                if self.message.is_some() {
                    return Err("new data frame before the fragmented message finished".into());
                }
                if rsv1 && self.deflate.is_none() {
                    return Err("RSV1 set, but permessage-deflate was not negotiated".into());
                }
            }
            (_, None) => return Err(format!("reserved opcode {op:#x}")),
        }
        match (self.direction, masked) {
            (Direction::ClientToServer, false) => Err("client frame is not masked".into()),
            (Direction::ServerToClient, true) => Err("server frame is masked".into()),
            _ => Ok(()),
        }
    }

    /// The header is complete (and its first bytes checked): start the frame.
    fn start_frame(&mut self) {
        let h = self.header;
        self.header_len = 0;
        let (fin, rsv1, op) = (h[0] & 0x80 != 0, h[0] & 0x40 != 0, h[0] & 0x0f);
        let (len, rest) = match h[1] & 0x7f {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => {
                let len = u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]);
                if len >> 63 != 0 {
                    self.fail("64-bit payload length with the most significant bit set");
                    return;
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = (h[1] & 0x80 != 0).then(|| [h[rest], h[rest + 1], h[rest + 2], h[rest + 3]]);
        let opcode = Opcode::from_wire(op);
        match opcode {
            Some(o) if o.is_control() => self.control.clear(),
            Some(o) => {
                if rsv1 {
                    let inflater = self.inflater.get_or_insert_with(Inflater::new);
                    if inflater.ended {
                        inflater.reset();
                    }
                }
                self.message = Some(Partial {
                    opcode: o,
                    compressed: rsv1,
                    payload: Vec::new(),
                    size: 0,
                    wire: 0,
                    inflate_error: None,
                });
            }
            None => {} // continuation, checked to have a message
        }
        self.frame = Some(Frame {
            fin,
            opcode,
            mask,
            len,
            read: 0,
        });
    }

    fn read_payload(&mut self, data: &[u8]) {
        let Some(frame) = self.frame.as_mut() else {
            return;
        };
        let (offset, mask) = (frame.read, frame.mask);
        frame.read += data.len() as u64;
        if frame.opcode.is_some_and(Opcode::is_control) {
            let start = self.control.len();
            push_capped(&mut self.control, data, MAX_CONTROL as usize);
            unmask(&mut self.control[start..], mask, offset);
            return;
        }
        let Some(msg) = self.message.as_mut() else {
            return;
        };
        msg.wire = msg.wire.saturating_add(data.len() as u64);
        let max = self.max_message;
        if !msg.compressed {
            msg.size = msg.size.saturating_add(data.len() as u64);
            let start = msg.payload.len();
            push_capped(&mut msg.payload, data, max);
            unmask(&mut msg.payload[start..], mask, offset);
            return;
        }
        let Some(inflater) = self.inflater.as_mut() else {
            return;
        };
        let mut buf = [0u8; SCRATCH];
        let mut at = offset;
        for piece in data.chunks(SCRATCH) {
            let buf = &mut buf[..piece.len()];
            buf.copy_from_slice(piece);
            unmask(buf, mask, at);
            at += piece.len() as u64;
            inflate_into(inflater, msg, buf, FlushDecompress::None, max);
        }
    }

    fn end_frame(&mut self, on_message: &mut impl FnMut(Message)) {
        let Some(frame) = self.frame.take() else {
            return;
        };
        match frame.opcode {
            Some(opcode) if opcode.is_control() => {
                let mut payload = std::mem::take(&mut self.control);
                let truncated = payload.len() > self.max_message;
                payload.truncate(self.max_message);
                on_message(Message {
                    opcode,
                    payload,
                    size: frame.len,
                    truncated,
                    compressed: false,
                    inflate_failed: false,
                });
            }
            _ if frame.fin => {
                let Some(mut msg) = self.message.take() else {
                    return;
                };
                if msg.compressed
                    && let Some(inflater) = self.inflater.as_mut()
                {
                    inflate_into(
                        inflater,
                        &mut msg,
                        &DEFLATE_TAIL,
                        FlushDecompress::Sync,
                        self.max_message,
                    );
                    let fresh = self
                        .deflate
                        .is_some_and(|d| d.no_context_takeover(self.direction));
                    if fresh || inflater.ended {
                        inflater.reset();
                    }
                }
                let failure = msg.inflate_error.take();
                let size = if failure.is_some() {
                    msg.wire
                } else {
                    msg.size
                };
                on_message(Message {
                    opcode: msg.opcode,
                    truncated: failure.is_some() || (msg.payload.len() as u64) < size,
                    payload: msg.payload,
                    size,
                    compressed: msg.compressed,
                    inflate_failed: failure.is_some(),
                });
                if let Some(reason) = failure {
                    self.fail(reason);
                }
            }
            _ => {} // a non-final fragment: the message goes on
        }
    }
}

/// Inflates `input` into the message, keeping at most `max` bytes and
/// counting the rest. After an error the message only counts wire bytes.
fn inflate_into(
    inflater: &mut Inflater,
    msg: &mut Partial,
    input: &[u8],
    flush: FlushDecompress,
    max: usize,
) {
    if msg.inflate_error.is_some() {
        return;
    }
    let (payload, size) = (&mut msg.payload, &mut msg.size);
    let result = inflater.inflate(input, flush, &mut |out| {
        *size = size.saturating_add(out.len() as u64);
        push_capped(payload, out, max);
    });
    if let Err(reason) = result {
        msg.inflate_error = Some(format!("permessage-deflate: {reason}"));
    }
}

/// Appends as much of `data` as fits under `max`, never letting the buffer's
/// capacity grow past `max` either.
fn push_capped(buf: &mut Vec<u8>, data: &[u8], max: usize) {
    let keep = max.saturating_sub(buf.len()).min(data.len());
    let needed = buf.len() + keep;
    if needed > buf.capacity() {
        let target = needed.max(buf.capacity().saturating_mul(2)).min(max);
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(&data[..keep]);
}

/// Unmasks `data`, which starts `offset` bytes into its frame's payload.
fn unmask(data: &mut [u8], mask: Option<[u8; 4]>, offset: u64) {
    if let Some(key) = mask {
        let start = (offset & 3) as usize;
        for (i, b) in data.iter_mut().enumerate() {
            *b ^= key[(start + i) & 3];
        }
    }
}

#[cfg(test)]
#[path = "websocket_deflate_tests.rs"]
mod deflate_tests;
#[cfg(test)]
#[path = "websocket_random_tests.rs"]
mod random_tests;
#[cfg(test)]
#[path = "websocket_test_support.rs"]
mod test_support;
#[cfg(test)]
#[path = "websocket_tests.rs"]
mod tests;
