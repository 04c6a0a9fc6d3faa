//! Fuzz-like tests of the WebSocket decoder: random valid streams cut at random
//! points decode to what was sent, and random garbage never panics.

use super::test_support::*;
use super::*;

/// xorshift64*: enough randomness for fuzz-like tests, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn some_bytes(&mut self, below: usize) -> Vec<u8> {
        let n = self.below(below);
        self.bytes(n)
    }

    /// Random chunk sizes, small or large.
    fn sizes(&mut self) -> Vec<usize> {
        let top = [1, 3, 16, 200, 5000][self.below(5)];
        (0..1 + self.below(8))
            .map(|_| 1 + self.below(top))
            .collect()
    }
}

/// A random valid stream and the messages it must decode to.
fn random_stream(
    rng: &mut Rng,
    direction: Direction,
    deflate: Option<Deflate>,
) -> (Vec<u8>, Vec<Message>) {
    let fresh = deflate.is_some_and(|d| d.no_context_takeover(direction));
    let mut z = Deflater::new();
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    let key = |rng: &mut Rng| {
        (direction == C2S).then(|| rng.next().to_le_bytes()[..4].try_into().unwrap())
    };
    let control = |rng: &mut Rng, wire: &mut Vec<u8>, expected: &mut Vec<Message>| {
        let (op, opcode) = [(0x9, Opcode::Ping), (0xA, Opcode::Pong)][rng.below(2)];
        let payload = rng.some_bytes(126);
        let k = key(rng);
        wire.extend(frame(true, op, &payload, k));
        expected.push(msg(opcode, &payload));
    };
    for _ in 0..1 + rng.below(6) {
        if rng.chance(4) {
            control(rng, &mut wire, &mut expected);
            continue;
        }
        let len = [
            0,
            1,
            5,
            125,
            126,
            127,
            300,
            65_535,
            65_536,
            70_000,
            rng.below(200),
        ][if rng.chance(8) {
            rng.below(11)
        } else {
            rng.below(7) + 4 * usize::from(rng.chance(2))
        }];
        let payload = if rng.chance(2) {
            let words = [
                &b"hello "[..],
                b"delta ",
                b"{\"type\":",
                b"\xf0\x9f\x8c\x8d",
            ];
            let mut p = Vec::new();
            while p.len() < len {
                p.extend_from_slice(words[rng.below(4)]);
            }
            p.truncate(len);
            p
        } else {
            rng.bytes(len)
        };
        let is_compressed = deflate.is_some() && !rng.chance(3);
        let body = if is_compressed {
            if fresh {
                z = Deflater::new();
            }
            z.message(&payload)
        } else {
            payload.clone()
        };
        let mut cuts: Vec<usize> = (0..rng.below(4))
            .map(|_| rng.below(body.len() + 1))
            .collect();
        cuts.sort_unstable();
        cuts.push(body.len());
        let (op, opcode) = [(0x1, Opcode::Text), (0x2, Opcode::Binary)][rng.below(2)];
        let mut at = 0;
        for (i, &cut) in cuts.iter().enumerate() {
            if i > 0 && rng.chance(3) {
                control(rng, &mut wire, &mut expected);
            }
            let first = i == 0;
            let k = key(rng);
            wire.extend(encode(
                i + 1 == cuts.len(),
                first && is_compressed,
                if first { op } else { 0 },
                &body[at..cut],
                k,
                None,
            ));
            at = cut;
        }
        expected.push(Message {
            compressed: is_compressed,
            ..msg(opcode, &payload)
        });
    }
    if rng.chance(2) {
        let mut payload = (1000 + rng.below(4000) as u16).to_be_bytes().to_vec();
        payload.extend(rng.some_bytes(50));
        let k = key(rng);
        wire.extend(frame(true, 0x8, &payload, k));
        expected.push(msg(Opcode::Close, &payload));
    }
    (wire, expected)
}

fn random_config(rng: &mut Rng) -> (Direction, Option<Deflate>, usize) {
    let direction = if rng.chance(2) { C2S } else { S2C };
    let deflate = (!rng.chance(3)).then(|| Deflate {
        server_no_context_takeover: rng.chance(2),
        client_no_context_takeover: rng.chance(2),
        ..Deflate::default()
    });
    let max = [0, 1, 7, 130, 1000, 1 << 20][rng.below(6)];
    (direction, deflate, max)
}

#[test]
fn random_valid_streams_in_random_pieces() {
    let mut rng = Rng(0x5eed_1e55_0b5e_55ed);
    for round in 0..400 {
        let (direction, deflate, max) = random_config(&mut rng);
        let (wire, expected) = random_stream(&mut rng, direction, deflate);
        let expected: Vec<Message> = expected
            .into_iter()
            .map(|mut m| {
                m.truncated = m.payload.len() > max;
                m.payload.truncate(max);
                m
            })
            .collect();
        for _ in 0..2 {
            let sizes = rng.sizes();
            let (out, mut d) = decode_in_pieces(direction, deflate, max, &wire, &sizes);
            assert_eq!(d.failed(), None, "round {round}");
            assert!(!d.finish(), "round {round}");
            assert_eq!(out, expected, "round {round}, sizes {sizes:?}");
        }
    }
}

fn check_garbage(
    rng: &mut Rng,
    direction: Direction,
    deflate: Option<Deflate>,
    max: usize,
    wire: &[u8],
) {
    let sizes = rng.sizes();
    let mut d = Decoder::new(direction, deflate, max);
    let mut rest = wire;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        d.feed(&rest[..n], &mut |m| {
            assert!(m.payload.len() <= max);
            assert!(m.inflate_failed || m.payload.len() as u64 <= m.size);
            assert_eq!(
                m.truncated,
                m.inflate_failed || (m.payload.len() as u64) < m.size
            );
        });
        assert_bounded(&d);
        rest = &rest[n..];
        i += 1;
    }
    d.finish();
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng(0xbad_f00d_dead_beef);
    for _ in 0..3000 {
        let (direction, deflate, max) = random_config(&mut rng);
        let len = rng.below(2000);
        let mut wire = rng.bytes(len);
        // Bias towards plausible headers so that decoding gets further.
        if rng.chance(2) && wire.len() > 2 {
            wire[0] &= 0xcf;
            wire[1] = (wire[1] & 0x7f) | if direction == C2S { 0x80 } else { 0 };
        }
        check_garbage(&mut rng, direction, deflate, max, &wire);
    }
    // Valid streams, damaged.
    for _ in 0..1500 {
        let (direction, deflate, max) = random_config(&mut rng);
        let (mut wire, _) = random_stream(&mut rng, direction, deflate);
        for _ in 0..1 + rng.below(4) {
            if wire.is_empty() {
                break;
            }
            let at = rng.below(wire.len());
            match rng.below(4) {
                0 => wire[at] ^= 1 << rng.below(8),
                1 => wire[at] = rng.next() as u8,
                2 => {
                    let end = (at + rng.below(20)).min(wire.len());
                    wire.drain(at..end);
                }
                _ => {
                    let end = (at + rng.below(20)).min(wire.len());
                    let copy = wire[at..end].to_vec();
                    wire.splice(at..at, copy);
                }
            }
        }
        check_garbage(&mut rng, direction, deflate, max, &wire);
    }
}
