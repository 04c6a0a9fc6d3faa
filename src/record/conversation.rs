//! Linking requests into conversations and tool calls to their results.
//!
//! Agents resend the conversation on every request, so each request is
//! matched to the thread it extends (longest common prefix of message
//! digests), which tells which messages are new this turn. Conversations
//! are keyed by the agent's session id when it sends one, else inferred
//! within the execution. Tool calls the model made are remembered until
//! their results come back, to give each result its call and the time the
//! agent took.
//!
//! Bounds: at most `MAX_CONVERSATIONS` conversations (least recently used
//! dropped), `MAX_THREADS` threads each, `MAX_CALLS` pending calls. State
//! is behind one std mutex, held only for map updates, never across await.
//! Losing state (eviction, restart) only loses links, never records.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

const MAX_CONVERSATIONS: usize = 10_000;
const MAX_THREADS: usize = 8;
const MAX_CALLS: usize = 100_000;

/// What a tool call retrieves, per the context rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextTarget {
    /// "file", "url", "command_output", ...
    pub kind: String,
    /// The path, URL, query or command.
    pub uri: String,
}

/// A tool call a response asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeCall {
    pub id: String,
    pub name: String,
    pub context: Option<ContextTarget>,
}

/// One exchange, as far as linking is concerned.
#[derive(Debug)]
pub struct TurnInput<'a> {
    pub execution_id: &'a str,
    pub interaction_id: &'a str,
    /// The agent's session id, when it sent one.
    pub session: Option<&'a str>,
    pub input_digests: &'a [String],
    pub output_digests: &'a [String],
    /// The tool calls this response asked for.
    pub calls: &'a [MadeCall],
    /// When the response ended (when the calls were complete).
    pub response_end: SystemTime,
    /// When the request arrived and when its response ended, on the
    /// monotonic clock: a request can only extend a thread whose latest
    /// answer had ended before it arrived (the agent had not seen it yet
    /// otherwise), whatever order records are linked in.
    pub started: Instant,
    pub ended: Instant,
}

/// Where a request sits in its conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Linked {
    pub conversation_id: String,
    pub turn: u32,
    pub previous_interaction_id: String,
    pub new_input_indexes: Vec<u32>,
    /// How many leading inputs this request shares with the previous
    /// interaction's inputs (0 without a previous interaction).
    pub shared_prefix: u32,
}

/// A tool call the model made, remembered until its result comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    pub interaction_id: String,
    pub tool_name: String,
    pub call_time: SystemTime,
    /// What the call retrieves, per the context rules.
    pub context: Option<ContextTarget>,
}

#[derive(Debug)]
struct Thread {
    last_interaction: String,
    inputs: Vec<String>,
    seen: HashSet<String>,
    /// When the last interaction's response ended.
    ended: Instant,
}

impl Thread {
    /// How many leading inputs `t` shares with this thread, if `t` can
    /// extend it at all.
    fn shared_with(&self, t: &TurnInput<'_>) -> usize {
        if self.ended > t.started {
            return 0;
        }
        common_prefix(&self.inputs, t.input_digests)
    }
}

#[derive(Debug)]
struct Conversation {
    execution_id: String,
    from_session: bool,
    turns: u32,
    threads: VecDeque<Thread>,
    last_used: Instant,
}

#[derive(Debug, Default)]
struct State {
    conversations: HashMap<String, Conversation>,
    calls: HashMap<(String, String), CallInfo>,
    call_order: VecDeque<(String, String)>,
}

/// Exchanges per execution that have yet to settle, each with a flag set
/// once its response ended (from then on a later request may extend it).
/// Behind its own lock, held only briefly: every request takes it on its
/// way upstream, and must not wait behind a record being linked.
#[derive(Debug, Default)]
struct Exchanges {
    /// By arrival order, so the latest ended ones are found from the end
    /// without looking at all of them (under load thousands wait for their
    /// records).
    unlinked: HashMap<String, BTreeMap<u64, Unlinked>>,
    next: u64,
}

#[derive(Debug)]
struct Unlinked {
    ended: Arc<AtomicBool>,
    settled: Arc<Settled>,
}

/// Set (and announced to its own waiters only) when an exchange settles.
#[derive(Debug, Default)]
struct Settled {
    done: AtomicBool,
    notify: tokio::sync::Notify,
}

/// How often a thread waiting on `changed` re-checks (a settle may signal
/// between its check and its wait).
const RECHECK: Duration = Duration::from_millis(5);

/// At most this many predecessors are waited for: the most recent ones.
/// An agent's next request extends one of its latest answers; only a flood
/// of parallel requests in one execution reaches it, and then ordering is
/// best effort (readers resolve inherited inputs whatever the order).
const MAX_PREDECESSORS: usize = 64;

#[derive(Debug, Default)]
pub struct ConversationTracker {
    state: Mutex<State>,
    changed: Condvar,
    exchanges: Mutex<Exchanges>,
}

/// Held by an exchange from its arrival until it has linked and its record
/// is queued for the journal (or it has given up): results that need its
/// calls may wait for it meanwhile, and so may the requests that arrived
/// after its response ended (they may extend it, and their records, which
/// inherit its input messages, must land after its own).
#[derive(Debug)]
pub struct PendingLink {
    tracker: Arc<ConversationTracker>,
    execution_id: String,
    id: u64,
    /// Set when this exchange's response has ended.
    ended: Arc<AtomicBool>,
    settled: Arc<Settled>,
    /// Exchanges whose responses had ended when this one arrived, not yet
    /// settled (the latest `MAX_PREDECESSORS`).
    predecessors: Vec<Arc<Settled>>,
}

impl PendingLink {
    /// Set it (as the response's last byte is handed on) to say that from
    /// now on a request may build on this exchange's answer.
    pub fn response_ended(&self) -> Arc<AtomicBool> {
        self.ended.clone()
    }
}

impl Drop for PendingLink {
    fn drop(&mut self) {
        self.tracker
            .settle(&self.execution_id, self.id, &self.settled);
    }
}

impl ConversationTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes an exchange that will link later; drop the token once it has.
    pub fn arrive(self: &Arc<Self>, execution_id: &str) -> PendingLink {
        let mut s = self.exchanges.lock().unwrap_or_else(|p| p.into_inner());
        let id = s.next;
        s.next += 1;
        let ended = Arc::new(AtomicBool::new(false));
        let settled = Arc::new(Settled::default());
        let others = s.unlinked.entry(execution_id.to_owned()).or_default();
        let predecessors = others
            .values()
            .rev()
            .filter(|u| u.ended.load(Ordering::Acquire))
            .take(MAX_PREDECESSORS)
            .map(|u| u.settled.clone())
            .collect();
        others.insert(
            id,
            Unlinked {
                ended: ended.clone(),
                settled: settled.clone(),
            },
        );
        PendingLink {
            tracker: self.clone(),
            execution_id: execution_id.to_owned(),
            id,
            ended,
            settled,
            predecessors,
        }
    }

    fn settle(&self, execution_id: &str, id: u64, settled: &Settled) {
        let mut s = self.exchanges.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(others) = s.unlinked.get_mut(execution_id) {
            others.remove(&id);
            if others.is_empty() {
                s.unlinked.remove(execution_id);
            }
        }
        settled.done.store(true, Ordering::Release);
        drop(s);
        // Not taking the state lock (linking may hold it on a lower-priority
        // thread, and this runs on the runtime): a thread waiting on
        // `changed` may miss this signal, so those waits re-check often.
        self.changed.notify_all();
        settled.notify.notify_waiters();
    }

    /// `await_predecessors` for async code: the capture task waits here,
    /// before its record is built, so no recording thread is held waiting.
    /// Each predecessor wakes only its own waiters.
    pub async fn predecessors_settled(&self, pending: &PendingLink, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        // Newest first: once the newest has settled the older ones usually
        // have too, and checking a settled one is one atomic load.
        for p in &pending.predecessors {
            if p.done.load(Ordering::Acquire) {
                continue;
            }
            loop {
                let notified = p.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if p.done.load(Ordering::Acquire) {
                    break;
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Waits, at most `wait`, until the exchanges whose answers this one's
    /// request may build on have linked, so turns are placed in the order
    /// the agent took them whatever order their records are built in.
    pub fn await_predecessors(&self, pending: &PendingLink, wait: Duration) {
        if pending.predecessors.is_empty() {
            return;
        }
        let deadline = Instant::now() + wait;
        let mut s = self.lock();
        loop {
            let waiting = pending
                .predecessors
                .iter()
                .any(|p| !p.done.load(Ordering::Acquire));
            let now = Instant::now();
            if !waiting || now >= deadline {
                return;
            }
            s = self
                .changed
                .wait_timeout(s, (deadline - now).min(RECHECK))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves maps that are still valid.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Places a request in its conversation and remembers the calls its
    /// response made.
    pub fn link(&self, t: &TurnInput<'_>) -> Linked {
        let linked = {
            let mut s = self.lock();
            let linked = s.place(t);
            for call in t.calls {
                s.remember_call(
                    t.execution_id,
                    &call.id,
                    CallInfo {
                        interaction_id: t.interaction_id.to_owned(),
                        tool_name: call.name.clone(),
                        call_time: t.response_end,
                        context: call.context.clone(),
                    },
                );
            }
            linked
        };
        self.changed.notify_all();
        linked
    }

    /// The calls behind these results. While some are unknown and other
    /// exchanges of the execution have yet to link (their responses may hold
    /// the calls), waits for them, at most `wait`.
    pub fn calls(
        &self,
        execution_id: &str,
        call_ids: &[&str],
        wait: Duration,
    ) -> HashMap<String, CallInfo> {
        let deadline = Instant::now() + wait;
        let mut s = self.lock();
        loop {
            let found: HashMap<String, CallInfo> = call_ids
                .iter()
                .filter_map(|id| {
                    s.calls
                        .get(&(execution_id.to_owned(), (*id).to_owned()))
                        .map(|c| ((*id).to_owned(), c.clone()))
                })
                .collect();
            let others_pending = self
                .exchanges
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .unlinked
                .get(execution_id)
                .is_some_and(|o| !o.is_empty());
            let now = Instant::now();
            if found.len() == call_ids.len() || !others_pending || now >= deadline {
                return found;
            }
            s = self
                .changed
                .wait_timeout(s, (deadline - now).min(RECHECK))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Drops what is known about an execution (it ended).
    pub fn forget_execution(&self, execution_id: &str) {
        let mut s = self.lock();
        s.conversations
            .retain(|_, c| c.execution_id != execution_id);
        s.calls.retain(|(e, _), _| e != execution_id);
        s.call_order.retain(|(e, _)| e != execution_id);
    }
}

impl State {
    fn place(&mut self, t: &TurnInput<'_>) -> Linked {
        let key = match t.session {
            Some(session) => Some(session.to_owned()),
            None => self.infer(t),
        };
        let conversation_id = key.unwrap_or_else(|| t.interaction_id.to_owned());
        if !self.conversations.contains_key(&conversation_id) {
            self.evict_if_full();
        }
        let conv = self
            .conversations
            .entry(conversation_id.clone())
            .or_insert_with(|| Conversation {
                execution_id: t.execution_id.to_owned(),
                from_session: t.session.is_some(),
                turns: 0,
                threads: VecDeque::new(),
                last_used: Instant::now(),
            });
        conv.turns += 1;
        conv.last_used = Instant::now();
        // The thread this request extends: the longest shared prefix.
        let best = conv
            .threads
            .iter()
            .enumerate()
            .map(|(i, th)| (i, th.shared_with(t)))
            .filter(|(_, n)| *n > 0)
            .max_by_key(|(_, n)| *n);
        let (previous, new_input_indexes, shared_prefix) = match best {
            Some((i, shared)) => {
                let th = conv.threads.remove(i).expect("index from enumerate");
                let new = t
                    .input_digests
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| !th.seen.contains(*d))
                    .map(|(i, _)| i as u32)
                    .collect();
                (th.last_interaction, new, shared as u32)
            }
            None => (
                String::new(),
                (0..t.input_digests.len() as u32).collect(),
                0,
            ),
        };
        conv.threads.push_front(Thread {
            last_interaction: t.interaction_id.to_owned(),
            inputs: t.input_digests.to_vec(),
            seen: t
                .input_digests
                .iter()
                .chain(t.output_digests)
                .cloned()
                .collect(),
            ended: t.ended,
        });
        conv.threads.truncate(MAX_THREADS);
        Linked {
            conversation_id,
            turn: conv.turns,
            previous_interaction_id: previous,
            new_input_indexes,
            shared_prefix,
        }
    }

    /// A session-less conversation of the same execution this request extends.
    fn infer(&self, t: &TurnInput<'_>) -> Option<String> {
        self.conversations
            .iter()
            .filter(|(_, c)| c.execution_id == t.execution_id && !c.from_session)
            .filter_map(|(id, c)| {
                let n = c
                    .threads
                    .iter()
                    .map(|th| th.shared_with(t))
                    .max()
                    .unwrap_or(0);
                (n > 0).then_some((n, c.last_used, id))
            })
            .max()
            .map(|(_, _, id)| id.clone())
    }

    fn evict_if_full(&mut self) {
        if self.conversations.len() < MAX_CONVERSATIONS {
            return;
        }
        if let Some(oldest) = self
            .conversations
            .iter()
            .min_by_key(|(_, c)| c.last_used)
            .map(|(id, _)| id.clone())
        {
            self.conversations.remove(&oldest);
        }
    }

    fn remember_call(&mut self, execution_id: &str, call_id: &str, info: CallInfo) {
        // Call ids are unique per conversation; if one repeats, the first
        // (earliest) call is the one a later result answers.
        let key = (execution_id.to_owned(), call_id.to_owned());
        if let std::collections::hash_map::Entry::Vacant(slot) = self.calls.entry(key.clone()) {
            slot.insert(info);
            self.call_order.push_back(key);
        }
        while self.call_order.len() > MAX_CALLS {
            if let Some(old) = self.call_order.pop_front() {
                self.calls.remove(&old);
            }
        }
    }
}

fn common_prefix(a: &[String], b: &[String]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
#[path = "conversation_tests.rs"]
mod tests;
