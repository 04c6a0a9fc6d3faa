//! `conversation`: an N-turn conversation replayed through a target, with the journal's size after each turn.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::{Endpoint, Target, round};

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

pub(super) async fn conversation(
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
