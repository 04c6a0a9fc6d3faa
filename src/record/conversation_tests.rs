//! Tests of the conversation tracker: threads, sessions, predecessors, calls.

use super::*;

fn d(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// Turns taken one after another: each arrives after the previous ended.
fn turn<'a>(
    id: &'a str,
    session: Option<&'a str>,
    inputs: &'a [String],
    outputs: &'a [String],
    calls: &'a [MadeCall],
) -> TurnInput<'a> {
    static BASE: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
    static TURNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = TURNS.fetch_add(1, Ordering::Relaxed);
    let started = *BASE + Duration::from_millis(10 * n);
    TurnInput {
        execution_id: "e",
        interaction_id: id,
        session,
        input_digests: inputs,
        output_digests: outputs,
        calls,
        response_end: SystemTime::UNIX_EPOCH,
        started,
        ended: started + Duration::from_millis(5),
    }
}

#[test]
fn a_request_never_extends_an_answer_it_had_not_seen() {
    let t = ConversationTracker::new();
    let base = Instant::now();
    let at = |ms: u64| base + Duration::from_millis(ms);
    let shared = d(&["sys", "u1"]);
    let (a, b) = (d(&["sys", "u1", "x"]), d(&["sys", "u1", "y"]));
    let mut first = turn("first", None, &shared, &[], &[]);
    (first.started, first.ended) = (at(0), at(10));
    t.link(&first);
    // Linked later, but it arrived (at 20) before `late` ended (at 40).
    let mut late = turn("late", None, &a, &[], &[]);
    (late.started, late.ended) = (at(30), at(40));
    assert_eq!(t.link(&late).previous_interaction_id, "first");
    let mut early = turn("early", None, &b, &[], &[]);
    (early.started, early.ended) = (at(20), at(50));
    let linked = t.link(&early);
    assert_eq!(
        (
            linked.previous_interaction_id.as_str(),
            linked.shared_prefix
        ),
        ("", 0),
        "`late` had not answered when `early` arrived: nothing is inherited from it"
    );
    assert_eq!(linked.new_input_indexes, [0, 1, 2]);
}

#[test]
fn turns_extend_threads_and_new_messages_are_found() {
    let t = ConversationTracker::new();
    let (i1, o1) = (d(&["sys", "u1"]), d(&["a1"]));
    let l1 = t.link(&turn("i1", None, &i1, &o1, &[]));
    assert_eq!(
        (
            l1.turn,
            l1.conversation_id.as_str(),
            l1.new_input_indexes.clone()
        ),
        (1, "i1", vec![0, 1])
    );
    let (i2, o2) = (d(&["sys", "u1", "a1", "r1"]), d(&["a2"]));
    let l2 = t.link(&turn("i2", None, &i2, &o2, &[]));
    assert_eq!(l2.conversation_id, "i1", "inferred from the shared prefix");
    assert_eq!(l2.previous_interaction_id, "i1");
    assert_eq!(l2.new_input_indexes, vec![3], "only the tool result is new");
    assert_eq!((l1.shared_prefix, l2.shared_prefix), (0, 2));
    // History rewritten after the first two messages: still the same
    // thread, sharing only what did not change.
    let i2b = d(&["sys", "u1", "edited"]);
    let l2b = t.link(&turn("i2b", None, &i2b, &[], &[]));
    assert_eq!(
        (l2b.previous_interaction_id.as_str(), l2b.shared_prefix),
        ("i2", 2)
    );
    // An unrelated request starts its own conversation.
    let i3 = d(&["other"]);
    let l3 = t.link(&turn("i3", None, &i3, &[], &[]));
    assert_eq!(l3.conversation_id, "i3");
}

#[test]
fn sessions_keep_parallel_conversations_apart() {
    let t = ConversationTracker::new();
    let i = d(&["sys", "u1"]);
    let a = t.link(&turn("a1", Some("s-A"), &i, &[], &[]));
    let b = t.link(&turn("b1", Some("s-B"), &i, &[], &[]));
    assert_eq!(
        (a.conversation_id.as_str(), b.conversation_id.as_str()),
        ("s-A", "s-B")
    );
    let i2 = d(&["sys", "u1", "x"]);
    let a2 = t.link(&turn("a2", Some("s-A"), &i2, &[], &[]));
    assert_eq!((a2.turn, a2.previous_interaction_id.as_str()), (2, "a1"));
}

#[test]
fn a_request_links_after_the_exchange_whose_answer_it_extends() {
    let t = Arc::new(ConversationTracker::new());
    let first = t.arrive("e");
    first.response_ended().store(true, Ordering::Release);
    let second = t.arrive("e"); // sent after the first answer was complete
    let (i1, o1) = (d(&["u1"]), d(&["a1"]));
    let i2 = d(&["u1", "a1", "u2"]);
    let later = {
        let t = t.clone();
        std::thread::spawn(move || {
            t.await_predecessors(&second, Duration::from_secs(30));
            let l = t.link(&turn("i2", None, &i2, &[], &[]));
            drop(second);
            l
        })
    };
    // The first exchange's record is built last, yet links first.
    std::thread::sleep(Duration::from_millis(20));
    let l1 = t.link(&turn("i1", None, &i1, &o1, &[]));
    drop(first);
    let l2 = later.join().unwrap();
    assert_eq!((l1.turn, l2.turn), (1, 2));
    assert_eq!(l2.previous_interaction_id, "i1");
    // Exchanges still answering when a request arrives are not waited for.
    let streaming = t.arrive("e");
    let independent = t.arrive("e");
    t.await_predecessors(&independent, Duration::from_secs(30));
    drop((streaming, independent));
}

#[tokio::test]
async fn capture_tasks_wait_for_the_latest_ended_exchanges_only() {
    let t = Arc::new(ConversationTracker::new());
    let earlier: Vec<PendingLink> = (0..MAX_PREDECESSORS + 10)
        .map(|_| {
            let p = t.arrive("e");
            p.response_ended().store(true, Ordering::Release);
            p
        })
        .collect();
    let next = t.arrive("e");
    assert_eq!(next.predecessors.len(), MAX_PREDECESSORS, "bounded");
    let waiting = {
        let t = t.clone();
        tokio::spawn(async move {
            t.predecessors_settled(&next, Duration::from_secs(60)).await;
            next
        })
    };
    // The oldest ten are not among those waited for: settling only the
    // latest lets the next one go.
    let mut earlier = earlier;
    let oldest: Vec<PendingLink> = earlier.drain(..10).collect();
    drop(earlier);
    let next = waiting.await.unwrap();
    assert!(
        next.predecessors
            .iter()
            .all(|p| p.done.load(Ordering::Acquire))
    );
    drop(oldest);
}

#[test]
fn results_find_their_calls_even_if_the_call_links_later() {
    let t = Arc::new(ConversationTracker::new());
    let pending = t.arrive("e"); // the exchange whose response holds the call, not yet linked
    let waiter = {
        let t = t.clone();
        std::thread::spawn(move || t.calls("e", &["call_1"], Duration::from_secs(30)))
    };
    let calls = vec![MadeCall {
        id: "call_1".into(),
        name: "Read".into(),
        context: None,
    }];
    let i = d(&["u"]);
    t.link(&turn("i1", None, &i, &[], &calls));
    drop(pending);
    let found = waiter.join().unwrap();
    assert_eq!(found["call_1"].interaction_id, "i1");
    // With nothing pending, unknown calls do not wait.
    assert!(t.calls("e", &["nope"], Duration::from_secs(30)).is_empty());
}
