//! `sse` and `hold`: streams through a target, timed chunk by chunk, or held open for the memory reading.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use serde_json::{Value, json};

use super::{Endpoint, Target, round, summary, wall_ns};

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

pub(super) async fn sse(
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

pub(super) async fn hold(
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
