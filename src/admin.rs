//! Admin endpoints on their own port: `/healthz` (the process is up),
//! `/readyz` (the journal is open, routes are loaded, the proxy is not
//! draining, and — in write-ahead mode — the journal can be written) and
//! `/metrics` (Prometheus text).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::journal::JournalHealth;
use crate::metrics::Metrics;

pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub ready: AtomicBool,
    pub journal: Arc<JournalHealth>,
    /// In write-ahead mode a journal that cannot be written means no traffic.
    pub write_ahead: bool,
}

impl AdminState {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

/// Serves admin requests until `stop` is cancelled.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, stop: CancellationToken) {
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    continue;
                }
            },
        };
        let state = state.clone();
        let builder = builder.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req)) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

fn route(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String, content_type: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(content_type),
        );
        r
    };
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into(), "text/plain"),
        "/readyz" => {
            if !state.ready.load(Ordering::SeqCst) {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready\n".into(),
                    "text/plain",
                )
            } else if state.write_ahead && !state.journal.is_ok() {
                let why = format!(
                    "not ready: the journal cannot be written: {}\n",
                    state.journal.last_error()
                );
                text(StatusCode::SERVICE_UNAVAILABLE, why, "text/plain")
            } else {
                text(StatusCode::OK, "ready\n".into(), "text/plain")
            }
        }
        "/metrics" => text(
            StatusCode::OK,
            state.metrics.render(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz, /readyz or /metrics\n".into(),
            "text/plain",
        ),
    }
}
