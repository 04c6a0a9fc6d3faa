//! The proxy server: binds its ports, serves agents over HTTP/1.1 and h2c,
//! and shuts down gracefully.
//!
//! Shutdown order matters for "no data lost": stop accepting, let in-flight
//! exchanges finish (up to the drain timeout, then cut them — their records
//! say so), wait for every capture task to hand its record to the journal,
//! close the executions this run owns, and only then close the journal.

pub mod body;
pub mod connect;
pub mod errors;
pub mod forward;
pub mod headers;
pub mod mcp;
pub mod routes;
mod scope;
pub mod tee;
pub mod upstream;
pub mod websocket;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState};
use crate::capture::session::Recorder;
use crate::config::{ProxyConfig, Retention};
use crate::export::Exporter;
use crate::journal::{Journal, WriterThread};
use crate::journal::{JournalOptions, keys, prune};
use crate::metrics::Metrics;
use crate::record::conversation::ConversationTracker;
use crate::record::execution::ExecutionRegistry;
use crate::record::redact::Fingerprinter;
use crate::record::{ExecutionEnd, timestamp};

use forward::ProxyState;
use routes::RouteTable;

/// How long HTTP+SSE streams may go on at shutdown for answers in flight.
const LEGACY_STREAM_GRACE: Duration = Duration::from_secs(10);

/// How long to wait for capture tasks to hand over their records at shutdown.
const CAPTURE_FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamSetupError),
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
    #[error("cannot start the recording threads: {0}")]
    Threads(std::io::Error),
}

/// A bound, not yet serving, proxy.
pub struct Server {
    listener: TcpListener,
    admin_listener: TcpListener,
    state: Arc<ProxyState>,
    admin: Arc<AdminState>,
    writer: WriterThread,
    drain_timeout: Duration,
    session_idle_timeout: Duration,
    /// Applied at start and daily, when configured.
    retention: Option<(Retention, JournalOptions)>,
    exporter: Option<Exporter>,
    export_shutdown_timeout: Duration,
    /// The record that closes an adopted execution, journalled after the
    /// last capture and before the journal closes (`sidetrace run`).
    closing: Option<oneshot::Receiver<ExecutionEnd>>,
}

impl Server {
    /// Opens the journal, builds the upstream client and binds both ports.
    pub async fn bind(config: ProxyConfig) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new());
        let (journal, writer) = Journal::open(&config.journal, metrics.clone())?;
        let forward_state =
            connect::ForwardState::new(config.forward.clone(), config.connect_timeout);
        let client = upstream::client(
            config.upstream_ca.as_deref(),
            config.connect_timeout,
            forward_state.overrides.clone(),
        )?;
        let mut ws_tls = crate::tls::client_config(config.upstream_ca.as_deref(), None)?;
        ws_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let ws_tls = Arc::new(ws_tls);
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| StartError::Bind(config.listen, e))?;
        let admin_listener = TcpListener::bind(config.admin)
            .await
            .map_err(|e| StartError::Bind(config.admin, e))?;
        let listen = listener
            .local_addr()
            .map_err(|e| StartError::Bind(config.listen, e))?;
        let fingerprinter = Fingerprinter::new(journal.fingerprint_key());
        let exporter = Exporter::start(
            &config.export,
            config.redact_secrets,
            &journal,
            metrics.clone(),
        )?;
        let write_ahead = journal.durability() == crate::journal::Durability::WriteAhead;
        let journal_health = journal.health().clone();
        let identity = crate::identity::Identity::from_config(&config.identity)?;
        let tasks = TaskTracker::new();
        let mcp_sessions = Arc::new(mcp::sessions::Sessions::new(
            crate::capture::mcp::recorder::Sink {
                journal: journal.clone(),
                metrics: metrics.clone(),
                redact: config.redact_secrets,
            },
            tasks.clone(),
        ));
        let state = Arc::new(ProxyState {
            routes: RouteTable::new(config.routes),
            identity,
            client,
            recorder: Recorder {
                journal,
                metrics: metrics.clone(),
                conversations: Arc::new(ConversationTracker::new()),
                context_rules: config.context_rules.into(),
                tasks,
                pool: Arc::new(record_pool()?),
                backlog: Default::default(),
            },
            executions: ExecutionRegistry::new(config.execution, fingerprinter),
            capture_max_body: config.capture_max_body,
            redact_secrets: config.redact_secrets,
            upstream_timeout: config.upstream_timeout,
            listen,
            mcp_sessions,
            mcp_streams: CancellationToken::new(),
            mcp_legacy_streams: CancellationToken::new(),
            forward: forward_state,
            tunnels: connect::Tunnels::default(),
            ws_tls,
        });
        Ok(Self {
            listener,
            admin_listener,
            state,
            admin: Arc::new(AdminState {
                metrics,
                ready: AtomicBool::new(false),
                journal: journal_health,
                write_ahead,
            }),
            writer,
            drain_timeout: config.drain_timeout,
            session_idle_timeout: config.session_idle_timeout,
            retention: config.retention.map(|r| (r, config.journal.clone())),
            exporter,
            export_shutdown_timeout: config.export.shutdown_timeout,
            closing: None,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.state.listen
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Records into `execution_id` without opening or closing it: its owner
    /// (`sidetrace run`) journals both.
    pub fn adopt_execution(&self, execution_id: &str) {
        self.state.executions.adopt(execution_id);
    }

    /// A sender for the record that closes an adopted execution. At shutdown
    /// the server waits for it (after its own records are in) unless the
    /// sender was dropped.
    pub fn closing_record(&mut self) -> oneshot::Sender<ExecutionEnd> {
        let (tx, rx) = oneshot::channel();
        self.closing = Some(rx);
        tx
    }

    /// The journal this server writes.
    pub fn journal(&self) -> crate::journal::Journal {
        self.state.recorder.journal.clone()
    }

    /// The execution this run records into when requests name none.
    pub fn default_execution_id(&self) -> String {
        self.state.executions.default_execution_id().to_owned()
    }

    /// Serves until `shutdown` resolves, then drains and closes the journal.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            listener,
            admin_listener,
            state,
            admin,
            writer,
            drain_timeout,
            session_idle_timeout,
            retention,
            exporter,
            export_shutdown_timeout,
            closing,
        } = self;
        let admin_stop = CancellationToken::new();
        let admin_task = tokio::spawn(admin::serve(
            admin_listener,
            admin.clone(),
            admin_stop.clone(),
        ));
        let sweeper = tokio::spawn(close_idle_sessions(state.clone(), session_idle_timeout));
        let pruner = retention.map(|(r, journal)| tokio::spawn(apply_retention(r, journal)));

        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(60));
        builder.http2().timer(TokioTimer::new());
        let graceful = GracefulShutdown::new();
        // One hard stop for listener connections and tunnels alike.
        let hard_stop = state.tunnels.hard_stop.clone();
        let connections = TaskTracker::new();
        admin.set_ready(true);

        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Usually fd exhaustion: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            let svc = hyper::service::service_fn(move |req| {
                forward::handle(state.clone(), peer, req, forward::Via::Listener)
            });
            // With upgrades: CONNECT tunnels and WebSockets.
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .into_owned();
            let conn = graceful.watch(conn);
            let hard_stop = hard_stop.clone();
            connections.spawn(async move {
                tokio::select! {
                    result = conn => if let Err(e) = result {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    },
                    _ = hard_stop.cancelled() => {}
                }
            });
        }

        admin.set_ready(false);
        drop(listener);
        // Long-lived MCP server streams would hold the drain to its timeout:
        // Streamable HTTP ones end now (clients resume them, Last-Event-ID,
        // elsewhere); HTTP+SSE ones, which also carry the answers to calls
        // in flight, after half the drain (at most LEGACY_STREAM_GRACE).
        state.mcp_streams.cancel();
        let legacy = state.mcp_legacy_streams.clone();
        let grace = (drain_timeout / 2).min(LEGACY_STREAM_GRACE);
        let legacy_timer = tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            legacy.cancel();
        });
        tracing::info!(timeout = %humantime::format_duration(drain_timeout), "shutting down: draining in-flight requests");
        connections.close();
        let tunnels = state.tunnels.clone();
        tunnels.draining.cancel();
        tunnels.tracker.close();
        let drained = async {
            graceful.shutdown().await;
            tunnels.tracker.wait().await;
        };
        if tokio::time::timeout(drain_timeout, drained).await.is_err() {
            tracing::warn!(
                "drain timeout reached; cutting the remaining connections (their records are kept as incomplete)"
            );
            hard_stop.cancel();
        }
        connections.wait().await;
        tunnels.tracker.wait().await;
        legacy_timer.abort();

        sweeper.abort();
        if let Some(p) = pruner {
            p.abort();
        }
        // Open MCP sessions end with the proxy: their unanswered requests
        // are recorded as such before the capture tasks are awaited.
        state.mcp_sessions.close_all("proxy shutdown").await;
        let captures = &state.recorder.tasks;
        captures.close();
        if tokio::time::timeout(CAPTURE_FLUSH_TIMEOUT, captures.wait())
            .await
            .is_err()
        {
            tracing::error!(
                "some capture tasks did not finish within {CAPTURE_FLUSH_TIMEOUT:?}; their records may be missing"
            );
        }
        for id in state.executions.open_executions() {
            end_execution(&state, id, "proxy shutdown").await;
        }
        if let Some(closing) = closing
            && let Ok(end) = closing.await
        {
            state.recorder.journal.append_execution_end(end).await;
        }
        state.recorder.journal.clone().close(writer).await;
        if let Some(exporter) = exporter {
            tracing::info!(timeout = %humantime::format_duration(export_shutdown_timeout), "exporting what is left");
            exporter.finish(export_shutdown_timeout).await;
        }
        admin_stop.cancel();
        let _ = admin_task.await;
        tracing::info!("journal closed; goodbye");
    }
}

/// Closes agent-session executions nobody has used for `idle`.
async fn close_idle_sessions(state: Arc<ProxyState>, idle: Duration) {
    let every = (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        state.mcp_sessions.close_idle(idle).await;
        for id in state.executions.take_idle(idle) {
            let reason = format!("idle for {}", humantime::format_duration(idle));
            end_execution(&state, id, &reason).await;
        }
    }
}

async fn end_execution(state: &ProxyState, execution_id: String, reason: &str) {
    state.recorder.conversations.forget_execution(&execution_id);
    state
        .recorder
        .journal
        .append_execution_end(ExecutionEnd {
            execution_id,
            end_time: Some(timestamp(SystemTime::now())),
            reason: reason.to_owned(),
            exit_status: None,
            repository_after: None,
        })
        .await;
}

/// Prunes executions past the retention limit now and once a day. Runs
/// beside the writer safely: a prune is one transaction on the chain's head.
async fn apply_retention(retention: Retention, journal: JournalOptions) {
    let mut tick = tokio::time::interval(Duration::from_secs(24 * 60 * 60));
    loop {
        tick.tick().await;
        let (r, j) = (retention.clone(), journal.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            let key = keys::load(&j.signing_key)?;
            prune::prune(&j.path, &key, r.duration, &r.text, false)
        })
        .await;
        match outcome {
            Ok(Ok(report)) if !report.executions.is_empty() => tracing::info!(
                executions = report.executions.len(),
                entries = report.entries,
                blobs = report.blobs,
                retention = %retention.text,
                "pruned executions past the retention limit"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "retention prune failed"),
            Err(e) => tracing::error!(error = %e, "retention prune failed"),
        }
    }
}

/// The recording pool: one thread per core this process may use, up to four.
fn record_pool() -> Result<crate::capture::pool::RecordPool, StartError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    crate::capture::pool::RecordPool::new("sidetrace-record", cores.min(4))
        .map_err(StartError::Threads)
}
