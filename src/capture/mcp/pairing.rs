//! Pairs MCP requests with their responses, one session at a time.
//!
//! Requests are keyed by (sender, JSON-RPC id), so client and server ids
//! never collide and server-to-client requests (sampling, elicitation,
//! roots) pair like any other. Notifications, malformed messages and
//! responses nobody asked for are finished at once; requests when their
//! response comes, when they are cancelled, or when the session closes.
//! Over HTTP a response (or a progress notification) can overtake its
//! request on the way to the recorder (two connections); such early
//! messages wait for it.
//!
//! Bounds: `MAX_PENDING` requests awaiting answers and `MAX_EARLY` early
//! responses (and as many early progress notifications) per session; past them the oldest is finished as unanswered
//! (or orphaned) rather than kept. Nothing here does I/O, so it cannot
//! fail; every message observed comes out in exactly one `Finished`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use serde_json::Value;

use super::message::{self, Parsed, Rpc, RpcError, Side};
use super::{Origin, SessionInfo};

const MAX_PENDING: usize = 4096;
const MAX_EARLY: usize = 256;

const PROTOCOL_VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";
const CLIENT_INFO_META: &str = "io.modelcontextprotocol/clientInfo";
const SERVER_INFO_META: &str = "io.modelcontextprotocol/serverInfo";

/// One message as it crossed the transport.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub side: Side,
    pub at: SystemTime,
    /// The message bytes (a prefix, when `oversized`).
    pub bytes: Bytes,
    /// Bytes of the whole message.
    pub size: u64,
    /// Larger than the capture cap: not parsed, recorded by prefix and digest.
    pub oversized: bool,
    /// `sha256:<hex>` of the whole message, when oversized.
    pub digest: Option<String>,
    pub origin: Arc<Origin>,
    /// The id a write-ahead start record already gave this message.
    pub record_id: Option<String>,
}

/// When and how a message crossed.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: SystemTime,
    pub size: u64,
    pub origin: Arc<Origin>,
    pub batched: bool,
    /// The record id to use (the first message of a line in write-ahead mode).
    pub record_id: Option<String>,
    /// The message was larger than the capture cap (known by its start).
    pub oversized: Option<Oversized>,
}

/// What is kept of a message past the capture cap.
#[derive(Debug, Clone)]
pub struct Oversized {
    /// Its first `cap` bytes.
    pub prefix: Bytes,
    /// `sha256:<hex>` of the whole message, when it could be computed.
    pub digest: Option<String>,
}

#[derive(Debug)]
pub struct Request {
    pub id: String,
    pub method: String,
    pub params: Option<Value>,
    pub seen: Seen,
    pub progress: u32,
}

/// Something ready to be recorded.
#[derive(Debug)]
pub enum Finished {
    Exchange {
        initiator: Side,
        request: Request,
        response: Option<(Seen, Result<Value, RpcError>)>,
        unanswered: Option<String>,
        session: SessionInfo,
    },
    Notification {
        from: Side,
        method: String,
        params: Option<Value>,
        seen: Seen,
        /// The request a progress or cancellation notification concerns.
        related: Option<String>,
        session: SessionInfo,
    },
    /// A response with no request to pair it with.
    Orphan {
        from: Side,
        id: String,
        outcome: Result<Value, RpcError>,
        seen: Seen,
        session: SessionInfo,
    },
    Malformed {
        from: Side,
        reason: String,
        raw: Bytes,
        digest: Option<String>,
        oversized: bool,
        seen: Seen,
        session: SessionInfo,
    },
}

#[derive(Debug)]
struct EarlyProgress {
    /// The side whose request it reports on, and the token.
    token: (Side, String),
    params: Option<Value>,
    seen: Seen,
}

/// The pairing state of one MCP session.
#[derive(Debug, Default)]
pub struct Pairing {
    pending: HashMap<(Side, String), Request>,
    order: VecDeque<(Side, String)>,
    /// (requester, progress token as JSON text) → the request's id. Each
    /// side numbers its own requests, and SDKs use the id as the token.
    progress_tokens: HashMap<(Side, String), String>,
    early: HashMap<(Side, String), (Seen, Result<Value, RpcError>)>,
    early_order: VecDeque<(Side, String)>,
    /// Progress notifications whose request has not been seen yet (HTTP).
    early_progress: VecDeque<EarlyProgress>,
    /// Responses may overtake requests (each direction is observed by its own
    /// task, after relaying); otherwise they are orphans at once.
    tolerate_reorder: bool,
    pub info: SessionInfo,
}

impl Pairing {
    pub fn new(info: SessionInfo, tolerate_reorder: bool) -> Self {
        Self {
            info,
            tolerate_reorder,
            ..Default::default()
        }
    }

    pub fn tolerates_reorder(&self) -> bool {
        self.tolerate_reorder
    }

    /// Requests still awaiting answers.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn observe(&mut self, a: Arrival) -> Vec<Finished> {
        let mut out = Vec::new();
        let mut record_id = a.record_id.clone();
        let oversized = a.oversized.then(|| Oversized {
            prefix: a.bytes.clone(),
            digest: a.digest.clone(),
        });
        let mut seen = |batched| Seen {
            at: a.at,
            size: a.size,
            origin: a.origin.clone(),
            batched,
            record_id: record_id.take(),
            oversized: oversized.clone(),
        };
        if a.oversized {
            // Known by its start, it still pairs; else it is kept as it came.
            match message::sniff(&a.bytes) {
                Some(rpc) => self.one(a.side, rpc, seen(false), &a.bytes, &mut out),
                None => out.push(Finished::Malformed {
                    from: a.side,
                    reason: format!("message of {} bytes is larger than the capture cap", a.size),
                    raw: a.bytes.clone(),
                    digest: a.digest.clone(),
                    oversized: true,
                    seen: seen(false),
                    session: self.info.clone(),
                }),
            }
            return out;
        }
        match message::parse(&a.bytes) {
            Parsed::Malformed(reason) => out.push(Finished::Malformed {
                from: a.side,
                reason,
                raw: a.bytes.clone(),
                digest: None,
                oversized: false,
                seen: seen(false),
                session: self.info.clone(),
            }),
            Parsed::Single(rpc) => self.one(a.side, rpc, seen(false), &a.bytes, &mut out),
            Parsed::Batch(items) => {
                for rpc in items {
                    self.one(a.side, rpc, seen(true), &a.bytes, &mut out);
                }
            }
        }
        out
    }

    /// Finishes the requests `side` sent in `bytes` that are still waiting:
    /// their answer cannot come any more (the HTTP exchange that carried
    /// them failed).
    pub fn abandon(&mut self, side: Side, bytes: &[u8], reason: &str) -> Vec<Finished> {
        let mut out = Vec::new();
        for id in message::request_ids(bytes) {
            if let Some(req) = self.take_pending(&(side, id)) {
                out.push(self.unanswered(side, req, reason.to_owned()));
            }
        }
        out
    }

    /// Finishes every request still waiting, and every early response.
    pub fn close(&mut self, reason: &str) -> Vec<Finished> {
        let mut out = Vec::new();
        while let Some(key) = self.order.pop_front() {
            if let Some(req) = self.take_pending(&key) {
                out.push(self.unanswered(key.0, req, reason.to_owned()));
            }
        }
        for e in std::mem::take(&mut self.early_progress) {
            out.push(self.progress_note(e, None));
        }
        for key in std::mem::take(&mut self.early_order) {
            if let Some((seen, outcome)) = self.early.remove(&key) {
                out.push(self.orphan(key.0.other(), key.1, outcome, seen));
            }
        }
        out
    }

    fn one(&mut self, side: Side, rpc: Rpc, seen: Seen, raw: &Bytes, out: &mut Vec<Finished>) {
        match rpc {
            Rpc::Request { id, method, params } => {
                self.learn_from_request(side, &method, params.as_ref());
                let key = (side, id.clone());
                if let Some(old) = self.take_pending(&key) {
                    out.push(self.unanswered(
                        side,
                        old,
                        "the same id was sent again before an answer came".into(),
                    ));
                }
                let mut req = Request {
                    id,
                    method,
                    params,
                    seen,
                    progress: 0,
                };
                let token = progress_token(req.params.as_ref()).map(|t| (side, t));
                if let Some(token) = &token {
                    // Progress that overtook its request now has it.
                    let (early, rest): (VecDeque<_>, VecDeque<_>) =
                        std::mem::take(&mut self.early_progress)
                            .into_iter()
                            .partition(|e| e.token == *token);
                    self.early_progress = rest;
                    for e in early {
                        req.progress = req.progress.saturating_add(1);
                        out.push(self.progress_note(e, Some(req.id.clone())));
                    }
                }
                if let Some(early) = self.take_early(&key) {
                    out.push(self.exchange(side, req, early));
                    return;
                }
                if let Some(token) = token {
                    self.progress_tokens.insert(token, key.1.clone());
                }
                self.pending.insert(key.clone(), req);
                self.order.push_back(key);
                while self.pending.len() > MAX_PENDING {
                    let Some(oldest) = self.order.pop_front() else {
                        break;
                    };
                    if let Some(req) = self.take_pending(&oldest) {
                        out.push(self.unanswered(
                            oldest.0,
                            req,
                            format!("more than {MAX_PENDING} requests were awaiting answers; stopped waiting for the oldest"),
                        ));
                    }
                }
            }
            Rpc::Response { id, outcome } => {
                let key = (side.other(), id);
                match self.take_pending(&key) {
                    Some(req) => {
                        out.push(self.exchange(key.0, req, (seen, outcome)));
                    }
                    None if self.tolerate_reorder && key.1 != "null" => {
                        if let Some((seen, outcome)) = self.take_early(&key) {
                            // A second answer to the same id: the first had no request.
                            out.push(self.orphan(side, key.1.clone(), outcome, seen));
                        }
                        self.early.insert(key.clone(), (seen, outcome));
                        self.early_order.push_back(key);
                        while self.early.len() > MAX_EARLY {
                            let Some(oldest) = self.early_order.pop_front() else {
                                break;
                            };
                            if let Some((seen, outcome)) = self.early.remove(&oldest) {
                                out.push(self.orphan(oldest.0.other(), oldest.1, outcome, seen));
                            }
                        }
                    }
                    None => out.push(self.orphan(side, key.1, outcome, seen)),
                }
            }
            Rpc::Notification { method, params } => {
                if self.tolerate_reorder
                    && method == "notifications/progress"
                    && let Some(token) = params
                        .as_ref()
                        .and_then(|p| p.get("progressToken"))
                        .map(|t| (side.other(), t.to_string()))
                    && !self.progress_tokens.contains_key(&token)
                {
                    // Its request may still be on its way (another connection).
                    self.early_progress.push_back(EarlyProgress {
                        token,
                        params,
                        seen,
                    });
                    while self.early_progress.len() > MAX_EARLY {
                        let e = self.early_progress.pop_front().expect("not empty");
                        out.push(self.progress_note(e, None));
                    }
                    return;
                }
                let related = self.related(side, &method, params.as_ref(), out);
                out.push(Finished::Notification {
                    from: side,
                    method,
                    params,
                    seen,
                    related,
                    session: self.info.clone(),
                });
            }
            Rpc::Invalid(reason) => out.push(Finished::Malformed {
                from: side,
                reason,
                raw: raw.clone(),
                digest: None,
                oversized: false,
                seen,
                session: self.info.clone(),
            }),
        }
    }

    /// The request a progress or cancellation notification concerns; a
    /// cancellation also finishes that request.
    fn related(
        &mut self,
        side: Side,
        method: &str,
        params: Option<&Value>,
        out: &mut Vec<Finished>,
    ) -> Option<String> {
        let params = params?;
        match method {
            "notifications/progress" => {
                // Progress is reported by the side that was asked.
                let requester = side.other();
                let token = (requester, params.get("progressToken")?.to_string());
                let id = self.progress_tokens.get(&token)?.clone();
                let req = self.pending.get_mut(&(requester, id.clone()))?;
                req.progress = req.progress.saturating_add(1);
                Some(id)
            }
            "notifications/cancelled" => {
                let id = params.get("requestId")?.to_string();
                // The canceller is the one that sent the request.
                let key = (side, id.clone());
                if let Some(req) = self.take_pending(&key) {
                    let why = params
                        .get("reason")
                        .and_then(Value::as_str)
                        .map_or_else(String::new, |r| format!(": {r}"));
                    out.push(self.unanswered(
                        side,
                        req,
                        format!("cancelled by the {}{why}", side.name()),
                    ));
                }
                Some(id)
            }
            _ => None,
        }
    }

    fn progress_note(&self, e: EarlyProgress, related: Option<String>) -> Finished {
        Finished::Notification {
            from: e.token.0.other(),
            method: "notifications/progress".into(),
            params: e.params,
            seen: e.seen,
            related,
            session: self.info.clone(),
        }
    }

    fn take_pending(&mut self, key: &(Side, String)) -> Option<Request> {
        let req = self.pending.remove(key)?;
        self.order.retain(|k| k != key);
        if let Some(token) = progress_token(req.params.as_ref()) {
            self.progress_tokens.remove(&(key.0, token));
        }
        Some(req)
    }

    fn take_early(&mut self, key: &(Side, String)) -> Option<(Seen, Result<Value, RpcError>)> {
        let e = self.early.remove(key)?;
        self.early_order.retain(|k| k != key);
        Some(e)
    }

    fn exchange(
        &mut self,
        initiator: Side,
        request: Request,
        response: (Seen, Result<Value, RpcError>),
    ) -> Finished {
        if let Ok(result) = &response.1 {
            self.learn_from_result(&request.method, result);
        }
        Finished::Exchange {
            initiator,
            request,
            response: Some(response),
            unanswered: None,
            session: self.info.clone(),
        }
    }

    fn unanswered(&self, initiator: Side, request: Request, why: String) -> Finished {
        Finished::Exchange {
            initiator,
            request,
            response: None,
            unanswered: Some(why),
            session: self.info.clone(),
        }
    }

    fn orphan(
        &self,
        from: Side,
        id: String,
        outcome: Result<Value, RpcError>,
        seen: Seen,
    ) -> Finished {
        Finished::Orphan {
            from,
            id,
            outcome,
            seen,
            session: self.info.clone(),
        }
    }

    fn learn_from_request(&mut self, side: Side, method: &str, params: Option<&Value>) {
        let Some(params) = params else { return };
        if side == Side::Client && method == "initialize" {
            if let Some(v) = params.get("protocolVersion").and_then(Value::as_str) {
                self.info.protocol_version = v.to_owned();
            }
            if let Some(p) = peer(params.get("clientInfo")) {
                self.info.client = Some(p);
            }
        }
        if let Some(meta) = params.get("_meta") {
            if let Some(v) = meta.get(PROTOCOL_VERSION_META).and_then(Value::as_str) {
                self.info.protocol_version = v.to_owned();
            }
            if let Some(p) = peer(meta.get(CLIENT_INFO_META)) {
                self.info.client = Some(p);
            }
        }
    }

    fn learn_from_result(&mut self, method: &str, result: &Value) {
        if method == "initialize" {
            if let Some(v) = result.get("protocolVersion").and_then(Value::as_str) {
                self.info.protocol_version = v.to_owned();
            }
            if let Some(p) = peer(result.get("serverInfo")) {
                self.info.server = Some(p);
            }
        }
        if let Some(p) = peer(result.get("_meta").and_then(|m| m.get(SERVER_INFO_META))) {
            self.info.server = Some(p);
        }
    }
}

/// `params._meta.progressToken` as JSON text.
fn progress_token(params: Option<&Value>) -> Option<String> {
    Some(params?.get("_meta")?.get("progressToken")?.to_string())
}

fn peer(v: Option<&Value>) -> Option<super::Peer> {
    let v = v?;
    let name = v.get("name")?.as_str()?.to_owned();
    let version = v
        .get("version")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Some(super::Peer { name, version })
}

#[cfg(test)]
#[path = "pairing_tests.rs"]
mod tests;
