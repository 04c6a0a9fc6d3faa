//! Places a built interaction in its conversation: which messages are new
//! this turn, which tool results came back (linked to the calls that asked
//! for them, with the time the agent took) and which context references
//! those results are. Runs inside the exchange build, on the blocking pool.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::record::conversation::{
    ContextTarget, ConversationTracker, MadeCall, PendingLink, TurnInput,
};
use crate::record::{
    Api, ContextRef, Interaction, Message, Timestamp, ToolResult, digest_of, duration, part::Kind,
};

use super::api;
use super::context::{self, ContextRule};

/// How long a capture task waits for the exchanges its request may build on
/// to settle. Only records wait, never traffic.
pub const CALL_WAIT: Duration = Duration::from_secs(2);

/// What an exchange needs to link itself.
pub struct Linking {
    pub tracker: Arc<ConversationTracker>,
    pub rules: Arc<[ContextRule]>,
    /// This exchange's place among those still to link, whose predecessors
    /// the caller has already waited for
    /// (`ConversationTracker::predecessors_settled`, in the capture task).
    pub pending: Option<PendingLink>,
}

/// When an exchange began and ended, by the wall clock (for the record)
/// and by the monotonic clock (for ordering).
pub struct ExchangeTimes {
    pub request_start: SystemTime,
    pub response_end: SystemTime,
    pub started: Instant,
    pub ended: Instant,
}

/// Links `it`, whose request messages are `messages` (provider-native);
/// `session` is the agent's session id, if it sent one. Returns this
/// exchange's place among those still to link: drop it once the record is
/// queued for the journal.
pub fn link(
    mut linking: Linking,
    it: &mut Interaction,
    api: Api,
    messages: &[Value],
    session: Option<&str>,
    times: ExchangeTimes,
) -> Option<PendingLink> {
    let ExchangeTimes {
        request_start,
        response_end,
        started,
        ended,
    } = times;
    let digests = |ms: &[Message]| ms.iter().map(|m| m.digest.clone()).collect::<Vec<_>>();
    let inputs = digests(&it.input_messages);
    let outputs = digests(&it.output_messages);
    let calls: Vec<MadeCall> = it
        .tool_calls
        .iter()
        .map(|c| MadeCall {
            id: c.id.clone(),
            name: c.name.clone(),
            context: context::target(&linking.rules, &c.name, &c.arguments),
        })
        .collect();
    let linked = linking.tracker.link(&TurnInput {
        execution_id: &it.execution_id,
        interaction_id: &it.id,
        session,
        input_digests: &inputs,
        output_digests: &outputs,
        calls: &calls,
        response_end,
        started,
        ended,
    });
    // Still held: the results below wait only for calls of exchanges that
    // ended before this one began, which never wait for it.
    let pending = linking.pending.take();
    it.conversation_id = linked.conversation_id;
    it.turn = linked.turn;
    it.previous_interaction_id = linked.previous_interaction_id;

    let new: Vec<Message> = linked
        .new_input_indexes
        .iter()
        .filter_map(|&i| messages.get(i as usize))
        .map(|m| api::normalize_message(api, m))
        .collect();
    it.new_input_indexes = linked.new_input_indexes;
    crate::record::inputs::inherit(it, linked.shared_prefix);

    let results: Vec<(&str, &str, bool)> = new
        .iter()
        .flat_map(|m| &m.parts)
        .filter_map(|p| match &p.kind {
            Some(Kind::ToolCallResponse(r)) => {
                Some((r.id.as_str(), r.response.as_str(), r.is_error))
            }
            _ => None,
        })
        .collect();
    if !results.is_empty() {
        let ids: Vec<&str> = results.iter().map(|(id, _, _)| *id).collect();
        // This exchange's predecessors have settled, so every call the agent
        // could have seen is registered: nothing more to wait for.
        let known = linking
            .tracker
            .calls(&it.execution_id, &ids, Duration::ZERO);
        for (id, text, is_error) in results {
            let result_digest = digest_of(text.as_bytes());
            let size = text.len() as u64;
            let (name, call_interaction, call_time, target) = match known.get(id) {
                Some(c) => (
                    c.tool_name.clone(),
                    c.interaction_id.clone(),
                    Some(c.call_time),
                    c.context.clone(),
                ),
                // Not seen by this recorder: the request itself still holds the call.
                None => match call_in_request(api, messages, id) {
                    Some((name, args)) => {
                        let target = context::target(&linking.rules, &name, &args);
                        (name, String::new(), None, target)
                    }
                    None => (String::new(), String::new(), None, None),
                },
            };
            if let Some(ContextTarget { kind, uri }) = target {
                it.context_refs.push(ContextRef {
                    kind,
                    uri,
                    digest: result_digest.clone(),
                    size,
                    tool_call_id: id.to_owned(),
                    tool_name: name.clone(),
                    ..Default::default()
                });
            }
            it.tool_results.push(ToolResult {
                call_id: id.to_owned(),
                tool_name: name,
                call_interaction_id: call_interaction,
                result_digest,
                result_size: size,
                is_error,
                call_time: call_time.map(Timestamp::from),
                result_time: Some(Timestamp::from(request_start)),
                duration: call_time
                    .and_then(|t| request_start.duration_since(t).ok())
                    .map(duration),
            });
        }
    }
    for m in new.iter().filter(|m| m.role != "assistant") {
        it.context_refs.extend(context::attachments(m));
    }
    pending
}

/// The (name, arguments) of the call `id`, searching the request's messages
/// from the end (calls sit just before their results, near the end).
fn call_in_request(api: Api, messages: &[Value], id: &str) -> Option<(String, String)> {
    messages.iter().rev().find_map(|m| {
        if api::message_role(api, m) != "assistant" {
            return None;
        }
        api::normalize_message(api, m)
            .parts
            .into_iter()
            .find_map(|p| match p.kind {
                Some(Kind::ToolCall(c)) if c.id == id => Some((c.name, c.arguments)),
                _ => None,
            })
    })
}
