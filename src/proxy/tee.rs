//! The tee: a body wrapper that passes every frame through untouched and
//! lets the capture recorder keep a reference-counted copy. It never buffers,
//! delays or reorders frames; all capture cost here is a refcount bump (and,
//! past the capture cap, hashing). Whatever way the body ends — last frame,
//! error, or dropped by a reader that went away — the recorder is told once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::capture::body::{BodyEnd, BodyRecorder};

/// How long the rest of an abandoned request body is read for the record.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

pub struct TeeBody<B> {
    /// None once handed back by `take_unfinished`.
    inner: Option<B>,
    recorder: BodyRecorder,
}

impl<B: Body<Data = Bytes> + Unpin> TeeBody<B> {
    pub fn new(inner: B, mut recorder: BodyRecorder) -> Self {
        // An empty body may never be polled: it is already complete.
        if inner.is_end_stream() {
            recorder.finish(BodyEnd::Complete);
        }
        Self {
            inner: Some(inner),
            recorder,
        }
    }

    /// If the body was not read to its end, hands back the rest of it with
    /// the recorder, so someone else can finish the record.
    fn take_unfinished(&mut self) -> Option<(B, BodyRecorder)> {
        if self.recorder.is_finished() {
            return None;
        }
        let inner = self.inner.take()?;
        Some((
            inner,
            std::mem::replace(&mut self.recorder, BodyRecorder::finished()),
        ))
    }
}

impl<B> Body for TeeBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(Pin::new(&mut *inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.recorder.on_data(data);
                }
                // Readers may stop polling once the body says it has ended.
                if inner.is_end_stream() {
                    this.recorder.finish(BodyEnd::Complete);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                this.recorder.finish(BodyEnd::Failed(e.to_string()));
                Poll::Ready(Some(Err(e)))
            }
            None => {
                this.recorder.finish(BodyEnd::Complete);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// The agent's request body on its way upstream. In write-ahead mode its
/// start has already been read (and recorded) and is replayed first. If the
/// upstream side lets go of it before its end — the upstream was
/// unreachable, or answered early — the rest is still read for the record,
/// so an auditor sees what the agent tried to send even when it went nowhere.
pub struct RequestBody {
    prefix: VecDeque<Bytes>,
    tee: TeeBody<Incoming>,
}

impl RequestBody {
    pub fn new(inner: Incoming, recorder: BodyRecorder) -> Self {
        Self {
            prefix: VecDeque::new(),
            tee: TeeBody::new(inner, recorder),
        }
    }

    /// Frames already read from `tee` (and recorded), sent before the rest.
    pub fn with_prefix(prefix: VecDeque<Bytes>, tee: TeeBody<Incoming>) -> Self {
        Self { prefix, tee }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(data) = self.prefix.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Pin::new(&mut self.tee).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty() && self.tee.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let buffered: u64 = self.prefix.iter().map(|b| b.len() as u64).sum();
        let rest = self.tee.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(buffered + rest.lower());
        if let Some(upper) = rest.upper() {
            hint.set_upper(buffered + upper);
        }
        hint
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        let Some((mut rest, mut recorder)) = self.tee.take_unfinished() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // the recorder's drop records what was seen
        };
        runtime.spawn(async move {
            let drained = tokio::time::timeout(DRAIN_LIMIT, async {
                while let Some(frame) = rest.frame().await {
                    match frame {
                        Ok(f) => {
                            if let Some(d) = f.data_ref() {
                                recorder.on_data(d);
                            }
                        }
                        Err(e) => {
                            recorder.finish(BodyEnd::Failed(e.to_string()));
                            return;
                        }
                    }
                }
                recorder.finish(BodyEnd::Complete);
            })
            .await;
            if drained.is_err() {
                tracing::debug!("gave up reading an abandoned request body for the record");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    #[tokio::test]
    async fn frames_pass_unchanged_and_are_recorded() {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(b"data: 1\n\n"))),
            Ok(Frame::data(Bytes::from_static(b"data: 2\n\n"))),
        ];
        let (rec, rx) = BodyRecorder::new(1024);
        let tee = TeeBody::new(StreamBody::new(futures_util::stream::iter(frames)), rec);
        let out = tee.collect().await.unwrap().to_bytes();
        assert_eq!(&out[..], b"data: 1\n\ndata: 2\n\n");
        let c = rx.await.unwrap();
        assert_eq!(c.contiguous(), out.to_vec());
        assert_eq!(c.end, BodyEnd::Complete);
    }

    #[tokio::test]
    async fn errors_are_passed_on_and_recorded() {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(b"partial"))),
            Err(std::io::Error::other("connection reset")),
        ];
        let (rec, rx) = BodyRecorder::new(1024);
        let tee = TeeBody::new(StreamBody::new(futures_util::stream::iter(frames)), rec);
        assert!(tee.collect().await.is_err());
        let c = rx.await.unwrap();
        assert_eq!(c.end, BodyEnd::Failed("connection reset".into()));
        assert_eq!(c.contiguous(), b"partial");
    }

    #[tokio::test]
    async fn dropped_unread_is_recorded_as_dropped() {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> =
            vec![Ok(Frame::data(Bytes::from_static(b"never read")))];
        let (rec, rx) = BodyRecorder::new(1024);
        drop(TeeBody::new(
            StreamBody::new(futures_util::stream::iter(frames)),
            rec,
        ));
        assert_eq!(rx.await.unwrap().end, BodyEnd::Dropped);
    }
}
