//! The body sidetrace returns to agents: either the upstream's body through
//! the tee, or a small body sidetrace wrote itself (an error).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use super::mcp::tap::McpTap;
use super::tee::TeeBody;

pin_project! {
    #[project = ProxyBodyProj]
    pub enum ProxyBody {
        Upstream { #[pin] body: TeeBody<Incoming> },
        Mcp { #[pin] body: McpTap },
        Local { #[pin] body: Full<Bytes> },
    }
}

impl ProxyBody {
    pub fn local(bytes: Bytes) -> Self {
        Self::Local {
            body: Full::new(bytes),
        }
    }

    pub fn upstream(body: TeeBody<Incoming>) -> Self {
        Self::Upstream { body }
    }

    pub fn mcp(body: McpTap) -> Self {
        Self::Mcp { body }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            ProxyBodyProj::Upstream { body } => body.poll_frame(cx),
            ProxyBodyProj::Mcp { body } => body.poll_frame(cx),
            ProxyBodyProj::Local { body } => body
                .poll_frame(cx)
                .map(|f| f.map(|r| Ok(r.unwrap_or_else(|never| match never {})))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Upstream { body } => body.is_end_stream(),
            Self::Mcp { body } => body.is_end_stream(),
            Self::Local { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Upstream { body } => body.size_hint(),
            Self::Mcp { body } => body.size_hint(),
            Self::Local { body } => body.size_hint(),
        }
    }
}
