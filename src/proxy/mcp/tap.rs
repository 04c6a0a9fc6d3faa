//! The body of an MCP server's SSE stream on its way to the agent: frames
//! pass through as they arrive, and each complete event is handed to the
//! exchange's capture task as it completes — a GET stream may stay open
//! for hours, so recording cannot wait for its end.
//!
//! Bounded: events go through a bounded channel, and a frame is released
//! only once the events it completed are queued, so a recorder that falls
//! behind slows the stream rather than growing a buffer or losing events.
//! Event data is kept up to the capture cap. If the capture task is gone,
//! the tap just relays. The one change to the bytes: the older HTTP+SSE
//! transport's `endpoint` event names a URL on the server, which is
//! rewritten to the same path under sidetrace's route.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, PollSender, WaitForCancellationFutureOwned};

use crate::capture::body::BodyEnd;
use crate::capture::sse::{SseDecoder, SseEvent};

/// Give up looking for the `endpoint` event after this much of the stream.
const ENDPOINT_SEARCH_LIMIT: usize = 64 * 1024;

/// What the tap tells the capture task.
#[derive(Debug)]
pub enum TapEvent {
    /// One event's data (a JSON-RPC message, normally).
    Message {
        data: String,
        /// Bytes of the whole data, more than `data` when cut at the cap.
        size: u64,
        event_id: Option<String>,
        at: SystemTime,
    },
    /// The HTTP+SSE transport announced its POST endpoint: the path and
    /// query, relative to the route, agents will now POST to.
    Endpoint(String),
    End(BodyEnd),
}

/// Where the route sends requests, for rewriting `endpoint` events.
#[derive(Debug, Clone)]
pub struct EndpointRewrite {
    /// The route prefix agents use, e.g. `/legacy`.
    pub route_prefix: String,
    /// The upstream's base path (no trailing `/`), e.g. `` or `/mcp`.
    pub upstream_base: String,
    /// The upstream's `host[:port]`.
    pub upstream_authority: String,
    /// The GET's path relative to the route, to resolve relative endpoints.
    pub stream_rest: String,
}

pub struct McpTap {
    inner: Incoming,
    decoder: SseDecoder,
    tx: PollSender<TapEvent>,
    queue: VecDeque<TapEvent>,
    held: Option<Frame<Bytes>>,
    held_err: Option<hyper::Error>,
    finished: bool,
    /// Looking for the `endpoint` event: bytes held back until it is found.
    rewrite: Option<(EndpointRewrite, BytesMut)>,
    /// Ends the stream early (at shutdown) when it fires.
    stop: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl McpTap {
    /// `stop`, when given, ends the stream cleanly once cancelled: a
    /// server's GET stream would otherwise hold shutdown until the drain
    /// timeout, and MCP clients resume such streams elsewhere.
    pub fn new(
        inner: Incoming,
        cap: usize,
        rewrite: Option<EndpointRewrite>,
        stop: Option<CancellationToken>,
    ) -> (Self, mpsc::Receiver<TapEvent>) {
        let (tx, rx) = mpsc::channel(64);
        let tap = Self {
            inner,
            decoder: SseDecoder::with_data_limit(cap),
            tx: PollSender::new(tx),
            queue: VecDeque::new(),
            held: None,
            held_err: None,
            finished: false,
            rewrite: rewrite.map(|r| (r, BytesMut::new())),
            stop: stop.map(|t| Box::pin(t.cancelled_owned())),
        };
        (tap, rx)
    }

    fn observe(&mut self, data: &Bytes) {
        let queue = &mut self.queue;
        let rewrite = self.rewrite.as_ref().map(|(r, _)| r);
        let mut endpoint = None;
        self.decoder.feed(data, &mut |e: SseEvent| {
            if e.event == "endpoint" {
                if let Some(r) = rewrite {
                    endpoint = endpoint_key(&e.data, r);
                }
                return;
            }
            if e.data.trim().is_empty() {
                return; // priming events, keep-alives
            }
            queue.push_back(TapEvent::Message {
                size: e.data_size,
                data: e.data,
                // Only an id of its own makes an event a replay when seen again.
                event_id: e.id.filter(|_| e.own_id),
                at: SystemTime::now(),
            });
        });
        if let Some(key) = endpoint {
            self.queue.push_back(TapEvent::Endpoint(key));
        }
    }

    /// The bytes to pass on for `data`: as they are, or — while looking
    /// for the endpoint event — the complete events before it, and the
    /// endpoint event rewritten.
    fn outgoing(&mut self, data: Bytes) -> Option<Bytes> {
        let Some((rw, held)) = self.rewrite.as_mut() else {
            return Some(data);
        };
        held.extend_from_slice(&data);
        let mut out = BytesMut::new();
        let mut found = false;
        while let Some(end) = event_end(held) {
            let event = held.split_to(end);
            match rewrite_event(&event, rw) {
                Some(Some(rewritten)) => out.extend_from_slice(rewritten.as_bytes()),
                Some(None) => out.extend_from_slice(&event),
                None => {
                    out.extend_from_slice(&event);
                    continue;
                }
            }
            found = true;
            break;
        }
        if found || held.len() > ENDPOINT_SEARCH_LIMIT {
            out.extend_from_slice(&held.split());
            self.rewrite = None;
        }
        (!out.is_empty()).then(|| out.freeze())
    }

    /// Whatever is still held back, at the end of the stream.
    fn release_held(&mut self) -> Option<Bytes> {
        let (_, held) = self.rewrite.take()?;
        (!held.is_empty()).then(|| held.freeze())
    }
}

impl Body for McpTap {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        loop {
            while !this.queue.is_empty() {
                match this.tx.poll_reserve(cx) {
                    Poll::Ready(Ok(())) => {
                        let ev = this.queue.pop_front().expect("not empty");
                        let _ = this.tx.send_item(ev);
                    }
                    // The capture task is gone: just relay.
                    Poll::Ready(Err(_)) => this.queue.clear(),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if let Some(frame) = this.held.take() {
                return Poll::Ready(Some(Ok(frame)));
            }
            if let Some(e) = this.held_err.take() {
                return Poll::Ready(Some(Err(e)));
            }
            if this.finished {
                return Poll::Ready(None);
            }
            if let Some(stop) = this.stop.as_mut()
                && stop.as_mut().poll(cx).is_ready()
            {
                this.stop = None;
                this.end(BodyEnd::Complete);
                continue;
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        this.observe(&data);
                        this.held = this.outgoing(data).map(Frame::data);
                        if this.inner.is_end_stream() {
                            this.end(BodyEnd::Complete);
                        }
                    }
                    Err(frame) => this.held = Some(frame),
                },
                Some(Err(e)) => {
                    this.end(BodyEnd::Failed(e.to_string()));
                    this.held_err = Some(e);
                }
                None => this.end(BodyEnd::Complete),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished && self.held.is_none() && self.queue.is_empty() && self.held_err.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl McpTap {
    fn end(&mut self, end: BodyEnd) {
        if self.finished {
            return;
        }
        self.finished = true;
        if let Some(rest) = self.release_held() {
            let mut out = BytesMut::new();
            if let Some(h) = self.held.take().and_then(|f| f.into_data().ok()) {
                out.extend_from_slice(&h);
            }
            out.extend_from_slice(&rest);
            self.held = Some(Frame::data(out.freeze()));
        }
        if self.decoder.finish() {
            tracing::debug!("an MCP SSE stream ended inside an event");
        }
        self.queue.push_back(TapEvent::End(end));
    }
}

/// Where the first complete event ends in `buf` (after its blank line).
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    let mut line_start = 0;
    while i < buf.len() {
        let c = buf[i];
        if c == b'\n' || c == b'\r' {
            let blank = i == line_start;
            let mut next = i + 1;
            if c == b'\r' && buf.get(next) == Some(&b'\n') {
                next += 1;
            }
            if blank && line_start > 0 {
                return Some(next);
            }
            line_start = next;
            i = next;
        } else {
            i += 1;
        }
    }
    None
}

/// For an `endpoint` event: Some(the event rewritten), or Some(None) when
/// it needs no rewriting. None for any other event.
fn rewrite_event(event: &[u8], rw: &EndpointRewrite) -> Option<Option<String>> {
    let text = String::from_utf8_lossy(event);
    let mut is_endpoint = false;
    let mut data = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            is_endpoint = v.trim() == "endpoint";
        } else if let Some(v) = line.strip_prefix("data:") {
            data = Some(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    if !is_endpoint {
        return None;
    }
    let Some(target) = data.and_then(|d| route_path(d, rw)) else {
        return Some(None);
    };
    let mut out = String::with_capacity(text.len() + rw.route_prefix.len());
    for line in text.split_inclusive('\n') {
        if line.starts_with("data:") {
            let ending = &line[line.trim_end_matches(['\r', '\n']).len()..];
            out.push_str("data: ");
            out.push_str(&target);
            out.push_str(ending);
        } else {
            out.push_str(line);
        }
    }
    Some(Some(out))
}

/// An endpoint the server announced, as a path under the route (absolute
/// paths and URLs on the upstream); None when it needs no rewriting
/// (relative references already resolve under the route) or cannot be
/// routed (another host).
fn route_path(endpoint: &str, rw: &EndpointRewrite) -> Option<String> {
    let rest = upstream_rest(endpoint, rw)?;
    let prefix = if rw.route_prefix == "/" {
        ""
    } else {
        rw.route_prefix.as_str()
    };
    Some(format!("{prefix}{rest}"))
}

/// The endpoint's path and query relative to the upstream base, for
/// absolute references to the upstream.
fn upstream_rest(endpoint: &str, rw: &EndpointRewrite) -> Option<String> {
    let endpoint = endpoint.trim();
    let path = if endpoint.starts_with('/') {
        endpoint.to_owned()
    } else if endpoint.contains("://") {
        let uri: http::Uri = endpoint.parse().ok()?;
        if uri.authority().map(|a| a.as_str()) != Some(rw.upstream_authority.as_str()) {
            tracing::warn!(
                endpoint,
                "an MCP server announced an endpoint on another host; its messages will not pass through sidetrace"
            );
            return None;
        }
        uri.path_and_query().map(|pq| pq.as_str().to_owned())?
    } else {
        return None;
    };
    match path.strip_prefix(&rw.upstream_base) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') => {
            Some(rest.to_owned())
        }
        _ => {
            tracing::warn!(endpoint, base = %rw.upstream_base, "an MCP server announced an endpoint outside its route's base path");
            None
        }
    }
}

/// The session key (path and query relative to the route) agents will POST
/// to for this endpoint.
fn endpoint_key(endpoint: &str, rw: &EndpointRewrite) -> Option<String> {
    if let Some(rest) = upstream_rest(endpoint, rw) {
        return Some(rest);
    }
    let endpoint = endpoint.trim();
    if endpoint.contains("://") || endpoint.is_empty() {
        return None;
    }
    // Relative to the stream's own URL.
    let dir = match rw.stream_rest.rfind('/') {
        Some(i) => &rw.stream_rest[..=i],
        None => "/",
    };
    Some(format!("{dir}{endpoint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(base: &str) -> EndpointRewrite {
        EndpointRewrite {
            route_prefix: "/legacy".into(),
            upstream_base: base.into(),
            upstream_authority: "127.0.0.1:9000".into(),
            stream_rest: "/sse".into(),
        }
    }

    #[test]
    fn endpoint_events_move_under_the_route() {
        let ev = b"event: endpoint\r\ndata: /messages/?session_id=abc\r\n\r\n";
        assert_eq!(event_end(ev), Some(ev.len()));
        let out = rewrite_event(ev, &rw("")).unwrap().unwrap();
        assert_eq!(
            out,
            "event: endpoint\r\ndata: /legacy/messages/?session_id=abc\r\n\r\n"
        );
        let url = b"event: endpoint\ndata: http://127.0.0.1:9000/base/messages?s=1\n\n";
        assert_eq!(
            rewrite_event(url, &rw("/base")).unwrap().unwrap(),
            "event: endpoint\ndata: /legacy/messages?s=1\n\n"
        );
        // Other hosts and relative references are left alone.
        assert_eq!(
            rewrite_event(b"event: endpoint\ndata: http://elsewhere/m\n\n", &rw("")),
            Some(None)
        );
        assert_eq!(
            rewrite_event(b"event: endpoint\ndata: messages?s=1\n\n", &rw("")),
            Some(None)
        );
        assert!(rewrite_event(b"data: {}\n\n", &rw("")).is_none());
    }

    #[test]
    fn endpoint_keys_match_what_agents_post_to() {
        assert_eq!(
            endpoint_key("/messages/?session_id=abc", &rw("")).as_deref(),
            Some("/messages/?session_id=abc")
        );
        assert_eq!(
            endpoint_key("messages?s=1", &rw("")).as_deref(),
            Some("/messages?s=1")
        );
        assert_eq!(
            endpoint_key("http://127.0.0.1:9000/b/m?s=1", &rw("/b")).as_deref(),
            Some("/m?s=1")
        );
    }

    #[test]
    fn event_end_needs_a_blank_line() {
        assert_eq!(event_end(b"data: x\n"), None);
        assert_eq!(event_end(b"data: x\n\nrest"), Some(9));
    }
}
