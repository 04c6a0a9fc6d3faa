//! Incremental Server-Sent Events decoder (WHATWG HTML §9.2 "event stream
//! interpretation") that takes bytes in whatever pieces they arrive.
//!
//! It buffers at most one incomplete line plus the event being built, accepts
//! `\n`, `\r\n` and `\r` line endings (including a `\r\n` split across two
//! chunks), decodes UTF-8 only on complete lines (so a multi-byte character cut
//! in half is never mangled), skips comments and keep-alives, and strips one
//! leading BOM. It never fails: malformed input yields whatever events the
//! spec's rules make of it.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, or "message" when the event had none.
    pub event: String,
    pub data: String,
    pub id: Option<String>,
    /// Bytes of data the event carried; more than `data` holds when the
    /// decoder's data limit cut it.
    pub data_size: u64,
    /// The event set `id` itself (rather than inheriting the last one).
    pub own_id: bool,
}

#[derive(Debug, Default)]
pub struct SseDecoder {
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` at the start of the next one
    /// belongs to the same line ending.
    pending_cr: bool,
    started: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    id: Option<String>,
    comments: u64,
    /// Keep at most this much of an event's data (the rest is only counted).
    data_limit: Option<usize>,
    data_size: u64,
    own_id: bool,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder that keeps at most `limit` bytes of any event's data, so a
    /// huge event costs bounded memory (its size is still reported).
    pub fn with_data_limit(limit: usize) -> Self {
        Self {
            data_limit: Some(limit),
            ..Self::default()
        }
    }

    /// Feeds the next piece of the stream, calling `on_event` for every event
    /// it completes.
    pub fn feed(&mut self, mut chunk: &[u8], on_event: &mut impl FnMut(SseEvent)) {
        if self.pending_cr {
            self.pending_cr = false;
            if chunk.first() == Some(&b'\n') {
                chunk = &chunk[1..];
            }
        }
        while !chunk.is_empty() {
            match chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.line.extend_from_slice(chunk);
                    return;
                }
                Some(i) => {
                    let ending = chunk[i];
                    if self.line.is_empty() {
                        self.process_line(&chunk[..i], on_event);
                    } else {
                        self.line.extend_from_slice(&chunk[..i]);
                        let line = std::mem::take(&mut self.line);
                        self.process_line(&line, on_event);
                        self.line = line;
                        self.line.clear();
                    }
                    chunk = &chunk[i + 1..];
                    if ending == b'\r' {
                        if chunk.is_empty() {
                            self.pending_cr = true;
                        } else if chunk[0] == b'\n' {
                            chunk = &chunk[1..];
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream. Returns true when an event or line was left incomplete
    /// (the spec discards it; the record should say the stream was cut).
    pub fn finish(&mut self) -> bool {
        let cut = !self.line.is_empty() || self.has_data || self.event.is_some();
        self.line.clear();
        self.reset_event();
        cut
    }

    /// Comment lines seen (keep-alives, pings).
    pub fn comments(&self) -> u64 {
        self.comments
    }

    fn process_line(&mut self, mut line: &[u8], on_event: &mut impl FnMut(SseEvent)) {
        if !self.started {
            self.started = true;
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            self.comments += 1;
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            b"data" => {
                if self.has_data {
                    self.data_size += 1;
                    if self.data_limit.is_none_or(|l| self.data.len() < l) {
                        self.data.push('\n');
                    }
                }
                self.data_size += value.len() as u64;
                let room = self
                    .data_limit
                    .map_or(usize::MAX, |l| l.saturating_sub(self.data.len()));
                let keep = &value[..value.len().min(room)];
                self.data.push_str(&String::from_utf8_lossy(keep));
                self.has_data = true;
            }
            b"id" if !value.contains(&0) => {
                self.id = Some(String::from_utf8_lossy(value).into_owned());
                self.own_id = true;
            }
            _ => {} // `retry` and unknown fields do not affect what was said.
        }
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(SseEvent)) {
        if !self.has_data {
            self.event = None;
            self.own_id = false;
            return;
        }
        let event = SseEvent {
            event: self.event.take().unwrap_or_else(|| "message".to_owned()),
            data: std::mem::take(&mut self.data),
            id: self.id.clone(),
            data_size: std::mem::take(&mut self.data_size),
            own_id: std::mem::take(&mut self.own_id),
        };
        self.has_data = false;
        on_event(event);
    }

    fn reset_event(&mut self) {
        self.event = None;
        self.data.clear();
        self.data_size = 0;
        self.own_id = false;
        self.has_data = false;
    }
}

/// Decodes a whole body; returns the events and whether the end was cut.
pub fn decode_all(body: &[u8]) -> (Vec<SseEvent>, bool) {
    let mut d = SseDecoder::new();
    let mut out = Vec::new();
    d.feed(body, &mut |e| out.push(e));
    let cut = d.finish();
    (out, cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_in_pieces(body: &[u8], sizes: &[usize]) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        let mut rest = body;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].min(rest.len()).max(1);
            d.feed(&rest[..n], &mut |e| out.push(e));
            rest = &rest[n..];
            i += 1;
        }
        d.finish();
        out
    }

    #[test]
    fn events_with_all_line_endings_and_comments() {
        let body = b"\xEF\xBB\xBF: keep-alive\r\nevent: ping\r\ndata: {}\r\n\r\ndata: a\rdata: b\r\rid: 7\ndata: caf\xC3\xA9\n\n";
        let (events, cut) = decode_all(body);
        assert!(!cut);
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: "ping".into(),
                    data: "{}".into(),
                    id: None,
                    data_size: 2,
                    own_id: false,
                },
                SseEvent {
                    event: "message".into(),
                    data: "a\nb".into(),
                    id: None,
                    data_size: 3,
                    own_id: false,
                },
                SseEvent {
                    event: "message".into(),
                    data: "café".into(),
                    id: Some("7".into()),
                    data_size: 5,
                    own_id: true,
                },
            ]
        );
    }

    #[test]
    fn ids_carry_forward_but_say_whose_they_are() {
        let (events, _) = decode_all(b"id: 1\ndata: a\n\ndata: b\n\n");
        assert_eq!(
            (events[0].id.as_deref(), events[0].own_id),
            (Some("1"), true)
        );
        assert_eq!(
            (events[1].id.as_deref(), events[1].own_id),
            (Some("1"), false)
        );
    }

    #[test]
    fn data_limit_keeps_a_prefix_and_counts_the_rest() {
        let mut d = SseDecoder::with_data_limit(4);
        let mut out = Vec::new();
        d.feed(b"data: 0123456789\ndata: ab\n\ndata: x\n\n", &mut |e| {
            out.push(e)
        });
        assert_eq!((out[0].data.as_str(), out[0].data_size), ("0123", 13));
        assert_eq!((out[1].data.as_str(), out[1].data_size), ("x", 1));
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let body =
            "\u{feff}event: a\r\ndata: héllo 🌍\r\n\r\n: ping\n\nevent: b\ndata:x\ndata: y\n\n"
                .as_bytes();
        let (whole, _) = decode_all(body);
        for split in 0..body.len() {
            let mut d = SseDecoder::new();
            let mut out = Vec::new();
            d.feed(&body[..split], &mut |e| out.push(e));
            d.feed(&body[split..], &mut |e| out.push(e));
            assert_eq!(out, whole, "split at {split}");
        }
        for sizes in [&[1][..], &[2, 3], &[7, 1, 5]] {
            assert_eq!(feed_in_pieces(body, sizes), whole);
        }
    }

    #[test]
    fn event_without_data_is_not_dispatched_and_cut_end_is_reported() {
        let (events, cut) = decode_all(b"event: nothing\n\ndata: partial");
        assert!(events.is_empty());
        assert!(cut);
    }
}
