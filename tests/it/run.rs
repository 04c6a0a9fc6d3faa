//! `sidetrace run -- <command>`: a real agent (Claude Code) does a
//! tool-using task that commits to a git repository, with no base-URL
//! change — it reaches `api.anthropic.com` through the forward proxy that
//! `run` starts, trusting sidetrace's CA through the environment `run` sets,
//! and `--resolve` sends the upstream connection to a local TLS mock. The
//! execution must hold the task, the repository before and after, the
//! commit, and every interaction. Then the edges: outside git, a command
//! that does not exist, signals, and a running sidecar via `--proxy`.
//! Other agents and tools under `run`: `run_agents.rs`.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::json;
use sidetrace::journal::reader::{ExecutionView, JournalReader};
use sidetrace::record::Api;

use crate::agent::agent_binary;
use crate::common::mock::{Mock, Reply};
use crate::common::scripted::*;
use crate::common::tls::pki_for;
use crate::common::*;

const MODEL: &str = "claude-sonnet-4-5-20250929";
const COMMIT_SUBJECT: &str = "Fix the off-by-one in the counter";

/// A TLS mock answering as api.anthropic.com, and what it takes to reach it.
struct Upstream {
    mock: Mock,
    /// The mock's CA, for --upstream-ca.
    ca: PathBuf,
    dir: tempfile::TempDir,
}

impl Upstream {
    async fn start(
        script: impl Fn(&crate::common::mock::Received) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = pki_for(&[b"h2", b"http/1.1"], &["api.anthropic.com"]);
        let ca = dir.path().join("mock-ca.pem");
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        let mock = Mock::start_tls(script, pki.server_config).await;
        Self { mock, ca, dir }
    }

    /// `sidetrace run` flags: a journal and CA of its own, the mock as
    /// api.anthropic.com.
    fn flags(&self) -> Vec<String> {
        let d = self.dir.path();
        vec![
            "--journal".into(),
            d.join("journal.db").display().to_string(),
            "--ca-dir".into(),
            d.join("ca").display().to_string(),
            "--resolve".into(),
            format!("api.anthropic.com:443=127.0.0.1:{}", self.mock.addr.port()),
            "--upstream-ca".into(),
            self.ca.display().to_string(),
        ]
    }

    fn journal(&self) -> PathBuf {
        self.dir.path().join("journal.db")
    }
}

pub(crate) async fn sidetrace_run(dir: &Path, args: &[String], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sidetrace"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .envs(env.iter().copied())
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(HANG, cmd.output())
        .await
        .expect("sidetrace run finishes")
        .expect("sidetrace runs")
}

pub(crate) fn execution(journal: &Path) -> ExecutionView {
    let mut views = JournalReader::open(journal)
        .unwrap()
        .executions(None)
        .unwrap();
    assert_eq!(views.len(), 1, "one run, one execution");
    views.pop().unwrap()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn repository() -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    let d = repo.path();
    git(d, &["init", "-q", "-b", "main"]);
    git(d, &["config", "user.name", "Agent Smith"]);
    git(d, &["config", "user.email", "agent@example.com"]);
    git(d, &["config", "commit.gpgsign", "false"]);
    git(
        d,
        &[
            "remote",
            "add",
            "origin",
            "https://oauth2:glpat-secret@gitlab.example.com/team/app.git",
        ],
    );
    std::fs::write(
        d.join("counter.py"),
        "def count(n):\n    return range(n - 1)\n",
    )
    .unwrap();
    git(d, &["add", "counter.py"]);
    git(d, &["commit", "-qm", "Initial counter"]);
    repo
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_under_sidetrace_run_is_one_recorded_unit_of_work() {
    let claude = agent_binary(
        "SIDETRACE_TEST_CLAUDE",
        "@anthropic-ai/claude-code-linux-x64/claude",
    );
    let repo = repository();
    let home = tempfile::tempdir().unwrap();
    let base = git(repo.path(), &["rev-parse", "HEAD"]);
    let fix = format!(
        "sed -i 's/range(n - 1)/range(n)/' counter.py && git commit -qam '{COMMIT_SUBJECT}' && git log --oneline -1"
    );
    let upstream = Upstream::start(move |r| {
        let req = r.json();
        let turn = req["messages"].as_array().map_or(0, Vec::len);
        let id = format!("msg_01RunScripted{turn:04}");
        let has_bash = req["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "Bash"));
        let body = match anthropic_has_tool_result(&req) {
            Some(result) => anthropic_stream(
                &id,
                MODEL,
                &[json!({"type": "text", "text": format!("Committed: {}", result.trim())})],
                "end_turn",
            ),
            None if has_bash => anthropic_stream(
                &id,
                MODEL,
                &[
                    json!({"type": "text", "text": "I'll fix the range and commit."}),
                    json!({"type": "tool_use", "id": "toolu_01RunFix00001", "name": "Bash", "input": {"command": fix, "description": "Fix and commit"}}),
                ],
                "tool_use",
            ),
            None => anthropic_stream(&id, MODEL, &[json!({"type": "text", "text": "{\"title\": \"Fix counter\"}"})], "end_turn"),
        };
        Reply::sse(body.as_bytes())
    })
    .await;

    let mut args = upstream.flags();
    args.extend(
        [
            "--sponsor",
            "alice@example.com",
            "--change-id",
            "!42",
            "--task-text",
            "Fix the off-by-one in counter.py and commit it",
            "--",
        ]
        .map(String::from),
    );
    args.push(claude.display().to_string());
    args.extend(
        [
            "-p",
            "Fix the off-by-one in counter.py and commit it",
            "--output-format",
            "json",
            "--max-turns",
            "5",
            "--dangerously-skip-permissions",
        ]
        .map(String::from),
    );
    let home_dir = home.path().display().to_string();
    let out = sidetrace_run(
        repo.path(),
        &args,
        &[
            ("HOME", &home_dir),
            // No base URL: the agent talks to the real host name.
            ("ANTHROPIC_API_KEY", "sk-ant-test-key-for-sidetrace"),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
            ("DISABLE_AUTOUPDATER", "1"),
            ("DISABLE_TELEMETRY", "1"),
            ("CLAUDE_CODE_MAX_RETRIES", "1"),
            ("IS_SANDBOX", "1"),
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "claude under sidetrace run failed: {stdout}\n{stderr}"
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        result["result"].as_str().unwrap().contains(COMMIT_SUBJECT),
        "{result}"
    );
    let head = git(repo.path(), &["rev-parse", "HEAD"]);
    assert_ne!(head, base, "the agent committed");

    // The upstream saw the real host name.
    assert!(
        upstream
            .mock
            .requests()
            .iter()
            .all(|r| r.authority == "api.anthropic.com")
    );

    let v = execution(&upstream.journal());
    let e = &v.execution;
    assert_eq!(e.sponsor.as_ref().unwrap().id, "alice@example.com");
    assert_eq!(e.correlation.as_ref().unwrap().change_id, "!42");
    assert_eq!(
        e.task.as_ref().unwrap().text,
        "Fix the off-by-one in counter.py and commit it"
    );
    let before = e.repository_before.as_ref().expect("repository before");
    assert_eq!(before.head_commit, base);
    assert_eq!(before.branch, "main");
    assert_eq!(
        before.remote_url, "https://gitlab.example.com/team/app.git",
        "credentials stripped"
    );
    assert!(!before.dirty);
    let after = e.repository_after.as_ref().expect("repository after");
    assert_eq!(after.head_commit, head);
    assert_eq!(after.commits.len(), 1, "{after:?}");
    assert_eq!(after.commits[0].id, head);
    assert_eq!(after.commits[0].subject, COMMIT_SUBJECT);
    assert_eq!(after.commits[0].author, "Agent Smith <agent@example.com>");
    assert_eq!(after.commits_produced, vec![head.clone()]);
    assert_eq!(e.exit_status, Some(0));
    assert!(e.end_time.is_some());

    let model_calls: Vec<_> = v
        .interactions
        .iter()
        .filter(|i| i.api == Api::Messages as i32 && !i.tool_definitions.is_empty())
        .collect();
    assert_eq!(
        model_calls.len(),
        2,
        "the tool call turn and the answer turn"
    );
    for it in &v.interactions {
        assert_eq!(
            it.execution_id, e.id,
            "every interaction is in the run's execution"
        );
    }
    let call = &model_calls[0].tool_calls[0];
    assert_eq!(call.name, "Bash");
    assert!(call.arguments.contains("git commit"));
    assert_eq!(model_calls[0].served_model, MODEL);
    assert_eq!(model_calls[0].route, "https://api.anthropic.com");
    assert!(
        model_calls[0]
            .http
            .as_ref()
            .unwrap()
            .upstream_url
            .starts_with("https://api.anthropic.com/v1/messages")
    );

    // The summary, and `sidetrace show`.
    let heading = format!("execution {}", e.id);
    for needle in [
        heading.as_str(),
        "alice@example.com",
        "change !42",
        MODEL,
        "commits   1",
        COMMIT_SUBJECT,
    ] {
        assert!(
            stderr.contains(needle),
            "summary lacks {needle:?}:\n{stderr}"
        );
    }
    let shown = crate::agent::show(&upstream.journal()).await;
    for needle in [
        "task      Fix the off-by-one",
        "repo      before https://gitlab.example.com/team/app.git main",
        COMMIT_SUBJECT,
        "exit      0",
    ] {
        assert!(
            shown.contains(needle),
            "`sidetrace show` lacks {needle:?}:\n{shown}"
        );
    }
}

/// curl through the run's proxy to the intercepted host, trusting the CA
/// bundle the run points CURL_CA_BUNDLE at.
const CURL_MESSAGES: &str = r#"curl -sS --fail-with-body https://api.anthropic.com/v1/messages -H 'content-type: application/json' -H 'x-api-key: sk-ant-test' -d '{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}'"#;

fn answer_once() -> impl Fn(&crate::common::mock::Received) -> Reply + Send + Sync + 'static {
    |_| {
        Reply::json(
            200,
            json!({"id": "msg_01Once", "type": "message", "role": "assistant", "model": MODEL,
                   "content": [{"type": "text", "text": "hello"}], "stop_reason": "end_turn",
                   "stop_sequence": null, "usage": {"input_tokens": 3, "output_tokens": 1}})
            .to_string(),
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn outside_git_the_work_is_recorded_without_repository_state() {
    let upstream = Upstream::start(answer_once()).await;
    let work = tempfile::tempdir().unwrap();
    let mut args = upstream.flags();
    args.extend(["--sponsor", "bob@example.com", "--", "sh", "-c"].map(String::from));
    args.push(format!("{CURL_MESSAGES} && exit 7"));
    let out = sidetrace_run(work.path(), &args, &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "the command's status: {stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("msg_01Once"));
    assert!(stderr.contains("not in a git repository"), "{stderr}");

    let v = execution(&upstream.journal());
    assert!(v.execution.repository_before.is_none());
    assert!(v.execution.repository_after.is_none());
    assert_eq!(v.execution.exit_status, Some(7));
    let task = v.execution.task.as_ref().unwrap();
    assert!(
        task.text.starts_with("sh -c 'curl -sS"),
        "the command line is the task: {}",
        task.text
    );
    assert_eq!(v.interactions.len(), 1);
    assert_eq!(v.interactions[0].api, Api::Messages as i32);
    assert_eq!(v.interactions[0].served_model, MODEL);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_that_does_not_exist_exits_127_and_is_recorded() {
    let upstream = Upstream::start(answer_once()).await;
    let work = tempfile::tempdir().unwrap();
    let mut args = upstream.flags();
    args.extend(
        [
            "--sponsor",
            "bob@example.com",
            "--",
            "no-such-agent-xyz",
            "--help",
        ]
        .map(String::from),
    );
    let out = sidetrace_run(work.path(), &args, &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    assert!(
        stderr.contains("cannot run \"no-such-agent-xyz\""),
        "{stderr}"
    );
    let v = execution(&upstream.journal());
    assert_eq!(v.execution.exit_status, Some(127));
    assert!(v.execution.end_reason.contains("could not be started"));

    // No sponsor at all: refused before anything starts, and said why.
    let work = tempfile::tempdir().unwrap();
    let out = sidetrace_run(
        work.path(),
        &[
            "--journal".into(),
            work.path().join("j.db").display().to_string(),
            "--".into(),
            "true".into(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--sponsor") && stderr.contains("not started"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_reach_the_command_and_its_status_is_ours() {
    let upstream = Upstream::start(answer_once()).await;
    let work = tempfile::tempdir().unwrap();
    let ready = work.path().join("ready");
    let mut args = upstream.flags();
    args.extend(["--sponsor", "bob@example.com", "--quiet", "--", "sh", "-c"].map(String::from));
    args.push(format!(
        "trap 'exit 42' TERM; touch {}; while true; do sleep 0.1; done",
        ready.display()
    ));
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sidetrace"))
        .current_dir(work.path())
        .arg("run")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + HANG;
    while !ready.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the command never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let pid = child.id().unwrap() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let out = tokio::time::timeout(HANG, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(42),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        execution(&upstream.journal()).execution.exit_status,
        Some(42)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_proxy_the_run_uses_a_running_sidecar() {
    let upstream = Upstream::start(answer_once()).await;
    let ca_dir = upstream.dir.path().join("sidecar-ca");
    let port = upstream.mock.addr.port();
    let mock_ca = upstream.ca.clone();
    let ca = ca_dir.clone();
    let mut sidecar = TestProxy::start(&[], |o| {
        o.upstream_ca = Some(mock_ca);
        o.forward.ca_dir = Some(ca);
        o.forward.resolve = vec![format!("api.anthropic.com:443=127.0.0.1:{port}")];
        o.identity.sponsor = Some("carol@example.com".into());
    })
    .await;
    let work = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = [
        "--proxy".to_owned(),
        sidecar.url(""),
        "--journal".into(),
        sidecar.journal.display().to_string(),
        "--ca-dir".into(),
        String::new(),
        "--sponsor".into(),
        "carol@example.com".into(),
        "--".into(),
        "sh".into(),
        "-c".into(),
        CURL_MESSAGES.into(),
    ]
    .into();
    // The sidecar creates its CA on first use; without it, the run refuses.
    args[5] = ca_dir.display().to_string();
    let refused = sidetrace_run(work.path(), &args, &[]).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--ca-dir"));
    sidetrace::ca::Authority::load_or_create(&ca_dir).unwrap();

    let out = sidetrace_run(work.path(), &args, &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let views = sidecar.finish().await;
    let run = views
        .iter()
        .find(|v| v.execution.task.is_some())
        .expect("the run's execution");
    assert_eq!(
        run.interactions.len(),
        1,
        "the sidecar recorded the call into the run's execution"
    );
    assert_eq!(run.interactions[0].served_model, MODEL);
    assert_eq!(run.execution.exit_status, Some(0));
    assert!(
        views
            .iter()
            .all(|v| v.execution.id == run.execution.id || v.interactions.is_empty()),
        "nothing went to another execution"
    );
}
