//! Inherited inputs: an agent resends its whole conversation every turn, so a
//! record that listed every input message would grow with the conversation
//! and the journal with its square. A linked interaction therefore stores
//! only the messages after the prefix it shares with its previous
//! interaction (`inherited_input_count`), and readers put the prefix back by
//! following `previous_interaction_id`.
//!
//! Guarantees: `expand_all` and `InputResolver` give every reader the same
//! whole list the request carried; a prefix whose record is missing is left
//! unresolved and says so (a capture issue) instead of failing the read.
//! Bounds: the resolver caches at most `RESOLVER_CACHE` whole lists and walks
//! at most `MAX_CHAIN` records back.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::{CaptureIssue, Interaction, Message, digest_of};

/// Whole input lists the exporter keeps, by interaction id: enough for the
/// conversations in flight, each resolved from its last turn.
const RESOLVER_CACHE: usize = 64;
/// How far back a resolver walks before giving up (a cycle, or a very long
/// chain not in its cache).
const MAX_CHAIN: usize = 100_000;

/// The digest that stands for a whole input: over its messages' digests, in order.
pub fn messages_digest(messages: &[Message]) -> String {
    let joined: Vec<&str> = messages.iter().map(|m| m.digest.as_str()).collect();
    digest_of(joined.join("\n").as_bytes())
}

/// Records the digest of the whole input, then drops the first `shared`
/// input messages: they are the previous interaction's.
pub fn inherit(it: &mut Interaction, shared: u32) {
    it.inputs_digest = messages_digest(&it.input_messages);
    let shared = (shared as usize).min(it.input_messages.len());
    if shared == 0 || it.previous_interaction_id.is_empty() {
        return;
    }
    it.input_messages.drain(..shared);
    it.inherited_input_count = shared as u32;
}

/// The request's input message at index `i` of its whole list, if stored
/// here (inherited ones are not, until resolved).
pub fn input_at(it: &Interaction, i: u32) -> Option<&Message> {
    let stored = i.checked_sub(it.inherited_input_count)?;
    it.input_messages.get(stored as usize)
}

/// The digest of the whole input, as recorded (or computed, for records
/// made before it was).
pub fn inputs_digest(it: &Interaction) -> String {
    if it.inputs_digest.is_empty() && it.inherited_input_count == 0 {
        messages_digest(&it.input_messages)
    } else {
        it.inputs_digest.clone()
    }
}

/// Puts `previous`'s first messages back in front of `it`'s stored ones.
/// `previous` must be the previous interaction's whole list.
fn prepend(it: &mut Interaction, previous: &[Message]) -> bool {
    let n = it.inherited_input_count as usize;
    if previous.len() < n {
        return false;
    }
    let mut whole = Vec::with_capacity(n + it.input_messages.len());
    whole.extend_from_slice(&previous[..n]);
    whole.append(&mut it.input_messages);
    it.input_messages = whole;
    it.inherited_input_count = 0;
    true
}

fn unresolved(it: &mut Interaction) {
    let detail = format!(
        "the first {} input messages are those of interaction {}, which the journal does not hold",
        it.inherited_input_count, it.previous_interaction_id
    );
    it.capture_issues.push(CaptureIssue {
        kind: "inputs_unresolved".into(),
        detail,
    });
}

/// Resolves inherited inputs across one execution's interactions, given
/// in the order they began (a previous interaction began before the one
/// continuing it).
pub fn expand_all(interactions: &mut [Interaction]) {
    let mut index: HashMap<String, usize> = HashMap::new();
    for i in 0..interactions.len() {
        if interactions[i].inherited_input_count > 0 {
            let previous = index
                .get(&interactions[i].previous_interaction_id)
                .copied()
                .filter(|&p| interactions[p].inherited_input_count == 0);
            let (done, rest) = interactions.split_at_mut(i);
            let it = &mut rest[0];
            let resolved = previous.is_some_and(|p| prepend(it, &done[p].input_messages));
            if !resolved {
                unresolved(it);
            }
        }
        index.insert(interactions[i].id.clone(), i);
    }
}

/// Resolves inherited inputs one record at a time, loading previous
/// interactions by id (the exporter reads the journal in commit order, not
/// by conversation).
#[derive(Default)]
pub struct InputResolver {
    cache: HashMap<String, Arc<Vec<Message>>>,
    order: VecDeque<String>,
}

impl InputResolver {
    /// `it`'s whole input list; `None` when a record in its chain is missing.
    pub fn whole(
        &mut self,
        it: &Interaction,
        load: &mut dyn FnMut(&str) -> Option<Interaction>,
    ) -> Option<Arc<Vec<Message>>> {
        if it.inherited_input_count == 0 {
            let whole = Arc::new(it.input_messages.clone());
            self.remember(&it.id, whole.clone());
            return Some(whole);
        }
        if let Some(hit) = self.cache.get(&it.id) {
            return Some(hit.clone());
        }
        // Walk back to a record that is whole or cached, then forward.
        let mut chain: Vec<Interaction> = vec![it.clone()];
        let mut base: Arc<Vec<Message>> = loop {
            let last = chain.last().expect("starts non-empty");
            if last.inherited_input_count == 0 {
                let last = chain.pop().expect("non-empty");
                break Arc::new(last.input_messages);
            }
            if chain.len() > MAX_CHAIN {
                return None;
            }
            let previous_id = last.previous_interaction_id.clone();
            if let Some(hit) = self.cache.get(&previous_id) {
                break hit.clone();
            }
            chain.push(load(&previous_id)?);
        };
        while let Some(mut next) = chain.pop() {
            if !prepend(&mut next, &base) {
                return None;
            }
            base = Arc::new(next.input_messages);
            self.remember(&next.id, base.clone());
        }
        Some(base)
    }

    fn remember(&mut self, id: &str, whole: Arc<Vec<Message>>) {
        if self.cache.insert(id.to_owned(), whole).is_none() {
            self.order.push_back(id.to_owned());
        }
        while self.order.len() > RESOLVER_CACHE {
            if let Some(old) = self.order.pop_front() {
                self.cache.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(d: &str) -> Message {
        Message {
            role: "user".into(),
            digest: d.into(),
            ..Default::default()
        }
    }

    fn turn(id: &str, previous: &str, inputs: &[&str], shared: u32) -> Interaction {
        let mut it = Interaction {
            id: id.into(),
            previous_interaction_id: previous.into(),
            input_messages: inputs.iter().map(|d| msg(d)).collect(),
            ..Default::default()
        };
        inherit(&mut it, shared);
        it
    }

    fn digests(ms: &[Message]) -> Vec<&str> {
        ms.iter().map(|m| m.digest.as_str()).collect()
    }

    fn conversation() -> Vec<Interaction> {
        vec![
            turn("t1", "", &["s", "u1"], 0),
            turn("t2", "t1", &["s", "u1", "a1", "u2"], 2),
            turn("t3", "t2", &["s", "u1", "a1", "u2", "a2", "u3"], 4),
        ]
    }

    #[test]
    fn records_keep_only_what_follows_the_shared_prefix() {
        let c = conversation();
        assert_eq!(digests(&c[2].input_messages), ["a2", "u3"]);
        assert_eq!(c[2].inherited_input_count, 4);
        assert_eq!(input_at(&c[2], 5).map(|m| m.digest.as_str()), Some("u3"));
        assert_eq!(input_at(&c[2], 1), None, "inherited, not stored here");
        let whole = turn("x", "", &["s", "u1", "a1", "u2", "a2", "u3"], 0);
        assert_eq!(inputs_digest(&c[2]), inputs_digest(&whole));
        // Without a previous interaction nothing is inherited.
        assert_eq!(turn("y", "", &["s"], 1).inherited_input_count, 0);
    }

    #[test]
    fn readers_put_the_prefix_back() {
        let mut c = conversation();
        expand_all(&mut c);
        assert_eq!(
            digests(&c[2].input_messages),
            ["s", "u1", "a1", "u2", "a2", "u3"]
        );
        assert!(c.iter().all(|i| i.inherited_input_count == 0));

        let c = conversation();
        let by_id: HashMap<String, Interaction> =
            c.iter().map(|i| (i.id.clone(), i.clone())).collect();
        let loads = std::cell::Cell::new(0);
        let mut load = |id: &str| {
            loads.set(loads.get() + 1);
            by_id.get(id).cloned()
        };
        let mut r = InputResolver::default();
        let whole = r.whole(&c[2], &mut load).unwrap();
        assert_eq!(digests(&whole), ["s", "u1", "a1", "u2", "a2", "u3"]);
        assert_eq!(loads.get(), 2);
        let next = turn("t4", "t3", &["s", "u1", "a1", "u2", "a2", "u3", "a3"], 6);
        assert_eq!(r.whole(&next, &mut load).unwrap().len(), 7);
        assert_eq!(
            loads.get(),
            2,
            "each turn resolves from the cached one before"
        );
    }

    #[test]
    fn a_missing_previous_record_is_reported_not_guessed() {
        let mut c = conversation();
        c.remove(0);
        expand_all(&mut c);
        assert_eq!(c[0].capture_issues[0].kind, "inputs_unresolved");
        assert_eq!(digests(&c[0].input_messages), ["a1", "u2"]);
        assert_eq!(c[0].inherited_input_count, 2);
        let mut r = InputResolver::default();
        assert!(r.whole(&c[1], &mut |_| None).is_none());
    }
}
