//! The real `sidetrace` binary, started on port 0 and followed through its
//! JSON logs.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::HANG;

pub const BIN: &str = env!("CARGO_BIN_EXE_sidetrace");

pub struct RunningProxy {
    pub child: Child,
    pub addr: String,
    pub admin: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl RunningProxy {
    /// `sidetrace proxy` on port 0 with `args`; sponsors are optional unless
    /// the arguments or `env` say otherwise.
    pub async fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[]).await
    }

    pub async fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(BIN);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .arg("--log-format")
            .arg("json")
            .arg("proxy")
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(args)
            .env("SIDETRACE_SPONSOR_REQUIRE", "none")
            .env("SIDETRACE_ALLOW_HEADER_SPONSOR", "true")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("sidetrace starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr, admin) = loop {
            let line = tokio::time::timeout(HANG, lines.next_line())
                .await
                .expect("sidetrace logs its address")
                .unwrap()
                .unwrap_or_else(|| panic!("sidetrace exited early: {:?}", log.lock().unwrap()));
            log.lock().unwrap().push(line.clone());
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if v["message"] == "sidetrace proxy listening" {
                break (
                    v["listen"].as_str().unwrap().to_owned(),
                    v["admin"].as_str().unwrap().to_owned(),
                );
            }
        };
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            addr,
            admin,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn terminate(&self) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub async fn wait(mut self) -> (i32, Vec<String>) {
        let status = tokio::time::timeout(HANG, self.child.wait())
            .await
            .expect("sidetrace exits")
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let log = self.log.lock().unwrap().clone();
        (status.code().unwrap_or(-1), log)
    }
}
