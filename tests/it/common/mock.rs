//! A mock upstream: a real HTTP/1.1 + h2 server (optionally TLS with ALPN)
//! whose answers are scripted per test. It logs every request it receives,
//! so tests can check exactly what sidetrace forwarded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A request as the mock saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// The host the request named: `Host`, or `:authority` over HTTP/2.
    pub authority: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One piece of a streamed reply: bytes, or an abrupt end of the connection.
pub enum Piece {
    Bytes(Bytes),
    Abort,
}

pub enum Reply {
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    /// Frames as the test (or a helper task) sends them.
    Stream {
        status: u16,
        headers: Vec<(String, String)>,
        pieces: mpsc::Receiver<Piece>,
    },
    /// Never answer.
    Hang,
}

impl Reply {
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Self::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
        }
    }

    /// An SSE body sent in the given pieces, each its own frame.
    pub fn sse_pieces(pieces: Vec<Bytes>, abort_at_end: bool) -> Self {
        let (tx, rx) = mpsc::channel(pieces.len() + 1);
        for p in pieces {
            tx.try_send(Piece::Bytes(p)).unwrap();
        }
        if abort_at_end {
            tx.try_send(Piece::Abort).unwrap();
        }
        Self::Stream {
            status: 200,
            headers: sse_headers(),
            pieces: rx,
        }
    }

    /// An SSE body sent one event per frame, `delay` apart (so a test can
    /// act while streams are in flight).
    pub fn sse_paced(body: &[u8], delay: std::time::Duration) -> Self {
        let events = split_events(body);
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            for e in events {
                if tx.send(Piece::Bytes(e)).await.is_err() {
                    return;
                }
                tokio::time::sleep(delay).await;
            }
        });
        Self::Stream {
            status: 200,
            headers: sse_headers(),
            pieces: rx,
        }
    }

    /// An SSE body split into one frame per event.
    pub fn sse(body: &[u8]) -> Self {
        Self::sse_pieces(split_events(body), false)
    }
}

pub fn sse_headers() -> Vec<(String, String)> {
    vec![
        (
            "content-type".into(),
            "text/event-stream; charset=utf-8".into(),
        ),
        ("cache-control".into(), "no-cache".into()),
    ]
}

/// Splits an SSE body after each blank line, keeping every byte.
pub fn split_events(body: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < body.len() {
        if body[i] == b'\n' && body[i + 1] == b'\n' {
            out.push(Bytes::copy_from_slice(&body[start..i + 2]));
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    if start < body.len() {
        out.push(Bytes::copy_from_slice(&body[start..]));
    }
    out
}

pub type Script = Arc<dyn Fn(&Received) -> Reply + Send + Sync>;

pub struct Mock {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
    tls: bool,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mock {
    pub async fn start(script: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_with(Arc::new(script), None).await
    }

    pub async fn start_tls(
        script: impl Fn(&Received) -> Reply + Send + Sync + 'static,
        tls: Arc<rustls::ServerConfig>,
    ) -> Self {
        Self::start_with(Arc::new(script), Some(tls)).await
    }

    async fn start_with(script: Script, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let is_tls = tls.is_some();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let script = script.clone();
                let log = log.clone();
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let script = script.clone();
                        let log = log.clone();
                        async move { Ok::<_, Infallible>(answer(req, &script, &log).await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            received,
            task,
            tls: is_tls,
        }
    }

    /// A mock whose first request gets a stream the test feeds piece by
    /// piece through the returned sender; later requests get `fallback`.
    pub async fn gated(fallback: impl Into<Bytes>) -> (Self, mpsc::Sender<Piece>) {
        let (tx, rx) = mpsc::channel(64);
        let slot = Mutex::new(Some(rx));
        let fallback = fallback.into();
        let mock = Self::start(move |_| match slot.lock().unwrap().take() {
            Some(pieces) => Reply::Stream {
                status: 200,
                headers: sse_headers(),
                pieces,
            },
            None => Reply::json(200, fallback.clone()),
        })
        .await;
        (mock, tx)
    }

    /// The base URL to configure as a route's upstream.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

type MockBody = BoxBody<Bytes, std::io::Error>;

async fn answer(
    req: Request<Incoming>,
    script: &Script,
    log: &Mutex<Vec<Received>>,
) -> Response<MockBody> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let received = Received {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        authority: parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or(parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or_default()
            .to_owned(),
        version: parts.version,
        headers: parts.headers,
        body,
    };
    let reply = script(&received);
    log.lock().unwrap().push(received);
    let (status, headers, body): (u16, Vec<(String, String)>, MockBody) = match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => (
            status,
            headers,
            http_body_util::Full::new(body)
                .map_err(|n| match n {})
                .boxed(),
        ),
        Reply::Stream {
            status,
            headers,
            pieces,
        } => {
            let stream = futures_util::stream::unfold(pieces, |mut rx| async move {
                match rx.recv().await {
                    Some(Piece::Bytes(b)) => Some((Ok(Frame::data(b)), rx)),
                    Some(Piece::Abort) => {
                        Some((Err(std::io::Error::other("mock aborts the stream")), rx))
                    }
                    None => None,
                }
            });
            (status, headers, BodyExt::boxed(StreamBody::new(stream)))
        }
        Reply::Hang => std::future::pending().await,
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        resp.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    resp
}
