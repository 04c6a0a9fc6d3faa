//! Shared test helpers: an in-process proxy on port 0, the mock upstream,
//! the journal as a test reads it, the Python SDK clients, and raw HTTP.

pub mod binary;
pub mod mcp;
pub mod mock;
pub mod oidc;
pub mod otlp;
pub mod scripted;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sidetrace::capture::exchange::resolve_messages;
use sidetrace::config::{Overrides, ProxyConfig};
use sidetrace::journal::reader::{ExecutionView, JournalReader};
use sidetrace::proxy::Server;
use tokio::sync::oneshot;

/// A generous bound on waits that should finish at once; hitting it means
/// something hung (a deadlock, a buffered stream), not that it was slow.
pub const HANG: Duration = Duration::from_secs(60);

pub fn fixture(path: &str) -> Vec<u8> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// An in-process `sidetrace proxy` on 127.0.0.1:0 with its own journal.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub journal: PathBuf,
    pub execution_id: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestProxy {
    /// Routes are `(prefix, upstream_url)`; `tweak` adjusts any other setting.
    pub async fn start(routes: &[(&str, &str)], tweak: impl FnOnce(&mut Overrides)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.db");
        let mut o = Overrides {
            listen: Some("127.0.0.1:0".into()),
            admin: Some("127.0.0.1:0".into()),
            routes: routes.iter().map(|(p, u)| format!("{p}={u}")).collect(),
            journal: Some(journal.clone()),
            ..Default::default()
        };
        // Most tests are not about sponsors: accept any, including the agent's own header.
        o.identity.require = Some("none".into());
        o.identity.allow_header = true;
        tweak(&mut o);
        let config = ProxyConfig::load(None, o).expect("valid test config");
        let server = Server::bind(config).await.expect("proxy starts");
        let (tx, rx) = oneshot::channel();
        let addr = server.local_addr();
        let admin = server.admin_addr();
        let execution_id = server.default_execution_id();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Self {
            addr,
            admin,
            journal,
            execution_id,
            shutdown: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Graceful shutdown: drains, flushes and closes the journal.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(HANG, task)
                .await
                .expect("proxy stops")
                .unwrap();
        }
    }

    /// Stops the proxy and reads back everything it recorded.
    pub async fn finish(&mut self) -> Vec<ExecutionView> {
        self.stop().await;
        read_journal(&self.journal)
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Every execution in a journal, message contents resolved.
pub fn read_journal(path: &Path) -> Vec<ExecutionView> {
    let reader = JournalReader::open(path).unwrap();
    let mut views = reader.executions(None).unwrap();
    let mut load = |d: &str| reader.blob(d).unwrap();
    for v in &mut views {
        for it in &mut v.interactions {
            resolve_messages(it, &mut load);
        }
    }
    views
}

pub fn blob(journal: &Path, digest: &str) -> Vec<u8> {
    JournalReader::open(journal)
        .unwrap()
        .blob(digest)
        .unwrap()
        .unwrap_or_else(|| panic!("no blob {digest}"))
}

/// The one interaction a single-request test produced.
pub fn only_interaction(views: &[ExecutionView]) -> sidetrace::record::Interaction {
    let all: Vec<_> = views.iter().flat_map(|v| v.interactions.clone()).collect();
    assert_eq!(all.len(), 1, "expected one interaction, got {all:#?}");
    all.into_iter().next().unwrap()
}

/// A plain HTTP/1.1 (or h2c) client for raw-byte tests.
pub fn http_client(
    h2: bool,
) -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    let mut b = Client::builder(TokioExecutor::new());
    b.http2_only(h2);
    b.build_http()
}

pub async fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (u16, http::HeaderMap, Bytes) {
    send(http_client(false), "POST", url, headers, body.into()).await
}

pub async fn send(
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> (u16, http::HeaderMap, Bytes) {
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(HANG, client.request(req.body(Full::new(body)).unwrap()))
        .await
        .expect("response in time")
        .expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(HANG, resp.into_body().collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    (status, headers, body)
}

/// The Python interpreter with the official SDKs, installed by the test command.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SIDETRACE_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-env/py/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run ./scripts/test.sh (the README's test command), which installs the SDK test clients",
        p.display()
    );
    p
}

/// Runs a client script from `tests/clients/` and returns its JSON output.
pub async fn run_client(script: &str, args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(&path).args(args).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(HANG, cmd.output())
        .await
        .expect("client finishes")
        .expect("client runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} {args:?} failed: {stderr}\n{stdout}"
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script}: bad JSON ({e}): {stdout}\n{stderr}"))
}

/// Polls `check` until it holds, for state that settles asynchronously.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + HANG;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Compresses a body as an upstream would for `Content-Encoding: encoding`.
pub fn compress(encoding: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match encoding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut e = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
            e.write_all(data).unwrap();
            e.into_inner()
        }
        "zstd" => {
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
        }
        other => panic!("no encoder for {other}"),
    }
}

/// Which fixture answers a model request, by API and streaming flag.
pub fn fixture_for(path: &str, stream: bool) -> Option<&'static str> {
    Some(match (path, stream) {
        (p, true) if p.ends_with("/chat/completions") => "openai_chat/stream_tool_calls.sse",
        (p, false) if p.ends_with("/chat/completions") => "openai_chat/response_tool_calls.json",
        (p, true) if p.ends_with("/responses") => "openai_responses/stream_function_call.sse",
        (p, false) if p.ends_with("/responses") => "openai_responses/response_function_call.json",
        (p, true) if p.ends_with("/messages") => "anthropic/stream_tool_use.sse",
        (p, false) if p.ends_with("/messages") => "anthropic/response_tool_use.json",
        _ => return None,
    })
}

/// A mock that answers each API with its golden fixture, optionally
/// compressed (then streamed in small frames, as a compressing server does).
pub async fn fixture_mock(encoding: Option<&'static str>) -> mock::Mock {
    mock::Mock::start(move |r| fixture_reply(r, encoding)).await
}

/// The same mock over TLS (its certificate from `tls`).
pub async fn fixture_mock_tls(tls: std::sync::Arc<rustls::ServerConfig>) -> mock::Mock {
    mock::Mock::start_tls(move |r| fixture_reply(r, None), tls).await
}

/// A model request's golden answer.
pub fn fixture_reply(r: &mock::Received, encoding: Option<&'static str>) -> mock::Reply {
    {
        let stream = r.json()["stream"].as_bool().unwrap_or(false);
        let Some(name) = fixture_for(r.path.split('?').next().unwrap_or_default(), stream) else {
            return mock::Reply::json(
                404,
                r#"{"error":{"message":"mock: unknown path","type":"invalid_request_error"}}"#,
            );
        };
        let body = fixture(name);
        let content_type = if stream {
            "text/event-stream; charset=utf-8"
        } else {
            "application/json"
        };
        match encoding {
            None if stream => mock::Reply::sse(&body),
            None => mock::Reply::json(200, body),
            Some(enc) => {
                let packed = compress(enc, &body);
                let pieces = packed.chunks(64).map(Bytes::copy_from_slice).collect();
                let mock::Reply::Stream { pieces, .. } = mock::Reply::sse_pieces(pieces, false)
                else {
                    unreachable!()
                };
                mock::Reply::Stream {
                    status: 200,
                    headers: vec![
                        ("content-type".into(), content_type.into()),
                        ("content-encoding".into(), enc.into()),
                    ],
                    pieces,
                }
            }
        }
    }
}

pub fn fixture_path(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// Starts a Python test server from tests/clients that prints
/// `{"url": ...}` once it listens; returns it (killed on drop) and the URL.
pub async fn start_script_server(
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(mcp::client_script(script))
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{script} starts: {e}"));
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(HANG, stdout.read_line(&mut line))
        .await
        .unwrap_or_else(|_| panic!("{script} says where it listens"))
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{script} printed {line:?}: {e}"));
    (child, v["url"].as_str().unwrap().to_owned())
}
