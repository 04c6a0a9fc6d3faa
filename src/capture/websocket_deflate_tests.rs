//! Tests of the WebSocket decoder's permessage-deflate (RFC 7692): the RFC's
//! examples, context takeover, corrupt and mismatched compressed data.

use super::test_support::*;
use super::*;

#[test]
fn rfc7692_examples() {
    let d = Some(Deflate::default());
    // §7.2.3.1: "Hello" compressed.
    let hello = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(decode(S2C, d, &hello), [compressed(Opcode::Text, b"Hello")]);
    // §7.2.3.1: the same, in two fragments.
    let fragments = [
        0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00,
    ];
    assert_eq!(
        decode(S2C, d, &fragments),
        [compressed(Opcode::Text, b"Hello")]
    );
    // §7.2.3.2: the second "Hello" refers back to the first.
    let mut twice = hello.to_vec();
    twice.extend([0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]);
    assert_eq!(
        decode(S2C, d, &twice),
        [
            compressed(Opcode::Text, b"Hello"),
            compressed(Opcode::Text, b"Hello")
        ]
    );
    // §7.2.3.3: a stored (uncompressed) DEFLATE block.
    let stored = [
        0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    assert_eq!(
        decode(S2C, d, &stored),
        [compressed(Opcode::Text, b"Hello")]
    );
    // §7.2.3.4: a block with BFINAL set; the next message starts afresh.
    let mut bfinal = vec![0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    bfinal.extend(hello);
    assert_eq!(
        decode(S2C, d, &bfinal),
        [
            compressed(Opcode::Text, b"Hello"),
            compressed(Opcode::Text, b"Hello")
        ]
    );
}

fn deflate_messages(direction: Direction, takeover: bool) -> (Vec<u8>, Vec<Vec<u8>>) {
    let texts: Vec<Vec<u8>> = (0..5)
        .map(|i| {
            format!(
                r#"{{"type":"response.output_text.delta","delta":"chunk {i}","item_id":"msg_0123456789abcdef","output_index":0}}"#
            )
            .into_bytes()
        })
        .collect();
    let mut z = Deflater::new();
    let mut wire = Vec::new();
    let mut sizes = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        if !takeover {
            z = Deflater::new();
        }
        let body = z.message(text);
        sizes.push(body.len());
        let key = (direction == C2S).then_some([i as u8, 0xaa, 0x55, 0x0f]);
        wire.extend(encode(true, true, 0x1, &body, key, None));
        wire.extend(frame(true, 0x9, b"", key)); // never compressed
    }
    if takeover {
        assert!(
            sizes[1] < sizes[0] / 2,
            "context takeover was not used: {sizes:?}"
        );
    } else {
        assert!(sizes.iter().all(|&s| s == sizes[0]), "{sizes:?}");
    }
    (wire, texts)
}

#[test]
fn permessage_deflate_with_and_without_context_takeover() {
    for direction in [C2S, S2C] {
        for takeover in [true, false] {
            let (wire, texts) = deflate_messages(direction, takeover);
            let deflate = Deflate {
                server_no_context_takeover: !takeover && direction == S2C,
                client_no_context_takeover: !takeover && direction == C2S,
                ..Deflate::default()
            };
            let out: Vec<Message> = decode(direction, Some(deflate), &wire)
                .into_iter()
                .filter(|m| m.opcode == Opcode::Text)
                .collect();
            let expected: Vec<Message> =
                texts.iter().map(|t| compressed(Opcode::Text, t)).collect();
            assert_eq!(out, expected, "{direction:?} takeover {takeover}");
            for sizes in [&[1][..], &[5, 2]] {
                let (all, d) = decode_in_pieces(direction, Some(deflate), 1 << 20, &wire, sizes);
                assert_eq!(d.failed(), None);
                assert_eq!(all.len(), 10);
            }
        }
    }
}

#[test]
fn the_no_context_takeover_flag_of_the_other_direction_does_not_apply() {
    // The server resets its context, the client does not: reading the
    // client's messages must keep the context.
    let (wire, texts) = deflate_messages(C2S, true);
    let deflate = Deflate::negotiated("permessage-deflate; server_no_context_takeover");
    let out = decode(C2S, deflate, &wire);
    assert_eq!(out[8], compressed(Opcode::Text, &texts[4]));
}

#[test]
fn corrupt_deflate_data_is_reported_and_ends_decoding() {
    let mut z = Deflater::new();
    let good = z.message(b"first message");
    let mut wire = encode(true, true, 0x1, &good, None, None);
    // A block of the reserved type 3 after two valid fragments' worth of
    // data: the message is still framed, so it is delivered, then the
    // decoder gives up.
    let mut bad = z.message(b"second message, longer than the first");
    let valid = bad.len();
    bad.extend([0x06, 0x12, 0x34]);
    wire.extend(encode(false, true, 0x1, &bad[..valid], None, None));
    wire.extend(frame(true, 0x9, b"mid", None));
    wire.extend(frame(true, 0x0, &bad[valid..], None));
    wire.extend(encode(true, true, 0x1, &good, None, None));
    for sizes in [&[usize::MAX][..], &[1], &[4, 9]] {
        let (out, d) = decode_in_pieces(S2C, Some(Deflate::default()), 1 << 20, &wire, sizes);
        assert_eq!(out.len(), 3, "nothing after the failure: {out:?}");
        assert_eq!(out[0], compressed(Opcode::Text, b"first message"));
        assert_eq!(out[1], msg(Opcode::Ping, b"mid"));
        assert_eq!(
            out[2],
            Message {
                opcode: Opcode::Text,
                payload: b"second message, longer than the first".to_vec(),
                size: bad.len() as u64,
                truncated: true,
                compressed: true,
                inflate_failed: true,
            }
        );
        let reason = d.failed().unwrap();
        assert!(
            reason.contains("permessage-deflate: corrupt deflate data"),
            "{reason}"
        );
    }

    // Garbage with RSV1.
    let wire = encode(true, true, 0x2, &[0xff; 20], None, None);
    let (out, d) = decode_in_pieces(S2C, Some(Deflate::default()), 100, &wire, &[3]);
    assert_eq!(
        (out.len(), out[0].inflate_failed, out[0].size),
        (1, true, 20)
    );
    assert!(d.failed().is_some());
}

#[test]
fn wrong_parameters_inflate_to_garbage_not_to_an_error() {
    // Known limitation of flate2's pure-Rust backend: a back-reference to
    // context the reader does not have reads zeros instead of failing.
    // Only wrong parameters cause this (here: a context-takeover stream
    // read with server_no_context_takeover), so pass the real 101 header.
    let (wire, texts) = deflate_messages(S2C, true);
    let deflate = Deflate::negotiated("permessage-deflate; server_no_context_takeover");
    let (out, d) = decode_in_pieces(S2C, deflate, 1 << 20, &wire, &[usize::MAX]);
    assert_eq!(d.failed(), None);
    assert_eq!(out[0], compressed(Opcode::Text, &texts[0]));
    assert_eq!(out[2].size, texts[1].len() as u64);
    assert!(out[2].payload.contains(&0) && !out[2].inflate_failed);
}
