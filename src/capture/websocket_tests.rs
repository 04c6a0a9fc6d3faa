//! Tests of the WebSocket decoder: frames, fragmentation, masking, limits,
//! protocol errors, extension negotiation, golden fixtures.

use super::test_support::*;
use super::*;

#[test]
fn rfc6455_examples() {
    // RFC 6455 §5.7, byte for byte.
    let masked_hello = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(
        decode(C2S, None, &masked_hello),
        [msg(Opcode::Text, b"Hello")]
    );
    let unmasked_hello = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(
        decode(S2C, None, &unmasked_hello),
        [msg(Opcode::Text, b"Hello")]
    );
    let fragmented = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    assert_eq!(
        decode(S2C, None, &fragmented),
        [msg(Opcode::Text, b"Hello")]
    );
    let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(decode(S2C, None, &ping), [msg(Opcode::Ping, b"Hello")]);
    let masked_pong = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(
        decode(C2S, None, &masked_pong),
        [msg(Opcode::Pong, b"Hello")]
    );
}

#[test]
fn masked_and_unmasked_text() {
    let text = "héllo, wörld 🌍".as_bytes();
    let wire = frame(true, 0x1, text, Some(KEY));
    assert_eq!(decode(C2S, None, &wire), [msg(Opcode::Text, text)]);
    let wire = frame(true, 0x1, text, None);
    assert_eq!(decode(S2C, None, &wire), [msg(Opcode::Text, text)]);
    // Empty messages, masked and not.
    let wire = frame(true, 0x2, b"", Some(KEY));
    assert_eq!(decode(C2S, None, &wire), [msg(Opcode::Binary, b"")]);
}

#[test]
fn sixteen_and_sixty_four_bit_lengths() {
    let small: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let big: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
    let mut wire = encode(true, false, 0x2, &small, Some(KEY), None);
    assert_eq!(&wire[1..4], &[0x80 | 126, 0x01, 0x2c]);
    wire.extend(encode(true, false, 0x2, &big, Some(KEY), None));
    // Non-minimal forms are accepted.
    wire.extend(encode(true, false, 0x1, b"tiny", Some(KEY), Some(126)));
    wire.extend(encode(true, false, 0x1, b"tiny", Some(KEY), Some(127)));
    let exactly = vec![b'x'; 65_535];
    wire.extend(encode(true, false, 0x2, &exactly, Some(KEY), None));
    assert_eq!(
        decode(C2S, None, &wire),
        [
            msg(Opcode::Binary, &small),
            msg(Opcode::Binary, &big),
            msg(Opcode::Text, b"tiny"),
            msg(Opcode::Text, b"tiny"),
            msg(Opcode::Binary, &exactly),
        ]
    );
}

#[test]
fn fragmented_message_with_a_ping_in_the_middle() {
    let mut wire = frame(false, 0x1, b"Hel", Some(KEY));
    wire.extend(frame(true, 0x9, b"are you there", Some([1, 2, 3, 4])));
    wire.extend(frame(false, 0x0, b"", Some([9, 9, 9, 9])));
    wire.extend(frame(false, 0x0, b"lo, ", Some([5, 6, 7, 8])));
    wire.extend(frame(true, 0xA, b"", Some([1, 1, 1, 1])));
    wire.extend(frame(true, 0x0, b"world", Some([0xde, 0xad, 0xbe, 0xef])));
    assert_eq!(
        decode(C2S, None, &wire),
        [
            msg(Opcode::Ping, b"are you there"),
            msg(Opcode::Pong, b""),
            msg(Opcode::Text, b"Hello, world"),
        ]
    );
}

#[test]
fn close_frame_with_code_and_reason() {
    let mut payload = 1001u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"going away");
    let out = decode(S2C, None, &frame(true, 0x8, &payload, None));
    assert_eq!(out, [msg(Opcode::Close, &payload)]);
    assert_eq!(out[0].close(), Some((1001, &b"going away"[..])));
    let out = decode(C2S, None, &frame(true, 0x8, b"", Some(KEY)));
    assert_eq!((out[0].opcode, out[0].close()), (Opcode::Close, None));
}

/// A stream with every feature: masked or not, compressed and plain,
/// fragments, controls in between, all three length forms, close.
fn mixed_stream(direction: Direction) -> (Vec<u8>, Option<Deflate>) {
    let key = |i: u8| (direction == C2S).then_some([i, i ^ 0x5a, 0x13, i.wrapping_mul(7)]);
    let deflate = Deflate::default();
    let mut z = Deflater::new();
    let mut wire = frame(true, 0x1, b"plain", key(1));
    wire.extend(encode(
        true,
        true,
        0x1,
        &z.message(b"compressed hello hello hello"),
        key(2),
        None,
    ));
    let body = z.message(&b"fragmented and compressed, hello hello ".repeat(20));
    let (a, b) = body.split_at(body.len() / 3);
    wire.extend(encode(false, true, 0x1, a, key(3), None));
    wire.extend(frame(true, 0x9, b"ping", key(4)));
    wire.extend(frame(true, 0x0, b, key(5)));
    wire.extend(encode(true, false, 0x2, &[7u8; 200], key(6), None));
    wire.extend(encode(
        true,
        true,
        0x2,
        &z.message(&[7u8; 70_000]),
        key(7),
        None,
    ));
    wire.extend(frame(true, 0xA, b"", key(8)));
    wire.extend(frame(true, 0x8, &1000u16.to_be_bytes(), key(9)));
    (wire, Some(deflate))
}

#[test]
fn every_split_point_gives_the_same_messages() {
    for direction in [C2S, S2C] {
        let (wire, deflate) = mixed_stream(direction);
        let whole = decode(direction, deflate, &wire);
        assert_eq!(whole.len(), 8);
        assert_eq!(whole[2], msg(Opcode::Ping, b"ping"));
        assert_eq!(
            whole[3],
            compressed(
                Opcode::Text,
                &b"fragmented and compressed, hello hello ".repeat(20)
            )
        );
        assert_eq!(whole[5], compressed(Opcode::Binary, &[7u8; 70_000]));
        for split in 0..=wire.len() {
            let mut d = Decoder::new(direction, deflate, 1 << 20);
            let mut out = Vec::new();
            d.feed(&wire[..split], &mut |m| out.push(m));
            d.feed(&wire[split..], &mut |m| out.push(m));
            assert_eq!(out, whole, "split at {split}");
        }
        for sizes in [&[1][..], &[2, 3], &[7, 1, 5], &[4096, 13]] {
            let (out, d) = decode_in_pieces(direction, deflate, 1 << 20, &wire, sizes);
            assert_eq!(d.failed(), None);
            assert_eq!(out, whole, "sizes {sizes:?}");
        }
    }
}

#[test]
fn truncation_at_max_message() {
    let long: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut wire = encode(true, false, 0x1, &long, Some(KEY), None);
    wire.extend(frame(false, 0x2, &long[..600], Some([1, 2, 3, 4])));
    wire.extend(frame(true, 0x0, &long[600..], Some([4, 3, 2, 1])));
    wire.extend(frame(true, 0x9, &long[..125], Some(KEY)));
    wire.extend(frame(true, 0x1, b"short", Some(KEY)));
    for sizes in [&[usize::MAX][..], &[1], &[33, 7]] {
        let (out, d) = decode_in_pieces(C2S, None, 100, &wire, sizes);
        assert_eq!(d.failed(), None);
        let cut = |opcode, size| Message {
            opcode,
            payload: long[..100].to_vec(),
            size,
            truncated: true,
            compressed: false,
            inflate_failed: false,
        };
        assert_eq!(
            out,
            [
                cut(Opcode::Text, 1000),
                cut(Opcode::Binary, 1000),
                cut(Opcode::Ping, 125),
                msg(Opcode::Text, b"short"),
            ]
        );
    }
    let (out, _) = decode_in_pieces(C2S, None, 0, &wire, &[usize::MAX]);
    assert!(out.iter().all(|m| m.payload.is_empty() && m.truncated));
}

#[test]
fn truncated_compressed_messages_keep_the_context_in_step() {
    // The big message is cut at 60 bytes, but inflating goes on to its
    // end, so the next message (which refers back to it) still decodes.
    let big = br#"{"type":"response.output_text.delta","delta":"xyz"}"#.repeat(300);
    let small = br#"{"type":"response.output_text.delta","delta":"xyz"}"#;
    let mut z = Deflater::new();
    let mut wire = encode(true, true, 0x1, &z.message(&big), None, None);
    let second = z.message(small);
    assert!(second.len() < small.len() / 2, "{} bytes", second.len());
    wire.extend(encode(true, true, 0x1, &second, None, None));
    for sizes in [&[usize::MAX][..], &[1], &[100, 3]] {
        let (out, d) = decode_in_pieces(S2C, Some(Deflate::default()), 60, &wire, sizes);
        assert_eq!(d.failed(), None);
        assert_eq!(
            out,
            [
                Message {
                    opcode: Opcode::Text,
                    payload: big[..60].to_vec(),
                    size: big.len() as u64,
                    truncated: true,
                    compressed: true,
                    inflate_failed: false,
                },
                compressed(Opcode::Text, &small[..]),
            ]
        );
    }
}

fn failure(direction: Direction, deflate: Option<Deflate>, wire: &[u8]) -> String {
    let mut d = Decoder::new(direction, deflate, 1024);
    let mut out = Vec::new();
    d.feed(wire, &mut |m| out.push(m));
    let reason = d
        .failed()
        .unwrap_or_else(|| panic!("no failure for {wire:02x?}"))
        .to_owned();
    // Later input is ignored, valid or not.
    d.feed(&frame(true, 0x1, b"ok", None), &mut |m| out.push(m));
    d.feed(&frame(true, 0x1, b"ok", Some(KEY)), &mut |m| out.push(m));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(d.failed(), Some(reason.as_str()));
    assert!(!d.finish());
    reason
}

#[test]
fn protocol_errors_are_recorded_not_panicked() {
    let cases: Vec<(Direction, Option<Deflate>, Vec<u8>, &str)> = vec![
        (C2S, None, frame(true, 0x1, b"hi", None), "not masked"),
        (
            S2C,
            None,
            frame(true, 0x1, b"hi", Some(KEY)),
            "server frame is masked",
        ),
        (
            S2C,
            None,
            frame(true, 0x3, b"", None),
            "reserved opcode 0x3",
        ),
        (
            S2C,
            None,
            frame(true, 0xB, b"", None),
            "reserved opcode 0xb",
        ),
        (S2C, None, vec![0x91, 0x00], "RSV2/RSV3"),
        (S2C, None, vec![0xa1, 0x00], "RSV2/RSV3"),
        (
            S2C,
            None,
            encode(true, true, 0x1, b"x", None, None),
            "not negotiated",
        ),
        (
            S2C,
            None,
            frame(true, 0x0, b"x", None),
            "no fragmented message",
        ),
        (S2C, None, frame(false, 0x9, b"", None), "fragmented ping"),
        (
            S2C,
            None,
            frame(true, 0x8, &[0; 126], None),
            "longer than 125",
        ),
        (
            S2C,
            Some(Deflate::default()),
            encode(true, true, 0x9, b"", None, None),
            "RSV1 set on a ping",
        ),
        (
            S2C,
            Some(Deflate::default()),
            [
                encode(false, true, 0x1, b"", None, None),
                encode(true, true, 0x0, b"", None, None),
            ]
            .concat(),
            "RSV1 set on a continuation",
        ),
        (
            S2C,
            None,
            [frame(false, 0x1, b"a", None), frame(true, 0x2, b"b", None)].concat(),
            "new data frame",
        ),
        (
            S2C,
            None,
            vec![0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0],
            "most significant bit",
        ),
        (
            S2C,
            None,
            vec![0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            "most significant bit",
        ),
    ];
    for (direction, deflate, wire, expected) in cases {
        let reason = failure(direction, deflate, &wire);
        assert!(reason.contains(expected), "{reason:?} for {wire:02x?}");
    }
    let mut d = Decoder::new(S2C, None, 10);
    let wire = [frame(true, 0x1, b"ok", None), vec![0x83, 0x00]].concat();
    d.feed(&wire, &mut |m| assert_eq!(m, msg(Opcode::Text, b"ok")));
    let reason = d.failed().unwrap();
    assert!(
        reason.starts_with("server→client WebSocket frame at byte 4: "),
        "{reason}"
    );
}

#[test]
fn huge_declared_lengths_cost_nothing() {
    // 2^63 - 1 bytes announced, a few sent: counted, never allocated.
    let mut wire = vec![0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    wire.extend([1, 2, 3]);
    let mut d = Decoder::new(S2C, None, 2);
    let mut out = Vec::new();
    d.feed(&wire, &mut |m| out.push(m));
    assert!(out.is_empty());
    assert_eq!(d.failed(), None);
    assert_eq!(
        d.message.as_ref().map(|m| (m.size, m.payload.len())),
        Some((3, 2))
    );
    assert!(d.finish(), "the stream was cut mid-frame");
    assert!(!d.finish());
}

#[test]
fn finish_reports_cut_streams() {
    let wire = frame(false, 0x1, b"Hel", None);
    for cut in 1..wire.len() {
        let mut d = Decoder::new(S2C, None, 100);
        d.feed(&wire[..cut], &mut |_| panic!("nothing is complete"));
        assert!(d.finish(), "cut at {cut}");
    }
    let mut d = Decoder::new(S2C, None, 100);
    d.feed(&wire, &mut |_| panic!("nothing is complete"));
    assert!(d.finish(), "fragmented message not finished");
    let mut d = Decoder::new(S2C, None, 100);
    d.feed(&frame(true, 0x1, b"Hello", None), &mut |_| {});
    assert!(!d.finish());
}

#[test]
fn negotiated_parameters() {
    assert_eq!(
        Deflate::negotiated("permessage-deflate; client_max_window_bits"),
        Some(Deflate {
            client_max_window_bits: Some(15),
            ..Deflate::default()
        })
    );
    assert_eq!(
        Deflate::negotiated(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        ),
        Some(Deflate {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..Deflate::default()
        })
    );
    assert_eq!(
        Deflate::negotiated(
            r#"x-unknown; a="b,permessage-deflate", PerMessage-Deflate;server_max_window_bits=10 ;client_max_window_bits="12""#
        ),
        Some(Deflate {
            server_max_window_bits: Some(10),
            client_max_window_bits: Some(12),
            ..Deflate::default()
        })
    );
    assert_eq!(
        Deflate::negotiated("permessage-deflate"),
        Some(Deflate::default())
    );
    assert_eq!(
        Deflate::negotiated("permessage-deflate; server_max_window_bits=99; foo=bar"),
        Some(Deflate::default())
    );
    assert_eq!(Deflate::negotiated(""), None);
    assert_eq!(Deflate::negotiated("x-webkit-deflate-frame"), None);
    assert_eq!(Deflate::negotiated("permessage-deflate-ish"), None);
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/websocket/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json(m: &Message) -> serde_json::Value {
    assert_eq!(m.opcode, Opcode::Text);
    serde_json::from_slice(&m.payload).unwrap()
}

#[test]
fn golden_openai_responses_exchange() {
    let deflate = Deflate::negotiated("permessage-deflate; client_max_window_bits=15");
    assert!(deflate.is_some());

    let wire = fixture("client_to_server.bin");
    let client = decode(C2S, deflate, &wire);
    assert_eq!(client.len(), 3);
    assert_eq!(
        client[0],
        msg(
            Opcode::Text,
            br#"{"type":"response.create","model":"gpt-5.1-codex","input":[{"role":"user","content":"hi"}]}"#
        )
    );
    assert_eq!(client[1], msg(Opcode::Pong, b"ka-1"));
    assert_eq!(client[2].close(), Some((1000, &b""[..])));

    let wire = fixture("server_to_client.bin");
    let server = decode(S2C, deflate, &wire);
    assert_eq!(server.len(), 6);
    assert!(
        server
            .iter()
            .filter(|m| m.opcode == Opcode::Text)
            .all(|m| m.compressed)
    );
    let created = json(&server[0]);
    assert_eq!(created["type"], "response.created");
    assert_eq!(created["response"]["model"], "gpt-5.1-codex");
    assert_eq!(created["response"]["status"], "in_progress");
    assert_eq!(server[1], msg(Opcode::Ping, b"ka-1"));
    let deltas: Vec<serde_json::Value> = server[2..4].iter().map(json).collect();
    assert!(
        deltas
            .iter()
            .all(|d| d["type"] == "response.output_text.delta")
    );
    assert_eq!(
        (&deltas[0]["delta"], &deltas[1]["delta"]),
        (&"Hel".into(), &"lo".into())
    );
    let completed = json(&server[4]);
    assert_eq!(completed["type"], "response.completed");
    let response = &completed["response"];
    assert_eq!(response["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(response["usage"]["total_tokens"], 10);
    let sequence: Vec<u64> = [&created, &deltas[0], &deltas[1], &completed]
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(sequence, [0, 1, 2, 3]);
    assert_eq!(server[5].close(), Some((1000, &b""[..])));
    // Compression shared a context across messages: the wire is much
    // smaller than what it carried.
    let carried: u64 = server.iter().map(|m| m.size).sum();
    assert!(
        (wire.len() as u64) < carried / 2,
        "{} vs {carried}",
        wire.len()
    );

    for split in 0..=wire.len() {
        let mut d = Decoder::new(S2C, deflate, 1 << 20);
        let mut out = Vec::new();
        d.feed(&wire[..split], &mut |m| out.push(m));
        d.feed(&wire[split..], &mut |m| out.push(m));
        assert_eq!(out, server, "split at {split}");
    }
    // Read with too small a limit, the events are cut but still counted.
    let (cut, d) = decode_in_pieces(S2C, deflate, 64, &wire, &[1]);
    assert_eq!(d.failed(), None);
    assert_eq!(
        cut.iter().map(|m| m.size).collect::<Vec<_>>(),
        server.iter().map(|m| m.size).collect::<Vec<_>>()
    );
    assert!(cut[4].truncated && cut[4].payload == server[4].payload[..64]);
}
