//! In-process OTLP receivers, over HTTP/protobuf and gRPC, that keep every
//! span they are sent and can be told to refuse for a while.

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use tokio::net::TcpListener;

#[derive(Default)]
struct State {
    requests: Vec<ExportTraceServiceRequest>,
    /// Answer this many requests with 503 / UNAVAILABLE first.
    refuse: usize,
    refused: usize,
}

pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn http() -> Self {
        Self::http_on("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn http_on(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let state = state.clone();
                            async move { Ok::<_, Infallible>(http_answer(req, &state).await) }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, state, task }
    }

    pub async fn grpc() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state: Arc<Mutex<State>> = Arc::default();
        let service = TraceServiceServer::new(Collector(state.clone()))
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let svc = hyper_util::service::TowerToHyperService::new(service.clone());
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .http2_only()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Refuse the next `n` requests as a collector under pressure does.
    pub fn refuse(&self, n: usize) {
        self.state.lock().unwrap().refuse = n;
    }

    pub fn refused(&self) -> usize {
        self.state.lock().unwrap().refused
    }

    pub fn requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn spans(&self) -> Vec<Span> {
        self.requests()
            .into_iter()
            .flat_map(|r| r.resource_spans)
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
            .collect()
    }
}

async fn http_answer(
    req: http::Request<hyper::body::Incoming>,
    state: &Mutex<State>,
) -> http::Response<Full<Bytes>> {
    let reply = |status: u16, body: Vec<u8>| {
        let mut r = http::Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        r
    };
    if req.uri().path() != "/v1/traces" || req.method() != http::Method::POST {
        return reply(404, Vec::new());
    }
    let gzip = req
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let body = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body.to_vec()
    };
    {
        let mut s = state.lock().unwrap();
        if s.refuse > 0 {
            s.refuse -= 1;
            s.refused += 1;
            let mut r = reply(503, b"busy".to_vec());
            r.headers_mut().insert("retry-after", "0".parse().unwrap());
            return r;
        }
        s.requests
            .push(ExportTraceServiceRequest::decode(&body[..]).expect("a valid OTLP request"));
    }
    let mut r = reply(200, ExportTraceServiceResponse::default().encode_to_vec());
    r.headers_mut()
        .insert("content-type", "application/x-protobuf".parse().unwrap());
    r
}

struct Collector(Arc<Mutex<State>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut s = self.0.lock().unwrap();
        if s.refuse > 0 {
            s.refuse -= 1;
            s.refused += 1;
            return Err(tonic::Status::unavailable("busy"));
        }
        s.requests.push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A span attribute as text (strings, numbers, booleans, arrays).
pub fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .map(text)
}

pub fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::ArrayValue(a)) => {
            a.values.iter().map(text).collect::<Vec<_>>().join(",")
        }
        _ => String::new(),
    }
}
