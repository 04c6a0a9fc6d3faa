//! Measuring clients for the benchmark (`bench/run.sh`), not part of sidetrace. The request-rate
//! measurements use an established load generator (oha); these cover what it cannot:
//!
//! - `sse`: streams through a target and measures time to first chunk, the gap between chunks and each
//!   chunk's one-way delay (arrival time minus the `<ts:NANOS>` the mock put in it when sending it).
//! - `hold`: opens N concurrent streams, says when all are open (a ready file), holds them, closes them.
//! - `conversation`: plays an N-turn conversation that resends the whole history each turn, as agents
//!   do, and after each turn reads the journal's size (read-only SQLite) once the turn is recorded.
//!
//! Each prints one JSON object on stdout.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::Full;
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

mod conversation;
mod streams;

use conversation::conversation;
use streams::{hold, sse};

#[derive(Parser)]
#[command(about = "Measuring clients for sidetrace's benchmark")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct Target {
    /// http://HOST:PORT/path of the chat endpoint.
    #[arg(long)]
    url: String,
    /// Extra request header "name: value" (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure streamed responses: time to first chunk, gaps, per-chunk delay.
    Sse {
        #[command(flatten)]
        target: Target,
        /// File holding the request body (must ask for a stream).
        #[arg(long)]
        body_file: PathBuf,
        /// Streams to measure (after one unmeasured warm-up stream per connection).
        #[arg(long, default_value_t = 100)]
        streams: usize,
        /// Connections used in parallel, each running its streams one after another.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Pause between one stream's end and the next request on a connection (an agent acting on the
        /// answer); 0: back to back.
        #[arg(long, default_value_t = 0)]
        think_ms: u64,
        /// Also write every sample (µs) as JSON here: {"ttfc_us": [...], "gap_us": [...], "delay_us": [...]}.
        #[arg(long)]
        samples_out: Option<PathBuf>,
    },
    /// Open N concurrent streams and hold them open.
    Hold {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        body_file: PathBuf,
        #[arg(long, default_value_t = 1000)]
        streams: usize,
        /// How long to hold them once all are open.
        #[arg(long, default_value_t = 10.0)]
        hold_secs: f64,
        /// Written (JSON) once every stream has its first chunk, or failed.
        #[arg(long)]
        ready_file: PathBuf,
    },
    /// Play a conversation and measure the journal after each turn.
    Conversation {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 100)]
        turns: usize,
        /// Bytes of new user text per turn.
        #[arg(long, default_value_t = 1024)]
        user_bytes: usize,
        /// The journal sidetrace writes (opened read-only).
        #[arg(long)]
        journal: PathBuf,
        /// sidetrace's pid: its CPU time (from /proc) is recorded after each turn.
        #[arg(long)]
        cpu_pid: Option<u32>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let out = rt.block_on(async {
        match cli.cmd {
            Cmd::Sse {
                target,
                body_file,
                streams,
                concurrency,
                think_ms,
                samples_out,
            } => {
                let think = Duration::from_millis(think_ms);
                sse(target, body_file, streams, concurrency, think, samples_out).await
            }
            Cmd::Hold {
                target,
                body_file,
                streams,
                hold_secs,
                ready_file,
            } => hold(target, body_file, streams, hold_secs, ready_file).await,
            Cmd::Conversation {
                target,
                turns,
                user_bytes,
                journal,
                cpu_pid,
            } => conversation(target, turns, user_bytes, journal, cpu_pid).await,
        }
    })?;
    println!("{out}");
    Ok(())
}

/// Address, path and headers of the target, parsed once.
#[derive(Clone)]
struct Endpoint {
    addr: SocketAddr,
    authority: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Endpoint {
    fn parse(t: &Target) -> anyhow::Result<Self> {
        let uri: hyper::Uri = t.url.parse()?;
        anyhow::ensure!(uri.scheme_str() == Some("http"), "only http:// targets");
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow::anyhow!("no host in {}", t.url))?
            .to_string();
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&authority)?
            .next()
            .ok_or_else(|| anyhow::anyhow!("cannot resolve {authority}"))?;
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let headers = t
            .headers
            .iter()
            .map(|h| {
                let (k, v) = h
                    .split_once(':')
                    .ok_or_else(|| anyhow::anyhow!("header without ':': {h}"))?;
                Ok((k.trim().to_string(), v.trim().to_string()))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Endpoint {
            addr,
            authority,
            path,
            headers,
        })
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    fn request(&self, body: Bytes) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut req = Request::post(&self.path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        Ok(req.body(Full::new(body))?)
    }
}

fn wall_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Percentiles (nearest rank) of microsecond samples.
fn summary(mut v: Vec<f64>) -> Value {
    if v.is_empty() {
        return json!({"n": 0});
    }
    v.sort_by(f64::total_cmp);
    let at = |p: f64| {
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    };
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    json!({
        "n": v.len(),
        "mean": round(mean),
        "p50": round(at(50.0)),
        "p90": round(at(90.0)),
        "p99": round(at(99.0)),
        "p99.9": round(at(99.9)),
        "max": round(v[v.len() - 1]),
    })
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
