//! OTLP transport: gRPC (tonic) or HTTP/protobuf (hyper), over the same
//! rustls setup as the upstream client. Each send reports whether a failure
//! is worth retrying, per the OTLP specification: gRPC UNAVAILABLE,
//! DEADLINE_EXCEEDED, CANCELLED, ABORTED, OUT_OF_RANGE, DATA_LOSS (and
//! RESOURCE_EXHAUSTED, which collectors use for memory pressure); HTTP 429,
//! 502, 503, 504 with `Retry-After`; no connection. Everything else is
//! permanent. Partial success is reported, never retried.

use std::io::Write;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message as _;
use tonic::codec::{CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::Channel;

use super::config::{OtlpConfig, Protocol};
use crate::tls::{self, ClientIdentity, TlsSetupError};

/// The collector took the batch.
#[derive(Debug, Default)]
pub struct Accepted {
    /// Spans it said it rejected (partial success).
    pub rejected_spans: i64,
    pub message: String,
}

#[derive(Debug)]
pub enum Failure {
    /// Try again, after `after` if the collector said so.
    Retryable {
        after: Option<Duration>,
        reason: String,
    },
    /// Trying again would fail the same way.
    Permanent(String),
}

pub enum Transport {
    Grpc(Box<Grpc>),
    Http(Box<Http>),
}

type Metadata = (
    MetadataKey<tonic::metadata::Ascii>,
    MetadataValue<tonic::metadata::Ascii>,
);

pub struct Grpc {
    client: tonic::client::Grpc<Channel>,
    headers: Vec<Metadata>,
    timeout: Duration,
}

pub struct Http {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: Uri,
    headers: HeaderMap,
    gzip: bool,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("OTLP endpoint {0}: {1}")]
    Endpoint(String, String),
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
}

impl Transport {
    pub fn new(cfg: &OtlpConfig) -> Result<Self, TransportError> {
        let identity = match (&cfg.client_cert, &cfg.client_key) {
            (Some(cert), Some(key)) => Some(ClientIdentity { cert, key }),
            _ => None,
        };
        let tls = tls::client_config(cfg.ca_file.as_deref(), identity)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.timeout));
        let bad = |e: String| TransportError::Endpoint(cfg.endpoint.clone(), e);
        Ok(match cfg.protocol {
            Protocol::Grpc => {
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_http2()
                    .wrap_connector(http);
                let channel = tonic::transport::Endpoint::from_shared(cfg.endpoint.clone())
                    .map_err(|e| bad(e.to_string()))?
                    .timeout(cfg.timeout)
                    .connect_with_connector_lazy(connector);
                let mut client = tonic::client::Grpc::new(channel);
                if cfg.gzip {
                    client = client
                        .send_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Gzip);
                }
                let headers = cfg
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                            .map_err(|e| bad(format!("header {k}: {e}")))?;
                        let value = v
                            .parse()
                            .map_err(|_| bad(format!("header {k}: value is not ASCII")))?;
                        Ok((key, value))
                    })
                    .collect::<Result<_, TransportError>>()?;
                Self::Grpc(Box::new(Grpc {
                    client,
                    headers,
                    timeout: cfg.timeout,
                }))
            }
            Protocol::HttpProtobuf => {
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_all_versions()
                    .wrap_connector(http);
                let mut headers = HeaderMap::new();
                for (k, v) in &cfg.headers {
                    let name = HeaderName::from_bytes(k.as_bytes())
                        .map_err(|e| bad(format!("header {k}: {e}")))?;
                    let value =
                        HeaderValue::from_str(v).map_err(|e| bad(format!("header {k}: {e}")))?;
                    headers.insert(name, value);
                }
                Self::Http(Box::new(Http {
                    client: Client::builder(TokioExecutor::new()).build(connector),
                    uri: cfg
                        .endpoint
                        .parse()
                        .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?,
                    headers,
                    gzip: cfg.gzip,
                    timeout: cfg.timeout,
                }))
            }
        })
    }

    /// Sends one encoded `ExportTraceServiceRequest`.
    pub async fn send(&mut self, request: &Bytes) -> Result<Accepted, Failure> {
        match self {
            Self::Grpc(g) => g.send(request).await,
            Self::Http(h) => h.send(request).await,
        }
    }
}

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

impl Grpc {
    async fn send(&mut self, request: &Bytes) -> Result<Accepted, Failure> {
        let mut req = tonic::Request::new(request.clone());
        req.set_timeout(self.timeout);
        for (k, v) in &self.headers {
            req.metadata_mut().insert(k.clone(), v.clone());
        }
        if let Err(e) = self.client.ready().await {
            return Err(retry(None, format!("cannot reach the collector: {e}")));
        }
        let path = http::uri::PathAndQuery::from_static(EXPORT_PATH);
        match self.client.unary(req, path, EncodedCodec).await {
            Ok(resp) => Ok(accepted(resp.into_inner())),
            Err(status) => Err(grpc_failure(&status)),
        }
    }
}

/// The export request goes out as the bytes it was encoded to once (a
/// retry sends the same bytes); the answer is decoded as usual.
#[derive(Clone, Copy)]
struct EncodedCodec;

impl tonic::codec::Codec for EncodedCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = EncodedCodec;
    type Decoder = EncodedCodec;
    fn encoder(&mut self) -> Self::Encoder {
        *self
    }
    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for EncodedCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl Decoder for EncodedCodec {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("bad ExportTraceServiceResponse: {e}")))
    }
}

impl Http {
    async fn send(&mut self, request: &Bytes) -> Result<Accepted, Failure> {
        let timeout = self.timeout;
        let mut body = request.clone();
        let mut req = Request::post(self.uri.clone())
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header(
                header::USER_AGENT,
                concat!("sidetrace/", env!("CARGO_PKG_VERSION")),
            );
        if self.gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&body)
                .map_err(|e| Failure::Permanent(e.to_string()))?;
            body = enc
                .finish()
                .map_err(|e| Failure::Permanent(e.to_string()))?
                .into();
            req = req.header(header::CONTENT_ENCODING, "gzip");
        }
        let mut req = req
            .body(Full::new(body))
            .map_err(|e| Failure::Permanent(e.to_string()))?;
        req.headers_mut().extend(self.headers.clone());
        let resp = match tokio::time::timeout(timeout, self.client.request(req)).await {
            Err(_) => {
                return Err(retry(
                    None,
                    format!("no answer within {}", humantime::format_duration(timeout)),
                ));
            }
            Ok(Err(e)) => return Err(retry(None, format!("cannot reach the collector: {e}"))),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = tokio::time::timeout(timeout, resp.into_body().collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            return Ok(ExportTraceServiceResponse::decode(body.as_ref())
                .map(accepted)
                .unwrap_or_default());
        }
        let detail = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        let reason = format!("collector answered {status}: {detail}");
        match status.as_u16() {
            429 | 502 | 503 | 504 => Err(retry(retry_after, reason)),
            _ => Err(Failure::Permanent(reason)),
        }
    }
}

fn retry(after: Option<Duration>, reason: String) -> Failure {
    Failure::Retryable { after, reason }
}

fn accepted(r: ExportTraceServiceResponse) -> Accepted {
    match r.partial_success {
        Some(p) => Accepted {
            rejected_spans: p.rejected_spans,
            message: p.error_message,
        },
        None => Accepted::default(),
    }
}

fn grpc_failure(status: &tonic::Status) -> Failure {
    use tonic::Code;
    let reason = format!(
        "collector answered {:?}: {}",
        status.code(),
        status.message()
    );
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss
        | Code::ResourceExhausted => retry(None, reason),
        _ => Failure::Permanent(reason),
    }
}

/// `Retry-After`: seconds, or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v.trim()).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let d = parse_retry_after(&soon).unwrap();
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120));
        assert_eq!(parse_retry_after("whenever"), None);
    }

    #[test]
    fn grpc_codes_are_classified_per_the_spec() {
        for code in [
            tonic::Code::Unavailable,
            tonic::Code::DeadlineExceeded,
            tonic::Code::Aborted,
        ] {
            assert!(matches!(
                grpc_failure(&tonic::Status::new(code, "x")),
                Failure::Retryable { .. }
            ));
        }
        for code in [
            tonic::Code::InvalidArgument,
            tonic::Code::Unauthenticated,
            tonic::Code::PermissionDenied,
        ] {
            assert!(matches!(
                grpc_failure(&tonic::Status::new(code, "x")),
                Failure::Permanent(_)
            ));
        }
    }
}
