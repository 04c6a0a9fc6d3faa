//! The official MCP SDK's test server and client (tests/clients), and a raw
//! line-level driver of `sidetrace mcp` for what no SDK would send.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};
use sidetrace::journal::reader::ExecutionView;
use sidetrace::record::{Interaction, McpExchange};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::binary::BIN;
use super::{HANG, python};

pub const NOTES_TEXT: &str = "The launch code is 4242-ALPHA.\n";

pub fn client_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// The SDK test server over stdio, as a command line.
pub fn server_command() -> Vec<String> {
    vec![
        python().display().to_string(),
        client_script("mcp_server.py").display().to_string(),
        "stdio".into(),
    ]
}

/// `sidetrace mcp [args] -- <server>` as a command line.
pub fn wrapper_command(journal: &Path, args: &[&str]) -> Vec<String> {
    let mut cmd = vec![
        BIN.to_owned(),
        "mcp".into(),
        "--journal".into(),
        journal.display().to_string(),
    ];
    cmd.extend(args.iter().map(|a| (*a).to_owned()));
    cmd.push("--".into());
    cmd.extend(server_command());
    cmd
}

/// The parts of the SDK client's report that come from the server.
pub fn served(out: &Value) -> Value {
    json!({
        "initialize": out["initialize"],
        "tools": out["tools"],
        "read_file": out["read_file"],
        "read_file_missing": out["read_file_missing"],
        "slow_count": out["slow_count"],
        "resource": out["resource"],
        "prompt": out["prompt"],
        "notifications": out["notifications"],
        "transport_errors": out["transport_errors"],
    })
}

/// The SDK test server over HTTP (`http` or `sse` transport) on port 0.
pub struct HttpServer {
    /// Killed when dropped.
    _child: Child,
    /// Its endpoint: `http://127.0.0.1:PORT/mcp` (or `/sse`).
    pub url: String,
}

impl HttpServer {
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut all = args.to_vec();
        all.extend(["--port", "0"]);
        let (child, url) = super::start_script_server("mcp_server.py", &all, env).await;
        Self { _child: child, url }
    }

    /// `http://127.0.0.1:PORT`, without the endpoint path.
    pub fn origin(&self) -> String {
        let u: http::Uri = self.url.parse().unwrap();
        format!("http://{}", u.authority().unwrap())
    }
}

/// The `confirm` tool's question: a server-to-client `elicitation/create`
/// sent while the client's `tools/call` waits, paired with the client's answer.
pub fn server_request_recorded(records: &[(Interaction, McpExchange)], journal: &Path) {
    let (_, ask) = exchange(records, "elicitation/create", |_| true);
    assert_eq!(ask.initiator, "server");
    assert!(ask.unanswered.is_empty(), "{ask:?}");
    let params: Value = serde_json::from_slice(&super::blob(journal, &ask.params_digest)).unwrap();
    assert_eq!(params["message"], "Deploy?");
    let answer: Value = serde_json::from_slice(&super::blob(journal, &ask.result_digest)).unwrap();
    assert_eq!(answer["action"], "accept");
    let (_, call) = exchange(records, "tools/call", |m| m.tool_name == "confirm");
    assert_eq!(call.initiator, "client");
    let result: Value = serde_json::from_slice(&super::blob(journal, &call.result_digest)).unwrap();
    assert_eq!(result["content"][0]["text"], "confirmed: yes");
}

/// Every MCP record in the journal, in the order exchanges began.
pub fn mcp_records(views: &[ExecutionView]) -> Vec<(Interaction, McpExchange)> {
    views
        .iter()
        .flat_map(|v| &v.interactions)
        .filter_map(|it| Some((it.clone(), it.mcp.clone()?)))
        .collect()
}

/// The one record of `method` (a request, not a notification).
pub fn exchange<'a>(
    records: &'a [(Interaction, McpExchange)],
    method: &str,
    pick: impl Fn(&McpExchange) -> bool,
) -> &'a (Interaction, McpExchange) {
    let found: Vec<_> = records
        .iter()
        .filter(|(_, m)| m.method == method && !m.notification && pick(m))
        .collect();
    assert_eq!(found.len(), 1, "one {method} record expected: {found:#?}");
    found[0]
}

/// `sidetrace mcp` driven line by line, as an agent would.
pub struct Wrapped {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Wrapped {
    pub fn start(command: &[String], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(&command[0]);
        cmd.args(&command[1..])
            .env("SIDETRACE_SPONSOR", "alice@example.com")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the wrapper starts");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).await.unwrap();
        stdin.flush().await.unwrap();
    }

    pub async fn send(&mut self, message: &Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.send_raw(line.as_bytes()).await;
    }

    /// The next line the server sent, without its newline.
    pub async fn recv(&mut self) -> String {
        let mut line = String::new();
        let n = tokio::time::timeout(HANG, self.stdout.read_line(&mut line))
            .await
            .expect("a line from the server in time")
            .unwrap();
        assert!(n > 0, "the server's stdout closed");
        line.truncate(line.trim_end_matches(['\r', '\n']).len());
        line
    }

    pub async fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        serde_json::from_str(&self.recv().await).unwrap()
    }

    pub async fn initialize(&mut self) -> Value {
        let answer = self
            .request(
                0,
                "initialize",
                json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw-agent", "version": "9.9"}}),
            )
            .await;
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        answer
    }

    /// Closes the agent's end of stdin (how MCP clients stop a server).
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Everything left on stdout, until it closes.
    pub async fn rest(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        tokio::time::timeout(HANG, self.stdout.read_to_end(&mut out))
            .await
            .expect("stdout closes")
            .unwrap();
        out
    }

    pub async fn exit_code(&mut self) -> i32 {
        let status = tokio::time::timeout(HANG, self.child.wait())
            .await
            .expect("the wrapper exits in time")
            .unwrap();
        status.code().expect("exited, not killed")
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running").to_string();
        assert!(
            std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    }
}
