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
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

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

/// What one measured stream saw.
#[derive(Default)]
struct StreamSample {
    ttfc_us: Option<f64>,
    gaps_us: Vec<f64>,
    delays_us: Vec<f64>,
    chunks: usize,
}

/// Sends one streaming request and reads it to the end, timing each `<ts:…>` chunk.
async fn one_stream(
    sender: &mut SendRequest<Full<Bytes>>,
    ep: &Endpoint,
    body: Bytes,
) -> anyhow::Result<StreamSample> {
    sender.ready().await?;
    let req = ep.request(body)?;
    let start = Instant::now();
    let res = sender.send_request(req).await?;
    anyhow::ensure!(res.status().is_success(), "status {}", res.status());
    let mut body: Incoming = res.into_body();
    let mut sample = StreamSample::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut last_chunk: Option<Instant> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        let now = Instant::now();
        let now_wall = wall_ns();
        if sample.ttfc_us.is_none() {
            sample.ttfc_us = Some((now - start).as_secs_f64() * 1e6);
        }
        pending.extend_from_slice(data);
        // Complete lines only: a marker may be split across frames.
        let Some(last_nl) = pending.iter().rposition(|&b| b == b'\n') else {
            continue;
        };
        for line in pending[..last_nl].split(|&b| b == b'\n') {
            let Some(at) = line.windows(4).position(|w| w == b"<ts:") else {
                continue;
            };
            let digits: String = line[at + 4..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .map(|&b| b as char)
                .collect();
            if let Ok(sent) = digits.parse::<i128>() {
                sample.delays_us.push((now_wall - sent) as f64 / 1e3);
            }
            sample.chunks += 1;
            if let Some(prev) = last_chunk {
                sample.gaps_us.push((now - prev).as_secs_f64() * 1e6);
            }
            last_chunk = Some(now);
        }
        pending.drain(..=last_nl);
    }
    Ok(sample)
}

async fn sse(
    target: Target,
    body_file: PathBuf,
    streams: usize,
    concurrency: usize,
    think: Duration,
    samples_out: Option<PathBuf>,
) -> anyhow::Result<Value> {
    let ep = Endpoint::parse(&target)?;
    let body = Bytes::from(std::fs::read(&body_file)?);
    let concurrency = concurrency.clamp(1, streams.max(1));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let ep = ep.clone();
        let body = body.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut errors = Vec::new();
            let mut sender = match ep.connect().await {
                Ok(s) => s,
                Err(e) => {
                    errors.push(format!("connect: {e}"));
                    return (samples, errors);
                }
            };
            // Warm-up: the proxy's upstream connection, caches.
            if let Err(e) = one_stream(&mut sender, &ep, body.clone()).await {
                errors.push(format!("warm-up: {e}"));
                return (samples, errors);
            }
            while next.fetch_add(1, Ordering::Relaxed) < streams {
                if !think.is_zero() {
                    tokio::time::sleep(think).await;
                }
                match one_stream(&mut sender, &ep, body.clone()).await {
                    Ok(s) => samples.push(s),
                    Err(e) => {
                        errors.push(e.to_string());
                        match ep.connect().await {
                            Ok(s) => sender = s,
                            Err(e) => {
                                errors.push(format!("reconnect: {e}"));
                                return (samples, errors);
                            }
                        }
                    }
                }
            }
            (samples, errors)
        }));
    }
    let mut samples = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        let (s, e) = t.await?;
        samples.extend(s);
        errors.extend(e);
    }
    let chunks: Vec<usize> = samples.iter().map(|s| s.chunks).collect();
    let ttfc: Vec<f64> = samples.iter().filter_map(|s| s.ttfc_us).collect();
    let gaps: Vec<f64> = samples
        .iter()
        .flat_map(|s| s.gaps_us.iter().copied())
        .collect();
    let delays: Vec<f64> = samples
        .iter()
        .flat_map(|s| s.delays_us.iter().copied())
        .collect();
    if let Some(path) = samples_out {
        let raw = json!({"ttfc_us": ttfc, "gap_us": gaps, "delay_us": delays, "chunks": chunks});
        std::fs::write(path, raw.to_string())?;
    }
    Ok(json!({
        "streams": samples.len(),
        "errors": errors.len(),
        "error_examples": errors.iter().take(3).collect::<Vec<_>>(),
        "chunks_min": chunks.iter().min(),
        "chunks_max": chunks.iter().max(),
        "ttfc_us": summary(ttfc),
        "gap_us": summary(gaps),
        "delay_us": summary(delays),
    }))
}

async fn hold(
    target: Target,
    body_file: PathBuf,
    streams: usize,
    hold_secs: f64,
    ready_file: PathBuf,
) -> anyhow::Result<Value> {
    let ep = Endpoint::parse(&target)?;
    let body = Bytes::from(std::fs::read(&body_file)?);
    let opening = Arc::new(tokio::sync::Semaphore::new(64));
    let open = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let (ep, body, opening, open, failed) = (
            ep.clone(),
            body.clone(),
            opening.clone(),
            open.clone(),
            failed.clone(),
        );
        let mut release = release_rx.clone();
        tasks.push(tokio::spawn(async move {
            let permit = opening.acquire_owned().await;
            let first = async {
                let mut sender = ep.connect().await?;
                sender.ready().await?;
                let res = sender.send_request(ep.request(body)?).await?;
                anyhow::ensure!(res.status().is_success(), "status {}", res.status());
                let mut body = res.into_body();
                loop {
                    match body.frame().await {
                        Some(Ok(f)) if f.data_ref().is_some_and(|d| !d.is_empty()) => break,
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(e.into()),
                        None => anyhow::bail!("stream ended before its first chunk"),
                    }
                }
                Ok((sender, body))
            }
            .await;
            drop(permit);
            let (_sender, mut body) = match first {
                Ok(x) => x,
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return Some(e.to_string());
                }
            };
            open.fetch_add(1, Ordering::Relaxed);
            // Keep reading (as a client does) until released.
            loop {
                tokio::select! {
                    _ = release.changed() => return None,
                    f = body.frame() => match f {
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Some(format!("while held: {e}")),
                        None => return Some("stream ended while held".into()),
                    },
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while open.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < streams
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open_after = started.elapsed().as_secs_f64();
    let ready = json!({
        "open": open.load(Ordering::Relaxed),
        "failed": failed.load(Ordering::Relaxed),
        "open_secs": round(open_after),
    });
    std::fs::write(&ready_file, ready.to_string())?;
    tokio::time::sleep(Duration::from_secs_f64(hold_secs)).await;
    let still_open_at_end = open.load(Ordering::Relaxed);
    let _ = release_tx.send(true);
    let mut errors = Vec::new();
    for t in tasks {
        if let Some(e) = t.await? {
            errors.push(e);
        }
    }
    Ok(json!({
        "streams": streams,
        "open": still_open_at_end,
        "failed": failed.load(Ordering::Relaxed),
        "open_secs": round(open_after),
        "errors": errors.len(),
        "error_examples": errors.iter().take(3).collect::<Vec<_>>(),
    }))
}

/// Deterministic prose of about `len` bytes, different for each seed.
fn prose(seed: u64, len: usize) -> String {
    const WORDS: &[&str] = &[
        "the", "parser", "returns", "an", "error", "when", "input", "is", "empty", "please", "fix",
        "failing", "test", "in", "module", "and", "explain", "why", "function", "handles", "bytes",
        "stream", "buffer", "request", "response", "journal", "record", "agent", "tool", "call",
        "result", "file", "line", "change", "review", "commit", "branch", "pipeline", "green",
    ];
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = format!("turn {seed}: ");
    while out.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.push_str(WORDS[(x >> 33) as usize % WORDS.len()]);
        out.push(' ');
    }
    out
}

/// Logical journal size: (pages in use) × page size, and what the rows hold.
fn journal_size(db: &rusqlite::Connection) -> anyhow::Result<Value> {
    let page_size: i64 = db.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let pages: i64 = db.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = db.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let (entries, entry_bytes): (i64, i64) = db.query_row(
        "SELECT count(*), coalesce(sum(length(entry)), 0) FROM entries",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (blobs, blob_bytes): (i64, i64) = db.query_row(
        "SELECT count(*), coalesce(sum(length(data)), 0) FROM blobs",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(json!({
        "file_bytes": (pages - free) * page_size,
        "entries": entries,
        "entry_bytes": entry_bytes,
        "blobs": blobs,
        "blob_bytes": blob_bytes,
    }))
}

fn interactions(db: &rusqlite::Connection) -> rusqlite::Result<i64> {
    db.query_row(
        "SELECT count(*) FROM entries WHERE kind = 'interaction'",
        [],
        |r| r.get(0),
    )
}

/// User + system CPU time of a process so far, in ms (from /proc; 100 ticks a second assumed).
fn cpu_ms(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10)
}

/// Least-squares slope and R² of y over x.
fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let r2 = if sxx > 0.0 && syy > 0.0 {
        sxy * sxy / (sxx * syy)
    } else {
        1.0
    };
    (slope, r2)
}

async fn conversation(
    target: Target,
    turns: usize,
    user_bytes: usize,
    journal: PathBuf,
    cpu_pid: Option<u32>,
) -> anyhow::Result<Value> {
    let ep = Endpoint::parse(&target)?;
    let mut sender = ep.connect().await?;
    let db = rusqlite::Connection::open_with_flags(
        &journal,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    db.busy_timeout(Duration::from_secs(5))?;
    let base_interactions = interactions(&db)?;
    let before = journal_size(&db)?;
    let mut messages = vec![json!({
        "role": "system",
        "content": "You are a careful coding agent working in a Rust repository. Keep answers short.",
    })];
    let mut rows = Vec::new();
    let mut request_bytes_total = 0usize;
    for turn in 0..turns {
        let user = prose(turn as u64 + 1, user_bytes);
        let mut new_content = user.len();
        messages.push(json!({"role": "user", "content": user}));
        let body = serde_json::to_vec(&json!({
            "model": "bench-model",
            "messages": messages,
        }))?;
        request_bytes_total += body.len();
        let request_bytes = body.len();
        if sender.ready().await.is_err() {
            sender = ep.connect().await?;
        }
        let res = sender.send_request(ep.request(Bytes::from(body))?).await?;
        anyhow::ensure!(
            res.status().is_success(),
            "turn {turn}: status {}",
            res.status()
        );
        let answer = res.into_body().collect().await?.to_bytes();
        let answer: Value = serde_json::from_slice(&answer)?;
        let reply = answer["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        new_content += reply.len();
        messages.push(json!({"role": "assistant", "content": reply}));
        // Wait until the turn is in the journal (batched: committed off the request path).
        let want = base_interactions + turn as i64 + 1;
        let waited = Instant::now();
        loop {
            match interactions(&db) {
                Ok(n) if n >= want => break,
                _ if waited.elapsed() > Duration::from_secs(10) => {
                    anyhow::bail!("turn {turn} not in the journal after 10 s")
                }
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        let mut row = journal_size(&db)?;
        let last_entry: i64 = db.query_row(
            "SELECT length(entry) FROM entries WHERE kind = 'interaction' ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )?;
        row["interaction_entry_bytes"] = json!(last_entry);
        if let Some(pid) = cpu_pid {
            row["cpu_ms"] = json!(cpu_ms(pid));
        }
        row["turn"] = json!(turn + 1);
        row["request_bytes"] = json!(request_bytes);
        row["new_content_bytes"] = json!(new_content);
        rows.push(row);
    }
    let base = before["file_bytes"].as_i64().unwrap_or(0);
    let base_rows =
        before["entry_bytes"].as_i64().unwrap_or(0) + before["blob_bytes"].as_i64().unwrap_or(0);
    let file_points: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| {
            (
                r["turn"].as_f64().unwrap_or(0.0),
                (r["file_bytes"].as_i64().unwrap_or(0) - base) as f64,
            )
        })
        .collect();
    let row_points: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| {
            let b = r["entry_bytes"].as_i64().unwrap_or(0) + r["blob_bytes"].as_i64().unwrap_or(0);
            (r["turn"].as_f64().unwrap_or(0.0), (b - base_rows) as f64)
        })
        .collect();
    let (file_slope, file_r2) = fit(&file_points);
    let (row_slope, row_r2) = fit(&row_points);
    let half = turns / 2;
    let growth = |points: &[(f64, f64)], from: usize, to: usize| {
        let at = |i: usize| if i == 0 { 0.0 } else { points[i - 1].1 };
        (at(to) - at(from)) / (to - from).max(1) as f64
    };
    let cpu_at = |turn: usize| -> Option<f64> {
        let first = rows.first()?["cpu_ms"].as_f64()?;
        if turn == 0 {
            return Some(first);
        }
        rows.get(turn - 1)?["cpu_ms"].as_f64()
    };
    let cpu_per_turn = |from: usize, to: usize| -> Option<f64> {
        Some(round(
            (cpu_at(to)? - cpu_at(from.max(1))?) / (to - from.max(1)).max(1) as f64,
        ))
    };
    let new_content_avg = rows
        .iter()
        .map(|r| r["new_content_bytes"].as_f64().unwrap_or(0.0))
        .sum::<f64>()
        / turns.max(1) as f64;
    Ok(json!({
        "turns": turns,
        "request_bytes_total": request_bytes_total,
        "request_bytes_last": rows.last().map(|r| r["request_bytes"].clone()),
        "new_content_bytes_per_turn": round(new_content_avg),
        "journal_file_bytes": file_points.last().map(|p| p.1),
        "journal_row_bytes": row_points.last().map(|p| p.1),
        "file_bytes_per_turn_fit": round(file_slope),
        "file_fit_r2": (file_r2 * 10000.0).round() / 10000.0,
        "row_bytes_per_turn_fit": round(row_slope),
        "row_fit_r2": (row_r2 * 10000.0).round() / 10000.0,
        "row_bytes_per_turn_first_half": round(growth(&row_points, 0, half)),
        "row_bytes_per_turn_second_half": round(growth(&row_points, half, turns)),
        "file_bytes_per_turn_first_half": round(growth(&file_points, 0, half)),
        "file_bytes_per_turn_second_half": round(growth(&file_points, half, turns)),
        "cpu_ms_per_turn_first_half": cpu_per_turn(1, half),
        "cpu_ms_per_turn_second_half": cpu_per_turn(half, turns),
        "rows": rows,
    }))
}
