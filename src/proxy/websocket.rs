//! WebSocket upgrades, on reverse routes and inside intercepted tunnels.
//!
//! The upgrade request goes to the upstream over a fresh HTTP/1.1
//! connection of its own (an upgrade cannot ride a pooled h2 connection),
//! with its `Upgrade`/`Connection` headers kept and everything else as any
//! request. The upstream's answer goes back as it is; on `101 Switching
//! Protocols` both connections are upgraded and relayed byte for byte,
//! each chunk passed on before a copy goes to the recorder
//! (`capture::websocket_session`) through its bounded queue.
//!
//! The relay lives in the tunnel tracker: shutdown lets it run until the
//! drain timeout, then cuts it (the record says the connection was cut).

use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::Empty;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::capture::exchange::RequestMeta;
use crate::capture::websocket_session::{self, Chunk, Handshake};
use crate::record::CompletionStatus;
use crate::record::redact::recorded_headers;

use super::body::ProxyBody;
use super::errors;
use super::forward::LocalAnswer;
use super::forward::{ProxyState, RequestGuard, header_text};
use super::headers;
use super::routes::Resolved;
use super::upstream;

const READ_SIZE: usize = 16 * 1024;

/// An HTTP/1.1 request to switch to WebSocket.
pub fn is_upgrade(parts: &Parts) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        parts.headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    parts.version == Version::HTTP_11
        && has_token(header::CONNECTION, "upgrade")
        && has_token(header::UPGRADE, "websocket")
}

pub(super) async fn forward(
    state: &ProxyState,
    guard: &mut RequestGuard<'_>,
    meta: RequestMeta,
    mut parts: Parts,
    resolved: &Resolved<'_>,
) -> Response<ProxyBody> {
    let shape = errors::Shape::of(meta.provider, meta.api);
    let Some(client_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
        let answer = LocalAnswer {
            status: CompletionStatus::Refused,
            http: StatusCode::BAD_REQUEST,
            code: "upgrade_unavailable",
            message: "this connection cannot be upgraded to a WebSocket".into(),
        };
        return answer.send(shape, state.start_capture(meta, None), guard);
    };
    let upstream_resp = match handshake(state, &parts, &resolved.upstream_uri).await {
        Ok(r) => r,
        Err(message) => {
            tracing::warn!(upstream = %resolved.upstream_uri, error = %message, "WebSocket upstream unreachable");
            let answer = LocalAnswer {
                status: CompletionStatus::UpstreamUnreachable,
                http: StatusCode::BAD_GATEWAY,
                code: "upstream_unreachable",
                message: format!(
                    "sidetrace could not open the WebSocket to {}: {message}. Check the upstream URL, TLS trust (--upstream-ca) and that the host is reachable.",
                    resolved.upstream_uri
                ),
            };
            return answer.send(shape, state.start_capture(meta, None), guard);
        }
    };
    guard.status = Some(upstream_resp.status().as_u16());
    if upstream_resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Refused (401, 426...): answered and recorded like any response.
        let (mut rparts, rbody) = upstream_resp.into_parts();
        headers::strip(&mut rparts.headers);
        let mut capture = state.start_capture(meta, None);
        let (recorder, response_capture) =
            crate::capture::body::BodyRecorder::new(state.capture_max_body);
        capture.report(crate::capture::session::UpstreamEvent::Response {
            head: super::forward::response_head(&rparts),
            body: response_capture,
        });
        rparts.version = Version::HTTP_11;
        return Response::from_parts(
            rparts,
            ProxyBody::upstream(super::tee::TeeBody::new(rbody, recorder)),
        );
    }

    let (rparts, _) = upstream_resp.into_parts();
    let mut reply = Response::new(ProxyBody::local(Bytes::new()));
    *reply.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *reply.headers_mut() = rparts.headers.clone();
    let record = Handshake {
        status: 101,
        response_headers: recorded_headers(&rparts.headers),
        extensions: header_text(&rparts.headers, header::SEC_WEBSOCKET_EXTENSIONS),
        subprotocol: header_text(&rparts.headers, header::SEC_WEBSOCKET_PROTOCOL),
    };
    let upstream_response = Response::from_parts(rparts, ());
    let recorder = websocket_session::start(state.recorder.clone(), meta, record);
    let hard_stop = state.tunnels.hard_stop.clone();
    state.tunnels.tracker.spawn(async move {
        let connected = async {
            let upstream = hyper::upgrade::on(upstream_response)
                .await
                .map_err(|e| format!("the upstream's upgraded connection failed: {e}"))?;
            let client = client_upgrade
                .await
                .map_err(|e| format!("the agent's upgraded connection failed: {e}"))?;
            Ok::<_, String>((TokioIo::new(client), TokioIo::new(upstream)))
        };
        let error = match connected.await {
            Ok((client, upstream)) => tokio::select! {
                e = relay(client, upstream, &recorder) => e,
                _ = hard_stop.cancelled() => Some("cut at shutdown".to_owned()),
            },
            Err(e) => Some(e),
        };
        let _ = recorder.send(Chunk::End { error }).await;
    });
    reply
}

/// Opens an HTTP/1.1 connection to the upstream and sends the upgrade request.
async fn handshake(
    state: &ProxyState,
    parts: &Parts,
    upstream_uri: &Uri,
) -> Result<Response<hyper::body::Incoming>, String> {
    let host = upstream_uri
        .host()
        .ok_or("the upstream URL has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let https = upstream_uri.scheme_str() == Some("https");
    let port = upstream_uri
        .port_u16()
        .unwrap_or(if https { 443 } else { 80 });
    let tcp = upstream::connect_tcp(
        &state.forward.overrides,
        &host,
        port,
        state.forward.connect_timeout,
    )
    .await
    .map_err(|e| e.to_string())?;

    let mut out = parts.headers.clone();
    let upgrade = out.get(header::UPGRADE).cloned();
    headers::strip(&mut out);
    out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Some(u) = upgrade {
        out.insert(header::UPGRADE, u);
    }
    let authority = match (https, port) {
        (true, 443) | (false, 80) => host.clone(),
        _ => format!("{host}:{port}"),
    };
    out.insert(
        header::HOST,
        HeaderValue::from_str(&authority).map_err(|e| e.to_string())?,
    );
    let mut req = Request::new(Empty::<Bytes>::new());
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = upstream_uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    *req.headers_mut() = out;

    let sent = async {
        if https {
            let name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(state.ws_tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {host} failed: {e}"))?;
            send(TokioIo::new(tls), req).await
        } else {
            send(TokioIo::new(tcp), req).await
        }
    };
    tokio::time::timeout(state.upstream_timeout, sent)
        .await
        .map_err(|_| "no answer to the upgrade request".to_owned())?
}

async fn send<T>(
    io: TokioIo<T>,
    req: Request<Empty<Bytes>>,
) -> Result<Response<hyper::body::Incoming>, String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "WebSocket upstream connection ended");
        }
    });
    sender.send_request(req).await.map_err(|e| e.to_string())
}

/// Relays both ways until both are done; returns why it stopped early.
async fn relay<C, U>(client: C, upstream: U, recorder: &mpsc::Sender<Chunk>) -> Option<String>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let started = Instant::now();
    let (up, down) = tokio::join!(
        pump(
            &mut client_read,
            &mut upstream_write,
            recorder,
            Chunk::ToUpstream
        ),
        pump(
            &mut upstream_read,
            &mut client_write,
            recorder,
            Chunk::ToClient
        ),
    );
    tracing::debug!(elapsed = ?started.elapsed(), "WebSocket connection ended");
    up.err().or(down.err())
}

/// One direction: read, pass on, then hand a copy to the recorder. Closes
/// the write side when the read side ends.
async fn pump<R, W>(
    from: &mut R,
    to: &mut W,
    recorder: &mpsc::Sender<Chunk>,
    wrap: fn(Bytes) -> Chunk,
) -> Result<(), String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = bytes::BytesMut::with_capacity(READ_SIZE);
    let mut recording = true;
    loop {
        buf.reserve(READ_SIZE);
        match from.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            // A TLS peer that hangs up without close_notify: an end like any other.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => {
                let _ = to.shutdown().await;
                return Err(format!("read failed: {e}"));
            }
        }
        let chunk = buf.split().freeze();
        if let Err(e) = to.write_all(&chunk).await {
            return Err(format!("write failed: {e}"));
        }
        if recording {
            recording = recorder.send(wrap(chunk)).await.is_ok();
        }
    }
    let _ = to.shutdown().await;
    Ok(())
}
