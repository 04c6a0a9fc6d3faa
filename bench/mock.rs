//! A fast mock model API for the benchmark (`bench/run.sh`), not part of sidetrace.
//!
//! Answers OpenAI-shaped (`…/chat/completions`) and Anthropic-shaped (`…/messages`) requests, plain
//! JSON or Server-Sent Events (when the request body says `"stream": true`), with a configurable number
//! of chunks and delay between them. Every streamed content chunk carries `<ts:NANOS>`, the wall-clock
//! time (ns since the epoch) at which the mock handed it to the socket, so a client on the same machine
//! can measure how long each chunk took to reach it through a proxy. Every answer carries a counter, so
//! no two responses have the same content (a recorder cannot dedupe them away).
//!
//! It also acts as an OTLP/HTTP sink: POST `…/v1/traces` (or logs, metrics) is answered 200 with an
//! empty protobuf message and counted. `GET /stats` returns the counters as JSON, `GET /health` 200.
//!
//! Per-request overrides (headers, forwarded untouched by the proxies under test):
//! `x-mock-chunks`, `x-mock-chunk-delay-us`, `x-mock-response-bytes`.
//!
//! ```sh
//! cargo run --release --example bench-mock -- --listen 127.0.0.1:9000 --chunks 100 --chunk-delay-us 2000
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

#[derive(Parser, Debug, Clone)]
#[command(about = "Mock OpenAI/Anthropic upstream and OTLP sink for sidetrace's benchmark")]
struct Args {
    /// Address to listen on (port 0: pick one; the bound address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Approximate size of a non-streaming response body, in bytes.
    #[arg(long, default_value_t = 1024)]
    response_bytes: usize,
    /// Content chunks in a streamed response.
    #[arg(long, default_value_t = 100)]
    chunks: usize,
    /// Delay between streamed chunks, in microseconds (the first chunk is sent at once).
    #[arg(long, default_value_t = 2000)]
    chunk_delay_us: u64,
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    chat: AtomicU64,
    messages: AtomicU64,
    streams: AtomicU64,
    otlp_requests: AtomicU64,
    otlp_bytes: AtomicU64,
    request_bytes: AtomicU64,
}

struct Mock {
    args: Args,
    counter: AtomicU64,
    stats: Stats,
    /// Filler text, long enough for any response size asked for.
    filler: String,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(serve(args))
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let filler = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
        .repeat(1 + (1 << 20) / 78);
    let mock = Arc::new(Mock {
        args,
        counter: AtomicU64::new(0),
        stats: Stats::default(),
        filler,
    });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mock = mock.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let mock = mock.clone();
                async move { Ok::<_, Infallible>(mock.handle(req).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn header_num<T: std::str::FromStr>(req: &Request<Incoming>, name: &str) -> Option<T> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The string value of a top-level-looking `"field": "value"` in a JSON body, without parsing it all.
fn str_field<'a>(body: &'a [u8], field: &str) -> Option<&'a str> {
    let key = format!("\"{field}\"");
    let at = find(body, key.as_bytes())? + key.len();
    let rest = &body[at..];
    let colon = rest.iter().position(|&b| !b.is_ascii_whitespace())?;
    if rest[colon] != b':' {
        return None;
    }
    let rest = &rest[colon + 1..];
    let quote = rest.iter().position(|&b| !b.is_ascii_whitespace())?;
    if rest[quote] != b'"' {
        return None;
    }
    let rest = &rest[quote + 1..];
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// Whether the body asks for a stream (`"stream": true`).
fn wants_stream(body: &[u8]) -> bool {
    let Some(at) = find(body, b"\"stream\"") else {
        return false;
    };
    body[at + 8..]
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace() && *b != b':')
        == Some(b't')
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Keeps only characters that need no escaping in a JSON string.
fn json_safe(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .take(100)
        .collect()
}

type Reply = Response<MockBody>;

impl Mock {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Reply {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let path = req.uri().path().to_string();
        match (req.method(), path.as_str()) {
            (&Method::GET, "/health") => return json(StatusCode::OK, "{\"ok\":true}".into()),
            (&Method::GET, "/stats") => return json(StatusCode::OK, self.stats_json()),
            _ => {}
        }
        if req.method() != Method::POST {
            return not_found(&path);
        }
        let chunks = header_num(&req, "x-mock-chunks").unwrap_or(self.args.chunks);
        let delay = Duration::from_micros(
            header_num(&req, "x-mock-chunk-delay-us").unwrap_or(self.args.chunk_delay_us),
        );
        let size = header_num(&req, "x-mock-response-bytes").unwrap_or(self.args.response_bytes);
        let body = match req.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return json(StatusCode::BAD_REQUEST, "{\"error\":\"body\"}".into()),
        };
        self.stats
            .request_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        if path.ends_with("/v1/traces")
            || path.ends_with("/v1/logs")
            || path.ends_with("/v1/metrics")
        {
            self.stats.otlp_requests.fetch_add(1, Ordering::Relaxed);
            self.stats
                .otlp_bytes
                .fetch_add(body.len() as u64, Ordering::Relaxed);
            let mut res = Response::new(MockBody::full(Bytes::new()));
            res.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/x-protobuf"),
            );
            return res;
        }
        let anthropic = path.ends_with("/messages");
        if !anthropic && !path.ends_with("/chat/completions") {
            return not_found(&path);
        }
        if anthropic {
            self.stats.messages.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.chat.fetch_add(1, Ordering::Relaxed);
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let model = json_safe(str_field(&body, "model").unwrap_or("bench-model"));
        if wants_stream(&body) {
            self.stats.streams.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = mpsc::channel(4);
            let stream = if anthropic {
                Stream::Anthropic
            } else {
                Stream::OpenAi
            };
            tokio::spawn(produce(stream, tx, n, model, chunks.max(1), delay));
            let mut res = Response::new(MockBody::Stream(rx));
            let h = res.headers_mut();
            h.insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/event-stream"),
            );
            h.insert(
                hyper::header::CACHE_CONTROL,
                hyper::header::HeaderValue::from_static("no-cache"),
            );
            return res;
        }
        let body = if anthropic {
            self.anthropic_message(n, &model, size)
        } else {
            self.openai_completion(n, &model, size)
        };
        json(StatusCode::OK, body)
    }

    fn content(&self, n: u64, room: usize) -> String {
        let head = format!("reply {n}: ");
        let fill = room.saturating_sub(head.len()).min(self.filler.len());
        format!("{head}{}", &self.filler[..fill])
    }

    fn openai_completion(&self, n: u64, model: &str, size: usize) -> String {
        let shape = |content: &str| {
            format!(
                "{{\"id\":\"chatcmpl-bench-{n}\",\"object\":\"chat.completion\",\"created\":1700000000,\
                 \"model\":\"{model}\",\"system_fingerprint\":\"fp_bench\",\"choices\":[{{\"index\":0,\
                 \"message\":{{\"role\":\"assistant\",\"content\":\"{content}\",\"refusal\":null}},\
                 \"logprobs\":null,\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":250,\
                 \"completion_tokens\":200,\"total_tokens\":450}}}}"
            )
        };
        let room = size.saturating_sub(shape("").len());
        shape(&self.content(n, room))
    }

    fn anthropic_message(&self, n: u64, model: &str, size: usize) -> String {
        let shape = |content: &str| {
            format!(
                "{{\"id\":\"msg_bench_{n}\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"{model}\",\
                 \"content\":[{{\"type\":\"text\",\"text\":\"{content}\"}}],\"stop_reason\":\"end_turn\",\
                 \"stop_sequence\":null,\"usage\":{{\"input_tokens\":250,\"output_tokens\":200}}}}"
            )
        };
        let room = size.saturating_sub(shape("").len());
        shape(&self.content(n, room))
    }

    fn stats_json(&self) -> String {
        let s = &self.stats;
        format!(
            "{{\"requests\":{},\"chat\":{},\"messages\":{},\"streams\":{},\"otlp_requests\":{},\
             \"otlp_bytes\":{},\"request_bytes\":{}}}",
            s.requests.load(Ordering::Relaxed),
            s.chat.load(Ordering::Relaxed),
            s.messages.load(Ordering::Relaxed),
            s.streams.load(Ordering::Relaxed),
            s.otlp_requests.load(Ordering::Relaxed),
            s.otlp_bytes.load(Ordering::Relaxed),
            s.request_bytes.load(Ordering::Relaxed),
        )
    }
}

fn json(status: StatusCode, body: String) -> Reply {
    let mut res = Response::new(MockBody::full(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    res
}

fn not_found(path: &str) -> Reply {
    json(
        StatusCode::NOT_FOUND,
        format!(
            "{{\"error\":{{\"message\":\"mock: no route for {}\"}}}}",
            json_safe(path)
        ),
    )
}

#[derive(Clone, Copy)]
enum Stream {
    OpenAi,
    Anthropic,
}

/// Sends the stream's frames, the first at once and then one every `delay`; stops when the client goes.
async fn produce(
    stream: Stream,
    tx: mpsc::Sender<Bytes>,
    n: u64,
    model: String,
    chunks: usize,
    delay: Duration,
) {
    // The first chunk goes at once (a timer's first tick would wait for the next timer-wheel tick).
    let period = delay.max(Duration::from_micros(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..chunks {
        if i > 0 {
            ticker.tick().await;
        }
        let ts = now_ns();
        let text = format!("<ts:{ts}> token{i} ");
        let frame = match stream {
            Stream::OpenAi => {
                let role = if i == 0 {
                    "\"role\":\"assistant\","
                } else {
                    ""
                };
                format!(
                    "data: {{\"id\":\"chatcmpl-bench-{n}\",\"object\":\"chat.completion.chunk\",\
                     \"created\":1700000000,\"model\":\"{model}\",\"system_fingerprint\":\"fp_bench\",\
                     \"choices\":[{{\"index\":0,\"delta\":{{{role}\"content\":\"{text}\"}},\
                     \"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
                )
            }
            Stream::Anthropic => {
                let start = if i == 0 {
                    format!(
                        "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\
                         \"msg_bench_{n}\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\
                         \"{model}\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\
                         \"usage\":{{\"input_tokens\":250,\"output_tokens\":1}}}}}}\n\n\
                         event: content_block_start\ndata: {{\"type\":\"content_block_start\",\
                         \"index\":0,\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\n"
                    )
                } else {
                    String::new()
                };
                format!(
                    "{start}event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\
                     \"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{text}\"}}}}\n\n"
                )
            }
        };
        if tx.send(Bytes::from(frame)).await.is_err() {
            return;
        }
    }
    let end = match stream {
        Stream::OpenAi => format!(
            "data: {{\"id\":\"chatcmpl-bench-{n}\",\"object\":\"chat.completion.chunk\",\
             \"created\":1700000000,\"model\":\"{model}\",\"system_fingerprint\":\"fp_bench\",\
             \"choices\":[{{\"index\":0,\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"stop\"}}],\
             \"usage\":{{\"prompt_tokens\":250,\"completion_tokens\":{chunks},\"total_tokens\":{}}}}}\n\n\
             data: [DONE]\n\n",
            250 + chunks
        ),
        Stream::Anthropic => format!(
            "event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
             event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\
             \"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{chunks}}}}}\n\n\
             event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
        ),
    };
    let _ = tx.send(Bytes::from(end)).await;
}

/// A whole body, or frames handed over by a producer task as they are made.
enum MockBody {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl MockBody {
    fn full(bytes: Bytes) -> Self {
        MockBody::Full(Some(bytes))
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            MockBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Stream(rx) => rx.poll_recv(cx).map(|f| f.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, MockBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            MockBody::Full(None) => SizeHint::with_exact(0),
            MockBody::Stream(_) => SizeHint::default(),
        }
    }
}
