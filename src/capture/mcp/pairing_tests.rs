//! Tests of `pairing.rs`.

use super::*;

fn arrival(side: Side, text: &str) -> Arrival {
    Arrival {
        side,
        at: SystemTime::UNIX_EPOCH,
        bytes: Bytes::copy_from_slice(text.as_bytes()),
        size: text.len() as u64,
        oversized: false,
        digest: None,
        origin: Arc::new(Origin::default()),
        record_id: None,
    }
}

fn method_and_answered(f: &Finished) -> (String, bool) {
    match f {
        Finished::Exchange {
            request, response, ..
        } => (request.method.clone(), response.is_some()),
        other => panic!("not an exchange: {other:?}"),
    }
}

#[test]
fn pairs_by_id_and_learns_the_session() {
    let mut p = Pairing::new(SessionInfo::default(), false);
    assert!(p
        .observe(arrival(
            Side::Client,
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","clientInfo":{"name":"c","version":"1"},"capabilities":{}}}"#
        ))
        .is_empty());
    let out = p.observe(arrival(
        Side::Server,
        r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","serverInfo":{"name":"s","version":"2"},"capabilities":{}}}"#,
    ));
    assert_eq!(method_and_answered(&out[0]), ("initialize".into(), true));
    assert_eq!(
        p.info.protocol_version, "2025-06-18",
        "the negotiated version wins"
    );
    assert_eq!(p.info.server.as_ref().unwrap().name, "s");
    assert_eq!(p.info.client.as_ref().unwrap().version, "1");
}

#[test]
fn client_and_server_ids_do_not_collide() {
    let mut p = Pairing::new(SessionInfo::default(), false);
    p.observe(arrival(
        Side::Client,
        r#"{"id":1,"method":"tools/call","params":{"name":"t"}}"#,
    ));
    // The server asks the client something with the same id meanwhile.
    p.observe(arrival(
        Side::Server,
        r#"{"id":1,"method":"sampling/createMessage"}"#,
    ));
    let a = p.observe(arrival(
        Side::Client,
        r#"{"id":1,"result":{"role":"assistant"}}"#,
    ));
    let b = p.observe(arrival(Side::Server, r#"{"id":1,"result":{"content":[]}}"#));
    assert_eq!(method_and_answered(&a[0]).0, "sampling/createMessage");
    assert_eq!(method_and_answered(&b[0]).0, "tools/call");
    assert!(matches!(
        a[0],
        Finished::Exchange {
            initiator: Side::Server,
            ..
        }
    ));
}

#[test]
fn progress_is_counted_and_cancellation_finishes() {
    let mut p = Pairing::new(SessionInfo::default(), false);
    p.observe(arrival(
        Side::Client,
        r#"{"id":5,"method":"tools/call","params":{"name":"slow","_meta":{"progressToken":"tok"}}}"#,
    ));
    let n = p.observe(arrival(
        Side::Server,
        r#"{"method":"notifications/progress","params":{"progressToken":"tok","progress":1}}"#,
    ));
    assert!(matches!(&n[0], Finished::Notification { related: Some(r), .. } if r == "5"));
    let c = p.observe(arrival(
        Side::Client,
        r#"{"method":"notifications/cancelled","params":{"requestId":5,"reason":"user"}}"#,
    ));
    match &c[0] {
        Finished::Exchange {
            request,
            unanswered: Some(why),
            ..
        } => {
            assert_eq!(request.progress, 1);
            assert_eq!(why, "cancelled by the client: user");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(c[1], Finished::Notification { .. }));
    // A late answer has nothing to pair with.
    let late = p.observe(arrival(Side::Server, r#"{"id":5,"result":{}}"#));
    assert!(matches!(late[0], Finished::Orphan { .. }));
}

#[test]
fn batches_garbage_and_close() {
    let mut p = Pairing::new(SessionInfo::default(), false);
    let out = p.observe(arrival(
        Side::Client,
        r#"[{"id":1,"method":"a"},{"id":2,"method":"b"},{"method":"n"}]"#,
    ));
    assert_eq!(out.len(), 1, "only the notification is finished at once");
    let out = p.observe(arrival(
        Side::Server,
        r#"[{"id":2,"result":{}},{"id":1,"result":{}}]"#,
    ));
    assert_eq!(out.len(), 2);
    assert!(
        out.iter()
            .all(|f| matches!(f, Finished::Exchange { request, .. } if request.seen.batched))
    );
    let g = p.observe(arrival(Side::Server, "Starting server...\n"));
    assert!(matches!(g[0], Finished::Malformed { .. }));
    p.observe(arrival(Side::Client, r#"{"id":9,"method":"tools/call"}"#));
    assert_eq!(p.pending(), 1);
    let closed = p.close("the server exited");
    assert!(
        matches!(&closed[0], Finished::Exchange { unanswered: Some(w), .. } if w == "the server exited")
    );
    assert_eq!(p.pending(), 0);
}

#[test]
fn early_responses_wait_for_their_request_when_reordering_is_possible() {
    let mut p = Pairing::new(SessionInfo::default(), true);
    assert!(
        p.observe(arrival(
            Side::Client,
            r#"{"id":"s1","result":{"action":"accept"}}"#
        ))
        .is_empty()
    );
    let out = p.observe(arrival(
        Side::Server,
        r#"{"id":"s1","method":"elicitation/create"}"#,
    ));
    assert_eq!(
        method_and_answered(&out[0]),
        ("elicitation/create".into(), true)
    );
}

#[test]
fn pending_is_bounded() {
    let mut p = Pairing::new(SessionInfo::default(), false);
    let mut finished = 0;
    for i in 0..(MAX_PENDING + 3) {
        finished += p
            .observe(arrival(
                Side::Client,
                &format!(r#"{{"id":{i},"method":"m"}}"#),
            ))
            .len();
    }
    assert_eq!(finished, 3);
    assert_eq!(p.pending(), MAX_PENDING);
}

#[test]
fn progress_that_overtakes_its_request_still_counts() {
    let mut p = Pairing::new(SessionInfo::default(), true);
    let early = p.observe(arrival(
        Side::Server,
        r#"{"method":"notifications/progress","params":{"progressToken":7,"progress":1}}"#,
    ));
    assert!(early.is_empty(), "held until its request shows up");
    let out = p.observe(arrival(
        Side::Client,
        r#"{"id":7,"method":"tools/call","params":{"name":"slow","_meta":{"progressToken":7}}}"#,
    ));
    assert!(matches!(&out[0], Finished::Notification { related: Some(r), .. } if r == "7"));
    let done = p.observe(arrival(Side::Server, r#"{"id":7,"result":{}}"#));
    assert!(matches!(&done[0], Finished::Exchange { request, .. } if request.progress == 1));
    // Progress for a request never seen comes out at the end, unrelated.
    p.observe(arrival(
        Side::Server,
        r#"{"method":"notifications/progress","params":{"progressToken":"x","progress":1}}"#,
    ));
    let closed = p.close("bye");
    assert!(matches!(
        &closed[0],
        Finished::Notification { related: None, .. }
    ));
}

#[test]
fn progress_tokens_of_the_two_sides_do_not_collide() {
    let mut p = Pairing::new(SessionInfo::default(), false);
    p.observe(arrival(
        Side::Client,
        r#"{"id":1,"method":"tools/call","params":{"_meta":{"progressToken":1}}}"#,
    ));
    p.observe(arrival(
        Side::Server,
        r#"{"id":1,"method":"sampling/createMessage","params":{"_meta":{"progressToken":1}}}"#,
    ));
    // The server reports progress on the client's call; the client on the server's request.
    let a = p.observe(arrival(
        Side::Server,
        r#"{"method":"notifications/progress","params":{"progressToken":1,"progress":1}}"#,
    ));
    let b = p.observe(arrival(
        Side::Client,
        r#"{"method":"notifications/progress","params":{"progressToken":1,"progress":1}}"#,
    ));
    assert!(matches!(&a[0], Finished::Notification { related: Some(r), .. } if r == "1"));
    assert!(matches!(&b[0], Finished::Notification { related: Some(r), .. } if r == "1"));
    let sampled = p.observe(arrival(Side::Client, r#"{"id":1,"result":{}}"#));
    assert!(
        matches!(&sampled[0], Finished::Exchange { initiator: Side::Server, request, .. } if request.progress == 1)
    );
    let called = p.observe(arrival(Side::Server, r#"{"id":1,"result":{}}"#));
    assert!(
        matches!(&called[0], Finished::Exchange { initiator: Side::Client, request, .. } if request.progress == 1)
    );
}

#[test]
fn progress_and_answer_both_ahead_of_the_request() {
    let mut p = Pairing::new(SessionInfo::default(), true);
    p.observe(arrival(
        Side::Server,
        r#"{"method":"notifications/progress","params":{"progressToken":4,"progress":1}}"#,
    ));
    p.observe(arrival(Side::Server, r#"{"id":4,"result":{}}"#));
    let out = p.observe(arrival(
        Side::Client,
        r#"{"id":4,"method":"tools/call","params":{"_meta":{"progressToken":4}}}"#,
    ));
    assert_eq!(out.len(), 2);
    assert!(matches!(&out[0], Finished::Notification { related: Some(r), .. } if r == "4"));
    assert!(
        matches!(&out[1], Finished::Exchange { request, response: Some(_), .. } if request.progress == 1)
    );
}

#[test]
fn a_repeated_early_answer_is_not_lost() {
    let mut p = Pairing::new(SessionInfo::default(), true);
    p.observe(arrival(Side::Server, r#"{"id":9,"result":{"n":1}}"#));
    let second = p.observe(arrival(Side::Server, r#"{"id":9,"result":{"n":2}}"#));
    assert!(
        matches!(second[0], Finished::Orphan { .. }),
        "the first comes out as an orphan"
    );
    let out = p.observe(arrival(Side::Client, r#"{"id":9,"method":"ping"}"#));
    assert!(matches!(out[0], Finished::Exchange { .. }));
}

#[test]
fn oversized_messages_pair_by_their_start() {
    let mut p = Pairing::new(SessionInfo::default(), false);
    let mut big = arrival(
        Side::Client,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x","argu"#,
    );
    big.oversized = true;
    big.size = 50_000_000;
    assert!(p.observe(big).is_empty(), "pending like any request");
    let mut answer = arrival(
        Side::Server,
        r#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"te"#,
    );
    answer.oversized = true;
    let out = p.observe(answer);
    match &out[0] {
        Finished::Exchange {
            request,
            response: Some((seen, _)),
            ..
        } => {
            assert_eq!(
                (request.method.as_str(), request.seen.size),
                ("tools/call", 50_000_000)
            );
            assert!(request.seen.oversized.is_some() && seen.oversized.is_some());
        }
        other => panic!("{other:?}"),
    }
}
