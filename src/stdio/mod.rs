//! `sidetrace mcp -- <server command>`: runs a stdio MCP server as a child
//! and sits on its stdin/stdout, relaying every byte both ways and
//! recording every message into the journal, in the execution and under the
//! sponsor the proxy would use (same flags, same `SIDETRACE_*` variables).
//!
//! Guarantees: the agent sees exactly the bytes the server wrote and vice
//! versa; the wrapper exits with the server's status (128 + signal if it was
//! killed) and never outlives it by more than `STDOUT_GRACE`; signals it
//! receives are passed on; requests still unanswered when the server exits
//! are recorded as such. Exporting spans is the proxy's job: it picks these
//! records up from the shared journal.

mod child;
pub mod framer;
mod relay;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use http::HeaderMap;

use crate::capture::mcp::recorder::{SessionRecorder, Sink};
use crate::capture::mcp::{Origin, SessionInfo, TRANSPORT_PIPE};
use crate::config::ProxyConfig;
use crate::identity::Identity;
use crate::journal::{Durability, Journal};
use crate::metrics::Metrics;
use crate::record::execution::ExecutionRegistry;
use crate::record::redact::Fingerprinter;
use crate::record::{ExecutionEnd, ExecutionIdSource, timestamp};

use relay::{AgentOut, Recording};

/// How long to keep relaying the server's stdout after it exited (a process
/// it started may still hold the pipe open).
const STDOUT_GRACE: Duration = Duration::from_secs(2);

pub struct WrapOptions {
    pub config: ProxyConfig,
    /// The server's name in the record [default: as its initialize answer names it].
    pub name: Option<String>,
    pub command: Vec<String>,
}

/// Runs the wrapper to the end; the exit code is the server's.
pub fn run(opts: WrapOptions) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("sidetrace-mcp")
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(wrap(opts));
    // The stdin reader may sit in a blocking read forever; do not wait for it.
    runtime.shutdown_background();
    result
}

async fn wrap(opts: WrapOptions) -> anyhow::Result<ExitCode> {
    let config = opts.config;
    let metrics = Arc::new(Metrics::new());
    let (journal, writer) = Journal::open(&config.journal, metrics.clone())?;
    let identity = Identity::from_config(&config.identity)?;
    let resolved = match identity.resolve(&HeaderMap::new()).await {
        Ok(r) => r,
        Err(refusal) => {
            journal.close(writer).await;
            anyhow::bail!(
                "{} (sidetrace mcp records under the same sponsor settings as the proxy; \
                 the MCP server was not started)",
                refusal.message
            );
        }
    };
    let registry = ExecutionRegistry::new(
        config.execution.clone(),
        Fingerprinter::new(journal.fingerprint_key()),
    );
    let (ctx, opened) = registry
        .resolve(&HeaderMap::new(), SystemTime::now(), resolved)
        .map_err(|e| anyhow::anyhow!(e.0))?;
    // An execution named by flag or environment belongs to whoever runs it
    // (the proxy, `sidetrace run`); one made up here is this wrapper's own.
    let owned = opened.filter(|e| e.id_source == ExecutionIdSource::Generated as i32);
    let owns_execution = owned.is_some();
    if let Some(execution) = owned
        && let Err(e) = journal.append_execution(execution).await
    {
        journal.close(writer).await;
        anyhow::bail!("cannot record the execution: {}", e.0);
    }

    let mut signals = crate::process::Forwarder::install()?;
    let mut server = match child::spawn(&opts.command) {
        Ok(c) => c,
        Err(e) => {
            end_execution(
                &journal,
                owns_execution,
                &ctx.execution_id,
                "the MCP server could not start",
            )
            .await;
            journal.close(writer).await;
            eprintln!("sidetrace mcp: {e:#}");
            return Ok(ExitCode::from(127));
        }
    };
    let pid = server.id().unwrap_or(0);
    let info = SessionInfo {
        session_id: uuid::Uuid::now_v7().to_string(),
        server_name: opts.name.unwrap_or_default(),
        transport: TRANSPORT_PIPE,
        ..Default::default()
    };
    tracing::debug!(pid, execution = %ctx.execution_id, session = %info.session_id, "MCP server started");
    let tasks = tokio_util::task::TaskTracker::new();
    let recorder = SessionRecorder::start(
        info.clone(),
        // Each relay passes bytes on before recording them, on its own task:
        // the server's answer can be observed before the request it answers.
        true,
        Sink {
            journal: journal.clone(),
            metrics,
            redact: config.redact_secrets,
        },
        &tasks,
    );
    let rec = Arc::new(Recording {
        recorder: recorder.clone(),
        origin: Arc::new(Origin::new(&ctx, "stdio", None)),
        info,
        journal: journal.clone(),
        cap: config.capture_max_body,
        redact: config.redact_secrets,
        write_ahead: journal.durability() == Durability::WriteAhead,
    });
    let (agent_out, out_task) = AgentOut::spawn(tokio::io::stdout());
    let server_stdout = server.stdout.take().context("the server's stdout")?;
    let server_stdin = server.stdin.take().context("the server's stdin")?;
    let mut from_server = tokio::spawn(relay::server_to_agent(
        server_stdout,
        agent_out.clone(),
        rec.clone(),
    ));
    let to_server = tokio::spawn(relay::agent_to_server(
        tokio::io::stdin(),
        server_stdin,
        agent_out.clone(),
        rec.clone(),
    ));
    drop(agent_out);

    let status = loop {
        tokio::select! {
            status = server.wait() => break status,
            sig = signals.next() => crate::process::send(pid, sig),
        }
    };
    let (code, reason) = match status {
        Ok(s) => {
            let (code, how) = crate::process::exit_code(s);
            (code, format!("the server {how}"))
        }
        Err(e) => (
            ExitCode::from(1),
            format!("waiting for the server failed: {e}"),
        ),
    };
    if tokio::time::timeout(STDOUT_GRACE, &mut from_server)
        .await
        .is_err()
    {
        tracing::warn!(
            "the MCP server exited but its stdout is still open (held by a process it started?); stopped relaying it"
        );
        from_server.abort();
    }
    to_server.abort();
    let _ = to_server.await;
    drop(rec);
    recorder.close(reason.clone()).await;
    drop(recorder);
    tasks.close();
    tasks.wait().await;
    // Let the agent read what the server said last.
    let _ = tokio::time::timeout(STDOUT_GRACE, out_task).await;
    end_execution(&journal, owns_execution, &ctx.execution_id, &reason).await;
    journal.close(writer).await;
    Ok(code)
}

async fn end_execution(journal: &Journal, owned: bool, execution_id: &str, reason: &str) {
    if !owned {
        return;
    }
    journal
        .append_execution_end(ExecutionEnd {
            execution_id: execution_id.to_owned(),
            end_time: Some(timestamp(SystemTime::now())),
            reason: reason.to_owned(),
            exit_status: None,
            repository_after: None,
        })
        .await;
}
